"""A real dagster-daemon on PostgreSQL storage driving the sync against the sandbox.

`running_stack()` gives a scratch PostgreSQL database for Dagster's storage, a DAGSTER_HOME
holding a copy of the project's dagster.yaml, both emulators, an SQLite warehouse, and
`dagster-daemon run -w workspace.yaml` in its own process group; it tears all of it down on
exit, failures included. The end-to-end test and the latency benchmark both use it.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import requests
from dagster._core.instance.ref import InstanceRef
from dagster._core.scheduler.instigation import InstigatorTick, InstigatorType

from ct_pipeline.sandbox.launch import RunningSandbox, start_sandbox
from ct_pipeline.schedules import NIGHTLY_TIME_ENV, NIGHTLY_TIMEZONE_ENV
from ct_pipeline.sensors import INTERVAL_ENV
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.resource import dispose_engine

REPO = Path(__file__).resolve().parents[2]
PG_ENV = ["DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_DB"]
PG_SKIP_REASON = f"set {', '.join(PG_ENV)} and DAGSTER_PG_PASSWORD (bash .ci/run does)"
# Variables that must not leak from the caller into the daemon: it must talk to the sandbox.
FOREIGN_PREFIXES = ("ZOHO_", "CLEVERTAP_", "CT_")
STOP_GRACE_SECONDS = 20
POLL_SECONDS = 0.2


def postgres_configured() -> bool:
    """Whether the environment names a PostgreSQL server for Dagster's storage."""
    return all(os.environ.get(name) for name in PG_ENV)


@dataclass
class DaemonStack:
    """Everything `running_stack` started, and ways to watch it."""

    sandbox: RunningSandbox
    warehouse: WarehouseResource
    instance: dg.DagsterInstance
    daemon: subprocess.Popen
    log_path: Path

    def zoho(self, method: str, path: str, body: Any = None) -> Any:
        """Call the Zoho emulator's admin API."""
        return _call(self.sandbox.zoho.url, method, path, body)

    def clevertap(self, method: str, path: str, **params: Any) -> Any:
        """Call the CleverTap emulator's admin API."""
        return _call(self.sandbox.clevertap.url, method, path, params=params)

    def runs(self, job_name: str | None = None) -> list[dg.DagsterRun]:
        """Runs stored in the scratch instance, newest first."""
        return [
            record.dagster_run
            for record in self.instance.get_run_records(dg.RunsFilter(job_name=job_name))
        ]

    def sensor_ticks(self, sensor_name: str, after: float) -> list[InstigatorTick]:
        """The ticks of one sensor evaluated after `after` (epoch seconds), newest first."""
        for state in self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if state.instigator_name == sensor_name:
                return list(
                    self.instance.get_ticks(
                        state.instigator_origin_id, state.selector_id, after=after
                    )
                )
        return []

    def wait_for(self, what: str, found: Callable[[], Any], timeout: float) -> Any:
        """Poll `found` until it returns something truthy; fail naming `what` and the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise AssertionError(
                    f"dagster-daemon exited while waiting for {what}\n{self.tail()}"
                )
            value = found()
            if value:
                return value
            time.sleep(POLL_SECONDS)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        """The end of the daemon's log, and the state of every run, for failure messages."""
        log = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        runs = [f"{run.job_name} {run.run_id} {run.status.value}" for run in self.runs()]
        return "runs:\n" + "\n".join(runs) + "\ndaemon log:\n" + "\n".join(log)


@contextmanager
def running_stack(
    workdir: Path, contacts: int = 200, seed: int = 7, sensor_interval: int | None = None
) -> Iterator[DaemonStack]:
    """Start storage, sandbox and daemon; stop and remove all of it on exit."""
    database = f"ct_e2e_{uuid.uuid4().hex[:10]}"
    _admin_sql(f'CREATE DATABASE "{database}"')
    try:
        home = workdir / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        warehouse_url = f"sqlite:///{workdir / 'warehouse.sqlite'}"
        sandbox = start_sandbox(contacts=contacts, seed=seed)
        try:
            env = _daemon_environment(home, database, warehouse_url, sandbox, sensor_interval)
            log_path = workdir / "daemon.log"
            with (
                _scoped_environ({"DAGSTER_PG_DB": database}),
                dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance,
                log_path.open("wb") as log,
            ):
                daemon = subprocess.Popen(
                    [str(Path(sys.executable).parent / "dagster-daemon"), "run"]
                    + ["-w", str(REPO / "workspace.yaml")],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                try:
                    yield DaemonStack(
                        sandbox, WarehouseResource(url=warehouse_url), instance, daemon, log_path
                    )
                finally:
                    _stop_group(daemon)
                    dispose_engine(warehouse_url)
        finally:
            sandbox.stop()
    finally:
        _admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def nightly_time_far_from(now: datetime) -> str:
    """An HH:MM twelve hours away in Kolkata, so no nightly can start during a test."""
    return (now.astimezone(ZoneInfo("Asia/Kolkata")) + timedelta(hours=12)).strftime("%H:%M")


def _daemon_environment(
    home: Path,
    database: str,
    warehouse_url: str,
    sandbox: RunningSandbox,
    sensor_interval: int | None,
) -> dict[str, str]:
    env = {
        name: value for name, value in os.environ.items() if not name.startswith(FOREIGN_PREFIXES)
    }
    env.update(sandbox.environment())
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_DB": database,
            "CT_WAREHOUSE_URL": warehouse_url,
            NIGHTLY_TIME_ENV: nightly_time_far_from(datetime.now(ZoneInfo("UTC"))),
            NIGHTLY_TIMEZONE_ENV: "Asia/Kolkata",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    if sensor_interval is not None:
        env[INTERVAL_ENV] = str(sensor_interval)
    return env


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the daemon's process group, then SIGKILL whatever is left in it (the code
    server and any run worker started from it)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE_SECONDS)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _admin_sql(statement: str) -> None:
    with psycopg.connect(
        host=os.environ["DAGSTER_PG_HOST"],
        port=int(os.environ["DAGSTER_PG_PORT"]),
        user=os.environ["DAGSTER_PG_USER"],
        password=os.environ.get("DAGSTER_PG_PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    ) as connection:
        connection.execute(statement)


@contextmanager
def _scoped_environ(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _call(base: str, method: str, path: str, body: Any = None, params: Any = None) -> Any:
    response = requests.request(
        method, f"{base}/__sandbox/{path}", json=body, params=params, timeout=30
    )
    response.raise_for_status()
    return response.json()
