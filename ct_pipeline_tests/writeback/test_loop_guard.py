"""The write-back does not echo: Contacts it updates are re-read by the forward sync, which then
pushes nothing to CleverTap, because written-back fields are never mapped forward."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pandas as pd
import pytest
import requests

from ct_pipeline.assets import ALL_ASSETS
from ct_pipeline.assets.writeback import WRITEBACK_ASSETS, WRITEBACK_JOBS
from ct_pipeline.checks import CHECKS
from ct_pipeline.jobs import SYNC_JOBS
from ct_pipeline.sandbox.launch import start_sandbox
from ct_pipeline.sandbox.server import serving
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.webhooks import WEBHOOK_PATH, create_webhook_app
from ct_pipeline_tests.pipeline.conftest import Pipeline
from ct_pipeline_tests.writeback.conftest import TOKEN, Person, delivery, profile

CONTACTS = 60
SEED = 5


@pytest.fixture
def pipeline(sqlite_warehouse: WarehouseResource) -> Iterator[Pipeline]:
    """Both emulators and an in-memory Dagster instance (runs on disk cost seconds each)."""
    sandbox = start_sandbox(contacts=CONTACTS, seed=SEED)
    try:
        yield Pipeline(
            sandbox=sandbox, warehouse=sqlite_warehouse, instance=dg.DagsterInstance.ephemeral()
        )
    finally:
        sandbox.stop()


def test_a_writeback_causes_no_forward_push(pipeline: Pipeline):
    defs = dg.Definitions(
        assets=[*ALL_ASSETS, *WRITEBACK_ASSETS],
        asset_checks=CHECKS,
        jobs=[*SYNC_JOBS, *WRITEBACK_JOBS],
        resources=pipeline.resources(),
    )
    assert pipeline.run("nightly_full_sync").success
    pushed = pipeline.warehouse.read_table("clevertap_pushed_profiles").iloc[0]
    person = Person(contact_id=pushed["contact_id"], identity=pushed["identity"], email=None)
    modified_before = _modified_time(pipeline, person.contact_id)
    uploads_before = pipeline.upload_requests()

    with serving(create_webhook_app(pipeline.warehouse, TOKEN)) as receiver:
        statuses = _post_events(receiver.url, person)
    written = defs.resolve_job_def("crm_writeback").execute_in_process(
        instance=pipeline.instance, raise_on_error=False
    )
    forward = pipeline.run("incremental_sync")

    assert statuses == [200, 200]
    assert written.success
    record = pipeline.zoho("GET", f"records/Contacts/{person.contact_id}")["record"]
    assert (record["App_Uninstalled"], record["Subscription_Status"]) == (True, "Cancelled")
    assert forward.success
    assert _modified_time(pipeline, person.contact_id) > modified_before
    assert pipeline.upload_requests() == uploads_before


def _post_events(url: str, person: Person) -> list[int]:
    """POST an uninstall and a cancellation for `person`; the receiver's status codes."""
    return [
        requests.post(
            f"{url}{WEBHOOK_PATH}",
            json=delivery(event, profile(person)),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        ).status_code
        for event in ("App Uninstalled", "Subscription Cancelled")
    ]


def _modified_time(pipeline: Pipeline, contact_id: str) -> pd.Timestamp:
    contacts = pipeline.warehouse.read_table("zoho_contacts", columns=["id", "Modified_Time"])
    return pd.Timestamp(contacts.set_index("id").loc[contact_id, "Modified_Time"])
