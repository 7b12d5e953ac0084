"""Measure the identity layer at CRM scale: phones, emails, identity choice and duplicate groups.

Run: `.venv/bin/python benchmarks/identity.py [--rows 1000000] [--seed 0] [--repeats 5]`.

Phone values are the Mobile and Phone fields of every synthetic record (`generate_crm`, Contacts
and Leads) shuffled together and cut to `--rows`, so both columns are in the mix in proportion.
`normalize_phones` is timed twice over: its first call in the process (cold: it builds the
prefix tables it needs, as every new Dagster step process does) and the median of `--repeats`
calls after it (warm). The plain `phonenumbers` loop (parse, is_valid_number, format E.164)
runs on the same values in the same run (median of `--loop-repeats`), and both answers are
compared value by value, for the cold and the warm call. A second phone figure uses only the
generator's well-formed Indian mobile formats; a third, the worst case, random numbers of every
country written with '+', each side cold in a fresh process, then warm; its ratios are of CPU
time. `normalize_phones` turns on the library's own pattern cache for its calls, so the loop
that follows it in this process has it too; the worst case also times the loop with that cache
on, as well as without. Duplicate grouping runs on the Contacts
and Leads together. Every timing is a median, as wall clock and as process CPU time: on a shared
machine the wall clock also counts other processes' turns. Writes
`benchmarks/results/identity.json`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import phonenumbers
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from ct_pipeline.identity import (
    _international,
    _phone_fast_path,
    choose_identity,
    find_duplicate_groups,
    normalize_emails,
    normalize_phones,
)
from ct_pipeline.sandbox.synthetic import generate_crm

DEFAULT_ROWS = 1_000_000
RESULTS = Path(__file__).parent / "results" / "identity.json"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
# The generator's labels for well-formed Indian mobile formats (its `_mobile_kind` column).
CLEAN_KINDS = (
    "plain",
    "e164",
    "plus91_spaced",
    "spaced",
    "trunk_dashed",
    "country_code_no_plus",
    "intl_prefix_00",
    "brackets",
    "dots",
)
# Leads add about half as many records again as Contacts; each record has two phone fields.
CONTACTS_PER_ROW = 0.7
# The worst case: this many numbers of random countries, with '+'.
FOREIGN_ROWS = 30_000


def main() -> None:
    """Generate the CRM, time each step, check agreement and write the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()

    crm = generate_crm(int(args.rows * CONTACTS_PER_ROW) + 1, seed=args.seed, now=NOW)
    records = _records(crm.contacts, crm.leads, crm.deals).iloc[: args.rows]
    phone_values, from_field = _phone_mix(records, args.rows, args.seed)
    email_values = records["Email"]

    # Nothing in this process has used the phone tables yet: this call pays for them.
    assert not _phone_fast_path._type_tables and not _international._decided
    cold = _timed(lambda: normalize_phones(phone_values), 1)
    warm = _timed(lambda: normalize_phones(phone_values), args.repeats)
    loop = _timed(lambda: _plain_loop(phone_values), args.loop_repeats)
    pd.testing.assert_frame_equal(cold.result, warm.result)
    mismatches = _mismatches(warm.result, loop.result)

    clean = _clean_mobiles(crm.contacts, args.rows, args.seed)
    clean_timing = _timed(lambda: normalize_phones(clean), args.repeats)
    foreign = _foreign_heavy(args.seed, args.repeats)

    emails = _timed(lambda: normalize_emails(email_values), args.repeats)
    choice = _timed(lambda: choose_identity(records), args.repeats)
    records = records.assign(identity=choice.result["identity"].to_numpy())
    grouping = _timed(lambda: find_duplicate_groups(records), args.repeats)
    groups = grouping.result.records

    rows = len(phone_values)
    figures = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
            "load_average_1m_at_start": load_before[0],
        },
        "data": "generate_crm (ct_pipeline.sandbox.synthetic): Contacts then Leads",
        "timings": f"medians; warm of {args.repeats} calls, loop of {args.loop_repeats}",
        "phones": {
            "rows": rows,
            "rows_by_field": from_field,
            "distinct_values": int(phone_values.nunique()),
            "missing": int(phone_values.isna().sum()),
            "cold_first_call_s": cold.wall,
            "cold_first_call_cpu_s": cold.cpu,
            "cold_rows_per_s": round(rows / cold.wall),
            "normalize_phones_s": warm.wall,
            "normalize_phones_cpu_s": warm.cpu,
            "normalize_phones_runs_s": warm.walls,
            "normalize_phones_rows_per_s": round(rows / warm.wall),
            "normalize_phones_rows_per_cpu_s": round(rows / warm.cpu),
            "phonenumbers_loop_s": loop.wall,
            "phonenumbers_loop_cpu_s": loop.cpu,
            "phonenumbers_loop_runs_s": loop.walls,
            "phonenumbers_loop_rows_per_s": round(rows / loop.wall),
            "speed_ratio": round(loop.wall / warm.wall, 1),
            "speed_ratio_cpu": round(loop.cpu / warm.cpu, 1),
            "speed_ratio_cold": round(loop.wall / cold.wall, 1),
            "e164_mismatches_with_loop": mismatches,
        },
        "phones_clean_mix": {
            "rows": len(clean),
            "formats": list(CLEAN_KINDS),
            "normalize_phones_s": clean_timing.wall,
            "normalize_phones_cpu_s": clean_timing.cpu,
            "normalize_phones_rows_per_s": round(len(clean) / clean_timing.wall),
            "rows_per_cpu_s": round(len(clean) / clean_timing.cpu),
        },
        "phones_foreign_heavy": foreign,
        "emails": {
            "rows": len(email_values),
            "normalize_emails_s": emails.wall,
            "normalize_emails_cpu_s": emails.cpu,
            "rows_per_s": round(len(email_values) / emails.wall),
        },
        "identity_choice": {"records": len(records), "s": choice.wall, "cpu_s": choice.cpu},
        "duplicate_groups": {
            "records": len(records),
            "s": grouping.wall,
            "cpu_s": grouping.cpu,
            "merged_groups": int(
                groups.loc[groups["group_status"] == "merged", "group_id"].nunique()
            ),
            "records_in_merged_groups": int((groups["group_status"] == "merged").sum()),
            "oversized_records": int((groups["group_status"] == "oversized").sum()),
            "suppressed_values": len(grouping.result.suppressed),
            "identity_collisions": len(grouping.result.collisions),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


def _phone_mix(records: pd.DataFrame, rows: int, seed: int) -> tuple[pd.Series, dict[str, int]]:
    """`rows` values drawn from the Mobile and Phone fields of all records, shuffled together."""
    both = pd.concat(
        [
            records["Mobile"].rename("value").to_frame().assign(field="Mobile"),
            records["Phone"].rename("value").to_frame().assign(field="Phone"),
        ],
        ignore_index=True,
    )
    mix = both.sample(min(rows, len(both)), random_state=seed).reset_index(drop=True)
    return mix["value"], {str(k): int(v) for k, v in mix["field"].value_counts().items()}


def _mismatches(ours: pd.DataFrame, loop: list[str | None]) -> int:
    """Values whose E.164 answer differs from the loop's."""
    e164 = ours["e164"].astype(object).where(ours["e164"].notna(), None).tolist()
    return sum(mine != theirs for mine, theirs in zip(e164, loop, strict=True))


def _foreign_heavy(seed: int, repeats: int) -> dict[str, Any]:
    """Random numbers of every country with '+': ours, the plain loop and the loop with the
    library's pattern cache, each cold in a fresh process, then warm."""
    values = _foreign_numbers(FOREIGN_ROWS, seed)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        ours = pool.submit(_cold_then_warm, "normalize_phones", values, repeats).result()
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        loop = pool.submit(_cold_then_warm, "phonenumbers_loop", values, repeats).result()
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        cached = pool.submit(_cold_then_warm, "loop_with_pattern_cache", values, repeats).result()
    e164 = pd.DataFrame({"e164": pd.Series(ours.pop("e164"), dtype="str")})
    mismatches = _mismatches(e164, loop.pop("e164")) + _mismatches(e164, cached.pop("e164"))
    return {
        "rows": len(values),
        "distinct_values": int(values.nunique()),
        "country_codes": int(values.str.split(" ").str[0].nunique()),
        "normalize_phones": ours,
        "phonenumbers_loop": loop,
        "phonenumbers_loop_with_pattern_cache": cached,
        "cold_ratio": round(loop["cold_cpu_s"] / ours["cold_cpu_s"], 2),
        "warm_ratio": round(loop["warm_cpu_s"] / ours["warm_cpu_s"], 2),
        "cold_ratio_to_loop_with_pattern_cache": round(
            cached["cold_cpu_s"] / ours["cold_cpu_s"], 2
        ),
        "e164_mismatches_with_loop": mismatches,
    }


def _cold_then_warm(which: str, values: pd.Series, repeats: int) -> dict[str, Any]:
    """In a fresh process: the first call's time, then the median of `repeats` more."""
    if which == "loop_with_pattern_cache":
        # What normalize_phones turns on for its own library calls.
        phonenumbers.enable_pattern_cache()
    run = normalize_phones if which == "normalize_phones" else _plain_loop
    cold = _timed(lambda: run(values), 1)
    warm = _timed(lambda: run(values), repeats)
    e164 = warm.result
    if isinstance(e164, pd.DataFrame):
        e164 = e164["e164"].astype(object).where(e164["e164"].notna(), None).tolist()
    return {
        "cold_s": cold.wall,
        "cold_cpu_s": cold.cpu,
        "cold_rows_per_cpu_s": round(len(values) / cold.cpu),
        "warm_s": warm.wall,
        "warm_cpu_s": warm.cpu,
        "warm_rows_per_cpu_s": round(len(values) / warm.cpu),
        "e164": e164,
    }


def _foreign_numbers(count: int, seed: int) -> pd.Series:
    """The worst case for prefix decisions: '+', a country code drawn from every geographic
    code, and 6 to 11 random digits, so nearly every value brings a prefix not seen before."""
    codes = sorted(
        code
        for code, regions in COUNTRY_CODE_TO_REGION_CODE.items()
        if "001" not in regions and code != 91
    )
    rng = np.random.default_rng(seed)
    picks = rng.choice(codes, count)
    lengths = rng.integers(6, 12, count)
    first = rng.integers(1, 10, count)
    rest = rng.integers(0, 10**10, count)
    return pd.Series(
        [
            f"+{code} {lead}{str(tail).zfill(10)[: length - 1]}"
            for code, lead, tail, length in zip(picks, first, rest, lengths, strict=True)
        ],
        dtype="str",
    )


def _clean_mobiles(contacts: pd.DataFrame, rows: int, seed: int) -> pd.Series:
    """`rows` Mobile values drawn from the generator's well-formed Indian formats only."""
    clean = contacts.loc[contacts["_mobile_kind"].isin(CLEAN_KINDS), "Mobile"]
    return clean.sample(rows, replace=True, random_state=seed).reset_index(drop=True)


def _records(contacts: pd.DataFrame, leads: pd.DataFrame, deals: pd.DataFrame) -> pd.DataFrame:
    """Contacts and Leads in one frame, with the columns grouping needs."""
    columns = ["id", "Mobile", "Phone", "Email", "Modified_Time"]
    deal_count = deals["Contact_Name.id"].value_counts()
    contacts = contacts[columns].assign(
        module="Contacts", deal_count=contacts["id"].map(deal_count).fillna(0).astype(int)
    )
    leads = leads[columns].assign(module="Leads", deal_count=0)
    return pd.concat([contacts, leads], ignore_index=True)


def _plain_loop(values: pd.Series) -> list[str | None]:
    """The reference: the phonenumbers library once per value, no de-duplication."""
    answers: list[str | None] = []
    for value in values.tolist():
        if value is None or (isinstance(value, float) and np.isnan(value)):
            answers.append(None)
            continue
        try:
            number = phonenumbers.parse(str(value), "IN")
        except phonenumbers.NumberParseException:
            answers.append(None)
            continue
        valid = phonenumbers.is_valid_number(number)
        answers.append(
            phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            if valid
            else None
        )
    return answers


class _Timing:
    """Median wall and CPU seconds of some runs, every wall time, and the last result."""

    def __init__(self, walls: list[float], cpus: list[float], result: Any) -> None:
        self.walls = [round(wall, 3) for wall in walls]
        self.wall = round(statistics.median(walls), 3)
        self.cpu = round(statistics.median(cpus), 3)
        self.result = result


def _timed(run: Callable[[], Any], repeats: int) -> _Timing:
    """Time `repeats` runs (at least one)."""
    walls, cpus, result = [], [], None
    for _ in range(max(repeats, 1)):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return _Timing(walls, cpus, result)


if __name__ == "__main__":
    main()
