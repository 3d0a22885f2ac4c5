"""The EMF line the gateway Lambda prints per request: what CloudWatch turns into metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from aif_gateway.metering import EmfMetricsSink
from aif_gateway.records import UsageRecord


def test_emf_line_has_both_dimension_sets_and_the_counters(capsys: pytest.CaptureFixture[str]) -> None:
    record = UsageRecord(
        "r1",
        datetime(2026, 11, 25, tzinfo=UTC),
        "support",
        "summarizer",
        "k1",
        "chat-fast",
        200,
        model_served="nova-lite",
        input_tokens=10,
        output_tokens=5,
        cost_usd=0.0012,
        latency_ms=42.0,
        guardrail_action="INTERVENED",
    )
    EmfMetricsSink(namespace="AIFactory", service="gw").emit(record, fell_back=True, breaker_opened=1)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "AIFactory"
    dims = [set(d) for d in directive["Dimensions"]]
    assert {"Team", "Feature", "Model"} <= dims[0]
    assert {"Team", "Feature"} in dims
    assert (line["Team"], line["Feature"], line["Model"]) == ("support", "summarizer", "nova-lite")
    names = {m["Name"] for m in directive["Metrics"]}
    assert {
        "Requests",
        "Status2xx",
        "LatencyMs",
        "InputTokens",
        "OutputTokens",
        "CostUSD",
        "Fallbacks",
        "CircuitBreakerOpened",
        "GuardrailInterventions",
    } <= names
    assert line["CostUSD"] == [pytest.approx(0.0012)]


def test_a_budget_refusal_is_counted_by_the_runtime(capsys: pytest.CaptureFixture[str]) -> None:
    """BudgetExhausted comes from the gateway itself, per feature, not from a filter over log text."""
    record = UsageRecord(
        "r2", datetime(2026, 11, 25, tzinfo=UTC), "support", "summarizer", "k1", "chat-fast", 429
    )
    record.error_type = "budget_exhausted"
    EmfMetricsSink(namespace="AIFactory", service="gw").emit(record, fell_back=False, breaker_opened=0)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert {"Team", "Feature"} in [set(d) for d in directive["Dimensions"]]
    assert line["BudgetExhausted"] == [1.0] and line["Throttled"] == [1.0]
