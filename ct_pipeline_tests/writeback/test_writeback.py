"""The write-back end to end: webhook over HTTP -> inbox -> crm_writeback job -> Zoho emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from ct_pipeline.assets.common import mask_identity
from ct_pipeline.config import load_sync_config
from ct_pipeline.schedules import SYNC_FAILURES
from ct_pipeline_tests.automation.conftest import report_failure
from ct_pipeline_tests.writeback.conftest import (
    PACKAGED_CONFIG,
    Writeback,
    delivery,
    profile,
    writeback_config,
)

PUT_CONTACTS = "PUT /crm/v8/Contacts"
POST_NOTES = "POST /crm/v8/Notes"


def test_each_event_sets_its_field_and_adds_one_note(writeback: Writeback):
    uninstalled, cancelled, purchased = writeback.pool.take(3)
    before = {
        p.contact_id: len(writeback.contact(p.contact_id)["notes"])
        for p in (uninstalled, cancelled, purchased)
    }

    for body in (
        delivery("App Uninstalled", profile(uninstalled)),
        delivery("Subscription Cancelled", profile(cancelled)),
        delivery("Charged", profile(purchased, at=datetime(2026, 3, 4, 20, 0, tzinfo=UTC))),
    ):
        assert writeback.post(body).status_code == 200
    result = writeback.run()

    assert result.success
    records = {
        p.contact_id: writeback.contact(p.contact_id) for p in (uninstalled, cancelled, purchased)
    }
    assert records[uninstalled.contact_id]["record"]["App_Uninstalled"] is True
    assert records[cancelled.contact_id]["record"]["Subscription_Status"] == "Cancelled"
    # 20:00 UTC on 4 March is 5 March in Asia/Kolkata, the configured time zone.
    assert records[purchased.contact_id]["record"]["Last_Purchase_Date"] == "2026-03-05"
    for person, title in (
        (uninstalled, "App uninstalled"),
        (cancelled, "Subscription cancelled"),
        (purchased, "Purchase in the app"),
    ):
        notes = records[person.contact_id]["notes"]
        assert len(notes) == before[person.contact_id] + 1, mask_identity(person.identity)
        assert notes[-1]["Note_Title"] == title
        assert person.identity not in notes[-1]["Note_Content"]
    assert (
        "Charged in the app at 2026-03-04 20:00 UTC (CleverTap campaign 1700000101"
        in records[purchased.contact_id]["notes"][-1]["Note_Content"]
    )
    assert set(writeback.inbox()["status"]) == {"applied"}
    assert all(check.passed for check in result.get_asset_check_evaluations())


def test_a_repeated_delivery_changes_nothing_more_in_zoho(sqlite_writeback: Writeback):
    (person,) = sqlite_writeback.pool.take(1)
    body = delivery("Subscription Cancelled", profile(person))
    assert sqlite_writeback.post(body).status_code == 200
    assert sqlite_writeback.run().success
    notes = len(sqlite_writeback.contact(person.contact_id)["notes"])
    updates = sqlite_writeback.zoho_calls(PUT_CONTACTS)

    again = sqlite_writeback.post(body)
    result = sqlite_writeback.run()

    assert again.json()["new_events"] == 0
    assert result.success
    assert len(sqlite_writeback.contact(person.contact_id)["notes"]) == notes
    assert sqlite_writeback.zoho_calls(PUT_CONTACTS) == updates
    assert len(sqlite_writeback.inbox()) == 1


def test_an_unknown_identity_is_parked_with_the_reason_and_nothing_is_written(
    sqlite_writeback: Writeback,
):
    stranger = {"identity": "+919000000017", "event_properties": {"event_time": 1772706600}}
    writes = sqlite_writeback.zoho_calls(PUT_CONTACTS) + sqlite_writeback.zoho_calls(POST_NOTES)

    assert sqlite_writeback.post(delivery("App Uninstalled", stranger)).status_code == 200
    result = sqlite_writeback.run()

    assert result.success
    row = sqlite_writeback.inbox().iloc[0]
    assert (row["status"], row["reason"]) == ("parked", "no_matching_contact")
    assert (
        sqlite_writeback.zoho_calls(PUT_CONTACTS) + sqlite_writeback.zoho_calls(POST_NOTES)
        == writes
    )


def test_an_event_not_in_the_configuration_is_parked_not_written(sqlite_writeback: Writeback):
    (person,) = sqlite_writeback.pool.take(1)

    sqlite_writeback.post(delivery("Wishlist Viewed", profile(person)))
    assert sqlite_writeback.run().success

    row = sqlite_writeback.inbox().iloc[0]
    assert (row["status"], row["reason"]) == ("parked", "event_not_configured")


def test_a_zoho_outage_leaves_events_pending_and_the_next_run_applies_them(
    writeback: Writeback,
):
    people = writeback.pool.take(3)
    writeback.post(delivery("App Uninstalled", *(profile(p) for p in people)))
    # More 503s than the client's attempts: the outage outlasts the run.
    writeback.zoho_admin("POST", "faults", {"server_errors": 50, "server_error_status": 503})

    failed = writeback.run(max_retries=1)
    pending = writeback.inbox()
    writeback.zoho_admin("POST", "reset")
    recovered = writeback.run()

    assert not failed.success
    assert set(pending["status"]) == {"matched"}
    assert pending["last_error"].str.contains("503").all()
    assert recovered.success
    assert set(writeback.inbox()["status"]) == {"applied"}
    for person in people:
        record = writeback.contact(person.contact_id)
        assert record["record"]["App_Uninstalled"] is True
        assert sum(n["Note_Title"] == "App uninstalled" for n in record["notes"]) == 1


def test_a_failed_writeback_run_is_recorded_in_sync_failures(sqlite_writeback: Writeback):
    (person,) = sqlite_writeback.pool.take(1)
    sqlite_writeback.post(delivery("App Uninstalled", profile(person)))
    sqlite_writeback.zoho_admin("POST", "faults", {"server_errors": 50, "server_error_status": 503})

    failed = sqlite_writeback.run(max_retries=1)
    report_failure(sqlite_writeback.instance, sqlite_writeback.warehouse, failed.run_id)

    [row] = sqlite_writeback.warehouse.read_table(SYNC_FAILURES).to_dict("records")
    assert not failed.success
    assert (row["run_id"], row["job_name"]) == (failed.run_id, "crm_writeback")
    assert row["steps"] == "write_crm_writeback"
    assert "503" in row["message"]
    assert person.identity not in row["message"]


def test_an_event_whose_field_was_already_written_only_gets_its_note(sqlite_writeback: Writeback):
    (person,) = sqlite_writeback.pool.take(1)
    sqlite_writeback.post(delivery("Subscription Cancelled", profile(person)))
    assert sqlite_writeback.run().success
    # The state a run leaves when Zoho took the update but the Notes call failed.
    with sqlite_writeback.warehouse.transaction() as tx:
        tx.execute(
            "UPDATE clevertap_webhook_inbox SET status = 'matched', note_status = NULL, "
            "note_id = NULL"
        )
    notes = len(sqlite_writeback.contact(person.contact_id)["notes"])
    updates = sqlite_writeback.zoho_calls(PUT_CONTACTS)

    assert sqlite_writeback.run().success

    assert sqlite_writeback.zoho_calls(PUT_CONTACTS) == updates
    assert len(sqlite_writeback.contact(person.contact_id)["notes"]) == notes + 1
    assert sqlite_writeback.inbox().iloc[0]["status"] == "applied"


def test_more_than_100_events_are_written_100_per_call(sqlite_writeback: Writeback):
    people = sqlite_writeback.pool.take(105)
    updates = sqlite_writeback.zoho_calls(PUT_CONTACTS)
    notes = sqlite_writeback.zoho_calls(POST_NOTES)

    sqlite_writeback.post(delivery("Subscription Cancelled", *(profile(p) for p in people)))
    result = sqlite_writeback.run()

    assert result.success
    assert sqlite_writeback.zoho_calls(PUT_CONTACTS) - updates == 2
    assert sqlite_writeback.zoho_calls(POST_NOTES) - notes == 2
    assert (sqlite_writeback.inbox()["status"] == "applied").sum() == 105


def test_a_later_event_of_the_same_field_wins_and_both_get_a_note(writeback: Writeback):
    (person,) = writeback.pool.take(1)
    before = len(writeback.contact(person.contact_id)["notes"])
    later = profile(person, at=datetime(2026, 3, 9, 6, 0, tzinfo=UTC))
    earlier = profile(person, at=datetime(2026, 3, 2, 6, 0, tzinfo=UTC))

    writeback.post(delivery("Charged", later, earlier))
    assert writeback.run().success
    writeback.post(delivery("Charged", profile(person, at=datetime(2026, 2, 1, tzinfo=UTC))))
    assert writeback.run().success

    record = writeback.contact(person.contact_id)
    assert record["record"]["Last_Purchase_Date"] == "2026-03-09"
    assert len(record["notes"]) == before + 3
    assert sorted(writeback.inbox()["field_status"]) == ["superseded", "superseded", "written"]


def test_a_profile_carrying_crm_contact_id_is_matched_by_it(sqlite_writeback: Writeback):
    (person,) = sqlite_writeback.pool.take(1)
    entry = {
        "identity": "someone-the-forward-flow-never-pushed",
        "profileData": {"crm_contact_id": person.contact_id},
        "event_properties": {"event_time": 1772706600},
    }

    sqlite_writeback.post(delivery("App Uninstalled", entry))
    assert sqlite_writeback.run().success

    row = sqlite_writeback.inbox().iloc[0]
    assert (row["matched_by"], row["contact_id"]) == ("crm_contact_id", person.contact_id)
    assert sqlite_writeback.contact(person.contact_id)["record"]["App_Uninstalled"] is True


def test_a_deleted_contact_parks_its_events_with_zohos_code(sqlite_writeback: Writeback):
    (person,) = sqlite_writeback.pool.take(1)
    sqlite_writeback.zoho_admin("DELETE", f"records/Contacts/{person.contact_id}")

    sqlite_writeback.post(delivery("App Uninstalled", profile(person)))
    sqlite_writeback.post(delivery("Subscription Cancelled", profile(person)))
    assert sqlite_writeback.run().success

    inbox = sqlite_writeback.inbox()
    assert set(inbox["status"]) == {"parked"}
    assert set(inbox["reason"]) == {"zoho_refused_field:INVALID_DATA"}


def test_without_an_event_time_a_retry_counts_once_and_a_day_later_counts_again(
    writeback: Writeback,
):
    (person,) = writeback.pool.take(1)
    before = len(writeback.contact(person.contact_id)["notes"])
    # As CleverTap sends it: no time anywhere in the payload.
    body = delivery("Charged", {"identity": person.identity, "profileData": {"Last Score": 3}})
    received = datetime(2026, 3, 5, 6, 0, tzinfo=UTC)

    writeback.clock.moment = received
    first = writeback.post(body).json()["new_events"]
    writeback.clock.moment = received + timedelta(seconds=4)
    retry = writeback.post(body).json()["new_events"]
    assert writeback.run().success
    writeback.clock.moment = received + timedelta(days=1)
    next_day = writeback.post(body).json()["new_events"]
    assert writeback.run().success

    record = writeback.contact(person.contact_id)
    assert (first, retry, next_day) == (1, 0, 1)
    assert sum(n["Note_Title"] == "Purchase in the app" for n in record["notes"][before:]) == 2
    assert record["record"]["Last_Purchase_Date"] == "2026-03-06"
    assert list(writeback.inbox()["status"]) == ["applied", "applied"]


def test_a_profile_with_no_identifier_is_parked_with_the_reason(sqlite_writeback: Writeback):
    writes = sqlite_writeback.zoho_calls(PUT_CONTACTS) + sqlite_writeback.zoho_calls(POST_NOTES)
    anonymous = [{"objectId": "__g5f1a", "profileData": {"Plan": plan}} for plan in ("A", "B")]

    stored = sqlite_writeback.post(delivery("App Uninstalled", *anonymous)).json()
    assert sqlite_writeback.run().success

    inbox = sqlite_writeback.inbox()
    assert stored["new_events"] == 2
    assert list(inbox["status"]) == ["parked", "parked"]
    assert set(inbox["reason"]) == {"no_identifier"}
    assert (
        sqlite_writeback.zoho_calls(PUT_CONTACTS) + sqlite_writeback.zoho_calls(POST_NOTES)
        == writes
    )


def test_an_email_two_contacts_share_is_parked_as_ambiguous(sqlite_writeback: Writeback):
    first, second = sqlite_writeback.pool.take(2)
    with sqlite_writeback.warehouse.transaction() as tx:
        tx.execute(
            "UPDATE contact_identities SET email = 'family.account@example.in' "
            "WHERE zoho_id IN (:first, :second)",
            {"first": first.contact_id, "second": second.contact_id},
        )
    writes = sqlite_writeback.zoho_calls(PUT_CONTACTS) + sqlite_writeback.zoho_calls(POST_NOTES)
    entry = {"email": " Family.Account@Example.in", "event_properties": {"ts": 1772706600}}

    sqlite_writeback.post(delivery("Subscription Cancelled", entry))
    assert sqlite_writeback.run().success

    row = sqlite_writeback.inbox().iloc[0]
    assert (row["status"], row["reason"]) == ("parked", "ambiguous_contact")
    assert pd.isna(row["contact_id"])
    assert (
        sqlite_writeback.zoho_calls(PUT_CONTACTS) + sqlite_writeback.zoho_calls(POST_NOTES)
        == writes
    )


def test_an_outage_of_the_notes_step_only_is_finished_by_the_next_run_with_one_note(
    writeback: Writeback,
):
    people = writeback.pool.take(2)
    before = {p.contact_id: len(writeback.contact(p.contact_id)["notes"]) for p in people}
    writeback.post(delivery("Subscription Cancelled", *(profile(p) for p in people)))
    # The update call is answered; every call after it, the Notes call and its retries, is not.
    writeback.zoho_admin(
        "POST", "faults", {"after_calls": 1, "server_errors": 50, "server_error_status": 503}
    )

    failed = writeback.run(max_retries=1)
    halfway = writeback.inbox()
    notes_refused = writeback.zoho_admin("GET", "stats")["faults_served"]["server_errors"]
    writeback.zoho_admin("POST", "reset")
    recovered = writeback.run()

    assert not failed.success
    assert notes_refused >= 1
    assert set(halfway["status"]) == {"matched"}
    assert set(halfway["field_status"]) == {"written"}
    assert halfway["note_status"].isna().all()
    assert halfway["last_error"].str.contains("503").all()
    assert recovered.success
    assert set(writeback.inbox()["status"]) == {"applied"}
    # The reset cleared the stats: the second run sent Notes only.
    assert writeback.zoho_calls(PUT_CONTACTS) == 0
    assert writeback.zoho_calls(POST_NOTES) == 1
    for person in people:
        record = writeback.contact(person.contact_id)
        assert record["record"]["Subscription_Status"] == "Cancelled"
        assert len(record["notes"]) == before[person.contact_id] + 1


def test_the_configured_note_content_is_the_note_zoho_receives(
    sqlite_writeback: Writeback, tmp_path
):
    (person,) = sqlite_writeback.pool.take(1)
    config = load_sync_config(PACKAGED_CONFIG)
    events = [rule.model_dump() for rule in config.writeback.events]
    events[0]["note_content"] = "{event} ({date}) via {source}; ref {event_ref}"
    sync_config = writeback_config(tmp_path, events=events)

    sqlite_writeback.post(delivery(events[0]["event"], profile(person), target_id=42))
    assert sqlite_writeback.run(sync_config=sync_config).success

    note = sqlite_writeback.contact(person.contact_id)["notes"][-1]
    event_id = sqlite_writeback.inbox().index[0]
    assert note["Note_Content"] == (
        f"App Uninstalled (2026-03-05) via CleverTap webhook campaign 42; ref {event_id[:16]}"
    )


@pytest.mark.parametrize(
    ("trigger", "received"), [(None, "none"), (["workflow"], "workflow")], ids=["default", "set"]
)
def test_contact_updates_set_off_only_the_zoho_rules_configured(
    sqlite_writeback: Writeback, tmp_path, trigger, received
):
    (person,) = sqlite_writeback.pool.take(1)
    sync_config = writeback_config(tmp_path, trigger=trigger) if trigger else None
    sqlite_writeback.zoho_admin("POST", "reset")

    sqlite_writeback.post(delivery("App Uninstalled", profile(person)))
    assert sqlite_writeback.run(sync_config=sync_config).success

    assert sqlite_writeback.zoho_admin("GET", "stats")["update_triggers"] == {received: 1}
