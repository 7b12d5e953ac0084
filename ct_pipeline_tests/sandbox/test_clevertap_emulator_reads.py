"""The CleverTap emulator's other APIs: profile lookup, cursor downloads, triggers, deletes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ct_pipeline.sandbox.clevertap_emulator import create_clevertap_app
from ct_pipeline.sandbox.server import serving
from ct_pipeline_tests.sandbox.test_clevertap_emulator import (
    DOCUMENTED_EVENT,
    DOCUMENTED_PROFILE,
    Sandbox,
    event_record,
    profile_record,
)

# 2016-07-11 03:39:00 UTC and 2016-07-12 07:25:40 UTC
JULY_11 = 1468208340
JULY_12 = 1468308340


@pytest.fixture(scope="module")
def running_sandbox() -> Iterator[Sandbox]:
    with serving(create_clevertap_app()) as server:
        yield Sandbox(server.url)


@pytest.fixture
def sandbox(running_sandbox: Sandbox) -> Sandbox:
    running_sandbox.admin("POST", "reset")
    return running_sandbox


def read_all_pages(sandbox: Sandbox, path: str, cursor: str) -> list[list[dict]]:
    """Follow next_cursor until the last page; return the records page by page."""
    pages = []
    while cursor:
        page = sandbox.api("GET", path, params={"cursor": cursor}).json()
        assert page["status"] == "success"
        assert page["previous_cursor"] == cursor
        pages.append(page["records"])
        cursor = page.get("next_cursor")
    return pages


# --- /1/profile.json ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params", [{"identity": "1189549"}, {"email": "jack@example.com"}], ids=["identity", "email"]
)
def test_profile_lookup_finds_the_profile_in_the_documented_shape(
    sandbox: Sandbox, params: dict
) -> None:
    sandbox.upload([DOCUMENTED_PROFILE, DOCUMENTED_EVENT])

    answer = sandbox.api("GET", "/1/profile.json", params=params).json()

    assert answer["status"] == "success"
    record = answer["record"]
    assert record["email"] == "jack@example.com"
    assert record["identity"] == "1189549"
    assert record["profileData"]["Customer Type"] == "Platinum"
    assert record["events"] == {
        "Charged": {"count": 1, "first_seen": JULY_11, "last_seen": JULY_11}
    }
    assert record["platformInfo"][0]["objectId"].startswith("-")


def test_profile_lookup_by_object_id(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Name="A")])
    object_id = sandbox.profile("user-1")["objectId"]

    answer = sandbox.api("GET", "/1/profile.json", params={"objectId": object_id}).json()

    assert answer["record"]["identity"] == "user-1"


def test_profile_lookup_of_an_unknown_identity_answers_not_found(sandbox: Sandbox) -> None:
    response = sandbox.api("GET", "/1/profile.json", params={"identity": "nobody"})

    assert response.status_code == 200
    assert response.json() == {"status": "fail", "error": "Profile not found", "code": 404}


def test_profile_lookup_not_found_status_is_configurable() -> None:
    with serving(create_clevertap_app(profile_not_found_status=404)) as server:
        response = Sandbox(server.url).api("GET", "/1/profile.json", params={"identity": "nobody"})

    assert response.status_code == 404
    assert response.json()["status"] == "fail"


def test_profile_lookup_without_a_key_answers_400(sandbox: Sandbox) -> None:
    response = sandbox.api("GET", "/1/profile.json")

    assert response.status_code == 400
    assert response.json()["status"] == "fail"


def test_profile_lookup_needs_credentials(sandbox: Sandbox) -> None:
    response = sandbox.api("GET", "/1/profile.json", params={"identity": "a"}, headers={})

    assert response.status_code == 401


# --- /1/profiles.json and /1/events.json cursors --------------------------------------------


def test_profile_download_pages_through_every_profile_once(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record(f"user-{n:02}", Name="A") for n in range(25)])

    opened = sandbox.api("POST", "/1/profiles.json", params={"batch_size": 10}, json={}).json()
    pages = read_all_pages(sandbox, "/1/profiles.json", opened["cursor"])

    assert opened["status"] == "success"
    assert [len(page) for page in pages] == [10, 10, 5]
    identities = [record["identity"] for page in pages for record in page]
    assert sorted(identities) == [f"user-{n:02}" for n in range(25)]
    assert pages[0][0]["profileData"] == {"Name": "A"}


def test_profile_download_filters_by_event_and_date_range(sandbox: Sandbox) -> None:
    sandbox.upload(
        [
            {**event_record("early", name="Charged"), "ts": JULY_11},
            {**event_record("late", name="Charged"), "ts": JULY_12},
            {**event_record("other", name="Signed Up"), "ts": JULY_12},
        ]
    )
    query = {"event_name": "Charged", "from": 20160712, "to": 20160712}

    opened = sandbox.api("POST", "/1/profiles.json", params={"batch_size": 10}, json=query)
    pages = read_all_pages(sandbox, "/1/profiles.json", opened.json()["cursor"])

    assert [record["identity"] for record in pages[0]] == ["late"]


def test_profile_download_accepts_the_legacy_get_query(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Name="A")])

    opened = sandbox.api("GET", "/1/profiles.json", params={"query": "{}", "batch_size": 5})
    pages = read_all_pages(sandbox, "/1/profiles.json", opened.json()["cursor"])

    assert [record["identity"] for record in pages[0]] == ["user-1"]


def test_unknown_cursor_answers_400(sandbox: Sandbox) -> None:
    response = sandbox.api("GET", "/1/profiles.json", params={"cursor": "nope"})

    assert response.status_code == 400
    assert response.json()["status"] == "fail"


@pytest.mark.parametrize("batch_size", ["0", "5001", "many"])
def test_batch_size_outside_1_to_5000_answers_400(sandbox: Sandbox, batch_size: str) -> None:
    response = sandbox.api("POST", "/1/profiles.json", params={"batch_size": batch_size}, json={})

    assert response.status_code == 400


def test_event_download_returns_the_documented_record_shape(sandbox: Sandbox) -> None:
    sandbox.upload([DOCUMENTED_PROFILE, DOCUMENTED_EVENT, event_record(name="Other")])
    query = {"event_name": "Charged", "from": 20160701, "to": 20160731}

    opened = sandbox.api("POST", "/1/events.json", params={"batch_size": 10}, json=query)
    [[record]] = read_all_pages(sandbox, "/1/events.json", opened.json()["cursor"])

    assert record["ts"] == 20160711033900
    assert record["event_props"]["Amount"] == 300
    assert record["profile"]["identity"] == "jack@example.com"
    assert record["profile"]["email"] == "jack@example.com"
    assert record["session_props"] == {}


def test_event_download_needs_an_event_name(sandbox: Sandbox) -> None:
    response = sandbox.api("POST", "/1/events.json", json={"from": 20160701})

    assert response.status_code == 400


# --- /1/send/externaltrigger.json -----------------------------------------------------------


def test_external_trigger_is_queued_and_recorded(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("123", Name="A")])
    trigger = {
        "to": {"identity": ["123", "unknown"]},
        "campaign_id": "1750575722",
        "ExternalTrigger": {"stage_name": "Won"},
    }

    response = sandbox.api("POST", "/1/send/externaltrigger.json", json=trigger)

    assert response.status_code == 200
    assert response.json() == {"status": "success", "message": "Added to queue for processing"}
    [received] = sandbox.admin("GET", "triggers")["triggers"]
    assert received["campaign_id"] == "1750575722"
    assert received["to"] == {"identity": ["123", "unknown"]}
    assert received["ExternalTrigger"] == {"stage_name": "Won"}
    assert received["known_targets"] == 1


@pytest.mark.parametrize(
    "trigger",
    [
        {"to": {"identity": ["1"]}},
        {"campaign_id": 1, "to": {}},
        {"campaign_id": 1, "to": {"phone": ["1"]}},
        {"campaign_id": 1, "to": {"identity": "1"}},
        {"campaign_id": 1, "to": {"identity": ["1"]}, "ExternalTrigger": {"amount": 5}},
    ],
    ids=["no campaign", "no targets", "unknown key", "targets not a list", "non-string value"],
)
def test_invalid_external_trigger_answers_400(sandbox: Sandbox, trigger: dict) -> None:
    response = sandbox.api("POST", "/1/send/externaltrigger.json", json=trigger)

    assert response.status_code == 400
    assert response.json()["status"] == "fail"
    assert sandbox.admin("GET", "triggers")["count"] == 0


# --- /1/delete/profiles.json ----------------------------------------------------------------


def test_delete_by_identity_removes_the_profile_and_its_events(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Name="A"), event_record("user-1")])
    sandbox.upload([profile_record("user-2", Name="B")])

    response = sandbox.api("POST", "/1/delete/profiles.json", json={"identity": ["user-1"]})

    assert response.json() == {"status": "success"}
    assert sandbox.admin("GET", "profiles")["count"] == 1
    assert sandbox.admin("GET", "events")["count"] == 0


def test_delete_by_guid_removes_the_profile(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Name="A")])
    object_id = sandbox.profile("user-1")["objectId"]

    sandbox.api("POST", "/1/delete/profiles.json", json={"guid": object_id})

    assert sandbox.admin("GET", "profiles")["count"] == 0


@pytest.mark.parametrize(
    "body",
    [{"identity": ["a"], "guid": ["b"]}, {}, {"identity": [str(n) for n in range(101)]}],
    ids=["both keys", "neither key", "over 100 values"],
)
def test_invalid_delete_answers_400(sandbox: Sandbox, body: dict) -> None:
    assert sandbox.api("POST", "/1/delete/profiles.json", json=body).status_code == 400


def test_unknown_api_path_answers_404_in_the_fail_envelope(sandbox: Sandbox) -> None:
    response = sandbox.api("GET", "/1/nothing.json")

    assert response.status_code == 404
    assert response.json()["status"] == "fail"
