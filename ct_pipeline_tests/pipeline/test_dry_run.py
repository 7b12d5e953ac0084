"""A dry run builds and checks everything and sends nothing, and it decides nothing for the real
run after it: that run sends what the dry run found, as if the dry run had never happened."""

from __future__ import annotations

import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

from ct_pipeline.assets.common import DRY_RUN_TAG
from ct_pipeline.crashpoints import ENV_VAR
from ct_pipeline_tests.pipeline.conftest import Pipeline, move_deals, write_config
from ct_pipeline_tests.pipeline.test_crash_recovery import asset_metadata, job_process
from ct_pipeline_tests.pipeline.test_reconciliation import seed_clevertap
from ct_pipeline_tests.pipeline.test_sync import uploaded_records

DRY_RUN = {DRY_RUN_TAG: "true"}
CRASH_TIMEOUT_SECONDS = 240


def run_killed_at(pipeline: Pipeline, point: str, job: str, tmp_path, monkeypatch) -> None:
    """Run `job` in a `dagster job execute` process that kills itself at `point`."""
    monkeypatch.setenv(ENV_VAR, point)
    process = job_process(pipeline, job, tmp_path)
    output = process.communicate(timeout=CRASH_TIMEOUT_SECONDS)[0].decode(errors="replace")
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    monkeypatch.delenv(ENV_VAR)


def test_a_stage_change_seen_by_a_dry_run_is_sent_once_by_the_next_real_run(
    pipeline: Pipeline, tmp_path
):
    pipeline.config_path = write_config(tmp_path)
    assert pipeline.run("nightly_full_sync").success
    stamp = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    (deal,) = move_deals(pipeline, "Approved", 1, stamp)

    dry = pipeline.run("incremental_sync", tags=DRY_RUN)

    assert dry.success
    assert asset_metadata(dry, "deal_stage_events")["transitions"] == 1
    assert uploaded_records(pipeline, "event") == []
    assert pipeline.clevertap("GET", "triggers")["count"] == 0

    assert pipeline.run("incremental_sync").success
    assert pipeline.run("incremental_sync").success

    events = uploaded_records(pipeline, "event")
    assert [(e["evtData"]["deal_id"], e["evtData"]["stage_name"]) for e in events] == [
        (deal, "Approved")
    ]
    (trigger,) = pipeline.clevertap("GET", "triggers")["triggers"]
    assert trigger["ExternalTrigger"]["deal_id"] == deal
    assert set(pipeline.warehouse.read_table("event_outbox")["status"]) == {"sent"}


def test_a_dry_run_leaves_unknown_event_outcomes_for_the_real_run_to_decide(
    pipeline: Pipeline, tmp_path, monkeypatch
):
    pipeline.config_path = write_config(tmp_path, clevertap={"unknown_outcome_policy": "hold"})
    assert pipeline.run("nightly_full_sync").success
    stamp = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    move_deals(pipeline, "Closed Lost", 1, stamp)
    run_killed_at(pipeline, "event_bookkeeping", "incremental_sync", tmp_path, monkeypatch)
    assert pipeline.warehouse.read_table("event_outbox")["status"].tolist() == ["sending"]

    dry = pipeline.run("incremental_sync", tags=DRY_RUN)

    assert dry.success
    assert asset_metadata(dry, "clevertap_event_batches")["unknown outcomes found"] == 1
    assert pipeline.warehouse.read_table("event_outbox")["status"].tolist() == ["sending"]

    real = pipeline.run("incremental_sync")

    assert real.success
    assert asset_metadata(real, "clevertap_event_batches")["unknown outcomes found"] == 1
    outbox = pipeline.warehouse.read_table("event_outbox")
    assert outbox[["status", "reason"]].values.tolist() == [["held", "unknown_outcome"]]
    assert len(uploaded_records(pipeline, "event")) == 1  # the killed run's, never resent


def test_a_dry_run_leaves_unknown_profile_outcomes_for_the_real_run_to_decide(
    pipeline: Pipeline, tmp_path, monkeypatch
):
    settings = {"batch_size": 100, "max_concurrency": 1, "unknown_outcome_policy": "hold"}
    pipeline.config_path = write_config(tmp_path, clevertap=settings)
    run_killed_at(pipeline, "profile_bookkeeping", "nightly_full_sync", tmp_path, monkeypatch)
    in_flight = set(pipeline.warehouse.read_table("clevertap_profiles_in_flight")["identity"])
    # The batch being recorded when the process died, and perhaps the next, already sent.
    assert len(in_flight) in (100, 200)

    dry = pipeline.run("nightly_full_sync", tags=DRY_RUN)

    assert dry.success
    metadata = asset_metadata(dry, "clevertap_profile_batches")
    assert metadata["unknown outcomes found"] == len(in_flight)
    assert metadata["held for review (unknown outcome)"] == len(in_flight)
    marked = pipeline.warehouse.read_table("clevertap_profiles_in_flight")
    assert set(marked["identity"]) == in_flight
    assert not pipeline.warehouse.table_exists("clevertap_profile_holds")

    assert pipeline.run("nightly_full_sync").success

    holds = pipeline.warehouse.read_table("clevertap_profile_holds")
    assert set(holds["identity"]) == in_flight
    sent = Counter(record["identity"] for record in uploaded_records(pipeline))
    assert {identity for identity, times in sent.items() if times > 1} == set()


def test_reconciliation_answers_of_a_dry_run_are_asked_again_by_the_real_run(
    pipeline: Pipeline, tmp_path
):
    pipeline.config_path = write_config(tmp_path, clevertap={"reconcile_new_profiles": True})
    dry = pipeline.run("nightly_full_sync", tags=DRY_RUN)
    assert dry.success
    profiles = pipeline.warehouse.read_table("profile_attributes")
    assert asset_metadata(dry, "clevertap_reconciliation")["people looked up"] == len(profiles)
    # Between the dry run and the real one, the person logs into the app with their email.
    person = profiles[(profiles["identity_kind"] == "phone") & profiles["Email"].notna()].iloc[0]
    seed_clevertap(pipeline, {person["Email"]: {"Email": person["Email"], "Name": "From SDK"}})

    real = pipeline.run("nightly_full_sync")

    assert real.success
    assert asset_metadata(real, "clevertap_reconciliation")["people looked up"] == len(profiles)
    sent = {record["identity"]: record for record in uploaded_records(pipeline)}
    assert person["identity"] not in sent
    assert sent[person["Email"]]["profileData"]["crm_contact_id"] == person["crm_contact_id"]
    decisions = pipeline.warehouse.read_table("clevertap_reconciliation")
    assert not decisions["provisional"].astype(bool).any()
