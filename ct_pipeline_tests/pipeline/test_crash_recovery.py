"""A sync run killed mid-upload (SIGKILL) loses nothing, and the next run never resends blindly.

The run under test is a real `dagster job execute` process pointed at the emulators by the
environment variables alone; CleverTap's uploads are slowed so the kill lands while a request is
in flight.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ct_pipeline_tests.pipeline.conftest import Pipeline
from ct_pipeline_tests.pipeline.test_sync import pushed_contact_deal, uploaded_records

REPO = Path(__file__).resolve().parents[2]
KILL_DEADLINE_SECONDS = 60


def job_process(pipeline: Pipeline, job: str, tmp_path: Path) -> subprocess.Popen:
    """`dagster job execute` of `job` in its own process group, configured by environment only."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    environment = {
        **os.environ,
        **pipeline.sandbox.environment(),
        "CT_WAREHOUSE_URL": pipeline.warehouse.resolved_url,
        "DAGSTER_HOME": str(home),
    }
    if pipeline.config_path:
        environment["CT_SYNC_CONFIG"] = pipeline.config_path
    command = [str(Path(sys.executable).parent / "dagster"), "job", "execute"]
    return subprocess.Popen(
        [*command, "-m", "ct_pipeline.definitions", "-j", job],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_when(process: subprocess.Popen, ready, settle_seconds: float = 0.5) -> None:
    """SIGKILL the process group `settle_seconds` after `ready()` is first true."""
    deadline = time.monotonic() + KILL_DEADLINE_SECONDS
    try:
        while not ready():
            if process.poll() is not None:
                output = process.stdout.read().decode(errors="replace")[-3000:]
                raise AssertionError(f"the run ended before the kill point:\n{output}")
            if time.monotonic() > deadline:
                raise AssertionError("the run never reached the kill point")
            time.sleep(0.05)
        # Let the request that made `ready()` true reach the server.
        time.sleep(settle_seconds)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def upload_in_flight(pipeline: Pipeline) -> bool:
    return pipeline.clevertap("GET", "stats")["max_in_flight"].get("/1/upload", 0) > 0


def test_dagster_job_execute_runs_the_sync_from_environment_variables_alone(
    pipeline: Pipeline, tmp_path
):
    process = job_process(pipeline, "nightly_full_sync", tmp_path)
    output = process.communicate(timeout=240)[0].decode(errors="replace")

    assert process.returncode == 0, output[-3000:]
    profiles = pipeline.warehouse.read_table("profile_attributes")
    assert pipeline.clevertap("GET", "profiles")["count"] == len(profiles) > 0


def test_a_run_killed_during_the_profile_upload_is_completed_by_the_next(
    pipeline: Pipeline, tmp_path
):
    pipeline.clevertap("POST", "faults", {"slow_seconds": 3, "slow_count": 1})
    killed = job_process(pipeline, "nightly_full_sync", tmp_path)
    kill_when(killed, lambda: upload_in_flight(pipeline))
    assert pipeline.warehouse.read_table("clevertap_pushed_profiles").empty

    time.sleep(3.5)  # the slowed request completes on the server side, as it may for real
    assert pipeline.run("nightly_full_sync").success

    profiles = pipeline.warehouse.read_table("profile_attributes")
    pushed = pipeline.warehouse.read_table("clevertap_pushed_profiles")
    assert set(pushed["identity"]) == set(profiles["identity"])
    sent = Counter(record["identity"] for record in uploaded_records(pipeline))
    # Sent at most twice: once by the killed run (its answer never recorded), once after.
    assert set(sent) == set(profiles["identity"]) and max(sent.values()) <= 2
    assert pipeline.clevertap("GET", "profiles")["count"] == len(profiles)


@pytest.mark.parametrize("policy", ["resend", "hold"])
def test_events_sent_by_a_killed_run_are_marked_unknown_and_handled_by_the_policy(
    pipeline: Pipeline, tmp_path, policy: str
):
    config = tmp_path / "sync.yaml"
    config.write_text(f"clevertap: {{unknown_outcome_policy: {policy}}}\n")
    pipeline.config_path = str(config)
    assert pipeline.run("nightly_full_sync").success
    deal = pushed_contact_deal(pipeline)
    pipeline.zoho("POST", "records/Deals", [{"id": deal["id"], "Stage": "Closed Lost"}])

    pipeline.clevertap("POST", "faults", {"slow_seconds": 3})
    killed = job_process(pipeline, "incremental_sync", tmp_path)
    kill_when(
        killed, lambda: "sending" in set(outbox_statuses(pipeline)) and upload_in_flight(pipeline)
    )
    time.sleep(3.5)
    pipeline.clevertap("POST", "faults", {"clear": True})

    result = pipeline.run("incremental_sync")

    assert result.success
    metadata = asset_metadata(result, "clevertap_event_batches")
    assert metadata["unknown outcomes found"] == 1
    outbox = pipeline.warehouse.read_table("event_outbox")
    events = uploaded_records(pipeline, "event")
    if policy == "resend":
        assert outbox["status"].tolist() == ["sent"]
        assert len(events) == 2  # the killed run's request did land: the cost of resending
    else:
        assert outbox["status"].tolist() == ["held"]
        assert outbox["reason"].tolist() == ["unknown_outcome"]
        assert len(events) == 1


def outbox_statuses(pipeline: Pipeline) -> list[str]:
    if not pipeline.warehouse.table_exists("event_outbox"):
        return []
    return pipeline.warehouse.read_table("event_outbox", columns=["status"])["status"].tolist()


def asset_metadata(result, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.to_user_string() == asset:
            return {key: value.value for key, value in materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialised")
