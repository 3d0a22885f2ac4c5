"""Drift statistic on synthetic windows: the linear MMD with its permutation test separates a topic
shift from a resample of the same traffic, and output drift reports the changes it should."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aif_gateway import contract
from aif_online import drift_job, handler
from aif_online.drift import (
    DRIFT_P_VALUE,
    OutputStats,
    hashed_embedding,
    input_drift,
    output_drift,
)

BILLING = ["invoice", "refund", "charge", "payment", "card", "billing", "overcharged", "receipt"]
SHIPPING = ["parcel", "delivery", "courier", "tracking", "shipment", "warehouse", "late", "address"]
COMMON = ["my", "the", "please", "help", "with", "order", "customer", "was", "is", "a"]


def prompts(topic: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(COMMON + topic) for _ in range(12)) for _ in range(n)]


def window(topic: list[str], n: int, seed: int) -> list[list[float]]:
    return [hashed_embedding(p) for p in prompts(topic, n, seed)]


def test_hashed_embedding_is_deterministic_unit_and_word_based() -> None:
    a = hashed_embedding("refund my invoice please")
    assert a == hashed_embedding("refund my invoice please")
    assert abs(sum(x * x for x in a) - 1.0) < 1e-9
    near = sum(x * y for x, y in zip(a, hashed_embedding("please refund my invoice"), strict=True))
    far = sum(x * y for x, y in zip(a, hashed_embedding("courier tracking parcel late"), strict=True))
    assert near > 0.5 > far


def test_same_distribution_is_not_drift() -> None:
    result = input_drift(window(BILLING, 60, 1), window(BILLING, 60, 2))
    assert not result.drifted and result.p_value > DRIFT_P_VALUE


def test_topic_shift_is_drift() -> None:
    baseline, same = window(BILLING, 60, 1), window(BILLING, 60, 2)
    shifted = window(SHIPPING, 60, 3)
    result = input_drift(baseline, shifted)
    assert result.drifted and result.p_value == pytest.approx(1 / 200)
    assert result.statistic > 5 * input_drift(baseline, same).statistic


def test_partial_shift_is_detected_at_a_third_of_traffic() -> None:
    mixed = window(BILLING, 40, 4) + window(SHIPPING, 20, 5)
    assert input_drift(window(BILLING, 60, 1), mixed).drifted


def test_permutation_test_is_seeded() -> None:
    a, b = window(BILLING, 30, 1), window(BILLING, 30, 2)
    assert input_drift(a, b, seed=7) == input_drift(a, b, seed=7)
    with pytest.raises(ValueError, match="at least 2"):
        input_drift(a[:1], b)


def test_output_drift_reports_length_refusals_tools_guardrail_and_language() -> None:
    base = OutputStats.of([100] * 10, [False] * 10, [0] * 10, [False] * 10, ["en"] * 10)
    now = OutputStats.of(
        [50] * 10, [True] * 3 + [False] * 7, [1] * 2 + [0] * 8, [True] + [False] * 9, ["de"] * 4 + ["en"] * 6
    )
    drift = output_drift(base, now)
    assert drift.length_ratio == 0.5
    assert drift.refusal_rate_change == pytest.approx(0.3)
    assert drift.tool_call_rate_change == pytest.approx(0.2)
    assert drift.guardrail_rate_change == pytest.approx(0.1)
    assert (drift.main_language, drift.main_language_share_change) == ("en", pytest.approx(-0.4))


def _items(topic: list[str], n: int, seed: int, at: float, answer: str) -> list[dict[str, Any]]:
    return [
        {
            "request_id": f"{seed}-{i}",
            "team": "support",
            "feature": "summarizer",
            "input": p,
            "output": answer,
            "tool_calls": 0,
            "guardrail_intervened": False,
            "sampled_at": int(at) - i,
        }
        for i, p in enumerate(prompts(topic, n, seed))
    ]


@mock_aws
@pytest.mark.parametrize(("current_topic", "drifted"), [(BILLING, False), (SHIPPING, True)])
def test_drift_job_reads_the_sample_table_and_publishes_declared_metrics(
    current_topic: list[str], drifted: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    client = boto3.client("dynamodb", region_name="eu-central-1")
    client.create_table(
        TableName="samples",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
    )
    now = time.time()
    answer = "The refund for the invoice is on its way and you will see it in the account."
    rows = _items(BILLING, 60, 1, now - 3 * 86_400, answer) + _items(current_topic, 40, 2, now - 600, answer)
    for row in rows:
        client.put_item(TableName="samples", Item=handler._to_dynamo(row))
    event = {"features": [{"team": "support", "feature": "summarizer", "table": "samples"}]}
    assert drift_job.run(event, client=client) == {"published": 1}
    record = json.loads(capsys.readouterr().out.strip())
    published = {m["Name"] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert published <= {m.name for m in contract.METRICS}
    assert (record["InputDriftPValue"] < DRIFT_P_VALUE) is drifted
    assert (record["baseline_size"], record["current_size"]) == (60, 40)
    assert record["OutputLengthRatio"] == 1.0


def test_drift_job_skips_windows_too_small_to_judge() -> None:
    now = time.time()
    few = _items(BILLING, 10, 1, now - 3 * 86_400, "a") + _items(BILLING, 40, 2, now, "a")
    assert (
        drift_job.drift_record("t", "f", few, now, lambda ts: [hashed_embedding(t) for t in ts], "NS") is None
    )


def _embed(texts: Any) -> list[list[float]]:
    return [hashed_embedding(t) for t in texts]


def _window(n: int, at: float, seed: int, **answer: Any) -> list[dict[str, Any]]:
    """``n`` samples ending at ``at``: the first ``answer["refusals"]`` refuse, the first
    ``answer["tools"]`` call a tool, the first ``answer["blocked"]`` met the guardrail, the first
    ``answer["german"]`` answer in German; the rest answer ``answer["text"]`` in English."""
    english = answer.get("text", "The refund for the invoice is on its way and you will see it soon.")
    german = "Die Erstattung für die Rechnung ist unterwegs und Sie werden sie bald auf dem Konto sehen."
    refusal = "I'm sorry, but I can't help with that request."
    rows = _items(BILLING, n, seed, at, english)
    for i, row in enumerate(rows):
        if i < answer.get("refusals", 0):
            row["output"] = refusal
        elif i < answer.get("refusals", 0) + answer.get("german", 0):
            row["output"] = german
        row["tool_calls"] = 1 if i < answer.get("tools", 0) else 0
        row["guardrail_intervened"] = i < answer.get("blocked", 0)
    return rows


def test_drift_record_publishes_every_output_drift_signal_as_a_declared_metric() -> None:
    now = time.time()
    baseline = _window(100, now - 3 * 86_400, 1, refusals=5, tools=10, blocked=2)
    current = _window(50, now - 600, 2, refusals=10, tools=20, blocked=6, german=15)
    record = drift_job.drift_record("support", "summarizer", baseline + current, now, _embed, "NS")
    assert record is not None
    declared = {m.name: m for m in contract.METRICS}
    published = record["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    names = {m["Name"] for m in published}
    expected = {
        contract.OUTPUT_LENGTH_RATIO.name,
        contract.LANGUAGE_SHARE_CHANGE.name,
        contract.REFUSAL_RATE_CHANGE.name,
        contract.TOOL_CALL_RATE_CHANGE.name,
        contract.GUARDRAIL_RATE_CHANGE.name,
    }
    assert expected <= names <= set(declared)
    assert all(m["Unit"] == declared[m["Name"]].unit for m in published)
    # Baseline: 5 % refusals, 10 % tool calls, 2 % guardrail, 95 % English (a short refusal has too few
    # stop words to tell its language); day: 20 %, 40 %, 12 %, 30 % German, so 50 % English.
    assert record["RefusalRateChange"] == pytest.approx(0.15)
    assert record["ToolCallRateChange"] == pytest.approx(0.30)
    assert record["GuardrailRateChange"] == pytest.approx(0.10)
    assert record["LanguageShareChange"] == pytest.approx(-0.45)
    assert record["main_language"] == "en"
    assert record["Team"] == "support" and record["Feature"] == "summarizer"


def test_drift_record_of_an_unchanged_day_is_all_zero_changes() -> None:
    now = time.time()
    baseline = _window(60, now - 3 * 86_400, 1, tools=6, blocked=3)
    rows = baseline + _window(40, now - 600, 2, tools=4, blocked=2)
    record = drift_job.drift_record("t", "f", rows, now, _embed, "NS")
    assert record is not None
    assert record["OutputLengthRatio"] == 1.0
    for name in ("RefusalRateChange", "ToolCallRateChange", "GuardrailRateChange", "LanguageShareChange"):
        assert record[name] == pytest.approx(0.0), name


def test_length_ratio_of_an_empty_baseline_is_left_out_not_infinity() -> None:
    """Only tool calls in the baseline (no text): the ratio has no value; publishing Infinity would make
    the whole EMF line invalid JSON and lose every other drift metric of the day."""
    now = time.time()
    rows = _window(40, now - 3 * 86_400, 1, text="") + _window(40, now - 600, 2)
    record = drift_job.drift_record("t", "f", rows, now, _embed, "NS")
    assert record is not None
    line = json.dumps(record, allow_nan=False)  # raises on Infinity/NaN
    names = {m["Name"] for m in json.loads(line)["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert "OutputLengthRatio" not in names and "OutputLengthRatio" not in record
    assert {"LanguageShareChange", "RefusalRateChange", "InputDriftPValue"} <= names
