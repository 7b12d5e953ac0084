"""The warehouse's PostgreSQL going away in the middle of a run: the run fails naming the
database, writes nothing half-done, and the next run ends with the undisturbed tables.

The server is a private cluster made for this module (initdb and pg_ctl into a temporary
folder, on a free port), never the shared one the other tests use. The server programs are
found whatever PostgreSQL version is installed; in CI (`CI` set) not finding them fails the test
instead of skipping it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.resource import dispose_engine
from ct_pipeline_tests.reliability.conftest import (
    Baseline,
    FaultPipeline,
    assert_same_clevertap,
    assert_same_tables,
    failure_messages,
    fault_pipeline,
)

pytestmark = pytest.mark.postgres

SERVER_PROGRAMS = ("initdb", "pg_ctl")
DEBIAN_VERSIONS = Path("/usr/lib/postgresql")
HELD_SECONDS = 4.0
RUN_TIMEOUT_SECONDS = 180


class PrivateCluster:
    """A PostgreSQL cluster in a temporary folder, owned by the `postgres` user when run as root
    (initdb refuses to run as root)."""

    def __init__(self, programs: Path) -> None:
        self.programs = programs
        self.folder = Path(tempfile.mkdtemp(prefix="ct_reliability_pg_"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"),
            capture_output=True,
        )
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(self._command(program, *args), capture_output=True, text=True)
        assert done.returncode == 0, f"{program} failed: {done.stderr[-2000:]}"

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.programs / program), *args]
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    """A private PostgreSQL server for this module."""
    programs = server_programs()
    if programs is None:
        _skip_unless_ci(
            "needs PostgreSQL's initdb and pg_ctl (apt-get install postgresql; looked in "
            "`pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH)"
        )
    if os.geteuid() == 0 and not _has_user("postgres"):
        _skip_unless_ci("needs a `postgres` user to own the private cluster when run as root")
    server = PrivateCluster(programs)
    server.start()
    try:
        yield server
    finally:
        dispose_engine(server.url)
        server.remove()


@pytest.fixture
def on_private_postgres(cluster: PrivateCluster, synthetic_crm) -> Iterator[FaultPipeline]:
    """A pipeline whose warehouse is the private cluster's (emptied first)."""
    engine = sa.create_engine(cluster.url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    with fault_pipeline(synthetic_crm, WarehouseResource(url=cluster.url)) as pipeline:
        yield pipeline


@pytest.mark.parametrize("downtime", ["stopped", "restarted"])
def test_postgres_going_away_mid_run_fails_the_run_cleanly_and_the_next_run_completes(
    on_private_postgres: FaultPipeline,
    cluster: PrivateCluster,
    undisturbed: Baseline,
    downtime: str,
):
    pipeline = on_private_postgres
    # The Contacts read is held in the emulator while the database goes away under the run.
    pipeline.zoho_faults(after_calls=6, slow_responses=1, slow_seconds=HELD_SECONDS)
    outcome: dict = {}
    run = threading.Thread(target=lambda: outcome.update(result=pipeline.run("nightly_full_sync")))
    run.start()
    try:
        _wait_for(lambda: pipeline.zoho_stats()["faults_served"].get("slow_responses"))
        cluster.stop()
        if downtime == "restarted":
            cluster.start()
        run.join(RUN_TIMEOUT_SECONDS)
        assert not run.is_alive(), "the run hung after the database went away"
    finally:
        if downtime == "stopped":
            cluster.start()
        run.join(RUN_TIMEOUT_SECONDS)

    result = outcome["result"]
    if downtime == "stopped" or not result.success:
        # A restart between two statements may go unnoticed (the pool checks connections
        # before use); a server that is gone must fail the run, saying why.
        assert not result.success
        explained = failure_messages(result)
        assert "OperationalError" in explained and "127.0.0.1" in explained, explained[:2000]

    assert pipeline.run("nightly_full_sync").success

    after = pipeline.snapshot()
    assert_same_tables(after, undisturbed.after_full_sync)
    assert_same_clevertap(after, undisturbed.after_full_sync)


def server_programs(versions: Path = DEBIAN_VERSIONS) -> Path | None:
    """The folder holding initdb and pg_ctl: `pg_config --bindir`, else the newest
    `versions`/<version>/bin (Debian keeps them off PATH), else PATH."""
    candidates = []
    if pg_config := shutil.which("pg_config"):
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if done.returncode == 0:
            candidates.append(Path(done.stdout.strip()))
    candidates += sorted(versions.glob("*/bin"), key=_major_version, reverse=True)
    if on_path := shutil.which("pg_ctl"):
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if all((folder / program).is_file() for program in SERVER_PROGRAMS):
            return folder
    return None


def _major_version(folder: Path) -> tuple[int, ...]:
    """(17,) for /usr/lib/postgresql/17/bin; () for a name that is not a version."""
    name = folder.parent.name
    return tuple(int(part) for part in name.split(".")) if name.replace(".", "").isdigit() else ()


def _skip_unless_ci(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must not skip the PostgreSQL restart test: it {reason}")
    pytest.skip(reason)


def _wait_for(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the run never reached the held Zoho call"
        time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_the_newest_installed_server_is_found_off_path(tmp_path, monkeypatch):
    for version in ("9.6", "15", "17"):
        folder = tmp_path / version / "bin"
        folder.mkdir(parents=True)
        for program in SERVER_PROGRAMS:
            (folder / program).write_text("")
    (tmp_path / "18" / "bin").mkdir(parents=True)  # a client-only install: no server programs
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    assert server_programs(tmp_path) == tmp_path / "17" / "bin"
    assert server_programs(tmp_path / "none") is None


def test_missing_server_programs_fail_the_test_in_ci_instead_of_skipping(monkeypatch):
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI must not skip"):
        _skip_unless_ci("needs PostgreSQL's initdb")

    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _skip_unless_ci("needs PostgreSQL's initdb")
