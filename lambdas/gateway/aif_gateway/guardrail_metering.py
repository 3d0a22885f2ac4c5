"""What a guardrail assessment costs: the text units per policy in the Converse trace, priced.

Bedrock bills a guardrail by the text units (up to 1,000 characters each) every policy evaluated, input
and output assessments alike. With ``guardrailConfig.trace`` enabled, Converse returns them per
assessment in ``trace.guardrail.{inputAssessment, outputAssessments}[...].invocationMetrics.usage``;
this module sums them per policy and prices them with the catalog's ``guardrail_prices``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .config import GuardrailPrices

# Converse usage field -> the GuardrailPrices field that prices it. sensitiveInformationPolicyFreeUnits
# (regex-only PII checks) cost nothing and are not counted.
POLICY_UNITS = {
    "contentPolicyUnits": "content",
    "topicPolicyUnits": "topic",
    "wordPolicyUnits": "word",
    "sensitiveInformationPolicyUnits": "sensitive_information",
    "contextualGroundingPolicyUnits": "contextual_grounding",
    "automatedReasoningPolicyUnits": "automated_reasoning",
}


def _assessments(trace: dict[str, Any]) -> Iterator[dict[str, Any]]:
    guardrail = trace.get("guardrail") or {}
    yield from (guardrail.get("inputAssessment") or {}).values()
    for assessments in (guardrail.get("outputAssessments") or {}).values():
        yield from assessments or []


def assessment_units(trace: dict[str, Any] | None) -> dict[str, int]:
    """Text units per priced policy over every assessment in a Converse ``trace`` (empty: none)."""
    units: dict[str, int] = {}
    for assessment in _assessments(trace or {}):
        usage = (assessment.get("invocationMetrics") or {}).get("usage") or {}
        for field, policy in POLICY_UNITS.items():
            count = int(usage.get(field) or 0)
            if count:
                units[policy] = units.get(policy, 0) + count
    return units


def guardrail_cost(units: dict[str, int], prices: GuardrailPrices) -> float:
    """USD for ``units`` (prices are per 1,000 text units)."""
    return sum(count * getattr(prices, policy) for policy, count in units.items()) / 1000
