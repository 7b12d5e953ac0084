"""Hostile CRM data: every record is stored, and every person ends accepted by CleverTap,
rejected with the reason recorded, in the review queue (or the held outbox) with a reason, or
in a clear error; the rest of the run carries on. On SQLite and on PostgreSQL.

Zoho validates what users type, but a client must not trust that: custom fields change type,
integrations write through other paths, and an API answer can be anything. The emulator's
`serve_values` fault serves any JSON value for any field of a record, without storing it.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ct_pipeline.assets.zoho import requested_fields
from ct_pipeline.config import load_sync_config
from ct_pipeline.warehouse.state import pushed_hashes
from ct_pipeline_tests.pipeline.test_crash_recovery import asset_metadata
from ct_pipeline_tests.reliability.conftest import (
    FaultPipeline,
    clevertap_profiles,
    failure_messages,
)

MEGABYTE_TEXT = "क" * (1 << 20)  # 1 Mi characters, 3 MiB of UTF-8
HOSTILE_TEXTS = {
    "empty": "",
    "spaces": "   ",
    "whitespace": "\t\n",
    "NUL": "nul\x00inside",
    "terminal escape": "\x1b[31mterminal escape\x1b[0m",
    "bell and backspace": "bell\x07and\x08backspace",
    "line breaks": "line\nbreak\r\nand\u2028separator",
    "right-to-left override": "\u202eright-to-left override",
    "Arabic": "مرحبا بكم في",
    "Hebrew": "שלום עולם",
    "emoji": "😀🚀👨‍👩‍👧‍👦",
    "full-width digits": "９８７６５４３２１０",
    "full-width phone": "+91 ９８７６５ ４３２１０",
    "Arabic-Indic digits": "٩٨٧٦٥٤٣٢١٠",
    "SQL": "'; DROP TABLE zoho_contacts; --",
    "formula": '=HYPERLINK("http://example.invalid")',
    "two at signs": "a@b@c",
    "lone at sign": "@",
    "the word null": "null",
    "1 MB": MEGABYTE_TEXT,
}
# One value of each JSON type a documented text, number or lookup field might arrive as instead.
WRONG_TYPE_KINDS: dict[str, Any] = {
    "integer beyond 64 bits": 2**64 + 1,
    "float": -1.5e308,
    "boolean": True,
    "list": [9, 8, 7],
    "object": {"x": "y", "name": 5},
}
WRONG_TYPES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.sampled_from(["id", "name", "x"]), st.text(max_size=5), max_size=2),
)
HOSTILE_VALUE = st.one_of(
    st.none(), st.sampled_from(list(HOSTILE_TEXTS.values())), st.text(max_size=40), WRONG_TYPES
)
MODULES = ("Contacts", "Leads", "Deals", "Cases")
TABLES = {module: f"zoho_{module.lower()}" for module in MODULES}
# Every field of each module the sync reads (its own and those the example configuration maps)
# but the cursor field, which has a test of its own.
MAPPED = [mapping.zoho for mapping in load_sync_config().profile.mappings]
MODULE_FIELDS = {
    module: [name for name in requested_fields(module, MAPPED) if name != "Modified_Time"]
    for module in MODULES
}
# The text fields among them (text, email, phone or picklist in Zoho's field metadata): their
# values are stored as they came.
TEXT_FIELDS = {
    "Contacts": {
        *("First_Name", "Last_Name", "Full_Name", "Email", "Secondary_Email", "Phone"),
        *("Mobile", "Mailing_City", "Account_Type", "Subscription_Plan", "Customer_Tier"),
        *("KYC_Status", "Lifecycle_Stage"),
    },
    "Leads": {"Full_Name", "Email", "Phone", "Mobile", "City", "Lead_Status"},
    "Deals": {"Deal_Name", "Pipeline", "Stage", "Product_Category"},
    "Cases": {"Subject", "Status", "Priority"},
}


def hostile_records(module: str) -> st.SearchStrategy[dict]:
    """Records of `module` with some of its read fields replaced by hostile values."""
    fields = MODULE_FIELDS[module]
    return st.fixed_dictionaries({}, optional={name: HOSTILE_VALUE for name in fields}).filter(bool)


@pytest.fixture
def synced(disturbed_on_each_warehouse: FaultPipeline) -> FaultPipeline:
    """The pipeline after a clean full sync, on SQLite and on PostgreSQL."""
    assert disturbed_on_each_warehouse.run("nightly_full_sync").success
    return disturbed_on_each_warehouse


def touch(pipeline: FaultPipeline, module: str, ids: list[str], moment: datetime) -> None:
    """Move records' Modified_Time so the next incremental run reads them."""
    stamp = moment.replace(microsecond=0).isoformat()
    pipeline.zoho(
        "POST", f"records/{module}", [{"id": record, "Modified_Time": stamp} for record in ids]
    )


