"""AI Factory construct library: what platform and product teams import to build on the factory.

Every public name is exported here (``__all__``) and listed in ``docs/library.md``; a team's own CDK app
installs the ``ai-factory`` wheel and imports from the package root::

    from ai_factory import AiFeature, LlmGateway, apply_nag_packs
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ai_factory.catalog.model_catalog import CatalogError, CatalogWarning, ModelCatalog
    from ai_factory.constructs.ai_feature import AiFeature, AiFeatureError, AlertThresholds
    from ai_factory.constructs.audit_trail import AuditTrail
    from ai_factory.constructs.canary import CanaryError, FeatureCanary, add_canary
    from ai_factory.constructs.data_connector import DataConnector, DataConnectorError
    from ai_factory.constructs.gateway.imported import GatewayAttributes, ILlmGateway
    from ai_factory.constructs.gateway.llm_gateway import LlmGateway
    from ai_factory.constructs.gateway_enforcement import GatewayEnforcement, GatewayEnforcementError
    from ai_factory.constructs.governance import DataLake, GovernanceError, GovernedDataset
    from ai_factory.constructs.governed_assistant import (
        FederatedIdentityProvider,
        GovernedAssistant,
        GovernedAssistantError,
    )
    from ai_factory.constructs.invocation_logging import BedrockInvocationLogging
    from ai_factory.constructs.mlflow_tracking import MlflowTracking
    from ai_factory.constructs.observability.facade import Observability
    from ai_factory.constructs.observability.settings import AlarmDefaults, Severity
    from ai_factory.constructs.online_evaluation import (
        OnlineEvaluation,
        OnlineEvaluationError,
        OnlineSampling,
    )
    from ai_factory.constructs.q_business import QBusinessConnector, QBusinessError
    from ai_factory.constructs.rag_feature import RagFeature, RagFeatureError
    from ai_factory.constructs.sagemaker_endpoint import SageMakerEndpoint
    from ai_factory.platform.nag import apply_nag_packs

# Exports load lazily: importing ai_factory (e.g. for the CLI or local mode) must not start the CDK's
# jsii runtime, which costs about a second.
_EXPORTS = {
    "AiFeature": "ai_factory.constructs.ai_feature",
    "AiFeatureError": "ai_factory.constructs.ai_feature",
    "AlertThresholds": "ai_factory.constructs.ai_feature",
    "LlmGateway": "ai_factory.constructs.gateway.llm_gateway",
    "ILlmGateway": "ai_factory.constructs.gateway.imported",
    "GatewayAttributes": "ai_factory.constructs.gateway.imported",
    "GatewayEnforcement": "ai_factory.constructs.gateway_enforcement",
    "GatewayEnforcementError": "ai_factory.constructs.gateway_enforcement",
    "DataLake": "ai_factory.constructs.governance",
    "GovernanceError": "ai_factory.constructs.governance",
    "GovernedDataset": "ai_factory.constructs.governance",
    "BedrockInvocationLogging": "ai_factory.constructs.invocation_logging",
    "GovernedAssistant": "ai_factory.constructs.governed_assistant",
    "GovernedAssistantError": "ai_factory.constructs.governed_assistant",
    "FederatedIdentityProvider": "ai_factory.constructs.governed_assistant",
    "Observability": "ai_factory.constructs.observability.facade",
    "OnlineEvaluation": "ai_factory.constructs.online_evaluation",
    "OnlineEvaluationError": "ai_factory.constructs.online_evaluation",
    "OnlineSampling": "ai_factory.constructs.online_evaluation",
    "AlarmDefaults": "ai_factory.constructs.observability.settings",
    "Severity": "ai_factory.constructs.observability.settings",
    "RagFeature": "ai_factory.constructs.rag_feature",
    "QBusinessConnector": "ai_factory.constructs.q_business",
    "QBusinessError": "ai_factory.constructs.q_business",
    "RagFeatureError": "ai_factory.constructs.rag_feature",
    "FeatureCanary": "ai_factory.constructs.canary",
    "CanaryError": "ai_factory.constructs.canary",
    "add_canary": "ai_factory.constructs.canary",
    "DataConnector": "ai_factory.constructs.data_connector",
    "DataConnectorError": "ai_factory.constructs.data_connector",
    "AuditTrail": "ai_factory.constructs.audit_trail",
    "MlflowTracking": "ai_factory.constructs.mlflow_tracking",
    "SageMakerEndpoint": "ai_factory.constructs.sagemaker_endpoint",
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
    "AuditTrail",
    "BedrockInvocationLogging",
    "CanaryError",
    "CatalogError",
    "CatalogWarning",
    "DataConnector",
    "DataConnectorError",
    "DataLake",
    "FeatureCanary",
    "FederatedIdentityProvider",
    "GatewayAttributes",
    "GatewayEnforcement",
    "GatewayEnforcementError",
    "GovernanceError",
    "GovernedAssistant",
    "GovernedAssistantError",
    "GovernedDataset",
    "ILlmGateway",
    "LlmGateway",
    "MlflowTracking",
    "ModelCatalog",
    "Observability",
    "OnlineEvaluation",
    "OnlineEvaluationError",
    "OnlineSampling",
    "QBusinessConnector",
    "QBusinessError",
    "RagFeature",
    "RagFeatureError",
    "SageMakerEndpoint",
    "Severity",
    "add_canary",
    "apply_nag_packs",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ai_factory' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
