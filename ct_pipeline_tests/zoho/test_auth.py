"""OAuth against the emulator: token caching, expiry mid-read, bad credentials, api_domain."""

import logging
import stat
import subprocess
import sys
import threading
import time

import pytest

from ct_pipeline.sandbox import credentials
from ct_pipeline.zoho import ZohoAuthError
from ct_pipeline_tests.zoho.conftest import CONTACT_FIELDS


def test_access_token_is_cached_between_calls(sandbox):
    zoho = sandbox.client()

    zoho.read_records("Contacts", ["Last_Name"])
    zoho.read_records("Deals", ["Deal_Name"])

    assert sandbox.stats()["token_grants"] == 1


def test_new_resource_instances_reuse_the_cached_token(sandbox):
    sandbox.client().has_changes("Contacts", sandbox_start())
    sandbox.client().has_changes("Contacts", sandbox_start())

    assert sandbox.stats()["token_grants"] == 1


def test_threads_starting_together_share_one_token_refresh(sandbox):
    zoho = sandbox.client()
    start = threading.Barrier(8)

    def probe():
        start.wait()
        zoho.has_changes("Contacts", sandbox_start())

    threads = [threading.Thread(target=probe) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sandbox.stats()["token_grants"] == 1
    assert zoho.usage()["calls"]["records"] == 8


def test_accounts_throttle_is_retried_then_explained(start_sandbox):
    sandbox = start_sandbox(token_grants_per_ten_minutes=1)
    sandbox.client().has_changes("Contacts", sandbox_start())
    sandbox.faults(expire_access_tokens=True)
    zoho = sandbox.client(max_retries=2)

    with pytest.raises(ZohoAuthError, match="10 per 10 minutes"):
        zoho.has_changes("Contacts", sandbox_start())

    assert zoho.usage()["calls"]["token"] == 3


def test_token_expiring_mid_read_is_refreshed_once_and_the_read_completes(start_sandbox, crm):
    sandbox = start_sandbox(response_delay_seconds=0.03)
    zoho = sandbox.client()
    done = threading.Event()

    def expire_after_a_few_pages():
        while not done.is_set():
            if sandbox.stats()["calls"].get("GET /crm/v8/Contacts", 0) >= 4:
                sandbox.faults(expire_access_tokens=True)
                return
            time.sleep(0.005)

    expirer = threading.Thread(target=expire_after_a_few_pages)
    expirer.start()
    try:
        read = zoho.read_records("Contacts", CONTACT_FIELDS)
    finally:
        done.set()
        expirer.join()

    stats = sandbox.stats()
    assert read.records["id"].nunique() == len(crm.contacts)
    assert stats["statuses"].get("401") == 1
    assert stats["token_grants"] == 2


def test_token_expiring_between_runs_is_refreshed(sandbox):
    zoho = sandbox.client()
    zoho.read_records("Contacts", ["Last_Name"])
    sandbox.faults(expire_access_tokens=True)

    records = zoho.read_records("Contacts", ["Last_Name"]).records

    assert len(records) > 0
    assert sandbox.stats()["token_grants"] == 2


def test_bad_refresh_token_names_the_setting_and_hides_secrets(sandbox, caplog):
    bad_token = "1000.not-the-right-refresh-token"
    zoho = sandbox.client(refresh_token=bad_token)

    with caplog.at_level(logging.DEBUG), pytest.raises(ZohoAuthError) as raised:
        zoho.read_records("Contacts", ["Last_Name"])

    message = str(raised.value)
    assert "ZOHO_REFRESH_TOKEN" in message and "invalid_code" in message
    for secret in (bad_token, credentials.SANDBOX_ZOHO_CLIENT_SECRET):
        assert secret not in message
        assert secret not in caplog.text


def test_bad_client_secret_points_at_the_client_settings(sandbox):
    zoho = sandbox.client(client_secret="wrong-secret")

    with pytest.raises(ZohoAuthError, match="ZOHO_CLIENT_ID and ZOHO_CLIENT_SECRET") as raised:
        zoho.has_changes("Contacts", sandbox_start())

    assert "wrong-secret" not in str(raised.value)


def test_api_domain_comes_from_the_token_response(sandbox):
    # No api_domain override: the default for "in" (www.zohoapis.in) must not be called.
    zoho = sandbox.client(api_domain=None, data_center="in")

    records = zoho.read_records("Contacts", ["Last_Name"]).records

    assert len(records) > 0


def test_no_token_or_secret_reaches_the_logs(sandbox, caplog):
    zoho = sandbox.client()
    sandbox.faults(too_many_requests=2, expire_access_tokens=True)

    with caplog.at_level(logging.DEBUG):
        zoho.read_records("Contacts", ["Last_Name", "Email", "Mobile"])

    assert "Zoho-oauthtoken" not in caplog.text
    assert credentials.SANDBOX_ZOHO_REFRESH_TOKEN not in caplog.text
    assert credentials.SANDBOX_ZOHO_CLIENT_SECRET not in caplog.text
    assert "1000." not in caplog.text


def sandbox_start():
    """A cursor before every synthetic record."""
    from datetime import UTC, datetime

    return datetime(2000, 1, 1, tzinfo=UTC)


# Run in a child process: one Zoho call with a resource that shares tokens through a folder.
_CHILD_CALL = """
import sys
from datetime import UTC, datetime
from ct_pipeline.sandbox import credentials
from ct_pipeline.zoho import ZohoCRMResource
zoho = ZohoCRMResource(
    client_id=credentials.SANDBOX_ZOHO_CLIENT_ID,
    client_secret=credentials.SANDBOX_ZOHO_CLIENT_SECRET,
    refresh_token=credentials.SANDBOX_ZOHO_REFRESH_TOKEN,
    accounts_url=sys.argv[1],
    api_domain=sys.argv[1],
    token_cache_dir=sys.argv[2],
    max_retries=0,
)
zoho.has_changes("Contacts", datetime(2020, 1, 1, tzinfo=UTC))
print(zoho.usage()["calls"].get("token", 0))
"""


def call_in_processes(sandbox, folder, count: int) -> list[int]:
    """Start `count` processes at once, each making one call; the token refreshes each made."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD_CALL, sandbox.url, str(folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    refreshes = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
        refreshes.append(int(out.strip()))
    return refreshes


def test_processes_sharing_a_token_folder_refresh_once(start_sandbox, tmp_path):
    # Zoho would refuse the second grant in the window: every process must use the first.
    sandbox = start_sandbox(token_grants_per_ten_minutes=1)
    folder = tmp_path / "tokens"

    refreshes = call_in_processes(sandbox, folder, 4)

    assert sandbox.stats()["token_grants"] == 1
    assert sorted(refreshes) == [0, 0, 0, 1]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    stored = list(folder.glob("*.json"))
    assert len(stored) == 1 and stat.S_IMODE(stored[0].stat().st_mode) == 0o600
    assert credentials.SANDBOX_ZOHO_REFRESH_TOKEN not in stored[0].name


def test_a_shared_token_the_api_refuses_is_replaced_once(start_sandbox, tmp_path):
    sandbox = start_sandbox()
    folder = tmp_path / "tokens"
    call_in_processes(sandbox, folder, 1)
    sandbox.faults(expire_access_tokens=True)

    first, second = call_in_processes(sandbox, folder, 1) + call_in_processes(sandbox, folder, 1)

    assert (first, second) == (1, 0)
    assert sandbox.stats()["token_grants"] == 2
