"""Applying matched webhook events to Zoho: the configured field on the Contact, and a Note.

Each event is written in two steps, each recorded in the inbox as soon as Zoho answers: the
field (`field_status` `written`, or `superseded` when a later event of the same Contact and field
wins), then the Note (`note_status` `created`); only then is the event `applied`. A step that
Zoho could not take (an outage, a 429 after retries, a locked record) leaves the event `matched`
for the next run, which repeats only the missing step. A record Zoho refuses (a deleted Contact, a
field that does not exist) parks the event with Zoho's code. Every answer is also appended to the
`crm_writeback` table.

A Note is marked `sending` before its request leaves. A run that dies before the answer is
recorded leaves it so; the next run sends it again (a Note may then appear twice, which is better
than a Note lost), and counts it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from ct_pipeline.config import WritebackSettings
from ct_pipeline.warehouse import WarehouseResource, WarehouseTransaction
from ct_pipeline.webhooks.inbox import (
    APPLIED,
    INBOX_TABLE,
    MATCHED,
    PARKED,
    read_inbox,
    typed_frame,
    update_events,
)
from ct_pipeline.webhooks.matching import CONTACTS, note_content, note_title
from ct_pipeline.zoho import NoteDraft, WriteOutcome, ZohoCRMResource, ZohoError
from ct_pipeline.zoho.writes import MAX_RECORDS_PER_WRITE

WRITEBACK_LOG_TABLE = "crm_writeback"

FIELD_WRITTEN = "written"
FIELD_SUPERSEDED = "superseded"
NOTE_SENDING = "sending"
NOTE_CREATED = "created"

FIELD_STEP = "field"
NOTE_STEP = "note"
# Outcomes in the crm_writeback log.
WRITTEN = "written"
REFUSED = "refused"
RETRY_LATER = "retry_later"
FAILED_CALL = "failed_call"

# Per-record codes that mean "not now" rather than "not this record" (Zoho update-records
# Possible Errors; research/zoho.md §6-7).
TRANSIENT_CODES = frozenset(
    {
        "RECORD_LOCKED",
        "LIMIT_EXCEEDED",
        "TOO_MANY_REQUESTS",
        "AMBIGUITY_DURING_PROCESSING",
        "INTERNAL_ERROR",
    }
)
# Zoho's messages are short; a longer one is cut so the log stays readable.
MESSAGE_LIMIT = 200

LOG_COLUMNS = {
    "event_id": "str",
    "step": "str",
    "run_id": "str",
    "contact_id": "str",
    "outcome": "str",
    "code": "str",
    "message": "str",
    "at": "datetime64[ns, UTC]",
}


@dataclass
class WritebackReport:
    """What one write-back run did, in counts (no personal data)."""

    events: int = 0
    fields_written: int = 0
    fields_superseded: int = 0
    notes_created: int = 0
    notes_resent: int = 0
    applied: int = 0
    parked: Counter[str] = field(default_factory=Counter)
    retry_later: int = 0
    zoho_failure: str | None = None

    def as_metadata(self) -> dict[str, Any]:
        """The counts as Dagster metadata values."""
        return {
            "events attempted": self.events,
            "applied": self.applied,
            "fields written": self.fields_written,
            "fields superseded by a later event": self.fields_superseded,
            "notes created": self.notes_created,
            "notes resent after an unknown outcome": self.notes_resent,
            "parked": sum(self.parked.values()),
            "parked by reason": dict(sorted(self.parked.items())),
            "left pending for the next run": self.retry_later,
            "zoho failure": self.zoho_failure or "",
        }


def apply_matched_events(
    warehouse: WarehouseResource,
    zoho: ZohoCRMResource,
    settings: WritebackSettings,
    run_id: str,
) -> WritebackReport:
    """Write every `matched` inbox event to its Contact: field first, then Note."""
    report = WritebackReport()
    events = read_inbox(warehouse, [MATCHED])
    if events.empty:
        return report
    report.events = len(events)
    report.notes_resent = int((events["note_status"] == NOTE_SENDING).sum())
    with warehouse.transaction() as tx:
        tx.execute_in(
            f"UPDATE {INBOX_TABLE} SET attempts = COALESCE(attempts, 0) + 1 "
            "WHERE event_id IN :keys",
            events["event_id"].tolist(),
        )

    attempted = events["event_id"].tolist()
    events = _write_fields(warehouse, zoho, events, settings.trigger, run_id, report)
    if report.zoho_failure is None:
        _write_notes(warehouse, zoho, settings, events, run_id, report)
    still_matched = read_inbox(warehouse, [MATCHED])["event_id"]
    report.retry_later = int(still_matched.isin(attempted).sum())
    return report


def superseded_events(events: pd.DataFrame, written: pd.DataFrame) -> pd.Series:
    """Events whose field write a later event of the same Contact and field overrides.

    `written` holds the latest time already written per (`contact_id`, `field`) as `latest`.
    The time of an event is its event time, else the time it was received.
    """
    moment = _moment(events)
    ranked = (
        events.assign(_moment=moment)
        .rename_axis(None)
        .sort_values(["_moment", "received_at", "event_id"], ascending=False)
    )
    beaten = ranked.duplicated(subset=["contact_id", "field"], keep="first").reindex(events.index)
    if not written.empty:
        keys = pd.MultiIndex.from_frame(events[["contact_id", "field"]])
        already = written.set_index(["contact_id", "field"])["latest"].reindex(keys)
        beaten |= pd.Series(already.to_numpy() > moment.to_numpy(), index=events.index)
    return beaten.fillna(False).astype(bool)


def _write_fields(
    warehouse: WarehouseResource,
    zoho: ZohoCRMResource,
    events: pd.DataFrame,
    trigger: Sequence[str],
    run_id: str,
    report: WritebackReport,
) -> pd.DataFrame:
    events = events.set_index("event_id", drop=False)
    due = events[events["field_status"].isna()]
    if due.empty:
        return events
    beaten = superseded_events(due, _latest_written(warehouse))
    if beaten.any():
        with warehouse.transaction() as tx:
            update_events(
                tx,
                pd.DataFrame({"event_id": due.index[beaten], "field_status": FIELD_SUPERSEDED}),
            )
        events.loc[due.index[beaten], "field_status"] = FIELD_SUPERSEDED
        report.fields_superseded += int(beaten.sum())
    due = due[~beaten]

    rows, members = _contact_rows(due)
    for start in range(0, len(rows), MAX_RECORDS_PER_WRITE):
        chunk = rows[start : start + MAX_RECORDS_PER_WRITE]
        chunk_members = members[start : start + MAX_RECORDS_PER_WRITE]
        try:
            outcomes = zoho.update_records(CONTACTS, chunk, trigger=trigger)
        except ZohoError as error:
            report.zoho_failure = str(error)
            _record_failed_call(warehouse, events, rows[start:], members[start:], run_id, error)
            break
        changes, log = _field_changes(events, chunk, chunk_members, outcomes, run_id, report)
        with warehouse.transaction() as tx:
            update_events(tx, changes)
            _append_log(tx, log)
        for column in ("field_status", "status"):
            known = changes.set_index("event_id")[column].dropna()
            events.loc[known.index, column] = known
    return events


def _write_notes(
    warehouse: WarehouseResource,
    zoho: ZohoCRMResource,
    settings: WritebackSettings,
    events: pd.DataFrame,
    run_id: str,
    report: WritebackReport,
) -> None:
    due = events[
        (events["status"] == MATCHED)
        & events["field_status"].isin([FIELD_WRITTEN, FIELD_SUPERSEDED])
        & (events["note_status"] != NOTE_CREATED)
    ]
    for start in range(0, len(due), MAX_RECORDS_PER_WRITE):
        chunk = due.iloc[start : start + MAX_RECORDS_PER_WRITE]
        drafts = [
            NoteDraft(
                parent_id=str(row.contact_id),
                title=note_title(settings, str(row.event_name)),
                content=note_content(
                    settings,
                    str(row.event_name),
                    str(row.event_date),
                    None if pd.isna(row.event_time) else row.event_time,
                    None if pd.isna(row.target_id) else str(row.target_id),
                    str(row.event_id),
                ),
            )
            for row in chunk.itertuples()
        ]
        with warehouse.transaction() as tx:
            update_events(
                tx, pd.DataFrame({"event_id": chunk["event_id"], "note_status": NOTE_SENDING})
            )
        try:
            outcomes = zoho.create_notes(drafts)
        except ZohoError as error:
            # Zoho answered no Note of this chunk: they are sent again next run.
            report.zoho_failure = str(error)
            unsent = due.iloc[start:]
            with warehouse.transaction() as tx:
                update_events(
                    tx,
                    pd.DataFrame(
                        {
                            "event_id": unsent["event_id"],
                            "note_status": None,
                            "last_error": _short(str(error)),
                        }
                    ),
                )
                _append_log(tx, _log_rows(unsent, NOTE_STEP, run_id, FAILED_CALL, None, error))
            return
        changes, log = _note_changes(chunk, outcomes, run_id, report)
        with warehouse.transaction() as tx:
            update_events(tx, changes)
            _append_log(tx, log)


def _contact_rows(due: pd.DataFrame) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """One update row per Contact (its fields merged) and the events behind each row."""
    rows: list[dict[str, Any]] = []
    members: list[list[str]] = []
    for contact_id, group in due.groupby("contact_id", sort=True):
        row: dict[str, Any] = {"id": str(contact_id)}
        for field_name, value in zip(group["field"], group["value"], strict=True):
            row[str(field_name)] = json.loads(value)
        rows.append(row)
        members.append(group["event_id"].tolist())
    return rows, members


def _field_changes(
    events: pd.DataFrame,
    rows: Sequence[dict[str, Any]],
    members: Sequence[list[str]],
    outcomes: Sequence[WriteOutcome],
    run_id: str,
    report: WritebackReport,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    changes: list[dict[str, Any]] = []
    log: list[dict[str, Any]] = []
    by_index = {outcome.input_index: outcome for outcome in outcomes}
    for position, (row, event_ids) in enumerate(zip(rows, members, strict=True)):
        outcome = by_index.get(position)
        refused_field = _refused_field(outcome, row)
        for event_id in event_ids:
            # Every column of the frame is written back: an event staying pending says so.
            change: dict[str, Any] = {"event_id": event_id, "status": MATCHED}
            if outcome is not None and outcome.ok:
                change["field_status"] = FIELD_WRITTEN
                report.fields_written += 1
                result = WRITTEN
            elif (
                outcome is None
                or outcome.code in TRANSIENT_CODES
                or refused_field not in (None, events.at[event_id, "field"])
            ):
                # Not answered, "not now", or refused for another event's field.
                change["last_error"] = _describe(outcome)
                result = RETRY_LATER
            else:
                change.update(status=PARKED, reason=f"zoho_refused_field:{outcome.code}")
                change["last_error"] = _describe(outcome)
                report.parked[f"zoho_refused_field:{outcome.code}"] += 1
                result = REFUSED
            changes.append(change)
            log.append(_log_row(event_id, FIELD_STEP, run_id, row["id"], result, outcome))
    frame = pd.DataFrame(changes).reindex(
        columns=["event_id", "field_status", "status", "reason", "last_error"]
    )
    return frame, pd.DataFrame(log)


def _refused_field(outcome: WriteOutcome | None, row: dict[str, Any]) -> str | None:
    """The field of `row` Zoho named when it refused the row, if it named one of its fields."""
    if outcome is None or outcome.ok:
        return None
    api_name = outcome.details.get("api_name")
    return api_name if api_name in row and api_name != "id" else None


def _note_changes(
    chunk: pd.DataFrame,
    outcomes: Sequence[WriteOutcome],
    run_id: str,
    report: WritebackReport,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    changes: list[dict[str, Any]] = []
    log: list[dict[str, Any]] = []
    by_index = {outcome.input_index: outcome for outcome in outcomes}
    for position, row in enumerate(chunk.itertuples()):
        outcome = by_index.get(position)
        change: dict[str, Any] = {"event_id": row.event_id, "status": MATCHED}
        if outcome is not None and outcome.ok:
            change.update(
                note_status=NOTE_CREATED, note_id=outcome.id, status=APPLIED, last_error=None
            )
            report.notes_created += 1
            report.applied += 1
            result = WRITTEN
        elif outcome is None or outcome.code in TRANSIENT_CODES:
            change.update(note_status=None, last_error=_describe(outcome))
            result = RETRY_LATER
        else:
            reason = f"zoho_refused_note:{outcome.code}"
            change.update(
                note_status=None, status=PARKED, reason=reason, last_error=_describe(outcome)
            )
            report.parked[reason] += 1
            result = REFUSED
        changes.append(change)
        log.append(_log_row(row.event_id, NOTE_STEP, run_id, row.contact_id, result, outcome))
    frame = pd.DataFrame(changes).reindex(
        columns=["event_id", "note_status", "note_id", "status", "reason", "last_error"]
    )
    return frame, pd.DataFrame(log)


def _record_failed_call(
    warehouse: WarehouseResource,
    events: pd.DataFrame,
    rows: Sequence[dict[str, Any]],
    members: Sequence[list[str]],
    run_id: str,
    error: Exception,
) -> None:
    """Events whose update was not answered stay `matched`, with the error to show for it."""
    event_ids = [event_id for group in members for event_id in group]
    failed = events.loc[event_ids]
    with warehouse.transaction() as tx:
        update_events(tx, pd.DataFrame({"event_id": event_ids, "last_error": _short(str(error))}))
        _append_log(tx, _log_rows(failed, FIELD_STEP, run_id, FAILED_CALL, None, error))


def _latest_written(warehouse: WarehouseResource) -> pd.DataFrame:
    """The latest event time already written, per Contact and field."""
    frame = warehouse.read_sql(
        "SELECT contact_id, field, MAX(COALESCE(event_time, received_at)) AS latest "
        f"FROM {INBOX_TABLE} WHERE field_status = :written GROUP BY contact_id, field",
        {"written": FIELD_WRITTEN},
    )
    if frame.empty:
        return pd.DataFrame(columns=["contact_id", "field", "latest"])
    frame["latest"] = pd.to_datetime(frame["latest"], utc=True, format="mixed")
    return frame.astype({"contact_id": "str", "field": "str"})


def _moment(events: pd.DataFrame) -> pd.Series:
    # One unit for both, or pandas refuses one as the other's fill value.
    event_time = pd.to_datetime(events["event_time"], utc=True).dt.as_unit("us")
    return event_time.fillna(pd.to_datetime(events["received_at"], utc=True).dt.as_unit("us"))


def _log_rows(
    events: pd.DataFrame,
    step: str,
    run_id: str,
    outcome: str,
    answer: WriteOutcome | None,
    error: Exception | None,
) -> pd.DataFrame:
    rows = [
        _log_row(event_id, step, run_id, contact_id, outcome, answer, error)
        for event_id, contact_id in zip(events["event_id"], events["contact_id"], strict=True)
    ]
    return pd.DataFrame(rows)


def _log_row(
    event_id: str,
    step: str,
    run_id: str,
    contact_id: Any,
    outcome: str,
    answer: WriteOutcome | None,
    error: Exception | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "step": step,
        "run_id": run_id,
        "contact_id": None if pd.isna(contact_id) else str(contact_id),
        "outcome": outcome,
        "code": answer.code if answer is not None else (type(error).__name__ if error else None),
        "message": _short(str(error)) if error is not None else _describe(answer),
        "at": datetime.now(UTC),
    }


def _append_log(tx: WarehouseTransaction, log: pd.DataFrame) -> None:
    if log.empty:
        return
    tx.upsert(
        WRITEBACK_LOG_TABLE,
        typed_frame(log, LOG_COLUMNS),
        key=["event_id", "step", "run_id"],
    )


def _describe(outcome: WriteOutcome | None) -> str:
    if outcome is None:
        return "Zoho gave no result for this record"
    text = f"{outcome.code or outcome.status}: {outcome.message or ''}".strip(": ")
    api_name = outcome.details.get("api_name")
    if api_name:
        text += f" (field {api_name})"
    return _short(text)


def _short(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"
