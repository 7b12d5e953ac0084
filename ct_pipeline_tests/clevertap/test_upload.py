"""Uploads against the CleverTap emulator over HTTP: batching, per-record outcomes, retries."""

from __future__ import annotations

import logging
import threading
import time

import dagster as dg
import pytest

from ct_pipeline.clevertap import (
    BatchResult,
    CleverTapResource,
    UploadItem,
    build_event_record,
    build_profile_record,
)
from ct_pipeline.sandbox.clevertap_emulator import create_clevertap_app
from ct_pipeline.sandbox.server import serving
from ct_pipeline_tests.clevertap.conftest import (
    PROFILE_TS,
    SandboxAdmin,
    phone_of,
    profile_items,
    sandbox_client,
)

UPLOAD = "/1/upload"


def event_items(count: int) -> list[UploadItem]:
    """`count` valid event items keyed outbox-<n>, each for its own made-up phone number."""
    return [
        UploadItem(
            f"outbox-{n}",
            build_event_record(
                phone_of(100 + n),
                "Deal Stage Changed",
                {"stage_name": "Won", "amount": 1500 + n},
                PROFILE_TS,
            ),
        )
        for n in range(count)
    ]


def wait_for_every_answer(sandbox: SandboxAdmin, within_seconds: float = 5.0) -> None:
    """Wait until the emulator has answered every request it received: one the client gave up
    on goes on, and must not land in the next test's account."""
    deadline = time.monotonic() + within_seconds
    while any(request["status"] is None for request in sandbox.requests()):
        assert time.monotonic() < deadline, "the emulator never answered a request"
        time.sleep(0.05)


def test_2500_records_go_in_three_requests_of_at_most_1000(clevertap, sandbox: SandboxAdmin):
    report = clevertap.upload(profile_items(2500))

    sent = sandbox.requests(UPLOAD)
    assert sorted(len(request["body"]["d"]) for request in sent) == [500, 1000, 1000]
    assert report.requests == 3 and report.batches == 3
    assert report.counts["accepted"] == 2500
    assert sandbox.profile_count() == 2500


def test_configured_batch_size_sets_records_per_request(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, batch_size=100)

    report = client.upload(profile_items(250))

    assert sorted(len(request["body"]["d"]) for request in sandbox.requests(UPLOAD)) == [
        50,
        100,
        100,
    ]
    assert {outcome.batch for outcome in report.outcomes} == {1, 2, 3}


def test_every_request_carries_the_account_headers_and_json(clevertap, sandbox: SandboxAdmin):
    clevertap.upload(profile_items(1))

    (request,) = sandbox.requests(UPLOAD)
    headers = {name.lower(): value for name, value in request["headers"].items()}
    assert headers["x-clevertap-account-id"] == clevertap.account_id
    assert "x-clevertap-passcode" in headers
    assert headers["content-type"] == "application/json"


def test_mixed_answer_maps_each_outcome_back_to_its_key(clevertap, sandbox: SandboxAdmin):
    items = profile_items(10)
    refused = {3: 516, 7: 555}
    sandbox.faults(reject=[{"identity": phone_of(n), "code": code} for n, code in refused.items()])

    report = clevertap.upload(items)

    assert report.requests == 1
    outcomes = report.by_key()
    for n in range(10):
        outcome = outcomes[f"zoho-{n}"]
        if n in refused:
            assert (outcome.outcome, outcome.code) == ("rejected", refused[n])
            assert f"Skipped record number : {n + 1}" in outcome.error
        else:
            assert outcome.outcome == "accepted"
    assert sandbox.profile_count() == 8


def test_rejections_map_to_their_keys_when_the_echo_is_not_byte_identical(
    clevertap, sandbox: SandboxAdmin
):
    items = [*profile_items(6), *event_items(6)]
    refused = {"zoho-2": phone_of(2), "outbox-4": phone_of(104)}
    sandbox.faults(
        reject=[{"identity": identity, "code": 555} for identity in refused.values()],
        echo="normalised",
    )

    report = clevertap.upload(items)

    assert report.keys_with("rejected") == list(refused)
    assert report.counts["accepted"] == 10
    assert not any(outcome.maybe_delivered for outcome in report.outcomes)
    assert sandbox.profile_count() == 10


def test_rejections_in_later_batches_map_to_the_right_keys(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, batch_size=4)
    sandbox.faults(reject=[{"identity": phone_of(9), "code": 555}])

    report = client.upload(profile_items(12))

    assert report.keys_with("rejected") == ["zoho-9"]
    assert report.by_key()["zoho-9"].batch == 3
    assert report.counts["accepted"] == 11


