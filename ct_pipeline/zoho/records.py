"""Reads through the records API: full and incremental reads, deletions, counts and metadata.

A read asks for explicit fields (at most 50 a call), 200 records a page, sorted by
Modified_Time ascending. Past 2,000 records it follows `page_token`; a token chain reaches at
most 100,000 records, so the read then starts a new window from the last Modified_Time seen and
drops the duplicates by id. More than 50 fields are read as several chains and joined by id.

A record edited while a read pages through the module moves to the end of the order, and is
served again there. If Zoho's pages are offsets into the live order (COQL's OFFSET shares the
page tokens' 100,000 cap, which suggests they are), the records behind it shift forward by one
and one of them is never served. A read that sees a record served twice with different
Modified_Times therefore reads again from that record's first Modified_Time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from ct_pipeline.zoho.frames import (
    ModuleSchema,
    concat_unique,
    deleted_frame,
    output_columns,
    records_frame,
    requested_fields,
)
from ct_pipeline.zoho.http import ZohoAPIError, ZohoError, ZohoScopeError, ZohoSession

logger = logging.getLogger(__name__)

# Limits of Get Records (v7 get-records.html; Kaizen #60): per_page at most 200, at most 50
# fields, `page` alone reaches record 2,000, one page_token chain reaches 100,000 records.
PER_PAGE = 200
MAX_FIELDS_PER_CALL = 50
DISCRETE_PAGE_LIMIT = 2_000
PAGE_TOKEN_CAP = 100_000
# Answers meaning "this org will not tell you" (no permission, not supported, unknown path), as
# opposed to throttling or outages, which must surface.
UNAVAILABLE_STATUSES = frozenset({400, 403, 404})
# Errors after which the chain cannot continue but a fresh window can (v7 get-records.html).
WINDOW_RESTART_CODES = frozenset({"PAGINATION_LIMIT_EXCEEDED", "EXPIRED_VALUE"})
# If-Modified-Since has one-second resolution: a new window or cursor re-reads its own second.
TIME_RESOLUTION = timedelta(seconds=1)
MODIFIED_TIME = "Modified_Time"
# Turn pages into DataFrames every 10,000 records so a 1,000,000-record read never holds a
# million JSON dicts at once.
FRAME_BATCH_RECORDS = 10_000
# Deleted-record ids are kept for 60 days (recycle bin) or 120 days (permanent) (v7 deleted docs).
DELETED_TYPE = "all"
# Get Records leaves converted Leads out unless `converted` says otherwise (true/false/both, v8
# OAS `record.json`); Bulk Read exports them all. Reading both keeps the two paths' rows equal.
CONVERTED_PARAMS = {"Leads": {"converted": "both"}}
# Re-reads after records were seen moving; a module still moving after these is read again by
# the next run, from the cursor the read returns.
MAX_REPAIR_PASSES = 2

CREDITS_PER_GET = 1  # "Each Get Records API call consumes one API credit" (Kaizen #60).
# The vertical-solutions credit table lists 2 for "Get IDs of deleted records"; the CRM v7/v8
# pages do not say, so this is an estimate.
CREDITS_PER_DELETED_GET = 2


class ModuleTooLarge(ZohoError):
    """A read given `give_up_after` found more records than that; another method should read."""


@dataclass(frozen=True)
class _Pass:
    """One pass over a module: its records, and where records were seen moving."""

    frame: pd.DataFrame
    # The earliest Modified_Time (to the second) a moved record had when first served: records
    # from this second on may have been passed over.
    moved_since: datetime | None
    moved: int


@dataclass(frozen=True)
class ZohoRead:
    """Records read from one module and the cursor to pass to the next incremental read.

    `cursor` is the greatest Modified_Time among the records, or the input cursor when nothing
    changed; every record modified at or before it was read. When records kept moving through
    the re-reads (`held_back`), it is lower: the second before the first record that may have
    been passed over, so the next read starts there. An incremental read re-reads the cursor's
    second (If-Modified-Since has one-second resolution), so it can return records an earlier
    read already returned: upsert by id.
    """

    records: pd.DataFrame
    cursor: datetime | None
    # True when Zoho returned a record stamped with the If-Modified-Since second itself: its
    # filter includes that second. Zoho documents "modified after"; this is what it did.
    server_inclusive: bool = False
    # Records served twice with different Modified_Times (edited while the read was paging).
    moved: int = 0
    # The cursor stops short of the newest record read, because records were still moving.
    held_back: bool = False


def read_records(
    session: ZohoSession,
    module: str,
    fields: Sequence[str],
    schema: ModuleSchema,
    modified_since: datetime | None = None,
    *,
    page_token_cap: int = PAGE_TOKEN_CAP,
    max_workers: int = 1,
    give_up_after: int | None = None,
    inclusive_since: bool = False,
) -> ZohoRead:
    """Records of `module` modified at or after `modified_since` (all records when None).

    Zoho documents If-Modified-Since as "modified after", so the header names the second
    before `modified_since`; with `inclusive_since` (Zoho was seen to include the header's own
    second, `ZohoRead.server_inclusive`) it names `modified_since` itself and reads no second
    twice. With `give_up_after`, raises `ModuleTooLarge` as soon as more records than that
    were read.
    """
    wanted = requested_fields(fields)
    if not wanted:
        raise ValueError(f"read of {module} needs at least one field besides id")
    chain_fields = field_groups(wanted)
    since = _floor_second(modified_since) if modified_since is not None else None

    def header_time(start: datetime) -> datetime:
        return start if inclusive_since else start - TIME_RESOLUTION

    def read_pass(start: datetime | None) -> _Pass:
        header_since = header_time(start) if start is not None else None

        def read_one(group: list[str]) -> _Pass:
            return _read_chain(
                session, module, group, schema, header_since, page_token_cap, give_up_after
            )

        if len(chain_fields) == 1:
            return read_one(chain_fields[0])
        workers = max(1, min(max_workers, len(chain_fields)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            chains = list(pool.map(read_one, chain_fields))
        moved_since = [chain.moved_since for chain in chains if chain.moved_since is not None]
        return _Pass(
            _join_chains([chain.frame for chain in chains]),
            min(moved_since) if moved_since else None,
            sum(chain.moved for chain in chains),
        )

    def passed_over_from(done: _Pass) -> datetime | None:
        # Records before `since` are the caller's already: a skip among them does not matter.
        if done.moved_since is None or since is None:
            return done.moved_since
        return max(done.moved_since, since)

    done = read_pass(since)
    frame, moved, repair_from = done.frame, done.moved, passed_over_from(done)
    for _ in range(MAX_REPAIR_PASSES):
        if repair_from is None:
            break
        logger.info(
            "%s: %d records were edited while the read paged past them; reading again from %s",
            module,
            moved,
            _http_time(repair_from),
        )
        done = read_pass(repair_from)
        frame = concat_unique([frame, done.frame])
        moved, repair_from = moved + done.moved, passed_over_from(done)

    server_inclusive = False
    if since is not None and len(frame):
        header_since = pd.Timestamp(header_time(since))
        server_inclusive = bool((frame[MODIFIED_TIME] == header_since).any())
        frame = frame[frame[MODIFIED_TIME] >= pd.Timestamp(since)]
    cursor = modified_since
    if len(frame):
        cursor = frame[MODIFIED_TIME].max().to_pydatetime()
    held_back = False
    if repair_from is not None and cursor is not None:
        held_back = True
        cursor = min(cursor, repair_from - TIME_RESOLUTION)
        logger.warning(
            "%s kept changing while it was read; the next read starts again from %s",
            module,
            _http_time(repair_from),
        )
    return ZohoRead(
        records=_requested_columns(frame, wanted, schema),
        cursor=cursor,
        server_inclusive=server_inclusive,
        moved=moved,
        held_back=held_back,
    )


def field_groups(fields: Sequence[str]) -> list[list[str]]:
    """Split fields into call-sized groups; each carries Modified_Time to order and window by."""
    others = [name for name in fields if name not in ("id", MODIFIED_TIME)]
    size = MAX_FIELDS_PER_CALL - 1
    groups = [
        [MODIFIED_TIME, *others[start : start + size]] for start in range(0, len(others), size)
    ]
    return groups or [[MODIFIED_TIME]]


def has_changes(session: ZohoSession, module: str, since: datetime) -> bool:
    """Whether any record of `module` has a Modified_Time after `since`, in one 1-credit call.

    Edits in the same second as `since` cannot be told apart from the records already read at
    that second, so they do not count here; the next incremental read picks them up.
    """
    since = _floor_second(since)
    response = session.call(
        "GET",
        session.api_path(module),
        kind="records",
        credits=CREDITS_PER_GET,
        params={
            "fields": MODIFIED_TIME,
            "per_page": 1,
            "sort_by": MODIFIED_TIME,
            "sort_order": "desc",
            **CONVERTED_PARAMS.get(module, {}),
        },
        headers={"If-Modified-Since": _http_time(since)},
    )
    body = _body(response)
    if not body or not body.get("data"):
        return False
    newest = body["data"][0].get(MODIFIED_TIME)
    return newest is not None and _parse_time(newest) > since


def read_deleted(session: ZohoSession, module: str, since: datetime | None) -> pd.DataFrame:
    """Records of `module` deleted at or after `since` (everything Zoho still lists when None)."""
    floor = _floor_second(since) if since is not None else None
    headers = {"If-Modified-Since": _http_time(floor - TIME_RESOLUTION)} if floor else {}
    params: dict[str, Any] = {"type": DELETED_TYPE, "per_page": PER_PAGE}
    entries: list[dict[str, Any]] = []
    # The deleted listing is documented with `page` alone and no 2,000-record limit (v7 deleted
    # docs): it pages on however far the deletions go.
    pages = _pages(
        session, module, "deleted", params, headers, CREDITS_PER_DELETED_GET, discrete_limit=None
    )
    for page, _ in pages:
        entries.extend(page)
    frame = deleted_frame(entries)
    if floor is not None and len(frame):
        frame = frame[frame["deleted_time"] >= pd.Timestamp(floor)]
    return frame.drop_duplicates("id", keep="last").reset_index(drop=True)


def count_records(session: ZohoSession, module: str) -> int | None:
    """The number of records in `module` (Get Record Count), or None if the API will not say."""
    try:
        response = session.call(
            "GET",
            session.api_path(module, "actions", "count"),
            kind="count",
            credits=CREDITS_PER_GET,
        )
    except ZohoAPIError as error:
        if error.status not in UNAVAILABLE_STATUSES:
            raise
        logger.warning("record count of %s unavailable (%s)", module, error.code or error.status)
        return None
    body = _body(response)
    count = body.get("count") if body else 0
    return int(count) if count is not None else None


def load_schema(session: ZohoSession, module: str) -> ModuleSchema:
    """Field types of `module` from `settings/fields`; the standard types if it is not allowed."""
    try:
        response = session.call(
            "GET",
            session.api_path("settings", "fields"),
            kind="metadata",
            credits=CREDITS_PER_GET,
            params={"module": module},
        )
    except (ZohoAPIError, ZohoScopeError) as error:
        if isinstance(error, ZohoAPIError) and error.status not in UNAVAILABLE_STATUSES:
            raise
        logger.warning(
            "field metadata of %s unavailable (%s); using the standard field types",
            module,
            getattr(error, "code", None) or type(error).__name__,
        )
        return ModuleSchema.standard(module)
    body = _body(response) or {}
    return ModuleSchema.from_fields_metadata(module, body.get("fields") or [])


def _read_chain(
    session: ZohoSession,
    module: str,
    fields: list[str],
    schema: ModuleSchema,
    since: datetime | None,
    page_token_cap: int,
    give_up_after: int | None,
) -> _Pass:
    frames: list[pd.DataFrame] = []
    batch: list[dict[str, Any]] = []
    read = 0
    for page in _windows(session, module, fields, since, page_token_cap):
        read += len(page)
        if give_up_after is not None and read > give_up_after:
            raise ModuleTooLarge(f"{module} holds more than {give_up_after} records")
        batch.extend(page)
        if len(batch) >= FRAME_BATCH_RECORDS:
            frames.append(records_frame(batch, fields, schema))
            batch = []
    if batch or not frames:
        frames.append(records_frame(batch, fields, schema))
    every_copy = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    moved_since, moved = _moved_records(every_copy)
    # Windows overlap by a second and records move while we read: keep each id's latest copy.
    return _Pass(concat_unique([every_copy]), moved_since, moved)


def _moved_records(every_copy: pd.DataFrame) -> tuple[datetime | None, int]:
    """Where records served more than once changed Modified_Time between their copies: the
    earliest Modified_Time they were first served with (to the second), and how many there are.
    Copies with the same Modified_Time (window overlap) are not moves."""
    if every_copy["id"].is_unique:
        return None, 0
    copies = every_copy.loc[every_copy["id"].duplicated(keep=False), ["id", MODIFIED_TIME]]
    versions = copies.groupby("id")[MODIFIED_TIME].agg(["min", "nunique"])
    moved = versions[versions["nunique"] > 1]
    if moved.empty:
        return None, 0
    earliest = moved["min"].min().floor("s").to_pydatetime()
    return earliest, len(moved)


def _windows(
    session: ZohoSession,
    module: str,
    fields: list[str],
    since: datetime | None,
    page_token_cap: int,
) -> Iterator[list[dict[str, Any]]]:
    """Pages of records, window after window, until the module has no more; the first
    window's If-Modified-Since is `since` as given."""
    params = {
        "fields": ",".join(fields),
        "per_page": PER_PAGE,
        "sort_by": MODIFIED_TIME,
        "sort_order": "asc",
        **CONVERTED_PARAMS.get(module, {}),
    }
    window_start = since
    while True:
        last_seen: datetime | None = None
        read_in_window = 0
        restart = False
        headers = {"If-Modified-Since": _http_time(window_start)} if window_start else {}
        pages = _pages(session, module, None, params, headers, CREDITS_PER_GET)
        try:
            for page, more in pages:
                yield page
                read_in_window += len(page)
                last_seen = _latest(page, last_seen, module)
                if more and read_in_window >= page_token_cap:
                    restart = True
                    break
        except ZohoAPIError as error:
            if error.code not in WINDOW_RESTART_CODES or last_seen is None:
                raise
            restart = True
        finally:
            pages.close()
        if not restart or last_seen is None:
            return
        next_start = _floor_second(last_seen) - TIME_RESOLUTION
        if window_start is not None and next_start <= window_start:
            raise ZohoError(
                f"more than {page_token_cap} {module} records share one Modified_Time second "
                f"({_http_time(last_seen)}); the records API cannot page past them: use bulk_read"
            )
        logger.info(
            "%s: %d records read in this page-token window; continuing from %s",
            module,
            read_in_window,
            _http_time(next_start),
        )
        window_start = next_start


