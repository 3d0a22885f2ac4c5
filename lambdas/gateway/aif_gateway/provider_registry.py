"""Every model provider the gateway can call, by the catalog's ``provider`` name.

A module of its own because the offline model builds on ``providers.EchoProvider``: registering it
beside the Bedrock provider would make the two modules import each other.
"""

from __future__ import annotations

from .provider_types import Provider
from .providers import BedrockProvider
from .sagemaker_provider import SageMakerProvider


def default_providers(timeout_s: float = 60.0) -> dict[str, Provider]:
    # Imported here, not at the top: importing the gateway (its cold start) stays free of them.
    from .anthropic_provider import AnthropicProvider
    from .mistral_provider import MistralProvider
    from .offline_model import OfflineModel
    from .openai_provider import OpenAiProvider
    from .provider_secrets import SecretCache

    secrets = SecretCache()  # one cache for every external provider's secrets
    return {
        "bedrock": BedrockProvider(timeout_s),
        "echo": OfflineModel(),
        "sagemaker": SageMakerProvider(timeout_s),
        "openai": OpenAiProvider(timeout_s, secrets),
        "anthropic": AnthropicProvider(timeout_s, secrets),
        "mistral": MistralProvider(timeout_s, secrets),
    }