def test_locally_invalid_records_are_reported_and_never_sent(clevertap, sandbox: SandboxAdmin):
    good = profile_items(2)
    bad_phone = UploadItem(
        "zoho-bad-phone", build_profile_record("C-9", {"Phone": "98765 43210"}, PROFILE_TS)
    )
    no_identity = UploadItem("zoho-anon", build_profile_record(None, {"Name": "X"}, PROFILE_TS))

    report = clevertap.upload([good[0], bad_phone, no_identity, good[1]])

    assert [outcome.outcome for outcome in report.outcomes] == [
        "accepted",
        "rejected_locally",
        "rejected_locally",
        "accepted",
    ]
    assert "516" in report.by_key()["zoho-bad-phone"].error
    assert report.by_key()["zoho-anon"].batch is None
    (request,) = sandbox.requests(UPLOAD)
    assert [record["identity"] for record in request["body"]["d"]] == [phone_of(0), phone_of(1)]


def test_events_are_uploaded_and_appended_to_the_profile(clevertap, sandbox: SandboxAdmin):
    identity = phone_of(42)
    items = [
        UploadItem(
            f"outbox-{stage}",
            build_event_record(
                identity,
                "Deal Stage Changed",
                {"stage_name": stage, "previous_stage": previous},
                PROFILE_TS,
            ),
        )
        for previous, stage in (("Qualification", "Proposal"), ("Proposal", "Closed Won"))
    ]

    report = clevertap.upload(items)

    assert report.all_accepted
    stored = sandbox.events(identity=identity, name="Deal Stage Changed")
    assert len(stored) == 2


def test_a_429_storm_that_ends_is_retried_to_success(clevertap, sandbox: SandboxAdmin):
    sandbox.faults(uploads_429=3)

    report = clevertap.upload(profile_items(5))

    assert report.all_accepted
    assert report.requests == 4
    assert clevertap.usage()[UPLOAD] == 4


def test_a_503_storm_that_ends_is_retried_to_success(clevertap, sandbox: SandboxAdmin):
    sandbox.faults(uploads_5xx=3, status_5xx=503)

    report = clevertap.upload(profile_items(5))

    assert report.all_accepted
    assert report.requests == 4


def test_a_500_is_retried_by_default(clevertap, sandbox: SandboxAdmin):
    sandbox.faults(uploads_5xx=2, status_5xx=500)

    report = clevertap.upload(profile_items(5))

    assert report.all_accepted
    assert report.requests == 3


def test_a_500_is_not_retried_when_uncertain_retries_are_off(clevertap, sandbox: SandboxAdmin):
    sandbox.faults(uploads_5xx=1, status_5xx=500)

    report = clevertap.upload(profile_items(5), retry_uncertain=False)

    assert report.requests == 1
    assert {outcome.outcome for outcome in report.outcomes} == {"failed"}
    assert all(outcome.maybe_delivered for outcome in report.outcomes)
    assert "HTTP 500" in report.outcomes[0].error


def test_a_429_is_retried_even_when_uncertain_retries_are_off(clevertap, sandbox: SandboxAdmin):
    sandbox.faults(uploads_429=2)

    report = clevertap.upload(profile_items(3), retry_uncertain=False)

    assert report.all_accepted and report.requests == 3


def test_a_storm_that_never_ends_fails_every_record_and_drops_none(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, max_retries=2)
    sandbox.faults(outage=True)
    items = profile_items(2500)

    report = client.upload(items)

    assert [outcome.key for outcome in report.outcomes] == [item.key for item in items]
    assert report.counts["failed"] == 2500
    assert report.requests == 3 * 3
    assert all(
        outcome.code == 503 and "after 3 attempts" in outcome.error for outcome in report.outcomes
    )
    assert not any(outcome.maybe_delivered for outcome in report.outcomes)


def test_a_429_storm_that_never_ends_fails_every_record_with_429_and_drops_none(
    sandbox: SandboxAdmin,
):
    client = sandbox_client(sandbox.url, max_retries=2)
    sandbox.faults(uploads_429=1_000_000)
    items = profile_items(2500)

    report = client.upload(items)

    assert [outcome.key for outcome in report.outcomes] == [item.key for item in items]
    assert report.counts["failed"] == 2500
    assert report.fatal_error is None
    assert report.requests == 3 * 3
    assert all(
        outcome.code == 429
        and outcome.batch is not None
        and "Too many concurrent requests" in outcome.error
        and "after 3 attempts" in outcome.error
        for outcome in report.outcomes
    )
    # A 429 means CleverTap did nothing: the records can be sent again without a duplicate.
    assert not any(outcome.maybe_delivered for outcome in report.outcomes)
    assert sandbox.stats()["responses"] == {"429": 9}
    assert sandbox.profile_count() == 0


