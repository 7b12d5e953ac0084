"""The Zoho assets over HTTP: what each reports it spent, failed Bulk Reads, records deleted
behind a read, and where converted Leads end up."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from ct_pipeline.assets.zoho import TABLES, zoho_contacts
from ct_pipeline.sandbox.clevertap_emulator import create_clevertap_app
from ct_pipeline.sandbox.launch import RunningSandbox
from ct_pipeline.sandbox.server import start_in_thread
from ct_pipeline.sandbox.synthetic import SyntheticCrm
from ct_pipeline.sandbox.zoho_emulator import create_zoho_app
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.state import read_cursor
from ct_pipeline_tests.pipeline.conftest import Pipeline
from ct_pipeline_tests.pipeline.test_incremental_derivation import step_metadata

DAILY_CREDITS = 10_000
SPENT_ELSEWHERE = 6_000


@pytest.fixture
def metered_pipeline(
    warehouse: WarehouseResource, synthetic_crm: SyntheticCrm
) -> Iterator[Pipeline]:
    """The pipeline harness against a Zoho org with a daily credit allowance."""
    sandbox = RunningSandbox(
        zoho=start_in_thread(
            create_zoho_app(copy.deepcopy(synthetic_crm), daily_credit_limit=DAILY_CREDITS)
        ),
        clevertap=start_in_thread(create_clevertap_app()),
    )
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            yield Pipeline(sandbox=sandbox, warehouse=warehouse, instance=instance)
    finally:
        sandbox.stop()


def run_with_bulk_read(pipeline: Pipeline, job_name: str) -> dg.ExecuteInProcessResult:
    """Run a sync job with a Zoho client that reads modules of over 100 records by Bulk Read."""
    pipeline.zoho_settings = {"bulk_read_threshold": 100, "bulk_poll_interval": 0.05}
    return pipeline.run(job_name)


def error_text(error) -> str:
    """The messages of a step failure and of the errors that caused it."""
    texts = []
    while error is not None:
        texts.append(error.message)
        error = error.cause
    return " ".join(texts)


def test_each_zoho_asset_reports_the_calls_and_credits_it_spent(metered_pipeline: Pipeline):
    pipeline = metered_pipeline
    pipeline.zoho("POST", "faults", {"credits_spent_elsewhere": SPENT_ELSEWHERE})

    result = pipeline.run("nightly_full_sync")

    assert result.success
    reported = {module: step_metadata(result, table) for module, table in TABLES.items()}
    for metadata in reported.values():
        assert not [key for key in metadata if "resource total" in key]
        assert isinstance(metadata["zoho calls"], int) and metadata["zoho calls"] > 0
        assert isinstance(metadata["zoho credits"], int) and metadata["zoho credits"] > 0
    stats = pipeline.zoho("GET", "stats")
    api_calls = stats["total_calls"] - stats["calls"]["POST /oauth/v2/token"]
    assert sum(metadata["zoho calls"] for metadata in reported.values()) == api_calls
    assert sum(metadata["zoho credits"] for metadata in reported.values()) == stats["total_credits"]
    # Each module reads its own records: its listing calls are its own.
    listings = {module: stats["calls"][f"GET /crm/v8/{module}"] for module in TABLES}
    for module, metadata in reported.items():
        assert listings[module] <= metadata["zoho calls"] <= listings[module] + 2
    # Zoho tells what is left once half the day's credits are used; the last asset saw the rest.
    remaining = [metadata["zoho credits remaining"] for metadata in reported.values()]
    assert min(remaining) == DAILY_CREDITS - SPENT_ELSEWHERE - stats["total_credits"]


def test_a_failed_bulk_read_fails_its_asset_and_leaves_the_stored_tables_as_they_were(
    pipeline: Pipeline,
):
    first = run_with_bulk_read(pipeline, "nightly_full_sync")
    assert first.success
    assert pipeline.zoho("GET", "stats")["calls"]["POST /crm/bulk/v8/read"] >= 3
    before = {table: pipeline.warehouse.read_table(table) for table in TABLES.values()}
    cursors = {module: read_cursor(pipeline.warehouse, module) for module in TABLES}
    contact = before[TABLES["Contacts"]].iloc[0]
    pipeline.zoho("POST", "records/Contacts", [{"id": contact["id"], "Last_Name": "Renamed"}])
    pipeline.zoho("POST", "faults", {"bulk_job_failures": 10})

    result = run_with_bulk_read(pipeline, "nightly_full_sync")

    assert not result.success
    failures = [
        event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    messages = " ".join(error_text(event.step_failure_data.error) for event in failures)
    assert "failed in Zoho" in messages and "nothing of this read was kept" in messages
    for table, stored in before.items():
        pd.testing.assert_frame_equal(pipeline.warehouse.read_table(table), stored)
    assert {module: read_cursor(pipeline.warehouse, module) for module in TABLES} == cursors


def test_a_record_deleted_behind_an_incremental_read_holds_the_cursor_before_it(
    pipeline: Pipeline,
):
    def extract_contacts() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [zoho_contacts], resources=pipeline.resources(), instance=pipeline.instance
        )

    assert extract_contacts().success
    stored = pipeline.warehouse.read_table(TABLES["Contacts"], columns=["id"])["id"].tolist()
    # Every contact renamed in the last few minutes, one second apart: two pages of changes.
    first = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=len(stored) + 5)
    renamed = sorted(stored)
    pipeline.zoho(
        "POST",
        "records/Contacts",
        [
            {
                "id": rid,
                "Last_Name": f"Renamed {i}",
                "Modified_Time": (first + timedelta(seconds=i)).isoformat(),
            }
            for i, rid in enumerate(renamed)
        ],
    )
    # Calls: field metadata, page 1, then the deletion lands before page 2.
    pipeline.zoho(
        "POST", "faults", {"after_calls": 2, "delete_records": {"Contacts": [renamed[0]]}}
    )

    assert extract_contacts().success

    table = pipeline.warehouse.read_table(TABLES["Contacts"]).set_index("id")
    # Page 2 started one record late: the 201st rename was never served.
    assert table.loc[renamed[200], "Last_Name"] != "Renamed 200"
    assert renamed[0] not in table.index
    assert read_cursor(pipeline.warehouse, "Contacts") == first - timedelta(seconds=1)

    assert extract_contacts().success

    table = pipeline.warehouse.read_table(TABLES["Contacts"]).set_index("id")
    assert table.loc[renamed[1:], "Last_Name"].tolist() == [
        f"Renamed {i}" for i in range(1, len(renamed))
    ]


def test_converted_leads_group_with_their_contact_which_is_canonical(
    pipeline: Pipeline, synthetic_crm: SyntheticCrm
):
    assert pipeline.run("nightly_full_sync").success

    leads = pipeline.warehouse.read_table(TABLES["Leads"], columns=["id", "Converted__s"])
    converted = set(synthetic_crm.leads.loc[synthetic_crm.leads["Converted__s"], "id"])
    assert set(leads.loc[leads["Converted__s"].astype(bool), "id"]) == converted
    members = pipeline.warehouse.read_table("duplicate_profiles").set_index(["module", "zoho_id"])
    person = synthetic_crm.leads.set_index("id")["_person"]
    contact_of_person = synthetic_crm.contacts.drop_duplicates("_person").set_index("_person")["id"]
    grouped = 0
    for lead_id in converted:
        contact_id = contact_of_person.get(person[lead_id])
        lead = members.loc[("Leads", lead_id)]
        if (
            contact_id is None
            or lead["group_id"] != members.loc[("Contacts", contact_id), "group_id"]
        ):
            continue
        grouped += 1
        canonical = members.loc[members["group_id"] == lead["group_id"]]
        assert not lead["is_canonical"]
        assert canonical[canonical["is_canonical"]].index.get_level_values("module").tolist() == [
            "Contacts"
        ]
    # Most converted Leads share a phone or email with their Contact (the rest were retyped).
    assert grouped >= 0.7 * len(converted)
