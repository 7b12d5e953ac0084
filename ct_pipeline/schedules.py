"""When the nightly full sync runs, and the morning check that makes a missed one visible.

The nightly time is read from the environment when the code location loads (a bad value stops
the load with the variable named): `CT_NIGHTLY_SYNC_TIME` (HH:MM, default 02:30),
`CT_NIGHTLY_SYNC_TIMEZONE` (IANA zone, default Asia/Kolkata) and `CT_NIGHTLY_SYNC_GRACE_HOURS`
(how long the nightly may take before it counts as missed, default 4). Both schedules are
RUNNING by default: deploying the code location is what turns the sync on.
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
import pandas as pd

from ct_pipeline.assets.common import SYNC_TAG
from ct_pipeline.jobs import nightly_full_sync
from ct_pipeline.warehouse import WarehouseResource

NIGHTLY_TIME_ENV = "CT_NIGHTLY_SYNC_TIME"
NIGHTLY_TIMEZONE_ENV = "CT_NIGHTLY_SYNC_TIMEZONE"
NIGHTLY_GRACE_ENV = "CT_NIGHTLY_SYNC_GRACE_HOURS"
# 02:30 IST: after the evening's CRM work has settled and hours before business opens.
DEFAULT_NIGHTLY_TIME = "02:30"
DEFAULT_TIMEZONE = "Asia/Kolkata"
DEFAULT_GRACE_HOURS = 4
MAX_GRACE_HOURS = 20

# The warehouse table where failed and missed syncs are recorded for operators (one row each).
SYNC_FAILURES = "sync_failures"
MISSED_NIGHTLY = "missed_nightly"
# The asset the missed-nightly check is shown on: the last step of the profile flow.
WATCHED_ASSET = dg.AssetKey("clevertap_profile_sync")

_TIME_PATTERN = re.compile(r"^(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)$")


@dataclass(frozen=True)
class NightlySettings:
    """When the nightly full sync starts, and how long it may take before it counts as missed."""

    hour: int = 2
    minute: int = 30
    timezone: str = DEFAULT_TIMEZONE
    grace: timedelta = timedelta(hours=DEFAULT_GRACE_HOURS)

    @property
    def cron(self) -> str:
        """The nightly schedule's cron string (in `timezone`)."""
        return f"{self.minute} {self.hour} * * *"

    @property
    def watchdog_cron(self) -> str:
        """The cron string of the morning check: the nightly time plus the grace period."""
        start = self.hour * 60 + self.minute + int(self.grace.total_seconds() // 60)
        start %= 24 * 60
        return f"{start % 60} {start // 60} * * *"

    def due_tick(self, now: datetime) -> datetime:
        """The latest nightly start time that is at least the grace period before `now` (UTC)."""
        local = (now - self.grace).astimezone(ZoneInfo(self.timezone))
        tick = local.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        if tick > local:
            tick -= timedelta(days=1)
        return tick.astimezone(UTC)


def nightly_settings(environ: Mapping[str, str] | None = None) -> NightlySettings:
    """The nightly settings from the environment; a bad value raises ValueError naming it."""
    env = os.environ if environ is None else environ
    time_text = env.get(NIGHTLY_TIME_ENV) or DEFAULT_NIGHTLY_TIME
    match = _TIME_PATTERN.match(time_text.strip())
    if match is None:
        raise ValueError(
            f"{NIGHTLY_TIME_ENV} {time_text!r} is not a time of day; use 24-hour HH:MM, "
            f"e.g. {DEFAULT_NIGHTLY_TIME}"
        )

    timezone = (env.get(NIGHTLY_TIMEZONE_ENV) or DEFAULT_TIMEZONE).strip()
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{NIGHTLY_TIMEZONE_ENV} {timezone!r} is not an IANA time zone; use a name such as "
            f"{DEFAULT_TIMEZONE} or Europe/London"
        ) from None

    grace_text = env.get(NIGHTLY_GRACE_ENV) or str(DEFAULT_GRACE_HOURS)
    try:
        grace_hours = float(grace_text)
    except ValueError:
        grace_hours = -1.0
    if not 0 < grace_hours <= MAX_GRACE_HOURS:
        raise ValueError(
            f"{NIGHTLY_GRACE_ENV} {grace_text!r} is not a number of hours between 0 and "
            f"{MAX_GRACE_HOURS}; it is how long the nightly sync may take, e.g. 4"
        )
    return NightlySettings(
        hour=int(match["hour"]),
        minute=int(match["minute"]),
        timezone=timezone,
        grace=timedelta(hours=grace_hours),
    )


def build_nightly_schedule(settings: NightlySettings) -> dg.ScheduleDefinition:
    """The schedule that starts `nightly_full_sync` every day at the configured local time."""
    return dg.ScheduleDefinition(
        name="nightly_full_sync_schedule",
        job=nightly_full_sync,
        cron_schedule=settings.cron,
        execution_timezone=settings.timezone,
        # On purpose: a deployed code location syncs without anyone switching the schedule on.
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Full refresh of every synced Zoho module at {settings.hour:02d}:"
            f"{settings.minute:02d} {settings.timezone} (set {NIGHTLY_TIME_ENV} and "
            f"{NIGHTLY_TIMEZONE_ENV} to move it). Running by default once deployed."
        ),
    )


