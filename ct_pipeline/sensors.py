"""The sensors: a Zoho change starts an incremental sync, waiting webhook events start the
write-back, and a failed run is recorded.

`zoho_changes_sensor` asks Zoho on every tick, one record per module with If-Modified-Since,
whether anything changed after the cursors the warehouse stores, and requests an
`incremental_sync` run when it did. It never requests a run while another sync run is queued or
in progress: the warehouse cursors advance only when a run commits what it read, so a change
made during a run is still newer than the cursors when that run ends, and the next tick sees
it. Its run keys come from the cursors, so a tick evaluated twice cannot start two runs.

`webhook_inbox_sensor` starts `crm_writeback` while webhook events wait in the inbox: at once
for new events, and again after a pause while a failed run left events pending.

`sync_failure_sensor` writes every failed sync or write-back run to the warehouse table
`sync_failures` and logs it with the run id.
"""

import hashlib
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES, NOT_FINISHED_STATUSES

from ct_pipeline.assets.common import SYNC_TAG, mask_identity
from ct_pipeline.assets.writeback import WRITEBACK_TAG, crm_writeback_job
from ct_pipeline.config import SyncConfigResource
from ct_pipeline.jobs import incremental_sync, nightly_full_sync
from ct_pipeline.schedules import SYNC_FAILURES, failure_row
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.state import read_cursor
from ct_pipeline.webhooks.inbox import pending_summary
from ct_pipeline.zoho import ZohoCRMResource

INTERVAL_ENV = "CT_ZOHO_SENSOR_INTERVAL_SECONDS"
# A CRM edit should reach CleverTap within a minute: the tick interval is the largest share of
# that. Each idle tick costs one API credit per synced module (Get Records is 1 credit a call,
# Kaizen #60): about 23,000 credits a day for four modules at 15 s, and 2,300 more for the
# deletion probes, half the 50,000 base of a Standard org (the Free edition has 5,000).
DEFAULT_INTERVAL_SECONDS = 15
# The sensor daemon looks at its sensors every 5 seconds; a shorter interval buys nothing.
MIN_INTERVAL_SECONDS = 5
MAX_INTERVAL_SECONDS = 3600
# Deleted-record reads cost 2 credits (vertical-solutions credit table; the CRM pages do not
# say), so deletions are probed less often than edits; the nightly applies any that slip by.
DELETION_PROBE_EVERY = timedelta(minutes=5)
# A run that failed at the same cursors is retried after 1 minute, then 2, 4, ... up to 1 hour.
RETRY_FIRST_WAIT = timedelta(minutes=1)
RETRY_LONGEST_WAIT = timedelta(hours=1)

# The inbox sensor looks at the inbox this often; CleverTap expects nothing after the 200.
INBOX_INTERVAL_SECONDS = 30
# Events a failed write-back run left pending get a new run after this long, not on every tick.
RETRY_AFTER_SECONDS = 300

CURSORS_TAG = "ct_pipeline/zoho_cursors"
TRIGGER_TAG = "ct_pipeline/trigger"
RUN_FAILURE = "run_failure"
# Failure messages are cut to this many characters in sync_failures.
MESSAGE_LIMIT = 2000

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# 8 to 15 digits with single spaces or hyphens, not part of a longer number (Zoho's 19-digit
# record ids stay readable) and not an ISO date.
_PHONE = re.compile(r"(?<![\w+])(?!\d{4}-\d{2}-\d{2})\+?\d(?:[ -]?\d){7,14}(?!\w)")


def change_sensor_interval(environ: Mapping[str, str] | None = None) -> int:
    """The change sensor's tick interval in seconds, from the environment (ValueError if bad)."""
    env = os.environ if environ is None else environ
    text = env.get(INTERVAL_ENV) or str(DEFAULT_INTERVAL_SECONDS)
    if not text.strip().isdigit() or not (
        MIN_INTERVAL_SECONDS <= int(text) <= MAX_INTERVAL_SECONDS
    ):
        raise ValueError(
            f"{INTERVAL_ENV} {text!r} is not a whole number of seconds between "
            f"{MIN_INTERVAL_SECONDS} and {MAX_INTERVAL_SECONDS}; e.g. {DEFAULT_INTERVAL_SECONDS}"
        )
    return int(text)


