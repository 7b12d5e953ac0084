"""HTTP plumbing for the Zoho CRM API: OAuth tokens, retries, the concurrency cap and usage counts.

Everything that touches the wire goes through `ZohoSession.call`. It adds the
`Zoho-oauthtoken` header, refreshes the access token once on 401 INVALID_TOKEN, retries 429 and
5xx answers with exponential backoff and full jitter (tenacity), holds a semaphore so that at
most `max_concurrency` calls are in flight, and counts calls and estimated API credits by kind.
No token, secret or refresh token is ever logged or put in an exception message.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
import tenacity
from requests.adapters import BaseAdapter, HTTPAdapter

from ct_pipeline.zoho.datacenters import Hosts
from ct_pipeline.zoho.token_store import SharedTokenStore, StoredToken

logger = logging.getLogger(__name__)

# The access token lives 1 hour (Zoho accounts docs, "access-token-expiry"); refresh a little
# before it runs out so a call never leaves with a token that expires in flight.
TOKEN_EXPIRY_MARGIN_SECONDS = 60.0
TOKEN_EXPIRY_MARGIN_FRACTION = 0.1
DEFAULT_TOKEN_LIFETIME_SECONDS = 3600.0

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Codes a 401 carries when the access token is expired or unknown (Kaizen #25; the v8 status
# page spells the second one AUTHENTICATION_FAILURE, older pages AUTHENTICATION_FAILED).
EXPIRED_TOKEN_CODES = frozenset(
    {"INVALID_TOKEN", "AUTHENTICATION_FAILURE", "AUTHENTICATION_FAILED"}
)
# The accounts server throttles refreshes (10 per 10 minutes per refresh token) with HTTP 400
# and error "Access Denied" / "too many requests continuously".
ACCOUNTS_THROTTLE_MARKERS = ("too many requests", "access denied")
CREDITS_REMAINING_HEADER = "X-API-CREDITS-REMAINING"
LOGGED_ERROR_TEXT_LIMIT = 200

# Process-wide cache of access tokens, keyed by a hash of (token URL, client id, refresh token):
# a sensor evaluated every 30 s builds a new resource each tick, and refreshing on each tick would
# run into the accounts server's 10-tokens-per-10-minutes limit.
_TOKEN_CACHE: dict[str, _AccessToken] = {}
_TOKEN_CACHE_LOCK = threading.Lock()
# One refresh at a time per cache key: a thread that waited finds the token the other one got.
_REFRESH_LOCKS: dict[str, threading.Lock] = {}


class ZohoError(Exception):
    """Base class of every error the Zoho client raises."""


class ZohoAuthError(ZohoError):
    """The accounts server refused the credentials, or the API refused the token."""


class ZohoScopeError(ZohoAuthError):
    """The refresh token was issued without a scope this call needs (OAUTH_SCOPE_MISMATCH)."""


class ZohoAPIError(ZohoError):
    """The CRM API answered with an error envelope (`status`, `code`, `message`, `details`)."""

    def __init__(
        self,
        *,
        method: str,
        path: str,
        status: int,
        code: str | None,
        message: str | None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        text = f"Zoho CRM {method} {path} failed: HTTP {status}"
        if code:
            text += f" {code}"
        if message:
            text += f": {message[:LOGGED_ERROR_TEXT_LIMIT]}"
        super().__init__(text)


class _RetryableAnswer(Exception):
    """An answer worth another attempt (429 or 5xx); carries the response for the last word."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


@dataclass(frozen=True)
class RetrySettings:
    """How hard to retry: attempts after the first, and the backoff bounds in seconds."""

    max_retries: int = 5
    initial_wait: float = 1.0
    max_wait: float = 60.0


@dataclass(frozen=True)
class Credentials:
    """The three OAuth values of a self-client or server-based client."""

    client_id: str
    client_secret: str
    refresh_token: str

    def __repr__(self) -> str:
        return "Credentials(<hidden>)"


@dataclass
class _AccessToken:
    value: str
    api_domain: str | None
    expires_at: float

    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at


