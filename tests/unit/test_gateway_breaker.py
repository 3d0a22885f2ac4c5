"""Circuit breaker and fallback regressions: the released probe, what counts as a failure, the
throttling retry, the all-throttled 429, and a fallback's validation error after a primary outage."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import ANY
from conftest import HAIKU, NOVA, Harness, converse_response

from aif_gateway.config import Route
from aif_gateway.provider_types import ProviderError, TokenUsage
from aif_gateway.routing import Router


def expect_converse(h: Harness, model_id: str, **response: Any) -> None:
    h.stubber.add_response(
        "converse",
        converse_response(**response),
        {"modelId": model_id, "messages": ANY, "guardrailConfig": ANY, "requestMetadata": ANY},
    )


def fail(h: Harness, code: str, status: int, message: str = "") -> None:
    h.stubber.add_client_error(
        "converse", service_error_code=code, service_message=message, http_status_code=status
    )


def throttle(h: Harness, times: int = 1) -> None:
    for _ in range(times):
        fail(h, "ThrottlingException", 429)


def open_breaker(h: Harness) -> None:
    breaker = h.gateway.router.breaker(HAIKU)
    for _ in range(breaker.threshold):
        breaker.record_failure()
    h.clock.advance(breaker.cooldown_s + 1)
    assert breaker.state == "half_open"


def test_bad_request_as_half_open_probe_releases_the_probe(harness: Harness) -> None:
    """Regression: a probe that ended in a ValidationException kept the half-open slot taken, so the
    target was skipped for the life of the execution environment."""
    key = harness.add_key()
    open_breaker(harness)
    fail(harness, "ValidationException", 400, "bad schema")
    assert harness.chat(key, model="chat-solo")[0] == 400
    # The next request probes Haiku again (instead of "circuit open") and closes the breaker.
    expect_converse(harness, HAIKU.model_id, text="back")
    status, headers, _ = harness.chat(key, model="chat-solo")
    assert status == 200 and headers["x-aif-served-by"] == "claude-haiku-4-5"
    assert harness.gateway.router.breaker(HAIKU).state == "closed"


def test_unexpected_exception_in_probe_releases_the_probe() -> None:
    router = Router(threshold=1, cooldown_s=10, clock=lambda: 100.0)
    breaker = router.breaker(HAIKU)
    breaker.record_failure()
    breaker._opened_at = 0.0  # long ago: half-open now

    def boom(target: object) -> str:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        router.call(Route("r", "chat", (HAIKU,)), boom)
    assert breaker.allow() is True  # the slot is free for the next probe


def test_access_denied_moves_on_but_does_not_count_against_the_breaker(harness: Harness) -> None:
    key = harness.add_key()
    for _ in range(harness.gateway.config.breaker_failure_threshold + 1):
        fail(harness, "AccessDeniedException", 403)
        expect_converse(harness, NOVA.model_id)
        status, headers, _ = harness.chat(key)
        assert status == 200 and headers["x-aif-served-by"] == "nova-lite"
    assert harness.gateway.router.breaker(HAIKU).state == "closed"


def test_throttled_target_is_retried_once_with_jitter_before_moving_on(harness: Harness) -> None:
    key = harness.add_key()
    t0 = harness.clock()
    throttle(harness)
    expect_converse(harness, HAIKU.model_id, text="second try")
    status, headers, _ = harness.chat(key)
    assert status == 200 and headers["x-aif-served-by"] == "claude-haiku-4-5"
    assert headers["x-aif-attempts"] == "2"
    assert 0.05 <= harness.clock() - t0 <= 0.25  # one jittered pause
    assert harness.gateway.router.breaker(HAIKU).state == "closed"
    harness.stubber.assert_no_pending_responses()


def test_all_targets_throttled_is_429_with_retry_after(harness: Harness) -> None:
    key = harness.add_key()
    throttle(harness, 4)  # Haiku twice (retry), Nova twice
    status, headers, body = harness.chat(key)
    assert status == 429
    assert headers["Retry-After"] == "5"
    assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == "rate_limit_exceeded"
    (record,) = harness.ledger.records.values()
    assert record.status == 429 and record.attempts == 4
    harness.stubber.assert_no_pending_responses()


def test_throttled_and_unavailable_mix_is_still_503(harness: Harness) -> None:
    key = harness.add_key()
    throttle(harness, 2)
    fail(harness, "ServiceUnavailableException", 503)
    assert harness.chat(key)[0] == 503


def test_fallback_validation_error_after_primary_outage_is_not_the_clients_400(harness: Harness) -> None:
    """Regression: the primary was unavailable, the fallback (other limits) refused the request as
    invalid, and the client got a 400 for a request that was valid for the model it asked for."""
    key = harness.add_key()
    fail(harness, "ServiceUnavailableException", 503)
    fail(harness, "ValidationException", 400, "max_tokens exceeds model limit")
    status, headers, body = harness.chat(key, max_tokens=60000)
    assert status == 503
    assert "nova-lite: cannot serve this request" in body["error"]["message"]
    assert headers["Retry-After"] == "5"


def test_fallback_after_open_circuit_with_validation_error_is_503(harness: Harness) -> None:
    key = harness.add_key()
    breaker = harness.gateway.router.breaker(HAIKU)
    for _ in range(breaker.threshold):
        breaker.record_failure()
    fail(harness, "ValidationException", 400, "nope")
    assert harness.chat(key)[0] == 503


@pytest.mark.parametrize(
    "message",
    [
        "Input is too long for requested model.",
        "prompt is too long: 210000 tokens > 200000 maximum",
        "The model returned the following errors: too many input tokens",
    ],
)
def test_context_overflow_is_context_length_exceeded(harness: Harness, message: str) -> None:
    key = harness.add_key()
    fail(harness, "ValidationException", 400, message)
    status, _, body = harness.chat(key)
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"
    assert body["error"]["param"] == "messages"


def test_partial_usage_of_failed_calls_is_metered() -> None:
    router = Router(threshold=3, cooldown_s=10, sleep=lambda s: None)
    calls: list[str] = []

    def fn(target: Any) -> str:
        calls.append(target.name)
        if target is HAIKU:
            raise ProviderError("InternalServerException", "x", retryable=True, usage=TokenUsage(input=1000))
        return "ok"

    outcome = router.call(Route("r", "chat", (HAIKU, NOVA)), fn)
    assert outcome.failed_usage == TokenUsage(input=1000)
    assert outcome.failed_cost_usd == pytest.approx(1000 * HAIKU.prices.input / 1e6)
