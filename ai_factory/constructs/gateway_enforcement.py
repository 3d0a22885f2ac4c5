"""``GatewayEnforcement``: no way around the gateway — prevention for the organization, detection here.

Every model call that skips the gateway also skips its keys, budgets, guardrail, usage ledger and audit
trail. This construct produces the guardrails that close that path and the alarm that shows when it is
used anyway:

* **the service control policy** (``scp_document``) the organization's management account attaches to
  the OUs of the factory's accounts: it denies direct model invocation to every principal except the
  gateway's role, the roles that call models on the factory's behalf (knowledge bases' embedding roles)
  and the named break-glass roles. It is emitted with the stack as the output ``ModelAccessScp`` (the
  exact JSON, role ARNs resolved at deploy time) to pass to ``aws organizations create-policy``;
* **the permissions boundary** (``boundary``), a managed policy in this account with the same denies,
  for accounts whose owners cannot attach SCPs: attach it to roles (or require it on role creation) and
  they cannot call models directly whatever their identity policies say;
* **detection**: an EventBridge rule on the CloudTrail management events of Bedrock model invocations
  (``InvokeModel``, ``InvokeModelWithResponseStream``, ``Converse``, ``ConverseStream``) by any other
  principal, which keeps the matched events in an encrypted log group and raises the
  ``<prefix>-Critical-Platform-DirectModelAccess`` alarm; a second rule and a Warning alarm for calls
  by break-glass roles. Both alarms link the ``direct-model-access`` runbook.

What is denied, and why (the Service Authorization Reference names the IAM actions):

* ``bedrock:InvokeModel*``: ``InvokeModel`` (which also authorizes ``Converse`` and the OpenAI-compatible
  Chat Completions on ``bedrock-runtime``), ``InvokeModelWithResponseStream`` (also ``ConverseStream``)
  and ``InvokeModelWithBidirectionalStream``. ``Converse``/``ConverseStream`` are API operations, not IAM
  actions, so a ``bedrock:Converse*`` pattern would match nothing;
* ``bedrock:StartAsyncInvoke`` and ``bedrock:CreateModelInvocationJob``: asynchronous and batch
  inference send the same data to the same models, with no gateway in the path;
* ``bedrock:CallWithBearerToken``: Bedrock API keys, long-lived credentials the gateway never uses;
* ``bedrock-mantle:CreateInference`` and ``bedrock-mantle:CallWithBearerToken``: the ``bedrock-mantle``
  endpoint's inference, a separate IAM service prefix;
* ``sagemaker:InvokeEndpoint*`` on the SageMaker endpoints the catalog routes to (the factory's
  custom models), not on every endpoint: other endpoints serve other teams' ordinary ML models.

Not denied: ``bedrock:ApplyGuardrail`` (it checks text against a guardrail and generates nothing, so it
sends no data to a model provider), and agents, flows and ``RetrieveAndGenerate``, which invoke models
as a role that the ``InvokeModel`` deny already covers.

Example::

    enforcement = GatewayEnforcement(
        stack, "Enforcement", gateway=gateway, break_glass_role_names=["BreakGlassAdmin"],
        observability=observability,
    )
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import Aws, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk.interfaces import aws_events as events_refs
from constructs import Construct, IConstruct

from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from ai_factory.constructs.observability.facade import Observability
from ai_factory.constructs.observability.settings import ALARM_RUNBOOKS, Severity
from ai_factory.constructs.rag_feature import RagFeature
from ai_factory.platform.log_retention import finite_retention
from ai_factory.platform.nag import acknowledge
from ai_factory.platform.secure_defaults import logs_kms_key

BEDROCK_INVOKE_ACTIONS = (
    "bedrock:InvokeModel*",
    "bedrock:StartAsyncInvoke",
    "bedrock:CreateModelInvocationJob",
    "bedrock:CallWithBearerToken",
    "bedrock-mantle:CreateInference",
    "bedrock-mantle:CallWithBearerToken",
)
"""Denied on every resource to every principal but the exempt ones."""

SAGEMAKER_INVOKE_ACTIONS = ("sagemaker:InvokeEndpoint*",)
"""Denied on the catalog's SageMaker endpoints to every principal but the exempt ones."""

