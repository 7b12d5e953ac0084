"""The emulated CleverTap account: profiles keyed by identity, their events, triggers, cursors.

Semantics follow CleverTap's documentation (see the research notes on the upload and profile
APIs): an upload for an identity nobody has creates a profile with a new objectId; profile
properties merge into the existing profile; `$D_<epoch>` strings become dates; `$add` and
`$remove` edit multi-value properties; `Email` and an `identity` inside profileData become
further identities of the profile; events append to the profile, creating it when needed.
Demerge moves identities to profiles of their own, disassociate detaches a phone identity, and
subscribe keeps an account-wide list of unsubscribed phone numbers and emails (it does not touch
any profile's `MSG-*` flags, as CleverTap's subscribe-api page says).

Two choices where CleverTap documents nothing: a null property value is ignored (CleverTap's
SDKs drop nulls), and an identity or Email already held by another profile stays with that
profile (the emulator never merges two profiles).

All state sits behind one lock; lookups are dicts keyed by identity and objectId so that a
million profiles cost no scans on the upload path.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from ct_pipeline.sandbox.clevertap_emulator.validation import (
    DATE_PREFIX,
    MAX_CUSTOM_PROFILE_KEYS,
    MAX_MULTI_VALUE_ITEMS,
    STANDARD_PROFILE_KEYS,
    Rejection,
    parse_date,
    too_many_custom_keys,
)

# Old cursors are forgotten first once this many are open (CleverTap expires them by time).
MAX_OPEN_CURSORS = 1000
# Identities from the legacy keys live in their own namespaces of the identity index.
LEGACY_IDENTITY_KEYS = ("FBID", "GPID")


class Profile:
    """One CleverTap user profile."""

    __slots__ = (
        "object_id",
        "identities",
        "data",
        "date_keys",
        "events",
        "tokens",
        "created_at",
        "updated_at",
    )

    def __init__(self, object_id: str, now: int) -> None:
        self.object_id = object_id
        self.identities: list[str] = []
        self.data: dict[str, object] = {}
        self.date_keys: set[str] | None = None
        self.events: list[dict] | None = None
        self.tokens: list[dict] | None = None
        self.created_at = now
        self.updated_at = now


@dataclass(frozen=True)
class CursorSections:
    """What each record of a download carries, per the `profile`, `app` and `events` URL flags:
    the profile's properties, its platformInfo (app fields) and its event summary."""

    profile: bool
    app: bool
    events: bool


@dataclass
class _CursorSource:
    kind: str  # "profiles" | "events"
    items: list
    batch_size: int
    sections: CursorSections


