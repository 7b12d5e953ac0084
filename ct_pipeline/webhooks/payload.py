"""CleverTap webhook bodies: parsed, checked for shape, and split into one event per profile.

CleverTap posts `{"targetId": ..., "key_values": {...}, "profiles": [{...}, ...]}` with each
profile's `identity`, `email`, `objectId`, `profileData` and `event_properties`
(research/clevertap.md §6). The test payload sent when a webhook is saved capitalises some keys
(`Identity`, `Email`) and carries `"is_test": true`, so keys are matched without regard to case
or underscores. The body names no event: the webhook campaign names it in its key-value pairs,
under the configured key (`writeback.event_key`).

Each event gets a fingerprint of what makes it the same event: its name, who did it, and when.
CleverTap's payload carries no event time of its own (research/clevertap.md §6); when neither
the event properties, the profile nor the campaign's key-value pairs give one (`event_time` or
`ts`), the profile exactly as sent stands in for the time, and the inbox counts a copy received
within a short window as a retry (`ct_pipeline.webhooks.inbox`), not forever.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Where an event's time is looked for, in order: the profile's event properties, the profile,
# then the campaign's key-value pairs. Epoch seconds (or milliseconds), CleverTap's `$D_<epoch>`
# date form, or ISO 8601.
EVENT_TIME_KEYS = ("event_time", "ts")
CLEVERTAP_DATE_PREFIX = "$D_"
# Epoch values above this are milliseconds (1e11 seconds is the year 5138).
EPOCH_MILLISECONDS_ABOVE = 10**11
# PostgreSQL text cannot hold NUL; a NUL sent inside a value is kept visible as U+FFFD instead.
NUL = "\x00"
NUL_STAND_IN = "\ufffd"
# CleverTap event names are at most 512 characters (upload-events-api).
MAX_EVENT_NAME_LENGTH = 512
MAX_IDENTITY_LENGTH = 1024


class WebhookPayloadError(ValueError):
    """The body is not a CleverTap webhook payload; the message says what is wrong."""


@dataclass(frozen=True)
class WebhookEvent:
    """One profile of a delivery: the event it reports and who it is about (values as sent)."""

    fingerprint: str
    event_name: str
    event_time: datetime | None
    identity: str | None
    email: str | None
    phone: str | None
    object_id: str | None
    crm_contact_id: str | None
    target_id: str | None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookDelivery:
    """A parsed webhook body: a test delivery has no events."""

    is_test: bool
    target_id: str | None
    event_name: str | None
    events: list[WebhookEvent]


def parse_delivery(body: bytes, event_key: str = "event") -> WebhookDelivery:
    """Parse a webhook body; raises `WebhookPayloadError` naming what is wrong with it."""
    document = _json_object(body)
    is_test = document.get("istest") is True
    target_id = _text(document.get("targetid"))
    key_values = document.get("keyvalues", {})
    if key_values is None:
        key_values = {}
    if not isinstance(key_values, dict):
        raise WebhookPayloadError("key_values must be a JSON object of the campaign's pairs")
    key_values = _folded(key_values)

    profiles = document.get("profiles")
    if isinstance(profiles, dict):
        # A non-broadcast webhook may send one profile as an object.
        profiles = [profiles]
    if not isinstance(profiles, list):
        raise WebhookPayloadError("profiles is missing or not a list of profile objects")
    if is_test:
        return WebhookDelivery(is_test=True, target_id=target_id, event_name=None, events=[])

    event_name = _event_name(key_values, event_key)
    if not profiles:
        raise WebhookPayloadError("profiles is empty: a webhook delivery reports at least one")
    events = [
        _event(profile, position, event_name, target_id, key_values)
        for position, profile in enumerate(profiles)
    ]
    return WebhookDelivery(is_test=False, target_id=target_id, event_name=event_name, events=events)


def fingerprint(event_name: str, who: str, event_time: datetime | None, fallback: str = "") -> str:
    """What makes deliveries the same event: the same name, person and time, the same print.

    Without an event time, `fallback` (a digest of the profile as sent) stands in for it.
    """
    moment = event_time.astimezone(UTC).isoformat() if event_time is not None else ""
    key = json.dumps([event_name, who, moment, "" if moment else fallback])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body.decode("utf-8-sig"), parse_constant=_no_constants)
    except WebhookPayloadError:
        raise
    except UnicodeDecodeError:
        raise WebhookPayloadError("the body is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise WebhookPayloadError(
            f"the body is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    except (RecursionError, ValueError):
        raise WebhookPayloadError("the body is not usable JSON (too deeply nested)") from None
    if not isinstance(document, dict):
        raise WebhookPayloadError(
            f"the body must be a JSON object with a profiles list, not a {type(document).__name__}"
        )
    return _folded(document)


def _no_constants(name: str) -> None:
    raise WebhookPayloadError(f"the body holds {name}, which is not JSON")


def _folded(mapping: dict[str, Any]) -> dict[str, Any]:
    """Keys lower-cased without underscores: `Identity`, `profile_data`, `profileData` agree."""
    return {_fold(str(key)): value for key, value in mapping.items()}


def _fold(key: str) -> str:
    return key.replace("_", "").replace(" ", "").casefold()


def _event_name(key_values: dict[str, Any], event_key: str) -> str:
    name = key_values.get(_fold(event_key))
    if not isinstance(name, str) or not name.strip():
        raise WebhookPayloadError(
            f"key_values.{event_key} is missing or empty: give the webhook campaign a key-value "
            f"pair '{event_key}' whose value is the CleverTap event it reports"
        )
    name = _without_nul(name).strip()
    if len(name) > MAX_EVENT_NAME_LENGTH:
        raise WebhookPayloadError(
            f"key_values.{event_key} is longer than {MAX_EVENT_NAME_LENGTH} characters"
        )
    return name


def _event(
    profile: Any,
    position: int,
    event_name: str,
    target_id: str | None,
    key_values: dict[str, Any],
) -> WebhookEvent:
    where = f"profiles[{position}]"
    if not isinstance(profile, dict):
        raise WebhookPayloadError(f"{where} must be a JSON object")
    entry = _folded(profile)
    profile_data = _mapping(entry, "profiledata", where)
    properties = _mapping(entry, "eventproperties", where)
    folded_data = _folded(profile_data)

    identity = _identifier(entry.get("identity"), f"{where}.identity")
    email = _identifier(entry.get("email") or folded_data.get("email"), f"{where}.email")
    phone = _identifier(folded_data.get("phone"), f"{where}.profileData.Phone")
    object_id = _identifier(entry.get("objectid"), f"{where}.objectId")
    contact_id = _text(folded_data.get("crmcontactid"))
    crm_contact_id = contact_id if contact_id and contact_id.isdigit() else None
    event_time = _event_time(_folded(properties), entry, key_values, where)

    as_sent = hashlib.sha256(
        json.dumps([target_id, profile], sort_keys=True, default=str).encode("utf-8")
    ).hexdigest()
    # A profile with no identifier is told apart from others by its content; it is parked.
    who = _who(identity, email, phone, object_id, crm_contact_id) or f"profile:{as_sent}"
    return WebhookEvent(
        fingerprint=fingerprint(event_name, who, event_time, "" if event_time else as_sent),
        event_name=event_name,
        event_time=event_time,
        identity=identity,
        email=email,
        phone=phone,
        object_id=object_id,
        crm_contact_id=crm_contact_id,
        target_id=target_id,
        properties=properties,
    )


def _mapping(entry: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = entry.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebhookPayloadError(f"{where}.{key} must be a JSON object")
    return value


def _identifier(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, str | int):
        raise WebhookPayloadError(f"{where} must be a string")
    text = _without_nul(str(value)).strip()
    if len(text) > MAX_IDENTITY_LENGTH:
        raise WebhookPayloadError(f"{where} is longer than {MAX_IDENTITY_LENGTH} characters")
    return text or None


def _who(*identifiers: str | None) -> str:
    kinds = ("identity", "email", "phone", "objectId", "crm_contact_id")
    for kind, value in zip(kinds, identifiers, strict=True):
        if value:
            return f"{kind}:{value}"
    return ""


def _event_time(
    properties: dict[str, Any],
    entry: dict[str, Any],
    key_values: dict[str, Any],
    where: str,
) -> datetime | None:
    for source, label in ((properties, "event_properties"), (entry, ""), (key_values, "")):
        for key in EVENT_TIME_KEYS:
            value = source.get(_fold(key))
            if value is None or value == "":
                continue
            place = f"{where}.{label}.{key}" if label else f"{where} {key}"
            return _moment(value, place)
    return None


def _moment(value: Any, where: str) -> datetime:
    """A time from epoch seconds or milliseconds, `$D_<epoch>`, or ISO 8601 (UTC if naive)."""
    problem = WebhookPayloadError(
        f"{where} is not a time: send epoch seconds, $D_<epoch seconds> or ISO 8601"
    )
    if isinstance(value, bool):
        raise problem
    if isinstance(value, str):
        text = value.strip().removeprefix(CLEVERTAP_DATE_PREFIX)
        if text.lstrip("-").replace(".", "", 1).isdigit():
            value = float(text)
        else:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise problem from None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise problem
    seconds = value / 1000 if abs(value) > EPOCH_MILLISECONDS_ABOVE else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise problem from None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = _without_nul(str(value)).strip()
    return text or None


def _without_nul(text: str) -> str:
    return text.replace(NUL, NUL_STAND_IN)
