"""Everything one emulator instance holds: settings, account, faults, traffic and its gates."""

from __future__ import annotations

import hmac
import itertools
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from ct_pipeline.sandbox.clevertap_emulator.faults import FaultPlan
from ct_pipeline.sandbox.clevertap_emulator.store import AccountStore
from ct_pipeline.sandbox.clevertap_emulator.validation import RecordValidator

REDACTED = "[redacted]"
# Header names whose values are secrets; matched as substrings of the lower-cased name.
SECRET_HEADER_PARTS = ("passcode", "token", "authorization", "cookie", "secret")
ACCOUNT_ID_HEADER = "x-clevertap-account-id"
PASSCODE_HEADER = "x-clevertap-passcode"
TOKEN_HEADER = "x-clevertap-token"
# Common API Components: one API host per region. Europe's is api.clevertap.com, which
# CleverTap's Node client and its External Trigger page call eu1.api.clevertap.com; sk1 (South
# Korea) is used by peers and CleverTap's Go uploader but is absent from the current table.
API_DOMAIN = "api.clevertap.com"
REGION_API_HOSTS: dict[str, frozenset[str]] = {
    **{
        region: frozenset({f"{region}.{API_DOMAIN}"})
        for region in ("in1", "sg1", "us1", "aps3", "mec1", "sk1")
    },
    "eu1": frozenset({API_DOMAIN, f"eu1.{API_DOMAIN}"}),
}


@dataclass(frozen=True)
class Settings:
    """The account and limits an emulator instance enforces; `api_hosts` are the host names of
    the account's region, or None to answer on any host."""

    account_id: str
    passcode: str
    token: str
    api_hosts: frozenset[str] | None
    max_concurrent_uploads: int
    max_concurrent_other: int
    max_records: int
    profile_not_found_status: int
    request_log_limit: int


class ConcurrencyGate:
    """Counts requests in flight and refuses one beyond the limit (CleverTap answers 429)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.high_water = 0
        self.refused = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        """Take a place; False when all places are taken."""
        with self._lock:
            if self.in_flight >= self.limit:
                self.refused += 1
                return False
            self.in_flight += 1
            self.high_water = max(self.high_water, self.in_flight)
            return True

    def leave(self) -> None:
        """Give a place back."""
        with self._lock:
            self.in_flight -= 1


@dataclass
class LoggedRequest:
    """One API request as received, headers redacted, with the status it was answered."""

    seq: int
    received_at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int | None = None

    def as_json(self, *, with_body: bool) -> dict:
        """JSON-ready form; the body parsed as JSON when it is JSON, else as text."""
        view: dict = {
            "seq": self.seq,
            "received_at": self.received_at,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "status": self.status,
        }
        if with_body:
            try:
                view["body"] = json.loads(self.body) if self.body else None
            except ValueError:
                view["body"] = self.body.decode(errors="replace")
        return view


@dataclass
class Traffic:
    """The request log (bounded) and the counters behind `/__sandbox/stats`."""

    log_limit: int
    _log: deque = field(init=False)
    _requests: Counter = field(default_factory=Counter)
    _statuses: Counter = field(default_factory=Counter)
    _records: Counter = field(default_factory=Counter)
    _seq: itertools.count = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._log = deque(maxlen=self.log_limit)

    def begin(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> LoggedRequest:
        """Log a request as it arrives."""
        entry = LoggedRequest(
            seq=next(self._seq),
            received_at=time.time(),
            method=method,
            path=path,
            query=dict(query),
            headers=redact(headers),
            body=body,
        )
        with self._lock:
            self._log.append(entry)
            self._requests[f"{method} {path}"] += 1
        return entry

    def finish(self, entry: LoggedRequest, status: int) -> None:
        """Note the status a logged request was answered with."""
        entry.status = status
        with self._lock:
            self._statuses[str(status)] += 1

    def count_records(self, **counts: int) -> None:
        """Add to the record counters (received, processed, unprocessed, dry_run)."""
        with self._lock:
            self._records.update(counts)

    def entries(self, *, path: str | None, limit: int | None) -> list[LoggedRequest]:
        """Logged requests, oldest first, optionally of one path and only the last `limit`."""
        with self._lock:
            entries = [entry for entry in self._log if path is None or entry.path == path]
        return entries[-limit:] if limit else entries

    def counters(self) -> dict:
        """Requests by endpoint, answers by status and record counts."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "responses": dict(self._statuses),
                "records": {
                    name: self._records[name]
                    for name in ("received", "processed", "unprocessed", "dry_run")
                },
            }

    def reset(self) -> None:
        """Forget the log and the counters."""
        with self._lock:
            self._log.clear()
            self._requests.clear()
            self._statuses.clear()
            self._records.clear()


