"""The sync state the warehouse keeps between runs: cursors, pushed hashes, stages, the outbox.

Every table here is read and written only through these functions, so the delivery rules live
in one place: a profile's hash advances only when CleverTap accepted it, and a profile batch is
marked in flight before its request leaves; an event is written to the outbox in the transaction
that advances the deal-stage snapshot, marked `sending` before its request leaves, and `sent`
only after CleverTap accepted it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

import pandas as pd

from ct_pipeline.warehouse.resource import WarehouseResource, WarehouseTransaction

PUSHED_PROFILES = "clevertap_pushed_profiles"
# Accepted hashes recorded batch by batch during an upload, until folded into PUSHED_PROFILES.
PUSH_JOURNAL = "clevertap_push_journal"
# Profiles of the upload batches whose request may have left and whose answer is not recorded.
PROFILES_IN_FLIGHT = "clevertap_profiles_in_flight"
# Profile uploads held for review (an unknown outcome under the `hold` policy), or released.
PROFILE_HOLDS = "clevertap_profile_holds"
STAGE_SNAPSHOT = "deal_stage_snapshot"
EVENT_OUTBOX = "event_outbox"
REJECTIONS = "clevertap_rejections"

# Outbox statuses. `sending` rows found at the start of a run were sent by a run that died
# before it recorded the answer: their outcome is unknown.
PENDING = "pending"
SENDING = "sending"
SENT = "sent"
REJECTED = "rejected"
HELD = "held"
# A held profile upload an operator released: the next run sends it again.
RELEASED = "released"
UNKNOWN_OUTCOME = "unknown_outcome"
# Reasons an operator's release leaves on an outbox row.
RELEASED_BY_OPERATOR = "released_by_operator"
RELEASED_AS_SENT = "released_as_sent"

OUTBOX_COLUMNS = [
    "event_id",
    "kind",
    "deal_id",
    "contact_id",
    "identity",
    "name",
    "payload",
    "event_time",
    "status",
    "reason",
    "code",
    "error",
    "attempts",
    "created_at",
    "updated_at",
]


def cursor_key(module: str, kind: str = "modified") -> str:
    """The sync-state key of a Zoho module's cursor (`modified` or `deleted`)."""
    return f"zoho.{module}.{kind}_cursor"


def read_cursor(
    warehouse: WarehouseResource, module: str, kind: str = "modified"
) -> datetime | None:
    """The stored cursor of a module, or None before its first extraction."""
    value = warehouse.get_state(cursor_key(module, kind))
    return None if value is None else datetime.fromisoformat(value)


def write_cursor(
    tx: WarehouseTransaction, module: str, value: datetime, kind: str = "modified"
) -> None:
    """Advance a module's cursor inside the transaction that stored what it covers."""
    tx.set_state(cursor_key(module, kind), value.astimezone(UTC).isoformat())


def pushed_hashes(
    warehouse: WarehouseResource, identities: Iterable[str] | None = None
) -> pd.Series:
    """The payload hash last accepted by CleverTap, by identity (journal included); with
    `identities`, for those only (read by index)."""
    columns = ["identity", "payload_hash"]
    if identities is None:
        stored = warehouse.read_table(PUSHED_PROFILES, columns=columns)
        journal = warehouse.read_table(PUSH_JOURNAL, columns=[*columns, "seq"])
    else:
        wanted = list(identities)
        stored = warehouse.read_rows(PUSHED_PROFILES, "identity", wanted, columns)
        journal = warehouse.read_rows(PUSH_JOURNAL, "identity", wanted, [*columns, "seq"])
    if len(journal):
        newest = journal.sort_values("seq", kind="stable")[columns]
        stored = pd.concat([stored[columns], newest], ignore_index=True)
        stored = stored.drop_duplicates("identity", keep="last")
    return stored.set_index("identity")["payload_hash"]


