"""The gateway's service to teams that deploy from their own repositories and AWS accounts.

``LlmGateway.enable_team_accounts(accounts=[...], organization_id=...)`` builds this part:

* the **feature registry** (DynamoDB, the gateway's KMS key): one item per ``team/feature`` with its
  team, owner, account, clearance, models, limits, key ID and first deploy — the platform's one list of
  features, and the start of each feature's lead time;
* the **shared key provisioner**: the same handler as a feature's own provisioner
  (``lambdas/feature_key_provisioner``), behind a CDK ``Provider`` whose framework function the listed
  accounts may invoke (a resource policy per account, each also limited by ``aws:PrincipalOrgID`` when
  an organization is given; no wildcard principal). It claims the feature in the registry (a name taken by
  another account is refused), writes the key record in the keys table and the plaintext into the team's
  secret through a role in the team's account (under ``KEY_WRITER_ROLE_PATH``) that trusts only this
  provisioner's role;
* **each team-account feature's edge and cost split**: the provisioner, which runs in the platform
  account next to the API and Bedrock, gives every feature it serves a usage plan of its own on the
  gateway's stage (throttle from the feature's requests per minute, capped by
  ``max_feature_rate_limit_rpm``) and an application inference profile per Bedrock model its routes reach,
  tagged ``Team``/``Feature``/``Owner`` and with the gateway's ``ai-factory:gateway`` tag
  (``lambdas/feature_key_provisioner/team_edge.py``). Its role may create plans, keys and profiles only
  with that tag in the request and change or delete only those carrying it.

Why the secret lives in the team's account: the team's callers, their KMS key and the secret's readers
stay in the team's account and under its control (no cross-account secret policy or KMS grant to keep in
step), and the platform keeps no copy of any team's key. ``docs/product-teams.md`` explains the choice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aws_cdk as cdk
from aws_cdk import Aws, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.constructs.inference_profiles import GATEWAY_TAG_KEY, bedrock_targets
from ai_factory.platform.custom_resources import secure_provider
from ai_factory.platform.functions import function_log_group, hardened_function, write_own_logs_statement
from ai_factory.platform.lambda_packaging import stage_provisioner_asset
from ai_factory.platform.nag import acknowledge, acknowledge_custom_resource_handler
from aif_gateway import contract
from aif_gateway.config import GatewayConfig


class PlatformGateway(Protocol):
    """What this part uses of ``LlmGateway`` (a protocol: the gateway module imports this one)."""

    key: Any
    keys_table: dynamodb.Table
    url: str
    team_accounts: Any
    api: apigw.RestApi
    edge_namespace: str
    inference_profile_tag: str
    config: GatewayConfig
    catalog: ModelCatalog

    @property
    def metrics_namespace(self) -> str: ...

    @property
    def key_provisioning_service_token(self) -> str | None: ...

    @property
    def key_provisioner_role_arn(self) -> str | None: ...

    def key_provisioning_statements(self) -> list[iam.PolicyStatement]: ...


PROVISIONER_HANDLER = "feature_key_provisioner.handler.on_event"
ACCOUNT_PATTERN = re.compile(r"^\d{12}$")
ORGANIZATION_PATTERN = re.compile(r"^o-[a-z0-9]{10,32}$")
DEFAULT_MAX_FEATURE_RATE_LIMIT_RPM = 600
"""The default cap on a team-account feature's edge throttle: 600 requests per minute (10 per second,
the shared plan's default rate), whatever the feature's ``rate_limit_rpm`` asks for."""
MAX_FEATURE_RATE_LIMIT_RPM_BOUND = 600_000
"""10,000 requests per second: API Gateway's default account-level throttle per region."""


@dataclass
class TeamAccountAccess:
    """What ``enable_team_accounts`` built: the registry, the provisioner and its service token."""

    registry_table: dynamodb.Table
    provisioner_function: lambda_.Function
    provisioner_role: iam.Role
    framework_function: lambda_.Function
    service_token: str
    accounts: tuple[str, ...]
    organization_id: str | None
    max_feature_rate_limit_rpm: int = DEFAULT_MAX_FEATURE_RATE_LIMIT_RPM


def validate_rate_cap(label: str, value: object) -> int:
    """``max_feature_rate_limit_rpm``: a whole number of requests per minute, 1 to 600,000."""
    whole = isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
    if not whole or not 1 <= float(value) <= MAX_FEATURE_RATE_LIMIT_RPM_BOUND:  # type: ignore[arg-type]
        raise ValueError(
            f"{label}: max_feature_rate_limit_rpm: must be a whole number of requests per minute from 1 to "
            f"{MAX_FEATURE_RATE_LIMIT_RPM_BOUND:,} (API Gateway's default account throttle), got {value!r}"
        )
    return int(value)  # type: ignore[call-overload]


