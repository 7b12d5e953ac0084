"""The nightly schedule, its settings, and the check that turns a missed nightly red."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from ct_pipeline import schedules
from ct_pipeline.schedules import (
    NIGHTLY_GRACE_ENV,
    NIGHTLY_TIME_ENV,
    NIGHTLY_TIMEZONE_ENV,
    SYNC_FAILURES,
    NightlySettings,
    build_nightly_schedule,
    build_watchdog_schedule,
    nightly_full_sync_on_time,
    nightly_full_sync_schedule,
    nightly_settings,
    nightly_sync_watchdog,
)
from ct_pipeline_tests.automation.conftest import run_sync_like_job

KOLKATA = ZoneInfo("Asia/Kolkata")


def test_the_nightly_sync_runs_at_0230_in_kolkata_by_default():
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 5, 2, 2, 30, tzinfo=KOLKATA)
    )

    [request] = nightly_full_sync_schedule.evaluate_tick(context).run_requests

    assert nightly_full_sync_schedule.cron_schedule == "30 2 * * *"
    assert nightly_full_sync_schedule.execution_timezone == "Asia/Kolkata"
    assert nightly_full_sync_schedule.job_name == "nightly_full_sync"
    assert request.job_name in (None, "nightly_full_sync")


def test_both_schedules_are_running_once_deployed():
    assert nightly_full_sync_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert nightly_sync_watchdog.default_status == dg.DefaultScheduleStatus.RUNNING


def test_the_nightly_time_and_zone_come_from_the_environment():
    settings = nightly_settings(
        {NIGHTLY_TIME_ENV: "23:05", NIGHTLY_TIMEZONE_ENV: "Europe/London", NIGHTLY_GRACE_ENV: "2"}
    )
    schedule = build_nightly_schedule(settings)

    assert schedule.cron_schedule == "5 23 * * *"
    assert schedule.execution_timezone == "Europe/London"


def test_the_watchdog_runs_the_grace_period_after_the_nightly_across_midnight():
    settings = NightlySettings(hour=22, minute=45, grace=timedelta(hours=4))

    assert build_watchdog_schedule(settings).cron_schedule == "45 2 * * *"
    assert nightly_sync_watchdog.cron_schedule == "30 6 * * *"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        (NIGHTLY_TIME_ENV, "2:30am"),
        (NIGHTLY_TIME_ENV, "24:00"),
        (NIGHTLY_TIMEZONE_ENV, "IST"),
        (NIGHTLY_GRACE_ENV, "0"),
        (NIGHTLY_GRACE_ENV, "a while"),
    ],
)
def test_a_bad_setting_names_its_variable(variable, value):
    with pytest.raises(ValueError, match=variable):
        nightly_settings({variable: value})


def test_the_due_nightly_is_yesterdays_until_the_grace_period_has_passed():
    settings = NightlySettings()
    before_deadline = datetime(2026, 5, 2, 6, 29, tzinfo=KOLKATA)
    after_deadline = datetime(2026, 5, 2, 6, 30, tzinfo=KOLKATA)

    assert settings.due_tick(before_deadline) == datetime(2026, 5, 1, 2, 30, tzinfo=KOLKATA)
    assert settings.due_tick(after_deadline) == datetime(2026, 5, 2, 2, 30, tzinfo=KOLKATA)


# The check, run the way the watchdog schedule runs it: a job selecting only the check.


@dg.op
def nightly_work() -> None:
    """Stands in for the nightly sync's work."""


def run_nightly_stand_in(instance: dg.DagsterInstance, fail: bool = False) -> str:
    """Record a finished nightly_full_sync run on the instance; returns its run id."""

    @dg.op
    def broken_nightly_work() -> None:
        raise RuntimeError("Zoho answered 500")

    @dg.job(name="nightly_full_sync")
    def stand_in() -> None:
        if fail:
            broken_nightly_work()
        else:
            nightly_work()

    return stand_in.execute_in_process(instance=instance, raise_on_error=False).run_id


