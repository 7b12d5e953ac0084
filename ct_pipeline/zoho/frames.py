"""Turn Zoho records (records-API JSON or Bulk Read CSV) into pandas DataFrames of one shape.

Columns are `id` first, then each requested field in the order asked for:

- a lookup `F` (a `{"id", "name"}` object: Account_Name, Contact_Name, Related_To, ...) becomes
  `F_id` and `F_name`; a user lookup (Owner, Created_By, Modified_By) also `F_email`;
- DateTime fields (Created_Time, Modified_Time, ...) are tz-aware UTC timestamps;
- Date fields (Date_of_Birth, Closing_Date, ...) stay ISO `YYYY-MM-DD` strings;
- booleans use pandas' nullable `boolean` dtype, numbers `float64`, multi-select picklists lists;
- everything else, ids included, is pandas' `str` dtype (19-digit ids do not fit a float).

Field types come from the org's field metadata (`settings/fields`) when it was read, else from the
standard fields below. A field of unknown type whose values are `{"id", ...}` objects is still
flattened, but its columns then depend on the data; every other column is stable, zero rows
included. Fields the client cannot type are typed from their first non-null value (text when
there is none).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

TEXT = "text"
LOOKUP = "lookup"
USER_LOOKUP = "user_lookup"
DATETIME = "datetime"
DATE = "date"
BOOLEAN = "boolean"
NUMBER = "number"
LIST = "list"

LOOKUP_PARTS: dict[str, tuple[str, ...]] = {
    LOOKUP: ("id", "name"),
    USER_LOOKUP: ("id", "name", "email"),
}

# Standard field types (official SDK field.py and the v7 Get Records samples); an org's metadata
# adds its custom fields and overrides these.
_COMMON_KINDS: dict[str, str] = {
    "Owner": USER_LOOKUP,
    "Created_By": USER_LOOKUP,
    "Modified_By": USER_LOOKUP,
    "Created_Time": DATETIME,
    "Modified_Time": DATETIME,
    "Last_Activity_Time": DATETIME,
    "Change_Log_Time__s": DATETIME,
    "Locked__s": BOOLEAN,
    "Tag": LIST,
}
STANDARD_KINDS: dict[str, dict[str, str]] = {
    "Contacts": {
        **_COMMON_KINDS,
        "Account_Name": LOOKUP,
        "Vendor_Name": LOOKUP,
        "Reporting_To": LOOKUP,
        "Date_of_Birth": DATE,
        "Email_Opt_Out": BOOLEAN,
        "Unsubscribed_Time": DATETIME,
        "First_Visited_Time": DATETIME,
        "Last_Visited_Time": DATETIME,
        "Last_Enriched_Time__s": DATETIME,
    },
    "Leads": {
        **_COMMON_KINDS,
        "Email_Opt_Out": BOOLEAN,
        "Converted__s": BOOLEAN,
        "Converted_Date_Time": DATETIME,
        "Converted_Account": LOOKUP,
        "Converted_Contact": LOOKUP,
        "Converted_Deal": LOOKUP,
        "Annual_Revenue": NUMBER,
        "No_of_Employees": NUMBER,
        "Unsubscribed_Time": DATETIME,
        "First_Visited_Time": DATETIME,
        "Last_Visited_Time": DATETIME,
        "Last_Enriched_Time__s": DATETIME,
    },
    "Deals": {
        **_COMMON_KINDS,
        "Account_Name": LOOKUP,
        "Contact_Name": LOOKUP,
        "Campaign_Source": LOOKUP,
        "Amount": NUMBER,
        "Probability": NUMBER,
        "Expected_Revenue": NUMBER,
        "Closing_Date": DATE,
    },
    "Cases": {
        **_COMMON_KINDS,
        "Related_To": LOOKUP,
        "Account_Name": LOOKUP,
        "Deal_Name": LOOKUP,
        "Product_Name": LOOKUP,
        "No_of_comments": NUMBER,
    },
    "Notes": {**_COMMON_KINDS, "Parent_Id": LOOKUP},
}

# Field metadata data_type -> kind (settings/fields, v7/v8).
_METADATA_KINDS: dict[str, str] = {
    "lookup": LOOKUP,
    "ownerlookup": USER_LOOKUP,
    "userlookup": USER_LOOKUP,
    "datetime": DATETIME,
    "date": DATE,
    "boolean": BOOLEAN,
    "integer": NUMBER,
    "double": NUMBER,
    "currency": NUMBER,
    "decimal": NUMBER,
    "percent": NUMBER,
    "multiselectpicklist": LIST,
    "multiselectlookup": LIST,
    "multiuserlookup": LIST,
}

DELETED_COLUMNS = (
    "id",
    "deleted_time",
    "type",
    "display_name",
    "deleted_by_id",
    "deleted_by_name",
    "created_by_id",
    "created_by_name",
)
# Bulk Read CSVs separate multi-select picklist values with ";" (Zoho bulk docs).
CSV_LIST_SEPARATOR = ";"


@dataclass(frozen=True)
class ModuleSchema:
    """The type of each field of one module, as far as the client knows it."""

    module: str
    kinds: Mapping[str, str] = field(default_factory=dict)
    from_metadata: bool = False

    @classmethod
    def standard(cls, module: str) -> ModuleSchema:
        """The standard fields of a module, without a metadata call."""
        return cls(module=module, kinds=dict(STANDARD_KINDS.get(module, _COMMON_KINDS)))

    @classmethod
    def from_fields_metadata(cls, module: str, fields: Iterable[Mapping[str, Any]]) -> ModuleSchema:
        """A schema from the `fields` list of `GET /settings/fields?module=...`."""
        kinds = dict(STANDARD_KINDS.get(module, _COMMON_KINDS))
        for meta in fields:
            api_name = meta.get("api_name")
            if api_name:
                kinds[str(api_name)] = _kind_from_metadata(meta)
        return cls(module=module, kinds=kinds, from_metadata=True)

    def kind(self, field_name: str) -> str | None:
        """The kind of a field, or None when unknown."""
        return self.kinds.get(field_name)


def output_columns(fields: Sequence[str], schema: ModuleSchema) -> list[str]:
    """The columns a read of `fields` produces, in order (`id` first)."""
    columns = ["id"]
    for name in requested_fields(fields):
        kind = schema.kind(name)
        if kind in LOOKUP_PARTS:
            columns.extend(f"{name}_{part}" for part in LOOKUP_PARTS[kind])
        else:
            columns.append(name)
    return columns


def requested_fields(fields: Sequence[str]) -> list[str]:
    """The requested field names, deduplicated in order, without `id` (always included)."""
    seen: dict[str, None] = {}
    for name in fields:
        if name != "id":
            seen.setdefault(name, None)
    return list(seen)


def records_frame(
    records: Sequence[Mapping[str, Any]], fields: Sequence[str], schema: ModuleSchema
) -> pd.DataFrame:
    """A DataFrame from records-API JSON records (`data[]`), flattened and typed."""
    columns: dict[str, pd.Series | list[Any]] = {"id": _text([_id(r.get("id")) for r in records])}
    for name in requested_fields(fields):
        values = [record.get(name) for record in records]
        kind = schema.kind(name) or _infer_kind(values)
        if kind in LOOKUP_PARTS:
            for part in LOOKUP_PARTS[kind]:
                parts = [_lookup_part(value, part) for value in values]
                if part == "id":
                    parts = [_id(value) for value in parts]
                columns[f"{name}_{part}"] = _text(parts)
        else:
            columns[name] = _typed(values, kind)
    return pd.DataFrame(columns)


def csv_frame(
    table: pd.DataFrame,
    fields: Sequence[str],
    schema: ModuleSchema,
    lookup_columns: Mapping[str, Mapping[str, str]],
) -> pd.DataFrame:
    """A DataFrame from a Bulk Read CSV read as strings, in the same shape as `records_frame`.

    `table` holds the CSV with every column as strings (empty cells null). `lookup_columns[F]
    [part]` names the CSV column that holds part (`id`, `name`, `email`) of lookup F; a part with
    no column comes out null. Column-wise conversions: a 200,000-row page takes well under a
    second.
    """
    columns: dict[str, pd.Series] = {"id": _csv_column(table, "id")}
    for name in requested_fields(fields):
        kind = schema.kind(name) or TEXT
        if kind in LOOKUP_PARTS:
            sources = lookup_columns.get(name, {})
            for part in LOOKUP_PARTS[kind]:
                columns[f"{name}_{part}"] = _csv_column(table, sources.get(part))
            continue
        strings = _csv_column(table, name)
        if kind == DATETIME:
            columns[name] = _datetimes(strings)
        elif kind == NUMBER:
            columns[name] = pd.to_numeric(strings, errors="coerce").astype("float64")
        elif kind == BOOLEAN:
            lowered = strings.str.strip().str.lower()
            columns[name] = lowered.map({"true": True, "false": False}).astype("boolean")
        elif kind == LIST:
            columns[name] = strings.str.split(CSV_LIST_SEPARATOR).astype(object)
        else:
            columns[name] = strings
    return pd.DataFrame(columns)


def concat_unique(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate frames (emptying the list) and keep the last copy of each id.

    Copies are avoided where they are not needed: at a million rows each one costs ~300 MB.
    """
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frames.clear()
    if not frame["id"].is_unique:
        frame = frame.drop_duplicates("id", keep="last").reset_index(drop=True)
    return frame


