"""Bulk Read jobs of the Zoho emulator: create, poll, download a zip holding one CSV.

Sources (research/zoho.md §4): `POST /crm/bulk/{v}/read` answers 201 ADDED_SUCCESSFULLY; the job
moves through ADDED, QUEUED, IN PROGRESS to COMPLETED (or, when a fault asks, FAILURE, whose
`result.error_message` holds the error envelope); `result` then carries `page`, `per_page`,
`count`, `download_url`, `more_records` and `next_page_token`; one job exports at most 200,000
records and the next 200,000 need a new job with `query.page_token` (or `query.page`); the
download is a zip holding `{job_id}.csv` with an `id` column, lookup columns holding ids and
dotted columns (`Owner.email`) holding related values; downloads are limited to 10 a minute.

As on Zoho's side, a job works while the client waits: its rows are taken when it is created and
its zip is written by a worker thread, so a status call after `job_seconds` finds it ready.
"""

from __future__ import annotations

import csv
import io
import time
import zipfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from ct_pipeline.sandbox.zoho_emulator.paging import TokenCodec, binding
from ct_pipeline.sandbox.zoho_emulator.replies import Reply, ZohoApiError, error_body
from ct_pipeline.sandbox.zoho_emulator.store import (
    CrmStore,
    FieldSpec,
    ModuleTable,
    format_datetimes,
    parse_timestamp,
)

BULK_PAGE_SIZE = 200_000
BULK_JOB_SECONDS = 2.0
DOWNLOADS_PER_MINUTE = 10
ZIP_LEVEL = 1
FAILURE = "FAILURE"
# Fractions of `job_seconds` after which a job leaves ADDED, then QUEUED.
ADDED_FRACTION = 0.2
QUEUED_FRACTION = 0.4
EMPTY_VALUE = "${EMPTY}"
LOOKUP_NAME_PARTS = {
    "Owner": ("name", "full_name"),
    "Account_Name": ("name", "Account_Name"),
    "Contact_Name": ("name", "Full_Name"),
    "Related_To": ("name", "Full_Name"),
}
COMPARATORS = {
    "equal",
    "not_equal",
    "in",
    "not_in",
    "between",
    "not_between",
    "greater_than",
    "greater_equal",
    "less_than",
    "less_equal",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
}

Mask = Callable[[ModuleTable], np.ndarray]


@dataclass
class BulkJob:
    """One Bulk Read job and, once completed, its result and archive."""

    id: str
    version: str
    table: ModuleTable
    columns: list[tuple[str, FieldSpec | None, str]]
    criteria: Mask | None
    criteria_binding: str
    offset: int
    query: dict[str, Any]
    created_at: float
    created_time: str
    result: dict[str, Any]
    export: Future[bytes] = field(repr=False)
    # Ends in FAILURE instead of COMPLETED (an injected fault).
    failing: bool = False


