"""Incremental runs read from Zoho what changed, not what a mass update once stamped.

A cursor's second is read again by the next run, which keeps an edit made in that second. Once
that second is further back than any new edit can be stamped, it is settled, and re-reading it
would make every run fetch again all the records one mass update (or an import) gave that
second, however quiet the CRM has been since. Zoho documents If-Modified-Since as "modified
after" and, by other connectors' accounts, includes its own second; the client asks for the
second before the one it needs until Zoho is seen including it, as the emulator does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from ct_pipeline.assets.zoho import SAME_SECOND_GUARD, TABLES, settled
from ct_pipeline.sandbox.synthetic import SyntheticCrm, generate_crm
from ct_pipeline_tests.pipeline.conftest import SEED, Pipeline

MODULES = tuple(TABLES)
QUIET_CONTACTS = 3_000


@pytest.fixture(scope="module")
def synthetic_crm() -> SyntheticCrm:
    """A CRM whose last edit was an hour ago: every cursor second is settled after a sync.
    Large enough that the Deals of its last second fill more than one page of 200."""
    return generate_crm(QUIET_CONTACTS, seed=SEED, now=datetime.now(UTC) - timedelta(hours=1))


def records_read(result, module: str) -> int:
    """The `records read` a run's materialisation of a Zoho module's table reports."""
    (materialization,) = result.asset_materializations_for_node(TABLES[module])
    return materialization.metadata["records read"].value


def test_a_cursor_second_older_than_the_guard_is_settled_and_a_recent_one_is_not():
    started = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)

    assert settled(started - SAME_SECOND_GUARD - timedelta(seconds=1), started)
    assert not settled(started - SAME_SECOND_GUARD, started)
    assert not settled(started - timedelta(seconds=1), started)


def record_calls(pipeline: Pipeline) -> dict[str, int]:
    """Listing calls the Zoho emulator has answered so far, by module."""
    calls = pipeline.zoho("GET", "stats")["calls"]
    return {module: calls.get(f"GET /crm/v8/{module}", 0) for module in MODULES}


def test_a_quiet_crm_costs_an_incremental_run_one_call_per_module(pipeline: Pipeline):
    assert pipeline.run("nightly_full_sync").success
    deals = pipeline.warehouse.read_table(TABLES["Deals"], columns=["Modified_Time"])
    last_second = pd.to_datetime(deals["Modified_Time"], utc=True)
    # The synthetic CRM, like a real one after a mass update, gives many deals its last second.
    assert (last_second == last_second.max()).sum() > 200

    # The first run sees Zoho include the If-Modified-Since second; later runs rely on it.
    assert pipeline.run("incremental_sync").success
    before = record_calls(pipeline)
    result = pipeline.run("incremental_sync")
    after = record_calls(pipeline)

    assert result.success
    spent = {module: after[module] - before[module] for module in MODULES}
    assert spent == dict.fromkeys(MODULES, 1)
    assert {module: records_read(result, module) for module in MODULES} == dict.fromkeys(MODULES, 0)


def test_an_edit_after_a_settled_cursor_is_read_and_its_own_second_again(pipeline: Pipeline):
    assert pipeline.run("nightly_full_sync").success
    deal = pipeline.warehouse.read_table(TABLES["Deals"]).iloc[0]

    pipeline.zoho("POST", "records/Deals", [{"id": deal["id"], "Stage": "Closed Lost"}])
    first = pipeline.run("incremental_sync")
    # The edit's second is recent, so the next run reads it again in case of a same-second edit.
    second = pipeline.run("incremental_sync")

    assert first.success and second.success
    assert records_read(first, "Deals") == 1
    assert records_read(second, "Deals") == 1
    assert records_read(first, "Contacts") == records_read(second, "Contacts") == 0
    stored = pipeline.warehouse.read_rows(TABLES["Deals"], "id", [deal["id"]])
    assert stored["Stage"].tolist() == ["Closed Lost"]
