"""Benchmark: `incremental_sync` after one Contact was edited, with N contacts already synced.

Fresh emulators and an empty warehouse; `nightly_full_sync` syncs everyone, one untimed
`incremental_sync` catches up (Zoho's Modified_Time cursor is inclusive, so the records of the
synthetic CRM's last second are read once more), then each of `--runs` trials edits one
Contact's Mailing_City through the Zoho emulator's admin API and times `incremental_sync`. The
figures: its wall time and the time of each step (compare the sizes to see which grow with N),
the records it derived again, Zoho calls and CleverTap requests. Written to
benchmarks/results/incremental_n<N>_<warehouse>.json.

    .venv/bin/python benchmarks/incremental.py --contacts 1000000 --runs 3
"""

from __future__ import annotations

import argparse
from typing import Any

import harness
import sqlalchemy as sa

BENCHMARK = "incremental"
JOB = "incremental_sync"


def main() -> None:
    """Sync everyone once, then time `--runs` one-Contact incremental runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.common_arguments(parser, default_runs=3)
    args = parser.parse_args()

    with harness.sandboxed(args) as (sandbox, warehouse_url, config):
        full = harness.run_job("nightly_full_sync", sandbox, warehouse_url, config)
        print(f"full sync {full['wall_seconds']:.1f}s", flush=True)
        catch_up = harness.run_job(JOB, sandbox, warehouse_url, config)
        print(f"catch-up incremental run {catch_up['wall_seconds']:.1f}s", flush=True)
        contact_ids = _pushed_contacts(warehouse_url, args.runs)
        trials = []
        for number, contact_id in enumerate(contact_ids):
            sandbox.edit_records(
                "Contacts", [{"id": contact_id, "Mailing_City": f"Bench City {number}"}]
            )
            trials.append(_figures(harness.run_job(JOB, sandbox, warehouse_url, config)))
            print(_summary(trials[-1]), flush=True)

    path = harness.write_benchmark(
        BENCHMARK,
        args,
        {
            "full_sync": {key: full[key] for key in ("wall_seconds", "peak_rss_mb", "steps")},
            "catch_up_run": _figures(catch_up),
            "runs": trials,
            "median": {
                "wall_seconds": harness.median_of(trials, "wall_seconds"),
                "peak_rss_mb": harness.median_of(trials, "peak_rss_mb"),
                "records_derived": harness.median_of(trials, "records_derived"),
                "zoho_calls": harness.median_of(trials, "zoho", "calls"),
                "clevertap_requests": harness.median_of(trials, "clevertap", "requests"),
                "clevertap_records": harness.median_of(trials, "clevertap", "records_received"),
                "steps": harness.step_medians(trials),
            },
        },
    )
    print(f"wrote {path}")


def _figures(run: dict[str, Any]) -> dict[str, Any]:
    derived = run["metadata"].get("contact_identities", {}).get("records derived")
    changed = run["metadata"].get("clevertap_profile_batches", {}).get("changed")
    return {**run, "records_derived": derived, "changed_profiles": changed}


def _pushed_contacts(warehouse_url: str, count: int) -> list[str]:
    """Contacts with a pushed profile, spread over the table, one per trial."""
    engine = sa.create_engine(warehouse_url)
    try:
        with engine.connect() as connection:
            ids = [
                row[0]
                for row in connection.execute(
                    sa.text("SELECT crm_contact_id FROM profile_attributes ORDER BY identity")
                )
            ]
    finally:
        engine.dispose()
    step = max(len(ids) // max(count, 1), 1)
    return ids[::step][:count]


def _summary(run: dict[str, Any]) -> str:
    steps = list(run["steps"].items())[:5]
    slowest = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in steps)
    return (
        f"{JOB}: {'ok' if run['success'] else 'FAILED ' + str(run['failed_steps'])} in "
        f"{run['wall_seconds']:.2f}s, {run['records_derived']} records derived, "
        f"{run['changed_profiles']} profiles changed, Zoho {run['zoho']['calls']} calls, "
        f"CleverTap {run['clevertap']['requests']} requests; slowest: {slowest}"
    )


if __name__ == "__main__":
    main()
