"""The gateway stack: one ``LlmGateway`` built from the approved-model catalog."""

from __future__ import annotations

import os
from typing import Any

from constructs import Construct

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.constructs.audit_trail import AuditTrail
from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from ai_factory.platform.name_prefix import DEFAULT_PREFIX
from aif_gateway import contract
from stacks.base import FactoryStack
from stacks.context import context_flag, context_list

DEFAULT_STACK_NAME = "AiFactoryGateway"
"""The platform app's gateway stack (``stacks/factory.py``), whose parameters teams look up."""


class GatewayStack(FactoryStack):
    """The LLM gateway (API, Lambda, tables, guardrail) for the whole factory.

    :param catalog_path: model catalog file. Default: the packaged ``ai_factory/data/models.yaml``.
    :param gateway_props: extra keyword props for ``LlmGateway``.
    :param audit_trail_props: extra keyword props for ``AuditTrail`` (retention, Object Lock mode).
    :param parameter_prefix: SSM path of the gateway's parameters. Default: ``/<name prefix>/<stack
        name>/gateway`` (``build_factory`` passes ``/<name prefix>/gateway``: ``/ai-factory/gateway``).

    Team accounts: the context ``ai-factory:teamAccounts`` (account IDs) and, optionally,
    ``ai-factory:organizationId`` let stacks in those accounts provision feature keys through the shared
    provisioner (``LlmGateway.enable_team_accounts``), which also gives each such feature its own usage plan
    (throttle capped at ``ai-factory:teamFeatureMaxRateLimitRpm`` requests per minute, default 600) and
    its own inference profiles. The gateway's SSM parameters, which team apps read
    with ``LlmGateway.from_lookup``, are always published (``docs/product-teams.md``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        catalog_path: str | os.PathLike[str] | None = None,
        gateway_props: dict[str, Any] | None = None,
        audit_trail_props: dict[str, Any] | None = None,
        parameter_prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.catalog = ModelCatalog.load(catalog_path)
        props: dict[str, Any] = {
            # API Gateway cannot write access or execution logs until the account has a CloudWatch
            # role, so a first deploy into a fresh account needs it. Accounts whose role is managed
            # centrally set the context flag ai-factory:configureApiGatewayAccountRole=false.
            "configure_account_logging_role": context_flag(
                self, "ai-factory:configureApiGatewayAccountRole", True
            ),
            **(gateway_props or {}),
        }
        self.gateway = LlmGateway(self, "Gateway", catalog=self.catalog, **props)
        # The gateway's audit lines, kept write-once in S3 (docs/security.md).
        self.audit_trail = AuditTrail(
            self, "AuditTrail", log_group=self.gateway.audit_log_group, **(audit_trail_props or {})
        )
        team_accounts = context_list(self, "ai-factory:teamAccounts")
        if team_accounts:
            cap = self.node.try_get_context("ai-factory:teamFeatureMaxRateLimitRpm")
            self.gateway.enable_team_accounts(
                accounts=team_accounts,
                organization_id=self.node.try_get_context("ai-factory:organizationId"),
                # The -c flag arrives as a string, a cdk.json value as a number; anything else is refused
                # by enable_team_accounts with the field named.
                **(
                    {"max_feature_rate_limit_rpm": int(cap) if str(cap).isdigit() else cap}
                    if cap is not None
                    else {}
                ),
            )
        # A factory's gateway publishes under its name prefix (the contract's path for the default
        # prefix); any other gateway stack in the account (an integration test) under its own stack
        # name too, so none collide.
        self.parameter_prefix = parameter_prefix or (
            contract.GATEWAY_PARAMETER_PREFIX
            if self.stack_name == DEFAULT_STACK_NAME and self.name_prefix == DEFAULT_PREFIX
            else f"/{self.name_prefix}/{self.stack_name}/gateway"
        )
        self.gateway.publish_parameters(self.parameter_prefix)
