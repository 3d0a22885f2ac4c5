"""AuditTrail: Object Lock bucket, Firehose delivery, subscription filter and least-privilege roles."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Match, Template

from ai_factory.constructs.audit_trail import AUDIT_FILTER_PATTERN, AuditTrail

ENV = cdk.Environment(account="111122223333", region="us-east-1")


def build(**props: Any) -> tuple[cdk.Stack, AuditTrail, Template]:
    app = cdk.App()
    stack = cdk.Stack(app, "TestAudit", env=ENV)
    log_group = logs.LogGroup(stack, "GatewayLogs", retention=logs.RetentionDays.ONE_YEAR)
    trail = AuditTrail(stack, "AuditTrail", log_group=log_group, **props)
    auditor = iam.Role(stack, "Auditor", assumed_by=iam.AccountRootPrincipal())
    trail.grant_read(auditor)
    return stack, trail, Template.from_stack(stack)


@pytest.fixture(scope="module")
def default() -> tuple[cdk.Stack, AuditTrail, Template]:
    return build()


def _statements(template: Template, role_logical_id: str) -> list[dict[str, Any]]:
    policies = template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role_logical_id}]}}
    )
    (policy,) = policies.values()
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _logical_id(stack: cdk.Stack, construct: Any) -> str:
    return str(stack.resolve(stack.get_logical_id(construct.node.default_child)))


def test_bucket_has_object_lock_with_default_governance_retention_versioning_and_kms(default: Any) -> None:
    stack, trail, template = default
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "ObjectLockEnabled": True,
            "ObjectLockConfiguration": {
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 365}},
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {
                        "BucketKeyEnabled": True,
                        "ServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": stack.resolve(trail.key.key_arn),
                        },
                    }
                ]
            },
            "LoggingConfiguration": {"LogFilePrefix": "audit-bucket/"},
            "PublicAccessBlockConfiguration": Match.object_like({"BlockPublicPolicy": True}),
        },
    )
    template.has_resource(
        "AWS::S3::Bucket",
        {"DeletionPolicy": "Retain", "Properties": Match.object_like({"ObjectLockEnabled": True})},
    )
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_governance_mode_denies_the_bypass_and_every_delete_and_foreign_writes(default: Any) -> None:
    stack, trail, template = default
    role_arn = stack.resolve(trail.delivery_role.role_arn)
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": stack.resolve(trail.bucket.bucket_name),
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Sid": "DenyGovernanceBypass",
                                "Effect": "Deny",
                                "Action": "s3:BypassGovernanceRetention",
                            }
                        ),
                        Match.object_like(
                            {
                                "Sid": "DenyDeletingAuditObjects",
                                "Effect": "Deny",
                                "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
                            }
                        ),
                        Match.object_like(
                            {
                                "Sid": "OnlyTheDeliveryRoleWrites",
                                "Effect": "Deny",
                                "Action": "s3:PutObject",
                                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": role_arn}},
                            }
                        ),
                    ]
                )
            },
        },
    )


def test_compliance_mode_and_retention_are_configurable() -> None:
    _, _, template = build(object_lock_mode="COMPLIANCE", retention_days=180, expiration_days=400)
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "ObjectLockConfiguration": {"Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 180}}},
            "LifecycleConfiguration": {
                "Rules": Match.array_with([Match.object_like({"ExpirationInDays": 400})])
            },
        },
    )
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert "DenyGovernanceBypass" not in json.dumps(policies)  # nothing to bypass in COMPLIANCE mode


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"object_lock_mode": "LEGAL_HOLD"}, "object_lock_mode"),
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": True}, "retention_days"),
        ({"retention_days": 200, "expiration_days": 100}, "expiration_days"),
        ({"buffering_interval": cdk.Duration.seconds(901)}, "buffering_interval"),
        ({"buffering_size_mib": 0}, "buffering_size_mib"),
    ],
)
def test_invalid_props_name_the_construct_and_field(props: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"AuditTrail 'TestAudit/AuditTrail': {field}:"):
        build(**props)


def test_subscription_filter_sends_only_audit_lines_to_firehose(default: Any) -> None:
    stack, trail, template = default
    template.has_resource_properties(
        "AWS::Logs::SubscriptionFilter",
        {
            "FilterPattern": '{ $.message = "audit" }',
            "LogGroupName": {"Ref": Match.string_like_regexp("GatewayLogs")},
            "DestinationArn": stack.resolve(trail.delivery_stream.attr_arn),
            "RoleArn": stack.resolve(trail.subscription_role.role_arn),
        },
    )


def test_the_filter_matches_what_the_gateway_handler_logs() -> None:
    """The contract between the runtime and the filter: the handler's audit line is JSON whose
    ``message`` is ``audit`` (the field and value the subscription filter pattern tests)."""
    from aif_gateway import handler
    from aif_gateway.records import UsageRecord

    record = UsageRecord(
        request_id="req-1",
        timestamp=datetime(2026, 11, 25, tzinfo=UTC),
        team="support",
        feature="summarizer",
        key_id="k1",
        route="chat-fast",
        status=200,
    )
    out = io.StringIO()
    stream_handler: Any = handler.logger.registered_handler  # Powertools writes JSON lines to stdout
    saved = stream_handler.stream
    stream_handler.stream = out
    try:
        handler.audit_log(record)
    finally:
        stream_handler.stream = saved
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["message"] == "audit"
    assert line["audit"]["request_id"] == "req-1"
    assert AUDIT_FILTER_PATTERN.log_pattern_string == '{ $.message = "audit" }'


def test_firehose_is_encrypted_and_writes_by_date_with_an_error_prefix(default: Any) -> None:
    stack, trail, template = default
    key_arn = stack.resolve(trail.key.key_arn)
    template.has_resource_properties(
        "AWS::KinesisFirehose::DeliveryStream",
        {
            "DeliveryStreamType": "DirectPut",
            "DeliveryStreamEncryptionConfigurationInput": {
                "KeyType": "CUSTOMER_MANAGED_CMK",
                "KeyARN": key_arn,
            },
            "ExtendedS3DestinationConfiguration": Match.object_like(
                {
                    "BucketARN": stack.resolve(trail.bucket.bucket_arn),
                    "Prefix": "audit/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/",
                    "ErrorOutputPrefix": Match.string_like_regexp(
                        r"^errors/!\{firehose:error-output-type\}/year="
                    ),
                    "BufferingHints": {"IntervalInSeconds": 300, "SizeInMBs": 5},
                    "CompressionFormat": "GZIP",
                    "EncryptionConfiguration": {"KMSEncryptionConfig": {"AWSKMSKeyARN": key_arn}},
                    "ProcessingConfiguration": {
                        "Enabled": True,
                        "Processors": [
                            Match.object_like({"Type": "Decompression"}),
                            Match.object_like({"Type": "CloudWatchLogProcessing"}),
                        ],
                    },
                    "CloudWatchLoggingOptions": Match.object_like({"Enabled": True}),
                }
            ),
        },
    )


def test_subscription_role_may_only_put_records_into_the_stream(default: Any) -> None:
    stack, trail, template = default
    role_id = _logical_id(stack, trail.subscription_role)
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Principal": {"Service": "logs.amazonaws.com"},
                            "Condition": {"StringLike": {"aws:SourceArn": Match.any_value()}},
                        }
                    )
                ]
            }
        },
    )
    (statement,) = _statements(template, role_id)
    assert statement["Action"] == ["firehose:PutRecord", "firehose:PutRecordBatch"]
    assert statement["Resource"] == stack.resolve(trail.delivery_stream.attr_arn)


def test_delivery_role_is_limited_to_its_prefixes_the_key_via_s3_and_its_error_log(default: Any) -> None:
    stack, trail, template = default
    role_id = _logical_id(stack, trail.delivery_role)
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Principal": {"Service": "firehose.amazonaws.com"},
                            "Condition": {"StringEquals": {"sts:ExternalId": {"Ref": "AWS::AccountId"}}},
                        }
                    )
                ]
            }
        },
    )
    statements = {s["Sid"]: s for s in _statements(template, role_id)}
    assert set(statements) == {
        "WriteAuditObjects",
        "FindTheAuditBucket",
        "EncryptAuditObjectsThroughS3",
        "LogDeliveryErrors",
    }
    text = json.dumps(statements)
    assert '"Resource": "*"' not in text and "s3:*" not in text and "kms:*" not in text
    assert "Delete" not in text and "PutObjectRetention" not in text and "Bypass" not in text
    bucket_id = _logical_id(stack, trail.bucket)
    objects = statements["WriteAuditObjects"]["Resource"]
    assert [json.dumps(r) for r in objects] == [
        json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, f"/{p}/*"]]})
        for p in ("audit", "errors")
    ]
    kms = statements["EncryptAuditObjectsThroughS3"]
    assert kms["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
    assert kms["Condition"]["StringEquals"]["kms:ViaService"] == {
        "Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]
    }
    assert "kms:EncryptionContext:aws:s3:arn" in kms["Condition"]["StringLike"]
    assert statements["LogDeliveryErrors"]["Action"] == "logs:PutLogEvents"


def test_grant_read_gives_auditors_read_only_access(default: Any) -> None:
    _, _, template = default
    auditor_id = next(
        iter(
            template.find_resources(
                "AWS::IAM::Role",
                {
                    "Properties": {
                        "AssumeRolePolicyDocument": {
                            "Statement": [Match.object_like({"Principal": {"AWS": Match.any_value()}})]
                        }
                    }
                },
            )
        )
    )
    actions = [
        a
        for s in _statements(template, auditor_id)
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert "s3:GetObject" in actions and "kms:Decrypt" in actions
    assert not any(
        a.startswith(("s3:Put", "s3:Delete", "s3:Bypass", "kms:Encrypt", "kms:GenerateDataKey"))
        for a in actions
    )


def test_gateway_stack_subscribes_the_gateway_functions_log_group() -> None:
    from stacks.gateway_stack import GatewayStack

    app = cdk.App()
    stack = GatewayStack(app, "TestGatewayStack", env=ENV, audit_trail_props={"retention_days": 200})
    template = Template.from_stack(stack)
    function_log_group = stack.gateway.function.log_group
    template.has_resource_properties(
        "AWS::Logs::SubscriptionFilter",
        {
            "LogGroupName": stack.resolve(function_log_group.log_group_name),
            "FilterPattern": '{ $.message = "audit" }',
        },
    )
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {"ObjectLockConfiguration": {"Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 200}}}},
    )
