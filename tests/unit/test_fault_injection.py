"""Fault injection: what fails between the caller, the model, the stores and the spill path, and the proof
that no usage or audit record is lost in each case.

Provider faults use the Stubber-backed ``harness`` (conftest.py); test_gateway_routing.py already covers
single retryable codes, read timeouts, ValidationException and the circuit breaker. DynamoDB and SQS
faults use moto's real tables and queue behind a client wrapper that fails chosen operations (moto
cannot fail on demand), so the gateway's own stores (DynamoKeyStore, DynamoLedger, SpillQueue) run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from conftest import FakeClock, Harness, InlineExecutor, converse_response, make_config, make_event
from moto import mock_aws

from aif_gateway import spill_replay
from aif_gateway.app import Gateway
from aif_gateway.dynamo_quota import DynamoQuotaStore
from aif_gateway.dynamo_store import DynamoKeyStore, DynamoLedger, create_tables, usage_from_item
from aif_gateway.metering import CountingMetricsSink
from aif_gateway.providers import BedrockProvider, EchoProvider
from aif_gateway.records import ApiKeyRecord, UsageRecord, generate_key
from aif_gateway.spill import SpillQueue
from aif_gateway.usage_writer import UsageWriter

KEYS, USAGE = "aif-keys", "aif-usage"
NOW = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)


# -- provider faults (extending test_gateway_routing.py) ------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        ConnectTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"),
        EndpointConnectionError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"),
    ],
    ids=["connect-timeout", "connection-refused"],
)
def test_unreachable_model_falls_back_and_records_both_attempts(harness: Harness, error: Exception) -> None:
    key = harness.add_key()
    flaky = FlakyClient(harness.stubber.client)
    flaky.fail_before["converse"] = [error]
    harness.gateway.providers["bedrock"] = BedrockProvider(client_factory=lambda region: flaky)
    harness.stubber.add_response("converse", converse_response("from nova"))
    status, headers, _ = harness.chat(key)
    assert status == 200 and headers["x-aif-served-by"] == "nova-lite"
    (record,) = harness.ledger.records.values()
    assert record.attempts == 2 and "claude-haiku-4-5" in record.extra["failures"]
    assert [a.request_id for a in harness.audit] == [record.request_id]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("ModelNotReadyException", 429), ("ModelNotReadyException", 429)),
        (("InternalServerException", 500), ("ModelTimeoutException", 408)),
        (("ServiceUnavailableException", 503), ("InternalServerException", 500)),
    ],
)
def test_whole_chain_failing_leaves_one_record_and_one_audit_line(
    harness: Harness, first: tuple[str, int], second: tuple[str, int]
) -> None:
    key = harness.add_key()
    for code, status in (first, second):
        harness.stubber.add_client_error("converse", service_error_code=code, http_status_code=status)
    status, headers, body = harness.chat(key)
    assert status == 503 and headers["Retry-After"] == "5"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    (record,) = harness.ledger.records.values()
    assert record.status == 503 and record.attempts == 2
    # A model timeout may have been billed for its input: metered as an estimate, marked; refusals cost 0.
    if "ModelTimeoutException" in (first[0], second[0]):
        assert record.cost_usd > 0 and record.extra["failed_attempts_estimated"] == "1"
    else:
        assert record.cost_usd == 0 and "failed_attempts_estimated" not in record.extra
    assert [a.request_id for a in harness.audit] == [record.request_id]


def test_throttled_embeddings_are_a_429_with_a_record(harness: Harness) -> None:
    key = harness.add_key()
    for _ in range(2):  # the call and its one throttling retry
        harness.stubber.add_client_error(
            "invoke_model", service_error_code="ThrottlingException", http_status_code=429
        )
    status, headers, _ = harness.call("POST", "/v1/embeddings", {"model": "embed", "input": "x"}, key)
    assert status == 429 and headers["Retry-After"] == "5"
    harness.stubber.assert_no_pending_responses()
    (record,) = harness.ledger.records.values()
    assert record.operation == "embeddings" and record.error_type == "rate_limit_exceeded"
    assert len(harness.audit) == 1


def test_an_unparseable_model_answer_is_a_generic_500_with_an_audit_line(harness: Harness) -> None:
    """A provider bug after the model answered: the caller gets no internals, the audit line stays.
    (No usage record: the token counts were never read — a residual risk docs/security.md names.)"""
    key = harness.add_key()

    class Broken:
        def chat(self, *args: Any) -> None:
            raise KeyError("output.message.content[0] /opt/python/aif_gateway/bedrock_translate.py")

    harness.gateway.providers["echo"] = Broken()
    status, _, body = harness.chat(key, model="echo")
    assert status == 500 and body["error"]["code"] == "internal_error"
    assert "bedrock_translate" not in json.dumps(body)
    (audit,) = harness.audit
    assert audit.status == 500 and audit.route == "echo"


# -- DynamoDB and SQS faults on the real stores --------------------------------------------------------


class FlakyClient:
    """A boto3 client whose chosen operations fail (before or after reaching the service)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fail_before: dict[str, list[Exception]] = {}
        self.fail_after: dict[str, list[Exception]] = {}
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name.startswith("_") or name in ("meta", "exceptions"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.fail_before.get(name):
                raise self.fail_before[name].pop(0)
            result = attr(*args, **kwargs)
            if self.fail_after.get(name):  # the write happened; the caller never heard back
                raise self.fail_after[name].pop(0)
            return result

        return call


def throttled(operation: str, code: str = "ProvisionedThroughputExceededException") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "Rate exceeded for table arn:aws:internal"}}, operation
    )


