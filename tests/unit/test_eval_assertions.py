"""Assertions: every type passes and fails with a reason; nothing ever raises; gateway judge/embedder."""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_factory.evals.assertions import (
    EvalServiceError,
    GatewayEmbedder,
    GatewayJudge,
    JudgeAnswerError,
    cosine_similarity,
    evaluate,
    parse_judge_answer,
    token_f1,
)
from ai_factory.evals.deterministic import schema_errors, schema_problems
from ai_factory.evals.model import ASSERTION_TYPES, Assertion, Case, CaseOutput

CASE = Case(id="c", vars={"ticket": "refund order 123"}, assertions=())


def out(
    text: str = "", *, latency_ms: float = 100.0, cost_usd: float = 0.001, error: str | None = None
) -> CaseOutput:
    return CaseOutput(text=text, latency_ms=latency_ms, cost_usd=cost_usd, error=error)


def check(assertion: Assertion, text: str, **kwargs: Any) -> tuple[bool, str]:
    result = evaluate(assertion, out(text), CASE, **kwargs)
    assert result.type == assertion.type and result.reason
    return result.passed, result.reason


class FakeJudge:
    def __init__(self, answer: Any = (0.8, "states the request"), error: Exception | None = None) -> None:
        self.answer, self.error = answer, error
        self.calls: list[tuple[str, str, str, str | None]] = []

    def score(
        self, rubric: str, input_text: str, output_text: str, *, model: str | None = None
    ) -> tuple[float, str]:
        self.calls.append((rubric, input_text, output_text, model))
        if self.error:
            raise self.error
        return self.answer


class FakeEmbedder:
    def __init__(self, vectors: list[list[float]] | None = None, error: Exception | None = None) -> None:
        self.vectors, self.error = vectors, error
        self.models: list[str | None] = []

    def embed(self, texts: Sequence[str], *, model: str | None = None) -> list[list[float]]:
        self.models.append(model)
        if self.error:
            raise self.error
        return self.vectors if self.vectors is not None else [[1.0, 0.0] for _ in texts]


# --- one pass and one fail per type ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assertion", "passing", "failing", "fail_reason"),
    [
        (Assertion("equals", "exact text"), "  exact text\n", "exact text!", "does not equal"),
        (Assertion("contains", "Refund"), "a Refund now", "a refund now", "does not contain 'Refund'"),
        (Assertion("icontains", "Refund"), "a REFUND now", "a return now", "does not contain"),
        (
            Assertion("not-contains", "4111 1111"),
            "card ending 1111",
            "card 4111 1111 1111",
            "contains '4111 1111' (at character 5)",
        ),
        (Assertion("regex", r"order\s+#?123"), "for order  #123.", "for order 12x", "does not match"),
        (Assertion("is-json"), ' {"a": 1} ', "{'a': 1}", "not valid JSON"),
        (
            Assertion("json-schema", {"type": "object", "required": ["a"]}),
            '{"a": 1}',
            '{"b": 1}',
            "missing required property 'a'",
        ),
        (
            Assertion("similarity", "the customer wants a refund", threshold=0.5),
            "The customer wants a refund.",
            "hello world",
            "0.000 < threshold 0.5",
        ),
    ],
)
def test_text_assertions_pass_and_fail(
    assertion: Assertion, passing: str, failing: str, fail_reason: str
) -> None:
    ok, reason = check(assertion, passing)
    assert ok, reason
    ok, reason = check(assertion, failing)
    assert not ok
    assert fail_reason in reason


def test_latency_and_cost_thresholds() -> None:
    latency = Assertion("latency_ms", threshold=500)
    assert evaluate(latency, out(latency_ms=500), CASE).passed
    result = evaluate(latency, out(latency_ms=501), CASE)
    assert not result.passed and "latency 501 ms > limit 500 ms" in result.reason
    cost = Assertion("cost_usd", threshold=0.01)
    assert evaluate(cost, out(cost_usd=0.01), CASE).passed
    result = evaluate(cost, out(cost_usd=0.02), CASE)
    assert not result.passed and "cost $0.020000 > limit $0.01" in result.reason


