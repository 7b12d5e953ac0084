"""Build CleverTap upload records and check them against the documented rules before sending.

`build_profile_record` and `build_event_record` turn Python values into the JSON records that
`POST /1/upload` takes; `validate_record` says why a record would be refused, or None. A record
that fails validation is reported as rejected locally and never sent. Reasons name keys and
rules, never values: values are personal data.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from datetime import time as clock_time
from typing import Any

import numpy as np
import pandas as pd

PROFILE_TYPE = "profile"
EVENT_TYPE = "event"
TOKEN_TYPE = "token"
IDENTITY_KEYS = ("identity", "objectId", "FBID", "GPID")
RECORD_KEYS = frozenset({"type", "ts", "profileData", "evtName", "evtData", *IDENTITY_KEYS})

# Upload pages: "attribute keys are limited to 120 bytes, and their values are limited to 512
# bytes" (profiles); "Event keys are limited to 120 characters" (events).
KEY_MAX_BYTES = 120
KEY_MAX_CHARS = 120
VALUE_MAX_BYTES = 512
# upload-user-profiles-api and platform-considerations: at most 256 custom profile keys.
PROFILE_MAX_CUSTOM_KEYS = 256
# upload-events-api (2026 revision): 100 properties per event by default (older pages said
# 256; the limit is configurable per account, so this is the safe default).
EVENT_MAX_PROPERTIES = 100
# platform-considerations: a multi-value property holds at most 100 strings of <= 512 chars.
MULTI_VALUE_MAX_ITEMS = 100

# The standard profile keys of the upload page, and the subscription flags of the SDK docs.
SUBSCRIPTION_FLAGS = ("MSG-push", "MSG-sms", "MSG-whatsapp", "MSG-email")
STANDARD_PROFILE_KEYS = frozenset(
    {
        "Name",
        "Email",
        "Phone",
        "Gender",
        "DOB",
        "Age",
        "Employed",
        "Education",
        "Married",
        "Photo",
        "Customer Type",
        "identity",
        *SUBSCRIPTION_FLAGS,
    }
)
# Per-record codes 514 (gender), 517 (employment), 518 (education), 519 (marital status) and
# 520 (age).
ALLOWED_STANDARD_VALUES: dict[str, frozenset[str]] = {
    "Gender": frozenset({"M", "F"}),
    "Employed": frozenset({"Y", "N"}),
    "Married": frozenset({"Y", "N"}),
    "Education": frozenset({"School", "College", "Graduate"}),
}
MAX_AGE = 150
# `$` starts CleverTap's own markers ($D_ dates, $add/$remove): a property key must not, nor
# repeat a key of the record envelope. No other reserved keys or prefixes are published.
RESERVED_KEY_PREFIX = "$"
RESERVED_PROPERTY_KEYS = frozenset(
    {"objectId", "FBID", "GPID", "type", "ts", "evtName", "evtData", "profileData", "tokenData"}
)
MULTI_VALUE_OPERATIONS = frozenset({"$add", "$remove"})
# Code 513: raising a restricted system event. The server API publishes no list: these are the
# names CleverTap's Android SDK refuses to raise (ValidationConfig.DEFAULT_RESTRICTED_EVENT_NAMES,
# matched ignoring case), and "Web Page Viewed", seen refused with 513 in production.
RESTRICTED_EVENT_NAMES = frozenset(
    {
        "App Launched",
        "App Uninstalled",
        "Notification Sent",
        "Notification Viewed",
        "Notification Clicked",
        "Notification Bounced",
        "UTM Visited",
        "Stayed",
        "Geocluster Entered",
        "Geocluster Exited",
        "SCOutgoing",
        "SCIncoming",
        "SCEnd",
        "SCCampaignOptOut",
        "wzrk_d",
        "Web Page Viewed",
    }
)
_RESTRICTED_EVENT_NAMES_FOLDED = frozenset(name.casefold() for name in RESTRICTED_EVENT_NAMES)
CHARGED_EVENT = "Charged"
CHARGED_ITEMS_KEY = "Items"

# upload-user-profiles-api: Phone "should be formatted as +[country code][phone number]";
# E.164 allows at most 15 digits. Code 516 otherwise.
PHONE_PATTERN = re.compile(r"\+[1-9][0-9]{6,14}")
# Code 515 (email invalid) has no published rule; this is the shape every address has. Full
# syntax checks belong to identity normalisation, which runs before records are built.
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
DATE_PREFIX = "$D_"
DATE_PATTERN = re.compile(r"\$D_(-?[0-9]{1,11})")
# A `$D_` date outside 1900 to 2286 is a wrong unit (milliseconds) or a typo, not a CRM date.
EARLIEST_DATE_SECONDS = -2_208_988_800
DATE_LIMIT_SECONDS = 10**10
# objectId: CleverTap's ids are "-" or "__g" + hex, or a UUID; anything else is code 526.
OBJECT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,100}")
# `ts` is epoch seconds (code 525 otherwise). Anything before 2000 or more than a day ahead is
# almost surely milliseconds, a default value or a clock error, not a CRM moment.
EARLIEST_TIMESTAMP = 946_684_800
FUTURE_TOLERANCE_SECONDS = 24 * 3600


def build_profile_record(
    identity: str | None, profile_data: Mapping[str, Any], ts: datetime | int | float
) -> dict[str, Any]:
    """A `type: profile` record; missing values are left out, dates become `$D_<epoch>`.

    A None identity is left out, so that `validate_record` reports it (code 523).
    """
    record: dict[str, Any] = {"type": PROFILE_TYPE}
    if identity is not None:
        record["identity"] = str(identity)
    record["ts"] = epoch_seconds(ts)
    record["profileData"] = _clevertap_properties(profile_data)
    return record


def build_profile_records(
    identities: Sequence[str], profile_data: pd.DataFrame, ts: pd.Series
) -> list[dict[str, Any]]:
    """`build_profile_record` for every row of a frame at once, column by column: row i gets
    `identities[i]`, the present values of row i as its profileData and `ts[i]` (now where it
    is missing). The records equal those `build_profile_record` gives row by row."""
    keys = list(profile_data.columns)
    columns = [_column_values(profile_data[key]) for key in keys]
    stamps = _epoch_seconds_column(ts)
    records = []
    rows = zip(*columns, strict=True)
    for identity, stamp, row in zip(identities, stamps, rows, strict=True):
        data = {key: value for key, value in zip(keys, row, strict=True) if value is not _MISSING}
        records.append(
            {"type": PROFILE_TYPE, "identity": str(identity), "ts": stamp, "profileData": data}
        )
    return records


def build_event_record(
    identity: str | None,
    event_name: str,
    event_data: Mapping[str, Any],
    ts: datetime | int | float,
) -> dict[str, Any]:
    """A `type: event` record; missing values are left out, dates become `$D_<epoch>`."""
    record: dict[str, Any] = {"type": EVENT_TYPE}
    if identity is not None:
        record["identity"] = str(identity)
    record["ts"] = epoch_seconds(ts)
    record["evtName"] = event_name
    record["evtData"] = _clevertap_properties(event_data)
    return record


def validate_record(
    record: Mapping[str, Any],
    *,
    now: float | None = None,
    max_event_properties: int = EVENT_MAX_PROPERTIES,
) -> str | None:
    """Why CleverTap would refuse `record` under its documented rules, or None if it is fine."""
    if not isinstance(record, Mapping):
        return "record is not a JSON object"
    unknown = sorted(str(key) for key in record if key not in RECORD_KEYS)
    if unknown:
        return f"unknown record key {unknown[0]!r}; upload records take {sorted(RECORD_KEYS)}"
    record_type = record.get("type")
    if record_type == TOKEN_TYPE:
        return "type 'token': this client uploads profiles and events, not device tokens"
    if record_type not in (PROFILE_TYPE, EVENT_TYPE):
        return "type must be 'profile' or 'event' (CleverTap code 524)"
    problem = _identity_problem(record) or _timestamp_problem(
        record, time.time() if now is None else now
    )
    if problem:
        return problem
    if record_type == PROFILE_TYPE:
        return _profile_problem(record)
    return _event_problem(record, max_event_properties)


def epoch_seconds(moment: datetime | int | float) -> int:
    """Whole epoch seconds for a timezone-aware datetime, or an epoch number as given."""
    if isinstance(moment, datetime):
        return int(_aware(moment).timestamp())
    if isinstance(moment, bool) or not isinstance(moment, int | float | np.number):
        raise TypeError(f"ts must be a datetime or epoch seconds, not {type(moment).__name__}")
    return int(moment)


def clevertap_date(moment: datetime | date) -> str:
    """CleverTap's date value `$D_<epoch seconds>`; a bare date means midnight UTC."""
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, clock_time(0), tzinfo=UTC)
    return f"{DATE_PREFIX}{int(_aware(moment).timestamp())}"


