"""The webhook receiver: an ASGI app that authenticates, checks and stores CleverTap deliveries.

CleverTap waits only 3 to 5 seconds for an answer and retries once or twice
(research/clevertap.md §6), so the receiver does no CRM work: it checks the shared secret, the
size and the shape, stores the delivery in the warehouse inbox in one transaction, and only then
answers 200. The write-back job applies the inbox to Zoho later.

CleverTap documents no signature for webhooks, only optional HTTP Basic authentication; the
shared secret `CT_WEBHOOK_TOKEN` is accepted as the Basic password or as a bearer token.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ct_pipeline.config import SyncConfig, load_sync_config
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.webhooks.inbox import DEFAULT_RETRY_WINDOW, ensure_inbox_tables, store_delivery
from ct_pipeline.webhooks.payload import WebhookPayloadError, parse_delivery

logger = logging.getLogger(__name__)

TOKEN_ENV_VAR = "CT_WEBHOOK_TOKEN"
WEBHOOK_PATH = "/webhooks/clevertap"
HEALTH_PATH = "/health"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
# A shorter shared secret can be guessed; `secrets.token_urlsafe(32)` gives 43 characters.
MIN_TOKEN_LENGTH = 16
# Requests handled at once before uvicorn answers 503: storing a delivery is one short
# transaction, so more than this in flight means the warehouse is struggling.
MAX_CONCURRENT_REQUESTS = 64


class WebhookConfigError(ValueError):
    """The receiver cannot start: its secret or settings are missing or unusable."""


def create_webhook_app(
    warehouse: WarehouseResource,
    token: str,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    event_key: str = "event",
    retry_window: timedelta = DEFAULT_RETRY_WINDOW,
    clock: Callable[[], datetime] | None = None,
) -> Starlette:
    """The receiver app: `POST /webhooks/clevertap` stores deliveries, `GET /health` answers.

    Args:
        warehouse: where the inbox tables live (created here if missing).
        token: the shared secret a request must present (bearer token or Basic password).
        max_body_bytes: larger bodies get 413, judged from Content-Length before reading and
            while reading.
        event_key: the campaign key-value pair that names the event (`writeback.event_key`).
        retry_window: a copy of an event without a time of its own received this soon after
            the first is a retry (`writeback.retry_window_seconds`).
        clock: when a delivery is received (tz-aware UTC); defaults to the real clock.
    """
    if not token or len(token) < MIN_TOKEN_LENGTH:
        raise WebhookConfigError(
            f"{TOKEN_ENV_VAR} is missing or shorter than {MIN_TOKEN_LENGTH} characters: set it "
            "to a random secret, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if max_body_bytes < 1:
        raise WebhookConfigError("max_body_bytes must be a positive number of bytes")
    ensure_inbox_tables(warehouse)
    receiver = _Receiver(
        warehouse,
        token.encode("utf-8"),
        max_body_bytes,
        event_key,
        retry_window,
        clock or _utc_now,
    )
    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, receiver.receive, methods=["POST"]),
            Route(HEALTH_PATH, receiver.health, methods=["GET"]),
        ]
    )


def serve_webhooks(
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    *,
    warehouse: WarehouseResource | None = None,
    config: SyncConfig | None = None,
    token: str | None = None,
) -> None:
    """Serve the receiver with uvicorn until stopped (the `ct-pipeline webhook-server` command).

    The secret comes from `$CT_WEBHOOK_TOKEN` unless given, the warehouse from
    `$CT_WAREHOUSE_URL`, and the body limit and event key from the sync configuration.
    """
    settings = (config or load_sync_config()).writeback
    app = create_webhook_app(
        warehouse or WarehouseResource(),
        token if token is not None else os.environ.get(TOKEN_ENV_VAR, ""),
        max_body_bytes=settings.max_body_bytes,
        event_key=settings.event_key,
        retry_window=timedelta(seconds=settings.retry_window_seconds),
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        limit_concurrency=MAX_CONCURRENT_REQUESTS,
        # The first byte of the answer must leave within CleverTap's 3 s; idle sockets go soon.
        timeout_keep_alive=5,
        lifespan="off",
    )


class _BodyTooLarge(Exception):
    pass


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Receiver:
    def __init__(
        self,
        warehouse: WarehouseResource,
        token: bytes,
        max_body_bytes: int,
        event_key: str,
        retry_window: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.warehouse = warehouse
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.event_key = event_key
        self.retry_window = retry_window
        self.clock = clock

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def receive(self, request: Request) -> Response:
        if not self._authorised(request.headers.get("authorization")):
            return _refusal(
                401,
                f"missing or wrong credentials: send the shared secret ({TOKEN_ENV_VAR}) as a "
                "bearer token or as the Basic authentication password",
                headers={"WWW-Authenticate": 'Basic realm="ct_pipeline webhooks"'},
            )
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return _refusal(400, "the Content-Length header is not a number")
            if int(declared) > self.max_body_bytes:
                return self._too_large()
        try:
            body = await self._read_body(request)
        except _BodyTooLarge:
            return self._too_large()
        except ClientDisconnect:
            return _refusal(400, "the client disconnected before the body was complete")

        try:
            delivery = parse_delivery(body, self.event_key)
        except WebhookPayloadError as problem:
            return _refusal(400, str(problem))

        try:
            stored = await run_in_threadpool(
                store_delivery, self.warehouse, delivery, body, self.clock(), self.retry_window
            )
        except Exception as error:  # noqa: BLE001 - any storage failure must become a 503
            # The database error's text can carry the row's values: log its type only.
            logger.error("storing a webhook delivery failed: %s", type(error).__name__)
            return _refusal(503, "the delivery could not be stored; send it again later")
        logger.info(
            "webhook delivery %s stored: %d events, %d new%s",
            stored.delivery_id,
            stored.events,
            stored.new_events,
            " (test payload)" if delivery.is_test else "",
        )
        return JSONResponse(
            {
                "status": "stored",
                "delivery_id": stored.delivery_id,
                "test": delivery.is_test,
                "events": stored.events,
                "new_events": stored.new_events,
                "duplicates": stored.duplicates,
            }
        )

    def _authorised(self, header: str | None) -> bool:
        presented = _presented_secret(header)
        # compare_digest takes time independent of where the values differ.
        return presented is not None and hmac.compare_digest(presented, self.token)

    async def _read_body(self, request: Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> Response:
        return _refusal(
            413,
            f"the body is larger than {self.max_body_bytes} bytes: send fewer profiles per "
            "delivery, or raise writeback.max_body_bytes",
        )


def _presented_secret(header: str | None) -> bytes | None:
    """The secret in an Authorization header: the bearer token or the Basic password."""
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials.encode("utf-8")
    if scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return None
        _, separator, password = decoded.partition(b":")
        return password if separator else None
    return None


def _refusal(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"status": "refused", "error": reason}
    return JSONResponse(body, status_code=status, headers=headers)
