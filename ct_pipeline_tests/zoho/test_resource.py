"""The resource as Dagster and the pipeline use it: from the environment, inside a run."""

from importlib import resources

import dagster as dg
import pytest

from ct_pipeline.config import ZohoSettings, parse_sync_config
from ct_pipeline.sandbox import credentials
from ct_pipeline.zoho import ZohoCRMResource
from ct_pipeline.zoho.resource import DEFAULT_BULK_READ_THRESHOLD

SANDBOX_SECRETS = (
    credentials.SANDBOX_ZOHO_CLIENT_SECRET,
    credentials.SANDBOX_ZOHO_REFRESH_TOKEN,
)


@pytest.fixture
def sandbox_environment(sandbox, monkeypatch):
    monkeypatch.setenv("ZOHO_CLIENT_ID", credentials.SANDBOX_ZOHO_CLIENT_ID)
    monkeypatch.setenv("ZOHO_CLIENT_SECRET", credentials.SANDBOX_ZOHO_CLIENT_SECRET)
    monkeypatch.setenv("ZOHO_REFRESH_TOKEN", credentials.SANDBOX_ZOHO_REFRESH_TOKEN)
    monkeypatch.setenv("ZOHO_ACCOUNTS_URL", sandbox.url)
    monkeypatch.setenv("ZOHO_API_DOMAIN", sandbox.url)
    monkeypatch.delenv("ZOHO_DATA_CENTER", raising=False)
    return sandbox


def test_from_env_names_every_missing_variable(monkeypatch):
    for name in ("ZOHO_CLIENT_ID", "ZOHO_CLIENT_SECRET", "ZOHO_REFRESH_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(ValueError, match="ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET, ZOHO_REFRESH_TOKEN"):
        ZohoCRMResource.from_env()


def test_from_env_binds_secrets_by_variable_name_not_value(sandbox_environment):
    zoho = ZohoCRMResource.from_env()

    assert isinstance(zoho.client_secret, dg.EnvVar)
    assert zoho.client_secret.env_var_name == "ZOHO_CLIENT_SECRET"
    assert not any(secret in repr(zoho) for secret in SANDBOX_SECRETS)


def test_from_env_reads_the_data_centre(sandbox_environment, monkeypatch):
    monkeypatch.setenv("ZOHO_DATA_CENTER", "ca")

    assert ZohoCRMResource.from_env().data_center == "ca"


def test_from_env_resource_reads_outside_a_run(sandbox_environment, crm):
    zoho = ZohoCRMResource.from_env(retry_initial_wait=0.01)

    read = zoho.read_records("Contacts", ["Last_Name"])

    assert len(read.records) == len(crm.contacts)


def test_resource_works_inside_a_dagster_run(sandbox_environment, crm):
    @dg.asset
    def zoho_contacts(zoho: ZohoCRMResource) -> dg.MaterializeResult:
        read = zoho.read_records("Contacts", ["Last_Name", "Owner"])
        return dg.MaterializeResult(
            metadata={"rows": len(read.records), "credits": zoho.usage()["total_credits"]}
        )

    result = dg.materialize([zoho_contacts], resources={"zoho": ZohoCRMResource.from_env()})

    materialization = result.asset_materializations_for_node("zoho_contacts")[0]
    assert materialization.metadata["rows"].value == len(crm.contacts)
    assert materialization.metadata["credits"].value > 0


def test_printing_a_resource_shows_no_credentials():
    zoho = ZohoCRMResource(client_id="1000.CLIENT", client_secret="s3cret", refresh_token="1000.rt")

    printed = f"{zoho!r} {zoho!s}"

    assert not any(value in printed for value in ("1000.CLIENT", "s3cret", "1000.rt"))
    assert "data_center='in'" in printed


def test_usage_is_empty_before_any_call():
    zoho = ZohoCRMResource(client_id="i", client_secret="s", refresh_token="t")

    assert zoho.usage()["total_calls"] == 0 and zoho.usage()["total_credits"] == 0


def test_the_bulk_read_threshold_has_one_default_everywhere():
    resource = ZohoCRMResource(client_id="id", client_secret="secret", refresh_token="token")
    packaged = parse_sync_config(
        resources.files("ct_pipeline").joinpath("sync.example.yaml").read_text()
    )

    assert resource.bulk_read_threshold == DEFAULT_BULK_READ_THRESHOLD
    assert ZohoSettings().bulk_read_threshold == DEFAULT_BULK_READ_THRESHOLD
    assert packaged.zoho.bulk_read_threshold == DEFAULT_BULK_READ_THRESHOLD
