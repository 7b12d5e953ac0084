"""Zoho's API limits as the emulator enforces them, injected faults, and the call statistics.

Sources (research/zoho.md §7): concurrency per org is 5/10/15/20/25 active calls by edition
(Free/Standard/Professional/Enterprise/Ultimate) with a sub-concurrency of 10 for heavy calls
(Get Records with `sort_by`/`cvid`, writes of more than 10 records); credits are counted per call
over a rolling 24 hours; going past either answers 429 TOO_MANY_REQUESTS.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

EDITION_CONCURRENCY = {
    "free": 5,
    "standard": 10,
    "professional": 15,
    "enterprise": 20,
    "ultimate": 25,
}
DEFAULT_CONCURRENCY = EDITION_CONCURRENCY["enterprise"]
HEAVY_CONCURRENCY = 10
HEAVY_WRITE_THRESHOLD = 10
CREDIT_WINDOW_SECONDS = 24 * 3600
# X-API-CREDITS-REMAINING is sent once half of the day's credits are used (api-limits page).
CREDITS_HEADER_FRACTION = 0.5

# Credits per call (research/zoho.md §2, §4, §6): 1 per call unless listed; deleted-record ids 2;
# writes 1 per 10 records; Bulk Read initialise 50.
DELETED_RECORDS_CREDITS = 2
BULK_READ_CREDITS = 50
RECORDS_PER_WRITE_CREDIT = 10

TOO_MANY_REQUESTS_MESSAGE = "too many requests. please try again after some time"


def write_credits(record_count: int) -> int:
    """Credits for an insert/update/upsert or note batch: one per ten records, at least one."""
    return max(1, math.ceil(record_count / RECORDS_PER_WRITE_CREDIT))


class ConcurrencyGate:
    """Counts calls in flight; refuses a call that would go past the org's limits."""

    def __init__(self, limit: int, heavy_limit: int) -> None:
        self.limit = limit
        self.heavy_limit = heavy_limit
        self.active = 0
        self.active_heavy = 0
        self.max_active = 0

    def enter(self, heavy: bool) -> bool:
        """Take a slot; False when the limit (or the heavy sub-limit) is already reached."""
        if self.active >= self.limit or (heavy and self.active_heavy >= self.heavy_limit):
            return False
        self.active += 1
        self.active_heavy += int(heavy)
        self.max_active = max(self.max_active, self.active)
        return True

    def leave(self, heavy: bool) -> None:
        """Give the slot back."""
        self.active -= 1
        self.active_heavy -= int(heavy)


class CreditLedger:
    """API credits spent over a rolling 24 hours, with an optional daily allowance."""

    def __init__(self, daily_limit: int | None) -> None:
        self.daily_limit = daily_limit
        self._spent: deque[tuple[float, int]] = deque()
        self._in_window = 0

    def used(self) -> int:
        """Credits spent in the last 24 hours."""
        horizon = time.monotonic() - CREDIT_WINDOW_SECONDS
        while self._spent and self._spent[0][0] < horizon:
            self._in_window -= self._spent.popleft()[1]
        return self._in_window

    def can_spend(self, credits: int) -> bool:
        """Whether the allowance still covers `credits`."""
        return self.daily_limit is None or self.used() + credits <= self.daily_limit

    def spend(self, credits: int) -> None:
        """Record credits spent now."""
        if credits:
            self._spent.append((time.monotonic(), credits))
            self._in_window += credits

    def remaining_header(self) -> dict[str, str]:
        """`X-API-CREDITS-REMAINING` once half of the allowance is used, as Zoho sends it."""
        if self.daily_limit is None:
            return {}
        used = self.used()
        if used < self.daily_limit * CREDITS_HEADER_FRACTION:
            return {}
        return {"X-API-CREDITS-REMAINING": str(max(0, self.daily_limit - used))}