class BulkReads:
    """The Bulk Read jobs of one emulator."""

    def __init__(
        self,
        store: CrmStore,
        codec: TokenCodec,
        *,
        page_size: int = BULK_PAGE_SIZE,
        job_seconds: float = BULK_JOB_SECONDS,
        downloads_per_minute: int = DOWNLOADS_PER_MINUTE,
    ) -> None:
        self.store = store
        self.codec = codec
        self.page_size = page_size
        self.job_seconds = job_seconds
        self.downloads_per_minute = downloads_per_minute
        self.jobs: dict[str, BulkJob] = {}
        self._downloads: deque[float] = deque()
        # One export at a time, in the order the jobs were created.
        self._exporter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoho-bulk-export")

    def create(self, body: Any, version: str, failing: bool = False) -> Reply:
        """`POST /crm/bulk/{v}/read`: validate the query and add the job (HTTP 201); a
        `failing` job ends in FAILURE."""
        if not isinstance(body, dict) or not isinstance(body.get("query"), dict):
            raise _mandatory("query", "$.query")
        query = body["query"]
        module = query.get("module")
        module_name = module.get("api_name") if isinstance(module, dict) else module
        if not isinstance(module_name, str) or not module_name:
            raise _mandatory("module", "$.query.module")
        try:
            table = self.store.table(module_name)
        except ZohoApiError:
            raise _invalid("module", "$.query.module", "the module is not supported") from None

        columns = _columns(table, query.get("fields"))
        criteria = None
        if query.get("criteria") is not None:
            criteria = _compile(self.store, table, query["criteria"], "$.query.criteria")
        criteria_binding = binding({"m": table.name, "c": query.get("criteria")})
        offset = self._offset(query, table, criteria_binding)

        now = self.store.now()
        user = self.store.current_user
        job_id = self.store.new_id()
        result, rows = self._page(table, criteria, criteria_binding, offset, version, job_id)
        job = BulkJob(
            id=job_id,
            version=version,
            table=table,
            columns=columns,
            criteria=criteria,
            criteria_binding=criteria_binding,
            offset=offset,
            query=query,
            created_at=time.monotonic(),
            created_time=self.store.format_time(now) or "",
            result=result,
            export=self._exporter.submit(_export, job_id, rows, columns, self.store.tz_offset),
            failing=failing,
        )
        self.jobs[job.id] = job
        details = {
            "id": job.id,
            "operation": "read",
            "state": "ADDED",
            "created_by": {"id": user["id"], "name": user["name"]},
            "created_time": job.created_time,
        }
        return Reply(
            201,
            {
                "data": [
                    {
                        "status": "success",
                        "code": "ADDED_SUCCESSFULLY",
                        "message": "Added successfully.",
                        "details": details,
                    }
                ],
                "info": {},
            },
        )

    def status(self, job_id: str) -> Reply:
        """`GET /crm/bulk/{v}/read/{job_id}`: the job's state, and its result once completed."""
        job = self._job(job_id)
        state = self._state(job)
        user = self.store.current_user
        entry: dict[str, Any] = {
            "id": job.id,
            "operation": "read",
            "state": state,
            "query": job.query,
            "created_by": {"id": user["id"], "name": user["name"]},
            "created_time": job.created_time,
            "file_type": "csv",
        }
        if state == "COMPLETED":
            entry["result"] = job.result
        elif state == FAILURE:
            # A failed job's result carries the error envelope ([v7-bulk-job]).
            entry["result"] = {
                "error_message": error_body(
                    "INTERNAL_ERROR", "the export could not be completed; create a new job"
                )
            }
        return Reply(200, {"data": [entry]})

    def result(self, job_id: str) -> Reply:
        """`GET /crm/bulk/{v}/read/{job_id}/result`: the zip (10 downloads a minute, then 429)."""
        job = self._job(job_id)
        if self._state(job) != "COMPLETED":
            raise ZohoApiError(
                400,
                "INVALID_REQUEST",
                "the job has not completed yet; poll it until its state is COMPLETED",
                {"id": job.id},
            )
        now = time.monotonic()
        while self._downloads and self._downloads[0] < now - 60:
            self._downloads.popleft()
        if len(self._downloads) >= self.downloads_per_minute:
            return Reply(
                429,
                error_body(
                    "TOO_MANY_REQUESTS",
                    f"only {self.downloads_per_minute} Bulk Read downloads a minute are allowed",
                ),
            )
        self._downloads.append(now)
        return Reply(
            200,
            content=job.export.result(),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{job.id}.zip"'},
        )

    # Internals ---------------------------------------------------------------------------------

    def _job(self, job_id: str) -> BulkJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise ZohoApiError(
                404,
                "RESOURCE_NOT_FOUND",
                "the requested resource does not exist; check the job id",
                {"id": job_id},
            )
        return job

    def _state(self, job: BulkJob) -> str:
        elapsed = time.monotonic() - job.created_at
        if elapsed >= self.job_seconds:
            if job.failing:
                return FAILURE
            # An export slower than `job_seconds` is waited for: the job completes with its zip.
            job.export.result()
            return "COMPLETED"
        if elapsed < self.job_seconds * ADDED_FRACTION:
            return "ADDED"
        if elapsed < self.job_seconds * QUEUED_FRACTION:
            return "QUEUED"
        return "IN PROGRESS"

    def _offset(self, query: dict[str, Any], table: ModuleTable, criteria_binding: str) -> int:
        if query.get("page_token") is not None:
            token = self.codec.read(str(query["page_token"]), param="page_token")
            if token.get("k") != "bulk" or token.get("b") != criteria_binding:
                raise ZohoApiError(
                    400,
                    "TOKEN_BOUND_DATA_MISMATCH",
                    "the page_token belongs to another module or criteria; send the same query",
                    {"api_name": "page_token", "json_path": "$.query.page_token"},
                )
            return int(token["o"])
        page = query.get("page", 1)
        if not isinstance(page, int) or isinstance(page, bool) or page < 1:
            raise _invalid("page", "$.query.page", "page must be a whole number from 1")
        return (page - 1) * self.page_size

    def _page(
        self,
        table: ModuleTable,
        criteria: Mask | None,
        criteria_binding: str,
        offset: int,
        version: str,
        job_id: str,
    ) -> tuple[dict[str, Any], pd.DataFrame]:
        """The result a new job will report, and a copy of the rows it exports."""
        order = table.view("id", descending=False)
        if criteria is not None:
            order = order[criteria(table)[order]]
        chunk = order[offset : offset + self.page_size]
        more = offset + len(chunk) < len(order)
        result: dict[str, Any] = {
            "page": offset // self.page_size + 1,
            "per_page": self.page_size,
            "count": len(chunk),
            "download_url": f"/crm/bulk/{version}/read/{job_id}/result",
            "more_records": more,
        }
        if more:
            token, _ = self.codec.issue(
                {"k": "bulk", "b": criteria_binding, "o": offset + len(chunk)}
            )
            result["next_page_token"] = token
        return result, table.rows(chunk)


