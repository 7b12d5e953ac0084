"""Matching webhook events to Contacts, and what each event writes: pure functions on frames."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from ct_pipeline.config import NOTE_PLACEHOLDERS, WritebackEvent, WritebackSettings
from ct_pipeline.webhooks.matching import (
    AMBIGUOUS,
    NO_IDENTIFIER,
    NO_MATCH,
    UNCONFIGURED,
    ContactIndex,
    match_events,
    normalised_identities,
    note_content,
    writeback_values,
)

PUSHED = pd.DataFrame({"identity": ["+919812345670"], "contact_id": ["501"]})
IDENTITIES = pd.DataFrame(
    {
        "module": ["Contacts", "Contacts", "Contacts", "Contacts", "Leads"],
        "zoho_id": ["501", "502", "503", "504", "901"],
        "identity": [
            "+919812345670",
            "asha@example.in",
            "+919812345673",
            "+919812345675",
            "+919812345674",
        ],
        "mobile_e164": [
            "+919812345670",
            None,
            "+919812345673",
            "+919812345675",
            "+919812345674",
        ],
        "email": [None, "asha@example.in", "shared@example.in", "shared@example.in", None],
    }
)


def match_one(**event: object) -> pd.Series:
    columns = {"identity": None, "email": None, "phone": None, "crm_contact_id": None}
    events = pd.DataFrame([{**columns, **event}], dtype="str")
    normalised = normalised_identities(events, "IN")
    return match_events(events, ContactIndex(PUSHED, IDENTITIES), normalised).iloc[0]


@pytest.mark.parametrize(
    ("event", "contact_id", "matched_by"),
    [
        ({"identity": "x", "crm_contact_id": "777"}, "777", "crm_contact_id"),
        ({"identity": "+919812345670"}, "501", "pushed_identity"),
        ({"identity": "098123 45670"}, "501", "pushed_identity"),
        ({"identity": "+91 98123-45673"}, "503", "identity"),
        ({"identity": " Asha@Example.IN "}, "502", "identity"),
        ({"identity": "app-user-9", "email": "ASHA@example.in"}, "502", "email"),
        ({"identity": "app-user-9", "phone": "9812345673"}, "503", "phone"),
    ],
    ids=[
        "crm-contact-id",
        "pushed-identity",
        "pushed-after-normalising",
        "identity",
        "email-identity",
        "email",
        "phone",
    ],
)
def test_an_event_matches_its_contact_the_most_reliable_way_it_can(
    event: dict, contact_id: str, matched_by: str
):
    match = match_one(**event)

    assert (match["contact_id"], match["matched_by"], match["reason"]) == (
        contact_id,
        matched_by,
        None,
    )


def test_an_email_two_contacts_share_is_ambiguous():
    match = match_one(identity="app-user-9", email="shared@example.in")

    assert (match["contact_id"], match["reason"]) == (None, AMBIGUOUS)


def test_an_event_with_only_an_object_id_has_no_identifier_to_match_by():
    match = match_one(identity=None)

    assert (match["contact_id"], match["reason"]) == (None, NO_IDENTIFIER)


def test_a_lead_is_never_matched():
    match = match_one(identity="+919812345674")

    assert (match["contact_id"], match["reason"]) == (None, NO_MATCH)


def test_an_unknown_identity_has_no_match():
    match = match_one(identity="+919000000017", email="nobody@example.in")

    assert (match["contact_id"], match["reason"]) == (None, NO_MATCH)


def test_event_date_values_are_dates_in_the_configured_time_zone():
    settings = WritebackSettings(
        events=[
            WritebackEvent(
                event="Charged", field="Last_Purchase_Date", value="$event_date", note_title="P"
            )
        ],
        timezone="Asia/Kolkata",
    )
    events = pd.DataFrame(
        {
            "event_name": ["charged", "Wishlist Viewed"],
            "event_time": [datetime(2026, 3, 4, 20, 0, tzinfo=UTC), pd.NaT],
            "received_at": [datetime(2026, 3, 6, tzinfo=UTC)] * 2,
        }
    )

    values = writeback_values(events, settings)

    assert json.loads(values.loc[0, "value"]) == "2026-03-05"
    assert values.loc[0, "field"] == "Last_Purchase_Date"
    assert (values.loc[1, "reason"], values.loc[1, "event_date"]) == (UNCONFIGURED, "2026-03-06")


def test_a_note_template_fills_in_every_placeholder():
    template = " | ".join(f"{name}={{{name}}}" for name in NOTE_PLACEHOLDERS)
    rule = WritebackEvent(
        event="Charged", field="F", value=1, note_title="P", note_content=template
    )
    settings = WritebackSettings(events=[rule])

    with_time = note_content(
        settings, "Charged", "2026-03-05", datetime(2026, 3, 4, 20, 0, tzinfo=UTC), "17", "ab" * 20
    )
    without = note_content(settings, "charged", "2026-03-05", None, None, "cd" * 20)

    assert with_time == (
        "event=Charged | date=2026-03-05 | time=2026-03-04 20:00 UTC | campaign=17 | "
        "source=CleverTap webhook campaign 17 | event_ref=abababababababab"
    )
    assert "time=2026-03-05 | campaign= | source=CleverTap |" in without