DETECTED_EVENT_NAMES = (
    "InvokeModel",
    "InvokeModelWithResponseStream",
    "Converse",
    "ConverseStream",
    # Data events: they reach EventBridge only from a trail that logs AWS::Bedrock::Model data events.
    "InvokeModelWithBidirectionalStream",
    "StartAsyncInvoke",
    "CreateModelInvocationJob",
)
"""CloudTrail ``eventName``s (``eventSource`` ``bedrock.amazonaws.com``) the detection rules match."""

SCP_MAX_CHARACTERS = 5120
"""AWS Organizations' size limit for one service control policy document."""

_TOKEN_ESTIMATE = 100  # characters a deploy-time role ARN may take in the SCP (name ≤ 64, path, account)
_ROLE_NAME = re.compile(r"^(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")
_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::(?:\d{12}|\*):role/(?:[\w+=,.@*?-]+/)*[\w+=,.@*?-]{1,64}$")


class GatewayEnforcementError(ValueError):
    """An invalid ``GatewayEnforcement`` prop (the message names the construct and the field)."""


class GatewayEnforcement(Construct):
    """The organization's guardrail against direct model access, and the alarm when it is bypassed.

    :param gateway: the factory's ``LlmGateway``: its runtime role is exempt, and its catalog names the
        SageMaker endpoints whose invocation is denied.
    :param model_access_roles: further roles that call models on the factory's behalf. Default: the
        knowledge-base roles of every ``RagFeature`` under ``feature_scope``.
    :param feature_scope: where to find ``RagFeature``s (e.g. the app or stage). Default: none.
    :param exempt_principal_arns: further exempt IAM role ARNs, wildcards allowed (e.g. a knowledge-base
        role in a team account: ``arn:aws:iam::444455556666:role/...``).
    :param break_glass_role_names: roles (name, with path if any) that may call models directly in an
        emergency, in any account the SCP covers; their calls raise a Warning alarm.
    :param observability: the facade whose on-call topic the alarms notify and whose runbook links they
        carry. Default: no alarms (the rules and the evidence log group still exist).
    :param detection: add the EventBridge rules, evidence log group and alarms. Default: true.
    :param evidence_retention: how long matched events are kept (a ``logs.RetentionDays`` or days).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gateway: LlmGateway,
        model_access_roles: Sequence[iam.IRole] | None = None,
        feature_scope: IConstruct | None = None,
        exempt_principal_arns: Sequence[str] = (),
        break_glass_role_names: Sequence[str] = (),
        observability: Observability | None = None,
        detection: bool = True,
        evidence_retention: logs.RetentionDays | int = logs.RetentionDays.ONE_YEAR,
    ) -> None:
        super().__init__(scope, construct_id)
        self._id = construct_id
        stack = Stack.of(self)
        retention = finite_retention(evidence_retention)
        if retention is None:
            raise self._fail(
                "evidence_retention",
                f"must be a finite CloudWatch Logs retention, got {evidence_retention!r}",
            )
        for arn in exempt_principal_arns:
            if not isinstance(arn, str) or not _ROLE_ARN.match(arn):
                raise self._fail(
                    "exempt_principal_arns",
                    f"{arn!r} is not an IAM role ARN (arn:<partition>:iam::<account or *>:role/<name>)",
                )
        for name in break_glass_role_names:
            if not isinstance(name, str) or not _ROLE_NAME.match(name):
                raise self._fail(
                    "break_glass_role_names",
                    f"{name!r} is not an IAM role name (1-64 of letters, digits and +=,.@_-, "
                    "optionally after a path)",
                )
        self.gateway = gateway
        roles = (
            list(model_access_roles)
            if model_access_roles is not None
            else [feature.role for feature in find_rag_features(feature_scope)]
        )
        self.model_access_roles: tuple[iam.IRole, ...] = tuple(roles)
        # Exempt from the denies: what the factory itself runs (exact role ARNs, resolved at deploy time)
        # and the break-glass roles in any account the SCP covers.
        self.factory_principal_arns: tuple[str, ...] = (
            gateway.runtime_role.role_arn,
            *(role.role_arn for role in self.model_access_roles),
            *exempt_principal_arns,
        )
        self.break_glass_role_arns: tuple[str, ...] = tuple(
            f"arn:{Aws.PARTITION}:iam::*:role/{name}" for name in break_glass_role_names
        )
        self.exempt_principal_arns = (*self.factory_principal_arns, *self.break_glass_role_arns)
        region = stack.region
        self.sagemaker_endpoint_arns: tuple[str, ...] = tuple(
            gateway.catalog.sagemaker_endpoint_arns(
                Aws.PARTITION, Aws.REGION if Token.is_unresolved(region) else region, Aws.ACCOUNT_ID
            )
        )

        self.scp_document = iam.PolicyDocument(statements=self.deny_statements())
        self._check_scp_size()
        self.boundary = iam.ManagedPolicy(
            self,
            "Boundary",
            description=(
                "AI Factory permissions boundary: no direct model invocation outside the gateway "
                "(docs/security.md)"
            ),
            statements=[
                # A boundary only caps: effective permissions are the role's own policies AND this.
                iam.PolicyStatement(sid="PermissionsCeiling", actions=["*"], resources=["*"]),
                *self.deny_statements(),
            ],
        )
        ceiling = (
            "A permissions boundary is a ceiling, not a grant: a bounded role may do only what its own "
            "identity policies allow AND this policy allows. The Allow * statement keeps those policies in "
            "force; the Deny statements remove direct model invocation from every bounded role. This stack "
            "attaches the boundary to no role."
        )
        acknowledge(
            self.boundary,
            {
                rule: ceiling
                for rule in (
                    "AwsSolutions-IAM5[Action::*]",
                    "AwsSolutions-IAM5[Resource::*]",
                    "NIST.800.53.R5-IAMPolicyNoStatementsWithAdminAccess",
                    "NIST.800.53.R5-IAMPolicyNoStatementsWithFullAccess",
                )
            },
        )
        cdk.CfnOutput(
            self,
            "ModelAccessScp",
            description=(
                "Service control policy for the management account: aws organizations create-policy "
                "--type SERVICE_CONTROL_POLICY --content file://scp.json (docs/security.md)"
            ),
            value=stack.to_json_string(self.scp_document.to_json()),
        )
        cdk.CfnOutput(
            self,
            "ModelAccessBoundaryArn",
            description="Permissions boundary denying direct model invocation (docs/security.md)",
            value=self.boundary.managed_policy_arn,
        )

        self.rules: list[events.Rule] = []
        self.alarms: list[cloudwatch.Alarm] = []
        self.evidence_log_group: logs.LogGroup | None = None
        self.direct_invocation_rule: events.Rule | None = None
        self.break_glass_rule: events.Rule | None = None
        if detection:
            self._detection(retention, observability)

    # ----------------------------------------------------------------------------------------- public

    def deny_statements(self) -> list[iam.PolicyStatement]:
        """The Deny statements the SCP and the boundary share (each call builds new statements)."""
        unless_exempt = {"ArnNotLike": {"aws:PrincipalArn": list(self.exempt_principal_arns)}}
        statements = [
            iam.PolicyStatement(
                sid="DenyDirectModelInvocation",
                effect=iam.Effect.DENY,
                actions=list(BEDROCK_INVOKE_ACTIONS),
                resources=["*"],
                conditions=unless_exempt,
            )
        ]
        if self.sagemaker_endpoint_arns:
            statements.append(
                iam.PolicyStatement(
                    sid="DenyDirectFactoryEndpointInvocation",
                    effect=iam.Effect.DENY,
                    actions=list(SAGEMAKER_INVOKE_ACTIONS),
                    resources=list(self.sagemaker_endpoint_arns),
                    conditions=unless_exempt,
                )
            )
        return statements

    def direct_invocation_pattern(self) -> events.EventPattern:
        """CloudTrail model invocations by a principal that is neither exempt nor break-glass: assumed
        roles other than the exempt ones, and IAM users, root and federated users (never exempt)."""
        return _invocation_pattern(
            {
                "$or": [
                    {
                        "type": ["AssumedRole"],
                        "sessionContext": {
                            "sessionIssuer": {
                                "arn": [
                                    {
                                        "anything-but": [
                                            *self.factory_principal_arns_here(),
                                            *self.break_glass_role_arns_here(),
                                        ]
                                    }
                                ]
                            }
                        },
                    },
                    {"type": [{"anything-but": ["AssumedRole", "AWSService"]}]},
                ]
            }
        )

    def break_glass_pattern(self) -> events.EventPattern:
        """CloudTrail model invocations by one of the break-glass roles (in this account)."""
        return _invocation_pattern(
            {
                "type": ["AssumedRole"],
                "sessionContext": {"sessionIssuer": {"arn": list(self.break_glass_role_arns_here())}},
            }
        )

    def factory_principal_arns_here(self) -> list[str]:
        """The factory's exempt principals as CloudTrail records them in this account: EventBridge
        matches exact values, so wildcard ARNs (for other accounts) are left to the SCP."""
        return [arn for arn in self.factory_principal_arns if Token.is_unresolved(arn) or "*" not in arn]

    def break_glass_role_arns_here(self) -> list[str]:
        """The break-glass roles' ARNs in this account (CloudTrail's ``sessionIssuer.arn``)."""
        return [arn.replace(":iam::*:", f":iam::{Aws.ACCOUNT_ID}:") for arn in self.break_glass_role_arns]

    # -------------------------------------------------------------------------------------- building

    def _detection(self, retention: logs.RetentionDays, observability: Observability | None) -> None:
        key = logs_kms_key(self, "EvidenceKey", "AI Factory: direct model invocations seen in CloudTrail")
        self.evidence_log_group = logs.LogGroup(
            self,
            "Evidence",
            encryption_key=key,
            retention=retention,
            removal_policy=RemovalPolicy.RETAIN,
        )
        cdk.CfnOutput(
            self,
            "EvidenceLogGroupName",
            description="CloudTrail events of direct model calls (docs/runbooks/direct-model-access.md)",
            value=self.evidence_log_group.log_group_name,
        )
        self.direct_invocation_rule = self._rule(
            "DirectModelInvocation",
            "A model invocation by a principal other than the AI Factory gateway (CloudTrail)",
            self.direct_invocation_pattern(),
        )
        if self.break_glass_role_arns:
            self.break_glass_rule = self._rule(
                "BreakGlassModelInvocation",
                "A model invocation by an AI Factory break-glass role (CloudTrail)",
                self.break_glass_pattern(),
            )
        # EventBridge writes to a log group only if its resource policy allows it (these rules only).
        logs.ResourcePolicy(
            self,
            "EvidenceWrite",
            policy_statements=[
                iam.PolicyStatement(
                    sid="EventBridgeWritesDirectModelInvocations",
                    principals=[
                        iam.ServicePrincipal("events.amazonaws.com"),
                        iam.ServicePrincipal("delivery.logs.amazonaws.com"),
                    ],
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.evidence_log_group.log_group_arn],
                    conditions={"ArnEquals": {"aws:SourceArn": [rule.rule_arn for rule in self.rules]}},
                )
            ],
        )
        if observability is None:
            return
        self.alarms.append(
            self._alarm(
                observability,
                "DirectModelAccess",
                Severity.CRITICAL,
                self.direct_invocation_rule,
                "A principal other than the gateway invoked, or tried to invoke, a model directly, "
                "bypassing keys, budgets, guardrail, ledger and audit trail",
            )
        )
        if self.break_glass_rule is not None:
            self.alarms.append(
                self._alarm(
                    observability,
                    "BreakGlassModelAccess",
                    Severity.WARNING,
                    self.break_glass_rule,
                    "A break-glass role invoked a model directly (an approved emergency path: confirm it "
                    "was planned and review what was sent)",
                )
            )

    def _rule(self, construct_id: str, description: str, pattern: events.EventPattern) -> events.Rule:
        assert self.evidence_log_group is not None
        rule = events.Rule(self, construct_id, description=description, event_pattern=pattern)
        rule.add_target(_LogGroupTarget(self.evidence_log_group))
        acknowledge(
            rule,
            {
                "Serverless-EventBusDLQ": "The target only keeps a copy of the matched CloudTrail event for "
                "triage. The alarm counts the rule's MatchedEvents, which EventBridge counts before any "
                "delivery, and CloudTrail keeps the event itself (event history, the trail), so a failed "
                "delivery loses no detection and no evidence."
            },
        )
        self.rules.append(rule)
        return rule

    def _alarm(
        self,
        observability: Observability,
        name: str,
        severity: Severity,
        rule: events.Rule,
        description: str,
    ) -> cloudwatch.Alarm:
        """One alarm per rule on its ``MatchedEvents`` (one matched event is enough), in the facade's
        naming, notifying its on-call topic when it fires and when it recovers."""
        alarm = cloudwatch.Alarm(
            self,
            f"{severity.value}{name}",
            alarm_name=f"{observability.name_prefix}-{severity.value}-Platform-{name}",
            alarm_description=f"{description}. Runbook: {observability.runbook_url(ALARM_RUNBOOKS[name])}",
            metric=cloudwatch.Metric(
                namespace="AWS/Events",
                metric_name="MatchedEvents",
                dimensions_map={"RuleName": rule.rule_name},
                statistic="Sum",
                period=cdk.Duration.minutes(5),
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        action = cw_actions.SnsAction(observability.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        return alarm

    def _check_scp_size(self) -> None:
        """Fail at synth if the SCP cannot fit AWS Organizations' limit, counting each deploy-time
        value (a role ARN, the partition, the account) at its largest plausible length."""
        rendered = _estimated_length(Stack.of(self).resolve(self.scp_document.to_json()))
        if rendered > SCP_MAX_CHARACTERS:
            raise self._fail(
                "exempt_principal_arns",
                f"the service control policy would take about {rendered} characters, over AWS "
                f"Organizations' limit of {SCP_MAX_CHARACTERS}: exempt fewer principals (or use wildcard "
                "role ARNs)",
            )

    def _fail(self, field: str, why: str) -> GatewayEnforcementError:
        return GatewayEnforcementError(f"GatewayEnforcement {self._id}: {field}: {why}")


def find_rag_features(scope: IConstruct | None) -> list[RagFeature]:
    """Every ``RagFeature`` under ``scope`` (none for ``None``): their knowledge-base roles embed text
    with a Bedrock model on the factory's behalf."""
    if scope is None:
        return []
    return [c for c in scope.node.find_all() if isinstance(c, RagFeature)]


