"""Every asset check driven into failure on a real sync: the blocking ones stop the data before
CleverTap (nothing reaches the emulator), the rejection shares warn and let the run finish.

Where the CRM or CleverTap can produce the bad data (a coverage drop, an identity CleverTap
answered with, refused records), the test makes them produce it. The other checks guard against
a derivation bug no input reaches; for those the test runs the sync with that one asset
replaced by the real asset followed by a corruption of what it wrote, as such a bug would leave.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dagster as dg

from ct_pipeline.assets import ALL_ASSETS
from ct_pipeline.assets.clevertap import clevertap_profile_batches
from ct_pipeline.assets.identity import duplicate_profiles
from ct_pipeline.config import SyncConfigResource
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline_tests.pipeline.conftest import Pipeline, move_deals, write_config
from ct_pipeline_tests.pipeline.test_reconciliation import seed_clevertap
from ct_pipeline_tests.pipeline.test_sync import uploaded_records


def check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    """The evaluation of the check called `name` in a run (it must have run)."""
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    return sorted(e.check_name for e in result.get_asset_check_evaluations() if not e.passed)


def values(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {key: value.value for key, value in evaluation.metadata.items()}


def asset_then(
    asset: dg.AssetsDefinition, corrupt: Callable[[WarehouseResource], None]
) -> list[dg.AssetsDefinition]:
    """The sync's assets with `asset` replaced by itself followed by `corrupt(warehouse)`."""
    compute = asset.op.compute_fn.decorated_fn

    @dg.multi_asset(specs=list(asset.specs), name=asset.op.name)
    def corrupted(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        sync_config: SyncConfigResource,
    ) -> dg.MaterializeResult:
        result = compute(context, warehouse=warehouse, sync_config=sync_config)
        corrupt(warehouse)
        return result

    return [corrupted if a.key == asset.key else a for a in ALL_ASSETS]


def test_identity_coverage_below_the_floor_blocks_the_push(pipeline: Pipeline, tmp_path):
    pipeline.config_path = write_config(tmp_path, quality={"identity_coverage_floor": 1.0})

    result = pipeline.run("nightly_full_sync")

    assert not result.success
    assert failed_checks(result) == ["identity_coverage"]
    measured = values(check(result, "identity_coverage"))
    assert measured["coverage"] < measured["floor"] == 1.0
    assert pipeline.upload_requests() == 0


def test_an_uploaded_identity_that_is_not_a_phone_or_email_blocks_the_push(
    pipeline: Pipeline, tmp_path
):
    assert pipeline.run("nightly_full_sync", tags={"ct_pipeline/dry_run": "true"}).success
    profiles = pipeline.warehouse.read_table("profile_attributes")
    person = profiles[(profiles["identity_kind"] == "phone") & profiles["Email"].notna()].iloc[0]
    # The app's SDK keyed this person by a customer number; reconciliation would upload under it.
    seed_clevertap(pipeline, {"customer-1042": {"Email": person["Email"], "Name": "From SDK"}})
    uploads = pipeline.upload_requests()
    pipeline.config_path = write_config(tmp_path, clevertap={"reconcile_new_profiles": True})

    result = pipeline.run("nightly_full_sync")

    assert not result.success
    assert failed_checks(result) == ["profile_batches_well_formed"]
    measured = values(check(result, "profile_batches_well_formed"))
    assert measured["invalid uploaded identities"] == 1
    assert measured["uploaded identities repeated"] == 0
    assert pipeline.upload_requests() == uploads


def test_two_records_uploaded_under_one_identity_block_the_push(pipeline: Pipeline):
    def one_record_takes_anothers_identity(warehouse: WarehouseResource) -> None:
        batches = warehouse.read_table("clevertap_profile_batches").sort_values("identity")
        first, second = batches["record"].iloc[0], batches["identity"].iloc[1]
        with warehouse.transaction() as tx:
            tx.execute(
                "UPDATE clevertap_profile_batches SET record = :record WHERE identity = :identity",
                {"record": first, "identity": second},
            )

    result = pipeline.run(
        "nightly_full_sync",
        assets=asset_then(clevertap_profile_batches, one_record_takes_anothers_identity),
    )

    assert not result.success
    assert failed_checks(result) == ["profile_batches_well_formed"]
    assert values(check(result, "profile_batches_well_formed"))["uploaded identities repeated"] == 1
    assert pipeline.upload_requests() == 0


def test_a_batch_above_the_batch_size_blocks_the_push(pipeline: Pipeline, tmp_path):
    pipeline.config_path = write_config(tmp_path, clevertap={"batch_size": 100})

    def one_batch(warehouse: WarehouseResource) -> None:
        with warehouse.transaction() as tx:
            tx.execute("UPDATE clevertap_profile_batches SET batch = 0")

    result = pipeline.run(
        "nightly_full_sync", assets=asset_then(clevertap_profile_batches, one_batch)
    )

    assert not result.success
    assert failed_checks(result) == ["profile_batches_well_formed"]
    measured = values(check(result, "profile_batches_well_formed"))
    assert measured["largest batch"] > measured["limit"] == 100
    assert pipeline.upload_requests() == 0


