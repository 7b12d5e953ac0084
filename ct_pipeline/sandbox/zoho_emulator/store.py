"""The CRM data the Zoho emulator serves: one indexed table per module, Notes, deletions and
deal stage history.

Each module is the pandas DataFrame `generate_crm` builds (lookups as `<Field>.id` /
`<Field>.name` columns, `_`-prefixed ground-truth columns that are never served). Lists are
served from position arrays sorted by the requested key, so a page costs a `searchsorted` and a
200-row `take`, never a pass over the whole table. The arrays are rebuilt lazily after a write.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ct_pipeline.sandbox.zoho_emulator.replies import ZohoApiError

MODULES = ("Contacts", "Leads", "Deals", "Cases")
SORT_KEYS = ("id", "Created_Time", "Modified_Time")
VIEW_CACHE_SIZE = 8
MISSING_INTEGER = -1

# Zoho's single-line text fields hold 255 characters, email 100, phone 30 (Kaizen #1, "Fields in
# CRM API"); longer values are refused with INVALID_DATA and `maximum_length`.
TEXT_MAX_LENGTH = 255
EMAIL_MAX_LENGTH = 100
PHONE_MAX_LENGTH = 30

DATE_FIELDS = frozenset({"Date_of_Birth", "Closing_Date", "Last_Purchase_Date"})
EMAIL_FIELDS = frozenset({"Email", "Secondary_Email"})
PHONE_FIELDS = frozenset({"Phone", "Mobile"})
CURRENCY_FIELDS = frozenset({"Amount", "Subscription_Value_INR"})
PICKLIST_FIELDS = frozenset(
    {
        "Salutation",
        "Lead_Source",
        "Account_Type",
        "Subscription_Plan",
        "Customer_Tier",
        "KYC_Status",
        "Lifecycle_Stage",
        "Subscription_Status",
        "Lead_Status",
        "Pipeline",
        "Stage",
        "Product_Category",
        "Type",
        "Status",
        "Priority",
        "Case_Origin",
    }
)
READ_ONLY_FIELDS = frozenset({"id", "Created_Time", "Modified_Time", "Full_Name", "Case_Number"})
LOOKUP_TARGETS = {
    "Owner": "users",
    "Account_Name": "Accounts",
    "Contact_Name": "Contacts",
    "Related_To": "Contacts",
}
DISPLAY_FIELDS = {
    "Contacts": "Full_Name",
    "Leads": "Full_Name",
    "Deals": "Deal_Name",
    "Cases": "Subject",
}
LOOKUP_PARTS = ("id", "name", "email")

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_PATTERN = re.compile(r"^[0-9+\-() .]*$")
DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class FieldSpec:
    """One Zoho field of a module and the DataFrame columns that hold its value."""

    api_name: str
    data_type: str
    columns: tuple[str, ...]
    read_only: bool = False
    lookup_module: str | None = None

    @property
    def is_lookup(self) -> bool:
        """Whether the field is served as a nested `{"name", "id"}` object."""
        return self.data_type in ("lookup", "ownerlookup")


class CrmStore:
    """All emulated CRM state: module tables, users, Notes, deletions and stage history."""

    def __init__(
        self,
        crm: Any,
        *,
        tz_offset: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.tz_offset = tz_offset
        self.clock = clock
        self.users = crm.users.reset_index(drop=True)
        self.tables = {name: ModuleTable(name, crm.module(name)) for name in MODULES}
        self.notes: dict[str, list[dict[str, Any]]] = {}
        self.deleted: dict[str, list[dict[str, Any]]] = {name: [] for name in MODULES}
        self.stage_history: dict[str, list[dict[str, Any]]] = {}
        highest = max(
            [table.max_id() for table in self.tables.values()]
            + [int(uid) for uid in self.users["id"].tolist()]
            + [4_000_000_000_000_000_000]
        )
        self._ids = itertools.count(highest + 1)

    def table(self, module: str) -> ModuleTable:
        """The table for a module name, matched case-insensitively as Zoho does."""
        for name, table in self.tables.items():
            if name.lower() == module.lower():
                return table
        raise ZohoApiError(
            400, "INVALID_MODULE", "the module name given seems to be invalid", {"module": module}
        )

    def new_id(self) -> str:
        """A fresh 19-digit record id, larger than every id seen so far."""
        return str(next(self._ids))

    def now(self) -> pd.Timestamp:
        """The current time, to the second, as Zoho stores it."""
        return pd.Timestamp(self.clock()).tz_convert("UTC").floor("s")

    @property
    def current_user(self) -> dict[str, str]:
        """The user the sandbox credentials belong to (the first CRM user)."""
        first = self.users.iloc[0]
        return {"name": str(first["name"]), "id": str(first["id"]), "email": str(first["email"])}

    def user_by_id(self, user_id: str) -> dict[str, str] | None:
        """A CRM user as a lookup value, or None when no user has that id."""
        match = self.users[self.users["id"] == str(user_id)]
        if match.empty:
            return None
        row = match.iloc[0]
        return {"name": str(row["name"]), "id": str(row["id"]), "email": str(row["email"])}

    def format_time(self, value: Any) -> str | None:
        """A timestamp as Zoho prints it: ISO 8601 to the second with the org's offset."""
        if value is None or pd.isna(value):
            return None
        local = pd.Timestamp(value).tz_convert("UTC").tz_localize(None) + self.tz_offset
        return local.strftime("%Y-%m-%dT%H:%M:%S") + offset_suffix(self.tz_offset)


