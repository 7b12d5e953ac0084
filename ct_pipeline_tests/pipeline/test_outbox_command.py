"""`ct-pipeline outbox`: the way out for outbox rows the sync holds back, tried on a real sync."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from ct_pipeline.cli import main
from ct_pipeline_tests.pipeline.conftest import Pipeline, move_deals
from ct_pipeline_tests.pipeline.test_crash_recovery import outbox_command
from ct_pipeline_tests.pipeline.test_sync import uploaded_records

# A mobile no synthetic person has (the generator draws from real Indian mobile prefixes).
NEW_MOBILE = "+919000012345"


def test_an_event_held_for_a_contact_without_identity_goes_out_once_released_after_it_has_one(
    pipeline: Pipeline,
):
    assert pipeline.run("nightly_full_sync").success
    queue = pipeline.warehouse.read_table("identity_review_queue")
    unreachable = set(queue.loc[queue["reason"] == "no_phone_or_email", "zoho_id"])
    at = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    (moved,) = move_deals(pipeline, "Closed Lost", 1, at, contacts=unreachable)
    contact = pipeline.warehouse.read_table("zoho_deals").set_index("id").loc[moved]
    assert pipeline.run("incremental_sync").success
    (held,) = pipeline.warehouse.read_table("event_outbox").itertuples(index=False)
    assert (held.status, held.reason) == ("held", "no_pushed_identity_for_contact")

    listed = outbox_command(pipeline, "list")
    assert held.event_id in listed and moved in listed
    # Nobody to send it to yet: it stays held, and the command says why.
    refused = outbox_command(pipeline, "release", held.event_id)
    assert "0 outbox rows" in refused and "no pushed identity" in refused
    assert pipeline.warehouse.read_table("event_outbox")["status"].tolist() == ["held"]

    pipeline.zoho(
        "POST",
        "records/Contacts",
        [{"id": contact["Contact_Name_id"], "Mobile": NEW_MOBILE, "Modified_Time": at.isoformat()}],
    )
    assert pipeline.run("incremental_sync").success
    assert uploaded_records(pipeline, "event") == []  # held rows stay held until released
    assert "1 outbox rows and 0 profile uploads released" in outbox_command(
        pipeline, "release", held.event_id
    )
    released = pipeline.warehouse.read_table("event_outbox")
    assert released[["status", "reason", "identity"]].values.tolist() == [
        ["pending", "released_by_operator", NEW_MOBILE]
    ]
    assert pipeline.run("incremental_sync").success
    assert pipeline.run("incremental_sync").success

    (event,) = uploaded_records(pipeline, "event")
    assert event["identity"] == NEW_MOBILE
    assert event["evtData"]["deal_id"] == moved
    assert pipeline.warehouse.read_table("event_outbox")["status"].tolist() == ["sent"]


def test_release_names_keys_that_are_not_held_and_needs_keys_or_all(pipeline: Pipeline):
    assert pipeline.run("nightly_full_sync").success

    assert "No held rows." in outbox_command(pipeline, "list")
    environment = {"CT_WAREHOUSE_URL": pipeline.warehouse.resolved_url}
    unknown = CliRunner().invoke(main, ["outbox", "release", "nothing-1"], env=environment)
    bare = CliRunner().invoke(main, ["outbox", "release"], env=environment)

    assert unknown.exit_code == 1 and "not held: nothing-1" in unknown.output
    assert bare.exit_code == 2 and "--all" in bare.output