class ZohoSession:
    """One authenticated, rate-aware connection to a Zoho CRM org."""

    def __init__(
        self,
        *,
        credentials: Credentials,
        hosts: Hosts,
        api_version: str,
        timeout: float,
        max_concurrency: int,
        retry: RetrySettings,
        token_store: SharedTokenStore | None = None,
    ) -> None:
        self._credentials = credentials
        self._token_store = token_store
        self.hosts = hosts
        self.api_version = api_version
        self._timeout = timeout
        self._retry = retry
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._http = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max_concurrency + 2, max_retries=0)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        self._cache_key = hashlib.sha256(
            "\n".join((hosts.token_url, credentials.client_id, credentials.refresh_token)).encode()
        ).hexdigest()
        with _TOKEN_CACHE_LOCK:
            self._token_lock = _REFRESH_LOCKS.setdefault(self._cache_key, threading.Lock())
        self._usage_lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._credits: Counter[str] = Counter()
        self._credits_remaining: int | None = None

    # ----------------------------------------------------------------------------- public calls

    def call(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        credits: int = 1,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        also_accept: frozenset[int] = frozenset(),
    ) -> requests.Response:
        """Send an authenticated call to the CRM API and return its (non-error) response.

        `path` is relative to the API domain (`/crm/v8/Contacts`) or an absolute URL.
        Statuses below 400 are returned (200, 201, 202, 204, 207, 304), and those in
        `also_accept`; any other raises `ZohoAPIError` after retries. `idempotent=False` limits
        retries to answers that prove the call was not processed (429, connect failures), so a
        retried POST cannot act twice.
        """
        token = self._access_token()
        response = self._send_with_retries(
            method, path, token, kind, params, json, headers, idempotent
        )
        if response.status_code == 401 and _error_code(response) in EXPIRED_TOKEN_CODES:
            logger.info(
                "Zoho access token rejected on %s %s; refreshing once", method, _path_only(path)
            )
            self._forget_token(token)
            token = self._access_token()
            response = self._send_with_retries(
                method, path, token, kind, params, json, headers, idempotent
            )
        if response.status_code >= 400 and response.status_code not in also_accept:
            raise self.error_for(method, path, response)
        if response.status_code < 400:
            # A refused batch (400 with per-record errors) wrote nothing; Zoho does not say it
            # is charged, so it is not counted (as the sandbox does).
            self._count_credits(kind, credits, response)
        return response

    def api_path(self, *parts: str) -> str:
        """`/crm/{version}/{parts...}`."""
        return "/".join(("", "crm", self.api_version, *parts))

    def bulk_path(self, *parts: str) -> str:
        """`/crm/bulk/{version}/read/{parts...}`."""
        return "/".join(("", "crm", "bulk", self.api_version, "read", *parts))

    def usage(self) -> dict[str, Any]:
        """Calls and estimated credits spent through this session, by kind of call."""
        with self._usage_lock:
            return {
                "calls": dict(self._calls),
                "credits": dict(self._credits),
                "total_calls": sum(self._calls.values()),
                "total_credits": sum(self._credits.values()),
                "credits_remaining": self._credits_remaining,
            }

    def mount(self, prefix: str, adapter: BaseAdapter) -> None:
        """Send calls to URLs starting with `prefix` through `adapter` (as `Session.mount`)."""
        self._http.mount(prefix, adapter)

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    # ---------------------------------------------------------------------------------- tokens

    def _access_token(self) -> _AccessToken:
        with _TOKEN_CACHE_LOCK:
            cached = _TOKEN_CACHE.get(self._cache_key)
        if cached is not None and cached.fresh():
            return cached
        with self._token_lock:
            with _TOKEN_CACHE_LOCK:
                cached = _TOKEN_CACHE.get(self._cache_key)
            if cached is not None and cached.fresh():
                return cached
            token = self._shared_or_new_token()
            with _TOKEN_CACHE_LOCK:
                _TOKEN_CACHE[self._cache_key] = token
            return token

    def _shared_or_new_token(self) -> _AccessToken:
        """A token another process stored, or a new one (stored for the others)."""
        store = self._token_store
        if store is None:
            return self._refresh_token()
        with store.locked(self._cache_key):
            stored = store.read(self._cache_key)
            # Stored tokens carry the same safety margin as fresh ones: see _refresh_token.
            if stored is not None and stored.seconds_left() > 0:
                return _AccessToken(
                    value=stored.value,
                    api_domain=stored.api_domain,
                    expires_at=time.monotonic() + stored.seconds_left(),
                )
            token = self._refresh_token()
            store.write(
                self._cache_key,
                StoredToken(
                    value=token.value,
                    api_domain=token.api_domain,
                    expires_at_epoch=time.time() + (token.expires_at - time.monotonic()),
                ),
            )
            return token

    def _forget_token(self, token: _AccessToken) -> None:
        with _TOKEN_CACHE_LOCK:
            if _TOKEN_CACHE.get(self._cache_key) is token:
                del _TOKEN_CACHE[self._cache_key]
        if self._token_store is not None:
            self._token_store.forget(self._cache_key, token.value)

    def _refresh_token(self) -> _AccessToken:
        form = {
            "grant_type": "refresh_token",
            "client_id": self._credentials.client_id,
            "client_secret": self._credentials.client_secret,
            "refresh_token": self._credentials.refresh_token,
        }
        url = self.hosts.token_url

        def post_once() -> requests.Response:
            self._count_call("token")
            try:
                response = self._http.post(url, data=form, timeout=self._timeout)
            except requests.RequestException as error:
                raise ZohoAuthError(
                    f"could not reach the Zoho accounts server {self.hosts.accounts_url} "
                    f"({type(error).__name__}); check ZOHO_DATA_CENTER or ZOHO_ACCOUNTS_URL"
                ) from None
            if response.status_code in RETRYABLE_STATUSES or _is_accounts_throttle(response):
                raise _RetryableAnswer(response)
            return response

        started = time.monotonic()
        try:
            response = self._retrying(idempotent=True)(post_once)
        except _RetryableAnswer as exhausted:
            response = exhausted.response
        body = _json_or_none(response)
        if not isinstance(body, dict) or "access_token" not in body:
            if _is_accounts_throttle(response):
                raise ZohoAuthError(
                    f"Zoho accounts server {self.hosts.accounts_url} refuses new access tokens "
                    "for now (it allows 10 per 10 minutes per refresh token): wait a few "
                    "minutes; several processes sharing ZOHO_REFRESH_TOKEN each refresh their own"
                )
            raise ZohoAuthError(self._token_failure_message(response.status_code, body))
        lifetime = float(body.get("expires_in") or body.get("expires_in_sec") or 0)
        if lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME_SECONDS
        margin = min(TOKEN_EXPIRY_MARGIN_SECONDS, lifetime * TOKEN_EXPIRY_MARGIN_FRACTION)
        return _AccessToken(
            value=str(body["access_token"]),
            api_domain=body.get("api_domain"),
            expires_at=started + lifetime - margin,
        )

    def _token_failure_message(self, status: int, body: Any) -> str:
        host = self.hosts.accounts_url
        centre = self.hosts.data_center
        error = str(body.get("error")) if isinstance(body, dict) and body.get("error") else None
        where = (
            f"ZOHO_DATA_CENTER ({centre!r}) or ZOHO_ACCOUNTS_URL must name the data centre "
            "the client and token were created in"
        )
        if error == "invalid_client":
            return (
                f"Zoho accounts server {host} rejected the client (invalid_client): check "
                f"ZOHO_CLIENT_ID and ZOHO_CLIENT_SECRET; also {where}"
            )
        if error in ("invalid_code", "invalid_grant", "invalid_token"):
            return (
                f"Zoho accounts server {host} rejected the refresh token ({error}): check "
                f"ZOHO_REFRESH_TOKEN (revoked, mistyped or expired); also {where}"
            )
        detail = error[:LOGGED_ERROR_TEXT_LIMIT] if error else f"HTTP {status} without a token"
        return (
            f"Zoho accounts server {host} did not issue an access token ({detail}): check "
            f"ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET and ZOHO_REFRESH_TOKEN; also {where}"
        )

    def _api_url(self, path: str, token: _AccessToken) -> str:
        if path.startswith(("http://", "https://")):
            return path
        domain = self.hosts.api_domain
        if not self.hosts.api_domain_fixed and token.api_domain:
            domain = str(token.api_domain).rstrip("/")
        return domain + path

    # --------------------------------------------------------------------------------- sending

    def _send_with_retries(
        self,
        method: str,
        path: str,
        token: _AccessToken,
        kind: str,
        params: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        idempotent: bool,
    ) -> requests.Response:
        url = self._api_url(path, token)
        all_headers = {"Authorization": f"Zoho-oauthtoken {token.value}", **(headers or {})}

        def send_once() -> requests.Response:
            self._count_call(kind)
            with self._slots:
                response = self._http.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    headers=all_headers,
                    timeout=self._timeout,
                )
            retryable = response.status_code == 429 or (
                idempotent and response.status_code in RETRYABLE_STATUSES
            )
            if retryable:
                raise _RetryableAnswer(response)
            return response

        try:
            return self._retrying(idempotent)(send_once)
        except _RetryableAnswer as exhausted:
            return exhausted.response
        except requests.RequestException as error:
            raise ZohoError(
                f"Zoho CRM {method} {_path_only(path)} failed after {self._retry.max_retries} "
                f"retries: {type(error).__name__}"
            ) from error

    def _retrying(self, idempotent: bool) -> tenacity.Retrying:
        network_errors: tuple[type[BaseException], ...] = (requests.ConnectTimeout,)
        if idempotent:
            network_errors = (requests.ConnectionError, requests.Timeout)
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((_RetryableAnswer, *network_errors)),
            wait=_BackoffWithRetryAfter(self._retry.initial_wait, self._retry.max_wait),
            stop=tenacity.stop_after_attempt(self._retry.max_retries + 1),
            before_sleep=_log_retry,
            reraise=True,
        )

    # ----------------------------------------------------------------------------------- usage

    def _count_call(self, kind: str) -> None:
        with self._usage_lock:
            self._calls[kind] += 1

    def _count_credits(self, kind: str, credits: int, response: requests.Response) -> None:
        remaining = response.headers.get(CREDITS_REMAINING_HEADER)
        with self._usage_lock:
            self._credits[kind] += credits
            if remaining is not None and remaining.strip().isdigit():
                self._credits_remaining = int(remaining)

    def error_for(self, method: str, path: str, response: requests.Response) -> ZohoError:
        """The exception that an error response of `method path` stands for."""
        body = _json_or_none(response)
        code = message = None
        details: Mapping[str, Any] = {}
        if isinstance(body, dict):
            code = body.get("code")
            message = body.get("message")
            details = body.get("details") or {}
        if response.status_code == 401:
            error_type = ZohoScopeError if code == "OAUTH_SCOPE_MISMATCH" else ZohoAuthError
            return error_type(_auth_failure_message(method, path, code, self.hosts))
        return ZohoAPIError(
            method=method,
            path=_path_only(path),
            status=response.status_code,
            code=code,
            message=message,
            details=details if isinstance(details, Mapping) else {},
        )