class AccountStore:
    """Thread-safe state of one emulated CleverTap account."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clear()

    def reset(self) -> None:
        """Forget every profile, event, trigger and cursor."""
        with self._lock:
            self._clear()

    def apply(self, records: Iterable[tuple[int, dict]], now: int) -> dict[int, Rejection]:
        """Store valid upload records; return rejections only the account state can decide."""
        rejections: dict[int, Rejection] = {}
        with self._lock:
            for index, record in records:
                rejection = self._apply_one(record, now)
                if rejection is not None:
                    rejections[index] = rejection
        return rejections

    def lookup_record(
        self,
        *,
        identity: str | None = None,
        email: str | None = None,
        object_id: str | None = None,
    ) -> dict | None:
        """The `record` of a `/1/profile.json` answer, or None when no profile matches."""
        with self._lock:
            profile = self._find(identity=identity, email=email, object_id=object_id)
            return None if profile is None else _lookup_record(profile)

    def admin_profiles(
        self,
        *,
        identity: str | None = None,
        email: str | None = None,
        object_id: str | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> tuple[int, list[dict]]:
        """(total, page of admin views) of all profiles, or of the one an identity names."""
        with self._lock:
            if identity is not None or email is not None or object_id is not None:
                profile = self._find(identity=identity, email=email, object_id=object_id)
                return (0, []) if profile is None else (1, [_admin_view(profile)])
            profiles = list(self._by_object_id.values())
            end = None if limit is None else offset + limit
            return len(profiles), [_admin_view(profile) for profile in profiles[offset:end]]

    def admin_events(self, *, identity: str | None = None, name: str | None = None) -> list[dict]:
        """Stored events in arrival order, optionally of one identity and/or one name."""
        with self._lock:
            if identity is not None:
                profile = self._by_identity.get(identity) or self._by_object_id.get(identity)
                events = list(profile.events or ()) if profile else []
            else:
                events = list(self._events)
        if name is not None:
            events = [event for event in events if event["evtName"] == name]
        return [dict(event) for event in events]

    def delete(self, *, identities: list[str], object_ids: list[str]) -> int:
        """Delete the profiles holding these identities or objectIds; return how many went."""
        with self._lock:
            doomed = {self._by_identity.get(value) for value in identities}
            doomed |= {self._by_object_id.get(value) for value in object_ids}
            doomed.discard(None)
            for profile in doomed:
                del self._by_object_id[profile.object_id]
                for value in profile.identities:
                    self._by_identity.pop(value, None)
            if doomed and any(profile.events for profile in doomed):
                gone = {profile.object_id for profile in doomed}
                self._events = [event for event in self._events if event["objectId"] not in gone]
            return len(doomed)

    def demerge(self, identities: list[str], now: int) -> int:
        """Move each identity off a profile that holds others too, onto a new profile of its
        own; return how many moved. The new profile starts empty (docs: event data may be lost).
        """
        moved = 0
        with self._lock:
            for identity in identities:
                profile = self._by_identity.get(identity)
                if profile is None or len(profile.identities) < 2:
                    continue
                profile.identities.remove(identity)
                profile.updated_at = now
                del self._by_identity[identity]
                self._attach(self._create(None, now), identity)
                moved += 1
        return moved

    def disassociate(self, identity: str, now: int) -> bool:
        """Detach an identity (a phone number) from its profile, so that the next upload for
        it creates a new profile; False when no profile holds it."""
        with self._lock:
            profile = self._by_identity.pop(identity, None)
            if profile is None:
                return False
            profile.identities.remove(identity)
            profile.updated_at = now
            return True

    def set_subscription(self, kind: str, value: str, status: str, now: int) -> None:
        """Record an account-wide Unsubscribe or Resubscribe of a phone number or email."""
        with self._lock:
            # Popped first so that the dict keeps the changes in the order they came.
            self._subscriptions.pop((kind, value), None)
            self._subscriptions[(kind, value)] = {
                "type": kind,
                "value": value,
                "status": status,
                "updated_at": now,
            }

    def subscriptions(self) -> list[dict]:
        """The subscription statuses set through `/1/subscribe`, oldest change first."""
        with self._lock:
            return [dict(entry) for entry in self._subscriptions.values()]

    def record_trigger(self, trigger: dict, now: int) -> dict:
        """Keep an accepted external-trigger request, with how many of its targets exist."""
        with self._lock:
            known = sum(
                1
                for key, values in trigger["to"].items()
                for value in values
                if self._target_exists(key, str(value))
            )
            stored = {**trigger, "received_at": now, "known_targets": known}
            self._triggers.append(stored)
            return dict(stored)

    def triggers(self) -> list[dict]:
        """External-trigger requests received, oldest first."""
        with self._lock:
            return [dict(trigger) for trigger in self._triggers]

    def counts(self) -> dict[str, int]:
        """How many profiles, events and triggers the account holds."""
        with self._lock:
            return {
                "profiles": len(self._by_object_id),
                "events": len(self._events),
                "triggers": len(self._triggers),
            }

    def open_cursor(self, kind: str, query: dict, batch_size: int, sections: CursorSections) -> str:
        """Snapshot what `query` selects and return a cursor to its first page."""
        event_name = query.get("event_name")
        day_from, day_to = _day_bounds(query)
        with self._lock:
            if kind == "events":
                items = [
                    event
                    for event in self._events
                    if event["evtName"] == event_name and day_from <= _day(event["ts"]) <= day_to
                ]
            elif event_name is None:
                items = list(self._by_object_id.values())
            else:
                items = [
                    profile
                    for profile in self._by_object_id.values()
                    if any(
                        event["evtName"] == event_name and day_from <= _day(event["ts"]) <= day_to
                        for event in profile.events or ()
                    )
                ]
            return self._new_cursor(_CursorSource(kind, items, batch_size, sections), 0)

    def page(self, cursor: str) -> dict | None:
        """The page a cursor points at, in CleverTap's shape; None for an unknown cursor."""
        with self._lock:
            position = self._cursors.get(cursor)
            if position is None:
                return None
            source, offset = position
            chunk = source.items[offset : offset + source.batch_size]
            render = _export_record if source.kind == "profiles" else self._export_event
            answer: dict = {
                "status": "success",
                "previous_cursor": cursor,
                "records": [render(item, source.sections) for item in chunk],
            }
            if offset + source.batch_size < len(source.items):
                answer["next_cursor"] = self._new_cursor(source, offset + source.batch_size)
            return answer

    def knows_cursor(self, cursor: str) -> bool:
        """Whether `cursor` is open."""
        with self._lock:
            return cursor in self._cursors

    def _find(
        self, *, identity: str | None, email: str | None, object_id: str | None
    ) -> Profile | None:
        if object_id is not None:
            return self._by_object_id.get(object_id)
        key = identity if identity is not None else email
        return self._by_identity.get(key) if key is not None else None

    def _clear(self) -> None:
        self._by_object_id: dict[str, Profile] = {}
        self._by_identity: dict[str, Profile] = {}
        self._events: list[dict] = []
        self._triggers: list[dict] = []
        self._subscriptions: dict[tuple[str, str], dict] = {}
        self._cursors: OrderedDict[str, tuple[_CursorSource, int]] = OrderedDict()
        self._object_id_prefix = secrets.token_hex(10)
        self._object_id_counter = itertools.count()

    def _apply_one(self, record: dict, now: int) -> Rejection | None:
        record_type = record["type"]
        profile_data = record.get("profileData") if record_type == "profile" else None
        profile = self._resolve(record)
        if profile is not None and profile_data:
            rejection = _custom_key_overflow(profile, profile_data)
            if rejection is not None:
                return rejection
        if profile is None:
            profile = self._create(record.get("objectId"), now)
        self._attach_identities(profile, record)

        if record_type == "profile":
            self._merge(profile, profile_data or {})
        elif record_type == "event":
            self._append_event(profile, record, now)
        else:
            profile.tokens = [*(profile.tokens or ()), dict(record["tokenData"])]
        profile.updated_at = now
        return None

    def _resolve(self, record: dict) -> Profile | None:
        object_id = record.get("objectId")
        if object_id:
            profile = self._by_object_id.get(object_id)
            if profile is not None:
                return profile
        identity = record.get("identity")
        if identity not in (None, ""):
            profile = self._by_identity.get(str(identity))
            if profile is not None:
                return profile
        for key in LEGACY_IDENTITY_KEYS:
            value = record.get(key)
            if value not in (None, ""):
                profile = self._by_identity.get(f"{key}:{value}")
                if profile is not None:
                    return profile
        return None

    def _create(self, object_id: str | None, now: int) -> Profile:
        if not object_id:
            # Shaped like CleverTap's "-" + 32 hex digits; a counter is cheaper than uuid4.
            object_id = f"-{self._object_id_prefix}{next(self._object_id_counter):012x}"
        profile = Profile(object_id, now)
        self._by_object_id[profile.object_id] = profile
        return profile

    def _attach_identities(self, profile: Profile, record: dict) -> None:
        identity = record.get("identity")
        if identity not in (None, ""):
            self._attach(profile, str(identity))
        for key in LEGACY_IDENTITY_KEYS:
            value = record.get(key)
            if value not in (None, ""):
                self._attach(profile, f"{key}:{value}")
        profile_data = record.get("profileData")
        if profile_data:
            for key in ("identity", "Email"):
                value = profile_data.get(key)
                if value not in (None, ""):
                    self._attach(profile, str(value))

    def _attach(self, profile: Profile, identity: str) -> None:
        if identity not in self._by_identity:
            self._by_identity[identity] = profile
            profile.identities.append(identity)

    def _merge(self, profile: Profile, profile_data: dict) -> None:
        data = profile.data
        for key, value in profile_data.items():
            kind = value.__class__
            if kind is str:
                if value.startswith(DATE_PREFIX):
                    if profile.date_keys is None:
                        profile.date_keys = set()
                    profile.date_keys.add(key)
                    data[key] = parse_date(value)
                    continue
            elif value is None:
                continue
            elif kind is dict:
                value = _apply_multi_value(data.get(key), value)
            elif kind is list:
                value = list(value)
            data[key] = value
            if profile.date_keys:
                profile.date_keys.discard(key)

    def _append_event(self, profile: Profile, record: dict, now: int) -> None:
        properties = record.get("evtData") or {}
        date_keys = [
            key
            for key, value in properties.items()
            if isinstance(value, str) and value.startswith(DATE_PREFIX)
        ]
        if date_keys:
            properties = {
                key: parse_date(value) if key in date_keys else value
                for key, value in properties.items()
            }
        identity = record.get("identity")
        event = {
            "objectId": profile.object_id,
            "identity": str(identity) if identity not in (None, "") else _primary(profile),
            "evtName": record["evtName"],
            "evtData": properties,
            "ts": int(record.get("ts", now)),
        }
        if date_keys:
            event["dateProperties"] = date_keys
        if profile.events is None:
            profile.events = []
        profile.events.append(event)
        self._events.append(event)

    def _target_exists(self, key: str, value: str) -> bool:
        if key in ("objectId", "guid"):
            return value in self._by_object_id
        return value in self._by_identity

    def _new_cursor(self, source: _CursorSource, offset: int) -> str:
        token = secrets.token_urlsafe(24)
        self._cursors[token] = (source, offset)
        while len(self._cursors) > MAX_OPEN_CURSORS:
            self._cursors.popitem(last=False)
        return token

    def _export_event(self, event: dict, sections: CursorSections) -> dict:
        record: dict = {
            "ts": int(datetime.fromtimestamp(event["ts"], UTC).strftime("%Y%m%d%H%M%S")),
            "event_props": dict(event["evtData"]),
            "session_props": {},
        }
        if not sections.profile:
            return record
        profile = self._by_object_id.get(event["objectId"])
        profile_part: dict = {"objectId": event["objectId"], "identity": event["identity"]}
        if profile is not None:
            profile_part["email"] = profile.data.get("Email")
            profile_part |= _profile_sections(profile, sections)
        return {"profile": profile_part, **record}