@dg.sensor(
    name="zoho_changes_sensor",
    job=incremental_sync,
    minimum_interval_seconds=change_sensor_interval(),
    # On purpose: a deployed code location keeps CleverTap in step without a manual switch.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Starts incremental_sync when a synced Zoho module changed after the stored cursors "
        "(one 1-credit If-Modified-Since call per module a tick; deletions every 5 minutes). "
        "Waits while another sync run is queued or in progress. Running by default."
    ),
)
def zoho_changes_sensor(
    context: dg.SensorEvaluationContext,
    zoho: ZohoCRMResource,
    warehouse: WarehouseResource,
    sync_config: SyncConfigResource,
) -> dg.SensorResult:
    """Request an incremental sync when Zoho holds changes newer than the warehouse cursors."""
    result = evaluate_zoho_changes(
        context.instance,
        context.cursor,
        zoho,
        warehouse,
        sync_config.load().zoho.modules,
        datetime.now(UTC),
    )
    for request in result.run_requests or []:
        context.log.info(
            f"requesting incremental_sync ({request.tags[TRIGGER_TAG]}), key {request.run_key}"
        )
    return result


def evaluate_zoho_changes(
    instance: dg.DagsterInstance,
    sensor_cursor: str | None,
    zoho: ZohoCRMResource,
    warehouse: WarehouseResource,
    modules: Sequence[str],
    now: datetime,
) -> dg.SensorResult:
    """One tick of the change sensor: a run request, or a skip with its reason."""
    state = SensorState.parse(sensor_cursor)
    busy = sync_run_in_flight(instance)
    if busy is not None:
        return dg.SensorResult(
            skip_reason=(
                f"sync run {busy.run_id} ({busy.job_name}) is {busy.status.value.lower()}; "
                "changes made meanwhile are picked up after it"
            ),
            cursor=state.dump(),
        )

    cursors = {module: ModuleCursors.read(warehouse, module) for module in modules}
    probe_deletions = state.deletions_due(now)
    if probe_deletions:
        state = replace(state, deletions_probed_at=now)
    trigger, calls = find_change(instance, zoho, cursors, probe_deletions)
    if trigger is None:
        return dg.SensorResult(
            skip_reason=(
                f"no change in {', '.join(modules)} after the stored cursors "
                f"({calls} Zoho calls{', deletions included' if probe_deletions else ''})"
            ),
            cursor=state.dump(),
        )

    digest = cursor_digest(cursors)
    attempts = finished_runs_at(instance, digest)
    wait = retry_wait(attempts, now)
    if wait is not None:
        failed = attempts[0].dagster_run.run_id
        return dg.SensorResult(
            skip_reason=(
                f"{trigger}, but incremental_sync run {failed} failed at these cursors; "
                f"retrying in {int(wait.total_seconds())} s (see the {SYNC_FAILURES} table)"
            ),
            cursor=state.dump(),
        )
    request = dg.RunRequest(
        run_key=f"zoho-changes-{digest}-{len(attempts)}",
        tags={CURSORS_TAG: digest, TRIGGER_TAG: trigger},
    )
    return dg.SensorResult(run_requests=[request], cursor=state.dump())


@dataclass(frozen=True)
class SensorState:
    """What the change sensor remembers between ticks (its Dagster cursor, as JSON)."""

    deletions_probed_at: datetime | None = None

    @classmethod
    def parse(cls, text: str | None) -> "SensorState":
        """The state stored by an earlier tick; a missing or unreadable cursor starts afresh."""
        try:
            stored = json.loads(text) if text else {}
            probed = stored.get("deletions_probed_at")
            return cls(deletions_probed_at=datetime.fromisoformat(probed) if probed else None)
        except (ValueError, TypeError, AttributeError):
            return cls()

    def dump(self) -> str:
        """The state as the cursor string Dagster stores."""
        probed = self.deletions_probed_at
        return json.dumps({"deletions_probed_at": probed.isoformat() if probed else None})

    def deletions_due(self, now: datetime) -> bool:
        """Whether this tick also probes the deleted records."""
        probed = self.deletions_probed_at
        return probed is None or now - probed >= DELETION_PROBE_EVERY


