"""Online evaluation: sampling decision, invocation-log parsing, the sampler writing to DynamoDB (moto)
and the scorer's deterministic scores and EMF records."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aif_gateway import contract
from aif_online import handler
from aif_online.sampling import SECONDS_PER_DAY, SamplingSettings, exchange_from_log, is_sampled, sample_item
from aif_online.scoring import free_traffic_assertions, language, score_exchange

# Two stages of one pipeline (or two factories) in one account share its Bedrock invocation logging.
PRODUCTION = contract.edge_namespace("Prod-Gateway/Prod/Gateway/Gateway")
STAGING = contract.edge_namespace("Staging-Gateway/Staging/Gateway/Gateway")


def log_record(
    request_id: str,
    question: str,
    answer: str,
    *,
    team: str = "support",
    feature: str = "summarizer",
    stop: str = "end_turn",
    tool: bool = False,
    gateway: str | None = PRODUCTION,
) -> dict[str, Any]:
    """A Bedrock model invocation log record of a Converse call made by the gateway ``gateway`` (its
    ``LlmGateway.edge_namespace``; None: a gateway that did not send one)."""
    content: list[dict[str, Any]] = [{"text": answer}]
    if tool:
        content.append({"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {}}})
    return {
        "schemaType": "ModelInvocationLog",
        "schemaVersion": "1.0",
        "timestamp": "2026-12-03T10:00:00Z",
        "accountId": "123456789012",
        "region": "eu-central-1",
        "requestId": "bedrock-" + request_id,
        "operation": "Converse",
        "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
        "input": {
            "inputContentType": "application/json",
            "inputBodyJson": {"messages": [{"role": "user", "content": [{"text": question}]}]},
        },
        "output": {
            "outputContentType": "application/json",
            "outputBodyJson": {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
            },
        },
        "requestMetadata": {
            "aif_team": team,
            "aif_feature": feature,
            "aif_request_id": request_id,
            **({"aif_gateway": gateway} if gateway is not None else {}),
        },
    }


def subscription_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    payload = {
        "messageType": "DATA_MESSAGE",
        "logEvents": [
            {"id": str(i), "timestamp": 0, "message": json.dumps(r)} for i, r in enumerate(records)
        ],
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_sampling_keeps_the_configured_share(rate: float) -> None:
    ids = [f"req-{i}" for i in range(20_000)]
    share = sum(is_sampled(i, rate) for i in ids) / len(ids)
    assert abs(share - rate) < 0.01
    # Deterministic: the same request is always in or out.
    assert [is_sampled(i, rate) for i in ids[:100]] == [is_sampled(i, rate) for i in ids[:100]]


def test_rate_bounds() -> None:
    assert not any(is_sampled(f"r{i}", 0.0) for i in range(1000))
    assert all(is_sampled(f"r{i}", 1.0) for i in range(1000))
    with pytest.raises(ValueError, match=r"rate must be in 0\.\.1"):
        SamplingSettings(1.5, 7, "t", PRODUCTION)
    with pytest.raises(ValueError, match="retention_days"):
        SamplingSettings(0.1, 0, "t", PRODUCTION)
    with pytest.raises(ValueError, match="gateway is required"):
        SamplingSettings(0.1, 7, "t", "")


def test_exchange_from_log_reads_attribution_text_and_tools() -> None:
    exchange = exchange_from_log(log_record("r1", "Summarize my ticket", "Here it is.", tool=True))
    assert exchange is not None
    assert (exchange.team, exchange.feature, exchange.request_id) == ("support", "summarizer", "r1")
    assert exchange.gateway == PRODUCTION
    unsigned = exchange_from_log(log_record("r0", "q", "a", gateway=None))
    assert unsigned is not None and unsigned.gateway == ""
    assert (exchange.input, exchange.output, exchange.tool_calls) == ("Summarize my ticket", "Here it is.", 1)
    guarded = exchange_from_log(log_record("r2", "q", "blocked", stop="guardrail_intervened"))
    assert guarded is not None and guarded.guardrail_intervened
    record = log_record("r3", "q", "a")
    del record["requestMetadata"]  # another application's Bedrock call: not ours to sample
    assert exchange_from_log(record) is None


def test_sample_item_expires_after_retention() -> None:
    exchange = exchange_from_log(log_record("r1", "q", "a"))
    assert exchange is not None
    item = sample_item(exchange, retention_days=30, now_epoch=1_000)
    assert item["expires_at"] == 1_000 + 30 * SECONDS_PER_DAY
    assert item["request_id"] == "r1" and item["output"] == "a"


@mock_aws
def test_sampler_writes_only_sampled_requests_of_features_with_sampling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = boto3.client("dynamodb", region_name="eu-central-1")
    client.create_table(
        TableName="samples",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
    )
    monkeypatch.setenv(
        handler.SAMPLING_ENV,
        json.dumps(
            {
                "support/summarizer": {
                    "rate": 0.25,
                    "retention_days": 14,
                    "table": "samples",
                    "gateway": PRODUCTION,
                }
            }
        ),
    )
    records = [log_record(f"req-{i}", f"question {i}", f"answer {i}") for i in range(400)]
    records += [log_record(f"other-{i}", "q", "a", feature="not-sampled") for i in range(50)]
    result = handler.sample(subscription_event(records), client=client)
    expected = {f"req-{i}" for i in range(400) if is_sampled(f"req-{i}", 0.25)}
    items = client.scan(TableName="samples")["Items"]
    assert result == {"sampled": len(expected)}
    assert {i["request_id"]["S"] for i in items} == expected
    assert 60 < len(expected) < 140
    assert all(int(i["expires_at"]["N"]) > 0 for i in items)


@mock_aws
def test_staging_traffic_never_lands_in_productions_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #18: staging's gateway logs to the same invocation log group with the same team/feature;
    production's sampler keeps only its own gateway's records (and none without a gateway)."""
    client = boto3.client("dynamodb", region_name="eu-central-1")
    client.create_table(
        TableName="prod-samples",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
    )
    monkeypatch.setenv(
        handler.SAMPLING_ENV,
        json.dumps(
            {
                "support/summarizer": {
                    "rate": 1.0,
                    "retention_days": 7,
                    "table": "prod-samples",
                    "gateway": PRODUCTION,
                }
            }
        ),
    )
    records = [
        log_record("prod-1", "production question", "a"),
        log_record("staging-1", "staging question", "a", gateway=STAGING),
        log_record("unsigned-1", "question of a gateway without identity", "a", gateway=None),
        log_record("prod-2", "production question", "a"),
    ]
    assert handler.sample(subscription_event(records), client=client) == {"sampled": 2}
    items = client.scan(TableName="prod-samples")["Items"]
    assert sorted(i["request_id"]["S"] for i in items) == ["prod-1", "prod-2"]
    assert {i["gateway"]["S"] for i in items} == {PRODUCTION}


