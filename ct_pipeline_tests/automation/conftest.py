"""Fixtures for the schedule and sensor tests: the Zoho emulator over HTTP, cursors, runs."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg
import pytest
import requests
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.test_utils import create_run_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from ct_pipeline.assets.common import SYNC_TAG
from ct_pipeline.sandbox import credentials
from ct_pipeline.sandbox.launch import RunningSandbox, start_sandbox
from ct_pipeline.sensors import sync_failure_sensor
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.state import write_cursor
from ct_pipeline.zoho import ZohoCRMResource

CONTACTS = 40
SEED = 5
MODULES = ["Contacts", "Leads", "Deals", "Cases"]


@dataclass
class ZohoSandbox:
    """The Zoho emulator one test talks to, with its admin API."""

    sandbox: RunningSandbox

    @property
    def url(self) -> str:
        """The emulator's base URL."""
        return self.sandbox.zoho.url

    def resource(self) -> ZohoCRMResource:
        """A Zoho resource pointed at the emulator, with quick retries."""
        return ZohoCRMResource(
            client_id=credentials.SANDBOX_ZOHO_CLIENT_ID,
            client_secret=credentials.SANDBOX_ZOHO_CLIENT_SECRET,
            refresh_token=credentials.SANDBOX_ZOHO_REFRESH_TOKEN,
            accounts_url=self.url,
            api_domain=self.url,
            retry_initial_wait=0.01,
            retry_max_wait=0.05,
        )

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call the emulator's admin API under /__sandbox/."""
        response = requests.request(method, f"{self.url}/__sandbox/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def first_id(self, module: str) -> str:
        """The id of one record of `module`."""
        return str(self.resource().read_records(module, ["Modified_Time"]).records["id"].iloc[0])

    def calls(self, endpoint: str) -> int:
        """Calls the emulator answered on `endpoint` (e.g. 'GET /crm/v8/Contacts')."""
        return int(self.admin("GET", "stats")["calls"].get(endpoint, 0))

    def api_calls(self) -> int:
        """CRM API calls answered so far (token grants excluded)."""
        calls = self.admin("GET", "stats")["calls"]
        return sum(count for endpoint, count in calls.items() if "/crm/" in endpoint)


@pytest.fixture
def zoho_sandbox() -> Iterator[ZohoSandbox]:
    """The Zoho emulator alone, seeded with a few synthetic contacts."""
    sandbox = start_sandbox(clevertap_port=None, contacts=CONTACTS, seed=SEED)
    try:
        yield ZohoSandbox(sandbox)
    finally:
        sandbox.stop()


@pytest.fixture
def instance() -> dg.DagsterInstance:
    """A fresh in-memory Dagster instance (runs, tags and statuses, no files)."""
    return dg.DagsterInstance.ephemeral()


def unfinished_sync_run(
    instance: dg.DagsterInstance, status: dg.DagsterRunStatus, job_name: str = "nightly_full_sync"
) -> dg.DagsterRun:
    """A sync run stored as queued or in progress, as the daemon's run queue would hold it."""
    return unfinished_run(instance, status, job_name, tags={SYNC_TAG: "true"})


def unfinished_run(
    instance: dg.DagsterInstance,
    status: dg.DagsterRunStatus,
    job_name: str,
    tags: dict[str, str] | None = None,
) -> dg.DagsterRun:
    """A run of `job_name` stored as queued or in progress (nothing ever launches it)."""
    # A queued run must say where its code lives; nothing here ever launches it.
    origin = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=InProcessCodeLocationOrigin(
                LoadableTargetOrigin(python_file=__file__)
            ),
            repository_name="__repository__",
        ),
        job_name=job_name,
    )
    return create_run_for_test(
        instance,
        job_name=job_name,
        status=status,
        tags=tags or {},
        remote_job_origin=origin,
    )


def store_cursors(
    warehouse: WarehouseResource,
    modified: datetime,
    deleted: datetime | None = None,
    modules: list[str] = MODULES,
) -> None:
    """Store the same cursors for every module, as a sync that read up to them would."""
    with warehouse.transaction() as tx:
        for module in modules:
            write_cursor(tx, module, modified)
            write_cursor(tx, module, deleted or modified, kind="deleted")


@dg.op
def sync_step() -> None:
    """Stands in for a sync run's work."""


@dg.op
def failing_sync_step() -> None:
    """Fails the way a sync step can, with personal data in the error."""
    raise RuntimeError("upload refused for +919876543210 and priya.sharma@example.com")


def run_sync_like_job(
    instance: dg.DagsterInstance, tags: dict[str, str] | None = None, fail: bool = False
) -> dg.ExecuteInProcessResult:
    """Run a one-step job tagged as a sync run, so the instance records a finished sync."""

    @dg.job(name="incremental_sync", tags={SYNC_TAG: "true", **(tags or {})})
    def stand_in() -> None:
        if fail:
            failing_sync_step()
        else:
            sync_step()

    return stand_in.execute_in_process(instance=instance, raise_on_error=False)


def report_failure(instance: dg.DagsterInstance, warehouse: WarehouseResource, run_id: str) -> None:
    """Evaluate the run-failure sensor on a failed run, as the daemon does."""
    run = instance.get_run_by_id(run_id)
    [failure] = [
        record.get_dagster_event()
        for record in instance.all_logs(run_id)
        if record.is_dagster_event and record.get_dagster_event().is_job_failure
    ]
    context = dg.build_run_status_sensor_context(
        sensor_name=sync_failure_sensor.name,
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
        resources={"warehouse": warehouse},
    )
    sync_failure_sensor(context.for_run_failure())
