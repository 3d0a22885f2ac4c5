"""The canary Lambda against a gateway on 127.0.0.1: the real local gateway (echo model) and a stub
server for failures; the YAML-to-JSON suite conversion the construct does at synth time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from aif_canary import handler
from aif_canary.assertions import check_answer
from aif_canary.runner import Answer, CallFailed, GatewayClient, request_body, run_suite
from moto import mock_aws

from ai_factory.constructs.canary import CanaryError, load_canary_suite
from ai_factory.local.server import LocalGatewayServer
from ai_factory.local.sqlite_store import SqliteKeyStore, default_db_path
from aif_gateway.records import ApiKeyRecord, generate_key

SUITE_YAML = """
suite: echo-canary
model: echo
messages:
  - role: user
    content: "Say {{ word }}"
cases:
  - id: says-banana
    vars: {word: banana}
    assert:
      - {type: contains, value: "Say banana"}
      - {type: icontains, value: "ECHO"}
      - {type: not-contains, value: "cherry"}
      - {type: regex, value: "^echo: Say \\\\w+$"}
      - {type: latency_ms, threshold: 10000}
  - id: expects-cherry
    vars: {word: apple}
    assert:
      - {type: contains, value: cherry}
      - {type: llm-judge, value: "is it polite?", threshold: 0.7}
  - id: only-a-judge
    vars: {word: x}
    assert:
      - {type: llm-judge, value: "polite", threshold: 0.7}