def _custom_key_overflow(profile: Profile, profile_data: dict) -> Rejection | None:
    if len(profile.data) + len(profile_data) <= MAX_CUSTOM_PROFILE_KEYS:
        return None
    keys = set(profile.data) | set(profile_data)
    custom = len(keys - STANDARD_PROFILE_KEYS)
    return too_many_custom_keys(custom) if custom > MAX_CUSTOM_PROFILE_KEYS else None


def _apply_multi_value(current: object, operation: dict) -> list[str]:
    operator, operand = next(iter(operation.items()))
    values = [operand] if isinstance(operand, str) else list(operand)
    if current is None:
        existing: list[str] = []
    elif isinstance(current, list):
        existing = list(current)
    else:
        # Adding to a scalar promotes it to a multi-value (docs: platform-considerations).
        existing = [str(current)]
    if operator == "$remove":
        removed = set(values)
        return [value for value in existing if value not in removed]
    merged = existing + [value for value in values if value not in existing]
    return merged[-MAX_MULTI_VALUE_ITEMS:]


def _primary(profile: Profile) -> str | None:
    return profile.identities[0] if profile.identities else None


def _rendered_data(profile: Profile) -> dict:
    return {
        key: list(value) if isinstance(value, list) else value
        for key, value in profile.data.items()
    }