def accounted_for(pipeline: FaultPipeline, contact_ids: list[str]) -> dict[str, str]:
    """How each Contact ended: `accepted` (CleverTap holds its person's profile and accepted
    the current payload), `rejected: <error>` (refused by CleverTap, or before sending, with
    the reason kept in clevertap_rejections) or `review: <reason>` (held back from CleverTap);
    ids that ended none of these ways are absent from the result."""
    warehouse = pipeline.warehouse
    queue = warehouse.read_table("identity_review_queue")
    queue = queue[queue["module"] == "Contacts"].set_index("zoho_id")["reason"]
    members = warehouse.read_table("duplicate_profiles")
    person = members[members["module"] == "Contacts"].set_index("zoho_id")["canonical_identity"]
    rejections = warehouse.read_table("clevertap_rejections", ["kind", "record_key", "error"])
    refused = rejections[rejections["kind"] == "profile"].set_index("record_key")["error"]
    batches = warehouse.read_table("clevertap_profile_batches", ["identity", "payload_hash"])
    current = batches.set_index("identity")["payload_hash"]
    accepted = pushed_hashes(warehouse)
    # A profile CleverTap found by its Email, or an earlier identity, holds the new one as well.
    held = {
        identity
        for profile in pipeline.clevertap("GET", "profiles")["profiles"]
        for identity in profile["all_identities"]
    }
    ended: dict[str, str] = {}
    for contact in contact_ids:
        identity = person.get(contact)
        if contact in queue.index:
            ended[contact] = f"review: {queue.loc[contact]}"
        elif identity is None:
            continue
        elif identity in refused.index and refused.loc[identity]:
            ended[contact] = f"rejected: {refused.loc[identity]}"
        elif (
            identity in held
            and identity in accepted.index
            and accepted.loc[identity] == current.get(identity, accepted.loc[identity])
        ):
            ended[contact] = "accepted"
    return ended


FUZZ = settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(records=st.lists(hostile_records("Contacts"), min_size=1, max_size=6))
def test_hostile_contact_values_end_accepted_rejected_or_in_the_review_queue(
    synced: FaultPipeline, records: list[dict]
):
    pipeline = synced
    contacts = _fresh_records(pipeline, "Contacts", len(records))
    pipeline.zoho_faults(serve_values=dict(zip(contacts, records, strict=True)))
    touch(pipeline, "Contacts", contacts, datetime.now(UTC) + timedelta(seconds=1))

    result = pipeline.run("incremental_sync")

    assert result.success, _failures(result)
    assert pipeline.zoho_stats()["faults_served"]["serve_values"] >= len(records)
    ended = accounted_for(pipeline, contacts)
    assert sorted(ended) == sorted(contacts), "a hostile Contact silently disappeared"
    assert_text_stored_as_served(pipeline, "Contacts", dict(zip(contacts, records, strict=True)))


OTHER_MODULES = ("Leads", "Deals", "Cases")


@pytest.mark.parametrize("module", OTHER_MODULES)
def test_hostile_leads_deals_and_cases_are_stored_and_their_people_and_events_accounted_for(
    synced: FaultPipeline, module: str
):
    @FUZZ
    @given(records=st.lists(hostile_records(module), min_size=1, max_size=5))
    def example(records: list[dict]) -> None:
        pipeline = synced
        ids = _fresh_records(pipeline, module, len(records))
        served = dict(zip(ids, records, strict=True))
        people_before = _people_of(pipeline, module, ids)
        pipeline.zoho_faults(serve_values=served)
        touch(pipeline, module, ids, datetime.now(UTC) + timedelta(seconds=1))

        result = pipeline.run("incremental_sync")

        assert result.success, _failures(result)
        assert pipeline.zoho_stats()["faults_served"]["serve_values"] >= len(records)
        assert_text_stored_as_served(pipeline, module, served)
        people = sorted(people_before | _people_of(pipeline, module, ids))
        ended = accounted_for(pipeline, people)
        assert sorted(ended) == people, "a Contact these records feed ended nowhere"
        assert_every_event_settled(pipeline)

    example()


