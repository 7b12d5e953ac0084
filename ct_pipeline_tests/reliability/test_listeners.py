"""Every listener the project starts binds to 127.0.0.1 unless told otherwise.

A test that only connects to 127.0.0.1 passes for a server bound to 0.0.0.0 as well, so these
read the address each listening socket is bound to from the kernel's socket table
(/proc/net/tcp and tcp6), for the commands as a user runs them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ct_pipeline.sandbox.server import free_port
from ct_pipeline_tests.writeback.conftest import TOKEN

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "ct-pipeline")
LISTEN = "0A"  # the TCP_LISTEN state in /proc/net/tcp
STARTUP_SECONDS = 120

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="reads the socket table of Linux's /proc"
)


def listening_addresses(port: int) -> set[str]:
    """The addresses sockets listening on `port` are bound to (0.0.0.0 or :: for all)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == LISTEN:
                found.add(_address(address))
    return found


def _address(hexadecimal: str) -> str:
    """An address as /proc/net/tcp{,6} prints it: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hexadecimal)
    words = b"".join(raw[start : start + 4][::-1] for start in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def test_the_socket_table_reader_tells_loopback_from_every_interface():
    import socket

    for host, expected in (("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "0.0.0.0")):
        with socket.socket() as listener:
            listener.bind((host, 0))
            listener.listen()
            assert listening_addresses(listener.getsockname()[1]) == {expected}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [([], {"127.0.0.1"}), (["--host", "0.0.0.0"], {"0.0.0.0"})],
    ids=["default", "asked-for-every-interface"],
)
def test_the_webhook_server_listens_on_loopback_unless_told_otherwise(
    tmp_path, arguments: list[str], expected: set[str]
):
    port = free_port()
    environment = {
        **os.environ,
        "CT_WEBHOOK_TOKEN": TOKEN,
        "CT_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'warehouse.sqlite'}",
    }
    command = [CLI, "webhook-server", "--port", str(port), *arguments]
    with running(command, environment, tmp_path) as process:
        wait_for(lambda: listening_addresses(port), process)

        assert listening_addresses(port) == expected


def test_the_sandbox_serves_both_emulators_on_loopback_only(tmp_path):
    with running([CLI, "sandbox", "--contacts", "20"], dict(os.environ), tmp_path) as process:
        output = tmp_path / "output.log"
        wait_for(lambda: len(_ports(output.read_text())) >= 2, process)
        ports = _ports(output.read_text())

        assert {port: listening_addresses(port) for port in ports} == {
            port: {"127.0.0.1"} for port in ports
        }


def test_dev_starts_dagster_on_loopback(tmp_path):
    port = free_port()
    environment = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "CT_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'warehouse.sqlite'}",
    }
    command = [CLI, "dev", "--port", str(port), "--contacts", "100"]
    with running(command, environment, tmp_path) as process:
        wait_for(lambda: _dagster_dev_command(process.pid), process)
        dagster = _dagster_dev_command(process.pid)
        wait_for(lambda: listening_addresses(port), process)

        assert dagster[dagster.index("--host") + 1] == "127.0.0.1"
        assert listening_addresses(port) == {"127.0.0.1"}


def _ports(output: str) -> set[int]:
    """The ports in the sandbox's `export ...=http://127.0.0.1:PORT` lines."""
    return {int(port) for port in re.findall(r"^export \w+=http://[\d.]+:(\d+)", output, re.M)}


def _dagster_dev_command(pid: int) -> list[str] | None:
    """The command line of the `dagster dev` process `pid` started, once it runs."""
    for child in _children(pid):
        # A script's command line starts with its interpreter: python .../bin/dagster dev ...
        command = Path(f"/proc/{child}/cmdline").read_bytes().decode().split("\0")[:-1]
        names = [Path(part).name for part in command]
        if "dagster" in names and names[names.index("dagster") + 1 :][:1] == ["dev"]:
            return command
    return None


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return [
            int(child)
            for task in tasks
            for child in (task / "children").read_text().split()
            if Path(f"/proc/{child}").exists()
        ]
    except FileNotFoundError:
        return []


@contextmanager
def running(command: list[str], environment: dict[str, str], folder: Path) -> Iterator:
    """`command` in its own process group, output to folder/output.log; stopped afterwards."""
    with (folder / "output.log").open("w") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=30)


def wait_for(condition: Callable[[], object], process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not condition():
        assert process.poll() is None, f"the command exited with {process.returncode}"
        assert time.monotonic() < deadline, "the command did not start listening in time"
        time.sleep(0.1)
