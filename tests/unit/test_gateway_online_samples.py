"""Online samples the gateway sends itself: answers of targets outside Bedrock's invocation log.

The gateway sends a sampled exchange with a non-Bedrock target to its sample queue after the response;
the online sampler writes it into the feature's sample table as it writes an invocation-log record.
Here: the gateway on the test harness (Bedrock through a Stubber, the ``echo`` provider standing for any
target outside Bedrock), SQS and DynamoDB on moto, and the real sampler handler in between.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from conftest import Harness, converse_response
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from aif_gateway import contract
from aif_gateway.contract import last_user_text as question
from aif_gateway.online_samples import Answer, SampleQueue, SampleWriter, exchange_sample
from aif_gateway.records import ApiKeyRecord
from aif_online import handler
from aif_online.sampling import exchange_from_log, exchange_from_message, sample_item

NAMESPACE = "0123456789ab"
TABLE = "support-summarizer-samples"


class Sqs:
    """The gateway's sample queue on moto, and what the sampler's event source would deliver."""

    def __init__(self) -> None:
        self.client = boto3.client("sqs", region_name="us-east-1")
        self.url = self.client.create_queue(QueueName="aif-online-samples")["QueueUrl"]

    def receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while True:
            batch = self.client.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)

    def lambda_event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The SQS event Lambda's event source mapping hands the sampler."""
        return {
            "Records": [
                {"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"} for m in messages
            ]
        }


@pytest.fixture
def sqs(harness: Harness) -> Iterator[Sqs]:
    with mock_aws():
        queue = Sqs()
        harness.gateway.samples = SampleWriter(SampleQueue(queue.url, client=queue.client), max_pending=0)
        harness.gateway.namespace = NAMESPACE
        yield queue


def _sampling_key(harness: Harness, rate: float = 1.0, clearance: str | None = "internal") -> str:
    return harness.add_key(sampling_rate=rate, clearance=clearance)


def sampler_table(monkeypatch: pytest.MonkeyPatch, rate: float = 1.0) -> Any:
    """The feature's sample table (DynamoDB on moto), and the sampler's settings sampling it at ``rate``."""
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
    )
    settings = {
        "support/summarizer": {"rate": rate, "retention_days": 7, "table": TABLE, "gateway": NAMESPACE}
    }
    monkeypatch.setenv(handler.SAMPLING_ENV, json.dumps(settings))
    return ddb


def test_a_sampled_external_answer_reaches_the_features_table(
    harness: Harness, sqs: Sqs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path: gateway -> sample queue -> sampler -> sample table, with the answer's text."""
    key = _sampling_key(harness)
    status, headers, body = harness.chat(key, "echo")
    assert status == 200
    (message,) = sqs.receive()
    assert message["MessageAttributes"]["kind"]["StringValue"] == "online-sample"
    sample = json.loads(message["Body"])
    assert sample["request_id"] == headers["x-request-id"]
    assert (sample["team"], sample["feature"], sample["gateway"]) == ("support", "summarizer", NAMESPACE)
    assert sample["model"] == "echo"
    assert sample["input"] == "Hello there"
    assert sample["output"] == body["choices"][0]["message"]["content"]
    assert sample["stop_reason"] == "end_turn"
    assert sample["input_tokens"] == body["usage"]["prompt_tokens"]
    assert sample["output_tokens"] == body["usage"]["completion_tokens"]

    with mock_aws():
        ddb = sampler_table(monkeypatch)
        result = handler.sample(sqs.lambda_event([message]), client=ddb)
        assert result == {"batchItemFailures": []}
        item = ddb.get_item(TableName=TABLE, Key={"request_id": {"S": sample["request_id"]}})["Item"]
    assert item["output"]["S"] == sample["output"]
    assert item["gateway"]["S"] == NAMESPACE
    assert int(item["expires_at"]["N"]) - int(item["sampled_at"]["N"]) == 7 * 86_400


def test_a_gateway_sample_has_the_shape_of_an_invocation_log_sample() -> None:
    """The scorer and the drift job read one shape, whichever path wrote the item."""
    from test_online_sampling import PRODUCTION, log_record

    from_log = exchange_from_log(
        log_record("req-1", "What is due?", "Invoice 42 is due.", gateway=PRODUCTION)
    )
    assert from_log is not None
    message = exchange_sample(
        request_id="req-1",
        key=KEY,
        model_id="gpt-4o-2024-11-20",
        started=STARTED,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is due?"}],
        answer=Answer("Invoice 42 is due.", "stop"),
        input_tokens=12,
        output_tokens=6,
        latency_ms=812.4,
        gateway=PRODUCTION,
    )
    from_gateway = exchange_from_message(json.loads(json.dumps(message)))
    assert set(sample_item(from_gateway, 7, 0)) == set(sample_item(from_log, 7, 0))
    assert (from_gateway.input, from_gateway.output, from_gateway.stop_reason) == (
        from_log.input,
        from_log.output,
        from_log.stop_reason,
    )
    assert from_gateway.latency_ms == 812


def test_a_streamed_answer_is_sampled_whole(harness: Harness, sqs: Sqs) -> None:
    key = _sampling_key(harness)
    status, _, text = harness.chat(key, "echo", stream=True)
    assert status == 200
    streamed = "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for line in text.splitlines()
        if line.startswith("data: {")
        for chunk in [json.loads(line[len("data: ") :])]
        if chunk.get("choices")
    )
    (message,) = sqs.receive()
    sample = json.loads(message["Body"])
    assert streamed and sample["output"] == streamed
    assert sample["stop_reason"] == "end_turn"