def assert_text_stored_as_served(pipeline: FaultPipeline, module: str, served: dict) -> None:
    """Each text value served for a text field is in the warehouse as it came (a NUL as
    U+FFFD): nothing is trimmed, cut or dropped on the way."""
    stored = pipeline.warehouse.read_rows(TABLES[module], "id", list(served)).set_index("id")
    assert sorted(stored.index) == sorted(served), f"a hostile {module} record was not stored"
    for record, values in served.items():
        for name, value in values.items():
            if name in TEXT_FIELDS[module] and isinstance(value, str):
                kept = stored.loc[record, name]
                assert kept == value.replace("\x00", "\ufffd"), f"{module}.{name} changed"


def assert_every_event_settled(pipeline: FaultPipeline) -> None:
    """Every outbox event is sent, or held or rejected with its reason; none is left behind."""
    outbox = pipeline.outbox().reindex(columns=["event_id", "status", "reason", "error"])
    unsettled = outbox[~outbox["status"].isin(["sent", "held", "rejected"])]
    assert unsettled.empty, f"{len(unsettled)} events neither sent, held nor rejected"
    parked = outbox[outbox["status"] != "sent"]
    unexplained = parked[parked["reason"].isna() & parked["error"].isna()]
    assert unexplained.empty, f"{len(unexplained)} held or rejected events carry no reason"


def _people_of(pipeline: FaultPipeline, module: str, ids: list[str]) -> set[str]:
    """The Contacts whose profiles these records feed (none for Leads, which only link)."""
    reference = {"Deals": "Contact_Name_id", "Cases": "Related_To_id"}.get(module)
    if reference is None:
        return set()
    rows = pipeline.warehouse.read_rows(TABLES[module], "id", ids)
    if reference not in rows:
        return set()
    contacts = set(pipeline.warehouse.read_table("zoho_contacts", columns=["id"])["id"])
    return {value for value in rows[reference].dropna().astype(str) if value in contacts}


_used = itertools.count()


def _fresh_records(pipeline: FaultPipeline, module: str, count: int) -> list[str]:
    """Records of `module` no earlier example has tampered with."""
    everyone = sorted(pipeline.warehouse.read_table(TABLES[module], columns=["id"])["id"])
    return [everyone[next(_used) % len(everyone)] for _ in range(count)]


def _failures(result) -> str:
    return failure_messages(result)[:3000]


def test_an_unreadable_modified_time_fails_the_read_naming_the_record_and_keeps_the_cursor(
    synced: FaultPipeline,
):
    pipeline = synced
    contact = _fresh_records(pipeline, "Contacts", 1)[0]
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
    assert accounted_for(pipeline, [contact]) == {contact: "accepted"}
    attributes = pipeline.warehouse.read_table("profile_attributes").set_index("crm_contact_id")
    assert not attributes["crm_deleted"].fillna(False).loc[contact]


def test_a_nul_in_a_contact_is_stored_and_pushed_replaced_and_the_nightly_re_read_sees_no_change(
    disturbed_on_each_warehouse: FaultPipeline,
):
    pipeline = disturbed_on_each_warehouse
    assert pipeline.run("nightly_full_sync").success
    contact = sorted(pipeline.warehouse.read_table("profile_attributes")["crm_contact_id"])[0]
    # Served in every answer from now on, as Zoho would serve a value it holds.
    pipeline.zoho_faults(serve_values={contact: {"Mailing_City": "Pune\x00", "Last_Name": "\x00"}})
    touch(pipeline, "Contacts", [contact], datetime.now(UTC))

    assert pipeline.run("incremental_sync").success

    stored = pipeline.warehouse.read_rows("zoho_contacts", "id", [contact]).iloc[0]
    assert (stored["Mailing_City"], stored["Last_Name"]) == ("Pune\ufffd", "\ufffd")
    assert accounted_for(pipeline, [contact]) == {contact: "accepted"}
    identity = pipeline.warehouse.read_rows("profile_attributes", "crm_contact_id", [contact])
    assert clevertap_profiles(pipeline)[identity["identity"].iloc[0]]["City"] == "Pune\ufffd"
    uploads = pipeline.upload_requests()

    nightly = pipeline.run("nightly_full_sync")

    assert nightly.success
    assert asset_metadata(nightly, "zoho_contacts")["records changed"] == 0
    assert pipeline.upload_requests() == uploads