def record_accepted_profiles(tx: WarehouseTransaction, accepted: pd.DataFrame) -> None:
    """Journal the hashes CleverTap accepted (`identity`, `payload_hash`, `contact_id`).

    Appended to PUSH_JOURNAL in the caller's transaction (one upload batch): an append costs a
    few pages, where an upsert into a million-row table keyed by phone number rewrites one page
    per record. `fold_accepted_profiles` moves the journal into PUSHED_PROFILES in one pass.
    """
    if accepted.empty:
        return
    # `seq` (nanoseconds since the epoch) orders the batches and becomes `pushed_at` on folding.
    rows = accepted[["identity", "payload_hash", "contact_id"]].assign(seq=time.time_ns())
    tx.append(PUSH_JOURNAL, rows)


def fold_accepted_profiles(warehouse: WarehouseResource) -> int:
    """Move the journal of accepted hashes into PUSHED_PROFILES, newest per identity, in key
    order; returns the identities folded. Cheap when the journal is empty."""
    with warehouse.transaction() as tx:
        if not tx.table_exists(PUSH_JOURNAL):
            return 0
        journal = tx.read_table(PUSH_JOURNAL)
        if journal.empty:
            return 0
        newest = journal.sort_values("seq", kind="stable").drop_duplicates("identity", keep="last")
        newest = newest.assign(pushed_at=pd.to_datetime(newest["seq"], unit="ns", utc=True))
        columns = ["identity", "payload_hash", "contact_id", "pushed_at"]
        rows = newest.sort_values("identity")[columns]
        tx.upsert(PUSHED_PROFILES, rows, key=["identity"])
        # Only the batches read here: another process may have journalled one since.
        tx.execute_in(f"DELETE FROM {PUSH_JOURNAL} WHERE seq IN :keys", journal["seq"].unique())
        return len(rows)


def mark_profiles_in_flight(tx: WarehouseTransaction, batch: pd.DataFrame) -> None:
    """Record that a profile batch (`identity`, `payload_hash`, `contact_id`, `batch`, `run_id`)
    may reach CleverTap: committed before its request leaves, cleared with its outcomes."""
    if batch.empty:
        return
    tx.upsert(PROFILES_IN_FLIGHT, batch.assign(marked_at=_now()), key=["identity"])


def clear_profiles_in_flight(tx: WarehouseTransaction, identities: Iterable[str]) -> None:
    """Forget the in-flight marks of profiles whose outcome is now recorded."""
    if tx.table_exists(PROFILES_IN_FLIGHT):
        tx.execute_in(f"DELETE FROM {PROFILES_IN_FLIGHT} WHERE identity IN :keys", identities)


def profiles_in_flight(warehouse: WarehouseResource) -> pd.DataFrame:
    """Profiles sent by an upload that ended before their outcome was recorded (the process
    died, or CleverTap's answer was lost): their outcome is unknown."""
    columns = ["identity", "contact_id", "payload_hash"]
    return warehouse.read_table(PROFILES_IN_FLIGHT, columns=columns)


def hold_profiles(tx: WarehouseTransaction, profiles: pd.DataFrame, reason: str) -> None:
    """Hold profile uploads for review (`identity`, `contact_id`, `payload_hash`): no run sends
    them until an operator releases them."""
    if profiles.empty:
        return
    rows = profiles[["identity", "contact_id", "payload_hash"]].assign(
        status=HELD, reason=reason, held_at=_now()
    )
    tx.upsert(PROFILE_HOLDS, rows, key=["identity"])


def profile_holds(warehouse: WarehouseResource) -> pd.DataFrame:
    """Held and released profile uploads (`identity`, `contact_id`, `payload_hash`, `status`,
    `reason`, `held_at`)."""
    columns = ["identity", "contact_id", "payload_hash", "status", "reason", "held_at"]
    return warehouse.read_table(PROFILE_HOLDS, columns=columns)


def release_profiles(tx: WarehouseTransaction, identities: Iterable[str]) -> int:
    """Let held profile uploads go: the next run sends them again; returns how many."""
    if not tx.table_exists(PROFILE_HOLDS):
        return 0
    return tx.execute_in(
        f"UPDATE {PROFILE_HOLDS} SET status = :released WHERE status = :held AND identity IN :keys",
        identities,
        {"released": RELEASED, "held": HELD},
    )


def settle_profile_holds(tx: WarehouseTransaction, holds: pd.DataFrame) -> None:
    """Take held profile uploads as delivered (an operator saw CleverTap has them): their
    payload hash counts as accepted, and they are not sent again until they change."""
    record_accepted_profiles(tx, holds)
    forget_profile_holds(tx, holds["identity"])


