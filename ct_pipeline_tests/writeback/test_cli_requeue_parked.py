"""`ct-pipeline requeue-parked`: parked webhook events go back to be matched once the cause is
fixed, and the next write-back run applies them in Zoho."""

from __future__ import annotations

from click.testing import CliRunner

from ct_pipeline.cli import main
from ct_pipeline.warehouse.state import PUSHED_PROFILES
from ct_pipeline_tests.writeback.conftest import Writeback, delivery, profile, seed_forward_tables


def requeue(writeback: Writeback, *options: str):
    return CliRunner().invoke(
        main, ["requeue-parked", "--warehouse", writeback.warehouse.url, *options]
    )


def test_events_parked_for_a_reason_are_requeued_and_then_applied(sqlite_writeback: Writeback):
    (person,) = sqlite_writeback.pool.take(1)
    # The Contact is new: the forward flow has not seen it when the webhook arrives.
    with sqlite_writeback.warehouse.transaction() as tx:
        for table, column in ((PUSHED_PROFILES, "contact_id"), ("contact_identities", "zoho_id")):
            tx.execute(f"DELETE FROM {table} WHERE {column} = :id", {"id": person.contact_id})
    sqlite_writeback.post(delivery("App Uninstalled", profile(person)))
    sqlite_writeback.post(delivery("Wishlist Viewed", profile(person)))
    assert sqlite_writeback.run().success
    seed_forward_tables(sqlite_writeback.warehouse, sqlite_writeback.pool.people)

    result = requeue(sqlite_writeback, "--reason", "no_matching_contact")
    assert sqlite_writeback.run().success

    assert result.exit_code == 0, result.output
    assert "Parked webhook events: event_not_configured 1, no_matching_contact 1." in result.output
    assert "Requeued 1 events with reason no_matching_contact." in result.output
    inbox = sqlite_writeback.inbox()
    statuses = dict(zip(inbox["event_name"], inbox["status"], strict=True))
    assert statuses == {"App Uninstalled": "applied", "Wishlist Viewed": "parked"}
    assert sqlite_writeback.contact(person.contact_id)["record"]["App_Uninstalled"] is True


def test_a_reason_nothing_is_parked_for_requeues_nothing_and_says_so(
    sqlite_writeback: Writeback,
):
    (person,) = sqlite_writeback.pool.take(1)
    sqlite_writeback.post(delivery("Wishlist Viewed", profile(person)))
    assert sqlite_writeback.run().success

    mistyped = requeue(sqlite_writeback, "--reason", "no_match")

    assert mistyped.exit_code == 0
    assert "event_not_configured 1" in mistyped.output
    assert "None is parked for no_match: nothing requeued." in mistyped.output
    assert set(sqlite_writeback.inbox()["status"]) == {"parked"}


def test_an_inbox_with_nothing_parked_has_nothing_to_requeue(sqlite_writeback: Writeback):
    result = requeue(sqlite_writeback)

    assert result.exit_code == 0
    assert "No webhook events are parked" in result.output
