"""The CleverTap emulator's upload API and auth, over HTTP, against the documented examples.

Documented examples come from the research notes on CleverTap's server API (support-snippets
sample payloads, the api-errors code list, the production 513 body quoted by RudderStack).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ct_pipeline.sandbox.clevertap_emulator import create_clevertap_app
from ct_pipeline.sandbox.credentials import (
    SANDBOX_CLEVERTAP_ACCOUNT_ID,
    SANDBOX_CLEVERTAP_PASSCODE,
)
from ct_pipeline.sandbox.server import serving

AUTH = {
    "X-CleverTap-Account-Id": SANDBOX_CLEVERTAP_ACCOUNT_ID,
    "X-CleverTap-Passcode": SANDBOX_CLEVERTAP_PASSCODE,
}
DISCARDED_EVENT = "Legacy Event"
DOCUMENTED_PROFILE = {
    "identity": "1189549",
    "type": "profile",
    "ts": 1468308340,
    "profileData": {
        "Name": "Jack Montana",
        "Email": "jack@example.com",
        "Phone": "+14155551234",
        "Gender": "M",
        "DOB": "$D_1487576752",
        "MSG-sms": False,
        "Customer Type": "Platinum",
    },
}
DOCUMENTED_EVENT = {
    "identity": "jack@example.com",
    "ts": 1468208340,
    "type": "event",
    "evtName": "Charged",
    "evtData": {
        "Amount": 300,
        "Currency": "USD",
        "Delivery By": "$D_1468322268",
        "Items": [{"Category": "books", "Quantity": 1}],
    },
}


class Sandbox:
    """A plain HTTP client for one running emulator: its API and its admin API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def upload(self, records: list, *, headers: dict | None = None, **params) -> requests.Response:
        """POST records to /1/upload with the sandbox credentials unless told otherwise."""
        return self.http.post(
            f"{self.url}/1/upload",
            json={"d": records},
            headers=AUTH if headers is None else headers,
            params=params,
            timeout=30,
        )

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """Call a CleverTap API path with the sandbox credentials."""
        kwargs.setdefault("headers", AUTH)
        return self.http.request(method, f"{self.url}{path}", timeout=30, **kwargs)

    def admin(self, method: str, path: str, **kwargs) -> dict:
        """Call an admin path and return its JSON, failing on a non-200."""
        response = self.http.request(method, f"{self.url}/__sandbox/{path}", timeout=30, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def profile(self, identity: str) -> dict:
        """The admin view of the profile holding `identity`."""
        found = self.admin("GET", "profiles", params={"identity": identity})
        assert found["count"] == 1, f"no profile for identity {identity!r}"
        return found["profiles"][0]


@pytest.fixture(scope="module")
def running_sandbox() -> Iterator[Sandbox]:
    app = create_clevertap_app(discarded_events=(DISCARDED_EVENT,))
    with serving(app) as server:
        yield Sandbox(server.url)


@pytest.fixture
def sandbox(running_sandbox: Sandbox) -> Sandbox:
    running_sandbox.admin("POST", "reset")
    return running_sandbox


def profile_record(identity: str = "user-1", **profile_data) -> dict:
    return {"type": "profile", "identity": identity, "ts": 1468308340, "profileData": profile_data}


def event_record(identity: str = "user-1", name: str = "Deal Stage Changed", **data) -> dict:
    return {
        "type": "event",
        "identity": identity,
        "ts": 1468208340,
        "evtName": name,
        "evtData": data,
    }


# --- authentication -------------------------------------------------------------------------


def test_upload_without_credentials_answers_401_with_documented_body(sandbox: Sandbox) -> None:
    response = sandbox.upload([DOCUMENTED_PROFILE], headers={})

    assert response.status_code == 401
    assert response.json() == {"status": "fail", "error": "Invalid Credentials", "code": 401}


def test_wrong_passcode_answers_401_and_stores_nothing(sandbox: Sandbox) -> None:
    response = sandbox.upload([DOCUMENTED_PROFILE], headers={**AUTH, "X-CleverTap-Passcode": "x"})

    assert response.status_code == 401
    assert sandbox.admin("GET", "profiles")["count"] == 0


def test_wrong_account_id_answers_401(sandbox: Sandbox) -> None:
    response = sandbox.upload([DOCUMENTED_PROFILE], headers={**AUTH, "X-CleverTap-Account-Id": "Z"})

    assert response.status_code == 401


def test_auth_header_names_are_case_insensitive(sandbox: Sandbox) -> None:
    headers = {
        "x-clevertap-account-id": SANDBOX_CLEVERTAP_ACCOUNT_ID,
        "X-Clevertap-Passcode": SANDBOX_CLEVERTAP_PASSCODE,
    }

    assert sandbox.upload([DOCUMENTED_PROFILE], headers=headers).status_code == 200


@pytest.fixture(scope="module")
def india_account() -> Iterator[Sandbox]:
    with serving(create_clevertap_app(region="in1")) as server:
        yield Sandbox(server.url)


def test_an_account_answers_on_its_region_host(india_account: Sandbox) -> None:
    response = india_account.upload(
        [DOCUMENTED_PROFILE], headers={**AUTH, "Host": "in1.api.clevertap.com"}
    )

    assert response.status_code == 200
    assert response.json()["processed"] == 1


@pytest.mark.parametrize("host", ["sg1.api.clevertap.com", "api.clevertap.com", "127.0.0.1"])
def test_valid_credentials_sent_to_another_region_answer_401(
    india_account: Sandbox, host: str
) -> None:
    india_account.admin("POST", "reset")

    response = india_account.upload([DOCUMENTED_PROFILE], headers={**AUTH, "Host": host})

    assert response.status_code == 401
    assert response.json() == {"status": "fail", "error": "Invalid Credentials", "code": 401}
    assert india_account.admin("GET", "profiles")["count"] == 0


@pytest.mark.parametrize("host", ["api.clevertap.com", "eu1.api.clevertap.com"])
def test_europe_answers_on_both_of_its_host_names(host: str) -> None:
    with serving(create_clevertap_app(region="eu1")) as server:
        response = Sandbox(server.url).upload([DOCUMENTED_PROFILE], headers={**AUTH, "Host": host})

    assert response.status_code == 200


def test_an_unknown_region_is_refused_when_the_emulator_is_made() -> None:
    with pytest.raises(ValueError, match="'in' is not a CleverTap region"):
        create_clevertap_app(region="in")


# --- request-level errors -------------------------------------------------------------------


def test_malformed_json_answers_400_with_documented_body(sandbox: Sandbox) -> None:
    response = sandbox.api("POST", "/1/upload", data=b"{not json", headers=AUTH)

    assert response.status_code == 400
    assert response.json() == {"status": "fail", "error": "Malformed request", "code": 400}


def test_nan_is_not_json_and_answers_400(sandbox: Sandbox) -> None:
    body = b'{"d": [{"type": "profile", "identity": "u", "profileData": {"Score": NaN}}]}'

    response = sandbox.api("POST", "/1/upload", data=body)

    assert response.status_code == 400
    assert response.json()["error"] == "Malformed request"


@pytest.mark.parametrize("body", [{}, {"records": []}, {"d": {"type": "profile"}}, ["d"]])
def test_body_without_a_d_array_answers_400(sandbox: Sandbox, body: object) -> None:
    response = sandbox.api("POST", "/1/upload", json=body)

    assert response.status_code == 400
    assert response.json()["error"] == "Malformed request"


def test_more_than_1000_records_answers_400_and_stores_nothing(sandbox: Sandbox) -> None:
    records = [profile_record(f"user-{n}", Name="A") for n in range(1001)]

    response = sandbox.upload(records)

    assert response.status_code == 400
    assert response.json()["status"] == "fail"
    assert response.json()["code"] == 400
    assert sandbox.admin("GET", "profiles")["count"] == 0


def test_exactly_1000_records_are_accepted(sandbox: Sandbox) -> None:
    records = [profile_record(f"user-{n}", Name="A") for n in range(1000)]

    response = sandbox.upload(records)

    assert response.json() == {"status": "success", "processed": 1000, "unprocessed": []}
    assert sandbox.admin("GET", "profiles", params={"limit": 1})["count"] == 1000


def test_empty_upload_succeeds_with_nothing_processed(sandbox: Sandbox) -> None:
    assert sandbox.upload([]).json() == {"status": "success", "processed": 0, "unprocessed": []}


# --- answers --------------------------------------------------------------------------------


def test_documented_profile_example_is_accepted(sandbox: Sandbox) -> None:
    response = sandbox.upload([DOCUMENTED_PROFILE])

    assert response.status_code == 200
    assert response.json() == {"status": "success", "processed": 1, "unprocessed": []}


def test_documented_event_example_is_accepted(sandbox: Sandbox) -> None:
    response = sandbox.upload([DOCUMENTED_EVENT])

    assert response.json() == {"status": "success", "processed": 1, "unprocessed": []}


def test_profile_and_event_in_one_request_are_both_processed(sandbox: Sandbox) -> None:
    assert sandbox.upload([DOCUMENTED_PROFILE, DOCUMENTED_EVENT]).json()["processed"] == 2


def test_partial_upload_lists_each_rejected_record_with_code_message_and_record(
    sandbox: Sandbox,
) -> None:
    nameless = {"type": "event", "identity": "user-2", "ts": 1468208340, "evtData": {}}
    records = [profile_record("user-1", Name="A"), nameless, event_record("user-3")]

    answer = sandbox.upload(records).json()

    assert answer["status"] == "partial"
    assert answer["processed"] == 2
    assert answer["unprocessed"] == [
        {
            "status": "fail",
            "code": 509,
            "error": "Event Name is incorrect. ErrorCode: 509 - Event name is mandatory. "
            "Skipped record number : 2",
            "record": nameless,
        }
    ]


def test_all_rejected_upload_answers_fail_with_http_200(sandbox: Sandbox) -> None:
    restricted = event_record("user-1", name="Web Page Viewed")

    response = sandbox.upload([restricted])

    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "fail"
    assert answer["processed"] == 0
    assert answer["unprocessed"][0]["code"] == 513
    assert answer["unprocessed"][0]["error"] == (
        "Event Name is incorrect. ErrorCode: 513 - Trying to raise a restricted system event. "
        "Skipped record number : 1"
    )


def test_rejected_records_are_not_stored_but_their_neighbours_are(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("good", Name="A"), profile_record("bad", Phone="98765")])

    assert sandbox.admin("GET", "profiles", params={"identity": "bad"})["count"] == 0
    assert sandbox.profile("good")["profileData"] == {"Name": "A"}