def test_is_json_rejects_nan_which_python_would_accept() -> None:
    assert not check(Assertion("is-json"), "NaN")[0]
    assert not check(Assertion("is-json"), '{"a": Infinity}')[0]


def test_failed_call_fails_every_assertion_and_keeps_the_hard_flag() -> None:
    for kind in ASSERTION_TYPES:
        assertion = Assertion(kind, "x", threshold=0.5, hard_fail=True)
        result = evaluate(assertion, out("x", error="HTTP 503: all targets failed"), CASE, judge=FakeJudge())
        assert not result.passed and result.hard_fail
        assert result.reason == "the call failed: HTTP 503: all targets failed"


def test_hard_fail_flag_is_carried_on_pass_and_fail() -> None:
    assertion = Assertion("not-contains", "secret", hard_fail=True)
    assert evaluate(assertion, out("fine"), CASE).hard_fail
    assert evaluate(assertion, out("a secret"), CASE).hard_fail


# --- similarity -------------------------------------------------------------------------------------------


def test_token_f1_values() -> None:
    assert token_f1("a b c", "a b c") == 1.0
    assert token_f1("", "") == 1.0
    assert token_f1("a", "") == 0.0
    # overlap 2: precision 2/4, recall 2/2 -> F1 2/3; case and punctuation are ignored
    assert token_f1("The cat, sat down", "the CAT") == pytest.approx(2 / 3)
    assert token_f1("a a b", "a b b") == pytest.approx(2 / 3)  # multiset overlap, not sets


def test_embedding_similarity_uses_the_embedder_and_clamps_negative() -> None:
    assertion = Assertion("similarity", "ref", threshold=0.9, method="embedding", model="echo-embed")
    embedder = FakeEmbedder([[1.0, 0.0], [0.6, 0.8]])
    result = evaluate(assertion, out("text"), CASE, embedder=embedder)
    assert not result.passed and result.score == pytest.approx(0.6)
    assert "embedding cosine" in result.reason and embedder.models == ["echo-embed"]
    opposite = evaluate(assertion, out("text"), CASE, embedder=FakeEmbedder([[1.0, 0.0], [-1.0, 0.0]]))
    assert opposite.score == 0.0
    same = evaluate(assertion, out("text"), CASE, embedder=FakeEmbedder([[0.3, 0.4], [0.3, 0.4]]))
    assert same.passed and same.score == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("embedder", "reason"),
    [
        (None, "needs an embedder"),
        (
            FakeEmbedder(error=EvalServiceError("HTTP 404: model_not_found")),
            "embedding call failed: HTTP 404",
        ),
        (FakeEmbedder([[1.0]]), "returned 1 vectors for 2 texts"),
    ],
)
def test_embedding_similarity_errors_fail_with_a_reason(embedder: FakeEmbedder | None, reason: str) -> None:
    assertion = Assertion("similarity", "ref", threshold=0.5, method="embedding")
    result = evaluate(assertion, out("text"), CASE, embedder=embedder)
    assert not result.passed and reason in result.reason


