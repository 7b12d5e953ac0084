"""Rate limits against the emulator: 429 storms, 5xx, the concurrency cap, credit counts."""

import pytest

from ct_pipeline.zoho import NoteDraft, ZohoAPIError


def test_429_storm_is_retried_until_the_read_succeeds(sandbox, crm):
    zoho = sandbox.client()
    sandbox.faults(too_many_requests=5)

    records = zoho.read_records("Contacts", ["Last_Name"]).records

    assert records["id"].nunique() == len(crm.contacts)
    assert sandbox.stats()["faults_served"]["too_many_requests"] == 5


def test_server_errors_are_retried(sandbox):
    zoho = sandbox.client()
    sandbox.faults(server_errors=3, server_error_status=503)

    deleted = zoho.read_deleted("Contacts", None)

    assert list(deleted.columns)[:3] == ["id", "deleted_time", "type"]
    assert sandbox.stats()["faults_served"]["server_errors"] == 3


def test_retries_stop_after_max_retries_with_the_zoho_error(sandbox):
    zoho = sandbox.client(max_retries=2)
    sandbox.faults(too_many_requests=10)

    with pytest.raises(ZohoAPIError) as raised:
        zoho.read_records("Contacts", ["Last_Name"])

    assert raised.value.status == 429
    assert raised.value.code == "TOO_MANY_REQUESTS"
    assert sandbox.stats()["faults_served"]["too_many_requests"] == 3


def test_note_creation_is_not_retried_after_a_server_error(sandbox, crm):
    zoho = sandbox.client()
    contact_id = crm.contacts["id"][0]
    sandbox.faults(server_errors=1)

    with pytest.raises(ZohoAPIError) as raised:
        zoho.create_notes([NoteDraft(parent_id=contact_id, title="Uninstall", content="x")])

    assert raised.value.status == 500
    assert sandbox.record("Contacts", contact_id)["notes"] == []


def test_calls_in_flight_never_exceed_max_concurrency(start_sandbox, crm):
    sandbox = start_sandbox(concurrency_limit=3, response_delay_seconds=0.05)
    zoho = sandbox.client(max_concurrency=3)
    rows = [{"id": rid, "Lifecycle_Stage": "Churned"} for rid in crm.contacts["id"][:1_000]]

    outcomes = zoho.update_records("Contacts", rows)

    stats = sandbox.stats()
    assert all(outcome.ok for outcome in outcomes)
    assert stats["refused_by_limits"] == 0
    assert stats["max_concurrent_calls"] == 3


def test_usage_reports_calls_and_credits_as_the_emulator_counts_them(sandbox, crm):
    zoho = sandbox.client()
    zoho.read_records("Contacts", ["Last_Name"])
    zoho.read_deleted("Contacts", None)
    zoho.update_records(
        "Contacts", [{"id": rid, "Last_Name": "U"} for rid in crm.contacts["id"][:25]]
    )

    usage = zoho.usage()
    stats = sandbox.stats()

    assert usage["total_credits"] == stats["total_credits"]
    assert usage["calls"]["token"] == stats["token_grants"]
    assert usage["credits"]["update"] == 3
    assert usage["credits"]["deleted"] == 2
