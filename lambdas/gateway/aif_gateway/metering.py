"""Pricing and metrics.

Each Bedrock usage counter is priced on its own (cache reads are typically a tenth of input, cache
writes a premium over it); summing tokens first and pricing once is how cost numbers go wrong.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

from . import contract as c
from .config import Prices
from .provider_types import TokenUsage
from .records import FeedbackRecord, UsageRecord


def cost_usd(usage: TokenUsage, prices: Prices) -> float:
    return (
        usage.input * prices.input
        + usage.output * prices.output
        + usage.cache_read * prices.cache_read
        + usage.cache_write * prices.cache_write
    ) / 1_000_000


class MetricsSink(Protocol):
    def emit(self, record: UsageRecord, *, fell_back: bool, breaker_opened: int) -> None: ...


class EmfMetricsSink:
    """CloudWatch metrics through Powertools' Embedded Metric Format: one log line per request with the
    dimension sets (Team, Feature, Model) and (Team, Feature); no PutMetricData call on the hot path."""

    def __init__(self, namespace: str | None = None, service: str | None = None) -> None:
        self._namespace = namespace
        self._service = service

    def emit(self, record: UsageRecord, *, fell_back: bool, breaker_opened: int) -> None:
        from aws_lambda_powertools.metrics import EphemeralMetrics

        metrics = EphemeralMetrics(namespace=self._namespace, service=self._service)
        team, feature = record.team or "unknown", record.feature or "unknown"
        metrics.add_dimension(c.TEAM, team)
        metrics.add_dimension(c.FEATURE, feature)
        metrics.add_dimension(c.MODEL, record.model_served or record.route or "none")
        # A second dimension set without Model, so per-feature alarms need no metric math over models.
        metrics.add_dimensions(**{c.TEAM: team, c.FEATURE: feature})
        _add(metrics, c.REQUESTS, 1)
        _add(metrics, c.status_metric(record.status), 1)
        _add(metrics, c.LATENCY_MS, record.latency_ms)
        if record.model_served:
            _add(metrics, c.INPUT_TOKENS, record.input_tokens)
            _add(metrics, c.OUTPUT_TOKENS, record.output_tokens)
            _add(metrics, c.CACHE_READ_TOKENS, record.cache_read_tokens)
            _add(metrics, c.CACHE_WRITE_TOKENS, record.cache_write_tokens)
            _add(metrics, c.COST_USD, record.cost_usd)
        if fell_back:
            _add(metrics, c.FALLBACKS, 1)
        if breaker_opened:
            _add(metrics, c.CIRCUIT_BREAKER_OPENED, breaker_opened)
        if record.guardrail_action == "INTERVENED":
            _add(metrics, c.GUARDRAIL_INTERVENTIONS, 1)
        if record.error_type in c.LIMIT_CODES.values():
            _add(metrics, c.THROTTLED, 1)
        if record.error_type == c.BUDGET_EXHAUSTED_CODE:  # the runtime knows it: no log-derived metric filter
            _add(metrics, c.BUDGET_EXHAUSTED, 1)
        metrics.flush_metrics()

    def emit_feedback(self, feedback: FeedbackRecord) -> None:
        """``FeedbackScore`` (0..1; average it) and ``FeedbackCount`` per (Team, Feature)."""
        from aws_lambda_powertools.metrics import EphemeralMetrics

        metrics = EphemeralMetrics(namespace=self._namespace, service=self._service)
        metrics.add_dimensions(**{c.TEAM: feedback.team, c.FEATURE: feedback.feature})
        _add(metrics, c.FEEDBACK_SCORE, feedback.score)
        _add(metrics, c.FEEDBACK_COUNT, 1)
        metrics.flush_metrics()


def _add(metrics: Any, metric: c.Metric, value: float) -> None:
    """One value of a contract metric, with the contract's unit (EMF unit names are Powertools' values)."""
    metrics.add_metric(metric.name, metric.unit, value)


class CountingMetricsSink:
    """In-memory counters for local mode and tests."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def emit(self, record: UsageRecord, *, fell_back: bool, breaker_opened: int) -> None:
        self.counts["Requests"] += 1
        self.counts[f"Status{record.status // 100}xx"] += 1
        if fell_back:
            self.counts["Fallbacks"] += 1
        if breaker_opened:
            self.counts["CircuitBreakerOpened"] += breaker_opened
        if record.guardrail_action == "INTERVENED":
            self.counts["GuardrailInterventions"] += 1
        if record.error_type == c.BUDGET_EXHAUSTED_CODE:
            self.counts["BudgetExhausted"] += 1

    def emit_feedback(self, feedback: FeedbackRecord) -> None:
        self.counts["FeedbackCount"] += 1