def test_cosine_similarity_edge_cases() -> None:
    assert cosine_similarity([], []) == 0.0
    assert cosine_similarity([0.0, 0.0], [1.0, 1.0]) == 0.0
    assert cosine_similarity([1.0], [1.0, 2.0]) == 0.0
    assert cosine_similarity([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.0)


# --- llm-judge ---------------------------------------------------------------------------------------------


def test_llm_judge_passes_and_fails_on_threshold_and_sends_the_case_input() -> None:
    assertion = Assertion("llm-judge", "States the request?", threshold=0.7, model="chat-smart")
    judge = FakeJudge((0.8, "it does"))
    result = evaluate(assertion, out("summary"), CASE, judge=judge)
    assert result.passed and result.score == 0.8 and "it does" in result.reason
    assert judge.calls == [("States the request?", "ticket: refund order 123", "summary", "chat-smart")]
    judge.answer = (0.5, "partly")
    result = evaluate(assertion, out("summary"), CASE, judge=judge, input_text="rendered prompt")
    assert not result.passed and "0.500 < threshold 0.7" in result.reason
    assert judge.calls[-1][1] == "rendered prompt"


@pytest.mark.parametrize(
    ("judge", "reason"),
    [
        (None, "needs a judge"),
        (FakeJudge(error=JudgeAnswerError("no JSON object")), "judge answer not parseable"),
        (
            FakeJudge(error=EvalServiceError("HTTP 429: slow down (after 3 attempts)")),
            "judge call failed: HTTP 429",
        ),
        (FakeJudge(answer=(1.5, "too high")), "judge answer not parseable"),
        (FakeJudge(answer=(math.nan, "nan")), "judge answer not parseable"),
        (FakeJudge(error=RuntimeError("boom")), "judge call failed: boom"),
    ],
)
def test_llm_judge_problems_fail_the_assertion(judge: FakeJudge | None, reason: str) -> None:
    result = evaluate(Assertion("llm-judge", "r", threshold=0.5), out("x"), CASE, judge=judge)
    assert not result.passed and reason in result.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"score": 0.9, "reason": "good"}', (0.9, "good")),
        ('```json\n{"score": 1, "reason": "all there"}\n```', (1.0, "all there")),
        ('Sure! Here: {"note": {"x": 1}} then {"score": "0.25", "reason": "weak"} done', (0.25, "weak")),
        ('{"score": 0}', (0.0, "")),
    ],
)
def test_parse_judge_answer_is_robust(text: str, expected: tuple[float, str]) -> None:
    assert parse_judge_answer(text) == expected


@pytest.mark.parametrize(
    "text", ["", "score: 0.9", '{"score": 7}', '{"score": "high"}', '{"reason": "x"}', '{"score": true}']
)
def test_parse_judge_answer_rejects_garbage(text: str) -> None:
    with pytest.raises(JudgeAnswerError):
        parse_judge_answer(text)


# --- JSON Schema subset -----------------------------------------------------------------------------------


def test_schema_subset_validation() -> None:
    schema = {
        "type": "object",
        "required": ["name", "tags"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 2, "pattern": "^[a-z]+$"},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
            "n": {"type": "integer", "minimum": 0, "exclusiveMaximum": 10},
            "kind": {"anyOf": [{"const": "x"}, {"type": "null"}]},
        },
    }
    assert schema_problems(schema) == []
    assert schema_errors({"name": "ab", "tags": ["a"], "n": 3.0, "kind": None}, schema) == []
    errors = schema_errors({"name": "A", "tags": ["c", "a", "b"], "n": 10, "kind": "y", "extra": 1}, schema)
    text = "\n".join(errors)
    for needle in (
        "shorter than 2",
        "does not match",
        "not one of the allowed",
        "at most 2 items",
        "less than 10",
        "anyOf",
        "unexpected property 'extra'",
    ):
        assert needle in text
    assert schema_errors(True, {"type": "integer"}) == ["$: expected integer, got boolean"]
    assert schema_errors(1, {"oneOf": [{"type": "integer"}, {"type": "number"}]}) == [
        "$: matches 2 of the oneOf schemas (needs exactly 1)"
    ]
    assert schema_errors(1, {"not": {"type": "integer"}})
    assert schema_errors("x", False)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "thing"},
        {"required": "a"},
        {"properties": []},
        {"minLength": -1},
        {"pattern": "("},
        {"anyOf": []},
        {"$ref": "#/a"},
        [1],
    ],
)
def test_schema_problems_found(schema: Any) -> None:
    assert schema_problems(schema)


# --- never raises (hypothesis) ------------------------------------------------------------------------------

