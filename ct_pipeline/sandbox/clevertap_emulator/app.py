"""The CleverTap server API as a Starlette app: routes, authentication, limits and faults.

Every API request goes the same way: an outage fault answers 503; a wrong or missing
account id or passcode (or `X-CleverTap-Token`, where the API needs one), or a Host outside the
account's region, answers 401; a due 429 or 5xx fault answers that; a request beyond the
endpoint's concurrency limit answers 429 (CleverTap limits requests in flight, not per minute:
developer.clevertap.com/docs/api-request-limit); a slow fault waits; then the handler runs in a
worker thread so that requests in flight really overlap.

Request-level failures use CleverTap's envelope `{"status": "fail", "error": ..., "code": ...}`.
`/1/upload?dryRun=1` (the parameter of CleverTap's own Python client) answers exactly as an
upload would, from the per-record checks alone, and stores nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ct_pipeline.sandbox.clevertap_emulator.admin import admin_routes
from ct_pipeline.sandbox.clevertap_emulator.state import (
    EmulatorState,
    Settings,
    region_api_hosts,
)
from ct_pipeline.sandbox.clevertap_emulator.store import CursorSections
from ct_pipeline.sandbox.clevertap_emulator.validation import (
    DEFAULT_MAX_EVENT_PROPERTIES,
    E164_PHONE,
    EMAIL,
    RecordValidator,
    Rejection,
)
from ct_pipeline.sandbox.credentials import (
    SANDBOX_CLEVERTAP_ACCOUNT_ID,
    SANDBOX_CLEVERTAP_PASSCODE,
    SANDBOX_CLEVERTAP_TOKEN,
)

# developer.clevertap.com upload-user-profiles-api / upload-events-api: 1000 records per call,
# 15 concurrent upload requests per account; most other APIs allow 3 (api-request-limit).
MAX_RECORDS_PER_UPLOAD = 1000
MAX_CONCURRENT_UPLOADS = 15
MAX_CONCURRENT_OTHER = 3
# get-user-profiles-api / get-events-api: batch_size at most 5000.
MAX_CURSOR_BATCH_SIZE = 5000
DEFAULT_CURSOR_BATCH_SIZE = 10
# delete-user-profile-api: at most 100 identities or guids per request; demerge-user-profile-api:
# at most 100 identities; disassociate-api and subscribe-api: batches of up to 1000.
MAX_DELETE_VALUES = 100
MAX_DEMERGE_IDENTITIES = 100
MAX_ENTRIES_PER_REQUEST = 1000
# The multi-campaign external trigger takes a few campaigns per call (5 in the one client that
# documents a figure; CleverTap's page gives none).
MAX_CAMPAIGNS_PER_TRIGGER = 5
DEFAULT_REQUEST_LOG_LIMIT = 200

MALFORMED = "Malformed request"
INVALID_CREDENTIALS = "Invalid Credentials"
TOO_MANY_CONCURRENT = "Too many concurrent requests"
SERVER_ERRORS = {503: "The system is unavailable, try again later"}
PROFILE_NOT_FOUND = "Profile not found"
TRIGGER_QUEUED = "Added to queue for processing"
TRIGGER_TARGET_KEYS = frozenset({"identity", "email", "objectId", "FBID", "GPID"})
TRUE_FLAGS = frozenset({"1", "true", "True"})
BOOLEAN_FLAGS = {"true": True, "1": True, "false": False, "0": False}
# Download records as CleverTap's samples show them: a profile download carries profileData and
# platformInfo; an event download carries the profile without its platformInfo.
CURSOR_SECTION_DEFAULTS = {
    "profiles": {"profile": True, "app": True, "events": False},
    "events": {"profile": True, "app": False, "events": False},
}
CURSOR_THROTTLED = "Request throttled, try again later"
CURSOR_NOT_READY = "Request still in progress"
SUBSCRIPTION_STATUSES = frozenset({"Unsubscribe", "Resubscribe"})
SUBSCRIPTION_VALUE_PATTERNS = {"phone": E164_PHONE, "email": EMAIL}

Handler = Callable[[EmulatorState, QueryParams, bytes], Response]


def create_clevertap_app(
    *,
    max_concurrent_uploads: int = MAX_CONCURRENT_UPLOADS,
    max_concurrent_other: int = MAX_CONCURRENT_OTHER,
    max_records: int = MAX_RECORDS_PER_UPLOAD,
    account_id: str = SANDBOX_CLEVERTAP_ACCOUNT_ID,
    passcode: str = SANDBOX_CLEVERTAP_PASSCODE,
    token: str = SANDBOX_CLEVERTAP_TOKEN,
    region: str | None = None,
    max_event_properties: int = DEFAULT_MAX_EVENT_PROPERTIES,
    discarded_events: Collection[str] = (),
    profile_not_found_status: int = 200,
    request_log_limit: int = DEFAULT_REQUEST_LOG_LIMIT,
) -> Starlette:
    """A CleverTap server API emulator for one account, with its `/__sandbox/` admin API.

    `profile_not_found_status` is the HTTP status of a `/1/profile.json` miss: CleverTap does
    not document it, so the body is the usual fail envelope and the status is a choice.
    `discarded_events` are event names the account discarded (their records get code 528).
    `token` is the `X-CleverTap-Token` that `/2/send/externaltrigger.json` also requires.
    With a `region` (in1, sg1, us1, aps3, mec1, eu1, sk1) the account lives there: a request
    whose Host is another region's answers 401, as CleverTap answers valid credentials sent to
    the wrong region. Without one, any Host is served (the sandbox on 127.0.0.1).
    """
    state = EmulatorState(
        Settings(
            account_id=account_id,
            passcode=passcode,
            token=token,
            api_hosts=region_api_hosts(region),
            max_concurrent_uploads=max_concurrent_uploads,
            max_concurrent_other=max_concurrent_other,
            max_records=max_records,
            profile_not_found_status=profile_not_found_status,
            request_log_limit=request_log_limit,
        ),
        RecordValidator(
            max_event_properties=max_event_properties, discarded_events=discarded_events
        ),
    )
    routes = [
        Route("/1/upload", _api(state, _upload, is_upload=True), methods=["POST"]),
        Route("/1/profile.json", _api(state, _profile), methods=["GET"]),
        Route("/1/profiles.json", _api(state, _cursor_api("profiles")), methods=["GET", "POST"]),
        Route("/1/events.json", _api(state, _cursor_api("events")), methods=["GET", "POST"]),
        Route("/1/send/externaltrigger.json", _api(state, _external_trigger), methods=["POST"]),
        Route(
            "/2/send/externaltrigger.json",
            _api(state, _external_triggers, needs_token=True),
            methods=["POST"],
        ),
        Route("/1/delete/profiles.json", _api(state, _delete_profiles), methods=["POST"]),
        Route("/1/demerge/profiles.json", _api(state, _demerge_profiles), methods=["POST"]),
        Route("/1/disassociate", _api(state, _disassociate), methods=["POST"]),
        Route("/1/subscribe", _api(state, _subscribe), methods=["POST"]),
        *admin_routes(state),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.emulator = state
    return app


def fail(status: int, error: str) -> JSONResponse:
    """CleverTap's request-level failure envelope."""
    return JSONResponse({"status": "fail", "error": error, "code": status}, status_code=status)


