"""How the CleverTap resource is configured: region hosts, limits, and the environment."""

from __future__ import annotations

import dagster as dg
import pytest

from ct_pipeline.clevertap import REGION_HOSTS, CleverTapResource, base_url_for

CREDENTIALS = {"account_id": "ACC-1", "passcode": "secret-passcode"}
CLEVERTAP_ENV = (
    "CLEVERTAP_ACCOUNT_ID",
    "CLEVERTAP_PASSCODE",
    "CLEVERTAP_REGION",
    "CLEVERTAP_API_URL",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment with none of the CleverTap variables set."""
    for name in CLEVERTAP_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("in1", "https://in1.api.clevertap.com"),
        ("sg1", "https://sg1.api.clevertap.com"),
        ("us1", "https://us1.api.clevertap.com"),
        ("aps3", "https://aps3.api.clevertap.com"),
        ("mec1", "https://mec1.api.clevertap.com"),
        ("eu1", "https://api.clevertap.com"),
        ("sk1", "https://sk1.api.clevertap.com"),
    ],
)
def test_each_region_maps_to_its_documented_host(region: str, host: str):
    assert CleverTapResource(**CREDENTIALS, region=region).base_url == host


def test_default_region_is_india():
    assert CleverTapResource(**CREDENTIALS).base_url == REGION_HOSTS["in1"]


def test_api_url_overrides_the_region_host():
    resource = CleverTapResource(**CREDENTIALS, region="us1", api_url="http://127.0.0.1:9999/")

    assert resource.base_url == "http://127.0.0.1:9999"


def test_unknown_region_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError) as refused:
        CleverTapResource(**CREDENTIALS, region="in")

    assert (
        "CLEVERTAP_REGION 'in' is not a region; use one of in1, sg1, us1, aps3, mec1, eu1, sk1"
        in (str(refused.value))
    )
    with pytest.raises(ValueError, match="not a region"):
        base_url_for("sk")


def test_batch_size_above_1000_is_refused():
    assert CleverTapResource(**CREDENTIALS, batch_size=1000).batch_size == 1000
    with pytest.raises(ValueError, match="batch_size"):
        CleverTapResource(**CREDENTIALS, batch_size=1001)


def test_concurrency_above_clevertap_limits_is_refused():
    with pytest.raises(ValueError, match="max_concurrency"):
        CleverTapResource(**CREDENTIALS, max_concurrency=16)
    with pytest.raises(ValueError, match="lookup_concurrency"):
        CleverTapResource(**CREDENTIALS, lookup_concurrency=4)


def test_defaults_stay_below_clevertap_limits():
    resource = CleverTapResource(**CREDENTIALS)

    assert resource.batch_size == 1000
    assert resource.max_concurrency < 15
    assert resource.lookup_concurrency < 3
    assert resource.dry_run is False


def test_passcode_never_appears_in_the_resource_repr():
    resource = CleverTapResource(**CREDENTIALS)

    assert "secret-passcode" not in repr(resource)
    assert "secret-passcode" not in str(resource)


def test_from_env_reads_the_four_variables(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("CLEVERTAP_ACCOUNT_ID", "ACC-9")
    clean_env.setenv("CLEVERTAP_PASSCODE", "pc")
    clean_env.setenv("CLEVERTAP_REGION", "sg1")
    clean_env.setenv("CLEVERTAP_API_URL", "http://127.0.0.1:8123")

    resource = CleverTapResource.from_env(batch_size=500)

    assert (resource.account_id, resource.passcode, resource.region) == ("ACC-9", "pc", "sg1")
    assert resource.base_url == "http://127.0.0.1:8123"
    assert resource.batch_size == 500


def test_from_env_defaults_to_india_without_an_override(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("CLEVERTAP_ACCOUNT_ID", "ACC-9")
    clean_env.setenv("CLEVERTAP_PASSCODE", "pc")

    assert CleverTapResource.from_env().base_url == "https://in1.api.clevertap.com"


def test_from_env_names_the_missing_variables(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("CLEVERTAP_ACCOUNT_ID", "ACC-9")

    with pytest.raises(ValueError, match="CLEVERTAP_PASSCODE not set"):
        CleverTapResource.from_env()


def test_from_env_refuses_an_unknown_region(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("CLEVERTAP_ACCOUNT_ID", "ACC-9")
    clean_env.setenv("CLEVERTAP_PASSCODE", "pc")
    clean_env.setenv("CLEVERTAP_REGION", "india")

    with pytest.raises(ValueError, match="CLEVERTAP_REGION 'india' is not a region"):
        CleverTapResource.from_env()


def test_region_from_an_env_var_is_checked_when_dagster_resolves_it(
    clean_env: pytest.MonkeyPatch,
):
    @dg.asset
    def clevertap_host(clevertap: CleverTapResource) -> str:
        return clevertap.base_url

    resource = CleverTapResource(**CREDENTIALS, region=dg.EnvVar("CLEVERTAP_REGION"))

    clean_env.setenv("CLEVERTAP_REGION", "us1")
    result = dg.materialize([clevertap_host], resources={"clevertap": resource})
    assert result.output_for_node("clevertap_host") == "https://us1.api.clevertap.com"

    clean_env.setenv("CLEVERTAP_REGION", "in")
    result = dg.materialize(
        [clevertap_host], resources={"clevertap": resource}, raise_on_error=False
    )
    assert not result.success
