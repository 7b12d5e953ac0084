"""Profile lookups and external-trigger campaigns against the CleverTap emulator over HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from ct_pipeline.clevertap import CleverTapError, UploadItem, build_profile_record
from ct_pipeline.sandbox.clevertap_emulator import create_clevertap_app
from ct_pipeline.sandbox.server import serving
from ct_pipeline_tests.clevertap.conftest import (
    PROFILE_TS,
    SandboxAdmin,
    phone_of,
    profile_items,
    sandbox_client,
)

PROFILE = "/1/profile.json"
TRIGGER = "/1/send/externaltrigger.json"


def test_lookup_by_identity_finds_an_uploaded_profile(clevertap, sandbox: SandboxAdmin):
    clevertap.upload(profile_items(3))

    record = clevertap.lookup_profile(identity=phone_of(1))

    assert record is not None
    assert record["profileData"]["Name"] == "Customer 1"


def test_lookup_by_email_finds_the_profile(clevertap, sandbox: SandboxAdmin):
    email = "customer.7@example.com"
    clevertap.upload(
        [UploadItem("zoho-7", build_profile_record("C-7", {"Email": email}, PROFILE_TS))]
    )

    record = clevertap.lookup_profile(email=email)

    assert record is not None and record["identity"] == "C-7"


def test_lookup_by_object_id_finds_the_profile(clevertap, sandbox: SandboxAdmin):
    clevertap.upload(profile_items(3))
    (stored,) = sandbox.profiles(identity=phone_of(2))

    record = clevertap.lookup_profile(object_id=stored["objectId"])

    assert record is not None
    assert record["identity"] == phone_of(2)
    assert record["profileData"]["Name"] == "Customer 2"
    (request,) = sandbox.requests(PROFILE)
    assert request["query"] == {"objectId": stored["objectId"]}


def test_lookup_of_an_unknown_profile_is_none(clevertap, sandbox: SandboxAdmin):
    assert clevertap.lookup_profile(identity=phone_of(999)) is None


def test_lookup_not_found_as_http_404_is_also_none():
    with serving(create_clevertap_app(profile_not_found_status=404)) as server:
        client = sandbox_client(server.url)

        assert client.lookup_profile(object_id="-1a063854f83a4c6484285039ecff87cb") is None


def test_lookup_needs_exactly_one_identifier(clevertap):
    with pytest.raises(ValueError, match="exactly one"):
        clevertap.lookup_profile()
    with pytest.raises(ValueError, match="exactly one"):
        clevertap.lookup_profile(identity="a", email="a@example.com")


def test_lookup_with_bad_credentials_raises_without_the_identity(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, passcode="wrong-passcode")

    with pytest.raises(CleverTapError) as refused:
        client.lookup_profile(identity=phone_of(5))

    message = str(refused.value)
    assert "HTTP 401" in message
    assert phone_of(5) not in message and "wrong-passcode" not in message


def test_lookup_retries_a_429(clevertap, sandbox: SandboxAdmin):
    clevertap.upload(profile_items(1))
    sandbox.faults(others_429=2)

    assert clevertap.lookup_profile(identity=phone_of(0)) is not None
    assert clevertap.usage()[PROFILE] == 3


def test_parallel_lookups_stay_within_the_lookup_limit():
    with serving(create_clevertap_app(max_concurrent_other=2)) as server:
        admin = SandboxAdmin(server.url)
        client = sandbox_client(server.url, lookup_concurrency=2, max_retries=0)
        client.upload(profile_items(8))
        admin.faults(slow_seconds=0.1)

        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(lambda n: client.lookup_profile(identity=phone_of(n)), range(8)))

        stats = admin.stats()
        admin.close()
    assert all(record is not None for record in found)
    assert stats["max_in_flight"][PROFILE] == 2
    assert stats["refused_over_concurrency"][PROFILE] == 0


def test_trigger_campaign_is_queued_with_string_properties(clevertap, sandbox: SandboxAdmin):
    result = clevertap.trigger_campaign(
        1750575722, [phone_of(1), phone_of(2)], {"stage_name": "Closed Won", "amount": 1500.0}
    )

    assert result.status == "accepted" and result.recipients == 2
    (trigger,) = sandbox.triggers()
    assert str(trigger["campaign_id"]) == "1750575722"
    assert trigger["to"] == {"identity": [phone_of(1), phone_of(2)]}
    assert trigger["ExternalTrigger"] == {"stage_name": "Closed Won", "amount": "1500.0"}


def test_trigger_is_not_retried_after_a_500(clevertap, sandbox: SandboxAdmin):
    sandbox.faults(others_5xx=1, status_5xx=500)

    result = clevertap.trigger_campaign("42", [phone_of(1)])

    assert result.status == "failed" and result.code == 500
    # A 500 may hide a campaign CleverTap queued: the caller must not resend it blindly.
    assert result.maybe_delivered
    assert clevertap.usage()[TRIGGER] == 1
    assert sandbox.triggers() == []


def test_many_triggers_go_out_in_parallel_within_the_limit_in_the_order_given():
    with serving(create_clevertap_app(max_concurrent_other=2)) as server:
        admin = SandboxAdmin(server.url)
        client = sandbox_client(server.url, lookup_concurrency=2, max_retries=0)
        admin.faults(slow_seconds=0.1)

        results = client.trigger_campaigns(
            [("42", [phone_of(n)], {"deal_id": str(n)}) for n in range(6)]
        )

        stats = admin.stats()
        triggers = admin.triggers()
        admin.close()
    assert [result.status for result in results] == ["accepted"] * 6
    assert [result.body["to"]["identity"] for result in results] == [
        [phone_of(n)] for n in range(6)
    ]
    assert len(triggers) == 6
    assert stats["max_in_flight"][TRIGGER] == 2
    assert stats["refused_over_concurrency"][TRIGGER] == 0


def test_trigger_is_retried_after_a_429(clevertap, sandbox: SandboxAdmin):
    sandbox.faults(others_429=1)

    result = clevertap.trigger_campaign("42", [phone_of(1)])

    assert result.status == "accepted" and result.requests == 2
    assert len(sandbox.triggers()) == 1


def test_trigger_in_dry_run_sends_nothing(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, dry_run=True)

    result = client.trigger_campaign("42", [phone_of(1)], {"stage_name": "Won"})

    assert result.status == "dry_run"
    assert result.body["ExternalTrigger"] == {"stage_name": "Won"}
    assert sandbox.requests() == []


def test_trigger_needs_identities_and_scalar_properties(clevertap):
    with pytest.raises(ValueError, match="identities"):
        clevertap.trigger_campaign("42", [])
    with pytest.raises(ValueError, match="single value"):
        clevertap.trigger_campaign("42", [phone_of(1)], {"items": ["a", "b"]})


def test_usage_counts_requests_by_endpoint(clevertap, sandbox: SandboxAdmin):
    sandbox.faults(uploads_429=1)
    clevertap.upload(profile_items(3))
    clevertap.lookup_profile(identity=phone_of(0))
    clevertap.trigger_campaign("42", [phone_of(0)])

    assert clevertap.usage() == {"/1/upload": 2, PROFILE: 1, TRIGGER: 1}
