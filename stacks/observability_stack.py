"""The observability stack(s): on-call topic, dashboards and alarms for every feature in the app,
Bedrock model invocation logging, and the online evaluation of the features that sample their traffic.

``add_observability(app, gateway_stack)`` finds every ``AiFeature`` in the app (so a new feature gets
its monitoring with no extra code) and fills stacks that share the platform stack's topic with them, in
order, by what each costs: its alarms (7 without online sampling, 16 with it, 17 with a judge, more if
its constructs add alarm inputs; the facade counts them, ``Observability.feature_resources``) and a
dashboard per section that starts one. A stack takes features until the next would pass
``RESOURCE_BUDGET`` (450, a margin under CloudFormation's 500) or ``features_per_stack`` (40) are in
it. A stack's count starts with what it holds before its first feature, synth's additions included
(``stacks.resource_count``): about 20 in the platform stack, about 110 with online evaluation and more
with every sampled feature. So 40 features without sampling still share a stack (about 300
resources), while sampled ones go about 20 to the platform stack and 27 to each overflow stack. A
feature that could not fit even an empty stack is refused at synth, naming it.

Placement follows the order of the features (team stacks, then features in each): adding, removing or
resizing a feature (e.g. turning on its sampling) can move the features after it to the neighbouring
stack. CloudFormation then deletes a moved feature's alarms and dashboard section in the old stack and
creates them in the new one (a moment without them, alarm history restarts). Names stay the same: each
overflow stack deploys after the one before it, so a move to a later stack frees its alarm names before
they are taken again; a stack that gains names a later stack still holds (a move back after a feature
before it was removed) must wait for that stack: deploy the later stacks first (docs/observability.md,
"Scale").

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
from stacks.resource_count import cfn_resources, synth_resources

PLATFORM_STACK_ID = "AiFactoryObservability"
FEATURES_PER_STACK = 40
"""At most this many features per observability stack: the bound for features without online sampling
(40 stay well under the budget); sampled ones reach ``RESOURCE_BUDGET`` first."""
MAX_STACK_RESOURCES = 500
"""CloudFormation's limit on resources in one stack (CDK refuses to synthesize more)."""
RESOURCE_BUDGET = 450
"""Features fill an observability stack up to this many resources (counted with what synth adds,
``stacks.resource_count``): a margin under the limit for what that count may miss."""


class ObservabilityStack(FactoryStack):
    """Platform dashboard and alarms, the on-call topic, invocation logging, and the first features.

    :param gateway_stack: the factory's gateway stack.
    :param features: features to monitor here (``add_observability`` passes none and places the features
        itself once the stack, with the online alarm inputs its ``OnlineEvaluation`` adds, is built).
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
    """Dashboards and alarms for more features, notifying the platform stack's on-call topic (an overflow
    stack of ``add_observability``, which fills it with features after building it)."""

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
    resource_budget: int = RESOURCE_BUDGET,
    stack_id: str = PLATFORM_STACK_ID,
    **props: Any,
) -> ObservabilityStack:
    """The platform observability stack (plus overflow stacks) in ``scope`` (the app or a stage) for
    ``features``, by default every ``AiFeature`` under ``scope``, with the online evaluation of those that
    sample (``sampled_features`` in ``props`` overrides). Call it after the team stacks are built.
    ``stack_id`` names the platform stack (the overflow stacks add ``Features<n>``); ``name_prefix`` in
    ``props`` goes to every one of them.

    Features fill the stacks in order: a stack takes the next feature unless it already monitors
    ``features_per_stack`` or the feature's resources would take it past ``resource_budget`` (at most
    ``MAX_STACK_RESOURCES``); then an overflow stack starts. A feature that alone would pass the budget
    in an empty stack is refused (``ValueError`` naming it)."""
    if features_per_stack < 1:
        raise ValueError(
            f"add_observability: features_per_stack must be at least 1, got {features_per_stack}"
        )
    if not 1 <= resource_budget <= MAX_STACK_RESOURCES:
        raise ValueError(
            f"add_observability: resource_budget must be 1..{MAX_STACK_RESOURCES} (CloudFormation's limit "
            f"per stack), got {resource_budget}"
        )
    found = list(features) if features is not None else find_features(scope)
    env = cdk.Environment(account=_concrete(gateway_stack.account), region=_concrete(gateway_stack.region))
    props.setdefault("sampled_features", [f for f in found if f.sample_table is not None])
    # Built before any feature is placed: its OnlineEvaluation adds the sampled features' online alarm
    # inputs, which are most of what a sampled feature costs.
    platform = ObservabilityStack(scope, stack_id, gateway_stack=gateway_stack, env=env, **props)
    filling = _Filling(platform, platform.observability)
    for feature in found:
        if not filling.takes(feature, features_per_stack, resource_budget):
            overflow = FeatureMonitoringStack(
                scope,
                f"{stack_id}Features{filling.number + 1}",
                platform=platform,
                features=(),
                env=env,
                name_prefix=platform.name_prefix,
            )
            # In order: a feature that moves to a later stack leaves the old one (whose update deletes
            # its alarms) before the new one creates them under the same names.
            overflow.add_stack_dependency(filling.stack)
            filling = _Filling(overflow, overflow.observability, number=filling.number + 1)
            if not filling.takes(feature, features_per_stack, resource_budget):
                raise ValueError(
                    f"add_observability: {feature.team}/{feature.feature} alone needs "
                    f"{filling.resources + filling.observability.feature_resources(feature)} resources in "
                    f"an observability stack ({len(feature.alarm_inputs)} alarm inputs), more than the "
                    f"resource_budget of {resource_budget} (CloudFormation allows {MAX_STACK_RESOURCES} "
                    "per stack): give it fewer alarm inputs"
                )
        filling.observability.monitor_feature(feature)
    return platform


class _Filling:
    """An observability stack being filled with features, and its resource count so far: what it held
    before the first feature, counted once (with what synth adds: the metadata resource and the
    managed policies the online evaluation's roles split off), plus what its facade added since."""

    def __init__(self, stack: cdk.Stack, observability: Observability, *, number: int = 1) -> None:
        self.stack = stack
        self.observability = observability
        self.number = number
        self._before = cfn_resources(stack) + synth_resources(stack) - observability.resources

    @property
    def resources(self) -> int:
        return self._before + self.observability.resources

    def takes(self, feature: AiFeature, features_per_stack: int, budget: int) -> bool:
        if len(self.observability.features) >= features_per_stack:
            return False
        return self.resources + self.observability.feature_resources(feature) <= budget


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
