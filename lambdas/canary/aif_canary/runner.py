"""Run one feature's canary suite against the gateway and score it."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .assertions import check_answer

REQUEST_TIMEOUT_S = 30.0
_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass
class Answer:
    text: str
    latency_ms: float
    request_id: str | None = None


class CallFailed(Exception):
    """The gateway did not answer 200 (the message says what it answered)."""


@dataclass
class CaseResult:
    id: str
    passed: bool
    assertions_passed: int
    assertions: int
    latency_ms: float | None = None
    request_id: str | None = None
    error: str | None = None
    failures: list[str] = field(default_factory=list)


@dataclass
class SuiteResult:
    name: str
    cases: list[CaseResult]

    @property
    def pass_rate(self) -> float:
        """Share (0..1) of cases whose every assertion held (a failed call fails its case)."""
        return sum(c.passed for c in self.cases) / len(self.cases) if self.cases else 0.0

    @property
    def assertion_pass_rate(self) -> float:
        """Share (0..1) of all assertions that held."""
        total = sum(c.assertions for c in self.cases)
        return sum(c.assertions_passed for c in self.cases) / total if total else 0.0

    @property
    def errors(self) -> int:
        return sum(c.error is not None for c in self.cases)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.name,
            "pass_rate": self.pass_rate,
            "assertion_pass_rate": self.assertion_pass_rate,
            "errors": self.errors,
            "cases": [c.__dict__ for c in self.cases],
        }


class GatewayClient:
    """POST /chat/completions on the gateway with the feature's key (stdlib HTTP, no SDK)."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._key = api_key
        self._timeout_s = timeout_s

    def __call__(self, body: dict[str, Any]) -> Answer:
        request = urllib.request.Request(
            self._url,
            data=json.dumps(body).encode("utf-8"),
            headers={
                "Authorization": f"Bearer {self._key}",
                "Content-Type": "application/json",
                "User-Agent": "ai-factory-canary",
            },
            method="POST",
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                payload = json.load(response)
                request_id = response.headers.get("x-request-id")
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace")
            raise CallFailed(f"HTTP {exc.code}: {detail}") from None
        except (OSError, ValueError) as exc:  # URLError, timeouts, bad JSON
            raise CallFailed(f"{type(exc).__name__}: {exc}") from None
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            text = payload["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise CallFailed("the answer is not a chat completion") from None
        return Answer(str(text), latency_ms, request_id)


def render(messages: list[dict[str, Any]], variables: dict[str, Any]) -> list[dict[str, Any]]:
    """Substitute ``{{ var }}`` in string message contents (one pass; unknown names are left as is)."""

    def fill(text: str) -> str:
        return _VAR.sub(lambda m: str(variables.get(m.group(1), m.group(0))), text)

    return [
        {**m, "content": fill(m["content"])} if isinstance(m.get("content"), str) else dict(m)
        for m in messages
    ]


def request_body(suite: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    """The chat request of one case: a registered prompt rendered by the gateway, or inline messages."""
    variables = case.get("vars") or {}
    body: dict[str, Any] = {}
    model = case.get("model") or suite.get("model")  # a merged suite's cases carry their own
    if model:
        body["model"] = model
    prompt = case.get("prompt") or suite.get("prompt")
    if prompt:
        ref = {"name": prompt["name"], "variables": variables}
        if prompt.get("version") is not None:
            ref["version"] = prompt["version"]
        else:
            ref["alias"] = prompt.get("alias") or "production"
        body["prompt"] = ref
        body["messages"] = render(case.get("messages") or [], variables)
    else:
        body["messages"] = render(
            list(suite.get("messages") or []) + list(case.get("messages") or []), variables
        )
    body.update(case.get("request") or {})  # the suite's request options (response_format, tools, ...)
    return body


def run_suite(
    suite: dict[str, Any],
    call: Callable[[dict[str, Any]], Answer],
    deadline: Callable[[], bool] = lambda: False,
) -> SuiteResult:
    """Run every case once, in order. ``deadline()`` true means no time for another call: the rest of
    the cases are recorded as errors (they count as failures, like any unanswered case)."""
    results: list[CaseResult] = []
    for case in suite.get("cases", []):
        asserts = case.get("assert") or []
        result = CaseResult(
            id=str(case.get("id")), passed=False, assertions_passed=0, assertions=len(asserts)
        )
        if deadline():
            result.error = "skipped: the canary ran out of time"
            results.append(result)
            continue
        try:
            answer = call(request_body(suite, case))
        except CallFailed as exc:
            result.error = str(exc)[:500]
            results.append(result)
            continue
        result.latency_ms, result.request_id = round(answer.latency_ms, 1), answer.request_id
        for assertion in asserts:
            verdict = check_answer(assertion, answer.text, answer.latency_ms)
            if verdict.passed:
                result.assertions_passed += 1
            else:
                result.failures.append(f"{verdict.type}: {verdict.reason}")
        result.passed = result.assertions_passed == result.assertions
        results.append(result)
    return SuiteResult(str(suite.get("name", "canary")), results)
