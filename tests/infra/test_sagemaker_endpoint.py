"""SageMakerEndpoint (model, KMS-encrypted endpoint config, endpoint, least-privilege role) and the
gateway's IAM for catalog endpoints (``provider: sagemaker``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Match, Template

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from ai_factory.constructs.sagemaker_endpoint import SageMakerEndpoint
from ai_factory.platform.nag import apply_nag_packs

os.environ.setdefault("CDK_VALIDATION", "false")
ENV = cdk.Environment(account="111122223333", region="us-east-1")
IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.17.2"
ARTIFACT = "s3://ai-factory-models/ticket-classifier/v3/model.tar.gz"


def endpoint_stack(app: cdk.App, **props: Any) -> tuple[cdk.Stack, SageMakerEndpoint]:
    stack = cdk.Stack(app, "Endpoint", env=ENV)
    endpoint = SageMakerEndpoint(
        stack,
        "TicketClassifier",
        endpoint_name="aif-ticket-classifier",
        image_uri=IMAGE,
        model_data_url=ARTIFACT,
        environment={"MLFLOW_DEPLOYMENT_FLAVOR_NAME": "python_function"},
        **props,
    )
    return stack, endpoint


@pytest.fixture(scope="module")
def template() -> Template:
    stack, endpoint = endpoint_stack(cdk.App())
    endpoint.grant_invoke(iam.Role(stack, "Caller", assumed_by=iam.AccountRootPrincipal()))
    return Template.from_stack(stack)


def test_model_endpoint_config_and_endpoint(template: Template) -> None:
    template.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "EnableNetworkIsolation": True,
            "PrimaryContainer": {
                "Image": IMAGE,
                "ModelDataUrl": ARTIFACT,
                "Environment": {"MLFLOW_DEPLOYMENT_FLAVOR_NAME": "python_function"},
            },
        },
    )
    template.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "KmsKeyId": {"Fn::GetAtt": [Match.string_like_regexp("Key"), "Arn"]},
            "ProductionVariants": [
                Match.object_like(
                    {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1, "VariantName": "AllTraffic"}
                )
            ],
        },
    )
    template.has_resource_properties("AWS::SageMaker::Endpoint", {"EndpointName": "aif-ticket-classifier"})
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_execution_role_reads_only_its_image_and_artifact(template: Template) -> None:
    policies = template.find_resources("AWS::IAM::Policy")
    (policy,) = [p for p in policies.values() if "ExecutionRole" in json.dumps(p["Properties"]["Roles"])]
    by_sid = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert by_sid["ReadModelArtifact"]["Resource"] == {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, ":s3:::ai-factory-models/ticket-classifier/v3/model.tar.gz"],
        ]
    }
    assert "repository/mlflow-pyfunc" in json.dumps(by_sid["PullModelImage"]["Resource"])
    assert by_sid["PublishEndpointMetrics"]["Condition"] == {
        "StringLike": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints*"}
    }
    assert set(by_sid) == {
        "PullModelImage",
        "EcrLogin",
        "ReadModelArtifact",
        "WriteEndpointLogs",
        "PublishEndpointMetrics",
    }


def test_grant_invoke_names_the_endpoint(template: Template) -> None:
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Action": "sagemaker:InvokeEndpoint",
                            "Resource": {"Ref": Match.string_like_regexp("Endpoint")},
                        }
                    )
                ]
            }
        },
    )


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"endpoint_name": "bad_name"}, "endpoint_name"),
        ({"image_uri": "docker.io/library/python:3"}, "image_uri: must be an ECR image URI"),
        ({"model_data_url": "https://example.com/model.tar.gz"}, "model_data_url"),
        ({"instance_type": "m5.large"}, "instance_type"),
        ({"initial_instance_count": 0}, "initial_instance_count"),
        ({"subnet_ids": ["subnet-1"]}, "subnet_ids: give subnet_ids and security_group_ids together"),
    ],
)
def test_invalid_props_name_the_construct_and_field(props: dict[str, Any], message: str) -> None:
    stack = cdk.Stack(cdk.App(), "S", env=ENV)
    base: dict[str, Any] = {"endpoint_name": "aif-x", "image_uri": IMAGE}
    with pytest.raises(ValueError, match=f"SageMakerEndpoint S/E: {message}"):
        SageMakerEndpoint(stack, "E", **{**base, **props})


@pytest.mark.synth
def test_endpoint_passes_the_nag_packs(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path))
    endpoint_stack(app)
    apply_nag_packs(app)
    app.synth()


CATALOG = {
    "models": [
        {
            "name": "ticket-classifier",
            "provider": "sagemaker",
            "modality": "chat",
            "endpoint_name": "AIF-Ticket-Classifier",
            "content_handler": "openai-chat",
            "context_window": 4096,
            "prices": {"input": 0.5, "output": 0.5},
            "status": "approved",
            "owner": "support-ml@example.com",
            "approved_by": "ai-review@example.com",
            "approved_on": "2026-11-25",
        },
        {"name": "echo", "provider": "echo", "modality": "chat", "prices": {}, "status": "approved"},
    ],
    "routes": [{"alias": "classify", "targets": ["ticket-classifier", "echo"]}],
}


def test_gateway_may_invoke_exactly_the_catalog_endpoints() -> None:
    stack = cdk.Stack(cdk.App(), "Gateway", env=ENV)
    LlmGateway(stack, "Gateway", catalog=ModelCatalog.from_dict(CATALOG))
    template = Template.from_stack(stack)
    statements = [
        s
        for p in template.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "sagemaker" in json.dumps(s["Action"])
    ]
    assert len(statements) == 1
    (statement,) = statements
    assert statement["Action"] == "sagemaker:InvokeEndpoint"
    assert statement["Resource"] == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":sagemaker:us-east-1:",
                {"Ref": "AWS::AccountId"},
                ":endpoint/aif-ticket-classifier",
            ],
        ]
    }
    # No Bedrock model is routed, so no Bedrock invoke statement either.
    assert "InvokeCatalogModels" not in json.dumps(template.find_resources("AWS::IAM::Policy"))
