"""AI Factory construct library: what platform and product teams import to build on the factory."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ai_factory.ai_feature import AiFeature, AiFeatureError, AlertThresholds
    from ai_factory.governance import DataLake, GovernanceError, GovernedDataset
    from ai_factory.invocation_logging import BedrockInvocationLogging
    from ai_factory.llm_gateway import LlmGateway
    from ai_factory.model_catalog import CatalogError, CatalogWarning, ModelCatalog
    from ai_factory.nag import apply_nag_packs
    from ai_factory.observability import AlarmDefaults, Observability, Severity
    from ai_factory.rag_feature import RagFeature, RagFeatureError

# Exports load lazily: importing ai_factory (e.g. for the CLI or local mode) must not start the CDK's
# jsii runtime, which costs about a second.
_EXPORTS = {
    "AiFeature": "ai_factory.ai_feature",
    "AiFeatureError": "ai_factory.ai_feature",
    "AlertThresholds": "ai_factory.ai_feature",
    "LlmGateway": "ai_factory.llm_gateway",
    "DataLake": "ai_factory.governance",
    "GovernanceError": "ai_factory.governance",
    "GovernedDataset": "ai_factory.governance",
    "BedrockInvocationLogging": "ai_factory.invocation_logging",
    "Observability": "ai_factory.observability",
    "AlarmDefaults": "ai_factory.observability",
    "Severity": "ai_factory.observability",
    "RagFeature": "ai_factory.rag_feature",
    "RagFeatureError": "ai_factory.rag_feature",
    "ModelCatalog": "ai_factory.model_catalog",
    "CatalogError": "ai_factory.model_catalog",
    "CatalogWarning": "ai_factory.model_catalog",
    "apply_nag_packs": "ai_factory.nag",
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
