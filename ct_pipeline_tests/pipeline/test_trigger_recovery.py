"""Campaign triggers (the push notifications) under faults and kills: each customer is messaged
as an undisturbed run would message them, except for triggers reported as "unknown outcome",
at most one batch, which the configured policy resends or holds.

The scenario: a first sync, then a few deals of pushed Contacts move to `Approved`, the stage
the packaged configuration fires campaign 1700000001 on, and an incremental sync sends their
events and triggers. Triggers go out in batches of `TRIGGER_BATCH`, so the three of them make
two batches.
"""

from __future__ import annotations

import copy
import json
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from ct_pipeline.crashpoints import ENV_VAR
from ct_pipeline.sandbox.launch import start_sandbox
from ct_pipeline.sandbox.synthetic import SyntheticCrm
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline_tests.pipeline.conftest import Pipeline, move_deals, write_config
from ct_pipeline_tests.pipeline.test_crash_recovery import asset_metadata, job_process

CAMPAIGN_STAGE = "Approved"
MOVED_DEALS = 3
TRIGGER_BATCH = 2
# One Modified_Time for every edit, here and in the undisturbed run, so that outbox ids and
# trigger payloads are the same in both.
EDIT_TIME = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
CRASH_TIMEOUT_SECONDS = 240

Trigger = tuple[str, tuple[str, ...], str]


def triggers_received(pipeline: Pipeline) -> Counter[Trigger]:
    """Every campaign trigger CleverTap received: (campaign, identities, properties) -> times."""
    received = pipeline.clevertap("GET", "triggers")["triggers"]
    return Counter(
        (
            str(trigger["campaign_id"]),
            tuple(trigger["to"]["identity"]),
            json.dumps(trigger["ExternalTrigger"], sort_keys=True),
        )
        for trigger in received
    )


def trigger_deal(trigger: Trigger) -> str:
    return json.loads(trigger[2])["deal_id"]


@pytest.fixture(scope="module")
def undisturbed_triggers(
    synthetic_crm: SyntheticCrm, tmp_path_factory: pytest.TempPathFactory
) -> Counter[Trigger]:
    """The triggers the scenario sends without faults, on its own emulators and warehouse."""
    folder = tmp_path_factory.mktemp("undisturbed_triggers")
    warehouse = WarehouseResource(url=f"sqlite:///{folder / 'warehouse.sqlite'}")
    sandbox = start_sandbox(crm=copy.deepcopy(synthetic_crm))
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            pipeline = Pipeline(sandbox=sandbox, warehouse=warehouse, instance=instance)
            pipeline.config_path = write_config(folder, clevertap={"batch_size": TRIGGER_BATCH})
            assert pipeline.run("nightly_full_sync", batch_size=TRIGGER_BATCH).success
            move_deals(pipeline, CAMPAIGN_STAGE, MOVED_DEALS, EDIT_TIME)
            assert pipeline.run("incremental_sync", batch_size=TRIGGER_BATCH).success
            triggers = triggers_received(pipeline)
    finally:
        sandbox.stop()
    assert sum(triggers.values()) == MOVED_DEALS and max(triggers.values()) == 1
    return triggers


def prepared(pipeline: Pipeline, tmp_path: Path, policy: str = "resend") -> list[str]:
    """The pipeline after the first sync, with the deals moved; the moved deals' ids."""
    pipeline.config_path = write_config(
        tmp_path, clevertap={"batch_size": TRIGGER_BATCH, "unknown_outcome_policy": policy}
    )
    assert pipeline.run("nightly_full_sync", batch_size=TRIGGER_BATCH).success
    return move_deals(pipeline, CAMPAIGN_STAGE, MOVED_DEALS, EDIT_TIME)


def assert_as_undisturbed_except(
    pipeline: Pipeline, expected: Counter[Trigger], unknown: set[str], policy: str
) -> None:
    """The triggers received equal the undisturbed ones, except that each trigger of a deal in
    `unknown` arrived twice (resend: the lost answer's request had landed) or once (hold)."""
    received = triggers_received(pipeline)
    assert set(received) == set(expected)
    for trigger in expected:
        if trigger_deal(trigger) in unknown:
            assert received[trigger] == (2 if policy == "resend" else 1), trigger_deal(trigger)
        else:
            assert received[trigger] == 1, trigger_deal(trigger)


def campaign_rows(pipeline: Pipeline):
    outbox = pipeline.warehouse.read_table("event_outbox")
    return outbox[outbox["kind"] == "campaign"].set_index("deal_id")