# --- per-record codes -----------------------------------------------------------------------

LONG_KEY = "k" * 121
TOO_MANY_EVENT_PROPERTIES = {f"p{n}": n for n in range(101)}
TOO_MANY_CUSTOM_KEYS = {f"custom {n}": n for n in range(257)}

REJECTED_RECORDS = {
    "event without evtName": (509, {"type": "event", "identity": "u", "evtData": {}}),
    "event with blank evtName": (509, event_record(name="  ")),
    "restricted system event": (513, event_record(name="App Launched")),
    "discarded event": (528, event_record(name=DISCARDED_EVENT)),
    "evtData not an object": (512, {**event_record(), "evtData": ["a"]}),
    "nested object in event": (512, event_record(Address={"City": "Pune"})),
    "array in a non-Charged event": (512, event_record(Items=[{"Category": "books"}])),
    "event key over 120 characters": (512, event_record(**{LONG_KEY: 1})),
    "event value over 512 bytes": (512, event_record(Note="x" * 513)),
    "bad $D_ date in an event": (512, event_record(Closing="$D_tomorrow")),
    "too many event properties": (522, event_record(**TOO_MANY_EVENT_PROPERTIES)),
    "no identity at all": (523, {"type": "profile", "profileData": {"Name": "A"}}),
    "empty identity": (523, profile_record("", Name="A")),
    "identity of the wrong type": (523, profile_record(True, Name="A")),  # type: ignore[arg-type]
    "unknown record type": (524, {**profile_record(Name="A"), "type": "user"}),
    "record not an object": (524, "profile"),
    "type not a string": (524, {**profile_record(Name="A"), "type": ["profile"]}),
    "ts as an ISO string": (525, {**profile_record(Name="A"), "ts": "2016-07-12T07:25:40Z"}),
    "ts in milliseconds": (525, {**profile_record(Name="A"), "ts": 1468308340000}),
    "objectId with spaces": (526, {"type": "profile", "objectId": "a b", "profileData": {}}),
    "gender not M or F": (514, profile_record(Gender="Male")),
    "gender as a list": (514, profile_record(Gender=["M"])),
    "email without a domain": (515, profile_record(Email="jack@")),
    "phone without country code": (516, profile_record(Phone="9876543210")),
    "phone with spaces": (516, profile_record(Phone="+91 98765 43210")),
    "phone as a number": (516, profile_record(Phone=919876543210)),
    "employed not Y or N": (517, profile_record(Employed="yes")),
    "education not a known level": (518, profile_record(Education="PhD")),
    "married not Y or N": (519, profile_record(Married="maybe")),
    "negative age": (520, profile_record(Age=-1)),
    "profileData missing": (512, {"type": "profile", "identity": "u", "ts": 1468308340}),
    "profile key over 120 bytes": (512, profile_record(**{"é" * 61: 1})),
    "profile value over 512 bytes": (512, profile_record(Note="é" * 257)),
    "reserved key in profileData": (512, profile_record(objectId="x")),
    "key with the $ prefix": (512, profile_record(**{"$Score": 1})),
    "bad $D_ date in a profile": (512, profile_record(DOB="$D_1990-01-01")),
    "date in milliseconds": (512, profile_record(DOB="$D_1487576752000")),
    "subscription flag not a boolean": (512, profile_record(**{"MSG-whatsapp": "yes"})),
    "multi-value with a number": (512, profile_record(Tags=["a", 1])),
    "multi-value over 100 items": (512, profile_record(Tags=[str(n) for n in range(101)])),
    "unknown operator": (512, profile_record(Score={"$incr": 1})),
    "too many custom keys": (522, profile_record(**TOO_MANY_CUSTOM_KEYS)),
    "token without objectId": (530, {"type": "token", "tokenData": {"id": "t", "type": "fcm"}}),
    "token without tokenData": (531, {"type": "token", "objectId": "abc"}),
    "token without id": (532, {"type": "token", "objectId": "abc", "tokenData": {"type": "fcm"}}),
    "token without type": (533, {"type": "token", "objectId": "abc", "tokenData": {"id": "t"}}),
    "token of an unknown type": (
        534,
        {"type": "token", "objectId": "abc", "tokenData": {"id": "t", "type": "sms"}},
    ),
    "token type not a string": (
        534,
        {"type": "token", "objectId": "abc", "tokenData": {"id": "t", "type": ["fcm"]}},
    ),
    "token keys not an object": (
        535,
        {"type": "token", "objectId": "a", "tokenData": {"id": "t", "type": "chrome", "keys": 1}},
    ),
}


