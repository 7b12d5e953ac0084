"""CleverTap misbehaving during the push: nothing accepted is sent again, nothing pending is
forgotten, and every record's outcome is written down where an operator can query it.

Each test disturbs one step of the scenario (see conftest) and, once CleverTap behaves again,
expects the profiles and events an undisturbed run left in CleverTap.
"""

from __future__ import annotations

from collections import Counter

import pytest

from ct_pipeline_tests.pipeline.test_crash_recovery import outbox_command
from ct_pipeline_tests.reliability.conftest import (
    Baseline,
    FaultPipeline,
    apply_edits,
    assert_same_clevertap,
    assert_same_tables,
    failure_messages,
    write_config,
)

EVENT_NAME = "Deal Stage Changed"


def accepted_records(pipeline: FaultPipeline, record_type: str) -> Counter:
    """How many times CleverTap answered 200 to an upload carrying each record's identity."""
    log = pipeline.clevertap("GET", "requests", path="/1/upload")["requests"]
    return Counter(
        record["identity"]
        for entry in log
        if entry["status"] == 200
        for record in (entry.get("body") or {}).get("d", [])
        if record.get("type") == record_type
    )


@pytest.mark.parametrize(
    "fault",
    [{"uploads_429": 6}, {"uploads_5xx": 4, "status_5xx": 503}, {"uploads_5xx": 3}],
    ids=["429-storm", "503-burst", "500-burst"],
)
def test_refused_uploads_are_retried_and_each_profile_is_accepted_exactly_once(
    disturbed: FaultPipeline, undisturbed: Baseline, fault: dict
):
    disturbed.clevertap_faults(**fault)

    assert disturbed.run("nightly_full_sync").success

    stats = disturbed.clevertap("GET", "stats")
    assert sum(count for status, count in stats["responses"].items() if status != "200") > 0
    accepted = accepted_records(disturbed, "profile")
    assert set(accepted) == set(undisturbed.after_full_sync.profiles)
    assert max(accepted.values()) == 1
    after = disturbed.snapshot()
    assert_same_tables(after, undisturbed.after_full_sync)
    assert_same_clevertap(after, undisturbed.after_full_sync)


def test_an_outage_for_the_whole_run_records_every_profile_as_failed_and_the_next_run_sends_them(
    disturbed: FaultPipeline, undisturbed: Baseline
):
    disturbed.clevertap_faults(outage=True)

    result = disturbed.run("nightly_full_sync")

    outcomes = disturbed.warehouse.read_table("clevertap_profile_outcomes")
    assert len(outcomes) == len(undisturbed.after_full_sync.profiles)
    assert set(outcomes["outcome"]) == {"failed"}
    assert disturbed.warehouse.read_table("clevertap_pushed_profiles").empty
    assert disturbed.clevertap("GET", "profiles")["count"] == 0
    assert not result.success, "a run that delivered nothing must not report success"
    profiles = len(outcomes)
    assert f"{profiles} of {profiles} profiles were not delivered after retries (HTTP 503" in (
        failure_messages(result)
    )

    disturbed.clevertap_faults(clear=True)
    assert disturbed.run("incremental_sync").success

    after = disturbed.snapshot()
    assert_same_tables(after, undisturbed.after_full_sync)
    assert_same_clevertap(after, undisturbed.after_full_sync)


def test_events_refused_by_an_outage_stay_pending_and_are_sent_once_it_ends(
    disturbed: FaultPipeline, undisturbed: Baseline
):
    assert disturbed.run("nightly_full_sync").success
    changed = apply_edits(disturbed)
    disturbed.clevertap_faults(outage=True)

    disturbed.run("incremental_sync")

    outbox = disturbed.outbox()
    assert sorted(outbox["deal_id"]) == sorted(changed)
    assert set(outbox["status"]) == {"pending"}  # a 503 proves CleverTap did not take them
    assert disturbed.clevertap("GET", "events")["count"] == 0

    disturbed.clevertap_faults(clear=True)
    assert disturbed.run("incremental_sync").success

    assert set(disturbed.outbox()["status"]) == {"sent"}
    assert max(accepted_records(disturbed, "event").values()) == 1
    after = disturbed.snapshot()
    assert_same_tables(after, undisturbed.after_edits)
    assert_same_clevertap(after, undisturbed.after_edits)


