"""The data the evaluation harness passes around: suites, cases, outputs, results and verdicts.

Parsing lives in ``suite``, assertion logic in ``assertions``, gate logic in ``gate``, execution in
``runner`` and ``targets``, reporting in ``reports`` and ``mlflow_log``. Everything here is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ASSERTION_TYPES = (
    "equals",
    "contains",
    "icontains",
    "not-contains",
    "regex",
    "is-json",
    "json-schema",
    "similarity",
    "llm-judge",
    "latency_ms",
    "cost_usd",
    # Retrieval (suites with ``retrieval``; ``retrieval_checks``): against the case's labelled ``relevant``
    # documents, and the answer's grounding in the passages it was given.
    "context-recall",
    "context-precision",
    "citation-correctness",
    "groundedness",
)
RETRIEVAL_ASSERTIONS = ("context-recall", "context-precision", "citation-correctness", "groundedness")
LABELLED_ASSERTIONS = ("context-recall", "context-precision", "citation-correctness")


@dataclass(frozen=True)
class Assertion:
    type: str  # one of ASSERTION_TYPES
    value: Any = None  # expected text / regex / schema / reference answer / rubric, by type
    threshold: float | None = None  # similarity and judge score in 0..1; latency_ms and cost_usd limits
    hard_fail: bool = False  # any miss fails the whole suite (safety, PII, secrets)
    method: str | None = None  # similarity: "token" (default) or "embedding"
    model: str | None = None  # llm-judge / embedding similarity: gateway model alias
    line: int = 0  # where it was declared, for error messages


@dataclass(frozen=True)
class Case:
    id: str
    vars: dict[str, Any]
    assertions: tuple[Assertion, ...]
    messages: tuple[dict[str, Any], ...] = ()  # extra chat messages appended after the prompt's
    line: int = 0
    # Request options sent with the case (the suite's ``request``, then the case's own over it):
    # response_format, tools, tool_choice, temperature, top_p, max_tokens, stop.
    request: dict[str, Any] = field(default_factory=dict)
    # What the offline model answers this case with on --target local (text, {json: ...} or
    # {tool_call: {name, arguments}}); None: its default (echo, or an object matching a json_schema).
    offline_answer: Any = None
    description: str = ""  # what the case tests and why it should pass (for people and reports)
    # Labelled relevant documents: each a part of a passage's source URI (``laptops.md``); what the
    # retrieval assertions measure recall, precision and citations against.
    relevant: tuple[str, ...] = ()


@dataclass(frozen=True)
class PromptRef:
    name: str
    version: int | None = None
    alias: str | None = None


@dataclass(frozen=True)
class Gate:
    min_pass_rate: float = 1.0  # fraction of cases that must pass
    repeats: int = 1  # how many times each case runs
    min_case_pass_fraction: float = 1.0  # fraction of a case's repeats that must pass for the case to pass


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    content_hash: str  # sha256 of the suite file's bytes: logged so a run names exactly what it ran
    cases: tuple[Case, ...]
    gate: Gate
    prompt: PromptRef | None = None  # the registered prompt under test (rendered by the gateway)
    model: str | None = None  # model alias when the suite has no prompt (or to override it)
    messages: tuple[dict[str, Any], ...] = ()  # inline chat template with {{vars}} when no prompt
    description: str = ""
    version: int | None = None  # the suite's own version (shipped suites bump it when cases change)
    # Chat ``retrieval`` sent with every case (``knowledge_base``, ``top_k``, ``grounding_check``); for
    # ``--target local`` also where the knowledge base's documents are (``documents``, resolved).
    retrieval: dict[str, Any] | None = None
    documents: Path | None = None


@dataclass
class CaseOutput:
    """What a target returned for one case run."""

    text: str
    latency_ms: float
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    model_served: str | None = None
    request_id: str | None = None
    error: str | None = None  # set when the call failed after retries: every assertion then fails
    citations: list[dict[str, Any]] = field(default_factory=list)  # the passages of a retrieval request


@dataclass(frozen=True)
class AssertionResult:
    type: str
    passed: bool
    score: float | None  # 0..1 where the assertion has a score, else None
    reason: str  # why it passed or failed, for people
    hard_fail: bool = False


@dataclass
class CaseRun:
    """One repeat of one case: the unit written to disk as it completes (so --resume loses nothing)."""

    case_id: str
    repeat: int
    output: CaseOutput
    results: list[AssertionResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.output.error is None and all(r.passed for r in self.results)


@dataclass
class CaseVerdict:
    case_id: str
    runs: int
    passed_runs: int
    passed: bool
    hard_failures: list[str]


@dataclass
class SuiteVerdict:
    suite: str
    cases: list[CaseVerdict]
    pass_rate: float
    passed: bool
    hard_failed: bool
    reasons: list[str]  # why the gate failed, for people (empty when it passed)
