"""Benchmark: read N synthetic contacts from the Zoho emulator through ZohoCRMResource.

The emulator runs in a child process, and each method named in --methods runs in a fresh
process of its own, so each peak RSS reported is that read's client alone (the DataFrame it
builds included), not the emulator's and not an earlier read's. Figures go to
benchmarks/results/zoho_read.json.

    .venv/bin/python benchmarks/zoho_read.py --contacts 1000000 --methods bulk_read,read_records
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path
from typing import Any

CONTACT_FIELDS = [
    "First_Name",
    "Last_Name",
    "Email",
    "Phone",
    "Mobile",
    "Mailing_City",
    "Mailing_Country",
    "Subscription_Plan",
    "Subscription_Value_INR",
    "Lifecycle_Stage",
    "App_Uninstalled",
    "Email_Opt_Out",
    "Owner",
    "Account_Name",
    "Created_Time",
    "Modified_Time",
]
RESULTS = Path(__file__).parent / "results" / "zoho_read.json"
METHODS = ("bulk_read", "read_records", "read_all")


def main() -> None:
    """Serve the emulator, time each read method, write the JSON figures."""
    args = _arguments()
    ready: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    emulator = multiprocessing.Process(
        target=_serve_emulator, args=(args.contacts, args.seed, ready, stop), daemon=True
    )
    started = time.perf_counter()
    emulator.start()
    url = ready.get(timeout=3600)
    setup_seconds = time.perf_counter() - started
    print(f"emulator with {args.contacts:,} contacts ready at {url} in {setup_seconds:.1f}s")

    runs = []
    spawn = multiprocessing.get_context("spawn")
    try:
        for method in args.methods.split(","):
            if method.strip() not in METHODS:
                raise SystemExit(f"unknown method {method!r}; use {', '.join(METHODS)}")
            with spawn.Pool(1) as pool:
                runs.append(pool.apply(_time_read, (method.strip(), url)))
            print(json.dumps(runs[-1]))
    finally:
        stop.set()
        emulator.join(timeout=30)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    figures = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "contacts": args.contacts,
        "seed": args.seed,
        "fields": len(CONTACT_FIELDS),
        "emulator_setup_seconds": round(setup_seconds, 1),
        "runs": runs,
    }
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS}")


def _time_read(method: str, url: str) -> dict[str, Any]:
    from ct_pipeline.sandbox import credentials
    from ct_pipeline.zoho import ZohoCRMResource

    zoho = ZohoCRMResource(
        client_id=credentials.SANDBOX_ZOHO_CLIENT_ID,
        client_secret=credentials.SANDBOX_ZOHO_CLIENT_SECRET,
        refresh_token=credentials.SANDBOX_ZOHO_REFRESH_TOKEN,
        accounts_url=url,
        api_domain=url,
        bulk_poll_interval=0.2,
    )
    rss_before = _peak_rss_mb()
    started = time.perf_counter()
    if method == "read_records":
        frame = zoho.read_records("Contacts", CONTACT_FIELDS).records
    else:
        frame = getattr(zoho, method)("Contacts", CONTACT_FIELDS)
    seconds = time.perf_counter() - started
    usage = zoho.usage()
    return {
        "method": method,
        "records": len(frame),
        "unique_ids": int(frame["id"].nunique()),
        "wall_seconds": round(seconds, 2),
        "records_per_second": round(len(frame) / seconds) if seconds else None,
        "frame_memory_mb": round(frame.memory_usage(deep=True).sum() / 2**20, 1),
        "peak_rss_mb_at_start": round(rss_before, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "calls": usage["calls"],
        "estimated_credits": usage["total_credits"],
    }


def _serve_emulator(contacts: int, seed: int, ready: multiprocessing.Queue, stop: Any) -> None:
    from ct_pipeline.sandbox.server import start_in_thread
    from ct_pipeline.sandbox.synthetic import generate_crm
    from ct_pipeline.sandbox.zoho_emulator import create_zoho_app

    server = start_in_thread(create_zoho_app(generate_crm(contacts, seed=seed)))
    ready.put(server.url)
    stop.wait()
    server.stop()


def _peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--methods", default="bulk_read,read_records", help=f"comma list of {', '.join(METHODS)}"
    )
    return parser.parse_args()


if __name__ == "__main__":
    main()
