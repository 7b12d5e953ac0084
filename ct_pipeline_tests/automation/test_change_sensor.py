"""The Zoho change sensor against the Zoho emulator over HTTP: skips, run keys, cursors."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType

from ct_pipeline.config import SyncConfigResource
from ct_pipeline.sensors import (
    CURSORS_TAG,
    DEFAULT_INTERVAL_SECONDS,
    INTERVAL_ENV,
    TRIGGER_TAG,
    change_sensor_interval,
    evaluate_zoho_changes,
    zoho_changes_sensor,
)
from ct_pipeline_tests.automation.conftest import (
    MODULES,
    ZohoSandbox,
    run_sync_like_job,
    store_cursors,
    unfinished_sync_run,
)

CONTACTS_GET = "GET /crm/v8/Contacts"
CONTACTS_DELETED = "GET /crm/v8/Contacts/deleted"


def tick(
    instance: dg.DagsterInstance,
    zoho_sandbox: ZohoSandbox,
    warehouse,
    cursor: str | None = None,
) -> dg.SensorResult:
    """Evaluate the sensor the way the daemon does, with resources bound by key."""
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "zoho": zoho_sandbox.resource(),
            "warehouse": warehouse,
            "sync_config": SyncConfigResource(),
        },
    ) as context:
        return zoho_changes_sensor(context)


def edit_city(zoho_sandbox: ZohoSandbox, contact_id: str, city: str, at: str | None = None) -> None:
    """Edit a Contact the way a CRM user would; `at` pins its Modified_Time."""
    record = {"id": contact_id, "Mailing_City": city}
    if at is not None:
        record["Modified_Time"] = at
    zoho_sandbox.admin("POST", "records/Contacts", [record])


def an_hour_ago() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def test_no_change_skips_naming_the_modules_and_the_calls_spent(
    instance, zoho_sandbox, sqlite_warehouse
):
    store_cursors(sqlite_warehouse, datetime.now(UTC))

    result = tick(instance, zoho_sandbox, sqlite_warehouse)

    assert not result.run_requests
    assert result.skip_reason.skip_message.startswith(
        "no change in Contacts, Leads, Deals, Cases after the stored cursors (8 Zoho calls"
    )
    assert zoho_sandbox.calls(CONTACTS_GET) == 1


def test_an_edit_after_the_cursor_requests_an_incremental_sync(
    instance, zoho_sandbox, sqlite_warehouse
):
    store_cursors(sqlite_warehouse, an_hour_ago())
    edit_city(zoho_sandbox, zoho_sandbox.first_id("Contacts"), "Pune")

    result = tick(instance, zoho_sandbox, sqlite_warehouse)

    [request] = result.run_requests
    assert request.tags[TRIGGER_TAG] == "Contacts changed"
    assert request.run_key == f"zoho-changes-{request.tags[CURSORS_TAG]}-0"


def test_the_first_change_found_stops_the_probing(instance, zoho_sandbox, sqlite_warehouse):
    store_cursors(sqlite_warehouse, an_hour_ago(), deleted=datetime.now(UTC))
    edit_city(zoho_sandbox, zoho_sandbox.first_id("Contacts"), "Pune")
    before = zoho_sandbox.api_calls()

    tick(instance, zoho_sandbox, sqlite_warehouse)

    assert zoho_sandbox.api_calls() - before == 1


def test_a_repeated_tick_requests_the_same_run_key(instance, zoho_sandbox, sqlite_warehouse):
    store_cursors(sqlite_warehouse, an_hour_ago())
    edit_city(zoho_sandbox, zoho_sandbox.first_id("Contacts"), "Pune")

    first = tick(instance, zoho_sandbox, sqlite_warehouse)
    again = tick(instance, zoho_sandbox, sqlite_warehouse)

    assert first.run_requests[0].run_key == again.run_requests[0].run_key


def test_the_run_key_changes_when_the_cursors_advance(instance, zoho_sandbox, sqlite_warehouse):
    store_cursors(sqlite_warehouse, an_hour_ago())
    contact = zoho_sandbox.first_id("Contacts")
    edit_city(zoho_sandbox, contact, "Pune")
    first = tick(instance, zoho_sandbox, sqlite_warehouse)

    store_cursors(sqlite_warehouse, an_hour_ago() + timedelta(minutes=30))
    later = tick(instance, zoho_sandbox, sqlite_warehouse)

    assert first.run_requests[0].run_key != later.run_requests[0].run_key


def test_a_module_never_synced_requests_the_first_sync_without_asking_zoho(
    instance, zoho_sandbox, sqlite_warehouse
):
    store_cursors(sqlite_warehouse, datetime.now(UTC), modules=["Contacts", "Leads", "Cases"])

    result = tick(instance, zoho_sandbox, sqlite_warehouse)

    assert result.run_requests[0].tags[TRIGGER_TAG] == "Deals never synced"
    assert zoho_sandbox.api_calls() == 0


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED])
def test_no_run_is_requested_while_a_sync_run_is_queued_or_in_progress(
    instance, zoho_sandbox, sqlite_warehouse, status
):
    store_cursors(sqlite_warehouse, an_hour_ago())
    edit_city(zoho_sandbox, zoho_sandbox.first_id("Contacts"), "Pune")
    busy = unfinished_sync_run(instance, status)
    calls_before = zoho_sandbox.api_calls()

    result = tick(instance, zoho_sandbox, sqlite_warehouse)

    assert not result.run_requests
    assert busy.run_id in result.skip_reason.skip_message
    assert status.value.lower() in result.skip_reason.skip_message
    assert zoho_sandbox.api_calls() == calls_before


def test_a_change_made_during_a_run_is_requested_once_the_run_ends(
    instance, zoho_sandbox, sqlite_warehouse
):
    read_up_to = an_hour_ago()
    store_cursors(sqlite_warehouse, read_up_to)
    busy = unfinished_sync_run(instance, dg.DagsterRunStatus.STARTED, "incremental_sync")
    edit_city(zoho_sandbox, zoho_sandbox.first_id("Contacts"), "Nagpur")
    during = tick(instance, zoho_sandbox, sqlite_warehouse)

    instance.handle_run_event(
        busy.run_id,
        dg.DagsterEvent(
            event_type_value=DagsterEventType.RUN_SUCCESS.value, job_name=busy.job_name
        ),
    )
    after = tick(instance, zoho_sandbox, sqlite_warehouse)

    assert not during.run_requests
    assert after.run_requests[0].tags[TRIGGER_TAG] == "Contacts changed"


def test_a_cursor_in_the_last_runs_own_second_is_read_again(
    instance, zoho_sandbox, sqlite_warehouse
):
    run_sync_like_job(instance)
    store_cursors(sqlite_warehouse, datetime.now(UTC) + timedelta(seconds=1))
    calls_before = zoho_sandbox.api_calls()

    result = tick(instance, zoho_sandbox, sqlite_warehouse)

    assert result.run_requests[0].tags[TRIGGER_TAG] == (
        "Contacts cursor is in the last sync's own second"
    )
    assert zoho_sandbox.api_calls() == calls_before


def test_the_probe_cannot_see_an_edit_in_the_cursors_own_second(
    instance, zoho_sandbox, sqlite_warehouse
):
    cursor = an_hour_ago()
    store_cursors(sqlite_warehouse, cursor)
    edit_city(zoho_sandbox, zoho_sandbox.first_id("Contacts"), "Thane", at=cursor.isoformat())

    result = tick(instance, zoho_sandbox, sqlite_warehouse)

    assert not result.run_requests


def test_a_failed_run_at_the_same_cursors_is_retried_after_a_backoff(
    instance, zoho_sandbox, sqlite_warehouse
):
    store_cursors(sqlite_warehouse, an_hour_ago())
    edit_city(zoho_sandbox, zoho_sandbox.first_id("Contacts"), "Pune")
    first = tick(instance, zoho_sandbox, sqlite_warehouse).run_requests[0]
    failed = run_sync_like_job(instance, tags=first.tags, fail=True)
    modules = MODULES
    zoho = zoho_sandbox.resource()

    soon = evaluate_zoho_changes(instance, None, zoho, sqlite_warehouse, modules, datetime.now(UTC))
    later = evaluate_zoho_changes(
        instance, None, zoho, sqlite_warehouse, modules, datetime.now(UTC) + timedelta(minutes=2)
    )

    assert not soon.run_requests
    assert failed.run_id in soon.skip_reason.skip_message
    assert "retrying in" in soon.skip_reason.skip_message
    assert later.run_requests[0].run_key == first.run_key.removesuffix("-0") + "-1"


def test_deletions_are_probed_on_the_first_tick_and_then_every_five_minutes(
    instance, zoho_sandbox, sqlite_warehouse
):
    store_cursors(sqlite_warehouse, datetime.now(UTC))

    first = tick(instance, zoho_sandbox, sqlite_warehouse)
    second = tick(instance, zoho_sandbox, sqlite_warehouse, cursor=first.cursor)
    probed_at = datetime.fromisoformat(json.loads(first.cursor)["deletions_probed_at"])
    stale = json.dumps({"deletions_probed_at": (probed_at - timedelta(minutes=5)).isoformat()})
    third = tick(instance, zoho_sandbox, sqlite_warehouse, cursor=stale)

    assert zoho_sandbox.calls(CONTACTS_DELETED) == 2
    assert second.cursor == first.cursor
    assert "deletions included" in first.skip_reason.skip_message
    assert "deletions included" not in second.skip_reason.skip_message
    assert json.loads(third.cursor)["deletions_probed_at"] > probed_at.isoformat()


def test_a_deleted_record_requests_an_incremental_sync(instance, zoho_sandbox, sqlite_warehouse):
    contact = zoho_sandbox.first_id("Contacts")
    store_cursors(sqlite_warehouse, datetime.now(UTC), deleted=an_hour_ago())
    zoho_sandbox.admin("DELETE", f"records/Contacts/{contact}")

    result = tick(instance, zoho_sandbox, sqlite_warehouse)

    assert result.run_requests[0].tags[TRIGGER_TAG] == "Contacts records deleted"


def test_an_unreadable_sensor_cursor_starts_afresh(instance, zoho_sandbox, sqlite_warehouse):
    store_cursors(sqlite_warehouse, datetime.now(UTC))

    result = tick(instance, zoho_sandbox, sqlite_warehouse, cursor="not json")

    assert json.loads(result.cursor)["deletions_probed_at"] is not None


def test_the_interval_defaults_to_keep_edits_within_a_minute():
    assert zoho_changes_sensor.minimum_interval_seconds == DEFAULT_INTERVAL_SECONDS
    assert change_sensor_interval({INTERVAL_ENV: "30"}) == 30
    assert zoho_changes_sensor.default_status == dg.DefaultSensorStatus.RUNNING


@pytest.mark.parametrize("value", ["2", "abc", "-5", "7200"])
def test_a_bad_interval_names_the_variable(value):
    with pytest.raises(ValueError, match=INTERVAL_ENV):
        change_sensor_interval({INTERVAL_ENV: value})
