"""LlmGateway: fine-grained assertions on what matters for security, cost and operations."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Match

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.platform.lambda_packaging import stage_gateway_asset
from aif_gateway.config import CONFIG_FILE_NAME, LEDGER_MARGIN_S, GatewayConfig

BEDROCK_ACTIONS = {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream", "bedrock:ApplyGuardrail"}


Synthesized = Any  # tests/infra/conftest.py: stack, gateway, template, resolve()


def statements(syn: Synthesized) -> list[dict[str, Any]]:
    found = []
    for resource in syn.template.find_resources("AWS::IAM::Policy").values():
        found.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    for resource in syn.template.find_resources("AWS::IAM::Role").values():
        for policy in resource["Properties"].get("Policies", []):
            found.extend(policy["PolicyDocument"]["Statement"])
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def only(syn: Synthesized, resource_type: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    found = syn.template.find_resources(resource_type, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))


def ref(syn: Synthesized, construct: Any) -> dict[str, Any]:
    return {"Ref": syn.stack.get_logical_id(construct.node.default_child)}


def arn_of(syn: Synthesized, construct: Any) -> dict[str, Any]:
    return {"Fn::GetAtt": [syn.stack.get_logical_id(construct.node.default_child), "Arn"]}


# ------------------------------------------------------------------------------------------ IAM


def test_bedrock_permissions_are_exactly_the_catalog_allow_list(default_gateway: Synthesized) -> None:
    syn = default_gateway
    bedrock = [s for s in statements(syn) if any(a.startswith("bedrock:") for a in as_list(s["Action"]))]
    actions = {a for s in bedrock for a in as_list(s["Action"])}
    assert actions == BEDROCK_ACTIONS, "no bedrock:* and nothing beyond invoke + guardrail"
    for statement in bedrock:
        assert statement["Effect"] == "Allow"
        assert "*" not in as_list(statement["Resource"])
        assert "Condition" not in statement or statement["Condition"]

    invoke = [s for s in bedrock if "bedrock:InvokeModel" in as_list(s["Action"])]
    # The catalog's models, and features' application inference profiles tagged for this gateway
    # (tests/infra/test_inference_profiles.py checks that statement).
    assert [s["Sid"] for s in invoke] == ["InvokeCatalogModels", "InvokeFeatureInferenceProfiles"]
    assert sorted(as_list(invoke[0]["Action"])) == [
        "bedrock:InvokeModel",
        "bedrock:InvokeModelWithResponseStream",
    ]
    expected = syn.resolve(
        ModelCatalog.load().bedrock_invoke_arns(Aws.PARTITION, "us-east-1", Aws.ACCOUNT_ID)
    )
    assert invoke[0]["Resource"] == expected
    rendered = json.dumps(invoke[0]["Resource"])
    assert ":bedrock:eu-" not in rendered, "a us-east-1 gateway calls us. profiles: no EU model ARNs"
    assert "inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0" in rendered
    assert ":bedrock:us-west-2::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0" in rendered
    assert "echo" not in rendered

    guardrail = [s for s in bedrock if "bedrock:ApplyGuardrail" in as_list(s["Action"])]
    assert guardrail == [
        {
            "Action": "bedrock:ApplyGuardrail",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [syn.stack.get_logical_id(syn.gateway.guardrail), "GuardrailArn"]},
            "Sid": "ApplyGatewayGuardrail",
        }
    ]


WILDCARD_RESOURCE_ACTIONS = (
    {"xray:PutTraceSegments", "xray:PutTelemetryRecords"},
    {"xray:PutSpans", "xray:PutSpansForIndexing"},
    {"aws-marketplace:ViewSubscriptions"},
    {"aws-marketplace:Subscribe"},
)


def test_only_actions_without_resource_level_permissions_use_a_wildcard_resource(
    default_gateway: Synthesized,
) -> None:
    for statement in statements(default_gateway):
        if "*" in as_list(statement["Resource"]):
            if statement.get("Sid") == "DecryptExternalProviderSecrets":
                continue  # conditioned on Secrets Manager and the catalog's secrets (test below)
            assert set(as_list(statement["Action"])) in WILDCARD_RESOURCE_ACTIONS, statement
        assert not any(a.endswith("*") for a in as_list(statement["Action"])), statement


def test_gateway_may_subscribe_only_to_the_catalogs_marketplace_models(default_gateway: Synthesized) -> None:
    """Bedrock subscribes the account to a third-party model on its first call, as the calling role."""
    gateway_role = _role_statements(default_gateway, default_gateway.gateway.runtime_role)
    by_sid = {s.get("Sid"): s for s in gateway_role}
    subscribe = by_sid["MarketplaceSubscribeCatalogModels"]
    assert subscribe["Action"] == "aws-marketplace:Subscribe" and subscribe["Resource"] == "*"
    products = subscribe["Condition"]["ForAnyValue:StringEquals"]["aws-marketplace:ProductId"]
    # The default catalog routes Claude Haiku 4.5 and Sonnet 4.5 (Anthropic sells through Marketplace).
    assert sorted(as_list(products)) == ["prod-mxcfnwvpd6kb4", "prod-xdkflymybwmvi"]
    assert by_sid["MarketplaceViewSubscriptions"]["Action"] == "aws-marketplace:ViewSubscriptions"
    assert "Condition" not in by_sid["MarketplaceViewSubscriptions"]
    replay = _role_statements(default_gateway, default_gateway.gateway.spill_replay_function.role)
    assert not any("aws-marketplace" in json.dumps(s) for s in replay), "the replay never calls a model"


def test_gateway_reads_exactly_the_external_providers_secrets(default_gateway: Synthesized) -> None:
    """The catalog routes OpenAI, Anthropic and Mistral models: their API keys, and nothing else."""
    by_sid = {
        s.get("Sid"): s for s in _role_statements(default_gateway, default_gateway.gateway.runtime_role)
    }
    read = by_sid["ReadExternalProviderSecrets"]
    assert read["Action"] == "secretsmanager:GetSecretValue"
    names = sorted(json.dumps(r).split(":secret:")[1].split('"')[0] for r in as_list(read["Resource"]))
    assert names == [f"ai-factory/providers/{p}-??????" for p in ("anthropic", "mistral", "openai")]
    decrypt = by_sid["DecryptExternalProviderSecrets"]
    assert decrypt["Action"] == "kms:Decrypt" and decrypt["Resource"] == "*"
    assert "secretsmanager." in json.dumps(decrypt["Condition"]["StringEquals"]["kms:ViaService"])
    assert decrypt["Condition"]["StringLike"]["kms:EncryptionContext:SecretARN"] == read["Resource"]
    replay = _role_statements(default_gateway, default_gateway.gateway.spill_replay_function.role)
    assert not any("secretsmanager" in json.dumps(s) for s in replay)


def test_gateway_reads_keys_but_cannot_write_them(default_gateway: Synthesized) -> None:
    syn = default_gateway
    keys_arn = arn_of(syn, syn.gateway.keys_table)
    on_keys = [s for s in statements(syn) if keys_arn in as_list(s["Resource"])]
    actions = {a for s in on_keys for a in as_list(s["Action"])}
    assert actions == {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"}


def test_no_aws_managed_policies(default_gateway: Synthesized) -> None:
    for role in default_gateway.template.find_resources("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]


def test_grant_manage_keys_gives_read_write_and_kms(build_gateway: Callable[..., Synthesized]) -> None:
    def add_admin(stack: cdk.Stack, gateway: Any) -> None:
        admin = iam.Role(stack, "Admin", assumed_by=iam.AccountRootPrincipal())
        gateway.grant_manage_keys(admin)

    syn = build_gateway(extra=add_admin)
    policy = only(syn, "AWS::IAM::Policy", {"Roles": [{"Ref": Match.string_like_regexp("^Admin")}]})
    actions = {a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in as_list(s["Action"])}
    assert {"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query", "kms:Decrypt"} <= actions


# ------------------------------------------------------------------------------------------ encryption


def test_tables_are_encrypted_recoverable_and_retained(default_gateway: Synthesized) -> None:
    syn = default_gateway
    key_arn = arn_of(syn, syn.gateway.key)
    tables = syn.template.find_resources("AWS::DynamoDB::Table")
    assert len(tables) == 2
    for table in tables.values():
        props = table["Properties"]
        assert props["SSESpecification"] == {"KMSMasterKeyId": key_arn, "SSEEnabled": True, "SSEType": "KMS"}
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert table["DeletionPolicy"] == "Retain"
        assert table["UpdateReplacePolicy"] == "Retain"


def test_table_schemas_match_the_runtime_contract(default_gateway: Synthesized) -> None:
    syn = default_gateway
    syn.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "key_hash", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "by-key-id",
                    "KeySchema": [{"AttributeName": "key_id", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        },
    )
    syn.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
        },
    )


def test_queues_are_kms_encrypted_ssl_only_with_dead_letter_queue(default_gateway: Synthesized) -> None:
    syn = default_gateway
    key_arn = arn_of(syn, syn.gateway.key)
    queues = syn.template.find_resources("AWS::SQS::Queue")
    assert len(queues) == 3  # spill queue, its dead-letter queue, the usage recovery's dead-letter queue
    for queue in queues.values():
        assert queue["Properties"]["KmsMasterKeyId"] == key_arn
    spill = queues[syn.stack.get_logical_id(syn.gateway.spill_queue.node.default_child)]
    assert spill["Properties"]["RedrivePolicy"] == {
        "deadLetterTargetArn": arn_of(syn, syn.gateway.spill_dead_letter_queue),
        "maxReceiveCount": 5,
    }
    policies = syn.template.find_resources("AWS::SQS::QueuePolicy")
    assert len(policies) == 3
    for policy in policies.values():
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )


def test_log_groups_are_encrypted_with_retention(default_gateway: Synthesized) -> None:
    syn = default_gateway
    groups = syn.template.find_resources("AWS::Logs::LogGroup")
    # gateway, spill replay, usage recovery, edge authorizer, API access, API execution
    assert len(groups) == 6
    for group in groups.values():
        assert group["Properties"]["KmsKeyId"] == arn_of(syn, syn.gateway.key)
        assert group["Properties"]["RetentionInDays"] == 365


def test_key_rotates_and_lets_cloudwatch_logs_use_it(default_gateway: Synthesized) -> None:
    key = only(default_gateway, "AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    logs_statement = next(
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Sid") == "AllowCloudWatchLogsInThisAccount"
    )
    assert "logs." in json.dumps(logs_statement["Principal"])
    assert "kms:EncryptionContext:aws:logs:arn" in logs_statement["Condition"]["ArnLike"]


@pytest.mark.parametrize(("retention", "days"), [(30, 30), (logs.RetentionDays.TEN_YEARS, 3653)])
def test_log_retention_prop(build_gateway: Callable[..., Synthesized], retention: Any, days: int) -> None:
    syn = build_gateway({"log_retention": retention})
    for group in syn.template.find_resources("AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] == days


# ------------------------------------------------------------------------------------------ API


def test_stage_throttling_logging_and_tracing(default_gateway: Synthesized) -> None:
    syn = default_gateway
    stage = only(syn, "AWS::ApiGateway::Stage")["Properties"]
    assert stage["StageName"] == "prod"
    assert stage["TracingEnabled"] is True
    assert stage["MethodSettings"] == [
        {
            "DataTraceEnabled": False,
            "HttpMethod": "*",
            "LoggingLevel": "ERROR",
            "MetricsEnabled": True,
            "ResourcePath": "/*",
            "ThrottlingBurstLimit": 100,
            "ThrottlingRateLimit": 50,
        }
    ]
    access = stage["AccessLogSetting"]
    assert access["DestinationArn"]["Fn::GetAtt"][1] == "Arn"
    fields = json.loads(access["Format"])
    assert {"requestId", "ip", "httpMethod", "status", "responseLength"} <= set(fields)


def test_guardrail_scope_prop_sets_what_the_runtime_reads(build_gateway: Callable[..., Synthesized]) -> None:
    syn = build_gateway({"guardrail_scope": "all"})
    fn = only(syn, "AWS::Lambda::Function", {"Handler": "aif_gateway/run.sh"})["Properties"]
    assert fn["Environment"]["Variables"]["AIF_GUARDRAIL_SCOPE"] == "all"


def test_custom_throttling_and_stage_name(build_gateway: Callable[..., Synthesized]) -> None:
    syn = build_gateway({"throttling_rate_limit": 7.5, "throttling_burst_limit": 15, "stage_name": "v2"})
    stage = only(syn, "AWS::ApiGateway::Stage")["Properties"]
    assert stage["StageName"] == "v2"
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == 7.5
    assert stage["MethodSettings"][0]["ThrottlingBurstLimit"] == 15


def test_execution_log_group_is_precreated_for_the_stage(default_gateway: Synthesized) -> None:
    syn = default_gateway
    group = only(syn, "AWS::Logs::LogGroup", {"LogGroupName": Match.any_value()})
    name = json.dumps(group["Properties"]["LogGroupName"])
    assert "API-Gateway-Execution-Logs_" in name and "/prod" in name
    stage = only(syn, "AWS::ApiGateway::Stage")
    assert any(d.startswith("GatewayExecutionLogs") for d in stage["DependsOn"])


def _paths(syn: Synthesized) -> dict[str, str]:
    """Logical ID of each API resource -> its full path (``/v1/messages/count_tokens``)."""
    resources = syn.template.find_resources("AWS::ApiGateway::Resource")

    def path(logical_id: str) -> str:
        props = resources[logical_id]["Properties"]
        parent = props["ParentId"]
        prefix = path(parent["Ref"]) if "Ref" in parent else ""
        return f"{prefix}/{props['PathPart']}"

    return {logical_id: path(logical_id) for logical_id in resources}


def _methods(syn: Synthesized) -> dict[tuple[str, str], dict[str, Any]]:
    paths = _paths(syn)
    return {
        (m["Properties"]["HttpMethod"], paths[m["Properties"]["ResourceId"]["Ref"]]): m["Properties"]
        for m in syn.template.find_resources("AWS::ApiGateway::Method").values()
    }


def test_every_route_streams_from_the_gateway_function(default_gateway: Synthesized) -> None:
    syn = default_gateway
    methods = _methods(syn)
    assert set(methods) == {
        ("ANY", "/v1/{proxy+}"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/count_tokens"),
        ("POST", "/v1/responses"),
    }
    function_id = syn.stack.get_logical_id(syn.gateway.function.node.default_child)
    for route, method in methods.items():
        integration = method["Integration"]
        # Keys are checked at the edge (and again by the gateway): see tests/infra/test_gateway_edge.py.
        assert method["AuthorizationType"] == "CUSTOM", route
        assert method["ApiKeyRequired"] is True, route
        assert integration["Type"] == "AWS_PROXY", route
        assert integration["ResponseTransferMode"] == "STREAM", route
        # API Gateway calls InvokeWithResponseStream on the gateway function.
        uri = json.dumps(integration["Uri"])
        assert "/response-streaming-invocations" in uri and function_id in uri, route
        assert integration["TimeoutInMillis"] == 600_000, route
    # One invoke permission for the whole API, not one per method.
    permissions = syn.template.find_resources(
        "AWS::Lambda::Permission",
        {
            "Properties": {
                "Principal": "apigateway.amazonaws.com",
                "FunctionName": {"Fn::GetAtt": [function_id, "Arn"]},
            }
        },
    )
    assert len(permissions) == 1


def test_streaming_the_old_template_was_buffered(default_gateway: Synthesized) -> None:
    """No method is left in the default BUFFERED mode (which would receive the adapter's framing)."""
    for route, method in _methods(default_gateway).items():
        assert method["Integration"].get("ResponseTransferMode") == "STREAM", route


def test_proxy_route_is_regional_without_resource_policy(default_gateway: Synthesized) -> None:
    syn = default_gateway
    api = only(syn, "AWS::ApiGateway::RestApi")["Properties"]
    assert api["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert "Policy" not in api


def test_private_endpoint_allows_only_the_vpc_endpoint(private_gateway: Synthesized) -> None:
    syn = private_gateway
    assert syn.vpc_endpoint is not None
    endpoint_id = ref(syn, syn.vpc_endpoint)
    api = only(syn, "AWS::ApiGateway::RestApi")["Properties"]
    assert api["EndpointConfiguration"] == {"Types": ["PRIVATE"], "VpcEndpointIds": [endpoint_id]}
    by_sid = {s["Sid"]: s for s in api["Policy"]["Statement"]}
    assert by_sid["DenyOutsideVpcEndpoint"]["Effect"] == "Deny"
    assert by_sid["DenyOutsideVpcEndpoint"]["Condition"] == {
        "StringNotEquals": {"aws:SourceVpce": endpoint_id}
    }
    assert by_sid["AllowThroughVpcEndpoint"]["Condition"] == {"StringEquals": {"aws:SourceVpce": endpoint_id}}
    assert all(s["Action"] == "execute-api:Invoke" for s in by_sid.values())


def test_optional_waf_and_account_logging_role(build_gateway: Callable[..., Synthesized]) -> None:
    acl = "arn:aws:wafv2:us-east-1:111122223333:regional/webacl/gw/abc"
    syn = build_gateway({"web_acl_arn": acl, "configure_account_logging_role": True})
    syn.template.has_resource_properties("AWS::WAFv2::WebACLAssociation", {"WebACLArn": acl})
    account = only(syn, "AWS::ApiGateway::Account")["Properties"]
    role_id = account["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    role = syn.template.find_resources("AWS::IAM::Role")[role_id]
    assert "ManagedPolicyArns" not in role["Properties"]
    assert "apigateway.amazonaws.com" in json.dumps(role["Properties"]["AssumeRolePolicyDocument"])


def test_account_logging_setting_waits_for_the_roles_policy(
    build_gateway: Callable[..., Synthesized],
) -> None:
    """API Gateway validates the role's permissions when the setting is applied: depending on the role's
    ARN alone lets CloudFormation apply it before the policy exists (first deploys fail)."""
    syn = build_gateway({"configure_account_logging_role": True})
    account = only(syn, "AWS::ApiGateway::Account")
    role_id = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    policies = syn.template.find_resources("AWS::IAM::Policy")
    role_policy = [pid for pid, p in policies.items() if {"Ref": role_id} in p["Properties"]["Roles"]]
    assert len(role_policy) == 1
    assert role_policy[0] in account.get("DependsOn", [])


def test_default_has_no_account_level_settings(default_gateway: Synthesized) -> None:
    default_gateway.template.resource_count_is("AWS::ApiGateway::Account", 0)
    default_gateway.template.resource_count_is("AWS::WAFv2::WebACLAssociation", 0)


def test_outputs(default_gateway: Synthesized) -> None:
    outputs = default_gateway.template.to_json()["Outputs"]
    assert {"GatewayApiUrl", "GatewayKeysTableName", "GatewayUsageTableName"} <= set(outputs)
    assert "/v1" in json.dumps(outputs["GatewayApiUrl"]["Value"])


def test_metrics(default_gateway: Synthesized) -> None:
    gateway = default_gateway.gateway
    latency, errors = gateway.metric_latency(), gateway.metric_errors()
    assert (latency.namespace, latency.metric_name, latency.statistic) == ("AWS/ApiGateway", "Latency", "p99")
    assert (errors.metric_name, errors.statistic) == ("5XXError", "Sum")
    assert set(errors.dimensions or {}) == {"ApiName", "Stage"}


# ------------------------------------------------------------------------------------------ guardrail


def test_guardrail_filters_pii_and_pruned_versions(default_gateway: Synthesized) -> None:
    syn = default_gateway
    props = only(syn, "AWS::Bedrock::Guardrail")["Properties"]
    filters = {
        f["Type"]: (f["InputStrength"], f["OutputStrength"])
        for f in props["ContentPolicyConfig"]["FiltersConfig"]
    }
    assert set(filters) == {"HATE", "INSULTS", "SEXUAL", "VIOLENCE", "MISCONDUCT", "PROMPT_ATTACK"}
    assert filters["PROMPT_ATTACK"] == ("HIGH", "NONE")
    pii = {e["Type"]: e["Action"] for e in props["SensitiveInformationPolicyConfig"]["PiiEntitiesConfig"]}
    assert {k: pii[k] for k in ("EMAIL", "PHONE", "NAME", "ADDRESS")} == dict.fromkeys(
        ("EMAIL", "PHONE", "NAME", "ADDRESS"), "ANONYMIZE"
    )
    assert {pii[k] for k in ("CREDIT_DEBIT_CARD_NUMBER", "AWS_ACCESS_KEY", "AWS_SECRET_KEY")} == {"BLOCK"}
    assert props["BlockedInputMessaging"] and props["BlockedOutputsMessaging"]
    # Contextual grounding: applies only to content qualified grounding_source/query (chat retrieval).
    grounding = {f["Type"]: f["Threshold"] for f in props["ContextualGroundingPolicyConfig"]["FiltersConfig"]}
    assert grounding == {"GROUNDING": 0.75, "RELEVANCE": 0.5}

    # A replaced version is deleted in the update's cleanup: versions never reach the quota.
    version = only(syn, "AWS::Bedrock::GuardrailVersion")
    assert version["DeletionPolicy"] == "Delete" and version["UpdateReplacePolicy"] == "Delete"
    guardrail_id = syn.stack.get_logical_id(syn.gateway.guardrail)
    assert version["Properties"]["GuardrailIdentifier"] == {"Fn::GetAtt": [guardrail_id, "GuardrailId"]}


def test_guardrail_policy_change_creates_a_new_version(
    default_gateway: Synthesized, build_gateway: Callable[..., Synthesized]
) -> None:
    default = only(default_gateway, "AWS::Bedrock::GuardrailVersion")["Properties"]["Description"]
    strict = build_gateway({"guardrail_pii_actions": {"EMAIL": "BLOCK"}})
    changed = only(strict, "AWS::Bedrock::GuardrailVersion")["Properties"]["Description"]
    assert changed != default


# ------------------------------------------------------------------------------------------ Lambda


def test_gateway_function(default_gateway: Synthesized) -> None:
    syn = default_gateway
    fn = only(syn, "AWS::Lambda::Function", {"Handler": "aif_gateway/run.sh"})["Properties"]
    assert fn["Runtime"] == "python3.14"
    assert fn["Architectures"] == ["arm64"]
    assert fn["TracingConfig"] == {"Mode": "Active"}
    assert fn["Timeout"] == 600 and fn["MemorySize"] == 1024
    layers = [json.dumps(layer) for layer in fn["Layers"]]
    assert len(layers) == 2
    assert ":017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-arm64:38" in layers[0]
    assert ":753240598075:layer:LambdaAdapterLayerArm64:27" in layers[1]
    for layer in layers:  # the stack's partition, concrete region
        assert '{"Ref": "AWS::Partition"}' in layer and ":lambda:us-east-1:" in layer
    env = fn["Environment"]["Variables"]
    # The gateway's HTTP server (run.sh) behind the Lambda Web Adapter, streaming.
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["AWS_LWA_PORT"] == "8080"
    assert env["AWS_LWA_READINESS_CHECK_PROTOCOL"] == "tcp"  # no probe request through the gateway
    assert env["AIF_FUNCTION_TIMEOUT_S"] == "600"
    assert env["POWERTOOLS_SERVICE_NAME"] == "ai-factory-gateway"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "AIFactory"
    assert env["AIF_KEYS_TABLE"] == ref(syn, syn.gateway.keys_table)
    assert env["AIF_USAGE_TABLE"] == ref(syn, syn.gateway.usage_table)
    assert env["AIF_SPILL_QUEUE_URL"] == ref(syn, syn.gateway.spill_queue)
    guardrail_id = syn.stack.get_logical_id(syn.gateway.guardrail)
    version_id = syn.stack.get_logical_id(syn.gateway.guardrail_version)
    assert env["AIF_GUARDRAIL_ID"] == {"Fn::GetAtt": [guardrail_id, "GuardrailId"]}
    assert env["AIF_GUARDRAIL_VERSION"] == {"Fn::GetAtt": [version_id, "Version"]}
    assert env["AIF_GUARDRAIL_SCOPE"] == "latest"  # the newest user turn and its tool results
    assert fn["LoggingConfig"]["LogGroup"] == ref(syn, syn.gateway.function.log_group)


def test_gateway_exports_opentelemetry_spans_to_xray_with_least_privilege(
    default_gateway: Synthesized,
) -> None:
    """The function exports its spans to X-Ray's OTLP endpoint (AIF_TRACES_EXPORTER=xray) with exactly the
    two span-ingestion actions; the spill replay, which traces nothing, gets neither."""
    syn = default_gateway
    fn = only(syn, "AWS::Lambda::Function", {"Handler": "aif_gateway/run.sh"})["Properties"]
    assert fn["Environment"]["Variables"]["AIF_TRACES_EXPORTER"] == "xray"
    by_sid = {s.get("Sid"): s for s in _role_statements(syn, syn.gateway.runtime_role)}
    assert by_sid["ExportSpansToXRayOtlpEndpoint"] == {
        "Sid": "ExportSpansToXRayOtlpEndpoint",
        "Effect": "Allow",
        "Action": ["xray:PutSpans", "xray:PutSpansForIndexing"],
        "Resource": "*",
    }
    replay = _role_statements(syn, syn.gateway.spill_replay_function.role)
    assert not any("xray:PutSpans" in json.dumps(s) for s in replay)
    replay_fn = only(syn, "AWS::Lambda::Function", {"Handler": "aif_gateway.spill_replay.handler"})
    assert "AIF_TRACES_EXPORTER" not in replay_fn["Properties"]["Environment"]["Variables"]


def test_gateway_asset_ships_the_opentelemetry_api_and_sdk(tmp_path: Path) -> None:
    """Neither the Lambda runtime nor the Powertools layer has OpenTelemetry: the asset carries the pinned,
    pure-Python distributions, with the entry points the API loads its context from."""
    staged = stage_gateway_asset(GatewayConfig(routes={}), out_root=tmp_path)
    assert (staged / "opentelemetry" / "trace" / "__init__.py").is_file()
    assert (staged / "opentelemetry" / "sdk" / "trace" / "export" / "__init__.py").is_file()
    assert (staged / "opentelemetry" / "semconv" / "__init__.py").is_file()
    entry_points = next(staged.glob("opentelemetry_api-*.dist-info/entry_points.txt")).read_text()
    assert "contextvars_context" in entry_points
    assert not list(staged.rglob("*.so")) and not list(staged.rglob("__pycache__"))
    assert not (staged / "opentelemetry" / "proto").exists()  # only the three distributions
    assert not list(staged.glob("*.dist-info/RECORD"))  # installer files would vary the asset hash


def test_spill_replay_function_uses_partial_batch_responses(default_gateway: Synthesized) -> None:
    syn = default_gateway
    fn = only(syn, "AWS::Lambda::Function", {"Handler": "aif_gateway.spill_replay.handler"})["Properties"]
    assert fn["Runtime"] == "python3.14"
    assert set(fn["Environment"]["Variables"]) == {
        "AIF_USAGE_TABLE",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
    }
    mapping = only(syn, "AWS::Lambda::EventSourceMapping")["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["EventSourceArn"] == arn_of(syn, syn.gateway.spill_queue)


def test_layer_arn_overrides(build_gateway: Callable[..., Synthesized]) -> None:
    arn = "arn:aws-cn:lambda:cn-north-1:498634801083:layer:AWSLambdaPowertoolsPythonV3-python314-arm64:38"
    adapter = "arn:aws-cn:lambda:cn-north-1:041581134020:layer:LambdaAdapterLayerArm64:27"
    syn = build_gateway({"powertools_layer_arn": arn, "web_adapter_layer_arn": adapter})
    fn = only(syn, "AWS::Lambda::Function", {"Handler": "aif_gateway/run.sh"})
    assert fn["Properties"]["Layers"] == [arn, adapter]
    replay = only(syn, "AWS::Lambda::Function", {"Handler": "aif_gateway.spill_replay.handler"})
    assert replay["Properties"]["Layers"] == [arn], "the replay is a plain SQS handler: no adapter"


# ------------------------------------------------------------------------------------------ timeouts


def test_one_timeout_setting_orders_every_limit(build_gateway: Callable[..., Synthesized]) -> None:
    """API >= Lambda >= request deadline + ledger margin, all from ``timeout``."""
    for minutes, seconds in ((None, 600), (3, 180), (15, 900)):
        syn = build_gateway({} if minutes is None else {"timeout": cdk.Duration.minutes(minutes)})
        fn = only(syn, "AWS::Lambda::Function", {"Handler": "aif_gateway/run.sh"})["Properties"]
        integration_ms = {m["Integration"]["TimeoutInMillis"] for m in _methods(syn).values()}
        staged = stage_gateway_asset(syn.gateway.config) / "aif_gateway" / CONFIG_FILE_NAME
        deadline = GatewayConfig.load(staged).request_deadline_s
        assert integration_ms == {seconds * 1000}
        assert fn["Timeout"] == seconds
        assert fn["Environment"]["Variables"]["AIF_FUNCTION_TIMEOUT_S"] == str(seconds)
        assert deadline == seconds - LEDGER_MARGIN_S
        assert max(integration_ms) / 1000 >= fn["Timeout"] >= deadline + LEDGER_MARGIN_S
        timeouts = syn.gateway.timeouts
        assert timeouts.integration.to_seconds() >= timeouts.function.to_seconds()
        assert timeouts.function.to_seconds() >= timeouts.request_deadline_s + timeouts.ledger_margin_s


@pytest.mark.parametrize(
    "timeout",
    [cdk.Duration.seconds(29), cdk.Duration.minutes(16), cdk.Duration.millis(90_500), 600],
)
def test_timeout_is_validated(new_gateway: Callable[..., Any], timeout: Any) -> None:
    with pytest.raises(ValueError) as info:
        new_gateway(timeout=timeout)
    assert str(info.value).startswith("LlmGateway 'TestGateway/Gateway': timeout: "), str(info.value)


def test_unknown_region_warns_to_pass_layer_arns() -> None:
    from aws_cdk.assertions import Annotations

    from ai_factory.constructs.gateway.llm_gateway import LlmGateway

    stack = cdk.Stack(cdk.App(), "Elsewhere", env=cdk.Environment(account="111122223333", region="xx-moon-1"))
    LlmGateway(stack, "Gateway", catalog=ModelCatalog.load())
    warnings = Annotations.from_stack(stack).find_warning(
        "*", Match.string_like_regexp("not known to be published in xx-moon-1")
    )
    assert warnings


def test_staged_asset_holds_code_and_catalog_config(tmp_path: Path) -> None:
    config = ModelCatalog.load().gateway_config()
    first = stage_gateway_asset(config, out_root=tmp_path)
    assert stage_gateway_asset(config, out_root=tmp_path) == first, "deterministic"
    staged = first / "aif_gateway"
    assert (staged / "config.py").is_file()
    assert GatewayConfig.load(staged / CONFIG_FILE_NAME) == config
    assert not list(first.rglob("__pycache__")) and not list(first.rglob("*.pyc"))
    other = stage_gateway_asset(ModelCatalog.load().gateway_config(model_timeout_s=5), out_root=tmp_path)
    assert other != first


def test_staged_start_script_keeps_its_execute_bit(tmp_path: Path) -> None:
    """The Lambda Web Adapter executes the handler (run.sh): the staged copy must be executable."""
    staged = stage_gateway_asset(ModelCatalog.load().gateway_config(), out_root=tmp_path) / "aif_gateway"
    assert os.access(staged / "run.sh", os.X_OK)
    assert not os.access(staged / "config.py", os.X_OK)


# ------------------------------------------------------------------------------------------ validation


class _FakeEndpoint:
    """Only the type matters: validation runs before anything reads the endpoint."""


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"endpoint_type": "private"}, "vpc_endpoint"),
        ({"endpoint_type": "edge"}, "endpoint_type"),
        ({"vpc_endpoint": _FakeEndpoint()}, "vpc_endpoint"),
        ({"throttling_rate_limit": 0}, "throttling_rate_limit"),
        ({"throttling_rate_limit": -5}, "throttling_rate_limit"),
        ({"throttling_burst_limit": 0}, "throttling_burst_limit"),
        ({"throttling_burst_limit": 2.5}, "throttling_burst_limit"),
        ({"log_retention": 42}, "log_retention"),
        ({"log_retention": logs.RetentionDays.INFINITE}, "log_retention"),
        ({"log_retention": True}, "log_retention"),
        ({"memory_size": 64}, "memory_size"),
        ({"stage_name": "prod stage"}, "stage_name"),
        ({"powertools_layer_version": 0}, "powertools_layer_version"),
        ({"guardrail_content_filters": {"HATE": ("HUGE", "HIGH")}}, "guardrail_content_filters['HATE']"),
        ({"guardrail_pii_actions": {"EMAIL": "DROP"}}, "guardrail_pii_actions['EMAIL']"),
        ({"guardrail_scope": "everything"}, "guardrail_scope"),
    ],
)
def test_invalid_props_name_construct_and_field(
    new_gateway: Callable[..., Any], props: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError) as info:
        new_gateway(**props)
    assert str(info.value).startswith(f"LlmGateway 'TestGateway/Gateway': {field}: "), str(info.value)


