"""The inbox sensor (a run for new events, a retry later for events a failed run left, else a
skip with the reason) and the check that the inbox is not stalled."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from ct_pipeline.assets.writeback import webhook_inbox_not_stalled
from ct_pipeline.sensors import RETRY_AFTER_SECONDS, webhook_inbox_sensor
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.webhooks import parse_delivery
from ct_pipeline.webhooks.inbox import ensure_inbox_tables, store_delivery
from ct_pipeline_tests.automation.conftest import unfinished_run


def tick(
    warehouse: WarehouseResource,
    cursor: str | None = None,
    instance: dg.DagsterInstance | None = None,
):
    context = dg.build_sensor_context(
        instance=instance or dg.DagsterInstance.ephemeral(),
        cursor=cursor,
        resources={"warehouse": warehouse},
    )
    return webhook_inbox_sensor(context)


def receive(warehouse: WarehouseResource, identity: str) -> None:
    raw = json.dumps({"key_values": {"event": "Charged"}, "profiles": [{"identity": identity}]})
    store_delivery(warehouse, parse_delivery(raw.encode()), raw.encode())


def test_an_empty_inbox_skips_with_the_reason(warehouse: WarehouseResource):
    ensure_inbox_tables(warehouse)

    result = tick(warehouse)

    assert isinstance(result, dg.SkipReason)
    assert "no webhook events pending" in result.skip_message


def test_new_events_request_one_run_and_move_the_cursor(warehouse: WarehouseResource):
    ensure_inbox_tables(warehouse)
    receive(warehouse, "a")

    result = tick(warehouse)

    assert [request.run_key for request in result.run_requests][0].startswith("inbox:")
    assert json.loads(result.cursor)["newest"]


@pytest.mark.parametrize(
    "status", [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED], ids=lambda s: s.value
)
def test_no_run_is_requested_while_a_writeback_run_is_queued_or_in_progress(
    sqlite_warehouse: WarehouseResource, status: dg.DagsterRunStatus
):
    instance = dg.DagsterInstance.ephemeral()
    ensure_inbox_tables(sqlite_warehouse)
    receive(sqlite_warehouse, "a")
    syncing = dg.DagsterInstance.ephemeral()
    unfinished_run(instance, status, "crm_writeback")
    unfinished_run(syncing, status, "incremental_sync")

    busy = tick(sqlite_warehouse, instance=instance)
    beside_a_sync = tick(sqlite_warehouse, instance=syncing)

    assert isinstance(busy, dg.SkipReason)
    assert busy.skip_message == "1 events pending; a write-back run is in flight"
    assert beside_a_sync.run_requests[0].run_key.startswith("inbox:")


def test_events_a_run_left_pending_are_retried_only_after_the_interval(
    sqlite_warehouse: WarehouseResource,
):
    ensure_inbox_tables(sqlite_warehouse)
    receive(sqlite_warehouse, "a")
    first = tick(sqlite_warehouse)

    soon = tick(sqlite_warehouse, cursor=first.cursor)
    stale_cursor = {**json.loads(first.cursor), "requested_at": time.time() - RETRY_AFTER_SECONDS}
    later = tick(sqlite_warehouse, cursor=json.dumps(stale_cursor))
    receive(sqlite_warehouse, "b")
    newer = tick(sqlite_warehouse, cursor=first.cursor)

    assert isinstance(soon, dg.SkipReason)
    assert "still pending" in soon.skip_message
    assert later.run_requests[0].run_key.startswith("retry:")
    assert newer.run_requests[0].run_key.startswith("inbox:")
    assert newer.run_requests[0].run_key != first.run_requests[0].run_key


def test_an_event_waiting_over_six_hours_fails_the_stalled_inbox_check(
    sqlite_warehouse: WarehouseResource,
):
    ensure_inbox_tables(sqlite_warehouse)
    raw = json.dumps({"key_values": {"event": "Charged"}, "profiles": [{"identity": "a"}]})
    long_ago = datetime.now(UTC) - timedelta(hours=7)
    store_delivery(sqlite_warehouse, parse_delivery(raw.encode()), raw.encode(), long_ago)
    receive(sqlite_warehouse, "b")

    result = webhook_inbox_not_stalled(warehouse=sqlite_warehouse)

    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["stale"].value == 1
