"""Zoho's official Python SDK for the v8 API (`zohocrmsdk8-0`) works unchanged against the emulator.

The emulator's requirement is that real clients written by others, such as Zoho's own SDKs
pointed at it, work unchanged. Here the SDK is configured only through its public API: a
`DataCenter.Environment` naming the emulator as both the CRM API and the Accounts server, the
sandbox self-client, a file token store and a resource path in a temporary directory. Neither
the SDK nor the emulator is patched. Each test checks what the SDK read or wrote against the
emulator's own answer: plain HTTP to the CRM API, or the sandbox admin API for stored records.

The SDK keeps its configuration in class attributes; the fixture puts them back afterwards.
Assertion messages carry field names, ids and counts only: the synthetic contacts' names,
emails and phones look like personal data.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.api.logger import Logger
from zohocrmsdk.src.com.zoho.crm.api import HeaderMap, ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.modules import MinifiedModule
from zohocrmsdk.src.com.zoho.crm.api.notes import BodyWrapper as NotesBody
from zohocrmsdk.src.com.zoho.crm.api.notes import Note, NotesOperations, ParentId
from zohocrmsdk.src.com.zoho.crm.api.record import (
    APIException,
    BodyWrapper,
    GetRecordsHeader,
    GetRecordsParam,
    Record,
    RecordOperations,
    SuccessResponse,
)
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
from zohocrmsdk.src.com.zoho.crm.api.users import MinifiedUser
from zohocrmsdk.src.com.zoho.crm.api.util import Choice, Constants, Utility

from ct_pipeline.sandbox.credentials import (
    SANDBOX_ZOHO_CLIENT_ID,
    SANDBOX_ZOHO_CLIENT_SECRET,
    SANDBOX_ZOHO_REFRESH_TOKEN,
)
from ct_pipeline.sandbox.launch import start_sandbox

CONTACTS = 300
SEED = 3
# The emulator serves Zoho Accounts' token endpoint at the path Zoho's data centres use.
TOKEN_PATH = "/oauth/v2/token"
GRANT = {
    "grant_type": "refresh_token",
    "client_id": SANDBOX_ZOHO_CLIENT_ID,
    "client_secret": SANDBOX_ZOHO_CLIENT_SECRET,
    "refresh_token": SANDBOX_ZOHO_REFRESH_TOKEN,
}
FIELDS = (
    "First_Name,Last_Name,Email,Mobile,Owner,Account_Name,Lead_Source,Email_Opt_Out,"
    "Subscription_Value_INR,App_Uninstalled,Date_of_Birth,Created_Time,Modified_Time"
)
PER_PAGE = 100
SDK_LOGGER = "SDKLogger"
# Zoho datetimes: second precision with the org's offset, e.g. 2026-03-01T17:30:00+05:30.
ZOHO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")
# Each test that changes a record takes its own from the first page of contacts (`contact_ids`,
# ids descending as Zoho serves them by default), read before any test ran.
UPDATED, NOTED, TOUCHED, DELETED = -1, -2, -3, -4


@dataclass
class OfficialSdk:
    """The emulator, the SDK's token for it, and plain HTTP to cross-check what the SDK reads."""

    url: str
    token: OAuthToken
    resource_path: Path
    session: requests.Session
    contact_ids: list[str]

    def __repr__(self) -> str:
        # Tracebacks print fixture values; the URL is all that identifies this one.
        return f"OfficialSdk({self.url})"

    def served(self, path: str, **kwargs: Any) -> requests.Response:
        """A plain, authorised CRM API call to the emulator (its own token, not the SDK's)."""
        return self.session.get(self.url + path, timeout=30, **kwargs)

    def stored(self, module: str, record_id: str) -> dict[str, Any]:
        """`GET /__sandbox/records/{module}/{id}`: the record as stored, with its Notes."""
        response = requests.get(f"{self.url}/__sandbox/records/{module}/{record_id}", timeout=30)
        assert response.status_code == 200, f"admin read of {record_id}: {response.status_code}"
        return response.json()


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfficialSdk]:
    """The emulator with 300 contacts, and Zoho's SDK initialised against it."""
    directory = tmp_path_factory.mktemp("zoho_official_sdk")
    saved_state = _sdk_global_state()
    sdk_logger = logging.getLogger(SDK_LOGGER)
    saved_logger = (sdk_logger.level, sdk_logger.propagate, list(sdk_logger.handlers))
    sandbox = start_sandbox(contacts=CONTACTS, seed=SEED, clevertap_port=None)
    try:
        url = sandbox.zoho.url
        token = OAuthToken(
            client_id=SANDBOX_ZOHO_CLIENT_ID,
            client_secret=SANDBOX_ZOHO_CLIENT_SECRET,
            refresh_token=SANDBOX_ZOHO_REFRESH_TOKEN,
        )
        # The SDK logs request parameters; its log goes to a file, not into test output.
        sdk_logger.propagate = False
        Initializer.initialize(
            environment=DataCenter.Environment(url, url + TOKEN_PATH, url),
            token=token,
            store=FileStore(str(directory / "sdk_tokens.csv")),
            # auto_refresh_fields: the SDK reads settings/modules, then every module's fields.
            sdk_config=SDKConfig(auto_refresh_fields=True, connect_timeout=10, read_timeout=30),
            resource_path=str(directory),
            logger=Logger.get_instance(Logger.Levels.INFO, str(directory / "sdk.log")),
        )
        session = requests.Session()
        grant = requests.post(url + TOKEN_PATH, data=GRANT, timeout=30).json()
        session.headers["Authorization"] = f"Zoho-oauthtoken {grant['access_token']}"
        first_page = session.get(
            f"{url}/crm/v8/Contacts", params={"fields": "Last_Name", "per_page": 200}, timeout=30
        )
        yield OfficialSdk(
            url=url,
            token=token,
            resource_path=directory,
            session=session,
            contact_ids=[record["id"] for record in first_page.json()["data"]],
        )
    finally:
        _restore_sdk_global_state(saved_state)
        level, propagate, handlers = saved_logger
        for handler in list(sdk_logger.handlers):
            if handler not in handlers:
                sdk_logger.removeHandler(handler)
                handler.close()
        sdk_logger.setLevel(level)
        sdk_logger.propagate = propagate
        sandbox.stop()