def empty_frame(fields: Sequence[str], schema: ModuleSchema) -> pd.DataFrame:
    """A zero-row DataFrame with exactly the columns and dtypes a read of `fields` produces."""
    return records_frame([], fields, schema)


def deleted_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A DataFrame of `GET /{module}/deleted` entries with `DELETED_COLUMNS`."""

    def part(record: Mapping[str, Any], key: str, sub: str) -> Any:
        value = record.get(key)
        return value.get(sub) if isinstance(value, dict) else None

    return pd.DataFrame(
        {
            "id": _text([_id(r.get("id")) for r in records]),
            "deleted_time": _datetimes([r.get("deleted_time") for r in records]),
            "type": _text([r.get("type") for r in records]),
            "display_name": _text([r.get("display_name") for r in records]),
            "deleted_by_id": _text([_id(part(r, "deleted_by", "id")) for r in records]),
            "deleted_by_name": _text([part(r, "deleted_by", "name") for r in records]),
            "created_by_id": _text([_id(part(r, "created_by", "id")) for r in records]),
            "created_by_name": _text([part(r, "created_by", "name") for r in records]),
        }
    )


def parse_zoho_datetime(value: str) -> pd.Timestamp:
    """A Zoho DateTime string (ISO 8601 with offset) as a UTC timestamp."""
    return pd.Timestamp(value).tz_convert("UTC")


def _kind_from_metadata(meta: Mapping[str, Any]) -> str:
    data_type = str(meta.get("data_type") or "").lower()
    if data_type == "formula":
        formula = meta.get("formula") or {}
        data_type = str(formula.get("return_type") or "").lower()
    if data_type in _METADATA_KINDS:
        return _METADATA_KINDS[data_type]
    if str(meta.get("json_type") or "").lower() == "jsonobject":
        return LOOKUP
    return TEXT


def _infer_kind(values: Sequence[Any]) -> str:
    """The kind of a field the schema does not know, from its first non-null JSON value."""
    for value in values:
        if value is None:
            continue
        if isinstance(value, dict):
            return USER_LOOKUP if "email" in value else LOOKUP
        if isinstance(value, bool):
            return BOOLEAN
        if isinstance(value, int | float):
            return NUMBER
        if isinstance(value, list):
            return LIST
        return TEXT
    return TEXT


def _typed(values: Sequence[Any], kind: str) -> pd.Series:
    if kind == DATETIME:
        return _datetimes(values)
    if kind == NUMBER:
        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").astype("float64")
    if kind == BOOLEAN:
        return pd.Series([_boolean(v) for v in values], dtype="boolean")
    if kind == LIST:
        return pd.Series(values, dtype=object)
    return _text(values)


def _datetimes(values: Sequence[Any] | pd.Series) -> pd.Series:
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    if series.dtype == object:
        # Zoho sends datetimes as ISO strings; a number in their place is not a moment (pandas
        # would soon read it as an epoch), so it becomes missing like any unreadable value.
        series = series.where(series.map(lambda value: isinstance(value, str)).astype(bool))
    return pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce").astype(
        "datetime64[us, UTC]"
    )


def _text(values: Sequence[Any]) -> pd.Series:
    return pd.Series(values, dtype="str")


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    return None


def _lookup_part(value: Any, part: str) -> Any:
    if isinstance(value, dict):
        return value.get(part)
    # A lookup sent as a bare id (older API versions did for some lookups).
    if part == "id" and isinstance(value, str | int):
        return value
    return None


def _id(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return str(value)


def _csv_column(table: pd.DataFrame, column: str | None) -> pd.Series:
    """One CSV column as `str` dtype with empty cells null (all null when it is missing)."""
    if column is None or column not in table.columns:
        return pd.Series([None] * len(table), dtype="str", index=table.index)
    strings = table[column].astype("str")
    return strings.mask(strings == "")
