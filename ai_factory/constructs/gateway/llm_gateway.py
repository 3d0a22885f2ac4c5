"""``LlmGateway``: the OpenAI-compatible gateway in front of Amazon Bedrock, as one CDK construct.

REST API (API Gateway) -> gateway Lambda -> Bedrock Converse, with the API-key and usage tables, the
spill queue that keeps usage records when the ledger write fails, a Bedrock Guardrail, and the logs,
encryption and IAM allow-list around them. The model catalog decides the routes, the price table and
the only Bedrock ARNs the Lambda may invoke.

Example::

    from ai_factory import LlmGateway, ModelCatalog

    gateway = LlmGateway(self, "Gateway", catalog=ModelCatalog.load())
    gateway.grant_manage_keys(admin_role)
    alarm = gateway.metric_errors().create_alarm(self, "GatewayErrors", threshold=5, evaluation_periods=1)

Why this module is longer than ~400 lines: it is the facade that wires the parts (``guardrail``,
``usage_ledger``, ``prompt_view``, ``api``, ``edge`` in this package), validates every prop with precise
errors and owns its functions' IAM; each part holds its own resources and acknowledgements.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aws_cdk as cdk
from aws_cdk import Aws, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from constructs import Construct

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.constructs.gateway import api as api_part
from ai_factory.constructs.gateway import edge as edge_part
from ai_factory.constructs.gateway import guardrail as guardrail_part
from ai_factory.constructs.gateway import marketplace, prompt_view, usage_ledger
from ai_factory.constructs.gateway import online_samples as online_samples_part
from ai_factory.constructs.gateway import team_accounts as team_accounts_part
from ai_factory.constructs.gateway import usage_recovery as recovery_part
from ai_factory.constructs.gateway.guardrail import DEFAULT_CONTENT_FILTERS, DEFAULT_PII_ACTIONS
from ai_factory.constructs.gateway.imported import GatewayAttributes, ImportedLlmGateway, lookup_attributes
from ai_factory.constructs.inference_profiles import GATEWAY_TAG_KEY
from ai_factory.platform.functions import (
    ARCHITECTURE,
    function_log_group,
    hardened_function,
    write_own_logs_statement,
)
from ai_factory.platform.lambda_packaging import (
    DEFAULT_POWERTOOLS_LAYER_VERSION,
    GATEWAY_SERVER_HANDLER,
    SPILL_REPLAY_HANDLER,
    USAGE_RECOVERY_HANDLER,
    stage_gateway_asset,
)
from ai_factory.platform.log_retention import RETENTION_DAYS, finite_retention, retention_in_days
from ai_factory.platform.nag import (
    XRAY_WILDCARD_REASON,
    acknowledge_outside_vpc,
    acknowledge_synchronous_invocation,
    acknowledge_unreserved_concurrency,
)
from ai_factory.platform.name_prefix import name_prefix
from ai_factory.platform.public_layers import layer_region, powertools_layer, web_adapter_layer
from ai_factory.platform.secure_defaults import allow_cloudwatch_logs, via_services
from aif_gateway import contract
from aif_gateway.config import GUARD_SCOPES, LEDGER_MARGIN_S

EndpointType = Literal["regional", "private"]

DEFAULT_TIMEOUT = Duration.minutes(10)
"""Long enough for a long Sonnet answer; the one setting every other limit derives from."""
MIN_TIMEOUT_S = 30
MAX_TIMEOUT_S = 900  # Lambda's maximum and API Gateway's longest stream (15 minutes)
WEB_ADAPTER_PORT = 8080
APPLICATION_PROFILE_ARNS = (
    f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:application-inference-profile/*"
)
APPLICATION_PROFILE_FINDING = (
    "arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:application-inference-profile/*"
)
DEFAULT_RESERVED_CONCURRENCY = contract.DEFAULT_GATEWAY_RESERVED_CONCURRENCY
"""The gateway function's reserved concurrency: about ten streamed answers of ten seconds started per
second, and a ceiling that leaves the rest of a default account (1,000) to its other functions. It needs
an account quota of at least this + 10 unreserved (``ai-factory preflight`` checks it); ``None`` opts out."""
AUTHORIZER_HANDLER = "aif_gateway.authorizer.handler"


@dataclass(frozen=True)
class GatewayTimeouts:
    """Every time limit of a request, derived from ``LlmGateway``'s one ``timeout`` setting.

    ``integration`` (API Gateway keeps the stream open) >= ``function`` (the Lambda timeout) >=
    ``request_deadline`` (the gateway stops starting and streaming model attempts) + ``ledger_margin``
    (kept for the usage record, so it is written before the function can time out).
    """

    integration: Duration
    function: Duration
    request_deadline_s: float
    ledger_margin_s: float


class LlmGateway(Construct):
    """The LLM gateway: REST API -> Lambda -> Bedrock, metered, guarded and encrypted by default.

    Safe defaults: a customer-managed KMS key (rotation on) for tables, queues and logs; DynamoDB
    tables with point-in-time recovery, retained on stack deletion; a regional REST API with stage
    throttling, JSON access logs, execution logs at ERROR level and X-Ray tracing; a Bedrock Guardrail
    (content filters + PII) whose versions are retained; an IAM role that may invoke only the Bedrock
    ARNs the catalog lists; a versioned, KMS-encrypted bucket (with access logs) for the prompt
    registry's runtime view, which the Lambda may read (only ``prompts.json``) and
    ``grant_publish_prompts`` lets a release role write.

    The edge (``docs/gateway.md``, "The edge"): a Lambda authorizer per front door checks the gateway's
    own keys (hashed in the keys table) before a request reaches the gateway function, which checks them
    again; each feature's requests are throttled by its own API Gateway usage plan
    (``add_feature_usage_plan``, which ``AiFeature`` calls), other keys by a shared plan, all under the
    stage-wide ceiling; the gateway function has reserved concurrency; AWS WAF is optional.

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
    :param timeout: the longest request, streamed or not: the Lambda timeout and the API's integration
        timeout, and the gateway's request deadline is this minus a ledger margin (``timeouts``).
        Default 10 minutes; whole seconds from 30 s to 15 minutes.
    :param memory_size: gateway Lambda memory in MB. Default 1024.
    :param powertools_layer_version: version of AWS's public Powertools layer. Default: the pinned
        version (``ai_factory.platform.public_layers``), which carries the Powertools the tests run.
    :param powertools_layer_arn: full layer ARN, for partitions where AWS publishes the layer from
        another account (China, GovCloud). Overrides ``powertools_layer_version``.
    :param web_adapter_layer_arn: full ARN of the Lambda Web Adapter layer, for the same partitions.
        Default: the pinned public layer for the function's architecture.
    :param guardrail_content_filters: ``{type: (input strength, output strength)}``.
    :param guardrail_pii_actions: ``{PII entity type: "ANONYMIZE" | "BLOCK"}``.
    :param guardrail_scope: what the guardrail assesses on each call: ``"latest"`` (default) the newest
        user turn and its tool results, ``"all"`` the whole conversation and system prompt. A catalog
        route's ``guard_scope`` overrides it for that route (docs/gateway.md, "What it evaluates").
    :param gateway_config_overrides: extra ``GatewayConfig`` fields (timeouts, cache TTLs ...).
    :param configure_account_logging_role: see the prerequisite above. Default False.
    :param web_acl_arn: a regional AWS WAFv2 web ACL to associate with the API stage. Default: none.
    :param enable_waf: create a web ACL for the stage (per-IP rate rule, AWS's common and known-bad-inputs
        rule sets, logged with the key headers redacted). Default False: WAF costs a monthly fee and a
        per-request charge, and its body rules block ordinary prompts (``docs/gateway.md``).
    :param waf_rate_limit_per_ip: requests per IP in five minutes before the web ACL blocks. Default 2000.
    :param reserved_concurrency: the gateway function's reserved concurrency, so it can neither starve
        the account's other functions nor be starved by them. Default ``DEFAULT_RESERVED_CONCURRENCY``;
        ``None``: unreserved.
    :param authorizer_cache_ttl: how long API Gateway reuses the OpenAI door's authorizer answer for a
        key, i.e. how long a revoked key's requests still pass the edge (the gateway function refuses
        them on its own within two key-cache TTLs). Default 60 s; 1 s to one hour.
    :param shared_plan_rate_limit: requests per second of the shared usage plan (keys whose feature has
        no plan of its own: CLI keys, team-account features). Default 10.
    :param shared_plan_burst_limit: burst of the shared usage plan. Default 20.

    Teams in their own repositories and accounts: ``enable_team_accounts`` (shared key provisioner and
    feature registry), ``publish_parameters`` (SSM parameters), and in the team's app
    ``LlmGateway.from_lookup`` / ``LlmGateway.from_gateway_attributes`` (``docs/product-teams.md``).
    """

    team_accounts: team_accounts_part.TeamAccountAccess | None = None
    """The shared key provisioner and feature registry, once ``enable_team_accounts`` built them."""
    online_samples: online_samples_part.GatewaySampleQueue | None = None
    """The online-evaluation sample queue, once an ``OnlineEvaluation`` asked for it
    (``enable_online_samples``)."""

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
        web_adapter_layer_arn: str | None = None,
        guardrail_content_filters: Mapping[str, tuple[str, str]] | None = None,
        guardrail_pii_actions: Mapping[str, str] | None = None,
        guardrail_scope: str = "latest",
        gateway_config_overrides: Mapping[str, Any] | None = None,
        configure_account_logging_role: bool = False,
        web_acl_arn: str | None = None,
        enable_waf: bool = False,
        waf_rate_limit_per_ip: int = 2000,
        reserved_concurrency: int | None = DEFAULT_RESERVED_CONCURRENCY,
        authorizer_cache_ttl: Duration | None = None,
        shared_plan_rate_limit: float = 10,
        shared_plan_burst_limit: int = 20,
    ) -> None:
        super().__init__(scope, construct_id)
        timeout = timeout or DEFAULT_TIMEOUT
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
            guardrail_scope=guardrail_scope,
        )
        self._validate_edge(
            web_acl_arn=web_acl_arn,
            enable_waf=enable_waf,
            waf_rate_limit_per_ip=waf_rate_limit_per_ip,
            reserved_concurrency=reserved_concurrency,
            shared_plan_rate_limit=shared_plan_rate_limit,
            shared_plan_burst_limit=shared_plan_burst_limit,
        )
        cache_ttl = edge_part.validate_cache_ttl(
            authorizer_cache_ttl or edge_part.DEFAULT_AUTHORIZER_CACHE_TTL, self._fail
        )
        self.reserved_concurrency = reserved_concurrency
        """The gateway function's reserved concurrency (``None``: unreserved)."""
        self.edge_namespace: str = contract.edge_namespace(f"{Stack.of(self).stack_name}/{self.node.path}")
        """Keeps this gateway's usage identifiers, and its Bedrock invocation-log records (requestMetadata
        ``aif_gateway``), apart from another gateway's in the same account and region."""
        self.timeouts = self._derive_timeouts(timeout)
        """The request's limits, all from ``timeout`` (API >= Lambda >= deadline + ledger margin)."""
        self.catalog = catalog
        self._retention = retention
        self.inference_profile_tag: str = cdk.Names.unique_id(self)
        """The ``ai-factory:gateway`` tag value of the application inference profiles this gateway may
        invoke (``ai_factory.constructs.inference_profiles``)."""

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

        replay_timeout = Duration.seconds(60)
        self.ledger = usage_ledger.build_usage_ledger(self, self.key, replay_timeout=replay_timeout)
        self.keys_table = self.ledger.keys_table
        self.usage_table = self.ledger.usage_table
        self.spill_queue = self.ledger.spill_queue
        self.spill_dead_letter_queue = self.ledger.spill_dead_letter_queue

        self.guardrail, self.guardrail_version = guardrail_part.build_guardrail(self, filters, pii_actions)

        # Access logs are kept as long as the gateway's log groups.
        self.prompts_bucket = prompt_view.build_prompts_bucket(
            self, self.key, access_log_days=retention_in_days(self._retention)
        )
        self.prompt_view_uri: str = prompt_view.view_uri(self.prompts_bucket)
        """Where ``ai-factory prompts publish --to`` writes the registry's runtime view for the gateway."""
        self.knowledge_base_parameter_prefix: str = (
            f"/{name_prefix(self)}/{Stack.of(self).stack_name}/knowledge-bases/"
        )
        """SSM path where ``RagFeature``s register knowledge bases for ``POST /v1/retrieve`` (docs/rag.md)."""

        # Every attempt down a fallback chain must end before the Lambda does, or the request would
        # die without its usage record: the chain gets a deadline a ledger margin inside the Lambda
        # timeout (the runtime derives the same from AIF_FUNCTION_TIMEOUT_S), and the non-streamed
        # calls (embeddings) a bounded model timeout.
        seconds = self.timeouts.function.to_seconds()
        config_fields: dict[str, Any] = {
            "model_timeout_s": float(max(5, min(60, seconds // 2 - 2))),
            "request_deadline_s": self.timeouts.request_deadline_s,
        }
        config_fields.update(gateway_config_overrides or {})
        # A concrete stack region picks each model's regional ID (e.g. an eu. inference profile);
        # an environment-agnostic stack (token region) keeps the catalog's default IDs.
        config = catalog.gateway_config(region=Stack.of(self).region, **config_fields)
        self.config = config
        """The runtime configuration staged into the function's code (``gateway_config.json``)."""
        code = lambda_.Code.from_asset(str(stage_gateway_asset(config)))
        region, published = layer_region(Stack.of(self).region)
        if not published and (powertools_layer_arn is None or web_adapter_layer_arn is None):
            cdk.Annotations.of(self).add_warning_v2(
                "ai-factory:gateway-layer-region",
                f"The public Powertools and Lambda Web Adapter layers are not known to be published in "
                f"{region}: pass powertools_layer_arn and web_adapter_layer_arn (docs/gateway.md).",
            )
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "PowertoolsLayer",
            powertools_layer_arn
            or powertools_layer(ARCHITECTURE, version=powertools_layer_version).arn(region),
        )
        adapter_layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "WebAdapterLayer", web_adapter_layer_arn or web_adapter_layer(ARCHITECTURE).arn(region)
        )
        environment = {
            contract.KEYS_TABLE_ENV: self.keys_table.table_name,
            contract.USAGE_TABLE_ENV: self.usage_table.table_name,
            contract.SPILL_QUEUE_URL_ENV: self.spill_queue.queue_url,
            contract.GUARDRAIL_ID_ENV: self.guardrail.attr_guardrail_id,
            contract.GUARDRAIL_VERSION_ENV: self.guardrail_version.attr_version,
            contract.GUARDRAIL_SCOPE_ENV: guardrail_scope,
            contract.PROMPT_VIEW_URI_ENV: self.prompt_view_uri,
            contract.KNOWLEDGE_BASE_PREFIX_ENV: self.knowledge_base_parameter_prefix,
            contract.POWERTOOLS_SERVICE_NAME_ENV: contract.GATEWAY_SERVICE_NAME,
            contract.POWERTOOLS_METRICS_NAMESPACE_ENV: contract.METRICS_NAMESPACE,
        }

        # The gateway's own HTTP server (run.sh) behind the Lambda Web Adapter, which streams each
        # response back as the server writes it (docs/gateway.md, "Deployed streaming").
        self.function = self._function(
            "Function",
            handler=GATEWAY_SERVER_HANDLER,
            description="AI Factory LLM gateway (OpenAI-compatible API -> Bedrock)",
            code=code,
            layers=[layer, adapter_layer],
            environment={
                **environment,
                contract.LAMBDA_EXEC_WRAPPER_ENV: "/opt/bootstrap",
                contract.LWA_INVOKE_MODE_ENV: "response_stream",
                contract.LWA_PORT_ENV: str(WEB_ADAPTER_PORT),
                # Ready once the server listens: an HTTP probe would be a request to the gateway
                # (an unknown-path 404 in the audit log and metrics on every cold start).
                "AWS_LWA_READINESS_CHECK_PROTOCOL": "tcp",
                contract.FUNCTION_TIMEOUT_ENV: str(int(seconds)),
                # The gateway's identity in every Bedrock call's requestMetadata: the online sampler
                # keeps only its features' own gateway's invocation-log records (the log group is shared
                # by every gateway in the account and region).
                contract.EDGE_NAMESPACE_ENV: self.edge_namespace,
                # OpenTelemetry spans (request, model attempts) to X-Ray's OTLP endpoint (trace_export).
                contract.TRACES_EXPORTER_ENV: "xray",
            },
            timeout=self.timeouts.function,
            memory_size=memory_size,
            reserved_concurrent_executions=reserved_concurrency,
        )
        self._grant_gateway_runtime(self.function.role)
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ExportSpansToXRayOtlpEndpoint",
                # PutSpans accepts the spans, PutSpansForIndexing makes them searchable (Transaction
                # Search); neither supports resource-level permissions.
                actions=["xray:PutSpans", "xray:PutSpansForIndexing"],
                resources=["*"],
            )
        )

        # The edge: the gateway's own key check as API Gateway's authorizer (aif_gateway.authorizer).
        self.authorizer_function = self._function(
            "AuthorizerFunction",
            handler=AUTHORIZER_HANDLER,
            description="AI Factory gateway: edge authorizer (API key -> feature usage plan)",
            code=code,
            layers=[],
            environment={
                contract.KEYS_TABLE_ENV: self.keys_table.table_name,
                contract.EDGE_NAMESPACE_ENV: self.edge_namespace,
            },
            timeout=Duration.seconds(10),
            memory_size=256,
        )
        assert self.authorizer_function.role is not None
        for statement in usage_ledger.read_key_records_statements(self.ledger, self.key):
            self.authorizer_function.role.add_to_principal_policy(statement)
        self.authorizers = edge_part.build_authorizers(self, self.authorizer_function, cache_ttl)
        self.web_acl = None
        if enable_waf:
            self.web_acl = edge_part.build_web_acl(
                self, key=self.key, retention=self._retention, rate_limit_per_ip=waf_rate_limit_per_ip
            )
            web_acl_arn = self.web_acl.attr_arn

        self.spill_replay_function = self._function(
            "SpillReplayFunction",
            handler=SPILL_REPLAY_HANDLER,
            description="AI Factory gateway: replays spilled usage records into the ledger",
            code=code,
            layers=[layer],
            # The replay only writes the ledger: it gets the usage table and nothing else.
            environment={
                k: v
                for k, v in environment.items()
                if k == contract.USAGE_TABLE_ENV or k.startswith("POWERTOOLS")
            },
            timeout=replay_timeout,
            memory_size=256,
        )
        self._grant_usage_write(self.spill_replay_function.role)
        self.spill_replay_function.add_event_source(
            event_sources.SqsEventSource(self.spill_queue, batch_size=10, report_batch_item_failures=True)
        )

        # Records an environment took with it (no SIGTERM: a crash, a reset after a timeout) are
        # re-delivered from their audit lines into the spill queue's replay (recovery_part).
        recovery_dlq = recovery_part.dead_letter_queue(self, self.key)
        recovery_function = self._function(
            "UsageRecoveryFunction",
            handler=USAGE_RECOVERY_HANDLER,
            description="AI Factory gateway: re-delivers audited usage records the ledger lacks",
            code=code,
            layers=[],
            environment=recovery_part.environment(self.ledger, self.function.log_group),
            timeout=recovery_part.TIMEOUT,
            memory_size=256,
            **recovery_part.failure_handling(recovery_dlq),
        )
        assert recovery_function.role is not None
        for statement in recovery_part.statements(self.ledger, self.key, self.function.log_group):
            recovery_function.role.add_to_principal_policy(statement)
        self.usage_recovery = recovery_part.UsageRecovery(
            recovery_function,
            recovery_part.schedule(
                self,
                recovery_function,
                recovery_dlq,
                self.key,
                f"{name_prefix(self)}-usage-recovery-{self.edge_namespace}",
            ),
            recovery_dlq,
        )
        """The scheduled usage recovery: its function, schedule and dead-letter queue."""

        self.api, self._methods = api_part.build_rest_api(
            self,
            self.function,
            api_part.ApiOptions(
                endpoint_type=endpoint_type,
                vpc_endpoint=vpc_endpoint,
                stage_name=stage_name,
                throttling_rate_limit=throttling_rate_limit,
                throttling_burst_limit=throttling_burst_limit,
                configure_account_logging_role=configure_account_logging_role,
                web_acl_arn=web_acl_arn,
                integration_timeout=self.timeouts.integration,
            ),
            self._log_group,
            self.authorizers,
        )
        self.shared_usage_plan = edge_part.build_shared_usage_plan(
            self, self.api, self.edge_namespace, shared_plan_rate_limit, shared_plan_burst_limit
        )
        self.url: str = self.api.url_for_path("/v1")
        """Base URL for OpenAI clients (``OpenAI(base_url=gateway.url)``): ``https://.../<stage>/v1``."""

        self._output("ApiUrl", self.url, "OpenAI-compatible base URL of the LLM gateway")
        self._output("KeysTableName", self.keys_table.table_name, "DynamoDB table of gateway API keys")
        self._output("UsageTableName", self.usage_table.table_name, "DynamoDB usage ledger of the gateway")
        self._output("PromptViewUri", self.prompt_view_uri, "Where the prompt registry publishes its view")
        self._acknowledge_design_findings(self._methods, web_acl=web_acl_arn is not None)

    # ----------------------------------------------------------------------------------------- public

    def add_feature_usage_plan(
        self,
        scope: Construct,
        *,
        team: str,
        feature: str,
        rate_limit_rpm: int,
        daily_request_quota: int | None = None,
    ) -> apigw.UsagePlan:
        """``team/feature``'s own usage plan on this gateway's stage, created in ``scope`` (``AiFeature``
        calls it in the feature's stack): throttle from ``rate_limit_rpm`` (``edge.edge_rate``), an
        optional daily request quota, and the feature's usage identifier as its API key. The feature's
        key record must say it has a plan (``FeatureKeyProperties.EDGE_USAGE_PLAN``)."""
        return edge_part.add_feature_usage_plan(
            scope,
            self.api,
            self.edge_namespace,
            team=team,
            feature=feature,
            rate_limit_rpm=rate_limit_rpm,
            daily_request_quota=daily_request_quota,
        )

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
        return prompt_view.grant_publish(self.prompts_bucket, self.key, grantee)

    def key_provisioning_statements(self) -> list[iam.PolicyStatement]:
        """The statements a key provisioner's role needs (``AiFeature``'s custom resource): write and find
        key records in the keys table, and use the gateway key through DynamoDB only."""
        return usage_ledger.provision_keys_statements(self.ledger, self.key)

    @property
    def keys_table_name(self) -> str:
        """Name of the API-key table (``ai-factory keys --table``, the key provisioner's property)."""
        return self.keys_table.table_name

    @property
    def audit_log_group(self) -> logs.ILogGroup:
        """The gateway function's log group: one ``audit`` line per request (the audit trail's source)."""
        return self.function.log_group

    @property
    def runtime_role(self) -> iam.IRole:
        """The gateway function's execution role, for permissions other stacks add to the gateway's
        runtime (``RagFeature`` lets it retrieve from its knowledge base)."""
        assert self.function.role is not None
        return self.function.role

    def metric_usage_recovery_failures(self, period: Duration | None = None) -> cloudwatch.IMetric:
        """Failed usage-recovery runs + runs and spilled records waiting in dead-letter queues: above 0
        means some usage record is not reaching the ledger on its own (docs/runbooks/usage-recovery.md)."""
        return recovery_part.failures_metric(self.usage_recovery, self.ledger, period)

    def metric_requests(self, **props: Any) -> cloudwatch.Metric:
        """API Gateway ``Count`` of the gateway stage: every request (sum over 5 minutes)."""
        props.setdefault("statistic", "Sum")
        return self.api.deployment_stage.metric_count(**props)

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

    # ------------------------------------------------------------------- team accounts and importers

    @staticmethod
    def from_gateway_attributes(
        scope: Construct, construct_id: str, *, attributes: GatewayAttributes
    ) -> ImportedLlmGateway:
        """A gateway deployed by another app (or account), for ``AiFeature(gateway=...)``."""
        return ImportedLlmGateway(scope, construct_id, attributes=attributes)

    @staticmethod
    def from_lookup(
        scope: Construct,
        construct_id: str,
        *,
        parameter_prefix: str = contract.GATEWAY_PARAMETER_PREFIX,
        catalog: ModelCatalog | None = None,
    ) -> ImportedLlmGateway:
        """A deployed gateway found through the SSM parameters its stack publishes (``publish_parameters``);
        the values are cached in the app's ``cdk.context.json``. ``parameter_prefix`` may be the ARN of a
        prefix shared from the platform account."""
        attributes = lookup_attributes(scope, parameter_prefix=parameter_prefix, catalog=catalog)
        return ImportedLlmGateway(scope, construct_id, attributes=attributes)

    def enable_team_accounts(
        self,
        *,
        accounts: list[str] | tuple[str, ...],
        organization_id: str | None = None,
        max_feature_rate_limit_rpm: int = team_accounts_part.DEFAULT_MAX_FEATURE_RATE_LIMIT_RPM,
    ) -> team_accounts_part.TeamAccountAccess:
        """Serve features deployed from the listed team accounts: a shared key provisioner those accounts'
        CloudFormation may invoke (each also limited to ``organization_id`` when given) and the feature
        registry (``ai_factory.constructs.gateway.team_accounts``). Call once.

        Each such feature gets, from the provisioner, a usage plan of its own on this gateway's stage and
        an application inference profile per Bedrock model (``docs/gateway.md``, "The edge").
        ``max_feature_rate_limit_rpm`` caps the plan's throttle: a feature asking for more requests per
        minute is throttled at this rate at the edge. Default 600 (10 per second)."""
        if self.team_accounts is not None:
            raise self._fail("enable_team_accounts", "was already called on this gateway")
        label = f"LlmGateway '{self.node.path}'"
        checked = team_accounts_part.validate(label, accounts, organization_id)
        cap = team_accounts_part.validate_rate_cap(label, max_feature_rate_limit_rpm)
        self.team_accounts = team_accounts_part.build_team_account_access(
            self, self, checked, organization_id, cap
        )
        return self.team_accounts

    def enable_online_samples(self, consumer: Construct) -> online_samples_part.GatewaySampleQueue:
        """The queue to which this gateway sends the sampled exchanges of targets outside Bedrock's
        invocation log (``ai_factory.constructs.gateway.online_samples``), made on the first call.
        ``consumer`` (an ``OnlineEvaluation``) is the one construct that reads it: SQS hands each message
        to one reader, so a second consumer would see only part of the samples and is refused."""
        if self.online_samples is None:
            self.online_samples = online_samples_part.build_sample_queue(self, self.function, consumer)
        elif self.online_samples.consumer is not consumer:
            raise self._fail(
                "enable_online_samples",
                f"{self.online_samples.consumer.node.path} already consumes this gateway's sample queue; "
                "one OnlineEvaluation samples a gateway's features (find_sampled_features(app))",
            )
        return self.online_samples

    def publish_parameters(self, prefix: str = contract.GATEWAY_PARAMETER_PREFIX) -> list[str]:
        """Publish what ``LlmGateway.from_lookup`` reads as SSM parameters under ``prefix`` (call after
        ``enable_team_accounts``); returns their names."""
        return team_accounts_part.publish_parameters(self, self, prefix)

    @property
    def metrics_namespace(self) -> str:
        """CloudWatch namespace of the gateway's per-feature metrics."""
        return contract.METRICS_NAMESPACE

    @property
    def key_provisioning_service_token(self) -> str | None:
        """Service token of the shared key provisioner (``None`` until ``enable_team_accounts``)."""
        return self.team_accounts.service_token if self.team_accounts else None

    @property
    def key_provisioner_role_arn(self) -> str | None:
        """Role of the shared key provisioner, which team accounts' key-writer roles trust."""
        return self.team_accounts.provisioner_role.role_arn if self.team_accounts else None

    # ------------------------------------------------------------------------------------ validation

    def _fail(self, field: str, why: str) -> ValueError:
        return ValueError(f"LlmGateway '{self.node.path}': {field}: {why}")

    def _derive_timeouts(self, timeout: Any) -> GatewayTimeouts:
        if not isinstance(timeout, Duration) or timeout.is_unresolved():
            raise self._fail("timeout", f"must be a concrete aws_cdk.Duration, got {timeout!r}")
        seconds = timeout.to_milliseconds() / 1000
        if seconds != int(seconds) or not MIN_TIMEOUT_S <= seconds <= MAX_TIMEOUT_S:
            raise self._fail(
                "timeout",
                f"must be whole seconds from {MIN_TIMEOUT_S} s to {MAX_TIMEOUT_S} s (15 minutes: Lambda's "
                f"maximum and API Gateway's longest stream), got {seconds:g} s",
            )
        function = Duration.seconds(int(seconds))
        # API Gateway waits as long as the function may run: the function, not the API, ends a request.
        return GatewayTimeouts(
            integration=function,
            function=function,
            request_deadline_s=float(seconds - LEDGER_MARGIN_S),
            ledger_margin_s=LEDGER_MARGIN_S,
        )

    def _validate_edge(
        self,
        *,
        web_acl_arn: str | None,
        enable_waf: bool,
        waf_rate_limit_per_ip: int,
        reserved_concurrency: int | None,
        shared_plan_rate_limit: float,
        shared_plan_burst_limit: int,
    ) -> None:
        if enable_waf and web_acl_arn is not None:
            raise self._fail(
                "enable_waf", "creates a web ACL; pass either enable_waf or web_acl_arn, not both"
            )
        if not _whole(waf_rate_limit_per_ip) or not 10 <= waf_rate_limit_per_ip <= 2_000_000_000:
            raise self._fail(
                "waf_rate_limit_per_ip",
                "must be a whole number from 10 to 2,000,000,000 (AWS WAF's bounds), "
                f"got {waf_rate_limit_per_ip!r}",
            )
        if reserved_concurrency is not None and (
            not _whole(reserved_concurrency) or reserved_concurrency < 1
        ):
            raise self._fail(
                "reserved_concurrency", f"must be a whole number >= 1 or None, got {reserved_concurrency!r}"
            )
        if not _positive(shared_plan_rate_limit):
            raise self._fail(
                "shared_plan_rate_limit", f"must be a number > 0, got {shared_plan_rate_limit!r}"
            )
        if not _whole(shared_plan_burst_limit) or shared_plan_burst_limit < 1:
            raise self._fail(
                "shared_plan_burst_limit", f"must be a whole number >= 1, got {shared_plan_burst_limit!r}"
            )

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
        guardrail_scope: str,
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
        guardrail_part.validate_policy(filters, pii_actions, self._fail)
        if guardrail_scope not in GUARD_SCOPES:
            raise self._fail(
                "guardrail_scope", f"must be one of {', '.join(GUARD_SCOPES)}, got {guardrail_scope!r}"
            )
        # Never-expiring logs are refused: the audit trail lives in the usage table, not in logs.
        retention = finite_retention(log_retention)
        if retention is None:
            raise self._fail(
                "log_retention",
                f"must be a finite logs.RetentionDays or one of {sorted(RETENTION_DAYS)} days, "
                f"got {log_retention!r}",
            )
        return retention

    # ------------------------------------------------------------------------------------- building

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
        layers: list[lambda_.ILayerVersion],
        environment: dict[str, str],
        timeout: Duration,
        memory_size: int,
        tracing: bool = True,
        reserved_concurrent_executions: int | None = None,
        **props: Any,
    ) -> lambda_.Function:
        # An explicit role (no AWS-managed AWSLambdaBasicExecutionRole) writing only to its own log group.
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{description}: execution role",
        )
        log_group = function_log_group(self, f"{construct_id}Logs", key=self.key, retention=self._retention)
        role.add_to_policy(write_own_logs_statement(log_group))
        return hardened_function(
            self,
            construct_id,
            description=description,
            handler=handler,
            code=code,
            layers=layers,
            role=role,
            environment=environment,
            timeout=timeout,
            memory_size=memory_size,
            log_group=log_group,
            tracing=tracing,
            reserved_concurrent_executions=reserved_concurrent_executions,
            **props,
        )

    def _grant_usage_write(self, role: iam.IRole | None) -> None:
        assert role is not None
        for statement in usage_ledger.usage_write_statements(self.ledger, self.key):
            role.add_to_principal_policy(statement)

    def _grant_gateway_runtime(self, role: iam.IRole | None) -> None:
        """The gateway function's access: the catalog's models and endpoints, the guardrail, the key
        lookup, the spill queue, the prompt view, the feedback index and the usage ledger."""
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
            # Features' application inference profiles (the bill split by feature): created by the
            # feature stacks after this one, so named by their tag; invoking through one also needs
            # the underlying model, which only the catalog's ARNs above allow.
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="InvokeFeatureInferenceProfiles",
                    actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                    resources=[APPLICATION_PROFILE_ARNS],
                    conditions={
                        "StringEquals": {f"aws:ResourceTag/{GATEWAY_TAG_KEY}": self.inference_profile_tag}
                    },
                )
            )
            cdk.Validations.of(role.node.find_child("DefaultPolicy")).acknowledge(
                cdk.Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{APPLICATION_PROFILE_FINDING}]",
                    reason=(
                        "Features' Bedrock application inference profiles (one per feature and model, for "
                        "cost allocation) are created by feature stacks deployed after the gateway, and "
                        "Bedrock generates their IDs. The statement is limited to application inference "
                        "profiles in this account and region tagged with this gateway's "
                        f"{GATEWAY_TAG_KEY} value, and to the invoke actions; a profile only reaches the "
                        "model it copies, which the role must also be allowed (only the catalog's model "
                        "ARNs are)."
                    ),
                )
            )
        count_arns = self.catalog.bedrock_count_tokens_arns(
            Aws.PARTITION, Aws.REGION if Token.is_unresolved(region) else region
        )
        if count_arns:
            # /v1/messages/count_tokens: exactly the models whose catalog entry says they can count.
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="CountCatalogModelTokens", actions=["bedrock:CountTokens"], resources=count_arns
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
        secret_arns = [_secret_arn(name) for name in self.catalog.external_secrets()]
        if secret_arns:
            # External providers' API keys (OpenAI, Anthropic, Mistral): exactly the catalog's secrets,
            # decrypted only through Secrets Manager (their KMS key is the platform team's choice).
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="ReadExternalProviderSecrets",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=secret_arns,
                )
            )
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="DecryptExternalProviderSecrets",
                    actions=["kms:Decrypt"],
                    resources=["*"],
                    conditions={
                        **via_services("secretsmanager"),
                        "StringLike": {"kms:EncryptionContext:SecretARN": secret_arns},
                    },
                )
            )
        # Bedrock subscribes the account to a Marketplace model on its first invocation, as this role.
        products, unlisted = marketplace.marketplace_models(self.catalog)
        for name in unlisted:
            cdk.Annotations.of(self).add_warning_v2(
                f"ai-factory:marketplace-{name}",
                f"Catalog model '{name}' is sold through AWS Marketplace but has no product ID in "
                "ai_factory.constructs.gateway.marketplace: subscribe the account to it before its first "
                "call (docs/deploy.md).",
            )
        statements = [
            *marketplace.subscribe_statements(list(products.values())),
            guardrail_part.apply_statement(self.guardrail),
            usage_ledger.read_keys_statement(self.ledger),
            usage_ledger.spill_statement(self.ledger),
            *prompt_view.read_statements(self.prompts_bucket, self.key),
            usage_ledger.find_by_request_id_statement(self.ledger),
        ]
        for statement in statements:
            role.add_to_principal_policy(statement)
        self._grant_usage_write(role)

    def _output(self, name: str, value: str, description: str) -> None:
        output = cdk.CfnOutput(self, name, value=value, description=description)
        # Readable, stable output keys (e.g. GatewayApiUrl) for scripts and the CLI.
        output.override_logical_id(re.sub(r"[^A-Za-z0-9]", "", self.node.id) + name)

    def _acknowledge_design_findings(self, methods: list[Any], web_acl: bool) -> None:
        """cdk-nag findings that are deliberate design choices, each acknowledged where it arises."""
        for function in (self.function, self.spill_replay_function):
            assert function.role is not None
            policy = function.role.node.find_child("DefaultPolicy")
            cdk.Validations.of(policy).acknowledge(
                cdk.Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::*]",
                    reason=(
                        "Only X-Ray's xray:PutTraceSegments and xray:PutTelemetryRecords (Lambda's own "
                        "segments), xray:PutSpans and xray:PutSpansForIndexing (the gateway's OpenTelemetry "
                        "spans, gateway function only) and AWS "
                        "Marketplace's aws-marketplace:ViewSubscriptions and aws-marketplace:Subscribe use "
                        "Resource '*': these actions support no resource-level permissions (AWS requires "
                        "'*'); Subscribe is limited to the catalog models' product IDs by the "
                        "aws-marketplace:ProductId condition. kms:Decrypt on '*' is for the external "
                        "providers' secrets, whose KMS key the platform team chooses: it holds only through "
                        "Secrets Manager (kms:ViaService) for exactly the catalog's secrets "
                        "(kms:EncryptionContext:SecretARN). Every other statement names its table, queue, "
                        "key, guardrail, log group or model ARN."
                    ),
                )
            )
        api_part.acknowledge_api_design(self.api, methods, web_acl=web_acl)
        self._acknowledge_resilience_findings()

    def _acknowledge_resilience_findings(self) -> None:
        """NIST 800-53 and Serverless findings that do not fit this design, each with its reason."""
        api_part.acknowledge_api_resilience(self.api)
        usage_ledger.acknowledge_backups(self.ledger)
        prompt_view.acknowledge_prompts_bucket(self.prompts_bucket)
        acknowledge_synchronous_invocation(
            self.function,
            caller="API Gateway (Lambda proxy integration)",
            failures="the caller gets an error response and the usage record goes to the ledger or the "
            "spill queue",
        )
        if self.reserved_concurrency is None:
            acknowledge_unreserved_concurrency(
                self.function, bounded_by="the API stage's throttling and each feature's usage plan"
            )
        assert self.authorizer_function.role is not None
        cdk.Validations.of(self.authorizer_function.role.node.find_child("DefaultPolicy")).acknowledge(
            cdk.Acknowledgment(id="AwsSolutions-IAM5[Resource::*]", reason=XRAY_WILDCARD_REASON)
        )
        acknowledge_synchronous_invocation(
            self.authorizer_function,
            caller="API Gateway (Lambda authorizer)",
            failures="API Gateway answers 503 (the key_check_unavailable gateway response)",
        )
        acknowledge_unreserved_concurrency(
            self.authorizer_function,
            bounded_by="the API stage's throttling and API Gateway's authorizer cache (one call per key "
            "and TTL on the OpenAI door); each call is one cached key lookup",
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
        recovery_part.acknowledge_design(self.usage_recovery)
        assert self.usage_recovery.function.role is not None
        cdk.Validations.of(self.usage_recovery.function.role.node.find_child("DefaultPolicy")).acknowledge(
            cdk.Acknowledgment(id="AwsSolutions-IAM5[Resource::*]", reason=XRAY_WILDCARD_REASON)
        )
        acknowledge_unreserved_concurrency(
            self.usage_recovery.function,
            bounded_by="its schedule (one run every 5 minutes, plus at most two retries of a failed run)",
        )
        for function in (
            self.function,
            self.spill_replay_function,
            self.authorizer_function,
            self.usage_recovery.function,
        ):
            acknowledge_outside_vpc(function)
        usage_ledger.acknowledge_spill_path(self.ledger, self.spill_replay_function)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _secret_arn(secret: str) -> str:
    """A catalog secret (name or ARN) as the ARN IAM matches: Secrets Manager appends six random
    characters to a secret's name in its ARN, so a name matches with ``-??????``."""
    if secret.startswith("arn:"):
        return secret
    return f"arn:{Aws.PARTITION}:secretsmanager:{Aws.REGION}:{Aws.ACCOUNT_ID}:secret:{secret}-??????"
