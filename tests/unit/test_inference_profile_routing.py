"""The gateway invokes Bedrock through the feature's application inference profiles (the bill by feature).

A key record carries ``inference_profiles`` ({catalog model ID: profile ARN}); Converse, ConverseStream
and InvokeModel are then called with the profile ARN as ``modelId`` (Stubber and a fake Bedrock endpoint
check the real request), while the ledger keeps the catalog's model ID and prices. Keys without profiles
(local mode, keys made with the CLI, features from before profiles) call the catalog ID as before.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY
from conftest import HAIKU, NOVA, TITAN, Harness, converse_response, put_key
from test_gateway_streaming import START, FakeBedrock, fake_bedrock, make_harness, metadata, stop, text

from aif_gateway.config import ModelTarget
from aif_gateway.dynamo_store import key_from_item, key_to_item
from aif_gateway.provider_types import CallContext
from aif_gateway.providers import invoke_id
from aif_gateway.records import ApiKeyRecord

__all__ = ["fake_bedrock"]  # the fixture, imported for this module's streaming test

ACCOUNT = "123456789012"
HAIKU_PROFILE = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:application-inference-profile/h41ku0000001"
NOVA_PROFILE = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:application-inference-profile/n0va00000002"
TITAN_PROFILE = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:application-inference-profile/t1tan0000003"
PROFILES = {HAIKU.model_id: HAIKU_PROFILE, NOVA.model_id: NOVA_PROFILE, TITAN.model_id: TITAN_PROFILE}


def expect_converse(harness: Harness, model_id: str, response: dict[str, Any] | None = None) -> None:
    """Queue a Converse answer for a call whose ``modelId`` must be ``model_id`` (the rest of the
    request is the translation tests' business)."""
    harness.stubber.add_response("converse", response or converse_response(), None)
    expected.append(model_id)


expected: list[str] = []
seen: list[str] = []


@pytest.fixture(autouse=True)
def _capture_model_ids(harness: Harness) -> Any:
    """Record the ``modelId`` of every Bedrock call the gateway makes (before the Stubber answers)."""
    expected.clear()
    seen.clear()
    client = harness.gateway.providers["bedrock"].client(None)  # type: ignore[attr-defined]
    client.meta.events.register(
        "provide-client-params.bedrock-runtime.*", lambda params, **_: seen.append(params["modelId"])
    )
    yield
    harness.stubber.assert_no_pending_responses()
    assert seen == expected


def test_chat_is_invoked_through_the_features_profile_and_metered_at_catalog_prices(
    harness: Harness,
) -> None:
    key = harness.add_key(inference_profiles=PROFILES)
    expect_converse(harness, HAIKU_PROFILE)
    status, _, body = harness.chat(key)
    assert status == 200, body
    (record,) = harness.ledger.records.values()
    # The ledger names the catalog's model (the profile ARN hides it) and prices it as the catalog says.
    assert record.model_served == "claude-haiku-4-5" and record.model_id == HAIKU.model_id
    assert record.cost_usd == pytest.approx((10 * 1.0 + 5 * 5.0) / 1e6)


def test_a_fallback_goes_through_its_own_profile(harness: Harness) -> None:
    key = harness.add_key(inference_profiles=PROFILES)
    harness.stubber.add_client_error("converse", "ServiceUnavailableException", "busy", 503)
    expected.append(HAIKU_PROFILE)
    expect_converse(harness, NOVA_PROFILE)
    status, _, body = harness.chat(key)
    assert status == 200, body
    (record,) = harness.ledger.records.values()
    assert record.model_served == "nova-lite" and record.attempts == 2


def test_a_key_without_profiles_calls_the_catalog_model_id(harness: Harness) -> None:
    key = harness.add_key()  # local mode, CLI keys, records from before profiles
    expect_converse(harness, HAIKU.model_id)
    assert harness.chat(key)[0] == 200


def test_a_model_without_a_profile_in_the_record_keeps_its_catalog_id(harness: Harness) -> None:
    key = harness.add_key(inference_profiles={NOVA.model_id: NOVA_PROFILE})
    expect_converse(harness, HAIKU.model_id)
    assert harness.chat(key)[0] == 200


def test_embeddings_invoke_model_through_the_profile(harness: Harness) -> None:
    key = harness.add_key(inference_profiles=PROFILES)
    payload = json.dumps({"embedding": [0.5, 0.5], "inputTextTokenCount": 2}).encode()
    harness.stubber.add_response(
        "invoke_model",
        {"body": StreamingBody(io.BytesIO(payload), len(payload)), "contentType": "application/json"},
        {
            "modelId": TITAN_PROFILE,
            "body": ANY,
            "contentType": "application/json",
            "accept": "application/json",
        },
    )
    expected.append(TITAN_PROFILE)
    status, _, out = harness.call("POST", "/v1/embeddings", {"model": "embed", "input": "a b"}, key)
    assert status == 200, out
    (record,) = harness.ledger.records.values()
    assert record.model_id == TITAN.model_id and record.input_tokens == 2


def test_stream_is_invoked_through_the_profile(fake_bedrock: FakeBedrock) -> None:
    h = make_harness(fake_bedrock)
    h.key = put_key(h.gateway.auth._store, ("chat-fast",), inference_profiles=PROFILES)
    fake_bedrock.scripts[HAIKU_PROFILE] = [
        (0, START),
        (0, text("Hello")),
        (0, stop()),
        (0, metadata(7, 1)),
    ]
    response, request_id = h.stream()
    assert "Hello" in response.buffered()["body"]
    # The ARN travels URL-encoded in the request path, exactly as Bedrock receives it.
    assert fake_bedrock.calls == [HAIKU_PROFILE]
    record = h.record(request_id)
    assert record.model_id == HAIKU.model_id and record.output_tokens == 1


def test_a_target_pinned_to_another_region_keeps_its_catalog_id() -> None:
    ctx = CallContext("r", "t", "f", inference_profiles=PROFILES)
    pinned = ModelTarget(
        name=HAIKU.name, provider="bedrock", model_id=HAIKU.model_id, modality="chat", region="eu-west-1"
    )
    assert invoke_id(pinned, ctx) == HAIKU.model_id
    assert invoke_id(HAIKU, ctx) == HAIKU_PROFILE


def test_profiles_survive_the_keys_table_round_trip() -> None:
    record = ApiKeyRecord(
        key_id="k1",
        key_hash="h",
        team="support",
        feature="summarizer",
        allowed_models=("chat-fast",),
        monthly_budget_usd=10.0,
        rate_limit_rpm=60,
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
        inference_profiles=dict(PROFILES),
    )
    item = key_to_item(record)
    assert item["inference_profiles"] == {"M": {m: {"S": arn} for m, arn in PROFILES.items()}}
    assert key_from_item(item) == record
    bare = key_to_item(ApiKeyRecord(**{**record.__dict__, "inference_profiles": {}}))
    assert "inference_profiles" not in bare and key_from_item(bare).inference_profiles == {}
