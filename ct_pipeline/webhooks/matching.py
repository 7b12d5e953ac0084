"""Which Zoho Contact a webhook event is about, and what it writes there.

A profile is matched, most reliable first: by the `crm_contact_id` the forward flow put in its
profile data; by its identity in `clevertap_pushed_profiles` (every profile CleverTap accepted,
with its Contact); then by its identity, email and phone, normalised as the forward flow
normalises them, against `contact_identities`. A way that finds one Contact decides; a way that
finds several parks the event as ambiguous; no way at all parks it as unmatched. A profile
that carries none of identity, email, phone and crm_contact_id cannot be matched at all and is
parked as such.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa

from ct_pipeline.config import DEFAULT_NOTE_CONTENT, WritebackEvent, WritebackSettings
from ct_pipeline.identity import normalize_emails, normalize_phones
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.state import PUSHED_PROFILES

BY_CONTACT_ID = "crm_contact_id"
BY_PUSHED_IDENTITY = "pushed_identity"
BY_IDENTITY = "identity"
BY_EMAIL = "email"
BY_PHONE = "phone"

# Reasons an event is parked.
NO_MATCH = "no_matching_contact"
NO_IDENTIFIER = "no_identifier"
AMBIGUOUS = "ambiguous_contact"
UNCONFIGURED = "event_not_configured"

# The event columns a Contact can be found by; objectId is CleverTap's own and matches nothing.
MATCHING_IDENTIFIERS = ("identity", "email", "phone", "crm_contact_id")

EVENT_DATE_VALUE = "$event_date"
CONTACTS = "Contacts"
IDENTITIES_TABLE = "contact_identities"
# contact_identities columns compared with an event's email (phones: any `*e164` column).
EMAIL_COLUMNS = frozenset({"email", "secondary_email", "email_normalised"})
# Values per lookup query; below SQLite's old limit of 999 bound parameters.
LOOKUP_CHUNK = 900


@dataclass(frozen=True)
class ContactIndex:
    """The rows of the warehouse tables a match is looked up in: `pushed` (`identity`,
    `contact_id`) and `identities` (`module`, `zoho_id`, and value columns)."""

    pushed: pd.DataFrame
    identities: pd.DataFrame


def match_events(
    events: pd.DataFrame, index: ContactIndex, normalised: pd.DataFrame
) -> pd.DataFrame:
    """For each event (`identity`, `crm_contact_id`; `normalised` from
    `normalised_identities`): the `contact_id` and `matched_by`, or the `reason` it has none.
    Index-aligned with `events`."""
    result = pd.DataFrame(
        {"contact_id": None, "matched_by": None, "reason": None},
        index=events.index,
        dtype="object",
    )
    undecided = pd.Series(True, index=events.index)

    anonymous = events[list(MATCHING_IDENTIFIERS)].isna().all(axis="columns")
    result.loc[anonymous, "reason"] = NO_IDENTIFIER
    undecided &= ~anonymous

    given = events["crm_contact_id"].where(events["crm_contact_id"].notna(), None)
    by_id = given.notna() & given.astype("str").str.fullmatch(r"\d+").fillna(False)
    result.loc[by_id, "contact_id"] = given[by_id].astype("str")
    result.loc[by_id, "matched_by"] = BY_CONTACT_ID
    undecided &= ~by_id

    pushed = _lookup(index.pushed, "identity", "contact_id")
    raw_identity = events["identity"].where(events["identity"].notna(), None)
    for candidates, matched_by in (
        (raw_identity, BY_PUSHED_IDENTITY),
        (normalised["identity"], BY_PUSHED_IDENTITY),
    ):
        _decide(result, undecided, candidates, pushed, matched_by)

    contacts = index.identities
    if "module" in contacts.columns:
        contacts = contacts[contacts["module"] == CONTACTS]
    identity_lookup = _lookup_any(contacts, ["identity"])
    email_lookup = _lookup_any(contacts, _email_columns(contacts.columns))
    phone_lookup = _lookup_any(contacts, _phone_columns(contacts.columns))
    for candidates, lookup, matched_by in (
        (normalised["identity"], identity_lookup, BY_IDENTITY),
        (normalised["email"], email_lookup, BY_EMAIL),
        (normalised["phone"], phone_lookup, BY_PHONE),
        (normalised["identity"], email_lookup, BY_EMAIL),
        (normalised["identity"], phone_lookup, BY_PHONE),
    ):
        _decide(result, undecided, candidates, lookup, matched_by)

    result.loc[undecided & result["reason"].isna(), "reason"] = NO_MATCH
    return result


def writeback_values(events: pd.DataFrame, settings: WritebackSettings) -> pd.DataFrame:
    """For each event: the configured `field`, its `value` as JSON and the `event_date`, or
    `reason` when its event is not configured. Index-aligned with `events`."""
    rules = {rule.event.casefold(): rule for rule in settings.events}
    zone = ZoneInfo(settings.timezone)
    rows = []
    for name, event_time, received_at in zip(
        events["event_name"], events["event_time"], events["received_at"], strict=True
    ):
        moment = received_at if pd.isna(event_time) else event_time
        event_date = pd.Timestamp(moment).tz_convert(zone).date().isoformat()
        rule = rules.get(str(name).casefold())
        if rule is None:
            rows.append((None, None, event_date, UNCONFIGURED))
            continue
        rows.append((rule.field, json.dumps(_value(rule, event_date)), event_date, None))
    return pd.DataFrame(
        rows, columns=["field", "value", "event_date", "reason"], index=events.index, dtype=object
    )


def note_title(settings: WritebackSettings, event_name: str) -> str:
    """The configured Note title of an event (it never carries personal data)."""
    rule = _rule(settings, event_name)
    return rule.note_title if rule is not None else event_name


def note_content(
    settings: WritebackSettings,
    event_name: str,
    event_date: str,
    event_time: datetime | None,
    target_id: str | None,
    event_id: str,
) -> str:
    """The Note body of an event: its configured `note_content` template, filled in."""
    rule = _rule(settings, event_name)
    template = rule.note_content if rule is not None else DEFAULT_NOTE_CONTENT
    when = (
        pd.Timestamp(event_time).strftime("%Y-%m-%d %H:%M UTC")
        if event_time is not None and not pd.isna(event_time)
        else event_date
    )
    return template.format_map(
        {
            "event": event_name,
            "date": event_date,
            "time": when,
            "campaign": target_id or "",
            "source": f"CleverTap webhook campaign {target_id}" if target_id else "CleverTap",
            "event_ref": event_id[:16],
        }
    )


def _rule(settings: WritebackSettings, event_name: str) -> WritebackEvent | None:
    for rule in settings.events:
        if rule.event.casefold() == event_name.casefold():
            return rule
    return None


def _value(rule: WritebackEvent, event_date: str) -> str | bool | int | float:
    return event_date if rule.value == EVENT_DATE_VALUE else rule.value


def load_contact_index(warehouse: WarehouseResource, values: Iterable[str]) -> ContactIndex:
    """The rows of `clevertap_pushed_profiles` and `contact_identities` holding any of
    `values` (identities, emails, phones), read with indexed lookups rather than whole."""
    wanted = sorted({value for value in values if isinstance(value, str) and value})
    pushed = _rows_holding(warehouse, PUSHED_PROFILES, ["identity"], ["contact_id"], wanted)
    columns = _columns(warehouse, IDENTITIES_TABLE)
    value_columns = [
        column
        for column in ["identity", *_email_columns(columns), *_phone_columns(columns)]
        if column in columns
    ]
    identities = _rows_holding(
        warehouse, IDENTITIES_TABLE, value_columns, ["module", "zoho_id"], wanted
    )
    return ContactIndex(pushed=pushed, identities=identities)


def normalised_identities(events: pd.DataFrame, region: str) -> pd.DataFrame:
    """The identity, email and phone of each event as the forward flow writes them:
    phones in E.164 read in `region`, emails trimmed and lower-cased."""
    identity = events["identity"].astype("str")
    is_email = identity.str.contains("@", regex=False).fillna(False)
    emails = normalize_emails(events["email"].astype("str"))["email"]
    phones = normalize_phones(events["phone"].astype("str"), region)["e164"]
    identity_emails = normalize_emails(identity.where(is_email))["email"]
    identity_phones = normalize_phones(identity.where(~is_email), region)["e164"]
    return pd.DataFrame(
        {
            "identity": identity_emails.where(is_email, identity_phones),
            "email": emails,
            "phone": phones,
        },
        index=events.index,
    )


def _email_columns(columns: Iterable[str]) -> list[str]:
    return [column for column in columns if column.lower() in EMAIL_COLUMNS]


def _phone_columns(columns: Iterable[str]) -> list[str]:
    return [column for column in columns if column.lower().endswith("e164")]


def _columns(warehouse: WarehouseResource, table: str) -> list[str]:
    if not warehouse.table_exists(table):
        return []
    return list(warehouse.read_sql(f"SELECT * FROM {table} WHERE 1 = 0").columns)


def _rows_holding(
    warehouse: WarehouseResource,
    table: str,
    value_columns: list[str],
    other_columns: list[str],
    values: list[str],
) -> pd.DataFrame:
    """Rows of `table` whose value columns hold any of `values` (an empty frame if none)."""
    present = _columns(warehouse, table)
    if not values or not value_columns or not set(other_columns) <= set(present):
        return pd.DataFrame(columns=[*other_columns, *value_columns])
    quote = warehouse.engine.dialect.identifier_preparer.quote
    selected = ", ".join(quote(c) for c in dict.fromkeys([*other_columns, *value_columns]))
    frames = []
    with warehouse.transaction() as tx:
        for column in value_columns:
            statement = sa.text(
                f"SELECT {selected} FROM {quote(table)} WHERE {quote(column)} IN :keys"
            ).bindparams(sa.bindparam("keys", expanding=True))
            for start in range(0, len(values), LOOKUP_CHUNK):
                result = tx.connection.execute(
                    statement, {"keys": values[start : start + LOOKUP_CHUNK]}
                )
                frames.append(pd.DataFrame(result.fetchall(), columns=list(result.keys())))
    found = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return found.astype("object").drop_duplicates()


def _lookup(table: pd.DataFrame, key: str, value: str) -> pd.Series:
    """Distinct `value`s per `key`, as a Series of frozensets."""
    if table.empty or key not in table.columns or value not in table.columns:
        return pd.Series(dtype="object")
    pairs = table[[key, value]].dropna().astype("str").drop_duplicates()
    return pairs.groupby(key)[value].agg(frozenset)


def _lookup_any(contacts: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Contact ids per value of any of `keys`."""
    if contacts.empty or "zoho_id" not in contacts.columns or not keys:
        return pd.Series(dtype="object")
    pairs = pd.concat(
        [
            contacts[[key, "zoho_id"]].rename(columns={key: "value"})
            for key in keys
            if key in contacts.columns
        ],
        ignore_index=True,
    )
    pairs = pairs.dropna().astype("str").drop_duplicates()
    return pairs.groupby("value")["zoho_id"].agg(frozenset)


def _decide(
    result: pd.DataFrame,
    undecided: pd.Series,
    candidates: pd.Series,
    lookup: pd.Series,
    matched_by: str,
) -> None:
    """Settle the undecided events whose candidate value finds one Contact, or several."""
    if lookup.empty:
        return
    open_rows = undecided & candidates.notna()
    if not open_rows.any():
        return
    found = candidates[open_rows].astype("str").map(lookup).dropna()
    sizes = found.map(len)
    single = sizes.index[sizes == 1]
    several = sizes.index[sizes > 1]
    result.loc[single, "contact_id"] = found[single].map(lambda ids: next(iter(ids)))
    result.loc[single, "matched_by"] = matched_by
    result.loc[several, "reason"] = AMBIGUOUS
    undecided.loc[single] = False
    undecided.loc[several] = False