@pytest.mark.parametrize(("code", "record"), REJECTED_RECORDS.values(), ids=list(REJECTED_RECORDS))
def test_record_breaking_a_rule_is_rejected_with_its_code(
    sandbox: Sandbox, code: int, record: object
) -> None:
    answer = sandbox.upload([profile_record("neighbour", Name="A"), record]).json()

    assert answer["status"] == "partial"
    [entry] = answer["unprocessed"]
    assert entry["code"] == code
    assert entry["status"] == "fail"
    assert entry["record"] == record
    assert f"ErrorCode: {code} - " in entry["error"]
    assert entry["error"].endswith("Skipped record number : 2")


ACCEPTED_RECORDS = {
    "key of exactly 120 bytes": profile_record(**{"k" * 120: 1}),
    "value of exactly 512 bytes": profile_record(Note="é" * 256),
    "all subscription flags": profile_record(
        **{"MSG-push": True, "MSG-sms": False, "MSG-whatsapp": True, "MSG-email": False}
    ),
    "date before 1970": profile_record(DOB="$D_-315619200"),
    "identity as a number": profile_record(1189549, Name="A"),  # type: ignore[arg-type]
    "no ts": {"type": "profile", "identity": "u", "profileData": {"Name": "A"}},
    "objectId only": {"type": "profile", "objectId": "-1a063854f83a4c64", "profileData": {}},
    "FBID only": {"type": "profile", "FBID": "34322423", "profileData": {"Name": "A"}},
    "Charged with Items": DOCUMENTED_EVENT,
    "event without evtData": {"type": "event", "identity": "u", "evtName": "Signed Up"},
    "100 event properties": event_record(**{f"p{n}": n for n in range(100)}),
    "256 custom keys": profile_record(**{f"custom {n}": n for n in range(256)}),
    "multi-value set": profile_record(Tags=["a", "b"]),
    "token": {"type": "token", "objectId": "abc", "tokenData": {"id": "t1", "type": "fcm"}},
}