FAULT_KEYS = (
    "too_many_requests",
    "server_errors",
    "server_error_status",
    "slow_responses",
    "slow_seconds",
    "expire_access_tokens",
    "expire_page_tokens",
    "after_calls",
    "serve_values",
    "duplicate_in_pages",
    "lost_answers",
    "bulk_job_failures",
    "touch_records",
    "delete_records",
    "credits_spent_elsewhere",
)
COUNTED_FAULT_KEYS = (
    "too_many_requests",
    "server_errors",
    "slow_responses",
    "after_calls",
    "duplicate_in_pages",
    "lost_answers",
    "bulk_job_failures",
    "credits_spent_elsewhere",
)
SERVER_ERROR_STATUSES = (500, 502, 503, 504)


@dataclass
class Faults:
    """Faults waiting to hit the next CRM API calls.

    A request with `after_calls: N` is armed instead: N more CRM calls are answered normally and
    the (N+1)th is the first to meet it, so a test can land a fault in the middle of a read
    without racing it.

    Two faults change what is served rather than how: `serve_values` ({record id: {field:
    value}}) replaces those fields of that record in every answer that carries it, with any JSON
    value, even one Zoho would never store (a number for a text field, a megabyte of text);
    `duplicate_in_pages: N` repeats the first record of each of the next N pages at its end.

    `lost_answers: N`: the next N calls that succeed are carried out (and charged), but answered
    500, as when an answer is lost on its way back. `bulk_job_failures: N`: the next N Bulk
    Read jobs end in state FAILURE. `touch_records` ({module: [ids]}) edits those records now,
    as a CRM user would, moving their Modified_Time (with `after_calls`, in the middle of a
    read); `delete_records` ({module: [ids]}) deletes them into the recycle bin.
    `credits_spent_elsewhere: N` spends N of the day's credits, as other apps of the
    org do.
    """

    too_many_requests: int = 0
    server_errors: int = 0
    server_error_status: int = 500
    slow_responses: int = 0
    slow_seconds: float = 0.0
    armed: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    serve_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicate_in_pages: int = 0
    lost_answers: int = 0
    bulk_job_failures: int = 0

    def arm(self, request: dict[str, Any]) -> None:
        """Hold a faults request until `after_calls` more CRM calls have been answered."""
        waiting = dict(request)
        self.armed.append((int(waiting.pop("after_calls")), waiting))

    def due(self) -> list[dict[str, Any]]:
        """Count one CRM call; the armed requests that this call is the first to meet."""
        ready = [request for remaining, request in self.armed if remaining == 0]
        self.armed = [(remaining - 1, request) for remaining, request in self.armed if remaining]
        return ready

    def add(self, request: dict[str, Any]) -> None:
        """Queue the faults a `POST /__sandbox/faults` body asks for (validated by the caller)."""
        self.too_many_requests += int(request.get("too_many_requests", 0))
        self.server_errors += int(request.get("server_errors", 0))
        self.server_error_status = int(request.get("server_error_status", self.server_error_status))
        self.slow_responses += int(request.get("slow_responses", 0))
        if "slow_seconds" in request:
            self.slow_seconds = float(request["slow_seconds"])
        for record_id, values in (request.get("serve_values") or {}).items():
            self.serve_values.setdefault(str(record_id), {}).update(values)
        self.duplicate_in_pages += int(request.get("duplicate_in_pages", 0))
        self.lost_answers += int(request.get("lost_answers", 0))
        self.bulk_job_failures += int(request.get("bulk_job_failures", 0))

    def tamper(self, body: Any) -> list[str]:
        """Apply `serve_values` and `duplicate_in_pages` to an answer's `data`; names the faults
        served."""
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            return []
        served = []
        for record in data:
            values = (
                self.serve_values.get(str(record.get("id"))) if isinstance(record, dict) else None
            )
            if values:
                record.update(values)
                served.append("serve_values")
        if self.duplicate_in_pages:
            self.duplicate_in_pages -= 1
            data.append(dict(data[0]))
            served.append("duplicate_in_pages")
        return served

    def pending(self) -> dict[str, Any]:
        """What is still queued."""
        return {
            "too_many_requests": self.too_many_requests,
            "server_errors": self.server_errors,
            "server_error_status": self.server_error_status,
            "slow_responses": self.slow_responses,
            "slow_seconds": self.slow_seconds,
            "serve_values": sorted(self.serve_values),
            "duplicate_in_pages": self.duplicate_in_pages,
            "lost_answers": self.lost_answers,
            "bulk_job_failures": self.bulk_job_failures,
            "armed": [{"after_calls": left, **request} for left, request in self.armed],
        }


