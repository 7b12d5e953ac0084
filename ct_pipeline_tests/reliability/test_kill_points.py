"""A run killed with SIGKILL at a chosen point, then run again: CleverTap ends as an undisturbed
run left it, except for events reported as "unknown outcome", at most one in-flight batch.

Step 2 of the scenario (see conftest) is the run that dies: a real `dagster job execute` process
configured by environment variables alone. Points inside the pipeline are chosen with the
`CT_PIPELINE_CRASH_AT` hook (the process kills itself there); points where a request is in
flight are chosen by an emulator fault that holds that request, and the test kills the process
group while the emulator reports it held.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from ct_pipeline.crashpoints import ENV_VAR
from ct_pipeline_tests.pipeline.test_crash_recovery import job_process, kill_when
from ct_pipeline_tests.reliability.conftest import (
    STATE_TABLES,
    Baseline,
    FaultPipeline,
    Snapshot,
    apply_edits,
    assert_same_tables,
    write_config,
)

CRASH_TIMEOUT_SECONDS = 240
# Event batch size for these runs, so "at most one in-flight batch" bounds something: the three
# stage events of the scenario go in two batches.
EVENT_BATCH = 2
HELD_SECONDS = 4.0
STATE_TABLES_BUT_OUTBOX = [name for name in STATE_TABLES if name != "event_outbox"]


def run_to_crash(pipeline: FaultPipeline, point: str, tmp_path: Path, monkeypatch) -> None:
    """Run step 2 in a process that kills itself at `point`; fail if it ends any other way."""
    monkeypatch.setenv(ENV_VAR, point)
    process = job_process(pipeline, "incremental_sync", tmp_path)
    output = process.communicate(timeout=CRASH_TIMEOUT_SECONDS)[0].decode(errors="replace")
    assert process.returncode == -signal.SIGKILL, f"never reached {point}:\n{output[-3000:]}"


def unknown_outcome_events(pipeline: FaultPipeline) -> set[str]:
    """Deal ids of events sent by a run that died before recording CleverTap's answer."""
    outbox = pipeline.outbox()
    unknown = (outbox["attempts"] > 1) | (outbox["reason"] == "unknown_outcome")
    return set(outbox.loc[unknown, "deal_id"])


def assert_clevertap_as_undisturbed_but_unknowns(
    pipeline: FaultPipeline, after: Snapshot, expected: Snapshot
) -> set[str]:
    """Profiles identical; events identical except duplicates or absences of unknown ones."""
    assert after.profiles == expected.profiles
    unknown = unknown_outcome_events(pipeline)
    assert len(unknown) <= EVENT_BATCH
    held = Counter(after.events)
    for event in expected.events:
        deal = event_deal(event)
        count = held.pop(event, 0)
        assert count == 1 or deal in unknown, f"event of deal {deal} arrived {count} times"
    assert not held, "CleverTap holds events an undisturbed run never sent"
    return unknown


def event_deal(event: tuple) -> str:
    return json.loads(event[3])["deal_id"]


@pytest.fixture
def killed(disturbed_on_each_warehouse: FaultPipeline, tmp_path) -> FaultPipeline:
    """The pipeline after step 1, with step 2's edits made and small event batches, on SQLite
    and on PostgreSQL (whose transactions and COPY staging the kill must not leave half-done)."""
    pipeline = disturbed_on_each_warehouse
    pipeline.config_path = write_config(tmp_path, clevertap={"batch_size": EVENT_BATCH})
    assert pipeline.run("nightly_full_sync").success
    apply_edits(pipeline)
    return pipeline


@pytest.mark.parametrize("point", ["after_stage_snapshot", "profile_bookkeeping"])
def test_a_run_killed_inside_the_pipeline_is_completed_by_the_next_exactly_once(
    killed: FaultPipeline, undisturbed: Baseline, tmp_path, monkeypatch, point: str
):
    run_to_crash(killed, point, tmp_path, monkeypatch)
    monkeypatch.delenv(ENV_VAR)

    assert killed.run("incremental_sync").success

    after = killed.snapshot()
    assert unknown_outcome_events(killed) == set()
    assert after.profiles == undisturbed.after_edits.profiles
    assert after.events == undisturbed.after_edits.events
    assert_same_tables(after, undisturbed.after_edits)


