"""The canary's assertions are the evaluation harness's deterministic ones (``ai_factory.evals``), so a
case passes in the canary exactly when it passes in ``ai-factory eval``.

The asset ships ``ai_factory/evals/model.py`` and ``ai_factory/evals/deterministic.py`` (standard
library only) beside this package. Each assertion arrives as ``{"type", "value"}`` from
``canary_suites.json``; the limits of ``latency_ms`` and ``cost_usd`` are the harness's thresholds.
"""

from __future__ import annotations

from typing import Any

from ai_factory.evals.deterministic import DETERMINISTIC_CHECKS, check
from ai_factory.evals.model import Assertion, AssertionResult, CaseOutput

_LIMITS = ("latency_ms", "cost_usd")
SUPPORTED = tuple(kind for kind in DETERMINISTIC_CHECKS if kind != "cost_usd")
"""What the canary can check: every deterministic assertion except cost (it sees no usage)."""


def to_assertion(raw: dict[str, Any]) -> Assertion:
    """The harness's ``Assertion`` for one ``{"type", "value"}`` entry of the canary's suite."""
    kind, value = str(raw.get("type")), raw.get("value")
    if kind in _LIMITS:
        return Assertion(type=kind, threshold=float(value) if value is not None else None)
    return Assertion(type=kind, value=value)


def check_answer(raw: dict[str, Any], text: str, latency_ms: float) -> AssertionResult:
    """Whether ``text`` (answered in ``latency_ms``) satisfies the assertion, and why (or why not)."""
    return check(to_assertion(raw), CaseOutput(text=text, latency_ms=latency_ms))
