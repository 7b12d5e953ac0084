"""Serve the sandbox emulators over HTTP on 127.0.0.1, in the foreground or in a thread.

The thread form is what tests and `make demo` use: every client talks real HTTP to a real
server, so nothing in the pipeline is monkeypatched.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 30.0


@dataclass
class RunningServer:
    """An ASGI app served by uvicorn in a daemon thread."""

    url: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        """Ask uvicorn to shut down and wait for the thread to finish."""
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_in_thread(app: object, port: int = 0, host: str = LOOPBACK) -> RunningServer:
    """Serve `app` on host:port (0 picks a free port) and return once it accepts connections."""
    if port == 0:
        port = free_port(host)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        # Many clients in flight at once: keep the backlog generous.
        backlog=2048,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"sandbox-{port}", daemon=True)
    thread.start()

    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"sandbox server on {host}:{port} failed to start")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"sandbox server on {host}:{port} did not start in time")
        time.sleep(0.01)
    return RunningServer(url=f"http://{host}:{port}", port=port, server=server, thread=thread)


@contextmanager
def serving(app: object, port: int = 0, host: str = LOOPBACK) -> Iterator[RunningServer]:
    """Context manager form of `start_in_thread` that always stops the server."""
    running = start_in_thread(app, port=port, host=host)
    try:
        yield running
    finally:
        running.stop()


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