class World:
    """The gateway on moto DynamoDB + SQS, with flaky clients and a captured audit trail."""

    def __init__(self) -> None:
        self.ddb = boto3.client("dynamodb")
        self.sqs = boto3.client("sqs")
        create_tables(self.ddb, keys_table=KEYS, usage_table=USAGE)
        self.queue_url = self.sqs.create_queue(QueueName="spill")["QueueUrl"]
        self.flaky_ddb = FlakyClient(self.ddb)
        self.flaky_sqs = FlakyClient(self.sqs)
        self.keys = DynamoKeyStore(KEYS, self.flaky_ddb)
        self.ledger = DynamoLedger(USAGE, self.flaky_ddb)
        self.clean_ledger = DynamoLedger(USAGE, self.ddb)
        self.audit: list[UsageRecord] = []
        self.clock = FakeClock()
        # As deployed: the gate in the usage table, records written after the response (``chat`` drains).
        self.quota = DynamoQuotaStore(USAGE, self.flaky_ddb)
        self.gateway = Gateway(
            make_config(),
            keys=self.keys,
            ledger=self.ledger,
            quota=self.quota,
            usage_writer=UsageWriter(),
            providers={"echo": EchoProvider()},
            spill=SpillQueue(self.queue_url, self.flaky_sqs),
            metrics=CountingMetricsSink(),
            audit_log=self.audit.append,
            now=lambda: NOW,
            clock=self.clock,
            refresh_executor=InlineExecutor(),
        )

    def add_key(self, budget: float = 100.0) -> str:
        plaintext, key_id, key_hash = generate_key()
        self.keys.put(
            ApiKeyRecord(
                key_id=key_id,
                key_hash=key_hash,
                team="support",
                feature="summarizer",
                allowed_models=("echo",),
                monthly_budget_usd=budget,
                rate_limit_rpm=1000,
                created_at=NOW - timedelta(days=1),
            )
        )
        return plaintext

    def chat(self, key: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "count me"}]})
        event = make_event("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"})
        response = self.gateway.handle(event)
        self.gateway.drain(5.0)  # what the writer does right after the response
        return response["statusCode"], response["headers"], json.loads(response["body"])

    def ledger_records(self) -> list[UsageRecord]:
        items = self.ddb.scan(TableName=USAGE)["Items"]  # the gate item is not a record
        return [usage_from_item(i) for i in items if i["pk"]["S"].startswith("LEDGER#")]

    def replay_spilled(self) -> dict[str, Any]:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        event = {"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]}
        return spill_replay.handler(event)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AIF_USAGE_TABLE": USAGE,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_REGION", raising=False)
    spill_replay._ledger.cache_clear()
    with mock_aws():
        yield World()
    spill_replay._ledger.cache_clear()


