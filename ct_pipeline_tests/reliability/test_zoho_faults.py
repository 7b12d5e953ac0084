"""Zoho misbehaving during extraction: the run ends with exactly the undisturbed tables, or fails
naming the call and leaves cursors from which the next run completes the same tables.

Faults are armed with `after_calls`, so they land on a chosen call of the full sync: call 7 is
the second page of Contacts (read with a page token), the middle of the busiest read. Each test
also asserts that the emulator served the fault, so a change in the call order fails loudly
instead of testing nothing.
"""

from __future__ import annotations

import pytest

from ct_pipeline_tests.reliability.conftest import (
    Baseline,
    FaultPipeline,
    assert_same_clevertap,
    assert_same_tables,
    failure_messages,
)

MID_CONTACTS = 6  # CRM calls of the full sync before the second page of Contacts


@pytest.mark.parametrize(
    ("fault", "served"),
    [
        ({"too_many_requests": 4}, "too_many_requests"),
        ({"server_errors": 3, "server_error_status": 503}, "server_errors"),
        ({"server_errors": 2, "server_error_status": 500}, "server_errors"),
    ],
    ids=["429-burst", "503-burst", "500-burst"],
)
def test_a_burst_of_refusals_mid_read_ends_with_the_undisturbed_tables(
    disturbed: FaultPipeline, undisturbed: Baseline, fault: dict, served: str
):
    disturbed.zoho_faults(after_calls=MID_CONTACTS, **fault)

    assert disturbed.run("nightly_full_sync").success

    burst = fault.get("too_many_requests", fault.get("server_errors"))
    assert disturbed.zoho_stats()["faults_served"] == {served: burst}
    after = disturbed.snapshot()
    assert_same_tables(after, undisturbed.after_full_sync)
    assert_same_clevertap(after, undisturbed.after_full_sync)


def test_an_access_token_expiring_mid_read_is_refreshed_and_the_tables_are_complete(
    disturbed: FaultPipeline, undisturbed: Baseline
):
    disturbed.zoho_faults(after_calls=MID_CONTACTS, expire_access_tokens=True)

    assert disturbed.run("nightly_full_sync").success

    stats = disturbed.zoho_stats()
    assert stats["statuses"].get("401") == 1
    assert stats["token_grants"] == 2
    assert_same_tables(disturbed.snapshot(), undisturbed.after_full_sync)


def test_a_page_token_expiring_mid_read_restarts_the_window_without_a_gap(
    disturbed: FaultPipeline, undisturbed: Baseline
):
    disturbed.zoho_faults(after_calls=MID_CONTACTS, expire_page_tokens=True)

    assert disturbed.run("nightly_full_sync").success

    assert disturbed.zoho_stats()["statuses"].get("400") == 1  # EXPIRED_VALUE on page 2
    assert_same_tables(disturbed.snapshot(), undisturbed.after_full_sync)


def test_answers_slower_than_the_timeout_are_retried_and_the_tables_are_complete(
    disturbed: FaultPipeline, undisturbed: Baseline
):
    disturbed.zoho_settings = {"timeout": 0.5}
    disturbed.zoho_faults(after_calls=MID_CONTACTS, slow_responses=2, slow_seconds=1.5)

    assert disturbed.run("nightly_full_sync").success

    assert disturbed.zoho_stats()["faults_served"] == {"slow_responses": 2}
    assert_same_tables(disturbed.snapshot(), undisturbed.after_full_sync)


def test_a_storm_longer_than_the_retries_fails_naming_the_call_and_the_next_run_fills_the_gap(
    disturbed: FaultPipeline, undisturbed: Baseline
):
    disturbed.zoho_settings = {"max_retries": 2}
    disturbed.zoho_faults(after_calls=MID_CONTACTS, server_errors=3, server_error_status=503)

    failed = disturbed.run("nightly_full_sync")

    assert not failed.success
    assert "Zoho CRM GET /crm/v8/Contacts failed: HTTP 503" in failure_messages(failed)
    assert "zoho.Contacts.modified_cursor" not in disturbed.modified_cursors()
    assert disturbed.clevertap("GET", "profiles")["count"] == 0  # nothing pushed half-read

    assert disturbed.run("incremental_sync").success

    after = disturbed.snapshot()
    assert_same_tables(after, undisturbed.after_full_sync)
    assert_same_clevertap(after, undisturbed.after_full_sync)


def test_zoho_slow_for_every_call_fails_the_run_with_a_timeout_and_keeps_the_cursors(
    disturbed: FaultPipeline, undisturbed: Baseline
):
    assert disturbed.run("nightly_full_sync").success
    cursors = disturbed.modified_cursors()
    disturbed.zoho_settings = {"timeout": 0.3, "max_retries": 1}
    disturbed.zoho_faults(slow_responses=100, slow_seconds=0.6)

    failed = disturbed.run("incremental_sync")

    assert not failed.success
    assert "ReadTimeout" in failure_messages(failed)
    assert disturbed.modified_cursors() == cursors
    assert_same_tables(disturbed.snapshot(), undisturbed.after_full_sync)
