"""One stack per product team: the team's ``AiFeature``s and the KMS key for their secrets.

Features of a team live together and teams live apart, so adding teams never pushes a stack toward
CloudFormation's 500-resource limit (``benchmarks/synth_scale.py`` measures it), and one team's deploy
or rollback never touches another team's resources.
"""

from __future__ import annotations

import re
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.constructs.ai_feature import NAME_PATTERN, new_secrets_key
from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from stacks.base import FactoryStack
from stacks.gateway_stack import GatewayStack
from stacks.governance_stack import GovernanceStack


class TeamStack(FactoryStack):
    """A product team's features. ``AiFeature``s created in it take ``team``, ``gateway`` and
    ``catalog`` from it.

    :param team: team name, ``^[a-z0-9][a-z0-9-]{0,62}$`` (tag ``Team`` on everything in the stack).
    :param gateway_stack: the factory's gateway stack (its keys table, key and catalog are referenced).
    :param governance: the factory's governance stack, if any: ``team.governance.datasets`` are the
        governed datasets a feature may list in ``datasets``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        team: str,
        gateway_stack: GatewayStack,
        governance: GovernanceStack | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(team, str) or not NAME_PATTERN.match(team):
            raise ValueError(
                f"TeamStack {construct_id}: team: {team!r} is not valid: use 1-63 lowercase letters, digits "
                "and hyphens, starting with a letter or digit"
            )
        kwargs.setdefault("env", _same_environment(gateway_stack))
        kwargs.setdefault("description", f"AI Factory: features of team {team}")
        super().__init__(scope, construct_id, **kwargs)
        self.team = team
        self.gateway_stack = gateway_stack
        self.governance = governance
        self.gateway: LlmGateway = gateway_stack.gateway
        self.catalog: ModelCatalog = gateway_stack.catalog
        self.secrets_key = new_secrets_key(
            self, "SecretsKey", f"AI Factory team {team}: feature API-key secrets and provisioner logs"
        )
        cdk.Tags.of(self).add("Team", team)
        # Strong (export/import) references are what we want: CloudFormation then refuses to remove the
        # gateway's keys table or key outputs while a team stack still uses them.
        cdk.Annotations.of(self).acknowledge_warning(
            "@aws-cdk/core:crossStackReferencesDefaultStrong",
            "Team stacks import the gateway's keys table and KMS key; strong references protect them.",
        )


def team_stack_id(team: str, stack_prefix: str = "AiFactory") -> str:
    """The construct ID (and stack name) of a team's stack: ``AiFactoryTeam<CamelCaseTeam>`` (another
    factory's stacks start with the CamelCase of its name prefix: ``build_factory``)."""
    return f"{stack_prefix}Team" + "".join(part.capitalize() for part in re.split(r"-+", team) if part)


def _same_environment(stack: cdk.Stack) -> cdk.Environment:
    """``stack``'s account and region (cross-stack references need both stacks in one environment)."""

    def concrete(value: str) -> str | None:
        return None if cdk.Token.is_unresolved(value) else value

    return cdk.Environment(account=concrete(stack.account), region=concrete(stack.region))
