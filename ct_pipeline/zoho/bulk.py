"""Bulk Read: export a whole module as CSV through asynchronous jobs, for full syncs.

One job exports at most 200,000 records; the client creates the job, polls it until COMPLETED,
downloads the zip, and parses its CSV into the shape the records API gives (`frames.csv_frame`).
While the job says `more_records`, the next job asks for the next page with `next_page_token`.
"""

from __future__ import annotations

import io
import logging
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
from pyrate_limiter import Duration, Limiter, Rate

from ct_pipeline.zoho.frames import (
    LOOKUP_PARTS,
    USER_LOOKUP,
    ModuleSchema,
    concat_unique,
    csv_frame,
    output_columns,
    requested_fields,
)
from ct_pipeline.zoho.http import ZohoError, ZohoSession

logger = logging.getLogger(__name__)

# One Bulk Read job covers at most 200,000 records (v7 bulk-read/create-job.html).
BULK_PAGE_RECORDS = 200_000
# Job states (v7 bulk-read/job-details.html); note the space in "IN PROGRESS".
COMPLETED = "COMPLETED"
FAILED = "FAILURE"
# The vertical-solutions credit table lists "Bulk Read Initialize 50"; CRM's own pages do not
# say, so this is an estimate. Status and download calls count as ordinary calls.
CREDITS_PER_BULK_JOB = 50
CREDITS_PER_BULK_CALL = 1
# Status polls start this soon and grow by POLL_GROWTH up to the configured interval: a small
# export is fetched within a second or two of finishing, a long one costs few status calls.
FIRST_POLL_SECONDS = 0.5
POLL_GROWTH = 1.5
# "Only 10 download requests per minute"; beyond that, HTTP 429 (bulk-read/limitations.html).
DOWNLOADS_PER_MINUTE = 10
# The CSV names a related record's display field with a dotted header, `<lookup>.<field>`
# (bulk-read docs: `Account_Name.Account_Name`, `Owner.last_name`).
DISPLAY_FIELD_BY_LOOKUP = {
    "Account_Name": "Account_Name",
    "Contact_Name": "Full_Name",
    "Related_To": "Full_Name",
    "Reporting_To": "Full_Name",
    "Converted_Contact": "Full_Name",
    "Deal_Name": "Deal_Name",
    "Converted_Deal": "Deal_Name",
    "Converted_Account": "Account_Name",
    "Vendor_Name": "Vendor_Name",
    "Campaign_Source": "Campaign_Name",
    "Product_Name": "Product_Name",
}
USER_NAME_FIELD = "full_name"
USER_EMAIL_FIELD = "email"


def bulk_read(
    session: ZohoSession,
    module: str,
    fields: Sequence[str],
    schema: ModuleSchema,
    *,
    poll_interval: float,
    timeout: float,
    downloads: Limiter,
) -> pd.DataFrame:
    """Every record of `module` through Bulk Read jobs, 200,000 per job, as one DataFrame.

    `downloads` paces the zip downloads (Zoho allows 10 a minute, then answers 429).
    """
    wanted = requested_fields(fields)
    query_fields = bulk_query_fields(wanted, schema)
    frames: list[pd.DataFrame] = []
    page = 1
    job_id: str | None = _create_job(session, module, query_fields, page, None)
    while job_id is not None:
        result = _wait_for_job(session, module, job_id, poll_interval, timeout)
        # Start the next page's job before downloading this one: it runs while we parse.
        job_id = None
        if result.get("more_records"):
            next_token = result.get("next_page_token") or None
            job_id = _create_job(session, module, query_fields, page + 1, next_token)
        downloads.try_acquire("bulk_download")
        table = _download(session, str(result["download_url"]))
        lookups = lookup_columns(wanted, schema, table.columns)
        frames.append(csv_frame(table, wanted, schema, lookups))
        logger.info("%s: Bulk Read page %d gave %d records", module, page, len(table))
        page += 1
    frame = concat_unique(frames)
    columns = output_columns(wanted, schema)
    return frame if list(frame.columns) == columns else frame[columns]


def download_pacer(per_minute: int = DOWNLOADS_PER_MINUTE) -> Limiter:
    """A blocking limiter of Bulk Read downloads to `per_minute` in any rolling minute."""
    return Limiter(Rate(per_minute, Duration.MINUTE))