def test_a_run_killed_while_recording_an_event_batch_resends_only_that_batch(
    killed: FaultPipeline, undisturbed: Baseline, tmp_path, monkeypatch
):
    run_to_crash(killed, "event_bookkeeping", tmp_path, monkeypatch)
    monkeypatch.delenv(ENV_VAR)
    # The answer was lost with the process: its batch is still `sending`, the rest `pending`.
    statuses = Counter(killed.outbox()["status"])
    assert statuses == {"sending": EVENT_BATCH, "pending": 3 - EVENT_BATCH}

    assert killed.run("incremental_sync").success

    after = killed.snapshot()
    unknown = assert_clevertap_as_undisturbed_but_unknowns(killed, after, undisturbed.after_edits)
    assert len(unknown) == EVENT_BATCH  # resent under the default policy: one batch, twice
    assert set(killed.outbox()["status"]) == {"sent"}


def test_a_run_killed_during_extraction_leaves_no_gap(
    killed: FaultPipeline, undisturbed: Baseline, tmp_path
):
    uploads = killed.upload_requests()
    killed.zoho_faults(after_calls=2, slow_responses=1, slow_seconds=HELD_SECONDS)
    process = job_process(killed, "incremental_sync", tmp_path)
    kill_when(process, lambda: killed.zoho_stats()["faults_served"], settle_seconds=0)
    assert killed.upload_requests() == uploads  # died before anything was pushed

    assert killed.run("incremental_sync").success

    after = killed.snapshot()
    assert after.profiles == undisturbed.after_edits.profiles
    assert after.events == undisturbed.after_edits.events
    assert_same_tables(after, undisturbed.after_edits)


@pytest.mark.parametrize("policy", ["resend", "hold"])
def test_a_run_killed_during_an_upload_loses_nothing_and_repeats_at_most_one_batch(
    killed: FaultPipeline, undisturbed: Baseline, tmp_path, policy: str
):
    killed.config_path = write_config(
        tmp_path, clevertap={"batch_size": EVENT_BATCH, "unknown_outcome_policy": policy}
    )
    killed.clevertap_faults(slow_seconds=HELD_SECONDS)
    process = job_process(killed, "incremental_sync", tmp_path)
    kill_when(process, lambda: event_upload_held(killed), settle_seconds=0)
    killed.clevertap_faults(clear=True)
    # The held request is answered after the kill, as CleverTap may have processed it for real.
    wait_until(lambda: not event_upload_held(killed), HELD_SECONDS * 3)

    assert killed.run("incremental_sync").success

    after = killed.snapshot()
    unknown = assert_clevertap_as_undisturbed_but_unknowns(killed, after, undisturbed.after_edits)
    assert len(unknown) == EVENT_BATCH  # the batch that was in flight, no more
    outbox = killed.outbox().set_index("deal_id")
    expected_status = "sent" if policy == "resend" else "held"
    assert set(outbox.loc[sorted(unknown), "status"]) <= {expected_status}
    assert set(outbox.drop(index=sorted(unknown))["status"]) == {"sent"}
    assert_same_tables(after, undisturbed.after_edits, STATE_TABLES_BUT_OUTBOX)


def event_upload_held(pipeline: FaultPipeline) -> bool:
    """Whether CleverTap is holding an event upload of the run right now (received, unanswered)."""
    log = pipeline.clevertap("GET", "requests", path="/1/upload")["requests"]
    return any(
        entry["status"] is None
        and any(record.get("type") == "event" for record in (entry.get("body") or {}).get("d", []))
        for entry in log
    )


def wait_until(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the emulator never finished the held request"
        time.sleep(0.05)