@dataclass(frozen=True)
class ModuleCursors:
    """A module's stored cursors: the newest Modified_Time read, and the newest deletion."""

    modified: datetime | None
    deleted: datetime | None

    @classmethod
    def read(cls, warehouse: WarehouseResource, module: str) -> "ModuleCursors":
        """The cursors the last sync of `module` stored (None before its first sync)."""
        return cls(read_cursor(warehouse, module), read_cursor(warehouse, module, "deleted"))


def sync_run_in_flight(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    """A sync run (nightly or incremental) that is queued or in progress, if there is one."""
    records = instance.get_run_records(
        dg.RunsFilter(tags={SYNC_TAG: "true"}, statuses=list(NOT_FINISHED_STATUSES)), limit=1
    )
    return records[0].dagster_run if records else None


def find_change(
    instance: dg.DagsterInstance,
    zoho: ZohoCRMResource,
    cursors: Mapping[str, ModuleCursors],
    probe_deletions: bool,
) -> tuple[str | None, int]:
    """Why a sync is needed (None if it is not), and how many Zoho calls it took to tell.

    Checks that cost nothing come first; Zoho is asked module by module, stopping at the first
    change, since one incremental run reads every module anyway.
    """
    for module, cursor in cursors.items():
        if cursor.modified is None:
            return f"{module} never synced", 0
    reread = same_second_module(instance, cursors)
    if reread is not None:
        return f"{reread} cursor is in the last sync's own second", 0

    calls = 0
    for module, cursor in cursors.items():
        calls += 1
        if zoho.has_changes(module, cursor.modified):
            return f"{module} changed", calls
    if probe_deletions:
        for module, cursor in cursors.items():
            since = cursor.deleted or cursor.modified
            calls += 1
            deleted = zoho.read_deleted(module, since=since)
            if len(deleted) and bool((deleted["deleted_time"] > since).any()):
                return f"{module} records deleted", calls
    return None, calls


def same_second_module(
    instance: dg.DagsterInstance, cursors: Mapping[str, ModuleCursors]
) -> str | None:
    """A module whose cursor falls in or after the second the latest sync run started.

    Modified_Time has one-second resolution, so an edit made in the same second as the record
    a run read last looks no newer than the cursor. Only a cursor at or after its run's start
    can share a second with an edit the run missed; one more run re-reads that second.
    """
    records = instance.get_run_records(
        dg.RunsFilter(tags={SYNC_TAG: "true"}, statuses=list(FINISHED_STATUSES)), limit=1
    )
    if not records or records[0].start_time is None:
        return None
    started = datetime.fromtimestamp(int(records[0].start_time), UTC)
    for module, cursor in cursors.items():
        if cursor.modified is not None and cursor.modified >= started:
            return module
    return None


def cursor_digest(cursors: Mapping[str, ModuleCursors]) -> str:
    """A short, stable fingerprint of every module's cursors (the basis of the run key)."""
    canonical = {
        module: [
            cursor.modified.isoformat() if cursor.modified else None,
            cursor.deleted.isoformat() if cursor.deleted else None,
        ]
        for module, cursor in sorted(cursors.items())
    }
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()[:16]


def finished_runs_at(instance: dg.DagsterInstance, digest: str) -> list[dg.RunRecord]:
    """The finished runs this sensor requested at these cursors, newest first."""
    return list(
        instance.get_run_records(
            dg.RunsFilter(tags={CURSORS_TAG: digest}, statuses=list(FINISHED_STATUSES))
        )
    )


def retry_wait(attempts: Sequence[dg.RunRecord], now: datetime) -> timedelta | None:
    """How much longer to wait before retrying, when the latest attempt failed."""
    if not attempts or attempts[0].dagster_run.is_success:
        return None
    failures = sum(1 for record in attempts if not record.dagster_run.is_success)
    backoff = min(RETRY_FIRST_WAIT * 2 ** (failures - 1), RETRY_LONGEST_WAIT)
    ended = attempts[0].end_time or attempts[0].create_timestamp.timestamp()
    remaining = datetime.fromtimestamp(ended, UTC) + backoff - now
    return remaining if remaining > timedelta(0) else None


@dg.sensor(
    name="webhook_inbox_sensor",
    job=crm_writeback_job,
    minimum_interval_seconds=INBOX_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Starts crm_writeback when webhook events are pending: at once for newly arrived "
        f"events, and every {RETRY_AFTER_SECONDS // 60} minutes while a failed run left "
        "events pending. Never while a write-back run is queued or running. Running by default."
    ),
)
def webhook_inbox_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    """Request a write-back run while webhook events are pending and none is in flight."""
    summary = pending_summary(warehouse)
    if summary.count == 0 or summary.newest_received_at is None:
        return dg.SkipReason("no webhook events pending")
    in_flight = context.instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=crm_writeback_job.name, statuses=list(NOT_FINISHED_STATUSES)
        ),
        limit=1,
    )
    if in_flight:
        return dg.SkipReason(f"{summary.count} events pending; a write-back run is in flight")

    cursor = json.loads(context.cursor) if context.cursor else {}
    newest = summary.newest_received_at.astimezone(UTC).isoformat()
    now = time.time()
    if newest != cursor.get("newest"):
        run_key = f"inbox:{newest}:{summary.count}"
    elif now - float(cursor.get("requested_at", 0)) >= RETRY_AFTER_SECONDS:
        run_key = f"retry:{newest}:{int(now)}"
    else:
        wait = int(RETRY_AFTER_SECONDS - (now - float(cursor["requested_at"])))
        return dg.SkipReason(
            f"{summary.count} events still pending after the last run; retrying in {wait} s"
        )
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=run_key, tags={WRITEBACK_TAG: "true"})],
        cursor=json.dumps({"newest": newest, "requested_at": now}),
    )


