"""The Zoho emulator's OAuth, records, writes, admin API, faults and limits, over HTTP.

Each test talks plain HTTP to a freshly started emulator and checks the documented request
shapes, status codes and error bodies (research/zoho.md gives the source of each).
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from ct_pipeline.sandbox.credentials import (
    SANDBOX_ZOHO_CLIENT_ID,
    SANDBOX_ZOHO_CLIENT_SECRET,
    SANDBOX_ZOHO_REFRESH_TOKEN,
)
from ct_pipeline.sandbox.server import serving
from ct_pipeline.sandbox.synthetic import SyntheticCrm, generate_crm
from ct_pipeline.sandbox.zoho_emulator import create_zoho_app

CONTACTS = 2_100
GRANT = {
    "grant_type": "refresh_token",
    "client_id": SANDBOX_ZOHO_CLIENT_ID,
    "client_secret": SANDBOX_ZOHO_CLIENT_SECRET,
    "refresh_token": SANDBOX_ZOHO_REFRESH_TOKEN,
}
FIELDS = "First_Name,Last_Name,Email,Owner,Account_Name,Email_Opt_Out,Created_Time,Modified_Time"


class Clock:
    """A controllable clock: real time plus a shift the test can move forward."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift


@dataclass
class Zoho:
    """A running emulator and an authorised session against it."""

    url: str
    session: requests.Session
    clock: Clock
    crm: SyntheticCrm

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url + path, timeout=30, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.put(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url + path, timeout=30, **kwargs)

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.url}/__sandbox{path}", timeout=30, **kwargs)


@pytest.fixture(scope="module")
def crm() -> SyntheticCrm:
    return generate_crm(CONTACTS, seed=7)


@pytest.fixture
def zoho_factory(crm: SyntheticCrm) -> Iterator[Any]:
    started = []

    def start(**options: Any) -> Zoho:
        clock = Clock()
        options.setdefault("bulk_job_seconds", 0)
        context = serving(create_zoho_app(crm, clock=clock, **options))
        server = context.__enter__()
        started.append(context)
        session = requests.Session()
        token = requests.post(f"{server.url}/oauth/v2/token", data=GRANT, timeout=30).json()
        session.headers["Authorization"] = f"Zoho-oauthtoken {token['access_token']}"
        return Zoho(server.url, session, clock, crm)

    yield start
    for context in started:
        context.__exit__(None, None, None)


@pytest.fixture
def zoho(zoho_factory: Any) -> Zoho:
    return zoho_factory()


def read_all(
    zoho: Zoho,
    params: dict[str, Any],
    headers: dict[str, str] | None = None,
    page_token: str | None = None,
) -> list:
    """Follow page then page_token as a correct client does (from `page_token` when given);
    returns every record."""
    records: list = []
    query = dict(params, page_token=page_token) if page_token else dict(params)
    while True:
        response = zoho.get("/crm/v8/Contacts", params=query, headers=headers or {})
        if response.status_code in (204, 304):
            return records
        assert response.status_code == 200, response.text
        body = response.json()
        records.extend(body["data"])
        if not body["info"]["more_records"]:
            return records
        query = dict(params, page_token=body["info"]["next_page_token"])


# OAuth ------------------------------------------------------------------------------------------


def test_token_grant_in_form_body_returns_token_and_own_api_domain(zoho: Zoho) -> None:
    response = requests.post(f"{zoho.url}/oauth/v2/token", data=GRANT, timeout=30)

    body = response.json()
    assert response.status_code == 200
    assert body["api_domain"] == zoho.url
    assert body["expires_in"] == 3600
    assert body["token_type"] == "Bearer"
    assert body["access_token"].startswith("1000.")


def test_token_grant_in_query_string_works(zoho: Zoho) -> None:
    response = requests.post(f"{zoho.url}/oauth/v2/token", params=GRANT, timeout=30)

    assert response.status_code == 200
    assert "access_token" in response.json()


def test_token_grant_with_wrong_secret_is_http_200_invalid_client(zoho: Zoho) -> None:
    response = requests.post(
        f"{zoho.url}/oauth/v2/token", data=GRANT | {"client_secret": "wrong"}, timeout=30
    )

    assert response.status_code == 200
    assert response.json() == {"error": "invalid_client"}


def test_token_grant_with_wrong_refresh_token_is_invalid_code(zoho: Zoho) -> None:
    response = requests.post(
        f"{zoho.url}/oauth/v2/token", data=GRANT | {"refresh_token": "1000.x"}, timeout=30
    )

    assert response.status_code == 200
    assert response.json() == {"error": "invalid_code"}


def test_token_grants_beyond_the_throttle_are_access_denied(zoho_factory: Any) -> None:
    zoho = zoho_factory(token_grants_per_ten_minutes=2)

    second = requests.post(f"{zoho.url}/oauth/v2/token", data=GRANT, timeout=30)
    third = requests.post(f"{zoho.url}/oauth/v2/token", data=GRANT, timeout=30)

    assert second.status_code == 200
    assert third.status_code == 400
    assert third.json()["error"] == "Access Denied"


def test_missing_authorization_header_is_401(zoho: Zoho) -> None:
    response = requests.get(f"{zoho.url}/crm/v8/Contacts", params={"fields": "Email"}, timeout=30)

    assert response.status_code == 401
    assert response.json()["status"] == "error"


