"""The CleverTap client as a Dagster resource: uploads, profile lookups and campaign triggers.

Uploads are split into batches, sent several at a time, retried on 429, 5xx and network errors,
and reported back one outcome per record the caller passed in (see `results.py`). Records are
checked locally first (see `payloads.py`); the ones that break a documented rule never leave.
Nothing here logs the passcode or a customer's phone number or email.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr, field_validator
from requests.adapters import BaseAdapter

from ct_pipeline.clevertap.http import (
    AUTH_FAILURE_STATUSES,
    DEFAULT_REGION,
    EXTERNAL_TRIGGER_PATH,
    OTHER_MAX_CONCURRENT_REQUESTS,
    PROFILE_PATH,
    UPLOAD_MAX_CONCURRENT_REQUESTS,
    UPLOAD_MAX_RECORDS,
    UPLOAD_PATH,
    ApiResponse,
    CleverTapTransport,
    RetryRule,
    base_url_for,
    check_region,
    encode_json,
)
from ct_pipeline.clevertap.payloads import EVENT_MAX_PROPERTIES, validate_record
from ct_pipeline.clevertap.results import (
    CREDENTIALS_HINT,
    BatchResult,
    ItemOutcome,
    PlannedRequest,
    TriggerResult,
    UploadItem,
    UploadReport,
    batch_outcomes,
)

logger = logging.getLogger(__name__)

ENV_ACCOUNT_ID = "CLEVERTAP_ACCOUNT_ID"
ENV_PASSCODE = "CLEVERTAP_PASSCODE"
ENV_REGION = "CLEVERTAP_REGION"
ENV_API_URL = "CLEVERTAP_API_URL"

DEFAULT_UPLOAD_CONCURRENCY = 4
# Batches built and queued per request slot: enough that a slot never waits for the next body,
# few enough that an upload of any size holds a handful of batches in memory.
BATCHES_AHEAD_PER_REQUEST_SLOT = 2
DEFAULT_LOOKUP_CONCURRENCY = 2
# CleverTap documents no answer for a profile lookup that finds nothing: HTTP 404, code 404, or
# a fail body saying so in words are all taken to mean "no such profile".
NOT_FOUND_MARKERS = ("not found", "no such", "does not exist")
LOOKUP_FIELDS = {"identity": "identity", "email": "email", "object_id": "objectId"}

BatchCallback = Callable[[BatchResult], None]
# Called with a batch's number and items just before its request leaves.
SendingCallback = Callable[[int, Sequence[UploadItem]], None]


class CleverTapError(RuntimeError):
    """A CleverTap request that failed in a way the caller must hear about."""


class CleverTapResource(dg.ConfigurableResource):
    """CleverTap's server API: upload profiles and events, look up profiles, trigger campaigns."""

    account_id: str = Field(description="CleverTap project (account) id.")
    passcode: str = Field(repr=False, description="CleverTap account passcode; never logged.")
    region: str = Field(
        default=DEFAULT_REGION,
        description=(
            "Data-centre region: in1, sg1, us1, aps3, mec1, eu1 (api.clevertap.com) or sk1."
        ),
    )
    api_url: str | None = Field(
        default=None, description="Base URL that overrides the region host (the sandbox)."
    )
    batch_size: int = Field(
        default=UPLOAD_MAX_RECORDS,
        gt=0,
        le=UPLOAD_MAX_RECORDS,
        description="Records per upload request; CleverTap takes at most 1,000.",
    )
    max_concurrency: int = Field(
        default=DEFAULT_UPLOAD_CONCURRENCY,
        gt=0,
        le=UPLOAD_MAX_CONCURRENT_REQUESTS,
        description="Upload requests in flight at once; CleverTap allows 15 per account.",
    )
    lookup_concurrency: int = Field(
        default=DEFAULT_LOOKUP_CONCURRENCY,
        gt=0,
        le=OTHER_MAX_CONCURRENT_REQUESTS,
        description="Lookup and trigger requests in flight; CleverTap allows 3 per account.",
    )
    max_retries: int = Field(default=6, ge=0, description="Retries after a 429, 5xx or timeout.")
    backoff_base_seconds: float = Field(default=1.0, ge=0, description="First backoff ceiling.")
    backoff_cap_seconds: float = Field(default=60.0, ge=0, description="Longest backoff.")
    timeout_seconds: float = Field(default=30.0, gt=0, description="Per-request timeout.")
    max_event_properties: int = Field(
        default=EVENT_MAX_PROPERTIES,
        gt=0,
        description="Properties per event; 100 unless CleverTap raised it for the account.",
    )
    dry_run: bool = Field(
        default=False, description="Build and validate every request but send no upload."
    )

    _transport: CleverTapTransport | None = PrivateAttr(default=None)
    _transport_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _closed_usage: Counter[str] = PrivateAttr(default_factory=Counter)
    _adapters: list[tuple[str, BaseAdapter]] = PrivateAttr(default_factory=list)

    @field_validator("region", mode="before")
    @classmethod
    def _known_region(cls, region: Any) -> Any:
        # An EnvVar is still its variable's name here; Dagster validates again once resolved.
        if isinstance(region, dg.EnvVar):
            return region
        return check_region(region)

    @classmethod
    def from_env(cls, **overrides: Any) -> CleverTapResource:
        """Configure from CLEVERTAP_ACCOUNT_ID, _PASSCODE, _REGION and _API_URL."""
        missing = [name for name in (ENV_ACCOUNT_ID, ENV_PASSCODE) if not os.environ.get(name)]
        if missing:
            raise ValueError(
                f"{' and '.join(missing)} not set; set them to the CleverTap account id and "
                "passcode, or run against the sandbox (`ct-pipeline sandbox`)"
            )
        settings: dict[str, Any] = {
            "account_id": os.environ[ENV_ACCOUNT_ID],
            "passcode": os.environ[ENV_PASSCODE],
            "region": os.environ.get(ENV_REGION) or DEFAULT_REGION,
            "api_url": os.environ.get(ENV_API_URL) or None,
        }
        return cls(**{**settings, **overrides})

    @property
    def base_url(self) -> str:
        """The API base URL requests go to."""
        return base_url_for(self.region, self.api_url)

    def upload(
        self,
        items: Iterable[UploadItem],
        *,
        on_batch_done: BatchCallback | None = None,
        on_batch_sending: SendingCallback | None = None,
        retry_uncertain: bool = True,
    ) -> UploadReport:
        """Upload records in batches; every item comes back with exactly one outcome.

        `items` is read once, as the batches go out: a generator of a million records is
        uploaded holding only the batches in flight. Keys must be unique; in a sequence a
        repeated key fails before anything is sent, in a generator when it is reached.

        `on_batch_done` is called in the calling thread once per finished batch, and with the
        records rejected locally as batch None before the batches after them, so it may write
        to a database that is not thread-safe. If it raises, batches not yet started are not
        sent and the error propagates.

        `on_batch_sending` is called in the upload thread just before a batch's request leaves
        (never in a dry run), so a caller can record that the batch may reach CleverTap: if the
        process dies before `on_batch_done`, that record is all that says so. If it raises, the
        batch is not sent and the error propagates.

        429, 503 and unopened connections are always retried. Timeouts and other 5xx may hide a
        request CleverTap did process; with `retry_uncertain` (fine for profiles, which merge)
        they are retried too, at the risk of an event recorded twice. Without it the batch
        fails at once with `maybe_delivered` set, and the caller decides.
        """
        if isinstance(items, Sequence):
            _require_unique_keys(items)
        plan = _BatchPlan(items, self.batch_size, self.max_event_properties)
        if self.dry_run:
            return self._dry_run(plan, on_batch_done)

        by_key, requests, planned, fatal_error = self._send_batches(
            plan,
            on_batch_done,
            on_batch_sending,
            self._retry_rule(retry_uncertain=retry_uncertain),
        )
        by_key.update(plan.rejected)
        report = UploadReport(
            outcomes=tuple(by_key[key] for key in plan.keys),
            batches=len(planned),
            requests=requests,
            planned=planned,
            fatal_error=fatal_error,
        )
        logger.info(
            "CleverTap upload: %s in %d batches, %d requests",
            ", ".join(f"{count} {name}" for name, count in report.counts.items() if count),
            report.batches,
            report.requests,
        )
        return report

    def lookup_profile(
        self,
        *,
        identity: str | None = None,
        email: str | None = None,
        object_id: str | None = None,
    ) -> dict[str, Any] | None:
        """The profile CleverTap holds for exactly one identifier, or None when it has none.

        Lookups only read, so they also run in dry-run mode.
        """
        candidates = {"identity": identity, "email": email, "object_id": object_id}
        given = {name: value for name, value in candidates.items() if value is not None}
        if len(given) != 1:
            raise ValueError("lookup_profile takes exactly one of identity, email or object_id")
        name, value = next(iter(given.items()))

        response = self._client().request(
            "GET", PROFILE_PATH, self._retry_rule(), params={LOOKUP_FIELDS[name]: str(value)}
        )
        body = response.body if isinstance(response.body, Mapping) else {}
        if response.ok and body.get("status") == "success":
            record = body.get("record")
            return dict(record) if isinstance(record, Mapping) else None
        if _says_not_found(response.status, body):
            return None
        raise CleverTapError(
            f"CleverTap profile lookup by {name} failed: {self._failure(response)}"
        )

    def trigger_campaign(
        self,
        campaign_id: str | int,
        identities: Sequence[str],
        properties: Mapping[str, Any] | None = None,
    ) -> TriggerResult:
        """Fire an API-triggered campaign for `identities`, with string personalisation values.

        Only retried when CleverTap cannot have acted on the request (429, 503, no connection):
        a retried trigger that had gone through would message people twice.
        """
        if not identities or not all(isinstance(one, str) and one for one in identities):
            raise ValueError("trigger_campaign needs one or more identities, non-empty strings")
        body = {
            "to": {"identity": list(identities)},
            "campaign_id": str(campaign_id),
            "ExternalTrigger": _string_properties(properties or {}),
        }
        if self.dry_run:
            return TriggerResult(str(campaign_id), len(identities), "dry_run", body=body)

        rule = self._retry_rule(retry_uncertain=False)
        response = self._client().request("POST", EXTERNAL_TRIGGER_PATH, rule, json_body=body)
        answer = response.body if isinstance(response.body, Mapping) else {}
        if response.ok and answer.get("status") == "success":
            return TriggerResult(
                str(campaign_id), len(identities), "accepted", requests=response.attempts, body=body
            )
        code = answer.get("code")
        return TriggerResult(
            str(campaign_id),
            len(identities),
            "failed",
            code=code if isinstance(code, int) else response.status,
            error=self._failure(response),
            requests=response.attempts,
            body=body,
            maybe_delivered=response.uncertain,
        )

    def trigger_campaigns(
        self, triggers: Sequence[tuple[str | int, Sequence[str], Mapping[str, Any] | None]]
    ) -> list[TriggerResult]:
        """`trigger_campaign` for each (campaign id, identities, properties), up to
        `lookup_concurrency` in flight; the results in the order given."""
        if not triggers:
            return []
        with ThreadPoolExecutor(
            max_workers=self.lookup_concurrency, thread_name_prefix="clevertap-trigger"
        ) as pool:
            return list(pool.map(lambda trigger: self.trigger_campaign(*trigger), triggers))

    def mount(self, prefix: str, adapter: BaseAdapter) -> None:
        """Send the requests whose URL starts with `prefix` through a requests transport
        adapter, as `requests.Session.mount` does: a proxy or TLS setup of your own, or a test
        double serving CleverTap's region hosts. Applies to this resource object only."""
        with self._transport_lock:
            self._adapters.append((prefix, adapter))
            if self._transport is not None:
                self._transport.mount(prefix, adapter)

    def usage(self) -> dict[str, int]:
        """HTTP requests made by this resource so far (retries included), by endpoint path."""
        with self._transport_lock:
            usage = Counter(self._closed_usage)
            if self._transport is not None:
                usage.update(self._transport.usage())
        return dict(usage)

    def close(self) -> None:
        """Release pooled connections; the resource opens new ones if used again."""
        with self._transport_lock:
            if self._transport is not None:
                self._closed_usage.update(self._transport.usage())
                self._transport.close()
                self._transport = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close connections when a Dagster run is done with the resource."""
        self.close()

    def _client(self) -> CleverTapTransport:
        with self._transport_lock:
            if self._transport is None:
                self._transport = CleverTapTransport(
                    base_url=self.base_url,
                    account_id=self.account_id,
                    passcode=self.passcode,
                    timeout_seconds=self.timeout_seconds,
                    upload_concurrency=self.max_concurrency,
                    other_concurrency=self.lookup_concurrency,
                    adapters=self._adapters,
                )
            return self._transport

    def _credentials_hint(self) -> str:
        """What to check when CleverTap refuses the credentials, naming where requests went."""
        if self.api_url:
            return (
                "check CLEVERTAP_ACCOUNT_ID, CLEVERTAP_PASSCODE and CLEVERTAP_API_URL "
                f"(requests went to {self.base_url})"
            )
        return (
            f"{CREDENTIALS_HINT} (now {self.region!r}, {self.base_url}): CleverTap answers 401 "
            "to valid credentials sent to another region; the region starts your dashboard's "
            "address"
        )

    def _failure(self, response: ApiResponse) -> str:
        """`describe_failure`, with what to check when the credentials were refused."""
        failure = response.describe_failure()
        if response.status in AUTH_FAILURE_STATUSES:
            failure += f"; {self._credentials_hint()}"
        return failure

    def _retry_rule(self, *, retry_uncertain: bool = True) -> RetryRule:
        return RetryRule(
            max_retries=self.max_retries,
            backoff_base_seconds=self.backoff_base_seconds,
            backoff_cap_seconds=self.backoff_cap_seconds,
            retry_uncertain=retry_uncertain,
        )

    def _dry_run(self, plan: _BatchPlan, on_batch_done: BatchCallback | None) -> UploadReport:
        """Build and check every request of `plan`, send none, and say what would be sent."""
        by_key: dict[str, ItemOutcome] = {}
        planned = []
        for number, batch in plan:
            body = {"d": [dict(item.record) for item in batch]}
            planned.append(self._planned_request(number, len(batch), encode_json(body), body))
            outcomes = tuple(ItemOutcome(item.key, "dry_run", batch=number) for item in batch)
            by_key.update((outcome.key, outcome) for outcome in outcomes)
            plan.report_rejected(on_batch_done)
            if on_batch_done is not None:
                on_batch_done(BatchResult(number, outcomes, requests=0))
        plan.report_rejected(on_batch_done)
        by_key.update(plan.rejected)
        logger.info(
            "CleverTap dry run: %d records in %d requests would be sent, %d rejected locally",
            sum(request.records for request in planned),
            len(planned),
            len(plan.rejected),
        )
        return UploadReport(
            outcomes=tuple(by_key[key] for key in plan.keys),
            batches=len(planned),
            requests=0,
            dry_run=True,
            planned=tuple(planned),
        )

    def _planned_request(
        self, number: int, records: int, payload: bytes, body: Mapping[str, Any] | None = None
    ) -> PlannedRequest:
        return PlannedRequest(
            number, "POST", self.base_url + UPLOAD_PATH, records, len(payload), body
        )

    def _send_batches(
        self,
        plan: _BatchPlan,
        on_batch_done: BatchCallback | None,
        on_batch_sending: SendingCallback | None,
        rule: RetryRule,
    ) -> tuple[dict[str, ItemOutcome], int, tuple[PlannedRequest, ...], str | None]:
        """Send the plan's batches with at most max_concurrency in flight, and no more than
        BATCHES_AHEAD_PER_REQUEST_SLOT times that built ahead; stop on refused credentials."""
        by_key: dict[str, ItemOutcome] = {}
        planned: list[PlannedRequest] = []
        requests = 0
        halt = _Halt()
        transport = self._client()
        hint = self._credentials_hint()

        def send(number: int, batch: list[UploadItem]) -> tuple[BatchResult, PlannedRequest]:
            payload = encode_json({"d": [item.record for item in batch]})
            request = self._planned_request(number, len(batch), payload)
            if halt.reason is not None:
                return BatchResult(number, _not_sent(number, batch, halt.reason), 0), request
            if on_batch_sending is not None:
                on_batch_sending(number, batch)
            response = transport.request("POST", UPLOAD_PATH, rule, payload=payload)
            outcomes = batch_outcomes(number, batch, response, credentials_hint=hint)
            if response.status in AUTH_FAILURE_STATUSES:
                # Every later batch would be refused the same way; do not hammer the API.
                halt.stop(outcomes[0].error or f"HTTP {response.status}")
            return BatchResult(number, outcomes, response.attempts, response.status), request

        def finish(done: set[Future[tuple[BatchResult, PlannedRequest]]]) -> None:
            nonlocal requests
            plan.report_rejected(on_batch_done)
            for future in done:
                result, request = future.result()
                requests += result.requests
                planned.append(request)
                by_key.update((outcome.key, outcome) for outcome in result.outcomes)
                if on_batch_done is not None:
                    on_batch_done(result)

        ahead = self.max_concurrency * BATCHES_AHEAD_PER_REQUEST_SLOT
        with ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix="clevertap-upload"
        ) as pool:
            pending: set[Future[tuple[BatchResult, PlannedRequest]]] = set()
            try:
                for number, batch in plan:
                    pending.add(pool.submit(send, number, batch))
                    while len(pending) >= ahead:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        finish(done)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    finish(done)
                plan.report_rejected(on_batch_done)
            except BaseException:
                halt.stop("the upload was interrupted")
                for future in pending:
                    future.cancel()
                raise
        planned.sort(key=lambda request: request.batch)
        return by_key, requests, tuple(planned), halt.reason


class _BatchPlan:
    """The items of one upload, read once: checked, numbered into batches, keys remembered.

    Iterating gives (batch number, items) for the valid records in input order; the records
    that break a rule are kept in `rejected` and reported by `report_rejected`.
    """

    def __init__(
        self, items: Iterable[UploadItem], batch_size: int, max_event_properties: int
    ) -> None:
        self._items = items
        self._batch_size = batch_size
        self._max_event_properties = max_event_properties
        self.keys: list[str] = []
        self.rejected: dict[str, ItemOutcome] = {}
        self._unreported: list[ItemOutcome] = []

    def __iter__(self) -> Iterator[tuple[int, list[UploadItem]]]:
        seen: set[str] = set()
        batch: list[UploadItem] = []
        number = 0
        for item in self._items:
            if item.key in seen:
                raise ValueError(_repeated_key_message(item.key))
            seen.add(item.key)
            self.keys.append(item.key)
            reason = validate_record(item.record, max_event_properties=self._max_event_properties)
            if reason is not None:
                outcome = ItemOutcome(item.key, "rejected_locally", error=reason)
                self.rejected[item.key] = outcome
                self._unreported.append(outcome)
                continue
            batch.append(item)
            if len(batch) == self._batch_size:
                number += 1
                yield number, batch
                batch = []
        if batch:
            yield number + 1, batch

    def report_rejected(self, on_batch_done: BatchCallback | None) -> None:
        """Hand the records rejected since the last call to `on_batch_done`, as batch None."""
        if self._unreported and on_batch_done is not None:
            on_batch_done(BatchResult(batch=None, outcomes=tuple(self._unreported), requests=0))
        self._unreported = []


class _Halt:
    """Why the batches not yet sent must not be sent, shared between upload threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reason: str | None = None

    def stop(self, reason: str) -> None:
        """Keep the first reason given; later ones add nothing."""
        with self._lock:
            if self.reason is None:
                self.reason = reason


