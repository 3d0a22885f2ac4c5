"""The cdk-nag packs (AwsSolutions, NIST 800-53 rev 5, Serverless) on the real app and its pipeline variant.

Every finding is fixed or acknowledged with a reason; every acknowledgement is in docs/security-controls.md;
and each pack demonstrably runs (an insecure throwaway app is reported by all three).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs

from ai_factory.platform.nag import (
    PACKS,
    TABLE_END,
    TABLE_START,
    Acknowledgement,
    acknowledgements,
    apply_nag_packs,
    render_document_table,
)
from app import build_app
from stacks.pipeline_stack import CONTEXT_KEY

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "security-controls.md"
CONNECTION = "arn:aws:codeconnections:us-east-1:111122223333:connection/0f1e2d3c-aaaa-bbbb-cccc-111122223333"
PIPELINE = {"repo": "my-org/ai-factory", "branch": "main", "connectionArn": CONNECTION}


@dataclass
class Synth:
    app: cdk.App
    findings: list[tuple[str, str, str]]  # (pack, rule, construct path)
    error: Exception | None


def _synth(app: cdk.App, outdir: Path) -> Synth:
    error: Exception | None = None
    try:
        app.synth()
    except Exception as exc:  # ValidationFailed arrives as a jsii RuntimeError
        error = exc
    report_file = outdir / "validation-report.json"
    report: dict[str, Any] = json.loads(report_file.read_text()) if report_file.exists() else {}
    findings = [
        (plugin["pluginName"], violation["ruleName"], resource["constructPath"])
        for plugin in report.get("pluginReports", [])
        for violation in plugin.get("violations", [])
        for resource in violation.get("violatingConstructs", violation.get("violatingResources", []))
    ]
    return Synth(app, sorted(findings), error)


def _printable(findings: list[tuple[str, str, str]]) -> str:
    return "\n".join(f"  {rule}  on  {path}" for _, rule, path in findings)


@pytest.fixture(scope="module")
def real_app(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    out = tmp_path_factory.mktemp("real")
    return _synth(build_app(outdir=str(out)), out)


@pytest.fixture(scope="module")
def pipeline_app(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    out = tmp_path_factory.mktemp("pipeline")
    return _synth(build_app(outdir=str(out), context={CONTEXT_KEY: PIPELINE}), out)


@pytest.mark.synth
@pytest.mark.parametrize("variant", ["real_app", "pipeline_app"])
def test_no_unacknowledged_findings(variant: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(variant)
    assert not synth.findings, (
        f"{len(synth.findings)} unacknowledged cdk-nag finding(s) in the {variant}: fix each in the "
        "construct that creates the resource, or acknowledge it there with a reason "
        "(ai_factory/platform/nag.py), then regenerate docs/security-controls.md:\n"
        f"{_printable(synth.findings)}"
    )
    assert synth.error is None, f"synth failed without a cdk-nag finding: {synth.error}"


@pytest.mark.synth
def test_pipeline_variant_runs_the_packs_over_its_stages(pipeline_app: Synth) -> None:
    stage_acks = [a for a in acknowledgements(pipeline_app.app) if "/Production/" in a.path]
    assert any(a.rule.startswith("NIST.800.53.R5-") for a in stage_acks)
    assert any(a.rule.startswith("Serverless-") for a in stage_acks)


@pytest.mark.synth
def test_every_acknowledgement_names_a_pack_rule_and_a_reason(real_app: Synth, pipeline_app: Synth) -> None:
    acks = acknowledgements(real_app.app) + acknowledgements(pipeline_app.app)
    assert acks
    bad = [a for a in acks if a.rule.split("-", 1)[0] not in PACKS or len(a.reason.split()) < 8]
    assert not bad, "acknowledgements without a pack rule or a real reason:\n" + "\n".join(map(str, bad))


@pytest.mark.synth
def test_security_controls_doc_lists_every_acknowledgement(real_app: Synth, pipeline_app: Synth) -> None:
    acks: list[Acknowledgement] = acknowledgements(real_app.app, nested_stages=False) + acknowledgements(
        pipeline_app.app, nested_stages=False
    )
    document = DOC.read_text()
    assert TABLE_START in document and TABLE_END in document
    assert render_document_table(document, acks) == document, (
        "docs/security-controls.md is out of date: run `.venv/bin/python -m tools.security_controls "
        "docs/security-controls.md`"
    )


@pytest.mark.synth
def test_each_pack_reports_an_insecure_resource(tmp_path: Path) -> None:
    """Guard against a silently missing pack: each one reports what it exists to catch."""
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Insecure", env=cdk.Environment(account="111122223333", region="us-east-1"))
    sqs.Queue(stack, "PlainQueue")  # no TLS enforcement, no DLQ
    s3.Bucket(stack, "PlainBucket")  # no access logs, no TLS enforcement, no KMS
    function = lambda_.Function(
        stack,
        "PlainFunction",
        runtime=lambda_.Runtime.PYTHON_3_14,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return None\n"),
    )  # no DLQ, no VPC, no reserved concurrency, no tracing
    cdk.Validations.of(function.node.default_child).acknowledge(  # type: ignore[arg-type]
        cdk.Acknowledgment(
            id="Serverless-LambdaTracing", reason="Acknowledged for this test: must not report."
        )
    )
    apply_nag_packs(app)
    synth = _synth(app, tmp_path)

    assert synth.error is not None
    by_pack: dict[str, set[str]] = {}
    for pack, rule, _ in synth.findings:
        by_pack.setdefault(pack, set()).add(rule)
    assert set(by_pack) == set(PACKS)
    assert {"AwsSolutions-SQS3", "AwsSolutions-S1"} <= by_pack["AwsSolutions"]
    assert {"NIST.800.53.R5-LambdaDLQ", "NIST.800.53.R5-S3DefaultEncryptionKMS"} <= by_pack["NIST.800.53.R5"]
    assert {"Serverless-LambdaDLQ", "Serverless-SQSRedrivePolicy"} <= by_pack["Serverless"]
    assert "Serverless-LambdaTracing" not in by_pack["Serverless"]  # acknowledged on the function


@pytest.mark.synth
def test_a_gateways_sample_queue_and_its_consumer_have_no_unacknowledged_findings(tmp_path: Path) -> None:
    """The shipped features sample Bedrock routes only, so the real app has no sample queue: this app
    samples a feature whose routes reach external providers (the queue, its key, the gateway's send and
    the sampler's receive permissions)."""
    from tests.infra.test_online_evaluation import mixed_setup

    app = cdk.App(outdir=str(tmp_path))
    apply_nag_packs(app)
    _, _, online = mixed_setup(app)
    assert online.gateway_sample_queues
    synth = _synth(app, tmp_path)
    assert not synth.findings, _printable(synth.findings)
    assert synth.error is None, synth.error


@pytest.mark.synth
def test_many_sampled_features_split_the_online_roles_policies_and_stay_acknowledged(tmp_path: Path) -> None:
    """Past about 20 sampled features the sampler's statements (a table and a key each) exceed IAM's
    inline-policy size and CDK moves them into OverflowPolicy<n> managed policies under the role: the
    acknowledgements must cover those too, or the synth fails."""
    from aws_cdk import aws_logs as logs

    from ai_factory.constructs.online_evaluation import OnlineEvaluation, OnlineSampling
    from stacks.gateway_stack import GatewayStack
    from stacks.team_stack import TeamStack
    from tests.infra.test_online_evaluation import ENV, LOG_GROUP_ARN, feature

    app = cdk.App(outdir=str(tmp_path))
    apply_nag_packs(app)
    gateway = GatewayStack(app, "Gw", env=ENV)
    features = []
    for t in range(6):
        team = TeamStack(app, f"Team{t}", team=f"team{t}", gateway_stack=gateway, env=ENV)
        for i in range(5):
            models = ["chat-fast", "chat-claude-any"] if i % 2 else ["chat-fast"]
            sampling = OnlineSampling(rate=0.1)
            features.append(
                feature(team, f"f{i}", clearance="public", models=models, online_sampling=sampling)
            )
    observability = cdk.Stack(app, "Obs", env=ENV)
    log_group = logs.LogGroup.from_log_group_arn(observability, "InvocationLogs", LOG_GROUP_ARN)
    OnlineEvaluation(observability, "OnlineEvaluation", features=features, invocation_log_group=log_group)
    synth = _synth(app, tmp_path)
    assert not synth.findings, _printable(synth.findings)
    assert synth.error is None, synth.error
    template = json.loads((tmp_path / "Obs.template.json").read_text())
    assert any("OverflowPolicy" in logical_id for logical_id in template["Resources"]), (
        "no split: test too small"
    )
