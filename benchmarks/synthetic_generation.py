"""Measure how long the synthetic CRM takes to generate, and how much memory it needs.

Run: `.venv/bin/python benchmarks/synthetic_generation.py [--contacts 1000000] [--seed 0]`.
Writes `benchmarks/results/synthetic_generation.json` with the wall time, the peak resident
set size of the process (Linux `ru_maxrss`), the rows per module and the frames' own size.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ct_pipeline.sandbox.synthetic import MODULES, generate_crm

DEFAULT_CONTACTS = 1_000_000
RESULTS = Path(__file__).parent / "results" / "synthetic_generation.json"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def main() -> None:
    """Generate once at the requested size and write the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    started = time.perf_counter()
    generate_crm(10, seed=args.seed, now=NOW)  # builds the Faker pools and mobile prefixes
    warm_up_s = time.perf_counter() - started
    baseline_mb = _peak_rss_mb()

    started = time.perf_counter()
    crm = generate_crm(args.contacts, seed=args.seed, now=NOW)
    generation_s = time.perf_counter() - started
    peak_mb = _peak_rss_mb()

    result = {
        "benchmark": "synthetic_generation",
        "contacts": args.contacts,
        "seed": args.seed,
        "pool_warm_up_seconds": round(warm_up_s, 2),
        "generation_seconds": round(generation_s, 2),
        "peak_rss_mb": round(peak_mb),
        "rss_before_generation_mb": round(baseline_mb),
        "rows": {name: len(crm.module(name)) for name in MODULES},
        "frame_memory_mb": {
            name: round(crm.module(name).memory_usage(deep=True).sum() / 2**20) for name in MODULES
        },
        "machine": {
            "python": platform.python_version(),
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "cpus": _cpu_count(),
            "platform": platform.platform(),
        },
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


if __name__ == "__main__":
    main()
