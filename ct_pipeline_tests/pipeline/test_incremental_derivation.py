"""An incremental run derives only what changed, and ends where a full recompute would."""

from __future__ import annotations

import pandas as pd
import requests

from ct_pipeline.assets.common import FULL_DERIVATION_TAG
from ct_pipeline_tests.pipeline.conftest import Pipeline

# The derived tables, each with the columns that identify a row.
DERIVED = {
    "contact_identities": ["module", "zoho_id"],
    "duplicate_profiles": ["module", "zoho_id"],
    "duplicate_profile_links": ["record_id", "field", "value_hash"],
    "identity_review_queue": ["module", "zoho_id"],
    "profile_attributes": ["identity"],
}


def derived_tables(pipeline: Pipeline) -> dict[str, pd.DataFrame]:
    """Every derived table, rows and columns in a fixed order."""
    tables = {}
    for name, key in DERIVED.items():
        table = pipeline.warehouse.read_table(name)
        table = table[sorted(table.columns)].sort_values(key, ignore_index=True)
        tables[name] = table
    return tables


def assert_same_tables(expected: dict[str, pd.DataFrame], actual: dict[str, pd.DataFrame]) -> None:
    """Every derived table holds the same rows in both."""
    for name in DERIVED:
        pd.testing.assert_frame_equal(expected[name], actual[name], obj=name)


def step_metadata(result, asset: str) -> dict:
    """The metadata an asset recorded in a run."""
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.to_user_string() == asset:
            return {key: entry.value for key, entry in materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialised")


def edit_crm(pipeline: Pipeline) -> None:
    """CRM edits that move identities, duplicate groups, collisions and profiles."""
    identities = pipeline.warehouse.read_table("contact_identities")
    members = pipeline.warehouse.read_table("duplicate_profiles")
    contacts = pipeline.warehouse.read_table("zoho_contacts").set_index("id")
    people = identities[identities["module"] == "Contacts"].set_index("zoho_id")
    with_mobile = people[people["mobile_e164"].notna()].index.tolist()
    grouped = members[(members["group_size"] > 1) & (members["module"] == "Contacts")]
    single = members[(members["group_size"] == 1) & (members["module"] == "Contacts")]

    city, joiner, joined, emailless, removed, leaving = (
        single["zoho_id"].iloc[0],
        single["zoho_id"].iloc[1],
        with_mobile[5],
        single["zoho_id"].iloc[2],
        single["zoho_id"].iloc[3],
        grouped["zoho_id"].iloc[0],
    )
    edits = [
        {"id": city, "Mailing_City": "Shillong"},
        # A record takes another's mobile: the two become one duplicate group.
        {"id": joiner, "Mobile": contacts.loc[joined, "Mobile"]},
        {"id": emailless, "Email": None, "Secondary_Email": None},
        # A grouped record drops every phone and email: its group splits.
        {"id": leaving, "Mobile": None, "Phone": None, "Email": None, "Secondary_Email": None},
        # A new Contact with an existing record's mobile.
        {"Last_Name": "Incremental", "Mobile": contacts.loc[with_mobile[9], "Mobile"]},
    ]
    pipeline.zoho("POST", "records/Contacts", edits)
    response = requests.delete(
        f"{pipeline.sandbox.zoho.url}/__sandbox/records/Contacts/{removed}", timeout=30
    )
    response.raise_for_status()

    deals = pipeline.warehouse.read_table("zoho_deals")
    moved = deals[deals["Contact_Name_id"].notna()].iloc[0]
    pipeline.zoho(
        "POST",
        "records/Deals",
        [{"id": moved["id"], "Contact_Name": {"id": city}, "Stage": "Closed Lost"}],
    )
    pipeline.zoho(
        "POST",
        "records/Cases",
        [
            {
                "Subject": "Card blocked",
                "Status": "New",
                "Priority": "High",
                "Related_To": {"id": joined},
            }
        ],
    )


def queued_at_most(result) -> int:
    """The person records the Zoho assets of a run can have queued: the Contacts and Leads
    they read or saw deleted, and two Contacts (before, after) per Deal and Case read."""
    total = 0
    for asset, per_record in (
        ("zoho_contacts", 1),
        ("zoho_leads", 1),
        ("zoho_deals", 2),
        ("zoho_cases", 2),
    ):
        metadata = step_metadata(result, asset)
        total += per_record * (metadata["records read"] + metadata["records deleted"])
    return total


def test_an_incremental_run_derives_what_a_full_recompute_derives(pipeline: Pipeline):
    assert pipeline.run("nightly_full_sync").success
    edit_crm(pipeline)

    incremental = pipeline.run("incremental_sync")
    assert incremental.success
    after_incremental = derived_tables(pipeline)
    derived = step_metadata(incremental, "contact_identities")["records derived"]
    # Only the queued records were identified again, not the whole CRM.
    assert 0 < derived <= queued_at_most(incremental)
    assert derived < len(after_incremental["contact_identities"]) / 2

    assert pipeline.run("nightly_full_sync", tags={FULL_DERIVATION_TAG: "true"}).success
    recomputed = derived_tables(pipeline)
    assert_same_tables(recomputed, after_incremental)


def test_an_incremental_run_without_crm_changes_leaves_the_derived_tables_as_they_were(
    pipeline: Pipeline,
):
    assert pipeline.run("nightly_full_sync").success
    before = derived_tables(pipeline)

    result = pipeline.run("incremental_sync")
    assert result.success
    # Zoho's cursor is inclusive: records modified in the cursor's second are read again.
    assert step_metadata(result, "contact_identities")["records derived"] <= queued_at_most(result)
    after = derived_tables(pipeline)
    assert_same_tables(before, after)


def test_a_new_contact_with_no_phone_or_email_is_derived_into_the_review_queue(
    pipeline: Pipeline,
):
    assert pipeline.run("nightly_full_sync").success
    answer = pipeline.zoho("POST", "records/Contacts", [{"Last_Name": "Nophone"}])
    created = answer["records"][0]["id"]

    result = pipeline.run("incremental_sync")

    assert result.success
    queue = pipeline.warehouse.read_table("identity_review_queue").set_index("zoho_id")
    assert queue.loc[created, "reason"] == "no_phone_or_email"
