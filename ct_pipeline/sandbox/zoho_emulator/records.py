"""The records API of the Zoho emulator: list, get, deleted, update, Notes and Stage_History.

Every rule cited here is in research/zoho.md (§2 Get Records, §3 deleted records, §5 value
shapes, §6 writes), which gives Zoho's documentation page for each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import numpy as np
import pandas as pd

from ct_pipeline.sandbox.zoho_emulator.paging import TokenCodec, binding
from ct_pipeline.sandbox.zoho_emulator.replies import Reply, ZohoApiError, error_body, invalid_data
from ct_pipeline.sandbox.zoho_emulator.store import (
    SORT_KEYS,
    CrmStore,
    FieldSpec,
    ModuleTable,
    column_values,
    full_name,
    parse_timestamp,
)

# Get Records limits ([v7-get]): `fields` takes at most 50 names, `per_page` at most 200, `page`
# reaches record 2,000 and page tokens record 100,000.
MAX_FIELDS = 50
MAX_PER_PAGE = 200
DISCRETE_PAGE_LIMIT = 2_000
PAGE_TOKEN_RECORD_CAP = 100_000
MAX_IDS = 100
# Update Records and Create Notes take at most 100 records per call ([v7-upd], [v7-notes]).
MAX_WRITE_RECORDS = 100


def list_records(
    store: CrmStore,
    codec: TokenCodec,
    module: str,
    query: Mapping[str, str],
    if_modified_since: str | None,
    *,
    page_token_cap: int = PAGE_TOKEN_RECORD_CAP,
    inclusive: bool = True,
) -> Reply:
    """`GET /crm/{v}/{Module}`: one page of records, with Zoho's `info` object.

    Zoho does not document what a page token holds. Its cap, 100,000 records, is COQL's cap on
    OFFSET + LIMIT, which suggests an offset into the live order, and that is what these tokens
    carry: a record edited between two pages moves to the end of a Modified_Time order, and
    the records behind it shift forward by one, as they do with `page`.
    """
    table = store.table(module)
    fields = requested_fields(table, query.get("fields"))
    per_page = _int_param(query, "per_page", MAX_PER_PAGE, minimum=1)
    if per_page > MAX_PER_PAGE:
        raise ZohoApiError(
            400,
            "LIMIT_EXCEEDED",
            f"per_page limit exceeded; the maximum is {MAX_PER_PAGE}",
            {"param_name": "per_page", "limit": MAX_PER_PAGE},
        )
    sort_by = query.get("sort_by", "id")
    if sort_by not in SORT_KEYS:
        raise invalid_data(
            f"sort_by must be one of {', '.join(SORT_KEYS)}",
            param_name="sort_by",
            supported_values=list(SORT_KEYS),
        )
    sort_order = query.get("sort_order", "desc")
    if sort_order not in ("asc", "desc"):
        raise invalid_data("sort_order must be asc or desc", param_name="sort_order")
    if "cvid" in query:
        raise invalid_data("the emulator has no custom views", param_name="cvid")
    if "page" in query and "page_token" in query:
        raise ZohoApiError(
            400,
            "AMBIGUITY_DURING_PROCESSING",
            "page and page_token cannot be given together; send only page_token",
            {"ambiguity_due_to": ["page", "page_token"]},
        )
    since = modified_since(if_modified_since, store, inclusive)
    converted = _converted_filter(table, query.get("converted"))

    bound = binding(
        {key: value for key, value in query.items() if key not in ("page", "page_token")}
        | {"If-Modified-Since": if_modified_since or ""}
    )
    if "page_token" in query:
        token = codec.read(query["page_token"])
        if token.get("m") != table.name or token.get("b") != bound:
            raise ZohoApiError(
                400,
                "TOKEN_BOUND_DATA_MISMATCH",
                "the page_token was issued for other request parameters; send the same ones",
                {"param_name": "page_token"},
            )
        offset = int(token["o"])
        if offset >= page_token_cap:
            raise ZohoApiError(
                400,
                "PAGINATION_LIMIT_EXCEEDED",
                f"page tokens reach at most {page_token_cap} records; "
                "narrow the request with If-Modified-Since",
                {"limit": page_token_cap},
            )
        end = min(offset + per_page, page_token_cap)
    else:
        page = _int_param(query, "page", 1, minimum=1)
        offset = (page - 1) * per_page
        if offset >= DISCRETE_PAGE_LIMIT:
            raise ZohoApiError(
                400,
                "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                f"You can only get the first {DISCRETE_PAGE_LIMIT} records without using "
                "page_token param",
                {"limit": DISCRETE_PAGE_LIMIT},
            )
        end = offset + per_page

    if "ids" in query:
        positions = _positions_for_ids(table, query["ids"])
        if since is not None:
            positions = positions[table.seconds("Modified_Time")[positions] >= since]
        order = table.order_positions(positions, sort_by, sort_order == "desc")
    else:
        order = table.view(sort_by, sort_order == "desc", since, converted)

    total = len(order)
    page_positions = order[offset:end]
    if len(page_positions) == 0:
        # Zoho: 304 when nothing was modified after If-Modified-Since, 204 for any empty page.
        return Reply(304 if since is not None and total == 0 else 204)

    more = offset + len(page_positions) < total
    next_token = previous_token = expiry_text = None
    if more:
        next_token, expiry = codec.issue(
            {"m": table.name, "b": bound, "o": offset + len(page_positions)}
        )
        expiry_text = store.format_time(pd.Timestamp(expiry, unit="s", tz="UTC"))
    if offset > 0:
        previous_token, expiry = codec.issue(
            {"m": table.name, "b": bound, "o": max(0, offset - per_page)}
        )
        expiry_text = store.format_time(pd.Timestamp(expiry, unit="s", tz="UTC"))

    records = table.json_records(page_positions, fields, store.tz_offset)
    info = {
        "call": False,
        "per_page": per_page,
        "next_page_token": next_token,
        "count": len(records),
        "sort_by": sort_by,
        "page": offset // per_page + 1,
        "previous_page_token": previous_token,
        "page_token_expiry": expiry_text,
        "sort_order": sort_order,
        "email": False,
        "more_records": more,
    }
    return Reply(200, {"data": records, "info": info})


def get_record(store: CrmStore, module: str, record_id: str) -> Reply:
    """`GET /crm/{v}/{Module}/{id}`: one record with every field; 204 when it does not exist."""
    table = store.table(module)
    position = table.position(record_id)
    if position is None:
        return Reply(204)
    records = table.json_records([position], table.fields.values(), store.tz_offset)
    return Reply(200, {"data": records})


def deleted_records(
    store: CrmStore,
    module: str,
    query: Mapping[str, str],
    if_modified_since: str | None,
    *,
    inclusive: bool = True,
) -> Reply:
    """`GET /crm/{v}/{Module}/deleted`: recycle-bin and permanent deletions, newest first."""
    table = store.table(module)
    kind = query.get("type", "all")
    if kind not in ("all", "recycle", "permanent"):
        raise invalid_data("type must be all, recycle or permanent", param_name="type")
    per_page = _int_param(query, "per_page", MAX_PER_PAGE, minimum=1)
    if per_page > MAX_PER_PAGE:
        raise ZohoApiError(
            400,
            "LIMIT_EXCEEDED",
            f"per_page limit exceeded; the maximum is {MAX_PER_PAGE}",
            {"param_name": "per_page", "limit": MAX_PER_PAGE},
        )
    page = _int_param(query, "page", 1, minimum=1)
    since = modified_since(if_modified_since, store, inclusive)

    entries = [
        entry
        for entry in reversed(store.deleted[table.name])
        if (kind == "all" or entry["type"] == kind)
        and (since is None or entry["deleted_time"].timestamp() >= since)
    ]
    offset = (page - 1) * per_page
    chunk = entries[offset : offset + per_page]
    if not chunk:
        return Reply(304 if since is not None and not entries else 204)
    data = [
        {
            "deleted_by": entry["deleted_by"],
            "id": entry["id"],
            "display_name": entry["display_name"],
            "type": entry["type"],
            "created_by": entry["created_by"],
            "deleted_time": store.format_time(entry["deleted_time"]),
        }
        for entry in chunk
    ]
    info = {
        "per_page": per_page,
        "count": len(data),
        "page": page,
        "more_records": offset + len(chunk) < len(entries),
    }
    return Reply(200, {"data": data, "info": info})


def update_records(store: CrmStore, module: str, body: Any, record_id: str | None = None) -> Reply:
    """`PUT /crm/{v}/{Module}[/{id}]`: per-record results; 200 all ok, 207 partial, 400 none."""
    table = store.table(module)
    records = write_batch(body)
    now = store.now()
    results: list[dict[str, Any]] = []
    changes: dict[int, dict[str, Any]] = {}
    for index, record in enumerate(records):
        try:
            position, values = _update_values(store, table, record, index, record_id)
        except ZohoApiError as refused:
            results.append(error_body(refused.code, refused.message, refused.details))
            continue
        values["Modified_Time"] = now
        changes.setdefault(position, {}).update(values)
        results.append(
            {
                "code": "SUCCESS",
                "details": _write_details(store, table, position, now),
                "message": "record updated",
                "status": "success",
            }
        )
    apply_changes(store, table, changes)
    return Reply(_batch_status(results, 200), {"data": results})


def create_notes(
    store: CrmStore, body: Any, parent_module: str | None = None, parent_id: str | None = None
) -> Reply:
    """`POST /crm/{v}/Notes` and `POST /crm/{v}/{Module}/{id}/Notes`: add notes to records."""
    if parent_module is not None and parent_id is not None:
        parent_table = store.table(parent_module)
        if parent_table.position(parent_id) is None:
            raise invalid_data("the related id given seems to be invalid", resource_path_index=1)
    records = write_batch(body)
    now = store.now()
    author = store.current_user
    results: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        path = f"$.data[{index}]"
        try:
            table, position = _note_parent(store, record, path, parent_module, parent_id)
            content = record.get("Note_Content")
            if not isinstance(content, str) or not content.strip():
                raise ZohoApiError(
                    400,
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    {"api_name": "Note_Content", "json_path": f"{path}.Note_Content"},
                )
            title = record.get("Note_Title")
            if title is not None and not isinstance(title, str):
                raise invalid_data(
                    "invalid data", api_name="Note_Title", json_path=f"{path}.Note_Title"
                )
        except ZohoApiError as refused:
            results.append(error_body(refused.code, refused.message, refused.details))
            continue
        parent_record_id = str(table.frame["id"].iloc[position])
        note = {
            "id": store.new_id(),
            "Note_Title": title,
            "Note_Content": content,
            "parent_module": table.name,
            "parent_id": parent_record_id,
            "parent_name": table.display_name(position),
            "owner": author,
            "created_time": now,
        }
        store.notes.setdefault(parent_record_id, []).append(note)
        lookup = {"name": author["name"], "id": author["id"]}
        results.append(
            {
                "code": "SUCCESS",
                "details": {
                    "Modified_Time": store.format_time(now),
                    "Modified_By": lookup,
                    "Created_Time": store.format_time(now),
                    "id": note["id"],
                    "Created_By": lookup,
                },
                "message": "record added",
                "status": "success",
            }
        )
    return Reply(_batch_status(results, 201), {"data": results})


def list_notes(store: CrmStore, module: str, record_id: str, query: Mapping[str, str]) -> Reply:
    """`GET /crm/{v}/{Module}/{id}/Notes`: a record's notes, newest first."""
    table = store.table(module)
    if table.position(record_id) is None:
        raise invalid_data("the related id given seems to be invalid", resource_path_index=1)
    if not query.get("fields"):
        raise ZohoApiError(
            400,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing; send fields=<comma separated names>",
            {"param_name": "fields"},
        )
    per_page = min(_int_param(query, "per_page", MAX_PER_PAGE, minimum=1), MAX_PER_PAGE)
    page = _int_param(query, "page", 1, minimum=1)
    notes = sorted(store.notes.get(record_id, []), key=lambda n: n["created_time"], reverse=True)
    chunk = notes[(page - 1) * per_page : page * per_page]
    if not chunk:
        return Reply(204)
    info = {
        "per_page": per_page,
        "count": len(chunk),
        "page": page,
        "more_records": page * per_page < len(notes),
    }
    return Reply(200, {"data": [note_json(store, note) for note in chunk], "info": info})