def forget_profile_holds(tx: WarehouseTransaction, identities: Iterable[str]) -> None:
    """Drop hold rows: released ones once batched again, or ones settled by an operator."""
    if tx.table_exists(PROFILE_HOLDS):
        tx.execute_in(f"DELETE FROM {PROFILE_HOLDS} WHERE identity IN :keys", identities)


def record_rejections(tx: WarehouseTransaction, rejections: pd.DataFrame) -> None:
    """Keep each rejected record with its code and error, linked to its Zoho id.

    Columns: `record_key`, `kind` (profile or event), `zoho_id`, `identity`, `code`, `error`,
    `run_id`. A record rejected again replaces its earlier row.
    """
    if rejections.empty:
        return
    tx.upsert(REJECTIONS, rejections.assign(rejected_at=_now()), key=["kind", "record_key"])


def rejected_keys(warehouse: WarehouseResource, kind: str) -> set[str]:
    """The record keys of `kind` (profile or event) whose last answer was a rejection."""
    if not warehouse.table_exists(REJECTIONS):
        return set()
    return set(warehouse.read_rows(REJECTIONS, "kind", [kind], ["record_key"])["record_key"])


def clear_rejections(tx: WarehouseTransaction, kind: str, record_keys: Iterable[str]) -> None:
    """Forget earlier rejections of records that have now been accepted."""
    if tx.table_exists(REJECTIONS):
        tx.execute_in(
            f"DELETE FROM {REJECTIONS} WHERE kind = :kind AND record_key IN :keys",
            record_keys,
            {"kind": kind},
        )


def read_stage_snapshot(warehouse: WarehouseResource) -> pd.DataFrame:
    """The last stage seen per deal (`deal_id`, `stage`, `modified_time`)."""
    return warehouse.read_table(STAGE_SNAPSHOT, columns=["deal_id", "stage", "modified_time"])


def enqueue_outbox(tx: WarehouseTransaction, rows: pd.DataFrame) -> int:
    """Add outbox rows whose `event_id` is new; an id already present is left as it is."""
    if rows.empty:
        return 0
    now = _now()
    complete = rows.reindex(columns=OUTBOX_COLUMNS)
    complete["attempts"] = complete["attempts"].fillna(0).astype("int64")
    # Typed even when every value is missing: an all-null column would create a FLOAT column,
    # and the first error text CleverTap sends would then fail to store (or to read back).
    complete["code"] = complete["code"].astype("Int64")
    for column in ("reason", "error"):
        complete[column] = complete[column].astype("str")
    complete["created_at"] = now
    complete["updated_at"] = now
    return tx.upsert(EVENT_OUTBOX, complete, key=["event_id"], keep_existing=True)


def read_outbox(warehouse: WarehouseResource, statuses: Iterable[str]) -> pd.DataFrame:
    """Outbox rows in any of `statuses`, oldest event first."""
    wanted = list(statuses)
    if not warehouse.table_exists(EVENT_OUTBOX):
        return pd.DataFrame({column: pd.Series(dtype="str") for column in OUTBOX_COLUMNS})
    with warehouse.transaction() as tx:
        placeholders = ", ".join(f":s{n}" for n in range(len(wanted)))
        return tx.read_sql(
            f"SELECT * FROM {EVENT_OUTBOX} WHERE status IN ({placeholders}) "
            "ORDER BY event_time, event_id",
            {f"s{n}": status for n, status in enumerate(wanted)},
            table=EVENT_OUTBOX,
        )


def set_outbox_status(
    tx: WarehouseTransaction,
    outcomes: pd.DataFrame,
) -> None:
    """Write statuses back: `event_id`, `status`, and optionally `code`, `error`, `reason`."""
    if outcomes.empty:
        return
    update = outcomes.copy()
    for column in ("code", "error", "reason"):
        if column not in update:
            update[column] = None
    update["code"] = update["code"].astype("Int64")
    update["updated_at"] = _now()
    tx.upsert(
        EVENT_OUTBOX,
        update[["event_id", "status", "code", "error", "reason", "updated_at"]],
        key=["event_id"],
    )


