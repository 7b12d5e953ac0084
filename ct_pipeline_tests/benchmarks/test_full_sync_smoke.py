"""CI's smoke run of the full_sync benchmark at 10,000 contacts: the script works end to end
and the sync spends the fewest CleverTap requests its records need. No timing is asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTACTS = 10_000
BATCH_SIZE = 1_000  # clevertap.batch_size of the packaged sync configuration


@pytest.mark.benchmark_smoke
@pytest.mark.timeout(240)
def test_full_sync_at_ten_thousand_contacts_uses_the_minimal_request_count(tmp_path):
    output = tmp_path / "full_sync.json"
    subprocess.run(
        [
            sys.executable,
            "benchmarks/full_sync.py",
            "--contacts",
            str(CONTACTS),
            "--runs",
            "1",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        check=True,
        timeout=230,
    )
    run = json.loads(output.read_text())["runs"][0]

    assert run["success"], run["failed_steps"]
    assert run["checks_failed"] == []
    changed = run["metadata"]["clevertap_profile_batches"]["changed"]
    assert changed > CONTACTS // 2
    clevertap = run["clevertap"]
    # A first sync records deal stages without events, so profiles are all that is sent.
    assert clevertap["upload_requests"] == math.ceil(changed / BATCH_SIZE)
    assert clevertap["requests"] == clevertap["upload_requests"]
    assert clevertap["records_received"] == changed
    # Above nothing: every module of 10,000 contacts is read by pages of 200.
    assert run["zoho"]["calls"] <= sum(
        math.ceil(records / 200) + 3
        for records in (
            run["metadata"][table]["records read"]
            for table in ("zoho_contacts", "zoho_leads", "zoho_deals", "zoho_cases")
        )
    )
