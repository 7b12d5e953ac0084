"""Reconciliation: people CleverTap already holds under another identity are not duplicated."""

from __future__ import annotations

from ct_pipeline.assets.common import DRY_RUN_TAG
from ct_pipeline.clevertap import UploadItem
from ct_pipeline.clevertap.payloads import build_profile_record
from ct_pipeline_tests.pipeline.conftest import Pipeline
from ct_pipeline_tests.pipeline.test_crash_recovery import asset_metadata
from ct_pipeline_tests.pipeline.test_sync import uploaded_records


def with_reconciliation(pipeline: Pipeline, tmp_path, enabled: bool) -> None:
    config = tmp_path / f"sync-{enabled}.yaml"
    config.write_text(f"clevertap: {{reconcile_new_profiles: {str(enabled).lower()}}}\n")
    pipeline.config_path = str(config)


def seed_clevertap(pipeline: Pipeline, profiles: dict[str, dict]) -> None:
    """Profiles the app's SDK created before the first sync, uploaded straight to CleverTap."""
    client = pipeline.resources()["clevertap"]
    items = [
        UploadItem(key=identity, record=build_profile_record(identity, data, 1_700_000_000))
        for identity, data in profiles.items()
    ]
    assert client.upload(items).all_accepted


def test_a_person_known_under_their_email_is_updated_under_it_not_duplicated(
    pipeline: Pipeline, tmp_path
):
    with_reconciliation(pipeline, tmp_path, enabled=False)
    assert pipeline.run("nightly_full_sync", tags={DRY_RUN_TAG: "true"}).success
    profiles = pipeline.warehouse.read_table("profile_attributes")
    phone_person = profiles[(profiles["identity_kind"] == "phone") & profiles["Email"].notna()]
    person = phone_person.iloc[0]
    seed_clevertap(pipeline, {person["Email"]: {"Email": person["Email"], "Name": "From SDK"}})
    with_reconciliation(pipeline, tmp_path, enabled=True)

    result = pipeline.run("nightly_full_sync")

    assert result.success
    sent = {record["identity"]: record for record in uploaded_records(pipeline)}
    assert person["identity"] not in sent
    assert sent[person["Email"]]["profileData"]["crm_contact_id"] == person["crm_contact_id"]
    assert pipeline.clevertap("GET", "profiles")["count"] == len(profiles)
    metadata = asset_metadata(result, "clevertap_reconciliation")
    assert metadata["people looked up"] == len(profiles)
    assert metadata["decisions"]["other_identity"] == 1


def test_answers_naming_two_profiles_hold_the_person_and_reruns_look_up_nobody(
    pipeline: Pipeline, tmp_path
):
    with_reconciliation(pipeline, tmp_path, enabled=False)
    assert pipeline.run("nightly_full_sync", tags={DRY_RUN_TAG: "true"}).success
    profiles = pipeline.warehouse.read_table("profile_attributes")
    person = profiles[(profiles["identity_kind"] == "phone") & profiles["Email"].notna()].iloc[0]
    seed_clevertap(
        pipeline,
        {
            person["identity"]: {"Name": "Phone login"},
            person["Email"]: {"Email": person["Email"], "Name": "Email login"},
        },
    )
    with_reconciliation(pipeline, tmp_path, enabled=True)

    first = pipeline.run("nightly_full_sync")
    again = pipeline.run("nightly_full_sync")

    assert first.success and again.success
    sent = {record["identity"] for record in uploaded_records(pipeline)}
    assert person["identity"] not in sent and person["Email"] not in sent
    decisions = pipeline.warehouse.read_table("clevertap_reconciliation").set_index("identity")
    assert decisions.loc[person["identity"], "decision"] == "conflict"
    assert asset_metadata(again, "clevertap_reconciliation")["lookups"] == 0