def _columns(table: ModuleTable, fields: Any) -> list[tuple[str, FieldSpec | None, str]]:
    """(CSV header, field, DataFrame column) for each exported column, `id` first."""
    columns: list[tuple[str, FieldSpec | None, str]] = [("id", None, "id")]
    if fields is None:
        for spec in table.fields.values():
            columns.append((spec.api_name, spec, spec.columns[0]))
        return columns
    if not isinstance(fields, list) or not all(isinstance(name, str) for name in fields):
        raise _invalid("fields", "$.query.fields", "fields must be a list of field API names")
    for index, name in enumerate(fields):
        if name == "id":
            continue
        base, _, part = name.partition(".")
        spec = table.field(base)
        path = f"$.query.fields[{index}]"
        if spec is None:
            raise _invalid(name, path, f"{name} is not a field of {table.name}")
        if not part:
            columns.append((name, spec, spec.columns[0]))
            continue
        if not spec.is_lookup:
            raise _invalid(name, path, f"{base} is not a lookup field")
        if part == "id":
            columns.append((name, spec, spec.columns[0]))
        elif part == "email" and len(spec.columns) > 2:
            columns.append((name, spec, spec.columns[2]))
        elif part in LOOKUP_NAME_PARTS.get(base, ("name",)):
            columns.append((name, spec, spec.columns[1]))
        else:
            raise _invalid(name, path, f"{name} is not a field the emulator can export")
    return columns


def _export(
    job_id: str,
    rows: pd.DataFrame,
    columns: list[tuple[str, FieldSpec | None, str]],
    tz_offset: timedelta,
) -> bytes:
    """The job's zip: `{job_id}.csv` of `rows`, one column per requested field."""
    exported: dict[str, Any] = {}
    for header, spec, column in columns:
        values = rows[column]
        if spec is not None and spec.data_type == "datetime" and column == spec.columns[0]:
            exported[header] = format_datetimes(values, tz_offset)
        elif spec is not None and spec.data_type == "boolean":
            exported[header] = np.where(values.to_numpy(dtype=bool), "true", "false")
        else:
            exported[header] = values.reset_index(drop=True)
    buffer = io.BytesIO()
    # Deflate at its fastest level: the archive is read at once by a client on this machine.
    with zipfile.ZipFile(
        buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL
    ) as archive:
        archive.writestr(f"{job_id}.csv", _csv(exported))
    return buffer.getvalue()


def _csv(columns: dict[str, Any]) -> bytes:
    """The CSV text of `columns`, every text value quoted. Arrow's writer takes a tenth of the
    time pandas does (200,000 Contacts: 0.1 s against 1.3 s); a column Arrow cannot type (text
    mixed with numbers, as a hostile record can hold) is written by pandas instead."""
    try:
        table = pa.table({header: pa.array(values) for header, values in columns.items()})
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        frame = pd.DataFrame({header: np.asarray(values) for header, values in columns.items()})
        return frame.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode("utf-8")
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(quoting_style="needed"))
    return sink.getvalue()


# Criteria ---------------------------------------------------------------------------------------


