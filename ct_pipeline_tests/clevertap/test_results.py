"""Reading CleverTap's upload answer into one outcome per record, whatever shape it comes in."""

from __future__ import annotations

from ct_pipeline.clevertap.http import ApiResponse
from ct_pipeline.clevertap.results import (
    ItemOutcome,
    UploadItem,
    UploadReport,
    batch_outcomes,
)


def items(count: int) -> list[UploadItem]:
    """`count` distinct event items keyed k0, k1, ..."""
    return [
        UploadItem(
            f"k{i}",
            {"type": "event", "identity": f"id-{i}", "evtName": "Seen", "evtData": {"n": i}},
        )
        for i in range(count)
    ]


def answer(body: object, status: int = 200, **extra: object) -> ApiResponse:
    """A response as the transport hands it over."""
    return ApiResponse(status=status, body=body, attempts=1, **extra)


def rejection(code: int, number: int, record: object | None = None, **extra: object) -> dict:
    """An `unprocessed` entry in CleverTap's documented form (1-based record number)."""
    entry = {
        "status": "fail",
        "code": code,
        "error": f"Bad record. ErrorCode: {code} - whatever. Skipped record number : {number}",
        **extra,
    }
    if record is not None:
        entry["record"] = record
    return entry


def outcomes_by_key(outcomes: tuple[ItemOutcome, ...]) -> dict[str, str]:
    """key -> outcome name."""
    return {outcome.key: outcome.outcome for outcome in outcomes}


def test_success_accepts_every_record():
    batch = items(3)

    outcomes = batch_outcomes(1, batch, answer({"status": "success", "processed": 3}))

    assert outcomes_by_key(outcomes) == {"k0": "accepted", "k1": "accepted", "k2": "accepted"}
    assert {outcome.batch for outcome in outcomes} == {1}


def test_partial_answer_rejects_only_the_named_records():
    batch = items(4)
    body = {
        "status": "partial",
        "processed": 2,
        "unprocessed": [
            rejection(509, 2, batch[1].record),
            rejection(523, 4, batch[3].record),
        ],
    }

    outcomes = batch_outcomes(7, batch, answer(body))

    assert outcomes_by_key(outcomes) == {
        "k0": "accepted",
        "k1": "rejected",
        "k2": "accepted",
        "k3": "rejected",
    }
    assert (outcomes[1].code, outcomes[3].code) == (509, 523)
    assert "Skipped record number : 2" in outcomes[1].error


def test_rejection_is_mapped_by_the_echoed_record_when_no_position_is_given():
    batch = items(3)
    entry = {
        "status": "fail",
        "code": 512,
        "error": "Invalid event structure",
        "record": batch[2].record,
    }

    outcomes = batch_outcomes(
        1, batch, answer({"status": "partial", "processed": 2, "unprocessed": [entry]})
    )

    assert outcomes_by_key(outcomes) == {"k0": "accepted", "k1": "accepted", "k2": "rejected"}


def test_zero_based_index_field_is_used_when_present():
    batch = items(3)
    entry = {"status": "fail", "code": 525, "error": "Bad timestamp", "index": 0}

    outcomes = batch_outcomes(
        1, batch, answer({"status": "partial", "processed": 2, "unprocessed": [entry]})
    )

    assert outcomes_by_key(outcomes) == {"k0": "rejected", "k1": "accepted", "k2": "accepted"}


def test_echoed_record_wins_over_a_position_that_disagrees():
    batch = items(3)
    entry = rejection(509, 1, batch[2].record)

    outcomes = batch_outcomes(
        1, batch, answer({"status": "partial", "processed": 2, "unprocessed": [entry]})
    )

    assert outcomes_by_key(outcomes) == {"k0": "accepted", "k1": "accepted", "k2": "rejected"}


def normalised(record: dict) -> dict:
    """A record written back the way a server that parsed it might: numbers as floats."""
    return {
        **record,
        "ts": 1768469400.0,
        "evtData": {key: float(value) for key, value in record["evtData"].items()},
    }


def test_a_position_is_trusted_when_the_counts_add_up_and_the_echo_names_the_record():
    batch = items(4)
    body = {
        "status": "partial",
        "processed": 2,
        "unprocessed": [
            rejection(555, 2, normalised(batch[1].record)),
            rejection(555, 4, normalised(batch[3].record)),
        ],
    }

    outcomes = batch_outcomes(1, batch, answer(body))

    assert outcomes_by_key(outcomes) == {
        "k0": "accepted",
        "k1": "rejected",
        "k2": "accepted",
        "k3": "rejected",
    }


def test_a_number_identity_written_as_text_still_names_the_record():
    batch = [UploadItem("k0", {"type": "profile", "identity": 42, "profileData": {"n": 1}})]
    echo = {"type": "profile", "identity": "42", "profileData": {"n": 1.0}}
    body = {"status": "fail", "processed": 0, "unprocessed": [rejection(555, 1, echo)]}

    assert outcomes_by_key(batch_outcomes(1, batch, answer(body))) == {"k0": "rejected"}


def test_a_position_whose_echo_names_another_identity_is_not_trusted():
    batch = items(3)
    echo = {**normalised(batch[1].record), "identity": "someone-else"}
    body = {"status": "partial", "processed": 2, "unprocessed": [rejection(555, 2, echo)]}

    outcomes = batch_outcomes(1, batch, answer(body))

    assert outcomes_by_key(outcomes) == {"k0": "failed", "k1": "failed", "k2": "failed"}
    assert all(outcome.maybe_delivered for outcome in outcomes)


