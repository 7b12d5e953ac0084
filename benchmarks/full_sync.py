"""Benchmark: `nightly_full_sync` end to end on an empty warehouse, against N synthetic contacts.

Each run gets fresh emulators (so CleverTap starts empty) and a fresh warehouse; the job runs
in a process of its own. Figures: wall time in total and per step, peak RSS of the pipeline
process, Zoho calls and credits, CleverTap requests and records. Written to
benchmarks/results/full_sync_n<N>_<warehouse>.json.

    .venv/bin/python benchmarks/full_sync.py --contacts 1000000 --runs 1
    .venv/bin/python benchmarks/full_sync.py --contacts 1000000 --runs 1 \
        --profile /tmp/full_sync.profile.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import harness

BENCHMARK = "full_sync"
JOB = "nightly_full_sync"


def main() -> None:
    """Run the full sync `--runs` times and write the figures with their medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.common_arguments(parser, default_runs=3)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="Profile the first run with pyinstrument; its call tree is written here.",
    )
    args = parser.parse_args()

    runs = []
    for number in range(args.runs):
        runs.append(full_sync_run(args, args.profile if number == 0 else None))
        print(_summary(runs[-1]), flush=True)

    path = harness.write_benchmark(BENCHMARK, args, {"runs": runs, "median": summarise(runs)})
    print(f"wrote {path}")


def full_sync_run(args: argparse.Namespace, profile: Path | None = None) -> dict[str, Any]:
    """One full sync on fresh emulators and an empty warehouse."""
    with harness.sandboxed(args) as (sandbox, warehouse_url, config):
        run = harness.run_job(JOB, sandbox, warehouse_url, config, profile_to=profile)
        run["emulator_setup_seconds"] = round(sandbox.setup_seconds, 1)
        if profile is not None:
            run["profiled"] = True
        return run


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs of the headline figures and of each step."""
    timed = [run for run in runs if not run.get("profiled")] or runs
    return {
        "runs_in_median": len(timed),
        "wall_seconds": harness.median_of(timed, "wall_seconds"),
        "peak_rss_mb": harness.median_of(timed, "peak_rss_mb"),
        "zoho_calls": harness.median_of(runs, "zoho", "calls"),
        "zoho_credits": harness.median_of(runs, "zoho", "credits"),
        "clevertap_requests": harness.median_of(runs, "clevertap", "requests"),
        "clevertap_upload_requests": harness.median_of(runs, "clevertap", "upload_requests"),
        "clevertap_records": harness.median_of(runs, "clevertap", "records_received"),
        "steps": harness.step_medians(timed),
    }


def _summary(run: dict[str, Any]) -> str:
    slowest = ", ".join(
        f"{name} {seconds:.1f}s" for name, seconds in list(run["steps"].items())[:4]
    )
    return (
        f"{run['job']}: {'ok' if run['success'] else 'FAILED ' + str(run['failed_steps'])} in "
        f"{run['wall_seconds']:.1f}s, peak RSS {run['peak_rss_mb']:.0f} MB, Zoho "
        f"{run['zoho']['calls']} calls / {run['zoho']['credits']} credits, CleverTap "
        f"{run['clevertap']['requests']} requests / {run['clevertap']['records_received']} "
        f"records; slowest: {slowest}"
    )


if __name__ == "__main__":
    main()
