"""Region hosts over HTTP: the client addresses each region's real host name, and an emulator
bound to one region refuses the others, as CleverTap does.

The real host names reach the emulator through a requests transport adapter mounted on the
resource (`CleverTapResource.mount`), so the client's URL building is what is under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from ct_pipeline.clevertap import REGIONS, CleverTapError, CleverTapResource
from ct_pipeline.sandbox.clevertap_emulator import create_clevertap_app
from ct_pipeline.sandbox.credentials import (
    SANDBOX_CLEVERTAP_ACCOUNT_ID,
    SANDBOX_CLEVERTAP_PASSCODE,
)
from ct_pipeline.sandbox.server import serving
from ct_pipeline_tests.clevertap.conftest import (
    TEST_SETTINGS,
    RouteToEmulator,
    SandboxAdmin,
    phone_of,
    profile_items,
)

REGION_HOST_NAMES = {
    "in1": "in1.api.clevertap.com",
    "sg1": "sg1.api.clevertap.com",
    "us1": "us1.api.clevertap.com",
    "aps3": "aps3.api.clevertap.com",
    "mec1": "mec1.api.clevertap.com",
    "eu1": "api.clevertap.com",
    "sk1": "sk1.api.clevertap.com",
}


def region_client(region: str, emulator_url: str, **settings: Any) -> CleverTapResource:
    """A client for `region` (no api_url), its https requests delivered to the emulator."""
    client = CleverTapResource(
        account_id=SANDBOX_CLEVERTAP_ACCOUNT_ID,
        passcode=SANDBOX_CLEVERTAP_PASSCODE,
        region=region,
        **{**TEST_SETTINGS, **settings},
    )
    client.mount("https://", RouteToEmulator(emulator_url))
    return client


def test_every_region_has_a_host_name_here():
    assert set(REGION_HOST_NAMES) == set(REGIONS)


@pytest.mark.parametrize("region", list(REGION_HOST_NAMES))
def test_the_client_reaches_an_account_through_its_region_host(region: str):
    with serving(create_clevertap_app(region=region)) as server:
        admin = SandboxAdmin(server.url)
        client = region_client(region, server.url)

        report = client.upload(profile_items(3))
        found = client.lookup_profile(identity=phone_of(1))

        hosts = {request["headers"]["host"] for request in admin.requests()}
        admin.close()
        client.close()
    assert report.all_accepted
    assert found is not None and found["profileData"]["Name"] == "Customer 1"
    assert hosts == {REGION_HOST_NAMES[region]}


@pytest.fixture(scope="module")
def india_account():
    with serving(create_clevertap_app(region="in1")) as server:
        yield server


def test_a_wrong_region_fails_the_upload_with_a_fatal_error_naming_the_region(india_account):
    # One request in flight, so that the first refusal stops every later batch.
    client = region_client("sg1", india_account.url, max_concurrency=1)

    report = client.upload(profile_items(2500))

    assert report.requests == 1
    assert report.counts["failed"] == 2500
    assert report.fatal_error is not None
    assert "HTTP 401" in report.fatal_error
    assert "CLEVERTAP_REGION (now 'sg1', https://sg1.api.clevertap.com)" in report.fatal_error
    assert SANDBOX_CLEVERTAP_PASSCODE not in report.fatal_error


def test_a_wrong_region_fails_a_lookup_naming_the_region(india_account):
    client = region_client("eu1", india_account.url)

    with pytest.raises(CleverTapError) as refused:
        client.lookup_profile(email="customer@example.com")

    message = str(refused.value)
    assert "HTTP 401" in message and "CLEVERTAP_REGION (now 'eu1'" in message
    assert "customer@example.com" not in message


def test_a_wrong_region_fails_a_campaign_trigger_naming_the_region(india_account):
    client = region_client("us1", india_account.url)

    result = client.trigger_campaign("42", [phone_of(1)])

    assert result.status == "failed" and result.code == 401
    assert "CLEVERTAP_REGION (now 'us1'" in result.error
