"""Catalog entries for external providers: validation with precise errors, data-handling facts, the
runtime view the gateway gets, and the synth-time clearance check constructs call."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from catalog_evidence import PASSING_EVIDENCE

from ai_factory.catalog.model_catalog import CatalogError, ModelCatalog

GPT: dict[str, Any] = {
    "name": "gpt-4o",
    "provider": "openai",
    "provider_name": "OpenAI",
    "modality": "chat",
    "model_id": "gpt-4o-2024-11-20",
    "secret": "ai-factory/providers/openai",
    "context_window": 128000,
    "prices": {"input": 2.5, "output": 10.0},
    "status": "approved",
    "approved_by": "ciso@example.com",
    "approved_on": "2026-12-01",
    "evidence": PASSING_EVIDENCE,
    "owner": "platform@example.com",
    "data_handling": {
        "processed_in": "OpenAI, United States",
        "retention": "30 days",
        "trains_on_data": False,
        "contract": "OpenAI DPA",
        "max_classification": "internal",
    },
}
BEDROCK: dict[str, Any] = {
    "name": "claude",
    "provider": "bedrock",
    "modality": "chat",
    "model_id": "anthropic.claude-haiku-4-5-20251001-v1:0",
    "regions": ["us-east-1"],
    "context_window": 200000,
    "prices": {"input": 1.0},
    "status": "approved",
    "approved_by": "ciso@example.com",
    "approved_on": "2026-12-01",
    "evidence": PASSING_EVIDENCE,
    "owner": "platform@example.com",
}


def catalog(*models: dict[str, Any], routes: list[dict[str, Any]] | None = None) -> ModelCatalog:
    if routes is None:
        routes = [{"alias": "chat", "targets": [m["name"] for m in models]}]
    return ModelCatalog.from_dict({"models": list(models), "routes": routes}, source="models.yaml")


def with_changes(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    entry = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return entry


def test_the_packaged_catalog_has_external_providers_and_bedrock_llama_and_mistral() -> None:
    packaged = ModelCatalog.load()
    providers = {m.provider for m in packaged.models.values()}
    assert {"openai", "anthropic", "mistral", "bedrock"} <= providers
    assert {m.provider_name for m in packaged.models.values() if m.provider == "bedrock"} >= {
        "Meta",
        "Mistral AI",
    }
    for model in packaged.models.values():
        if model.external:
            assert model.data_handling is not None and model.max_classification == "internal", model.name
            assert model.secret and not model.secret.startswith("sk-")
    # A cross-provider chain: Claude on Bedrock, Claude on Anthropic's API, GPT-4o.
    chain = [packaged.models[t].provider for t in packaged.routes["chat-claude-any"].targets]
    assert chain == ["bedrock", "anthropic", "openai"]
    assert packaged.external_secrets() == [
        "ai-factory/providers/anthropic",
        "ai-factory/providers/mistral",
        "ai-factory/providers/openai",
    ]


def test_gateway_config_carries_base_url_secret_flavor_and_ceiling() -> None:
    azure = with_changes(GPT, api_flavor="azure", base_url="https://contoso.openai.azure.com/openai/v1")
    target = catalog(azure, BEDROCK).gateway_config().routes["chat"].targets
    assert (target[0].base_url, target[0].secret, target[0].api_flavor, target[0].max_classification) == (
        "https://contoso.openai.azure.com/openai/v1",
        "ai-factory/providers/openai",
        "azure",
        "internal",
    )
    assert target[1].max_classification == "confidential"  # bedrock's default ceiling


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"secret": None}, "model 'gpt-4o': field 'secret': is required"),
        ({"secret": "sk-proj-abcdef123"}, "field 'secret': looks like an API key"),
        ({"secret": "has spaces in it"}, "field 'secret': must be a Secrets Manager secret name or ARN"),
        ({"base_url": "http://api.example.com/v1"}, "field 'base_url': must be an https:// URL"),
        ({"api_flavor": "bogus"}, "field 'api_flavor': must be one of openai, azure, compatible"),
        ({"api_flavor": "azure"}, "field 'base_url': is required with api_flavor azure"),
        ({"data_handling": None}, "field 'data_handling': is required for external providers"),
        ({"model_id": None}, "field 'model_id': is required"),
    ],
)
def test_external_entries_are_validated_with_precise_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError, match=message.replace("(", r"\(")):
        catalog(with_changes(GPT, **changes))


@pytest.mark.parametrize(
    ("handling", "message"),
    [
        ({"max_classification": "secret"}, "field 'data_handling.max_classification': must be one of public"),
        ({"trains_on_data": "no"}, "field 'data_handling.trains_on_data': must be true or false"),
        ({"trains_on_data": True}, "the provider may train on the data: only public data may go there"),
        ({"retention": None}, "field 'retention': is required"),
        ({"region": "us"}, "field 'data_handling': unknown key"),
    ],
)
def test_data_handling_is_validated(handling: dict[str, Any], message: str) -> None:
    data = {**GPT["data_handling"], **handling}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(CatalogError, match=message):
        catalog(with_changes(GPT, data_handling=data))


def test_external_fields_are_refused_on_other_providers() -> None:
    with pytest.raises(
        CatalogError, match="model 'claude': field 'secret': only applies to openai, anthropic, mistral"
    ):
        catalog(with_changes(BEDROCK, secret="x"))
    with pytest.raises(CatalogError, match="field 'api_flavor': only applies to openai models"):
        catalog(
            with_changes(GPT, provider="mistral", api_flavor="azure", base_url="https://api.mistral.ai/v1")
        )


def test_clearance_violations_name_route_target_and_ceiling() -> None:
    restricted_endpoint = {
        "name": "private",
        "provider": "sagemaker",
        "modality": "chat",
        "endpoint_name": "private-model",
        "content_handler": "openai-chat",
        "context_window": 8192,
        "prices": {"input": 1.0},
        "status": "approved",
        "approved_by": "a@example.com",
        "approved_on": "2026-12-01",
        "evidence": PASSING_EVIDENCE,
        "owner": "o@example.com",
    }
    cat = catalog(
        GPT,
        BEDROCK,
        restricted_endpoint,
        routes=[
            {"alias": "mixed", "targets": ["claude", "gpt-4o"]},
            {"alias": "private", "targets": ["private"]},
        ],
    )
    assert cat.clearance_violations("internal", ["mixed", "private"]) == []
    found = cat.clearance_violations("confidential", ["mixed", "private"])
    assert [str(v) for v in found] == [
        "route 'mixed' target 'gpt-4o' (openai) may receive up to internal data, below clearance confidential"
    ]
    restricted = cat.clearance_violations("restricted", ["mixed", "private"])
    assert [(v.route, v.target) for v in restricted] == [("mixed", "claude"), ("mixed", "gpt-4o")]
    with pytest.raises(CatalogError, match="clearance 'top-secret' is not one of"):
        cat.clearance_violations("top-secret", ["mixed"])
    with pytest.raises(CatalogError, match="route 'nope' does not exist"):
        cat.clearance_violations("public", ["nope"])
