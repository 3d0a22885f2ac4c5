"""End to end: the official ``openai`` SDK's streaming iterator against ``ai-factory serve`` with a paced
echo model (one token every ``PACE_MS``), so the stream is observed arriving chunk by chunk."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from ai_factory.local.server import LocalGatewayServer
from ai_factory.local.sqlite_store import SqliteLedger, default_db_path

from .conftest import CATALOG, LocalGateway

pytestmark = pytest.mark.e2e

PACE_MS = 30
PROMPT = "one two three four five six seven eight nine ten"  # the answer: "echo: " + these 10 words
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a text up.",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def paced_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGateway]:
    root: Path = tmp_path_factory.mktemp("paced-gateway")
    catalog = root / "models.yaml"
    catalog.write_text(CATALOG, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIF_ECHO_TOKEN_MS", str(PACE_MS))
        server = LocalGatewayServer("127.0.0.1", 0, state_dir=root / "state", catalog_path=catalog).start()
    try:
        yield LocalGateway(server, root / "state", catalog)
    finally:
        server.shutdown()


def sdk(gw: LocalGateway) -> OpenAI:
    key = gw.create_key(f"stream-{time.monotonic_ns()}", "echo")
    return OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)


def test_first_chunk_arrives_while_the_paced_model_is_still_generating(paced_gateway: LocalGateway) -> None:
    client = sdk(paced_gateway)
    started = time.perf_counter()
    arrivals: list[tuple[float, Any]] = []
    stream = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        arrivals.append((time.perf_counter() - started, chunk))
    contents = [
        (t, c.choices[0].delta.content) for t, c in arrivals if c.choices and c.choices[0].delta.content
    ]
    assert "".join(text for _, text in contents) == f"echo: {PROMPT}"
    assert len(contents) == 11  # one chunk per token, not one burst
    first_token, last_token = contents[0][0], contents[-1][0]
    # Each token is paced PACE_MS after the previous one: chunks flushed as produced arrive spread over
    # at least that much time; a buffered stream would deliver them all at once at the end.
    assert last_token - first_token >= (len(contents) - 1) * PACE_MS / 1000 * 0.9
    assert first_token < arrivals[-1][0]
    usage = arrivals[-1][1].usage
    assert arrivals[-1][1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens) == (10, 11)


def test_tool_call_deltas_reassemble_into_the_non_streamed_call(paced_gateway: LocalGateway) -> None:
    client = sdk(paced_gateway)
    kwargs: dict[str, Any] = {
        "model": "echo",
        "messages": [{"role": "user", "content": "find the invoice"}],
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    }
    whole = client.chat.completions.create(**kwargs)
    expected = whole.choices[0].message.tool_calls
    assert expected

    calls: dict[int, dict[str, str]] = {}
    finish = None
    pieces = 0
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:
            pieces += 1
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
        finish = choice.finish_reason or finish
    assert pieces > 2  # the arguments arrived in pieces
    assert finish == whole.choices[0].finish_reason == "tool_calls"
    assert [calls[i] for i in sorted(calls)] == [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in expected
    ]
    assert json.loads(calls[0]["arguments"]) == {"text": "find the invoice"}


def test_a_client_that_hangs_up_stops_the_stream_and_its_usage_is_recorded(
    paced_gateway: LocalGateway,
) -> None:
    key = paced_gateway.create_key(f"hangup-{time.monotonic_ns()}", "echo")
    long_prompt = " ".join(f"w{i}" for i in range(300))  # ~9 s of paced output if it ran to the end
    body = json.dumps(
        {"model": "echo", "messages": [{"role": "user", "content": long_prompt}], "stream": True}
    )
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    started = time.monotonic()
    with socket.create_connection((paced_gateway.server.host, paced_gateway.server.port)) as sock:
        sock.sendall(request)
        received = b""
        while b'"content":"echo: "' not in received:
            received += sock.recv(65536)
    head = received.split(b"\r\n\r\n", 1)[0].decode()
    assert "Transfer-Encoding: chunked" in head
    request_id = next(
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")
        if line.lower().startswith("x-request-id")
    )

    ledger = SqliteLedger(default_db_path(paced_gateway.state_dir))
    record = None
    while record is None and time.monotonic() - started < 8:
        time.sleep(0.05)
        record = ledger.find(request_id)
    assert record is not None, "no usage record for the abandoned stream"
    assert record.error_type == "client_disconnected"
    assert 1 <= record.output_tokens < 300 and record.input_tokens > 0


class _BreaksMidStream:
    """A provider whose stream sends two words, then fails as a Bedrock stream error would."""

    def chat_stream(self, target: Any, request: Any, ctx: Any) -> Iterator[Any]:
        from aif_gateway.provider_types import ProviderError, TextDelta

        def events() -> Iterator[Any]:
            yield TextDelta("partial ")
            yield TextDelta("answer")
            raise ProviderError("ModelStreamErrorException", "stream broke", retryable=True)

        return events()

    def chat(self, target: Any, request: Any, ctx: Any) -> Any:
        raise AssertionError("streamed requests do not call chat")

    def embed(self, target: Any, request: Any, ctx: Any) -> Any:
        raise AssertionError("not used")


def test_the_sdk_raises_on_an_error_event_after_partial_content(tmp_path: Path) -> None:
    import openai
    from conftest import put_key

    from aif_gateway.app import Gateway
    from aif_gateway.config import GatewayConfig, ModelTarget, Route
    from aif_gateway.http_server import GatewayHTTPServer
    from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger

    target = ModelTarget(name="flaky", provider="echo", model_id="flaky", modality="chat")
    keys, ledger = MemoryKeyStore(), MemoryLedger()
    config = GatewayConfig(routes={"flaky": Route("flaky", "chat", (target,))})
    gateway = Gateway(config, keys=keys, ledger=ledger, providers={"echo": _BreaksMidStream()})  # type: ignore[dict-item]
    plaintext = put_key(keys, ("flaky",), team="e2e", feature="flaky")
    with GatewayHTTPServer(gateway, "127.0.0.1", 0) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key=plaintext, max_retries=0, timeout=30)
        received = []
        stream = client.chat.completions.create(
            model="flaky", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.APIError, match="failed mid-stream"):
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
    assert received == ["partial ", "answer"]
    (record,) = ledger.records.values()
    assert record.error_type == "model_stream_error" and record.extra["usage_estimated"] == "true"