def routes_file(config: GatewayConfig, catalog: ModelCatalog) -> str:
    """The shared provisioner's ``TEAM_EDGE_ROUTES_FILE``: for every route, the Bedrock models it reaches
    (fallbacks included) as the gateway calls them in its region, and what a profile of each copies."""
    routes: dict[str, list[list[str]]] = {}
    for alias in sorted(config.routes):
        targets = []
        for invoke_id, name in bedrock_targets(config, [alias]).items():
            kind = "foundation-model" if invoke_id == catalog.models[name].model_id else "inference-profile"
            targets.append([invoke_id, name, kind])
        if targets:
            routes[alias] = targets
    return json.dumps(routes, indent=1, sort_keys=True)


def validate(label: str, accounts: Sequence[str], organization_id: str | None) -> tuple[str, ...]:
    """Explicit 12-digit accounts (at least one) and an optional ``o-...`` organization ID."""
    if isinstance(accounts, str) or not accounts:
        raise ValueError(f"{label}: accounts: list at least one team account ID (no wildcard is allowed)")
    bad = [a for a in accounts if not isinstance(a, str) or not ACCOUNT_PATTERN.match(a)]
    if bad:
        raise ValueError(f"{label}: accounts: {bad!r} are not 12-digit AWS account IDs")
    if organization_id is not None and not ORGANIZATION_PATTERN.match(organization_id):
        raise ValueError(f"{label}: organization_id: {organization_id!r} is not an organization ID (o-...)")
    return tuple(dict.fromkeys(accounts))