def _compile(store: CrmStore, table: ModuleTable, criteria: Any, path: str) -> Mask:
    """A function giving the boolean mask (by row position) of a Bulk Read criteria object."""
    if not isinstance(criteria, dict):
        raise _invalid("criteria", path, "criteria must be a JSON object")
    if "group" in criteria:
        operator = criteria.get("group_operator")
        group = criteria["group"]
        if operator not in ("and", "or") or not isinstance(group, list) or not group:
            raise _invalid("group_operator", path, "a group needs group_operator and or or")
        parts = [
            _compile(store, table, item, f"{path}.group[{index}]")
            for index, item in enumerate(group)
        ]
        combine = np.logical_and if operator == "and" else np.logical_or

        def grouped(target: ModuleTable) -> np.ndarray:
            masks = [part(target) for part in parts]
            result = masks[0]
            for mask in masks[1:]:
                result = combine(result, mask)
            return result

        return grouped

    field_info = criteria.get("field")
    api_name = field_info.get("api_name") if isinstance(field_info, dict) else None
    comparator = criteria.get("comparator")
    value = criteria.get("value")
    spec = FieldSpec("id", "bigint", ("id",)) if api_name == "id" else table.field(str(api_name))
    if spec is None:
        raise _invalid("field", f"{path}.field", f"{api_name} is not a field of {table.name}")
    if comparator not in COMPARATORS:
        raise _invalid("comparator", f"{path}.comparator", f"{comparator} is not a comparator")

    if spec.data_type == "datetime":
        return _time_mask(store, spec, comparator, value, path)
    return _value_mask(spec, comparator, value, path)


def _time_mask(store: CrmStore, spec: FieldSpec, comparator: str, value: Any, path: str) -> Mask:
    def seconds(text: Any) -> int:
        if not isinstance(text, str):
            raise _invalid("value", f"{path}.value", "datetime values are ISO 8601 strings")
        try:
            return int(parse_timestamp(text, store.tz_offset).timestamp())
        except ValueError:
            raise _invalid("value", f"{path}.value", "datetime values are ISO 8601") from None

    values = [seconds(item) for item in value] if isinstance(value, list) else [seconds(value)]
    _check_arity(comparator, values, path)
    column = spec.columns[0]

    def mask(table: ModuleTable) -> np.ndarray:
        return _compare(table.seconds(column), comparator, values, path)

    return mask


def _value_mask(spec: FieldSpec, comparator: str, value: Any, path: str) -> Mask:
    column = spec.columns[0]
    values = value if isinstance(value, list) else [value]
    _check_arity(comparator, values, path)

    def mask(table: ModuleTable) -> np.ndarray:
        series = table.frame[column]
        if values == [EMPTY_VALUE]:
            empty = series.isna().to_numpy()
            return ~empty if comparator == "not_equal" else empty
        if comparator in ("contains", "not_contains", "starts_with", "ends_with"):
            text = series.astype("str")
            method = {"contains": "contains", "not_contains": "contains"}.get(
                comparator, comparator
            )
            found = getattr(text.str, method)(str(values[0])).fillna(False).to_numpy(dtype=bool)
            return ~found if comparator == "not_contains" else found
        numeric = spec.data_type in ("double", "currency", "integer")
        data = series.to_numpy(dtype=float) if numeric else series.to_numpy(dtype=object)
        return _compare(data, comparator, values, path)

    return mask


def _compare(data: np.ndarray, comparator: str, values: list[Any], path: str) -> np.ndarray:
    first = values[0]
    if comparator == "equal":
        return np.asarray(data == first, dtype=bool)
    if comparator == "not_equal":
        return np.asarray(data != first, dtype=bool)
    if comparator in ("in", "not_in"):
        found = np.isin(data, np.asarray(values, dtype=data.dtype))
        return found if comparator == "in" else ~found
    if comparator in ("between", "not_between"):
        inside = (data >= values[0]) & (data <= values[1])
        return np.asarray(inside if comparator == "between" else ~inside, dtype=bool)
    operators = {
        "greater_than": np.greater,
        "greater_equal": np.greater_equal,
        "less_than": np.less,
        "less_equal": np.less_equal,
    }
    return np.asarray(operators[comparator](data, first), dtype=bool)


def _check_arity(comparator: str, values: list[Any], path: str) -> None:
    if comparator in ("between", "not_between") and len(values) != 2:
        raise _invalid("value", f"{path}.value", "between takes a list of two values")
    if not values:
        raise _invalid("value", f"{path}.value", "the criteria needs a value")


def _mandatory(api_name: str, path: str) -> ZohoApiError:
    return ZohoApiError(
        400,
        "MANDATORY_NOT_FOUND",
        f"required field not found: {api_name}",
        {"api_name": api_name, "json_path": path},
    )


def _invalid(api_name: str, path: str, message: str) -> ZohoApiError:
    return ZohoApiError(400, "INVALID_DATA", message, {"api_name": api_name, "json_path": path})
