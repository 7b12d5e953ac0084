"""The webhook receiver under fuzzing: whatever arrives, it answers within CleverTap's patience
without a server error, and it never stores a body that did not carry the secret.

The named refusals (wrong secret, malformed JSON, a 10 MB body) are in the write-back tests; here
hypothesis mutates CleverTap's documented body, invents unknown keys and wrong types, and sends
raw bytes, deep nesting and other encodings, over HTTP to a real receiver.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline_tests.writeback.conftest import TOKEN
from ct_pipeline_tests.writeback.test_receiver import CHARGED, Receiver, _serve

# CleverTap waits 3 to 5 seconds for an answer (research/clevertap.md section 6).
ANSWER_BUDGET_SECONDS = 3.0
REFUSALS = {400, 401, 413, 415, 422}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)
# Paths into CHARGED whose value a mutation replaces.
PATHS = [
    ("targetId",),
    ("key_values",),
    ("key_values", "event"),
    ("profiles",),
    ("profiles", 0),
    ("profiles", 0, "identity"),
    ("profiles", 0, "profileData"),
    ("profiles", 0, "profileData", "crm_contact_id"),
    ("profiles", 0, "event_properties"),
    ("profiles", 0, "event_properties", "event_time"),
    ("profiles", 1, "identity"),
]
MUTATED = st.builds(
    lambda path, value, extra: _mutate(path, value, extra),
    st.sampled_from(PATHS),
    JSON_VALUES,
    st.dictionaries(st.text(min_size=1, max_size=12), JSON_VALUES, max_size=3),
)


@pytest.fixture
def fuzzed(sqlite_warehouse: WarehouseResource) -> Iterator[Receiver]:
    """A receiver on an SQLite warehouse (1 MiB body limit)."""
    yield from _serve(sqlite_warehouse)


@FUZZ
@given(body=MUTATED)
def test_mutated_deliveries_are_stored_or_refused_never_a_server_error(
    fuzzed: Receiver, body: dict
):
    response = _timed(lambda: fuzzed.post(data=json.dumps(body).encode(), headers=_json()))

    assert response.status_code == 200 or response.status_code in REFUSALS, response.text[:500]


@FUZZ
@given(body=MUTATED | JSON_VALUES.map(lambda value: {"anything": value}))
def test_a_body_without_the_secret_is_refused_and_nothing_is_stored(fuzzed: Receiver, body: Any):
    before = fuzzed.stored()

    response = _timed(
        lambda: fuzzed.post(token=None, data=json.dumps(body).encode(), headers=_json())
    )

    assert response.status_code == 401
    assert fuzzed.stored() == before


@FUZZ
@given(raw=st.binary(max_size=4096))
def test_raw_bytes_get_a_refusal_not_a_server_error(fuzzed: Receiver, raw: bytes):
    response = _timed(lambda: fuzzed.post(data=raw, headers=_json()))

    assert response.status_code in REFUSALS, response.text[:500]


@pytest.mark.parametrize(
    ("name", "body", "content_type"),
    [
        ("deep list", b"[" * 200_000 + b"]" * 200_000, "application/json"),
        ("deep object", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "application/json"),
        ("utf-16", json.dumps(CHARGED).encode("utf-16"), "application/json; charset=utf-16"),
        ("latin-1", b'{"key_values": {"event": "Caf\xe9"}}', "application/json; charset=latin-1"),
        ("lone surrogate", b'{"profiles": [{"identity": "\\ud800"}]}', "application/json"),
        ("form", b"profiles=1&key_values=2", "application/x-www-form-urlencoded"),
        ("empty", b"", "application/json"),
        ("nul bytes", b"\x00" * 1000, "application/json"),
        ("huge number", b'{"targetId": 1' + b"0" * 100_000 + b"}", "application/json"),
    ],
)
def test_hostile_encodings_and_shapes_are_refused_quickly(
    fuzzed: Receiver, name: str, body: bytes, content_type: str
):
    response = _timed(lambda: fuzzed.post(data=body, headers={"Content-Type": content_type}))

    assert response.status_code in REFUSALS | {200}, f"{name}: {response.text[:500]}"
    assert fuzzed.stored() == (0, 0) or response.status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer " + TOKEN.upper(),
        "Bearer " + TOKEN[:-1],
        "bearer\t" + TOKEN + "\x00",
        "Basic " + base64.b64encode(("clevertap:" + TOKEN + "\n").encode()).decode(),
        "Basic " + base64.b64encode(b"clevertap:\xff" + TOKEN.encode()).decode(),
        "Bearer " + "A" * 8000,
        "Digest " + TOKEN,
    ],
)
def test_near_miss_secrets_are_refused_and_nothing_is_stored(fuzzed: Receiver, authorization):
    response = _timed(
        lambda: fuzzed.post(token=None, json=copy.deepcopy(CHARGED), headers=_auth(authorization))
    )

    assert response.status_code in (400, 401)
    assert fuzzed.stored() == (0, 0)


def _mutate(path: tuple, value: Any, extra: dict) -> dict:
    body = copy.deepcopy(CHARGED)
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    body.update({key: item for key, item in extra.items() if key not in body})
    return body


def _timed(send):
    started = time.monotonic()
    response = send()
    elapsed = time.monotonic() - started
    assert elapsed < ANSWER_BUDGET_SECONDS, f"answered in {elapsed:.2f}s"
    return response


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def _auth(value: str) -> dict[str, str]:
    return {"Authorization": value}
