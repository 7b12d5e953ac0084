"""The webhook inbox in the warehouse: raw deliveries, one row per event, and their progress.

`clevertap_webhook_deliveries` keeps every accepted body as it arrived (one row per POST).
`clevertap_webhook_inbox` holds one row per distinct event, keyed by its deterministic id, and
moves it through `received` (stored, not yet matched) -> `matched` (a Contact was found, the
field and Note are due) -> `applied`; a row that cannot be applied is `parked` with a reason.
`received` and `matched` rows are pending: the write-back job picks them up.

An event's id is its fingerprint (name, person, time) when the delivery gives its time, so a
retry or a resend, however late, adds nothing. Without a time, a copy of the same profile
received within the retry window of the first counts as CleverTap's retry; later, the same
profile is a new event (the id then also carries the window it was received in).

A parked row goes back to `received` with `requeue_parked` (for example once a missing Contact
exists, or a field was added in Zoho).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

from ct_pipeline.warehouse import WarehouseResource, WarehouseTransaction
from ct_pipeline.webhooks.payload import WebhookDelivery, WebhookEvent

DELIVERIES_TABLE = "clevertap_webhook_deliveries"
INBOX_TABLE = "clevertap_webhook_inbox"

RECEIVED = "received"
MATCHED = "matched"
APPLIED = "applied"
PARKED = "parked"
PENDING_STATUSES = (RECEIVED, MATCHED)

# CleverTap retries a webhook once or twice after a 3 to 5 s timeout (research/clevertap.md §6):
# a copy of a time-less event received this soon after the first is its retry.
DEFAULT_RETRY_WINDOW = timedelta(minutes=10)

# Column -> pandas dtype; the dtype decides the SQL type when the table is created.
DELIVERY_COLUMNS = {
    "delivery_id": "str",
    "received_at": "datetime64[ns, UTC]",
    "target_id": "str",
    "event_name": "str",
    "is_test": "bool",
    "profiles": "int64",
    "new_events": "int64",
    "body_bytes": "int64",
    "body": "str",
}
INBOX_COLUMNS = {
    "event_id": "str",
    "delivery_id": "str",
    "received_at": "datetime64[ns, UTC]",
    "event_name": "str",
    "event_time": "datetime64[ns, UTC]",
    "target_id": "str",
    "identity": "str",
    "email": "str",
    "phone": "str",
    "object_id": "str",
    "crm_contact_id": "str",
    "properties": "str",
    "status": "str",
    "reason": "str",
    "contact_id": "str",
    "matched_by": "str",
    "field": "str",
    "value": "str",
    "event_date": "str",
    "field_status": "str",
    "note_status": "str",
    "note_id": "str",
    "attempts": "Int64",
    "last_error": "str",
    "updated_at": "datetime64[ns, UTC]",
}


@dataclass(frozen=True)
class StoredDelivery:
    """What storing one delivery did."""

    delivery_id: str
    events: int
    new_events: int

    @property
    def duplicates(self) -> int:
        """Events of the delivery that the inbox already held."""
        return self.events - self.new_events


@dataclass(frozen=True)
class PendingSummary:
    """The pending part of the inbox, as the sensor sees it."""

    count: int
    newest_received_at: datetime | None


def ensure_inbox_tables(warehouse: WarehouseResource) -> None:
    """Create the delivery and inbox tables if they do not exist yet."""
    for name, columns, key in (
        (DELIVERIES_TABLE, DELIVERY_COLUMNS, ["delivery_id"]),
        (INBOX_TABLE, INBOX_COLUMNS, ["event_id"]),
    ):
        if warehouse.table_exists(name):
            continue
        try:
            with warehouse.transaction() as tx:
                tx.upsert(name, empty_frame(columns), key=key)
        except sa.exc.DBAPIError:
            # Another process (a second receiver, a run) created it first.
            if not warehouse.table_exists(name):
                raise


def store_delivery(
    warehouse: WarehouseResource,
    delivery: WebhookDelivery,
    body: bytes,
    received_at: datetime | None = None,
    retry_window: timedelta = DEFAULT_RETRY_WINDOW,
) -> StoredDelivery:
    """Keep the raw delivery and insert its events that are new, in one transaction.

    An event without a time of its own is a retry when the same profile was received less than
    `retry_window` before.
    """
    received_at = received_at or datetime.now(UTC)
    delivery_id = uuid.uuid4().hex
    ids = [event_ids(event, received_at, retry_window) for event in delivery.events]
    events = _event_rows(delivery, [current for current, _ in ids], delivery_id, received_at)
    with warehouse.transaction() as tx:
        known = _received_at(tx, [key for pair in ids for key in pair if key is not None])
        cutoff = received_at - retry_window
        seen = {
            current
            for current, earlier in ids
            if current in known or (earlier in known and known[earlier] > cutoff)
        }
        new_events = events[~events["event_id"].isin(seen)]
        tx.upsert(INBOX_TABLE, new_events, key=["event_id"], keep_existing=True)
        record = {
            "delivery_id": delivery_id,
            "received_at": received_at,
            "target_id": delivery.target_id,
            "event_name": delivery.event_name,
            "is_test": delivery.is_test,
            "profiles": len(delivery.events),
            "new_events": new_events["event_id"].nunique(),
            "body_bytes": len(body),
            "body": body.decode("utf-8"),
        }
        tx.upsert(DELIVERIES_TABLE, typed_frame([record], DELIVERY_COLUMNS), key=["delivery_id"])
    return StoredDelivery(
        delivery_id=delivery_id,
        events=events["event_id"].nunique(),
        new_events=int(new_events["event_id"].nunique()),
    )


def event_ids(
    event: WebhookEvent, received_at: datetime, retry_window: timedelta
) -> tuple[str, str | None]:
    """The inbox id of `event` received at `received_at`, and for an event without a time of its
    own the id a copy received in the window before would have had (else None).

    Time-less ids carry the number of the window they fall in, so copies in one window share an
    id; a retry just across a window's edge is found by the earlier window's id.
    """
    if event.event_time is not None:
        return event.fingerprint, None
    seconds = max(retry_window.total_seconds(), 1.0)
    window = math.floor(received_at.timestamp() / seconds)
    return _windowed(event.fingerprint, window), _windowed(event.fingerprint, window - 1)


def _windowed(fingerprint: str, window: int) -> str:
    return hashlib.sha256(f"{fingerprint}:{window}".encode()).hexdigest()


def read_inbox(warehouse: WarehouseResource, statuses: Iterable[str]) -> pd.DataFrame:
    """Inbox rows in any of `statuses`, oldest first."""
    wanted = list(statuses)
    if not warehouse.table_exists(INBOX_TABLE):
        return empty_frame(INBOX_COLUMNS)
    placeholders = ", ".join(f":s{n}" for n in range(len(wanted)))
    with warehouse.transaction() as tx:
        return tx.read_sql(
            f"SELECT * FROM {INBOX_TABLE} WHERE status IN ({placeholders}) "
            "ORDER BY received_at, event_id",
            {f"s{n}": status for n, status in enumerate(wanted)},
            table=INBOX_TABLE,
        )


def pending_summary(warehouse: WarehouseResource) -> PendingSummary:
    """How many inbox rows are pending and when the newest of them arrived."""
    if not warehouse.table_exists(INBOX_TABLE):
        return PendingSummary(count=0, newest_received_at=None)
    row = warehouse.read_sql(
        f"SELECT COUNT(*) AS n, MAX(received_at) AS newest FROM {INBOX_TABLE} "
        "WHERE status IN (:received, :matched)",
        {"received": RECEIVED, "matched": MATCHED},
    ).iloc[0]
    newest = None if pd.isna(row["newest"]) else pd.Timestamp(row["newest"])
    if newest is not None:
        newest = (newest.tz_localize(UTC) if newest.tzinfo is None else newest).to_pydatetime()
    return PendingSummary(count=int(row["n"]), newest_received_at=newest)


def update_events(tx: WarehouseTransaction, changes: pd.DataFrame) -> None:
    """Write changed columns of inbox rows back, by `event_id`; stamps `updated_at`."""
    if changes.empty:
        return
    frame = changes.assign(updated_at=datetime.now(UTC))
    tx.upsert(INBOX_TABLE, typed_frame(frame, INBOX_COLUMNS), key=["event_id"])


def requeue_parked(warehouse: WarehouseResource, reason: str | None = None) -> int:
    """Send parked rows (only those parked for `reason`, when given) back to be matched again."""
    if not warehouse.table_exists(INBOX_TABLE):
        return 0
    condition = "status = :parked" + (" AND reason = :reason" if reason else "")
    with warehouse.transaction() as tx:
        return tx.execute(
            f"UPDATE {INBOX_TABLE} SET status = :received, reason = NULL, contact_id = NULL, "
            f"matched_by = NULL, updated_at = :now WHERE {condition}",
            {"parked": PARKED, "reason": reason, "received": RECEIVED, "now": datetime.now(UTC)},
        ).rowcount


def parked_by_reason(warehouse: WarehouseResource) -> dict[str, int]:
    """Parked inbox rows by reason."""
    if not warehouse.table_exists(INBOX_TABLE):
        return {}
    frame = warehouse.read_sql(
        f"SELECT reason, COUNT(*) AS n FROM {INBOX_TABLE} WHERE status = :parked "
        "GROUP BY reason ORDER BY reason",
        {"parked": PARKED},
    )
    return {str(reason): int(n) for reason, n in zip(frame["reason"], frame["n"], strict=True)}


def count_by_status(warehouse: WarehouseResource) -> dict[str, int]:
    """Inbox rows by status."""
    if not warehouse.table_exists(INBOX_TABLE):
        return {}
    frame = warehouse.read_sql(
        f"SELECT status, COUNT(*) AS n FROM {INBOX_TABLE} GROUP BY status ORDER BY status"
    )
    return {str(status): int(n) for status, n in zip(frame["status"], frame["n"], strict=True)}


def empty_frame(columns: dict[str, str]) -> pd.DataFrame:
    """An empty frame with these columns and dtypes."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def typed_frame(
    rows: pd.DataFrame | Sequence[dict[str, Any]], columns: dict[str, str]
) -> pd.DataFrame:
    """`rows` with each known column cast to its declared dtype (missing values kept)."""
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for name in frame.columns:
        dtype = columns.get(name)
        if dtype is None:
            continue
        if dtype.startswith("datetime64"):
            frame[name] = pd.to_datetime(frame[name], utc=True)
        elif dtype == "str":
            # pandas' str dtype keeps missing values missing (None does not become "None").
            frame[name] = frame[name].astype("str")
        else:
            frame[name] = frame[name].astype(dtype)
    return frame


