"""The CleverTap emulator's `/__sandbox/` admin API, its faults and its concurrency gates."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from ct_pipeline.sandbox.clevertap_emulator import create_clevertap_app
from ct_pipeline.sandbox.credentials import SANDBOX_CLEVERTAP_PASSCODE
from ct_pipeline.sandbox.server import serving
from ct_pipeline_tests.sandbox.test_clevertap_emulator import (
    AUTH,
    Sandbox,
    event_record,
    profile_record,
)

SLOW_SECONDS = 1.0


@pytest.fixture(scope="module")
def running_sandbox() -> Iterator[Sandbox]:
    with serving(create_clevertap_app()) as server:
        yield Sandbox(server.url)


@pytest.fixture
def sandbox(running_sandbox: Sandbox) -> Sandbox:
    running_sandbox.admin("POST", "reset")
    return running_sandbox


def statuses_of_concurrent_calls(count: int, call) -> Counter:
    """Run `call` from `count` threads at once and count the HTTP statuses."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return Counter(
            response.status_code for response in pool.map(lambda _: call(), range(count))
        )


# --- reading what was received --------------------------------------------------------------


def test_admin_profiles_lists_every_profile(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record(f"user-{n}", Name="A") for n in range(3)])

    listing = sandbox.admin("GET", "profiles")

    assert listing["count"] == 3
    assert sorted(profile["identity"] for profile in listing["profiles"]) == [
        "user-0",
        "user-1",
        "user-2",
    ]


def test_admin_profiles_pages_with_offset_and_limit(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record(f"user-{n}", Name="A") for n in range(5)])

    page = sandbox.admin("GET", "profiles", params={"offset": 3, "limit": 10})

    assert page["count"] == 5
    assert [profile["identity"] for profile in page["profiles"]] == ["user-3", "user-4"]


def test_admin_profiles_by_unknown_identity_is_empty(sandbox: Sandbox) -> None:
    assert sandbox.admin("GET", "profiles", params={"identity": "nobody"}) == {
        "count": 0,
        "profiles": [],
    }


def test_admin_events_filter_by_identity_and_name(sandbox: Sandbox) -> None:
    sandbox.upload(
        [
            event_record("user-1", name="Deal Stage Changed", stage_name="Won"),
            event_record("user-1", name="Case Opened"),
            event_record("user-2", name="Deal Stage Changed", stage_name="Lost"),
        ]
    )

    everything = sandbox.admin("GET", "events")
    of_user = sandbox.admin("GET", "events", params={"identity": "user-1"})
    stage_changes = sandbox.admin("GET", "events", params={"name": "Deal Stage Changed"})
    both = sandbox.admin("GET", "events", params={"identity": "user-2", "name": "Case Opened"})

    assert everything["count"] == 3
    assert [event["evtName"] for event in of_user["events"]] == [
        "Deal Stage Changed",
        "Case Opened",
    ]
    assert [event["identity"] for event in stage_changes["events"]] == ["user-1", "user-2"]
    assert both["count"] == 0


def test_request_log_keeps_method_path_query_body_and_status(sandbox: Sandbox) -> None:
    record = profile_record("user-1", Name="A")
    sandbox.upload([record], dryRun=1)

    [logged] = sandbox.admin("GET", "requests")["requests"]

    assert logged["method"] == "POST"
    assert logged["path"] == "/1/upload"
    assert logged["query"] == {"dryRun": "1"}
    assert logged["body"] == {"d": [record]}
    assert logged["status"] == 200


def test_request_log_filters_by_path_and_keeps_the_last_ones(sandbox: Sandbox) -> None:
    for n in range(3):
        sandbox.upload([profile_record(f"user-{n}", Name="A")])
    sandbox.api("GET", "/1/profile.json", params={"identity": "user-0"})

    uploads = sandbox.admin("GET", "requests", params={"path": "/1/upload", "limit": 2})

    assert [entry["body"]["d"][0]["identity"] for entry in uploads["requests"]] == [
        "user-1",
        "user-2",
    ]


def test_request_log_never_shows_the_passcode(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Name="A")])
    sandbox.upload(
        [profile_record("user-1", Name="A")], headers={**AUTH, "X-CleverTap-Passcode": "p"}
    )

    raw = requests.get(f"{sandbox.url}/__sandbox/requests", timeout=10).text

    assert SANDBOX_CLEVERTAP_PASSCODE not in raw
    logged = sandbox.admin("GET", "requests")["requests"]
    assert [entry["headers"]["x-clevertap-passcode"] for entry in logged] == ["[redacted]"] * 2
    assert [entry["status"] for entry in logged] == [200, 401]


