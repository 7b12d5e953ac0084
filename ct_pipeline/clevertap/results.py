"""What an upload or a campaign trigger ended with, one outcome per record the caller passed in.

CleverTap answers a valid upload with HTTP 200 even when it refused some records, naming them in
`unprocessed`. `batch_outcomes` turns that answer into one outcome per record: a record counts as
accepted only when the answer accounts for every record of the batch, so a batch is never taken
as done because some of it went through, and never failed because some of it was refused.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from ct_pipeline.clevertap.http import AUTH_FAILURE_STATUSES, ApiResponse
from ct_pipeline.clevertap.payloads import IDENTITY_KEYS

Outcome = Literal["accepted", "rejected", "rejected_locally", "failed", "dry_run"]
OUTCOMES: tuple[Outcome, ...] = ("accepted", "rejected", "rejected_locally", "failed", "dry_run")

# The per-record error text ends "... Skipped record number : <1-based position>" (CleverTap's
# upload response samples and a production answer quoted by RudderStack).
SKIPPED_RECORD_NUMBER = re.compile(r"Skipped record number\s*:\s*(\d+)")
CREDENTIALS_HINT = "check CLEVERTAP_ACCOUNT_ID, CLEVERTAP_PASSCODE and CLEVERTAP_REGION"
RECORD_FINGERPRINT_KEYS = ("type", "evtName", *IDENTITY_KEYS)


@dataclass(frozen=True)
class UploadItem:
    """One record to upload and the caller's key for it (a Zoho id, an outbox id)."""

    key: str
    record: Mapping[str, Any]


@dataclass(frozen=True)
class ItemOutcome:
    """What happened to one UploadItem. `batch` is None when it was never put in a batch.

    `maybe_delivered` marks a failure after which CleverTap may still have recorded the record
    (a timeout or a 5xx answer on some attempt).
    """

    key: str
    outcome: Outcome
    code: int | None = None
    error: str | None = None
    batch: int | None = None
    maybe_delivered: bool = False


@dataclass(frozen=True)
class BatchResult:
    """The outcomes of one batch, as handed to an `on_batch_done` callback.

    `batch` is None for the records rejected locally, which are reported before any batch.
    """

    batch: int | None
    outcomes: tuple[ItemOutcome, ...]
    requests: int
    http_status: int | None = None


