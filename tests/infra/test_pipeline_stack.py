"""The delivery pipeline: context settings, stages with the eval gate, encryption, unprivileged builds."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from app import build_app
from features import TEAM_MODULES
from stacks.mlops_stack import MlopsStack
from stacks.pipeline_stack import CONTEXT_KEY, PipelineSettings, PipelineStack

os.environ.setdefault("CDK_VALIDATION", "false")
ENV = cdk.Environment(account="111122223333", region="us-east-1")
CONNECTION = "arn:aws:codeconnections:us-east-1:111122223333:connection/0f1e2d3c-aaaa-bbbb-cccc-111122223333"
SETTINGS: dict[str, Any] = {"repo": "my-org/ai-factory", "branch": "main", "connectionArn": CONNECTION}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    app = cdk.App()
    mlops = MlopsStack(app, "Mlops", env=ENV)
    stack = PipelineStack(
        app,
        "Pipeline",
        settings=PipelineSettings.from_dict(SETTINGS),
        team_modules=TEAM_MODULES,
        tracking=mlops.tracking,
        env=ENV,
    )
    return dict(Template.from_stack(stack).to_json())


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def _project(template: dict[str, Any], name_part: str) -> dict[str, Any]:
    (project,) = [r for k, r in _resources(template, "AWS::CodeBuild::Project").items() if name_part in k]
    return project


def _build_spec(project: dict[str, Any]) -> dict[str, Any]:
    """The parsed buildspec (a JSON string, or an Fn::Join of one when it holds tokens)."""
    spec = project["Properties"]["Source"]["BuildSpec"]
    if not isinstance(spec, str):
        spec = "".join(p if isinstance(p, str) else "TOKEN" for p in spec["Fn::Join"][1])
    parsed: dict[str, Any] = json.loads(spec)
    return parsed


def _commands(project: dict[str, Any]) -> str:
    return "\n".join(_build_spec(project)["phases"]["build"]["commands"])


def _stages(template: dict[str, Any]) -> list[tuple[str, list[str]]]:
    (pipeline,) = _resources(template, "AWS::CodePipeline::Pipeline").values()
    stages = pipeline["Properties"]["Stages"]
    return [
        (s["Name"], [a["Name"] for a in sorted(s["Actions"], key=lambda a: a["RunOrder"])]) for s in stages
    ]


def test_stages_run_test_synth_staging_eval_approval_production_in_order(template: dict[str, Any]) -> None:
    stages = _stages(template)
    assert [name for name, _ in stages] == [
        "Source",
        "Build",
        "UpdatePipeline",
        "Assets",
        "Staging",
        "Production",
    ]
    staging = dict(stages)["Staging"]
    assert staging[-1] == "EvalGate" and "AiFactoryGateway.Deploy" in staging
    assert {"AiFactoryTeamSupport.Deploy", "AiFactoryTeamKnowledge.Deploy"} <= set(staging)
    production = dict(stages)["Production"]
    assert production[0] == "PromoteToProduction" and production[-1] == "PromotePrompts"
    (pipeline,) = _resources(template, "AWS::CodePipeline::Pipeline").values()
    (approval,) = [
        a
        for s in pipeline["Properties"]["Stages"]
        for a in s["Actions"]
        if a["Name"] == "PromoteToProduction"
    ]
    assert approval["ActionTypeId"]["Category"] == "Approval"


def test_source_is_the_connection_with_a_full_clone(template: dict[str, Any]) -> None:
    (pipeline,) = _resources(template, "AWS::CodePipeline::Pipeline").values()
    source = pipeline["Properties"]["Stages"][0]["Actions"][0]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"]["ConnectionArn"] == CONNECTION
    assert source["Configuration"]["FullRepositoryId"] == "my-org/ai-factory"
    assert source["Configuration"]["BranchName"] == "main"
    assert source["Configuration"]["OutputArtifactFormat"] == "CODEBUILD_CLONE_REF"


def test_synth_step_runs_make_test_then_make_synth(template: dict[str, Any]) -> None:
    spec = _build_spec(_project(template, "Synth"))
    assert spec["phases"]["build"]["commands"] == ["make test", "make synth"]
    assert spec["artifacts"]["base-directory"] == "cdk.out"
    assert spec["phases"]["install"]["runtime-versions"] == {"python": "3.11", "nodejs": "20"}


def test_eval_gate_evaluates_changed_suites_against_staging(template: dict[str, Any]) -> None:
    project = _project(template, "EvalGate")
    text = _commands(project)
    assert '.venv/bin/ai-factory eval changed --base "$BASE"' in text
    assert 'xargs -r .venv/bin/ai-factory eval --target gateway --gateway-url "$AIF_GATEWAY_URL"' in text
    assert text.index("prompts register") < text.index(
        "eval changed"
    )  # the versions it evaluates exist first
    env = {e["Name"]: e for e in project["Properties"]["Environment"]["EnvironmentVariables"]}
    assert env["AIF_API_KEY"]["Type"] == "SECRETS_MANAGER"
    assert env["AIF_API_KEY"]["Value"] == "ai-factory/staging/eval-api-key"
    assert "Fn::ImportValue" in json.dumps(env["MLFLOW_TRACKING_URI"]["Value"])
    # The staging gateway URL comes from the deployed stack's output, through the pipeline variables.
    assert "AIF_GATEWAY_URL" in json.dumps(_resources(template, "AWS::CodePipeline::Pipeline"))


def test_eval_gate_may_publish_gate_pass_rate_only_in_the_factory_namespace(template: dict[str, Any]) -> None:
    project = _project(template, "EvalGate")
    role = project["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    statements = [
        st
        for policy in _resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for st in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    publish = [st for st in statements if "cloudwatch:PutMetricData" in json.dumps(st["Action"])]
    assert publish == [
        {
            "Sid": "PublishGatePassRate",
            "Action": "cloudwatch:PutMetricData",
            "Condition": {"StringEquals": {"cloudwatch:namespace": "AIFactory"}},
            "Effect": "Allow",
            "Resource": "*",
        }
    ]
    everywhere = json.dumps(_resources(template, "AWS::IAM::Policy"))
    assert everywhere.count("cloudwatch:PutMetricData") == 1  # no other step may publish metrics


def test_builds_are_unprivileged_encrypted_and_logged(template: dict[str, Any]) -> None:
    projects = _resources(template, "AWS::CodeBuild::Project")
    assert len(projects) >= 5
    for name, project in projects.items():
        props = project["Properties"]
        assert props["Environment"].get("PrivilegedMode", False) is False, name
        assert "EncryptionKey" in props, name
        assert props["LogsConfig"]["CloudWatchLogs"]["Status"] == "ENABLED", name
    (log_group,) = _resources(template, "AWS::Logs::LogGroup").values()
    assert log_group["Properties"]["RetentionInDays"] == 365
    assert "KmsKeyId" in log_group["Properties"]
    assert log_group["DeletionPolicy"] == "Retain"


def test_artifact_bucket_is_kms_encrypted_and_access_logged(template: dict[str, Any]) -> None:
    (pipeline,) = _resources(template, "AWS::CodePipeline::Pipeline").values()
    store = pipeline["Properties"]["ArtifactStore"]
    assert store["EncryptionKey"]["Type"] == "KMS"
    bucket = template["Resources"][store["Location"]["Ref"]]["Properties"]
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == "aws:kms"
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "artifacts/"
    keys = _resources(template, "AWS::KMS::Key")
    assert all(k["Properties"]["EnableKeyRotation"] for k in keys.values())


def test_production_step_records_the_deployed_commit(template: dict[str, Any]) -> None:
    project = _project(template, "PromotePrompts")
    text = _commands(project)
    assert 'prompts promote "$name" --version "$version" --to production' in text
    assert text.index("--to production") < text.index("ssm put-parameter")


def test_settings_accept_a_json_string_and_stage_environments() -> None:
    app = cdk.App(
        context={
            CONTEXT_KEY: json.dumps(
                {**SETTINGS, "staging": {"account": "222233334444", "region": "eu-west-1"}}
            )
        }
    )
    settings = PipelineSettings.from_context(app)
    assert settings is not None and settings.staging is not None
    assert (settings.staging.account, settings.staging.region) == ("222233334444", "eu-west-1")
    assert PipelineSettings.from_context(cdk.App()) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"repo": "no-slash"}, "field 'repo': must be 'owner/name'"),
        ({"connectionArn": "arn:aws:s3:::bucket"}, "field 'connectionArn'"),
        ({"branch": ""}, "field 'branch'"),
        ({"staging": {"account": "12", "region": "us-east-1"}}, "field 'staging.account'"),
        ({"production": {"account": "111122223333", "region": "moon"}}, "field 'production.region'"),
        ({"extra": 1}, "field 'extra': unknown"),
    ],
)
def test_invalid_settings_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"Context 'ai-factory:pipeline': {message}"):
        PipelineSettings.from_dict({**SETTINGS, **change})


@pytest.mark.synth
def test_app_without_pipeline_context_has_no_pipeline_but_the_mlops_stack(tmp_path: Path) -> None:
    app = build_app(outdir=str(tmp_path))
    names = {c.node.id for c in app.node.children if isinstance(c, cdk.Stack)}
    assert "AiFactoryMlops" in names and "AiFactoryPipeline" not in names


@pytest.mark.synth
def test_app_with_pipeline_context_passes_the_nag_packs(tmp_path: Path) -> None:
    app = build_app(outdir=str(tmp_path), context={CONTEXT_KEY: SETTINGS})
    assembly = app.synth()  # raises ValidationFailed on any unacknowledged cdk-nag finding
    assert "AiFactoryPipeline" in {s.stack_name for s in assembly.stacks}
    report = json.loads((tmp_path / "validation-report.json").read_text())
    assert all(r["summary"]["status"] == "success" for r in report["pluginReports"])


def _stage_stacks(staging: Any, production: Any) -> dict[str, dict[str, set[str]]]:
    """Per stage: each stack's id and the resource types in its template."""
    app = cdk.App()
    settings = {**SETTINGS}
    if staging is not None:
        settings["staging"] = staging
    if production is not None:
        settings["production"] = production
    pipeline = PipelineStack(
        app, "Pipeline", settings=PipelineSettings.from_dict(settings), team_modules=TEAM_MODULES, env=ENV
    )
    found: dict[str, dict[str, set[str]]] = {}
    for stage in (c for c in pipeline.node.children if isinstance(c, cdk.Stage)):
        stacks = [c for c in stage.node.children if isinstance(c, cdk.Stack)]
        found[stage.node.id] = {
            s.node.id: {r["Type"] for r in Template.from_stack(s).to_json()["Resources"].values()}
            for s in stacks
        }
    return found