# OAuth ------------------------------------------------------------------------------------------


def test_refresh_token_grant_gets_an_access_token_the_emulator_accepts(sdk: OfficialSdk) -> None:
    access_token = sdk.token.get_access_token()

    # Checked without printing the token: it is a credential, if only the sandbox's.
    issued = access_token is not None and access_token.startswith("1000.")
    assert issued, "the SDK holds no access token of the shape Zoho Accounts grants"
    # The grant's api_domain is the emulator, so the SDK keeps the environment it was given.
    assert sdk.token.get_api_domain() == sdk.url
    assert Initializer.get_initializer().environment.url == sdk.url
    # The SDK stores expiry as epoch milliseconds from the grant's expires_in (3600 s).
    expires_in_seconds = int(sdk.token.get_expires_in()) / 1000 - time.time()
    assert 3_000 < expires_in_seconds <= 3_600
    answer = requests.get(
        f"{sdk.url}/crm/v8/users",
        params={"type": "CurrentUser"},
        headers={"Authorization": f"Zoho-oauthtoken {access_token}"},
        timeout=30,
    )
    assert answer.status_code == 200


def test_sdk_signs_its_token_in_as_the_orgs_current_user(sdk: OfficialSdk) -> None:
    # The SDK names a token `<current user email>:<org zgid>` from users?type=CurrentUser and org.
    user = sdk.served("/crm/v8/users", params={"type": "CurrentUser"}).json()["users"][0]
    org = sdk.served("/crm/v8/org").json()["org"][0]

    signature = sdk.token.get_user_signature()

    assert signature is not None, "the SDK could not sign the token in (see the org's zgid)"
    matches = signature.get_name() == f"{user['email']}:{org['zgid']}"
    assert matches, "the signature is not the current user's email and the org's zgid"
    kept = signature.get_name() in (sdk.resource_path / "sdk_tokens.csv").read_text()
    assert kept, "the token store did not keep the signed token"


# Metadata ---------------------------------------------------------------------------------------


