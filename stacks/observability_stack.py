"""The observability stack(s): on-call topic, dashboards and alarms for every feature in the app,
Bedrock model invocation logging, and the online evaluation of the features that sample their traffic.

``add_observability(app, gateway_stack)`` finds every ``AiFeature`` in the app (so a new feature gets
its monitoring with no extra code) and puts them ``features_per_stack`` at a time into stacks that
share the platform stack's topic: each feature adds 7 alarms (15 with online sampling, 16 with a
judge), so no stack nears CloudFormation's 500-resource limit as teams are added.

Online evaluation lives in the platform stack, next to the invocation log group its sampler subscribes
to: one ``OnlineEvaluation`` for every sampled feature of the factory, because CloudWatch Logs allows
only two subscription filters per log group (one per team would break at the third team). It reads the
teams' sample tables, so this stack depends on the team stacks (CloudFormation deploys them first).
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
from ai_factory.constructs.online_evaluation import OnlineEvaluation
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
    :param sampled_features: the factory's features with ``online_sampling`` (all of them, also those an
        overflow stack monitors): this stack gets the one ``OnlineEvaluation`` for them. It needs the
        invocation log group: with invocation logging off here, synth warns and nothing is sampled.
    :param online_judge: the feature whose gateway key the online judge uses (``OnlineEvaluation``'s
        ``judge``). Default: no judge (deterministic scores, PII and drift only; no judge cost).
    :param online_tracking_server_arn: the MLflow tracking server the online scorer records each scored
        sample on as a trace, beside the eval runs (``OnlineEvaluation``'s ``tracking_server_arn``; the
        app passes the MLOps stack's). Default: no traces.
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
        sampled_features: Sequence[AiFeature] = (),
        online_judge: AiFeature | None = None,
        online_tracking_server_arn: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("description", "AI Factory: dashboards, alarms, on-call topic, invocation logging")
        super().__init__(scope, construct_id, **kwargs)
        self.invocation_logging: BedrockInvocationLogging | None = None
        if context_flag(self, "ai-factory:invocationLogging", True, given=invocation_logging):
            self.invocation_logging = BedrockInvocationLogging(
                self,
                "InvocationLogging",
                overwrite_existing=context_flag(
                    self, "ai-factory:invocationLoggingOverwrite", False, given=overwrite_existing_logging
                ),
            )
        # Before the facade: OnlineEvaluation adds the sampled features' alarm inputs it reads.
        self.online_evaluation: OnlineEvaluation | None = None
        if sampled_features and self.invocation_logging is None:
            cdk.Annotations.of(self).add_warning_v2(
                "ai-factory:online-evaluation-without-invocation-logs",
                "Features with online_sampling ("
                + ", ".join(f"{f.team}/{f.feature}" for f in sampled_features)
                + ") are not sampled: invocation logging is off in this stack (context "
                "ai-factory:invocationLogging), and the sampler reads its log group. Their sample tables "
                "stay empty and get no online alarms.",
            )
        elif sampled_features:
            assert self.invocation_logging is not None
            self.online_evaluation = OnlineEvaluation(
                self,
                "OnlineEvaluation",
                features=sampled_features,
                invocation_log_group=self.invocation_logging.log_group,
                judge=online_judge,
                tracking_server_arn=online_tracking_server_arn,
            )
        self.observability = Observability(
            self,
            "Observability",
            gateway=gateway_stack.gateway,
            features=features,
            runbook_base_url=runbook_base_url or self.node.try_get_context("ai-factory:runbookBaseUrl"),
            defaults=defaults,
            oncall_emails=oncall_emails if oncall_emails is not None else _context_emails(self),
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
    ``features``, by default every ``AiFeature`` under ``scope``, with the online evaluation of those that
    sample (``sampled_features`` in ``props`` overrides). Call it after the team stacks are built.
    ``stack_id`` names the platform stack (the overflow stacks add ``Features<n>``); ``name_prefix`` in
    ``props`` goes to every one of them."""
    if features_per_stack < 1:
        raise ValueError(
            f"add_observability: features_per_stack must be at least 1, got {features_per_stack}"
        )
    found = list(features) if features is not None else find_features(scope)
    chunks = [found[i : i + features_per_stack] for i in range(0, len(found), features_per_stack)] or [[]]
    env = cdk.Environment(account=_concrete(gateway_stack.account), region=_concrete(gateway_stack.region))
    props.setdefault("sampled_features", [f for f in found if f.sample_table is not None])
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
        "Monitoring imports the gateway's log group and API and the on-call topic, and online evaluation the "
        "teams' sample tables and keys; strong references keep them from being removed while in use.",
    )


def _context_emails(scope: Construct) -> list[str]:
    """``ai-factory:oncallEmail``: one address or several, comma-separated (or a JSON list in cdk.json)."""
    value = scope.node.try_get_context("ai-factory:oncallEmail")
    if not value:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]
