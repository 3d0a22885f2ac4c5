"""The observability stack(s): on-call topic, dashboards and alarms for every feature in the app, and
Bedrock model invocation logging.

``add_observability(app, gateway_stack)`` finds every ``AiFeature`` in the app (so a new feature gets
its monitoring with no extra code) and puts them ``features_per_stack`` at a time into stacks that
share the platform stack's topic: each feature adds 7 alarms, so no stack nears CloudFormation's
500-resource limit as teams are added.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_sns as sns
from constructs import Construct

from ai_factory.constructs.ai_feature import AiFeature, find_features
from ai_factory.constructs.invocation_logging import BedrockInvocationLogging
from ai_factory.constructs.observability.facade import Observability
from ai_factory.constructs.observability.settings import AlarmDefaults
from stacks.base import FactoryStack
from stacks.context import context_flag
from stacks.gateway_stack import GatewayStack

PLATFORM_STACK_ID = "AiFactoryObservability"
FEATURES_PER_STACK = 40


class ObservabilityStack(FactoryStack):
    """Platform dashboard and alarms, the on-call topic, invocation logging, and the first features.

    :param gateway_stack: the factory's gateway stack.
    :param features: the features this stack monitors (the rest go to ``FeatureMonitoringStack``s).
    :param invocation_logging: manage Bedrock model invocation logging (context
        ``ai-factory:invocationLogging``, default true).
    :param overwrite_existing_logging: replace an invocation logging configuration someone else set
        (context ``ai-factory:invocationLoggingOverwrite``, default false).
    :param runbook_base_url: published ``docs/runbooks`` URL (context ``ai-factory:runbookBaseUrl``).
    :param oncall_emails: addresses subscribed to the on-call topic (context ``ai-factory:oncallEmail``,
        comma-separated). Without any, alarms notify nobody until someone subscribes (synth warns).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gateway_stack: GatewayStack,
        features: Sequence[AiFeature] = (),
        invocation_logging: bool | None = None,
        overwrite_existing_logging: bool | None = None,
        runbook_base_url: str | None = None,
        defaults: AlarmDefaults | None = None,
        oncall_emails: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("description", "AI Factory: dashboards, alarms, on-call topic, invocation logging")
        super().__init__(scope, construct_id, **kwargs)
        self.observability = Observability(
            self,
            "Observability",
            gateway=gateway_stack.gateway,
            features=features,
            runbook_base_url=runbook_base_url or self.node.try_get_context("ai-factory:runbookBaseUrl"),
            defaults=defaults,
            oncall_emails=oncall_emails if oncall_emails is not None else _context_emails(self),
        )
        self.invocation_logging: BedrockInvocationLogging | None = None
        if context_flag(self, "ai-factory:invocationLogging", True, given=invocation_logging):
            self.invocation_logging = BedrockInvocationLogging(
                self,
                "InvocationLogging",
                overwrite_existing=context_flag(
                    self, "ai-factory:invocationLoggingOverwrite", False, given=overwrite_existing_logging
                ),
            )
        cdk.CfnOutput(self, "OnCallTopicArn", value=self.observability.topic.topic_arn)
        assert self.observability.platform_dashboard is not None
        cdk.CfnOutput(
            self, "PlatformDashboardName", value=self.observability.platform_dashboard.dashboard_name
        )
        _acknowledge_strong_references(self)

    @property
    def topic(self) -> sns.ITopic:
        return self.observability.topic


class FeatureMonitoringStack(FactoryStack):
    """Dashboards and alarms for more features, notifying the platform stack's on-call topic."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        platform: ObservabilityStack,
        features: Sequence[AiFeature],
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("description", "AI Factory: feature dashboards and alarms")
        super().__init__(scope, construct_id, **kwargs)
        self.observability = Observability(
            self,
            "Observability",
            features=features,
            platform=False,
            topic=platform.topic,
            runbook_base_url=platform.observability.runbook_base_url,
            defaults=platform.observability.defaults,
        )
        _acknowledge_strong_references(self)


def add_observability(
    scope: Construct,
    gateway_stack: GatewayStack,
    *,
    features: Sequence[AiFeature] | None = None,
    features_per_stack: int = FEATURES_PER_STACK,
    stack_id: str = PLATFORM_STACK_ID,
    **props: Any,
) -> ObservabilityStack:
    """The platform observability stack (plus overflow stacks) in ``scope`` (the app or a stage) for
    ``features``, by default every ``AiFeature`` under ``scope``. Call it after the team stacks are built.
    ``stack_id`` names the platform stack (the overflow stacks add ``Features<n>``); ``name_prefix`` in
    ``props`` goes to every one of them."""
    if features_per_stack < 1:
        raise ValueError(
            f"add_observability: features_per_stack must be at least 1, got {features_per_stack}"
        )
    found = list(features) if features is not None else find_features(scope)
    chunks = [found[i : i + features_per_stack] for i in range(0, len(found), features_per_stack)] or [[]]
    env = cdk.Environment(account=_concrete(gateway_stack.account), region=_concrete(gateway_stack.region))
    platform = ObservabilityStack(
        scope, stack_id, gateway_stack=gateway_stack, features=chunks[0], env=env, **props
    )
    for index, chunk in enumerate(chunks[1:], start=2):
        FeatureMonitoringStack(
            scope,
            f"{stack_id}Features{index}",
            platform=platform,
            features=chunk,
            env=env,
            name_prefix=platform.name_prefix,
        )
    return platform


def _concrete(value: str) -> str | None:
    return None if cdk.Token.is_unresolved(value) else value


def _acknowledge_strong_references(stack: cdk.Stack) -> None:
    cdk.Annotations.of(stack).acknowledge_warning(
        "@aws-cdk/core:crossStackReferencesDefaultStrong",
        "Monitoring imports the gateway's log group and API and the on-call topic; strong references keep "
        "them from being removed while alarms use them.",
    )


def _context_emails(scope: Construct) -> list[str]:
    """``ai-factory:oncallEmail``: one address or several, comma-separated (or a JSON list in cdk.json)."""
    value = scope.node.try_get_context("ai-factory:oncallEmail")
    if not value:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]
