"""The MLOps stack: SageMaker managed MLflow, its artifact store, its role and ``grant_access``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Match, Template

from ai_factory.constructs.mlflow_tracking import MlflowTracking
from ai_factory.platform.nag import apply_nag_packs
from stacks.mlops_stack import MlopsStack

os.environ.setdefault("CDK_VALIDATION", "false")
ENV = cdk.Environment(account="111122223333", region="us-east-1")


@pytest.fixture(scope="module")
def synthesized() -> tuple[MlopsStack, Template, iam.Role]:
    app = cdk.App(context={"ai-factory:mlflowVersion": "3.0"})
    stack = MlopsStack(app, "Mlops", env=ENV)
    ci = iam.Role(stack, "CiRole", assumed_by=iam.AccountRootPrincipal())
    stack.tracking.grant_access(ci)
    return stack, Template.from_stack(stack), ci


def _policy_statements(template: Template, role_logical_id_prefix: str) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    statements = []
    for policy in policies.values():
        roles = json.dumps(policy["Properties"].get("Roles", []))
        if role_logical_id_prefix in roles:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_tracking_server_props(synthesized: tuple[MlopsStack, Template, iam.Role]) -> None:
    _stack, template, _ = synthesized
    template.resource_count_is("AWS::SageMaker::MlflowTrackingServer", 1)
    template.has_resource_properties(
        "AWS::SageMaker::MlflowTrackingServer",
        {
            "TrackingServerName": "ai-factory",
            "TrackingServerSize": "Small",
            "MlflowVersion": "3.0",
            "AutomaticModelRegistration": True,
            "WeeklyMaintenanceWindowStart": "Sun:03:00",
            "RoleArn": {"Fn::GetAtt": [Match.string_like_regexp("ServerRole"), "Arn"]},
            "ArtifactStoreUri": {
                "Fn::Join": ["", ["s3://", {"Ref": Match.string_like_regexp("ArtifactBucket")}, "/mlflow"]]
            },
        },
    )


def test_outputs_name_the_server_arn_and_tracking_uri(
    synthesized: tuple[MlopsStack, Template, iam.Role],
) -> None:
    _, template, _ = synthesized
    outputs = template.find_outputs("*")
    arn = {"Fn::GetAtt": [Match.any_value(), "TrackingServerArn"]}
    for name in ("TrackingServerArn", "TrackingUri"):
        assert name in outputs
        template.has_output(name, {"Value": arn})


def test_artifact_bucket_is_kms_encrypted_versioned_logged_private_and_retained(
    synthesized: tuple[MlopsStack, Template, iam.Role],
) -> None:
    stack, template, _ = synthesized
    bucket = stack.resolve(stack.tracking.artifact_bucket.node.default_child.logical_id)  # type: ignore[union-attr]
    resource = template.to_json()["Resources"][bucket]
    props = resource["Properties"]
    assert resource["DeletionPolicy"] == "Retain"
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "KMSMasterKeyID" in rule["ServerSideEncryptionByDefault"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["LoggingConfiguration"]["LogFilePrefix"] == "artifact-bucket/"
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    # enforceSSL: the bucket policy denies non-TLS requests.
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            },
        },
    )


def test_server_role_trusts_sagemaker_and_touches_only_its_bucket_and_key(
    synthesized: tuple[MlopsStack, Template, iam.Role],
) -> None:
    _stack, template, _ = synthesized
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [Match.object_like({"Principal": {"Service": "sagemaker.amazonaws.com"}})]
            }
        },
    )
    statements = _policy_statements(template, "ServerRole")
    by_sid = {s["Sid"]: s for s in statements}
    assert set(by_sid) == {
        "TrackingServerReadWriteArtifacts",
        "TrackingServerListArtifacts",
        "TrackingServerUseArtifactKeyThroughS3",
        "AutomaticModelRegistration",
    }
    text = json.dumps(statements)
    assert '"Resource": "*"' not in text and "s3:*" not in text and "kms:*" not in text
    assert by_sid["TrackingServerUseArtifactKeyThroughS3"]["Condition"] == {
        "StringEquals": {
            "kms:ViaService": {"Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
        }
    }


def test_grant_access_is_scoped_to_the_server_arn(synthesized: tuple[MlopsStack, Template, iam.Role]) -> None:
    _, template, _ = synthesized
    statements = _policy_statements(template, "CiRole")
    actions = {
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert {
        "sagemaker-mlflow:*",
        "sagemaker:CreatePresignedMlflowTrackingServerUrl",
        "s3:PutObject",
    } <= actions
    sagemaker_statements = [s for s in statements if "sagemaker" in json.dumps(s["Action"])]
    assert len(sagemaker_statements) == 2
    for statement in sagemaker_statements:
        resource = statement["Resource"]
        assert resource["Fn::GetAtt"][1] == "TrackingServerArn", statement
    assert '"Resource": "*"' not in json.dumps(statements)


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"tracking_server_name": "bad_name"}, "tracking_server_name"),
        ({"tracking_server_size": "Huge"}, "tracking_server_size: must be one of Small, Medium, Large"),
        ({"weekly_maintenance_window_start": "Sunday 3am"}, "weekly_maintenance_window_start"),
        ({"access_log_retention": 0}, "access_log_retention"),
    ],
)
def test_invalid_props_name_the_construct_and_field(props: dict[str, Any], message: str) -> None:
    stack = cdk.Stack(cdk.App(), "S", env=ENV)
    with pytest.raises(ValueError, match=f"MlflowTracking S/Mlflow: {message}"):
        MlflowTracking(stack, "Mlflow", **props)


@pytest.mark.synth
def test_mlops_stack_passes_the_nag_packs(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path))
    MlopsStack(app, "AiFactoryMlops", env=ENV)
    apply_nag_packs(app)
    app.synth()  # raises ValidationFailed on any unacknowledged finding
