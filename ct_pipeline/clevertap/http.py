"""HTTP plumbing for CleverTap's server API: hosts per region, auth headers, limits and retries.

Everything here knows about HTTP and nothing about profiles or events. Callers get an
`ApiResponse` for every request, even one that never got an answer, so that they can report an
outcome per record instead of raising half-way through a batch.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import requests
import tenacity
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.exceptions import NewConnectionError

logger = logging.getLogger(__name__)

# Hosts from CleverTap's "Common API Components" page. Europe is the documented default host
# `api.clevertap.com`; CleverTap's own Node client calls the same region `eu1`. South Korea
# (`sk1`) is missing from the current page but CleverTap's Go uploader, Segment (its default) and
# RudderStack all send to it.
REGION_HOSTS: dict[str, str] = {
    "in1": "https://in1.api.clevertap.com",
    "sg1": "https://sg1.api.clevertap.com",
    "us1": "https://us1.api.clevertap.com",
    "aps3": "https://aps3.api.clevertap.com",
    "mec1": "https://mec1.api.clevertap.com",
    "eu1": "https://api.clevertap.com",
    "sk1": "https://sk1.api.clevertap.com",
}
REGIONS: tuple[str, ...] = tuple(REGION_HOSTS)
DEFAULT_REGION = "in1"

UPLOAD_PATH = "/1/upload"
PROFILE_PATH = "/1/profile.json"
EXTERNAL_TRIGGER_PATH = "/1/send/externaltrigger.json"

ACCOUNT_ID_HEADER = "X-CleverTap-Account-Id"
PASSCODE_HEADER = "X-CleverTap-Passcode"

# Upload pages (upload-events-api, upload-user-profiles-api): "A maximum of 1000 ... records can
# be sent per API call". Older pages and the Node client say 100; the current figure is 1,000.
UPLOAD_MAX_RECORDS = 1000
# Same pages and api-request-limit: 15 concurrent upload requests per account, then HTTP 429.
UPLOAD_MAX_CONCURRENT_REQUESTS = 15
# api-request-limit: most other APIs (profile lookup, external trigger, ...) allow 3 at once.
OTHER_MAX_CONCURRENT_REQUESTS = 3

# 429 is "too many concurrent requests" and no Retry-After header is documented, so backing off
# is the client's job. 5xx covers 503 "system is unavailable, try again later".
TOO_MANY_REQUESTS = 429
FIRST_SERVER_ERROR = 500
# 503 is the one server error documented as "try again later", i.e. nothing was done.
UNAVAILABLE = 503
AUTH_FAILURE_STATUSES = frozenset({401, 403})

# urllib3 logs each request line with its query string at DEBUG, and URLs on retries and broken
# connections; a lookup's query holds an identity (often a phone number) or an email.
URLLIB3_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.util.retry",
)
REDACTED_QUERY_VALUE = "=[redacted]"
_QUERY = re.compile(r"\?[^\s\"']+")
_QUERY_VALUE = re.compile(r"=[^&#]*")


@dataclass(frozen=True)
class RetryRule:
    """How often and how patiently a request is retried.

    A 429, a 503 and a connection that never opened are always retried: CleverTap did nothing.
    Other 5xx answers, timeouts and connections dropped mid-request are *uncertain*: CleverTap may
    have acted. They are retried only with `retry_uncertain`, which suits idempotent requests.
    """

    max_retries: int
    backoff_base_seconds: float
    backoff_cap_seconds: float
    retry_uncertain: bool = True


@dataclass(frozen=True)
class ApiResponse:
    """What one logical request ended with, after its retries.

    `status` is None when no HTTP answer arrived at all (connection error or timeout); then
    `transport_error` says what happened, without the URL (its query may hold an identity).
    `uncertain` is True when some attempt failed in a way that CleverTap may have acted on.
    """

    status: int | None
    body: Any
    attempts: int
    transport_error: str | None = None
    uncertain: bool = False

    @property
    def ok(self) -> bool:
        """True for an HTTP 2xx answer."""
        return self.status is not None and 200 <= self.status < 300

    def describe_failure(self) -> str:
        """A one-line account of a failed request that is safe to log and store."""
        tries = f"after {self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        if self.status is None:
            return f"{self.transport_error} ({tries})"
        detail = ""
        if isinstance(self.body, Mapping):
            error = self.body.get("error")
            code = self.body.get("code")
            detail = f": {error}" if error else ""
            detail += f" (code {code})" if code is not None else ""
        elif self.body is None:
            detail = " with a body that is not JSON"
        return f"HTTP {self.status}{detail} ({tries})"


class QueryValuesRedacted(logging.Filter):
    """Replaces the values of URL query strings in a log record's arguments with [redacted]."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; every record is kept."""
        if isinstance(record.args, tuple):
            record.args = tuple(_without_query_values(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _without_query_values(arg) for key, arg in record.args.items()}
        elif isinstance(record.msg, str) and not record.args:
            record.msg = _without_query_values(record.msg)
        return True


_URLLIB3_REDACTION = QueryValuesRedacted()


def hide_query_values_from_urllib3_logs() -> None:
    """Attach the query redaction to urllib3's loggers (once: a filter is added only once)."""
    for name in URLLIB3_LOGGERS:
        logging.getLogger(name).addFilter(_URLLIB3_REDACTION)


def _without_query_values(value: Any) -> Any:
    if not isinstance(value, str) or "?" not in value:
        return value
    return _QUERY.sub(lambda query: _QUERY_VALUE.sub(REDACTED_QUERY_VALUE, query[0]), value)


def encode_json(body: Any) -> bytes:
    """A request body as compact UTF-8 JSON. Records reach here validated: no NaN or infinity
    (which JSON cannot carry) is left in them."""
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def base_url_for(region: str, api_url: str | None = None) -> str:
    """The API base URL for a region, or `api_url` when one is given (the sandbox uses it)."""
    if api_url:
        return api_url.rstrip("/")
    return REGION_HOSTS[check_region(region)]


def check_region(region: str) -> str:
    """Return `region` if CleverTap has it, else raise a ValueError listing the valid ones."""
    if region not in REGION_HOSTS:
        raise ValueError(
            f"CLEVERTAP_REGION {region!r} is not a region; use one of {', '.join(REGIONS)}"
        )
    return region


class CleverTapTransport:
    """A pooled, authenticated HTTP session with per-endpoint concurrency caps and retries.

    Safe to share between threads: the connection pool is, and the counters sit behind a lock.
    """

    def __init__(
        self,
        *,
        base_url: str,
        account_id: str,
        passcode: str,
        timeout_seconds: float,
        upload_concurrency: int,
        other_concurrency: int,
        adapters: Sequence[tuple[str, BaseAdapter]] = (),
    ) -> None:
        self.base_url = base_url
        self._timeout_seconds = timeout_seconds
        hide_query_values_from_urllib3_logs()
        self._session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=1,
            pool_maxsize=upload_concurrency + other_concurrency,
            max_retries=0,
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        for prefix, custom in adapters:
            self.mount(prefix, custom)
        self._session.headers.update(
            {
                ACCOUNT_ID_HEADER: account_id,
                PASSCODE_HEADER: passcode,
                "Accept": "application/json",
            }
        )
        self._upload_slots = threading.BoundedSemaphore(upload_concurrency)
        self._other_slots = threading.BoundedSemaphore(other_concurrency)
        self._lock = threading.Lock()
        self._attempts_by_path: Counter[str] = Counter()

    def request(
        self,
        method: str,
        path: str,
        rule: RetryRule,
        *,
        json_body: Any = None,
        payload: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> ApiResponse:
        """Send one request, retrying per `rule`; never raises for HTTP or network failures.

        The JSON body is `json_body`, or `payload` when the caller has encoded it already.
        """
        data = encode_json(json_body) if json_body is not None else payload
        headers = {}
        if data is not None:
            headers["Content-Type"] = "application/json"
        slots = self._upload_slots if path == UPLOAD_PATH else self._other_slots
        attempts = 0
        uncertain = False

        def attempt() -> ApiResponse:
            nonlocal attempts, uncertain
            attempts += 1
            with self._lock:
                self._attempts_by_path[path] += 1
            try:
                with slots:
                    response = self._session.request(
                        method,
                        self.base_url + path,
                        data=data,
                        params=params,
                        headers=headers,
                        timeout=self._timeout_seconds,
                    )
            except requests.RequestException as exc:
                uncertain = uncertain or not _never_reached_server(exc)
                raise
            status = response.status_code
            uncertain = uncertain or _status_is_uncertain(status)
            answer = ApiResponse(status, _json_or_none(response), attempts, uncertain=uncertain)
            if status in (TOO_MANY_REQUESTS, UNAVAILABLE) or _status_is_uncertain(status):
                raise _RetryableStatus(answer, _retry_after_seconds(response))
            return answer

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(rule.max_retries + 1),
            wait=_BackoffWait(rule),
            retry=tenacity.retry_if_exception(lambda exc: _may_retry(exc, rule)),
            before_sleep=lambda state: _log_retry(method, path, state, rule),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _RetryableStatus as exhausted:
            return exhausted.response
        except requests.RequestException as exc:
            return ApiResponse(
                None,
                None,
                attempts,
                transport_error=_describe_exception(exc),
                uncertain=uncertain,
            )

    def mount(self, prefix: str, adapter: BaseAdapter) -> None:
        """Send requests whose URL starts with `prefix` through `adapter` (`Session.mount`)."""
        self._session.mount(prefix, adapter)

    def usage(self) -> dict[str, int]:
        """HTTP attempts made so far, retries included, by endpoint path."""
        with self._lock:
            return dict(self._attempts_by_path)

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()


class _RetryableStatus(Exception):
    """An HTTP answer that the rule says to retry (429 or 5xx)."""

    def __init__(self, response: ApiResponse, retry_after_seconds: float | None) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response
        self.retry_after_seconds = retry_after_seconds


class _BackoffWait(tenacity.wait.wait_base):
    """Exponential backoff with full jitter, capped; a Retry-After header wins when present."""

    def __init__(self, rule: RetryRule) -> None:
        self._rule = rule

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        cap = self._rule.backoff_cap_seconds
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, _RetryableStatus) and failure.retry_after_seconds is not None:
            return min(failure.retry_after_seconds, cap)
        ceiling = self._rule.backoff_base_seconds * 2 ** (retry_state.attempt_number - 1)
        return random.uniform(0, min(ceiling, cap))


def _may_retry(exc: BaseException, rule: RetryRule) -> bool:
    if isinstance(exc, _RetryableStatus):
        return rule.retry_uncertain or exc.response.status in (TOO_MANY_REQUESTS, UNAVAILABLE)
    if isinstance(exc, requests.RequestException):
        return rule.retry_uncertain or _never_reached_server(exc)
    return False


def _status_is_uncertain(status: int) -> bool:
    return status >= FIRST_SERVER_ERROR and status != UNAVAILABLE


def _never_reached_server(exc: requests.RequestException) -> bool:
    """True when the request cannot have been received: the connection never opened."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        cause = exc.args[0] if exc.args else None
        return isinstance(getattr(cause, "reason", cause), NewConnectionError)
    return False


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _describe_exception(exc: requests.RequestException) -> str:
    # The exception text embeds the URL, whose query may carry an email or a phone number.
    kind = type(exc).__name__
    if isinstance(exc, requests.Timeout):
        return f"{kind}: CleverTap did not answer in time"
    if isinstance(exc, requests.ConnectionError):
        return f"{kind}: could not reach CleverTap"
    return f"{kind}: the request could not be sent"


def _log_retry(method: str, path: str, state: tenacity.RetryCallState, rule: RetryRule) -> None:
    failure = state.outcome.exception() if state.outcome else None
    if isinstance(failure, _RetryableStatus):
        reason = f"HTTP {failure.response.status}"
    else:
        reason = type(failure).__name__
    wait = state.next_action.sleep if state.next_action else 0.0
    logger.warning(
        "CleverTap %s %s failed with %s; retry %d of %d in %.2fs",
        method,
        path,
        reason,
        state.attempt_number,
        rule.max_retries,
        wait,
    )
