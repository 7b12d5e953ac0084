"""End to end on a real dagster-daemon with PostgreSQL storage: CRM edits reach CleverTap.

The daemon loads workspace.yaml and the project's dagster.yaml; nothing but the change sensor
starts a run. The sensor's first tick finds no cursor and starts the initial sync; after that
each CRM edit must reach the CleverTap emulator within a minute. Events are counted only once
the sensor, looking after every run had ended, found nothing more to sync: a second event sent
by a run a later tick started would be counted too.
"""

import time

import pandas as pd
import pytest
from dagster._core.scheduler.instigation import TickStatus

from ct_pipeline_tests.automation.daemon import (
    PG_SKIP_REASON,
    DaemonStack,
    postgres_configured,
    running_stack,
)

EDIT_DEADLINE_SECONDS = 60
FIRST_SYNC_TIMEOUT_SECONDS = 120
CITY_TIMEOUT_SECONDS = 75
STAGE_TIMEOUT_SECONDS = 75
# A tick every 15 s; a cursor in a run's own second costs one more run (about 10 s) and tick.
SETTLED_TIMEOUT_SECONDS = 60
# Starting PostgreSQL's scratch database and the sandbox, and stopping the daemon's group.
START_AND_STOP_SECONDS = 60
# Every wait may run to its limit and the test still fails with its own message, not pytest's.
TEST_TIMEOUT_SECONDS = (
    FIRST_SYNC_TIMEOUT_SECONDS
    + CITY_TIMEOUT_SECONDS
    + STAGE_TIMEOUT_SECONDS
    + SETTLED_TIMEOUT_SECONDS
    + START_AND_STOP_SECONDS
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not postgres_configured(), reason=PG_SKIP_REASON),
    pytest.mark.timeout(TEST_TIMEOUT_SECONDS),
]

CHANGE_SENSOR = "zoho_changes_sensor"
STAGE_EVENT = "Deal Stage Changed"
NEW_STAGE = "Closed Lost"


def test_crm_edits_reach_clevertap_through_the_daemon_within_a_minute(tmp_path):
    with running_stack(tmp_path) as stack:
        stack.wait_for("the first sync", lambda: succeeded(stack), FIRST_SYNC_TIMEOUT_SECONDS)
        profile = pushed_profiles(stack).iloc[0]

        city_latency = edit_city_and_wait(
            stack, profile.crm_contact_id, profile.identity, "Shillong"
        )

        deal = open_deal_of_pushed_contact(stack)
        stack.zoho("POST", "records/Deals", [{"id": deal["id"], "Stage": NEW_STAGE}])
        stack.wait_for(
            "the stage event", lambda: stage_events(stack, deal["id"]), STAGE_TIMEOUT_SECONDS
        )
        stack.wait_for(
            "a tick finding no change after every run ended",
            lambda: settled(stack),
            SETTLED_TIMEOUT_SECONDS,
        )
        events = stage_events(stack, deal["id"])

        assert city_latency < EDIT_DEADLINE_SECONDS
        assert len(events) == 1
        assert events[0]["evtData"]["stage_name"] == NEW_STAGE
        assert events[0]["evtData"]["previous_stage"] == deal["Stage"]
        assert stack.runs("nightly_full_sync") == []
        assert all(run.is_success for run in stack.runs("incremental_sync")), stack.tail()


def settled(stack: DaemonStack) -> bool:
    """Whether the change sensor skipped with no change in a tick evaluated after every run
    had ended: no run is on its way, so everything the CRM edits cause has arrived."""
    records = stack.instance.get_run_records()
    if not records or any(not record.dagster_run.is_finished for record in records):
        return False
    last_end = max(record.end_time or 0.0 for record in records)
    return any(
        tick.status == TickStatus.SKIPPED and (tick.skip_reason or "").startswith("no change")
        for tick in stack.sensor_ticks(CHANGE_SENSOR, after=last_end)
    )


def succeeded(stack: DaemonStack, job_name: str = "incremental_sync") -> bool:
    """Whether a run of `job_name` has succeeded."""
    return any(run.is_success for run in stack.runs(job_name))


def pushed_profiles(stack: DaemonStack) -> pd.DataFrame:
    """Profiles CleverTap accepted, with their Zoho Contact ids."""
    pushed = stack.warehouse.read_table("clevertap_pushed_profiles", columns=["identity"])
    profiles = stack.warehouse.read_table(
        "profile_attributes", columns=["identity", "crm_contact_id"]
    )
    return profiles[profiles["identity"].isin(pushed["identity"])].sort_values("crm_contact_id")


def edit_city_and_wait(stack: DaemonStack, contact_id: str, identity: str, city: str) -> float:
    """Edit a Contact's city in Zoho; seconds until CleverTap's profile holds it."""
    edited = time.monotonic()
    stack.zoho("POST", "records/Contacts", [{"id": contact_id, "Mailing_City": city}])
    stack.wait_for(
        f"City {city} in CleverTap",
        lambda: city_in_clevertap(stack, identity) == city,
        CITY_TIMEOUT_SECONDS,
    )
    return time.monotonic() - edited


def city_in_clevertap(stack: DaemonStack, identity: str) -> str | None:
    """The City CleverTap holds on the profile of `identity`."""
    profiles = stack.clevertap("GET", "profiles", identity=identity)["profiles"]
    return profiles[0]["profileData"].get("City") if profiles else None


def open_deal_of_pushed_contact(stack: DaemonStack) -> pd.Series:
    """An open deal whose Contact's profile CleverTap holds."""
    deals = stack.warehouse.read_table("zoho_deals", columns=["id", "Stage", "Contact_Name_id"])
    pushed = set(pushed_profiles(stack)["crm_contact_id"])
    candidates = deals[deals["Contact_Name_id"].isin(pushed) & (deals["Stage"] != NEW_STAGE)]
    return candidates.sort_values("id").iloc[0]


def stage_events(stack: DaemonStack, deal_id: str) -> list[dict]:
    """The stage events CleverTap received for one deal."""
    events = stack.clevertap("GET", "events", name=STAGE_EVENT)["events"]
    return [event for event in events if event["evtData"].get("deal_id") == deal_id]
