"""The wait between retries: exponential backoff with full jitter, capped, and Retry-After first.

These are unit tests of `http._BackoffWait`; the retries themselves are tested over HTTP in
test_upload.py and test_lookup_and_trigger.py.
"""

from __future__ import annotations

import statistics

import pytest
import requests
import tenacity

from ct_pipeline.clevertap.http import (
    ApiResponse,
    RetryRule,
    _BackoffWait,
    _retry_after_seconds,
    _RetryableStatus,
)

SAMPLES = 2000
RULE = RetryRule(max_retries=10, backoff_base_seconds=1.0, backoff_cap_seconds=60.0)


def waits(rule: RetryRule, attempt: int, failure: BaseException, samples: int = SAMPLES):
    """`samples` waits the rule gives after attempt number `attempt` failed with `failure`."""
    wait = _BackoffWait(rule)
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(failure), failure, None))
    return [wait(state) for _ in range(samples)]


def too_many_requests(retry_after: float | None = None) -> _RetryableStatus:
    answer = ApiResponse(429, {"status": "fail", "code": 429}, attempts=1)
    return _RetryableStatus(answer, retry_after)


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 32.0)]
)
def test_the_ceiling_doubles_with_each_attempt_and_the_wait_is_drawn_below_it(
    attempt: int, ceiling: float
):
    drawn = waits(RULE, attempt, too_many_requests())

    assert all(0 <= wait <= ceiling for wait in drawn)
    # Full jitter: uniform over [0, ceiling], so the draws reach both ends and average half.
    assert min(drawn) < 0.05 * ceiling and max(drawn) > 0.95 * ceiling
    assert statistics.fmean(drawn) == pytest.approx(ceiling / 2, rel=0.1)


@pytest.mark.parametrize("attempt", [7, 12, 40])
def test_the_ceiling_stops_at_the_cap(attempt: int):
    drawn = waits(RULE, attempt, too_many_requests())

    assert max(drawn) <= RULE.backoff_cap_seconds
    assert max(drawn) > 0.95 * RULE.backoff_cap_seconds


def test_a_failed_connection_backs_off_the_same_way():
    drawn = waits(RULE, 3, requests.ConnectionError("refused"))

    assert all(0 <= wait <= 4.0 for wait in drawn) and max(drawn) > 3.8


@pytest.mark.parametrize("attempt", [1, 5])
def test_a_retry_after_header_sets_the_wait_whatever_the_attempt(attempt: int):
    assert set(waits(RULE, attempt, too_many_requests(retry_after=7.0), samples=20)) == {7.0}


def test_a_retry_after_longer_than_the_cap_waits_the_cap():
    assert waits(RULE, 1, too_many_requests(retry_after=3600.0), samples=1) == [60.0]


@pytest.mark.parametrize(
    ("header", "seconds"), [("12", 12.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), (None, None)]
)
def test_retry_after_is_read_as_seconds(header: str | None, seconds: float | None):
    response = requests.Response()
    if header is not None:
        response.headers["Retry-After"] = header

    assert _retry_after_seconds(response) == seconds
