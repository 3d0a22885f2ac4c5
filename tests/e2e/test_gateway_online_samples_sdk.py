"""The official OpenAI and Anthropic SDKs against the gateway over HTTP, with online sampling through the
gateway on: each answer (buffered and streamed, Chat Completions and Messages) reaches the sample queue
after its response (SQS on moto), and the real sampler writes it into the feature's table (DynamoDB on
moto). The ``echo`` provider stands for a target outside Bedrock's invocation log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from anthropic import Anthropic
from conftest import put_key
from moto import mock_aws
from openai import OpenAI

from aif_gateway.app import Gateway
from aif_gateway.config import GatewayConfig, ModelTarget, Route
from aif_gateway.http_server import GatewayHTTPServer
from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger
from aif_gateway.online_samples import SampleQueue, SampleWriter
from aif_online import handler
from tests.unit.test_gateway_online_samples import NAMESPACE, TABLE, sampler_table


class Served:
    def __init__(
        self, server: GatewayHTTPServer, gateway: Gateway, key: str, sqs: Any, queue_url: str
    ) -> None:
        self.server, self.gateway, self.key, self.sqs, self.queue_url = server, gateway, key, sqs, queue_url

    def samples(self) -> list[dict[str, Any]]:
        """Every message on the queue once the writer has sent what it holds."""
        assert self.gateway.drain(10.0) == 0
        messages: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            messages.extend(batch)
        return messages


@pytest.fixture
def served() -> Iterator[Served]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="aif-online-samples")["QueueUrl"]
        target = ModelTarget(name="echo", provider="echo", model_id="echo", modality="chat")
        config = GatewayConfig(routes={"echo": Route("echo", "chat", (target,))})
        keys = MemoryKeyStore()
        gateway = Gateway(
            config,
            keys=keys,
            ledger=MemoryLedger(),
            samples=SampleWriter(SampleQueue(queue_url, client=sqs)),  # after the response, as deployed
            namespace=NAMESPACE,
        )
        key = put_key(
            keys, ("echo",), team="support", feature="summarizer", clearance="internal", sampling_rate=1.0
        )
        with GatewayHTTPServer(gateway, "127.0.0.1", 0) as server:
            yield Served(server, gateway, key, sqs, queue_url)


def test_sdk_answers_become_samples_in_the_features_table(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai = OpenAI(base_url=f"{served.server.url}/v1", api_key=served.key, max_retries=0, timeout=30)
    anthropic = Anthropic(base_url=served.server.url, api_key=served.key, max_retries=0, timeout=30)
    question = [{"role": "user", "content": "Where is parcel 7?"}]

    buffered = openai.chat.completions.create(model="echo", messages=question)  # type: ignore[arg-type]
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in openai.chat.completions.create(model="echo", messages=question, stream=True)  # type: ignore[arg-type]
        if chunk.choices
    )
    message = anthropic.messages.create(model="echo", max_tokens=64, messages=question)  # type: ignore[arg-type]
    with anthropic.messages.stream(model="echo", max_tokens=64, messages=question) as stream:  # type: ignore[arg-type]
        anthropic_streamed = stream.get_final_text()

    messages = served.samples()
    samples = [json.loads(m["Body"]) for m in messages]
    assert [s["input"] for s in samples] == ["Where is parcel 7?"] * 4
    assert [s["output"] for s in samples] == [
        buffered.choices[0].message.content,
        streamed,
        message.content[0].text,  # type: ignore[union-attr]
        anthropic_streamed,
    ]
    assert all(s["output"] for s in samples)
    assert {(s["team"], s["feature"], s["gateway"], s["model"]) for s in samples} == {
        ("support", "summarizer", NAMESPACE, "echo")
    }

    ddb = sampler_table(monkeypatch)
    records = [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]
    assert handler.sample({"Records": records}, client=ddb) == {"batchItemFailures": []}
    items = ddb.scan(TableName=TABLE)["Items"]
    assert sorted(i["output"]["S"] for i in items) == sorted(s["output"] for s in samples)
