"""A harness that runs the sync jobs against both emulators over HTTP, on a real warehouse."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests
import yaml

from ct_pipeline.assets import ALL_ASSETS
from ct_pipeline.checks import CHECKS
from ct_pipeline.clevertap import CleverTapResource
from ct_pipeline.config import EXAMPLE_CONFIG, SyncConfigResource
from ct_pipeline.jobs import SYNC_JOBS
from ct_pipeline.sandbox import credentials
from ct_pipeline.sandbox.launch import RunningSandbox, start_sandbox
from ct_pipeline.sandbox.synthetic import SyntheticCrm, generate_crm
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.zoho import ZohoCRMResource

CONTACTS = 300
SEED = 11


@dataclass
class Pipeline:
    """The emulators, the warehouse and the Dagster instance one test runs the sync on."""

    sandbox: RunningSandbox
    warehouse: WarehouseResource
    instance: dg.DagsterInstance
    config_path: str | None = None
    # Settings of the Zoho client beyond the harness's own (e.g. bulk_read_threshold).
    zoho_settings: dict[str, Any] = field(default_factory=dict)

    def resources(self, **clevertap_overrides: Any) -> dict[str, Any]:
        """Resources pointing at this test's emulators and warehouse."""
        return {
            "zoho": ZohoCRMResource(
                client_id=credentials.SANDBOX_ZOHO_CLIENT_ID,
                client_secret=credentials.SANDBOX_ZOHO_CLIENT_SECRET,
                refresh_token=credentials.SANDBOX_ZOHO_REFRESH_TOKEN,
                accounts_url=self.sandbox.zoho.url,
                api_domain=self.sandbox.zoho.url,
                retry_initial_wait=0.01,
                retry_max_wait=0.05,
                **self.zoho_settings,
            ),
            "clevertap": CleverTapResource(
                account_id=credentials.SANDBOX_CLEVERTAP_ACCOUNT_ID,
                passcode=credentials.SANDBOX_CLEVERTAP_PASSCODE,
                api_url=self.sandbox.clevertap.url,
                backoff_base_seconds=0.01,
                backoff_cap_seconds=0.05,
                **clevertap_overrides,
            ),
            "warehouse": self.warehouse,
            "sync_config": SyncConfigResource(path=self.config_path),
        }

    def run(
        self,
        job_name: str = "incremental_sync",
        tags: dict[str, str] | None = None,
        assets: list[dg.AssetsDefinition] | None = None,
        **overrides: Any,
    ) -> dg.ExecuteInProcessResult:
        """Run one sync job in process (on `assets`, by default the sync's); failures are
        returned, not raised."""
        defs = dg.Definitions(
            assets=assets or ALL_ASSETS,
            asset_checks=CHECKS,
            jobs=SYNC_JOBS,
            resources=self.resources(**overrides),
        )
        return defs.resolve_job_def(job_name).execute_in_process(
            instance=self.instance, tags=tags, raise_on_error=False
        )

    def zoho(self, method: str, endpoint: str, body: Any = None) -> Any:
        """Call the Zoho emulator's admin API."""
        response = requests.request(
            method, f"{self.sandbox.zoho.url}/__sandbox/{endpoint}", json=body, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def clevertap(self, method: str, endpoint: str, body: Any = None, **params: Any) -> Any:
        """Call the CleverTap emulator's admin API."""
        response = requests.request(
            method,
            f"{self.sandbox.clevertap.url}/__sandbox/{endpoint}",
            json=body,
            params=params,
            timeout=30,
        )
        response.raise_for_status()
        return response.json()

    def upload_requests(self) -> int:
        """Upload requests CleverTap has received so far."""
        return int(self.clevertap("GET", "stats")["requests"].get("POST /1/upload", 0))


def write_config(tmp_path: Path, **sections: dict[str, Any]) -> str:
    """The packaged example configuration with some sections' keys changed; returns its path."""
    text = resources.files("ct_pipeline").joinpath(EXAMPLE_CONFIG).read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    for section, values in sections.items():
        config[section] = {**(config.get(section) or {}), **values}
    path = tmp_path / "sync.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return str(path)


def move_deals(
    pipeline: Pipeline, stage: str, count: int, at: datetime, contacts: set[str] | None = None
) -> list[str]:
    """Move `count` deals of distinct Contacts (lowest ids first) to `stage` in Zoho, all
    modified at `at`; returns their ids. The Contacts are those pushed, or `contacts`."""
    deals = pipeline.warehouse.read_table("zoho_deals")
    if contacts is None:
        contacts = set(pipeline.warehouse.read_table("profile_attributes")["crm_contact_id"])
    candidates = deals[deals["Contact_Name_id"].isin(contacts) & (deals["Stage"] != stage)]
    chosen = candidates.sort_values("id").drop_duplicates("Contact_Name_id").head(count)
    pipeline.zoho(
        "POST",
        "records/Deals",
        [{"id": deal, "Stage": stage, "Modified_Time": at.isoformat()} for deal in chosen["id"]],
    )
    return chosen["id"].tolist()


@pytest.fixture(scope="session")
def synthetic_crm() -> SyntheticCrm:
    """The synthetic CRM every pipeline test starts from (generated once)."""
    return generate_crm(CONTACTS, seed=SEED)


@pytest.fixture
def pipeline(warehouse: WarehouseResource, synthetic_crm: SyntheticCrm) -> Iterator[Pipeline]:
    """Both emulators seeded with synthetic contacts, an empty warehouse, a fresh instance."""
    sandbox = start_sandbox(crm=copy.deepcopy(synthetic_crm))
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            yield Pipeline(sandbox=sandbox, warehouse=warehouse, instance=instance)
    finally:
        sandbox.stop()