def test_sdk_caches_every_modules_fields_from_settings_modules_and_fields(
    sdk: OfficialSdk,
) -> None:
    _records(fields="Last_Name", per_page=1)  # a module's first call loads the metadata
    modules = sdk.served("/crm/v8/settings/modules").json()["modules"]

    (cache_file,) = (sdk.resource_path / Constants.FIELD_DETAILS_DIRECTORY).glob("*.json")
    cache = json.loads(cache_file.read_text())

    module_names = {module["api_name"].lower() for module in modules}
    assert set(cache[Constants.SDK_MODULE_METADATA]) == module_names
    for module in modules:
        fields = sdk.served(
            "/crm/v8/settings/fields", params={"module": module["api_name"]}
        ).json()["fields"]
        # The SDK leaves out the system fields it fills itself (Created_Time and the like).
        expected = {field["api_name"] for field in fields} - set(Constants.KEYS_TO_SKIP)
        cached = set(cache[module["api_name"].lower()])
        assert expected - cached == set(), module["api_name"]
    assert cache["contacts"]["Last_Name"].get("required") is True


def test_sdk_types_each_value_by_the_emulators_field_metadata(sdk: OfficialSdk) -> None:
    records = _records(fields=FIELDS)

    owner_types = Counter(type(record.get_key_value("Owner")).__name__ for record in records)
    assert owner_types == {MinifiedUser.__name__: len(records)}
    for name, kind in (
        ("Lead_Source", Choice),
        ("Email_Opt_Out", bool),
        ("App_Uninstalled", bool),
        ("Subscription_Value_INR", float),
        ("Date_of_Birth", date),
        ("Modified_Time", datetime),
    ):
        values = [record.get_key_value(name) for record in records]
        wrong = sum(1 for value in values if value is not None and not isinstance(value, kind))
        assert wrong == 0, f"{wrong} {name} values are not {kind.__name__}"
        assert any(value is not None for value in values), f"no {name} values to check"


# Reads ------------------------------------------------------------------------------------------


def test_get_records_serves_the_emulators_records_with_equal_values(sdk: OfficialSdk) -> None:
    response = _get_records(fields=FIELDS, per_page=PER_PAGE)
    served = sdk.served("/crm/v8/Contacts", params={"fields": FIELDS, "per_page": PER_PAGE})

    assert response.get_status_code() == 200
    records = response.get_object().get_data()
    served_body = served.json()
    assert [str(record.get_id()) for record in records] == [r["id"] for r in served_body["data"]]
    assert _mismatched_fields(records, served_body["data"]) == {}
    info = response.get_object().get_info()
    assert info.get_per_page() == PER_PAGE
    assert info.get_count() == PER_PAGE
    assert info.get_page() == 1
    assert info.get_more_records() is True
    assert info.get_next_page_token()


def test_page_two_serves_the_records_after_the_first_page(sdk: OfficialSdk) -> None:
    first = _records(fields="Last_Name", per_page=PER_PAGE)
    second_response = _get_records(fields="Last_Name", per_page=PER_PAGE, page=2)
    served = sdk.served(
        "/crm/v8/Contacts", params={"fields": "Last_Name", "per_page": PER_PAGE, "page": 2}
    )

    second = second_response.get_object().get_data()
    assert [str(record.get_id()) for record in second] == [r["id"] for r in served.json()["data"]]
    assert not {record.get_id() for record in first} & {record.get_id() for record in second}
    assert second_response.get_object().get_info().get_page() == 2