def test_stats_count_requests_by_endpoint_and_records(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("a", Name="A"), profile_record("b", Phone="1")])
    sandbox.upload([profile_record("c", Name="A")], dryRun=1)
    sandbox.api("GET", "/1/profile.json", params={"identity": "a"})
    sandbox.upload([], headers={})

    stats = sandbox.admin("GET", "stats")

    assert stats["requests"] == {"POST /1/upload": 3, "GET /1/profile.json": 1}
    assert stats["responses"] == {"200": 3, "401": 1}
    assert stats["records"] == {"received": 3, "processed": 2, "unprocessed": 1, "dry_run": 1}
    assert stats["profiles"] == 1
    assert stats["max_in_flight"]["/1/upload"] == 1


def test_reset_forgets_profiles_events_log_faults_and_counters(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Name="A"), event_record("user-1")])
    sandbox.admin("POST", "faults", json={"uploads_429": 5})

    sandbox.admin("POST", "reset")

    assert sandbox.admin("GET", "profiles")["count"] == 0
    assert sandbox.admin("GET", "events")["count"] == 0
    assert sandbox.admin("GET", "requests")["count"] == 0
    assert sandbox.admin("GET", "stats")["requests"] == {}
    assert sandbox.upload([profile_record("user-2", Name="A")]).status_code == 200


# --- faults ---------------------------------------------------------------------------------


