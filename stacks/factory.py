"""The one wiring of the factory's stacks, used by ``app.py`` and by each stage of the delivery pipeline.

``build_factory(scope, team_modules=...)`` adds, in this order: the gateway stack, the governance stack,
one stack per product team (each team's ``build(team_stack)`` fills it, then a canary watches its
features), the observability stack(s), which monitor every feature built before them, and the
enforcement stack (the guardrail against model calls that skip the gateway; context
``ai-factory:gatewayEnforcement``, default true). ``scope`` is the app or a ``cdk.Stage`` (staging,
production), so every environment gets the same stacks.

Every account-wide physical name in them starts with the factory's name prefix
(``ai_factory.platform.name_prefix``), and the stacks' IDs with its CamelCase (``ai-factory`` ->
``AiFactoryGateway``), so two factories with different prefixes live side by side in one account. In a
stage the stage's name is appended (``ai-factory-staging``): staging and production may share an account.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from constructs import Construct

from ai_factory.constructs.ai_feature import find_features
from ai_factory.constructs.canary import add_canary
from ai_factory.platform.name_prefix import name_prefix as name_prefix_of
from ai_factory.platform.name_prefix import stage_prefix, validate_prefix
from ai_factory.platform.naming import camel
from stacks.context import context_flag
from stacks.enforcement_stack import EnforcementStack
from stacks.gateway_stack import GatewayStack
from stacks.governance_stack import GovernanceStack
from stacks.observability_stack import ObservabilityStack, add_observability
from stacks.team_stack import TeamStack, team_stack_id


@dataclass(frozen=True)
class Factory:
    """The stacks ``build_factory`` added."""

    gateway: GatewayStack
    governance: GovernanceStack
    teams: tuple[TeamStack, ...]
    observability: ObservabilityStack
    enforcement: EnforcementStack | None = None


def build_factory(
    scope: Construct,
    *,
    team_modules: Sequence[str],
    env: cdk.Environment | None = None,
    label: str | None = None,
    invocation_logging: bool | None = None,
    name_prefix: str | None = None,
    tracking_server_arn: str | None = None,
) -> Factory:
    """Add the factory's stacks to ``scope`` (the app or a stage) and return them.

    :param team_modules: the product teams' packages (each with ``TEAM`` and ``build(team_stack)``).
    :param env: the stacks' environment. Default: the stage's (or environment-agnostic).
    :param label: shown in the stack descriptions (``AI Factory (<label>): ...``), e.g. the stage name.
    :param invocation_logging: manage Bedrock model invocation logging, which is one setting per account
        and region: ``False`` for every stage but one in the same account. Default: the context flag
        ``ai-factory:invocationLogging`` (default true).
    :param name_prefix: the factory's name prefix. Default: the context ``ai-factory:prefix``, else
        ``ai-factory``. In a stage, the stage's name is appended to it.
    :param tracking_server_arn: the MLflow tracking server where the online scorer records sampled
        requests as traces beside the eval runs (the MLOps stack's). Default: no traces.
    """
    base = validate_prefix(name_prefix, "name_prefix") if name_prefix is not None else name_prefix_of(scope)
    names = base
    if isinstance(scope, cdk.Stage) and not isinstance(scope, cdk.App):
        names = stage_prefix(base, scope.stage_name)
    ids = camel(base)  # the stack IDs; a stage already puts its own name in front of its stacks' names
    prefix = f"AI Factory ({label})" if label else "AI Factory"
    gateway = GatewayStack(
        scope,
        f"{ids}Gateway",
        env=env,
        description=f"{prefix}: LLM gateway",
        name_prefix=names,
        parameter_prefix=f"/{names}/gateway",
    )
    # Before the team stacks: their features' datasets and Lake Formation grants come from it.
    governance = GovernanceStack(
        scope,
        f"{ids}Governance",
        env=env,
        description=f"{prefix}: Lake Formation governed data",
        name_prefix=names,
    )
    teams = []
    for module_name in team_modules:
        module = importlib.import_module(module_name)
        team = TeamStack(
            scope,
            team_stack_id(module.TEAM, ids),
            team=module.TEAM,
            gateway_stack=gateway,
            governance=governance,
            env=env,
            name_prefix=names,
        )
        module.build(team)
        add_canary(team)  # drift detection for the team's features (EventBridge Scheduler)
        teams.append(team)
    # After the team stacks: it monitors every AiFeature under scope with this factory's name prefix (the
    # features of another factory in the same app belong to that factory's monitoring).
    features = [f for f in find_features(scope) if name_prefix_of(f) == names]
    observability = add_observability(
        scope,
        gateway,
        features=features,
        invocation_logging=invocation_logging,
        description=f"{prefix}: dashboards, alarms, on-call topic, invocation logging",
        stack_id=f"{ids}Observability",
        name_prefix=names,
        online_tracking_server_arn=tracking_server_arn,
    )
    # Last: it exempts the teams' knowledge-base roles and alarms to the observability stack's topic.
    enforcement = None
    if context_flag(scope, "ai-factory:gatewayEnforcement", True):
        enforcement = EnforcementStack(
            scope,
            f"{ids}Enforcement",
            gateway_stack=gateway,
            observability_stack=observability,
            feature_scope=scope,
            env=env,
            description=f"{prefix}: no way around the gateway (SCP, boundary, detection)",
            name_prefix=names,
        )
    return Factory(gateway, governance, tuple(teams), observability, enforcement)