@pytest.mark.parametrize("record", ACCEPTED_RECORDS.values(), ids=list(ACCEPTED_RECORDS))
def test_record_within_the_rules_is_accepted(sandbox: Sandbox, record: dict) -> None:
    answer = sandbox.upload([record]).json()

    assert answer["unprocessed"] == []
    assert answer["processed"] == 1


def test_rejection_message_never_contains_the_rejected_value(sandbox: Sandbox) -> None:
    answer = sandbox.upload([profile_record(Phone="9876543210")]).json()

    assert "9876543210" not in answer["unprocessed"][0]["error"]


# --- dry run --------------------------------------------------------------------------------


def test_dry_run_answers_like_a_real_upload_but_stores_nothing(sandbox: Sandbox) -> None:
    records = [DOCUMENTED_PROFILE, DOCUMENTED_EVENT, profile_record("bad", Phone="12")]

    answer = sandbox.upload(records, dryRun=1).json()

    assert answer["status"] == "partial"
    assert answer["processed"] == 2
    assert [entry["code"] for entry in answer["unprocessed"]] == [516]
    assert sandbox.admin("GET", "profiles")["count"] == 0
    assert sandbox.admin("GET", "events")["count"] == 0


# --- state ----------------------------------------------------------------------------------


def test_upload_for_an_unknown_identity_creates_a_profile_with_an_object_id(
    sandbox: Sandbox,
) -> None:
    sandbox.upload([profile_record("new-user", Name="A")])

    profile = sandbox.profile("new-user")
    assert profile["objectId"].startswith("-")
    assert profile["all_identities"] == ["new-user"]


