"""The enforcement stack: the guardrail against model calls that skip the gateway, and its alarms.

It is built after the team stacks (it exempts their knowledge bases' embedding roles) and the
observability stack (its alarms notify the on-call topic). The service control policy it produces is an
output for the organization's management account to apply (docs/security.md); nothing in it changes
what any principal in this account may do until someone attaches the SCP or the boundary.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from ai_factory.constructs.gateway_enforcement import GatewayEnforcement
from stacks.base import FactoryStack
from stacks.context import context_list
from stacks.gateway_stack import GatewayStack
from stacks.observability_stack import ObservabilityStack

ENFORCEMENT_STACK_ID = "AiFactoryEnforcement"


class EnforcementStack(FactoryStack):
    """``GatewayEnforcement`` for the factory's gateway: SCP output, permissions boundary, detection.

    :param gateway_stack: the factory's gateway stack (its runtime role is exempt).
    :param observability_stack: whose on-call topic the bypass alarms notify.
    :param feature_scope: where the factory's ``RagFeature``s are (the app or stage).
    :param break_glass_role_names: roles that may call models directly in an emergency (context
        ``ai-factory:breakGlassRoleNames``, names with path if any).
    :param exempt_principal_arns: further role ARNs that call models on the factory's behalf (context
        ``ai-factory:modelAccessExemptArns``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gateway_stack: GatewayStack,
        observability_stack: ObservabilityStack,
        feature_scope: Construct,
        break_glass_role_names: list[str] | None = None,
        exempt_principal_arns: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("description", "AI Factory: no way around the gateway (SCP, boundary, detection)")
        super().__init__(scope, construct_id, **kwargs)
        self.enforcement = GatewayEnforcement(
            self,
            "Enforcement",
            gateway=gateway_stack.gateway,
            feature_scope=feature_scope,
            break_glass_role_names=(
                break_glass_role_names
                if break_glass_role_names is not None
                else context_list(self, "ai-factory:breakGlassRoleNames")
            ),
            exempt_principal_arns=(
                exempt_principal_arns
                if exempt_principal_arns is not None
                else context_list(self, "ai-factory:modelAccessExemptArns")
            ),
            observability=observability_stack.observability,
        )
        cdk.Annotations.of(self).acknowledge_warning(
            "@aws-cdk/core:crossStackReferencesDefaultStrong",
            "The guardrail names the gateway's and the knowledge bases' roles and alarms to the on-call "
            "topic; strong references keep them from being removed while the policy exempts them.",
        )
