"""Records edited while a read pages through them: none is lost, the cursor never passes one.

The emulator's page tokens are offsets into the live Modified_Time order, as Zoho's plausibly
are: an edit moves a record already read to the end, the records behind it shift forward by
one, and the record that was next in line is never served. The client sees the edited record
served twice and reads again from its first Modified_Time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from ct_pipeline.sandbox.synthetic import SyntheticCrm, generate_crm
from ct_pipeline.zoho.records import MAX_REPAIR_PASSES
from ct_pipeline_tests.zoho.conftest import SEED

CONTACTS = 2_500
# Three pages of 200 at distinct seconds.
STAGED = 450


@pytest.fixture(scope="module")
def quiet_crm() -> SyntheticCrm:
    """A CRM whose last change was an hour ago, so staged edits can sit in the recent past."""
    return generate_crm(CONTACTS, seed=SEED, now=datetime.now(UTC) - timedelta(hours=1))


@pytest.fixture
def staged(start_sandbox, quiet_crm):
    """An emulator where 450 contacts were edited half an hour ago, one second apart; returns
    (sandbox, the first edit's time, the edited ids in Modified_Time order)."""
    sandbox = start_sandbox(quiet_crm)
    first = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    ids = quiet_crm.contacts["id"].iloc[:STAGED].tolist()
    sandbox.upsert(
        "Contacts",
        [
            {
                "id": rid,
                "Last_Name": f"Staged {i}",
                "Modified_Time": (first + timedelta(seconds=i)).isoformat(),
            }
            for i, rid in enumerate(ids)
        ],
    )
    return sandbox, first, ids


def edit_between_pages(sandbox, schedule: dict[int, str]) -> None:
    """Edit each record once the given number of CRM calls from now have been answered."""
    for calls, record_id in schedule.items():
        sandbox.faults(after_calls=calls, touch_records={"Contacts": [record_id]})


def test_a_record_edited_behind_an_incremental_read_loses_no_record(staged):
    sandbox, first, ids = staged
    zoho = sandbox.client()
    zoho.unknown_fields("Contacts", ["Last_Name"])
    started = datetime.now(UTC).replace(microsecond=0)
    # Page 1 (the first call) serves ids[0]; it is edited before page 2.
    edit_between_pages(sandbox, {1: ids[0]})

    read = zoho.read_records("Contacts", ["Last_Name"], modified_since=first)

    assert sandbox.stats()["faults_served"]["touch_records"] == 1
    assert set(read.records["id"]) == set(ids)
    assert read.records.set_index("id").loc[ids, "Last_Name"].tolist() == [
        f"Staged {i}" for i in range(STAGED)
    ]
    assert (read.moved, read.held_back) == (1, False)
    # The edit is the newest change, and the cursor reaches it.
    assert read.cursor >= started
    # Three pages, then the same three again from ids[0]'s first Modified_Time.
    assert zoho.usage()["calls"]["records"] == 6


def test_records_still_moving_after_the_re_reads_hold_the_cursor_back(staged):
    sandbox, first, ids = staged
    zoho = sandbox.client()
    zoho.unknown_fields("Contacts", ["Last_Name"])
    # One edit in each pass, each to a record its first page served: calls 1-3, 4-6, 7-9.
    assert MAX_REPAIR_PASSES == 2
    edit_between_pages(sandbox, {1: ids[0], 4: ids[1], 7: ids[2]})

    read = zoho.read_records("Contacts", ["Last_Name"], modified_since=first)

    assert read.held_back
    # The last pass may have passed over records from ids[2]'s second on: not before it.
    assert read.cursor == first + timedelta(seconds=1)
    modified = pd.Series(
        [first + timedelta(seconds=i) for i in range(STAGED)],
        index=ids,
        dtype="datetime64[ns, UTC]",
    )
    complete = modified[modified <= pd.Timestamp(read.cursor)].index
    assert set(complete) <= set(read.records["id"])

    again = zoho.read_records("Contacts", ["Last_Name"], modified_since=read.cursor)

    assert set(read.records["id"]) | set(again.records["id"]) == set(ids)
    assert not again.held_back


def test_read_all_turns_to_bulk_read_when_records_keep_moving(start_sandbox, quiet_crm):
    sandbox = start_sandbox(quiet_crm)
    zoho = sandbox.client(bulk_read_threshold=CONTACTS)
    zoho.unknown_fields("Contacts", ["Last_Name"])
    seconds = quiet_crm.contacts["Modified_Time"].dt.floor("s")
    oldest = quiet_crm.contacts.assign(second=seconds).sort_values(["second", "id"])["id"].tolist()
    # Call 1 counts the module; each pass is 13 pages (calls 2-14, 15-27, 28-40).
    edit_between_pages(sandbox, {2: oldest[0], 15: oldest[1], 28: oldest[2]})

    records = zoho.read_all("Contacts", ["Last_Name"])

    assert sorted(records["id"]) == sorted(quiet_crm.contacts["id"])
    calls = zoho.usage()["calls"]
    assert calls["records"] == 39
    assert calls["bulk_create"] == 1
