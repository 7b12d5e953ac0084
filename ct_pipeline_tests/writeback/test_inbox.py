"""The inbox counts CleverTap's retries once and later genuine events again, with or without a
time in the payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.webhooks import INBOX_TABLE, parse_delivery
from ct_pipeline.webhooks.inbox import DEFAULT_RETRY_WINDOW, ensure_inbox_tables, store_delivery

NOON = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
TIMELESS = {"identity": "+919812345670", "profileData": {"Plan": "Gold"}}
TIMED = {**TIMELESS, "event_properties": {"event_time": 1772706600}}


def receive(warehouse: WarehouseResource, entry: dict, at: datetime) -> int:
    """Store one delivery of `entry` received at `at`; the number of new events."""
    raw = json.dumps({"key_values": {"event": "Charged"}, "profiles": [entry]}).encode()
    return store_delivery(warehouse, parse_delivery(raw), raw, received_at=at).new_events


def inbox_rows(warehouse: WarehouseResource) -> int:
    return int(warehouse.read_sql(f"SELECT COUNT(*) AS n FROM {INBOX_TABLE}")["n"].iloc[0])


@pytest.fixture
def inbox(warehouse: WarehouseResource) -> WarehouseResource:
    ensure_inbox_tables(warehouse)
    return warehouse


def test_a_retry_seconds_later_counts_once_and_a_day_later_counts_again(inbox):
    first = receive(inbox, TIMELESS, NOON)
    retry = receive(inbox, TIMELESS, NOON + timedelta(seconds=4))
    second_retry = receive(inbox, TIMELESS, NOON + timedelta(seconds=9))
    next_day = receive(inbox, TIMELESS, NOON + timedelta(days=1))

    assert (first, retry, second_retry, next_day) == (1, 0, 0, 1)
    assert inbox_rows(inbox) == 2


def test_a_retry_just_across_the_edge_of_a_window_still_counts_once(inbox):
    window = DEFAULT_RETRY_WINDOW.total_seconds()
    edge = datetime.fromtimestamp((NOON.timestamp() // window + 1) * window, UTC)

    before = receive(inbox, TIMELESS, edge - timedelta(seconds=2))
    after = receive(inbox, TIMELESS, edge + timedelta(seconds=2))

    assert (before, after) == (1, 0)


def test_the_same_profile_once_the_window_has_passed_is_a_new_event(inbox):
    first = receive(inbox, TIMELESS, NOON)
    later = receive(inbox, TIMELESS, NOON + DEFAULT_RETRY_WINDOW + timedelta(seconds=1))

    assert (first, later) == (1, 1)


def test_an_event_with_its_own_time_is_one_event_however_late_it_is_resent(inbox):
    first = receive(inbox, TIMED, NOON)
    resent = receive(inbox, TIMED, NOON + timedelta(days=3))

    assert (first, resent) == (1, 0)