def evaluate_watchdog(instance: dg.DagsterInstance, warehouse) -> dg.AssetCheckEvaluation:
    defs = dg.Definitions(
        assets=[dg.AssetSpec("clevertap_profile_sync")],
        asset_checks=[nightly_full_sync_on_time],
        jobs=[
            dg.define_asset_job(
                "watchdog", selection=dg.AssetSelection.checks(nightly_full_sync_on_time)
            )
        ],
        resources={"warehouse": warehouse},
    )
    result = defs.resolve_job_def("watchdog").execute_in_process(instance=instance)
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


@pytest.fixture
def nightly_due_a_minute_ago(monkeypatch) -> datetime:
    """Set the nightly time so that its grace period ended a minute ago; returns the due time."""
    due = datetime.now(KOLKATA).replace(second=0, microsecond=0) - timedelta(hours=1, minutes=1)
    monkeypatch.setenv(NIGHTLY_TIME_ENV, due.strftime("%H:%M"))
    monkeypatch.setenv(NIGHTLY_GRACE_ENV, "1")
    return due


@pytest.fixture
def nightly_missed(monkeypatch, instance) -> datetime:
    """A sync ran, then a nightly fell due and its grace period passed with no run; returns
    the due time. The clock is moved two hours on so the sync predates the due time."""
    run_sync_like_job(instance)
    later = datetime.now(UTC) + timedelta(hours=2)
    due = later.astimezone(KOLKATA).replace(second=0, microsecond=0) - timedelta(hours=1, minutes=1)
    monkeypatch.setenv(NIGHTLY_TIME_ENV, due.strftime("%H:%M"))
    monkeypatch.setenv(NIGHTLY_GRACE_ENV, "1")
    monkeypatch.setattr(schedules, "utc_now", lambda: later)
    return due


def test_a_missed_nightly_fails_the_check_and_is_recorded(
    nightly_missed, instance, sqlite_warehouse
):
    evaluation = evaluate_watchdog(instance, sqlite_warehouse)
    failures = sqlite_warehouse.read_table(SYNC_FAILURES)

    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "no nightly_full_sync run has started" in evaluation.description
    assert failures["kind"].tolist() == ["missed_nightly"]
    assert failures["failed_at"].iloc[0] == nightly_missed.astimezone(UTC)


def test_a_missed_nightly_is_recorded_once_however_often_it_is_checked(
    nightly_missed, instance, sqlite_warehouse
):
    evaluate_watchdog(instance, sqlite_warehouse)
    evaluate_watchdog(instance, sqlite_warehouse)

    assert len(sqlite_warehouse.read_table(SYNC_FAILURES)) == 1


def test_a_code_location_deployed_after_the_due_time_has_missed_nothing(
    nightly_due_a_minute_ago, instance, sqlite_warehouse
):
    evaluation = evaluate_watchdog(instance, sqlite_warehouse)

    assert evaluation.passed
    assert "deployed after" in evaluation.description


def test_a_failed_nightly_fails_the_check_naming_the_run(
    nightly_due_a_minute_ago, instance, sqlite_warehouse
):
    failed_run = run_nightly_stand_in(instance, fail=True)

    evaluation = evaluate_watchdog(instance, sqlite_warehouse)

    assert not evaluation.passed
    assert failed_run in evaluation.description
    assert sqlite_warehouse.read_table(SYNC_FAILURES)["run_id"].tolist() == [failed_run]


def test_a_nightly_that_succeeded_after_its_due_time_passes_the_check(
    nightly_due_a_minute_ago, instance, sqlite_warehouse
):
    run_nightly_stand_in(instance, fail=True)
    succeeded = run_nightly_stand_in(instance)

    evaluation = evaluate_watchdog(instance, sqlite_warehouse)

    assert evaluation.passed
    assert succeeded in evaluation.description
    assert not sqlite_warehouse.table_exists(SYNC_FAILURES)