# ---------------------------------------------------------------------------------- prompt view bucket


def _prompt_object_arn(syn: Synthesized) -> dict[str, Any]:
    bucket = syn.stack.get_logical_id(syn.gateway.prompts_bucket.node.default_child)
    return {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/prompts.json"]]}


def _role_statements(syn: Synthesized, role: Any) -> list[dict[str, Any]]:
    role_ref = {"Ref": syn.stack.get_logical_id(role.node.default_child)}
    found = []
    for policy in syn.template.find_resources("AWS::IAM::Policy").values():
        if role_ref in policy["Properties"]["Roles"]:
            found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def test_prompts_bucket_is_kms_encrypted_private_versioned_logged_and_retained(
    default_gateway: Synthesized,
) -> None:
    syn = default_gateway
    bucket_id = syn.stack.get_logical_id(syn.gateway.prompts_bucket.node.default_child)
    bucket = syn.template.to_json()["Resources"][bucket_id]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {
            "BucketKeyEnabled": True,
            "ServerSideEncryptionByDefault": {
                "KMSMasterKeyID": arn_of(syn, syn.gateway.key),
                "SSEAlgorithm": "aws:kms",
            },
        }
    ]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    logs_bucket = props["LoggingConfiguration"]["DestinationBucketName"]
    assert props["LoggingConfiguration"]["LogFilePrefix"] == "prompts-bucket/"
    bucket_arn = {"Fn::GetAtt": [bucket_id, "Arn"]}
    policies = syn.template.find_resources("AWS::S3::BucketPolicy")
    own = [p for p in policies.values() if p["Properties"]["Bucket"] == {"Ref": bucket_id}]
    assert len(own) == 1
    deny = own[0]["Properties"]["PolicyDocument"]["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # The log bucket accepts logs only from the logging service, for this bucket, into the prefix.
    log_policy = next(p for p in policies.values() if p["Properties"]["Bucket"] == logs_bucket)
    delivery = [
        s
        for s in log_policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Principal") == {"Service": "logging.s3.amazonaws.com"}
    ]
    assert len(delivery) == 1 and delivery[0]["Condition"]["ArnLike"] == {"aws:SourceArn": bucket_arn}


def test_gateway_may_read_exactly_the_prompt_view_object(default_gateway: Synthesized) -> None:
    syn = default_gateway
    bucket = syn.gateway.prompts_bucket
    bucket_arn = arn_of(syn, bucket)
    on_bucket = [
        s
        for s in statements(syn)
        if any(json.dumps(bucket_arn) in json.dumps(r) for r in as_list(s["Resource"]))
        and any(a.startswith("s3:") for a in as_list(s["Action"]))
        and s.get("Principal") is None
    ]
    assert sorted((s["Sid"], s["Action"]) for s in on_bucket) == [
        ("ReadPromptView", "s3:GetObject"),
        ("SeeWhetherPromptViewExists", "s3:ListBucket"),
    ]
    read = next(s for s in on_bucket if s["Sid"] == "ReadPromptView")
    assert read["Resource"] == _prompt_object_arn(syn)
    assert next(s for s in on_bucket if s["Sid"] == "ReadPromptView") in _role_statements(
        syn, syn.gateway.function.role
    )
    decrypt = [
        s
        for s in _role_statements(syn, syn.gateway.function.role)
        if s.get("Sid") == "DecryptPromptViewThroughS3"
    ]
    assert decrypt == [
        {
            "Action": "kms:Decrypt",
            "Condition": {
                "StringEquals": {
                    "kms:ViaService": {"Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
                }
            },
            "Effect": "Allow",
            "Resource": arn_of(syn, syn.gateway.key),
            "Sid": "DecryptPromptViewThroughS3",
        }
    ]
    # The spill replay reads nothing from S3.
    replay = _role_statements(syn, syn.gateway.spill_replay_function.role)
    assert not any(a.startswith("s3:") for s in replay for a in as_list(s["Action"]))


def test_gateway_function_gets_the_prompt_view_uri(default_gateway: Synthesized) -> None:
    syn = default_gateway
    fn = only(syn, "AWS::Lambda::Function", {"Handler": "aif_gateway/run.sh"})["Properties"]
    expected = {"Fn::Join": ["", ["s3://", ref(syn, syn.gateway.prompts_bucket), "/prompts.json"]]}
    assert fn["Environment"]["Variables"]["AIF_PROMPT_VIEW_URI"] == expected
    outputs = syn.template.to_json()["Outputs"]
    assert outputs["GatewayPromptViewUri"]["Value"] == expected


def test_grant_publish_prompts_writes_only_the_view(build_gateway: Callable[..., Synthesized]) -> None:
    def add_publisher(stack: cdk.Stack, gateway: Any) -> None:
        gateway.grant_publish_prompts(iam.Role(stack, "Publisher", assumed_by=iam.AccountRootPrincipal()))

    syn = build_gateway(extra=add_publisher)
    policy = only(syn, "AWS::IAM::Policy", {"Roles": [{"Ref": Match.string_like_regexp("^Publisher")}]})
    found = policy["Properties"]["PolicyDocument"]["Statement"]
    s3_statements = [s for s in found if any(a.startswith("s3:") for a in as_list(s["Action"]))]
    assert [(s["Action"], s["Resource"]) for s in s3_statements] == [
        ("s3:PutObject", _prompt_object_arn(syn))
    ]
    kms_statements = [s for s in found if any(a.startswith("kms:") for a in as_list(s["Action"]))]
    assert len(kms_statements) == 1
    assert sorted(as_list(kms_statements[0]["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert kms_statements[0]["Resource"] == arn_of(syn, syn.gateway.key)
    assert "kms:ViaService" in kms_statements[0]["Condition"]["StringEquals"]


def test_tables_have_the_schemas_the_runtime_stores_use(default_gateway: Synthesized) -> None:
    """The runtime's table schemas (what its queries and tests assume) are the deployed ones."""
    from aif_gateway.dynamo_store import KEYS_TABLE_SCHEMA, USAGE_TABLE_SCHEMA

    def schema(props: dict[str, Any]) -> dict[str, Any]:
        def by_name(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
            return sorted(items, key=lambda item: item[key])

        return {
            "AttributeDefinitions": by_name(props["AttributeDefinitions"], "AttributeName"),
            "KeySchema": props["KeySchema"],
            "GlobalSecondaryIndexes": by_name(
                [
                    {"IndexName": g["IndexName"], "KeySchema": g["KeySchema"], "Projection": g["Projection"]}
                    for g in props.get("GlobalSecondaryIndexes", [])
                ],
                "IndexName",
            ),
        }

    syn = default_gateway
    for table, expected in (
        (syn.gateway.keys_table, KEYS_TABLE_SCHEMA),
        (syn.gateway.usage_table, USAGE_TABLE_SCHEMA),
    ):
        logical_id = syn.stack.get_logical_id(table.node.default_child)  # type: ignore[arg-type]
        props = syn.template.to_json()["Resources"][logical_id]["Properties"]
        assert schema(props) == schema(expected)
    usage_id = syn.stack.get_logical_id(syn.gateway.usage_table.node.default_child)  # type: ignore[arg-type]
    usage = syn.template.to_json()["Resources"][usage_id]["Properties"]
    assert usage["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
