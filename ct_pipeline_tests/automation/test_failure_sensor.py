"""The run-failure sensor records failed runs in the warehouse, with personal data masked."""

import dagster as dg
import pytest

from ct_pipeline.schedules import SYNC_FAILURES
from ct_pipeline.sensors import redact, sync_failure_sensor
from ct_pipeline_tests.automation.conftest import report_failure, run_sync_like_job


def test_a_failed_sync_run_is_recorded_with_its_run_id_and_failed_step(instance, sqlite_warehouse):
    failed = run_sync_like_job(instance, fail=True)

    report_failure(instance, sqlite_warehouse, failed.run_id)
    [row] = sqlite_warehouse.read_table(SYNC_FAILURES).to_dict("records")

    assert row["run_id"] == failed.run_id
    assert row["kind"] == "run_failure"
    assert row["job_name"] == "incremental_sync"
    assert row["steps"] == "failing_sync_step"
    assert row["message"].startswith("failing_sync_step: RuntimeError: upload refused for")


def test_the_recorded_error_masks_phone_numbers_and_emails(instance, sqlite_warehouse):
    failed = run_sync_like_job(instance, fail=True)

    report_failure(instance, sqlite_warehouse, failed.run_id)
    message = sqlite_warehouse.read_table(SYNC_FAILURES)["message"].iloc[0]

    assert "9876543210" not in message and "priya.sharma" not in message
    assert "+91******3210" in message and "p***********@example.com" in message


def test_a_failure_reported_twice_is_one_row(instance, sqlite_warehouse):
    failed = run_sync_like_job(instance, fail=True)

    report_failure(instance, sqlite_warehouse, failed.run_id)
    report_failure(instance, sqlite_warehouse, failed.run_id)

    assert len(sqlite_warehouse.read_table(SYNC_FAILURES)) == 1


def test_the_failure_is_logged_with_the_run_id(instance, sqlite_warehouse, capfd):
    failed = run_sync_like_job(instance, fail=True)
    capfd.readouterr()

    report_failure(instance, sqlite_warehouse, failed.run_id)
    logged = capfd.readouterr().err

    assert f"ERROR - sync run {failed.run_id} (incremental_sync) failed" in logged


def test_the_failure_sensor_runs_once_deployed():
    assert sync_failure_sensor.default_status == dg.DefaultSensorStatus.RUNNING


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call +91 98765 43210 now", "call +91******3210 now"),
        ("mail a.b@example.co.in", "mail a**@example.co.in"),
        ("record 5725767000003000064 rejected", "record 5725767000003000064 rejected"),
        ("since 2026-05-01T10:00:00+05:30", "since 2026-05-01T10:00:00+05:30"),
    ],
)
def test_redact_masks_identities_and_keeps_record_ids_and_dates(text, expected):
    assert redact(text) == expected
