"""SpillQueue and the spill replay handler, end to end with moto SQS and DynamoDB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from aif_gateway import spill_replay
from aif_gateway.dynamo_store import DynamoLedger, create_tables, ledger_key, usage_from_item
from aif_gateway.records import LedgerWriteError, UsageRecord
from aif_gateway.spill import SpillError, SpillQueue

USAGE_TABLE = "aif-usage"
NOW = datetime(2026, 11, 25, 14, 7, 31, tzinfo=UTC)


def make_usage(request_id: str, **overrides: Any) -> UsageRecord:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "timestamp": NOW,
        "team": "search",
        "feature": "summaries",
        "key_id": "abc123",
        "route": "fast-chat",
        "status": 200,
        "model_served": "claude-haiku",
        "input_tokens": 100,
        "output_tokens": 20,
        "cost_usd": 0.25,
        "extra": {"note": "café"},
        **overrides,
    }
    return UsageRecord(**fields)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """moto SQS queue and usage table (same schema as the construct's), and the replay Lambda's env."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AIF_USAGE_TABLE": USAGE_TABLE,
        "POWERTOOLS_SERVICE_NAME": "aif-spill-replay-test",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_REGION", raising=False)
    spill_replay._ledger.cache_clear()  # the handler's ledger must be made inside this mock
    with mock_aws():
        sqs = boto3.client("sqs")
        ddb = boto3.client("dynamodb")
        create_tables(ddb, usage_table=USAGE_TABLE)
        queue_url = sqs.create_queue(QueueName="aif-usage-spill")["QueueUrl"]
        yield {"sqs": sqs, "ddb": ddb, "queue_url": queue_url}
    spill_replay._ledger.cache_clear()


def receive_event(sqs: Any, queue_url: str) -> dict[str, Any]:
    """The SQS event Lambda would deliver for what is in the queue now."""
    messages = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", [])
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "messageAttributes": m.get("MessageAttributes", {}),
                "eventSource": "aws:sqs",
            }
            for m in messages
        ]
    }


def test_send_queues_the_record_as_json_with_its_kind(aws: dict[str, Any]) -> None:
    usage = make_usage("r1", error_type="ThrottlingException", status=429)
    SpillQueue(aws["queue_url"]).send(usage)

    [message] = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert message["MessageAttributes"]["kind"] == {"DataType": "String", "StringValue": "usage"}
    assert UsageRecord.from_dict(json.loads(message["Body"])) == usage


def test_send_failure_raises_spill_error(aws: dict[str, Any]) -> None:
    missing = aws["queue_url"].rsplit("/", 1)[0] + "/no-such-queue"
    with pytest.raises(SpillError) as info:
        SpillQueue(missing).send(make_usage("r1"))
    assert info.value.__cause__ is not None


def test_send_throttled_raises_spill_error() -> None:
    client = boto3.client("sqs", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("send_message", "RequestThrottled", http_status_code=400)
        with pytest.raises(SpillError, match="r1"):
            SpillQueue("https://sqs.us-east-1.amazonaws.com/123456789012/q", client=client).send(
                make_usage("r1")
            )


def test_replay_records_good_messages_and_reports_the_malformed_one(aws: dict[str, Any]) -> None:
    sqs, ddb, queue_url = aws["sqs"], aws["ddb"], aws["queue_url"]
    good = [make_usage("r1"), make_usage("r2", timestamp=NOW + timedelta(seconds=5), cost_usd=0.5)]
    spill = SpillQueue(queue_url)
    for usage in good:
        spill.send(usage)
    bad_bodies = ["{not json", json.dumps({"request_id": "x"}), json.dumps(["a list"])]
    bad_ids = {sqs.send_message(QueueUrl=queue_url, MessageBody=b)["MessageId"] for b in bad_bodies}

    event = receive_event(sqs, queue_url)
    assert len(event["Records"]) == 5
    response = spill_replay.handler(event, None)

    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == bad_ids
    for usage in good:
        item = ddb.get_item(TableName=USAGE_TABLE, Key=ledger_key(usage))["Item"]
        assert usage_from_item(item) == usage
    # A replay writes records only: the budget sums are on the feature's gate, which the gateway
    # settled from the request itself when it answered (so a replay can neither add nor miss them).
    snap = DynamoLedger(USAGE_TABLE, client=ddb).snapshot("search", "summaries", NOW)
    assert (snap.spent_usd, snap.requests_this_minute) == (0.0, 0)

    # SQS delivers the batch again (e.g. the function timed out): nothing is written twice.
    assert {f["itemIdentifier"] for f in spill_replay.handler(event, None)["batchItemFailures"]} == bad_ids
    assert len(ddb.scan(TableName=USAGE_TABLE)["Items"]) == len(good)


class _FlakyLedger:
    """Fails for one request ID, records the others."""

    def __init__(self, failing: str) -> None:
        self.failing = failing
        self.recorded: list[str] = []

    def record(self, usage: UsageRecord) -> None:
        if usage.request_id == self.failing:
            raise LedgerWriteError("throttled")
        self.recorded.append(usage.request_id)


def test_replay_reports_a_failed_ledger_write_for_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = _FlakyLedger(failing="r2")
    monkeypatch.setattr(spill_replay, "_ledger", lambda: ledger)
    event = {
        "Records": [
            {"messageId": f"m{i}", "body": json.dumps(make_usage(f"r{i}").to_dict())} for i in (1, 2, 3)
        ]
    }
    assert spill_replay.handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert ledger.recorded == ["r1", "r3"]


def test_replay_of_an_empty_batch_reports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spill_replay, "_ledger", lambda: _FlakyLedger(failing=""))
    assert spill_replay.handler({"Records": []}, None) == {"batchItemFailures": []}
