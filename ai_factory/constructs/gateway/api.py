"""The gateway's REST API: the generation routes (``STREAMING_ROUTES``) and ``/v1/{proxy+}`` for the rest,
every one a Lambda proxy integration in ``STREAM`` transfer mode to the gateway function (which serves
HTTP behind the Lambda Web Adapter); regional or private, throttled per stage, with JSON access logs,
execution logs without bodies and X-Ray tracing; optionally a WAF web ACL and the account's API Gateway
logging role.

Every method has a Lambda authorizer of its front door and requires an API key, which the authorizer
supplies (key source ``AUTHORIZER``): callers authenticate with the gateway's own keys at the edge, each
feature is throttled by its usage plan, and the gateway function checks the key again (``edge``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import Aws, Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from ai_factory.constructs.gateway.edge import ANTHROPIC_ROUTES, EdgeAuthorizers, add_gateway_responses
from ai_factory.platform.nag import acknowledge
from ai_factory.platform.name_prefix import prefixed_unique_name


@dataclass(frozen=True)
class ApiOptions:
    """The API's shape (validated by ``LlmGateway``)."""

    endpoint_type: str
    vpc_endpoint: ec2.IVpcEndpoint | None
    stage_name: str
    throttling_rate_limit: float
    throttling_burst_limit: int
    configure_account_logging_role: bool
    web_acl_arn: str | None
    integration_timeout: Duration
    """How long API Gateway keeps a streamed response open (``STREAM`` allows up to 15 minutes)."""


STREAMING_ROUTES = ("chat/completions", "messages", "messages/count_tokens", "responses")
"""The generation routes under ``/v1`` (OpenAI Chat Completions and Responses, Anthropic Messages), each
a ``POST`` method of its own so API Gateway's per-method metrics and logs name them."""

MAX_STREAM_TIMEOUT = Duration.minutes(15)
"""API Gateway keeps a streamed response open at most 15 minutes (``BUFFERED``: 29 seconds)."""


def build_rest_api(
    scope: Construct,
    function: lambda_.IFunction,
    options: ApiOptions,
    log_group: Callable[[str, str | None], logs.LogGroup],
    authorizers: EdgeAuthorizers,
) -> tuple[apigw.RestApi, list[apigw.Method]]:
    """``Api`` in ``scope`` with its log groups (made by ``log_group(id, name)``) and its methods, each
    behind its front door's authorizer (``authorizers``)."""
    access_logs = log_group("AccessLogs", None)
    policy = None
    if options.endpoint_type == "private":
        assert options.vpc_endpoint is not None
        endpoint_configuration = apigw.EndpointConfiguration(
            types=[apigw.EndpointType.PRIVATE], vpc_endpoints=[options.vpc_endpoint]
        )
        policy = private_api_policy(options.vpc_endpoint)
    else:
        endpoint_configuration = apigw.EndpointConfiguration(types=[apigw.EndpointType.REGIONAL])

    api = apigw.RestApi(
        scope,
        "Api",
        rest_api_name=prefixed_unique_name(scope, max_length=128),  # the console's list shows the factory
        description="AI Factory LLM gateway (OpenAI-compatible)",
        endpoint_configuration=endpoint_configuration,
        policy=policy,
        cloud_watch_role=False,
        # Usage plans meter the usage identifier the authorizer returns; a client's x-api-key is ignored.
        api_key_source_type=apigw.ApiKeySourceType.AUTHORIZER,
        deploy_options=apigw.StageOptions(
            stage_name=options.stage_name,
            throttling_rate_limit=options.throttling_rate_limit,
            throttling_burst_limit=options.throttling_burst_limit,
            tracing_enabled=True,
            metrics_enabled=True,
            # Execution logs without request/response bodies: prompts never land in API Gateway logs.
            logging_level=apigw.MethodLoggingLevel.ERROR,
            data_trace_enabled=False,
            access_log_destination=apigw.LogGroupLogDestination(access_logs),
            access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                caller=False,
                http_method=True,
                ip=True,
                protocol=True,
                request_time=True,
                resource_path=True,
                response_length=True,
                status=True,
                user=False,
            ),
        ),
    )
    # API Gateway creates the execution log group on first use, unencrypted and kept forever;
    # creating it first (same name) gives it the key and the retention.
    execution_logs = log_group(
        "ExecutionLogs", f"API-Gateway-Execution-Logs_{api.rest_api_id}/{options.stage_name}"
    )
    api.deployment_stage.node.add_dependency(execution_logs)

    # Every route streams: the function answers through the Lambda Web Adapter in response_stream
    # mode, which API Gateway reaches only with InvokeWithResponseStream (a BUFFERED integration would
    # receive the adapter's stream framing instead of a proxy response). One integration, one Lambda
    # permission for the whole API.
    integration = apigw.LambdaIntegration(
        function,
        proxy=True,
        response_transfer_mode=apigw.ResponseTransferMode.STREAM,
        timeout=options.integration_timeout,
        scope_permission_to_method=False,
    )
    add_gateway_responses(api)
    doors = {"openai": authorizers.openai, "anthropic": authorizers.anthropic}
    v1 = api.root.add_resource("v1")
    methods = [
        v1.add_resource("{proxy+}").add_method(
            "ANY", integration, authorizer=authorizers.openai, api_key_required=True
        )
    ]
    resources: dict[str, apigw.IResource] = {"": v1}
    for route in STREAMING_ROUTES:
        parent = ""
        for part in route.split("/"):
            path = f"{parent}/{part}"
            if path not in resources:
                resources[path] = resources[parent].add_resource(part)
            parent = path
        door = "anthropic" if route in ANTHROPIC_ROUTES else "openai"
        methods.append(
            resources[parent].add_method("POST", integration, authorizer=doors[door], api_key_required=True)
        )

    if options.web_acl_arn is not None:
        wafv2.CfnWebACLAssociation(
            scope,
            "WebAclAssociation",
            resource_arn=api.deployment_stage.stage_arn,
            web_acl_arn=options.web_acl_arn,
        )
    if options.configure_account_logging_role:
        _account_logging_role(scope, api)
    return api, methods


