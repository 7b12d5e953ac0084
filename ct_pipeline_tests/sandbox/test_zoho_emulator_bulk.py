"""The Zoho emulator's Bulk Read jobs over HTTP: create, poll, download the zip, page on.

Shapes and limits follow Zoho's Bulk Read pages (create job, job details, download result,
limitations) as collected in research/zoho.md §4.
"""

from __future__ import annotations

import csv
import io
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import requests

from ct_pipeline.sandbox.credentials import (
    SANDBOX_ZOHO_CLIENT_ID,
    SANDBOX_ZOHO_CLIENT_SECRET,
    SANDBOX_ZOHO_REFRESH_TOKEN,
)
from ct_pipeline.sandbox.server import serving
from ct_pipeline.sandbox.synthetic import SyntheticCrm, generate_crm
from ct_pipeline.sandbox.zoho_emulator import bulk as bulk_reads
from ct_pipeline.sandbox.zoho_emulator import create_zoho_app

CONTACTS = 1_200
GRANT = {
    "grant_type": "refresh_token",
    "client_id": SANDBOX_ZOHO_CLIENT_ID,
    "client_secret": SANDBOX_ZOHO_CLIENT_SECRET,
    "refresh_token": SANDBOX_ZOHO_REFRESH_TOKEN,
}
READ = "/crm/bulk/v8/read"


@pytest.fixture(scope="module")
def crm() -> SyntheticCrm:
    return generate_crm(CONTACTS, seed=11)


@pytest.fixture
def bulk_factory(crm: SyntheticCrm) -> Iterator[Any]:
    contexts = []

    def start(**options: Any) -> tuple[str, requests.Session]:
        options.setdefault("bulk_job_seconds", 0)
        context = serving(create_zoho_app(crm, **options))
        server = context.__enter__()
        contexts.append(context)
        token = requests.post(f"{server.url}/oauth/v2/token", data=GRANT, timeout=30).json()
        session = requests.Session()
        session.headers["Authorization"] = f"Zoho-oauthtoken {token['access_token']}"
        return server.url, session

    yield start
    for context in contexts:
        context.__exit__(None, None, None)


@pytest.fixture
def bulk(bulk_factory: Any) -> tuple[str, requests.Session]:
    return bulk_factory()