def test_upload_429_fault_answers_the_next_n_uploads_then_recovers(sandbox: Sandbox) -> None:
    sandbox.admin("POST", "faults", json={"uploads_429": 2})

    answers = [sandbox.upload([profile_record("user-1", Name="A")]) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [429, 429, 200]
    assert answers[0].json() == {
        "status": "fail",
        "error": "Too many concurrent requests",
        "code": 429,
    }
    assert "retry-after" not in answers[0].headers
    assert sandbox.admin("GET", "profiles")["count"] == 1


def test_upload_5xx_fault_answers_the_chosen_status(sandbox: Sandbox) -> None:
    sandbox.admin("POST", "faults", json={"uploads_5xx": 1, "status_5xx": 500})

    failed = sandbox.upload([profile_record("user-1", Name="A")])

    assert failed.status_code == 500
    assert failed.json()["status"] == "fail"
    assert sandbox.admin("GET", "profiles")["count"] == 0
    assert sandbox.upload([profile_record("user-1", Name="A")]).status_code == 200


def test_default_5xx_fault_is_503_with_documented_text(sandbox: Sandbox) -> None:
    sandbox.admin("POST", "faults", json={"uploads_5xx": 1})

    failed = sandbox.upload([profile_record("user-1", Name="A")])

    assert failed.status_code == 503
    assert failed.json() == {
        "status": "fail",
        "error": "The system is unavailable, try again later",
        "code": 503,
    }


def test_other_api_faults_spare_uploads(sandbox: Sandbox) -> None:
    sandbox.admin("POST", "faults", json={"others_429": 1, "others_5xx": 1})

    upload = sandbox.upload([profile_record("user-1", Name="A")])
    lookups = [sandbox.api("GET", "/1/profile.json", params={"identity": "user-1"}) for _ in "abc"]

    assert upload.status_code == 200
    assert [lookup.status_code for lookup in lookups] == [429, 503, 200]


def test_slow_fault_delays_answers_by_the_chosen_seconds(sandbox: Sandbox) -> None:
    sandbox.admin("POST", "faults", json={"slow_seconds": 0.3, "slow_count": 1})

    started = time.monotonic()
    sandbox.upload([profile_record("user-1", Name="A")])
    slow = time.monotonic() - started
    started = time.monotonic()
    sandbox.upload([profile_record("user-1", Name="A")])
    fast = time.monotonic() - started

    assert slow >= 0.3
    assert fast < 0.3


def test_reject_fault_refuses_records_of_the_chosen_identity(sandbox: Sandbox) -> None:
    sandbox.admin("POST", "faults", json={"reject": [{"identity": "user-2", "code": 555}]})

    answer = sandbox.upload([profile_record("user-1", Name="A"), profile_record("user-2")]).json()

    assert answer["status"] == "partial"
    [entry] = answer["unprocessed"]
    assert entry["code"] == 555
    assert entry["error"] == (
        "Server error. ErrorCode: 555 - Miscellaneous server error. Skipped record number : 2"
    )
    assert sandbox.admin("GET", "profiles", params={"identity": "user-2"})["count"] == 0


def test_normalised_echo_fault_writes_rejected_records_back_parsed(sandbox: Sandbox) -> None:
    sandbox.admin("POST", "faults", json={"reject": [{"identity": "7"}], "echo": "normalised"})
    record = {"type": "event", "identity": 7, "ts": 1468208340, "evtName": "Paid"}
    record["evtData"] = {"Amount": 300, "Items": [{"Quantity": 1}], "Paid": True}

    answer = sandbox.upload([profile_record("user-1", Name="A"), record]).json()

    assert answer["status"] == "partial"
    (entry,) = answer["unprocessed"]
    assert "Skipped record number : 2" in entry["error"]
    assert entry["record"] == {
        "type": "event",
        "identity": "7",
        "ts": 1468208340.0,
        "evtName": "Paid",
        "evtData": {"Amount": 300.0, "Items": [{"Quantity": 1.0}], "Paid": True},
    }
    assert isinstance(entry["record"]["ts"], float)
    assert entry["record"]["evtData"]["Paid"] is True
    assert sandbox.admin("GET", "faults")["echo"] == "normalised"


def test_reject_fault_with_times_is_used_up(sandbox: Sandbox) -> None:
    rule = {"identity": "user-1", "code": 516, "error": "Phone number invalid", "times": 1}
    sandbox.admin("POST", "faults", json={"reject": [rule]})

    first = sandbox.upload([profile_record("user-1", Name="A")]).json()
    second = sandbox.upload([profile_record("user-1", Name="A")]).json()

    assert first["unprocessed"][0]["error"].startswith("Phone is incorrect. ErrorCode: 516 - ")
    assert second["status"] == "success"
    assert sandbox.admin("GET", "faults")["reject"] == []


def test_outage_answers_503_to_everything_until_cleared(sandbox: Sandbox) -> None:
    sandbox.admin("POST", "faults", json={"outage": True})

    during = [
        sandbox.upload([profile_record("user-1", Name="A")]).status_code,
        sandbox.upload([], headers={}).status_code,
        sandbox.api("GET", "/1/profile.json", params={"identity": "user-1"}).status_code,
    ]
    sandbox.admin("POST", "faults", json={"outage": False})
    after = sandbox.upload([profile_record("user-1", Name="A")]).status_code

    assert during == [503, 503, 503]
    assert after == 200


def test_faults_can_be_read_and_cleared(sandbox: Sandbox) -> None:
    plan = sandbox.admin("POST", "faults", json={"uploads_429": 3, "slow_seconds": 2})

    cleared = sandbox.admin("DELETE", "faults")

    assert plan["uploads_429"] == 3
    assert plan["slow_seconds"] == 2
    assert sandbox.admin("GET", "faults") == cleared
    assert cleared["uploads_429"] == 0
    assert cleared["slow_seconds"] == 0


def test_clear_flag_drops_earlier_faults_before_applying_new_ones(sandbox: Sandbox) -> None:
    sandbox.admin("POST", "faults", json={"uploads_429": 3, "outage": True})

    plan = sandbox.admin("POST", "faults", json={"clear": True, "uploads_5xx": 1})

    assert (plan["uploads_429"], plan["uploads_5xx"], plan["outage"]) == (0, 1, False)


def test_unknown_fault_key_answers_400_naming_it(sandbox: Sandbox) -> None:
    response = requests.post(f"{sandbox.url}/__sandbox/faults", json={"upload_429": 1}, timeout=10)

    assert response.status_code == 400
    assert "upload_429" in response.json()["error"]


# --- concurrency gates ----------------------------------------------------------------------


def test_more_than_15_uploads_in_flight_answer_429(sandbox: Sandbox) -> None:
    sandbox.admin("POST", "faults", json={"slow_seconds": SLOW_SECONDS})

    statuses = statuses_of_concurrent_calls(
        20, lambda: sandbox.upload([profile_record("user-1", Name="A")])
    )

    assert statuses == Counter({200: 15, 429: 5})
    stats = sandbox.admin("GET", "stats")
    assert stats["max_in_flight"]["/1/upload"] == 15
    assert stats["refused_over_concurrency"]["/1/upload"] == 5


def test_more_than_3_lookups_in_flight_answer_429(sandbox: Sandbox) -> None:
    sandbox.admin("POST", "faults", json={"slow_seconds": SLOW_SECONDS})

    statuses = statuses_of_concurrent_calls(
        5, lambda: sandbox.api("GET", "/1/profile.json", params={"identity": "user-1"})
    )

    assert statuses == Counter({200: 3, 429: 2})


def test_concurrency_limits_are_configurable() -> None:
    with serving(create_clevertap_app(max_concurrent_uploads=2)) as server:
        sandbox = Sandbox(server.url)
        sandbox.admin("POST", "faults", json={"slow_seconds": SLOW_SECONDS})

        statuses = statuses_of_concurrent_calls(
            4, lambda: sandbox.upload([profile_record("user-1", Name="A")])
        )

    assert statuses == Counter({200: 2, 429: 2})
