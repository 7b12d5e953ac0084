"""The nightly full re-read applies what differs from the warehouse and derives only that."""

from __future__ import annotations

from ct_pipeline.assets.common import FULL_DERIVATION_TAG
from ct_pipeline_tests.pipeline.conftest import Pipeline
from ct_pipeline_tests.pipeline.test_incremental_derivation import (
    assert_same_tables,
    derived_tables,
    step_metadata,
)
from ct_pipeline_tests.pipeline.test_sync import uploaded_records


def derived_count(result) -> int:
    return step_metadata(result, "contact_identities")["records derived"]


def people(pipeline: Pipeline) -> int:
    return len(pipeline.warehouse.read_table("contact_identities", columns=["zoho_id"]))


def test_a_nightly_rerun_without_crm_changes_derives_and_uploads_nothing(pipeline: Pipeline):
    assert pipeline.run("nightly_full_sync").success
    before = derived_tables(pipeline)
    uploads = pipeline.upload_requests()

    rerun = pipeline.run("nightly_full_sync")

    assert rerun.success
    assert step_metadata(rerun, "zoho_contacts")["records changed"] == 0
    assert derived_count(rerun) == 0
    # Nor are the profiles the last run delivered compared again.
    assert step_metadata(rerun, "clevertap_profile_batches")["profiles"] == 0
    assert pipeline.upload_requests() == uploads
    after = derived_tables(pipeline)
    assert_same_tables(before, after)


def test_a_nightly_rerun_applies_an_edit_the_modified_time_cursor_cannot_see(
    pipeline: Pipeline,
):
    assert pipeline.run("nightly_full_sync").success
    profile = pipeline.warehouse.read_table("profile_attributes").iloc[0]
    contact = pipeline.zoho("GET", f"records/Contacts/{profile['crm_contact_id']}")
    # Changed in Zoho without Modified_Time moving (as a renamed lookup changes its records).
    unseen = {"id": profile["crm_contact_id"], "Mailing_City": "Shillong"}
    unseen["Modified_Time"] = contact["record"]["Modified_Time"]
    pipeline.zoho("POST", "records/Contacts", [unseen])
    sent_before = len(uploaded_records(pipeline))

    assert pipeline.run("incremental_sync").success
    assert len(uploaded_records(pipeline)) == sent_before

    rerun = pipeline.run("nightly_full_sync")
    assert rerun.success
    assert step_metadata(rerun, "zoho_contacts")["records changed"] == 1
    assert 0 < derived_count(rerun) < people(pipeline) / 2
    new = uploaded_records(pipeline)[sent_before:]
    assert [record["identity"] for record in new] == [profile["identity"]]
    assert new[0]["profileData"]["City"] == "Shillong"

    applied = derived_tables(pipeline)
    assert pipeline.run("nightly_full_sync", tags={FULL_DERIVATION_TAG: "true"}).success
    recomputed = derived_tables(pipeline)
    assert_same_tables(recomputed, applied)


def test_the_full_derivation_tag_rebuilds_every_derived_table(pipeline: Pipeline):
    assert pipeline.run("nightly_full_sync").success

    rebuilt = pipeline.run("incremental_sync", tags={FULL_DERIVATION_TAG: "true"})

    assert rebuilt.success
    assert derived_count(rebuilt) == people(pipeline)


def test_a_changed_sync_configuration_rebuilds_every_derived_table_once(
    pipeline: Pipeline, tmp_path
):
    assert pipeline.run("nightly_full_sync").success
    config = tmp_path / "sync.yaml"
    config.write_text("escalation: {case_priorities: [High, Medium]}\n")
    pipeline.config_path = str(config)

    changed = pipeline.run("incremental_sync")
    again = pipeline.run("incremental_sync")

    assert changed.success and again.success
    assert derived_count(changed) == people(pipeline)
    assert derived_count(again) < people(pipeline) / 2