def private_api_policy(vpc_endpoint: ec2.IVpcEndpoint) -> iam.PolicyDocument:
    """Allow invoking the API only through the given VPC endpoint (explicit deny for any other path)."""
    api_arn = "execute-api:/*"
    return iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                sid="DenyOutsideVpcEndpoint",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=[api_arn],
                conditions={"StringNotEquals": {"aws:SourceVpce": vpc_endpoint.vpc_endpoint_id}},
            ),
            iam.PolicyStatement(
                sid="AllowThroughVpcEndpoint",
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=[api_arn],
                conditions={"StringEquals": {"aws:SourceVpce": vpc_endpoint.vpc_endpoint_id}},
            ),
        ]
    )


def acknowledge_api_design(api: apigw.RestApi, methods: list[apigw.Method], *, web_acl: bool) -> None:
    """Authentication, request validation and WAF: deliberate choices, each with its reason."""
    auth_reason = (
        "Every method has a Lambda REQUEST authorizer that checks the gateway's own API keys (only SHA-256 "
        "hashes are stored, in the KMS-encrypted keys table; one GetItem by hash) before the request "
        "reaches the gateway function, which checks the key again with its models, budget and limits. "
        "Cognito user pools do not fit machine-to-machine API keys issued per feature."
    )
    for method in methods:
        cdk.Validations.of(method).acknowledge(cdk.Acknowledgment(id="AwsSolutions-COG4", reason=auth_reason))
    cdk.Validations.of(api).acknowledge(
        cdk.Acknowledgment(
            id="AwsSolutions-APIG2",
            reason=(
                "The gateway Lambda validates every body against the API's request schemas (OpenAI, "
                "Anthropic) and answers with errors in that API's shape, which SDK clients understand; "
                "API Gateway request validation would answer in its own error format, and the Lambda "
                "proxy routes have no request parameters to validate."
            ),
        )
    )
    if not web_acl:
        waf_reason = (
            "AWS WAF is opt-in (props enable_waf or web_acl_arn): a web ACL costs a monthly fee plus a "
            "charge per million requests, is often owned centrally (Firewall Manager), and the common "
            "managed rules block ordinary prompts (bodies over 8 KB, prompts quoting HTML, URLs or "
            "paths). Without it every request still needs a valid key at the edge (Lambda authorizer) "
            "and is throttled by its feature's usage plan and the stage-wide ceiling."
        )
        for rule in ("AwsSolutions-APIG3", "NIST.800.53.R5-APIGWAssociatedWithWAF"):
            cdk.Validations.of(api.deployment_stage).acknowledge(
                cdk.Acknowledgment(id=rule, reason=waf_reason)
            )


def acknowledge_api_resilience(api: apigw.RestApi) -> None:
    """NIST 800-53 stage rules (cache, client certificate) that do not fit a per-caller proxy API."""
    acknowledge(
        api.deployment_stage,
        {
            "NIST.800.53.R5-APIGWCacheEnabledAndEncrypted": (
                "Every response is specific to one caller's key and request (model completions, "
                "embeddings, the key's model list); a stage cache could serve one caller's response to "
                "another. No cache cluster exists, so there is no cached data to encrypt."
            ),
            "NIST.800.53.R5-APIGWSSLEnabled": (
                "A stage client certificate authenticates API Gateway to an HTTP backend. The only "
                "integration is the gateway Lambda (AWS_PROXY), which API Gateway invokes through the "
                "Lambda API with IAM; clients reach the API over TLS only."
            ),
        },
    )


def _account_logging_role(scope: Construct, api: apigw.RestApi) -> None:
    role = iam.Role(
        scope,
        "ApiGatewayLoggingRole",
        assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
        description="API Gateway account-wide role for writing access and execution logs",
    )
    # Account-wide: it serves every REST API in the account and region, so it covers all log groups.
    role.add_to_policy(
        iam.PolicyStatement(
            sid="ApiGatewayWritesLogs",
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:DescribeLogGroups",
                "logs:DescribeLogStreams",
                "logs:PutLogEvents",
                "logs:GetLogEvents",
                "logs:FilterLogEvents",
            ],
            resources=[f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"],
        )
    )
    account = apigw.CfnAccount(scope, "ApiGatewayAccount", cloud_watch_role_arn=role.role_arn)
    # API Gateway checks the role's permissions when the setting is applied: the account setting must
    # wait for the role's policy, not only for the role (its ARN), or a first deploy can fail with
    # "role ARN does not have required permissions" and roll the stack back.
    account.node.add_dependency(role.node.find_child("DefaultPolicy"))
    api.deployment_stage.node.add_dependency(account)
    cdk.Validations.of(role.node.find_child("DefaultPolicy")).acknowledge(
        cdk.Acknowledgment(
            id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:*]",
            reason=(
                "API Gateway's account-wide logging role serves every REST API in the account and "
                "region, whose log-group names are not known here; it is limited to log groups in "
                "this account and region (AWS's managed AmazonAPIGatewayPushToCloudWatchLogs allows '*')."
            ),
        )
    )