def test_an_identity_claimed_by_two_canonical_people_blocks_the_push(pipeline: Pipeline):
    def two_groups_claim_one_identity(warehouse: WarehouseResource) -> None:
        members = warehouse.read_table("duplicate_profiles")
        pushed = members[members["status"] == "push"].drop_duplicates("group_id")
        first, second = pushed.sort_values("group_id").iloc[:2].itertuples(index=False)
        with warehouse.transaction() as tx:
            tx.execute(
                "UPDATE duplicate_profiles SET canonical_identity = :identity "
                "WHERE group_id = :group",
                {"identity": first.canonical_identity, "group": int(second.group_id)},
            )

    result = pipeline.run(
        "nightly_full_sync", assets=asset_then(duplicate_profiles, two_groups_claim_one_identity)
    )

    assert not result.success
    assert failed_checks(result) == ["no_identity_claimed_twice"]
    assert values(check(result, "no_identity_claimed_twice"))["claimed twice"] == 1
    assert pipeline.upload_requests() == 0


def test_an_event_released_without_an_identity_blocks_the_event_upload(pipeline: Pipeline):
    assert pipeline.run("nightly_full_sync").success
    queue = pipeline.warehouse.read_table("identity_review_queue")
    deals = pipeline.warehouse.read_table("zoho_deals")
    deal = deals[deals["Contact_Name_id"].isin(queue["zoho_id"])].sort_values("id").iloc[0]
    stamp = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0).isoformat()
    pipeline.zoho(
        "POST",
        "records/Deals",
        [{"id": deal["id"], "Stage": "Closed Lost", "Modified_Time": stamp}],
    )
    assert pipeline.run("incremental_sync").success
    # An operator sets the held row pending by hand, with nobody to send it to.
    with pipeline.warehouse.transaction() as tx:
        tx.execute("UPDATE event_outbox SET status = 'pending' WHERE status = 'held'")

    result = pipeline.run("incremental_sync")

    assert not result.success
    assert failed_checks(result) == ["event_batches_addressed"]
    assert values(check(result, "event_batches_addressed"))["without identity"] == 1
    assert uploaded_records(pipeline, "event") == []


def test_a_profile_rejection_share_above_the_ceiling_warns_and_the_run_finishes(
    pipeline: Pipeline,
):
    assert pipeline.run("nightly_full_sync", tags={"ct_pipeline/dry_run": "true"}).success
    profiles = pipeline.warehouse.read_table("profile_attributes").sort_values("identity")
    refused = profiles["identity"].head(len(profiles) // 10).tolist()
    pipeline.clevertap(
        "POST", "faults", {"reject": [{"identity": i, "code": 512} for i in refused]}
    )

    result = pipeline.run("incremental_sync")

    assert result.success
    share = check(result, "profile_rejection_share")
    assert not share.passed and share.severity == dg.AssetCheckSeverity.WARN
    assert values(share)["rejected"] == len(refused)
    assert values(share)["share"] > values(share)["ceiling"]
    rejections = pipeline.warehouse.read_table("clevertap_rejections")
    assert sorted(rejections["record_key"]) == sorted(refused)


def test_an_event_rejection_share_above_the_ceiling_warns_and_the_run_finishes(
    pipeline: Pipeline,
):
    assert pipeline.run("nightly_full_sync").success
    stamp = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    (deal,) = move_deals(pipeline, "Closed Lost", 1, stamp)
    contact = pipeline.warehouse.read_table("zoho_deals").set_index("id").loc[deal]
    profiles = pipeline.warehouse.read_table("profile_attributes").set_index("crm_contact_id")
    identity = profiles.loc[contact["Contact_Name_id"], "identity"]
    # CleverTap refuses the event (and the profile update the stage change brings).
    pipeline.clevertap("POST", "faults", {"reject": [{"identity": identity, "code": 509}]})

    result = pipeline.run("incremental_sync")

    assert result.success
    share = check(result, "event_rejection_share")
    assert not share.passed and share.severity == dg.AssetCheckSeverity.WARN
    assert (values(share)["rejected"], values(share)["attempted"]) == (1, 1)
    outbox = pipeline.warehouse.read_table("event_outbox")
    assert outbox["status"].tolist() == ["rejected"]
    pipeline.clevertap("POST", "faults", {"clear": True})
    quiet = pipeline.run("incremental_sync")
    assert check(quiet, "event_rejection_share").passed  # this run's outcomes, not the last's
