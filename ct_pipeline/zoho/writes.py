"""Writes for the write-back flow: updating records and adding Notes, with per-record outcomes.

Zoho answers a batch write with one result per record, in request order, and HTTP 200 when all
succeeded, 207 when some did, 400 when none did. Every record's result is returned as a
`WriteOutcome`; only an error about the whole request raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ct_pipeline.zoho.http import ZohoSession, credits_for_records

# At most 100 records per update and 100 notes per create call (v7 update-records.html,
# create-notes.html).
MAX_RECORDS_PER_WRITE = 100
NOTES_MODULE = "Notes"
# A 400 still carries per-record results when every record failed on its own.
PER_RECORD_ERROR_STATUSES = frozenset({400})
SUCCESS = "success"


@dataclass(frozen=True)
class WriteOutcome:
    """Zoho's result for one record of a write, linked to its input by `input_index`."""

    input_index: int
    id: str | None
    status: str
    code: str | None
    message: str | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether Zoho applied this record."""
        return self.status == SUCCESS


@dataclass(frozen=True)
class NoteDraft:
    """A Note to attach to a record (a Contact unless `parent_module` says otherwise)."""

    parent_id: str
    title: str
    content: str
    parent_module: str = "Contacts"


def update_records(
    session: ZohoSession,
    module: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    trigger: Sequence[str] | None = None,
    max_workers: int = 1,
) -> list[WriteOutcome]:
    """Update records by id, 100 per call; one outcome per row, in input order."""
    for index, row in enumerate(rows):
        if not row.get("id"):
            raise ValueError(
                f"row {index} of the {module} update has no 'id': each row needs the Zoho "
                "record id of the record to update"
            )
    path = session.api_path(module)

    def send(start: int) -> list[WriteOutcome]:
        chunk = [dict(row) for row in rows[start : start + MAX_RECORDS_PER_WRITE]]
        body: dict[str, Any] = {"data": chunk}
        if trigger is not None:
            body["trigger"] = list(trigger)
        return _write(
            session,
            "PUT",
            path,
            body,
            "update",
            start,
            idempotent=True,
            fallback_ids=[str(row["id"]) for row in chunk],
        )

    return _in_chunks(len(rows), send, max_workers)


def create_notes(
    session: ZohoSession, notes: Sequence[NoteDraft], *, max_workers: int = 1
) -> list[WriteOutcome]:
    """Create Notes, 100 per call; one outcome per note (with the new Note id), in input order."""
    for index, note in enumerate(notes):
        if not note.parent_id:
            raise ValueError(f"note {index} has no parent_id: a Note must belong to a record")
    path = session.api_path(NOTES_MODULE)

    def send(start: int) -> list[WriteOutcome]:
        chunk = notes[start : start + MAX_RECORDS_PER_WRITE]
        body = {"data": [_note_json(note) for note in chunk]}
        # Not idempotent: a retried create after a lost answer could add the Note twice.
        return _write(
            session,
            "POST",
            path,
            body,
            "notes",
            start,
            idempotent=False,
            fallback_ids=[None] * len(chunk),
        )

    return _in_chunks(len(notes), send, max_workers)


def _write(
    session: ZohoSession,
    method: str,
    path: str,
    body: dict[str, Any],
    kind: str,
    first_index: int,
    *,
    idempotent: bool,
    fallback_ids: Sequence[str | None],
) -> list[WriteOutcome]:
    response = session.call(
        method,
        path,
        kind=kind,
        credits=credits_for_records(len(body["data"])),
        json=body,
        idempotent=idempotent,
        also_accept=PER_RECORD_ERROR_STATUSES,
    )
    payload = response.json() if response.content else None
    results = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(results, list):
        raise session.error_for(method, path, response)
    outcomes = []
    for offset, result in enumerate(results):
        details = result.get("details") if isinstance(result.get("details"), dict) else {}
        record_id = details.get("id") or (
            fallback_ids[offset] if offset < len(fallback_ids) else None
        )
        outcomes.append(
            WriteOutcome(
                input_index=first_index + offset,
                id=str(record_id) if record_id else None,
                status=str(result.get("status") or "error"),
                code=result.get("code"),
                message=result.get("message"),
                details=dict(details),
            )
        )
    return outcomes


def _in_chunks(
    total: int, send: Callable[[int], list[WriteOutcome]], max_workers: int
) -> list[WriteOutcome]:
    starts = range(0, total, MAX_RECORDS_PER_WRITE)
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        return [outcome for chunk in pool.map(send, starts) for outcome in chunk]


def _note_json(note: NoteDraft) -> dict[str, Any]:
    return {
        "Note_Title": note.title,
        "Note_Content": note.content,
        "Parent_Id": {"module": {"api_name": note.parent_module}, "id": note.parent_id},
    }