@dg.asset_check(
    asset=WATCHED_ASSET,
    name="nightly_full_sync_on_time",
    description=(
        "A nightly_full_sync run that started after the latest nightly time (at least the grace "
        "period ago) has succeeded. Fails, and adds a row to the sync_failures table, when the "
        "nightly was missed or failed. Evaluated by the nightly_sync_watchdog schedule each "
        "morning and in every sync run."
    ),
)
def nightly_full_sync_on_time(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    """Whether the nightly full sync due most recently has succeeded."""
    settings = nightly_settings()
    due = settings.due_tick(utc_now())
    if context.run.job_name == nightly_full_sync.name:
        return dg.AssetCheckResult(
            passed=True,
            description="evaluated inside the nightly run itself",
            metadata={"due": due.isoformat()},
        )

    verdict = nightly_verdict(context.instance, due)
    if not verdict.passed:
        record_missed_nightly(warehouse, due, verdict)
        context.log.error(f"nightly_full_sync missed: {verdict.description}")
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=verdict.description,
        metadata={"due": due.isoformat(), "latest nightly run": verdict.latest_run_id or ""},
    )


def utc_now() -> datetime:
    """The current time in UTC (one place, so tests can move the clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class NightlyVerdict:
    """Whether the nightly due at a time succeeded, with the run that says so."""

    passed: bool
    description: str
    latest_run_id: str | None


def nightly_verdict(instance: dg.DagsterInstance, due: datetime) -> NightlyVerdict:
    """Judge the nightly runs created at or after `due`: one success is enough.

    A code location with no sync run before `due` was deployed after that nightly was due, so
    there is nothing to miss yet.
    """
    records = instance.get_run_records(
        dg.RunsFilter(job_name=nightly_full_sync.name, created_after=due), limit=20
    )
    succeeded = [record for record in records if record.dagster_run.is_success]
    if succeeded:
        run = succeeded[0].dagster_run
        return NightlyVerdict(True, f"nightly run {run.run_id} succeeded", run.run_id)
    if records:
        run = records[0].dagster_run
        return NightlyVerdict(
            False,
            f"no nightly_full_sync has succeeded since {due.isoformat()}; the latest, "
            f"{run.run_id}, is {run.status.value}",
            run.run_id,
        )
    if not instance.get_run_records(
        dg.RunsFilter(tags={SYNC_TAG: "true"}, created_before=due), limit=1
    ):
        return NightlyVerdict(
            True, f"no sync ran before {due.isoformat()}: deployed after that nightly was due", None
        )
    return NightlyVerdict(
        False,
        f"no nightly_full_sync run has started since {due.isoformat()}: is the "
        "dagster-daemon running and the nightly_full_sync_schedule on?",
        None,
    )


def record_missed_nightly(
    warehouse: WarehouseResource, due: datetime, verdict: NightlyVerdict
) -> None:
    """Add (once per due time) a `missed_nightly` row to the sync_failures table."""
    row = failure_row(
        failure_id=f"{MISSED_NIGHTLY}:{due.isoformat()}",
        kind=MISSED_NIGHTLY,
        run_id=verdict.latest_run_id,
        job_name=nightly_full_sync.name,
        failed_at=due,
        steps="",
        message=verdict.description,
    )
    warehouse.upsert(SYNC_FAILURES, row, key=["failure_id"], keep_existing=True)


def failure_row(
    *,
    failure_id: str,
    kind: str,
    run_id: str | None,
    job_name: str,
    failed_at: datetime,
    steps: str,
    message: str,
) -> pd.DataFrame:
    """One row of the sync_failures table, typed so the first write creates it right."""
    return pd.DataFrame(
        {
            "failure_id": pd.Series([failure_id], dtype="str"),
            "kind": pd.Series([kind], dtype="str"),
            "run_id": pd.Series([run_id], dtype="str"),
            "job_name": pd.Series([job_name], dtype="str"),
            "failed_at": pd.Series([pd.Timestamp(failed_at)], dtype="datetime64[us, UTC]"),
            "steps": pd.Series([steps], dtype="str"),
            "message": pd.Series([message], dtype="str"),
            "recorded_at": pd.Series([pd.Timestamp.now(tz=UTC)], dtype="datetime64[us, UTC]"),
        }
    )


def build_watchdog_schedule(settings: NightlySettings) -> dg.ScheduleDefinition:
    """The morning schedule that evaluates `nightly_full_sync_on_time` after the grace period."""
    return dg.ScheduleDefinition(
        name="nightly_sync_watchdog",
        target=dg.AssetSelection.checks(nightly_full_sync_on_time),
        cron_schedule=settings.watchdog_cron,
        execution_timezone=settings.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Checks each morning that last night's nightly_full_sync succeeded; a missed or "
            "failed nightly turns the check red and is recorded in sync_failures."
        ),
    )


SETTINGS = nightly_settings()
nightly_full_sync_schedule = build_nightly_schedule(SETTINGS)
nightly_sync_watchdog = build_watchdog_schedule(SETTINGS)

SCHEDULES = [nightly_full_sync_schedule, nightly_sync_watchdog]
AUTOMATION_CHECKS = [nightly_full_sync_on_time]
