"""The cdk-nag rule packs every AI Factory app runs at synth time, and the acknowledgements they share.

cdk-nag 3 is a CDK validation plugin: findings fail ``app.synth()`` (and ``cdk synth``) unless they are
fixed or acknowledged on the construct they concern with
``Validations.of(construct).acknowledge(cdk.Acknowledgment(id=..., reason=...))``. Three packs run:

* ``AwsSolutions`` (AWS Solutions security matrix),
* ``NIST.800.53.R5`` (NIST 800-53 rev 5 operational best practices),
* ``Serverless`` (serverless reliability and observability practices).

The helpers below acknowledge the findings that recur for the same reason in several constructs (a Lambda
that is invoked synchronously needs no dead-letter queue, ...), so the reason is written once and every
construct acknowledges on its own resource. ``acknowledgements(app)`` lists every acknowledgement in an
app; ``python -m tools.security_controls docs/security-controls.md`` rewrites that document's table from
the real app (and its pipeline variant).

Example::

    function = lambda_.Function(self, "Handler", ...)
    acknowledge_synchronous_invocation(function, caller="the CDK custom-resource framework",
                                       failures="errors fail the CloudFormation operation")
    acknowledge_outside_vpc(function)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aws_cdk as cdk
import jsii
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import custom_resources as cr
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks, ServerlessChecks
from constructs import IConstruct

from ai_factory.platform.checkov_skips import add_checkov_skips

PACKS = ("AwsSolutions", "NIST.800.53.R5", "Serverless")
"""Rule-ID prefixes of the packs ``apply_nag_packs`` registers (a finding's ID is ``<pack>-<rule>``)."""

INLINE_POLICY_REASON = (
    "CDK writes each role's least-privilege statements (from grants and explicit statements naming this "
    "construct's own resources) into a policy that belongs to that one role and is deleted with it. The "
    "policies are versioned, reviewed and rolled back with the code (each pull request's synth diff shows "
    "them); customer-managed policies exist for reuse across principals, which the factory avoids on "
    "purpose. Policy content is still checked by AwsSolutions-IAM4/IAM5 and the NIST admin/full-access rules."
)
OUTSIDE_VPC_REASON = (
    "The function calls only AWS service APIs (TLS, signed with its execution role) and accepts no network "
    "connections: it is invoked only through the Lambda API by the principals its resource policy names. "
    "A VPC would add NAT gateways or interface endpoints without removing an exposure; functions that "
    "reach private network resources are the ones that belong in a VPC."
)
XRAY_WILDCARD_REASON = (
    "Only X-Ray's xray:PutTraceSegments and xray:PutTelemetryRecords use Resource '*': these actions "
    "support no resource-level permissions (AWS requires '*'). Every other statement names its resource."
)

_NIST_INLINE = "NIST.800.53.R5-IAMNoInlinePolicy"


def apply_nag_packs(app: cdk.App) -> None:
    """Register the three rule packs on ``app`` and the factory-wide inline-policy decision.

    Call once per app, after every stack and stage exists and before ``app.synth()``.
    """
    cdk.Validations.of(app).add_plugins(
        AwsSolutionsChecks(app), NIST80053R5Checks(app), ServerlessChecks(app)
    )
    aspect = _AcknowledgeInlinePolicies()
    # The pipeline's stages were synthesized when they were added (their aspects have run) and aspects
    # do not cross stage boundaries: what exists now is visited directly, the aspect catches the rest.
    for construct in app.node.find_all():
        aspect.visit(construct)
    cdk.Aspects.of(app).add(aspect)
    add_checkov_skips(
        app
    )  # the same decisions, in the form checkov reads (ai_factory/platform/checkov_skips.py)


def acknowledge(construct: IConstruct, rules: Mapping[str, str]) -> None:
    """Acknowledge each ``rule id -> reason`` on ``construct`` (and everything under it)."""
    for rule, reason in rules.items():
        cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def acknowledge_synchronous_invocation(function: lambda_.IFunction, *, caller: str, failures: str) -> None:
    """A function only ever invoked synchronously needs no dead-letter queue (NIST and Serverless LambdaDLQ).

    :param caller: who invokes it, e.g. "API Gateway (Lambda proxy integration)".
    :param failures: where a failed invocation goes instead, e.g. "the caller gets a 5xx response".
    """
    reason = (
        f"Invoked synchronously by {caller}. A Lambda dead-letter queue only receives failed asynchronous "
        f"invocations, so it would never see a message; instead {failures}."
    )
    acknowledge(_resource(function), {"NIST.800.53.R5-LambdaDLQ": reason, "Serverless-LambdaDLQ": reason})


def acknowledge_outside_vpc(function: lambda_.IFunction) -> None:
    """The function needs no VPC (NIST LambdaInsideVPC): see ``OUTSIDE_VPC_REASON``."""
    acknowledge(_resource(function), {"NIST.800.53.R5-LambdaInsideVPC": OUTSIDE_VPC_REASON})


def acknowledge_unreserved_concurrency(function: lambda_.IFunction, *, bounded_by: str) -> None:
    """No reserved concurrency (NIST LambdaConcurrency), with what bounds the function's invocations.

    :param bounded_by: e.g. "the API stage's throttling and each key's rate limit".
    """
    reason = (
        f"Invocations are bounded by {bounded_by}. Reserved concurrency would carve capacity out of the "
        "account's shared pool, and a deployment that reserves it fails in accounts whose concurrency quota "
        "is low (new accounts start with 10)."
    )
    acknowledge(_resource(function), {"NIST.800.53.R5-LambdaConcurrency": reason})


def acknowledge_custom_resource_handler(function: lambda_.IFunction, *, what: str) -> None:
    """The user handler behind a CDK ``Provider``: synchronous, deployment-time only, no VPC, untraced.

    :param what: what the handler does, e.g. "issues and revokes the feature's API key".
    """
    acknowledge_synchronous_invocation(
        function,
        caller="the CDK custom-resource framework",
        failures="the framework reports the error to CloudFormation, which fails and rolls back the stack "
        "operation",
    )
    acknowledge_unreserved_concurrency(
        function, bounded_by="CloudFormation: it runs only during deployments, once per resource change"
    )
    acknowledge_outside_vpc(function)
    acknowledge(
        _resource(function),
        {
            "Serverless-LambdaTracing": (
                f"A deployment-time custom-resource handler ({what}), run once per resource change, "
                "with every call in its JSON log group and in CloudFormation's stack events. Active "
                "tracing would add a Resource '*' X-Ray grant to its role for no operational benefit."
            )
        },
    )


def harden_provider(provider: cr.Provider) -> None:
    """The CDK ``Provider``'s framework function: explicit memory (fixed), the rest acknowledged.

    CloudFormation invokes the framework function and waits for its answer; it relays the event to the
    handler (our code) and the handler's answer back.
    """
    framework = provider.node.find_child("framework-onEvent")
    assert isinstance(framework, lambda_.Function)
    cfn = framework.node.default_child
    assert isinstance(cfn, lambda_.CfnFunction)
    cfn.memory_size = 128  # Lambda's default, now explicit (Serverless-LambdaDefaultMemorySize)
    dlq_reason = (
        "CloudFormation invokes the CDK custom-resource framework and waits for its response; a failure is "
        "reported to CloudFormation (or times the operation out), which fails and rolls back the stack "
        "operation. A dead-letter message (a CloudFormation event whose response URL has expired) could "
        "not be acted upon."
    )
    acknowledge(
        cfn,
        {
            "NIST.800.53.R5-LambdaDLQ": dlq_reason,
            "Serverless-LambdaDLQ": dlq_reason,
            "Serverless-LambdaTracing": (
                "CDK's generic custom-resource framework only relays CloudFormation events to the handler "
                "and back; each call is in its JSON log group and in the stack events. Active tracing would "
                "add a Resource '*' X-Ray grant to its role for no operational benefit."
            ),
        },
    )
    acknowledge_unreserved_concurrency(
        framework, bounded_by="CloudFormation: it runs only during deployments, once per resource change"
    )
    acknowledge_outside_vpc(framework)


@dataclass(frozen=True)
class Acknowledgement:
    """One acknowledged rule on one construct (``path`` is the construct path)."""

    rule: str
    path: str
    reason: str
    # How the generated document shows it: in a team stack, the team and the team's own construct IDs
    # are replaced by placeholders, so every feature of one construct type gives one row, not one each.
    shown_rule: str = ""
    shown_path: str = ""


def acknowledgements(root: IConstruct, *, nested_stages: bool = True) -> list[Acknowledgement]:
    """Every acknowledgement made on ``root`` or under it, in construct-tree order.

    Call after ``app.synth()``: the inline-policy acknowledgements are added by an aspect at synth.
    ``nested_stages=False`` leaves out constructs inside nested stages (the pipeline's copies of the
    app's stacks, which carry the same acknowledgements).
    """
    key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    found: list[Acknowledgement] = []
    root_stage = _stage_path(root)
    for construct in root.node.find_all():
        if not nested_stages and _stage_path(construct) != root_stage:
            continue
        for entry in construct.node.metadata:
            if entry.type != key or not isinstance(entry.data, Mapping):
                continue
            for rule, reason in entry.data.items():
                rule_id = str(rule).split("::", 1)[1] if "::" in str(rule) else str(rule)
                shown_rule, shown_path = _per_construct_type(construct, rule_id)
                found.append(
                    Acknowledgement(rule_id, construct.node.path, str(reason), shown_rule, shown_path)
                )
    return found


def markdown_table(acks: Iterable[Acknowledgement]) -> str:
    """A Markdown table (rule, construct, reason), sorted by rule then construct path; one row per
    construct type in team stacks (``AiFactoryTeam<team>/<AiFeature>/...``), so adding a team or a
    feature does not change it."""
    lines = ["| rule | construct | reason |", "| --- | --- | --- |"]
    rows = {(a.shown_rule or a.rule, a.shown_path or a.path, a.reason) for a in acks}
    for rule, path, reason in sorted(rows):
        cells = (rule, f"`{path}`", reason)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


TABLE_START = "<!-- nag-acknowledgements:start -->"
TABLE_END = "<!-- nag-acknowledgements:end -->"


def render_document_table(document: str, acks: Iterable[Acknowledgement]) -> str:
    """``document`` with the text between ``TABLE_START`` and ``TABLE_END`` replaced by the table."""
    start, end = document.index(TABLE_START) + len(TABLE_START), document.index(TABLE_END)
    return document[:start] + "\n" + markdown_table(acks) + document[end:]


# ---------------------------------------------------------------------------------------------- private


@jsii.implements(cdk.IAspect)
class _AcknowledgeInlinePolicies:
    """Acknowledge NIST IAMNoInlinePolicy on each role policy (``AWS::IAM::Policy`` or a role's inline
    policies) — one factory-wide decision (``INLINE_POLICY_REASON``), recorded on each resource."""

    def __init__(self) -> None:
        self._done: set[str] = set()

    def visit(self, node: IConstruct) -> None:
        if node.node.path in self._done:
            return
        if isinstance(node, iam.CfnPolicy) or (isinstance(node, iam.CfnRole) and node.policies is not None):
            acknowledge(node, {_NIST_INLINE: INLINE_POLICY_REASON})
            self._done.add(node.node.path)


def _resource(function: lambda_.IFunction) -> IConstruct:
    """The ``AWS::Lambda::Function`` resource of ``function`` (the narrowest construct to acknowledge on)."""
    return function.node.default_child or function


def _per_construct_type(construct: IConstruct, rule: str) -> tuple[str, str]:
    """``(rule, path)`` with a team stack's name and its direct children's IDs (chosen by the team)
    replaced by ``<team>`` and ``<ClassName>``; unchanged outside team stacks (stacks with a ``team``)."""
    stack = cdk.Stack.of(construct)
    if not isinstance(getattr(stack, "team", None), str):
        return rule, construct.node.path
    scopes = construct.node.scopes
    index = next(i for i, scope in enumerate(scopes) if scope is stack or scope.node.path == stack.node.path)
    parts = ["AiFactoryTeam<team>"]
    if len(scopes) > index + 1:
        child = scopes[index + 1]
        placeholder = f"<{type(child).__name__}>"
        parts.append(placeholder)
        parts.extend(s.node.id for s in scopes[index + 2 :])
        # Resource tokens in a rule name the logical ID: "<InternalQaProvisionerBB8AF361.Arn>".
        rule = re.sub(rf"<{re.escape(child.node.id)}(\w*?)[0-9A-F]{{8}}\.", rf"<{placeholder}\1.", rule)
    return rule, "/".join([*stack.node.path.split("/")[:-1], *parts])


def _stage_path(construct: IConstruct) -> str | None:
    stage = construct if isinstance(construct, cdk.Stage) else cdk.Stage.of(construct)
    return stage.node.path if stage is not None else None


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
