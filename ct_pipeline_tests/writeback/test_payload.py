"""Parsing CleverTap webhook bodies: fingerprints, event times, and the shapes CleverTap sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ct_pipeline.webhooks import WebhookPayloadError, parse_delivery

MARCH_5 = datetime(2026, 3, 5, 10, 30, tzinfo=UTC)


def body(*profiles: dict, event: str = "Charged", **top: object) -> bytes:
    return json.dumps({"key_values": {"event": event}, "profiles": list(profiles), **top}).encode()


def test_the_same_event_person_and_time_give_the_same_fingerprint_whatever_else_differs():
    first = parse_delivery(
        body({"identity": "+919812345670", "event_properties": {"ts": 1772706600}}, targetId=1)
    )
    again = parse_delivery(
        body(
            {
                "identity": "+919812345670",
                "objectId": "__g1",
                "event_properties": {"ts": 1772706600, "Amount": 10},
            },
            targetId=2,
        )
    )

    assert first.events[0].fingerprint == again.events[0].fingerprint


@pytest.mark.parametrize(
    "change",
    [{"identity": "+919812345671"}, {"event_properties": {"ts": 1772706601}}],
    ids=["another-person", "another-time"],
)
def test_another_person_or_time_gives_another_fingerprint(change: dict):
    base = {"identity": "+919812345670", "event_properties": {"ts": 1772706600}}

    first = parse_delivery(body(base)).events[0]
    other = parse_delivery(body({**base, **change})).events[0]

    assert first.fingerprint != other.fingerprint


def test_without_an_event_time_only_an_identical_profile_gives_the_same_fingerprint():
    profile = {"identity": "+919812345670", "event_properties": {"Amount": 10}}

    first = parse_delivery(body(profile)).events[0]
    resent = parse_delivery(body(profile)).events[0]
    different = parse_delivery(body({**profile, "event_properties": {"Amount": 20}})).events[0]

    assert first.event_time is None
    assert first.fingerprint == resent.fingerprint
    assert first.fingerprint != different.fingerprint


@pytest.mark.parametrize(
    "value",
    [
        1772706600,
        1772706600000,
        "1772706600",
        "$D_1772706600",
        "2026-03-05T10:30:00Z",
        "2026-03-05T16:00:00+05:30",
    ],
    ids=["epoch", "epoch-ms", "epoch-text", "clevertap-date", "iso-utc", "iso-offset"],
)
def test_event_times_are_read_in_every_form_clevertap_uses(value: object):
    parsed = parse_delivery(body({"identity": "a", "event_properties": {"event_time": value}}))

    assert parsed.events[0].event_time == MARCH_5


def test_the_event_time_may_come_from_the_campaign_key_values():
    raw = {
        "key_values": {"event": "Charged", "event_time": 1772706600},
        "profiles": [{"identity": "a"}],
    }

    parsed = parse_delivery(json.dumps(raw).encode())

    assert parsed.events[0].event_time == MARCH_5


def test_a_single_profile_object_is_read_as_a_list_of_one():
    raw = {"key_values": {"event": "Charged"}, "profiles": {"identity": "a"}}

    parsed = parse_delivery(json.dumps(raw).encode())

    assert [event.identity for event in parsed.events] == ["a"]


def test_the_event_key_is_configurable():
    raw = {"key_values": {"ct_event": "App Uninstalled"}, "profiles": [{"identity": "a"}]}

    parsed = parse_delivery(json.dumps(raw).encode(), event_key="ct_event")

    assert parsed.event_name == "App Uninstalled"
    with pytest.raises(WebhookPayloadError, match="key_values.event"):
        parse_delivery(json.dumps(raw).encode())


def test_a_non_numeric_crm_contact_id_is_ignored():
    parsed = parse_delivery(body({"identity": "a", "profileData": {"crm_contact_id": "abc"}}))

    assert parsed.events[0].crm_contact_id is None


def test_profiles_without_any_identifier_keep_distinct_fingerprints_under_a_campaign_time():
    raw = {
        "key_values": {"event": "Charged", "event_time": 1772706600},
        "profiles": [{"profileData": {"Plan": "Gold"}}, {"profileData": {"Plan": "Silver"}}],
    }

    first, second = parse_delivery(json.dumps(raw).encode()).events

    assert first.fingerprint != second.fingerprint
    assert (first.identity, first.email, first.phone, first.crm_contact_id) == (None,) * 4


def test_a_nul_inside_a_value_is_kept_visible_as_a_replacement_character():
    raw = {"key_values": {"event": "Char\u0000ged"}, "profiles": [{"identity": "+9198\u00001"}]}

    [event] = parse_delivery(json.dumps(raw).encode()).events

    assert (event.event_name, event.identity) == ("Char\ufffdged", "+9198\ufffd1")
