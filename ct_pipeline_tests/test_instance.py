"""The production dagster.yaml works: storage in PostgreSQL, a job runs on it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.runs import SqlRunStorage

from ct_pipeline.assets.common import SYNC_TAG

REPO = Path(__file__).resolve().parents[1]
REQUIRED = ["DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_DB"]

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        any(not os.environ.get(name) for name in REQUIRED),
        reason=f"set {', '.join(REQUIRED)} and DAGSTER_PG_PASSWORD (bash .ci/run does)",
    ),
]


@dg.asset
def instance_probe() -> int:
    """A one-row asset: enough to prove the instance stores a run and its metadata."""
    return 1


def test_a_job_runs_on_the_production_instance(tmp_path, monkeypatch):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))

    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([instance_probe], instance=instance)
        stored = instance.get_run_by_id(result.run_id)
        storage_class = type(instance.run_storage).__name__

    assert result.success
    assert stored is not None and stored.is_success
    assert storage_class == "PostgresRunStorage"
    assert isinstance(instance.run_storage, SqlRunStorage)


def test_the_production_instance_configures_api_pools_and_run_monitoring(tmp_path, monkeypatch):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))

    with dg.DagsterInstance.get() as instance:
        assert instance.run_monitoring_enabled
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


def test_the_run_queue_lets_one_sync_run_at_a_time(tmp_path, monkeypatch):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))

    with dg.DagsterInstance.get() as instance:
        coordinator = instance.run_coordinator
        # The run-queue daemon reads its limits from here, not from the coordinator's own config.
        queue = instance.get_concurrency_config().run_queue_config

    assert isinstance(coordinator, QueuedRunCoordinator)
    assert coordinator.dequeue_interval_seconds == 1
    assert queue is not None
    assert queue.tag_concurrency_limits == [{"key": SYNC_TAG, "limit": 1}]
