"""Writes against the emulator: updates in chunks, 207 partial results, Notes."""

import pytest

from ct_pipeline.zoho import NoteDraft

UNKNOWN_ID = "4999999999999999999"


def test_partial_update_reports_each_record(sandbox, crm):
    zoho = sandbox.client()
    good, other = crm.contacts["id"][:2]

    outcomes = zoho.update_records(
        "Contacts",
        [
            {"id": good, "Lifecycle_Stage": "Churned"},
            {"id": UNKNOWN_ID, "Lifecycle_Stage": "Churned"},
            {"id": other, "Email": "not-an-email"},
        ],
    )

    assert [outcome.ok for outcome in outcomes] == [True, False, False]
    assert [outcome.input_index for outcome in outcomes] == [0, 1, 2]
    assert outcomes[1].id == UNKNOWN_ID and outcomes[1].code == "INVALID_DATA"
    assert outcomes[2].id == other and outcomes[2].details.get("api_name") == "Email"
    assert sandbox.stats()["statuses"].get("207") == 1
    assert sandbox.record("Contacts", good)["Lifecycle_Stage"] == "Churned"


def test_batch_where_every_record_fails_returns_outcomes(sandbox):
    outcomes = sandbox.client().update_records("Contacts", [{"id": UNKNOWN_ID, "Last_Name": "X"}])

    assert len(outcomes) == 1 and not outcomes[0].ok
    assert outcomes[0].code == "INVALID_DATA"


def test_updates_go_in_calls_of_at_most_100_records(sandbox, crm):
    zoho = sandbox.client()
    rows = [{"id": rid, "Subscription_Status": "Cancelled"} for rid in crm.contacts["id"][:250]]

    outcomes = zoho.update_records("Contacts", rows)

    assert len(outcomes) == 250 and all(outcome.ok for outcome in outcomes)
    assert [outcome.id for outcome in outcomes] == [row["id"] for row in rows]
    assert zoho.usage()["calls"]["update"] == 3


def test_rows_without_id_are_refused_before_any_call(sandbox):
    zoho = sandbox.client()

    with pytest.raises(ValueError, match="row 1 .* has no 'id'"):
        zoho.update_records("Contacts", [{"id": "5545974000000100380"}, {"Last_Name": "X"}])

    assert zoho.usage()["total_calls"] == 0


def test_notes_are_created_on_their_contacts(sandbox, crm):
    zoho = sandbox.client()
    first, second = crm.contacts["id"][:2]

    outcomes = zoho.create_notes(
        [
            NoteDraft(parent_id=first, title="App uninstalled", content="Seen on 2026-12-01"),
            NoteDraft(parent_id=second, title="Subscription cancelled", content="Plan: Gold"),
        ]
    )

    assert all(outcome.ok and outcome.id for outcome in outcomes)
    notes = sandbox.record("Contacts", first)["notes"]
    assert [note["Note_Title"] for note in notes] == ["App uninstalled"]
    assert notes[0]["id"] == outcomes[0].id


def test_note_on_an_unknown_record_is_reported_not_raised(sandbox, crm):
    outcomes = sandbox.client().create_notes(
        [
            NoteDraft(parent_id=crm.contacts["id"][0], title="ok", content="ok"),
            NoteDraft(parent_id=UNKNOWN_ID, title="lost", content="lost"),
        ]
    )

    assert [outcome.ok for outcome in outcomes] == [True, False]
    assert outcomes[1].id is None