def _estimated_length(value: Any) -> int:
    """The compact JSON length of ``value``, each CloudFormation intrinsic (``Ref``, ``Fn::*``) counted
    as a quoted string of ``_TOKEN_ESTIMATE`` characters."""
    if isinstance(value, dict):
        if len(value) == 1 and all(k == "Ref" or k.startswith("Fn::") for k in value):
            return _TOKEN_ESTIMATE + 2
        return (
            2
            + sum(len(json.dumps(k)) + 1 + _estimated_length(v) for k, v in value.items())
            + max(len(value) - 1, 0)
        )
    if isinstance(value, list):
        return 2 + sum(_estimated_length(v) for v in value) + max(len(value) - 1, 0)
    return len(json.dumps(value))


def _invocation_pattern(user_identity: dict[str, Any]) -> events.EventPattern:
    return events.EventPattern(
        source=["aws.bedrock"],
        detail_type=["AWS API Call via CloudTrail"],
        detail={
            "eventSource": ["bedrock.amazonaws.com"],
            "eventName": list(DETECTED_EVENT_NAMES),
            "userIdentity": user_identity,
        },
    )


@jsii.implements(events.IRuleTarget)
class _LogGroupTarget:
    """A log group as a rule target, without ``aws_events_targets.CloudWatchLogGroup``'s custom resource
    (a Lambda function that writes the log resource policy): the construct declares the policy itself."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._log_group = log_group

    def bind(self, rule: events_refs.IRuleRef, id: str | None = None) -> events.RuleTargetConfig:
        stack = Stack.of(self._log_group)
        arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=self._log_group.log_group_name,
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        return events.RuleTargetConfig(arn=arn)
