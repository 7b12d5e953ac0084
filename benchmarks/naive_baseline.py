"""Benchmark: the Zoho-workflow way of feeding CleverTap, on the same sandbox, for the ratios.

What teams build with Zoho's own tooling: a workflow function on every Contact save posts that
one profile to CleverTap's /1/upload, and a scheduled function re-uploads every Contact each
night, reading the module 200 records a page and posting 100 profiles a request, one request
after another; the identity is the Mobile field as typed (else the Email), with no
normalisation, duplicate grouping or change detection. Measured here, in a process of its own
against fresh emulators of N contacts:

- `nightly`: the full re-upload (wall time, Zoho calls, CleverTap requests and records);
- `saves`: `--change` (default 1%) of the Contacts saved, one request each.

Written to benchmarks/results/naive_baseline_n<N>.json.

    .venv/bin/python benchmarks/naive_baseline.py --contacts 1000000
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import resource
import time
from typing import Any

import harness
import requests

BENCHMARK = "naive_baseline"
RECORDS_PER_REQUEST = 100
FIELDS = ["Full_Name", "Email", "Mobile", "Phone", "Mailing_City", "Modified_Time"]


def main() -> None:
    """Time the naive nightly re-upload and per-save uploads against fresh emulators."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=10_000, help="Synthetic Contacts.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the synthetic CRM.")
    parser.add_argument("--change", type=float, default=0.01, help="Share of Contacts saved.")
    args = parser.parse_args()

    with harness.emulators(args.contacts, args.seed) as sandbox:
        spawn = multiprocessing.get_context("spawn")
        with spawn.Pool(1) as pool:
            figures = pool.apply(_naive_run, (sandbox.environment, args.change))
    figures["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
    print(
        f"naive nightly: {figures['nightly']['wall_seconds']:.1f}s, "
        f"{figures['nightly']['clevertap_requests']} CleverTap requests; "
        f"{figures['saves']['saves']} saves: {figures['saves']['wall_seconds']:.1f}s, "
        f"{figures['saves']['clevertap_requests']} requests"
    )
    path = harness.write_result(
        f"{BENCHMARK}_n{args.contacts}",
        {"contacts": args.contacts, "seed": args.seed, "change": args.change, **figures},
    )
    print(f"wrote {path}")


def _naive_run(environment: dict[str, str], change: float) -> dict[str, Any]:
    from ct_pipeline.zoho import ZohoCRMResource

    # The emulators' counters, read through their admin API (the processes are the parent's).
    sandbox = harness.Emulators(contacts=0, seed=0, environment=environment)

    zoho = ZohoCRMResource(
        client_id=environment["ZOHO_CLIENT_ID"],
        client_secret=environment["ZOHO_CLIENT_SECRET"],
        refresh_token=environment["ZOHO_REFRESH_TOKEN"],
        accounts_url=environment["ZOHO_ACCOUNTS_URL"],
        api_domain=environment["ZOHO_API_DOMAIN"],
    )
    upload_url = f"{environment['CLEVERTAP_API_URL']}/1/upload"
    headers = {
        "X-CleverTap-Account-Id": environment["CLEVERTAP_ACCOUNT_ID"],
        "X-CleverTap-Passcode": environment["CLEVERTAP_PASSCODE"],
        "Content-Type": "application/json; charset=utf-8",
    }
    http = requests.Session()

    load_before = os.getloadavg()
    zoho_before, clevertap_before = sandbox.zoho_stats(), sandbox.clevertap_stats()
    started = time.perf_counter()
    contacts = zoho.read_records("Contacts", FIELDS).records
    read_seconds = time.perf_counter() - started
    profiles = [_profile(row) for row in contacts.itertuples(index=False)]
    profiles = [profile for profile in profiles if profile is not None]
    for start in range(0, len(profiles), RECORDS_PER_REQUEST):
        body = {"d": profiles[start : start + RECORDS_PER_REQUEST]}
        http.post(upload_url, json=body, headers=headers, timeout=60).raise_for_status()
    nightly_seconds = time.perf_counter() - started
    nightly = _usage(sandbox, zoho_before, clevertap_before)

    saved = profiles[:: max(int(round(1 / change)), 1)]
    zoho_before, clevertap_before = sandbox.zoho_stats(), sandbox.clevertap_stats()
    started = time.perf_counter()
    for profile in saved:
        http.post(upload_url, json={"d": [profile]}, headers=headers, timeout=60)
    saves_seconds = time.perf_counter() - started
    saves = _usage(sandbox, zoho_before, clevertap_before)

    return {
        "load_average_before": [round(value, 2) for value in load_before],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "nightly": {
            "wall_seconds": round(nightly_seconds, 2),
            "zoho_read_seconds": round(read_seconds, 2),
            "contacts_read": len(contacts),
            "profiles_uploaded": len(profiles),
            "expected_requests": math.ceil(len(profiles) / RECORDS_PER_REQUEST),
            **nightly,
        },
        "saves": {
            "saves": len(saved),
            "wall_seconds": round(saves_seconds, 2),
            "seconds_per_save": round(saves_seconds / max(len(saved), 1), 4),
            **saves,
        },
    }


def _profile(row: Any) -> dict[str, Any] | None:
    identity = row.Mobile if isinstance(row.Mobile, str) and row.Mobile else None
    identity = identity or (row.Email if isinstance(row.Email, str) and row.Email else None)
    if identity is None:
        return None
    data = {
        "Name": row.Full_Name,
        "Email": row.Email,
        "Phone": row.Mobile,
        "City": row.Mailing_City,
    }
    return {
        "type": "profile",
        "identity": identity,
        "ts": int(time.time()),
        "profileData": {key: value for key, value in data.items() if isinstance(value, str)},
    }


def _usage(
    sandbox: harness.Emulators, zoho_before: dict[str, Any], clevertap_before: dict[str, Any]
) -> dict[str, Any]:
    zoho = harness.zoho_usage(zoho_before, sandbox.zoho_stats())
    clevertap = harness.clevertap_usage(clevertap_before, sandbox.clevertap_stats())
    return {
        "zoho_calls": zoho["calls"],
        "zoho_credits": zoho["credits"],
        "clevertap_requests": clevertap["requests"],
        "clevertap_records": clevertap["records_received"],
    }


if __name__ == "__main__":
    main()