def test_page_tokens_read_every_contact_exactly_once(sdk: OfficialSdk) -> None:
    ids: list[str] = []
    page_token = None
    pages = 0
    while True:
        response = _get_records(fields="Last_Name", per_page=PER_PAGE, page_token=page_token)
        assert response.get_status_code() == 200, f"page {pages + 1}"
        wrapper = response.get_object()
        ids.extend(str(record.get_id()) for record in wrapper.get_data())
        pages += 1
        if not wrapper.get_info().get_more_records():
            break
        page_token = wrapper.get_info().get_next_page_token()
    served_count = sdk.served("/crm/v8/Contacts/actions/count").json()["count"]

    assert len(ids) == len(set(ids)) == served_count
    assert pages == -(-served_count // PER_PAGE)


def test_get_record_by_id_serves_every_field_as_the_emulator_does(sdk: OfficialSdk) -> None:
    record_id = sdk.contact_ids[0]

    response = RecordOperations("Contacts").get_record(int(record_id))
    served = sdk.served(f"/crm/v8/Contacts/{record_id}").json()["data"]

    assert response.get_status_code() == 200
    (record,) = response.get_object().get_data()
    assert str(record.get_id()) == record_id
    assert set(record.get_key_values()) == set(served[0])
    assert _mismatched_fields([record], served) == {}


def test_record_count_is_the_emulators_count(sdk: OfficialSdk) -> None:
    response = RecordOperations("Contacts").record_count()

    served = sdk.served("/crm/v8/Contacts/actions/count").json()["count"]
    assert response.get_status_code() == 200
    assert response.get_object().get_count() == served


def test_if_modified_since_header_reads_only_records_changed_since(sdk: OfficialSdk) -> None:
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    touched = sdk.contact_ids[TOUCHED]
    edit = requests.post(
        f"{sdk.url}/__sandbox/records/Contacts",
        json=[{"id": touched, "Mailing_City": "Sdkpur"}],
        timeout=30,
    )
    assert edit.status_code == 200

    headers = HeaderMap()
    headers.add(GetRecordsHeader.if_modified_since, since)
    response = _get_records(headers, fields="Last_Name,Modified_Time", per_page=PER_PAGE)
    served = sdk.served(
        "/crm/v8/Contacts",
        params={"fields": "Last_Name,Modified_Time", "per_page": PER_PAGE},
        headers={"If-Modified-Since": since.isoformat()},
    )

    assert response.get_status_code() == 200
    records = response.get_object().get_data()
    assert touched in {str(record.get_id()) for record in records}
    assert all(record.get_key_value("Modified_Time") >= since for record in records)
    assert sorted(str(record.get_id()) for record in records) == sorted(
        record["id"] for record in served.json()["data"]
    )


def test_deleted_records_list_a_contact_deleted_in_the_crm(sdk: OfficialSdk) -> None:
    deleted = sdk.contact_ids[DELETED]
    removal = requests.delete(f"{sdk.url}/__sandbox/records/Contacts/{deleted}", timeout=30)
    assert removal.status_code == 200

    response = RecordOperations("Contacts").get_deleted_records()

    assert response.get_status_code() == 200
    entries = {str(entry.get_id()): entry for entry in response.get_object().get_data()}
    assert deleted in entries
    assert entries[deleted].get_type() == "recycle"
    assert isinstance(entries[deleted].get_deleted_time(), datetime)


def test_refused_request_parses_as_an_api_exception_with_zohos_code(sdk: OfficialSdk) -> None:
    # Get Records without `fields` is REQUIRED_PARAM_MISSING in Zoho's error envelope.
    response = RecordOperations("Contacts").get_records(ParameterMap())

    assert response.get_status_code() == 400
    error = response.get_object()
    assert isinstance(error, APIException)
    assert error.get_code().get_value() == "REQUIRED_PARAM_MISSING"
    assert error.get_status().get_value() == "error"
    assert error.get_details() == {"param_name": "fields"}


# Writes -----------------------------------------------------------------------------------------


def test_update_records_is_visible_through_the_admin_api(sdk: OfficialSdk) -> None:
    record_id = sdk.contact_ids[UPDATED]
    before = sdk.stored("Contacts", record_id)["record"]
    fields = sdk.served("/crm/v8/settings/fields", params={"module": "Contacts"}).json()["fields"]
    (lead_source,) = (field for field in fields if field["api_name"] == "Lead_Source")
    new_source = next(
        value["actual_value"]
        for value in lead_source["pick_list_values"]
        if value["actual_value"] != before["Lead_Source"]
    )
    change = Record()
    change.set_id(int(record_id))
    change.add_key_value("First_Name", "Sdkwritten")
    change.add_key_value("Lead_Source", Choice(new_source))
    change.add_key_value("Email_Opt_Out", not before["Email_Opt_Out"])
    body = BodyWrapper()
    body.set_data([change])

    response = RecordOperations("Contacts").update_records(body)

    assert response.get_status_code() == 200
    (outcome,) = response.get_object().get_data()
    assert isinstance(outcome, SuccessResponse)
    assert outcome.get_code().get_value() == "SUCCESS"
    details = outcome.get_details()
    assert str(details["id"]) == record_id
    after = sdk.stored("Contacts", record_id)["record"]
    expected = {
        "First_Name": "Sdkwritten",
        "Full_Name": f"Sdkwritten {before['Last_Name']}",
        "Last_Name": before["Last_Name"],
        "Lead_Source": new_source,
        "Email_Opt_Out": not before["Email_Opt_Out"],
    }
    assert _differing(after, expected) == []
    modified = datetime.fromisoformat(after["Modified_Time"])
    assert details["Modified_Time"] == modified
    assert modified >= datetime.fromisoformat(before["Modified_Time"])


def test_create_notes_adds_the_note_to_its_contact(sdk: OfficialSdk) -> None:
    record_id = sdk.contact_ids[NOTED]
    contacts = MinifiedModule()
    contacts.set_api_name("Contacts")
    parent = ParentId()
    parent.set_module(contacts)
    parent.set_id(int(record_id))
    note = Note()
    note.set_note_title("From the SDK")
    note.set_note_content("Written by Zoho's official Python SDK.")
    note.set_parent_id(parent)
    body = NotesBody()
    body.set_data([note])

    response = NotesOperations().create_notes(body)

    assert response.get_status_code() == 201
    (outcome,) = response.get_object().get_data()
    assert outcome.get_code().get_value() == "SUCCESS"
    note_id = str(outcome.get_details()["id"])
    stored_notes = {entry["id"]: entry for entry in sdk.stored("Contacts", record_id)["notes"]}
    assert note_id in stored_notes
    stored = stored_notes[note_id]
    assert stored["Note_Title"] == "From the SDK"
    assert stored["Note_Content"] == "Written by Zoho's official Python SDK."
    assert stored["Parent_Id"]["id"] == record_id
    assert stored["Parent_Id"]["module"]["api_name"] == "Contacts"


# Helpers ----------------------------------------------------------------------------------------


def _get_records(headers: HeaderMap | None = None, **params: Any) -> Any:
    """`RecordOperations("Contacts").get_records` with GetRecordsParam values by name."""
    parameters = ParameterMap()
    for name, value in params.items():
        if value is not None:
            parameters.add(getattr(GetRecordsParam, name), value)
    response = RecordOperations("Contacts").get_records(parameters, headers)
    assert response is not None, "the SDK swallowed an error; see sdk.log in the resource path"
    return response


def _records(**params: Any) -> list[Record]:
    """The records of one successful Get Records call through the SDK."""
    response = _get_records(**params)
    assert response.get_status_code() == 200
    return response.get_object().get_data()


def _mismatched_fields(records: list[Record], served: list[dict[str, Any]]) -> dict[str, int]:
    """How many records differ in each field, SDK against emulator (names and counts only)."""
    mismatches: Counter[str] = Counter()
    missing = object()
    for record, served_record in zip(records, served, strict=True):
        ours = {name: _plain(value) for name, value in record.get_key_values().items()}
        ours["id"] = str(record.get_id())
        theirs = {name: _from_json(value) for name, value in served_record.items()}
        for name in ours.keys() | theirs.keys():
            if ours.get(name, missing) != theirs.get(name, missing):
                mismatches[name] += 1
    return dict(mismatches)


def _differing(record: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """The names of the fields whose values differ from `expected` (never the values)."""
    return sorted(name for name, value in expected.items() if record.get(name) != value)


def _plain(value: Any) -> Any:
    """An SDK value in comparable form: lookups and ids as id strings, choices as their value."""
    if isinstance(value, Choice):
        return value.get_value()
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, MinifiedUser | Record):
        return str(value.get_id())
    return value


def _from_json(value: Any) -> Any:
    """A served JSON value in the same form: lookups by id, datetimes as aware datetimes."""
    if isinstance(value, dict):
        return str(value["id"])
    if isinstance(value, str) and ZOHO_DATETIME.fullmatch(value):
        return datetime.fromisoformat(value)
    return value


def _sdk_global_state() -> list[tuple[Any, str, Any]]:
    """The SDK's process-wide configuration and caches (class attributes), to put back later."""
    holders = (
        (Initializer, "initializer"),
        (Initializer.LOCAL, "init"),  # the user switch_user() selects, per thread
        (Utility, "api_supported_modules"),
        (Utility, "module_api_name"),
        (Utility, "new_file"),
        (Utility, "get_modified_modules"),
        (Utility, "force_refresh"),
    )
    return [(owner, name, getattr(owner, name, None)) for owner, name in holders]


def _restore_sdk_global_state(state: list[tuple[Any, str, Any]]) -> None:
    for owner, name, value in state:
        setattr(owner, name, value)