@pytest.mark.parametrize("policy", ["resend", "hold"])
def test_an_event_upload_that_times_out_is_recorded_as_unknown_and_handled_by_the_policy(
    disturbed: FaultPipeline, undisturbed: Baseline, tmp_path, policy: str
):
    disturbed.config_path = write_config(tmp_path, clevertap={"unknown_outcome_policy": policy})
    assert disturbed.run("nightly_full_sync").success
    apply_edits(disturbed)
    # Every answer of this run is late: the profile upload is retried (profiles merge), the
    # event upload is not (CleverTap may have taken it), and its events keep `sending`.
    disturbed.clevertap_faults(slow_seconds=1.0)

    slow = disturbed.run("incremental_sync", timeout_seconds=0.4, max_retries=1)

    assert not slow.success
    explained = failure_messages(slow)
    assert "3 of 3 events were not delivered after retries (ReadTimeout" in explained
    assert "3 of them may have reached CleverTap" in explained
    assert set(disturbed.outbox()["status"]) == {"sending"}
    # The profiles of that run timed out too: their outcome is just as unknown.
    in_flight = set(disturbed.warehouse.read_table("clevertap_profiles_in_flight")["identity"])
    assert in_flight == set(disturbed.warehouse.read_table("clevertap_profile_batches")["identity"])

    disturbed.clevertap_faults(clear=True)
    assert disturbed.run("incremental_sync").success

    outbox = disturbed.outbox()
    stored = [event for event in disturbed.snapshot().events if event[1] == EVENT_NAME]
    expected = undisturbed.after_edits.events
    if policy == "resend":
        assert set(outbox["status"]) == {"sent"}
        # The late request did land: resending costs one duplicate per event of that batch.
        assert sorted(set(stored)) == expected
        assert len(stored) <= 2 * len(expected)
    else:
        assert set(outbox["status"]) == {"held"}
        assert set(outbox["reason"]) == {"unknown_outcome"}
        assert stored == expected  # the late request landed once; nothing was resent
        holds = disturbed.warehouse.read_table("clevertap_profile_holds")
        assert set(holds["identity"]) == in_flight
        # Released, they are sent once more, and the state is the undisturbed run's.
        outbox_command(disturbed, "release", "--all", "--kind", "profile")
        assert disturbed.run("incremental_sync").success
    assert_same_tables(
        disturbed.snapshot(),
        undisturbed.after_edits,
        [t for t in undisturbed.after_edits.tables if t != "event_outbox"],
    )


def test_a_partial_rejection_parks_only_the_refused_records_with_their_code(
    disturbed: FaultPipeline, undisturbed: Baseline
):
    assert disturbed.run("nightly_full_sync").success
    changed = apply_edits(disturbed)
    deals = disturbed.warehouse.read_table("zoho_deals").set_index("id")
    contacts = disturbed.warehouse.read_table("profile_attributes").set_index("crm_contact_id")
    victim = contacts.loc[deals.loc[changed[0], "Contact_Name_id"], "identity"]
    disturbed.clevertap_faults(reject=[{"identity": victim, "code": 512, "error": "refused"}])

    assert disturbed.run("incremental_sync").success

    outbox = disturbed.outbox().set_index("deal_id")
    assert outbox.loc[changed[0], "status"] == "rejected"
    assert int(outbox.loc[changed[0], "code"]) == 512
    assert set(outbox.drop(index=changed[0])["status"]) == {"sent"}
    rejections = disturbed.warehouse.read_table("clevertap_rejections")
    parked = rejections[rejections["kind"] == "event"]
    assert parked["zoho_id"].tolist() == [changed[0]]
    assert parked["code"].astype(int).tolist() == [512]
    events = disturbed.snapshot().events
    assert len(events) == len(undisturbed.after_edits.events) - 1
    assert set(events) < set(undisturbed.after_edits.events)
