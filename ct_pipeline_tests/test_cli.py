"""The `ct-pipeline` command: help, and configuration checks with one-line errors."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import requests
from click.testing import CliRunner

from ct_pipeline.cli import main
from ct_pipeline.sandbox.server import free_port


def test_help_lists_the_commands():
    result = CliRunner().invoke(main, ["--help"])

    assert result.exit_code == 0
    for command in ("sandbox", "config"):
        assert command in result.output


def test_config_check_accepts_the_packaged_example():
    result = CliRunner().invoke(main, ["config", "check"], env={"CT_SYNC_CONFIG": ""})

    assert result.exit_code == 0
    assert "valid" in result.output


def test_config_check_reports_a_bad_file_in_one_line_with_a_failing_status(tmp_path):
    path = tmp_path / "sync.yaml"
    path.write_text("clevertap: {batch_size: 5000}\n")

    result = CliRunner().invoke(main, ["config", "check", str(path)])

    assert result.exit_code != 0
    assert "clevertap.batch_size" in result.output
    assert "Traceback" not in result.output


def test_sandbox_serves_both_emulators_and_prints_how_to_reach_them():
    zoho_port, clevertap_port = free_port(), free_port()
    command = [str(Path(sys.executable).parent / "ct-pipeline"), "sandbox"]
    process = subprocess.Popen(
        [*command, "--zoho-port", str(zoho_port), "--clevertap-port", str(clevertap_port)]
        + ["--contacts", "50", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (process.stdout.readline().strip() for _ in range(8))
        )
        token = requests.post(
            f"{exports['ZOHO_ACCOUNTS_URL']}/oauth/v2/token",
            params={
                "grant_type": "refresh_token",
                "client_id": exports["ZOHO_CLIENT_ID"],
                "client_secret": exports["ZOHO_CLIENT_SECRET"],
                "refresh_token": exports["ZOHO_REFRESH_TOKEN"],
            },
            timeout=10,
        ).json()
        profiles = requests.get(f"{exports['CLEVERTAP_API_URL']}/__sandbox/profiles", timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    assert exports["ZOHO_ACCOUNTS_URL"] == f"http://127.0.0.1:{zoho_port}"
    assert exports["CLEVERTAP_API_URL"] == f"http://127.0.0.1:{clevertap_port}"
    assert "access_token" in token
    assert profiles.json()["count"] == 0
    assert process.returncode == 0
