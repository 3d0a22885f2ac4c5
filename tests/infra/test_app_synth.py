"""The real app, with the cdk-nag packs registered, synthesizes: no unacknowledged findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import build_app
from tests.infra.conftest import RealApp


@pytest.mark.synth
def test_real_app_synthesizes_with_nag_packs(real_app: RealApp) -> None:
    # The fixture's synth raises ValidationFailed on any unacknowledged cdk-nag finding.
    names = {stack.stack_name for stack in real_app.assembly.stacks}
    assert {"AiFactoryGateway", "AiFactoryTeamSupport", "AiFactoryTeamKnowledge"} <= names
    report = json.loads((real_app.outdir / "validation-report.json").read_text())
    # cdk-nag's plugin reports a summary; the annotations plugin (feature flag
    # annotationsInValidationReport) a conclusion.
    assert all(
        r.get("summary", {}).get("status", r.get("conclusion")) == "success" for r in report["pluginReports"]
    )


@pytest.mark.synth
def test_the_real_app_warns_only_about_its_deploy_settings(real_app: RealApp) -> None:
    """The shipped features synthesize without warnings; the one warning left is about the deployment
    (no on-call subscriber given: `-c ai-factory:oncallEmail=...`), which a real deploy must answer."""
    manifest = json.loads((real_app.outdir / "manifest.json").read_text())
    warnings = [
        entry["data"]
        for artifact in manifest["artifacts"].values()
        for entries in (artifact.get("metadata") or {}).values()
        for entry in entries
        if entry["type"] in ("aws:cdk:warning", "aws:cdk:error")
    ]
    assert all("notify nobody" in str(w) for w in warnings), warnings


@pytest.mark.synth
def test_nag_pack_is_registered_and_catches_findings(tmp_path: Path) -> None:
    """Guard against a silently disabled pack: an unacknowledged finding must fail synth."""
    import aws_cdk as cdk
    from aws_cdk import aws_sqs as sqs

    app = build_app(outdir=str(tmp_path))
    bad = cdk.Stack(app, "Bad")
    sqs.Queue(bad, "PlainQueue")  # no SSL enforcement, no DLQ: AwsSolutions-SQS3/SQS4
    with pytest.raises(Exception, match="AwsSolutions-SQS"):
        app.synth()


@pytest.mark.synth
@pytest.mark.parametrize("variant", ["private", "account_logging_and_waf"])
def test_gateway_options_pass_the_nag_packs(tmp_path: Path, variant: str) -> None:
    """The opt-in variants carry their own acknowledgements too."""
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2

    from ai_factory.catalog.model_catalog import ModelCatalog
    from ai_factory.constructs.gateway.llm_gateway import LlmGateway
    from ai_factory.platform.nag import apply_nag_packs

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Variant", env=cdk.Environment(account="111122223333", region="us-east-1"))
    props: dict[str, object]
    if variant == "private":
        # Isolated subnets only (a private API needs no internet path); flow logs to S3.
        vpc = ec2.Vpc(
            stack,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="Isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
            ],
            flow_logs={"All": ec2.FlowLogOptions()},
        )
        endpoint = vpc.add_interface_endpoint(
            "ExecuteApi", service=ec2.InterfaceVpcEndpointAwsService.APIGATEWAY
        )
        # The test VPC's endpoint security group allows the VPC CIDR (an intrinsic nag cannot evaluate).
        for rule in (
            "AwsSolutions-EC23",
            "NIST.800.53.R5-EC2RestrictedCommonPorts",
            "NIST.800.53.R5-EC2RestrictedSSH",
        ):
            cdk.Validations.of(endpoint).acknowledge(
                cdk.Acknowledgment(id=rule, reason="Test VPC: ingress is the VPC CIDR only.")
            )
        # Scaffolding, not the gateway's: the test checks the gateway's own findings in this variant.
        for rule in (
            "NIST.800.53.R5-VPCDefaultSecurityGroupClosed",
            "NIST.800.53.R5-CloudWatchLogGroupEncrypted",
        ):
            cdk.Validations.of(vpc).acknowledge(
                cdk.Acknowledgment(id=rule, reason="Throwaway test VPC; never deployed.")
            )
        props = {"endpoint_type": "private", "vpc_endpoint": endpoint}
    else:
        props = {
            "configure_account_logging_role": True,
            "web_acl_arn": "arn:aws:wafv2:us-east-1:111122223333:regional/webacl/gw/abc",
        }
    LlmGateway(stack, "Gateway", catalog=ModelCatalog.load(), **props)  # type: ignore[arg-type]
    apply_nag_packs(app)
    app.synth()


def manifest_dependencies(real_app: RealApp, stack: str) -> list[str]:
    manifest = json.loads((real_app.outdir / "manifest.json").read_text())
    return list(manifest["artifacts"][stack].get("dependencies", []))


@pytest.mark.synth
def test_the_shipped_sampled_feature_has_its_table_sampler_and_drift_alarms(real_app: RealApp) -> None:
    """features/support samples ticket-summarizer: its table is in the team stack, the one online
    evaluation (subscribed to the invocation log group in the same stack) and the alarms in observability."""
    from aws_cdk.assertions import Template

    from ai_factory.constructs.online_alarms import DRIFT_ALARM_NAMES, SCORER_ALARM_NAMES

    def template(name: str) -> Template:
        return Template.from_json(json.loads((real_app.outdir / f"{name}.template.json").read_text()))

    team = template("AiFactoryTeamSupport")
    team.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "request_id", "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "StreamSpecification": {"StreamViewType": "NEW_IMAGE"},
        },
    )
    assert not template("AiFactoryTeamKnowledge").find_resources(
        "AWS::DynamoDB::Table", {"Properties": {"TimeToLiveSpecification": {"AttributeName": "expires_at"}}}
    ), "internal-qa does not sample"

    observability = template("AiFactoryObservability")
    observability.resource_count_is("AWS::Logs::SubscriptionFilter", 1)
    (subscription,) = observability.find_resources("AWS::Logs::SubscriptionFilter").values()
    assert subscription["Properties"]["LogGroupName"]["Ref"].startswith("InvocationLogging")
    (sampler,) = observability.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "aif_online.handler.sample"}}
    ).values()
    settings = json.dumps(sampler["Properties"]["Environment"]["Variables"]["AIF_ONLINE_SAMPLING"])
    assert "support/ticket-summarizer" in settings and '\\"rate\\":0.02' in settings
    assert "internal-qa" not in settings
    # Only the shipped gateway's records (issue #18: another stage's gateway shares the log group): the
    # namespace the gateway function sends as aif_gateway is the sampler's and the filter's. The gateway
    # stack deploys first, so the gateway sends it before the sampler asks for it.
    gateway = template("AiFactoryGateway")
    namespaces = {
        f["Properties"]["Environment"]["Variables"]["AIF_EDGE_NAMESPACE"]
        for f in gateway.find_resources(
            "AWS::Lambda::Function", {"Properties": {"Handler": "aif_gateway/run.sh"}}
        ).values()
    }
    (namespace,) = namespaces
    assert f'\\"gateway\\":\\"{namespace}\\"' in settings
    assert subscription["Properties"]["FilterPattern"] == (
        '{ $.requestMetadata.aif_gateway = "' + namespace + '" }'
    )
    assert "AiFactoryGateway" in manifest_dependencies(real_app, "AiFactoryObservability")
    # The scorer reads the team stack's table stream through an import (CloudFormation deploys the team
    # stack first: the manifest's dependency).
    (mapping,) = observability.find_resources("AWS::Lambda::EventSourceMapping").values()
    assert "Fn::ImportValue" in mapping["Properties"]["EventSourceArn"]
    manifest = json.loads((real_app.outdir / "manifest.json").read_text())
    assert "AiFactoryTeamSupport" in manifest["artifacts"]["AiFactoryObservability"]["dependencies"]
    # Each scored sample becomes an MLflow trace on the MLOps stack's tracking server, beside the eval runs.
    (scorer,) = observability.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "aif_online.handler.lambda_score"}}
    ).values()
    variables = scorer["Properties"]["Environment"]["Variables"]
    assert "Fn::ImportValue" in variables["AIF_MLFLOW_TRACKING_URI"]
    assert "AiFactoryMlops" in json.dumps(variables["AIF_MLFLOW_TRACKING_URI"])
    assert variables["AIF_MLFLOW_EXPERIMENT"] == "ai-factory/evals"
    assert "AiFactoryMlops" in manifest["artifacts"]["AiFactoryObservability"]["dependencies"]

    names = {
        a["Properties"]["AlarmName"] for a in observability.find_resources("AWS::CloudWatch::Alarm").values()
    }
    prefix = "ai-factory-Warning-support-ticket-summarizer-"
    expected = (set(SCORER_ALARM_NAMES) | set(DRIFT_ALARM_NAMES)) - {"OnlinePiiLeak", "OnlineQualityDrop"}
    assert {prefix + n for n in expected} <= names
    assert "ai-factory-Critical-support-ticket-summarizer-OnlinePiiLeak" in names
    assert not any(n.endswith("-OnlineQualityDrop") for n in names), "the shipped app has no judge"
    assert not any("internal-qa-Output" in n for n in names)
