"""Every hostile value in every field type, deterministically, on SQLite and on PostgreSQL.

`test_bad_input` draws hostile records at random; here each hostile text and each wrong-type
kind is placed into one field of each Zoho field type of Contacts, one Contact per placement, in
one incremental run. Each Contact must end accepted by CleverTap, rejected with its recorded
reason, or in the review queue with a reason; the Contacts nobody tampered with, and an
ordinary edit made in the same run, must sync as if nothing hostile had happened.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from ct_pipeline_tests.reliability.conftest import (
    FaultPipeline,
    clevertap_profiles,
    failure_messages,
    write_config,
)
from ct_pipeline_tests.reliability.test_bad_input import (
    HOSTILE_TEXTS,
    WRONG_TYPE_KINDS,
    accounted_for,
    assert_text_stored_as_served,
    touch,
)

# One Contacts field of each data type Zoho's field metadata gives the fields the sync reads
# (`GET /settings/fields`; `Modified_Time`, the cursor, has a test of its own). Where a type has
# several fields, the one that matters most: an identity source, or a mapped property.
CONTACT_FIELD_BY_TYPE = {
    "text": "Mailing_City",
    "email": "Email",
    "phone": "Mobile",
    "picklist": "Customer_Tier",
    "currency": "Subscription_Value_INR",
    "date": "Date_of_Birth",
    "datetime": "Created_Time",
    "ownerlookup": "Owner",
    "lookup": "Account_Name",
}
LOOKUPS = {"Owner", "Account_Name"}
HOSTILE_VALUES: dict[str, Any] = {"null": None, **HOSTILE_TEXTS, **WRONG_TYPE_KINDS}
ENDINGS = ("accepted", "rejected: ", "review: ")
NEW_CITY = "Tura"

logger = logging.getLogger(__name__)


def placements(record: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """(field type, value kind) -> the value served: a text goes into a lookup as its name
    (the id is kept), anything else replaces the whole field."""
    placed = {}
    for field_type, field in CONTACT_FIELD_BY_TYPE.items():
        for kind, value in HOSTILE_VALUES.items():
            if field in LOOKUPS and isinstance(value, str):
                value = {**(record.get(field) or {"id": "1"}), "name": value}
            placed[(field_type, kind)] = value
    return placed


@pytest.fixture
def synced_on_each_warehouse(disturbed_on_each_warehouse: FaultPipeline, tmp_path):
    """A clean full sync, with the run-level quality gates opened: many hostile profiles in one
    small run would trip them, and this test is about what happens to each record."""
    pipeline = disturbed_on_each_warehouse
    pipeline.config_path = write_config(
        tmp_path, quality={"identity_coverage_floor": 0.0, "rejection_ceiling": 1.0}
    )
    assert pipeline.run("nightly_full_sync").success
    return pipeline


def test_each_hostile_value_in_each_contact_field_type_is_accepted_rejected_or_reviewed(
    synced_on_each_warehouse: FaultPipeline,
):
    pipeline = synced_on_each_warehouse
    contacts = sorted(pipeline.warehouse.read_table("zoho_contacts", columns=["id"])["id"])
    pushed = set(pipeline.warehouse.read_table("profile_attributes")["crm_contact_id"])
    example = pipeline.zoho("GET", f"records/Contacts/{contacts[0]}")["record"]
    placed = placements(example)
    assert len(contacts) > len(placed) + 20, "too few Contacts for a placement each"
    tampered = dict(zip(contacts, placed, strict=False))
    # Contacts sharing no duplicate group with a tampered one: nothing hostile reaches them.
    groups = pipeline.warehouse.read_table("duplicate_profiles").set_index("zoho_id")["group_id"]
    reached = set(groups.reindex(list(tampered)).dropna())
    untouched = [
        contact
        for contact in contacts[len(placed) :]
        if contact in pushed and groups.get(contact) not in reached
    ]
    edited = untouched.pop(0)
    before = clevertap_profiles(pipeline)
    pipeline.zoho_faults(
        serve_values={
            contact: {CONTACT_FIELD_BY_TYPE[field_type]: placed[(field_type, kind)]}
            for contact, (field_type, kind) in tampered.items()
        }
    )
    moment = datetime.now(UTC) + timedelta(seconds=1)
    touch(pipeline, "Contacts", list(tampered), moment)
    pipeline.zoho(
        "POST",
        "records/Contacts",
        [{"id": edited, "Mailing_City": NEW_CITY, "Modified_Time": moment.isoformat()}],
    )

    result = pipeline.run("incremental_sync")

    assert result.success, failure_messages(result)[:3000]
    assert pipeline.zoho_stats()["faults_served"]["serve_values"] >= len(tampered)
    ended = accounted_for(pipeline, [*tampered, *untouched, edited])
    lost = sorted(f"{tampered[c]}" for c in tampered if not ended.get(c, "").startswith(ENDINGS))
    assert lost == [], f"{len(lost)} hostile placements ended nowhere: {lost[:20]}"
    assert_text_stored_as_served(
        pipeline,
        "Contacts",
        {
            c: {CONTACT_FIELD_BY_TYPE[field_type]: placed[(field_type, kind)]}
            for c, (field_type, kind) in tampered.items()
        },
    )
    assert all(ended[contact] == "accepted" for contact in [*untouched, edited])
    after = clevertap_profiles(pipeline)
    identity = pipeline.warehouse.read_rows("profile_attributes", "crm_contact_id", [edited])
    assert after[identity["identity"].iloc[0]]["City"] == NEW_CITY
    identities = pipeline.warehouse.read_rows("profile_attributes", "crm_contact_id", untouched)
    unchanged = [i for i in identities["identity"] if after.get(i) == before.get(i)]
    assert len(unchanged) == len(untouched)
    logger.info("hostile placements by ending:\n%s", endings_table(ended, tampered))


def endings_table(ended: dict[str, str], tampered: dict[str, tuple[str, str]]) -> str:
    """How the placements ended, counted by field type and ending (no values)."""
    frame = pd.DataFrame(
        [
            (field_type, kind, ended[contact].split(":")[0])
            for contact, (field_type, kind) in tampered.items()
        ],
        columns=["field type", "value", "ending"],
    )
    return pd.crosstab(frame["field type"], frame["ending"]).to_string()
