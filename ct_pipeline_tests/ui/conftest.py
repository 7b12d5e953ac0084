"""A finished demo (its Dagster instance and warehouse) for the tests of what the UI shows."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CT_PIPELINE = REPO / ".venv" / "bin" / "ct-pipeline"
DEMO_CONTACTS = 300


@dataclass(frozen=True)
class FinishedDemo:
    """Where a demo run left its Dagster instance and its warehouse."""

    folder: Path
    dagster_home: Path
    warehouse_url: str
    output: str


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any Zoho, CleverTap, ct_pipeline or Dagster setting."""
    prefixes = ("ZOHO_", "CLEVERTAP_", "CT_", "DAGSTER_")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**environment, **extra}


@pytest.fixture(scope="session")
def finished_demo(tmp_path_factory: pytest.TempPathFactory) -> FinishedDemo:
    """`ct-pipeline demo` on a small synthetic CRM, run once for the session."""
    folder = tmp_path_factory.mktemp("ui_demo")
    home = folder / ".dagster_home"
    completed = subprocess.run(
        [str(CT_PIPELINE), "demo", "--contacts", str(DEMO_CONTACTS), "--seed", "5"],
        cwd=folder,
        env=clean_environment(DAGSTER_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    return FinishedDemo(
        folder=folder,
        dagster_home=home,
        warehouse_url=f"sqlite:///{folder / '.ct_pipeline' / 'demo.sqlite'}",
        output=completed.stdout,
    )
