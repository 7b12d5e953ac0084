"""Measure the identity layer at CRM scale: phones, emails, identity choice and duplicate groups.

Run: `.venv/bin/python benchmarks/identity.py [--rows 1000000] [--seed 0] [--repeats 3]`.
Phone values are the Mobile and Phone fields of the synthetic CRM (`generate_crm`), Contacts
then Leads, cut to `--rows`. `normalize_phones` is timed side by side with the plain
`phonenumbers` loop (parse, is_valid_number, format E.164) on the same values, and both answers
are compared value by value. Duplicate grouping runs on the Contacts and Leads together.
A second phone figure uses only the generator's well-formed Indian mobile formats. Writes
`benchmarks/results/identity.json`. Timings are the best of `--repeats`, as wall clock and as
process CPU time: on a shared machine the wall clock also counts other processes' turns.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import phonenumbers

from ct_pipeline.identity import (
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
# Leads add about half as many records again as Contacts.
CONTACTS_PER_ROW = 0.7


def main() -> None:
    """Generate the CRM, time each step, check agreement and write the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    crm = generate_crm(int(args.rows * CONTACTS_PER_ROW) + 1, seed=args.seed, now=NOW)
    records = _records(crm.contacts, crm.leads, crm.deals).iloc[: args.rows]
    phone_values = pd.concat([records["Mobile"], records["Phone"]], ignore_index=True)
    phone_values = phone_values.iloc[: args.rows]
    email_values = records["Email"]

    started = time.perf_counter()
    for region in ("IN", *normalize_phones.__kwdefaults__["foreign_regions"]):
        _phone_fast_path.type_table(region)
    tables_s = time.perf_counter() - started

    clean = _clean_mobiles(crm.contacts, args.rows, args.seed)
    clean_s, clean_cpu, _ = _best(lambda: normalize_phones(clean), args.repeats)
    ours_s, ours_cpu, ours = _best(lambda: normalize_phones(phone_values), args.repeats)
    loop_s, loop_cpu, loop = _best(lambda: _plain_loop(phone_values), 1)
    ours_e164 = ours["e164"].astype(object).where(ours["e164"].notna(), None).tolist()
    mismatches = sum(mine != theirs for mine, theirs in zip(ours_e164, loop, strict=True))

    emails_s, emails_cpu, _ = _best(lambda: normalize_emails(email_values), args.repeats)
    choice_s, choice_cpu, identities = _best(lambda: choose_identity(records), args.repeats)
    records = records.assign(identity=identities["identity"].to_numpy())
    groups_s, groups_cpu, groups = _best(lambda: find_duplicate_groups(records), args.repeats)

    phone_rows = len(phone_values)
    figures = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
        },
        "data": "generate_crm (ct_pipeline.sandbox.synthetic): Contacts then Leads",
        "phones": {
            "rows": phone_rows,
            "distinct_values": int(phone_values.nunique()),
            "missing": int(phone_values.isna().sum()),
            "normalize_phones_s": ours_s,
            "normalize_phones_cpu_s": ours_cpu,
            "normalize_phones_rows_per_s": round(phone_rows / ours_s),
            "normalize_phones_rows_per_cpu_s": round(phone_rows / ours_cpu),
            "phonenumbers_loop_s": loop_s,
            "phonenumbers_loop_cpu_s": loop_cpu,
            "phonenumbers_loop_rows_per_s": round(phone_rows / loop_s),
            "speed_ratio": round(loop_s / ours_s, 1),
            "speed_ratio_cpu": round(loop_cpu / ours_cpu, 1),
            "e164_mismatches_with_loop": mismatches,
            "prefix_tables_build_s": tables_s,
        },
        "phones_clean_mix": {
            "rows": len(clean),
            "formats": list(CLEAN_KINDS),
            "normalize_phones_s": clean_s,
            "normalize_phones_cpu_s": clean_cpu,
            "normalize_phones_rows_per_s": round(len(clean) / clean_s),
            "rows_per_cpu_s": round(len(clean) / clean_cpu),
        },
        "emails": {
            "rows": len(email_values),
            "normalize_emails_s": emails_s,
            "normalize_emails_cpu_s": emails_cpu,
            "rows_per_s": round(len(email_values) / emails_s),
        },
        "identity_choice": {"records": len(records), "s": choice_s, "cpu_s": choice_cpu},
        "duplicate_groups": {
            "records": len(records),
            "s": groups_s,
            "cpu_s": groups_cpu,
            "merged_groups": int(
                groups.records.loc[groups.records["group_status"] == "merged", "group_id"].nunique()
            ),
            "records_in_merged_groups": int((groups.records["group_status"] == "merged").sum()),
            "oversized_records": int((groups.records["group_status"] == "oversized").sum()),
            "suppressed_values": len(groups.suppressed),
            "identity_collisions": len(groups.collisions),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


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


def _best(run: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Best wall and CPU seconds over `repeats` runs, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(max(repeats, 1)):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return round(min(walls), 3), round(min(cpus), 3), result


if __name__ == "__main__":
    main()
