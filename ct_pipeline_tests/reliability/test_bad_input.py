"""Hostile CRM data: every record ends as a pushed profile, a row in the review queue (or the
held outbox) with a reason, or a clear error, and the rest of the run carries on.

Zoho validates what users type, but a client must not trust that: custom fields change type,
integrations write through other paths, and an API answer can be anything. The emulator's
`serve_values` fault serves any JSON value for any field of a record, without storing it.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ct_pipeline.assets.zoho import requested_fields
from ct_pipeline.config import load_sync_config
from ct_pipeline_tests.reliability.conftest import FaultPipeline, failure_messages

MEGABYTE_TEXT = "क" * (1 << 20)  # 1 Mi characters, 3 MiB of UTF-8
HOSTILE_TEXTS = [
    "",
    "   ",
    "\t\n",
    "nul\x00inside",
    "\x1b[31mterminal escape\x1b[0m",
    "bell\x07and\x08backspace",
    "line\nbreak\r\nand\u2028separator",
    "\u202eright-to-left override",
    "مرحبا بكم في",
    "שלום עולם",
    "😀🚀👨‍👩‍👧‍👦",
    "９８７６５４３２１０",
    "+91 ９８７６５ ４３２１０",
    "٩٨٧٦٥٤٣٢١٠",
    "'; DROP TABLE zoho_contacts; --",
    '=HYPERLINK("http://example.invalid")',
    "a@b@c",
    "@",
    "null",
    MEGABYTE_TEXT,
]
WRONG_TYPES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.sampled_from(["id", "name", "x"]), st.text(max_size=5), max_size=2),
)
HOSTILE_VALUE = st.one_of(
    st.none(), st.sampled_from(HOSTILE_TEXTS), st.text(max_size=40), WRONG_TYPES
)
# Every Contacts field the sync reads (its own and those the example configuration maps) but
# the cursor field, which has a test of its own.
CONTACT_FIELDS = [
    name
    for name in requested_fields(
        "Contacts", [mapping.zoho for mapping in load_sync_config().profile.mappings]
    )
    if name != "Modified_Time"
]
HOSTILE_RECORD = st.fixed_dictionaries(
    {}, optional={field: HOSTILE_VALUE for field in CONTACT_FIELDS}
).filter(bool)


@pytest.fixture
def synced(disturbed: FaultPipeline) -> FaultPipeline:
    """The pipeline after a clean full sync."""
    assert disturbed.run("nightly_full_sync").success
    return disturbed


def touch(pipeline: FaultPipeline, module: str, ids: list[str], moment: datetime) -> None:
    """Move records' Modified_Time so the next incremental run reads them."""
    stamp = moment.replace(microsecond=0).isoformat()
    pipeline.zoho(
        "POST", f"records/{module}", [{"id": record, "Modified_Time": stamp} for record in ids]
    )


def accounted_for(pipeline: FaultPipeline, contact_ids: list[str]) -> dict[str, str]:
    """How each Contact ended: `pushed` (its profile, or its duplicate group's, is in
    profile_attributes) or `review: <reason>`; missing ids are absent from the result."""
    queue = pipeline.warehouse.read_table("identity_review_queue")
    queue = queue[queue["module"] == "Contacts"].set_index("zoho_id")["reason"]
    members = pipeline.warehouse.read_table("duplicate_profiles")
    members = members[members["module"] == "Contacts"].set_index("zoho_id")
    profiles = set(pipeline.warehouse.read_table("profile_attributes")["identity"])
    ended: dict[str, str] = {}
    for contact in contact_ids:
        if contact in queue.index:
            ended[contact] = f"review: {queue.loc[contact]}"
        elif contact in members.index and members.loc[contact, "canonical_identity"] in profiles:
            ended[contact] = "pushed"
    return ended


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=st.lists(HOSTILE_RECORD, min_size=1, max_size=6))
def test_hostile_contact_values_end_pushed_or_in_the_review_queue(
    synced: FaultPipeline, records: list[dict]
):
    pipeline = synced
    contacts = _fresh_contacts(pipeline, len(records))
    pipeline.zoho_faults(serve_values=dict(zip(contacts, records, strict=True)))
    touch(pipeline, "Contacts", contacts, datetime.now(UTC) + timedelta(seconds=1))

    result = pipeline.run("incremental_sync")

    assert result.success, _failures(result)
    assert pipeline.zoho_stats()["faults_served"]["serve_values"] >= len(records)
    ended = accounted_for(pipeline, contacts)
    assert sorted(ended) == sorted(contacts), "a hostile Contact silently disappeared"