def bulk_query_fields(fields: Sequence[str], schema: ModuleSchema) -> list[str]:
    """The `query.fields` of a job: each field, and for lookups the dotted related values."""
    query: list[str] = []
    for name in fields:
        query.append(name)
        kind = schema.kind(name)
        if kind == USER_LOOKUP:
            query.extend((f"{name}.{USER_NAME_FIELD}", f"{name}.{USER_EMAIL_FIELD}"))
        elif kind in LOOKUP_PARTS and name in DISPLAY_FIELD_BY_LOOKUP:
            query.append(f"{name}.{DISPLAY_FIELD_BY_LOOKUP[name]}")
    return list(dict.fromkeys(query))


def lookup_columns(
    fields: Sequence[str], schema: ModuleSchema, header: Sequence[str]
) -> dict[str, dict[str, str]]:
    """For each lookup field, the CSV column holding its id, name and (users) email."""
    available = set(header)
    found: dict[str, dict[str, str]] = {}
    for name in fields:
        kind = schema.kind(name)
        if kind not in LOOKUP_PARTS:
            continue
        candidates = {
            "id": (f"{name}.id", name),
            "name": (
                f"{name}.name",
                f"{name}.{USER_NAME_FIELD}",
                f"{name}.{DISPLAY_FIELD_BY_LOOKUP.get(name, 'name')}",
            ),
            "email": (f"{name}.{USER_EMAIL_FIELD}",),
        }
        found[name] = {
            part: next(column for column in candidates[part] if column in available)
            for part in LOOKUP_PARTS[kind]
            if any(column in available for column in candidates[part])
        }
    return found


def _create_job(
    session: ZohoSession, module: str, fields: list[str], page: int, page_token: str | None
) -> str:
    query: dict[str, Any] = {"module": {"api_name": module}, "fields": fields}
    if page_token:
        query["page_token"] = page_token
    else:
        query["page"] = page
    # Retried after a 5xx like a read (idempotent): a job only reads, so when Zoho had created
    # it before the answer failed, the retry's second job costs another 50 credits and nothing
    # else. Not retrying would fail the whole full refresh, whose re-run costs more than that.
    response = session.call(
        "POST",
        session.bulk_path(),
        kind="bulk_create",
        credits=CREDITS_PER_BULK_JOB,
        json={"query": query},
        idempotent=True,
    )
    entries = (response.json() or {}).get("data") or [{}]
    job_id = (entries[0].get("details") or {}).get("id")
    if not job_id:
        raise ZohoError(f"Bulk Read of {module}: the create-job answer carried no job id")
    return str(job_id)


def _wait_for_job(
    session: ZohoSession, module: str, job_id: str, poll_interval: float, timeout: float
) -> Mapping[str, Any]:
    deadline = time.monotonic() + timeout
    for wait in poll_waits(poll_interval):
        time.sleep(wait)
        response = session.call(
            "GET", session.bulk_path(job_id), kind="bulk_status", credits=CREDITS_PER_BULK_CALL
        )
        job = ((response.json() or {}).get("data") or [{}])[0]
        state = job.get("state")
        if state == COMPLETED:
            result = job.get("result") or {}
            if not result.get("download_url"):
                raise ZohoError(f"Bulk Read job {job_id} completed without a download_url")
            return result
        if state == FAILED:
            error = (job.get("result") or {}).get("error_message") or {}
            code = error.get("code") or "FAILURE"
            reason = f"{code}: {error.get('message') or 'no reason given'}"
            raise ZohoError(
                f"Bulk Read job {job_id} of {module} failed in Zoho ({reason[:200]}); nothing "
                "of this read was kept: run it again, and if jobs keep failing, read the module "
                "through the records API by raising bulk_read_threshold above its size"
            )
        if time.monotonic() > deadline:
            raise ZohoError(
                f"Bulk Read job {job_id} still {state!r} after {timeout:.0f}s; raise "
                "bulk_timeout or read again later"
            )
    raise AssertionError("poll_waits never ends")


def poll_waits(longest: float) -> Iterator[float]:
    """Seconds to wait before each status call of a job: FIRST_POLL_SECONDS, growing by
    POLL_GROWTH, then `longest` for ever (never more than `longest`)."""
    wait = min(FIRST_POLL_SECONDS, longest)
    while True:
        yield wait
        wait = min(wait * POLL_GROWTH, longest)


def _download(session: ZohoSession, download_url: str) -> pd.DataFrame:
    response = session.call(
        "GET", download_url, kind="bulk_download", credits=CREDITS_PER_BULK_CALL
    )
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        members = [name for name in archive.namelist() if name.lower().endswith(".csv")]
        if not members:
            raise ZohoError("Bulk Read result zip holds no CSV file")
        with archive.open(members[0]) as csv_file:
            return pd.read_csv(csv_file, dtype=str, keep_default_na=False)
