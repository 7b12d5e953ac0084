"""What the sync benchmarks share: emulators in their own processes, a job run in a fresh process.

The pipeline benchmarks (full_sync, nightly_rerun, incremental, naive_baseline) need the two
emulators serving a synthetic CRM of N contacts, and a job of the real code location run
against them on an empty warehouse. Here:

- `Emulators` starts `ct-pipeline sandbox` twice, once per emulator, so neither shares a
  process (or a GIL) with the other or with the pipeline;
- `run_job` runs one job of `build_definitions()` in a child process (this file is also its
  entry point), so the peak RSS it reports is that run's alone; it returns the wall time, the
  time of each step, the assets' metadata and the API calls both emulators counted;
- `machine` and `write_result` put the machine, its load and the command beside every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PYTHON = sys.executable
CT_PIPELINE = str(Path(PYTHON).parent / "ct-pipeline")
EXAMPLE_CONFIG = ROOT / "ct_pipeline" / "sync.example.yaml"
# Generating 1,000,000 contacts takes ~15 s alone, far longer on a loaded machine.
EMULATOR_START_TIMEOUT_SECONDS = 1800
JOB_TIMEOUT_SECONDS = 3 * 3600
ADMIN_TIMEOUT_SECONDS = 120
# Records per admin edit request, to keep each request small.
ADMIN_EDIT_CHUNK = 2_000
RSS_SAMPLE_SECONDS = 0.2
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
UPLOAD_ENDPOINT = "POST /1/upload"
TRIGGER_ENDPOINT = "POST /1/send/externaltrigger.json"


@dataclass
class Emulators:
    """The Zoho and CleverTap emulators, each in a `ct-pipeline sandbox` process of its own."""

    contacts: int
    seed: int
    environment: dict[str, str] = field(default_factory=dict)
    setup_seconds: float = 0.0
    _processes: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def zoho_url(self) -> str:
        """Base URL of the Zoho emulator."""
        return self.environment["ZOHO_API_DOMAIN"]

    @property
    def clevertap_url(self) -> str:
        """Base URL of the CleverTap emulator."""
        return self.environment["CLEVERTAP_API_URL"]

    def start(self) -> Emulators:
        """Start both processes and wait until they serve."""
        started = time.perf_counter()
        zoho = self._launch(["--zoho-port", str(_free_port())], exports=5)
        clevertap = self._launch(["--clevertap-port", str(_free_port())], exports=3)
        self.environment = {**zoho, **clevertap}
        self.setup_seconds = time.perf_counter() - started
        return self

    def stop(self) -> None:
        """Stop the processes this object started."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self._processes.clear()

    def zoho_stats(self) -> dict[str, Any]:
        """The Zoho emulator's call and credit counters."""
        return _get_json(f"{self.zoho_url}/__sandbox/stats")

    def clevertap_stats(self) -> dict[str, Any]:
        """The CleverTap emulator's request and record counters."""
        return _get_json(f"{self.clevertap_url}/__sandbox/stats")

    def edit_records(self, module: str, records: Sequence[dict[str, Any]]) -> None:
        """Create or update Zoho records through the admin API (moves their Modified_Time)."""
        for start in range(0, len(records), ADMIN_EDIT_CHUNK):
            response = requests.post(
                f"{self.zoho_url}/__sandbox/records/{module}",
                json=list(records[start : start + ADMIN_EDIT_CHUNK]),
                timeout=ADMIN_TIMEOUT_SECONDS,
            )
            response.raise_for_status()

    def _launch(self, ports: list[str], exports: int) -> dict[str, str]:
        command = [CT_PIPELINE, "sandbox", *ports, "--contacts", str(self.contacts)]
        process = subprocess.Popen(
            [*command, "--seed", str(self.seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        self._processes.append(process)
        environment: dict[str, str] = {}
        deadline = time.monotonic() + EMULATOR_START_TIMEOUT_SECONDS
        assert process.stdout is not None
        while len(environment) < exports:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"`{' '.join(command)}` exited before serving")
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                environment[name] = value
            if time.monotonic() > deadline:
                raise RuntimeError(f"`{' '.join(command)}` did not start in time")
        return environment


@contextmanager
def emulators(contacts: int, seed: int) -> Iterator[Emulators]:
    """Both emulators serving `contacts` synthetic contacts, stopped on exit."""
    running = Emulators(contacts=contacts, seed=seed)
    try:
        yield running.start()
    finally:
        running.stop()


@contextmanager
def scratch_warehouse(postgres_url: str | None = None) -> Iterator[str]:
    """An empty warehouse URL: a new SQLite file, or a new database on the PostgreSQL server."""
    if postgres_url is None:
        folder = Path(tempfile.mkdtemp(prefix="ct_bench_"))
        try:
            yield f"sqlite:///{folder / 'warehouse.sqlite'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    import sqlalchemy as sa

    server = sa.make_url(postgres_url)
    name = f"ct_bench_{os.getpid()}"
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def sandboxed(args: argparse.Namespace) -> Iterator[tuple[Emulators, str, Path]]:
    """Fresh emulators, an empty warehouse and the sync configuration the options ask for."""
    with (
        emulators(args.contacts, args.seed) as sandbox,
        scratch_warehouse(args.postgres_url) as warehouse_url,
        tempfile.TemporaryDirectory(prefix="ct_bench_config_") as folder,
    ):
        yield sandbox, warehouse_url, sync_config(Path(folder), args.bulk_read_threshold)


def write_benchmark(benchmark: str, args: argparse.Namespace, figures: dict[str, Any]) -> Path:
    """`write_result` under the benchmark's result name, with the options every run shares."""
    common = {
        "contacts": args.contacts,
        "seed": args.seed,
        "warehouse": "postgresql" if args.postgres_url else "sqlite",
        "bulk_read_threshold": args.bulk_read_threshold,
    }
    name = result_name(benchmark, args.contacts, args.postgres_url)
    return write_result(name, {**common, **figures}, args.output)


def sync_config(folder: Path, bulk_read_threshold: int | None) -> Path:
    """The packaged sync configuration, with `zoho.bulk_read_threshold` changed if asked."""
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    if bulk_read_threshold is not None:
        config["zoho"]["bulk_read_threshold"] = bulk_read_threshold
    path = folder / "sync.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def batch_size(config_path: Path) -> int:
    """`clevertap.batch_size` of a sync configuration file."""
    return int(yaml.safe_load(config_path.read_text())["clevertap"]["batch_size"])


def run_job(
    job: str,
    sandbox: Emulators,
    warehouse_url: str,
    config_path: Path,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """Run one sync job in a fresh process; its timings, peak RSS, metadata and API calls."""
    zoho_before, clevertap_before = sandbox.zoho_stats(), sandbox.clevertap_stats()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ct_bench_job_") as folder:
        output = Path(folder) / "run.json"
        command = [PYTHON, __file__, "--job", job, "--output", str(output)]
        if profile_to is not None:
            command += ["--profile", str(profile_to)]
        environment = {
            **os.environ,
            **sandbox.environment,
            "CT_WAREHOUSE_URL": warehouse_url,
            "CT_SYNC_CONFIG": str(config_path),
        }
        environment.pop("DAGSTER_HOME", None)
        started = time.perf_counter()
        subprocess.run(command, env=environment, cwd=ROOT, check=True, timeout=JOB_TIMEOUT_SECONDS)
        process_seconds = time.perf_counter() - started
        run = json.loads(output.read_text())
    zoho_after, clevertap_after = sandbox.zoho_stats(), sandbox.clevertap_stats()
    run["process_seconds"] = round(process_seconds, 2)
    run["load_average_before"] = [round(value, 2) for value in load_before]
    run["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
    run["zoho"] = zoho_usage(zoho_before, zoho_after)
    run["clevertap"] = clevertap_usage(clevertap_before, clevertap_after)
    return run


def machine() -> dict[str, Any]:
    """The machine the figures come from, and how loaded it is now."""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(pages / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }


def median_of(runs: Sequence[dict[str, Any]], *path: str) -> float | None:
    """The median of a figure over runs (None when no run has it)."""
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(value)
    return round(statistics.median(values), 2) if values else None


def step_medians(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The median seconds of each step over runs, slowest first."""
    names = {name for run in runs for name in run["steps"]}
    medians = {name: median_of(runs, "steps", name) or 0.0 for name in names}
    return dict(sorted(medians.items(), key=lambda item: -item[1]))


def minimal_upload_requests(profiles: int, events: int, batch_size: int) -> int:
    """The fewest /1/upload requests that carry `profiles` and `events` records."""
    return math.ceil(profiles / batch_size) + math.ceil(events / batch_size)


def write_result(name: str, figures: dict[str, Any], output: Path | None = None) -> Path:
    """Write a benchmark's figures, with the command and the machine, as JSON."""
    path = output or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name.split("_n")[0] if output is None else name,
        "command": " ".join([".venv/bin/python", *_relative_argv()]),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        **figures,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def common_arguments(parser: argparse.ArgumentParser, default_runs: int) -> None:
    """The options every pipeline benchmark takes."""
    parser.add_argument("--contacts", type=int, default=10_000, help="Synthetic Contacts.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the synthetic CRM.")
    parser.add_argument("--runs", type=int, default=default_runs, help="Repetitions (median).")
    parser.add_argument(
        "--bulk-read-threshold",
        type=int,
        default=None,
        help="Override zoho.bulk_read_threshold of the packaged sync configuration.",
    )
    parser.add_argument(
        "--postgres-url",
        default=None,
        help="Use a scratch database on this PostgreSQL server instead of an SQLite file.",
    )
    parser.add_argument("--output", type=Path, default=None, help="Write the JSON here.")


def result_name(benchmark: str, contacts: int, postgres_url: str | None) -> str:
    """The results file stem of one benchmark at one size on one warehouse."""
    return f"{benchmark}_n{contacts}_{'postgresql' if postgres_url else 'sqlite'}"


def _relative_argv() -> list[str]:
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return [str(shown), *sys.argv[1:]]


def zoho_usage(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Zoho calls and credits between two `/__sandbox/stats` answers."""
    calls = _difference(before.get("calls", {}), after.get("calls", {}))
    return {
        "calls": sum(calls.values()),
        "credits": after.get("total_credits", 0) - before.get("total_credits", 0),
        "calls_by_endpoint": calls,
    }


def clevertap_usage(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """CleverTap requests and records between two `/__sandbox/stats` answers."""
    requests_by_endpoint = _difference(before.get("requests", {}), after.get("requests", {}))
    records = _difference(before.get("records", {}), after.get("records", {}))
    return {
        "requests": sum(requests_by_endpoint.values()),
        "upload_requests": requests_by_endpoint.get(UPLOAD_ENDPOINT, 0),
        "trigger_requests": requests_by_endpoint.get(TRIGGER_ENDPOINT, 0),
        "records_received": records.get("received", 0),
        "requests_by_endpoint": requests_by_endpoint,
    }


def _difference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    keys = sorted(set(before) | set(after))
    changes = {key: int(after.get(key, 0)) - int(before.get(key, 0)) for key in keys}
    return {key: value for key, value in changes.items() if value}


def _get_json(url: str) -> dict[str, Any]:
    response = requests.get(url, timeout=ADMIN_TIMEOUT_SECONDS)
    response.raise_for_status()
    return response.json()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ------------------------------------------------------------------ the child process


def _run_in_this_process(job: str, output: Path, profile_to: Path | None = None) -> None:
    """Run `job` of the code location here and write its figures to `output`.

    With `profile_to`, the run is profiled with pyinstrument (the `bench` extra) and the call
    tree written there as text.
    """
    profiler = None
    if profile_to is not None:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.01)
        profiler.start()
    imported = time.perf_counter()
    import dagster as dg

    from ct_pipeline.definitions import build_definitions

    definitions = build_definitions()
    import_seconds = time.perf_counter() - imported
    with dg.DagsterInstance.ephemeral() as instance, _RssSampler() as sampler:
        started = time.perf_counter()
        result = definitions.resolve_job_def(job).execute_in_process(
            instance=instance, run_config=QUIET_LOGS, raise_on_error=False
        )
        wall = time.perf_counter() - started
        windows = _step_windows(instance, result.run_id)
    if profiler is not None and profile_to is not None:
        profiler.stop()
        profile_to.write_text(profiler.output_text(unicode=True, show_all=False))
    failures = [
        event.step_key for event in result.all_events if event.event_type_value == "STEP_FAILURE"
    ]
    figures = {
        "job": job,
        "success": result.success,
        "failed_steps": failures,
        "wall_seconds": round(wall, 2),
        "import_seconds": round(import_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "steps": _step_seconds(windows),
        "step_peak_rss_mb": _step_peak_rss(windows, sampler.samples),
        "metadata": _asset_metadata(result),
        "checks_failed": [
            c.check_name for c in result.get_asset_check_evaluations() if not c.passed
        ],
    }
    output.write_text(json.dumps(figures, default=str))


def _step_windows(instance: Any, run_id: str) -> dict[str, tuple[float, float]]:
    """(start, end) wall-clock times of each step of a run, from its event log."""
    started: dict[str, float] = {}
    windows: dict[str, tuple[float, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started[entry.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            begin = started.get(entry.step_key, entry.timestamp)
            windows[entry.step_key] = (begin, entry.timestamp)
    return windows


def _step_seconds(windows: dict[str, tuple[float, float]]) -> dict[str, float]:
    seconds = {step: round(end - begin, 3) for step, (begin, end) in windows.items()}
    return dict(sorted(seconds.items(), key=lambda item: -item[1]))


def _step_peak_rss(
    windows: dict[str, tuple[float, float]], samples: list[tuple[float, float]]
) -> dict[str, float]:
    """The highest sampled RSS (MB) while each step ran, for the steps above 100 MB."""
    peaks = {}
    for step, (begin, end) in windows.items():
        during = [rss for moment, rss in samples if begin <= moment <= end]
        if during and max(during) >= 100:
            peaks[step] = round(max(during), 1)
    return dict(sorted(peaks.items(), key=lambda item: -item[1]))


class _RssSampler:
    """This process's resident memory, sampled every RSS_SAMPLE_SECONDS in a daemon thread."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        page_mb = os.sysconf("SC_PAGE_SIZE") / 1024 / 1024
        with open("/proc/self/statm") as statm:
            while not self._stop.is_set():
                statm.seek(0)
                self.samples.append((time.time(), int(statm.read().split()[1]) * page_mb))
                self._stop.wait(RSS_SAMPLE_SECONDS)


def _asset_metadata(result: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        values = {}
        for key, entry in materialization.metadata.items():
            value = entry.value
            if value is None or isinstance(value, int | float | str | bool | dict):
                values[key] = value
        found[materialization.asset_key.to_user_string()] = values
    return found


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description="Run one sync job and write its figures.")
    _parser.add_argument("--job", required=True)
    _parser.add_argument("--output", type=Path, required=True)
    _parser.add_argument("--profile", type=Path, default=None)
    _arguments = _parser.parse_args()
    _run_in_this_process(_arguments.job, _arguments.output, _arguments.profile)