_used = itertools.count()


def _fresh_contacts(pipeline: FaultPipeline, count: int) -> list[str]:
    """Contacts no earlier example of this test has tampered with."""
    everyone = sorted(pipeline.warehouse.read_table("zoho_contacts", columns=["id"])["id"])
    return [everyone[next(_used) % len(everyone)] for _ in range(count)]


def _failures(result) -> str:
    return failure_messages(result)[:3000]


def test_an_unreadable_modified_time_fails_the_read_naming_the_record_and_keeps_the_cursor(
    synced: FaultPipeline,
):
    pipeline = synced
    contact = _fresh_contacts(pipeline, 1)[0]
    cursors = pipeline.modified_cursors()
    pipeline.zoho_faults(serve_values={contact: {"Modified_Time": "yesterday-ish \x07"}})
    touch(pipeline, "Contacts", [contact], datetime.now(UTC))

    failed = pipeline.run("incremental_sync")

    assert not failed.success
    explained = failure_messages(failed)
    assert f"Contacts record {contact} with a Modified_Time that is not an ISO 8601" in explained
    assert "yesterday-ish" not in explained
    assert pipeline.modified_cursors() == cursors

    pipeline.zoho("POST", "reset")  # the record is served as Zoho holds it again
    assert pipeline.run("incremental_sync").success
    assert contact in accounted_for(pipeline, [contact])


def test_duplicate_ids_in_one_page_are_read_once(synced: FaultPipeline):
    pipeline = synced
    before = pipeline.snapshot()
    pipeline.zoho_faults(duplicate_in_pages=3)

    assert pipeline.run("nightly_full_sync").success

    assert pipeline.zoho_stats()["faults_served"]["duplicate_in_pages"] == 3
    after = pipeline.snapshot()
    for name in ("zoho_contacts", "zoho_deals", "contact_identities", "profile_attributes"):
        pd.testing.assert_frame_equal(after.tables[name], before.tables[name], check_dtype=False)


def test_unknown_stages_and_missing_contacts_reach_the_outbox_sent_or_held_with_a_reason(
    synced: FaultPipeline,
):
    pipeline = synced
    deals = pipeline.warehouse.read_table("zoho_deals").sort_values("id")
    pushed = set(pipeline.warehouse.read_table("profile_attributes")["crm_contact_id"])
    of_pushed = deals[deals["Contact_Name_id"].isin(pushed)]["id"].iloc[0]
    orphan, no_contact = deals[deals["id"] != of_pushed]["id"].iloc[:2]
    pipeline.zoho_faults(
        serve_values={
            of_pushed: {"Stage": "Stage nobody configured 🚀"},
            orphan: {"Stage": "Closed Lost", "Contact_Name": {"id": "9" * 19, "name": "Ghost"}},
            no_contact: {"Stage": "Closed Lost", "Contact_Name": None},
        }
    )
    touch(pipeline, "Deals", [of_pushed, orphan, no_contact], datetime.now(UTC))

    assert pipeline.run("incremental_sync").success

    outbox = pipeline.outbox().set_index("deal_id")
    assert outbox.loc[of_pushed, "status"] == "sent"
    for held in (orphan, no_contact):
        assert outbox.loc[held, "status"] == "held"
        assert outbox.loc[held, "reason"] == "no_pushed_identity_for_contact"
    events = pipeline.clevertap("GET", "events")["events"]
    assert [event["evtData"]["stage_name"] for event in events] == ["Stage nobody configured 🚀"]


def test_a_contact_deleted_and_re_created_with_its_id_is_kept(synced: FaultPipeline):
    pipeline = synced
    profiles = pipeline.warehouse.read_table("profile_attributes")
    contact = sorted(profiles["crm_contact_id"])[0]
    record = pipeline.zoho("GET", f"records/Contacts/{contact}")["record"]
    pipeline.zoho("DELETE", f"records/Contacts/{contact}")
    recreated = {
        key: record[key] for key in ("Last_Name", "Email", "Mobile", "Mailing_City") if record[key]
    }
    pipeline.zoho("POST", "records/Contacts", [{"id": contact, **recreated}])

    assert pipeline.run("incremental_sync").success

    assert contact in set(pipeline.warehouse.read_table("zoho_contacts")["id"])
    assert accounted_for(pipeline, [contact]) == {contact: "pushed"}
    attributes = pipeline.warehouse.read_table("profile_attributes").set_index("crm_contact_id")
    assert not attributes["crm_deleted"].fillna(False).loc[contact]
