"""``Observability``: one facade that monitors the gateway and every ``AiFeature`` it is handed.

In the style of cdk-monitoring-constructs: hand it the gateway and the features and it adds

* an on-call SNS topic encrypted with a KMS key of its own, whose resource policy and key policy let
  this account's CloudWatch alarms publish, with the on-call subscriptions it is given (without one
  nobody is paged: synth warns);
* a platform dashboard (traffic and status classes, latency p50/p90/p99, throttles and budget refusals,
  fallbacks and circuit-breaker opens, guardrail interventions, tokens and cost per team and per feature,
  budget burn, feedback score, canary and eval pass rate, input drift of the sampled features, an
  audit-log query) built from CloudWatch SEARCH expressions, so it needs no change when features come
  and go;
* a section per feature (its own ``dashboard_widgets()`` plus latency percentiles, tokens, budget burn,
  reliability, feedback, quality, the daily drift of a feature whose drift ``OnlineEvaluation`` watches,
  and the state of its alarms), ``features_per_dashboard`` per dashboard, fewer when the sections would
  exceed CloudWatch's 500 widgets per dashboard;
* alarms named ``<prefix>-<Severity>-<team>-<feature>-<What>`` whose descriptions link their runbook,
  each notifying the topic when it fires and when it recovers.

Every metric is in the ``AIFactory`` namespace with the (Team, Feature) dimension set the gateway emits
(``docs/gateway.md``); feedback and canary metrics come from the feedback endpoint and the canary.

Example::

    obs = Observability(stack, "Observability", gateway=gateway, features=find_features(app))
    obs.monitor_feature(another_feature)  # more can be added later
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from ai_factory.constructs.ai_feature import AiFeature
from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from ai_factory.constructs.observability.feature_section import (
    feature_alarm_count,
    feature_alarms,
    feature_section,
)
from ai_factory.constructs.observability.platform_section import build_platform
from ai_factory.constructs.observability.settings import (
    MAX_DASHBOARD_WIDGETS,
    RUNBOOKS,
    AlarmDefaults,
    Severity,
)
from ai_factory.platform.name_prefix import name_prefix

# dashboard counters per app (construct-tree root), so facades in several stacks never reuse a name.
_DASHBOARD_COUNTERS: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()


class Observability(Construct):
    """Dashboards and alarms for the gateway and every feature, notifying one encrypted on-call topic.

    :param gateway: the ``LlmGateway``; with ``platform=True`` it gets the platform dashboard and alarms.
    :param features: ``AiFeature``s to monitor now (``monitor_feature`` adds more).
    :param platform: create the platform dashboard and alarms. ``False`` for a facade that only holds
        feature sections (e.g. an overflow stack when there are many features).
    :param topic: an existing on-call topic. Default: a new topic with a new KMS key.
    :param oncall_emails: email addresses subscribed to the new topic (each confirms once by email).
    :param oncall_subscriptions: further subscriptions of the new topic (a paging or chat integration's
        HTTPS endpoint, an SQS queue, a Lambda). A new topic with no subscription notifies nobody: the
        construct warns at synth.
    :param runbook_base_url: where the ``docs/runbooks`` folder is published (e.g. the repository's
        URL ``.../blob/main/docs/runbooks``). Default: descriptions name the repository path.
    :param defaults: thresholds for the alarms that are not per-feature props.
    :param dashboard_prefix: dashboard names start with it. Default: the factory's name prefix, which also
        starts every alarm name (``ai-factory-Critical-...``): both are unique in an account.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gateway: LlmGateway | None = None,
        features: Iterable[AiFeature] = (),
        platform: bool = True,
        topic: sns.ITopic | None = None,
        oncall_emails: Sequence[str] = (),
        oncall_subscriptions: Sequence[sns.ITopicSubscription] = (),
        runbook_base_url: str | None = None,
        defaults: AlarmDefaults | None = None,
        dashboard_prefix: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if platform and gateway is None:
            raise ValueError(f"Observability {construct_id}: gateway: required when platform=True")
        self.gateway = gateway
        self.defaults = defaults or AlarmDefaults()
        self.runbook_base_url = runbook_base_url.rstrip("/") if runbook_base_url else None
        self.name_prefix = name_prefix(self)
        self.dashboard_prefix = dashboard_prefix or self.name_prefix
        self.key: kms.IKey | None = None
        if topic is None:
            self.key = self._topic_key()
            topic = sns.Topic(
                self,
                "OnCallTopic",
                display_name="AI Factory on-call",
                master_key=self.key,
                enforce_ssl=True,
            )
            _allow_alarms_to_publish(topic)
            for address in oncall_emails:
                if not isinstance(address, str) or "@" not in address.strip("@"):
                    raise ValueError(
                        f"Observability {construct_id}: oncall_emails: {address!r} is not an email address"
                    )
                topic.add_subscription(subscriptions.EmailSubscription(address))
            for subscription in oncall_subscriptions:
                topic.add_subscription(subscription)
            if not oncall_emails and not oncall_subscriptions:
                cdk.Annotations.of(self).add_warning_v2(
                    "ai-factory:oncall-unsubscribed",
                    "The on-call topic has no subscription: alarms will notify nobody. Pass oncall_emails or "
                    "oncall_subscriptions (context ai-factory:oncallEmail), or subscribe the OnCallTopicArn "
                    "output after deploy (docs/observability.md).",
                )
        elif oncall_emails or oncall_subscriptions:
            raise ValueError(
                f"Observability {construct_id}: oncall_emails/oncall_subscriptions: only for the topic this "
                "construct creates; subscribe an existing topic where it is defined"
            )
        self.topic: sns.ITopic = topic
        self.alarms: list[cloudwatch.Alarm] = []
        self.feature_alarms: dict[tuple[str, str], list[cloudwatch.Alarm]] = {}
        self.features: list[AiFeature] = []
        self.feature_dashboards: list[cloudwatch.Dashboard] = []
        self.platform_dashboard: cloudwatch.Dashboard | None = None
        self._sections_in_current = 0
        self._widgets_in_current = 0
        if platform and gateway is not None:
            self.platform_dashboard = build_platform(self, self, gateway)
        for feature in features:
            self.monitor_feature(feature)

    # ----------------------------------------------------------------------------------------- public

    def runbook_url(self, runbook: str) -> str:
        """The link to a runbook (``RUNBOOKS``)."""
        if runbook not in RUNBOOKS:
            raise ValueError(f"Observability: unknown runbook {runbook!r} (known: {', '.join(RUNBOOKS)})")
        if self.runbook_base_url:
            return f"{self.runbook_base_url}/{runbook}.md"
        return f"docs/runbooks/{runbook}.md (AI Factory repository)"

    def add_alarm(
        self,
        name: str,
        severity: Severity,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator,
        *,
        description: str,
        runbook: str,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
        scope_id: str | None = None,
    ) -> cloudwatch.Alarm:
        """An alarm named ``<prefix>-<severity>-<name>`` that links its runbook and notifies the topic
        when it fires and when it recovers. Missing data never breaches (no traffic is not a fault)."""
        alarm = cloudwatch.Alarm(
            self,
            scope_id or f"{severity.value}{name.replace('-', '')}",
            alarm_name=f"{self.name_prefix}-{severity.value}-{name}",
            alarm_description=f"{description}. Runbook: {self.runbook_url(runbook)}",
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        action = cw_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms.append(alarm)
        return alarm

    def runbook_links(self) -> str:
        """Markdown links to every runbook (or where to find them), for dashboard headers."""
        if not self.runbook_base_url:
            return "`docs/runbooks/` in the AI Factory repository"
        return " · ".join(f"[{r}]({self.runbook_url(r)})" for r in RUNBOOKS)

    def feature_resources(self, feature: AiFeature) -> int:
        """The most CloudFormation resources ``monitor_feature(feature)`` would add: its alarms (one per
        ``feature.alarm_inputs`` plus the fixed ones) and a dashboard, should its section start one. Ask
        after the constructs that add alarm inputs (an ``OnlineEvaluation``) are built."""
        return feature_alarm_count(feature) + 1

    @property
    def resources(self) -> int:
        """The CloudFormation resources of this facade's alarms and dashboards so far."""
        platform = 1 if self.platform_dashboard is not None else 0
        return len(self.alarms) + len(self.feature_dashboards) + platform

    def monitor_feature(self, feature: AiFeature) -> list[cloudwatch.Alarm]:
        """The feature's alarms, and its section on the current feature dashboard."""
        key = (feature.team, feature.feature)
        if key in self.feature_alarms:
            raise ValueError(f"Observability: {feature.team}/{feature.feature} is already monitored")
        alarms = feature_alarms(self, feature)
        rows = feature_section(self, feature, alarms)
        widgets = sum(len(row) for row in rows)
        if widgets > MAX_DASHBOARD_WIDGETS:
            raise ValueError(
                f"Observability: {feature.team}/{feature.feature}: its dashboard section has {widgets} "
                f"widgets, more than a CloudWatch dashboard holds ({MAX_DASHBOARD_WIDGETS}); return fewer "
                "from dashboard_widgets()"
            )
        self.feature_alarms[key] = alarms
        self.features.append(feature)
        if (
            not self.feature_dashboards
            or self._sections_in_current >= self.defaults.features_per_dashboard
            # Sections differ in size (drift widgets, the feature's own widgets): a full dashboard
            # would fail at deploy, so the next section starts a new one.
            or self._widgets_in_current + widgets > MAX_DASHBOARD_WIDGETS
        ):
            self._new_feature_dashboard()
            self._sections_in_current = 0
            self._widgets_in_current = 0
        dashboard = self.feature_dashboards[-1]
        for row in rows:
            dashboard.add_widgets(*row)
        self._sections_in_current += 1
        self._widgets_in_current += widgets
        return alarms

    # -------------------------------------------------------------------------------------- building

    def _new_feature_dashboard(self) -> None:
        counter = _DASHBOARD_COUNTERS.setdefault(self.node.root, [0])
        counter[0] += 1
        dashboard = cloudwatch.Dashboard(
            self,
            f"FeaturesDashboard{len(self.feature_dashboards) + 1}",
            dashboard_name=f"{self.dashboard_prefix}-Features-{counter[0]}",
            default_interval=Duration.days(1),
        )
        self.feature_dashboards.append(dashboard)

    # ----------------------------------------------------------------------------------------- setup

    def _topic_key(self) -> kms.Key:
        key = kms.Key(
            self,
            "OnCallTopicKey",
            description="AI Factory: on-call SNS topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # Alarms publish to an encrypted topic only if CloudWatch may use its key (this account's alarms).
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
                        "alarm:*"
                    },
                },
            )
        )
        return key


def _allow_alarms_to_publish(topic: sns.Topic) -> None:
    """CloudWatch alarms deliver to a topic only if its resource policy lets ``cloudwatch.amazonaws.com``
    publish (``enforce_ssl`` alone gives the policy a single Deny statement): this account's alarms."""
    topic.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchAlarmsPublish",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"],
            resources=[topic.topic_arn],
            conditions={
                "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                "ArnLike": {
                    "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"
                },
            },
        )
    )
