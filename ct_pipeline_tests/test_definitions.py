"""The code location loads, by Python and by Dagster's own CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ct_pipeline.assets.common import CLEVERTAP_POOL, SYNC_TAG, ZOHO_POOL
from ct_pipeline.definitions import defs
from ct_pipeline.jobs import SYNC_JOBS

REPO = Path(__file__).resolve().parents[1]


def test_definitions_are_loadable():
    dg.Definitions.validate_loadable(defs)


def test_dagster_cli_validates_the_workspace(tmp_path):
    environment = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    result = subprocess.run(
        [
            Path(sys.executable).parent / "dagster",
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful for code location ct_pipeline" in result.stderr + result.stdout


def test_every_flow_is_in_the_code_location():
    repository = defs.get_repository_def()
    jobs = {job.name for job in repository.get_all_jobs()}
    sensors = {sensor.name for sensor in repository.sensor_defs}

    assert {"nightly_full_sync", "incremental_sync", "crm_writeback"} <= jobs
    assert {"zoho_changes_sensor", "webhook_inbox_sensor"} <= sensors
    assert [schedule.cron_schedule for schedule in repository.schedule_defs]
    assert dg.AssetKey("crm_writeback") in {
        key for assets_def in repository.assets_defs_by_key.values() for key in assets_def.keys
    }


# The API resource a step uses -> the pool that limits such steps across runs (dagster.yaml).
API_POOLS = {"zoho": ZOHO_POOL, "clevertap": CLEVERTAP_POOL}


def test_every_step_that_calls_an_api_holds_its_pool():
    steps = {
        op.name: op
        for job in defs.get_repository_def().get_all_jobs()
        for op in job.graph.iterate_op_defs()
    }
    calling = {
        (name, api): op.pool
        for name, op in steps.items()
        for api in API_POOLS
        if api in op.required_resource_keys
    }
    without_their_pool = {
        step: pool for step, pool in calling.items() if pool != API_POOLS[step[1]]
    }

    assert {"zoho_contacts", "write_crm_writeback", "clevertap_profile_sync"} <= {
        name for name, _ in calling
    }
    assert without_their_pool == {}


@pytest.mark.parametrize("job", SYNC_JOBS, ids=lambda job: job.name)
def test_every_sync_job_carries_the_tag_the_run_queue_limits(job):
    assert job.tags.get(SYNC_TAG) == "true"
