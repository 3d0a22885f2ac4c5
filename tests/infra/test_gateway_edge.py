"""The gateway's edge: authorizers per front door, usage plans, function concurrency, optional WAF."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import Duration
from aws_cdk.assertions import Template

from ai_factory.constructs.ai_feature import AiFeature
from ai_factory.constructs.gateway.edge import WAF_BODY_RULES_COUNTED, edge_rate
from ai_factory.constructs.gateway.imported import GatewayAttributes
from ai_factory.constructs.gateway.llm_gateway import DEFAULT_RESERVED_CONCURRENCY, LlmGateway
from aif_gateway import contract
from tests.infra.test_ai_feature import FEATURE_PROPS
from tests.infra.test_ai_feature import build as build_feature
from tests.infra.test_llm_gateway import _methods

Synthesized = Any  # tests/infra/conftest.py


def _only(template: Template, resource_type: str) -> dict[str, Any]:
    found = template.find_resources(resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))["Properties"]


def _logical(syn: Synthesized, construct: Any) -> str:
    return str(syn.stack.get_logical_id(construct.node.default_child))


# ----------------------------------------------------------------------------------- authorizers


def test_each_front_door_has_its_authorizer_and_every_method_requires_the_authorizers_key(
    default_gateway: Synthesized,
) -> None:
    syn = default_gateway
    authorizers = syn.template.find_resources("AWS::ApiGateway::Authorizer")
    assert len(authorizers) == 2
    openai_id = _logical(syn, syn.gateway.authorizers.openai)
    anthropic_id = _logical(syn, syn.gateway.authorizers.anthropic)
    openai, anthropic = authorizers[openai_id]["Properties"], authorizers[anthropic_id]["Properties"]
    # OpenAI door: cached per Authorization header (60 s is the edge's revocation delay).
    assert openai["Type"] == "REQUEST"
    assert openai["IdentitySource"] == "method.request.header.Authorization"
    assert openai["AuthorizerResultTtlInSeconds"] == 60
    # Anthropic door: x-api-key or Authorization, so no identity source and no API Gateway cache
    # (with caching on, API Gateway refuses a request missing an identity source before the authorizer).
    assert anthropic["Type"] == "REQUEST"
    assert anthropic["AuthorizerResultTtlInSeconds"] == 0
    assert not anthropic.get("IdentitySource")
    function_id = _logical(syn, syn.gateway.authorizer_function)
    for props in (openai, anthropic):
        assert function_id in json.dumps(props["AuthorizerUri"])

    doors = {
        ("POST", "/v1/messages"): anthropic_id,
        ("POST", "/v1/messages/count_tokens"): anthropic_id,
        ("POST", "/v1/chat/completions"): openai_id,
        ("POST", "/v1/responses"): openai_id,
        ("ANY", "/v1/{proxy+}"): openai_id,
    }
    methods = _methods(syn)
    assert set(methods) == set(doors)
    for route, method in methods.items():
        assert method["AuthorizationType"] == "CUSTOM", route
        assert method["AuthorizerId"] == {"Ref": doors[route]}, route
        assert method["ApiKeyRequired"] is True, route
    assert _only(syn.template, "AWS::ApiGateway::RestApi")["ApiKeySourceType"] == "AUTHORIZER"


def test_the_gateway_function_knows_its_namespace_for_bedrocks_request_metadata(
    default_gateway: Synthesized,
) -> None:
    """The gateway names itself in every Bedrock call's requestMetadata (``aif_gateway``), which the
    online sampler matches against its features' gateway (issue #18); the spill replay calls no model."""
    syn = default_gateway
    functions = syn.template.find_resources("AWS::Lambda::Function")
    env = functions[_logical(syn, syn.gateway.function)]["Properties"]["Environment"]["Variables"]
    assert env[contract.EDGE_NAMESPACE_ENV] == syn.gateway.edge_namespace
    assert contract.EDGE_NAMESPACE_RE.fullmatch(syn.gateway.edge_namespace)
    replay = functions[_logical(syn, syn.gateway.spill_replay_function)]["Properties"]
    assert contract.EDGE_NAMESPACE_ENV not in replay["Environment"]["Variables"]


