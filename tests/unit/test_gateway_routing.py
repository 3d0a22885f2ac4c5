"""Fallback chain and circuit breaker, driven through the gateway with a Stubber-validated Bedrock client."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import ANY
from conftest import HAIKU, NOVA, Harness, converse_response

RETRYABLE = [
    ("ThrottlingException", 429),
    ("ServiceUnavailableException", 503),
    ("ModelNotReadyException", 429),
    ("InternalServerException", 500),
    ("ModelTimeoutException", 408),
]


def expect_converse(h: Harness, model_id: str, **response: Any) -> None:
    h.stubber.add_response(
        "converse",
        converse_response(**response),
        {"modelId": model_id, "messages": ANY, "guardrailConfig": ANY, "requestMetadata": ANY},
    )


@pytest.mark.parametrize(("code", "status"), RETRYABLE)
def test_retryable_error_moves_to_next_target(harness: Harness, code: str, status: int) -> None:
    key = harness.add_key()
    # A throttled target gets one jittered retry of its own before the chain moves on.
    for _ in range(2 if code == "ThrottlingException" else 1):
        harness.stubber.add_client_error("converse", service_error_code=code, http_status_code=status)
    expect_converse(harness, NOVA.model_id, text="from nova")

    status_code, headers, body = harness.chat(key)

    assert status_code == 200
    assert body["model"] == "nova-lite"
    assert body["choices"][0]["message"]["content"] == "from nova"
    assert headers["x-aif-served-by"] == "nova-lite"
    assert headers["x-aif-served-model-id"] == NOVA.model_id
    attempts = 3 if code == "ThrottlingException" else 2
    assert headers["x-aif-attempts"] == str(attempts)
    record = next(iter(harness.ledger.records.values()))
    assert record.model_served == "nova-lite" and record.attempts == attempts
    assert code in record.extra["failures"]
    assert harness.metrics.counts["Fallbacks"] == 1
    harness.stubber.assert_no_pending_responses()


def test_timeout_moves_to_next_target(harness: Harness) -> None:
    key = harness.add_key()
    provider = harness.gateway.providers["bedrock"]
    client = provider.client(None)  # type: ignore[attr-defined]
    calls = {"n": 0}
    real = client.converse

    def flaky(**kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com")
        return real(**kwargs)

    expect_converse(harness, NOVA.model_id)
    with mock.patch.object(client, "converse", side_effect=flaky):
        status, headers, _ = harness.chat(key)
    assert status == 200 and headers["x-aif-served-by"] == "nova-lite"
    record = next(iter(harness.ledger.records.values()))
    assert "Timeout" in record.extra["failures"]
    # The timed-out attempt may have been billed for its input: metered at Haiku's input price, estimated.
    # "Hello there" is 11 characters: 3 tokens estimated, on top of Nova's 10 reported ones.
    assert record.extra["failed_attempts_estimated"] == "1"
    assert record.input_tokens == 10 + 3
    nova_cost = (10 * NOVA.prices.input + 5 * NOVA.prices.output) / 1_000_000
    assert record.cost_usd == pytest.approx(nova_cost + 3 * HAIKU.prices.input / 1_000_000)


def test_throttled_attempts_are_not_metered(harness: Harness) -> None:
    key = harness.add_key()
    harness.stubber.add_client_error(
        "converse", service_error_code="ThrottlingException", http_status_code=429
    )
    harness.stubber.add_client_error(
        "converse", service_error_code="ThrottlingException", http_status_code=429
    )
    expect_converse(harness, NOVA.model_id)
    assert harness.chat(key)[0] == 200
    record = next(iter(harness.ledger.records.values()))
    assert "failed_attempts_estimated" not in record.extra and record.input_tokens == 10


def test_validation_error_is_a_400_and_does_not_fall_back(harness: Harness) -> None:
    key = harness.add_key()
    harness.stubber.add_client_error(
        "converse",
        service_error_code="ValidationException",
        service_message="temperature too high",
        http_status_code=400,
    )
    status, _, body = harness.chat(key, temperature=1.9)
    assert status == 400
    assert "temperature too high" in body["error"]["message"]
    harness.stubber.assert_no_pending_responses()


def test_every_target_failing_gives_503_with_retry_after_and_a_record(harness: Harness) -> None:
    key = harness.add_key()
    for _ in range(2):  # Haiku and its one throttling retry
        harness.stubber.add_client_error(
            "converse", service_error_code="ThrottlingException", http_status_code=429
        )
    harness.stubber.add_client_error(
        "converse", service_error_code="ServiceUnavailableException", http_status_code=503
    )

    status, headers, body = harness.chat(key)

    assert status == 503
    assert headers["Retry-After"] == "5"
    assert body["error"]["type"] == "service_unavailable"
    assert "claude-haiku-4-5: ThrottlingException" in body["error"]["message"]
    assert "Traceback" not in body["error"]["message"]
    (record,) = harness.ledger.records.values()
    assert record.status == 503 and record.attempts == 3 and record.error_type == "all_targets_failed"


def test_circuit_breaker_opens_skips_and_recovers(harness: Harness) -> None:
    key = harness.add_key()
    threshold = harness.gateway.config.breaker_failure_threshold
    for _ in range(threshold):
        harness.stubber.add_client_error(
            "converse", service_error_code="ThrottlingException", http_status_code=429
        )
        expect_converse(harness, NOVA.model_id)
        assert harness.chat(key)[0] == 200
    assert harness.gateway.router.breaker(HAIKU).state == "open"
    assert harness.metrics.counts["CircuitBreakerOpened"] == 1

    # Open: Haiku is skipped without a call; Nova serves on the first attempt.
    expect_converse(harness, NOVA.model_id)
    status, headers, _ = harness.chat(key)
    assert status == 200 and headers["x-aif-attempts"] == "1" and headers["x-aif-served-by"] == "nova-lite"
    harness.stubber.assert_no_pending_responses()

    # After the cool-down one probe goes to Haiku; its success closes the breaker.
    harness.clock.advance(harness.gateway.config.breaker_cooldown_s + 1)
    assert harness.gateway.router.breaker(HAIKU).state == "half_open"
    expect_converse(harness, HAIKU.model_id, text="haiku is back")
    status, headers, _body = harness.chat(key)
    assert headers["x-aif-served-by"] == "claude-haiku-4-5"
    assert harness.gateway.router.breaker(HAIKU).state == "closed"


def test_failed_probe_reopens_the_breaker(harness: Harness) -> None:
    key = harness.add_key()
    breaker = harness.gateway.router.breaker(HAIKU)
    for _ in range(breaker.threshold):
        breaker.record_failure()
    harness.clock.advance(breaker.cooldown_s + 1)
    harness.stubber.add_client_error(
        "converse", service_error_code="ThrottlingException", http_status_code=429
    )
    expect_converse(harness, NOVA.model_id)
    assert harness.chat(key)[0] == 200
    assert breaker.state == "open"


def test_half_open_lets_exactly_one_probe_through(harness: Harness) -> None:
    breaker = harness.gateway.router.breaker(HAIKU)
    for _ in range(breaker.threshold):
        breaker.record_failure()
    harness.clock.advance(breaker.cooldown_s)
    assert breaker.allow() is True
    assert breaker.allow() is False


def test_no_target_starts_once_the_request_deadline_leaves_no_room(harness: Harness) -> None:
    """A fallback that could not finish before the Lambda times out is not started (the usage record
    of the request would die with the Lambda)."""
    from dataclasses import replace

    key = harness.add_key()
    gateway = harness.gateway
    gateway.config = replace(gateway.config, model_timeout_s=10.0, request_deadline_s=15.0)
    client = gateway.providers["bedrock"].client(None)  # type: ignore[attr-defined]

    def slow_throttle(**kwargs: object) -> object:
        harness.clock.advance(6)  # the first attempt used 6 s; 9 s are left, less than one model timeout
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Converse")

    with mock.patch.object(client, "converse", side_effect=slow_throttle):
        status, _, body = harness.chat(key)
    assert status == 429  # every target that was called was throttled: the client backs off
    assert "nova-lite: not tried, request deadline" in body["error"]["message"]