ALL_ASSERTIONS = [
    Assertion("equals", "x"),
    Assertion("contains", "x"),
    Assertion("icontains", "ß"),
    Assertion("not-contains", "x"),
    Assertion("regex", r"(?i)^\w+\s*\d{2,}$"),  # no catastrophic backtracking: arbitrary text must stay fast
    Assertion("is-json"),
    Assertion("json-schema", {"type": "object", "properties": {"a": {"type": "string", "pattern": "^a"}}}),
    Assertion("similarity", "a reference answer", threshold=0.5),
    Assertion("similarity", "a reference answer", threshold=0.5, method="embedding"),
    Assertion("llm-judge", "rubric", threshold=0.5),
    Assertion("latency_ms", threshold=10),
    Assertion("cost_usd", threshold=0.1),
]


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=300), latency=st.floats(allow_nan=True), cost=st.floats(allow_nan=True))
def test_evaluate_never_raises(text: str, latency: float, cost: float) -> None:
    output = CaseOutput(text=text, latency_ms=latency, cost_usd=cost)
    for assertion in ALL_ASSERTIONS:
        result = evaluate(
            assertion, output, CASE, judge=FakeJudge((0.5, text)), embedder=FakeEmbedder([[1.0], [math.nan]])
        )
        assert isinstance(result.passed, bool) and result.reason
        assert result.score is None or 0.0 <= result.score <= 1.0


@settings(max_examples=100, deadline=None)
@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_json_outputs_are_judged_by_the_schema(value: Any) -> None:
    text = json.dumps(value)
    assert evaluate(Assertion("is-json"), out(text), CASE).passed
    is_object = isinstance(value, dict)
    assert evaluate(Assertion("json-schema", {"type": "object"}), out(text), CASE).passed is is_object


@settings(max_examples=150, deadline=None)
@given(needle=st.text(min_size=1, max_size=10), before=st.text(max_size=20), after=st.text(max_size=20))
def test_contains_family_agrees_with_python(needle: str, before: str, after: str) -> None:
    text = before + needle + after
    assert evaluate(Assertion("contains", needle), out(text), CASE).passed
    assert not evaluate(Assertion("not-contains", needle), out(text), CASE).passed
    assert evaluate(Assertion("icontains", needle.upper()), out(text.lower()), CASE).passed is (
        needle.upper().casefold() in text.lower().casefold()
    )
    absent = evaluate(Assertion("not-contains", needle), out(before), CASE).passed
    assert absent is (needle not in before)


@settings(max_examples=150, deadline=None)
@given(literal=st.text(min_size=1, max_size=15), text=st.text(max_size=30))
def test_escaped_regex_matches_exactly_when_the_literal_is_present(literal: str, text: str) -> None:
    assertion = Assertion("regex", re.escape(literal))
    assert evaluate(assertion, out(text), CASE).passed is (literal in text)
    assert evaluate(assertion, out(text + literal), CASE).passed


@settings(max_examples=150, deadline=None)
@given(a=st.text(max_size=60), b=st.text(max_size=60))
def test_token_f1_is_symmetric_and_bounded(a: str, b: str) -> None:
    score = token_f1(a, b)
    assert 0.0 <= score <= 1.0
    assert score == pytest.approx(token_f1(b, a))
    assert token_f1(a, a) == 1.0


# --- gateway-backed judge and embedder against a local fake server ---------------------------------------


class _Fake:
    """Queued responses for a tiny local OpenAI-compatible server; records the requests it saw."""

    def __init__(self) -> None:
        self.responses: list[tuple[int, dict[str, str], Any]] = []
        self.requests: list[tuple[str, dict[str, str], Any]] = []


@pytest.fixture
def fake_api() -> Iterator[tuple[str, _Fake]]:
    fake = _Fake()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            fake.requests.append((self.path, dict(self.headers), json.loads(self.rfile.read(length))))
            status, headers, body = fake.responses.pop(0)
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", fake
    server.shutdown()
    server.server_close()


def chat(content: str) -> dict[str, Any]:
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