def test_the_authorizer_function_reads_one_key_by_hash_and_nothing_else(default_gateway: Synthesized) -> None:
    syn = default_gateway
    function = syn.template.find_resources("AWS::Lambda::Function")[
        _logical(syn, syn.gateway.authorizer_function)
    ]
    props = function["Properties"]
    assert props["Handler"] == "aif_gateway.authorizer.handler"
    env = props["Environment"]["Variables"]
    assert set(env) == {contract.KEYS_TABLE_ENV, contract.EDGE_NAMESPACE_ENV}
    assert env[contract.EDGE_NAMESPACE_ENV] == syn.gateway.edge_namespace
    role_id = props["Role"]["Fn::GetAtt"][0]
    statements = [
        s
        for policy in syn.template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions = sorted(
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )
    assert actions == [
        "dynamodb:GetItem",
        "kms:Decrypt",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTelemetryRecords",
        "xray:PutTraceSegments",
    ]
    get_item = next(s for s in statements if s["Action"] == "dynamodb:GetItem")
    assert get_item["Resource"] == {"Fn::GetAtt": [_logical(syn, syn.gateway.keys_table), "Arn"]}


def test_the_edge_refusals_have_the_sdk_error_shape(default_gateway: Synthesized) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in default_gateway.template.find_resources("AWS::ApiGateway::GatewayResponse").values()
    }
    expected = {
        "UNAUTHORIZED": ("401", "missing_api_key"),
        "ACCESS_DENIED": ("401", "invalid_api_key"),
        "THROTTLED": ("429", contract.EDGE_LIMIT_CODE),
        "QUOTA_EXCEEDED": ("429", "edge_quota_exceeded"),
        "AUTHORIZER_FAILURE": ("503", "key_check_unavailable"),
        "AUTHORIZER_CONFIGURATION_ERROR": ("503", "key_check_unavailable"),
        "INVALID_API_KEY": ("403", "no_usage_plan"),
    }
    assert set(responses) == set(expected)
    for kind, (status, code) in expected.items():
        body = json.loads(responses[kind]["ResponseTemplates"]["application/json"])
        assert responses[kind]["StatusCode"] == status, kind
        assert body["type"] == "error" and body["error"]["code"] == code and body["error"]["message"], kind
    assert responses["THROTTLED"]["ResponseParameters"]["gatewayresponse.header.Retry-After"] == "'1'"
    assert (
        responses["THROTTLED"]["ResponseParameters"][f"gatewayresponse.header.{contract.LIMIT_HEADER}"]
        == "'edge'"
    )


def test_authorizer_cache_ttl_prop_and_its_bounds(
    build_gateway: Callable[..., Synthesized], new_gateway: Callable[..., LlmGateway]
) -> None:
    syn = build_gateway({"authorizer_cache_ttl": Duration.minutes(5)})
    ttls = sorted(
        a["Properties"]["AuthorizerResultTtlInSeconds"]
        for a in syn.template.find_resources("AWS::ApiGateway::Authorizer").values()
    )
    assert ttls == [0, 300]
    for bad in (Duration.seconds(0), Duration.hours(2), Duration.millis(1500), 60):
        with pytest.raises(ValueError, match="LlmGateway 'TestGateway/Gateway': authorizer_cache_ttl: must"):
            new_gateway(authorizer_cache_ttl=bad)


# ----------------------------------------------------------------------------------- usage plans


def test_the_shared_plan_meters_keys_without_a_plan_of_their_own(default_gateway: Synthesized) -> None:
    syn = default_gateway
    plan = _only(syn.template, "AWS::ApiGateway::UsagePlan")
    assert plan["Throttle"] == {"RateLimit": 10, "BurstLimit": 20}
    [stage_entry] = plan["ApiStages"]
    assert stage_entry["ApiId"] == {"Ref": _logical(syn, syn.gateway.api)}
    assert stage_entry["Stage"] == {"Ref": _logical(syn, syn.gateway.api.deployment_stage)}
    key = _only(syn.template, "AWS::ApiGateway::ApiKey")
    assert key["Value"] == contract.shared_usage_identifier(syn.gateway.edge_namespace)
    assert key["Enabled"] is True
    link = _only(syn.template, "AWS::ApiGateway::UsagePlanKey")
    assert link["KeyType"] == "API_KEY"
    # The stage-wide throttle stays as the global ceiling.
    stage = _only(syn.template, "AWS::ApiGateway::Stage")
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == 50


