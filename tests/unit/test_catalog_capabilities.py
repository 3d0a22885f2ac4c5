"""Catalog capabilities and the per-route automatic cache mode and guardrail scope: parsed, validated,
carried to the gateway's runtime config (and back through its JSON)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ai_factory.catalog.model_catalog import CatalogError, ModelCatalog
from aif_gateway.capabilities import ModelCapabilities
from aif_gateway.config import GatewayConfig
from tests.catalog_evidence import PASSING_EVIDENCE


def catalog(caps: Any = None, prompt_cache: Any = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "m",
        "provider": "echo",
        "modality": "chat",
        "status": "approved",
        "evidence": PASSING_EVIDENCE,
        "prices": {},
        "max_output_tokens": 4096,
    }
    if caps is not None:
        entry["capabilities"] = caps
    route: dict[str, Any] = {"alias": "r", "targets": ["m"]}
    if prompt_cache is not None:
        route["prompt_cache"] = prompt_cache
    return {"models": [entry], "routes": [route]}


def test_packaged_catalog_records_capabilities() -> None:
    config = ModelCatalog.load().gateway_config()
    haiku, nova = config.routes["chat-fast"].targets
    assert haiku.capabilities.prompt_caching and haiku.capabilities.reasoning == "thinking"
    assert haiku.capabilities.exclusive_params == ("temperature", "top_p")
    assert haiku.capabilities.max_output_tokens == 64000
    assert not nova.capabilities.structured_output and nova.capabilities.reasoning is None
    assert config.routes["chat-fast"].prompt_cache is True
    assert GatewayConfig.from_dict(json.loads(config.to_json())) == config


def test_capabilities_default_when_absent() -> None:
    (target,) = ModelCatalog.from_dict(catalog()).gateway_config().routes["r"].targets
    assert target.capabilities == ModelCapabilities(max_output_tokens=4096)


@pytest.mark.parametrize(
    ("caps", "field"),
    [
        ({"tool": True}, "capabilities.tool"),
        ({"vision": "yes"}, "capabilities.vision"),
        ({"reasoning": "effort"}, "capabilities.reasoning"),
        ({"temperature_max": 0}, "capabilities.temperature_max"),
        ({"exclusive_params": ["seed"]}, "capabilities.exclusive_params"),
        ("all", "capabilities"),
    ],
)
def test_bad_capabilities_name_the_field(caps: Any, field: str) -> None:
    with pytest.raises(CatalogError, match=rf"model 'm': field '{field}'"):
        ModelCatalog.from_dict(catalog(caps))


def test_prompt_cache_must_be_auto_or_off() -> None:
    assert (
        ModelCatalog.from_dict(catalog(prompt_cache="off")).gateway_config().routes["r"].prompt_cache is False
    )
    with pytest.raises(CatalogError, match="route 'r': field 'prompt_cache'"):
        ModelCatalog.from_dict(catalog(prompt_cache=True))


def test_guard_scope_reaches_the_route_and_is_validated() -> None:
    def with_scope(scope: Any) -> dict[str, Any]:
        raw = catalog()
        raw["routes"][0]["guard_scope"] = scope
        return raw

    assert ModelCatalog.from_dict(catalog()).gateway_config().routes["r"].guard_scope is None
    config = ModelCatalog.from_dict(with_scope("all")).gateway_config()
    assert config.routes["r"].guard_scope == "all"
    assert GatewayConfig.from_dict(json.loads(config.to_json())) == config
    bad = r"route 'r': field 'guard_scope': must be latest .* got 'history'"
    with pytest.raises(CatalogError, match=bad):
        ModelCatalog.from_dict(with_scope("history"))