def test_profile_properties_merge_into_the_existing_profile(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Name="A", Tier="Gold")])
    first = sandbox.profile("user-1")

    sandbox.upload([profile_record("user-1", Tier="Platinum", City="Pune")])

    merged = sandbox.profile("user-1")
    assert merged["objectId"] == first["objectId"]
    assert merged["profileData"] == {"Name": "A", "Tier": "Platinum", "City": "Pune"}
    assert sandbox.admin("GET", "profiles")["count"] == 1


def test_null_property_value_leaves_the_stored_value(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Tier="Gold")])
    sandbox.upload([profile_record("user-1", Tier=None)])

    assert sandbox.profile("user-1")["profileData"] == {"Tier": "Gold"}


def test_date_strings_become_dates(sandbox: Sandbox) -> None:
    sandbox.upload([DOCUMENTED_PROFILE])

    profile = sandbox.profile("1189549")
    assert profile["profileData"]["DOB"] == 1487576752
    assert profile["dateProperties"] == ["DOB"]


def test_plain_value_over_a_date_is_no_longer_a_date(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Renewal="$D_1487576752")])
    sandbox.upload([profile_record("user-1", Renewal="soon")])

    profile = sandbox.profile("user-1")
    assert profile["profileData"]["Renewal"] == "soon"
    assert profile["dateProperties"] == []


def test_add_and_remove_edit_a_multi_value_property(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Plans="Basic")])
    sandbox.upload([profile_record("user-1", Plans={"$add": ["Gold", "Silver"]})])
    sandbox.upload([profile_record("user-1", Plans={"$remove": "Silver"})])

    assert sandbox.profile("user-1")["profileData"]["Plans"] == ["Basic", "Gold"]


def test_multi_value_keeps_the_newest_100_items(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Tags=[f"old{n}" for n in range(100)])])
    sandbox.upload([profile_record("user-1", Tags={"$add": ["new"]})])

    tags = sandbox.profile("user-1")["profileData"]["Tags"]
    assert len(tags) == 100
    assert tags[0] == "old1"
    assert tags[-1] == "new"


def test_email_in_profile_data_becomes_an_identity(sandbox: Sandbox) -> None:
    sandbox.upload([DOCUMENTED_PROFILE])

    by_email = sandbox.admin("GET", "profiles", params={"email": "jack@example.com"})
    assert by_email["profiles"][0]["identity"] == "1189549"
    assert sandbox.profile("1189549")["all_identities"] == ["1189549", "jack@example.com"]