_MISSING = object()
_PLAIN_TYPES = frozenset({str, int, bool})
_SCALAR_TYPES = frozenset({str, int, bool, float})
# Standard profile keys with a rule of their own (`_profile_value_problem`).
_STANDARD_RULE_KEYS = frozenset(
    {"Phone", "Email", "DOB", "Age", "identity", *SUBSCRIPTION_FLAGS, *ALLOWED_STANDARD_VALUES}
)


def _clevertap_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    converted = {}
    for key, value in properties.items():
        value = _clevertap_value(value)
        if value is not _MISSING:
            converted[key] = value
    return converted


def _clevertap_value(value: Any) -> Any:
    if type(value) in _PLAIN_TYPES:
        return value
    if value is None or value is pd.NA or value is pd.NaT:
        return _MISSING
    if isinstance(value, datetime | date):
        return clevertap_date(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return _MISSING
    if isinstance(value, Mapping):
        return _clevertap_properties(value)
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        items = (_clevertap_value(item) for item in value)
        return [item for item in items if item is not _MISSING]
    return value


def _column_values(values: pd.Series) -> list[Any]:
    """A column's values as `_clevertap_value` converts them, whole columns at a time for the
    dtypes a warehouse table holds (text, numbers, booleans, timestamps)."""
    missing = values.isna().to_numpy()
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        converted = [f"{DATE_PREFIX}{second}" for second in _whole_seconds(values)]
    elif pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        converted = values.astype("object").tolist()
    elif pd.api.types.is_float_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        converted = values.tolist()
        if pd.api.types.is_object_dtype(dtype):
            return [_clevertap_value(value) for value in converted]
    else:
        return [_clevertap_value(value) for value in values.tolist()]
    return [_MISSING if gone else value for value, gone in zip(converted, missing, strict=True)]


def _epoch_seconds_column(moments: pd.Series) -> list[int]:
    """`epoch_seconds` of each timestamp; now for a missing one."""
    now = int(time.time())
    if not isinstance(moments.dtype, pd.DatetimeTZDtype):
        return [now if not _present_moment(m) else epoch_seconds(m) for m in moments.tolist()]
    missing = moments.isna().to_numpy()
    seconds = _whole_seconds(moments)
    return [now if gone else second for second, gone in zip(seconds, missing, strict=True)]


def _whole_seconds(moments: pd.Series) -> list[int]:
    """Epoch seconds of tz-aware timestamps, cut toward zero as `int(moment.timestamp())` is
    (missing ones give a meaningless number the caller skips)."""
    ticks = moments.array.asi8
    per_second = _TICKS_PER_SECOND[moments.dt.unit]
    return np.where(ticks >= 0, ticks // per_second, -(-ticks // per_second)).tolist()


def _present_moment(moment: Any) -> bool:
    return moment is not None and moment is not pd.NaT and moment is not pd.NA


_TICKS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            "a naive datetime has no defined epoch; pass a timezone-aware datetime (e.g. UTC)"
        )
    return moment


def _present(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return value is not None and not isinstance(value, bool)


def _identity_problem(record: Mapping[str, Any]) -> str | None:
    if not any(_present(record.get(key)) for key in IDENTITY_KEYS):
        return "no identity: set one of identity, objectId, FBID or GPID (CleverTap code 523)"
    for key in IDENTITY_KEYS:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, str | int | None):
            return f"{key} must be a string or a whole number (CleverTap code 523)"
    object_id = record.get("objectId")
    if (
        object_id is not None
        and _present(object_id)
        and not (isinstance(object_id, str) and OBJECT_ID_PATTERN.fullmatch(object_id))
    ):
        return "objectId is not a CleverTap id: letters, digits, - and _ (CleverTap code 526)"
    return None


def _timestamp_problem(record: Mapping[str, Any], now: float) -> str | None:
    if "ts" not in record:
        return None
    ts = record["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return "ts must be a number, epoch seconds (CleverTap code 525)"
    if not 0 < ts < DATE_LIMIT_SECONDS:
        return "ts is not epoch seconds; milliseconds? (CleverTap code 525)"
    # CleverTap takes the rest; these catch a default value or a clock error before it does.
    if not isinstance(ts, int):
        return "ts must be whole epoch seconds"
    if ts < EARLIEST_TIMESTAMP:
        return "ts is before 2000-01-01: a default value, not a CRM moment"
    if ts > now + FUTURE_TOLERANCE_SECONDS:
        return "ts is more than a day in the future: check the clock or the unit"
    return None


def _profile_problem(record: Mapping[str, Any]) -> str | None:
    if "evtName" in record or "evtData" in record:
        return "a profile record carries evtName/evtData; use profileData only"
    profile = record.get("profileData")
    if not isinstance(profile, Mapping):
        return "profileData must be an object"

    custom_keys = 0
    for key, value in profile.items():
        problem = _profile_key_problem(key)
        if problem:
            return f"profileData {problem}"
        if key not in STANDARD_PROFILE_KEYS:
            custom_keys += 1
        problem = _profile_value_problem(key, value)
        if problem:
            return f"profileData[{key!r}] {problem}"
    if custom_keys > PROFILE_MAX_CUSTOM_KEYS:
        return f"profileData has {custom_keys} custom keys; CleverTap keeps at most 256"
    return None


def _profile_value_problem(key: str, value: Any) -> str | None:
    scalar = type(value) in _SCALAR_TYPES
    if scalar and key not in _STANDARD_RULE_KEYS:
        return _scalar_problem(value)
    if not scalar and key in STANDARD_PROFILE_KEYS and isinstance(value, Mapping | list):
        # CleverTap's SDKs refuse multi-value operations on the standard keys too.
        return "is a standard profile key and holds one value, not a list or an object"
    if key == "identity":
        given = isinstance(value, str) and value or type(value) is int
        if not given:
            return "must be a non-empty string or a whole number (CleverTap code 523)"
        return _scalar_problem(value)
    if key == "Phone":
        if not isinstance(value, str) or not PHONE_PATTERN.fullmatch(value):
            return "must be +<country code><number>, digits only (CleverTap code 516)"
        return None
    if key == "Email":
        return _email_problem(value)
    if key in SUBSCRIPTION_FLAGS:
        return None if isinstance(value, bool) else "must be true or false"
    if key == "DOB":
        return None if _is_date(value) else "must be a date, $D_<epoch seconds>"
    if key == "Age":
        whole = isinstance(value, int) and not isinstance(value, bool)
        return None if whole and 0 <= value <= MAX_AGE else "must be a whole number 0-150"
    if key in ALLOWED_STANDARD_VALUES:
        allowed = ALLOWED_STANDARD_VALUES[key]
        if value not in allowed:
            return f"must be one of {', '.join(sorted(allowed))}"
        return None

    if isinstance(value, Mapping):
        return _multi_value_operation_problem(value)
    if isinstance(value, list):
        return _multi_value_problem(value)
    return _scalar_problem(value)


def _event_problem(record: Mapping[str, Any], max_properties: int) -> str | None:
    if "profileData" in record:
        return "an event record carries profileData; use evtData"
    name = record.get("evtName")
    if not isinstance(name, str) or not name.strip():
        return "evtName is missing (CleverTap code 509)"
    if name.casefold() in _RESTRICTED_EVENT_NAMES_FOLDED:
        return f"evtName {name!r} is a CleverTap system event and cannot be raised (code 513)"
    data = record.get("evtData", {})
    if not isinstance(data, Mapping):
        return "evtData must be an object (CleverTap code 512)"
    if len(data) > max_properties:
        return f"evtData has {len(data)} properties; at most {max_properties} (CleverTap code 522)"

    for key, value in data.items():
        problem = _event_key_problem(key)
        if problem:
            return f"evtData {problem}"
        if name == CHARGED_EVENT and key == CHARGED_ITEMS_KEY:
            problem = _charged_items_problem(value)
        else:
            problem = _scalar_problem(value)
        if problem:
            return f"evtData[{key!r}] {problem}"
    return None


# Keys repeat in every record of an upload: each is judged once.
@functools.lru_cache(maxsize=4096)
def _profile_key_problem(key: Any) -> str | None:
    return _key_problem(key, max_bytes=KEY_MAX_BYTES)


@functools.lru_cache(maxsize=4096)
def _event_key_problem(key: Any) -> str | None:
    return _key_problem(key, max_chars=KEY_MAX_CHARS)


def _key_problem(
    key: Any, *, max_bytes: int | None = None, max_chars: int | None = None
) -> str | None:
    if not isinstance(key, str) or not key.strip():
        return "has an empty or non-string key"
    if max_bytes is not None and len(key.encode("utf-8")) > max_bytes:
        return f"key {key[:20]!r}... is longer than {max_bytes} bytes"
    if max_chars is not None and len(key) > max_chars:
        return f"key {key[:20]!r}... is longer than {max_chars} characters"
    if key.startswith(RESERVED_KEY_PREFIX):
        return f"key {key!r} starts with $, which CleverTap keeps for $D_ dates and $add/$remove"
    if key in RESERVED_PROPERTY_KEYS:
        return f"key {key!r} is reserved for the record itself"
    return None


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, str):
        # Inlined `_byte_size`: this runs for every string value of every record.
        if (len(value) if value.isascii() else len(value.encode("utf-8"))) > VALUE_MAX_BYTES:
            return f"is longer than {VALUE_MAX_BYTES} bytes"
        if value.startswith(DATE_PREFIX) and not _is_date(value):
            return "starts with $D_ but is not $D_<epoch seconds> between 1900 and 2286"
        return None
    if isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "is not a finite number"
    if value is None:
        return "is null; leave the key out instead"
    return f"is a {type(value).__name__}; use a string, number, boolean or $D_ date"


def _byte_size(text: str) -> int:
    # An ASCII string's length is its size in bytes; only others need encoding to tell.
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _is_date(value: Any) -> bool:
    match = DATE_PATTERN.fullmatch(value) if isinstance(value, str) else None
    return match is not None and EARLIEST_DATE_SECONDS <= int(match[1]) < DATE_LIMIT_SECONDS


def _multi_value_problem(values: list[Any]) -> str | None:
    if len(values) > MULTI_VALUE_MAX_ITEMS:
        return f"has {len(values)} values; a multi-value property holds at most 100"
    for value in values:
        if not isinstance(value, str):
            return "multi-value items must be strings"
        if _byte_size(value) > VALUE_MAX_BYTES:
            return f"has an item longer than {VALUE_MAX_BYTES} bytes"
    return None


def _multi_value_operation_problem(operation: Mapping[str, Any]) -> str | None:
    if len(operation) != 1 or next(iter(operation)) not in MULTI_VALUE_OPERATIONS:
        return "is an object; only {'$add': [...]} or {'$remove': [...]} are accepted"
    values = next(iter(operation.values()))
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return "$add/$remove takes a string or a list of strings"
    return _multi_value_problem(values)


def _charged_items_problem(items: Any) -> str | None:
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        return "must be a list of objects"
    for item in items:
        for key, value in item.items():
            problem = _key_problem(key, max_chars=KEY_MAX_CHARS) or _scalar_problem(value)
            if problem:
                return f"item {problem}"
    return None


def _email_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not EMAIL_PATTERN.fullmatch(value):
        return "is not an email address (CleverTap code 515)"
    return None