@dataclass(frozen=True)
class PlannedRequest:
    """A request the upload sent, or in a dry run would have sent. Only a dry run keeps the
    `body`: a real upload lets go of each batch once it is answered."""

    batch: int
    method: str
    url: str
    records: int
    body_bytes: int
    body: Mapping[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class UploadReport:
    """Every item's outcome in the order given, with request counts.

    `fatal_error` is set when CleverTap refused the credentials: later batches were not sent.
    """

    outcomes: tuple[ItemOutcome, ...]
    batches: int
    requests: int
    dry_run: bool = False
    planned: tuple[PlannedRequest, ...] = ()
    fatal_error: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Number of items per outcome, every outcome present."""
        tally = Counter(outcome.outcome for outcome in self.outcomes)
        return {name: tally.get(name, 0) for name in OUTCOMES}

    @property
    def all_accepted(self) -> bool:
        """True when CleverTap accepted every item."""
        return all(outcome.outcome == "accepted" for outcome in self.outcomes)

    def by_key(self) -> dict[str, ItemOutcome]:
        """Outcomes keyed by the caller's key."""
        return {outcome.key: outcome for outcome in self.outcomes}

    def keys_with(self, outcome: Outcome) -> list[str]:
        """The caller keys whose outcome is `outcome`, in input order."""
        return [item.key for item in self.outcomes if item.outcome == outcome]

    def as_frame(self) -> pd.DataFrame:
        """One row per item: key, outcome, code, error, batch, maybe_delivered."""
        return pd.DataFrame(
            {
                "key": pd.array([item.key for item in self.outcomes], dtype="str"),
                "outcome": pd.array([item.outcome for item in self.outcomes], dtype="str"),
                "code": pd.array([item.code for item in self.outcomes], dtype="Int64"),
                "error": pd.array([item.error for item in self.outcomes], dtype="str"),
                "batch": pd.array([item.batch for item in self.outcomes], dtype="Int64"),
                "maybe_delivered": [item.maybe_delivered for item in self.outcomes],
            }
        )


@dataclass(frozen=True)
class TriggerResult:
    """What CleverTap said to an external-trigger request (`status` "accepted" = queued).

    `maybe_delivered` marks a failure after which CleverTap may still have queued the campaign
    (a timeout or a 5xx answer).
    """

    campaign_id: str
    recipients: int
    status: Literal["accepted", "failed", "dry_run"]
    code: int | None = None
    error: str | None = None
    requests: int = 0
    body: Mapping[str, Any] = field(default_factory=dict, repr=False)
    maybe_delivered: bool = False


def batch_outcomes(
    batch: int,
    items: Sequence[UploadItem],
    response: ApiResponse,
    *,
    credentials_hint: str = CREDENTIALS_HINT,
) -> tuple[ItemOutcome, ...]:
    """One outcome per item of a sent batch, read from CleverTap's answer to it.

    `credentials_hint` is added to the error when CleverTap refused the credentials.
    """
    body = response.body
    if not response.ok or not isinstance(body, Mapping):
        error = response.describe_failure()
        if response.status in AUTH_FAILURE_STATUSES:
            error += f"; {credentials_hint}"
        # A 2xx whose body cannot be read may still have been processed.
        maybe_delivered = response.uncertain or response.ok
        return _all_failed(batch, items, error, response.status, maybe_delivered)

    unprocessed = body.get("unprocessed", [])
    if not isinstance(unprocessed, list):
        return _all_failed(batch, items, "the answer's unprocessed is not a list", None, True)
    if body.get("status") == "fail" and not unprocessed:
        # A request-level refusal sent with HTTP 200, e.g. "Malformed request".
        code = _int_or_none(body.get("code"))
        return _all_failed(batch, items, response.describe_failure(), code, False)

    processed = body.get("processed")
    # When the counts add up, a record's position is trusted even if its echo is not the very
    # bytes sent (CleverTap may write numbers or defaults its own way): see `_position_of`.
    counts_add_up = (
        isinstance(processed, int)
        and not isinstance(processed, bool)
        and processed + len(unprocessed) == len(items)
    )
    rejected, unmatched = _match_unprocessed(items, unprocessed, counts_add_up=counts_add_up)
    accounted = unmatched == 0 and (
        not isinstance(processed, int) or processed + len(rejected) == len(items)
    )
    outcomes = []
    for position, item in enumerate(items):
        entry = rejected.get(position)
        if entry is not None:
            error = entry.get("error")
            outcomes.append(
                ItemOutcome(
                    item.key,
                    "rejected",
                    code=_int_or_none(entry.get("code")),
                    error=str(error) if error is not None else None,
                    batch=batch,
                )
            )
        elif accounted:
            outcomes.append(ItemOutcome(item.key, "accepted", batch=batch))
        else:
            outcomes.append(
                ItemOutcome(
                    item.key,
                    "failed",
                    error=(
                        f"CleverTap's answer does not account for every record (processed "
                        f"{processed}, unprocessed {len(unprocessed)} of {len(items)}, "
                        f"{unmatched} not matched to a record); send again"
                    ),
                    batch=batch,
                    maybe_delivered=True,
                )
            )
    return tuple(outcomes)


def _match_unprocessed(
    items: Sequence[UploadItem], unprocessed: list[Any], *, counts_add_up: bool
) -> tuple[dict[int, Mapping[str, Any]], int]:
    """Map each unprocessed entry to the position of the record it refers to."""
    if not unprocessed:
        return {}, 0
    sent = [_canonical(item.record) for item in items]
    rejected: dict[int, Mapping[str, Any]] = {}
    unmatched = 0
    for entry in unprocessed:
        if not isinstance(entry, Mapping):
            unmatched += 1
            continue
        echo = entry.get("record") if isinstance(entry.get("record"), Mapping) else None
        position = _position_of(entry, echo, items, sent, rejected, counts_add_up)
        if position is None:
            unmatched += 1
        else:
            rejected[position] = entry
    return rejected, unmatched


def _position_of(
    entry: Mapping[str, Any],
    echo: Mapping[str, Any] | None,
    items: Sequence[UploadItem],
    sent: list[str],
    taken: Mapping[int, Any],
    counts_add_up: bool,
) -> int | None:
    """The position an unprocessed entry refers to, from the strongest evidence down: its
    stated position with an identical echo (or none), an identical echo anywhere, and only when
    the counts add up, its stated position with an echo naming the same record, or the one
    record that echo can name."""
    candidates = []
    index = entry.get("index")
    if isinstance(index, int) and not isinstance(index, bool):
        candidates.append(index)
    number = SKIPPED_RECORD_NUMBER.search(str(entry.get("error", "")))
    if number:
        candidates.append(int(number.group(1)) - 1)
    free = [
        position for position in candidates if 0 <= position < len(sent) and position not in taken
    ]
    if echo is None:
        return free[0] if free else None

    canonical_echo = _canonical(echo)
    for position in free:
        if sent[position] == canonical_echo:
            return position
    for position, record in enumerate(sent):
        if record == canonical_echo and position not in taken:
            return position
    if not counts_add_up:
        return None
    for position in free:
        if _names_the_same_record(echo, items[position].record):
            return position
    named = [
        position
        for position, item in enumerate(items)
        if position not in taken and _names_the_same_record(echo, item.record)
    ]
    return named[0] if len(named) == 1 else None


def _names_the_same_record(echo: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether an echo that is not byte-identical still names `record`: every identity key,
    `type` and `evtName` it carries agrees with the record's, and it carries an identity."""
    carried = [key for key in RECORD_FINGERPRINT_KEYS if key in echo]
    if not any(key in echo for key in IDENTITY_KEYS):
        return False
    return all(_loosely(echo[key]) == _loosely(record.get(key)) for key in carried)


def _loosely(value: Any) -> Any:
    # 123, 123.0 and "123" are the same identity written three ways.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _canonical(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)


def _all_failed(
    batch: int,
    items: Sequence[UploadItem],
    error: str,
    code: int | None,
    maybe_delivered: bool,
) -> tuple[ItemOutcome, ...]:
    return tuple(
        ItemOutcome(item.key, "failed", code, error, batch, maybe_delivered) for item in items
    )


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
