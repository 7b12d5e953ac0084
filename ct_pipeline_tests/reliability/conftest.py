"""A harness for the reliability tests: disturbed runs judged against an undisturbed one.

Every test here runs the sync against the emulators over HTTP, injects a fault (through the
emulators' `/__sandbox/faults`, or by killing the run), and then compares what the warehouse and
CleverTap hold with what one undisturbed pass over the same synthetic CRM left behind. That pass
is made once per session (`undisturbed`), on its own emulators and warehouse.

The scenario is always the same two steps, so one baseline serves every test:
1. `nightly_full_sync` on the synthetic CRM;
2. `apply_edits` (a few deals change stage, one contact moves city, all at a fixed
   Modified_Time), then `incremental_sync`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from ct_pipeline.sandbox.launch import start_sandbox
from ct_pipeline.sandbox.synthetic import SyntheticCrm
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.zoho.http import clear_token_cache
from ct_pipeline_tests.pipeline.conftest import Pipeline, move_deals
from ct_pipeline_tests.pipeline.conftest import synthetic_crm as synthetic_crm  # noqa: F401
from ct_pipeline_tests.pipeline.conftest import write_config as write_config

# Tables that hold what the pipeline knows between runs, with the columns that depend on when
# a run happened (not on what it read) left out. Per-run tables (batches, outcomes) are not
# compared: a recovery run rightly has different ones.
STATE_TABLES: dict[str, tuple[list[str], list[str]]] = {
    # table: (sort key, volatile columns)
    "zoho_contacts": (["id"], []),
    "zoho_leads": (["id"], []),
    "zoho_deals": (["id"], []),
    "zoho_cases": (["id"], []),
    "contact_identities": (["module", "zoho_id"], []),
    "identity_review_queue": (["module", "zoho_id", "reason"], []),
    "duplicate_profiles": (["module", "zoho_id"], []),
    "profile_attributes": (["identity"], []),
    "deal_stage_snapshot": (["deal_id"], []),
    "clevertap_pushed_profiles": (["identity"], ["pushed_at"]),
    "event_outbox": (["event_id"], ["created_at", "updated_at", "attempts", "code", "error"]),
}
CHANGED_DEALS = 3
NEW_STAGE = "Closed Lost"
NEW_CITY = "Shillong"
# One Modified_Time for every edit, in the baseline and in each test, so that event ids and
# event times (derived from it) are the same everywhere.
EDIT_TIME = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)


@dataclass
class Snapshot:
    """What the warehouse and CleverTap hold after a scenario, ready to compare."""

    tables: dict[str, pd.DataFrame]
    cursors: dict[str, str]
    profiles: dict[str, dict]
    events: list[tuple]


@dataclass
class FaultPipeline(Pipeline):
    """The pipeline harness with Zoho client settings a test can tighten (timeouts, retries)."""

    zoho_settings: dict[str, Any] = field(default_factory=dict)

    def resources(self, **clevertap_overrides: Any) -> dict[str, Any]:
        resources = super().resources(**clevertap_overrides)
        # A resource is rebuilt from its settings when a run starts: copy them, not the object.
        zoho = resources["zoho"]
        resources["zoho"] = type(zoho)(**{**dict(zoho), **self.zoho_settings})
        return resources

    def zoho_stats(self) -> dict:
        """The Zoho emulator's call statistics."""
        return self.zoho("GET", "stats")

    def zoho_faults(self, **faults: Any) -> None:
        """Queue Zoho faults (see the emulator's `limits.Faults`)."""
        self.zoho("POST", "faults", faults)

    def clevertap_faults(self, **faults: Any) -> None:
        """Set CleverTap faults (see the emulator's `faults.FaultRequest`)."""
        self.clevertap("POST", "faults", faults)

    def snapshot(self) -> Snapshot:
        """The comparable state of the warehouse and of the CleverTap emulator now."""
        return Snapshot(
            tables={name: self.table(name) for name in STATE_TABLES},
            cursors=self.modified_cursors(),
            profiles=clevertap_profiles(self),
            events=clevertap_events(self),
        )

    def table(self, name: str) -> pd.DataFrame:
        """A state table sorted by its key, without run-dependent columns (empty if absent)."""
        key, volatile = STATE_TABLES[name]
        if not self.warehouse.table_exists(name):
            return pd.DataFrame()
        frame = self.warehouse.read_table(name).drop(columns=volatile)
        return frame.sort_values(key).reset_index(drop=True)

    def modified_cursors(self) -> dict[str, str]:
        """The Modified_Time cursor of each module (the deletion cursors are run times)."""
        state = self.warehouse.read_table("sync_state")
        cursors = state[state["key"].str.endswith(".modified_cursor")]
        return dict(zip(cursors["key"], cursors["value"], strict=True))

    def outbox(self) -> pd.DataFrame:
        """The event outbox (empty before the first stage event)."""
        if not self.warehouse.table_exists("event_outbox"):
            return pd.DataFrame(columns=["event_id", "status", "reason", "attempts"])
        return self.warehouse.read_table("event_outbox")