def test_a_timeout_is_retried_by_default(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, timeout_seconds=0.3)
    sandbox.faults(slow_seconds=1.0, slow_count=1)

    report = client.upload(profile_items(2))

    assert report.all_accepted and report.requests == 2
    wait_for_every_answer(sandbox)


def test_a_timeout_without_uncertain_retries_fails_as_maybe_delivered(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, timeout_seconds=0.3)
    sandbox.faults(slow_seconds=1.0, slow_count=1)

    report = client.upload(profile_items(2), retry_uncertain=False)

    assert report.requests == 1
    assert {outcome.outcome for outcome in report.outcomes} == {"failed"}
    assert all(outcome.maybe_delivered for outcome in report.outcomes)
    assert "ReadTimeout" in report.outcomes[0].error
    # CleverTap went on with the request after the client gave up: it was delivered after all.
    wait_for_every_answer(sandbox)
    assert sandbox.profile_count() == 2


def test_bad_credentials_fail_every_record_and_stop_sending(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, passcode="wrong-passcode", max_concurrency=1)

    report = client.upload(profile_items(2500))

    assert report.requests == 1
    assert report.counts["failed"] == 2500
    assert report.fatal_error is not None and "HTTP 401" in report.fatal_error
    assert "wrong-passcode" not in report.fatal_error
    assert "not sent" in report.by_key()["zoho-2499"].error
    assert sandbox.profile_count() == 0


def test_unreachable_host_fails_every_record(sandbox: SandboxAdmin):
    client = sandbox_client("http://127.0.0.1:9", max_retries=1)

    report = client.upload(profile_items(3))

    assert report.counts["failed"] == 3
    assert "could not reach CleverTap" in report.outcomes[0].error
    assert not report.outcomes[0].maybe_delivered


def test_dry_run_builds_and_validates_but_sends_nothing(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, dry_run=True)
    invalid = UploadItem("zoho-anon", build_profile_record(None, {"Name": "X"}, PROFILE_TS))

    report = client.upload([*profile_items(2500), invalid])

    assert sandbox.requests() == []
    assert report.dry_run and report.requests == 0
    assert [request.records for request in report.planned] == [1000, 1000, 500]
    assert report.planned[0].url == f"{sandbox.url}/1/upload"
    assert report.planned[0].body["d"][0]["identity"] == phone_of(0)
    assert report.counts["dry_run"] == 2500
    assert report.by_key()["zoho-anon"].outcome == "rejected_locally"


def test_on_batch_done_reports_each_batch_once_in_the_calling_thread(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, batch_size=10, max_concurrency=4)
    invalid = UploadItem("zoho-anon", build_profile_record(None, {"Name": "X"}, PROFILE_TS))
    seen: list[BatchResult] = []
    threads: set[int] = set()

    def record_batch(result: BatchResult) -> None:
        seen.append(result)
        threads.add(threading.get_ident())

    report = client.upload([invalid, *profile_items(45)], on_batch_done=record_batch)

    assert threads == {threading.get_ident()}
    assert seen[0].batch is None and [o.key for o in seen[0].outcomes] == ["zoho-anon"]
    assert sorted(result.batch for result in seen[1:]) == [1, 2, 3, 4, 5]
    keys = [outcome.key for result in seen for outcome in result.outcomes]
    assert sorted(keys) == sorted(outcome.key for outcome in report.outcomes)


def test_a_failing_callback_stops_batches_not_yet_started(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, batch_size=10, max_concurrency=1)

    def failing(result: BatchResult) -> None:
        raise RuntimeError("warehouse is down")

    with pytest.raises(RuntimeError, match="warehouse is down"):
        client.upload(profile_items(100), on_batch_done=failing)

    assert len(sandbox.requests(UPLOAD)) < 10


def test_each_batch_is_announced_before_its_request_leaves(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, batch_size=10, max_concurrency=3)
    invalid = UploadItem("zoho-anon", build_profile_record(None, {"Name": "X"}, PROFILE_TS))
    numbers: list[int] = []
    announced: list[str] = []

    def sending(number: int, batch) -> None:
        # The request log never holds a batch whose announcement has not happened yet.
        logged = {r["body"]["d"][0]["identity"] for r in sandbox.requests(UPLOAD)}
        assert batch[0].record["identity"] not in logged
        numbers.append(number)
        announced.extend(item.key for item in batch)

    report = client.upload([invalid, *profile_items(25)], on_batch_sending=sending)

    assert sorted(numbers) == [1, 2, 3]
    assert sorted(announced) == sorted(report.keys_with("accepted"))
    assert "zoho-anon" not in announced
    dry = sandbox_client(sandbox.url, dry_run=True).upload(
        profile_items(5), on_batch_sending=sending
    )
    assert dry.dry_run and len(announced) == 25