def test_a_position_whose_echo_names_another_event_is_not_trusted():
    batch = items(2)
    echo = {**normalised(batch[0].record), "evtName": "Other"}
    body = {"status": "partial", "processed": 1, "unprocessed": [rejection(555, 1, echo)]}

    assert set(outcomes_by_key(batch_outcomes(1, batch, answer(body))).values()) == {"failed"}


def test_an_inexact_echo_is_not_trusted_when_the_counts_do_not_add_up():
    batch = items(3)
    for processed in (1, None):
        body = {
            "status": "partial",
            "processed": processed,
            "unprocessed": [rejection(555, 2, normalised(batch[1].record))],
        }

        outcomes = batch_outcomes(1, batch, answer(body))

        assert set(outcomes_by_key(outcomes).values()) == {"failed"}


def test_an_inexact_echo_without_a_position_names_the_one_record_it_fits():
    batch = items(3)
    entry = {"status": "fail", "code": 555, "error": "Server error"}
    body = {
        "status": "partial",
        "processed": 2,
        "unprocessed": [{**entry, "record": normalised(batch[2].record)}],
    }

    outcomes = batch_outcomes(1, batch, answer(body))

    assert outcomes_by_key(outcomes) == {"k0": "accepted", "k1": "accepted", "k2": "rejected"}


def test_an_inexact_echo_that_fits_two_records_names_neither():
    batch = [
        UploadItem(f"k{i}", {"type": "event", "identity": "id", "evtName": "Seen", "evtData": {}})
        for i in range(2)
    ]
    echo = {"type": "event", "identity": "id", "evtName": "Seen", "evtData": {}, "ts": 1.0}
    body = {
        "status": "partial",
        "processed": 1,
        "unprocessed": [{"status": "fail", "code": 555, "error": "Server error", "record": echo}],
    }

    assert outcomes_by_key(batch_outcomes(1, batch, answer(body))) == {
        "k0": "failed",
        "k1": "failed",
    }


def test_all_rejected_answer_keeps_every_code():
    batch = items(2)
    body = {
        "status": "fail",
        "processed": 0,
        "unprocessed": [rejection(513, 1, batch[0].record), rejection(513, 2, batch[1].record)],
    }

    outcomes = batch_outcomes(1, batch, answer(body))

    assert [(o.outcome, o.code) for o in outcomes] == [("rejected", 513), ("rejected", 513)]


def test_an_answer_that_does_not_account_for_every_record_accepts_none_of_the_rest():
    batch = items(3)
    body = {
        "status": "partial",
        "processed": 1,
        "unprocessed": [rejection(509, 1, batch[0].record)],
    }

    outcomes = batch_outcomes(1, batch, answer(body))

    assert outcomes_by_key(outcomes) == {"k0": "rejected", "k1": "failed", "k2": "failed"}
    assert outcomes[1].maybe_delivered
    assert "does not account for every record" in outcomes[1].error


def test_an_unmatchable_rejection_accepts_none_of_the_rest():
    batch = items(2)
    entry = {"status": "fail", "code": 555, "error": "Miscellaneous server error"}

    outcomes = batch_outcomes(
        1, batch, answer({"status": "partial", "processed": 1, "unprocessed": [entry]})
    )

    assert outcomes_by_key(outcomes) == {"k0": "failed", "k1": "failed"}


def test_request_level_refusal_with_http_200_fails_the_batch():
    body = {"status": "fail", "error": "Malformed request", "code": 400}

    outcomes = batch_outcomes(1, items(2), answer(body))

    assert {(o.outcome, o.code) for o in outcomes} == {("failed", 400)}
    assert "Malformed request" in outcomes[0].error
    assert not outcomes[0].maybe_delivered


def test_bad_credentials_fail_the_batch_and_say_what_to_check():
    body = {"status": "fail", "error": "Invalid Credentials", "code": 401}

    outcomes = batch_outcomes(1, items(1), answer(body, status=401))

    assert outcomes[0].outcome == "failed"
    assert outcomes[0].code == 401
    assert "CLEVERTAP_PASSCODE" in outcomes[0].error


def test_transport_failure_fails_the_batch_with_the_error():
    response = ApiResponse(None, None, 4, transport_error="ReadTimeout: no answer", uncertain=True)

    outcomes = batch_outcomes(1, items(2), response)

    assert {o.outcome for o in outcomes} == {"failed"}
    assert outcomes[0].error == "ReadTimeout: no answer (after 4 attempts)"
    assert outcomes[0].maybe_delivered


def test_report_frame_has_one_row_per_item_with_nullable_columns():
    report = UploadReport(
        outcomes=(
            ItemOutcome("a", "accepted", batch=1),
            ItemOutcome("b", "rejected", code=516, error="Phone number invalid", batch=1),
            ItemOutcome("c", "rejected_locally", error="no identity"),
        ),
        batches=1,
        requests=1,
    )

    frame = report.as_frame()

    assert list(frame.columns) == ["key", "outcome", "code", "error", "batch", "maybe_delivered"]
    assert frame["key"].tolist() == ["a", "b", "c"]
    assert frame["code"].dtype == "Int64" and frame["code"].isna().tolist() == [True, False, True]
    assert frame["batch"].isna().tolist() == [False, False, True]
    assert report.counts == {
        "accepted": 1,
        "rejected": 1,
        "rejected_locally": 1,
        "failed": 0,
        "dry_run": 0,
    }
    assert report.keys_with("rejected") == ["b"]