def test_key_lookup_throttled_is_503_store_unavailable_with_an_audit_line(world: World) -> None:
    key = world.add_key()
    world.flaky_ddb.fail_before["get_item"] = [throttled("GetItem")]
    status, headers, body = world.chat(key)
    assert status == 503 and headers["Retry-After"] == "5" and body["error"]["code"] == "store_unavailable"
    assert "arn:aws:internal" not in json.dumps(body)
    (audit,) = world.audit
    assert audit.status == 503 and audit.error_type == "store_unavailable"
    assert world.ledger_records() == []  # refused before any model call: nothing to meter
    assert world.chat(key)[0] == 200  # the next request reads the key again (failures are not cached)


def test_key_lookup_timeout_is_503_store_unavailable(world: World) -> None:
    key = world.add_key()
    world.flaky_ddb.fail_before["get_item"] = [ReadTimeoutError(endpoint_url="https://dynamodb")]
    assert world.chat(key)[0] == 503


def test_snapshot_throttled_is_503_before_any_model_call(world: World) -> None:
    key = world.add_key()
    world.flaky_ddb.fail_before["batch_get_item"] = [throttled("BatchGetItem", "ThrottlingException")]
    status, _, body = world.chat(key)
    assert status == 503 and body["error"]["code"] == "store_unavailable"
    assert world.ledger_records() == [] and world.audit[0].model_served is None


def test_stale_snapshot_refresh_failing_keeps_serving_on_the_cached_snapshot(world: World) -> None:
    key = world.add_key()
    assert world.chat(key)[0] == 200
    world.clock.advance(world.gateway.config.usage_snapshot_ttl_s + 0.1)  # stale, not yet untrusted
    world.flaky_ddb.fail_before["batch_get_item"] = [throttled("BatchGetItem")]
    assert world.chat(key)[0] == 200
    assert len(world.ledger_records()) == 2


def test_ledger_write_throttled_is_spilled_then_replayed_exactly_once(world: World) -> None:
    key = world.add_key()
    world.flaky_ddb.fail_before["put_item"] = [throttled("PutItem")]
    status, _, body = world.chat(key)
    assert status == 200
    request_id = body["id"].removeprefix("chatcmpl-")
    assert world.ledger_records() == []
    # Spilled, yet its cost already counts toward the budget: the gate was settled from the request.
    (audit,) = world.audit
    assert world.clean_ledger.snapshot("support", "summarizer", NOW).spent_usd == pytest.approx(
        audit.cost_usd
    )
    assert world.replay_spilled() == {"batchItemFailures": []}
    (record,) = world.ledger_records()
    assert record.request_id == request_id and record.cost_usd > 0
    assert [a.request_id for a in world.audit] == [request_id]


def test_ledger_write_that_committed_but_timed_out_is_counted_once_after_replay(world: World) -> None:
    """The ambiguous failure: the put landed, the response was lost, the gateway spilled.
    SQS delivers at least once, so the replay runs twice; the ledger item's condition keeps one record,
    and the feature's sums (on its gate, settled from the request itself) count the request once."""
    key = world.add_key()
    world.flaky_ddb.fail_after["put_item"] = [ReadTimeoutError(endpoint_url="https://dynamodb")]
    assert world.chat(key)[0] == 200
    spilled = world.sqs.receive_message(QueueUrl=world.queue_url)["Messages"][0]
    for _ in range(2):
        assert spill_replay.handler({"Records": [{"messageId": "m", "body": spilled["Body"]}]}) == {
            "batchItemFailures": []
        }
    (record,) = world.ledger_records()
    snapshot = world.clean_ledger.snapshot("support", "summarizer", NOW)
    assert snapshot.spent_usd == pytest.approx(record.cost_usd)
    assert snapshot.requests_this_minute == 1