def _event_rows(
    delivery: WebhookDelivery, event_ids: list[str], delivery_id: str, received_at: datetime
) -> pd.DataFrame:
    events = delivery.events
    columns: dict[str, list[Any]] = {name: [None] * len(events) for name in INBOX_COLUMNS}
    columns["event_id"] = event_ids
    columns["delivery_id"] = [delivery_id] * len(events)
    columns["received_at"] = [received_at] * len(events)
    columns["updated_at"] = [received_at] * len(events)
    columns["status"] = [RECEIVED] * len(events)
    columns["attempts"] = [0] * len(events)
    for name in ("event_name", "event_time", "target_id", "identity", "email", "phone"):
        columns[name] = [getattr(event, name) for event in events]
    columns["object_id"] = [event.object_id for event in events]
    columns["crm_contact_id"] = [event.crm_contact_id for event in events]
    columns["properties"] = [
        json.dumps(event.properties, sort_keys=True, default=str) for event in events
    ]
    return typed_frame(pd.DataFrame(columns), INBOX_COLUMNS)


def _received_at(tx: WarehouseTransaction, event_ids: list[str]) -> dict[str, datetime]:
    """When each of these ids already in the inbox was received."""
    if not event_ids:
        return {}
    rows = tx.read_rows(INBOX_TABLE, "event_id", event_ids, ["event_id", "received_at"])
    moments = pd.to_datetime(rows["received_at"], utc=True)
    return {
        str(event_id): moment.to_pydatetime()
        for event_id, moment in zip(rows["event_id"], moments, strict=True)
    }