def clear_token_cache() -> None:
    """Forget every cached access token of this process (after rotating credentials, or
    between tests whose emulators may reuse a port)."""
    with _TOKEN_CACHE_LOCK:
        _TOKEN_CACHE.clear()


def credits_for_records(record_count: int) -> int:
    """Credits of an insert/update/upsert: 1 per 10 records (Zoho API limits, credit table)."""
    return max(1, math.ceil(record_count / 10))


class _BackoffWithRetryAfter(tenacity.wait.wait_base):
    """Full-jitter exponential backoff; a `Retry-After` header, when sent, sets a floor."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._jitter = tenacity.wait_random_exponential(multiplier=initial, max=maximum)
        self._maximum = maximum

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = self._jitter(retry_state)
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, _RetryableAnswer):
            retry_after = error.response.headers.get("Retry-After", "")
            if retry_after.strip().isdigit():
                wait = max(wait, min(float(retry_after), self._maximum))
        return wait


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    reason = str(error) if isinstance(error, _RetryableAnswer) else type(error).__name__
    sleep = retry_state.next_action.sleep if retry_state.next_action else 0.0
    logger.warning(
        "Zoho call attempt %d failed (%s); retrying in %.2fs",
        retry_state.attempt_number,
        reason,
        sleep,
    )


def _auth_failure_message(method: str, path: str, code: str | None, hosts: Hosts) -> str:
    if code == "OAUTH_SCOPE_MISMATCH":
        return (
            f"Zoho CRM {method} {_path_only(path)} needs an OAuth scope the refresh token lacks "
            "(OAUTH_SCOPE_MISMATCH): issue ZOHO_REFRESH_TOKEN with ZohoCRM.modules.ALL, "
            "ZohoCRM.settings.fields.READ, ZohoCRM.bulk.read and ZohoCRM.modules.notes.ALL"
        )
    return (
        f"Zoho CRM {method} {_path_only(path)} refused a freshly issued access token "
        f"({code or 'HTTP 401'}): check that ZOHO_DATA_CENTER ({hosts.data_center!r}) and "
        "ZOHO_API_DOMAIN match the data centre of ZOHO_REFRESH_TOKEN"
    )


def _error_code(response: requests.Response) -> str | None:
    body = _json_or_none(response)
    if isinstance(body, dict):
        code = body.get("code")
        return str(code) if code is not None else None
    return None


def _is_accounts_throttle(response: requests.Response) -> bool:
    if response.status_code != 400:
        return False
    body = _json_or_none(response)
    if not isinstance(body, dict):
        return False
    text = f"{body.get('error', '')} {body.get('error_description', '')}".lower()
    return any(marker in text for marker in ACCOUNTS_THROTTLE_MARKERS)


def _json_or_none(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _path_only(path: str) -> str:
    """The path of a URL without host or query string, safe to log."""
    if "://" in path:
        path = "/" + path.split("://", 1)[1].split("/", 1)[-1]
    return path.split("?", 1)[0]