class EmulatorState:
    """The shared state of one emulator app."""

    def __init__(self, settings: Settings, validator: RecordValidator) -> None:
        self.settings = settings
        self.validator = validator
        self.store = AccountStore()
        self.faults = FaultPlan()
        self.traffic = Traffic(log_limit=settings.request_log_limit)
        self.upload_gate = ConcurrencyGate(settings.max_concurrent_uploads)
        self._other_gates: dict[str, ConcurrencyGate] = {}
        self._gates_lock = threading.Lock()

    def authorised(self, headers: Mapping[str, str], *, with_token: bool = False) -> bool:
        """Whether the request carries this account's id and passcode (and its token, for the
        APIs that also need `X-CleverTap-Token`)."""
        expected = {
            ACCOUNT_ID_HEADER: self.settings.account_id,
            PASSCODE_HEADER: self.settings.passcode,
        }
        if with_token:
            expected[TOKEN_HEADER] = self.settings.token
        # Every header is compared, so the time taken says nothing about which one was wrong.
        matches = [
            hmac.compare_digest(headers.get(name, "").encode(), value.encode())
            for name, value in expected.items()
        ]
        return all(matches)

    def serves_host(self, host: str | None) -> bool:
        """Whether a request addressed to `host` reaches this account's region (any host does
        when the emulator was given no region)."""
        hosts = self.settings.api_hosts
        return hosts is None or (host or "").lower() in hosts

    def gate(self, path: str, *, is_upload: bool) -> ConcurrencyGate:
        """The concurrency gate of an endpoint: one for uploads, one per other API."""
        if is_upload:
            return self.upload_gate
        with self._gates_lock:
            gate = self._other_gates.get(path)
            if gate is None:
                gate = self._other_gates[path] = ConcurrencyGate(self.settings.max_concurrent_other)
            return gate

    def stats(self) -> dict:
        """Counters for `/__sandbox/stats`."""
        with self._gates_lock:
            gates = {"/1/upload": self.upload_gate, **self._other_gates}
        return {
            **self.traffic.counters(),
            "max_in_flight": {path: gate.high_water for path, gate in gates.items()},
            "refused_over_concurrency": {path: gate.refused for path, gate in gates.items()},
            **self.store.counts(),
        }

    def reset(self) -> None:
        """Back to an empty account with no faults, no log and zeroed counters."""
        self.store.reset()
        self.faults.clear()
        self.traffic.reset()
        with self._gates_lock:
            for gate in (self.upload_gate, *self._other_gates.values()):
                gate.high_water = gate.in_flight
                gate.refused = 0


def redact(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with every secret value replaced, so the passcode never reaches the log."""
    return {
        name: REDACTED if any(part in name.lower() for part in SECRET_HEADER_PARTS) else value
        for name, value in headers.items()
    }


def region_api_hosts(region: str | None) -> frozenset[str] | None:
    """The API host names of a CleverTap region, or None for no region."""
    if region is None:
        return None
    if region not in REGION_API_HOSTS:
        raise ValueError(
            f"region {region!r} is not a CleverTap region; use one of {', '.join(REGION_API_HOSTS)}"
        )
    return REGION_API_HOSTS[region]