def test_ledger_and_spill_both_failing_log_the_full_record_which_replays(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    key = world.add_key()
    world.flaky_ddb.fail_before["put_item"] = [throttled("PutItem")]
    world.flaky_sqs.fail_before["send_message"] = [throttled("SendMessage", "ThrottlingException")]
    with caplog.at_level(logging.CRITICAL, logger="aif_gateway"):
        status, _, body = world.chat(key)
    assert status == 200
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    restored = UsageRecord.from_dict(json.loads(line.removeprefix("UNPERSISTED_USAGE_RECORD ")))
    assert restored.request_id == body["id"].removeprefix("chatcmpl-")
    assert [a.request_id for a in world.audit] == [restored.request_id]
    world.clean_ledger.record(restored)  # what an operator does with the line
    world.clean_ledger.record(restored)  # ... even twice
    assert len(world.ledger_records()) == 1
    assert world.clean_ledger.snapshot("support", "summarizer", NOW).requests_this_minute == 1


def test_replay_failing_leaves_the_message_for_retry_and_the_dlq(world: World) -> None:
    key = world.add_key()
    world.flaky_ddb.fail_before["put_item"] = [throttled("PutItem")]
    assert world.chat(key)[0] == 200
    messages = world.sqs.receive_message(QueueUrl=world.queue_url)["Messages"]
    # The replay Lambda has its own client (spill_replay._ledger); make its first write fail.
    replay_ledger = spill_replay._ledger()
    flaky = FlakyClient(replay_ledger.client)
    flaky.fail_before["put_item"] = [throttled("PutItem")]
    replay_ledger._client = flaky
    event = {"Records": [{"messageId": messages[0]["MessageId"], "body": messages[0]["Body"]}]}
    assert spill_replay.handler(event) == {
        "batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]
    }
    assert spill_replay.handler(event) == {"batchItemFailures": []}  # SQS redelivers; now it lands
    assert len(world.ledger_records()) == 1


def test_every_request_in_a_flaky_run_is_accounted_for(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Mixed faults over many requests: every request that reached a model is in the ledger after replay
    (or in an UNPERSISTED line), every request has exactly one audit line, nothing counts twice."""
    key = world.add_key()
    world.flaky_ddb.fail_before["put_item"] = [throttled("PutItem") for _ in range(5)]
    world.flaky_ddb.fail_after["put_item"] = []
    world.flaky_sqs.fail_before["send_message"] = [throttled("SendMessage", "ThrottlingException")]
    served: list[str] = []
    with caplog.at_level(logging.CRITICAL, logger="aif_gateway"):
        for _ in range(12):
            status, _, body = world.chat(key)
            assert status == 200
            served.append(body["id"].removeprefix("chatcmpl-"))
    while (
        world.replay_spilled()["batchItemFailures"]
        or world.sqs.get_queue_attributes(
            QueueUrl=world.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        != "0"
    ):
        pass
    logged = [
        UsageRecord.from_dict(json.loads(r.getMessage().removeprefix("UNPERSISTED_USAGE_RECORD ")))
        for r in caplog.records
        if r.levelno == logging.CRITICAL
    ]
    assert len(logged) == 1
    for record in logged:
        world.clean_ledger.record(record)
    assert sorted(r.request_id for r in world.ledger_records()) == sorted(served)
    assert sorted(a.request_id for a in world.audit) == sorted(served)
    assert world.clean_ledger.snapshot("support", "summarizer", NOW).requests_this_minute == 12


def test_a_failing_audit_sink_does_not_lose_the_usage_record_or_the_audit_line(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    key = world.add_key()

    def broken_audit(record: UsageRecord) -> None:
        raise OSError("stdout closed")

    world.gateway.audit_log = broken_audit
    with caplog.at_level(logging.CRITICAL, logger="aif_gateway"):
        status, _, body = world.chat(key)
        assert world.chat("aif-unknown-key")[0] == 401  # the refusal path audits too
    assert status == 200
    request_id = body["id"].removeprefix("chatcmpl-")
    assert [r.request_id for r in world.ledger_records()] == [request_id]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(lines) == 2 and all(line.startswith("UNAUDITED_RECORD ") for line in lines)
    assert UsageRecord.from_dict(json.loads(lines[0].split(" ", 1)[1])).request_id == request_id
