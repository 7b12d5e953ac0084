"""README.md is a tested user guide: its commands, SQL, examples and variable list cannot rot.

Fenced blocks carry a marker after the language: `sh test` blocks are run with bash, in README
order, from a scratch folder that links to this checkout (so `.venv/bin`, `ct_pipeline/` and
`workspace.yaml` resolve as they do for a reader), with `.venv/bin` first on PATH and no real
credentials in the environment. `sh no-test` blocks are shown, not run. `yaml file=NAME` blocks
are written to NAME in that folder first. `sql test` blocks run against the warehouse the demo
left; `sql test=rejections` blocks against a warehouse in which CleverTap refused a record.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from ct_pipeline.config import parse_sync_config
from ct_pipeline.sandbox.launch import start_sandbox
from ct_pipeline.sandbox.synthetic import generate_crm
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline_tests.pipeline.conftest import Pipeline

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
# What a block needs from the checkout; outputs (.ct_pipeline/, .dagster_home/) stay in tmp.
LINKED = [".venv", "ct_pipeline", "workspace.yaml", "dagster.yaml", "pyproject.toml"]
# Variables a README block must never inherit from the person running the tests.
FOREIGN_PREFIXES = ("ZOHO_", "CLEVERTAP_", "CT_", "DAGSTER_")
BLOCK_TIMEOUT_SECONDS = 600

_FENCE = re.compile(r"^```([^\s`]*)[ \t]*([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# An unmasked Indian mobile in E.164, or an email whose local part has no masking asterisk.
_RAW_PHONE = re.compile(r"\+91[6-9]\d{9}\b")
_RAW_EMAIL = re.compile(r"(?<![\w*.+-])[A-Za-z0-9._%+-]{2,}@[A-Za-z0-9-]+\.[A-Za-z]{2,}")


@dataclass(frozen=True)
class Block:
    """One fenced block of the README."""

    language: str
    options: tuple[str, ...]
    text: str
    line: int

    def option(self, name: str) -> str | None:
        """The value of `name=value` (or "" for a bare `name`), None when absent."""
        for option in self.options:
            key, _, value = option.partition("=")
            if key == name:
                return value
        return None

    def __str__(self) -> str:
        return f"README.md line {self.line}"


def readme_blocks(text: str | None = None) -> list[Block]:
    """The README's fenced blocks, in order."""
    source = README.read_text(encoding="utf-8") if text is None else text
    return [
        Block(
            language=match[1],
            options=tuple(match[2].split()),
            text=match[3],
            line=source.count("\n", 0, match.start()) + 1,
        )
        for match in _FENCE.finditer(source)
    ]


def shell_blocks_under_test() -> list[Block]:
    """The `sh test` blocks, in README order."""
    return [b for b in readme_blocks() if b.language in SHELL_LANGUAGES and "test" in b.options]


def sql_statements(block: Block) -> list[str]:
    """The statements of an SQL block (split on semicolons ending a line)."""
    return [part.strip() for part in re.split(r";\s*$", block.text, flags=re.M) if part.strip()]


@dataclass(frozen=True)
class BlockRun:
    block: Block
    returncode: int
    output: str


@dataclass(frozen=True)
class ReadmeRun:
    folder: Path
    runs: list[BlockRun]


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory: pytest.TempPathFactory) -> ReadmeRun:
    """Every `sh test` block run once, in order, in a scratch folder like a fresh checkout."""
    folder = tmp_path_factory.mktemp("readme")
    for name in LINKED:
        (folder / name).symlink_to(REPO / name)
    for block in readme_blocks():
        if block.option("file"):
            (folder / block.option("file")).write_text(block.text, encoding="utf-8")
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith(FOREIGN_PREFIXES)
    }
    environment["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{environment.get('PATH', '')}"
    environment["COLUMNS"] = "140"
    runs = []
    for block in shell_blocks_under_test():
        completed = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.text],
            cwd=folder,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=BLOCK_TIMEOUT_SECONDS,
        )
        runs.append(BlockRun(block, completed.returncode, completed.stdout))
    return ReadmeRun(folder, runs)


def test_every_shell_block_says_whether_it_is_tested():
    unmarked = [
        str(block)
        for block in readme_blocks()
        if block.language in SHELL_LANGUAGES
        and ("test" in block.options) == ("no-test" in block.options)
    ]

    assert not unmarked, f"mark each shell block `test` or `no-test`: {unmarked}"
    assert len(shell_blocks_under_test()) >= 4


@pytest.mark.parametrize("index", range(len(shell_blocks_under_test())), ids=lambda i: f"block{i}")
def test_readme_shell_block_runs(readme_run: ReadmeRun, index: int):
    run = readme_run.runs[index]

    assert run.returncode == 0, f"{run.block} failed:\n{run.block.text}\n---\n{run.output[-3000:]}"
    assert "Traceback" not in run.output, f"{run.block}:\n{run.output[-3000:]}"
    assert not _RAW_PHONE.search(run.output), f"{run.block} printed a raw phone number"
    assert not _RAW_EMAIL.search(run.output), f"{run.block} printed a raw email"


def test_the_demo_block_finishes_both_runs_and_leaves_the_warehouse(readme_run: ReadmeRun):
    demo = next(run for run in readme_run.runs if "ct-pipeline demo" in run.block.text)

    assert demo.output.count("succeeded") == 2, demo.output[-3000:]
    assert "FAILED" not in demo.output
    assert (readme_run.folder / ".ct_pipeline" / "demo.sqlite").is_file()


