"""Faults the sandbox operator injects: 429s, 5xx, slow answers, outages, rejected records.

Set through `POST /__sandbox/faults`; each field left out keeps its current value, and
`{"clear": true}` first drops every fault. Counted faults (`uploads_429`, `uploads_5xx`,
`others_429`, `others_5xx`, `cursor_throttled`, `cursor_not_ready`, `slow_count`, a rule's
`times`) are used up one request (or one record) at a time.

`echo: "normalised"` writes each rejected record back in `unprocessed` the way a server that
parsed it might, not byte for byte: identity keys as strings and every other whole number as a
float (`ts: 1468308340` comes back `1468308340.0`). CleverTap documents a verbatim echo; this
tests that a client matching rejections to records survives one that is not.

`cursor_throttled` answers requests that open a `/1/profiles.json` or `/1/events.json` cursor
with body code 1, and `cursor_not_ready` answers page requests with code 2: the two answers
CleverTap's own download client waits on (30 s and 5 s) before asking again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ct_pipeline.sandbox.clevertap_emulator.validation import IDENTITY_KEYS, Rejection

DEFAULT_5XX_STATUS = 503
MAX_SLOW_SECONDS = 600.0
COUNTED_FAULTS = (
    "uploads_429",
    "uploads_5xx",
    "others_429",
    "others_5xx",
    "cursor_throttled",
    "cursor_not_ready",
)


class RejectRule(BaseModel):
    """Refuse every upload record addressed to `identity` (or objectId) with `code`."""

    model_config = ConfigDict(extra="forbid")

    identity: str = Field(min_length=1)
    code: int = Field(default=555, ge=500, le=599)
    error: str | None = None
    times: int | None = Field(default=None, ge=1)


class FaultRequest(BaseModel):
    """The body of `POST /__sandbox/faults`."""

    model_config = ConfigDict(extra="forbid")

    clear: bool = False
    uploads_429: int | None = Field(default=None, ge=0)
    uploads_5xx: int | None = Field(default=None, ge=0)
    others_429: int | None = Field(default=None, ge=0)
    others_5xx: int | None = Field(default=None, ge=0)
    cursor_throttled: int | None = Field(default=None, ge=0)
    cursor_not_ready: int | None = Field(default=None, ge=0)
    status_5xx: int | None = Field(default=None, ge=500, le=599)
    slow_seconds: float | None = Field(default=None, ge=0, le=MAX_SLOW_SECONDS)
    slow_count: int | None = Field(default=None, ge=0)
    reject: list[RejectRule] | None = None
    echo: Literal["verbatim", "normalised"] | None = None
    outage: bool | None = None


class FaultPlan:
    """The faults in force; thread-safe, consumed as requests arrive."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clear()

    def update(self, request: FaultRequest) -> dict:
        """Apply an operator's fault request and return the resulting plan."""
        with self._lock:
            if request.clear:
                self._clear()
            for name in COUNTED_FAULTS:
                value = getattr(request, name)
                if value is not None:
                    self._counts[name] = value
            if request.status_5xx is not None:
                self._status_5xx = request.status_5xx
            if request.slow_seconds is not None:
                self._slow_seconds = request.slow_seconds
                self._slow_count = request.slow_count
            elif request.slow_count is not None:
                self._slow_count = request.slow_count
            if request.reject is not None:
                self._reject = {rule.identity: rule.model_copy() for rule in request.reject}
            if request.echo is not None:
                self._echo = request.echo
            if request.outage is not None:
                self._outage = request.outage
            return self._snapshot()

    def clear(self) -> None:
        """Drop every fault."""
        with self._lock:
            self._clear()

    def snapshot(self) -> dict:
        """The plan as JSON-ready data."""
        with self._lock:
            return self._snapshot()

    def echo(self, record: object) -> object:
        """A rejected record as the `unprocessed` entry writes it back."""
        return _normalised(record) if self._echo == "normalised" else record

    @property
    def outage(self) -> bool:
        """Whether every API request should answer 503."""
        return self._outage

    def take_status(self, is_upload: bool) -> int | None:
        """The fault status (429 or 5xx) the next request must answer, if one is due."""
        prefix = "uploads" if is_upload else "others"
        if self.take(f"{prefix}_429"):
            return 429
        if self.take(f"{prefix}_5xx"):
            return self._status_5xx
        return None

    def take(self, name: str) -> bool:
        """Use up one of the counted fault `name`; False when none is due."""
        with self._lock:
            if self._counts[name] <= 0:
                return False
            self._counts[name] -= 1
            return True

    def take_delay(self) -> float:
        """Seconds the next API answer must wait."""
        with self._lock:
            if self._slow_seconds <= 0:
                return 0.0
            if self._slow_count is None:
                return self._slow_seconds
            if self._slow_count <= 0:
                return 0.0
            self._slow_count -= 1
            return self._slow_seconds

    def rejections(
        self, records: Iterable[tuple[int, dict]], *, consume: bool
    ) -> dict[int, Rejection]:
        """Rejections the operator asked for among `records` (index, record)."""
        with self._lock:
            if not self._reject:
                return {}
            chosen: dict[int, Rejection] = {}
            for index, record in records:
                rule = self._rule_for(record)
                if rule is None:
                    continue
                chosen[index] = Rejection(rule.code, rule.error)
                if consume and rule.times is not None:
                    rule.times -= 1
                    if rule.times == 0:
                        del self._reject[rule.identity]
            return chosen

    def _rule_for(self, record: dict) -> RejectRule | None:
        for key in ("identity", "objectId"):
            value = record.get(key)
            if value not in (None, ""):
                rule = self._reject.get(str(value))
                if rule is not None:
                    return rule
        return None

    def _clear(self) -> None:
        self._counts = dict.fromkeys(COUNTED_FAULTS, 0)
        self._status_5xx = DEFAULT_5XX_STATUS
        self._slow_seconds = 0.0
        self._slow_count: int | None = None
        self._reject: dict[str, RejectRule] = {}
        self._echo = "verbatim"
        self._outage = False

    def _snapshot(self) -> dict:
        return {
            **self._counts,
            "status_5xx": self._status_5xx,
            "slow_seconds": self._slow_seconds,
            "slow_count": self._slow_count,
            "reject": [rule.model_dump() for rule in self._reject.values()],
            "echo": self._echo,
            "outage": self._outage,
        }


def _normalised(value: object, *, top: bool = True) -> object:
    if isinstance(value, dict):
        return {
            key: str(item)
            if top and key in IDENTITY_KEYS and type(item) in (int, float)
            else _normalised(item, top=False)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_normalised(item, top=False) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
