"""The code location loads, by Python and by Dagster's own CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from ct_pipeline.definitions import defs

REPO = Path(__file__).resolve().parents[1]


def test_definitions_are_loadable():
    dg.Definitions.validate_loadable(defs)


def test_dagster_cli_validates_the_workspace(tmp_path):
    environment = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    result = subprocess.run(
        [
            Path(sys.executable).parent / "dagster",
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful for code location ct_pipeline" in result.stderr + result.stdout
