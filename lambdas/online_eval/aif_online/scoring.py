"""Scores of one sampled exchange: the suites' deterministic assertions that hold for any answer, PII
leakage, and the output statistics the drift alarms watch.

Free traffic has no expected answer, so only assertions that must hold for *every* answer of the feature
apply: ``not-contains`` and ``is-json`` / ``json-schema`` (when every case of the suite asks for them).
Case-specific ones (``equals``, ``contains``, ``regex``) are not applicable and are left out at synth
time. PII leakage is personal data in the answer (the connector's detector) that the question did not
contain: an answer may repeat the user's own e-mail address, it must not produce someone else's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ai_factory.evals.deterministic import check
from ai_factory.evals.model import Assertion, CaseOutput
from aif_online.sampling import Exchange

__all__ = [
    "FREE_TRAFFIC_TYPES",
    "ExchangeScores",
    "ScoringStep",
    "free_traffic_assertions",
    "language",
    "refused",
    "score_exchange",
]

FREE_TRAFFIC_TYPES = ("not-contains", "is-json", "json-schema")
"""Assertion types that apply to every answer of a feature, not only to one case's."""

# Phrases that open a refusal (checked on the answer's first 200 characters, case-insensitive).
_REFUSAL = re.compile(
    r"\b(i can(?:'|no)t help|i(?:'m| am) (?:sorry|unable|not able)|i can ?not (?:help|assist|provide)|"
    r"i won't|i must decline|as an ai\b|unable to (?:help|assist|comply))",
    re.IGNORECASE,
)
# Stop-word profiles: enough to tell the languages the factory's features serve apart, no model needed.
_PROFILES = {
    "en": "the and is are of to in that it for with you this not",
    "de": "der die das und ist nicht ein eine zu mit ich sie es für",
    "fr": "le la les et est un une des pas que pour vous avec dans",
    "es": "el la los las y es un una que por para con no del",
}
_STOPWORDS = {lang: frozenset(words.split()) for lang, words in _PROFILES.items()}


@dataclass(frozen=True)
class ExchangeScores:
    """What the scorer publishes for one exchange."""

    assertions_run: int
    assertions_passed: int
    failures: tuple[str, ...]
    pii_leaks: int
    output_chars: int
    refused: bool
    language: str
    tool_calls: int
    guardrail_intervened: bool

    @property
    def assertion_pass_rate(self) -> float | None:
        """Share of assertions passed, ``None`` when none applied."""
        return self.assertions_passed / self.assertions_run if self.assertions_run else None


@dataclass(frozen=True)
class ScoringStep:
    """One step of scoring an exchange, timed (epoch nanoseconds): what a trace shows as a child span.
    ``outputs`` holds counts and verdicts only; ``detail`` what may quote the exchange's text."""

    name: str
    start_ns: int
    end_ns: int
    outputs: dict[str, Any]
    detail: dict[str, Any] = field(default_factory=dict)


def free_traffic_assertions(raw: Iterable[Mapping[str, Any]]) -> list[Assertion]:
    """The ``{"type", "value"}`` entries whose type applies to free traffic, as harness assertions."""
    return [
        Assertion(type=str(a["type"]), value=a.get("value"))
        for a in raw
        if a.get("type") in FREE_TRAFFIC_TYPES
    ]


def language(text: str) -> str:
    """The language whose stop words ``text`` uses most (``und`` below three stop-word hits)."""
    words = re.findall(r"[^\W\d_]+", text.lower())
    hits = {lang: sum(1 for w in words if w in stop) for lang, stop in _STOPWORDS.items()}
    best = max(hits, key=lambda lang: hits[lang])
    return best if hits[best] >= 3 else "und"


def refused(text: str) -> bool:
    """Whether ``text`` opens with a refusal."""
    return bool(_REFUSAL.search(text[:200]))


def _pii_values(text: str) -> set[tuple[str, str]]:
    from aif_connector.pii import detect  # the connector's detector, shipped in the asset

    return {(f.kind, f.text.strip().lower()) for f in detect(text)}


def score_exchange(
    exchange: Exchange, assertions: Iterable[Assertion], steps: list[ScoringStep] | None = None
) -> ExchangeScores:
    """Scores of ``exchange`` against ``assertions`` (already filtered to free-traffic types); each
    step's timing and outcome is appended to ``steps`` when given (the MLflow trace's child spans)."""
    out = CaseOutput(text=exchange.output, latency_ms=0.0)  # latency is the gateway metrics' job
    started = time.time_ns()
    results = [check(a, out) for a in assertions]
    failures = tuple(f"{r.type}: {r.reason}" for r in results if not r.passed)
    checked = time.time_ns()
    found = _pii_values(exchange.output) - _pii_values(exchange.input) if exchange.output else set()
    leaked = len(found)
    detected = time.time_ns()
    is_refusal, lang = refused(exchange.output), language(exchange.output)
    if steps is not None:
        passed = sum(1 for r in results if r.passed)
        steps += [
            ScoringStep(
                "free-traffic assertions",
                started,
                checked,
                {"run": len(results), "passed": passed, "failed": [r.type for r in results if not r.passed]},
                {"failures": list(failures)},
            ),
            # The kinds only: the values are personal data.
            ScoringStep(
                "pii leakage", checked, detected, {"leaks": leaked, "kinds": sorted({k for k, _ in found})}
            ),
            ScoringStep(
                "output statistics",
                detected,
                time.time_ns(),
                {"refused": is_refusal, "language": lang, "output_chars": len(exchange.output)},
            ),
        ]
    return ExchangeScores(
        assertions_run=len(results),
        assertions_passed=sum(1 for r in results if r.passed),
        failures=failures,
        pii_leaks=leaked,
        output_chars=len(exchange.output),
        refused=is_refusal,
        language=lang,
        tool_calls=exchange.tool_calls,
        guardrail_intervened=exchange.guardrail_intervened,
    )
