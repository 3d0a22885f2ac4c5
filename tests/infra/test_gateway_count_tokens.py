"""The gateway function may call bedrock:CountTokens on exactly the foundation models whose catalog entry
says ``capabilities.count_tokens: true`` (docs/gateway.md, /v1/messages/count_tokens)."""

from __future__ import annotations

import json
import os
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from tests.catalog_evidence import PASSING_EVIDENCE

os.environ.setdefault("CDK_VALIDATION", "false")
ENV = cdk.Environment(account="111122223333", region="eu-central-1")


def bedrock_model(name: str, model_id: str, capabilities: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "bedrock",
        "provider_name": "Anthropic",
        "modality": "chat",
        "model_id": model_id,
        "inference_profile": f"eu.{model_id}",
        "regions": ["eu-central-1", "eu-west-1"],
        "context_window": 200000,
        "capabilities": capabilities,
        "prices": {"input": 3.0, "output": 15.0},
        "status": "approved",
        "evidence": PASSING_EVIDENCE,
        "owner": "platform-ai@example.com",
        "approved_by": "ai-review@example.com",
        "approved_on": "2026-12-01",
    }


CATALOG = {
    "models": [
        bedrock_model("sonnet-4", "anthropic.claude-sonnet-4-20250514-v1:0", {"count_tokens": True}),
        bedrock_model("haiku-4-5", "anthropic.claude-haiku-4-5-20251001-v1:0", {}),
    ],
    "routes": [{"alias": "chat", "targets": ["sonnet-4", "haiku-4-5"]}],
}


def count_statements(catalog: dict[str, Any]) -> list[dict[str, Any]]:
    stack = cdk.Stack(cdk.App(), "Gateway", env=ENV)
    LlmGateway(stack, "Gateway", catalog=ModelCatalog.from_dict(catalog))
    return [
        s
        for p in Template.from_stack(stack).find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "bedrock:CountTokens" in json.dumps(s["Action"])
    ]


def test_count_tokens_is_allowed_on_exactly_the_counting_foundation_models() -> None:
    (statement,) = count_statements(CATALOG)
    assert statement["Sid"] == "CountCatalogModelTokens" and statement["Action"] == "bedrock:CountTokens"
    assert statement["Resource"] == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":bedrock:eu-central-1::foundation-model/anthropic.claude-sonnet-4-20250514-v1:0",
            ],
        ]
    }


def test_no_counting_model_no_count_tokens_permission() -> None:
    catalog = {**CATALOG, "models": [{**m, "capabilities": {}} for m in CATALOG["models"]]}
    assert count_statements(catalog) == []
