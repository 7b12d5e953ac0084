"""CRM edit -> CleverTap latency through a real dagster-daemon on PostgreSQL storage.

Starts the same stack as the end-to-end test (scratch PostgreSQL database, the project's
dagster.yaml, both emulators, `dagster-daemon run -w workspace.yaml`), lets the change sensor
run the first sync, then edits one Contact's city at a time and times how long CleverTap takes
to hold it. For each edit it also splits the time into: waiting for the sensor tick that
requested the run, the run's wait in the queue and start-up, and the run itself.

    DAGSTER_PG_HOST=127.0.0.1 DAGSTER_PG_PORT=5432 DAGSTER_PG_USER=postgres DAGSTER_PG_DB=postgres \
        PYTHONPATH=. .venv/bin/python benchmarks/automation_latency.py --edits 8

Writes benchmarks/results/automation_latency.json, with the commit measured and the machine's
load average before and after (the daemon, the emulators and the runs share its cores).
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import harness

from ct_pipeline_tests.automation.daemon import DaemonStack, postgres_configured, running_stack
from ct_pipeline_tests.automation.test_daemon_end_to_end import (
    city_in_clevertap,
    pushed_profiles,
    succeeded,
)

RESULTS = Path(__file__).parent / "results" / "automation_latency.json"
CITIES = ["Shillong", "Kohima", "Imphal", "Aizawl", "Agartala", "Gangtok", "Itanagar", "Dispur"]


def main() -> None:
    """Run the measurement and write the JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=8)
    parser.add_argument("--contacts", type=int, default=200)
    parser.add_argument("--sensor-interval", type=int, default=None)
    args = parser.parse_args()
    if not postgres_configured():
        raise SystemExit("set DAGSTER_PG_HOST, DAGSTER_PG_PORT, DAGSTER_PG_USER, DAGSTER_PG_DB")

    load_before = [round(value, 2) for value in os.getloadavg()]
    with (
        tempfile.TemporaryDirectory() as workdir,
        running_stack(
            Path(workdir), contacts=args.contacts, sensor_interval=args.sensor_interval
        ) as stack,
    ):
        started = time.monotonic()
        stack.wait_for("the first sync", lambda: succeeded(stack), 180)
        first_sync = time.monotonic() - started
        profiles = pushed_profiles(stack)
        samples = [
            measure_edit(stack, row.crm_contact_id, row.identity, CITIES[n % len(CITIES)])
            for n, row in enumerate(profiles.iloc[: args.edits].itertuples())
        ]

    totals = [sample["total_seconds"] for sample in samples]
    report = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "load_average_before": load_before,
        "contacts": args.contacts,
        "sensor_interval_seconds": args.sensor_interval or "default",
        "edits": len(samples),
        "first_sync_seconds_from_daemon_start": round(first_sync, 1),
        "median_seconds": round(statistics.median(totals), 1),
        "worst_seconds": round(max(totals), 1),
        "best_seconds": round(min(totals), 1),
        "median_parts_seconds": {
            part: round(statistics.median(sample[part] for sample in samples), 1)
            for part in ("until_run_created", "queue_and_start_up", "run_until_upload")
        },
        "samples": samples,
    }
    harness.write_result(RESULTS.stem, report, RESULTS)
    print(json.dumps({key: value for key, value in report.items() if key != "samples"}, indent=2))


def measure_edit(stack: DaemonStack, contact_id: str, identity: str, city: str) -> dict:
    """Edit one city, wait for CleverTap to hold it, and split the time by stage."""
    known = {run.run_id for run in stack.runs()}
    edited_at = time.time()
    stack.zoho("POST", "records/Contacts", [{"id": contact_id, "Mailing_City": city}])
    stack.wait_for(f"City {city}", lambda: city_in_clevertap(stack, identity) == city, 120)
    arrived_at = time.time()

    new_runs = [run for run in stack.runs("incremental_sync") if run.run_id not in known]
    run = stack.instance.get_run_record_by_id(new_runs[-1].run_id) if new_runs else None
    created = run.create_timestamp.timestamp() if run else arrived_at
    run_started = run.start_time if run and run.start_time else created
    return {
        "total_seconds": round(arrived_at - edited_at, 2),
        "until_run_created": round(created - edited_at, 2),
        "queue_and_start_up": round(run_started - created, 2),
        "run_until_upload": round(arrived_at - run_started, 2),
    }


def _commit() -> str:
    """The commit measured, marked when the working tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


if __name__ == "__main__":
    main()