@pytest.mark.parametrize("policy", ["resend", "hold"])
def test_a_run_killed_while_recording_a_trigger_batch_leaves_one_batch_unknown(
    pipeline: Pipeline,
    undisturbed_triggers: Counter[Trigger],
    tmp_path,
    monkeypatch,
    policy: str,
):
    prepared(pipeline, tmp_path, policy)
    monkeypatch.setenv(ENV_VAR, "trigger_bookkeeping")
    process = job_process(pipeline, "incremental_sync", tmp_path)
    output = process.communicate(timeout=CRASH_TIMEOUT_SECONDS)[0].decode(errors="replace")
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    monkeypatch.delenv(ENV_VAR)
    # CleverTap queued the first batch; the answers died with the process.
    assert sum(triggers_received(pipeline).values()) == TRIGGER_BATCH
    statuses = Counter(campaign_rows(pipeline)["status"])
    assert statuses == {"sending": TRIGGER_BATCH, "pending": MOVED_DEALS - TRIGGER_BATCH}
    unknown = set(campaign_rows(pipeline).query("status == 'sending'").index)

    result = pipeline.run("incremental_sync", batch_size=TRIGGER_BATCH)

    assert result.success
    assert asset_metadata(result, "clevertap_event_batches")["unknown outcomes found"] == len(
        unknown
    )
    assert_as_undisturbed_except(pipeline, undisturbed_triggers, unknown, policy)
    rows = campaign_rows(pipeline)
    assert set(rows.loc[sorted(unknown), "status"]) == {"sent" if policy == "resend" else "held"}
    assert set(rows.drop(index=sorted(unknown))["status"]) == {"sent"}


def test_a_429_storm_during_the_triggers_is_waited_out(
    pipeline: Pipeline, undisturbed_triggers: Counter[Trigger], tmp_path
):
    prepared(pipeline, tmp_path)
    pipeline.clevertap("POST", "faults", {"others_429": 4})

    assert pipeline.run("incremental_sync", batch_size=TRIGGER_BATCH).success

    assert pipeline.clevertap("GET", "faults")["others_429"] == 0
    assert_as_undisturbed_except(pipeline, undisturbed_triggers, set(), "resend")
    assert set(campaign_rows(pipeline)["status"]) == {"sent"}


@pytest.mark.parametrize("policy", ["resend", "hold"])
def test_a_5xx_on_a_trigger_is_an_unknown_outcome_for_the_policy(
    pipeline: Pipeline, undisturbed_triggers: Counter[Trigger], tmp_path, policy: str
):
    prepared(pipeline, tmp_path, policy)
    # A 500 may hide a request CleverTap acted on: not retried, and failed as an unknown outcome.
    pipeline.clevertap("POST", "faults", {"others_5xx": 1, "status_5xx": 500})

    failed = pipeline.run("incremental_sync", batch_size=TRIGGER_BATCH)

    assert not failed.success
    rows = campaign_rows(pipeline)
    unknown = set(rows.query("status == 'sending'").index)
    assert len(unknown) == 1
    assert set(rows.drop(index=sorted(unknown))["status"]) == {"sent"}
    pipeline.clevertap("POST", "faults", {"clear": True})

    result = pipeline.run("incremental_sync", batch_size=TRIGGER_BATCH)

    assert result.success
    assert asset_metadata(result, "clevertap_event_batches")["unknown outcomes found"] == 1
    # The emulator refused the 500'd request without acting on it: resent, it arrives once.
    received = triggers_received(pipeline)
    lost = [trigger for trigger in undisturbed_triggers if trigger_deal(trigger) in unknown]
    if policy == "resend":
        assert received == undisturbed_triggers
    else:
        assert received == undisturbed_triggers - Counter(lost)
        assert campaign_rows(pipeline).loc[sorted(unknown), "reason"].tolist() == [
            "unknown_outcome"
        ]


def test_a_clevertap_outage_for_a_whole_run_leaves_every_trigger_for_the_next(
    pipeline: Pipeline, undisturbed_triggers: Counter[Trigger], tmp_path
):
    prepared(pipeline, tmp_path)
    pipeline.clevertap("POST", "faults", {"outage": True})

    assert not pipeline.run("incremental_sync", batch_size=TRIGGER_BATCH).success

    assert triggers_received(pipeline) == Counter()
    assert set(campaign_rows(pipeline)["status"]) == {"pending"}
    pipeline.clevertap("POST", "faults", {"clear": True})
    assert pipeline.run("incremental_sync", batch_size=TRIGGER_BATCH).success
    assert triggers_received(pipeline) == undisturbed_triggers
    assert set(campaign_rows(pipeline)["status"]) == {"sent"}
