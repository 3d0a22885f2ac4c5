"""``ai-factory report``: each section read from assemblies synthesized with the real constructs, the
``--diff`` of a changed app, HTML escaping, and the real app's report (no public endpoints)."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lakeformation as lf
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3

from ai_factory.cli.main import main
from ai_factory.compliance.assembly import CloudAssembly
from ai_factory.compliance.diff import diff_reports
from ai_factory.compliance.document import NO_PUBLIC, diff_document, report_document
from ai_factory.compliance.evidence import ARTIFACTS_BY_ID, OBLIGATIONS
from ai_factory.compliance.html import render_html
from ai_factory.compliance.markdown import render_markdown
from ai_factory.compliance.model import NO_ACK, ExternalFlow, ModelTarget, Report, build_report
from ai_factory.constructs.ai_feature import AiFeature
from stacks.gateway_stack import GatewayStack
from stacks.team_stack import TeamStack

# CDK's built-in CloudFormation validation costs seconds per synth and is not what these tests check.
os.environ.setdefault("CDK_VALIDATION", "false")

ENV = cdk.Environment(account="111122223333", region="us-east-1")
HOSTILE = "<script>alert('x')</script> & <b>co</b>"
ACK_REASON = "Test: this role lists every bucket, which has no resource-level permission."


def synth_app(outdir: Path, *, models: list[str], wildcard_role: bool) -> Path:
    """A gateway, one team with one feature (caller role + Lake Formation grant) and a stack of things
    the report must flag."""
    app = cdk.App(outdir=str(outdir))
    gateway = GatewayStack(app, "AiFactoryGateway", env=ENV)
    team = TeamStack(app, "AiFactoryTeamSupport", team="support", gateway_stack=gateway)
    feature = AiFeature(
        team,
        "TicketSummarizer",
        feature="ticket-summarizer",
        owner="support-leads@example.com",
        clearance="internal",
        models=models,
        monthly_budget_usd=250,
        rate_limit_rpm=120,
        callers=[iam.ArnPrincipal("arn:aws:iam::111122223333:role/support-app")],
    )
    assert feature.caller_role is not None
    lf.CfnPrincipalPermissions(
        team,
        "TicketsGrant",
        principal=lf.CfnPrincipalPermissions.DataLakePrincipalProperty(
            data_lake_principal_identifier=feature.caller_role.role_arn
        ),
        resource=lf.CfnPrincipalPermissions.ResourceProperty(
            lf_tag_policy=lf.CfnPrincipalPermissions.LFTagPolicyResourceProperty(
                catalog_id="111122223333",
                resource_type="TABLE",
                expression=[
                    lf.CfnPrincipalPermissions.LFTagProperty(
                        tag_key="classification", tag_values=["internal"]
                    ),
                    lf.CfnPrincipalPermissions.LFTagProperty(tag_key="domain", tag_values=["tickets"]),
                ],
            )
        ),
        permissions=["SELECT", "DESCRIBE"],
        permissions_with_grant_option=[],
    )

    exposed = cdk.Stack(app, "Exposed", env=ENV)
    key = kms.Key(exposed, "AuditKey", description=HOSTILE, enable_key_rotation=True)
    s3.Bucket(
        exposed,
        "Audit",
        encryption_key=key,
        object_lock_enabled=True,
        object_lock_default_retention=s3.ObjectLockRetention.compliance(cdk.Duration.days(180)),
    )
    s3.Bucket(
        exposed,
        "Site",
        website_index_document="index.html",
        public_read_access=True,
        block_public_access=s3.BlockPublicAccess(
            block_public_acls=True,
            ignore_public_acls=True,
            block_public_policy=False,
            restrict_public_buckets=False,
        ),
    )
    logs.LogGroup(exposed, "Forever", retention=logs.RetentionDays.INFINITE)
    fn = lambda_.Function(
        exposed,
        "Hook",
        runtime=lambda_.Runtime.PYTHON_3_13,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n"),
    )
    fn.add_function_url(auth_type=lambda_.FunctionUrlAuthType.NONE)
    lister = iam.Role(exposed, "Lister", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    lister.add_to_policy(iam.PolicyStatement(actions=["s3:ListAllMyBuckets"], resources=["*"]))
    cdk.Validations.of(lister).acknowledge(
        cdk.Acknowledgment(id="AwsSolutions-IAM5[Resource::*]", reason=ACK_REASON)
    )
    if wildcard_role:
        admin = iam.Role(exposed, "Admin", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        admin.add_to_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
    app.synth()
    return outdir


@pytest.fixture(scope="module")
def before_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_app(tmp_path_factory.mktemp("before"), models=["chat-fast"], wildcard_role=True)


@pytest.fixture(scope="module")
def after_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_app(
        tmp_path_factory.mktemp("after"),
        models=["chat-fast", "chat-smart", "chat-claude-any"],
        wildcard_role=False,
    )


@pytest.fixture(scope="module")
def report(before_dir: Path) -> Report:
    return build_report(CloudAssembly.load(before_dir))


def test_teams_and_features(report: Report) -> None:
    assert report.teams == {"support": ["AiFactoryTeamSupport"]}
    (feature,) = report.features
    assert feature.name == "support/ticket-summarizer"
    assert feature.owner == "support-leads@example.com"
    assert feature.clearance == "internal"
    assert (feature.monthly_budget_usd, feature.rate_limit_rpm) == ("250.0", "120")
    assert feature.caller_role == "AiFactoryTeamSupport/TicketSummarizer/CallerRole"


def test_models_follow_alias_to_catalog_route(report: Report) -> None:
    (feature,) = report.features
    assert feature.aliases == ("chat-fast",)
    model_ids = [t.model_id for t in feature.models["chat-fast"]]
    assert model_ids == [t.model_id for t in report.routes["chat-fast"]]
    assert any("claude-haiku" in m for m in model_ids)
    assert "chat-smart" in report.routes and "chat-smart" not in feature.models


def test_dataset_grant_belongs_to_the_feature_with_its_classification(report: Report) -> None:
    (grant,) = report.datasets
    assert grant.grantee == "support/ticket-summarizer"
    assert grant.permissions == ("SELECT", "DESCRIBE")
    assert grant.classification == "classification=internal"  # domain narrows, it does not classify
    assert grant.resource == "tables tagged classification=internal and domain=tickets"
    assert grant.principal == "AiFactoryTeamSupport/TicketSummarizer/CallerRole"
    assert report.features[0].datasets == (grant,)


def test_no_dataset_grants_is_said_plainly(report: Report) -> None:
    empty = Report(**{**report.__dict__, "datasets": []})
    assert "No Lake Formation grants" in render_markdown(report_document(empty))


def test_guardrail_and_pii_policies(report: Report) -> None:
    (guardrail,) = report.guardrails
    assert ("PROMPT_ATTACK", "HIGH", "NONE") in guardrail.content_filters
    assert ("CREDIT_DEBIT_CARD_NUMBER", "BLOCK") in guardrail.pii
    assert ("EMAIL", "ANONYMIZE") in guardrail.pii
    assert guardrail.used_by == ("AiFactoryGateway/Gateway/Function",)
    assert guardrail.versions


def test_kms_keys_and_what_they_protect(report: Report) -> None:
    keys = {k.label: k for k in report.keys}
    gateway = keys["AiFactoryGateway/Gateway/Key"]
    assert "DynamoDB::Table AiFactoryGateway/Gateway/UsageTable" in gateway.protects
    assert "SQS::Queue AiFactoryGateway/Gateway/SpillQueue" in gateway.protects
    # Followed across stacks (Fn::ImportValue): the team's provisioner may use the gateway key.
    assert "AiFactoryTeamSupport/TicketSummarizer/ProvisionerRole" in gateway.usable_by
    team = keys["AiFactoryTeamSupport/SecretsKey"]
    assert "SecretsManager::Secret AiFactoryTeamSupport/TicketSummarizer/ApiKeySecret" in team.protects
    assert keys["Exposed/AuditKey"].protects == ("S3::Bucket Exposed/Audit",)
    assert all(k.rotation for k in report.keys)


def test_retention_of_logs_and_audit_storage(report: Report) -> None:
    rows = {(r.kind, r.label): r for r in report.retention}
    assert rows[("log group", "AiFactoryGateway/Gateway/FunctionLogs")].retention.endswith("days")
    assert rows[("log group", "Exposed/Forever")].retention == "never expires"
    assert rows[("bucket", "Exposed/Audit")].retention.startswith("Object Lock COMPLIANCE 180 days")
    assert "point-in-time recovery" in rows[("table", "AiFactoryGateway/Gateway/UsageTable")].retention


def test_public_endpoints_are_flagged(report: Report) -> None:
    public = {(e.kind, e.label) for e in report.public_endpoints}
    assert ("Lambda function URL", "Exposed/Hook/FunctionUrl") in public
    assert ("S3 bucket", "Exposed/Site") in public
    assert ("S3 bucket", "Exposed/Audit") not in public
    api = next(e for e in report.endpoints if e.label == "AiFactoryGateway/Gateway/Api")
    assert api.exposure == "internet (authenticated)"
    assert "feature API key" in api.auth
    assert NO_PUBLIC not in render_markdown(report_document(report))


def test_iam_wildcards_with_and_without_acknowledgement(report: Report) -> None:
    by_policy = {s.policy: s for s in report.wildcards}
    lister = by_policy["Exposed/Lister/DefaultPolicy"]
    assert lister.wildcards == ("Resource *",)
    assert lister.acknowledgements == (("AwsSolutions-IAM5[Resource::*]", ACK_REASON),)
    admin = by_policy["Exposed/Admin/DefaultPolicy"]
    assert set(admin.wildcards) == {"action s3:*", "Resource *"}
    assert {reason for _, reason in admin.acknowledgements} == {NO_ACK}
    # The gateway's X-Ray statement carries the construct's own acknowledgement.
    xray = by_policy["AiFactoryGateway/Gateway/FunctionRole/DefaultPolicy"]
    assert xray.acknowledgements and NO_ACK not in dict(xray.acknowledgements).values()
    markdown = render_markdown(report_document(report))
    assert ACK_REASON in markdown and NO_ACK in markdown


def test_evidence_map_covers_every_framework_and_never_overclaims(report: Report) -> None:
    refs = {(o.framework, o.ref) for o in OBLIGATIONS}
    for article in (9, 10, 11, 12, 13, 14, 15, 17, 72):
        assert ("EU AI Act", f"Art. {article}") in refs
    for area in range(2, 11):
        assert ("ISO/IEC 42001", f"A.{area}") in refs
    for function in ("GOVERN", "MAP", "MEASURE", "MANAGE"):
        assert ("NIST AI RMF", function) in refs
    assert all(a in ARTIFACTS_BY_ID for o in OBLIGATIONS for a in o.artifacts)
    text = render_markdown(report_document(report))
    assert "Evidence map" in text and "supports" in text.lower()
    assert not re.search(r"\bsatisfies\b", text)  # "do not satisfy" is the only form allowed
    assert report.evidence_present["guardrail"] is True
    assert report.evidence_present["delivery-pipeline"] is False


def test_html_is_standalone_and_escapes_everything(report: Report) -> None:
    page = render_html(report_document(report))
    assert HOSTILE not in page and "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;co&lt;/b&gt;" in page
    assert "<link" not in page and "src=" not in page  # nothing loaded from elsewhere

    class Checker(HTMLParser):
        tags: list[str] = []

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            self.tags.append(tag)

    checker = Checker()
    checker.feed(page)
    assert "script" not in checker.tags and checker.tags.count("table") > 5
    markdown = render_markdown(report_document(report))
    assert "<script>" not in markdown and "&lt;script>" in markdown


def test_diff_shows_added_model_alias_and_removed_wildcard(before_dir: Path, after_dir: Path) -> None:
    diff = diff_reports(
        build_report(CloudAssembly.load(before_dir)), build_report(CloudAssembly.load(after_dir))
    )
    sections = {s.name: s for s in diff.sections}
    (changed,) = sections["Model allow-lists"].changed
    key, before, after = changed
    assert key == "support/ticket-summarizer"
    assert "chat-smart" not in before and "chat-smart ->" in after
    assert any("s3:*" in k for k, _ in sections["IAM statements"].removed)
    assert sections["Features"].empty and sections["Dataset grants"].empty
    text = render_markdown(diff_document(diff))
    assert "## Model allow-lists" in text and "## Features" not in text


def test_external_providers_section_names_feature_classification_and_provider(
    report: Report, after_dir: Path
) -> None:
    assert report.external_flows() == []  # chat-fast stays in Bedrock
    assert "No feature may call a model outside AWS." in render_markdown(report_document(report))
    after = build_report(CloudAssembly.load(after_dir))
    flows = {(x.feature, x.alias, x.target.name, x.target.provider, x.sends) for x in after.external_flows()}
    assert flows == {
        (
            "support/ticket-summarizer",
            "chat-claude-any",
            "claude-sonnet-4-5-anthropic",
            "anthropic",
            "data up to internal",
        ),
        ("support/ticket-summarizer", "chat-claude-any", "gpt-4o", "openai", "data up to internal"),
    }
    (gpt,) = [x for x in after.external_flows() if x.target.name == "gpt-4o"]
    assert gpt.target.max_classification == "internal" and gpt.processed_in.startswith(
        "OpenAI, United States"
    )
    diff = diff_reports(report, after)
    added = dict(next(s for s in diff.sections if s.name == "External providers").added)
    assert added["support/ticket-summarizer -> gpt-4o (openai)"] == "data up to internal via chat-claude-any"
    text = render_markdown(report_document(after))
    assert "## External providers" in text and "claude-sonnet-4-5-anthropic" in text


def test_cli_writes_both_formats_and_the_diff(before_dir: Path, after_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    code = main(["report", "--cdk-out", str(after_dir), "--out", str(out), "--diff", str(before_dir)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "compliance-diff.html",
        "compliance-diff.md",
        "compliance-report.html",
        "compliance-report.md",
    ]
    assert "chat-smart" in (out / "compliance-diff.md").read_text()
    # Gate mode: the fixture has public endpoints.
    assert (
        main(
            ["report", "--cdk-out", str(after_dir), "--out", str(out), "--format", "md", "--fail-on-findings"]
        )
        == 1
    )


def test_cli_rejects_a_folder_that_is_not_an_assembly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--cdk-out", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "manifest.json: not found" in capsys.readouterr().err


@pytest.mark.synth
def test_real_app_report_says_no_public_endpoints(tmp_path: Path) -> None:
    from app import build_app

    build_app(outdir=str(tmp_path / "cdk.out")).synth()
    out = tmp_path / "report"
    assert (
        main(["report", "--cdk-out", str(tmp_path / "cdk.out"), "--out", str(out), "--fail-on-findings"]) == 0
    )
    text = (out / "compliance-report.md").read_text()
    assert NO_PUBLIC in text
    real = build_report(CloudAssembly.load(tmp_path / "cdk.out"))
    assert real.unreviewed_public_endpoints == []
    # The employees' assistant page is the one public endpoint, with the reason its construct recorded.
    (page,) = real.public_endpoints
    assert page.kind == "CloudFront distribution" and "EmployeeAssistant" in page.label
    assert "Cognito" in page.public_by_design and "needs a Cognito ID token" in text
    assert {f.name for f in real.features} >= {"support/ticket-summarizer", "knowledge/internal-qa"}
    assert all(NO_ACK not in dict(s.acknowledgements).values() for s in real.wildcards)


def _hand_written_assembly(root: Path, actions: list[str]) -> Path:
    """A minimal assembly with inline manifest metadata (older CDK layout) and one policy."""
    import json

    root.mkdir()
    template = {
        "Resources": {
            "Role1": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}}},
            "Policy1": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyDocument": {
                        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]
                    },
                    "Roles": [{"Ref": "Role1"}],
                },
            },
        }
    }
    (root / "S.template.json").write_text(json.dumps(template))
    manifest = {
        "version": "55.0.0",
        "artifacts": {
            "S": {
                "type": "aws:cloudformation:stack",
                "properties": {"templateFile": "S.template.json"},
                "metadata": {
                    "/S/Role/Resource": [{"type": "aws:cdk:logicalId", "data": "Role1"}],
                    "/S/Role/DefaultPolicy/Resource": [{"type": "aws:cdk:logicalId", "data": "Policy1"}],
                    "/S/Role": [
                        {
                            "type": "aws:cdk:acknowledged-rules",
                            "data": {"Annotation::AwsSolutions-IAM5": "why"},
                        }
                    ],
                },
            }
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_reordered_actions_are_not_a_change_and_inline_metadata_is_read(tmp_path: Path) -> None:
    a = build_report(
        CloudAssembly.load(_hand_written_assembly(tmp_path / "a", ["s3:ListAllMyBuckets", "xray:*"]))
    )
    b = build_report(
        CloudAssembly.load(_hand_written_assembly(tmp_path / "b", ["xray:*", "s3:ListAllMyBuckets"]))
    )
    assert diff_reports(a, b).empty
    (statement,) = a.wildcards
    assert statement.policy == "S/Role/DefaultPolicy" and statement.attached_to == ("S/Role",)
    # A detail-less acknowledgement of the wildcard rule on the role covers both wildcards.
    assert set(statement.acknowledgements) == {("AwsSolutions-IAM5", "why")}
    assert "No AiFeature found" in render_markdown(report_document(a))


def test_a_model_below_the_features_clearance_receives_nothing() -> None:
    gpt = ModelTarget("gpt-4o", "gpt-4o-2024-11-20", "openai", "internal")
    assert ExternalFlow("hr/payroll", "confidential", "chat-gpt", gpt, "US").sends == (
        "nothing: clearance confidential is above the model's ceiling internal"
    )
    assert ExternalFlow("hr/faq", "public", "chat-gpt", gpt, "US").sends == "data up to public"
