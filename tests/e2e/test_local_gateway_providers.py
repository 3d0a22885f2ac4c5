"""The official openai SDK against the real local gateway, whose route is served by Anthropic's API (a
local fake of it): the client speaks Chat Completions, the gateway speaks Messages, the key comes from
(moto) Secrets Manager, and the key's clearance decides whether the data may go there at all."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from catalog_evidence import PASSING_EVIDENCE_YAML
from moto import mock_aws

from ai_factory.cli.main import main
from ai_factory.local.server import LocalGatewayServer
from tests.unit.fake_provider_api import FakeApi, json_answer, sse_answer, start_fake_api

openai = pytest.importorskip("openai")

CATALOG = """\
models:
  - name: claude-api
    provider: anthropic
    modality: chat
    model_id: claude-sonnet-4-5-20250929
    base_url: {url}
    secret: e2e/anthropic
    context_window: 200000
    max_output_tokens: 1000
    prices: {{input: 3.0, output: 15.0}}
    status: approved
    approved_by: ciso@example.com
    approved_on: 2026-12-01
    evidence: {evidence}
    owner: platform@example.com
    data_handling:
      processed_in: Anthropic, United States
      retention: 30 days
      trains_on_data: false
      contract: Anthropic Commercial Terms and DPA
      max_classification: internal
routes:
  - {{alias: chat-claude, targets: [claude-api]}}
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[LocalGatewayServer, FakeApi, Path, Path]]:
    fake = start_fake_api()
    api = next(fake)
    catalog = tmp_path / "models.yaml"
    catalog.write_text(CATALOG.format(url=api.url, evidence=PASSING_EVIDENCE_YAML), encoding="utf-8")
    with mock_aws():
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="e2e/anthropic", SecretString="sk-ant-e2e"
        )
        api.require_key = "sk-ant-e2e"
        server = LocalGatewayServer(
            "127.0.0.1", 0, state_dir=tmp_path / "state", catalog_path=catalog
        ).start()
        try:
            yield server, api, tmp_path / "state", catalog
        finally:
            server.shutdown()
            fake.close()


def create_key(state: Path, catalog: Path, *extra: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stderr(io.StringIO()):
        code = main(
            [
                "keys", "create", "--team", "e2e", "--feature", "claims", "--models", "chat-claude",
                "--state-dir", str(state), "--catalog", str(catalog), "--format", "json", *extra,
            ],
            out=out,
        )  # fmt: skip
    assert code == 0, out.getvalue()
    return str(json.loads(out.getvalue())["api_key"])


def message(text: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 12, "output_tokens": 4},
    }


def test_openai_sdk_chat_and_stream_served_by_anthropic(
    world: tuple[LocalGatewayServer, FakeApi, Path, Path],
) -> None:
    server, api, state, catalog = world
    client = openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=create_key(state, catalog, "--clearance", "internal")
    )
    api.queue(json_answer(message("Claim 7 is covered.")))
    answer = client.chat.completions.create(
        model="chat-claude",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Claim 7?"}],
    )
    assert answer.choices[0].message.content == "Claim 7 is covered."
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        12,
        4,
    )
    assert api.received[0].path == "/v1/messages" and api.received[0].body["system"] == "Be brief."

    api.queue(
        sse_answer(
            [
                (
                    "message_start",
                    {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}},
                ),
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                ),
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": "Covered"},
                    },
                ),
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "."}},
                ),
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn"},
                        "usage": {"output_tokens": 2},
                    },
                ),
                ("message_stop", {"type": "message_stop"}),
            ]
        )
    )
    stream = client.chat.completions.create(
        model="chat-claude",
        messages=[{"role": "user", "content": "Claim 7?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Covered."
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


def test_a_confidential_feature_gets_a_403_and_nothing_reaches_the_provider(
    world: tuple[LocalGatewayServer, FakeApi, Path, Path],
) -> None:
    server, api, state, catalog = world
    client = openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=create_key(state, catalog, "--clearance", "confidential")
    )
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(
            model="chat-claude", messages=[{"role": "user", "content": "Patient 12?"}]
        )
    assert "claude-api (anthropic) may receive up to internal" in str(caught.value)
    assert api.received == []