def _not_sent(number: int, batch: list[UploadItem], reason: str | None) -> tuple[ItemOutcome, ...]:
    error = f"not sent: an earlier batch was refused ({reason})"
    return tuple(ItemOutcome(item.key, "failed", error=error, batch=number) for item in batch)


def _require_unique_keys(items: Sequence[UploadItem]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.key in seen:
            raise ValueError(_repeated_key_message(item.key))
        seen.add(item.key)


def _repeated_key_message(key: str) -> str:
    return (
        f"upload got the key {key!r} twice; each item needs its own key so that its outcome "
        "can be reported back"
    )


def _string_properties(properties: Mapping[str, Any]) -> dict[str, str]:
    # External trigger docs: "CleverTap only supports String Data type for mapped property values".
    converted = {}
    for key, value in properties.items():
        if value is None:
            continue
        if isinstance(value, Mapping | list | tuple | set):
            raise ValueError(f"campaign property {key!r} must be a single value, not a collection")
        converted[str(key)] = str(value)
    return converted


def _says_not_found(status: int | None, body: Mapping[str, Any]) -> bool:
    # Only a CleverTap-shaped answer counts: a bare 404 may be a wrong CLEVERTAP_API_URL.
    if body.get("status") != "fail":
        return False
    error = str(body.get("error", "")).lower()
    return status == 404 or body.get("code") == 404 or any(m in error for m in NOT_FOUND_MARKERS)