def clevertap_profiles(pipeline: Pipeline) -> dict[str, dict]:
    """Every profile CleverTap holds, as identity -> profile properties."""
    held = pipeline.clevertap("GET", "profiles")["profiles"]
    return {profile["identity"]: profile["profileData"] for profile in held}


def clevertap_events(pipeline: Pipeline) -> list[tuple]:
    """Every event CleverTap holds as (identity, name, time, properties), sorted."""
    held = pipeline.clevertap("GET", "events")["events"]
    return sorted(
        (
            str(event.get("identity")),
            event["evtName"],
            event.get("ts"),
            json.dumps(event.get("evtData"), sort_keys=True),
        )
        for event in held
    )


def apply_edits(pipeline: Pipeline) -> list[str]:
    """Step 2's CRM edits; returns the ids of the deals that changed stage."""
    moved = move_deals(pipeline, NEW_STAGE, CHANGED_DEALS, EDIT_TIME)
    stamp = EDIT_TIME.isoformat()
    pushed = set(pipeline.warehouse.read_table("profile_attributes")["crm_contact_id"])
    contact = sorted(pushed)[0]
    pipeline.zoho(
        "POST",
        "records/Contacts",
        [{"id": contact, "Mailing_City": NEW_CITY, "Modified_Time": stamp}],
    )
    return moved


def assert_same_tables(actual: Snapshot, expected: Snapshot, tables: list[str] | None = None):
    """The named state tables (default: all) and the Modified_Time cursors are identical."""
    for name in tables or list(STATE_TABLES):
        pd.testing.assert_frame_equal(
            actual.tables[name], expected.tables[name], check_dtype=False, obj=name
        )
    assert actual.cursors == expected.cursors


def assert_same_clevertap(actual: Snapshot, expected: Snapshot) -> None:
    """CleverTap holds the same profiles, property for property, and the same events."""
    assert actual.profiles.keys() == expected.profiles.keys()
    differing = [key for key in expected.profiles if actual.profiles[key] != expected.profiles[key]]
    assert differing == [], f"{len(differing)} profiles differ from the undisturbed run"
    assert actual.events == expected.events


@dataclass(frozen=True)
class Baseline:
    """The undisturbed scenario: after step 1 and after step 2."""

    after_full_sync: Snapshot
    after_edits: Snapshot


def run_scenario(pipeline: FaultPipeline) -> Baseline:
    """Both steps of the scenario, undisturbed, returning a snapshot after each."""
    assert pipeline.run("nightly_full_sync").success
    first = pipeline.snapshot()
    apply_edits(pipeline)
    assert pipeline.run("incremental_sync").success
    return Baseline(after_full_sync=first, after_edits=pipeline.snapshot())


@pytest.fixture(scope="session")
def undisturbed(
    synthetic_crm: SyntheticCrm,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Baseline:
    """The scenario run once without faults, on its own emulators and warehouse."""
    path = tmp_path_factory.mktemp("undisturbed") / "warehouse.sqlite"
    with fault_pipeline(synthetic_crm, WarehouseResource(url=f"sqlite:///{path}")) as pipeline:
        return run_scenario(pipeline)


class fault_pipeline:
    """Fresh emulators seeded with a copy of `crm`, the given warehouse and a new instance."""

    def __init__(self, crm: SyntheticCrm, warehouse: WarehouseResource) -> None:
        self.crm = crm
        self.warehouse = warehouse

    def __enter__(self) -> FaultPipeline:
        # A new emulator may reuse an earlier one's port: no token of the old one may be reused.
        clear_token_cache()
        self.sandbox = start_sandbox(crm=copy.deepcopy(self.crm))
        self.instance = dg.DagsterInstance.ephemeral()
        return FaultPipeline(sandbox=self.sandbox, warehouse=self.warehouse, instance=self.instance)

    def __exit__(self, *exc_info: object) -> None:
        self.instance.dispose()
        self.sandbox.stop()


@pytest.fixture
def disturbed(
    synthetic_crm: SyntheticCrm,  # noqa: F811
    sqlite_warehouse: WarehouseResource,
) -> Iterator[FaultPipeline]:
    """A fresh pipeline on an SQLite warehouse, for a test to disturb."""
    yield from _pipeline_on(synthetic_crm, sqlite_warehouse)


@pytest.fixture
def disturbed_on_each_warehouse(
    synthetic_crm: SyntheticCrm,  # noqa: F811
    warehouse: WarehouseResource,
) -> Iterator[FaultPipeline]:
    """A fresh pipeline on SQLite and, when the test database is configured, on PostgreSQL."""
    yield from _pipeline_on(synthetic_crm, warehouse)


def _pipeline_on(crm: SyntheticCrm, warehouse: WarehouseResource) -> Iterator[FaultPipeline]:
    with fault_pipeline(crm, warehouse) as pipeline:
        yield pipeline


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure's message and the messages of its causes, as one text."""
    texts = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            texts.append(error.message)
            error = error.cause
    return "\n".join(texts)
