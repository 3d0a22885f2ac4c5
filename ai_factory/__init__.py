"""AI Factory construct library: what platform and product teams import to build on the factory."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ai_factory.catalog.model_catalog import CatalogError, CatalogWarning, ModelCatalog
    from ai_factory.constructs.ai_feature import AiFeature, AiFeatureError, AlertThresholds
    from ai_factory.constructs.gateway.llm_gateway import LlmGateway
    from ai_factory.constructs.governance import DataLake, GovernanceError, GovernedDataset
    from ai_factory.constructs.invocation_logging import BedrockInvocationLogging
    from ai_factory.constructs.observability.facade import Observability
    from ai_factory.constructs.observability.settings import AlarmDefaults, Severity
    from ai_factory.constructs.rag_feature import RagFeature, RagFeatureError
    from ai_factory.platform.nag import apply_nag_packs

# Exports load lazily: importing ai_factory (e.g. for the CLI or local mode) must not start the CDK's
# jsii runtime, which costs about a second.
_EXPORTS = {
    "AiFeature": "ai_factory.constructs.ai_feature",
    "AiFeatureError": "ai_factory.constructs.ai_feature",
    "AlertThresholds": "ai_factory.constructs.ai_feature",
    "LlmGateway": "ai_factory.constructs.gateway.llm_gateway",
    "DataLake": "ai_factory.constructs.governance",
    "GovernanceError": "ai_factory.constructs.governance",
    "GovernedDataset": "ai_factory.constructs.governance",
    "BedrockInvocationLogging": "ai_factory.constructs.invocation_logging",
    "Observability": "ai_factory.constructs.observability.facade",
    "AlarmDefaults": "ai_factory.constructs.observability.settings",
    "Severity": "ai_factory.constructs.observability.settings",
    "RagFeature": "ai_factory.constructs.rag_feature",
    "RagFeatureError": "ai_factory.constructs.rag_feature",
    "ModelCatalog": "ai_factory.catalog.model_catalog",
    "CatalogError": "ai_factory.catalog.model_catalog",
    "CatalogWarning": "ai_factory.catalog.model_catalog",
    "apply_nag_packs": "ai_factory.platform.nag",
}
__all__ = [
    "AiFeature",
    "AiFeatureError",
    "AlarmDefaults",
    "AlertThresholds",
    "BedrockInvocationLogging",
    "CatalogError",
    "CatalogWarning",
    "DataLake",
    "GovernanceError",
    "GovernedDataset",
    "LlmGateway",
    "ModelCatalog",
    "Observability",
    "RagFeature",
    "RagFeatureError",
    "Severity",
    "apply_nag_packs",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ai_factory' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
