"""Bulk Read under faults: a full sync of a CRM big enough for Bulk Read meets refusals, server
errors and an expired access token while creating a job, polling it and downloading its zip,
and ends with exactly the tables an undisturbed Bulk Read gives (those of the records API, but
for the Leads, see below).

Every real full sync reads through Bulk Read (Zoho's records API reads at most 100,000
records through page tokens); here the threshold is lowered so that the 300-Contact sandbox
takes that path. The emulator's jobs finish well before the first status call, so each module's
calls are always the same five: field metadata, record count, job creation, one status call,
the download, and a fault armed with `after_calls` lands on the chosen one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest

from ct_pipeline.sandbox.clevertap_emulator import create_clevertap_app
from ct_pipeline.sandbox.launch import RunningSandbox
from ct_pipeline.sandbox.server import start_in_thread
from ct_pipeline.sandbox.synthetic import SyntheticCrm
from ct_pipeline.sandbox.zoho_emulator import create_zoho_app
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.zoho.http import clear_token_cache
from ct_pipeline_tests.reliability.conftest import (
    Baseline,
    FaultPipeline,
    Snapshot,
    assert_same_clevertap,
    assert_same_tables,
)

BULK_SETTINGS = {"bulk_read_threshold": 10}
# An emulated job is done long before the client's first status call (half a second).
JOB_SECONDS = 0.05
CREATE = "POST /crm/bulk/v8/read"
STATUS = "GET /crm/bulk/v8/read/{job_id}"
DOWNLOAD = "GET /crm/bulk/v8/read/{job_id}/result"
# The CRM calls of the full sync before each step of the second module's Bulk Read (Cases is
# read first, in five calls; Contacts then asks for its fields and its count).
CONTACTS_JOB_CREATION = 7
MODULES = 4
FAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "429": ({"too_many_requests": 1}, "too_many_requests"),
    "503": ({"server_errors": 1, "server_error_status": 503}, "server_errors"),
    "500": ({"server_errors": 1, "server_error_status": 500}, "server_errors"),
    "token-expiry": ({"expire_access_tokens": True}, ""),
}


class bulk_pipeline:
    """Emulators whose Bulk Read jobs finish at once, a warehouse, and a fresh instance; the
    Zoho client reads every module above ten records through Bulk Read."""

    def __init__(self, crm: SyntheticCrm, warehouse: WarehouseResource) -> None:
        self.crm = crm
        self.warehouse = warehouse

    def __enter__(self) -> FaultPipeline:
        clear_token_cache()
        zoho_app = create_zoho_app(copy.deepcopy(self.crm), bulk_job_seconds=JOB_SECONDS)
        self.sandbox = RunningSandbox(
            zoho=start_in_thread(zoho_app, port=0),
            clevertap=start_in_thread(create_clevertap_app(), port=0),
        )
        self.instance = dg.DagsterInstance.ephemeral()
        return FaultPipeline(
            sandbox=self.sandbox,
            warehouse=self.warehouse,
            instance=self.instance,
            zoho_settings=BULK_SETTINGS,
        )

    def __exit__(self, *exc_info: object) -> None:
        self.instance.dispose()
        self.sandbox.stop()


@pytest.fixture
def through_bulk_read(
    synthetic_crm: SyntheticCrm, sqlite_warehouse: WarehouseResource
) -> Iterator[FaultPipeline]:
    """A fresh pipeline whose full syncs read through Bulk Read."""
    with bulk_pipeline(synthetic_crm, sqlite_warehouse) as pipeline:
        yield pipeline


@pytest.fixture(scope="module")
def undisturbed_bulk_read(
    synthetic_crm: SyntheticCrm, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Snapshot, dict[str, int]]:
    """What an undisturbed full sync through Bulk Read leaves, and the Zoho calls it made."""
    path = tmp_path_factory.mktemp("bulk") / "warehouse.sqlite"
    with bulk_pipeline(synthetic_crm, WarehouseResource(url=f"sqlite:///{path}")) as pipeline:
        assert pipeline.run("nightly_full_sync").success
        return pipeline.snapshot(), pipeline.zoho_stats()["calls"]


def test_an_undisturbed_bulk_read_makes_five_calls_a_module_and_the_records_api_tables(
    undisturbed_bulk_read: tuple[Snapshot, dict[str, int]], undisturbed: Baseline
):
    after, calls = undisturbed_bulk_read

    assert (calls[CREATE], calls[STATUS], calls[DOWNLOAD]) == (MODULES, MODULES, MODULES)
    listings = {f"GET /crm/v8/{module}" for module in ("Contacts", "Leads", "Deals", "Cases")}
    assert listings.isdisjoint(calls), "a module was read through the records API"
    assert_same_tables(after, undisturbed.after_full_sync, ["zoho_contacts", "zoho_deals"])
    assert_same_tables(after, undisturbed.after_full_sync, ["zoho_cases", "deal_stage_snapshot"])


def test_bulk_read_and_the_records_api_keep_the_same_leads(
    undisturbed_bulk_read: tuple[Snapshot, dict[str, int]], undisturbed: Baseline
):
    assert_same_tables(undisturbed_bulk_read[0], undisturbed.after_full_sync, ["zoho_leads"])


@pytest.mark.parametrize("kind", list(FAULTS))
def test_faults_in_job_creation_polling_and_download_end_with_the_undisturbed_tables(
    through_bulk_read: FaultPipeline,
    undisturbed_bulk_read: tuple[Snapshot, dict[str, int]],
    kind: str,
):
    pipeline = through_bulk_read
    expected, _ = undisturbed_bulk_read
    fault, served = FAULTS[kind]
    # One fault on each step; each failed call is retried, so the next step comes a call later.
    for step in range(3):
        pipeline.zoho_faults(after_calls=CONTACTS_JOB_CREATION + 2 * step, **fault)

    assert pipeline.run("nightly_full_sync").success

    stats = pipeline.zoho_stats()
    calls = stats["calls"]
    # Each step was called once more than undisturbed: the failed call and its retry.
    assert (calls[CREATE], calls[STATUS], calls[DOWNLOAD]) == (MODULES + 1,) * 3
    if served:
        assert stats["faults_served"] == {served: 3}
    else:
        assert (stats["statuses"].get("401"), stats["token_grants"]) == (3, 4)
    after = pipeline.snapshot()
    assert_same_tables(after, expected)
    assert_same_clevertap(after, expected)