def test_nothing_is_sent_unless_the_feature_samples_a_target_outside_bedrock(
    harness: Harness, sqs: Sqs
) -> None:
    """Rate 0, a Bedrock target (its answer is in Bedrock's log already), a restricted or unrecorded
    clearance: no sample leaves the gateway."""
    assert harness.chat(_sampling_key(harness, rate=0.0), "echo")[0] == 200
    assert harness.chat(_sampling_key(harness, clearance="restricted"), "echo")[0] == 200
    assert harness.chat(_sampling_key(harness, clearance=None), "echo")[0] == 200
    harness.stubber.add_response("converse", converse_response("Hi from Bedrock"))
    assert harness.chat(_sampling_key(harness), "chat-fast")[0] == 200
    assert sqs.receive() == []


def test_the_gateway_samples_the_share_the_rate_names(harness: Harness, sqs: Sqs) -> None:
    """The same decision as the sampler's (``contract.is_sampled``): a request is in or out for both."""
    key = _sampling_key(harness, rate=0.3)
    sent_ids = []
    for _ in range(60):
        status, headers, _ = harness.chat(key, "echo")
        assert status == 200
        sent_ids.append(headers["x-request-id"])
    received = {json.loads(m["Body"])["request_id"] for m in sqs.receive()}
    expected = {r for r in sent_ids if contract.is_sampled(r, 0.3)}
    assert received == expected
    assert 0 < len(received) < len(sent_ids)


def test_a_queue_that_refuses_drops_the_sample_not_the_request(
    harness: Harness, sqs: Sqs, caplog: pytest.LogCaptureFixture
) -> None:
    """A sample is a statistical copy: its loss is logged (without its text), the answer still goes out."""
    harness.gateway.samples = SampleWriter(
        SampleQueue(sqs.url + "-deleted", client=sqs.client), max_pending=0
    )
    key = _sampling_key(harness)
    with caplog.at_level(logging.WARNING, logger="aif_gateway"):
        status, headers, _ = harness.chat(key, "echo")
    assert status == 200
    dropped = [r.getMessage() for r in caplog.records if "ONLINE_SAMPLE_DROPPED" in r.getMessage()]
    assert dropped == [
        f"ONLINE_SAMPLE_DROPPED request {headers['x-request-id']} of support/summarizer "
        "was not sent to the sample queue"
    ]
    assert "Hello there" not in caplog.text


def test_samples_are_sent_after_the_response_and_drained(harness: Harness, sqs: Sqs) -> None:
    """Write-behind: the request hands the sample over; ``drain`` (SIGTERM) sends what is pending."""
    writer = SampleWriter(SampleQueue(sqs.url, client=sqs.client))
    writer._start = lambda: None  # type: ignore[method-assign]  # the thread has not run yet
    harness.gateway.samples = writer
    key = _sampling_key(harness)
    for _ in range(3):
        assert harness.chat(key, "echo")[0] == 200
    assert writer.pending() == 3 and sqs.receive() == []
    writer._start = SampleWriter._start.__get__(writer)  # type: ignore[method-assign]
    writer._start()
    assert harness.gateway.drain(5.0) == 0
    assert len(sqs.receive()) == 3