def test_a_live_token_sent_as_bearer_is_refused_as_zoho_does(zoho: Zoho) -> None:
    token = zoho.session.headers["Authorization"].removeprefix("Zoho-oauthtoken ")

    response = requests.get(
        f"{zoho.url}/crm/v8/Contacts",
        params={"fields": "Email"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )

    assert response.status_code == 401
    assert response.json()["code"] == "AUTHENTICATION_FAILURE"
    assert "Zoho-oauthtoken" in response.json()["message"]


@pytest.mark.parametrize(
    ("accounts_host", "api_domain"),
    [
        ("accounts.zoho.in", "https://www.zohoapis.in"),
        ("accounts.zoho.eu", "https://www.zohoapis.eu"),
        ("accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    ],
)
def test_token_request_addressed_to_a_data_centre_names_its_api_domain(
    zoho: Zoho, accounts_host: str, api_domain: str
) -> None:
    response = requests.post(
        f"{zoho.url}/oauth/v2/token", data=GRANT, headers={"Host": accounts_host}, timeout=30
    )

    assert response.json()["api_domain"] == api_domain


def test_unknown_token_is_401_invalid_token(zoho: Zoho) -> None:
    response = requests.get(
        f"{zoho.url}/crm/v8/Contacts",
        params={"fields": "Email"},
        headers={"Authorization": "Zoho-oauthtoken 1000.not.granted"},
        timeout=30,
    )

    assert response.status_code == 401
    assert response.json() == {
        "code": "INVALID_TOKEN",
        "details": {},
        "message": "invalid oauth token",
        "status": "error",
    }


def test_token_past_expires_in_is_401_invalid_token(zoho: Zoho) -> None:
    zoho.clock.shift = timedelta(seconds=3601)

    response = zoho.get("/crm/v8/Contacts", params={"fields": "Email"})

    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_TOKEN"


# Get Records: parameters and errors ------------------------------------------------------------


def test_list_without_fields_is_required_param_missing(zoho: Zoho) -> None:
    response = zoho.get("/crm/v8/Contacts")

    assert response.status_code == 400
    assert response.json()["code"] == "REQUIRED_PARAM_MISSING"
    assert response.json()["details"] == {"param_name": "fields"}


def test_list_with_51_fields_is_limit_exceeded(zoho: Zoho) -> None:
    fields = ",".join(f"Field_{number}" for number in range(51))

    response = zoho.get("/crm/v8/Contacts", params={"fields": fields})

    assert response.status_code == 400
    assert response.json()["code"] == "LIMIT_EXCEEDED"


def test_per_page_over_200_is_refused(zoho: Zoho) -> None:
    response = zoho.get("/crm/v8/Contacts", params={"fields": "Email", "per_page": 201})

    assert response.status_code == 400
    assert response.json()["details"]["param_name"] == "per_page"


def test_unknown_module_is_invalid_module(zoho: Zoho) -> None:
    response = zoho.get("/crm/v8/Potatoes", params={"fields": "Email"})

    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_MODULE"


def test_unsupported_api_version_is_invalid_url_pattern(zoho: Zoho) -> None:
    response = zoho.get("/crm/v2/Contacts", params={"fields": "Email"})

    assert response.status_code == 404
    assert response.json()["code"] == "INVALID_URL_PATTERN"


def test_v7_and_v8_serve_the_same_records(zoho: Zoho) -> None:
    params = {"fields": "Email", "per_page": 5}

    v7 = zoho.get("/crm/v7/Contacts", params=params).json()["data"]
    v8 = zoho.get("/crm/v8/Contacts", params=params).json()["data"]

    assert v7 == v8


def test_records_carry_nested_lookups_offset_datetimes_and_no_ground_truth(zoho: Zoho) -> None:
    response = zoho.get("/crm/v8/Contacts", params={"fields": f"{FIELDS},_person", "per_page": 200})

    records = response.json()["data"]
    first = records[0]
    assert set(first) == {"id", *FIELDS.split(",")}
    assert set(first["Owner"]) == {"name", "id", "email"}
    assert first["Modified_Time"].endswith("+05:30")
    assert isinstance(first["Email_Opt_Out"], bool)
    accounts = [record["Account_Name"] for record in records if record["Account_Name"]]
    assert all(set(account) == {"name", "id"} for account in accounts)
    assert all(len(record["id"]) == 19 for record in records)


def test_datetimes_use_the_configured_offset(zoho_factory: Any, crm: SyntheticCrm) -> None:
    zoho = zoho_factory(tz_offset="-07:00")
    record_id = crm.contacts["id"].iloc[0]

    record = zoho.get(f"/crm/v8/Contacts/{record_id}").json()["data"][0]

    expected = (crm.contacts["Modified_Time"].iloc[0] - timedelta(hours=7)).strftime(
        "%Y-%m-%dT%H:%M:%S-07:00"
    )
    assert record["Modified_Time"] == expected


def test_info_object_has_every_documented_key(zoho: Zoho) -> None:
    info = zoho.get("/crm/v8/Contacts", params={"fields": "Email", "per_page": 5}).json()["info"]

    assert set(info) == {
        "call",
        "per_page",
        "next_page_token",
        "count",
        "sort_by",
        "page",
        "previous_page_token",
        "page_token_expiry",
        "sort_order",
        "email",
        "more_records",
    }
    assert (info["per_page"], info["count"], info["page"]) == (5, 5, 1)
    assert (info["sort_by"], info["sort_order"], info["more_records"]) == ("id", "desc", True)


def test_default_order_is_id_descending(zoho: Zoho, crm: SyntheticCrm) -> None:
    ids = [r["id"] for r in zoho.get("/crm/v8/Contacts", params={"fields": "Email"}).json()["data"]]

    assert ids == sorted(crm.contacts["id"], key=int, reverse=True)[:200]


def test_sort_by_modified_time_ascending(zoho: Zoho) -> None:
    params = {"fields": "Modified_Time", "sort_by": "Modified_Time", "sort_order": "asc"}

    times = [r["Modified_Time"] for r in zoho.get("/crm/v8/Contacts", params=params).json()["data"]]

    assert times == sorted(times)


def test_sort_by_other_field_is_invalid_data(zoho: Zoho) -> None:
    response = zoho.get("/crm/v8/Contacts", params={"fields": "Email", "sort_by": "Email"})

    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_DATA"


# Paging -----------------------------------------------------------------------------------------


def test_page_beyond_record_2000_is_discrete_pagination_limit_exceeded(zoho: Zoho) -> None:
    response = zoho.get("/crm/v8/Contacts", params={"fields": "Email", "page": 11})

    assert response.status_code == 400
    assert response.json() == {
        "code": "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
        "details": {"limit": 2000},
        "message": "You can only get the first 2000 records without using page_token param",
        "status": "error",
    }


def test_page_10_is_the_last_page_reachable_without_a_token(zoho: Zoho) -> None:
    response = zoho.get("/crm/v8/Contacts", params={"fields": "Email", "page": 10})

    assert response.status_code == 200
    assert response.json()["info"]["more_records"] is True


def test_page_tokens_read_past_2000_records_without_gaps(zoho: Zoho, crm: SyntheticCrm) -> None:
    records = read_all(zoho, {"fields": "Email", "sort_by": "Modified_Time", "sort_order": "asc"})

    ids = [record["id"] for record in records]
    assert len(ids) == CONTACTS
    assert set(ids) == set(crm.contacts["id"])


def test_page_and_page_token_together_is_ambiguity(zoho: Zoho) -> None:
    first = zoho.get("/crm/v8/Contacts", params={"fields": "Email"}).json()
    token = first["info"]["next_page_token"]

    response = zoho.get(
        "/crm/v8/Contacts", params={"fields": "Email", "page": 2, "page_token": token}
    )

    assert response.status_code == 400
    assert response.json()["code"] == "AMBIGUITY_DURING_PROCESSING"


def test_page_token_with_changed_parameters_is_token_bound_data_mismatch(zoho: Zoho) -> None:
    token = zoho.get("/crm/v8/Contacts", params={"fields": "Email"}).json()["info"][
        "next_page_token"
    ]

    response = zoho.get("/crm/v8/Contacts", params={"fields": "Mobile", "page_token": token})

    assert response.status_code == 400
    assert response.json()["code"] == "TOKEN_BOUND_DATA_MISMATCH"


def test_forged_page_token_is_invalid_data(zoho: Zoho) -> None:
    response = zoho.get("/crm/v8/Contacts", params={"fields": "Email", "page_token": "c8582e7c7"})

    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_DATA"


def test_page_token_after_24_hours_is_expired_value(zoho: Zoho) -> None:
    token = zoho.get("/crm/v8/Contacts", params={"fields": "Email"}).json()["info"][
        "next_page_token"
    ]
    zoho.clock.shift = timedelta(hours=24, seconds=1)
    fresh = requests.post(f"{zoho.url}/oauth/v2/token", data=GRANT, timeout=30).json()
    zoho.session.headers["Authorization"] = f"Zoho-oauthtoken {fresh['access_token']}"

    response = zoho.get("/crm/v8/Contacts", params={"fields": "Email", "page_token": token})

    assert response.status_code == 400
    assert response.json()["code"] == "EXPIRED_VALUE"


def test_page_tokens_stop_at_the_cap_with_pagination_limit_exceeded(zoho_factory: Any) -> None:
    zoho = zoho_factory(page_token_cap=1_000)
    params = {"fields": "Email", "sort_by": "Modified_Time", "sort_order": "asc"}
    served = 0
    query = dict(params)
    while True:
        response = zoho.get("/crm/v8/Contacts", params=query)
        if response.status_code != 200:
            break
        served += response.json()["info"]["count"]
        query = dict(params, page_token=response.json()["info"]["next_page_token"])

    assert served == 1_000
    assert response.status_code == 400
    assert response.json()["code"] == "PAGINATION_LIMIT_EXCEEDED"


def test_page_token_cap_defaults_to_the_documented_100000() -> None:
    default = inspect.signature(create_zoho_app).parameters["page_token_cap"].default

    assert default == 100_000


# If-Modified-Since, 204, 304 --------------------------------------------------------------------


@pytest.mark.parametrize("inclusive", [True, False], ids=["own-second", "after-it"])
def test_if_modified_since_serves_records_modified_at_or_after_it_or_only_after(
    zoho_factory: Any, crm: SyntheticCrm, inclusive: bool
) -> None:
    # Inclusive, as other connectors report Zoho is; or only after it, as Zoho documents.
    zoho = zoho_factory(if_modified_since_inclusive=inclusive)
    # A second some records share, with later ones after it.
    seconds = crm.contacts["Modified_Time"].dt.floor("s")
    shared = seconds[seconds.duplicated()].drop_duplicates().sort_values()
    cutoff = shared.iloc[len(shared) // 2]
    header = cutoff.tz_convert("Asia/Kolkata").isoformat()

    records = read_all(
        zoho,
        {"fields": "Modified_Time", "sort_by": "Modified_Time", "sort_order": "asc"},
        headers={"If-Modified-Since": header},
    )

    expected = seconds >= cutoff if inclusive else seconds > cutoff
    assert 0 < len(records) == int(expected.sum())
    assert {r["id"] for r in records} == set(crm.contacts.loc[expected, "id"])


def test_if_modified_since_after_the_last_change_is_304(zoho: Zoho, crm: SyntheticCrm) -> None:
    after = crm.contacts["Modified_Time"].max() + timedelta(seconds=1)

    response = zoho.get(
        "/crm/v8/Contacts",
        params={"fields": "Email"},
        headers={"If-Modified-Since": after.isoformat()},
    )

    assert response.status_code == 304
    assert response.content == b""


def test_empty_result_is_204_without_body(zoho: Zoho) -> None:
    response = zoho.get(
        "/crm/v8/Contacts", params={"fields": "Email", "ids": "1234567890123456789"}
    )

    assert response.status_code == 204
    assert response.content == b""


def test_ids_parameter_serves_only_those_records(zoho: Zoho, crm: SyntheticCrm) -> None:
    wanted = list(crm.contacts["id"].iloc[:3])

    response = zoho.get("/crm/v8/Contacts", params={"fields": "Email", "ids": ",".join(wanted)})

    assert {record["id"] for record in response.json()["data"]} == set(wanted)


def test_leads_leave_out_converted_leads_unless_asked(zoho: Zoho, crm: SyntheticCrm) -> None:
    params = {"fields": "Last_Name", "per_page": 200}

    default = read_all_module(zoho, "Leads", params)
    unconverted = read_all_module(zoho, "Leads", dict(params, converted="false"))
    only_converted = read_all_module(zoho, "Leads", dict(params, converted="true"))
    both = read_all_module(zoho, "Leads", dict(params, converted="both"))

    converted = set(crm.leads.loc[crm.leads["Converted__s"], "id"])
    assert converted
    assert {record["id"] for record in default} == set(crm.leads["id"]) - converted
    assert {record["id"] for record in unconverted} == set(crm.leads["id"]) - converted
    assert {record["id"] for record in only_converted} == converted
    assert len(both) == len(crm.leads)


def test_converted_must_be_true_false_or_both(zoho: Zoho) -> None:
    response = zoho.get("/crm/v8/Leads", params={"fields": "Last_Name", "converted": "yes"})

    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_DATA"


def read_all_module(zoho: Zoho, module: str, params: dict[str, Any]) -> list:
    records: list = []
    query = dict(params)
    while True:
        response = zoho.get(f"/crm/v8/{module}", params=query)
        if response.status_code == 204:
            return records
        body = response.json()
        records.extend(body["data"])
        if not body["info"]["more_records"]:
            return records
        query = dict(params, page_token=body["info"]["next_page_token"])


# Single record, metadata --------------------------------------------------------------------------


def test_get_record_by_id_serves_every_field(zoho: Zoho, crm: SyntheticCrm) -> None:
    deal = crm.deals.iloc[0]

    record = zoho.get(f"/crm/v8/Deals/{deal['id']}").json()["data"][0]

    assert record["id"] == deal["id"]
    assert record["Stage"] == deal["Stage"]
    assert record["Owner"]["id"] == deal["Owner.id"]
    assert not any(key.startswith("_") or "." in key for key in record)


def test_get_unknown_record_is_204(zoho: Zoho) -> None:
    response = zoho.get("/crm/v8/Contacts/1234567890123456789")

    assert response.status_code == 204


def test_settings_fields_describe_the_module_columns(zoho: Zoho) -> None:
    fields = {
        field["api_name"]: field
        for field in zoho.get("/crm/v8/settings/fields", params={"module": "Cases"}).json()[
            "fields"
        ]
    }

    assert fields["Related_To"]["data_type"] == "lookup"
    assert fields["Related_To"]["lookup"]["module"]["api_name"] == "Contacts"
    assert fields["Owner"]["data_type"] == "ownerlookup"
    assert fields["Created_Time"]["data_type"] == "datetime"
    assert {value["actual_value"] for value in fields["Priority"]["pick_list_values"]} == {
        "High",
        "Medium",
        "Low",
    }
    assert not any(name.startswith("_") or "." in name for name in fields)


def test_settings_fields_describe_lookup_targets_sdks_parse(zoho: Zoho) -> None:
    accounts = zoho.get("/crm/v8/settings/fields", params={"module": "Accounts"}).json()["fields"]

    assert "Account_Name" in {field["api_name"] for field in accounts}


def test_settings_modules_lists_the_four_modules_and_notes(zoho: Zoho) -> None:
    modules = zoho.get("/crm/v8/settings/modules").json()["modules"]

    assert {module["api_name"] for module in modules} == {
        "Contacts",
        "Leads",
        "Deals",
        "Cases",
        "Notes",
    }
    assert all(module["api_supported"] for module in modules)


def test_current_user_is_the_first_crm_user(zoho: Zoho, crm: SyntheticCrm) -> None:
    users = zoho.get("/crm/v8/users", params={"type": "CurrentUser"}).json()["users"]

    assert [user["id"] for user in users] == [crm.users["id"].iloc[0]]


def test_org_carries_the_zgid_and_primary_zuid_of_zohos_samples(zoho: Zoho) -> None:
    # Zoho's official SDKs sign a token in as `<current user email>:<org zgid>`.
    (org,) = zoho.get("/crm/v8/org").json()["org"]

    assert org["zgid"].isdigit()
    assert org["primary_zuid"].isdigit()
    assert org["zgid"] != org["primary_zuid"]


# Updates ----------------------------------------------------------------------------------------


def test_update_all_records_is_200_and_moves_modified_time(zoho: Zoho, crm: SyntheticCrm) -> None:
    ids = list(crm.contacts["id"].iloc[:2])
    before = datetime.now(UTC).replace(microsecond=0)

    response = zoho.put(
        "/crm/v8/Contacts",
        json={"data": [{"id": record_id, "Lifecycle_Stage": "Churned"} for record_id in ids]},
    )

    assert response.status_code == 200
    assert [result["code"] for result in response.json()["data"]] == ["SUCCESS", "SUCCESS"]
    assert response.json()["data"][0]["message"] == "record updated"
    record = zoho.get(f"/crm/v8/Contacts/{ids[0]}").json()["data"][0]
    assert record["Lifecycle_Stage"] == "Churned"
    assert datetime.fromisoformat(record["Modified_Time"]) >= before


def test_updated_record_shows_up_for_if_modified_since(zoho: Zoho, crm: SyntheticCrm) -> None:
    record_id = crm.contacts["id"].iloc[5]
    since = (datetime.now(UTC) - timedelta(seconds=1)).replace(microsecond=0).isoformat()
    zoho.put("/crm/v8/Contacts", json={"data": [{"id": record_id, "App_Uninstalled": True}]})

    response = zoho.get(
        "/crm/v8/Contacts",
        params={"fields": "App_Uninstalled"},
        headers={"If-Modified-Since": since},
    )

    assert [record["id"] for record in response.json()["data"]] == [record_id]
    assert response.json()["data"][0]["App_Uninstalled"] is True


def test_update_with_some_bad_records_is_207_with_per_record_errors(
    zoho: Zoho, crm: SyntheticCrm
) -> None:
    good = crm.contacts["id"].iloc[0]

    response = zoho.put(
        "/crm/v8/Contacts",
        json={
            "data": [
                {"id": good, "Lifecycle_Stage": "Active"},
                {"id": "1234567890123456789", "Lifecycle_Stage": "Active"},
                {"id": good, "Email_Opt_Out": "yes"},
            ]
        },
    )

    results = response.json()["data"]
    assert response.status_code == 207
    assert [result["status"] for result in results] == ["success", "error", "error"]
    assert results[1]["code"] == "INVALID_DATA"
    assert results[1]["details"] == {"api_name": "id", "json_path": "$.data[1].id"}
    assert results[2]["details"]["expected_data_type"] == "boolean"
    assert results[2]["details"]["api_name"] == "Email_Opt_Out"


def test_update_where_every_record_fails_is_400(zoho: Zoho) -> None:
    response = zoho.put("/crm/v8/Contacts", json={"data": [{"Lifecycle_Stage": "Active"}]})

    assert response.status_code == 400
    assert response.json()["data"][0]["code"] == "MANDATORY_NOT_FOUND"


def test_update_of_more_than_100_records_is_limit_exceeded(zoho: Zoho, crm: SyntheticCrm) -> None:
    records = [{"id": record_id} for record_id in crm.contacts["id"].iloc[:101]]

    response = zoho.put("/crm/v8/Contacts", json={"data": records})

    assert response.status_code == 400
    assert response.json()["code"] == "LIMIT_EXCEEDED"


def test_update_of_unknown_field_is_invalid_data(zoho: Zoho, crm: SyntheticCrm) -> None:
    response = zoho.put(
        "/crm/v8/Contacts", json={"data": [{"id": crm.contacts["id"].iloc[0], "Lifecycle": "x"}]}
    )

    assert response.status_code == 400
    assert response.json()["data"][0]["details"]["api_name"] == "Lifecycle"


def test_update_of_one_record_by_path(zoho: Zoho, crm: SyntheticCrm) -> None:
    record_id = crm.contacts["id"].iloc[3]

    response = zoho.put(
        f"/crm/v8/Contacts/{record_id}", json={"data": [{"Subscription_Status": "Cancelled"}]}
    )

    assert response.status_code == 200
    record = zoho.get(f"/crm/v8/Contacts/{record_id}").json()["data"][0]
    assert record["Subscription_Status"] == "Cancelled"


def test_deal_stage_change_is_added_to_stage_history(zoho: Zoho, crm: SyntheticCrm) -> None:
    deal = crm.deals.iloc[0]
    new_stage = "Closed Lost" if deal["Stage"] != "Closed Lost" else "Rejected"

    zoho.put("/crm/v8/Deals", json={"data": [{"id": deal["id"], "Stage": new_stage}]})
    history = zoho.get(
        f"/crm/v8/Deals/{deal['id']}/Stage_History", params={"fields": "Stage,Modified_Time"}
    ).json()["data"]

    assert [entry["Stage"] for entry in history] == [new_stage, deal["Stage"]]


# Notes ------------------------------------------------------------------------------------------


def test_note_on_contact_route_is_201_and_kept_with_the_contact(
    zoho: Zoho, crm: SyntheticCrm
) -> None:
    contact_id = crm.contacts["id"].iloc[0]

    response = zoho.post(
        f"/crm/v8/Contacts/{contact_id}/Notes",
        json={"data": [{"Note_Title": "App uninstalled", "Note_Content": "Seen by CleverTap"}]},
    )

    assert response.status_code == 201
    assert response.json()["data"][0]["message"] == "record added"
    stored = zoho.admin("GET", f"/records/Contacts/{contact_id}").json()["notes"]
    assert [note["Note_Content"] for note in stored] == ["Seen by CleverTap"]
    assert stored[0]["Parent_Id"]["id"] == contact_id


def test_note_through_notes_module_uses_parent_id(zoho: Zoho, crm: SyntheticCrm) -> None:
    contact_id = crm.contacts["id"].iloc[1]
    note = {
        "Parent_Id": {"module": {"api_name": "Contacts"}, "id": contact_id},
        "Note_Title": "Purchase",
        "Note_Content": "Bought Gold",
    }

    response = zoho.post("/crm/v8/Notes", json={"data": [note]})
    listed = zoho.get(f"/crm/v8/Contacts/{contact_id}/Notes", params={"fields": "Note_Content"})

    assert response.status_code == 201
    assert [n["Note_Content"] for n in listed.json()["data"]] == ["Bought Gold"]


def test_notes_with_a_bad_parent_are_207_partial(zoho: Zoho, crm: SyntheticCrm) -> None:
    good = {
        "Parent_Id": {"module": {"api_name": "Contacts"}, "id": crm.contacts["id"].iloc[2]},
        "Note_Content": "ok",
    }
    bad = {"Parent_Id": {"module": {"api_name": "Contacts"}, "id": "1"}, "Note_Content": "x"}

    response = zoho.post("/crm/v8/Notes", json={"data": [good, bad, {"Note_Content": "x"}]})

    assert response.status_code == 207
    assert [r["code"] for r in response.json()["data"]] == [
        "SUCCESS",
        "INVALID_DATA",
        "MANDATORY_NOT_FOUND",
    ]


# Admin API and deletions -------------------------------------------------------------------------


def test_admin_create_and_update_move_modified_time(zoho: Zoho, crm: SyntheticCrm) -> None:
    existing = crm.contacts["id"].iloc[0]
    created = zoho.admin(
        "POST",
        "/records/Contacts",
        json=[{"First_Name": "Asha", "Last_Name": "Rao"}, {"id": existing, "Last_Name": "Nair"}],
    ).json()["records"]

    new_id = created[0]["id"]
    assert [r["action"] for r in created] == ["created", "updated"]
    new_record = zoho.get(f"/crm/v8/Contacts/{new_id}").json()["data"][0]
    updated = zoho.get(f"/crm/v8/Contacts/{existing}").json()["data"][0]
    assert new_record["Full_Name"] == "Asha Rao"
    assert updated["Last_Name"] == "Nair"
    assert updated["Modified_Time"] == new_record["Modified_Time"]
    assert int(new_id) > max(int(i) for i in crm.contacts["id"])


def test_admin_can_stage_same_second_edits(zoho: Zoho, crm: SyntheticCrm) -> None:
    ids = list(crm.contacts["id"].iloc[:2])
    moment = "2030-01-01T10:00:00+05:30"

    zoho.admin("POST", "/records/Contacts", json=[{"id": i, "Modified_Time": moment} for i in ids])
    response = zoho.get(
        "/crm/v8/Contacts", params={"fields": "Email"}, headers={"If-Modified-Since": moment}
    )

    assert {record["id"] for record in response.json()["data"]} == set(ids)


def test_admin_delete_shows_up_in_deleted_records(zoho: Zoho, crm: SyntheticCrm) -> None:
    recycled, purged = crm.contacts["id"].iloc[0], crm.contacts["id"].iloc[1]

    zoho.admin("DELETE", f"/records/Contacts/{recycled}")
    zoho.admin("DELETE", f"/records/Contacts/{purged}", params={"type": "permanent"})
    everything = zoho.get("/crm/v8/Contacts/deleted").json()
    recycle_only = zoho.get("/crm/v8/Contacts/deleted", params={"type": "recycle"}).json()

    assert [entry["id"] for entry in everything["data"]] == [purged, recycled]
    assert everything["data"][1]["display_name"] == crm.contacts["Full_Name"].iloc[0]
    assert everything["data"][0]["display_name"] is None
    assert [entry["id"] for entry in recycle_only["data"]] == [recycled]
    assert zoho.get(f"/crm/v8/Contacts/{recycled}").status_code == 204


def test_admin_mass_delete_lists_every_record_in_deleted_records(
    zoho: Zoho, crm: SyntheticCrm
) -> None:
    gone = crm.contacts["id"].iloc[:250].tolist()

    answer = zoho.admin("POST", "/records/Contacts/delete", json={"ids": gone})
    first = zoho.get("/crm/v8/Contacts/deleted").json()
    second = zoho.get("/crm/v8/Contacts/deleted", params={"page": 2}).json()

    assert answer.status_code == 200
    assert {entry["id"] for entry in first["data"] + second["data"]} == set(gone)
    assert first["info"]["more_records"] and not second["info"]["more_records"]
    assert zoho.get("/crm/v8/Contacts/actions/count").json()["count"] == len(crm.contacts) - 250


def test_admin_mass_delete_of_an_unknown_id_deletes_nothing(zoho: Zoho, crm: SyntheticCrm) -> None:
    ids = [crm.contacts["id"].iloc[0], "1234567890123456789"]

    answer = zoho.admin("POST", "/records/Contacts/delete", json={"ids": ids})

    assert answer.status_code == 404
    assert zoho.get("/crm/v8/Contacts/deleted").status_code == 204


def test_deleted_records_can_leave_out_the_if_modified_since_second(zoho_factory: Any) -> None:
    exclusive = zoho_factory(if_modified_since_inclusive=False)
    contact = exclusive.crm.contacts["id"].iloc[0]
    exclusive.admin("DELETE", f"/records/Contacts/{contact}")
    entry = exclusive.get("/crm/v8/Contacts/deleted").json()["data"][0]
    second_before = datetime.fromisoformat(entry["deleted_time"]) - timedelta(seconds=1)

    own_second = exclusive.get(
        "/crm/v8/Contacts/deleted", headers={"If-Modified-Since": entry["deleted_time"]}
    )
    before = exclusive.get(
        "/crm/v8/Contacts/deleted", headers={"If-Modified-Since": second_before.isoformat()}
    )

    assert own_second.status_code == 304
    assert [e["id"] for e in before.json()["data"]] == [contact]


def test_no_deletions_is_204(zoho: Zoho) -> None:
    assert zoho.get("/crm/v8/Cases/deleted").status_code == 204


def test_admin_read_of_unknown_record_is_404(zoho: Zoho) -> None:
    response = zoho.admin("GET", "/records/Contacts/1234567890123456789")

    assert response.status_code == 404


# Faults, stats, limits ---------------------------------------------------------------------------


def test_injected_429s_are_served_then_calls_recover(zoho: Zoho) -> None:
    zoho.admin("POST", "/faults", json={"too_many_requests": 2})

    statuses = [zoho.get("/crm/v8/Contacts", params={"fields": "Email"}) for _ in range(3)]

    assert [response.status_code for response in statuses] == [429, 429, 200]
    assert statuses[0].json()["code"] == "TOO_MANY_REQUESTS"


def test_injected_server_errors_use_the_requested_status(zoho: Zoho) -> None:
    zoho.admin("POST", "/faults", json={"server_errors": 1, "server_error_status": 503})

    first = zoho.get("/crm/v8/Contacts", params={"fields": "Email"})
    second = zoho.get("/crm/v8/Contacts", params={"fields": "Email"})

    assert (first.status_code, second.status_code) == (503, 200)
    assert first.json()["code"] == "INTERNAL_ERROR"


def test_faults_armed_with_after_calls_meet_the_call_after_that_many(zoho: Zoho) -> None:
    zoho.admin("POST", "/faults", json={"after_calls": 2, "too_many_requests": 1})

    statuses = [zoho.get("/crm/v8/Contacts", params={"fields": "Email"}) for _ in range(4)]

    assert [response.status_code for response in statuses] == [200, 200, 429, 200]


def test_an_armed_token_expiry_lands_on_the_chosen_call(zoho: Zoho) -> None:
    zoho.admin("POST", "/faults", json={"after_calls": 1, "expire_access_tokens": True})

    first = zoho.get("/crm/v8/Contacts", params={"fields": "Email"})
    second = zoho.get("/crm/v8/Contacts", params={"fields": "Email"})

    assert (first.status_code, second.status_code) == (200, 401)
    assert second.json()["code"] == "INVALID_TOKEN"


def test_served_values_replace_a_records_fields_with_any_json(zoho: Zoho) -> None:
    first = zoho.get("/crm/v8/Contacts", params={"fields": "Email,Mobile"}).json()["data"][0]
    hostile = {"Email": 42, "Mobile": ["not", "a", "phone"]}
    zoho.admin("POST", "/faults", json={"serve_values": {first["id"]: hostile}})

    again = zoho.get("/crm/v8/Contacts", params={"fields": "Email,Mobile"}).json()["data"][0]

    assert again == {**first, **hostile}


def test_duplicate_in_pages_repeats_a_record_within_the_next_page(zoho: Zoho) -> None:
    zoho.admin("POST", "/faults", json={"duplicate_in_pages": 1})
    params = {"fields": "Email", "per_page": 5}

    doubled = zoho.get("/crm/v8/Contacts", params=params).json()["data"]
    plain = zoho.get("/crm/v8/Contacts", params=params).json()["data"]

    assert [record["id"] for record in doubled] == [r["id"] for r in plain] + [plain[0]["id"]]


def test_a_lost_answer_is_carried_out_and_charged_but_answered_500(
    zoho: Zoho, crm: SyntheticCrm
) -> None:
    contact = crm.contacts["id"].iloc[0]
    zoho.admin("POST", "/faults", json={"lost_answers": 1})

    lost = zoho.put(
        "/crm/v8/Contacts", json={"data": [{"id": contact, "Lifecycle_Stage": "Churned"}]}
    )

    assert lost.status_code == 500
    assert lost.json()["code"] == "INTERNAL_ERROR"
    stored = zoho.admin("GET", f"/records/Contacts/{contact}").json()["record"]
    assert stored["Lifecycle_Stage"] == "Churned"
    stats = zoho.admin("GET", "/stats").json()
    assert stats["credits"]["PUT /crm/v8/Contacts"] == 1
    assert stats["faults_served"]["lost_answers"] == 1


def test_touched_records_move_to_the_end_of_a_modified_time_read(zoho: Zoho) -> None:
    params = {"fields": "Modified_Time", "sort_by": "Modified_Time", "sort_order": "asc"}
    first_page = zoho.get("/crm/v8/Contacts", params=params).json()["data"]
    oldest = first_page[0]["id"]

    zoho.admin("POST", "/faults", json={"touch_records": {"Contacts": [oldest]}})
    newest = zoho.get("/crm/v8/Contacts", params=dict(params, sort_order="desc")).json()

    assert newest["data"][0]["id"] == oldest
    assert newest["data"][0]["Modified_Time"] > first_page[0]["Modified_Time"]


def test_an_edit_between_pages_shifts_the_offsets_and_one_record_is_never_served(
    zoho: Zoho,
) -> None:
    params = {"fields": "Modified_Time", "sort_by": "Modified_Time", "sort_order": "asc"}
    undisturbed = read_all(zoho, params)
    first = zoho.get("/crm/v8/Contacts", params=params).json()

    zoho.admin("POST", "/faults", json={"touch_records": {"Contacts": [first["data"][0]["id"]]}})
    token = first["info"]["next_page_token"]
    rest = read_all(zoho, params, page_token=token)

    served = {record["id"] for record in first["data"] + rest}
    never_served = {record["id"] for record in undisturbed} - served
    # The record first in line on page 2 moved up onto page 1, which had been read already.
    assert never_served == {undisturbed[200]["id"]}


def test_faults_naming_unknown_records_are_refused(zoho: Zoho) -> None:
    unknown = {"touch_records": {"Contacts": ["1234567890123456789"]}}

    response = zoho.admin("POST", "/faults", json=unknown)

    assert response.status_code == 400
    assert "no Contacts record has id 1234567890123456789" in response.json()["error"]


def test_credits_spent_elsewhere_count_against_the_days_allowance(zoho_factory: Any) -> None:
    zoho = zoho_factory(daily_credit_limit=100)
    zoho.admin("POST", "/faults", json={"credits_spent_elsewhere": 60})

    response = zoho.get("/crm/v8/Contacts", params={"fields": "Email"})

    assert response.headers["X-API-CREDITS-REMAINING"] == "39"


def test_injected_slow_responses_take_that_long(zoho: Zoho) -> None:
    zoho.admin("POST", "/faults", json={"slow_responses": 1, "slow_seconds": 0.4})

    started = time.monotonic()
    zoho.get("/crm/v8/Contacts", params={"fields": "Email"})
    slow = time.monotonic() - started
    started = time.monotonic()
    zoho.get("/crm/v8/Contacts", params={"fields": "Email"})
    fast = time.monotonic() - started

    assert slow >= 0.4
    assert fast < 0.4


def test_expiring_access_tokens_makes_the_current_token_401(zoho: Zoho) -> None:
    zoho.admin("POST", "/faults", json={"expire_access_tokens": True})

    response = zoho.get("/crm/v8/Contacts", params={"fields": "Email"})

    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_TOKEN"


def test_expiring_page_tokens_makes_the_next_page_expired_value(zoho: Zoho) -> None:
    token = zoho.get("/crm/v8/Contacts", params={"fields": "Email"}).json()["info"][
        "next_page_token"
    ]
    zoho.admin("POST", "/faults", json={"expire_page_tokens": True})

    response = zoho.get("/crm/v8/Contacts", params={"fields": "Email", "page_token": token})

    assert response.json()["code"] == "EXPIRED_VALUE"


def test_unknown_fault_is_refused_with_the_allowed_keys(zoho: Zoho) -> None:
    response = zoho.admin("POST", "/faults", json={"timeouts": 1})

    assert response.status_code == 400
    assert "too_many_requests" in response.json()["error"]


def test_stats_count_calls_and_credits_by_endpoint(zoho: Zoho, crm: SyntheticCrm) -> None:
    zoho.get("/crm/v8/Contacts", params={"fields": "Email"})
    zoho.get("/crm/v8/Contacts/deleted")
    zoho.put(
        "/crm/v8/Contacts",
        json={"data": [{"id": i, "Email_Opt_Out": True} for i in crm.contacts["id"].iloc[:25]]},
    )

    stats = zoho.admin("GET", "/stats").json()

    assert stats["calls"]["GET /crm/v8/Contacts"] == 1
    assert stats["credits"]["GET /crm/v8/Contacts"] == 1
    assert stats["credits"]["GET /crm/v8/Contacts/deleted"] == 2
    assert stats["credits"]["PUT /crm/v8/Contacts"] == 3
    assert stats["token_grants"] == 1


def test_reset_clears_stats_and_pending_faults(zoho: Zoho) -> None:
    zoho.get("/crm/v8/Contacts", params={"fields": "Email"})
    zoho.admin("POST", "/faults", json={"too_many_requests": 5})

    zoho.admin("POST", "/reset")

    assert zoho.admin("GET", "/stats").json()["total_calls"] == 0
    assert zoho.get("/crm/v8/Contacts", params={"fields": "Email"}).status_code == 200


def test_calls_beyond_the_concurrency_limit_are_429(zoho_factory: Any) -> None:
    zoho = zoho_factory(concurrency_limit=3, response_delay_seconds=0.5)
    responses: list[requests.Response] = []

    def call() -> None:
        responses.append(zoho.get("/crm/v8/Contacts", params={"fields": "Email", "per_page": 1}))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 200, 200, 429, 429, 429]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json() == {
        "code": "TOO_MANY_REQUESTS",
        "details": {},
        "message": "too many requests. please try again after some time",
        "status": "error",
    }


def test_calls_beyond_the_daily_credits_are_429(zoho_factory: Any) -> None:
    zoho = zoho_factory(daily_credit_limit=2)

    statuses = [
        zoho.get("/crm/v8/Contacts", params={"fields": "Email"}).status_code for _ in range(3)
    ]

    assert statuses == [200, 200, 429]


def test_heavy_calls_beyond_the_sub_concurrency_limit_are_429(zoho_factory: Any) -> None:
    zoho = zoho_factory(heavy_concurrency_limit=2, response_delay_seconds=0.5)
    params = {"fields": "Email", "per_page": 1, "sort_by": "Modified_Time"}
    responses: list[requests.Response] = []

    def call() -> None:
        responses.append(zoho.get("/crm/v8/Contacts", params=params))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(response.status_code for response in responses) == [200, 200, 429, 429]


def test_credits_remaining_header_appears_past_half_the_allowance(zoho_factory: Any) -> None:
    zoho = zoho_factory(daily_credit_limit=4)

    first = zoho.get("/crm/v8/Contacts", params={"fields": "Email"})
    second = zoho.get("/crm/v8/Contacts", params={"fields": "Email"})

    assert "X-API-CREDITS-REMAINING" not in first.headers
    assert second.headers["X-API-CREDITS-REMAINING"] == "2"


def test_deleted_records_honour_if_modified_since(zoho: Zoho, crm: SyntheticCrm) -> None:
    zoho.admin("DELETE", f"/records/Deals/{crm.deals['id'].iloc[0]}")
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()

    response = zoho.get("/crm/v8/Deals/deleted", headers={"If-Modified-Since": later})

    assert response.status_code == 304


def test_record_count_answers_the_number_of_live_records(zoho: Zoho) -> None:
    before = zoho.get("/crm/v8/Contacts/actions/count").json()["count"]
    first = zoho.get("/crm/v8/Contacts", params={"fields": "Last_Name"}).json()["data"][0]

    zoho.admin("DELETE", f"/records/Contacts/{first['id']}")
    after = zoho.get("/crm/v8/Contacts/actions/count").json()["count"]

    assert before == len(zoho.crm.contacts)
    assert after == before - 1
