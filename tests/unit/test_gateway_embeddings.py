"""Embeddings: a batch runs concurrently within one model timeout, token arrays get a 400 that names
the client setting, and every call already made is metered even when a later one fails."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from conftest import TITAN, Harness

from aif_gateway.bedrock_embed import TitanEmbedder


class FakeTitan:
    """A bedrock-runtime stand-in whose calls block on a barrier: only concurrent calls get through."""

    def __init__(self, parties: int, fail_on: str | None = None) -> None:
        self.barrier = threading.Barrier(parties, timeout=5)
        self.fail_on = fail_on
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
        text = json.loads(kwargs["body"])["inputText"]
        with self._lock:
            self.calls.append(text)
        self.barrier.wait()  # raises BrokenBarrierError if the calls ran one after another
        if text == self.fail_on:
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailableException", "Message": "down"}}, "InvokeModel"
            )
        payload = json.dumps(
            {"embedding": [float(len(text))], "inputTextTokenCount": len(text.split())}
        ).encode()
        return {"body": StreamingBody(io.BytesIO(payload), len(payload))}


def use_client(h: Harness, client: Any) -> None:
    from aif_gateway.providers import BedrockProvider

    h.gateway.providers["bedrock"] = BedrockProvider(client_factory=lambda region: client)


def test_batch_runs_concurrently_and_keeps_input_order(harness: Harness) -> None:
    key = harness.add_key()
    use_client(harness, FakeTitan(parties=3))
    status, _, out = harness.call(
        "POST", "/v1/embeddings", {"model": "embed", "input": ["a", "bb cc", "ddd e f"]}, key
    )
    assert status == 200, out
    assert [d["embedding"] for d in out["data"]] == [[1.0], [5.0], [7.0]]
    assert out["usage"]["prompt_tokens"] == 6


def test_calls_made_before_a_failure_are_metered(harness: Harness) -> None:
    key = harness.add_key()
    use_client(harness, FakeTitan(parties=3, fail_on="boom"))
    status, _, _ = harness.call(
        "POST", "/v1/embeddings", {"model": "embed", "input": ["one two", "boom", "three four five"]}, key
    )
    assert status == 503
    (record,) = harness.ledger.records.values()
    assert record.input_tokens == 5  # the two calls that succeeded were billed by Bedrock
    assert record.cost_usd == pytest.approx(5 * TITAN.prices.input / 1e6)


def test_a_batch_that_outlives_the_model_timeout_fails_in_time() -> None:
    from aif_gateway.openai_schema import EmbeddingsRequest
    from aif_gateway.provider_types import ProviderError

    release = threading.Event()

    class Slow:
        def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
            if json.loads(kwargs["body"])["inputText"] == "slow":
                release.wait(2)
            payload = json.dumps({"embedding": [0.0], "inputTextTokenCount": 2}).encode()
            return {"body": StreamingBody(io.BytesIO(payload), len(payload))}

    embedder = TitanEmbedder(timeout_s=1)  # "fast" must finish within it, even on a loaded machine
    with pytest.raises(ProviderError) as err:
        embedder.embed(Slow(), TITAN, EmbeddingsRequest("embed", ["fast", "slow"]), lambda fn: fn())
    release.set()
    assert err.value.kind == "Timeout" and err.value.usage is not None and err.value.usage.input == 2


@pytest.mark.parametrize(("value", "param"), [([[1, 2, 3]], "input[0]"), ([1, 2, 3], "input")])
def test_token_arrays_get_a_400_that_names_the_client_setting(
    harness: Harness, value: Any, param: str
) -> None:
    key = harness.add_key()
    status, _, out = harness.call("POST", "/v1/embeddings", {"model": "echo-embed", "input": value}, key)
    assert status == 400
    assert out["error"]["param"] == param and out["error"]["code"] == "token_input"
    assert "check_embedding_ctx_length=False" in out["error"]["message"]


def test_unknown_embeddings_field_is_a_400_naming_it(harness: Harness) -> None:
    key = harness.add_key()
    body = {"model": "echo-embed", "input": "x", "input_type": "query"}
    status, _, out = harness.call("POST", "/v1/embeddings", body, key)
    assert status == 400 and out["error"]["param"] == "input_type" and out["error"]["code"] == "unknown_field"
    ok = {"model": "echo-embed", "input": "x", "user": "u1", "encoding_format": "float"}
    assert harness.call("POST", "/v1/embeddings", ok, key)[0] == 200
