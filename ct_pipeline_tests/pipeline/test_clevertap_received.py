"""What CleverTap holds after a sync, property by property, against the CRM that was read.

Expected values come from the synthetic CRM (and from Zoho for records a test edits), never
from the pipeline's own tables.
"""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd
import pytest

from ct_pipeline.config import load_sync_config
from ct_pipeline.sandbox.synthetic import SyntheticCrm
from ct_pipeline_tests.pipeline.conftest import Pipeline, write_config
from ct_pipeline_tests.pipeline.test_sync import pushed_contact_deal, uploaded_records

CLOSED_STAGES = load_sync_config().deal_events.closed_stages
# Contact field -> CleverTap property, as the packaged configuration maps them.
MAPPED = {
    "Account_Type": "crm_account_type",
    "Subscription_Plan": "subscription_plan",
    "Subscription_Value_INR": "subscription_value_inr",
    "Owner.name": "account_manager",
}


def clevertap_profiles(pipeline: Pipeline) -> dict[str, dict]:
    """Every profile CleverTap holds, by the Zoho Contact id it carries."""
    held = pipeline.clevertap("GET", "profiles")["profiles"]
    return {profile["profileData"]["crm_contact_id"]: profile["profileData"] for profile in held}


def latest_open_stage(deals: pd.DataFrame, contact_id: str) -> str | None:
    """The stage of the Contact's most recently modified deal that is not over (ties: larger id)."""
    own = deals[(deals["Contact_Name.id"] == contact_id) & ~deals["Stage"].isin(CLOSED_STAGES)]
    if own.empty:
        return None
    return own.sort_values(["Modified_Time", "id"]).iloc[-1]["Stage"]


def present(value: object) -> object:
    """A CRM value as CleverTap should hold it: missing ones (NaN, None, "") not at all."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def test_profiles_carry_the_mapped_crm_fields_and_the_latest_open_deal_stage(
    pipeline: Pipeline, synthetic_crm: SyntheticCrm
):
    assert pipeline.run("nightly_full_sync").success

    held = clevertap_profiles(pipeline)
    contacts = synthetic_crm.contacts.set_index("id")
    assert len(held) > 200
    wrong = Counter()
    for contact_id, data in held.items():
        contact = contacts.loc[contact_id]
        for field, prop in MAPPED.items():
            if data.get(prop) != present(contact[field]):
                wrong[prop] += 1
        if data.get("crm_deal_stage") != latest_open_stage(synthetic_crm.deals, contact_id):
            wrong["crm_deal_stage"] += 1
    assert wrong == Counter()
    assert sum(1 for data in held.values() if "crm_deal_stage" in data) > 50


def test_closing_a_contacts_latest_open_deal_makes_the_one_before_it_their_stage(
    pipeline: Pipeline, synthetic_crm: SyntheticCrm
):
    assert pipeline.run("nightly_full_sync").success
    held = clevertap_profiles(pipeline)
    deals = synthetic_crm.deals
    open_deals = deals[deals["Contact_Name.id"].isin(held) & ~deals["Stage"].isin(CLOSED_STAGES)]
    counts = open_deals.groupby("Contact_Name.id").size()
    contact_id = counts[counts >= 2].index.sort_values()[0]
    mine = open_deals[open_deals["Contact_Name.id"] == contact_id]
    latest, before = mine.sort_values(["Modified_Time", "id"]).iloc[[-1, -2]].itertuples()
    assert held[contact_id]["crm_deal_stage"] == latest.Stage

    pipeline.zoho("POST", "records/Deals", [{"id": latest.id, "Stage": "Closed Lost"}])
    assert pipeline.run("incremental_sync").success

    assert clevertap_profiles(pipeline)[contact_id]["crm_deal_stage"] == before.Stage


def test_a_stage_event_carries_the_deals_value_category_owner_and_modification_time(
    pipeline: Pipeline, synthetic_crm: SyntheticCrm
):
    assert pipeline.run("nightly_full_sync").success
    deal_id = pushed_contact_deal(pipeline)["id"]
    deal = synthetic_crm.deals.set_index("id").loc[deal_id]

    pipeline.zoho("POST", "records/Deals", [{"id": deal_id, "Stage": "Closed Lost"}])
    assert pipeline.run("incremental_sync").success

    (event,) = uploaded_records(pipeline, "event")
    modified = pipeline.zoho("GET", f"records/Deals/{deal_id}")["record"]["Modified_Time"]
    assert event["ts"] == int(pd.Timestamp(modified).timestamp())
    assert event["evtData"] == {
        "stage_name": "Closed Lost",
        "previous_stage": deal["Stage"],
        "deal_id": deal_id,
        "deal_value_inr": deal["Amount"],
        "product_category": deal["Product_Category"],
        "pipeline": deal["Pipeline"],
        "account_manager": deal["Owner.name"],
    }


@pytest.mark.parametrize("policy", ["flag", "ignore"])
def test_a_contact_deleted_in_zoho_is_handled_in_clevertap_as_configured(
    pipeline: Pipeline, tmp_path, policy: str
):
    pipeline.config_path = write_config(tmp_path, clevertap={"deleted_contacts": policy})
    assert pipeline.run("nightly_full_sync").success
    profile = pipeline.warehouse.read_table("profile_attributes").sort_values("identity").iloc[0]
    identity, contact_id = profile["identity"], profile["crm_contact_id"]
    before = clevertap_profiles(pipeline)[contact_id]
    uploads = len(uploaded_records(pipeline))

    pipeline.zoho("DELETE", f"records/Contacts/{contact_id}")
    for job in ("incremental_sync", "incremental_sync", "nightly_full_sync"):
        assert pipeline.run(job).success

    after = [r for r in uploaded_records(pipeline)[uploads:] if r["identity"] == identity]
    held = clevertap_profiles(pipeline)[contact_id]
    if policy == "flag":
        # Pushed once, flagged, and never again.
        assert [record["profileData"] for record in after] == [
            {"crm_contact_id": contact_id, "crm_deleted": True}
        ]
        assert held == {**before, "crm_deleted": True}
    else:
        assert after == []
        assert held == before


def test_the_escalation_flag_stays_while_any_open_high_case_remains(pipeline: Pipeline):
    assert pipeline.run("nightly_full_sync").success
    profiles = pipeline.warehouse.read_table("profile_attributes").sort_values("identity")
    calm = profiles[~profiles["has_open_escalation"].astype(bool)].iloc[0]
    case = {"Status": "New", "Priority": "High", "Related_To": {"id": calm["crm_contact_id"]}}
    created = pipeline.zoho(
        "POST",
        "records/Cases",
        [{**case, "Subject": "Refund not received"}, {**case, "Subject": "App keeps crashing"}],
    )
    first, second = (record["id"] for record in created["records"])

    def flag_after_sync() -> bool:
        assert pipeline.run("incremental_sync").success
        held = pipeline.clevertap("GET", "profiles", identity=calm["identity"])["profiles"][0]
        return held["profileData"]["has_open_escalation"]

    assert flag_after_sync() is True
    pipeline.zoho("POST", "records/Cases", [{"id": first, "Status": "Closed"}])
    assert flag_after_sync() is True
    pipeline.zoho("POST", "records/Cases", [{"id": second, "Status": "Closed"}])
    assert flag_after_sync() is False
    sent = [r for r in uploaded_records(pipeline) if r["identity"] == calm["identity"]]
    assert [r["profileData"]["has_open_escalation"] for r in sent] == [False, True, False]