def stage_history(store: CrmStore, deal_id: str, query: Mapping[str, str]) -> Reply:
    """`GET /crm/{v}/Deals/{id}/Stage_History`: the deal's stages, newest first."""
    table = store.table("Deals")
    position = table.position(deal_id)
    if position is None:
        raise invalid_data("the related id given seems to be invalid", resource_path_index=1)
    entries = store.stage_history.get(deal_id) or [stage_entry(store, table, position)]
    wanted = [name.strip() for name in query.get("fields", "").split(",") if name.strip()]
    data = []
    for entry in entries:
        served = {
            "id": entry["id"],
            "Stage": entry["Stage"],
            "Amount": entry["Amount"],
            "Probability": entry["Probability"],
            "Expected_Revenue": entry["Expected_Revenue"],
            "Close_Date": entry["Close_Date"],
            "Modified_Time": store.format_time(entry["Modified_Time"]),
            "Last_Modified_Time": store.format_time(entry["Modified_Time"]),
            "Modified_By": entry["Modified_By"],
        }
        if wanted:
            served = {key: value for key, value in served.items() if key in wanted or key == "id"}
        data.append(served)
    info = {"per_page": MAX_PER_PAGE, "count": len(data), "page": 1, "more_records": False}
    return Reply(200, {"data": data, "info": info})