def validate_fault_request(request: Any) -> str | None:
    """Why a faults body is unusable, or None when it is fine."""
    if not isinstance(request, dict):
        return 'send a JSON object, e.g. {"too_many_requests": 3}'
    unknown = sorted(set(request) - set(FAULT_KEYS))
    if unknown:
        return f"unknown fault keys {unknown}; use any of {list(FAULT_KEYS)}"
    for key in COUNTED_FAULT_KEYS:
        value = request.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{key} must be a whole number of calls, 0 or more"
    if "server_error_status" in request and request["server_error_status"] not in (
        SERVER_ERROR_STATUSES
    ):
        return f"server_error_status must be one of {list(SERVER_ERROR_STATUSES)}"
    slow = request.get("slow_seconds", 0)
    if isinstance(slow, bool) or not isinstance(slow, int | float) or slow < 0:
        return "slow_seconds must be a number of seconds, 0 or more"
    for key in ("expire_access_tokens", "expire_page_tokens"):
        if key in request and not isinstance(request[key], bool):
            return f"{key} must be true or false"
    overrides = request.get("serve_values", {})
    if not isinstance(overrides, dict) or not all(
        isinstance(values, dict) for values in overrides.values()
    ):
        return 'serve_values must map record ids to {field: value}, e.g. {"123": {"Email": 5}}'
    touched = request.get("touch_records", {})
    if not isinstance(touched, dict) or not all(isinstance(ids, list) for ids in touched.values()):
        return 'touch_records must map modules to record ids, e.g. {"Contacts": ["123"]}'
    return None


@dataclass
class Stats:
    """Calls, credits and statuses by endpoint since the last reset."""

    calls: Counter[str] = field(default_factory=Counter)
    credits: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    refused_by_limits: int = 0
    token_grants: int = 0
    token_refusals: int = 0
    faults_served: Counter[str] = field(default_factory=Counter)
    update_triggers: Counter[str] = field(default_factory=Counter)

    def record(self, endpoint: str, status: int, credits: int) -> None:
        """Count one answered call."""
        self.calls[endpoint] += 1
        self.statuses[str(status)] += 1
        if credits:
            self.credits[endpoint] += credits

    def record_trigger(self, body: Any) -> None:
        """Count an update call by the `trigger` list it sent: Zoho runs every workflow,
        approval and blueprint rule when the list is absent, and only those listed otherwise."""
        trigger = body.get("trigger") if isinstance(body, dict) else None
        label = "absent" if trigger is None else ",".join(map(str, trigger)) or "none"
        self.update_triggers[label] += 1

    def snapshot(self, gate: ConcurrencyGate, ledger: CreditLedger) -> dict[str, Any]:
        """The JSON `GET /__sandbox/stats` serves."""
        return {
            "calls": dict(self.calls),
            "credits": dict(self.credits),
            "total_calls": sum(self.calls.values()),
            "total_credits": sum(self.credits.values()),
            "credits_used_24h": ledger.used(),
            "daily_credit_limit": ledger.daily_limit,
            "statuses": dict(self.statuses),
            "refused_by_limits": self.refused_by_limits,
            "faults_served": dict(self.faults_served),
            "update_triggers": dict(self.update_triggers),
            "token_grants": self.token_grants,
            "token_refusals": self.token_refusals,
            "max_concurrent_calls": gate.max_active,
            "concurrency_limit": gate.limit,
        }
