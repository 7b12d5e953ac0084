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
from click.testing import CliRunner

from ct_pipeline.assets.common import mask_identity
from ct_pipeline.cli import main
from ct_pipeline_tests.pipeline.conftest import Pipeline, write_config
from ct_pipeline_tests.pipeline.test_sync import pushed_contact_deal, uploaded_records

REPO = Path(__file__).resolve().parents[2]
KILL_DEADLINE_SECONDS = 60
# Profiles per upload request in the profile kill tests: the first sync makes several batches.
PROFILE_BATCH = 50
# How long the emulator holds the request the kill lands in.
HELD_SECONDS = 8.0


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


@pytest.mark.parametrize("policy", ["resend", "hold"])
def test_a_profile_batch_in_flight_when_the_run_is_killed_is_an_unknown_outcome_for_the_policy(
    pipeline: Pipeline, tmp_path, policy: str
):
    pipeline.config_path = write_config(
        tmp_path, clevertap={"batch_size": PROFILE_BATCH, "unknown_outcome_policy": policy}
    )
    # The first upload request to arrive is held; the other batches are answered and recorded.
    pipeline.clevertap("POST", "faults", {"slow_seconds": HELD_SECONDS, "slow_count": 1})
    killed = job_process(pipeline, "nightly_full_sync", tmp_path)
    kill_when(killed, lambda: only_the_held_batch_unrecorded(pipeline), settle_seconds=0)

    in_flight = held_upload_identities(pipeline)
    batches = pipeline.warehouse.read_table("clevertap_profile_batches")
    assert len(batches) > 2 * PROFILE_BATCH and len(in_flight) == PROFILE_BATCH
    marked = pipeline.warehouse.read_table("clevertap_profiles_in_flight")
    assert set(marked["identity"]) == in_flight
    recorded = set(pipeline.warehouse.read_table("clevertap_push_journal")["identity"])
    assert recorded == set(batches["identity"]) - in_flight
    # CleverTap processes the held request after the kill, as it may for real.
    wait_until(lambda: not held_upload_identities(pipeline), HELD_SECONDS * 3)

    result = pipeline.run("nightly_full_sync")

    assert result.success
    metadata = asset_metadata(result, "clevertap_profile_batches")
    assert metadata["unknown outcomes found"] == PROFILE_BATCH
    assert metadata["held for review (unknown outcome)"] == (
        PROFILE_BATCH if policy == "hold" else 0
    )
    sent = Counter(record["identity"] for record in uploaded_records(pipeline))
    profiles = set(pipeline.warehouse.read_table("profile_attributes")["identity"])
    assert set(sent) == profiles
    # An acceptance that was recorded is never sent again; the unknown batch once more or not.
    assert {identity for identity, count in sent.items() if count > 1} == (
        in_flight if policy == "resend" else set()
    )
    assert max(sent.values()) <= 2
    pushed = set(pipeline.warehouse.read_table("clevertap_pushed_profiles")["identity"])
    holds = pipeline.warehouse.read_table("clevertap_profile_holds")
    if policy == "resend":
        assert pushed == profiles and holds.empty
    else:
        assert pushed == profiles - in_flight
        assert set(holds["identity"]) == in_flight
        assert set(holds["reason"]) == {"unknown_outcome"}
    assert pipeline.warehouse.read_table("clevertap_profiles_in_flight").empty
    assert pipeline.clevertap("GET", "profiles")["count"] == len(profiles)

    uploads = pipeline.upload_requests()
    assert pipeline.run("incremental_sync").success
    assert pipeline.upload_requests() == uploads  # held stays held; nothing else is due
    if policy == "hold":
        assert_released_profiles_are_sent_again(pipeline, holds)


def assert_released_profiles_are_sent_again(pipeline: Pipeline, holds) -> None:
    """The held profiles are listed masked; one released as delivered is never sent again, the
    others released are sent once more by the next run."""
    listed = outbox_command(pipeline, "list", "--kind", "profile", "--limit", "500")
    assert f"{len(holds)} held rows" in listed
    assert mask_identity(holds["identity"].iloc[0]) in listed
    assert not any(identity in listed for identity in holds["identity"])
    settled, *released = holds.sort_values("contact_id").itertuples(index=False)
    outbox_command(pipeline, "release", settled.contact_id, "--as-sent")
    outbox_command(pipeline, "release", "--all", "--kind", "profile")
    before = Counter(record["identity"] for record in uploaded_records(pipeline))

    assert pipeline.run("incremental_sync").success

    after = Counter(record["identity"] for record in uploaded_records(pipeline))
    assert after - before == Counter(profile.identity for profile in released)
    assert pipeline.warehouse.read_table("clevertap_profile_holds").empty
    pushed = set(pipeline.warehouse.read_table("clevertap_pushed_profiles")["identity"])
    assert set(holds["identity"]) <= pushed


def outbox_command(pipeline: Pipeline, *arguments: str) -> str:
    """Run `ct-pipeline outbox ...` on the pipeline's warehouse; its output."""
    result = CliRunner().invoke(
        main, ["outbox", *arguments], env={"CT_WAREHOUSE_URL": pipeline.warehouse.resolved_url}
    )
    assert result.exit_code == 0, result.output
    return result.output


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
        listed = outbox_command(pipeline, "list", "--reason", "unknown_outcome")
        assert outbox["event_id"].iloc[0] in listed
        assert "1 outbox rows and 0 profile uploads released" in outbox_command(
            pipeline, "release", "--all", "--reason", "unknown_outcome"
        )
        assert pipeline.run("incremental_sync").success
        assert len(uploaded_records(pipeline, "event")) == 2
        statuses = pipeline.warehouse.read_table("event_outbox")["status"]
        assert statuses.tolist() == ["sent"]


def held_upload_identities(pipeline: Pipeline) -> set[str]:
    """The profiles of the upload requests CleverTap received and has not answered yet."""
    log = pipeline.clevertap("GET", "requests", path="/1/upload")["requests"]
    return {
        record["identity"]
        for entry in log
        if entry["status"] is None
        for record in (entry.get("body") or {}).get("d", [])
        if record.get("type") == "profile"
    }


def only_the_held_batch_unrecorded(pipeline: Pipeline) -> bool:
    """Whether every profile batch was sent, and all but the held one answered and recorded."""
    held = held_upload_identities(pipeline)
    if not held or not pipeline.warehouse.table_exists("clevertap_profiles_in_flight"):
        return False
    batches = len(pipeline.warehouse.read_table("clevertap_profile_batches", columns=["batch"]))
    requests = pipeline.clevertap("GET", "requests", path="/1/upload", body=0)["count"]
    marked = pipeline.warehouse.read_table("clevertap_profiles_in_flight", columns=["identity"])
    return requests == -(-batches // PROFILE_BATCH) and set(marked["identity"]) == held


def wait_until(condition, seconds: float) -> None:
    """Poll `condition` until it is true; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still not so after {seconds} s"
        time.sleep(0.05)


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
