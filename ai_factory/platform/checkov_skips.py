"""Checkov skips written from cdk-nag acknowledgements, so the two scanners agree on every decision.

checkov (``make test`` runs it over ``cdk.out``) knows nothing of cdk-nag: a finding the factory has
acknowledged in cdk-nag, with a reason, would show up again as a checkov failure. This module writes the
acknowledgement into the resource's template metadata in the form checkov reads::

    "Metadata": {"checkov": {"skip": [{"id": "CKV_AWS_116", "comment": "<the cdk-nag reason>"}]}}

``EQUIVALENTS`` maps each checkov check to the cdk-nag rules that test the same thing on the same resource
type; a resource gets the skip only when one of those rules is acknowledged on it (or on a construct
above it), and the comment is that acknowledgement's reason, word for word. Nothing is skipped by
default: a checkov finding without a matching acknowledgement still fails the check.

``CHECKOV_ONLY`` holds the few checkov checks that no cdk-nag rule mirrors, each a decision with its
reason, written only on resources in the state the reason describes (a queue with SSE-SQS; a function
without its own environment key, whose variables the template checks prove hold no secret).

``add_checkov_skips(app)`` is called by ``ai_factory.platform.nag.apply_nag_packs``: every app that runs
the nag packs gets the skips.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import jsii
from constructs import IConstruct


@dataclass(frozen=True)
class Equivalent:
    """checkov check ``check`` on ``resource_type`` tests what the cdk-nag ``rules`` test.

    ``rules`` are in order of preference: the first one acknowledged gives the reason.
    """

    check: str
    resource_type: str
    rules: tuple[str, ...]


EQUIVALENTS: tuple[Equivalent, ...] = (
    Equivalent("CKV_AWS_115", "AWS::Lambda::Function", ("NIST.800.53.R5-LambdaConcurrency",)),
    Equivalent("CKV_AWS_116", "AWS::Lambda::Function", ("NIST.800.53.R5-LambdaDLQ", "Serverless-LambdaDLQ")),
    Equivalent("CKV_AWS_117", "AWS::Lambda::Function", ("NIST.800.53.R5-LambdaInsideVPC",)),
    Equivalent("CKV_AWS_120", "AWS::ApiGateway::Stage", ("NIST.800.53.R5-APIGWCacheEnabledAndEncrypted",)),
    Equivalent("CKV_AWS_73", "AWS::ApiGateway::Stage", ("Serverless-APIGWXrayEnabled",)),
    Equivalent("CKV_AWS_76", "AWS::ApiGateway::Stage", ("AwsSolutions-APIG1",)),
    Equivalent("CKV_AWS_59", "AWS::ApiGateway::Method", ("AwsSolutions-APIG4", "AwsSolutions-COG4")),
    Equivalent("CKV_AWS_18", "AWS::S3::Bucket", ("AwsSolutions-S1", "NIST.800.53.R5-S3BucketLoggingEnabled")),
    Equivalent("CKV_AWS_21", "AWS::S3::Bucket", ("NIST.800.53.R5-S3BucketVersioningEnabled",)),
    Equivalent(
        "CKV_AWS_28", "AWS::DynamoDB::Table", ("NIST.800.53.R5-DynamoDBPITREnabled", "AwsSolutions-DDB3")
    ),
    Equivalent("CKV_AWS_158", "AWS::Logs::LogGroup", ("NIST.800.53.R5-CloudWatchLogGroupEncrypted",)),
    Equivalent("CKV_AWS_68", "AWS::CloudFront::Distribution", ("AwsSolutions-CFR2",)),
    Equivalent("CKV_AWS_86", "AWS::CloudFront::Distribution", ("AwsSolutions-CFR3",)),
    Equivalent("CKV_AWS_174", "AWS::CloudFront::Distribution", ("AwsSolutions-CFR4",)),
    Equivalent("CKV_AWS_149", "AWS::SecretsManager::Secret", ("NIST.800.53.R5-SecretsManagerUsingKMSKey",)),
    Equivalent("CKV_AWS_26", "AWS::SNS::Topic", ("NIST.800.53.R5-SNSEncryptedKMS",)),
    Equivalent("CKV_AWS_7", "AWS::KMS::Key", ("AwsSolutions-KMS5",)),
    # A policy with Allow * on * (a permissions boundary's ceiling) fails each of these IAM checks.
    *(
        Equivalent(check, "AWS::IAM::ManagedPolicy", ("NIST.800.53.R5-IAMPolicyNoStatementsWithAdminAccess",))
        for check in ("CKV_AWS_107", "CKV_AWS_108", "CKV_AWS_109", "CKV_AWS_110", "CKV_AWS_111")
    ),
)


# ------------------------------------------------------------------ checks no cdk-nag rule mirrors

# A variable whose name says it holds a secret (not a reference to one: ..._ARN, ..._NAME).
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE_KEY|API_KEY", re.IGNORECASE)
_REFERENCE_SUFFIX = re.compile(r"_(ARN|NAME|ID|URI|URL)$", re.IGNORECASE)

LAMBDA_ENVIRONMENT_REASON = (
    "The environment holds only resource identifiers (table, bucket and queue names, ARNs, URLs, metric "
    "namespaces), no secret: secrets are read at run time from Secrets Manager by ARN. Lambda encrypts "
    "every environment at rest with an AWS managed key; a customer managed key would add a key-policy "
    "grant per function without protecting anything confidential."
)
SQS_MANAGED_SSE_REASON = (
    "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled: true, keys owned and rotated by SQS); checkov "
    "CKV_AWS_27 only recognises KmsMasterKeyId. Who may read the queue is decided by its queue policy "
    "and the consumers' IAM grants; a customer managed key would add per-request KMS calls and a "
    "key-policy grant for each producer without narrowing that."
)

# CDK's own deploy-time handler that writes S3 bucket notification settings (one per stack that uses
# bucket notifications). CDK renders it as a plain ``CfnResource``, which cdk-nag's Lambda rules do not
# inspect, so it has no acknowledgement to mirror.
BUCKET_NOTIFICATIONS_HANDLER_REASONS = {
    "CKV_AWS_115": (
        "CDK's built-in bucket-notifications handler runs only during deployments, once per change of a "
        "bucket's notification settings: CloudFormation bounds its invocations. Reserved concurrency would "
        "carve capacity out of the account's shared pool."
    ),
    "CKV_AWS_116": (
        "CDK's built-in bucket-notifications handler is invoked synchronously by CloudFormation (a custom "
        "resource); a failure fails and rolls back the stack operation. A dead-letter queue only receives "
        "failed asynchronous invocations, so it would never see a message."
    ),
    "CKV_AWS_117": (
        "CDK's built-in bucket-notifications handler calls only the S3 API (TLS, signed with its role) and "
        "accepts no network connections; a VPC would add NAT gateways or endpoints without removing an "
        "exposure."
    ),
}


def secret_variable_names(variables: Mapping[str, Any]) -> list[str]:
    """Names in a Lambda environment that say they hold a secret rather than a reference to one.

    ``LAMBDA_ENVIRONMENT_REASON`` holds only while this is empty for every function it is written on;
    the template checks (``tests/infra/test_template_checks.py``) assert that on the synthesized app,
    because the L2 ``Function`` renders its environment lazily, after aspects have run.
    """
    return sorted(n for n in variables if _SECRET_NAME.search(n) and not _REFERENCE_SUFFIX.search(n))


def _no_environment_key(resource: cdk.CfnResource) -> bool:
    return getattr(resource, "kms_key_arn", None) is None


def _is_bucket_notifications_handler(resource: cdk.CfnResource) -> bool:
    return type(resource) is cdk.CfnResource and any(
        scope.node.id.startswith("BucketNotificationsHandler") for scope in resource.node.scopes
    )


def _sqs_managed_sse(resource: cdk.CfnResource) -> bool:
    return (
        getattr(resource, "sqs_managed_sse_enabled", None) is True
        and getattr(resource, "kms_master_key_id", None) is None
    )


@dataclass(frozen=True)
class CheckovOnly:
    """A checkov check without a cdk-nag counterpart, skipped where ``applies(resource)`` holds."""

    check: str
    resource_type: str
    applies: Callable[[cdk.CfnResource], bool]
    reason: str


CHECKOV_ONLY: tuple[CheckovOnly, ...] = (
    CheckovOnly("CKV_AWS_173", "AWS::Lambda::Function", _no_environment_key, LAMBDA_ENVIRONMENT_REASON),
    CheckovOnly("CKV_AWS_27", "AWS::SQS::Queue", _sqs_managed_sse, SQS_MANAGED_SSE_REASON),
    *(
        CheckovOnly(check, "AWS::Lambda::Function", _is_bucket_notifications_handler, reason)
        for check, reason in BUCKET_NOTIFICATIONS_HANDLER_REASONS.items()
    ),
)


# ------------------------------------------------------------------------------------------- public


def add_checkov_skips(app: cdk.App) -> None:
    """Write checkov skips on every resource of ``app`` (now, and for constructs added until synth).

    Called by ``apply_nag_packs`` after its own acknowledgements; the aspect runs after the default
    aspects so acknowledgements that other aspects add at synth are seen too.
    """
    aspect = _CheckovSkips()
    for construct in app.node.find_all():
        aspect.visit(construct)
    cdk.Aspects.of(app).add(aspect, priority=cdk.AspectPriority.READONLY)


def checkov_skips(resource: cdk.CfnResource) -> dict[str, str]:
    """``checkov id -> comment`` for ``resource``: from its cdk-nag acknowledgements and ``CHECKOV_ONLY``."""
    acks = acknowledged_rules(resource)
    skips: dict[str, str] = {}
    for equivalent in EQUIVALENTS:
        if equivalent.resource_type != resource.cfn_resource_type:
            continue
        reason = next((acks[rule] for rule in equivalent.rules if rule in acks), None)
        if reason is not None:
            skips[equivalent.check] = reason
    for only in CHECKOV_ONLY:
        if only.resource_type == resource.cfn_resource_type and only.applies(resource):
            skips[only.check] = only.reason
    return skips


def acknowledged_rules(construct: IConstruct) -> dict[str, str]:
    """``rule id -> reason`` acknowledged on ``construct`` or any construct above it (nearest wins).

    A granular acknowledgement (``AwsSolutions-IAM5[Resource::*]``) counts for its rule.
    """
    key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    found: dict[str, str] = {}
    for scope in reversed(construct.node.scopes):  # nearest first
        for entry in scope.node.metadata:
            if entry.type != key or not isinstance(entry.data, Mapping):
                continue
            for rule, reason in entry.data.items():
                rule_id = str(rule).split("::", 1)[1] if "::" in str(rule) else str(rule)
                found.setdefault(rule_id.split("[", 1)[0], str(reason))
    return found


# ---------------------------------------------------------------------------------------------- private


@jsii.implements(cdk.IAspect)
class _CheckovSkips:
    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, cdk.CfnResource):
            return
        skips = checkov_skips(node)
        if not skips:
            return
        existing = node.get_metadata("checkov") or {}
        merged = {s["id"]: s["comment"] for s in existing.get("skip", [])}
        merged.update({check: reason for check, reason in skips.items() if check not in merged})
        skip_list = [{"id": check, "comment": merged[check]} for check in sorted(merged)]
        node.add_metadata("checkov", {**existing, "skip": skip_list})
