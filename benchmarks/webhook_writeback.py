"""Measure the write-back flow: how fast the receiver answers, and how long a write-back run takes.

Run: `.venv/bin/python benchmarks/webhook_writeback.py [--events 1000] [--repeats 5]`.
With `CT_TEST_POSTGRES_URL` set, the receiver is also measured on PostgreSQL.

1. Receiver: deliveries of 1, 100, 1,000 and 5,000 profiles are POSTed over HTTP to the receiver
   (uvicorn in a thread), each with new events, and the time to the 200 is taken. CleverTap waits
   3 to 5 seconds for the answer (research/clevertap.md §6).
2. Write-back: `--events` events for distinct Contacts of the Zoho emulator are received, then
   one `crm_writeback` run matches and writes them (field updates and Notes, 100 per call).
Writes `benchmarks/results/webhook_writeback.json`. Timings are the median of `--repeats`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import requests
import sqlalchemy as sa

from ct_pipeline.assets.writeback import WRITEBACK_ASSETS, WRITEBACK_JOBS
from ct_pipeline.config import SyncConfigResource
from ct_pipeline.sandbox.launch import start_sandbox
from ct_pipeline.sandbox.server import serving
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.resource import dispose_engine
from ct_pipeline.webhooks import WEBHOOK_PATH, create_webhook_app

RESULTS = Path(__file__).parent / "results" / "webhook_writeback.json"
TOKEN = "benchmark-webhook-secret-0123456789"
DELIVERY_SIZES = (1, 100, 1_000, 5_000)
EVENT_TIME = int(datetime(2026, 3, 5, tzinfo=UTC).timestamp())


def main() -> None:
    """Run both measurements and write the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    figures: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            # Other work on a shared machine slows wall-clock figures; this says how busy.
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
        "receiver_seconds_to_200": {},
    }
    with tempfile.TemporaryDirectory() as folder:
        sqlite = WarehouseResource(url=f"sqlite:///{Path(folder) / 'warehouse.sqlite'}")
        figures["receiver_seconds_to_200"]["sqlite"] = receiver_latency(sqlite, args.repeats)
        postgres_base = os.environ.get("CT_TEST_POSTGRES_URL")
        if postgres_base:
            with _postgres_schema(postgres_base) as url:
                postgres = WarehouseResource(url=url)
                figures["receiver_seconds_to_200"]["postgres"] = receiver_latency(
                    postgres, args.repeats
                )
                dispose_engine(url)
        sqlite_run = WarehouseResource(url=f"sqlite:///{Path(folder) / 'run.sqlite'}")
        figures["writeback_run"] = writeback_run(sqlite_run, args.events)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))  # noqa: T201 - a benchmark script reports on stdout


def receiver_latency(warehouse: WarehouseResource, repeats: int) -> dict[str, Any]:
    """Median seconds from POST to 200 per delivery size, and the body sizes."""
    results: dict[str, Any] = {}
    with serving(create_webhook_app(warehouse, TOKEN)) as server, requests.Session() as http:
        for size in DELIVERY_SIZES:
            timings = []
            body_bytes = 0
            for _ in range(repeats):
                body = json.dumps(
                    _delivery([f"+9198{uuid.uuid4().int % 10**8:08d}" for _ in range(size)])
                ).encode()
                body_bytes = len(body)
                started = time.perf_counter()
                response = http.post(
                    f"{server.url}{WEBHOOK_PATH}",
                    data=body,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=60,
                )
                timings.append(time.perf_counter() - started)
                response.raise_for_status()
            results[str(size)] = {
                "median_seconds": round(statistics.median(timings), 4),
                "max_seconds": round(max(timings), 4),
                "body_bytes": body_bytes,
            }
    return results


def writeback_run(warehouse: WarehouseResource, events: int) -> dict[str, Any]:
    """Receive `events` events for distinct Contacts, then time one crm_writeback run."""
    sandbox = start_sandbox(contacts=events * 2, seed=1, clevertap_port=None)
    try:
        zoho = sandbox.zoho_resource()
        contact_ids = zoho.read_records("Contacts", ["Last_Name"]).records["id"].tolist()
        profiles = [
            {
                "profileData": {"crm_contact_id": contact_id},
                "event_properties": {"event_time": EVENT_TIME},
            }
            for contact_id in contact_ids[:events]
        ]
        with serving(create_webhook_app(warehouse, TOKEN)) as server:
            for start in range(0, len(profiles), 1_000):
                body = {
                    "key_values": {"event": "Subscription Cancelled"},
                    "profiles": profiles[start : start + 1_000],
                }
                requests.post(
                    f"{server.url}{WEBHOOK_PATH}",
                    json=body,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=60,
                ).raise_for_status()

        defs = dg.Definitions(
            assets=WRITEBACK_ASSETS,
            jobs=WRITEBACK_JOBS,
            resources={"zoho": zoho, "warehouse": warehouse, "sync_config": SyncConfigResource()},
        )
        started = time.perf_counter()
        result = defs.resolve_job_def("crm_writeback").execute_in_process(
            instance=dg.DagsterInstance.ephemeral()
        )
        seconds = time.perf_counter() - started
        stats = requests.get(f"{sandbox.zoho.url}/__sandbox/stats", timeout=30).json()["calls"]
        applied = warehouse.read_sql(
            "SELECT COUNT(*) AS n FROM clevertap_webhook_inbox WHERE status = 'applied'"
        )["n"].iloc[0]
        return {
            "events": events,
            "applied": int(applied),
            "success": result.success,
            "run_seconds": round(seconds, 2),
            "update_calls": stats.get("PUT /crm/v8/Contacts", 0),
            "note_calls": stats.get("POST /crm/v8/Notes", 0),
        }
    finally:
        sandbox.stop()


def _delivery(identities: list[str]) -> dict[str, Any]:
    return {
        "targetId": 1700000101,
        "key_values": {"event": "Charged"},
        "profiles": [
            {
                "identity": identity,
                "objectId": f"__g{n}",
                "profileData": {"Last Score": n},
                "event_properties": {"event_time": EVENT_TIME, "Amount": 499},
            }
            for n, identity in enumerate(identities)
        ],
    }


class _postgres_schema:
    """A throw-away schema in the benchmark PostgreSQL database."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.schema = f"bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        self.admin = sa.create_engine(self.base, poolclass=sa.pool.NullPool)
        with self.admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
        url = sa.engine.make_url(self.base).update_query_dict(
            {"options": f"-csearch_path={self.schema}"}
        )
        return url.render_as_string(hide_password=False)

    def __exit__(self, *exc_info: object) -> None:
        with self.admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        self.admin.dispose()


if __name__ == "__main__":
    main()
