"""GovernedAssistant: HTTPS-only CloudFront with security headers, a private site bucket behind origin
access control, Cognito identity wired to the API's authorizer and the backend's clearance map, the
feature's key readable by the backend only, validation errors, and cdk-nag."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from ai_factory.constructs.ai_feature import AiFeature
from ai_factory.constructs.governed_assistant import (
    FederatedIdentityProvider,
    GovernedAssistant,
    GovernedAssistantError,
)
from ai_factory.constructs.rag_feature import RagFeature
from ai_factory.platform.nag import apply_nag_packs
from stacks.gateway_stack import GatewayStack
from stacks.governance_stack import GovernanceStack
from stacks.team_stack import TeamStack

ENV = cdk.Environment(account="111122223333", region="us-east-1")
GROUPS = {"employees": "internal", "support-leads": "confidential"}


@dataclass
class Built:
    team: TeamStack
    feature: AiFeature
    rag: RagFeature
    assistant: GovernedAssistant | None
    template: Template | None

    def resources(self, kind: str) -> dict[str, Any]:
        assert self.template is not None
        return dict(self.template.find_resources(kind))

    def ref(self, construct: Any) -> str:
        return self.team.get_logical_id(construct.node.default_child)


def build(*, nag: bool = False, outdir: str | None = None, construct: bool = True, **props: Any) -> Built:
    app = cdk.App(outdir=outdir) if outdir else cdk.App()
    if nag:
        apply_nag_packs(app)
    gateway = GatewayStack(app, "Gateway", env=ENV)
    governance = GovernanceStack(app, "Governance", env=ENV)
    team = TeamStack(app, "Team", team="support", gateway_stack=gateway, governance=governance)
    feature = AiFeature(
        team,
        "AssistantFeature",
        feature="assistant",
        owner="it@example.com",
        clearance="confidential",
        models=["chat-fast"],
        monthly_budget_usd=100,
        rate_limit_rpm=60,
    )
    rag = RagFeature(team, "Tickets", feature=feature, dataset=governance.datasets["support.tickets"])
    if not construct:
        return Built(team, feature, rag, None, None)
    assistant = GovernedAssistant(
        team,
        "Assistant",
        **{"feature": feature, "knowledge_bases": [rag], "clearance_groups": GROUPS, **props},
    )
    if nag:
        with contextlib.suppress(Exception):
            app.synth()
        return Built(team, feature, rag, assistant, None)
    return Built(team, feature, rag, assistant, Template.from_stack(team))


@pytest.fixture(scope="module")
def built() -> Built:
    return build(
        identity_providers=[
            FederatedIdentityProvider("CompanyIdP", saml_metadata_url="https://idp.example.com/metadata.xml")
        ]
    )


def test_the_page_is_served_over_https_only_under_security_headers(built: Built) -> None:
    [(_, dist)] = built.resources("AWS::CloudFront::Distribution").items()
    config = dist["Properties"]["DistributionConfig"]
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "https-only"
    assert [b["ViewerProtocolPolicy"] for b in config["CacheBehaviors"]] == ["https-only"]
    assert config["DefaultRootObject"] == "index.html"
    [(policy_id, policy)] = built.resources("AWS::CloudFront::ResponseHeadersPolicy").items()
    assert config["DefaultCacheBehavior"]["ResponseHeadersPolicyId"] == {"Ref": policy_id}
    assert config["CacheBehaviors"][0]["ResponseHeadersPolicyId"] == {"Ref": policy_id}
    security = policy["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    hsts = security["StrictTransportSecurity"]
    assert hsts["AccessControlMaxAgeSec"] >= 31536000 and hsts["IncludeSubdomains"] and hsts["Override"]
    assert security["FrameOptions"] == {"FrameOption": "DENY", "Override": True}
    assert security["ContentTypeOptions"] == {"Override": True}
    csp = json.dumps(security["ContentSecurityPolicy"]["ContentSecurityPolicy"])
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    # The page may call only its own origin and the user pool's hosted UI (the token endpoint).
    assert "amazoncognito.com" in csp


def test_the_api_behaviour_never_caches_and_forwards_the_token(built: Built) -> None:
    [(_, dist)] = built.resources("AWS::CloudFront::Distribution").items()
    [api] = dist["Properties"]["DistributionConfig"]["CacheBehaviors"]
    assert api["PathPattern"] == "/api/*"
    assert api["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # Managed-CachingDisabled
    assert api["OriginRequestPolicyId"] == "b689b0a8-53d0-40ab-baf2-68738e2966ac"  # AllViewerExceptHostHeader
    origins = dist["Properties"]["DistributionConfig"]["Origins"]
    custom = [o for o in origins if "CustomOriginConfig" in o]
    assert custom[0]["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert custom[0]["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]


def test_the_site_bucket_is_private_behind_origin_access_control(built: Built) -> None:
    assert built.assistant is not None
    bucket_id = built.ref(built.assistant.site_bucket)
    bucket = built.resources("AWS::S3::Bucket")[bucket_id]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert (
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
            "SSEAlgorithm"
        ]
        == "aws:kms"
    )
    assert "WebsiteConfiguration" not in bucket  # not an S3 website endpoint: CloudFront only
    [(oac_id, oac)] = built.resources("AWS::CloudFront::OriginAccessControl").items()
    assert oac["Properties"]["OriginAccessControlConfig"]["SigningBehavior"] == "always"
    assert oac["Properties"]["OriginAccessControlConfig"]["OriginAccessControlOriginType"] == "s3"
    assert built.resources("AWS::CloudFront::CloudFrontOriginAccessIdentity") == {}
    [(_, dist)] = built.resources("AWS::CloudFront::Distribution").items()
    s3_origin = next(o for o in dist["Properties"]["DistributionConfig"]["Origins"] if "S3OriginConfig" in o)
    assert s3_origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac_id, "Id"]}
    # Reads only for CloudFront, only for this distribution.
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in built.resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    reads = [s for s in policies[0] if s["Effect"] == "Allow"]
    assert [s["Principal"] for s in reads] == [{"Service": "cloudfront.amazonaws.com"}]
    assert "AWS:SourceArn" in reads[0]["Condition"]["StringEquals"]
    assert reads[0]["Action"] == "s3:GetObject"


def test_every_api_method_needs_a_cognito_id_token_of_the_assistants_user_pool(built: Built) -> None:
    assert built.assistant is not None
    pool_id = built.ref(built.assistant.user_pool)
    [(authorizer_id, authorizer)] = built.resources("AWS::ApiGateway::Authorizer").items()
    assert authorizer["Properties"]["Type"] == "COGNITO_USER_POOLS"
    assert authorizer["Properties"]["ProviderARNs"] == [{"Fn::GetAtt": [pool_id, "Arn"]}]
    assert authorizer["Properties"]["IdentitySource"] == "method.request.header.X-Aif-Id-Token"
    methods = [
        m["Properties"]
        for m in built.resources("AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] != "OPTIONS"
    ]
    assert sorted(m["HttpMethod"] for m in methods) == ["GET", "POST", "POST"]
    for method in methods:
        assert method["AuthorizationType"] == "COGNITO_USER_POOLS"
        assert method["AuthorizerId"] == {"Ref": authorizer_id}


def test_users_come_from_admins_or_the_idp_and_groups_map_to_clearances(built: Built) -> None:
    assert built.template is not None
    built.template.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
            "MfaConfiguration": "ON",
            "UserPoolAddOns": {"AdvancedSecurityMode": "ENFORCED"},
        },
    )
    groups = sorted(
        g["Properties"]["GroupName"] for g in built.resources("AWS::Cognito::UserPoolGroup").values()
    )
    assert groups == ["employees", "support-leads"]
    built.template.has_resource_properties(
        "AWS::Cognito::UserPoolIdentityProvider",
        {
            "ProviderName": "CompanyIdP",
            "ProviderType": "SAML",
            "AttributeMapping": {"email": "email", "custom:groups": "groups"},
        },
    )
    [(_, client)] = built.resources("AWS::Cognito::UserPoolClient").items()
    props = client["Properties"]
    assert props["GenerateSecret"] is False
    assert props["AllowedOAuthFlows"] == ["code"]
    assert props["SupportedIdentityProviders"] == ["CompanyIdP"]
    assert "CloudFront" in json.dumps(props["CallbackURLs"]) or "DomainName" in json.dumps(
        props["CallbackURLs"]
    )


def test_the_backend_knows_the_clearance_map_and_reads_exactly_the_features_key(built: Built) -> None:
    assert built.assistant is not None and built.template is not None
    backend = built.resources("AWS::Lambda::Function")[built.ref(built.assistant.backend)]["Properties"]
    env = backend["Environment"]["Variables"]
    assert json.loads(env["AIF_ASSISTANT_CLEARANCE_GROUPS"]) == GROUPS
    assert json.loads(env["AIF_ASSISTANT_KNOWLEDGE_BASES"]) == [
        {"name": "assistant", "classification": "internal", "title": "assistant"}
    ]
    assert env["AIF_ASSISTANT_MODEL"] == "chat-fast"
    secret_id = built.ref(built.feature.secret)
    assert env["AIF_ASSISTANT_KEY_SECRET_ARN"] == {"Ref": secret_id}
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    role_id = backend["Role"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in built.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    reads = [s for s in statements if s["Action"] == "secretsmanager:GetSecretValue"]
    assert [s["Resource"] for s in reads] == [{"Ref": secret_id}]
    assert not any("bedrock" in json.dumps(s["Action"]) for s in statements)  # models only via the gateway


def test_the_page_is_published_with_its_sign_in_settings(built: Built) -> None:
    [(_, site)] = built.resources("Custom::AssistantSite").items()
    config = json.dumps(site["Properties"]["Config"])
    assert "cognito" in config and "redirect_uri" in config and "CompanyIdP" in config


def test_the_feature_must_be_allowed_on_every_knowledge_base() -> None:
    parts = build(construct=False)
    other = AiFeature(
        parts.team,
        "Other",
        feature="other",
        owner="o@example.com",
        clearance="internal",
        models=["chat-fast"],
        monthly_budget_usd=1,
        rate_limit_rpm=1,
    )
    with pytest.raises(
        GovernedAssistantError,
        match=r"knowledge_bases\[0\]: knowledge base 'assistant' does not allow support/other",
    ):
        GovernedAssistant(
            parts.team, "A", feature=other, knowledge_bases=[parts.rag], clearance_groups={"e": "internal"}
        )


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"clearance_groups": {}}, r"clearance_groups: must map at least one group"),
        ({"clearance_groups": {"x": "secret"}}, r"clearance_groups\['x'\]: 'secret' is not one of"),
        (
            {"clearance_groups": {"x": "restricted"}},
            r"clearance_groups\['x'\]: grants 'restricted', above the feature support/assistant",
        ),
        ({"model": "chat-smart"}, r"model: 'chat-smart' is not one of the feature's models \(chat-fast\)"),
        ({"domain_prefix": "my-aws-chat"}, r"domain_prefix: may not contain 'aws'"),
        (
            {"identity_providers": [FederatedIdentityProvider("Idp", oidc_issuer="https://idp.example.com")]},
            r"identity_providers\[0\]: an OIDC provider needs oidc_client_id",
        ),
        (
            {"identity_providers": [FederatedIdentityProvider("Idp")]},
            r"identity_providers\[0\]: set exactly one of saml_metadata_url",
        ),
    ],
)
def test_invalid_props_name_the_construct_and_field(props: dict[str, Any], message: str) -> None:
    parts = build(construct=False)
    full = {"feature": parts.feature, "knowledge_bases": [parts.rag], "clearance_groups": GROUPS, **props}
    with pytest.raises(GovernedAssistantError, match=r"GovernedAssistant A: " + message):
        GovernedAssistant(parts.team, "A", **full)


def test_governed_assistant_passes_cdk_nag(tmp_path: Path) -> None:
    """No cdk-nag finding on anything the assistant creates (other constructs' findings are not ours)."""
    build(nag=True, outdir=str(tmp_path))
    report_file = tmp_path / "validation-report.json"
    if not report_file.exists():
        return
    report = json.loads(report_file.read_text())
    ours = [
        (violation["ruleName"], construct["constructPath"])
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
        if construct["constructPath"].startswith("Team/Assistant/")
    ]
    assert ours == []


def test_the_api_access_log_names_the_users_subject_not_their_name(built: Built) -> None:
    [(_, stage)] = built.resources("AWS::ApiGateway::Stage").items()
    fields = json.loads(stage["Properties"]["AccessLogSetting"]["Format"])
    assert fields["userSub"] == "$context.authorizer.claims.sub"
    assert not any("email" in value or "username" in value for value in fields.values())
    assert stage["Properties"]["MethodSettings"][0]["DataTraceEnabled"] is False
