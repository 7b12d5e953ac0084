"""The `ct-pipeline` command: help, configuration checks, the operator's tables, one-line errors."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import requests
from click.testing import CliRunner

from ct_pipeline.cli import main
from ct_pipeline.sandbox.server import free_port
from ct_pipeline.warehouse import WarehouseResource


def test_help_lists_the_commands():
    result = CliRunner().invoke(main, ["--help"])

    assert result.exit_code == 0
    for command in ("sandbox", "config"):
        assert command in result.output


def test_config_check_accepts_the_packaged_example():
    result = CliRunner().invoke(main, ["config", "check"], env={"CT_SYNC_CONFIG": ""})

    assert result.exit_code == 0
    assert "valid" in result.output


def test_config_check_reports_a_bad_file_in_one_line_with_a_failing_status(tmp_path):
    path = tmp_path / "sync.yaml"
    path.write_text("clevertap: {batch_size: 5000}\n")

    result = CliRunner().invoke(main, ["config", "check", str(path)])

    assert result.exit_code != 0
    assert "clevertap.batch_size" in result.output
    assert "Traceback" not in result.output


def test_sandbox_serves_both_emulators_and_prints_how_to_reach_them():
    zoho_port, clevertap_port = free_port(), free_port()
    command = [str(Path(sys.executable).parent / "ct-pipeline"), "sandbox"]
    process = subprocess.Popen(
        [*command, "--zoho-port", str(zoho_port), "--clevertap-port", str(clevertap_port)]
        + ["--contacts", "50", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (process.stdout.readline().strip() for _ in range(8))
        )
        token = requests.post(
            f"{exports['ZOHO_ACCOUNTS_URL']}/oauth/v2/token",
            params={
                "grant_type": "refresh_token",
                "client_id": exports["ZOHO_CLIENT_ID"],
                "client_secret": exports["ZOHO_CLIENT_SECRET"],
                "refresh_token": exports["ZOHO_REFRESH_TOKEN"],
            },
            timeout=10,
        ).json()
        profiles = requests.get(f"{exports['CLEVERTAP_API_URL']}/__sandbox/profiles", timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    assert exports["ZOHO_ACCOUNTS_URL"] == f"http://127.0.0.1:{zoho_port}"
    assert exports["CLEVERTAP_API_URL"] == f"http://127.0.0.1:{clevertap_port}"
    assert "access_token" in token
    assert profiles.json()["count"] == 0
    assert process.returncode == 0


def test_every_command_says_what_it_does_and_which_variables_it_reads():
    expected = {
        ("sandbox",): "environment variable",
        ("demo",): "DAGSTER_HOME",
        ("dev",): "CT_WAREHOUSE_URL",
        ("webhook-server",): "CT_WEBHOOK_TOKEN",
        ("config", "check"): "CT_SYNC_CONFIG",
        ("review-queue",): "CT_WAREHOUSE_URL",
        ("rejections",): "CT_WAREHOUSE_URL",
        ("outbox", "list"): "CT_WAREHOUSE_URL",
        ("outbox", "release"): "CT_WAREHOUSE_URL",
    }
    for command, variable in expected.items():
        result = CliRunner().invoke(main, [*command, "--help"])

        assert result.exit_code == 0, command
        assert variable in result.output, command


def test_the_data_generating_commands_share_the_contacts_and_seed_options():
    for command, contacts in (("sandbox", 2000), ("demo", 3000), ("dev", 3000)):
        result = CliRunner().invoke(main, [command, "--help"])
        text = " ".join(result.output.split())

        assert "--contacts INTEGER RANGE Synthetic Contacts to generate" in text, command
        assert f"[default: {contacts};" in text, command
        assert "--seed INTEGER Seed of the synthetic data" in text, command


def test_demo_refuses_a_sandbox_too_small_to_show_anything():
    result = CliRunner().invoke(main, ["demo", "--contacts", "5"])

    assert result.exit_code == 2
    assert "--contacts" in result.output


@pytest.fixture
def operator_warehouse(tmp_path) -> str:
    """A warehouse holding a review queue and rejections about records with real-looking data."""
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    warehouse = WarehouseResource(url=url)
    warehouse.replace_table(
        "identity_review_queue",
        pd.DataFrame(
            {
                "zoho_id": ["5545974000000100001", "5545974000000100002", "5545974000000100003"],
                "module": ["Contacts", "Leads", "Contacts"],
                "reason": ["identity_collision", "identity_collision", "no_phone_or_email"],
            }
        ),
    )
    warehouse.replace_table(
        "contact_identities",
        pd.DataFrame(
            {
                "module": ["Contacts", "Leads", "Contacts"],
                "zoho_id": ["5545974000000100001", "5545974000000100002", "5545974000000100003"],
                "mobile_e164": ["+919876543210", None, None],
                "phone_e164": [None, "+918041234567", None],
                "email": ["ravi.kumar@example.in", "asha@example.in", None],
            }
        ),
    )
    warehouse.replace_table(
        "clevertap_rejections",
        pd.DataFrame(
            {
                "record_key": ["+919876543210", "4078585d8ccb77e23429d4a542bf3d80"],
                "kind": ["profile", "event"],
                "zoho_id": ["5545974000000100001", "5545974000000100554"],
                "outcome": ["rejected", "rejected"],
                "code": [515, 509],
                "error": [
                    "Email is invalid: ravi.kumar@example Skipped record number : 1",
                    "Event Name is incorrect. ErrorCode: 509 - Event name is mandatory.",
                ],
                "run_id": ["run-1", "run-2"],
                "rejected_at": pd.to_datetime(["2026-12-01T10:00:00Z", "2026-12-02T10:00:00Z"]),
            }
        ),
    )
    return url


def test_review_queue_prints_counts_and_masked_records(operator_warehouse):
    result = CliRunner().invoke(main, ["review-queue", "--warehouse", operator_warehouse])

    assert result.exit_code == 0, result.output
    assert "3 records held for review" in result.output
    assert "5545974000000100001" in result.output
    assert "+91******3210" in result.output and "r*********@example.in" in result.output
    assert "9876543210" not in result.output.replace("+91******3210", "")
    assert "ravi.kumar" not in result.output


def test_review_queue_filters_by_module_and_reason_and_limits_rows(operator_warehouse):
    runner = CliRunner()
    leads = runner.invoke(
        main, ["review-queue", "--warehouse", operator_warehouse, "--module", "Leads"]
    )
    reason = runner.invoke(
        main,
        ["review-queue", "--warehouse", operator_warehouse, "--reason", "no_phone_or_email"],
    )
    limited = runner.invoke(
        main, ["review-queue", "--warehouse", operator_warehouse, "--limit", "1"]
    )
    unknown = runner.invoke(
        main, ["review-queue", "--warehouse", operator_warehouse, "--reason", "x"]
    )

    assert "5545974000000100002" in leads.output and "5545974000000100001" not in leads.output
    assert "5545974000000100003" in reason.output and "5545974000000100002" not in reason.output
    assert "1 of 3 records" in limited.output
    assert unknown.exit_code == 0
    assert "Reasons in the queue: identity_collision, no_phone_or_email" in unknown.output


def test_review_queue_reads_the_warehouse_from_the_environment(operator_warehouse):
    result = CliRunner().invoke(
        main, ["review-queue"], env={"CT_WAREHOUSE_URL": operator_warehouse}
    )

    assert result.exit_code == 0
    assert "3 records held for review" in result.output


def test_rejections_prints_newest_first_with_identities_and_errors_masked(operator_warehouse):
    result = CliRunner().invoke(main, ["rejections", "--warehouse", operator_warehouse])

    assert result.exit_code == 0, result.output
    assert result.output.index("5545974000000100554") < result.output.index("5545974000000100001")
    assert "+91******3210" in result.output
    assert "9876543210" not in result.output.replace("+91******3210", "")
    assert "ravi.kumar" not in result.output
    assert "4078585d8ccb77e23429d4a542bf3d80" in result.output


def test_rejections_filters_by_kind_and_code(operator_warehouse):
    runner = CliRunner()
    events = runner.invoke(
        main, ["rejections", "--warehouse", operator_warehouse, "--kind", "event"]
    )
    by_code = runner.invoke(
        main, ["rejections", "--warehouse", operator_warehouse, "--code", "515"]
    )
    none = runner.invoke(main, ["rejections", "--warehouse", operator_warehouse, "--code", "555"])

    assert "5545974000000100554" in events.output and "5545974000000100001" not in events.output
    assert "5545974000000100001" in by_code.output and "5545974000000100554" not in by_code.output
    assert none.exit_code == 0 and "No rejections with code 555." in none.output


def test_rejections_says_so_when_nothing_was_ever_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    WarehouseResource(url=url).replace_table("identity_review_queue", pd.DataFrame({"a": [1]}))

    result = CliRunner().invoke(main, ["rejections", "--warehouse", url])

    assert result.exit_code == 0
    assert "No rejections recorded" in result.output


def test_operator_commands_fail_in_one_line_on_a_missing_or_unknown_warehouse(tmp_path):
    runner = CliRunner()
    missing = tmp_path / "nothing.sqlite"
    no_file = runner.invoke(main, ["review-queue", "--warehouse", f"sqlite:///{missing}"])
    bad_url = runner.invoke(main, ["rejections", "--warehouse", "mysqlx://somewhere/db"])
    empty = tmp_path / "empty.sqlite"
    WarehouseResource(url=f"sqlite:///{empty}").replace_table("other", pd.DataFrame({"a": [1]}))
    no_table = runner.invoke(main, ["review-queue", "--warehouse", f"sqlite:///{empty}"])

    for result in (no_file, bad_url, no_table):
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert "does not exist" in no_file.output and not missing.exists()
    assert "cannot open the warehouse" in bad_url.output
    assert "has no table identity_review_queue" in no_table.output