def build_team_account_access(
    parent: Construct,
    gateway: PlatformGateway,
    accounts: tuple[str, ...],
    organization_id: str | None,
    max_feature_rate_limit_rpm: int = DEFAULT_MAX_FEATURE_RATE_LIMIT_RPM,
) -> TeamAccountAccess:
    """The registry and the shared provisioner under ``parent/TeamAccounts`` (``parent``: the gateway)."""
    scope = Construct(parent, "TeamAccounts")
    registry = dynamodb.Table(
        scope,
        "FeatureRegistry",
        partition_key=dynamodb.Attribute(name="feature_id", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=gateway.key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        removal_policy=RemovalPolicy.RETAIN,
    )
    log_group = function_log_group(
        scope, "ProvisionerLogs", key=gateway.key, retention=logs.RetentionDays.ONE_YEAR
    )
    role = iam.Role(
        scope,
        "ProvisionerRole",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=(
            "AI Factory gateway: issues and revokes the API keys of features in team accounts, and makes "
            "their usage plans and inference profiles"
        ),
    )
    role.add_to_policy(write_own_logs_statement(log_group))
    for statement in gateway.key_provisioning_statements():
        role.add_to_policy(statement)
    role.add_to_policy(
        iam.PolicyStatement(
            sid="ClaimFeaturesInRegistry",
            actions=["dynamodb:GetItem", "dynamodb:UpdateItem"],
            resources=[registry.table_arn],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="AssumeTeamKeyWriterRoles",
            actions=["sts:AssumeRole"],
            resources=[
                f"arn:{Aws.PARTITION}:iam::{account}:role{contract.KEY_WRITER_ROLE_PATH}*"
                for account in accounts
            ],
        )
    )
    for statement in edge_statements(gateway):
        role.add_to_policy(statement)
    routes = routes_file(gateway.config, gateway.catalog)
    edge = contract.TeamEdgeEnv
    function = hardened_function(
        scope,
        "Provisioner",
        description="AI Factory: API keys, usage plans and inference profiles of team-account features",
        handler=PROVISIONER_HANDLER,
        code=lambda_.Code.from_asset(
            str(
                stage_provisioner_asset(
                    generated={f"feature_key_provisioner/{contract.TEAM_EDGE_ROUTES_FILE}": routes}
                )
            )
        ),
        role=role,
        environment={
            contract.KEYS_TABLE_ENV: gateway.keys_table.table_name,
            contract.FEATURE_REGISTRY_TABLE_ENV: registry.table_name,
            edge.REST_API_ID: gateway.api.rest_api_id,
            edge.STAGE: gateway.api.deployment_stage.stage_name,
            edge.NAMESPACE: gateway.edge_namespace,
            edge.MAX_RATE_LIMIT_RPM: str(max_feature_rate_limit_rpm),
            edge.GATEWAY_TAG: gateway.inference_profile_tag,
            edge.PARTITION: Aws.PARTITION,
            edge.ACCOUNT: Aws.ACCOUNT_ID,
        },
        timeout=Duration.seconds(60),
        memory_size=256,
        log_group=log_group,
        tracing=False,
    )
    provider = secure_provider(
        scope,
        function,
        key=gateway.key,
        role_description="AI Factory gateway: custom-resource framework of the shared key provisioner",
        handler_noun="the shared key provisioner",
    )
    framework = provider.node.find_child("framework-onEvent")
    assert isinstance(framework, lambda_.Function)
    for account in accounts:
        # CloudFormation in the team account invokes the framework with that account's credentials.
        framework.add_permission(
            f"InvokeFrom{account}",
            principal=iam.AccountPrincipal(account),
            action="lambda:InvokeFunction",
            organization_id=organization_id,
        )
    _acknowledge(role, registry, function, accounts)
    return TeamAccountAccess(
        registry_table=registry,
        provisioner_function=function,
        provisioner_role=role,
        framework_function=framework,
        service_token=provider.service_token,
        accounts=accounts,
        organization_id=organization_id,
        max_feature_rate_limit_rpm=max_feature_rate_limit_rpm,
    )


def _apigateway_arn(path: str) -> str:
    return f"arn:{Aws.PARTITION}:apigateway:{Aws.REGION}::{path}"


def _tags_arn(collection: str) -> str:
    """Where API Gateway authorizes the tags of a new plan or key: ``/tags/<URL-encoded ARN>``."""
    return _apigateway_arn(
        f"/tags/arn%3A{Aws.PARTITION}%3Aapigateway%3A{Aws.REGION}%3A%3A%2F{collection}%2F*"
    )


def edge_statements(gateway: PlatformGateway) -> list[iam.PolicyStatement]:
    """What the shared provisioner may do to give team-account features their plans and profiles.

    Creating requires the gateway's tag in the request (``aws:RequestTag``); reading, changing and deleting
    a profile, changing or deleting a plan or key, and adding a key to a plan require it on the resource
    (``aws:ResourceTag``). Listing (to find a plan, key or profile by name) has no resource to match on.
    """
    tag = gateway.inference_profile_tag
    request_tag = {"StringEquals": {f"aws:RequestTag/{GATEWAY_TAG_KEY}": tag}}
    resource_tag = {"StringEquals": {f"aws:ResourceTag/{GATEWAY_TAG_KEY}": tag}}
    profiles = f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:application-inference-profile/*"
    region = Stack.of(gateway.api).region
    sources = gateway.catalog.bedrock_invoke_arns(
        Aws.PARTITION, Aws.REGION if Token.is_unresolved(region) else region, Aws.ACCOUNT_ID
    )
    return [
        iam.PolicyStatement(
            sid="FindUsagePlansAndKeys",
            actions=["apigateway:GET"],
            resources=[_apigateway_arn("/usageplans"), _apigateway_arn("/apikeys")],
        ),
        iam.PolicyStatement(
            sid="CreateTaggedUsagePlansAndKeys",
            actions=["apigateway:POST"],
            resources=[_apigateway_arn("/usageplans"), _apigateway_arn("/apikeys")],
            conditions=request_tag,
        ),
        iam.PolicyStatement(
            sid="TagNewUsagePlansAndKeys",
            actions=["apigateway:PUT"],
            resources=[_tags_arn("usageplans"), _tags_arn("apikeys")],
            conditions=request_tag,
        ),
        iam.PolicyStatement(
            sid="ChangeTaggedUsagePlansAndKeys",
            actions=["apigateway:PATCH", "apigateway:DELETE", "apigateway:POST"],
            resources=[_apigateway_arn("/usageplans/*"), _apigateway_arn("/apikeys/*")],
            conditions=resource_tag,
        ),
        iam.PolicyStatement(
            sid="CreateTaggedInferenceProfiles",
            actions=["bedrock:CreateInferenceProfile", "bedrock:TagResource"],
            # The profile, and what it copies: only the catalog's models and system profiles.
            resources=[profiles, *sources],
            conditions=request_tag,
        ),
        iam.PolicyStatement(
            sid="ManageTaggedInferenceProfiles",
            actions=["bedrock:GetInferenceProfile", "bedrock:DeleteInferenceProfile"],
            resources=[profiles],
            conditions=resource_tag,
        ),
        iam.PolicyStatement(
            sid="FindInferenceProfilesByName",
            actions=["bedrock:ListInferenceProfiles"],
            resources=["*"],
        ),
    ]


def _acknowledge(
    role: iam.Role, registry: dynamodb.Table, function: lambda_.Function, accounts: tuple[str, ...]
) -> None:
    writer_reason = (
        "sts:AssumeRole is limited to roles under the path "
        f"{contract.KEY_WRITER_ROLE_PATH} in the listed team accounts ({', '.join(accounts)}): the roles "
        "AiFeature creates, each trusting only this provisioner's role and allowed only to put its feature's "
        "secret value. Their names are chosen by the teams' stacks, hence the wildcard after the path."
    )
    acknowledge(
        role.node.find_child("DefaultPolicy"),
        {
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iam::{account}:role"
            f"{contract.KEY_WRITER_ROLE_PATH}*]": writer_reason
            for account in accounts
        },
    )
    acknowledge(
        registry.node.default_child or registry,
        {
            "NIST.800.53.R5-DynamoDBInBackupPlan": (
                "Point-in-time recovery (35 days) protects the registry; the table is retained on stack "
                "deletion. An AWS Backup plan is an organisation-wide choice, not this construct's."
            )
        },
    )
    tag_reason = (
        "Team-account features' usage plans, API keys and Bedrock application inference profiles are created "
        "at deploy time by this provisioner, and their IDs are generated by API Gateway and Bedrock, so they "
        "cannot be named in advance. Every statement with such a wildcard is limited by the gateway's "
        f"{GATEWAY_TAG_KEY} tag: creating requires it in the request (aws:RequestTag), reading, changing "
        "and deleting require it on the resource (aws:ResourceTag); plans, keys and profiles of anything "
        "else in the account are out of reach."
    )
    partition_region = "arn:<AWS::Partition>:apigateway:<AWS::Region>::"
    acknowledge(
        role.node.find_child("DefaultPolicy"),
        {
            f"AwsSolutions-IAM5[Resource::{partition_region}/usageplans/*]": tag_reason,
            f"AwsSolutions-IAM5[Resource::{partition_region}/apikeys/*]": tag_reason,
            f"AwsSolutions-IAM5[Resource::{partition_region}/tags/arn%3A<AWS::Partition>%3Aapigateway%3A"
            "<AWS::Region>%3A%3A%2Fusageplans%2F*]": tag_reason,
            f"AwsSolutions-IAM5[Resource::{partition_region}/tags/arn%3A<AWS::Partition>%3Aapigateway%3A"
            "<AWS::Region>%3A%3A%2Fapikeys%2F*]": tag_reason,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:"
            "application-inference-profile/*]": tag_reason,
            "AwsSolutions-IAM5[Resource::*]": (
                "bedrock:ListInferenceProfiles only: the action has no resource type (IAM accepts only "
                "'*'). It lists profile names and ARNs, which the provisioner needs to find a profile an "
                "interrupted attempt created; it grants no access to any profile or model."
            ),
        },
    )
    acknowledge_custom_resource_handler(
        function,
        what=(
            "claims features in the registry, issues their keys into the teams' secrets and makes their "
            "usage plans and inference profiles"
        ),
    )


def publish_parameters(
    parent: Construct, gateway: PlatformGateway, prefix: str = contract.GATEWAY_PARAMETER_PREFIX
) -> list[str]:
    """SSM parameters under ``prefix`` that ``LlmGateway.from_lookup`` reads (names in the contract).

    Advanced tier, so the platform can share them with team accounts through AWS RAM. Returns the
    parameter names.
    """
    from aws_cdk import aws_ssm as ssm

    names = contract.GatewayParameters
    values: dict[str, str | None] = {
        names.API_URL: gateway.url,
        names.METRICS_NAMESPACE: gateway.metrics_namespace,
        names.KMS_KEY_ARN: gateway.key.key_arn,
        names.KEYS_TABLE_NAME: gateway.keys_table.table_name,
        names.KEY_PROVISIONING_SERVICE_TOKEN: gateway.key_provisioning_service_token,
        names.KEY_PROVISIONER_ROLE_ARN: gateway.key_provisioner_role_arn,
        names.FEATURE_REGISTRY_TABLE_NAME: (
            gateway.team_accounts.registry_table.table_name if gateway.team_accounts else None
        ),
        names.EDGE_NAMESPACE: gateway.edge_namespace,
    }
    scope = Construct(parent, "Parameters")
    published = []
    for name, value in values.items():
        if value is None:
            continue
        full_name = f"{prefix.rstrip('/')}/{name}"
        ssm.StringParameter(
            scope,
            "".join(part.capitalize() for part in name.split("-")),
            parameter_name=full_name,
            string_value=value,
            tier=ssm.ParameterTier.ADVANCED,
            description=f"AI Factory gateway: {name} (read by LlmGateway.from_lookup in team apps)",
        )
        published.append(full_name)
    cdk.Tags.of(scope).add("ai-factory:gateway-parameter", "true")
    return published