@dg.run_failure_sensor(
    name="sync_failure_sensor",
    monitored_jobs=[nightly_full_sync, incremental_sync, crm_writeback_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        f"Records every failed sync or write-back run in the warehouse table {SYNC_FAILURES} "
        "(run id, job, failed steps, error) and logs it with the run id. Running by default."
    ),
)
def sync_failure_sensor(context: dg.RunFailureSensorContext, warehouse: WarehouseResource) -> None:
    """Record a failed run where operators look: the sync_failures table and the log."""
    run = context.dagster_run
    steps = [event.step_key for event in context.get_step_failure_events() if event.step_key]
    message = failure_message(context)
    record = context.instance.get_run_record_by_id(run.run_id)
    ended = record.end_time if record is not None and record.end_time else None
    failed_at = datetime.fromtimestamp(ended, UTC) if ended else datetime.now(UTC)
    row = failure_row(
        failure_id=run.run_id,
        kind=RUN_FAILURE,
        run_id=run.run_id,
        job_name=run.job_name,
        failed_at=failed_at,
        steps=", ".join(steps),
        message=message,
    )
    warehouse.upsert(SYNC_FAILURES, row, key=["failure_id"])
    kind = "write-back" if run.job_name == crm_writeback_job.name else "sync"
    context.log.error(
        f"{kind} run {run.run_id} ({run.job_name}) failed"
        f"{' in ' + ', '.join(steps) if steps else ''}; recorded in {SYNC_FAILURES}"
    )


def failure_message(context: dg.RunFailureSensorContext) -> str:
    """The errors of a failed run, one line per failed step, with personal data masked."""
    lines = []
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        # Dagster wraps what the step raised; the innermost cause names the real problem.
        while error is not None and error.cause is not None:
            error = error.cause
        text = error.message.strip() if error is not None else ""
        lines.append(f"{event.step_key}: {text.splitlines()[0] if text else 'failed'}")
    if not lines:
        lines.append(context.failure_event.message or "the run failed before any step ran")
    return redact("\n".join(lines))[:MESSAGE_LIMIT]


def redact(text: str) -> str:
    """`text` with anything shaped like an email address or phone number masked."""
    text = _EMAIL.sub(lambda match: mask_identity(match.group()), text)
    return _PHONE.sub(lambda match: mask_identity(re.sub(r"[ -]", "", match.group())), text)


SENSORS = [zoho_changes_sensor, webhook_inbox_sensor, sync_failure_sensor]