def test_the_example_configurations_are_checked_and_valid(readme_run: ReadmeRun):
    examples = [block for block in readme_blocks() if block.option("file")]
    checked = "\n".join(run.output for run in readme_run.runs)

    assert {block.option("file") for block in examples} >= {
        "sync.fintech.yaml",
        "sync.edtech.yaml",
        "sync.d2c.yaml",
    }
    for block in examples:
        config = parse_sync_config(block.text, origin=block.option("file"))
        assert config.profile.mappings, block.option("file")
        assert f"{block.option('file')}: valid." in checked


def test_the_bad_configuration_example_fails_naming_the_key(readme_run: ReadmeRun):
    run = next(run for run in readme_run.runs if "too-big.yaml" in run.block.text)

    assert "clevertap.batch_size" in run.output
    assert "refused, as it should be" in run.output


def test_the_sql_runs_on_the_demo_warehouse_and_answers(readme_run: ReadmeRun):
    engine = sa.create_engine(f"sqlite:///{readme_run.folder / '.ct_pipeline' / 'demo.sqlite'}")
    blocks = [b for b in readme_blocks() if b.language == "sql" and b.option("test") == ""]
    statements = [statement for block in blocks for statement in sql_statements(block)]

    assert len(statements) >= 4
    with engine.connect() as connection:
        for statement in statements:
            rows = connection.execute(sa.text(statement)).fetchall()
            assert rows, f"no rows from:\n{statement}"
        queued = connection.execute(sa.text("SELECT COUNT(*) FROM identity_review_queue"))
        by_reason = connection.execute(sa.text(sql_statements(blocks[0])[0])).fetchall()
    assert sum(row[-1] for row in by_reason) == queued.scalar_one()
    engine.dispose()


@pytest.fixture(scope="module")
def warehouse_with_a_rejection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A sync on the sandbox in which CleverTap refused one changed profile."""
    folder = tmp_path_factory.mktemp("rejection")
    warehouse = WarehouseResource(url=f"sqlite:///{folder / 'warehouse.sqlite'}")
    sandbox = start_sandbox(crm=copy.deepcopy(generate_crm(150, seed=5)))
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            pipeline = Pipeline(sandbox=sandbox, warehouse=warehouse, instance=instance)
            assert pipeline.run("nightly_full_sync").success
            victim = warehouse.read_table("profile_attributes").sort_values("identity").iloc[0]
            pipeline.clevertap("POST", "faults", {"reject": [{"identity": victim["identity"]}]})
            pipeline.zoho(
                "POST",
                "records/Contacts",
                [{"id": victim["crm_contact_id"], "Mailing_City": "Kozhikode"}],
            )
            pipeline.run("incremental_sync")
            yield {"url": warehouse.resolved_url, "victim": victim}
    finally:
        sandbox.stop()


def test_the_rejection_sql_finds_the_refused_record(warehouse_with_a_rejection):
    blocks = [
        b for b in readme_blocks() if b.language == "sql" and b.option("test") == "rejections"
    ]
    engine = sa.create_engine(warehouse_with_a_rejection["url"])

    assert blocks
    with engine.connect() as connection:
        rows = [
            row._mapping
            for block in blocks
            for statement in sql_statements(block)
            for row in connection.execute(sa.text(statement))
        ]
    engine.dispose()
    assert [row["zoho_id"] for row in rows] == [
        warehouse_with_a_rejection["victim"]["crm_contact_id"]
    ]
    assert rows[0]["kind"] == "profile"


def test_every_environment_variable_the_code_reads_is_documented():
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", _section("Environment variables")))
    read = _variables_read_by_the_code()

    assert len(read) >= 20
    assert read <= documented, f"undocumented: {sorted(read - documented)}"


def test_the_readme_links_point_at_its_own_sections():
    text = README.read_text(encoding="utf-8")
    anchors = {_anchor(heading) for heading in re.findall(r"^#+ (.+)$", text, re.M)}

    for target in re.findall(r"\]\(#([^)]+)\)", text):
        assert target in anchors, f"no section for #{target}"


def test_the_readme_diagram_shows_the_three_flows():
    diagram = next(block for block in readme_blocks() if block.language == "mermaid")

    assert diagram.text.startswith("flowchart")
    for flow in ("1:", "2:", "3:"):
        assert flow in diagram.text


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _anchor(heading: str) -> str:
    cleaned = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return cleaned.replace(" ", "-")


def _variables_read_by_the_code() -> set[str]:
    """Every environment variable named in ct_pipeline's code, dagster.yaml and CI."""
    patterns = [
        r"environ(?:\.get)?\(\s*\"([A-Z][A-Z0-9_]+)\"",
        r"environ\[\"([A-Z][A-Z0-9_]+)\"\]",
        r"EnvVar\(\"([A-Z][A-Z0-9_]+)\"\)",
        r"^[A-Z_]*ENV[A-Z_]* = \"([A-Z][A-Z0-9_]+)\"",
        r"\{env: ([A-Z][A-Z0-9_]+)\}",
    ]
    names: set[str] = set()
    sources = [
        *(REPO / "ct_pipeline").rglob("*.py"),
        REPO / "dagster.yaml",
        REPO / "ct_pipeline_tests" / "conftest.py",
    ]
    for path in sources:
        if "sandbox" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        for pattern in patterns:
            names.update(re.findall(pattern, text, re.M))
    return names


def test_rejections_command_masks_the_refused_identity(warehouse_with_a_rejection):
    victim = warehouse_with_a_rejection["victim"]
    completed = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ct-pipeline"), "rejections"],
        env={**os.environ, "CT_WAREHOUSE_URL": warehouse_with_a_rejection["url"]},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    assert victim["crm_contact_id"] in completed.stdout
    assert victim["identity"] not in completed.stdout
    assert victim["identity"][-4:] in completed.stdout
