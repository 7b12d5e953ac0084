"""Measure the Zoho emulator at scale: page latency over HTTP, index rebuilds, Bulk Read, memory.

Run: `.venv/bin/python benchmarks/zoho_emulator_pages.py [--contacts 1000000] [--pages 300]`.
Serves `generate_crm(N)` with `create_zoho_app` on 127.0.0.1 and, with a plain HTTP client:
- follows `page_token` through `--pages` pages of 200 Contacts sorted by Modified_Time (the
  incremental reader's request, 20 fields), timing each call end to end;
- times the first page of a new If-Modified-Since window and the default id-desc listing;
- times the first page after a 100-record update (the sort orders are rebuilt lazily);
- times one Bulk Read job of 200,000 records from creation to the downloaded zip;
- times the same page-token pages in process (the handler alone, no HTTP).
Writes `benchmarks/results/zoho_emulator_pages.json` with medians, p95s and the peak RSS of the
process (server and client share it; Linux `ru_maxrss`).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from ct_pipeline.sandbox.credentials import (
    SANDBOX_ZOHO_CLIENT_ID,
    SANDBOX_ZOHO_CLIENT_SECRET,
    SANDBOX_ZOHO_REFRESH_TOKEN,
)
from ct_pipeline.sandbox.server import serving
from ct_pipeline.sandbox.synthetic import generate_crm
from ct_pipeline.sandbox.zoho_emulator import create_zoho_app, records

DEFAULT_CONTACTS = 1_000_000
DEFAULT_PAGES = 300
RESULTS = Path(__file__).parent / "results" / "zoho_emulator_pages.json"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
FIELDS = (
    "First_Name,Last_Name,Full_Name,Email,Secondary_Email,Phone,Mobile,Mailing_City,"
    "Mailing_State,Date_of_Birth,Lead_Source,Subscription_Plan,Subscription_Value_INR,"
    "Customer_Tier,Lifecycle_Stage,App_Uninstalled,Email_Opt_Out,Owner,Account_Name,Modified_Time"
)
INCREMENTAL = {"fields": FIELDS, "per_page": 200, "sort_by": "Modified_Time", "sort_order": "asc"}


def main() -> None:
    """Generate, serve, measure, and write the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS)
    parser.add_argument("--pages", type=int, default=DEFAULT_PAGES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    started = time.perf_counter()
    crm = generate_crm(args.contacts, seed=args.seed, now=NOW)
    generation_s = time.perf_counter() - started
    rss_after_generation = _peak_rss_mb()

    started = time.perf_counter()
    app = create_zoho_app(crm, bulk_job_seconds=0)
    app_s = time.perf_counter() - started

    with serving(app) as server:
        session = _session(server.url)
        figures = _measure(server.url, session, args.pages)
    figures["handler_median_ms"] = round(_handler_median_ms(app, args.pages), 2)

    result = {
        "benchmark": "zoho_emulator_pages",
        "contacts": args.contacts,
        "rows": {name: len(crm.module(name)) for name in ("Contacts", "Leads", "Deals", "Cases")},
        "generation_seconds": round(generation_s, 2),
        "create_app_seconds": round(app_s, 2),
        **figures,
        "rss_after_generation_mb": round(rss_after_generation),
        "peak_rss_mb": round(_peak_rss_mb()),
        "machine": {
            "python": platform.python_version(),
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _measure(url: str, session: requests.Session, pages: int) -> dict[str, Any]:
    contacts = url + "/crm/v8/Contacts"

    first_ms, response = _timed(session, contacts, INCREMENTAL)
    token_pages = []
    for _ in range(pages):
        token = response.json()["info"]["next_page_token"]
        elapsed, response = _timed(session, contacts, dict(INCREMENTAL, page_token=token))
        token_pages.append(elapsed)

    since = (NOW - timedelta(days=30)).isoformat()
    window_first_ms, window = _timed(session, contacts, INCREMENTAL, {"If-Modified-Since": since})
    window_next_ms, _ = _timed(
        session,
        contacts,
        dict(INCREMENTAL, page_token=window.json()["info"]["next_page_token"]),
        {"If-Modified-Since": since},
    )
    id_desc = [_timed(session, contacts, {"fields": FIELDS})[0] for _ in range(20)]

    ids = [record["id"] for record in response.json()["data"]][:100]
    started = time.perf_counter()
    update = session.put(
        contacts, json={"data": [{"id": i, "Lifecycle_Stage": "Active"} for i in ids]}, timeout=60
    )
    update_ms = (time.perf_counter() - started) * 1000
    assert update.status_code == 200, update.text
    after_update_ms, _ = _timed(session, contacts, INCREMENTAL)

    bulk_s, bulk_count, zip_mb = _bulk_read(url, session)
    return {
        "page_first_cold_ms": round(first_ms, 1),
        "page_token_pages": pages,
        "page_token_median_ms": round(statistics.median(token_pages), 2),
        "page_token_p95_ms": round(_p95(token_pages), 2),
        "if_modified_since_first_page_ms": round(window_first_ms, 1),
        "if_modified_since_next_page_ms": round(window_next_ms, 2),
        "id_desc_page_median_ms": round(statistics.median(id_desc), 2),
        "update_100_records_ms": round(update_ms, 1),
        "first_page_after_update_ms": round(after_update_ms, 1),
        "bulk_read_200k_seconds": round(bulk_s, 2),
        "bulk_read_records": bulk_count,
        "bulk_read_zip_mb": round(zip_mb, 1),
    }


def _handler_median_ms(app: Any, pages: int) -> float:
    """The server's own cost of a page-token page, without HTTP and the client's JSON parsing."""
    emulator = app.state.zoho_emulator
    query = {key: str(value) for key, value in INCREMENTAL.items()}
    reply = records.list_records(emulator.store, emulator.codec, "Contacts", query, None)
    timings = []
    for _ in range(pages):
        token = reply.body["info"]["next_page_token"]
        started = time.perf_counter()
        reply = records.list_records(
            emulator.store, emulator.codec, "Contacts", dict(query, page_token=token), None
        )
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def _bulk_read(url: str, session: requests.Session) -> tuple[float, int, float]:
    started = time.perf_counter()
    created = session.post(
        url + "/crm/bulk/v8/read",
        json={"query": {"module": {"api_name": "Contacts"}, "fields": FIELDS.split(",")}},
        timeout=60,
    )
    job_id = created.json()["data"][0]["details"]["id"]
    job = session.get(f"{url}/crm/bulk/v8/read/{job_id}", timeout=600).json()["data"][0]
    archive = session.get(url + job["result"]["download_url"], timeout=600)
    return time.perf_counter() - started, job["result"]["count"], len(archive.content) / 2**20


def _timed(
    session: requests.Session,
    url: str,
    params: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[float, requests.Response]:
    started = time.perf_counter()
    response = session.get(url, params=params, headers=headers or {}, timeout=60)
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text
    return elapsed_ms, response


def _session(url: str) -> requests.Session:
    grant = {
        "grant_type": "refresh_token",
        "client_id": SANDBOX_ZOHO_CLIENT_ID,
        "client_secret": SANDBOX_ZOHO_CLIENT_SECRET,
        "refresh_token": SANDBOX_ZOHO_REFRESH_TOKEN,
    }
    token = requests.post(f"{url}/oauth/v2/token", data=grant, timeout=30).json()
    session = requests.Session()
    session.headers["Authorization"] = f"Zoho-oauthtoken {token['access_token']}"
    return session


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


if __name__ == "__main__":
    main()