def _pages(
    session: ZohoSession,
    module: str,
    sub_path: str | None,
    params: dict[str, Any],
    headers: dict[str, str],
    credits: int,
    discrete_limit: int | None = DISCRETE_PAGE_LIMIT,
) -> Iterator[tuple[list[dict[str, Any]], bool]]:
    """Each page of one listing as (`data`, `more_records`): `page_token` where the API offers
    one, else `page`, which reaches `discrete_limit` records (None: no limit)."""
    path = session.api_path(module, sub_path) if sub_path else session.api_path(module)
    kind = sub_path or "records"
    page = 1
    page_token: str | None = None
    while True:
        call_params = dict(params)
        if page_token:
            call_params["page_token"] = page_token
        elif page > 1:
            call_params["page"] = page
        response = session.call(
            "GET", path, kind=kind, credits=credits, params=call_params, headers=headers
        )
        body = _body(response)
        if not body or not body.get("data"):
            return
        info = body.get("info") or {}
        more = bool(info.get("more_records"))
        yield body["data"], more
        if not more:
            return
        page_token = info.get("next_page_token") or None
        if not page_token:
            page += 1
            reached = (page - 1) * int(params.get("per_page", PER_PAGE))
            if discrete_limit is not None and reached >= discrete_limit:
                raise ZohoError(
                    f"{module} has more than {discrete_limit} records to list but the API "
                    "sent no next_page_token; check that ZOHO_API_DOMAIN serves API v7 or later"
                )


