"""`ct-pipeline webhook-server`: refuses to start without a secret, and serves the receiver."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import requests
from click.testing import CliRunner

from ct_pipeline.cli import main
from ct_pipeline.sandbox.server import free_port
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.webhooks import INBOX_TABLE, WEBHOOK_PATH
from ct_pipeline_tests.writeback.conftest import TOKEN

STARTUP_SECONDS = 60


def test_the_command_refuses_to_start_without_a_secret(monkeypatch, tmp_path):
    monkeypatch.delenv("CT_WEBHOOK_TOKEN", raising=False)
    monkeypatch.setenv("CT_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'warehouse.sqlite'}")

    result = CliRunner().invoke(main, ["webhook-server", "--port", str(free_port())])

    assert result.exit_code != 0
    assert "CT_WEBHOOK_TOKEN is missing" in result.output


def test_the_command_serves_the_receiver_on_loopback(tmp_path):
    port = free_port()
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    environment = {**os.environ, "CT_WEBHOOK_TOKEN": TOKEN, "CT_WAREHOUSE_URL": url}
    command = [sys.executable, "-m", "ct_pipeline.cli", "webhook-server", "--port", str(port)]
    server = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/health", server)
        body = {"key_values": {"event": "Charged"}, "profiles": [{"identity": "+919812345670"}]}

        response = requests.post(
            f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
            json=body,
            auth=("clevertap", TOKEN),
            timeout=30,
        )

        assert response.status_code == 200
        assert len(WarehouseResource(url=url).read_table(INBOX_TABLE)) == 1
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_until_up(health_url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"webhook-server exited with {server.returncode}")
        try:
            if requests.get(health_url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError("webhook-server did not answer /health in time")
