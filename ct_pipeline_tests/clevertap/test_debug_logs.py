"""No phone number, email or passcode reaches any logger, even at DEBUG, during CleverTap calls.

Lookups put the identity or email in the query string, and urllib3 logs request URLs at DEBUG
(and on retries); the transport redacts query values from urllib3's records.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest

from ct_pipeline.clevertap import CleverTapError, UploadItem, build_profile_record
from ct_pipeline_tests.clevertap.conftest import (
    PROFILE_TS,
    SandboxAdmin,
    phone_of,
    sandbox_client,
)

EMAIL = "asha.rao@example.com"
PHONE = phone_of(7)
# Each as written in a log line, a URL or a JSON body: whole, percent-encoded, or in part.
PERSONAL = (EMAIL, quote(EMAIL, safe=""), EMAIL.split("@")[0], PHONE.removeprefix("+91"))


@pytest.fixture
def every_log_record(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of every logger, DEBUG and up."""
    caplog.set_level(logging.DEBUG)
    return caplog


def personal_data_in(caplog: pytest.LogCaptureFixture, passcode: str) -> list[str]:
    """The log lines (with their arguments and any traceback) that carry personal data."""
    found = []
    for record in caplog.records:
        text = record.getMessage() + (
            caplog.handler.formatter.formatException(record.exc_info) if record.exc_info else ""
        )
        if any(secret in text for secret in (*PERSONAL, passcode)):
            found.append(f"{record.name}: {text}")
    return found


def test_uploads_and_lookups_log_no_personal_data_at_debug(
    sandbox: SandboxAdmin, every_log_record: pytest.LogCaptureFixture
):
    client = sandbox_client(sandbox.url)
    record = build_profile_record(PHONE, {"Phone": PHONE, "Email": EMAIL}, PROFILE_TS)
    sandbox.faults(uploads_429=1, others_429=2)

    report = client.upload([UploadItem("zoho-7", record)])
    by_email = client.lookup_profile(email=EMAIL)
    by_phone = client.lookup_profile(identity=PHONE)
    trigger = client.trigger_campaign("42", [PHONE], {"stage_name": "Won"})

    assert report.all_accepted and by_email is not None and by_phone is not None
    assert trigger.status == "accepted"
    # The urllib3 request lines were logged, with the query values hidden.
    lines = [r.getMessage() for r in every_log_record.records if r.name.startswith("urllib3")]
    assert any("/1/profile.json?email=" in line for line in lines)
    assert personal_data_in(every_log_record, client.passcode) == []


def test_a_lookup_that_cannot_connect_logs_no_personal_data(
    every_log_record: pytest.LogCaptureFixture,
):
    client = sandbox_client("http://127.0.0.1:9", max_retries=1)

    with pytest.raises(CleverTapError):
        client.lookup_profile(email=EMAIL)
    with pytest.raises(CleverTapError):
        client.lookup_profile(identity=PHONE)

    assert "failed with ConnectionError" in every_log_record.text
    assert personal_data_in(every_log_record, client.passcode) == []