"""


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "canary.yaml"
    path.write_text(SUITE_YAML, encoding="utf-8")
    return path


def test_suite_conversion_keeps_runnable_assertions_and_notes_the_rest(suite_file: Path) -> None:
    notes: list[str] = []
    suite = load_canary_suite(suite_file, note=notes.append)
    assert suite["model"] == "echo" and suite["messages"][0]["content"] == "Say {{ word }}"
    assert [c["id"] for c in suite["cases"]] == ["says-banana", "expects-cherry"]
    assert suite["cases"][0]["assert"] == [
        {"type": "contains", "value": "Say banana"},
        {"type": "icontains", "value": "ECHO"},
        {"type": "not-contains", "value": "cherry"},
        {"type": "regex", "value": "^echo: Say \\w+$"},
        {"type": "latency_ms", "value": 10000.0},
    ]
    assert suite["cases"][1]["assert"] == [{"type": "contains", "value": "cherry"}]
    assert any("llm-judge" in n for n in notes) and any("only-a-judge" in n for n in notes)
    json.dumps(suite)  # what goes into the asset is plain JSON
    assert len(load_canary_suite(suite_file, max_cases=1)["cases"]) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("suite: s\ncases: 3", ":1: give 'prompt'"),
        ("suite: s\nmodel: m\nmessages: [{role: user, content: hi}]\ncases: 3", ":4: 'cases' must be"),
        ("suite: s\nprompt: 5\ncases: []", ":2: prompt"),
        (
            "suite: s\nmodel: m\nmessages: [{role: user, content: hi}]\n"
            "cases: [{id: a, assert: [{type: regex, value: '('}]}]",
            ":4: .*regex",
        ),
        (
            "suite: s\nmodel: m\nmessages: [{role: user, content: hi}]\n"
            "cases: [{id: a, assert: [{type: latency_ms, threshold: fast}]}]",
            ":4: .*threshold",
        ),
        (
            "suite: s\nmodel: m\nmessages: [{role: user, content: hi}]\n"
            "cases: [{id: a, vars: [1], assert: [{type: contains, value: x}]}]",
            ":4: .*vars",
        ),
        (
            "suite: s\nmodel: m\nmessages: [{role: user, content: hi}]\n"
            "cases: [{id: a, assert: [{contains: a}]}]",
            ":4: .*unknown field 'contains'",
        ),
    ],
)
def test_malformed_suites_are_refused_with_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CanaryError, match=message) as info:
        load_canary_suite(path)
    assert str(path) in str(info.value)


def test_prompt_suites_ask_the_gateway_to_render_the_production_alias(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "suite: s\nprompt: summarize-ticket\n"
        "cases: [{id: a, vars: {t: x}, assert: [{type: contains, value: a}]}]"
    )
    suite = load_canary_suite(path)
    body = request_body(suite, suite["cases"][0])
    assert body == {
        "prompt": {"name": "summarize-ticket", "variables": {"t": "x"}, "alias": "production"},
        "messages": [],
    }


def test_request_options_of_the_suite_and_case_reach_the_gateway(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "suite: s\nprompt: extract\nrequest: {temperature: 0, max_tokens: 50}\ncases:\n"
        "  - id: a\n    vars: {t: x}\n"
        "    request: {max_tokens: 80, response_format: {type: json_object}}\n"
        "    assert: [{type: contains, value: a}]\n"
        "  - id: b\n    vars: {t: y}\n    assert: [{type: contains, value: b}]\n"
    )
    suite = load_canary_suite(path)
    first, second = (request_body(suite, case) for case in suite["cases"])
    assert (first["temperature"], first["max_tokens"], first["response_format"]) == (
        0,
        80,
        {"type": "json_object"},
    )
    assert (second["temperature"], second["max_tokens"]) == (0, 50) and "response_format" not in second


def test_included_shipped_suites_run_in_the_canary_too(tmp_path: Path) -> None:
    """``include:`` of a shipped safety suite: its cases run in the canary bound to the feature's prompt,
    exactly as ``ai-factory eval`` runs them (the canary reads suites with the harness's parser)."""
    from ai_factory.evals.suite import load_suite

    path = tmp_path / "injection.yaml"
    path.write_text(
        "suite: summarize-injection\nprompt: summarize-ticket\n"
        "include: {suite: safety/prompt-injection, input_var: ticket, vars: {max_sentences: 2}}\n"
    )
    harness = load_suite(path)
    suite = load_canary_suite(path)

    assert [c["id"] for c in suite["cases"]] == [c.id for c in harness.cases] and suite["cases"]
    first = suite["cases"][0]
    assert first["vars"] == {"max_sentences": 2, "ticket": harness.cases[0].vars["ticket"]}
    assert {"type": "not-contains", "value": "ZEBRA-CANARY-7Q3X"} in first["assert"]


def test_schema_assertions_run_in_the_canary(tmp_path: Path) -> None:
    path = tmp_path / "json.yaml"
    path.write_text(
        "suite: s\nprompt: extract\ncases:\n  - id: a\n    vars: {t: x}\n    assert:\n"
        "      - {type: is-json}\n"
        "      - {type: json-schema, value: {type: object, required: [intent]}}\n"
    )
    (case,) = load_canary_suite(path)["cases"]
    assert case["assert"] == [
        {"type": "is-json", "value": None},
        {"type": "json-schema", "value": {"type": "object", "required": ["intent"]}},
    ]
    assert check_answer(case["assert"][1], '{"intent": "refund"}', 1).passed
    assert not check_answer(case["assert"][1], '{"other": 1}', 1).passed


@pytest.mark.parametrize(
    ("assertion", "text", "latency", "ok"),
    [
        ({"type": "equals", "value": "yes"}, " yes\n", 1, True),
        ({"type": "equals", "value": "yes"}, "yes!", 1, False),
        ({"type": "contains", "value": "A"}, "a", 1, False),
        ({"type": "icontains", "value": "A"}, "a", 1, True),
        ({"type": "not-contains", "value": "4111"}, "card 4111", 1, False),
        ({"type": "regex", "value": r"\d{3}"}, "id 123", 1, True),
        ({"type": "latency_ms", "value": 100}, "", 150.0, False),
        ({"type": "latency_ms", "value": 100}, "", 99.0, True),
        ({"type": "similarity", "value": "x"}, "x", 1, False),  # needs a model: not in the canary
        # The harness's case-insensitive match (casefold, as in `ai-factory eval`), not lower().
        ({"type": "icontains", "value": "STRASSE"}, "Hauptstraße 1", 1, True),
        ({"type": "is-json", "value": None}, '{"a": 1}', 1, True),
    ],
)
def test_assertions_are_the_eval_harness_ones(
    assertion: dict[str, Any], text: str, latency: float, ok: bool
) -> None:
    from aif_canary.assertions import to_assertion

    from ai_factory.evals.assertions import evaluate
    from ai_factory.evals.model import Case, CaseOutput

    verdict = check_answer(assertion, text, latency)
    assert verdict.passed is ok
    if assertion["type"] != "similarity":
        harness = evaluate(
            to_assertion(assertion), CaseOutput(text, latency), Case(id="c", vars={}, assertions=())
        )
        assert (harness.passed, harness.reason) == (verdict.passed, verdict.reason)


# --- against the real local gateway ---------------------------------------------------------------


@pytest.fixture
def local_gateway(tmp_path: Path) -> Iterator[tuple[str, str]]:
    plaintext, key_id, key_hash = generate_key()
    SqliteKeyStore(default_db_path(tmp_path)).put(
        ApiKeyRecord(key_id, key_hash, "support", "canaried", ("echo",), 10.0, 600, datetime.now(UTC))
    )
    with LocalGatewayServer(port=0, state_dir=tmp_path) as server:
        yield f"{server.url}/v1", plaintext


def test_suite_through_the_local_gateway(suite_file: Path, local_gateway: tuple[str, str]) -> None:
    url, key = local_gateway
    suite = load_canary_suite(suite_file)
    result = run_suite(suite, GatewayClient(url, key))
    first, second = result.cases
    assert first.passed and first.assertions_passed == 5 and first.request_id
    assert not second.passed and second.failures == ["contains: output does not contain 'cherry'"]
    assert result.pass_rate == 0.5
    assert result.assertion_pass_rate == pytest.approx(5 / 6)
    assert result.errors == 0


def test_handler_reads_the_key_from_its_secret_and_publishes_emf(
    suite_file: Path,
    local_gateway: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, key = local_gateway
    suites = tmp_path / "canary_suites.json"
    suites.write_text(
        json.dumps({"version": 1, "features": {"support/canaried": load_canary_suite(suite_file)}})
    )
    monkeypatch.setenv("AIF_GATEWAY_URL", url)
    monkeypatch.setenv("AIF_CANARY_SUITES", str(suites))
    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(handler, "_suites", None)
    monkeypatch.setattr(handler, "_secrets", {})
    monkeypatch.setattr(handler, "_secrets_client", None)
    with mock_aws():
        secret = boto3.client("secretsmanager").create_secret(
            Name="ai-factory/support/canaried/api-key",
            SecretString=json.dumps({"api_key": key, "key_id": "k"}),
        )["ARN"]
        event = {"team": "support", "feature": "canaried", "secret_id": secret}
        summary = handler.lambda_handler(event, None)
        assert summary["pass_rate"] == 0.5
        handler.lambda_handler(event, None)  # the key is cached: no second secret read needed
        with pytest.raises(ValueError, match="no canary suite"):
            handler.lambda_handler({**event, "feature": "unknown"}, None)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert len(emf) == 2
    directive = emf[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "AIFactory" and directive["Dimensions"] == [["Team", "Feature"]]
    names = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert names["CanaryPassRate"] == "None" and names["EvalPassRate"] == "None"
    assert (emf[0]["Team"], emf[0]["Feature"], emf[0]["CanaryPassRate"]) == ("support", "canaried", 0.5)
    assert emf[0]["EvalPassRate"] == pytest.approx(0.83333, abs=1e-5)
    assert emf[0]["CanaryErrors"] == 0 and emf[0]["CanaryCases"] == 2


# --- failures, with a stub gateway ----------------------------------------------------------------


class _Stub(BaseHTTPRequestHandler):
    replies: list[tuple[int, Any, float]] = []
    bodies: list[Any] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        type(self).bodies.append((self.headers.get("Authorization"), json.loads(self.rfile.read(length))))
        status, payload, delay = type(self).replies.pop(0)
        time.sleep(delay)
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[tuple[str, type[_Stub]]]:
    handler_cls = type("Stub", (_Stub,), {"replies": [], "bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler_cls
    server.shutdown()
    server.server_close()


def _completion(text: str) -> dict[str, Any]:
    return {"choices": [{"message": {"role": "assistant", "content": text}}]}


def test_gateway_errors_slow_answers_and_junk_fail_their_cases(stub: tuple[str, type[_Stub]]) -> None:
    url, server = stub
    server.replies = [
        (503, {"error": {"code": "all_targets_failed"}}, 0),
        (200, _completion("ok"), 0.3),
        (200, "not json", 0),
        (200, {"choices": []}, 0),
    ]
    suite = {
        "name": "s",
        "model": "chat-fast",
        "messages": [{"role": "user", "content": "{{q}}"}],
        "cases": [
            {"id": str(i), "vars": {"q": f"question {i}"}, "assert": [{"type": "latency_ms", "value": 200}]}
            for i in range(4)
        ],
    }
    result = run_suite(suite, GatewayClient(url, "aif-secret", timeout_s=5))
    assert [c.passed for c in result.cases] == [False, False, False, False]
    assert "HTTP 503" in (result.cases[0].error or "") and "all_targets_failed" in (
        result.cases[0].error or ""
    )
    assert result.cases[1].error is None and result.cases[1].failures[0].startswith("latency_ms: latency ")
    assert result.errors == 3
    authorization, body = server.bodies[0]
    assert authorization == "Bearer aif-secret"
    assert body == {"model": "chat-fast", "messages": [{"role": "user", "content": "question 0"}]}


def test_unreachable_gateway_and_deadline() -> None:
    suite = {
        "name": "s",
        "model": "m",
        "messages": [],
        "cases": [{"id": "a", "assert": [{"type": "contains", "value": "x"}]}],
    }
    result = run_suite(suite, GatewayClient("http://127.0.0.1:9/v1", "k", timeout_s=1))
    assert result.errors == 1 and result.pass_rate == 0.0

    def never(body: dict[str, Any]) -> Answer:
        raise AssertionError("must not be called")

    skipped = run_suite(suite, never, deadline=lambda: True)
    assert skipped.cases[0].error == "skipped: the canary ran out of time"

    def failing(body: dict[str, Any]) -> Answer:
        raise CallFailed("HTTP 429: budget")

    assert run_suite(suite, failing).cases[0].error == "HTTP 429: budget"