@pytest.mark.parametrize(
    ("rpm", "rate", "burst"), [(6, 0.1, 6), (60, 1.0, 10), (120, 2.0, 20), (6000, 100.0, 1000)]
)
def test_edge_rate_spreads_the_minute_with_a_burst_the_client_can_use(
    rpm: int, rate: float, burst: int
) -> None:
    assert edge_rate(rpm) == (rate, burst)
    # Over any minute the edge lets through at most the burst plus the minute's rate: never under rpm.
    assert burst + rate * 60 >= rpm


def test_a_feature_gets_its_own_usage_plan_in_its_stack() -> None:
    built = build_feature(daily_request_quota=5000)
    gateway = built.gateway_stack.gateway
    plan = _only(built.template, "AWS::ApiGateway::UsagePlan")
    assert plan["Throttle"] == {"RateLimit": 2, "BurstLimit": 20}  # rate_limit_rpm=120
    assert plan["Quota"] == {"Limit": 5000, "Period": "DAY"}
    stage = plan["ApiStages"][0]
    assert "Fn::ImportValue" in json.dumps(stage["ApiId"])  # the gateway stack's API
    key = _only(built.template, "AWS::ApiGateway::ApiKey")
    assert key["Value"] == contract.usage_identifier(gateway.edge_namespace, "support", "ticket-summarizer")
    link = _only(built.template, "AWS::ApiGateway::UsagePlanKey")
    assert link["KeyId"] == {"Ref": built.logical_id(built.feature.node.find_child("EdgeUsageKey"))}
    # The key record says the feature has a plan, and is written only after the plan exists.
    resource = next(iter(built.template.find_resources(contract.FEATURE_KEY_RESOURCE_TYPE).values()))
    assert resource["Properties"][contract.FeatureKeyProperties.EDGE_USAGE_PLAN] == "true"
    assert built.logical_id(built.feature.usage_plan) in resource["DependsOn"]


def test_a_feature_without_a_quota_has_none() -> None:
    plan = _only(build_feature().template, "AWS::ApiGateway::UsagePlan")
    assert "Quota" not in plan


def test_a_feature_on_an_imported_gateway_uses_the_shared_plan() -> None:
    app = cdk.App()
    stack = cdk.Stack(app, "TeamApp", env=cdk.Environment(account="444455556666", region="us-east-1"))
    gateway = LlmGateway.from_gateway_attributes(
        stack,
        "Gateway",
        attributes=GatewayAttributes(
            url="https://abc.execute-api.us-east-1.amazonaws.com/prod/v1",
            key_provisioning_service_token="arn:aws:lambda:us-east-1:111122223333:function:provider",
            key_provisioner_role_arn="arn:aws:iam::111122223333:role/provisioner",
            metrics_namespace="AIFactory",
            kms_key_arn="arn:aws:kms:us-east-1:111122223333:key/abc",
        ),
    )
    feature = AiFeature(stack, "Feature", team="support", gateway=gateway, **FEATURE_PROPS)
    template = Template.from_stack(stack)
    assert feature.usage_plan is None
    assert not template.find_resources("AWS::ApiGateway::UsagePlan")
    resource = next(iter(template.find_resources(contract.FEATURE_KEY_RESOURCE_TYPE).values()))
    assert contract.FeatureKeyProperties.EDGE_USAGE_PLAN not in resource["Properties"]


def test_daily_request_quota_is_validated() -> None:
    from ai_factory.constructs.ai_feature import AiFeatureError

    with pytest.raises(AiFeatureError, match="daily_request_quota: must be a whole number greater than 0"):
        build_feature(daily_request_quota=0)


# ----------------------------------------------------------------------------------- concurrency


def test_the_gateway_function_has_reserved_concurrency(default_gateway: Synthesized) -> None:
    syn = default_gateway
    functions = syn.template.find_resources("AWS::Lambda::Function")
    props = functions[_logical(syn, syn.gateway.function)]["Properties"]
    assert props["ReservedConcurrentExecutions"] == DEFAULT_RESERVED_CONCURRENCY == 100