def test_gateway_judge_posts_a_chat_completion_and_parses_the_score(fake_api: tuple[str, _Fake]) -> None:
    url, fake = fake_api
    fake.responses.append((200, {}, chat('```json\n{"score": 0.75, "reason": "mostly"}\n```')))
    judge = GatewayJudge(url + "/", "aif-secret", model="chat-smart")
    assert judge.score("rubric R", "input I", "output O", model="chat-fast") == (0.75, "mostly")
    path, headers, body = fake.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer aif-secret"
    assert body["model"] == "chat-fast" and body["temperature"] == 0
    assert (
        "rubric R" in body["messages"][1]["content"]
        and "<output>\noutput O\n</output>" in body["messages"][1]["content"]
    )


def test_gateway_judge_retries_throttling_then_gives_up_with_a_reason(fake_api: tuple[str, _Fake]) -> None:
    url, fake = fake_api
    sleeps: list[float] = []
    error = {"error": {"message": "slow down", "type": "rate_limit", "param": None, "code": "rate_limited"}}
    fake.responses += [
        (429, {"Retry-After": "2"}, error),
        (503, {}, error),
        (200, {}, chat('{"score": 1, "reason": "ok"}')),
    ]
    judge = GatewayJudge(url, "k", attempts=3, sleep=sleeps.append)
    assert judge.score("r", "i", "o") == (1.0, "ok")
    assert sleeps[0] == 2.0 and len(sleeps) == 2  # Retry-After honoured, then backoff
    assert fake.requests[0][2]["model"] == "chat-smart"

    fake.responses += [(429, {}, error)] * 2
    result = evaluate(
        Assertion("llm-judge", "r", threshold=0.5),
        out("o"),
        CASE,
        judge=GatewayJudge(url, "k", attempts=2, sleep=sleeps.append),
    )
    assert not result.passed and "judge call failed: HTTP 429: slow down (after 2 attempts)" in result.reason


def test_gateway_judge_does_not_retry_client_errors(fake_api: tuple[str, _Fake]) -> None:
    url, fake = fake_api
    fake.responses.append((404, {}, {"error": {"message": "unknown model 'nope'"}}))
    with pytest.raises(EvalServiceError, match="HTTP 404: unknown model 'nope'"):
        GatewayJudge(url, "k", sleep=lambda _: None).score("r", "i", "o", model="nope")
    assert len(fake.requests) == 1


def test_gateway_judge_unparseable_answer_fails_the_assertion(fake_api: tuple[str, _Fake]) -> None:
    url, fake = fake_api
    fake.responses.append((200, {}, chat("echo: Rubric: r")))
    result = evaluate(
        Assertion("llm-judge", "r", threshold=0.5), out("o"), CASE, judge=GatewayJudge(url, "k")
    )
    assert not result.passed and result.reason.startswith("judge answer not parseable")
    fake.responses.append((200, {}, "not json"))
    result = evaluate(
        Assertion("llm-judge", "r", threshold=0.5), out("o"), CASE, judge=GatewayJudge(url, "k")
    )
    assert not result.passed and "response is not JSON" in result.reason


def test_gateway_embedder_orders_by_index(fake_api: tuple[str, _Fake]) -> None:
    url, fake = fake_api
    fake.responses.append(
        (200, {}, {"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1, 0]}]})
    )
    assert GatewayEmbedder(url, "k").embed(["a", "b"]) == [[1.0, 0.0], [0.0, 1.0]]
    assert fake.requests[0][0] == "/v1/embeddings" and fake.requests[0][2] == {
        "model": "embed",
        "input": ["a", "b"],
    }
    fake.responses.append((200, {}, {"data": [{"index": 0}]}))
    with pytest.raises(EvalServiceError, match="no data"):
        GatewayEmbedder(url, "k").embed(["a"])


def test_unreachable_gateway_is_a_failed_assertion_not_a_crash() -> None:
    judge = GatewayJudge("http://127.0.0.1:9/v1", "k", attempts=2, timeout_s=1, sleep=lambda _: None)
    result = evaluate(Assertion("llm-judge", "r", threshold=0.5), out("o"), CASE, judge=judge)
    assert not result.passed and "connection failed" in result.reason and "after 2 attempts" in result.reason