def _event_summary(profile: Profile) -> dict[str, dict[str, int]]:
    summary: dict[str, dict[str, int]] = {}
    for event in profile.events or ():
        seen = summary.get(event["evtName"])
        if seen is None:
            summary[event["evtName"]] = {
                "count": 1,
                "first_seen": event["ts"],
                "last_seen": event["ts"],
            }
        else:
            seen["count"] += 1
            seen["first_seen"] = min(seen["first_seen"], event["ts"])
            seen["last_seen"] = max(seen["last_seen"], event["ts"])
    return summary


def _platform_info(profile: Profile) -> list[dict]:
    info: list[dict] = [{"objectId": profile.object_id}]
    for token in profile.tokens or ():
        info.append(
            {
                "objectId": profile.object_id,
                "platform": token.get("type"),
                "push_token": token.get("id"),
            }
        )
    return info


def _lookup_record(profile: Profile) -> dict:
    record = {
        "identity": _primary(profile),
        "all_identities": list(profile.identities),
        "profileData": _rendered_data(profile),
        "events": _event_summary(profile),
        "platformInfo": _platform_info(profile),
    }
    if "Email" in profile.data:
        record["email"] = profile.data["Email"]
    return record


def _export_record(profile: Profile, sections: CursorSections) -> dict:
    return {
        "identity": _primary(profile),
        "all_identities": list(profile.identities),
        **_profile_sections(profile, sections),
    }


def _profile_sections(profile: Profile, sections: CursorSections) -> dict:
    parts: dict = {}
    if sections.profile:
        parts["profileData"] = _rendered_data(profile)
    if sections.app:
        parts["platformInfo"] = _platform_info(profile)
    if sections.events:
        parts["events"] = _event_summary(profile)
    return parts


def _admin_view(profile: Profile) -> dict:
    return {
        "objectId": profile.object_id,
        "identity": _primary(profile),
        "all_identities": list(profile.identities),
        "profileData": _rendered_data(profile),
        "dateProperties": sorted(profile.date_keys or ()),
        "eventCounts": {name: seen["count"] for name, seen in _event_summary(profile).items()},
        "tokens": [dict(token) for token in profile.tokens or ()],
        "created_at": profile.created_at,
        "updated_at": profile.updated_at,
    }


def _day_bounds(query: dict) -> tuple[int, int]:
    day_from = query.get("from")
    day_to = query.get("to")
    return (
        int(day_from) if day_from is not None else 0,
        int(day_to) if day_to is not None else 99_999_999,
    )


def _day(epoch_seconds: int) -> int:
    return int(datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y%m%d"))