def test_sampling_settings_name_their_gateway() -> None:
    settings = handler.sampling_settings(
        json.dumps(
            {"support/summarizer": {"rate": 0.1, "retention_days": 7, "table": "t", "gateway": STAGING}}
        )
    )
    assert settings["support/summarizer"].gateway == STAGING
    # Without one the sampler would have to take any gateway's traffic: refused, naming the feature.
    with pytest.raises(ValueError, match=r"support/summarizer: gateway: .*required"):
        handler.sampling_settings(
            json.dumps({"support/summarizer": {"rate": 0.1, "retention_days": 7, "table": "t"}})
        )
    with pytest.raises(ValueError, match=r"support/summarizer: gateway: .*required"):
        handler.sampling_settings(
            json.dumps(
                {"support/summarizer": {"rate": 0.1, "retention_days": 7, "table": "t", "gateway": ""}}
            )
        )


def test_free_traffic_assertions_keep_only_answer_wide_types() -> None:
    raw = [{"type": "contains", "value": "x"}, {"type": "not-contains", "value": "sk-"}, {"type": "is-json"}]
    assert [a.type for a in free_traffic_assertions(raw)] == ["not-contains", "is-json"]


def test_scores_flag_secrets_pii_leaks_and_refusals() -> None:
    assertions = free_traffic_assertions([{"type": "not-contains", "value": "sk-live"}])
    leak = exchange_from_log(
        log_record(
            "r1",
            "My mail is ann@example.com",
            "Sure ann@example.com; also reach bob@corp.example, key sk-live-1",
        )
    )
    assert leak is not None
    scores = score_exchange(leak, assertions)
    assert scores.assertions_run == 1 and scores.assertions_passed == 0
    assert scores.pii_leaks == 1  # bob's address; ann's own is not a leak
    echo = exchange_from_log(log_record("r2", "My mail is ann@example.com", "I noted ann@example.com."))
    assert echo is not None and score_exchange(echo, assertions).pii_leaks == 0
    refusal = exchange_from_log(log_record("r3", "q", "I'm sorry, but I can't help with that."))
    assert refusal is not None and score_exchange(refusal, []).refused


def test_language_of_answers() -> None:
    assert language("The ticket is open and the customer is waiting for you.") == "en"
    assert language("Der Kunde ist nicht zufrieden und das Ticket ist offen.") == "de"
    assert language("ok") == "und"


def test_scorer_publishes_declared_metrics_only(capsys: pytest.CaptureFixture[str]) -> None:
    exchange = exchange_from_log(log_record("r1", "q", "The answer is here and it is fine for you."))
    assert exchange is not None
    image = handler._to_dynamo(sample_item(exchange, 7, 0))
    event = {
        "Records": [
            {"eventName": "INSERT", "dynamodb": {"NewImage": image}},
            {"eventName": "REMOVE", "dynamodb": {}},
        ]
    }

    class Judge:
        def score(self, rubric: str, input_text: str, output_text: str) -> tuple[float, str]:
            assert rubric == "Be helpful" and output_text == exchange.output
            return 0.75, "fine"

    suites = {
        "support/summarizer": {
            "assertions": [{"type": "not-contains", "value": "sk-"}],
            "rubric": "Be helpful",
        }
    }
    assert handler.score(event, judge=Judge(), suites=suites) == {"scored": 1}
    record = json.loads(capsys.readouterr().out.strip())
    published = {m["Name"] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    declared = {m.name for m in contract.METRICS}
    assert published <= declared
    assert record["OnlineJudgeScore"] == 0.75 and record["OnlineAssertionPassRate"] == 1.0
    assert record["Team"] == "support" and record["Feature"] == "summarizer"


def test_scorer_keeps_deterministic_scores_when_the_judge_fails(capsys: pytest.CaptureFixture[str]) -> None:
    exchange = exchange_from_log(log_record("r1", "q", "answer"))
    assert exchange is not None
    event = {
        "Records": [
            {"eventName": "INSERT", "dynamodb": {"NewImage": handler._to_dynamo(sample_item(exchange, 7, 0))}}
        ]
    }

    class Down:
        def score(self, *args: Any) -> tuple[float, str]:
            raise RuntimeError("HTTP 503")

    assert handler.score(
        event, judge=Down(), suites={"support/summarizer": {"assertions": [], "rubric": "r"}}
    ) == {"scored": 1}
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert "judge failed: HTTP 503" in lines[0]["message"]
    assert "OnlineJudgeScore" not in lines[1] and lines[1]["OnlineSamplesScored"] == 1