class ModuleTable:
    """One module's records with the sort orders and id index that paging needs."""

    def __init__(self, name: str, frame: pd.DataFrame) -> None:
        self.name = name
        self.frame = _prepared(frame)
        self.fields = describe_fields(self.frame)
        self.display_field = DISPLAY_FIELDS.get(name)
        self.version = 0
        self._ids = self.frame["id"].astype("uint64").to_numpy()
        self._by_id: np.ndarray | None = None
        self._sorted_ids: np.ndarray | None = None
        self._orders: dict[str, np.ndarray] | None = None
        self._seconds: dict[str, np.ndarray] | None = None
        self._views: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._sources: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.frame)

    def max_id(self) -> int:
        """The largest record id in the table (0 when empty)."""
        return int(self._ids.max()) if len(self._ids) else 0

    def field(self, api_name: str) -> FieldSpec | None:
        """The field with this API name, or None."""
        return self.fields.get(api_name)

    def position(self, record_id: str) -> int | None:
        """The row position of a record id, or None when there is no such record."""
        if not record_id.isdigit() or len(record_id) > 20:
            return None
        wanted = np.uint64(int(record_id)) if int(record_id) < 2**64 else None
        if wanted is None:
            return None
        by_id, sorted_ids = self._id_index()
        slot = int(np.searchsorted(sorted_ids, wanted))
        if slot < len(sorted_ids) and sorted_ids[slot] == wanted:
            return int(by_id[slot])
        return None

    def seconds(self, column: str) -> np.ndarray:
        """Epoch seconds of a datetime column, by row position."""
        self._time_orders()
        assert self._seconds is not None
        return self._seconds[column]

    def view(
        self,
        sort_by: str,
        descending: bool,
        since: int | None = None,
        converted: bool | None = None,
    ) -> np.ndarray:
        """Row positions in the requested order, modified at or after `since` (epoch seconds)."""
        key = (self.version, sort_by, descending, since, converted)
        cached = self._views.get(key)
        if cached is not None:
            self._views.move_to_end(key)
            return cached

        orders = self._time_orders()
        order = orders[sort_by]
        if since is not None:
            modified = self.seconds("Modified_Time")
            if sort_by == "Modified_Time":
                start = int(np.searchsorted(modified[order], since, side="left"))
                order = order[start:]
            else:
                order = order[modified[order] >= since]
        if converted is not None and "Converted__s" in self.frame.columns:
            flags = self.frame["Converted__s"].to_numpy(dtype=bool)
            order = order[flags[order] == converted]
        if descending:
            order = order[::-1]

        self._views[key] = order
        while len(self._views) > VIEW_CACHE_SIZE:
            self._views.popitem(last=False)
        return order

    def order_positions(self, positions: np.ndarray, sort_by: str, descending: bool) -> np.ndarray:
        """A handful of positions (from `ids=`) sorted like a list request would sort them."""
        keys = self._ids[positions] if sort_by == "id" else self.seconds(sort_by)[positions]
        order = np.lexsort((self._ids[positions], keys))
        ordered = positions[order]
        return ordered[::-1] if descending else ordered

    def rows(self, positions: Sequence[int] | np.ndarray) -> pd.DataFrame:
        """The rows at these positions (a copy small enough to serialise)."""
        return self.frame.take(np.asarray(positions, dtype=np.int64))

    def json_records(
        self,
        positions: Sequence[int] | np.ndarray,
        fields: Iterable[FieldSpec],
        tz_offset: timedelta,
    ) -> list[dict[str, Any]]:
        """Records as Zoho's JSON: `id` first, lookups re-nested, datetimes with the org offset.

        Works column by column on the few positions asked for, never on the whole table.
        """
        positions = np.asarray(positions, dtype=np.int64)
        keys: list[str] = ["id"]
        columns: list[list[Any]] = [self.json_values("id", positions, tz_offset)]
        for spec in fields:
            keys.append(spec.api_name)
            if spec.is_lookup:
                columns.append(self._lookup_values(spec, positions, tz_offset))
            else:
                columns.append(self.json_values(spec.columns[0], positions, tz_offset))
        return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]

    def json_values(self, column: str, positions: np.ndarray, tz_offset: timedelta) -> list[Any]:
        """One column's values at `positions` as JSON scalars (None where missing)."""
        source = self._column_source(column)
        if isinstance(source, pa.ChunkedArray):
            return source.take(pa.array(positions)).to_pylist()
        if source.dtype.kind == "M":
            local = source[positions] + np.timedelta64(int(tz_offset.total_seconds()), "s")
            suffix = offset_suffix(tz_offset)
            texts = np.datetime_as_string(local, unit="s").tolist()
            return [None if text == "NaT" else f"{text}{suffix}" for text in texts]
        values = source[positions]
        if values.dtype.kind == "f":
            missing = np.isnan(values)
            listed = values.tolist()
            if missing.any():
                return [None if gap else value for value, gap in zip(listed, missing, strict=True)]
            return listed
        if values.dtype.kind == "O":
            return [None if value is None or value != value else value for value in values]
        return values.tolist()

    def _lookup_values(
        self, spec: FieldSpec, positions: np.ndarray, tz_offset: timedelta
    ) -> list[dict[str, Any] | None]:
        parts = [self.json_values(column, positions, tz_offset) for column in spec.columns]
        names = ("id", "name", "email")[: len(parts)]
        nested: list[dict[str, Any] | None] = []
        for values in zip(*parts, strict=True):
            if values[0] is None:
                nested.append(None)
                continue
            lookup = dict(zip(names, values, strict=True))
            nested.append({"name": lookup["name"], **lookup})
        return nested

    def _column_source(self, column: str) -> Any:
        source = self._sources.get(column)
        if source is None:
            series = self.frame[column]
            if isinstance(series.dtype, pd.DatetimeTZDtype):
                source = series.dt.tz_convert(None).to_numpy("datetime64[s]")
            elif isinstance(series.dtype, pd.StringDtype) or hasattr(
                series.array, "__arrow_array__"
            ):
                source = pa.chunked_array(series.array.__arrow_array__())
            else:
                source = series.to_numpy()
            self._sources[column] = source
        return source

    def display_name(self, position: int) -> str | None:
        """The record's name as lookups and deletion entries show it."""
        if self.display_field is None:
            return None
        value = self.frame[self.display_field].iloc[position]
        return None if pd.isna(value) else str(value)

    # Writes -------------------------------------------------------------------------------------

    def assign(self, changes: dict[int, dict[str, Any]]) -> None:
        """Write column values into existing rows, one vectorised assignment per column."""
        by_column: dict[str, tuple[list[int], list[Any]]] = {}
        for position, values in changes.items():
            for column, value in values.items():
                positions, column_values = by_column.setdefault(column, ([], []))
                positions.append(position)
                column_values.append(value)
        for column, (positions, column_values) in by_column.items():
            location = self.frame.columns.get_loc(column)
            dtype = self.frame[column].dtype
            if len(positions) == 1:
                self.frame.iat[positions[0], location] = column_values[0]
            else:
                self.frame.iloc[positions, location] = pd.array(column_values, dtype=dtype)
        self._changed(structure=False)

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Add new records (full rows keyed by column) at the end of the table."""
        template = self.frame.iloc[:0]
        addition = pd.DataFrame(rows, columns=template.columns)
        for column in template.columns:
            dtype = template[column].dtype
            if pd.api.types.is_bool_dtype(dtype):
                addition[column] = addition[column].fillna(False).astype(bool)
            elif pd.api.types.is_integer_dtype(dtype):
                # Ground-truth integers (`_person`) have no value for hand-made records.
                addition[column] = addition[column].fillna(MISSING_INTEGER).astype(dtype)
            else:
                addition[column] = addition[column].astype(dtype)
        self.frame = pd.concat([self.frame, addition], ignore_index=True)
        self._ids = np.concatenate([self._ids, addition["id"].astype("uint64").to_numpy()])
        self._changed(structure=True)

    def remove(self, positions: Sequence[int]) -> None:
        """Delete the records at these positions."""
        self.frame = self.frame.drop(index=self.frame.index[list(positions)]).reset_index(drop=True)
        self._ids = np.delete(self._ids, list(positions))
        self._changed(structure=True)

    # Index maintenance --------------------------------------------------------------------------

    def _changed(self, structure: bool) -> None:
        self.version += 1
        self._views.clear()
        self._sources.clear()
        self._orders = None
        self._seconds = None
        if structure:
            self._by_id = None
            self._sorted_ids = None

    def _id_index(self) -> tuple[np.ndarray, np.ndarray]:
        if self._by_id is None or self._sorted_ids is None:
            self._by_id = np.argsort(self._ids, kind="stable")
            self._sorted_ids = self._ids[self._by_id]
        return self._by_id, self._sorted_ids

    def _time_orders(self) -> dict[str, np.ndarray]:
        if self._orders is None or self._seconds is None:
            by_id, _ = self._id_index()
            self._seconds = {
                column: _epoch_seconds(self.frame[column])
                for column in ("Created_Time", "Modified_Time")
            }
            self._orders = {"id": by_id}
            for column, seconds in self._seconds.items():
                # A stable sort of the id-ordered positions breaks ties by id.
                self._orders[column] = by_id[np.argsort(seconds[by_id], kind="stable")]
        return self._orders


# Reading values ---------------------------------------------------------------------------------


def format_datetimes(series: pd.Series, tz_offset: timedelta) -> list[str | None]:
    """Vectorised `YYYY-MM-DDTHH:MM:SS+05:30` strings (None for NaT)."""
    suffix = offset_suffix(tz_offset)
    local = series.dt.tz_convert(None).to_numpy("datetime64[s]") + np.timedelta64(
        int(tz_offset.total_seconds()), "s"
    )
    texts = np.datetime_as_string(local, unit="s")
    return [None if text == "NaT" else f"{text}{suffix}" for text in texts.tolist()]


def offset_suffix(tz_offset: timedelta) -> str:
    """`+05:30` for a timedelta of 5.5 hours."""
    minutes = int(tz_offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def parse_offset(text: str) -> timedelta:
    """The timedelta of an offset like `+05:30`, `-07:00` or `Z`."""
    if text in ("Z", "z", "+00:00", "-00:00"):
        return timedelta(0)
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", text)
    if not match:
        raise ValueError(f"tz_offset {text!r} is not an offset; write it like +05:30")
    sign = 1 if match.group(1) == "+" else -1
    return sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))


def parse_timestamp(text: str, tz_offset: timedelta) -> pd.Timestamp:
    """An ISO 8601 datetime (naive ones are in the org's offset) as a UTC timestamp."""
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is None:
        parsed = (parsed - tz_offset).replace(tzinfo=UTC)
    return pd.Timestamp(parsed).tz_convert("UTC").floor("s")


# Writing values ---------------------------------------------------------------------------------


def column_values(
    store: CrmStore, table: ModuleTable, spec: FieldSpec, value: Any, json_path: str
) -> dict[str, Any]:
    """The DataFrame column values for one field value sent by a client, validated as Zoho does.

    Raises ZohoApiError(INVALID_DATA) naming the field, its expected type and the JSON path.
    """

    def refuse(**details: Any) -> ZohoApiError:
        return ZohoApiError(
            400,
            "INVALID_DATA",
            "invalid data",
            {"api_name": spec.api_name, "json_path": json_path, **details},
        )

    kind = spec.data_type
    if spec.is_lookup:
        return _lookup_values(store, spec, value, refuse)
    if value is None:
        if kind == "boolean":
            raise refuse(expected_data_type="boolean")
        return {spec.columns[0]: None}
    if kind == "boolean":
        if not isinstance(value, bool):
            raise refuse(expected_data_type="boolean")
    elif kind in ("double", "currency", "integer"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise refuse(expected_data_type=kind)
        if isinstance(value, float) and not math.isfinite(value):
            raise refuse(expected_data_type=kind)
        value = float(value)
    elif kind == "datetime":
        if not isinstance(value, str):
            raise refuse(expected_data_type="datetime")
        try:
            value = parse_timestamp(value, store.tz_offset)
        except ValueError:
            raise refuse(expected_data_type="datetime") from None
    elif kind == "date":
        if not isinstance(value, str) or not DATE_PATTERN.match(value):
            raise refuse(expected_data_type="date")
        try:
            date.fromisoformat(value)
        except ValueError:
            raise refuse(expected_data_type="date") from None
    elif kind == "email":
        if not isinstance(value, str) or not EMAIL_PATTERN.match(value):
            raise refuse(expected_data_type="email")
        if len(value) > EMAIL_MAX_LENGTH:
            raise refuse(maximum_length=EMAIL_MAX_LENGTH)
    elif kind == "phone":
        if not isinstance(value, str) or not PHONE_PATTERN.match(value):
            raise refuse(expected_data_type="phone")
        if len(value) > PHONE_MAX_LENGTH:
            raise refuse(maximum_length=PHONE_MAX_LENGTH)
    else:
        if not isinstance(value, str):
            raise refuse(expected_data_type="text" if kind != "picklist" else "picklist")
        if len(value) > TEXT_MAX_LENGTH:
            raise refuse(maximum_length=TEXT_MAX_LENGTH)
    return {spec.columns[0]: value}


def _lookup_values(
    store: CrmStore, spec: FieldSpec, value: Any, refuse: Callable[..., ZohoApiError]
) -> dict[str, Any]:
    if value is None:
        return dict.fromkeys(spec.columns)
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = {"id": str(value)}
    if not isinstance(value, dict) or not str(value.get("id", "")).isdigit():
        raise refuse(expected_data_type="lookup")
    lookup_id = str(value["id"])

    if spec.lookup_module == "users":
        user = store.user_by_id(lookup_id)
        if user is None:
            raise refuse(expected_data_type="ownerlookup")
        return dict(zip(spec.columns, (user["id"], user["name"], user["email"]), strict=False))

    name = value.get("name")
    if spec.lookup_module in store.tables:
        target = store.tables[spec.lookup_module]
        position = target.position(lookup_id)
        if position is None:
            raise refuse(expected_data_type="lookup")
        name = target.display_name(position)
    return {spec.columns[0]: lookup_id, spec.columns[1]: name}


def full_name(first: Any, last: Any) -> str | None:
    """Zoho's read-only Full_Name: first and last name joined by a space."""
    parts = [str(part) for part in (first, last) if part is not None and not pd.isna(part)]
    return " ".join(parts) if parts else None


# Describing fields ------------------------------------------------------------------------------


def describe_fields(frame: pd.DataFrame) -> dict[str, FieldSpec]:
    """The Zoho fields a module's DataFrame holds, in column order, `_` columns left out."""
    fields: dict[str, FieldSpec] = {}
    for column in frame.columns:
        if column.startswith("_") or column == "id":
            continue
        if "." in column:
            base = column.split(".", 1)[0]
            if base in fields:
                continue
            parts = [f"{base}.{part}" for part in LOOKUP_PARTS if f"{base}.{part}" in frame]
            target = LOOKUP_TARGETS.get(base, "Accounts")
            fields[base] = FieldSpec(
                api_name=base,
                data_type="ownerlookup" if target == "users" else "lookup",
                columns=tuple(parts),
                lookup_module=target,
            )
            continue
        fields[column] = FieldSpec(
            api_name=column,
            data_type=_data_type(column, frame[column]),
            columns=(column,),
            read_only=column in READ_ONLY_FIELDS,
        )
    return fields


def _data_type(column: str, series: pd.Series) -> str:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return "datetime"
    if series.dtype == bool:
        return "boolean"
    if pd.api.types.is_integer_dtype(series.dtype):
        return "integer"
    if pd.api.types.is_float_dtype(series.dtype):
        return "currency" if column in CURRENCY_FIELDS else "double"
    if column in DATE_FIELDS:
        return "date"
    if column in EMAIL_FIELDS:
        return "email"
    if column in PHONE_FIELDS:
        return "phone"
    if column in PICKLIST_FIELDS:
        return "picklist"
    if column == "Case_Number":
        return "autonumber"
    return "text"


def _prepared(frame: pd.DataFrame) -> pd.DataFrame:
    prepared = frame.reset_index(drop=True)
    for column in prepared.columns:
        if isinstance(prepared[column].dtype, pd.DatetimeTZDtype):
            # Zoho keeps times to the second; serving and filtering agree only if we do too.
            prepared[column] = prepared[column].dt.tz_convert("UTC").dt.floor("s")
    return prepared


def _epoch_seconds(series: pd.Series) -> np.ndarray:
    return series.dt.tz_convert(None).to_numpy("datetime64[s]").view("int64")
