"""CleverTap client throughput: N profiles uploaded to the emulator, served in its own process.

    .venv/bin/python benchmarks/clevertap_upload.py --profiles 200000 --concurrency 5 --runs 3

The emulator runs as `ct-pipeline sandbox --clevertap-port P --contacts 0`, so the client and
the server do not share a process. Each run starts an empty emulator, builds and validates the
records, uploads them in batches of 1,000, and then looks up a sample of profiles. Figures: wall
time of the upload, records per second, requests, the most requests the emulator saw in flight,
lookup latency, and the client's peak RSS. Written to benchmarks/results/clevertap_upload.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from ct_pipeline.clevertap import CleverTapResource
from ct_pipeline.clevertap.payloads import build_profile_record
from ct_pipeline.clevertap.results import UploadItem
from ct_pipeline.sandbox import credentials

RESULTS = Path(__file__).resolve().parent / "results" / "clevertap_upload.json"
CT_PIPELINE = Path(sys.executable).parent / "ct-pipeline"
LOOKUPS = 200
STARTUP_SECONDS = 60


def main() -> None:
    """Upload `--profiles` records `--runs` times and write the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()

    items = profile_items(arguments.profiles)
    runs = [measure(items, arguments.concurrency) for _ in range(arguments.runs)]
    figures = {
        "benchmark": "clevertap_upload",
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
        "profiles": arguments.profiles,
        "concurrency": arguments.concurrency,
        "median_upload_seconds": statistics.median(run["upload_seconds"] for run in runs),
        "median_records_per_second": statistics.median(run["records_per_second"] for run in runs),
        "median_lookup_ms": statistics.median(run["lookup_median_ms"] for run in runs),
        "client_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "runs": runs,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({key: value for key, value in figures.items() if key != "runs"}, indent=2))


def profile_items(count: int) -> list[UploadItem]:
    """Profiles shaped like the pipeline's: an E.164 identity and a dozen properties."""
    now = int(time.time())
    return [
        UploadItem(
            key=str(number),
            record=build_profile_record(
                f"+9190{number:08d}",
                {
                    "Name": f"Benchmark Person {number}",
                    "City": "Bengaluru",
                    "crm_contact_id": str(5_000_000 + number),
                    "crm_account_type": "Retail",
                    "subscription_plan": "Gold",
                    "subscription_value_inr": 4999,
                    "crm_deal_stage": "Approved",
                    "account_manager": "Asha Rao",
                    "has_open_escalation": number % 17 == 0,
                },
                now,
            ),
        )
        for number in range(count)
    ]


def measure(items: list[UploadItem], concurrency: int) -> dict:
    """One upload of `items` to a fresh emulator process."""
    port = free_port()
    server = subprocess.Popen(
        [CT_PIPELINE, "sandbox", "--clevertap-port", str(port), "--contacts", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url)
        clevertap = CleverTapResource(
            account_id=credentials.SANDBOX_CLEVERTAP_ACCOUNT_ID,
            passcode=credentials.SANDBOX_CLEVERTAP_PASSCODE,
            api_url=url,
            max_concurrency=concurrency,
        )
        started = time.perf_counter()
        report = clevertap.upload(items)
        upload_seconds = time.perf_counter() - started
        accepted = sum(outcome.outcome == "accepted" for outcome in report.outcomes)
        lookups = []
        for number in range(0, len(items), max(len(items) // LOOKUPS, 1))[:LOOKUPS]:
            started = time.perf_counter()
            clevertap.lookup_profile(identity=items[number].record["identity"])
            lookups.append((time.perf_counter() - started) * 1000)
        stats = requests.get(f"{url}/__sandbox/stats", timeout=30).json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "upload_seconds": round(upload_seconds, 2),
        "records_per_second": round(len(items) / upload_seconds),
        "accepted": accepted,
        "requests": report.requests,
        "max_in_flight": stats.get("max_in_flight", {}).get("/1/upload"),
        "lookup_median_ms": round(statistics.median(lookups), 2),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/__sandbox/stats", timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(f"the CleverTap emulator did not answer at {url}")


if __name__ == "__main__":
    main()
