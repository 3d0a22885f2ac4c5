"""``LlmGateway``: the OpenAI-compatible gateway in front of Amazon Bedrock, as one CDK construct.

REST API (API Gateway) -> gateway Lambda -> Bedrock Converse, with the API-key and usage tables, the
spill queue that keeps usage records when the ledger write fails, a Bedrock Guardrail, and the logs,
encryption and IAM allow-list around them. The model catalog decides the routes, the price table and
the only Bedrock ARNs the Lambda may invoke.

Example::

    from ai_factory.llm_gateway import LlmGateway
    from ai_factory.model_catalog import ModelCatalog

    gateway = LlmGateway(self, "Gateway", catalog=ModelCatalog.load())
    gateway.grant_manage_keys(admin_role)
    alarm = gateway.metric_errors().create_alarm(self, "GatewayErrors", threshold=5, evaluation_periods=1)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import aws_cdk as cdk
from aws_cdk import Aws, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_bedrock as bedrock
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from ai_factory.lambda_packaging import (
    DEFAULT_POWERTOOLS_LAYER_VERSION,
    GATEWAY_HANDLER,
    SPILL_REPLAY_HANDLER,
    powertools_layer_arn,
    stage_gateway_asset,
)
from ai_factory.model_catalog import ModelCatalog
from ai_factory.nag import (
    acknowledge,
    acknowledge_outside_vpc,
    acknowledge_synchronous_invocation,
    acknowledge_unreserved_concurrency,
)
from ai_factory.secure_defaults import (
    access_log_bucket,
    allow_cloudwatch_logs,
    encrypted_bucket,
    send_access_logs,
)

SERVICE_NAME = "ai-factory-gateway"
METRICS_NAMESPACE = "AIFactory"
KEY_ID_INDEX = "by-key-id"
# Usage-table GSI on the audit records' request_id (sparse: no other item has one), for POST /v1/feedback.
REQUEST_ID_INDEX = "by-request-id"
PROMPT_VIEW_KEY = "prompts.json"

# Content filter strengths (input, output). PROMPT_ATTACK only applies to input.
DEFAULT_CONTENT_FILTERS: dict[str, tuple[str, str]] = {
    "HATE": ("HIGH", "HIGH"),
    "INSULTS": ("HIGH", "HIGH"),
    "SEXUAL": ("HIGH", "HIGH"),
    "VIOLENCE": ("HIGH", "HIGH"),
    "MISCONDUCT": ("HIGH", "HIGH"),
    "PROMPT_ATTACK": ("HIGH", "NONE"),
}
# PII in prompts and answers: personal contact data is masked, secrets and card numbers are refused.
DEFAULT_PII_ACTIONS: dict[str, str] = {
    "EMAIL": "ANONYMIZE",
    "PHONE": "ANONYMIZE",
    "NAME": "ANONYMIZE",
    "ADDRESS": "ANONYMIZE",
    "CREDIT_DEBIT_CARD_NUMBER": "BLOCK",
    "AWS_ACCESS_KEY": "BLOCK",
    "AWS_SECRET_KEY": "BLOCK",
}
BLOCKED_INPUT_MESSAGE = (
    "This request was blocked by the AI Factory guardrail (content or sensitive-data policy). "
    "Rephrase it without the flagged content."
)
BLOCKED_OUTPUT_MESSAGE = (
    "The model's answer was blocked by the AI Factory guardrail (content or sensitive-data policy)."
)
_FILTER_STRENGTHS = ("NONE", "LOW", "MEDIUM", "HIGH")
# The retention periods CloudWatch Logs accepts, in days (RetentionDays members carry only names).
_RETENTION_DAYS: dict[int, logs.RetentionDays] = {
    days: logs.RetentionDays[name]
    for days, name in (
        *((1, "ONE_DAY"), (3, "THREE_DAYS"), (5, "FIVE_DAYS"), (7, "ONE_WEEK"), (14, "TWO_WEEKS")),
        *((30, "ONE_MONTH"), (60, "TWO_MONTHS"), (90, "THREE_MONTHS"), (120, "FOUR_MONTHS")),
        *((150, "FIVE_MONTHS"), (180, "SIX_MONTHS"), (365, "ONE_YEAR"), (400, "THIRTEEN_MONTHS")),
        *((545, "EIGHTEEN_MONTHS"), (731, "TWO_YEARS"), (1096, "THREE_YEARS"), (1827, "FIVE_YEARS")),
        *((2192, "SIX_YEARS"), (2557, "SEVEN_YEARS"), (2922, "EIGHT_YEARS"), (3288, "NINE_YEARS")),
        (3653, "TEN_YEARS"),
    )
}

EndpointType = Literal["regional", "private"]


class LlmGateway(Construct):
    """The LLM gateway: REST API -> Lambda -> Bedrock, metered, guarded and encrypted by default.

    Safe defaults: a customer-managed KMS key (rotation on) for tables, queues and logs; DynamoDB
    tables with point-in-time recovery, retained on stack deletion; a regional REST API with stage
    throttling, JSON access logs, execution logs at ERROR level and X-Ray tracing; a Bedrock Guardrail
    (content filters + PII) whose versions are retained; an IAM role that may invoke only the Bedrock
    ARNs the catalog lists; a versioned, KMS-encrypted bucket (with access logs) for the prompt
    registry's runtime view, which the Lambda may read (only ``prompts.json``) and
    ``grant_publish_prompts`` lets a release role write.

    Callers authenticate with the gateway's own bearer keys (hashed in the keys table), which the
    Lambda checks on every request; API Gateway itself has no authorizer.

    Prerequisite: API Gateway writes access and execution logs with the account's CloudWatch Logs role
    (one setting per account and region). Set ``configure_account_logging_role=True`` to have this
    construct create that role and set it, replacing any role already configured in the account.

    :param catalog: the validated model catalog (routes, prices, IAM allow-list).
    :param encryption_key: KMS key for tables, queues and log groups. Default: a new key with rotation.
        A key you pass must allow the ``logs.<region>.amazonaws.com`` service principal.
    :param endpoint_type: ``"regional"`` (default) or ``"private"`` (then ``vpc_endpoint`` is required
        and the API accepts only requests through it).
    :param vpc_endpoint: the ``execute-api`` interface VPC endpoint for a private API.
    :param stage_name: API stage name. Default ``"prod"``.
    :param throttling_rate_limit: stage-wide steady-state requests per second. Default 50.
    :param throttling_burst_limit: stage-wide burst. Default 100.
    :param log_retention: retention of every log group. Default one year.
    :param timeout: gateway Lambda timeout. Default 29 s (API Gateway's default integration timeout).
    :param memory_size: gateway Lambda memory in MB. Default 1024.
    :param powertools_layer_version: version of AWS's public Powertools layer. Default 38.
    :param powertools_layer_arn: full layer ARN, for partitions where AWS publishes the layer from
        another account (China, GovCloud). Overrides ``powertools_layer_version``.
    :param guardrail_content_filters: ``{type: (input strength, output strength)}``.
    :param guardrail_pii_actions: ``{PII entity type: "ANONYMIZE" | "BLOCK"}``.
    :param gateway_config_overrides: extra ``GatewayConfig`` fields (timeouts, cache TTLs ...).
    :param configure_account_logging_role: see the prerequisite above. Default False.
    :param web_acl_arn: a regional AWS WAFv2 web ACL to associate with the API stage. Default: none.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        catalog: ModelCatalog,
        encryption_key: kms.IKey | None = None,
        endpoint_type: EndpointType = "regional",
        vpc_endpoint: ec2.IVpcEndpoint | None = None,
        stage_name: str = "prod",
        throttling_rate_limit: float = 50,
        throttling_burst_limit: int = 100,
        log_retention: logs.RetentionDays | int = logs.RetentionDays.ONE_YEAR,
        timeout: Duration | None = None,
        memory_size: int = 1024,
        powertools_layer_version: int = DEFAULT_POWERTOOLS_LAYER_VERSION,
        powertools_layer_arn: str | None = None,
        guardrail_content_filters: Mapping[str, tuple[str, str]] | None = None,
        guardrail_pii_actions: Mapping[str, str] | None = None,
        gateway_config_overrides: Mapping[str, Any] | None = None,
        configure_account_logging_role: bool = False,
        web_acl_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        timeout = timeout or Duration.seconds(29)
        filters = dict(guardrail_content_filters or DEFAULT_CONTENT_FILTERS)
        pii_actions = dict(guardrail_pii_actions or DEFAULT_PII_ACTIONS)
        retention = self._validate(
            endpoint_type=endpoint_type,
            vpc_endpoint=vpc_endpoint,
            stage_name=stage_name,
            throttling_rate_limit=throttling_rate_limit,
            throttling_burst_limit=throttling_burst_limit,
            log_retention=log_retention,
            memory_size=memory_size,
            powertools_layer_version=powertools_layer_version,
            filters=filters,
            pii_actions=pii_actions,
        )
        self.catalog = catalog
        self._retention = retention

        self.key: kms.IKey = encryption_key or kms.Key(
            self,
            "Key",
            description="AI Factory gateway: tables, spill queue and logs",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # CloudWatch Logs encrypts log groups with the key only if the key policy lets the regional
        # logs service use it (a no-op on an imported key, whose policy CDK cannot change).
        allow_cloudwatch_logs(self.key)

        self.keys_table = self._table(
            "KeysTable",
            partition_key=dynamodb.Attribute(name="key_hash", type=dynamodb.AttributeType.STRING),
        )
        self.keys_table.add_global_secondary_index(
            index_name=KEY_ID_INDEX,
            partition_key=dynamodb.Attribute(name="key_id", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        self.usage_table = self._table(
            "UsageTable",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="ttl",
        )
        # KEYS_ONLY: feedback reads the record itself with a consistent GetItem; the index stays small.
        self.usage_table.add_global_secondary_index(
            index_name=REQUEST_ID_INDEX,
            partition_key=dynamodb.Attribute(name="request_id", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )

        replay_timeout = Duration.seconds(60)
        self.spill_dead_letter_queue = sqs.Queue(
            self,
            "SpillDeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.spill_queue = sqs.Queue(
            self,
            "SpillQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            # Lambda's guidance: at least six times the consumer's timeout.
            visibility_timeout=Duration.seconds(replay_timeout.to_seconds() * 6),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=5, queue=self.spill_dead_letter_queue),
        )

        self.guardrail = bedrock.CfnGuardrail(
            self,
            "Guardrail",
            name=cdk.Names.unique_resource_name(self, max_length=50, separator="-"),
            description="AI Factory gateway guardrail: harmful content, prompt attacks and PII",
            blocked_input_messaging=BLOCKED_INPUT_MESSAGE,
            blocked_outputs_messaging=BLOCKED_OUTPUT_MESSAGE,
            content_policy_config=bedrock.CfnGuardrail.ContentPolicyConfigProperty(
                filters_config=[
                    bedrock.CfnGuardrail.ContentFilterConfigProperty(
                        type=kind, input_strength=strengths[0], output_strength=strengths[1]
                    )
                    for kind, strengths in sorted(filters.items())
                ]
            ),
            sensitive_information_policy_config=bedrock.CfnGuardrail.SensitiveInformationPolicyConfigProperty(
                pii_entities_config=[
                    bedrock.CfnGuardrail.PiiEntityConfigProperty(type=kind, action=action)
                    for kind, action in sorted(pii_actions.items())
                ]
            ),
        )
        # Versions are immutable snapshots that callers pin; a policy change gets a new version (the
        # description carries the policy hash, so CloudFormation replaces the resource) and the old
        # one is kept.
        policy_hash = hashlib.sha256(
            json.dumps([sorted(filters.items()), sorted(pii_actions.items())]).encode()
        ).hexdigest()[:12]
        self.guardrail_version = bedrock.CfnGuardrailVersion(
            self,
            "GuardrailVersion",
            guardrail_identifier=self.guardrail.attr_guardrail_id,
            description=f"AI Factory gateway guardrail, policy {policy_hash}",
        )
        self.guardrail_version.apply_removal_policy(RemovalPolicy.RETAIN)

        self.prompts_bucket = self._prompts_bucket()
        self.prompt_view_uri: str = f"s3://{self.prompts_bucket.bucket_name}/{PROMPT_VIEW_KEY}"
        """Where ``ai-factory prompts publish --to`` writes the registry's runtime view for the gateway."""
        self.knowledge_base_parameter_prefix: str = (
            f"/ai-factory/{Stack.of(self).stack_name}/knowledge-bases/"
        )
        """SSM path where ``RagFeature``s register knowledge bases for ``POST /v1/retrieve`` (docs/rag.md)."""

        # Every attempt down a fallback chain must end before the Lambda does, or the request would
        # die without its usage record: attempts get a bounded model timeout and the chain a deadline
        # a little inside the Lambda timeout.
        seconds = timeout.to_seconds()
        config_fields: dict[str, Any] = {
            "model_timeout_s": float(max(5, min(60, seconds // 2 - 2))),
            "request_deadline_s": float(seconds - 3),
        }
        config_fields.update(gateway_config_overrides or {})
        # A concrete stack region picks each model's regional ID (e.g. an eu. inference profile);
        # an environment-agnostic stack (token region) keeps the catalog's default IDs.
        config = catalog.gateway_config(region=Stack.of(self).region, **config_fields)
        code = lambda_.Code.from_asset(str(stage_gateway_asset(config)))
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "PowertoolsLayer", powertools_layer_arn or _default_layer_arn(powertools_layer_version)
        )
        environment = {
            "AIF_KEYS_TABLE": self.keys_table.table_name,
            "AIF_USAGE_TABLE": self.usage_table.table_name,
            "AIF_SPILL_QUEUE_URL": self.spill_queue.queue_url,
            "AIF_GUARDRAIL_ID": self.guardrail.attr_guardrail_id,
            "AIF_GUARDRAIL_VERSION": self.guardrail_version.attr_version,
            "AIF_PROMPT_VIEW_URI": self.prompt_view_uri,
            "AIF_KNOWLEDGE_BASE_PREFIX": self.knowledge_base_parameter_prefix,
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        }

        self.function = self._function(
            "Function",
            handler=GATEWAY_HANDLER,
            description="AI Factory LLM gateway (OpenAI-compatible API -> Bedrock)",
            code=code,
            layer=layer,
            environment=environment,
            timeout=timeout,
            memory_size=memory_size,
        )
        self._grant_gateway_runtime(self.function.role)

        self.spill_replay_function = self._function(
            "SpillReplayFunction",
            handler=SPILL_REPLAY_HANDLER,
            description="AI Factory gateway: replays spilled usage records into the ledger",
            code=code,
            layer=layer,
            # The replay only writes the ledger: it gets the usage table and nothing else.
            environment={
                k: v for k, v in environment.items() if k == "AIF_USAGE_TABLE" or k.startswith("POWERTOOLS")
            },
            timeout=replay_timeout,
            memory_size=256,
        )
        self._grant_usage_write(self.spill_replay_function.role)
        self.spill_replay_function.add_event_source(
            event_sources.SqsEventSource(self.spill_queue, batch_size=10, report_batch_item_failures=True)
        )

        self.api = self._rest_api(
            endpoint_type=endpoint_type,
            vpc_endpoint=vpc_endpoint,
            stage_name=stage_name,
            throttling_rate_limit=throttling_rate_limit,
            throttling_burst_limit=throttling_burst_limit,
            configure_account_logging_role=configure_account_logging_role,
            web_acl_arn=web_acl_arn,
        )
        self.url: str = self.api.url_for_path("/v1")
        """Base URL for OpenAI clients (``OpenAI(base_url=gateway.url)``): ``https://.../<stage>/v1``."""

        self._output("ApiUrl", self.url, "OpenAI-compatible base URL of the LLM gateway")
        self._output("KeysTableName", self.keys_table.table_name, "DynamoDB table of gateway API keys")
        self._output("UsageTableName", self.usage_table.table_name, "DynamoDB usage ledger of the gateway")
        self._output("PromptViewUri", self.prompt_view_uri, "Where the prompt registry publishes its view")
        self._acknowledge_design_findings(self._proxy_method, web_acl=web_acl_arn is not None)

    # ----------------------------------------------------------------------------------------- public

    def grant_manage_keys(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` (an admin role, the CLI's role) create, list, rotate and revoke API keys.

        Read/write on the keys table and its ``by-key-id`` index, and use of the table's KMS key.
        """
        return self.keys_table.grant_read_write_data(grantee)

    def grant_read_usage(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` (a FinOps or operator role running ``ai-factory usage`` / ``ai-factory
        feedback --store aws``) read the usage table: Scan, Query and GetItem on it and its indexes,
        and decrypt with the gateway key through DynamoDB."""
        return self.usage_table.grant_read_data(grantee)

    def grant_publish_prompts(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` (the CI or release role running ``ai-factory prompts publish``) write the
        prompt view object, and nothing else in the bucket, with the gateway key through S3."""
        grant = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:PutObject"],
            resource_arns=[self.prompts_bucket.arn_for_objects(PROMPT_VIEW_KEY)],
        )
        return grant.combine(self._grant_key_via_s3(grantee, ["kms:GenerateDataKey", "kms:Decrypt"]))

    def metric_latency(self, **props: Any) -> cloudwatch.Metric:
        """API Gateway ``Latency`` of the gateway stage (ms; default statistic: p99 over 5 minutes)."""
        props.setdefault("statistic", "p99")
        return self.api.deployment_stage.metric_latency(**props)

    def metric_errors(self, **props: Any) -> cloudwatch.Metric:
        """API Gateway ``5XXError`` count of the gateway stage (sum over 5 minutes)."""
        props.setdefault("statistic", "Sum")
        return self.api.deployment_stage.metric_server_error(**props)

    def metric_client_errors(self, **props: Any) -> cloudwatch.Metric:
        """API Gateway ``4XXError`` count of the gateway stage: bad keys, budgets, rate limits."""
        props.setdefault("statistic", "Sum")
        return self.api.deployment_stage.metric_client_error(**props)

    # ------------------------------------------------------------------------------------ validation

    def _fail(self, field: str, why: str) -> ValueError:
        return ValueError(f"LlmGateway '{self.node.path}': {field}: {why}")

    def _validate(
        self,
        *,
        endpoint_type: str,
        vpc_endpoint: ec2.IVpcEndpoint | None,
        stage_name: str,
        throttling_rate_limit: float,
        throttling_burst_limit: int,
        log_retention: logs.RetentionDays | int,
        memory_size: int,
        powertools_layer_version: int,
        filters: Mapping[str, tuple[str, str]],
        pii_actions: Mapping[str, str],
    ) -> logs.RetentionDays:
        if endpoint_type not in ("regional", "private"):
            raise self._fail("endpoint_type", f"must be 'regional' or 'private', got {endpoint_type!r}")
        if endpoint_type == "private" and vpc_endpoint is None:
            raise self._fail("vpc_endpoint", "is required when endpoint_type is 'private'")
        if endpoint_type == "regional" and vpc_endpoint is not None:
            raise self._fail("vpc_endpoint", "only applies when endpoint_type is 'private'")
        if not re.fullmatch(r"[A-Za-z0-9_]{1,128}", stage_name or ""):
            raise self._fail(
                "stage_name", f"must be 1-128 letters, digits or underscores, got {stage_name!r}"
            )
        if not _positive(throttling_rate_limit):
            raise self._fail("throttling_rate_limit", f"must be a number > 0, got {throttling_rate_limit!r}")
        if not _positive(throttling_burst_limit) or not isinstance(throttling_burst_limit, int):
            raise self._fail(
                "throttling_burst_limit", f"must be an integer > 0, got {throttling_burst_limit!r}"
            )
        if (
            not isinstance(memory_size, int)
            or isinstance(memory_size, bool)
            or not 128 <= memory_size <= 10240
        ):
            raise self._fail("memory_size", f"must be an integer from 128 to 10240 MB, got {memory_size!r}")
        if not isinstance(powertools_layer_version, int) or powertools_layer_version < 1:
            raise self._fail(
                "powertools_layer_version", f"must be a positive integer, got {powertools_layer_version!r}"
            )
        for kind, strengths in filters.items():
            if not (
                isinstance(strengths, tuple | list)
                and len(strengths) == 2
                and all(s in _FILTER_STRENGTHS for s in strengths)
            ):
                raise self._fail(
                    f"guardrail_content_filters[{kind!r}]",
                    f"must be (input, output) strengths from {_FILTER_STRENGTHS}, got {strengths!r}",
                )
        for kind, action in pii_actions.items():
            if action not in ("ANONYMIZE", "BLOCK"):
                raise self._fail(
                    f"guardrail_pii_actions[{kind!r}]", f"must be ANONYMIZE or BLOCK, got {action!r}"
                )
        # Never-expiring logs are refused: the audit trail lives in the usage table, not in logs.
        if isinstance(log_retention, logs.RetentionDays) and log_retention != logs.RetentionDays.INFINITE:
            return log_retention
        if (
            isinstance(log_retention, int)
            and not isinstance(log_retention, bool)
            and log_retention in _RETENTION_DAYS
        ):
            return _RETENTION_DAYS[log_retention]
        raise self._fail(
            "log_retention",
            f"must be a finite logs.RetentionDays or one of {sorted(_RETENTION_DAYS)} days, "
            f"got {log_retention!r}",
        )

    # ------------------------------------------------------------------------------------- building

    def _table(self, construct_id: str, **props: Any) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            construct_id,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=RemovalPolicy.RETAIN,
            **props,
        )

    def _prompts_bucket(self) -> s3.Bucket:
        """The bucket of the prompt view, with its server access logs in a bucket of their own."""
        access_logs = access_log_bucket(
            self,
            "PromptsAccessLogs",
            expiry_days=self._retention_days(),  # kept as long as the gateway's log groups
            reason=(
                "This bucket is the destination of the prompts bucket's server access logs; logging "
                "it too would need yet another log bucket (or log into itself, which S3 advises "
                "against because every delivered log would create more logs)."
            ),
        )
        # Every published view is kept: what the gateway served, and when, can be reconstructed.
        bucket = encrypted_bucket(self, "PromptsBucket", key=self.key)
        send_access_logs(
            bucket, access_logs, prefix="prompts-bucket/", sid="S3ServerAccessLogsFromPromptsBucket"
        )
        return bucket

    def _retention_days(self) -> int:
        return next(days for days, member in _RETENTION_DAYS.items() if member == self._retention)

    def _grant_key_via_s3(self, grantee: iam.IGrantable, actions: list[str]) -> iam.Grant:
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=actions,
            resource_arns=[self.key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"}},
        )

    def _log_group(self, construct_id: str, log_group_name: str | None = None) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            construct_id,
            log_group_name=log_group_name,
            retention=self._retention,
            encryption_key=self.key,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _function(
        self,
        construct_id: str,
        *,
        handler: str,
        description: str,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        environment: dict[str, str],
        timeout: Duration,
        memory_size: int,
    ) -> lambda_.Function:
        # An explicit role (no AWS-managed AWSLambdaBasicExecutionRole) writing only to its own log group.
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{description}: execution role",
        )
        log_group = self._log_group(f"{construct_id}Logs")
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteOwnLogGroup",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        return lambda_.Function(
            self,
            construct_id,
            description=description,
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=code,
            layers=[layer],
            role=role,
            environment=environment,
            timeout=timeout,
            memory_size=memory_size,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
        )

    def _kms_via_services(self, role: iam.IRole | None) -> None:
        assert role is not None
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="UseGatewayKeyThroughDynamoDbAndSqs",
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[self.key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": [
                            f"dynamodb.{Aws.REGION}.amazonaws.com",
                            f"sqs.{Aws.REGION}.amazonaws.com",
                        ]
                    }
                },
            )
        )

    def _grant_usage_write(self, role: iam.IRole | None) -> None:
        assert role is not None
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadWriteUsageLedger",
                actions=[
                    "dynamodb:BatchGetItem",
                    "dynamodb:ConditionCheckItem",
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:Query",
                    "dynamodb:UpdateItem",
                ],
                resources=[self.usage_table.table_arn],
            )
        )
        self._kms_via_services(role)

    def _grant_gateway_runtime(self, role: iam.IRole | None) -> None:
        assert role is not None
        region = Stack.of(self).region
        invoke_arns = self.catalog.bedrock_invoke_arns(
            Aws.PARTITION, Aws.REGION if Token.is_unresolved(region) else region, Aws.ACCOUNT_ID
        )
        if invoke_arns:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="InvokeCatalogModels",
                    actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                    resources=invoke_arns,
                )
            )
        endpoint_arns = self.catalog.sagemaker_endpoint_arns(
            Aws.PARTITION, Aws.REGION if Token.is_unresolved(region) else region, Aws.ACCOUNT_ID
        )
        if endpoint_arns:
            # Custom models hosted on SageMaker (catalog provider "sagemaker"): exactly their endpoints.
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="InvokeCatalogSageMakerEndpoints",
                    actions=["sagemaker:InvokeEndpoint"],
                    resources=endpoint_arns,
                )
            )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ApplyGatewayGuardrail",
                actions=["bedrock:ApplyGuardrail"],
                resources=[self.guardrail.attr_guardrail_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadApiKeys",
                actions=["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"],
                resources=[self.keys_table.table_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="SpillUsageRecords",
                actions=["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
                resources=[self.spill_queue.queue_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadPromptView",
                actions=["s3:GetObject"],
                resources=[self.prompts_bucket.arn_for_objects(PROMPT_VIEW_KEY)],
            )
        )
        # Without s3:ListBucket S3 answers 403, not 404, for an object that does not exist yet, and
        # the gateway could not tell "nothing published" from "no access". The bucket holds only the view.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="SeeWhetherPromptViewExists",
                actions=["s3:ListBucket"],
                resources=[self.prompts_bucket.bucket_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="DecryptPromptViewThroughS3",
                actions=["kms:Decrypt"],
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"}},
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="FindUsageByRequestId",
                actions=["dynamodb:Query"],
                resources=[f"{self.usage_table.table_arn}/index/{REQUEST_ID_INDEX}"],
            )
        )
        self._grant_usage_write(role)

    def _rest_api(
        self,
        *,
        endpoint_type: str,
        vpc_endpoint: ec2.IVpcEndpoint | None,
        stage_name: str,
        throttling_rate_limit: float,
        throttling_burst_limit: int,
        configure_account_logging_role: bool,
        web_acl_arn: str | None,
    ) -> apigw.RestApi:
        access_logs = self._log_group("AccessLogs")
        endpoint_configuration = None
        policy = None
        if endpoint_type == "private":
            assert vpc_endpoint is not None
            endpoint_configuration = apigw.EndpointConfiguration(
                types=[apigw.EndpointType.PRIVATE], vpc_endpoints=[vpc_endpoint]
            )
            policy = _private_api_policy(vpc_endpoint)
        else:
            endpoint_configuration = apigw.EndpointConfiguration(types=[apigw.EndpointType.REGIONAL])

        api = apigw.RestApi(
            self,
            "Api",
            description="AI Factory LLM gateway (OpenAI-compatible)",
            endpoint_configuration=endpoint_configuration,
            policy=policy,
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=stage_name,
                throttling_rate_limit=throttling_rate_limit,
                throttling_burst_limit=throttling_burst_limit,
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
        execution_logs = self._log_group(
            "ExecutionLogs", log_group_name=f"API-Gateway-Execution-Logs_{api.rest_api_id}/{stage_name}"
        )
        api.deployment_stage.node.add_dependency(execution_logs)

        integration = apigw.LambdaIntegration(self.function, proxy=True)
        self._proxy_method = (
            api.root.add_resource("v1").add_resource("{proxy+}").add_method("ANY", integration)
        )

        if web_acl_arn is not None:
            wafv2.CfnWebACLAssociation(
                self,
                "WebAclAssociation",
                resource_arn=api.deployment_stage.stage_arn,
                web_acl_arn=web_acl_arn,
            )
        if configure_account_logging_role:
            self._account_logging_role(api)
        return api

    def _account_logging_role(self, api: apigw.RestApi) -> None:
        role = iam.Role(
            self,
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
        account = apigw.CfnAccount(self, "ApiGatewayAccount", cloud_watch_role_arn=role.role_arn)
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

    def _output(self, name: str, value: str, description: str) -> None:
        output = cdk.CfnOutput(self, name, value=value, description=description)
        # Readable, stable output keys (e.g. GatewayApiUrl) for scripts and the CLI.
        output.override_logical_id(re.sub(r"[^A-Za-z0-9]", "", self.node.id) + name)

    def _acknowledge_design_findings(self, method: apigw.Method, web_acl: bool) -> None:
        """cdk-nag findings that are deliberate design choices, each acknowledged where it arises."""
        for function in (self.function, self.spill_replay_function):
            assert function.role is not None
            policy = function.role.node.find_child("DefaultPolicy")
            cdk.Validations.of(policy).acknowledge(
                cdk.Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::*]",
                    reason=(
                        "Only X-Ray's xray:PutTraceSegments and xray:PutTelemetryRecords use Resource '*': "
                        "these actions support no resource-level permissions (AWS requires '*'). Every "
                        "other statement names its table, queue, key, guardrail, log group or model ARN."
                    ),
                )
            )
        auth_reason = (
            "Callers authenticate with the gateway's own bearer API keys (only SHA-256 hashes are stored, in "
            "the KMS-encrypted keys table), checked by the gateway Lambda on every request before any model "
            "call, together with the key's allowed models, budget and rate limit. An API Gateway authorizer "
            "would duplicate that lookup; Cognito does not fit machine-to-machine API keys."
        )
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            cdk.Validations.of(method).acknowledge(cdk.Acknowledgment(id=rule, reason=auth_reason))
        cdk.Validations.of(self.api).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions-APIG2",
                reason=(
                    "The gateway Lambda validates every body against the OpenAI request schemas and answers "
                    "with OpenAI-shaped errors that SDK clients understand; API Gateway request validation "
                    "would answer in its own error format, and the single proxy route has no request "
                    "parameters to validate."
                ),
            )
        )
        if not web_acl:
            waf_reason = (
                "AWS WAF is opt-in (prop web_acl_arn) because web ACLs are usually owned centrally "
                "(Firewall Manager) and the common managed rule sets block the large JSON bodies LLM "
                "requests carry. Without it every request still needs a valid bearer key and is "
                "throttled per stage and per key before any model call."
            )
            for rule in ("AwsSolutions-APIG3", "NIST.800.53.R5-APIGWAssociatedWithWAF"):
                cdk.Validations.of(self.api.deployment_stage).acknowledge(
                    cdk.Acknowledgment(id=rule, reason=waf_reason)
                )
        self._acknowledge_resilience_findings()

    def _acknowledge_resilience_findings(self) -> None:
        """NIST 800-53 and Serverless findings that do not fit this design, each with its reason."""
        acknowledge(
            self.api.deployment_stage,
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
        backup_reason = (
            "Point-in-time recovery is on: continuous backups, restorable to any second of the last 35 "
            "days, encrypted with the gateway key; the table is retained on stack deletion. An AWS Backup "
            "plan (vaults, cross-account copies, longer retention) is an organisation-level choice, "
            "usually applied by tag through AWS Organizations backup policies."
        )
        for table in (self.keys_table, self.usage_table):
            acknowledge(
                table.node.default_child or table, {"NIST.800.53.R5-DynamoDBInBackupPlan": backup_reason}
            )
        acknowledge(
            self.prompts_bucket.node.default_child or self.prompts_bucket,
            {
                "NIST.800.53.R5-S3BucketReplicationEnabled": (
                    "The bucket holds the published view of the prompt registry, which MLflow (the system "
                    "of record) regenerates with 'ai-factory prompts publish'; it is versioned, "
                    "KMS-encrypted and retained. Cross-region replication needs a destination bucket in "
                    "a second region, which the organisation's recovery plan chooses."
                )
            },
        )
        acknowledge_synchronous_invocation(
            self.function,
            caller="API Gateway (Lambda proxy integration)",
            failures="the caller gets an error response and the usage record goes to the ledger or the "
            "spill queue",
        )
        acknowledge_unreserved_concurrency(
            self.function, bounded_by="the API stage's throttling and each key's rate limit"
        )
        acknowledge_synchronous_invocation(
            self.spill_replay_function,
            caller="its SQS event source mapping",
            failures="failed records return to the spill queue and, after five receives, move to the spill "
            "dead-letter queue",
        )
        acknowledge_unreserved_concurrency(
            self.spill_replay_function,
            bounded_by="the SQS event source (batches of ten) and the volume of spilled records",
        )
        for function in (self.function, self.spill_replay_function):
            acknowledge_outside_vpc(function)
        mapping = next(
            c
            for c in self.spill_replay_function.node.find_all()
            if isinstance(c, lambda_.CfnEventSourceMapping)
        )
        acknowledge(
            mapping,
            {
                "Serverless-LambdaEventSourceMappingDestination": (
                    "Lambda supports on-failure destinations only for stream and Kafka event sources; "
                    "for SQS the queue's redrive policy is the failure path: after five receives a "
                    "spilled record moves to the KMS-encrypted spill dead-letter queue (14 days)."
                )
            },
        )
        acknowledge(
            self.spill_dead_letter_queue.node.default_child or self.spill_dead_letter_queue,
            {
                "Serverless-SQSRedrivePolicy": (
                    "This queue is the spill queue's dead-letter queue, the end of the redrive chain; "
                    "its messages are kept 14 days for replay."
                )
            },
        )


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _default_layer_arn(version: int) -> str:
    return powertools_layer_arn(version)


def _private_api_policy(vpc_endpoint: ec2.IVpcEndpoint) -> iam.PolicyDocument:
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