def test_the_sampler_keeps_only_its_features_gateway_samples_and_reports_bad_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another gateway's feature of the same name is dropped; a message that is not a sample is
    reported failed (SQS moves it to the dead-letter queue after its receive limit); a failed write is
    reported failed so SQS delivers it again."""
    good = _message("req-good", NAMESPACE)
    other_gateway = _message("req-staging", "ba9876543210")
    unknown_feature = {**_message("req-other", NAMESPACE), "feature": "not-sampled"}
    records = [
        {"messageId": "m1", "body": json.dumps(good)},
        {"messageId": "m2", "body": json.dumps(other_gateway)},
        {"messageId": "m3", "body": json.dumps(unknown_feature)},
        {"messageId": "m4", "body": "not json"},
        {"messageId": "m5", "body": json.dumps({**good, "request_id": 7})},
        {"messageId": "m6", "body": "[1, 2]"},
    ]
    with mock_aws():
        ddb = sampler_table(monkeypatch)
        result = handler.sample({"Records": records}, client=ddb)
        assert result == {"batchItemFailures": [{"itemIdentifier": m} for m in ("m4", "m5", "m6")]}
        items = ddb.scan(TableName=TABLE)["Items"]
        assert [i["request_id"]["S"] for i in items] == ["req-good"]

        failing = boto3.client("dynamodb", region_name="us-east-1")
        monkeypatch.setenv(
            handler.SAMPLING_ENV,
            json.dumps(
                {
                    "support/summarizer": {
                        "rate": 1,
                        "retention_days": 7,
                        "table": "gone",
                        "gateway": NAMESPACE,
                    }
                }
            ),
        )
        result = handler.sample({"Records": records[:1]}, client=failing)
        assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("team", "", "team: must not be empty"),
        ("tool_calls", -1, "tool_calls: must be a whole number >= 0"),
        ("guardrail_intervened", "no", "guardrail_intervened: must be true or false"),
        ("input", None, "input: must be a string"),
    ],
)
def test_a_malformed_sample_message_names_its_field(field: str, value: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        exchange_from_message({**_message("req-1", NAMESPACE), field: value})
    with pytest.raises(ValueError, match="unknown fields surprise"):
        exchange_from_message({**_message("req-1", NAMESPACE), "surprise": 1})


def test_the_question_is_the_last_user_turn() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url"}]},
        {"role": "tool", "content": "42", "tool_call_id": "t1"},
    ]
    assert question(messages) == "second"
    assert question([{"role": "system", "content": "x"}]) == ""


def _message(request_id: str, gateway: str) -> dict[str, Any]:
    """A sample message as the gateway sends it."""
    return {
        "request_id": request_id,
        "team": "support",
        "feature": "summarizer",
        "model": "gpt-4o",
        "timestamp": "2026-12-03T09:00:00Z",
        "input": "q",
        "output": "a",
        "stop_reason": "end_turn",
        "tool_calls": 0,
        "guardrail_intervened": False,
        "input_tokens": 3,
        "output_tokens": 1,
        "latency_ms": 40,
        "gateway": gateway,
    }


STARTED = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
KEY = ApiKeyRecord(
    key_id="k",
    key_hash="h",
    team="support",
    feature="summarizer",
    allowed_models=("gpt",),
    monthly_budget_usd=10.0,
    rate_limit_rpm=10,
    created_at=STARTED,
    clearance="internal",
    sampling_rate=1.0,
)


def test_the_lambda_entry_point_wires_the_sample_queue_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """``LlmGateway.enable_online_samples`` sets ``AIF_SAMPLE_QUEUE_URL``; without it nothing is sent.
    The deployed server hands samples to its writer thread; the buffered handler sends each itself."""
    from conftest import make_config

    from aif_gateway import handler as gateway_handler

    config = tmp_path / "gateway_config.json"
    config.write_text(make_config().to_json(), encoding="utf-8")
    monkeypatch.setenv("AIF_CONFIG_PATH", str(config))
    monkeypatch.setenv("AIF_KEYS_TABLE", "keys")
    monkeypatch.setenv("AIF_USAGE_TABLE", "usage")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert gateway_handler.build_gateway().samples is None
    monkeypatch.setenv(contract.SAMPLE_QUEUE_URL_ENV, "https://sqs.us-east-1.amazonaws.com/111122223333/s")
    monkeypatch.setenv(contract.EDGE_NAMESPACE_ENV, NAMESPACE)
    deployed = gateway_handler.build_gateway(write_behind=True)
    assert deployed.samples is not None and deployed.samples.max_pending > 0
    assert deployed.samples.queue.queue_url.endswith("/s")  # type: ignore[attr-defined]
    assert deployed.namespace == NAMESPACE
    buffered = gateway_handler.build_gateway()
    assert buffered.samples is not None and buffered.samples.max_pending == 0


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@given(
    st.one_of(
        _json,
        st.dictionaries(st.sampled_from(sorted(_message("r", NAMESPACE))), _json, max_size=14),
        st.builds(
            lambda k, v: {**_message("r", NAMESPACE), k: v},
            st.sampled_from(sorted(_message("r", NAMESPACE))),
            _json,
        ),
    )
)
def test_any_json_is_a_sample_or_a_value_error_naming_why(body: Any) -> None:
    """Whatever lands on the queue: an exchange, or a ValueError the sampler logs and reports failed."""
    try:
        exchange = exchange_from_message(body)
    except ValueError as exc:
        assert str(exc).startswith("sample message: ")
    else:
        assert exchange.request_id and exchange.team and exchange.feature and exchange.gateway


@given(st.lists(st.one_of(st.text(max_size=40), _json.map(json.dumps)), max_size=5))
def test_the_sampler_never_raises_on_a_batch_of_junk(bodies: list[str]) -> None:
    """Every message that is not a sample is reported failed by its id; nothing is written."""
    records = [{"messageId": f"m{i}", "body": body} for i, body in enumerate(bodies)]
    settings = handler.sampling_settings(
        json.dumps(
            {"support/summarizer": {"rate": 1, "retention_days": 7, "table": TABLE, "gateway": NAMESPACE}}
        )
    )

    class NoWrites:
        def put_item(self, **kwargs: Any) -> None:
            raise AssertionError("junk must not be written")

    result = handler._sample_messages(records, settings, NoWrites(), 0)
    assert [f["itemIdentifier"] for f in result["batchItemFailures"]] == [r["messageId"] for r in records]