def _api(
    state: EmulatorState, handler: Handler, *, is_upload: bool = False, needs_token: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        body = await request.body()
        entry = state.traffic.begin(
            request.method, request.url.path, request.query_params, request.headers, body
        )
        response = await _answer(state, request, body, handler, is_upload, needs_token)
        state.traffic.finish(entry, response.status_code)
        return response

    return endpoint


async def _answer(
    state: EmulatorState,
    request: Request,
    body: bytes,
    handler: Handler,
    is_upload: bool,
    needs_token: bool,
) -> Response:
    if state.faults.outage:
        return fail(503, SERVER_ERRORS[503])
    if not state.serves_host(request.url.hostname) or not state.authorised(
        request.headers, with_token=needs_token
    ):
        return fail(401, INVALID_CREDENTIALS)
    fault_status = state.faults.take_status(is_upload)
    if fault_status == 429:
        return fail(429, TOO_MANY_CONCURRENT)
    if fault_status is not None:
        return fail(fault_status, SERVER_ERRORS.get(fault_status, "Internal Server Error"))

    gate = state.gate(request.url.path, is_upload=is_upload)
    if not gate.enter():
        return fail(429, TOO_MANY_CONCURRENT)
    try:
        delay = state.faults.take_delay()
        if delay:
            await asyncio.sleep(delay)
        return await run_in_threadpool(handler, state, request.query_params, body)
    finally:
        gate.leave()


def _upload(state: EmulatorState, query: QueryParams, body: bytes) -> Response:
    payload = _parse_json(body)
    records = payload.get("d") if isinstance(payload, dict) else None
    if not isinstance(records, list):
        return fail(400, MALFORMED)
    if len(records) > state.settings.max_records:
        return fail(
            400,
            f"Too many records: {len(records)}; a maximum of {state.settings.max_records} "
            "records can be sent per API call",
        )
    dry_run = query.get("dryRun") in TRUE_FLAGS

    rejections: dict[int, Rejection] = {}
    accepted: list[tuple[int, dict]] = []
    check = state.validator.check
    for index, record in enumerate(records):
        rejection = check(record)
        if rejection is None:
            accepted.append((index, record))
        else:
            rejections[index] = rejection

    forced = state.faults.rejections(accepted, consume=not dry_run)
    if forced:
        rejections.update(forced)
        accepted = [(index, record) for index, record in accepted if index not in forced]
    if not dry_run:
        rejections.update(state.store.apply(accepted, int(time.time())))

    unprocessed = [
        {
            "status": "fail",
            "code": rejections[index].code,
            "error": rejections[index].message(index),
            "record": state.faults.echo(records[index]),
        }
        for index in sorted(rejections)
    ]
    processed = len(records) - len(unprocessed)
    state.traffic.count_records(
        received=len(records),
        processed=processed,
        unprocessed=len(unprocessed),
        dry_run=len(records) if dry_run else 0,
    )
    status = "success" if not unprocessed else "fail" if processed == 0 else "partial"
    return JSONResponse({"status": status, "processed": processed, "unprocessed": unprocessed})


def _profile(state: EmulatorState, query: QueryParams, body: bytes) -> Response:
    where = {
        "identity": query.get("identity"),
        "email": query.get("email"),
        "object_id": query.get("objectId"),
    }
    if all(value is None for value in where.values()):
        return fail(400, "Missing parameter: give one of identity, email or objectId")
    record = state.store.lookup_record(**where)
    if record is None:
        return JSONResponse(
            {"status": "fail", "error": PROFILE_NOT_FOUND, "code": 404},
            status_code=state.settings.profile_not_found_status,
        )
    return JSONResponse({"status": "success", "record": record})


def _cursor_api(kind: str) -> Handler:
    def handler(state: EmulatorState, query: QueryParams, body: bytes) -> Response:
        cursor = query.get("cursor")
        if cursor is not None:
            if state.store.knows_cursor(cursor) and state.faults.take("cursor_not_ready"):
                return _fail_in_body(CURSOR_NOT_READY, code=2)
            page = state.store.page(cursor)
            if page is None:
                return fail(400, "Invalid cursor: it is unknown or expired; start a new query")
            return JSONResponse(page)

        if state.faults.take("cursor_throttled"):
            return _fail_in_body(CURSOR_THROTTLED, code=1)
        # Older clients send the query as a GET parameter; current docs POST it as the body.
        raw_query = query.get("query")
        selection = _parse_json(raw_query.encode() if raw_query is not None else body)
        if not isinstance(selection, dict):
            return fail(400, MALFORMED)
        if kind == "events" and not isinstance(selection.get("event_name"), str):
            return fail(400, "Missing parameter: event_name")
        sections = _cursor_sections(kind, query)
        if sections is None:
            return fail(400, "Invalid parameter: app, events and profile must be true or false")
        try:
            batch_size = int(query.get("batch_size", DEFAULT_CURSOR_BATCH_SIZE))
            if not 1 <= batch_size <= MAX_CURSOR_BATCH_SIZE:
                raise ValueError
            cursor = state.store.open_cursor(kind, selection, batch_size, sections)
        except (TypeError, ValueError):
            return fail(
                400,
                f"Invalid parameter: batch_size must be 1 to {MAX_CURSOR_BATCH_SIZE} and "
                "from/to dates YYYYMMDD",
            )
        return JSONResponse({"status": "success", "cursor": cursor})

    return handler


def _cursor_sections(kind: str, query: QueryParams) -> CursorSections | None:
    """The sections the `profile`, `app` and `events` URL flags ask for; None for a flag that is
    not a boolean. A flag left out takes what CleverTap's download samples show."""
    chosen = dict(CURSOR_SECTION_DEFAULTS[kind])
    for name in chosen:
        value = query.get(name)
        if value is None:
            continue
        if value.lower() not in BOOLEAN_FLAGS:
            return None
        chosen[name] = BOOLEAN_FLAGS[value.lower()]
    return CursorSections(**chosen)


def _fail_in_body(error: str, *, code: int) -> JSONResponse:
    # CleverTap's own download client reads these codes from the body of a successful HTTP
    # answer (it gives up on any HTTP error), so the status is 200.
    return JSONResponse({"status": "fail", "error": error, "code": code})


def _external_trigger(state: EmulatorState, query: QueryParams, body: bytes) -> Response:
    request = _parse_json(body)
    if not isinstance(request, dict):
        return fail(400, MALFORMED)
    campaign_id = request.get("campaign_id")
    if not _is_id(campaign_id):
        return fail(400, "Missing parameter: campaign_id")
    refusal = _trigger_refusal(request)
    if refusal is not None:
        return refusal
    _record_triggers(state, [campaign_id], request)
    return JSONResponse({"status": "success", "message": TRIGGER_QUEUED})


def _external_triggers(state: EmulatorState, query: QueryParams, body: bytes) -> Response:
    """`/2/send/externaltrigger.json`: the same request for a list of campaigns at once."""
    request = _parse_json(body)
    if not isinstance(request, dict):
        return fail(400, MALFORMED)
    campaign_ids = request.get("campaign_id_list")
    if not _is_id_list(campaign_ids, MAX_CAMPAIGNS_PER_TRIGGER):
        return fail(
            400,
            f"Invalid parameter: campaign_id_list takes 1 to {MAX_CAMPAIGNS_PER_TRIGGER} "
            "campaign ids",
        )
    refusal = _trigger_refusal(request)
    if refusal is not None:
        return refusal
    _record_triggers(state, campaign_ids, request)
    return JSONResponse({"status": "success", "message": TRIGGER_QUEUED})


def _is_id(value: object) -> bool:
    """A campaign id or an identity: a non-empty string or a whole number."""
    return not isinstance(value, bool) and isinstance(value, str | int) and value != ""


def _is_id_list(values: object, most: int) -> bool:
    """A list of 1 to `most` campaign ids or identities."""
    return isinstance(values, list) and 1 <= len(values) <= most and all(map(_is_id, values))


def _trigger_refusal(request: dict) -> Response | None:
    targets = request.get("to")
    if (
        not isinstance(targets, dict)
        or not targets
        or not set(targets) <= TRIGGER_TARGET_KEYS
        or not all(isinstance(values, list) and values for values in targets.values())
    ):
        return fail(
            400,
            "Invalid parameter: to must map identity, email or objectId to a non-empty list",
        )
    properties = request.get("ExternalTrigger", {})
    if not isinstance(properties, dict) or not all(
        isinstance(value, str) for value in properties.values()
    ):
        return fail(400, "Invalid parameter: ExternalTrigger values must be strings")
    return None


def _record_triggers(state: EmulatorState, campaign_ids: list, request: dict) -> None:
    now = int(time.time())
    for campaign_id in campaign_ids:
        state.store.record_trigger(
            {
                "campaign_id": campaign_id,
                "to": request["to"],
                "ExternalTrigger": request.get("ExternalTrigger", {}),
            },
            now,
        )


def _delete_profiles(state: EmulatorState, query: QueryParams, body: bytes) -> Response:
    request = _parse_json(body)
    if not isinstance(request, dict):
        return fail(400, MALFORMED)
    if ("identity" in request) == ("guid" in request):
        return fail(400, "Invalid parameter: give either identity or guid, not both")
    key = "identity" if "identity" in request else "guid"
    values = request[key]
    values = [values] if isinstance(values, str | int) else values
    if not isinstance(values, list) or not values or len(values) > MAX_DELETE_VALUES:
        return fail(400, f"Invalid parameter: {key} takes 1 to {MAX_DELETE_VALUES} values")
    values = [str(value) for value in values]
    state.store.delete(
        identities=values if key == "identity" else [],
        object_ids=values if key == "guid" else [],
    )
    return JSONResponse({"status": "success"})


def _demerge_profiles(state: EmulatorState, query: QueryParams, body: bytes) -> Response:
    request = _parse_json(body)
    identities = request.get("identities") if isinstance(request, dict) else None
    if not _is_id_list(identities, MAX_DEMERGE_IDENTITIES):
        return fail(
            400,
            f"Invalid parameter: identities takes 1 to {MAX_DEMERGE_IDENTITIES} identities",
        )
    state.store.demerge([str(value) for value in identities], int(time.time()))
    return JSONResponse({"status": "success"})


def _disassociate(state: EmulatorState, query: QueryParams, body: bytes) -> Response:
    def disassociate(entry: dict) -> str | None:
        if entry.get("type") != "phone":
            return "type must be phone: only a phone number used as an identity is disassociated"
        value = entry.get("value")
        if not isinstance(value, str) or not E164_PHONE.fullmatch(value):
            return "value must be a phone number as +<country code><number>"
        state.store.disassociate(value, int(time.time()))
        return None

    return _entries_answer(body, disassociate)


def _subscribe(state: EmulatorState, query: QueryParams, body: bytes) -> Response:
    def subscribe(entry: dict) -> str | None:
        kind = entry.get("type")
        pattern = SUBSCRIPTION_VALUE_PATTERNS.get(kind) if isinstance(kind, str) else None
        if pattern is None:
            return "type must be phone or email"
        value = entry.get("value")
        if not isinstance(value, str) or not pattern.fullmatch(value):
            return f"value is not a valid {kind}"
        status = entry.get("status")
        if status not in SUBSCRIPTION_STATUSES:
            return "status must be Unsubscribe or Resubscribe"
        state.store.set_subscription(kind, value, status, int(time.time()))
        return None

    return _entries_answer(body, subscribe)


def _entries_answer(body: bytes, apply: Callable[[dict], str | None]) -> Response:
    """Apply each entry of a `{"d": [...]}` body and answer as `/1/upload` does: success,
    partial or fail, with the entries not applied in `unprocessed`."""
    request = _parse_json(body)
    entries = request.get("d") if isinstance(request, dict) else None
    if not isinstance(entries, list):
        return fail(400, MALFORMED)
    if len(entries) > MAX_ENTRIES_PER_REQUEST:
        return fail(
            400,
            f"Too many records: {len(entries)}; at most {MAX_ENTRIES_PER_REQUEST} per request",
        )
    unprocessed = []
    for entry in entries:
        problem = apply(entry) if isinstance(entry, dict) else "record is not a JSON object"
        if problem is not None:
            unprocessed.append({"status": "fail", "error": problem, "record": entry})
    processed = len(entries) - len(unprocessed)
    status = "success" if not unprocessed else "fail" if processed == 0 else "partial"
    return JSONResponse({"status": status, "processed": processed, "unprocessed": unprocessed})


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal Server Error"
    return fail(status, str(detail))


def _parse_json(body: bytes) -> object:
    # orjson reads RFC 8259 JSON only: NaN and Infinity, which the json module accepts, are
    # malformed here as they are for CleverTap.
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
