"""Benchmark: `nightly_full_sync` run again after a share of Contacts and Deals changed in Zoho.

Fresh emulators and an empty warehouse; a first `nightly_full_sync` pushes everyone, then
`--change` (default 1%) of the Contacts get a new Mailing_City and the same share of open Deals
move one stage forward, through the Zoho emulator's admin API, and the nightly job runs again.
The second run's figures are the benchmark: its wall time beside the first run's, and its
CleverTap upload requests beside the fewest that can carry what changed,
ceil(changed profiles / batch size) + ceil(stage events / batch size). Campaign triggers
(one request per triggered person, as CleverTap's external-trigger API takes them) are counted
apart. Written to benchmarks/results/nightly_rerun_n<N>_<warehouse>.json.

    .venv/bin/python benchmarks/nightly_rerun.py --contacts 1000000 --runs 1
"""

from __future__ import annotations

import argparse
from typing import Any

import harness
import pandas as pd
import sqlalchemy as sa

from ct_pipeline.sandbox.synthetic import PIPELINES

BENCHMARK = "nightly_rerun"
JOB = "nightly_full_sync"
PROFILE_BATCHES = "clevertap_profile_batches"
EVENT_BATCHES = "clevertap_event_batches"


def main() -> None:
    """Run full sync, change, rerun; `--runs` times; write the figures with their medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.common_arguments(parser, default_runs=1)
    parser.add_argument(
        "--change", type=float, default=0.01, help="Share of Contacts and of Deals changed."
    )
    args = parser.parse_args()

    runs = []
    for number in range(args.runs):
        runs.append(rerun(args, number))
        print(_summary(runs[-1]), flush=True)

    path = harness.write_benchmark(
        BENCHMARK, args, {"change": args.change, "runs": runs, "median": summarise(runs)}
    )
    print(f"wrote {path}")


def rerun(args: argparse.Namespace, number: int) -> dict[str, Any]:
    """One full sync, the edits, and the timed second full sync."""
    with harness.sandboxed(args) as (sandbox, warehouse_url, config):
        first = harness.run_job(JOB, sandbox, warehouse_url, config)
        edits = edit_crm(sandbox, warehouse_url, args.change, tag=f"run {number}")
        second = harness.run_job(JOB, sandbox, warehouse_url, config)
        batch_size = harness.batch_size(config)

    changed = int(second["metadata"].get(PROFILE_BATCHES, {}).get("changed", 0))
    events = int(second["metadata"].get(EVENT_BATCHES, {}).get("pending events", 0))
    minimal = harness.minimal_upload_requests(changed, events, batch_size)
    return {
        **second,
        "first_run": {
            key: first[key] for key in ("wall_seconds", "peak_rss_mb", "steps", "zoho", "clevertap")
        },
        "edits": edits,
        "changed_profiles": changed,
        "stage_events": events,
        "batch_size": batch_size,
        "minimal_upload_requests": minimal,
        "upload_requests_minimal": second["clevertap"]["upload_requests"] == minimal,
        "share_of_full_sync": round(second["wall_seconds"] / first["wall_seconds"], 3),
    }


def edit_crm(
    sandbox: harness.Emulators, warehouse_url: str, share: float, tag: str
) -> dict[str, int]:
    """Change `share` of the Contacts (Mailing_City) and of the open Deals (next stage)."""
    engine = sa.create_engine(warehouse_url)
    try:
        contacts = pd.read_sql("SELECT id FROM zoho_contacts ORDER BY id", engine)
        deals = pd.read_sql("SELECT id, Pipeline, Stage FROM zoho_deals ORDER BY id", engine)
    finally:
        engine.dispose()

    contact_edits = [
        {"id": record_id, "Mailing_City": f"Bench City {tag}"}
        for record_id in _every_nth(contacts["id"], share)
    ]
    following = {
        (pipeline, stage): stages[position + 1]
        for pipeline, stages in PIPELINES.items()
        for position, stage in enumerate(stages[:-1])
    }
    nxt = [following.get(key) for key in zip(deals["Pipeline"], deals["Stage"], strict=True)]
    movable = deals.assign(next_stage=nxt).dropna(subset=["next_stage"])
    wanted = max(int(round(len(deals) * share)), 1)
    step = max(len(movable) // wanted, 1)
    chosen = movable.iloc[::step].head(wanted)
    deal_edits = [{"id": row.id, "Stage": row.next_stage} for row in chosen.itertuples(index=False)]

    sandbox.edit_records("Contacts", contact_edits)
    sandbox.edit_records("Deals", deal_edits)
    return {"contacts": len(contact_edits), "deals": len(deal_edits)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs of the headline figures."""
    return {
        "wall_seconds": harness.median_of(runs, "wall_seconds"),
        "first_run_wall_seconds": harness.median_of(runs, "first_run", "wall_seconds"),
        "share_of_full_sync": harness.median_of(runs, "share_of_full_sync"),
        "peak_rss_mb": harness.median_of(runs, "peak_rss_mb"),
        "zoho_calls": harness.median_of(runs, "zoho", "calls"),
        "zoho_credits": harness.median_of(runs, "zoho", "credits"),
        "clevertap_requests": harness.median_of(runs, "clevertap", "requests"),
        "clevertap_upload_requests": harness.median_of(runs, "clevertap", "upload_requests"),
        "clevertap_trigger_requests": harness.median_of(runs, "clevertap", "trigger_requests"),
        "minimal_upload_requests": harness.median_of(runs, "minimal_upload_requests"),
        "clevertap_records": harness.median_of(runs, "clevertap", "records_received"),
        "changed_profiles": harness.median_of(runs, "changed_profiles"),
        "stage_events": harness.median_of(runs, "stage_events"),
        "upload_requests_minimal": all(run["upload_requests_minimal"] for run in runs),
        "steps": harness.step_medians(runs),
    }


def _every_nth(ids: pd.Series, share: float) -> list[str]:
    wanted = max(int(round(len(ids) * share)), 1)
    step = max(len(ids) // wanted, 1)
    return ids.iloc[::step].head(wanted).astype(str).tolist()


def _summary(run: dict[str, Any]) -> str:
    return (
        f"rerun after {run['edits']['contacts']} Contact and {run['edits']['deals']} Deal edits: "
        f"{run['wall_seconds']:.1f}s ({run['share_of_full_sync']:.0%} of the first run's "
        f"{run['first_run']['wall_seconds']:.1f}s); {run['changed_profiles']} profiles and "
        f"{run['stage_events']} events changed; {run['clevertap']['upload_requests']} upload "
        f"requests (minimal {run['minimal_upload_requests']}), "
        f"{run['clevertap']['trigger_requests']} campaign triggers"
    )


if __name__ == "__main__":
    main()