def release_outbox(tx: WarehouseTransaction, rows: pd.DataFrame, *, as_sent: bool) -> int:
    """Let held outbox rows (`event_id`, `identity`) go: pending, for the next run to send, or
    sent, when an operator saw that CleverTap has them; returns how many."""
    if rows.empty:
        return 0
    update = rows[["event_id", "identity"]].assign(
        status=SENT if as_sent else PENDING,
        reason=RELEASED_AS_SENT if as_sent else RELEASED_BY_OPERATOR,
        updated_at=_now(),
    )
    return tx.upsert(EVENT_OUTBOX, update, key=["event_id"])


def count_attempt(tx: WarehouseTransaction, event_ids: list[str]) -> None:
    """Mark rows `sending` and count the attempt, before their request leaves."""
    tx.execute_in(
        f"UPDATE {EVENT_OUTBOX} SET status = :status, attempts = attempts + 1, "
        "updated_at = :now WHERE event_id IN :keys",
        event_ids,
        {"status": SENDING, "now": _now()},
    )


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------ the derivation queue
# Incremental runs derive identities, duplicate groups and profiles again only for the records
# whose Zoho rows changed since the last derivation (and those they share a value with). The
# Zoho assets queue the changed records here in the transaction that stores them; the derivation
# assets clear what they processed. A record stays queued until its derivation finished, so a
# run that dies in between leaves the work for the next one.
DERIVATION_QUEUE = "derivation_queue"
# Person records (Contacts and Leads) and Deals are consumed by different assets.
PERSON_CHANGES = "person"
DEAL_CHANGES = "deal"
FULL_DERIVATION_KEY = "derivation.{kind}.full_pending"


def queue_changes(tx: WarehouseTransaction, kind: str, module: str, ids: Iterable[str]) -> None:
    """Queue changed records of a module (`kind`: person or deal) for the next derivation."""
    keys = sorted({str(value) for value in ids if value is not None and value == value})
    if not keys:
        return
    rows = pd.DataFrame({"kind": kind, "module": module, "zoho_id": keys})
    tx.upsert(DERIVATION_QUEUE, rows, key=["kind", "module", "zoho_id"], keep_existing=True)


def queued_changes(warehouse: WarehouseResource, kind: str) -> pd.DataFrame:
    """The queued records of `kind` (`module`, `zoho_id`)."""
    if not warehouse.table_exists(DERIVATION_QUEUE):
        return pd.DataFrame({"module": pd.Series(dtype="str"), "zoho_id": pd.Series(dtype="str")})
    return warehouse.read_rows(DERIVATION_QUEUE, "kind", [kind], columns=["module", "zoho_id"])


def clear_changes(tx: WarehouseTransaction, kind: str, queued: pd.DataFrame | None) -> None:
    """Forget the queued records of `kind` that were derived (all of them when `queued` is None),
    and any full derivation pending for it."""
    tx.set_state(FULL_DERIVATION_KEY.format(kind=kind), "false")
    if not tx.table_exists(DERIVATION_QUEUE):
        return
    if queued is None:
        tx.execute(f"DELETE FROM {DERIVATION_QUEUE} WHERE kind = :kind", {"kind": kind})
        return
    for module, group in queued.groupby("module"):
        tx.execute_in(
            f"DELETE FROM {DERIVATION_QUEUE} WHERE kind = :kind AND module = :module "
            "AND zoho_id IN :keys",
            group["zoho_id"].tolist(),
            {"kind": kind, "module": module},
        )


def request_full_derivation(
    tx: WarehouseTransaction, kinds: Iterable[str] = (PERSON_CHANGES, DEAL_CHANGES)
) -> None:
    """Make the next derivations of `kinds` recompute everything (a Zoho table was replaced
    whole, or too much changed to derive record by record)."""
    for kind in kinds:
        tx.set_state(FULL_DERIVATION_KEY.format(kind=kind), "true")


def full_derivation_pending(warehouse: WarehouseResource, kind: str) -> bool:
    """Whether a Zoho table was replaced whole since the last full derivation of `kind`."""
    return warehouse.get_state(FULL_DERIVATION_KEY.format(kind=kind)) == "true"
