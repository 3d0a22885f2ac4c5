"""Eval targets: the gateway target's retries (against a scripted HTTP server), the offline local target,
the Bedrock target (botocore Stubber) and how a suite's prompt is pinned and rendered."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from ai_factory.evals.model import Case, Gate, PromptRef, Suite
from ai_factory.evals.targets import (
    BedrockTarget,
    GatewayTarget,
    LocalTarget,
    ResolvedPrompt,
    TargetError,
    input_text,
    resolve_prompt,
)

PROMPT_FILE = """\
name: summarize-ticket
description: test prompt
owner: team@example.com
model: chat-fast
parameters: {temperature: 0.2, max_tokens: 50}
eval_suite: ../evals/suite.yaml
messages:
  - role: system
    content: You summarize tickets.
  - role: user
    content: "Summarize in {{max_sentences}} sentences: {{ticket}}"
"""


def make_suite(path: Path = Path("suite.yaml"), **overrides: Any) -> Suite:
    fields: dict[str, Any] = {
        "name": "s",
        "path": path,
        "content_hash": "sha256:x",
        "cases": (Case("c1", {"thing": "hello"}, ()),),
        "gate": Gate(),
        "model": "echo",
        "messages": ({"role": "user", "content": "Say {{thing}}"},),
    }
    fields.update(overrides)
    return Suite(**fields)


OK_BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "echo",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there"}}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 2},
}


class Scripted:
    """A tiny HTTP server answering from a script of (status, headers, body) and recording requests."""

    def __init__(self, script: list[tuple[int, dict[str, str], Any]]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(
                    {"path": self.path, "auth": self.headers["Authorization"], "body": json.loads(body)}
                )
                status, headers, payload = outer.script.pop(0) if outer.script else (200, {}, OK_BODY)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[Scripted] = []

    def start(script: list[tuple[int, dict[str, str], Any]]) -> Scripted:
        servers.append(Scripted(script))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def error(code: str, message: str = "nope") -> dict[str, Any]:
    return {"error": {"message": message, "type": "x", "param": None, "code": code}}


def test_gateway_target_retries_429_honouring_retry_after_then_succeeds(scripted: Any) -> None:
    server = scripted(
        [
            (429, {"Retry-After": "3"}, error("rate_limit_exceeded")),
            (
                200,
                {"x-aif-cost-usd": "0.0012500000", "x-aif-served-by": "echo", "x-request-id": "r-1"},
                OK_BODY,
            ),
        ]
    )
    sleeps: list[float] = []
    target = GatewayTarget(server.url, "aif-key", sleep=sleeps.append)
    out = target.run(make_suite(), make_suite().cases[0])
    target.close()
    assert out.error is None
    assert (out.text, out.cost_usd, out.input_tokens, out.output_tokens) == ("hi there", 0.00125, 7, 2)
    assert (out.model_served, out.request_id) == ("echo", "r-1")
    assert out.latency_ms > 0
    assert sleeps == [3.0]  # Retry-After, not the backoff
    assert len(server.requests) == 2
    assert server.requests[0]["auth"] == "Bearer aif-key"
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert server.requests[0]["body"] == {
        "model": "echo",
        "messages": [{"role": "user", "content": "Say hello"}],
    }


def test_gateway_target_backs_off_exponentially_with_jitter_and_gives_up(scripted: Any) -> None:
    server = scripted([(503, {}, error("all_targets_failed"))] * 5)
    sleeps: list[float] = []
    target = GatewayTarget(server.url, "k", sleep=sleeps.append, backoff_s=1.0, max_backoff_s=4.0)
    out = target.run(make_suite(), make_suite().cases[0])
    assert out.error is not None and "503" in out.error and "all_targets_failed" in out.error
    assert len(server.requests) == 5
    assert len(sleeps) == 4
    for attempt, delay in enumerate(sleeps):
        assert 0 <= delay <= min(4.0, 2**attempt)


def test_gateway_target_does_not_retry_other_client_errors(scripted: Any) -> None:
    server = scripted([(400, {"x-request-id": "r-9"}, error("invalid_prompt_variables", "missing ticket"))])
    sleeps: list[float] = []
    out = GatewayTarget(server.url, "k", sleep=sleeps.append).run(make_suite(), make_suite().cases[0])
    assert out.error == "HTTP 400 invalid_prompt_variables: missing ticket"
    assert out.request_id == "r-9"
    assert len(server.requests) == 1 and sleeps == []


def test_gateway_target_gives_up_at_once_on_a_retry_after_beyond_the_cap(scripted: Any) -> None:
    server = scripted([(429, {"Retry-After": "86400"}, error("budget_exhausted"))])
    sleeps: list[float] = []
    out = GatewayTarget(server.url, "k", sleep=sleeps.append).run(make_suite(), make_suite().cases[0])
    assert out.error is not None and "budget_exhausted" in out.error
    assert len(server.requests) == 1 and sleeps == []


def test_gateway_target_retries_connection_failures() -> None:
    sleeps: list[float] = []
    # Nothing listens on port 9 of loopback: every attempt is refused.
    target = GatewayTarget("http://127.0.0.1:9/v1", "k", attempts=3, sleep=sleeps.append)
    out = target.run(make_suite(), make_suite().cases[0])
    assert out.error is not None and "connection failed" in out.error and "3 attempts" in out.error
    assert len(sleeps) == 2


def test_gateway_target_sends_a_pinned_prompt_reference(scripted: Any) -> None:
    server = scripted([])
    suite = make_suite(model=None, messages=(), prompt=PromptRef("summarize-ticket", alias="staging"))
    case = Case("c", {"ticket": "t", "max_sentences": 2}, (), messages=({"role": "user", "content": "more"},))
    pinned = ResolvedPrompt("summarize-ticket", version=4, alias="staging")
    GatewayTarget(server.url, "k", prompt=pinned).run(suite, case)
    unpinned = ResolvedPrompt("summarize-ticket", alias="staging")
    GatewayTarget(server.url, "k", prompt=unpinned).run(suite, case)
    first, second = (r["body"] for r in server.requests)
    assert first == {
        "messages": [{"role": "user", "content": "more"}],
        "prompt": {
            "name": "summarize-ticket",
            "variables": {"ticket": "t", "max_sentences": 2},
            "version": 4,
        },
    }
    assert second["prompt"]["alias"] == "staging" and "version" not in second["prompt"]


def test_gateway_target_reports_vars_that_do_not_fit_without_calling(scripted: Any) -> None:
    server = scripted([])
    suite = make_suite(cases=(Case("c", {}, ()),))
    out = GatewayTarget(server.url, "k").run(suite, suite.cases[0])
    assert out.error is not None and "thing" in out.error
    assert server.requests == []


def test_gateway_target_rejects_a_bad_url() -> None:
    with pytest.raises(TargetError, match="must be http"):
        GatewayTarget("ftp://x/v1", "k")


def test_local_target_runs_offline_through_the_real_gateway(tmp_path: Path) -> None:
    suite = make_suite(model="chat-fast")  # a Bedrock route in the catalog: served by echo locally
    target = LocalTarget(state_dir=tmp_path)
    try:
        out = target.run(suite, suite.cases[0])
    finally:
        target.close()
    assert out.error is None
    assert out.text == "echo: Say hello"
    assert out.model_served == "echo"
    assert out.request_id
    assert out.cost_usd == 0.0


def write_feature(tmp_path: Path) -> Path:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "evals").mkdir()
    (tmp_path / "prompts" / "summarize-ticket.yaml").write_text(PROMPT_FILE)
    suite_path = tmp_path / "evals" / "suite.yaml"
    suite_path.write_text("suite: s\n")
    return suite_path


def test_local_target_renders_the_prompt_file_next_to_the_suite(tmp_path: Path) -> None:
    suite_path = write_feature(tmp_path)
    suite = make_suite(
        suite_path,
        model=None,
        messages=(),
        prompt=PromptRef("summarize-ticket", alias="staging"),
        cases=(Case("c", {"ticket": "refund order 123", "max_sentences": 2}, ()),),
    )
    prompt = resolve_prompt(suite, None, need_template=True)
    assert prompt is not None and prompt.version is None and prompt.version_label == "unresolved"
    assert prompt.source.endswith("summarize-ticket.yaml") and prompt.model == "chat-fast"
    target = LocalTarget(prompt=prompt, state_dir=tmp_path / "state")
    try:
        out = target.run(suite, suite.cases[0])
    finally:
        target.close()
    assert out.error is None, out.error
    assert out.text == "echo: Summarize in 2 sentences: refund order 123"
    text = input_text(prompt)(suite, suite.cases[0])
    assert text is not None and "[system] You summarize tickets." in text


class FakeRegistry:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None, str | None]] = []

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> Any:
        from ai_factory.prompts.registry import PromptNotFound

        self.calls.append((name, version, alias))
        if alias == "missing":
            raise PromptNotFound(f"prompt {name!r} has no alias 'missing'")

        class Info:
            pass

        info = Info()
        info.version = 7  # type: ignore[attr-defined]
        info.messages = [{"role": "user", "content": "Registered {{thing}}"}]  # type: ignore[attr-defined]
        info.model = "chat-fast"  # type: ignore[attr-defined]
        info.parameters = {"temperature": 0.0}  # type: ignore[attr-defined]
        return info


def test_resolve_prompt_pins_the_registry_version_and_cli_overrides_win() -> None:
    suite = make_suite(prompt=PromptRef("p", alias="staging"))
    registry = FakeRegistry()
    resolved = resolve_prompt(suite, registry)
    assert resolved is not None and resolved.version == 7 and resolved.source == "registry"
    assert resolved.messages == ({"role": "user", "content": "Registered {{thing}}"},)
    resolve_prompt(suite, registry, version=3)
    assert registry.calls == [("p", None, "staging"), ("p", 3, None)]
    with pytest.raises(TargetError, match="no alias 'missing'"):
        resolve_prompt(suite, registry, alias="missing")
    assert resolve_prompt(make_suite(), registry) is None


def test_resolve_prompt_without_registry_or_file_is_a_target_error(tmp_path: Path) -> None:
    suite = make_suite(tmp_path / "evals" / "s.yaml", prompt=PromptRef("nowhere"))
    with pytest.raises(TargetError, match="no prompt file named 'nowhere'"):
        resolve_prompt(suite, None, need_template=True)
    unresolved = resolve_prompt(suite, None)  # the gateway renders it: no template needed
    assert unresolved == ResolvedPrompt("nowhere")


def test_bedrock_target_calls_converse_and_prices_from_the_catalog(tmp_path: Path) -> None:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    suite_path = write_feature(tmp_path)
    suite = make_suite(
        suite_path, model=None, messages=(), prompt=PromptRef("summarize-ticket", alias="staging")
    )
    case = Case("c", {"ticket": "refund", "max_sentences": 1}, ())
    prompt = resolve_prompt(suite, None, need_template=True)
    target = BedrockTarget(prompt=prompt, client=client)
    route = target._config.routes["chat-fast"].targets[0]
    with Stubber(client) as stub:
        stub.add_response(
            "converse",
            {
                "output": {"message": {"role": "assistant", "content": [{"text": "A refund."}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 1000, "outputTokens": 200, "totalTokens": 1200},
                "metrics": {"latencyMs": 5},
                "ResponseMetadata": {"RequestId": "req-b"},
            },
            {
                "modelId": route.model_id,
                "system": [{"text": "You summarize tickets."}],
                "messages": [{"role": "user", "content": [{"text": "Summarize in 1 sentences: refund"}]}],
                "inferenceConfig": {"maxTokens": 50, "temperature": 0.2},
            },
        )
        stub.add_client_error("converse", "ThrottlingException", "slow down", 429)
        out = target.run(suite, case)
        failed = target.run(suite, case)
    assert out.error is None and out.text == "A refund."
    expected = (1000 * route.prices.input + 200 * route.prices.output) / 1_000_000
    assert out.cost_usd == pytest.approx(expected) and expected > 0
    assert (out.input_tokens, out.output_tokens, out.model_served) == (1000, 200, route.name)
    assert failed.error is not None and "ThrottlingException" in failed.error


def test_bedrock_target_refuses_models_bedrock_does_not_serve() -> None:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    out = BedrockTarget(client=client).run(make_suite(model="echo"), make_suite().cases[0])
    assert out.error is not None and "not served by Bedrock" in out.error