def test_reserved_concurrency_prop(
    build_gateway: Callable[..., Synthesized], new_gateway: Callable[..., LlmGateway]
) -> None:
    syn = build_gateway({"reserved_concurrency": None})
    props = syn.template.find_resources("AWS::Lambda::Function")[_logical(syn, syn.gateway.function)]
    assert "ReservedConcurrentExecutions" not in props["Properties"]
    assert syn.gateway.reserved_concurrency is None
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="reserved_concurrency: must be a whole number >= 1 or None"):
            new_gateway(reserved_concurrency=bad)


# ------------------------------------------------------------------------------------------- WAF


def test_waf_is_off_by_default(default_gateway: Synthesized) -> None:
    assert not default_gateway.template.find_resources("AWS::WAFv2::WebACL")
    assert not default_gateway.template.find_resources("AWS::WAFv2::WebACLAssociation")


def test_waf_on_creates_a_logged_web_acl_on_the_stage(build_gateway: Callable[..., Synthesized]) -> None:
    syn = build_gateway({"enable_waf": True, "waf_rate_limit_per_ip": 500})
    acl_id, acl = next(iter(syn.template.find_resources("AWS::WAFv2::WebACL").items()))
    props = acl["Properties"]
    assert props["Scope"] == "REGIONAL" and props["DefaultAction"] == {"Allow": {}}
    rules = {r["Name"]: r for r in props["Rules"]}
    assert set(rules) == {
        "RateLimitPerIp",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesCommonRuleSet",
    }
    rate = rules["RateLimitPerIp"]["Statement"]["RateBasedStatement"]
    assert rate == {"AggregateKeyType": "IP", "Limit": 500, "EvaluationWindowSec": 300}
    assert rules["RateLimitPerIp"]["Action"] == {"Block": {}}
    common = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
    assert {o["Name"] for o in common["RuleActionOverrides"]} == set(WAF_BODY_RULES_COUNTED)
    assert all(o["ActionToUse"] == {"Count": {}} for o in common["RuleActionOverrides"])

    association = _only(syn.template, "AWS::WAFv2::WebACLAssociation")
    assert association["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert _logical(syn, syn.gateway.api.deployment_stage) in json.dumps(association["ResourceArn"])

    logging = _only(syn.template, "AWS::WAFv2::LoggingConfiguration")
    assert logging["ResourceArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    redacted = {f["SingleHeader"]["Name"] for f in logging["RedactedFields"]}
    assert redacted == {"authorization", "x-api-key"}
    groups = [
        g["Properties"]
        for g in syn.template.find_resources("AWS::Logs::LogGroup").values()
        if str(g["Properties"].get("LogGroupName", "")).startswith("aws-waf-logs-")
    ]
    assert len(groups) == 1 and groups[0]["LogGroupName"] in json.dumps(logging["LogDestinationConfigs"])
    assert "KmsKeyId" in groups[0] and groups[0]["RetentionInDays"] == 365


def test_waf_props_are_validated(new_gateway: Callable[..., LlmGateway]) -> None:
    arn = "arn:aws:wafv2:us-east-1:111122223333:regional/webacl/central/abc"
    with pytest.raises(ValueError, match="enable_waf: creates a web ACL; pass either"):
        new_gateway(enable_waf=True, web_acl_arn=arn)
    with pytest.raises(ValueError, match="waf_rate_limit_per_ip: must be a whole number from 10"):
        new_gateway(enable_waf=True, waf_rate_limit_per_ip=5)


@pytest.mark.synth
def test_the_waf_variant_has_no_unacknowledged_nag_findings(tmp_path: Any) -> None:
    from ai_factory.catalog.model_catalog import ModelCatalog
    from ai_factory.platform.nag import apply_nag_packs
    from tests.infra.test_nag_packs import _printable, _synth

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "WafGateway", env=cdk.Environment(account="111122223333", region="us-east-1"))
    LlmGateway(stack, "Gateway", catalog=ModelCatalog.load(), enable_waf=True, reserved_concurrency=None)
    apply_nag_packs(app)
    synth = _synth(app, tmp_path)
    assert not synth.findings, _printable(synth.findings)
    assert synth.error is None