def create_job(url: str, session: requests.Session, query: dict[str, Any]) -> str:
    response = session.post(url + READ, json={"query": query}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["data"][0]["details"]["id"]


def completed(url: str, session: requests.Session, job_id: str) -> dict[str, Any]:
    for _ in range(100):
        job = session.get(f"{url}{READ}/{job_id}", timeout=30).json()["data"][0]
        if job["state"] == "COMPLETED":
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not complete")


def download_rows(url: str, session: requests.Session, job: dict[str, Any]) -> list[dict]:
    response = session.get(url + job["result"]["download_url"], timeout=30)
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist() == [f"{job['id']}.csv"]
        text = archive.read(f"{job['id']}.csv").decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def test_a_job_injected_to_fail_ends_in_failure_with_the_error_envelope(bulk_factory: Any) -> None:
    url, session = bulk_factory()
    requests.post(f"{url}/__sandbox/faults", json={"bulk_job_failures": 1}, timeout=30)
    failing = create_job(url, session, {"module": {"api_name": "Deals"}})
    healthy = create_job(url, session, {"module": {"api_name": "Deals"}})

    job = session.get(f"{url}{READ}/{failing}", timeout=30).json()["data"][0]
    download = session.get(f"{url}{READ}/{failing}/result", timeout=30)

    assert job["state"] == "FAILURE"
    assert set(job["result"]["error_message"]) == {"code", "details", "message", "status"}
    assert download.status_code == 400
    assert completed(url, session, healthy)["state"] == "COMPLETED"


def test_create_job_answers_201_added_successfully(bulk: tuple[str, requests.Session]) -> None:
    url, session = bulk

    response = session.post(
        url + READ, json={"query": {"module": {"api_name": "Contacts"}}}, timeout=30
    )

    entry = response.json()["data"][0]
    assert response.status_code == 201
    assert (entry["status"], entry["code"]) == ("success", "ADDED_SUCCESSFULLY")
    assert entry["details"]["operation"] == "read"
    assert entry["details"]["state"] == "ADDED"


def test_job_moves_through_states_to_completed(bulk_factory: Any) -> None:
    url, session = bulk_factory(bulk_job_seconds=0.6)
    job_id = create_job(url, session, {"module": {"api_name": "Deals"}})

    states = []
    while not states or states[-1] != "COMPLETED":
        job = session.get(f"{url}{READ}/{job_id}", timeout=30).json()["data"][0]
        states.append(job["state"])
        time.sleep(0.05)

    assert states[0] == "ADDED"
    assert "IN PROGRESS" in states
    assert "result" in job
    assert states.index("IN PROGRESS") < states.index("COMPLETED")


def test_completed_job_result_has_documented_keys(
    bulk: tuple[str, requests.Session], crm: SyntheticCrm
) -> None:
    url, session = bulk
    job_id = create_job(url, session, {"module": {"api_name": "Cases"}})

    result = completed(url, session, job_id)["result"]

    assert result == {
        "page": 1,
        "per_page": 200_000,
        "count": len(crm.cases),
        "download_url": f"/crm/bulk/v8/read/{job_id}/result",
        "more_records": False,
    }


def test_download_is_a_zip_holding_a_csv_of_the_requested_fields(
    bulk: tuple[str, requests.Session], crm: SyntheticCrm
) -> None:
    url, session = bulk
    job_id = create_job(
        url,
        session,
        {
            "module": {"api_name": "Contacts"},
            "fields": ["Last_Name", "Owner", "Owner.email", "Email_Opt_Out", "Modified_Time"],
        },
    )

    rows = download_rows(url, session, completed(url, session, job_id))

    assert len(rows) == CONTACTS
    assert list(rows[0]) == [
        "id",
        "Last_Name",
        "Owner",
        "Owner.email",
        "Email_Opt_Out",
        "Modified_Time",
    ]
    by_id = crm.contacts.set_index("id")
    first = rows[0]
    assert first["Owner"] == by_id.loc[first["id"], "Owner.id"]
    assert first["Owner.email"] == by_id.loc[first["id"], "Owner.email"]
    assert first["Email_Opt_Out"] in ("true", "false")
    assert first["Modified_Time"].endswith("+05:30")


def test_more_than_a_page_needs_new_jobs_with_the_page_token(
    bulk_factory: Any, crm: SyntheticCrm
) -> None:
    url, session = bulk_factory(bulk_page_size=500)
    query: dict[str, Any] = {"module": {"api_name": "Contacts"}, "fields": ["Last_Name"]}
    ids: list[str] = []
    pages = 0

    while True:
        job = completed(url, session, create_job(url, session, query))
        ids.extend(row["id"] for row in download_rows(url, session, job))
        pages += 1
        if not job["result"]["more_records"]:
            break
        query = dict(query, page_token=job["result"]["next_page_token"])

    assert pages == 3
    assert sorted(ids) == sorted(crm.contacts["id"])


def test_page_2_covers_the_second_page_of_records(bulk_factory: Any) -> None:
    url, session = bulk_factory(bulk_page_size=500)
    query = {"module": {"api_name": "Contacts"}, "page": 2}

    job = completed(url, session, create_job(url, session, query))

    assert job["result"]["page"] == 2
    assert job["result"]["count"] == 500


def test_criteria_on_modified_time_filters_the_export(
    bulk: tuple[str, requests.Session], crm: SyntheticCrm
) -> None:
    url, session = bulk
    cutoff = crm.contacts["Modified_Time"].dt.floor("s").sort_values().iloc[-100]
    criteria = {
        "field": {"api_name": "Modified_Time"},
        "comparator": "greater_than",
        "value": cutoff.isoformat(),
    }
    query = {"module": {"api_name": "Contacts"}, "criteria": criteria}

    rows = download_rows(url, session, completed(url, session, create_job(url, session, query)))

    expected = crm.contacts.loc[crm.contacts["Modified_Time"].dt.floor("s") > cutoff, "id"]
    assert sorted(row["id"] for row in rows) == sorted(expected)


def test_group_criteria_combine_with_and(
    bulk: tuple[str, requests.Session], crm: SyntheticCrm
) -> None:
    url, session = bulk
    criteria = {
        "group_operator": "and",
        "group": [
            {"field": {"api_name": "Priority"}, "comparator": "equal", "value": "High"},
            {"field": {"api_name": "Status"}, "comparator": "not_equal", "value": "Closed"},
        ],
    }
    query = {"module": {"api_name": "Cases"}, "criteria": criteria}

    rows = download_rows(url, session, completed(url, session, create_job(url, session, query)))

    cases = crm.cases
    expected = cases.loc[(cases["Priority"] == "High") & (cases["Status"] != "Closed"), "id"]
    assert sorted(row["id"] for row in rows) == sorted(expected)


def test_create_without_json_content_type_is_415(bulk: tuple[str, requests.Session]) -> None:
    url, session = bulk

    response = session.post(
        url + READ,
        data='{"query": {"module": {"api_name": "Contacts"}}}',
        headers={"Content-Type": "text/plain"},
        timeout=30,
    )

    assert response.status_code == 415
    assert response.json()["code"] == "MEDIA_TYPE_NOT_SUPPORTED"


def test_create_without_query_is_mandatory_not_found(bulk: tuple[str, requests.Session]) -> None:
    url, session = bulk

    response = session.post(url + READ, json={"callback": {}}, timeout=30)

    assert response.status_code == 400
    assert response.json()["code"] == "MANDATORY_NOT_FOUND"


def test_unknown_field_is_invalid_data(bulk: tuple[str, requests.Session]) -> None:
    url, session = bulk

    response = session.post(
        url + READ,
        json={"query": {"module": {"api_name": "Contacts"}, "fields": ["Nickname"]}},
        timeout=30,
    )

    assert response.status_code == 400
    assert response.json()["details"]["json_path"] == "$.query.fields[0]"


def test_unknown_job_is_404_resource_not_found(bulk: tuple[str, requests.Session]) -> None:
    url, session = bulk

    response = session.get(f"{url}{READ}/1234567890123456789", timeout=30)

    assert response.status_code == 404
    assert response.json()["code"] == "RESOURCE_NOT_FOUND"


def test_download_before_completion_is_refused(bulk_factory: Any) -> None:
    url, session = bulk_factory(bulk_job_seconds=30)
    job_id = create_job(url, session, {"module": {"api_name": "Contacts"}})

    response = session.get(f"{url}{READ}/{job_id}/result", timeout=30)

    assert response.status_code == 400
    assert response.json()["status"] == "error"


def test_downloads_beyond_the_per_minute_limit_are_429(bulk_factory: Any) -> None:
    url, session = bulk_factory(bulk_downloads_per_minute=2)
    job = completed(url, session, create_job(url, session, {"module": {"api_name": "Cases"}}))

    statuses = [
        session.get(url + job["result"]["download_url"], timeout=30).status_code for _ in range(3)
    ]

    assert statuses == [200, 200, 429]


def test_creating_a_job_costs_50_credits(bulk: tuple[str, requests.Session]) -> None:
    url, session = bulk
    create_job(url, session, {"module": {"api_name": "Leads"}})

    stats = requests.get(f"{url}/__sandbox/stats", timeout=30).json()

    assert stats["credits"]["POST /crm/bulk/v8/read"] == 50


@pytest.mark.parametrize(
    "column",
    [
        pd.Series(["Pune", None, 'say "hi", then\nleave'], dtype="str"),
        # Text mixed with a number, as a hostile record can hold: not one Arrow type.
        pd.Series(["Pune", None, 7], dtype="object"),
    ],
    ids=["text", "mixed"],
)
def test_the_export_csv_holds_each_value_and_leaves_missing_ones_empty(column: pd.Series) -> None:
    text = bulk_reads._csv({"id": pd.Series(["1", "2", "3"]), "City": column}).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["id"] for row in rows] == ["1", "2", "3"]
    assert [row["City"] for row in rows] == ["Pune", "", str(column[2])]
