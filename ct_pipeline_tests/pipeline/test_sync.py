"""The sync end to end: Zoho emulator -> warehouse -> CleverTap emulator, judged by what arrived."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter

import dagster as dg
import pandas as pd

from ct_pipeline.assets.common import DRY_RUN_TAG
from ct_pipeline.sandbox.launch import start_sandbox
from ct_pipeline_tests.pipeline import ground_truth
from ct_pipeline_tests.pipeline.conftest import Pipeline


def uploaded_records(pipeline: Pipeline, record_type: str = "profile") -> list[dict]:
    """Every record of `record_type` CleverTap was sent, in arrival order."""
    log = pipeline.clevertap("GET", "requests", path="/1/upload")["requests"]
    return [
        record
        for entry in log
        for record in (entry.get("body") or {}).get("d", [])
        if record.get("type") == record_type
    ]


def sync_then_count(pipeline: Pipeline) -> int:
    assert pipeline.run("nightly_full_sync").success
    return pipeline.upload_requests()


def test_the_first_sync_pushes_each_person_once_under_their_own_mobile_or_email(
    pipeline: Pipeline, synthetic_crm
):
    result = pipeline.run("nightly_full_sync")

    assert result.success
    sent = Counter(record["identity"] for record in uploaded_records(pipeline))
    # The Leads Zoho served (it may leave converted ones out) link a person's records too.
    served = set(pipeline.warehouse.read_table("zoho_leads", columns=["id"])["id"])
    records = ground_truth.readable_records(synthetic_crm, served)
    carried_by = ground_truth.owners(records)
    profiles = ground_truth.profiles_of(records)
    # Only one person's own number or email: no landline, placeholder, office line or typo.
    assert [identity for identity in sent if len(carried_by.get(identity, ())) != 1] == []
    assert max(sent.values()) == 1
    pushed: dict[int, set[str]] = {}
    for identity in sent:
        (person,) = carried_by[identity]
        pushed.setdefault(person, set()).add(identity)
    # One profile per linked part of a person, under a value of that part: the mobile, else the
    # email, when the part is one record (for several, the canonical record's decides).
    wrong = []
    for person, identities in pushed.items():
        parts = profiles.get(person, [])
        chosen = [set(identities) & _values(part) for part in parts]
        single = [ground_truth.own_identity(p) for p in parts if len(p) == 1]
        if [len(found) for found in chosen] != [1] * len(parts) or not set(single) <= identities:
            wrong.append(person)
    assert wrong == []
    # Someone reachable but not pushed was merged into another person's profile through a value
    # several people carry (an office line on fewer records than identity.max_records_per_value).
    members = pipeline.warehouse.read_table("duplicate_profiles")
    missing = set(profiles) - set(pushed)
    assert len(missing) <= 0.05 * len(profiles)
    for person in missing:
        own = records.loc[(records["person"] == person) & (records["module"] == "Contacts"), "id"]
        groups = members.loc[members["zoho_id"].isin(own), "canonical_identity"]
        assert {next(iter(carried_by[identity])) for identity in groups} - {person}, person
    assert pipeline.clevertap("GET", "profiles")["count"] == len(sent)


def _values(part: pd.DataFrame) -> set[str]:
    return set(part["mobile"].dropna()) | set(part["email"].dropna())


def test_nothing_is_pushed_for_review_queue_records(pipeline: Pipeline):
    assert pipeline.run("nightly_full_sync").success

    queue = pipeline.warehouse.read_table("identity_review_queue")
    pushed_contacts = {
        record["profileData"].get("crm_contact_id") for record in uploaded_records(pipeline)
    }
    assert len(queue) > 0
    assert not set(queue["zoho_id"]) & pushed_contacts
    assert {"zoho_id", "module", "reason"} <= set(queue.columns)
    assert not {"Phone", "Mobile", "Email", "identity"} & set(queue.columns)


def test_a_second_run_with_no_crm_change_uploads_nothing(pipeline: Pipeline):
    first = sync_then_count(pipeline)
    assert first > 0

    assert pipeline.run("incremental_sync").success
    assert pipeline.run("nightly_full_sync").success

    assert pipeline.upload_requests() == first


def test_a_changed_city_pushes_exactly_that_profile(pipeline: Pipeline):
    sync_then_count(pipeline)
    profile = pipeline.warehouse.read_table("profile_attributes").iloc[0]
    before = len(uploaded_records(pipeline))

    pipeline.zoho(
        "POST", "records/Contacts", [{"id": profile["crm_contact_id"], "Mailing_City": "Shillong"}]
    )
    assert pipeline.run("incremental_sync").success

    new = uploaded_records(pipeline)[before:]
    assert [record["identity"] for record in new] == [profile["identity"]]
    assert new[0]["profileData"]["City"] == "Shillong"
    held = pipeline.clevertap("GET", "profiles", identity=profile["identity"])["profiles"][0]
    assert held["profileData"]["City"] == "Shillong"


def test_a_stage_change_pushes_one_event_with_its_previous_stage(pipeline: Pipeline):
    sync_then_count(pipeline)
    assert uploaded_records(pipeline, "event") == []
    deal = pushed_contact_deal(pipeline)

    pipeline.zoho("POST", "records/Deals", [{"id": deal["id"], "Stage": "Closed Lost"}])
    assert pipeline.run("incremental_sync").success
    assert pipeline.run("incremental_sync").success

    events = uploaded_records(pipeline, "event")
    assert len(events) == 1
    assert events[0]["evtName"] == "Deal Stage Changed"
    assert events[0]["evtData"]["previous_stage"] == deal["Stage"]
    assert events[0]["evtData"]["stage_name"] == "Closed Lost"
    assert events[0]["evtData"]["deal_id"] == deal["id"]
    outbox = pipeline.warehouse.read_table("event_outbox")
    assert outbox["status"].tolist() == ["sent"]


def test_a_stage_with_a_campaign_triggers_it_once_for_the_deal_owner(pipeline: Pipeline):
    sync_then_count(pipeline)
    deal = pushed_contact_deal(pipeline)
    profiles = pipeline.warehouse.read_table("profile_attributes")
    identity = profiles.set_index("crm_contact_id").loc[deal["Contact_Name_id"], "identity"]

    pipeline.zoho("POST", "records/Deals", [{"id": deal["id"], "Stage": "Approved"}])
    assert pipeline.run("incremental_sync").success
    assert pipeline.run("incremental_sync").success

    (trigger,) = pipeline.clevertap("GET", "triggers")["triggers"]
    # The packaged configuration fires campaign 1700000001 on Approved.
    assert str(trigger["campaign_id"]) == "1700000001"
    assert trigger["to"] == {"identity": [identity]}
    assert trigger["ExternalTrigger"]["deal_id"] == deal["id"]
    outbox = pipeline.warehouse.read_table("event_outbox")
    assert sorted(outbox["kind"]) == ["campaign", "event"]
    assert set(outbox["status"]) == {"sent"}


def test_an_open_high_priority_case_sets_the_escalation_flag_and_closing_it_clears_it(
    pipeline: Pipeline,
):
    sync_then_count(pipeline)
    profiles = pipeline.warehouse.read_table("profile_attributes")
    calm = profiles[~profiles["has_open_escalation"].astype(bool)].iloc[0]

    created = pipeline.zoho(
        "POST",
        "records/Cases",
        [
            {
                "Subject": "Refund not received",
                "Status": "New",
                "Priority": "High",
                "Related_To": {"id": calm["crm_contact_id"]},
            }
        ],
    )
    assert pipeline.run("incremental_sync").success
    assert clevertap_flag(pipeline, calm["identity"]) is True

    case_id = created["records"][0]["id"]
    pipeline.zoho("POST", "records/Cases", [{"id": case_id, "Status": "Closed"}])
    assert pipeline.run("incremental_sync").success
    assert clevertap_flag(pipeline, calm["identity"]) is False


def test_a_partial_rejection_keeps_the_rejected_record_visible_and_the_rest_done(
    pipeline: Pipeline,
):
    attributes_run = pipeline.run("nightly_full_sync", tags={DRY_RUN_TAG: "true"})
    assert attributes_run.success
    assert pipeline.upload_requests() == 0
    victim = pipeline.warehouse.read_table("profile_attributes").iloc[0]
    pipeline.clevertap(
        "POST", "faults", {"reject": [{"identity": victim["identity"], "code": 512}]}
    )

    assert pipeline.run("incremental_sync").success

    rejections = pipeline.warehouse.read_table("clevertap_rejections")
    assert rejections["record_key"].tolist() == [victim["identity"]]
    assert rejections["zoho_id"].tolist() == [victim["crm_contact_id"]]
    assert int(rejections["code"].iloc[0]) == 512
    pushed = pipeline.warehouse.read_table("clevertap_pushed_profiles")
    profiles = pipeline.warehouse.read_table("profile_attributes")
    assert set(pushed["identity"]) == set(profiles["identity"]) - {victim["identity"]}

    pipeline.clevertap("POST", "faults", {"clear": True})
    before = len(uploaded_records(pipeline))
    assert pipeline.run("incremental_sync").success
    retried = uploaded_records(pipeline)[before:]
    assert [record["identity"] for record in retried] == [victim["identity"]]
    assert pipeline.warehouse.read_table("clevertap_rejections").empty


def test_a_dry_run_builds_and_checks_everything_but_sends_nothing(pipeline: Pipeline):
    result = pipeline.run("nightly_full_sync", tags={DRY_RUN_TAG: "true"})

    assert result.success
    assert pipeline.upload_requests() == 0
    assert len(pipeline.warehouse.read_table("clevertap_profile_batches")) > 0
    assert pipeline.warehouse.read_table("clevertap_pushed_profiles").empty
    assert all(check.passed for check in result.get_asset_check_evaluations())


def test_every_asset_check_passes_on_the_synthetic_crm(pipeline: Pipeline):
    result = pipeline.run("nightly_full_sync")

    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) >= 7
    assert [e.check_name for e in evaluations if not e.passed] == []


def pushed_contact_deal(pipeline: Pipeline) -> pd.Series:
    """An open deal of a Contact whose profile was pushed."""
    deals = pipeline.warehouse.read_table("zoho_deals")
    pushed = set(pipeline.warehouse.read_table("profile_attributes")["crm_contact_id"])
    open_deals = deals[
        deals["Contact_Name_id"].isin(pushed) & ~deals["Stage"].isin(["Closed Lost", "Rejected"])
    ]
    return open_deals.sort_values("id").iloc[0]


def clevertap_flag(pipeline: Pipeline, identity: str) -> bool:
    profile = pipeline.clevertap("GET", "profiles", identity=identity)["profiles"][0]
    return profile["profileData"]["has_open_escalation"]


def test_a_mapped_field_renamed_in_zoho_stops_the_push_naming_the_field(warehouse, synthetic_crm):
    renamed = copy.deepcopy(synthetic_crm)
    contacts = renamed.contacts.rename(columns={"Customer_Tier": "Customer_Segment"})
    renamed = dataclasses.replace(renamed, contacts=contacts)
    sandbox = start_sandbox(crm=renamed)
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            pipeline = Pipeline(sandbox=sandbox, warehouse=warehouse, instance=instance)
            result = pipeline.run("nightly_full_sync")
            uploads = pipeline.upload_requests()
    finally:
        sandbox.stop()

    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert not result.success
    assert [e.check_name for e in failed] == ["mapped_fields_present"]
    assert "Customer_Tier" in failed[0].description
    assert uploads == 0