# Shared helpers ---------------------------------------------------------------------------------


def requested_fields(table: ModuleTable, raw: str | None) -> list[FieldSpec]:
    """The fields named in `fields=`; REQUIRED_PARAM_MISSING or LIMIT_EXCEEDED as Zoho answers."""
    names = [name.strip() for name in (raw or "").split(",") if name.strip()]
    if not names:
        raise ZohoApiError(
            400,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing; send fields=<comma separated names>",
            {"param_name": "fields"},
        )
    if len(names) > MAX_FIELDS:
        raise ZohoApiError(
            400,
            "LIMIT_EXCEEDED",
            f"Fields limit exceeded; send at most {MAX_FIELDS} field API names per call",
            {"param_name": "fields", "limit": MAX_FIELDS},
        )
    seen: dict[str, FieldSpec] = {}
    for name in names:
        spec = table.field(name)
        if spec is not None:
            seen.setdefault(name, spec)
    return list(seen.values())


def modified_since(header: str | None, store: CrmStore, inclusive: bool = True) -> int | None:
    """The first epoch second an If-Modified-Since header (ISO 8601 as Zoho documents, or an HTTP
    date) lets through: its own second when `inclusive`, else the one after."""
    if header is None or not header.strip():
        return None
    try:
        moment = parse_timestamp(header, store.tz_offset)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            raise ZohoApiError(
                400,
                "INVALID_DATA",
                "If-Modified-Since must be an ISO 8601 datetime like 2019-07-25T15:26:49+05:30",
                {"header_name": "If-Modified-Since"},
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        moment = pd.Timestamp(parsed).tz_convert("UTC")
    first = int(moment.floor("s").timestamp())
    return first if inclusive else first + 1


def write_batch(body: Any) -> list[dict[str, Any]]:
    """The `data` list of a write request; refuses a missing list or more than 100 records."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list) or not body["data"]:
        raise ZohoApiError(
            400,
            "MANDATORY_NOT_FOUND",
            'required field not found: send a JSON body {"data": [records]}',
            {"api_name": "data", "json_path": "$.data"},
        )
    records = body["data"]
    if len(records) > MAX_WRITE_RECORDS:
        raise ZohoApiError(
            400,
            "LIMIT_EXCEEDED",
            f"at most {MAX_WRITE_RECORDS} records per call; split the batch",
            {"api_name": "data", "json_path": "$.data", "limit": MAX_WRITE_RECORDS},
        )
    return records


def apply_changes(store: CrmStore, table: ModuleTable, changes: dict[int, dict[str, Any]]) -> None:
    """Write validated column values, keeping Full_Name and deal stage history consistent."""
    if not changes:
        return
    for position, values in changes.items():
        if "Full_Name" in table.frame.columns and ("First_Name" in values or "Last_Name" in values):
            first = values.get("First_Name", table.frame["First_Name"].iloc[position])
            last = values.get("Last_Name", table.frame["Last_Name"].iloc[position])
            values["Full_Name"] = full_name(first, last)
    stage_changes = []
    if table.name == "Deals":
        stages = table.frame["Stage"]
        for position, values in changes.items():
            if "Stage" in values and values["Stage"] != stages.iloc[position]:
                deal_id = str(table.frame["id"].iloc[position])
                history = store.stage_history.setdefault(deal_id, [])
                if not history:
                    history.append(stage_entry(store, table, position))
                stage_changes.append((deal_id, position))
    table.assign(changes)
    for deal_id, position in stage_changes:
        store.stage_history[deal_id].insert(0, stage_entry(store, table, position))


def stage_entry(store: CrmStore, table: ModuleTable, position: int) -> dict[str, Any]:
    """A Stage_History row describing the deal as it stands at `position` now."""
    row = table.frame.iloc[position]
    amount = _number(row.get("Amount"))
    probability = _number(row.get("Probability"))
    expected = None
    if amount is not None and probability is not None:
        expected = amount * probability / 100
    owner_id = row.get("Owner.id")
    modified_by = (
        None
        if owner_id is None or pd.isna(owner_id)
        else {"name": str(row.get("Owner.name")), "id": str(owner_id)}
    )
    closing = row.get("Closing_Date")
    return {
        "id": store.new_id(),
        "Stage": None if pd.isna(row.get("Stage")) else str(row.get("Stage")),
        "Amount": amount,
        "Probability": probability,
        "Expected_Revenue": expected,
        "Close_Date": None if closing is None or pd.isna(closing) else str(closing),
        "Modified_Time": row["Modified_Time"],
        "Modified_By": modified_by,
    }


def note_json(store: CrmStore, note: dict[str, Any]) -> dict[str, Any]:
    """A stored note as Zoho serves it."""
    owner = note["owner"]
    return {
        "id": note["id"],
        "Note_Title": note["Note_Title"],
        "Note_Content": note["Note_Content"],
        "Parent_Id": {
            "module": {"api_name": note["parent_module"]},
            "name": note["parent_name"],
            "id": note["parent_id"],
        },
        "Owner": owner,
        "Created_By": {"name": owner["name"], "id": owner["id"], "email": owner["email"]},
        "Modified_By": {"name": owner["name"], "id": owner["id"], "email": owner["email"]},
        "Created_Time": store.format_time(note["created_time"]),
        "Modified_Time": store.format_time(note["created_time"]),
    }


def _update_values(
    store: CrmStore,
    table: ModuleTable,
    record: Any,
    index: int,
    path_id: str | None,
) -> tuple[int, dict[str, Any]]:
    path = f"$.data[{index}]"
    if not isinstance(record, dict):
        raise invalid_data("each record must be a JSON object", json_path=path)
    record_id = path_id or record.get("id")
    if record_id is None:
        raise ZohoApiError(
            400,
            "MANDATORY_NOT_FOUND",
            "required field not found",
            {"api_name": "id", "json_path": f"{path}.id"},
        )
    position = table.position(str(record_id))
    if position is None:
        raise invalid_data(
            "the id given seems to be invalid", api_name="id", json_path=f"{path}.id"
        )
    values: dict[str, Any] = {}
    for api_name, value in record.items():
        if api_name == "id" or api_name.startswith("$"):
            continue
        spec = table.field(api_name)
        if spec is None:
            raise invalid_data(
                f"{api_name} is not a field of {table.name}",
                api_name=api_name,
                json_path=f"{path}.{api_name}",
            )
        if spec.read_only:
            continue
        values.update(column_values(store, table, spec, value, f"{path}.{api_name}"))
    return position, values


def _note_parent(
    store: CrmStore,
    record: Any,
    path: str,
    parent_module: str | None,
    parent_id: str | None,
) -> tuple[ModuleTable, int]:
    if not isinstance(record, dict):
        raise invalid_data("each note must be a JSON object", json_path=path)
    if parent_module is None or parent_id is None:
        parent = record.get("Parent_Id")
        if isinstance(parent, dict):
            module_info = parent.get("module")
            parent_module = (
                module_info.get("api_name") if isinstance(module_info, dict) else None
            ) or record.get("se_module")
            parent_id = parent.get("id")
        elif isinstance(parent, str):
            parent_module, parent_id = record.get("se_module"), parent
        if not parent_module or not parent_id:
            raise ZohoApiError(
                400,
                "MANDATORY_NOT_FOUND",
                "required field not found",
                {"api_name": "Parent_Id", "json_path": f"{path}.Parent_Id"},
            )
    try:
        table = store.table(str(parent_module))
    except ZohoApiError:
        raise invalid_data(
            "invalid module in Parent_Id", api_name="Parent_Id", json_path=f"{path}.Parent_Id"
        ) from None
    position = table.position(str(parent_id))
    if position is None:
        raise invalid_data(
            "the related id given seems to be invalid",
            api_name="Parent_Id",
            json_path=f"{path}.Parent_Id",
        )
    return table, position


def _write_details(
    store: CrmStore, table: ModuleTable, position: int, now: pd.Timestamp
) -> dict[str, Any]:
    user = store.current_user
    lookup = {"name": user["name"], "id": user["id"]}
    return {
        "Modified_Time": store.format_time(now),
        "Modified_By": lookup,
        "Created_Time": store.format_time(table.frame["Created_Time"].iloc[position]),
        "id": str(table.frame["id"].iloc[position]),
        "Created_By": lookup,
    }


def _batch_status(results: list[dict[str, Any]], success_status: int) -> int:
    succeeded = sum(1 for result in results if result["status"] == "success")
    if succeeded == len(results):
        return success_status
    return 400 if succeeded == 0 else 207


def _positions_for_ids(table: ModuleTable, raw: str) -> np.ndarray:
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    if len(ids) > MAX_IDS:
        raise ZohoApiError(
            400,
            "LIMIT_EXCEEDED",
            f"at most {MAX_IDS} ids per call",
            {"param_name": "ids", "limit": MAX_IDS},
        )
    positions = {table.position(record_id) for record_id in ids}
    return np.array(sorted(p for p in positions if p is not None), dtype=np.int64)


def _converted_filter(table: ModuleTable, raw: str | None) -> bool | None:
    if "Converted__s" not in table.frame.columns:
        return None
    # Leads: `converted` defaults to false, so converted leads are left out unless asked for.
    value = (raw or "false").lower()
    if value not in ("true", "false", "both"):
        raise invalid_data("converted must be true, false or both", param_name="converted")
    return None if value == "both" else value == "true"


def _int_param(query: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_data(f"{name} must be a whole number", param_name=name) from None
    if value < minimum:
        raise invalid_data(f"{name} must be at least {minimum}", param_name=name)
    return value


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def utc_now() -> datetime:
    """The real clock, tz-aware UTC."""
    return datetime.now(UTC)
