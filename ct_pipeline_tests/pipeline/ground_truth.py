"""What the synthetic CRM says each person is, from the generator's own bookkeeping.

The generator keeps, for every record, the person it belongs to (`_person`) and how each of its
Mobile, Phone and Email values was written (`_mobile_kind`, ...). From those alone, without the
pipeline's normalisation or grouping, this module works out whose number or email each value
is, and under which identity each person should reach CleverTap.
"""

from __future__ import annotations

import pandas as pd
import phonenumbers

from ct_pipeline.sandbox.synthetic import SyntheticCrm
from ct_pipeline.sandbox.synthetic_mess import CLEAN_EMAIL_KINDS, PERSON_MOBILE_KINDS

# Kinds of Mobile value that are the person's own number: their Indian mobile however written,
# or a foreign mobile with its country code.
OWN_MOBILE_KINDS = (*PERSON_MOBILE_KINDS, "foreign_plus")
# Kinds of Phone value that repeat the person's mobile.
OWN_PHONE_KINDS = ("plain", "spaced", "e164", "trunk_dashed")


def readable_records(crm: SyntheticCrm, lead_ids: set[str]) -> pd.DataFrame:
    """Each Contact and each Lead of `lead_ids` (those Zoho served) with its person, and the
    person's own mobile (E.164) and email it carries, if any."""
    leads = crm.leads[crm.leads["id"].isin(lead_ids)]
    rows = []
    for module, frame in (("Contacts", crm.contacts), ("Leads", leads)):
        for record in frame.to_dict("records"):
            mobile = None
            if record["_mobile_kind"] in OWN_MOBILE_KINDS:
                mobile = _e164(record["Mobile"])
            elif record["_phone_kind"] in OWN_PHONE_KINDS:
                mobile = _e164(record["Phone"])
            email = None
            if record["_email_kind"] in CLEAN_EMAIL_KINDS:
                email = record["Email"].strip().lower()
            rows.append((module, record["id"], int(record["_person"]), mobile, email))
    return pd.DataFrame(rows, columns=["module", "id", "person", "mobile", "email"])


def owners(records: pd.DataFrame) -> dict[str, set[int]]:
    """Each own mobile and email, and the people who carry it."""
    found: dict[str, set[int]] = {}
    for column in ("mobile", "email"):
        for value, person in records[[column, "person"]].dropna().itertuples(index=False):
            found.setdefault(value, set()).add(int(person))
    return found


def profiles_of(records: pd.DataFrame) -> dict[int, list[pd.DataFrame]]:
    """The profiles each person with a reachable Contact should have: their records linked,
    directly or not, by a shared mobile or email. Records that share nothing cannot be told to
    be one person, so each such part with a Contact and a value is a profile of its own."""
    found: dict[int, list[pd.DataFrame]] = {}
    for person, own in records.groupby("person"):
        for part in _linked_parts(own):
            reachable = part["mobile"].notna() | part["email"].notna()
            if "Contacts" in set(part["module"]) and reachable.any():
                found.setdefault(int(person), []).append(part)
    return found


def own_identity(part: pd.DataFrame) -> str:
    """The identity of a profile made of one record: its mobile, else its email."""
    return _first(part["mobile"]) or str(_first(part["email"]))


def _linked_parts(records: pd.DataFrame) -> list[pd.DataFrame]:
    """The records split into parts that are linked, directly or not, by a shared value."""
    parent = list(range(len(records)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    first_with: dict[str, int] = {}
    values = records[["mobile", "email"]].itertuples(index=False)
    for position, record_values in enumerate(values):
        for value in record_values:
            if isinstance(value, str):
                seen = first_with.setdefault(value, position)
                parent[root(position)] = root(seen)
    roots = [root(position) for position in range(len(records))]
    return [part for _, part in records.groupby(roots)]


def _first(values: pd.Series) -> str | None:
    present = values.dropna()
    return str(present.iloc[0]) if len(present) else None


def _e164(value: object) -> str | None:
    try:
        number = phonenumbers.parse(str(value), "IN")
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
