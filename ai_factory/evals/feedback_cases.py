"""Feedback becomes tests: the worst-rated exchanges as draft eval cases, PII masked.

``ai-factory feedback export --worst N --exchanges FILE`` joins negatively rated feedback (score below
0.5, worst first) with the exchanges it rates, by request id, and writes a draft suite in the ordinary
suite format for a team to review and add to its own suite. The gateway does not keep prompts and
answers; the exchanges come from where a team keeps them (sampled traffic, model invocation logs,
support tickets) as JSON lines ``{"request_id", "input", "output"}``.

Every text taken from an exchange or a comment is masked with the data connector's PII detection and
redaction (``aif_connector.pii.detect`` + ``masking.mask`` in ``redact`` mode): ``[EMAIL]``,
``[CREDIT_CARD]``, ... so no personal data reaches a suite file or a repository.

Each draft case keeps the rated question as its ``input``, the bad answer (masked) in its description,
and an ``llm-judge`` assertion whose rubric is the rater's complaint: a reviewer sharpens it, or
replaces it with deterministic checks, before the case joins a suite.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aif_connector.masking import MaskingPolicy, mask
from aif_connector.pii import detect

from aif_gateway.records import FeedbackRecord

__all__ = ["DraftCase", "ExchangeError", "draft_cases", "draft_suite_yaml", "load_exchanges", "redact"]

NEGATIVE_BELOW = 0.5  # the same threshold the feedback summary counts as negative
_REDACT = MaskingPolicy("redact")


class ExchangeError(ValueError):
    """The exchanges file is unreadable; the message names the file and the line."""


@dataclass(frozen=True)
class DraftCase:
    """One draft eval case made from a rated exchange (all text already masked)."""

    request_id: str
    score: float
    input: str
    output: str
    comment: str
    team: str
    feature: str
    model_served: str | None


def redact(text: str) -> str:
    """``text`` with every PII span the connector detects replaced by its kind (``[EMAIL]``)."""
    return mask(text, detect(text), _REDACT) if text else text


def load_exchanges(path: str | Path) -> dict[str, Mapping[str, Any]]:
    """``request_id`` -> exchange, from JSON lines with ``request_id``, ``input`` and ``output``."""
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ExchangeError(f"{file}: cannot read it: {exc.strerror or exc}") from exc
    out: dict[str, Mapping[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise ExchangeError(f"{file}:{number}: not JSON: {exc}") from exc
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("request_id", "input")
        ):
            raise ExchangeError(
                f"{file}:{number}: needs string fields request_id and input (output optional)"
            )
        out[data["request_id"]] = data
    return out


def draft_cases(
    feedback: Iterable[FeedbackRecord], exchanges: Mapping[str, Mapping[str, Any]], worst: int
) -> tuple[list[DraftCase], list[str]]:
    """The ``worst`` negatively rated exchanges (lowest score first, then oldest), masked; and the
    request ids of negative feedback whose exchange was not found (reported, not guessed)."""
    negative = sorted(
        (r for r in feedback if r.score < NEGATIVE_BELOW),
        key=lambda r: (r.score, r.submitted_at, r.request_id),
    )
    cases: list[DraftCase] = []
    missing: list[str] = []
    for record in negative:
        if len(cases) >= worst:
            break
        exchange = exchanges.get(record.request_id)
        if exchange is None:
            missing.append(record.request_id)
            continue
        cases.append(
            DraftCase(
                request_id=record.request_id,
                score=record.score,
                input=redact(str(exchange["input"])),
                output=redact(str(exchange.get("output") or "")),
                comment=redact(record.comment or ""),
                team=record.team,
                feature=record.feature,
                model_served=record.model_served,
            )
        )
    return cases, missing


def _case_id(request_id: str) -> str:
    return "feedback-" + (re.sub(r"[^A-Za-z0-9_.-]", "-", request_id)[:100] or "request")


def draft_suite_yaml(cases: list[DraftCase], *, name: str, model: str) -> str:
    """A draft suite (the ordinary format, loadable as it is) holding ``cases``."""
    import yaml

    suite: dict[str, Any] = {
        "suite": name,
        "version": 1,
        "description": "Draft cases from negatively rated answers (ai-factory feedback export); review "
        "every case, sharpen its assertions, then move it into the feature's suite.",
        "model": model,
        "messages": [{"role": "user", "content": "{{ input }}"}],
        "cases": [
            {
                "id": _case_id(c.request_id),
                "description": (
                    f"Tests the exchange {c.request_id} ({c.team}/{c.feature}, served by "
                    f"{c.model_served or 'unknown'}), rated {c.score:g}. Passes when the answer no longer "
                    "has the problem the rater reported. The rated answer was: "
                    f"{c.output or '(not recorded)'}"
                ),
                "vars": {"input": c.input},
                "assert": [
                    {
                        "type": "llm-judge",
                        "value": "The answer avoids the problem a reviewer reported about an earlier answer: "
                        + (c.comment or "(no comment given: describe what a good answer must do)"),
                        "threshold": 0.7,
                    }
                ],
            }
            for c in cases
        ],
    }
    header = (
        "# Draft eval cases from negatively rated exchanges, PII masked by the data connector's detector.\n"
        "# Review before use: the llm-judge rubric is the rater's comment, not a verified expectation.\n"
    )
    return header + yaml.safe_dump(suite, sort_keys=False, allow_unicode=True, width=100)