def test_event_for_the_email_identity_lands_on_the_same_profile(sandbox: Sandbox) -> None:
    sandbox.upload([DOCUMENTED_PROFILE])

    sandbox.upload([DOCUMENTED_EVENT])

    assert sandbox.profile("1189549")["eventCounts"] == {"Charged": 1}
    assert sandbox.admin("GET", "profiles")["count"] == 1


def test_identity_inside_profile_data_attaches_to_an_object_id_profile(sandbox: Sandbox) -> None:
    record = {"type": "profile", "objectId": "anon-1", "profileData": {"identity": "user-9"}}

    sandbox.upload([record])

    assert sandbox.profile("user-9")["objectId"] == "anon-1"


def test_events_append_to_the_profile_in_order(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Name="A")])

    sandbox.upload([event_record("user-1", stage_name="Proposal")])
    sandbox.upload([event_record("user-1", stage_name="Won")])

    events = sandbox.admin("GET", "events", params={"identity": "user-1"})["events"]
    assert [event["evtData"]["stage_name"] for event in events] == ["Proposal", "Won"]
    assert {event["objectId"] for event in events} == {sandbox.profile("user-1")["objectId"]}


def test_event_for_an_unknown_identity_creates_the_profile(sandbox: Sandbox) -> None:
    sandbox.upload([event_record("stranger", stage_name="Won")])

    assert sandbox.profile("stranger")["eventCounts"] == {"Deal Stage Changed": 1}


def test_event_dates_become_dates(sandbox: Sandbox) -> None:
    sandbox.upload([DOCUMENTED_EVENT])

    [event] = sandbox.admin("GET", "events")["events"]
    assert event["evtData"]["Delivery By"] == 1468322268
    assert event["dateProperties"] == ["Delivery By"]
    assert event["ts"] == 1468208340


def test_custom_key_limit_counts_the_merged_profile(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", **{f"a{n}": n for n in range(200)})])

    answer = sandbox.upload([profile_record("user-1", **{f"b{n}": n for n in range(57)})]).json()

    assert [entry["code"] for entry in answer["unprocessed"]] == [522]
    assert len(sandbox.profile("user-1")["profileData"]) == 200


def test_device_token_is_kept_on_the_profile(sandbox: Sandbox) -> None:
    token = {"type": "token", "objectId": "abc", "tokenData": {"id": "t1", "type": "fcm"}}

    sandbox.upload([token])

    found = sandbox.admin("GET", "profiles", params={"objectId": "abc"})["profiles"][0]
    assert found["tokens"] == [{"id": "t1", "type": "fcm"}]


def test_email_held_by_another_profile_stays_with_it(sandbox: Sandbox) -> None:
    sandbox.upload([profile_record("user-1", Email="shared@example.com")])

    sandbox.upload([profile_record("user-2", Email="shared@example.com")])

    owner = sandbox.admin("GET", "profiles", params={"email": "shared@example.com"})
    assert owner["profiles"][0]["identity"] == "user-1"
    assert sandbox.profile("user-2")["all_identities"] == ["user-2"]


def test_records_per_request_limit_is_configurable() -> None:
    with serving(create_clevertap_app(max_records=100)) as server:
        small = Sandbox(server.url)
        over = small.upload([profile_record(f"user-{n}", Name="A") for n in range(101)])
        at_limit = small.upload([profile_record(f"user-{n}", Name="A") for n in range(100)])

    assert over.status_code == 400
    assert at_limit.json()["processed"] == 100


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
RECORD_KEYS = st.sampled_from(
    ["type", "identity", "objectId", "FBID", "ts", "evtName", "evtData", "profileData", "tokenData"]
)
RECORD_TYPES = st.sampled_from(["profile", "event", "token"])


@given(
    record=st.dictionaries(RECORD_KEYS, JSON_VALUES, max_size=6),
    record_type=RECORD_TYPES,
    profile_data=st.dictionaries(
        st.sampled_from(["Phone", "Email", "Gender", "Age", "MSG-sms", "Tags", "DOB", "x"]),
        JSON_VALUES,
        max_size=4,
    ),
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_json_record_gets_an_answer_never_a_server_error(
    sandbox: Sandbox, record: dict, record_type: str, profile_data: dict
) -> None:
    shaped = {**record, "type": record_type, "profileData": profile_data}

    response = sandbox.upload([record, shaped])

    assert response.status_code == 200
    answer = response.json()
    assert answer["processed"] + len(answer["unprocessed"]) == 2
