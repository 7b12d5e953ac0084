"""The Starlette app of the Zoho CRM emulator: routes, authentication, limits, faults, stats.

Every CRM call goes through one wrapper that does what Zoho does before answering: check the
`Zoho-oauthtoken` header (401), serve injected faults, take a concurrency slot and the call's
credits (429 beyond the org's limits), then run the handler in a worker thread under one lock
(the tables are not thread-safe; the event loop stays free for the admin API meanwhile).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ct_pipeline.sandbox.zoho_emulator import admin, bulk, metadata, records
from ct_pipeline.sandbox.zoho_emulator.auth import (
    ACCESS_TOKEN_TTL_SECONDS,
    API_DOMAIN_BY_ACCOUNTS_HOST,
    TokenIssuer,
)
from ct_pipeline.sandbox.zoho_emulator.limits import (
    BULK_READ_CREDITS,
    DEFAULT_CONCURRENCY,
    DELETED_RECORDS_CREDITS,
    HEAVY_CONCURRENCY,
    HEAVY_WRITE_THRESHOLD,
    TOO_MANY_REQUESTS_MESSAGE,
    ConcurrencyGate,
    CreditLedger,
    Faults,
    Stats,
    validate_fault_request,
    write_credits,
)
from ct_pipeline.sandbox.zoho_emulator.paging import PAGE_TOKEN_TTL_SECONDS, TokenCodec
from ct_pipeline.sandbox.zoho_emulator.records import PAGE_TOKEN_RECORD_CAP
from ct_pipeline.sandbox.zoho_emulator.replies import (
    Reply,
    ZohoApiError,
    error_body,
    invalid_data,
    not_found_url,
)
from ct_pipeline.sandbox.zoho_emulator.store import MODULES, CrmStore, parse_offset

API_VERSIONS = ("v7", "v8")

Handler = Callable[[Request, Any], Reply]
CreditRule = Callable[[Request, Any], int]


def create_zoho_app(
    crm: Any,
    *,
    token_ttl_seconds: int = ACCESS_TOKEN_TTL_SECONDS,
    tz_offset: str = "+05:30",
    api_domain: str | None = None,
    concurrency_limit: int = DEFAULT_CONCURRENCY,
    heavy_concurrency_limit: int = HEAVY_CONCURRENCY,
    daily_credit_limit: int | None = None,
    token_grants_per_ten_minutes: int | None = None,
    page_token_cap: int = PAGE_TOKEN_RECORD_CAP,
    page_token_ttl_seconds: int = PAGE_TOKEN_TTL_SECONDS,
    bulk_page_size: int = bulk.BULK_PAGE_SIZE,
    bulk_job_seconds: float = bulk.BULK_JOB_SECONDS,
    bulk_downloads_per_minute: int = bulk.DOWNLOADS_PER_MINUTE,
    response_delay_seconds: float = 0.0,
    clock: Callable[[], datetime] | None = None,
    record_count: bool = True,
    if_modified_since_inclusive: bool = True,
) -> Starlette:
    """A Starlette app serving the Zoho CRM API (v7 and v8) over a SyntheticCrm.

    Args:
        crm: a `SyntheticCrm` (or anything with `module(name)` and a `users` DataFrame).
        token_ttl_seconds: lifetime of granted access tokens (`expires_in`).
        tz_offset: the org's offset that datetimes are printed with, e.g. "+05:30".
        api_domain: the `api_domain` the token endpoint returns; default: the data centre's
            API domain when the token request was addressed to a Zoho accounts host (routed
            here by the client's transport), else this server's URL.
        concurrency_limit: calls in flight per org (Enterprise: 20); more answer 429.
        heavy_concurrency_limit: the sub-limit for heavy calls (10).
        daily_credit_limit: credits per rolling 24 h; None counts credits without a limit.
        token_grants_per_ten_minutes: Zoho's refresh throttle (10); None disables it.
        page_token_cap: records reachable through page tokens (Zoho: 100,000).
        page_token_ttl_seconds: page token lifetime (Zoho: 24 h).
        bulk_page_size: records per Bulk Read job (Zoho: 200,000).
        bulk_job_seconds: how long a Bulk Read job stays IN PROGRESS.
        bulk_downloads_per_minute: Bulk Read downloads allowed per minute (Zoho: 10).
        response_delay_seconds: latency added to every CRM call (keeps slots busy).
        clock: the time source (tz-aware UTC); defaults to the real clock.
        record_count: serve Get Record Count; False answers it as an unknown path, as an org
            whose edition or scopes lack it would, so clients must cope without it.
        if_modified_since_inclusive: serve records (and deletions) modified in the
            If-Modified-Since second itself, as Airbyte reports Zoho does; False serves only
            those modified after it, as Zoho documents. Zoho's side is unconfirmed: clients
            should be tested against both.
    """
    emulator = ZohoEmulator(
        crm,
        token_ttl_seconds=token_ttl_seconds,
        tz_offset=tz_offset,
        api_domain=api_domain,
        concurrency_limit=concurrency_limit,
        heavy_concurrency_limit=heavy_concurrency_limit,
        daily_credit_limit=daily_credit_limit,
        token_grants_per_ten_minutes=token_grants_per_ten_minutes,
        page_token_cap=page_token_cap,
        page_token_ttl_seconds=page_token_ttl_seconds,
        bulk_page_size=bulk_page_size,
        bulk_job_seconds=bulk_job_seconds,
        bulk_downloads_per_minute=bulk_downloads_per_minute,
        response_delay_seconds=response_delay_seconds,
        clock=clock or _utc_now,
    )
    emulator.record_count = record_count
    emulator.if_modified_since_inclusive = if_modified_since_inclusive
    app = Starlette(
        routes=emulator.routes(),
        exception_handlers={404: _zoho_http_error, 405: _zoho_http_error},
    )
    app.state.zoho_emulator = emulator
    return app


class ZohoEmulator:
    """The emulator's state and its request handlers."""

    def __init__(
        self,
        crm: Any,
        *,
        token_ttl_seconds: int,
        tz_offset: str,
        api_domain: str | None,
        concurrency_limit: int,
        heavy_concurrency_limit: int,
        daily_credit_limit: int | None,
        token_grants_per_ten_minutes: int | None,
        page_token_cap: int,
        page_token_ttl_seconds: int,
        bulk_page_size: int,
        bulk_job_seconds: float,
        bulk_downloads_per_minute: int,
        response_delay_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.clock = clock
        self.store = CrmStore(crm, tz_offset=parse_offset(tz_offset), clock=clock)
        self.issuer = TokenIssuer(clock, token_ttl_seconds, token_grants_per_ten_minutes)
        self.codec = TokenCodec(clock, page_token_ttl_seconds)
        self.bulk = bulk.BulkReads(
            self.store,
            self.codec,
            page_size=bulk_page_size,
            job_seconds=bulk_job_seconds,
            downloads_per_minute=bulk_downloads_per_minute,
        )
        self.gate = ConcurrencyGate(concurrency_limit, heavy_concurrency_limit)
        self.ledger = CreditLedger(daily_credit_limit)
        self.faults = Faults()
        self.stats = Stats()
        self.api_domain = api_domain
        self.page_token_cap = page_token_cap
        self.response_delay_seconds = response_delay_seconds
        self._lock = threading.Lock()

    def routes(self) -> list[Route]:
        """Every path the emulator serves; specific paths before the `{module}` catch-alls."""
        api = self._api
        crm = "/crm/{version}"
        return [
            Route("/oauth/v2/token", self.token, methods=["POST"]),
            # Bulk Read first: `/crm/bulk/...` would otherwise match `/crm/{version}/...`.
            Route(
                "/crm/bulk/{version}/read",
                api("POST /crm/bulk/{version}/read", self._bulk_create, credits=_bulk_credits),
                methods=["POST"],
            ),
            Route(
                "/crm/bulk/{version}/read/{job_id}",
                api("GET /crm/bulk/{version}/read/{job_id}", self._bulk_status),
                methods=["GET"],
            ),
            Route(
                "/crm/bulk/{version}/read/{job_id}/result",
                api("GET /crm/bulk/{version}/read/{job_id}/result", self._bulk_result),
                methods=["GET"],
            ),
            Route(
                f"{crm}/settings/modules",
                api("GET /crm/{version}/settings/modules", self._modules),
                methods=["GET"],
            ),
            Route(
                f"{crm}/settings/modules/{{module}}",
                api("GET /crm/{version}/settings/modules/{module}", self._modules),
                methods=["GET"],
            ),
            Route(
                f"{crm}/settings/fields",
                api("GET /crm/{version}/settings/fields", self._fields),
                methods=["GET"],
            ),
            Route(f"{crm}/users", api("GET /crm/{version}/users", self._users), methods=["GET"]),
            Route(f"{crm}/org", api("GET /crm/{version}/org", self._org), methods=["GET"]),
            Route(
                f"{crm}/Notes",
                api("POST /crm/{version}/Notes", self._create_notes, credits=_write_credits),
                methods=["POST"],
            ),
            Route(
                f"{crm}/{{module}}/deleted",
                api(
                    "GET /crm/{version}/{module}/deleted",
                    self._deleted,
                    credits=lambda request, body: DELETED_RECORDS_CREDITS,
                ),
                methods=["GET"],
            ),
            Route(
                f"{crm}/{{module}}/actions/count",
                api("GET /crm/{version}/{module}/actions/count", self._count),
                methods=["GET"],
            ),
            Route(
                f"{crm}/{{module}}/{{record_id}}/Notes",
                api("GET /crm/{version}/{module}/{id}/Notes", self._list_notes),
                methods=["GET"],
            ),
            Route(
                f"{crm}/{{module}}/{{record_id}}/Notes",
                api(
                    "POST /crm/{version}/{module}/{id}/Notes",
                    self._create_record_notes,
                    credits=_write_credits,
                ),
                methods=["POST"],
            ),
            Route(
                f"{crm}/{{module}}/{{record_id}}/Stage_History",
                api("GET /crm/{version}/{module}/{id}/Stage_History", self._stage_history),
                methods=["GET"],
            ),
            Route(
                f"{crm}/{{module}}/{{record_id}}",
                api("GET /crm/{version}/{module}/{id}", self._get_record),
                methods=["GET"],
            ),
            Route(
                f"{crm}/{{module}}/{{record_id}}",
                api(
                    "PUT /crm/{version}/{module}/{id}",
                    self._update_record,
                    credits=_write_credits,
                    heavy=_heavy_write,
                ),
                methods=["PUT"],
            ),
            Route(
                f"{crm}/{{module}}",
                api("GET /crm/{version}/{module}", self._list, heavy=_heavy_list),
                methods=["GET"],
            ),
            Route(
                f"{crm}/{{module}}",
                api(
                    "PUT /crm/{version}/{module}",
                    self._update,
                    credits=_write_credits,
                    heavy=_heavy_write,
                ),
                methods=["PUT"],
            ),
            Route("/__sandbox/records/{module}", self.admin_upsert, methods=["POST"]),
            Route("/__sandbox/records/{module}/delete", self.admin_delete_many, methods=["POST"]),
            Route("/__sandbox/records/{module}/{record_id}", self.admin_read, methods=["GET"]),
            Route("/__sandbox/records/{module}/{record_id}", self.admin_delete, methods=["DELETE"]),
            Route("/__sandbox/faults", self.admin_faults, methods=["POST", "GET"]),
            Route("/__sandbox/stats", self.admin_stats, methods=["GET"]),
            Route("/__sandbox/reset", self.admin_reset, methods=["POST"]),
        ]

    # Accounts ----------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        """`POST /oauth/v2/token`: the refresh-token grant (query string or form body)."""
        params = dict(request.query_params)
        content_type = request.headers.get("content-type", "")
        if "application/x-www-form-urlencoded" in content_type:
            form = (await request.body()).decode("utf-8", errors="replace")
            params.update(parse_qsl(form, keep_blank_values=True))
        domain = (
            self.api_domain
            or API_DOMAIN_BY_ACCOUNTS_HOST.get(request.url.hostname or "")
            or f"{request.url.scheme}://{request.url.netloc}"
        )
        reply = self.issuer.grant(params, domain)
        if reply.body and "access_token" in reply.body:
            self.stats.token_grants += 1
        else:
            self.stats.token_refusals += 1
        self.stats.record("POST /oauth/v2/token", reply.status, 0)
        return _respond(reply)

    # The CRM API wrapper -----------------------------------------------------------------------

    def _api(
        self,
        template: str,
        handler: Handler,
        *,
        credits: CreditRule | None = None,
        heavy: Callable[[Request, Any], bool] | None = None,
    ) -> Callable[[Request], Awaitable[Response]]:
        credit_rule = credits or (lambda request, body: 1)
        heavy_rule = heavy or (lambda request, body: False)

        async def endpoint(request: Request) -> Response:
            endpoint_name = _endpoint_name(template, request)
            reply = await self._serve(request, handler, credit_rule, heavy_rule)
            charged = 0
            if reply.status < 400 or reply.status == 207:
                charged = credit_rule(request, _cached_body(request))
                self.ledger.spend(charged)
                if self.faults.lost_answers:
                    # Done and charged, but the client never hears so.
                    self.faults.lost_answers -= 1
                    self.stats.faults_served["lost_answers"] += 1
                    reply = Reply(500, error_body("INTERNAL_ERROR", "Internal Server Error"))
            self.stats.record(endpoint_name, reply.status, charged)
            reply.headers.update(self.ledger.remaining_header())
            return _respond(reply)

        return endpoint

    async def _serve(
        self,
        request: Request,
        handler: Handler,
        credit_rule: CreditRule,
        heavy_rule: Callable[[Request, Any], bool],
    ) -> Reply:
        if request.path_params.get("version") not in API_VERSIONS:
            return not_found_url().reply()
        for armed in self.faults.due():
            self._inject(armed)
        try:
            self.issuer.check(request.headers.get("authorization"))
            body = await _json_body(request)
        except ZohoApiError as refused:
            return refused.reply()

        if self.faults.too_many_requests:
            self.faults.too_many_requests -= 1
            self.stats.faults_served["too_many_requests"] += 1
            return _too_many_requests()
        if self.faults.server_errors:
            self.faults.server_errors -= 1
            self.stats.faults_served["server_errors"] += 1
            return Reply(
                self.faults.server_error_status,
                error_body("INTERNAL_ERROR", "Internal Server Error"),
            )

        heavy = heavy_rule(request, body)
        if not self.ledger.can_spend(credit_rule(request, body)):
            self.stats.refused_by_limits += 1
            return Reply(
                429,
                error_body(
                    "TOO_MANY_REQUESTS",
                    "Number of API requests for the 24 hour period is exceeded",
                ),
            )
        if not self.gate.enter(heavy):
            self.stats.refused_by_limits += 1
            return _too_many_requests()
        try:
            delay = self.response_delay_seconds
            if self.faults.slow_responses:
                self.faults.slow_responses -= 1
                self.stats.faults_served["slow_responses"] += 1
                delay += self.faults.slow_seconds
            if delay:
                await asyncio.sleep(delay)
            reply = await run_in_threadpool(self._locked, handler, request, body)
            for fault in self.faults.tamper(reply.body):
                self.stats.faults_served[fault] += 1
            return reply
        finally:
            self.gate.leave(heavy)

    def _locked(self, handler: Handler, request: Request, body: Any) -> Reply:
        with self._lock:
            try:
                return handler(request, body)
            except ZohoApiError as refused:
                return refused.reply()

    # CRM handlers (run in a worker thread under the lock) --------------------------------------

    def _list(self, request: Request, body: Any) -> Reply:
        return records.list_records(
            self.store,
            self.codec,
            request.path_params["module"],
            request.query_params,
            request.headers.get("if-modified-since"),
            page_token_cap=self.page_token_cap,
            inclusive=self.if_modified_since_inclusive,
        )

    def _get_record(self, request: Request, body: Any) -> Reply:
        return records.get_record(
            self.store, request.path_params["module"], request.path_params["record_id"]
        )

    record_count = True
    if_modified_since_inclusive = True

    def _count(self, request: Request, body: Any) -> Reply:
        # Get Record Count (v8 docs, "Get Record Count"): {"count": N} for the whole module.
        if not self.record_count:
            raise not_found_url()
        return Reply(200, {"count": len(self.store.table(request.path_params["module"]))})

    def _deleted(self, request: Request, body: Any) -> Reply:
        return records.deleted_records(
            self.store,
            request.path_params["module"],
            request.query_params,
            request.headers.get("if-modified-since"),
            inclusive=self.if_modified_since_inclusive,
        )

    def _update(self, request: Request, body: Any) -> Reply:
        self.stats.record_trigger(body)
        return records.update_records(self.store, request.path_params["module"], body)

    def _update_record(self, request: Request, body: Any) -> Reply:
        self.stats.record_trigger(body)
        return records.update_records(
            self.store, request.path_params["module"], body, request.path_params["record_id"]
        )

    def _create_notes(self, request: Request, body: Any) -> Reply:
        return records.create_notes(self.store, body)

    def _create_record_notes(self, request: Request, body: Any) -> Reply:
        return records.create_notes(
            self.store, body, request.path_params["module"], request.path_params["record_id"]
        )

    def _list_notes(self, request: Request, body: Any) -> Reply:
        return records.list_notes(
            self.store,
            request.path_params["module"],
            request.path_params["record_id"],
            request.query_params,
        )

    def _stage_history(self, request: Request, body: Any) -> Reply:
        if request.path_params["module"].lower() != "deals":
            raise not_found_url()
        return records.stage_history(
            self.store, request.path_params["record_id"], request.query_params
        )

    def _modules(self, request: Request, body: Any) -> Reply:
        return metadata.modules_reply(self.store, request.path_params.get("module"))

    def _fields(self, request: Request, body: Any) -> Reply:
        return metadata.fields_reply(self.store, request.query_params.get("module"))

    def _users(self, request: Request, body: Any) -> Reply:
        return metadata.users_reply(self.store, request.query_params.get("type"))

    def _org(self, request: Request, body: Any) -> Reply:
        return metadata.org_reply(self.store)

    def _bulk_create(self, request: Request, body: Any) -> Reply:
        content_type = request.headers.get("content-type", "")
        if "application/json" not in content_type:
            raise ZohoApiError(
                415,
                "MEDIA_TYPE_NOT_SUPPORTED",
                "send the job as JSON with Content-Type: application/json",
            )
        failing = self.faults.bulk_job_failures > 0
        if failing:
            self.faults.bulk_job_failures -= 1
            self.stats.faults_served["bulk_job_failures"] += 1
        return self.bulk.create(body, request.path_params["version"], failing=failing)

    def _bulk_status(self, request: Request, body: Any) -> Reply:
        return self.bulk.status(request.path_params["job_id"])

    def _bulk_result(self, request: Request, body: Any) -> Reply:
        return self.bulk.result(request.path_params["job_id"])

    # Admin API ---------------------------------------------------------------------------------

    async def admin_upsert(self, request: Request) -> Response:
        """`POST /__sandbox/records/{module}`: create or update records by id."""
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _respond(admin.admin_error(400, "the body is not JSON; send a list of records"))
        return await self._admin(admin.upsert_records, request.path_params["module"], body)

    async def admin_delete(self, request: Request) -> Response:
        """`DELETE /__sandbox/records/{module}/{id}[?type=permanent]`."""
        return await self._admin(
            admin.delete_record,
            request.path_params["module"],
            request.path_params["record_id"],
            request.query_params.get("type", "recycle"),
        )

    async def admin_delete_many(self, request: Request) -> Response:
        """`POST /__sandbox/records/{module}/delete` with `{"ids": [...], "type": "recycle"}`:
        delete many records at once, as a mass delete in the Zoho UI does."""
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("ids"), list):
            return _respond(admin.admin_error(400, 'send {"ids": ["<record id>", ...]}'))
        return await self._admin(
            admin.delete_records,
            request.path_params["module"],
            [str(record_id) for record_id in body["ids"]],
            str(body.get("type", "recycle")),
        )

    async def admin_read(self, request: Request) -> Response:
        """`GET /__sandbox/records/{module}/{id}`: the record with its Notes."""
        return await self._admin(
            admin.read_record, request.path_params["module"], request.path_params["record_id"]
        )

    async def admin_faults(self, request: Request) -> Response:
        """`POST /__sandbox/faults`: queue faults for the next CRM calls (or, with `after_calls`,
        for later ones); GET shows the queue."""
        if request.method == "POST":
            try:
                fault_request = json.loads(await request.body() or b"{}")
            except ValueError:
                fault_request = None
            problem = validate_fault_request(fault_request) or self._unknown_records(fault_request)
            if problem is not None:
                return _respond(admin.admin_error(400, problem))
            if "after_calls" in fault_request:
                self.faults.arm(fault_request)
            else:
                self._inject(fault_request)
        return JSONResponse({"pending": self.faults.pending()})

    def _unknown_records(self, fault_request: dict[str, Any]) -> str | None:
        """Why `touch_records` or `delete_records` names a record the emulator does not hold."""
        for key in ("touch_records", "delete_records"):
            for module, ids in (fault_request.get(key) or {}).items():
                try:
                    table = self.store.table(module)
                except ZohoApiError:
                    return f"{key}: {module} is not a module; use one of {', '.join(MODULES)}"
                with self._lock:
                    unknown = [str(rid) for rid in ids if table.position(str(rid)) is None]
                if unknown:
                    return f"{key}: no {table.name} record has id {unknown[0]}"
        return None

    def _inject(self, fault_request: dict[str, Any]) -> None:
        self.faults.add(fault_request)
        if fault_request.get("expire_access_tokens"):
            self.issuer.expire_all()
        if fault_request.get("expire_page_tokens"):
            self.codec.expire_all()
        if fault_request.get("credits_spent_elsewhere"):
            self.ledger.spend(int(fault_request["credits_spent_elsewhere"]))
        for module, ids in (fault_request.get("touch_records") or {}).items():
            with self._lock:
                admin.touch_records(self.store, module, [str(record_id) for record_id in ids])
            self.stats.faults_served["touch_records"] += 1
        for module, ids in (fault_request.get("delete_records") or {}).items():
            with self._lock:
                admin.delete_records(
                    self.store, module, [str(record_id) for record_id in ids], "recycle"
                )
            self.stats.faults_served["delete_records"] += 1

    async def admin_stats(self, request: Request) -> Response:
        """`GET /__sandbox/stats`: calls and credits by endpoint since the last reset."""
        return JSONResponse(self.stats.snapshot(self.gate, self.ledger))

    async def admin_reset(self, request: Request) -> Response:
        """`POST /__sandbox/reset`: clear stats, credits spent and pending faults (not data)."""
        self.stats = Stats()
        self.faults = Faults()
        self.ledger = CreditLedger(self.ledger.daily_limit)
        self.gate.max_active = self.gate.active
        return JSONResponse({"reset": True})

    async def _admin(self, operation: Callable[..., Reply], *args: Any) -> Response:
        def run() -> Reply:
            with self._lock:
                try:
                    return operation(self.store, *args)
                except ZohoApiError as refused:
                    return admin.admin_error(refused.status, refused.message)

        return _respond(await run_in_threadpool(run))


# Credit and heaviness rules ---------------------------------------------------------------------


def _write_credits(request: Request, body: Any) -> int:
    return write_credits(_record_count(body))


def _bulk_credits(request: Request, body: Any) -> int:
    return BULK_READ_CREDITS


def _heavy_list(request: Request, body: Any) -> bool:
    # Zoho counts Get Records with sort_by or cvid against the sub-concurrency limit.
    return "sort_by" in request.query_params or "cvid" in request.query_params


def _heavy_write(request: Request, body: Any) -> bool:
    return _record_count(body) > HEAVY_WRITE_THRESHOLD


def _record_count(body: Any) -> int:
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return len(body["data"])
    return 1


# HTTP plumbing ----------------------------------------------------------------------------------


async def _json_body(request: Request) -> Any:
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    raw = await request.body()
    if not raw.strip():
        request.state.json_body = None
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid_data("the request body is not valid JSON") from None
    request.state.json_body = body
    return body


def _cached_body(request: Request) -> Any:
    return getattr(request.state, "json_body", None)


def _endpoint_name(template: str, request: Request) -> str:
    name = template.replace("{version}", str(request.path_params.get("version")))
    module = request.path_params.get("module")
    if module is not None:
        canonical = next((m for m in MODULES if m.lower() == module.lower()), module)
        name = name.replace("{module}", canonical)
    return name


def _too_many_requests() -> Reply:
    return Reply(429, error_body("TOO_MANY_REQUESTS", TOO_MANY_REQUESTS_MESSAGE))


def _respond(reply: Reply) -> Response:
    if reply.content is not None:
        return Response(
            reply.content,
            status_code=reply.status,
            media_type=reply.media_type,
            headers=reply.headers,
        )
    if reply.body is None:
        return Response(status_code=reply.status, headers=reply.headers)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


async def _zoho_http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return _respond(
            Reply(
                400,
                error_body(
                    "INVALID_REQUEST_METHOD",
                    "The http request method type is not a valid one",
                ),
            )
        )
    return _respond(not_found_url().reply())


def _utc_now() -> datetime:
    return datetime.now(UTC)