def test_stages_deploy_the_same_stacks_as_the_app_with_observability_and_canaries() -> None:
    stages = _stage_stacks(None, None)
    app_stacks = {c.node.id for c in build_app(outdir=None).node.children if isinstance(c, cdk.Stack)} - {
        "AiFactoryMlops"
    }
    for name in ("Staging", "Production"):
        assert set(stages[name]) == app_stacks, name
        for team in (s for s in stages[name] if s.startswith("AiFactoryTeam")):
            assert "AWS::Scheduler::Schedule" in stages[name][team], f"{name}/{team} has no canary"
        assert "AWS::CloudWatch::Alarm" in stages[name]["AiFactoryObservability"]
    # Invocation logging is one setting per account and region: staging leaves it to production there.
    assert "Custom::AiFactoryBedrockInvocationLogging" in stages["Production"]["AiFactoryObservability"]
    assert "Custom::AiFactoryBedrockInvocationLogging" not in stages["Staging"]["AiFactoryObservability"]


def test_staging_in_another_region_manages_its_own_invocation_logging() -> None:
    stages = _stage_stacks(
        {"account": "111122223333", "region": "us-west-2"}, {"account": "111122223333", "region": "us-east-1"}
    )
    for name in ("Staging", "Production"):
        assert "Custom::AiFactoryBedrockInvocationLogging" in stages[name]["AiFactoryObservability"], name
