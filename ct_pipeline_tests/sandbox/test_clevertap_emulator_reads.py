"""The CleverTap emulator's other APIs: profile lookup, cursor downloads, triggers, deletes,
demerge, disassociate and subscribe."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ct_pipeline.sandbox.clevertap_emulator import create_clevertap_app
from ct_pipeline.sandbox.credentials import SANDBOX_CLEVERTAP_TOKEN
from ct_pipeline.sandbox.server import serving
from ct_pipeline_tests.sandbox.test_clevertap_emulator import (
    AUTH,
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


def test_event_download_pages_through_every_event_once(sandbox: Sandbox) -> None:
    sandbox.upload([event_record(f"user-{n:02}", name="Charged", Amount=n) for n in range(25)])
    query = {"event_name": "Charged", "from": 20160701, "to": 20160731}

    opened = sandbox.api("POST", "/1/events.json", params={"batch_size": 10}, json=query).json()
    pages = read_all_pages(sandbox, "/1/events.json", opened["cursor"])

    assert opened["status"] == "success"
    assert [len(page) for page in pages] == [10, 10, 5]
    amounts = sorted(record["event_props"]["Amount"] for page in pages for record in page)
    assert amounts == list(range(25))


def test_event_download_accepts_the_legacy_get_query(sandbox: Sandbox) -> None:
    sandbox.upload([event_record("user-1", name="Charged")])
    query = '{"event_name": "Charged", "from": 20160711, "to": 20160711}'

    opened = sandbox.api("GET", "/1/events.json", params={"query": query, "batch_size": 5})
    [[record]] = read_all_pages(sandbox, "/1/events.json", opened.json()["cursor"])

    assert record["profile"]["identity"] == "user-1"


def test_download_flags_choose_what_each_record_carries(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Name="A"), event_record("user-1", name="Charged")])
    charged = {"event_name": "Charged", "from": 20160701, "to": 20160731}

    def first_record(path: str, query: dict, **flags: str) -> dict:
        params = {"batch_size": 5, **flags}
        opened = sandbox.api("POST", path, params=params, json=query).json()
        return read_all_pages(sandbox, path, opened["cursor"])[0][0]

    plain = first_record("/1/profiles.json", {})
    lean = first_record("/1/profiles.json", {}, app="false", profile="false")
    with_events = first_record("/1/profiles.json", {}, events="true")
    event = first_record("/1/events.json", charged)
    event_with_app = first_record("/1/events.json", charged, app="1")
    event_alone = first_record("/1/events.json", charged, profile="0")

    assert set(plain) == {"identity", "all_identities", "profileData", "platformInfo"}
    assert set(lean) == {"identity", "all_identities"}
    assert with_events["events"]["Charged"]["count"] == 1
    assert "platformInfo" not in event["profile"] and event["profile"]["profileData"]["Name"] == "A"
    assert event_with_app["profile"]["platformInfo"][0]["objectId"].startswith("-")
    assert set(event_alone) == {"ts", "event_props", "session_props"}


def test_a_download_flag_that_is_not_a_boolean_answers_400(sandbox: Sandbox) -> None:
    response = sandbox.api("POST", "/1/profiles.json", params={"app": "yes"}, json={})

    assert response.status_code == 400
    assert response.json()["status"] == "fail"


@pytest.mark.parametrize("path", ["/1/profiles.json", "/1/events.json"])
def test_a_throttled_cursor_request_answers_code_1_until_the_fault_is_used_up(
    sandbox: Sandbox, path: str
) -> None:
    sandbox.admin("POST", "faults", json={"cursor_throttled": 2})
    query = {"event_name": "Charged", "from": 20160701, "to": 20160731}

    answers = [sandbox.api("POST", path, params={"batch_size": 5}, json=query) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    throttled = {"status": "fail", "error": "Request throttled, try again later", "code": 1}
    assert [answer.json() for answer in answers[:2]] == [throttled, throttled]
    assert answers[2].json()["status"] == "success" and answers[2].json()["cursor"]


def test_a_cursor_not_ready_answers_code_2_and_then_serves_the_same_page(
    sandbox: Sandbox,
) -> None:
    sandbox.upload([profile_record(f"user-{n}", Name="A") for n in range(3)])
    cursor = sandbox.api("POST", "/1/profiles.json", params={"batch_size": 5}, json={}).json()[
        "cursor"
    ]
    sandbox.admin("POST", "faults", json={"cursor_not_ready": 1})

    waiting = sandbox.api("GET", "/1/profiles.json", params={"cursor": cursor})
    pages = read_all_pages(sandbox, "/1/profiles.json", cursor)

    assert waiting.status_code == 200
    assert waiting.json() == {"status": "fail", "error": "Request still in progress", "code": 2}
    assert [len(page) for page in pages] == [3]


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


def test_external_trigger_addressed_by_email_is_queued(sandbox: Sandbox) -> None:
    sandbox.upload([DOCUMENTED_PROFILE])
    trigger = {"to": {"email": ["jack@example.com"]}, "campaign_id": 42, "ExternalTrigger": {}}

    response = sandbox.api("POST", "/1/send/externaltrigger.json", json=trigger)

    assert response.json() == {"status": "success", "message": "Added to queue for processing"}
    [received] = sandbox.admin("GET", "triggers")["triggers"]
    assert received["to"] == {"email": ["jack@example.com"]}
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


def test_multi_campaign_trigger_is_queued_once_per_campaign(sandbox: Sandbox) -> None:
    trigger = {
        "to": {"identity": ["123"]},
        "campaign_id_list": [1750575722, 1750575723],
        "ExternalTrigger": {"stage_name": "Won"},
    }

    response = sandbox.api(
        "POST",
        "/2/send/externaltrigger.json",
        json=trigger,
        headers={**AUTH, "X-CleverTap-Token": SANDBOX_CLEVERTAP_TOKEN},
    )

    assert response.json() == {"status": "success", "message": "Added to queue for processing"}
    received = sandbox.admin("GET", "triggers")["triggers"]
    assert [entry["campaign_id"] for entry in received] == [1750575722, 1750575723]
    assert all(entry["ExternalTrigger"] == {"stage_name": "Won"} for entry in received)


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["no token", "wrong token"])
def test_multi_campaign_trigger_without_the_token_answers_401(
    sandbox: Sandbox, token: str | None
) -> None:
    headers = AUTH if token is None else {**AUTH, "X-CleverTap-Token": token}
    trigger = {"to": {"identity": ["123"]}, "campaign_id_list": [1]}

    response = sandbox.api("POST", "/2/send/externaltrigger.json", json=trigger, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"status": "fail", "error": "Invalid Credentials", "code": 401}
    assert sandbox.admin("GET", "triggers")["count"] == 0


@pytest.mark.parametrize(
    "campaign_ids", [[], list(range(1, 7)), "1", [True]], ids=["none", "six", "not a list", "bool"]
)
def test_multi_campaign_trigger_takes_1_to_5_campaign_ids(
    sandbox: Sandbox, campaign_ids: object
) -> None:
    trigger = {"to": {"identity": ["123"]}, "campaign_id_list": campaign_ids}

    response = sandbox.api(
        "POST",
        "/2/send/externaltrigger.json",
        json=trigger,
        headers={**AUTH, "X-CleverTap-Token": SANDBOX_CLEVERTAP_TOKEN},
    )

    assert response.status_code == 400
    assert response.json()["status"] == "fail"


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


def test_delete_takes_up_to_100_values(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record(f"user-{n}", Name="A") for n in range(101)])

    response = sandbox.api(
        "POST", "/1/delete/profiles.json", json={"identity": [f"user-{n}" for n in range(100)]}
    )

    assert response.json() == {"status": "success"}
    assert [profile["identity"] for profile in sandbox.admin("GET", "profiles")["profiles"]] == [
        "user-100"
    ]


# --- /1/demerge/profiles.json ---------------------------------------------------------------


def test_demerge_moves_an_identity_to_a_profile_of_its_own(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("client-19827239", Email="abc@example.com", Name="A")])
    merged = sandbox.profile("client-19827239")

    response = sandbox.api(
        "POST", "/1/demerge/profiles.json", json={"identities": ["abc@example.com"]}
    )

    assert response.json() == {"status": "success"}
    kept = sandbox.profile("client-19827239")
    split = sandbox.profile("abc@example.com")
    assert kept["objectId"] == merged["objectId"]
    assert kept["all_identities"] == ["client-19827239"]
    assert kept["profileData"]["Name"] == "A"
    assert split["objectId"] != merged["objectId"]
    assert split["all_identities"] == ["abc@example.com"]


def test_demerge_of_a_single_identity_profile_or_an_unknown_one_changes_nothing(
    sandbox: Sandbox,
) -> None:
    sandbox.upload([profile_record("user-1", Name="A")])

    response = sandbox.api(
        "POST", "/1/demerge/profiles.json", json={"identities": ["user-1", "nobody"]}
    )

    assert response.json() == {"status": "success"}
    assert sandbox.admin("GET", "profiles")["count"] == 1


@pytest.mark.parametrize(
    "body",
    [{}, {"identities": []}, {"identities": "a"}, {"identities": [str(n) for n in range(101)]}],
    ids=["no identities", "empty", "not a list", "over 100"],
)
def test_invalid_demerge_answers_400(sandbox: Sandbox, body: dict) -> None:
    response = sandbox.api("POST", "/1/demerge/profiles.json", json=body)

    assert response.status_code == 400
    assert response.json()["status"] == "fail"


# --- /1/disassociate ------------------------------------------------------------------------


def test_disassociated_phone_goes_to_a_new_profile_on_the_next_upload(sandbox: Sandbox) -> None:
    phone = "+919213231415"
    sandbox.upload([profile_record(phone, Name="Previous owner")])
    previous = sandbox.profile(phone)

    response = sandbox.api(
        "POST", "/1/disassociate", json={"d": [{"type": "phone", "value": phone}]}
    )
    sandbox.upload([profile_record(phone, Name="New owner")])

    assert response.json() == {"status": "success", "processed": 1, "unprocessed": []}
    current = sandbox.profile(phone)
    assert current["objectId"] != previous["objectId"]
    assert current["profileData"]["Name"] == "New owner"
    assert sandbox.admin("GET", "profiles")["count"] == 2


def test_disassociate_lists_the_entries_it_could_not_apply(sandbox: Sandbox) -> None:
    entries = [
        {"type": "phone", "value": "+919213231415"},
        {"type": "email", "value": "a@example.com"},
        {"type": "phone", "value": "9213231415"},
    ]

    answer = sandbox.api("POST", "/1/disassociate", json={"d": entries}).json()

    assert answer["status"] == "partial" and answer["processed"] == 1
    assert [entry["record"] for entry in answer["unprocessed"]] == entries[1:]
    assert all(entry["status"] == "fail" for entry in answer["unprocessed"])


@pytest.mark.parametrize("path", ["/1/disassociate", "/1/subscribe"])
@pytest.mark.parametrize(
    "body",
    [{}, {"d": {"type": "phone"}}, {"d": [{"type": "phone", "value": "+919213231415"}] * 1001}],
    ids=["no d", "d not a list", "over 1000"],
)
def test_invalid_phone_list_request_answers_400(sandbox: Sandbox, path: str, body: dict) -> None:
    response = sandbox.api("POST", path, json=body)

    assert response.status_code == 400
    assert response.json()["status"] == "fail"


# --- /1/subscribe ---------------------------------------------------------------------------


def test_subscribe_keeps_the_latest_status_of_each_phone_and_email(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("+919213231415", **{"MSG-sms": True})])
    first = [
        {"type": "phone", "value": "+919213231415", "status": "Unsubscribe"},
        {"type": "email", "value": "a@example.com", "status": "Unsubscribe"},
    ]
    then = [{"type": "phone", "value": "+919213231415", "status": "Resubscribe"}]

    answers = [sandbox.api("POST", "/1/subscribe", json={"d": d}).json() for d in (first, then)]

    assert [answer["status"] for answer in answers] == ["success", "success"]
    listed = sandbox.admin("GET", "subscriptions")["subscriptions"]
    assert [(entry["type"], entry["value"], entry["status"]) for entry in listed] == [
        ("email", "a@example.com", "Unsubscribe"),
        ("phone", "+919213231415", "Resubscribe"),
    ]
    # The subscribe API is account-wide; a profile's own MSG-* flags are left as they were.
    assert sandbox.profile("+919213231415")["profileData"]["MSG-sms"] is True


def test_subscribe_lists_the_entries_it_could_not_apply(sandbox: Sandbox) -> None:
    entries = [
        {"type": "email", "value": "a@example.com", "status": "Unsubscribe"},
        {"type": "email", "value": "a@example.com", "status": "Maybe"},
        {"type": "push", "value": "token", "status": "Unsubscribe"},
        {"type": "phone", "value": "9213231415", "status": "Unsubscribe"},
    ]

    answer = sandbox.api("POST", "/1/subscribe", json={"d": entries}).json()

    assert answer["status"] == "partial" and answer["processed"] == 1
    assert [entry["record"] for entry in answer["unprocessed"]] == entries[1:]
    assert sandbox.admin("GET", "subscriptions")["count"] == 1


# --- request-level errors -------------------------------------------------------------------


def test_wrong_method_answers_405_in_the_fail_envelope(sandbox: Sandbox) -> None:
    response = sandbox.api("GET", "/1/upload")

    assert response.status_code == 405
    assert response.json() == {"status": "fail", "error": "Method Not Allowed", "code": 405}


def test_unknown_api_path_answers_404_in_the_fail_envelope(sandbox: Sandbox) -> None:
    response = sandbox.api("GET", "/1/nothing.json")

    assert response.status_code == 404
    assert response.json()["status"] == "fail"
