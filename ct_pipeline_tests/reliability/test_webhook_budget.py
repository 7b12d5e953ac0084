"""The webhook receiver's time budget at realistic sizes, with its default body limit.

CleverTap waits 3 s (setup-webhooks) or 5 s (the webhooks FAQ) for an answer and then retries
(research/clevertap.md section 6). The receiver's work grows with the events in a delivery, not
its bytes, so the limit in bytes bounds the time only for a given shape of profile; these tests
use the shape of CleverTap's campaign sample. A delivery that takes longer than CleverTap waits
is still stored whole, and the retry that follows adds nothing: a late answer loses no event,
where a refused body (413) would lose them all.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from ct_pipeline.sandbox.server import serving
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.webhooks import INBOX_TABLE, WEBHOOK_PATH, create_webhook_app
from ct_pipeline.webhooks.app import DEFAULT_MAX_BODY_BYTES
from ct_pipeline_tests.writeback.conftest import TOKEN

SETUP_TIMEOUT_SECONDS = 3.0  # docs.clevertap.com setup-webhooks
FAQ_TIMEOUT_SECONDS = 5.0  # docs.clevertap.com webhooks-overview FAQ
TEN_MB = 10 * 1024 * 1024
STORED_WITHIN_SECONDS = 120
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

logger = logging.getLogger(__name__)


def campaign_profile(number: int) -> dict[str, Any]:
    """One profile entry shaped like CleverTap's campaign webhook sample."""
    phone = f"+9198{number:08d}"
    return {
        "identity": phone,
        "email": f"person.{number}@example.in",
        "objectId": f"__g{number:030d}",
        "profileData": {"Phone": phone, "crm_contact_id": f"55459740{number:011d}"},
        "event_properties": {"event_time": 1772706600 + number, "Amount": 499},
        "push_token": f"{number:064x}",
    }


def delivery_of(size: int) -> tuple[bytes, int]:
    """The largest `Charged` delivery of campaign profiles no bigger than `size` bytes, and its
    number of profiles."""
    head = {"targetId": 1700000101, "key_values": {"event": "Charged"}, "profiles": []}
    profiles: list[str] = []
    size_so_far = len(json.dumps(head))
    while True:
        entry = json.dumps(campaign_profile(len(profiles)))
        if size_so_far + len(entry) + len(", ") > size:
            break
        profiles.append(entry)
        size_so_far += len(entry) + len(", ")
    body = json.dumps(head)[: -len("[]}")] + "[" + ", ".join(profiles) + "]}"
    assert len(body) <= size, "the delivery came out larger than asked"
    return body.encode(), len(profiles)


@pytest.fixture
def receiver(warehouse: WarehouseResource) -> Iterator[str]:
    """The receiver with its default body limit, on each test warehouse; yields its URL."""
    with serving(create_webhook_app(warehouse, TOKEN)) as server:
        yield f"{server.url}{WEBHOOK_PATH}"


def timed(send: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    started = time.perf_counter()
    response = send()
    return response, time.perf_counter() - started


def test_a_10_mb_body_is_refused_within_the_budget(sqlite_warehouse: WarehouseResource):
    huge = b'{"profiles": [' + b'{"identity": "x"},' * (TEN_MB // 18) + b"{}]}"
    chunks = [huge[start : start + 65536] for start in range(0, len(huge), 65536)]

    with serving(create_webhook_app(sqlite_warehouse, TOKEN)) as server:
        url = f"{server.url}{WEBHOOK_PATH}"
        declared, declared_seconds = timed(
            lambda: requests.post(url, data=huge, headers=HEADERS, timeout=30)
        )
        streamed, streamed_seconds = timed(
            lambda: requests.post(url, data=iter(chunks), headers=HEADERS, timeout=30)
        )

    logger.info(
        "10 MB refused in %.3f s (declared), %.3f s (streamed)", declared_seconds, streamed_seconds
    )
    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert declared_seconds < SETUP_TIMEOUT_SECONDS
    assert streamed_seconds < SETUP_TIMEOUT_SECONDS


def test_a_delivery_at_the_default_size_limit_is_stored_whole_within_clevertaps_timeout(
    receiver: str, warehouse: WarehouseResource
):
    body, profiles = delivery_of(DEFAULT_MAX_BODY_BYTES)

    response, seconds = timed(
        lambda: requests.post(receiver, data=body, headers=HEADERS, timeout=60)
    )

    logger.info("%d bytes, %d events: 200 after %.2f s", len(body), profiles, seconds)
    assert response.status_code == 200, response.text[:500]
    assert response.json()["new_events"] == profiles
    assert len(warehouse.read_table(INBOX_TABLE, columns=["event_id"])) == profiles
    assert seconds < FAQ_TIMEOUT_SECONDS


def test_a_delivery_answered_after_clevertap_gave_up_is_stored_and_its_retry_adds_nothing(
    receiver: str, warehouse: WarehouseResource
):
    body, profiles = delivery_of(DEFAULT_MAX_BODY_BYTES)

    with pytest.raises(requests.ReadTimeout):
        requests.post(receiver, data=body, headers=HEADERS, timeout=(10, 0.2))
    deadline = time.monotonic() + STORED_WITHIN_SECONDS
    while len(warehouse.read_table(INBOX_TABLE, columns=["event_id"])) < profiles:
        assert time.monotonic() < deadline, "the delivery the sender gave up on was not stored"
        time.sleep(0.2)
    retry = requests.post(receiver, data=body, headers=HEADERS, timeout=60)

    assert retry.status_code == 200
    assert (retry.json()["new_events"], retry.json()["duplicates"]) == (0, profiles)
    assert len(warehouse.read_table(INBOX_TABLE, columns=["event_id"])) == profiles
