"""``ClaimsFeaturesStack``: the claims team's features, in the team's own AWS account.

The gateway is the platform's, imported: ``LlmGateway.from_lookup`` reads the SSM parameters the
platform's gateway stack publishes (cached in ``cdk.context.json``, so synth and CI need no AWS access),
or ``LlmGateway.from_gateway_attributes`` when the values are pinned in ``cdk.json``. Each feature's key
is issued by the platform's shared provisioner and written into a secret in this account.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from ai_factory import AiFeature, AlertThresholds, GatewayAttributes, LlmGateway

TEAM = "claims"


class ClaimsFeaturesStack(cdk.Stack):
    """The claims team's features (one stack per team account and region).

    :param gateway_attributes: pinned gateway values; default: look them up in SSM.
    :param parameter_prefix: the gateway's SSM prefix (an ARN prefix when the platform shares its
        parameters through AWS RAM). Default: ``/ai-factory/gateway`` in this account.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gateway_attributes: GatewayAttributes | None = None,
        parameter_prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        if gateway_attributes is not None:
            gateway = LlmGateway.from_gateway_attributes(self, "Gateway", attributes=gateway_attributes)
        elif parameter_prefix:
            gateway = LlmGateway.from_lookup(self, "Gateway", parameter_prefix=parameter_prefix)
        else:
            gateway = LlmGateway.from_lookup(self, "Gateway")
        self.gateway = gateway
        self.triage = AiFeature(
            self,
            "ClaimTriage",
            team=TEAM,
            gateway=gateway,
            feature="claim-triage",
            owner="claims-leads@example.com",
            clearance="internal",
            models=["chat-fast"],
            prompts=["../prompts/triage-claim.yaml"],
            monthly_budget_usd=150,
            rate_limit_rpm=60,
            alert_thresholds=AlertThresholds(p99_latency_ms=8000, error_rate_pct=5, budget_pct=80),
        )
        cdk.Tags.of(self).add("Team", TEAM)
