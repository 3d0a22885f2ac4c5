"""AWS Marketplace permissions Bedrock needs to subscribe the account to a third-party model.

Bedrock enables a serverless model whose provider sells it through AWS Marketplace (Anthropic, Cohere,
AI21, ...) on its first invocation: it subscribes the account in the background, as the calling
principal. Without ``aws-marketplace:Subscribe`` and ``aws-marketplace:ViewSubscriptions`` on that
principal the subscription fails and every call answers ``AccessDeniedException`` (docs/deploy.md).
``Subscribe`` is limited with the ``aws-marketplace:ProductId`` condition key to the products of the
catalog's routed models; ``ViewSubscriptions`` has no resource or condition key (AWS requires '*').
Amazon, Meta, Mistral, DeepSeek, Qwen and OpenAI models are not sold through Marketplace.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam

from ai_factory.catalog.model_catalog import ModelCatalog

MARKETPLACE_PRODUCT_IDS = {
    "anthropic.claude-haiku-4-5-20251001-v1:0": "prod-xdkflymybwmvi",
    "anthropic.claude-sonnet-4-5-20250929-v1:0": "prod-mxcfnwvpd6kb4",
    "anthropic.claude-sonnet-4-20250514-v1:0": "prod-4pmewlybdftbs",
    "anthropic.claude-opus-4-1-20250805-v1:0": "prod-w3q2d6rfge4tw",
    "anthropic.claude-3-7-sonnet-20250219-v1:0": "prod-4dlfvry4v5hbi",
    "anthropic.claude-3-5-haiku-20241022-v1:0": "prod-5oba7y7jpji56",
    "anthropic.claude-3-haiku-20240307-v1:0": "prod-ozonys2hmmpeu",
}
"""Marketplace product ID of each Bedrock model that has one (Bedrock user guide, "Use product ID
condition keys to control access"). Add a model here when the catalog gains one from such a provider."""

NOT_ON_MARKETPLACE = ("amazon.", "meta.", "mistral.", "deepseek.", "qwen.", "openai.")
"""Model ID prefixes of providers that do not sell through AWS Marketplace (no subscription)."""


def marketplace_models(catalog: ModelCatalog) -> tuple[dict[str, str], list[str]]:
    """({model name: product ID}, [names of routed Marketplace models without a known product ID])."""
    known: dict[str, str] = {}
    unknown: list[str] = []
    for model in catalog.routed_models():
        if model.provider != "bedrock" or model.model_id.startswith(NOT_ON_MARKETPLACE):
            continue
        product = MARKETPLACE_PRODUCT_IDS.get(model.model_id)
        if product is None:
            unknown.append(model.name)
        else:
            known[model.name] = product
    return known, unknown


def subscribe_statements(product_ids: list[str]) -> list[iam.PolicyStatement]:
    """Subscribe to exactly ``product_ids`` and view subscriptions; nothing when the list is empty."""
    if not product_ids:
        return []
    return [
        iam.PolicyStatement(
            sid="MarketplaceSubscribeCatalogModels",
            actions=["aws-marketplace:Subscribe"],
            resources=["*"],
            conditions={"ForAnyValue:StringEquals": {"aws-marketplace:ProductId": sorted(set(product_ids))}},
        ),
        iam.PolicyStatement(
            sid="MarketplaceViewSubscriptions",
            actions=["aws-marketplace:ViewSubscriptions"],
            resources=["*"],
        ),
    ]
