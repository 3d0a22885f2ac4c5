"""Catalog entries with ``provider: sagemaker``: validation, runtime config and the IAM allow-list."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from ai_factory.catalog.model_catalog import CatalogError, ModelCatalog
from aif_gateway.config import GatewayConfig

CUSTOM: dict[str, Any] = {
    "name": "ticket-classifier",
    "provider": "sagemaker",
    "provider_name": "AI Factory (custom, ai_factory.training)",
    "modality": "chat",
    "endpoint_name": "AIF-Ticket-Classifier",
    "content_handler": "openai-chat",
    "context_window": 4096,
    "prices": {"input": 0.5, "output": 0.5},
    "status": "approved",
    "owner": "support-ml@example.com",
    "approved_by": "ai-review@example.com",
    "approved_on": "2026-11-25",
}


def catalog(entry: dict[str, Any] | None = None, routed: bool = True) -> ModelCatalog:
    data = {
        "models": [entry or copy.deepcopy(CUSTOM)],
        "routes": [{"alias": "classify", "targets": ["ticket-classifier"]}] if routed else [],
    }
    return ModelCatalog.from_dict(data, source="models.yaml")


def test_sagemaker_entry_becomes_a_target_with_endpoint_and_handler() -> None:
    config = catalog().gateway_config(region="eu-west-1")
    (target,) = config.routes["classify"].targets
    assert (target.provider, target.model_id, target.content_handler) == (
        "sagemaker",
        "AIF-Ticket-Classifier",
        "openai-chat",
    )
    # The JSON view the Lambda reads round-trips the new field.
    assert GatewayConfig.from_dict(json.loads(config.to_json())) == config


def test_iam_allow_list_is_exactly_the_routed_endpoints() -> None:
    assert catalog().sagemaker_endpoint_arns("aws", "eu-west-1", "111122223333") == [
        "arn:aws:sagemaker:eu-west-1:111122223333:endpoint/aif-ticket-classifier"
    ]
    assert catalog(routed=False).sagemaker_endpoint_arns("aws", "eu-west-1", "111122223333") == []
    assert catalog().bedrock_invoke_arns("aws", "eu-west-1", "111122223333") == []


def test_to_dict_carries_the_endpoint() -> None:
    entry = catalog().models["ticket-classifier"].to_dict()
    assert (entry["endpoint_name"], entry["content_handler"]) == ("AIF-Ticket-Classifier", "openai-chat")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"endpoint_name": None}, "field 'endpoint_name': is required"),
        ({"endpoint_name": "bad_name!"}, "field 'endpoint_name': must be a SageMaker endpoint name"),
        ({"content_handler": "grpc"}, "field 'content_handler': must be one of openai-chat, tgi"),
        ({"content_handler": None}, "field 'content_handler': is required"),
        ({"model_id": "x"}, "field 'model_id': does not apply to sagemaker models"),
        ({"regions": ["us-east-1"]}, "field 'regions': does not apply to sagemaker models"),
        ({"modality": "embedding"}, "field 'modality': sagemaker models serve chat routes only"),
        ({"owner": None}, "field 'owner': is required"),
        ({"approved_by": None}, "field 'approved_by': is required"),
    ],
)
def test_invalid_sagemaker_entries_name_the_field(change: dict[str, Any], message: str) -> None:
    entry = {**copy.deepcopy(CUSTOM), **change}
    entry = {k: v for k, v in entry.items() if v is not None}
    with pytest.raises(
        CatalogError, match="models.yaml: model 'ticket-classifier': " + message.replace("(", r"\(")
    ):
        catalog(entry)


def test_endpoint_fields_are_refused_on_other_providers() -> None:
    data = {
        "models": [
            {
                "name": "echo",
                "provider": "echo",
                "modality": "chat",
                "prices": {},
                "status": "approved",
                "endpoint_name": "x",
            }
        ],
        "routes": [],
    }
    with pytest.raises(CatalogError, match="field 'endpoint_name': only applies to sagemaker models"):
        ModelCatalog.from_dict(data, source="models.yaml")


def test_model_card_names_the_endpoint() -> None:
    from ai_factory.catalog.model_cards import render_card

    card = render_card(catalog(), "ticket-classifier")
    assert "| default | `AIF-Ticket-Classifier` | SageMaker endpoint |" in card
