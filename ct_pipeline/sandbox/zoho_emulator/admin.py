"""The sandbox-only record operations behind `/__sandbox/records/...`.

They change the emulated CRM the way a CRM user would in the Zoho UI: creating or editing a
record moves its `Modified_Time` to now (unless the caller sets it, to stage same-second edits);
deleting one puts it in the recycle bin, where `GET /crm/{v}/{Module}/deleted` finds it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ct_pipeline.sandbox.zoho_emulator.records import apply_changes, note_json
from ct_pipeline.sandbox.zoho_emulator.replies import Reply, ZohoApiError
from ct_pipeline.sandbox.zoho_emulator.store import (
    CrmStore,
    ModuleTable,
    column_values,
    full_name,
)

ID_DIGITS = 19


def upsert_records(store: CrmStore, module: str, body: Any) -> Reply:
    """Create or update records by `id`, all or nothing; answers which ids were created/updated."""
    table = store.table(module)
    if not isinstance(body, list) or not all(isinstance(record, dict) for record in body):
        return admin_error(400, 'send a JSON list of records, e.g. [{"id": "...", ...}]')
    now = store.now()
    changes: dict[int, dict[str, Any]] = {}
    new_rows: list[dict[str, Any]] = []
    results = []
    try:
        for index, record in enumerate(body):
            values = _admin_values(store, table, record, index)
            record_id = record.get("id")
            position = None if record_id is None else table.position(str(record_id))
            if position is not None:
                values.setdefault("Modified_Time", now)
                changes.setdefault(position, {}).update(values)
                results.append({"id": str(record_id), "action": "updated"})
                continue
            if record_id is not None and (
                not str(record_id).isdigit() or len(str(record_id)) != ID_DIGITS
            ):
                raise ZohoApiError(
                    400, "INVALID_DATA", f"record {index}: id must be a {ID_DIGITS}-digit string"
                )
            new_rows.append(_new_row(store, table, values, str(record_id or store.new_id()), now))
            results.append({"id": new_rows[-1]["id"], "action": "created"})
    except ZohoApiError as refused:
        return admin_error(400, f"{refused.message} {refused.details or ''}".strip())

    apply_changes(store, table, changes)
    if new_rows:
        table.append(new_rows)
    return Reply(200, {"module": table.name, "records": results})


def delete_record(store: CrmStore, module: str, record_id: str, kind: str) -> Reply:
    """Delete a record into the recycle bin (or permanently) and log it for `/deleted`."""
    return delete_records(store, module, [record_id], kind)


def delete_records(store: CrmStore, module: str, record_ids: list[str], kind: str) -> Reply:
    """Delete records into the recycle bin (or permanently), all or none, and log them for
    `/deleted`."""
    table = store.table(module)
    if kind not in ("recycle", "permanent"):
        return admin_error(400, "type must be recycle or permanent")
    record_ids = list(dict.fromkeys(record_ids))
    found = {record_id: table.position(record_id) for record_id in record_ids}
    missing = [record_id for record_id, position in found.items() if position is None]
    if missing:
        return admin_error(404, f"no {table.name} record has id {missing[0]}")
    positions = [position for position in found.values() if position is not None]
    user = store.current_user
    permanent = kind == "permanent"
    now = store.now()
    for record_id, position in zip(record_ids, positions, strict=True):
        row = table.frame.iloc[position]
        owner_id = row.get("Owner.id")
        store.deleted[table.name].append(
            {
                "id": record_id,
                "display_name": None if permanent else table.display_name(position),
                "type": kind,
                "deleted_by": None if permanent else {"name": user["name"], "id": user["id"]},
                "created_by": None
                if permanent or owner_id is None or pd.isna(owner_id)
                else {"name": str(row.get("Owner.name")), "id": str(owner_id)},
                "deleted_time": now,
            }
        )
        store.notes.pop(record_id, None)
        store.stage_history.pop(record_id, None)
    table.remove(positions)
    if len(record_ids) == 1:
        return Reply(200, {"module": table.name, "id": record_ids[0], "deleted": kind})
    return Reply(200, {"module": table.name, "ids": record_ids, "deleted": kind})


def touch_records(store: CrmStore, module: str, record_ids: list[str]) -> None:
    """Edit records without changing a field, as saving them in the Zoho UI does: their
    Modified_Time moves to now."""
    table = store.table(module)
    now = store.now()
    changes = {}
    for record_id in record_ids:
        position = table.position(record_id)
        if position is None:
            raise ZohoApiError(400, "INVALID_DATA", f"no {table.name} record has id {record_id}")
        changes[position] = {"Modified_Time": now}
    apply_changes(store, table, changes)


def read_record(store: CrmStore, module: str, record_id: str) -> Reply:
    """One record as the API serves it, with its Notes."""
    table = store.table(module)
    position = table.position(record_id)
    if position is None:
        return admin_error(404, f"no {table.name} record has id {record_id}")
    record = table.json_records([position], table.fields.values(), store.tz_offset)[0]
    notes = [note_json(store, note) for note in store.notes.get(record_id, [])]
    return Reply(200, {"module": table.name, "record": record, "notes": notes})


def admin_error(status: int, message: str) -> Reply:
    """The admin API's own error shape (it is not Zoho's API)."""
    return Reply(status, {"error": message})


def _admin_values(
    store: CrmStore, table: ModuleTable, record: dict[str, Any], index: int
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in record.items():
        if name == "id":
            continue
        spec = table.field(name)
        if spec is not None:
            values.update(column_values(store, table, spec, value, f"$[{index}].{name}"))
        elif name in table.frame.columns:
            # Raw columns (`Owner.name`, `_person`) are written as given.
            values[name] = value
        else:
            raise ZohoApiError(
                400, "INVALID_DATA", f"record {index}: {name} is not a field of {table.name}"
            )
    return values


def _new_row(
    store: CrmStore, table: ModuleTable, values: dict[str, Any], record_id: str, now: pd.Timestamp
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(table.frame.columns)
    owner = table.field("Owner")
    if owner is not None:
        user = store.current_user
        row.update(zip(owner.columns, (user["id"], user["name"], user["email"]), strict=False))
    row.update(values)
    row["id"] = record_id
    row["Created_Time"] = values.get("Created_Time", now)
    row["Modified_Time"] = values.get("Modified_Time", row["Created_Time"])
    if "Full_Name" in row and "Full_Name" not in values:
        row["Full_Name"] = full_name(row.get("First_Name"), row.get("Last_Name"))
    return row