def _join_chains(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Join field groups read as separate chains into one row per id.

    Records edited between two chains' reads differ in Modified_Time, or are missing from the
    chain read first; only rows that every chain saw in the same version, at or before the
    earliest chain's latest Modified_Time, are kept. The rest are newer than the returned
    cursor, so the next incremental read returns them whole.
    """
    if any(len(frame) == 0 for frame in frames):
        return frames[0].iloc[0:0]
    horizon = min(frame[MODIFIED_TIME].max() for frame in frames)
    joined = frames[0]
    for other in frames[1:]:
        joined = joined.merge(other, on="id", how="inner", suffixes=("", "__other"))
        same_version = joined[MODIFIED_TIME] == joined[f"{MODIFIED_TIME}__other"]
        joined = joined[same_version].drop(columns=f"{MODIFIED_TIME}__other")
    return joined[joined[MODIFIED_TIME] <= horizon]


def _requested_columns(
    frame: pd.DataFrame, wanted: list[str], schema: ModuleSchema
) -> pd.DataFrame:
    columns = output_columns(wanted, schema)
    if not set(columns) <= set(frame.columns):
        # A lookup the schema does not know was flattened from its values: keep what came.
        columns = [
            name for name in frame.columns if name != MODIFIED_TIME or MODIFIED_TIME in wanted
        ]
    if list(frame.columns) != columns:
        frame = frame[columns]
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0:
        frame = frame.reset_index(drop=True)
    return frame


def _latest(page: list[dict[str, Any]], current: datetime | None, module: str) -> datetime | None:
    for record in page:
        value = record.get(MODIFIED_TIME)
        if value:
            try:
                moment = _parse_time(value)
            except (TypeError, ValueError):
                # The value itself is not repeated: it is whatever the API sent.
                raise ZohoError(
                    f"Zoho sent {module} record {record.get('id')} with a Modified_Time that is "
                    "not an ISO 8601 datetime; the read cursor cannot pass it, so nothing of "
                    "this read was stored. Correct the record in Zoho and run again."
                ) from None
            if current is None or moment > current:
                current = moment
    return current


def _body(response: Any) -> dict[str, Any] | None:
    # 204 No Content and 304 Not Modified both mean "nothing" and carry no body.
    if response.status_code in (204, 304) or not response.content:
        return None
    body = response.json()
    return body if isinstance(body, dict) else None


def _parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _floor_second(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("Zoho cursors must be timezone-aware datetimes (UTC)")
    return moment.astimezone(UTC).replace(microsecond=0)


def _http_time(moment: datetime) -> str:
    """ISO 8601 with offset, the If-Modified-Since form Zoho documents."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()