def test_a_failing_announcement_keeps_its_batch_from_being_sent(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, batch_size=10, max_concurrency=1)

    def failing(number: int, batch) -> None:
        raise RuntimeError("warehouse is down")

    with pytest.raises(RuntimeError, match="warehouse is down"):
        client.upload(profile_items(30), on_batch_sending=failing)

    assert sandbox.requests(UPLOAD) == []


def test_uploads_in_flight_stay_within_max_concurrency():
    with serving(create_clevertap_app(max_concurrent_uploads=3)) as server:
        admin = SandboxAdmin(server.url)
        admin.faults(slow_seconds=0.2)
        client = sandbox_client(server.url, batch_size=10, max_concurrency=3)

        report = client.upload(profile_items(90))

        stats = admin.stats()
        admin.close()
    assert report.all_accepted and report.requests == 9
    assert stats["max_in_flight"][UPLOAD] == 3
    assert stats["refused_over_concurrency"][UPLOAD] == 0


def test_duplicate_keys_are_refused_before_sending(clevertap, sandbox: SandboxAdmin):
    items = profile_items(2)

    with pytest.raises(ValueError, match="zoho-0"):
        clevertap.upload([items[0], items[0]])
    assert sandbox.requests() == []


def test_logs_never_carry_the_passcode_or_a_phone_number(
    sandbox: SandboxAdmin, caplog: pytest.LogCaptureFixture
):
    client = sandbox_client(sandbox.url)
    sandbox.faults(uploads_429=2, reject=[{"identity": phone_of(1), "code": 516}])
    bad = UploadItem("zoho-bad", build_profile_record("C-1", {"Phone": "9876543210"}, PROFILE_TS))

    with caplog.at_level(logging.DEBUG, logger="ct_pipeline"):
        client.upload([*profile_items(3), bad])

    assert "retry 1 of 4" in caplog.text
    assert client.passcode not in caplog.text
    assert "+9190" not in caplog.text and "9876543210" not in caplog.text


def test_an_empty_upload_sends_nothing(clevertap, sandbox: SandboxAdmin):
    report = clevertap.upload([])

    assert report.outcomes == () and report.requests == 0
    assert sandbox.requests() == []


def test_the_resource_uploads_from_inside_a_dagster_asset(sandbox: SandboxAdmin):
    @dg.asset
    def clevertap_profile_sync(clevertap: CleverTapResource) -> dict[str, int]:
        return clevertap.upload(profile_items(3)).counts

    result = dg.materialize(
        [clevertap_profile_sync], resources={"clevertap": sandbox_client(sandbox.url)}
    )

    assert result.output_for_node("clevertap_profile_sync")["accepted"] == 3
    assert sandbox.profile_count() == 3


def test_event_property_limit_follows_the_account_setting(sandbox: SandboxAdmin):
    wide = UploadItem(
        "outbox-wide",
        build_event_record(
            phone_of(1), "Profile Audited", {f"p{i}": i for i in range(150)}, PROFILE_TS
        ),
    )

    default_limit = sandbox_client(sandbox.url, dry_run=True).upload([wide])
    raised_limit = sandbox_client(sandbox.url, dry_run=True, max_event_properties=256).upload(
        [wide]
    )

    assert default_limit.outcomes[0].outcome == "rejected_locally"
    assert raised_limit.outcomes[0].outcome == "dry_run"


def test_a_generator_is_read_as_the_batches_go_out(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, batch_size=10, max_concurrency=2)
    consumed = 0
    consumed_at_first_answer: list[int] = []

    def items():
        nonlocal consumed
        for item in profile_items(300):
            consumed += 1
            yield item

    def record_batch(result: BatchResult) -> None:
        consumed_at_first_answer.append(consumed)

    report = client.upload(items(), on_batch_done=record_batch)

    assert report.counts["accepted"] == 300 and report.requests == 30
    # Two request slots, two batches built ahead for each: at most four batches were read (and
    # a fifth begun) before the first answer.
    assert consumed_at_first_answer[0] <= 5 * 10
    assert [outcome.key for outcome in report.outcomes] == [i.key for i in profile_items(300)]


def test_a_key_repeated_in_a_generator_fails_when_reached(sandbox: SandboxAdmin):
    client = sandbox_client(sandbox.url, batch_size=10)
    twice = [*profile_items(5), *profile_items(1)]

    with pytest.raises(ValueError, match="twice"):
        client.upload(item for item in twice)
