"""The names the runtime and the infrastructure share, defined once.

The Lambda functions emit metrics and read environment variables, tables and custom-resource properties;
the constructs declare them, build alarms and dashboards on the metrics, and the CLI and the compliance
report read what the constructs wrote. Every such name lives here, so a rename is one edit and the two
sides cannot drift. Standard library only: the gateway, canary, connector and key-provisioner assets ship
this file, and the construct library imports it at synth time.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

# ------------------------------------------------------------------------------------------- metrics

METRICS_NAMESPACE = "AIFactory"
"""Gateway, feedback and canary metrics."""
CONNECTOR_METRICS_NAMESPACE = "AIFactory/DataConnector"
"""Data-connector metrics."""
GATEWAY_SERVICE_NAME = "ai-factory-gateway"
"""Powertools service name of the gateway functions (the ``service`` dimension of their EMF records)."""

# Dimension names and the dimension sets the emitters publish (CloudWatch matches metrics on the exact set).
TEAM = "Team"
FEATURE = "Feature"
MODEL = "Model"
DATASET = "Dataset"
KIND = "Kind"
SUITE = "Suite"
FEATURE_DIMENSIONS = (TEAM, FEATURE)
MODEL_DIMENSIONS = (TEAM, FEATURE, MODEL)
DATASET_DIMENSIONS = (DATASET,)
PII_KIND_DIMENSIONS = (DATASET, KIND)
GATE_DIMENSIONS = (TEAM, FEATURE, SUITE)

# CloudWatch units (the strings of the EMF specification).
COUNT = "Count"
MILLISECONDS = "Milliseconds"
NO_UNIT = "None"


@dataclass(frozen=True)
class Metric:
    """One metric: its name, unit, namespace, the dimension sets it is published with, and its meaning."""

    name: str
    unit: str
    namespace: str
    dimension_sets: tuple[tuple[str, ...], ...]
    description: str


def _gateway(name: str, unit: str, description: str) -> Metric:
    return Metric(name, unit, METRICS_NAMESPACE, (MODEL_DIMENSIONS, FEATURE_DIMENSIONS), description)


def _feature(name: str, unit: str, description: str) -> Metric:
    return Metric(name, unit, METRICS_NAMESPACE, (FEATURE_DIMENSIONS,), description)


def _connector(name: str, description: str, dimensions: tuple[str, ...] = DATASET_DIMENSIONS) -> Metric:
    return Metric(name, COUNT, CONNECTOR_METRICS_NAMESPACE, (dimensions,), description)


# Gateway, one EMF record per request (metering.EmfMetricsSink).
REQUESTS = _gateway("Requests", COUNT, "requests answered, whatever their status")
STATUS_2XX = _gateway("Status2xx", COUNT, "requests answered with a 2xx status")
STATUS_4XX = _gateway("Status4xx", COUNT, "requests refused with a 4xx status (bad key, budget, input)")
STATUS_5XX = _gateway("Status5xx", COUNT, "requests that failed with a 5xx status")
LATENCY_MS = _gateway("LatencyMs", MILLISECONDS, "time from request to answer inside the gateway")
INPUT_TOKENS = _gateway("InputTokens", COUNT, "input tokens billed by the model")
OUTPUT_TOKENS = _gateway("OutputTokens", COUNT, "output tokens billed by the model")
CACHE_READ_TOKENS = _gateway("CacheReadTokens", COUNT, "prompt-cache tokens read")
CACHE_WRITE_TOKENS = _gateway("CacheWriteTokens", COUNT, "prompt-cache tokens written")
COST_USD = _gateway("CostUSD", COUNT, "cost in US dollars, each token counter priced separately")
FALLBACKS = _gateway("Fallbacks", COUNT, "requests answered by a fallback model")
CIRCUIT_BREAKER_OPENED = _gateway("CircuitBreakerOpened", COUNT, "model circuit breakers that opened")
GUARDRAIL_INTERVENTIONS = _gateway("GuardrailInterventions", COUNT, "requests the guardrail intervened on")
THROTTLED = _gateway("Throttled", COUNT, "requests refused for budget or rate limit")
BUDGET_EXHAUSTED = _gateway(
    "BudgetExhausted", COUNT, "requests refused because the key's monthly budget is spent (HTTP 429)"
)
# Feedback (POST /v1/feedback).
FEEDBACK_SCORE = _feature("FeedbackScore", NO_UNIT, "user feedback score, 0..1 (average it)")
FEEDBACK_COUNT = _feature("FeedbackCount", COUNT, "feedback records received")
# Canary, one EMF record per scheduled run (aif_canary).
CANARY_PASS_RATE = _feature("CanaryPassRate", NO_UNIT, "share of the canary's cases that passed, 0..1")
# The canary's, despite the name (kept so existing alarms and queries go on working): dashboards label it
# "canary assertions", and the eval gate's own figure is GatePassRate.
EVAL_PASS_RATE = _feature("EvalPassRate", NO_UNIT, "share of the canary's assertions that passed, 0..1")
# The eval gate (`ai-factory eval`, in CI and the pipeline), one value per suite run.
GATE_PASS_RATE = Metric(
    "GatePassRate",
    NO_UNIT,
    METRICS_NAMESPACE,
    (GATE_DIMENSIONS,),
    "share of an eval suite's cases that passed in the eval gate (ai-factory eval), 0..1",
)
CANARY_CASES = _feature("CanaryCases", COUNT, "cases the canary ran")
CANARY_ERRORS = _feature("CanaryErrors", COUNT, "canary cases the gateway did not answer")
CANARY_LATENCY_MS = _feature("CanaryLatencyMs", MILLISECONDS, "mean latency of the canary's cases")
# Online evaluation, one EMF record per sampled exchange (aif_online.scorer).
ONLINE_SAMPLES_SCORED = _feature("OnlineSamplesScored", COUNT, "sampled production exchanges scored")
ONLINE_ASSERTION_PASS_RATE = _feature(
    "OnlineAssertionPassRate", NO_UNIT, "share of the free-traffic assertions a sampled answer passed, 0..1"
)
ONLINE_PII_LEAKS = _feature(
    "OnlinePiiLeaks", COUNT, "PII values in a sampled answer that its question did not contain"
)
ONLINE_JUDGE_SCORE = _feature("OnlineJudgeScore", NO_UNIT, "judge model's score of a sampled answer, 0..1")
ONLINE_JUDGE_TOKENS = _feature("OnlineJudgeTokens", COUNT, "tokens the judge used to score a sample")
ONLINE_OUTPUT_CHARS = _feature("OnlineOutputChars", COUNT, "length of a sampled answer in characters")
ONLINE_REFUSALS = _feature("OnlineRefusals", COUNT, "sampled answers that refuse (average: refusal rate)")
ONLINE_TOOL_CALL_ANSWERS = _feature(
    "OnlineToolCallAnswers", COUNT, "sampled answers that call a tool (average: tool-call rate)"
)
ONLINE_GUARDRAIL_INTERVENTIONS = _feature(
    "OnlineGuardrailInterventions", COUNT, "sampled answers the guardrail intervened on (average: rate)"
)
ONLINE_TRACE_FAILURES = _feature(
    "OnlineTraceFailures", COUNT, "sampled exchanges whose MLflow trace was not recorded whole (scores kept)"
)
# Drift, one EMF record per feature per run of the drift job (aif_online.drift_job).
INPUT_DRIFT = _feature(
    "InputDrift", NO_UNIT, "squared distance between the prompt-embedding means of the day and the baseline"
)
INPUT_DRIFT_P_VALUE = _feature("InputDriftPValue", NO_UNIT, "permutation p-value of InputDrift, 0..1")
OUTPUT_LENGTH_RATIO = _feature("OutputLengthRatio", NO_UNIT, "mean answer length, day over baseline")
LANGUAGE_SHARE_CHANGE = _feature(
    "LanguageShareChange", NO_UNIT, "change of the share of answers in the baseline's main language"
)
REFUSAL_RATE_CHANGE = _feature(
    "RefusalRateChange", NO_UNIT, "share of answers that refuse, day minus baseline (-1..1)"
)
TOOL_CALL_RATE_CHANGE = _feature(
    "ToolCallRateChange", NO_UNIT, "share of answers that call a tool, day minus baseline (-1..1)"
)
GUARDRAIL_RATE_CHANGE = _feature(
    "GuardrailRateChange", NO_UNIT, "share of answers the guardrail intervened on, day minus baseline (-1..1)"
)
# Delivery, published by `ai-factory lead-time --publish` (from the registry and deployment records).
LEAD_TIME_DAYS = _feature(
    "LeadTimeDays",
    NO_UNIT,
    "days from a feature's first appearance to its first prompt version in production",
)
"""Published once per feature by ``ai-factory lead-time --publish`` (the platform dashboard shows it)."""
# Data connector, one EMF record per file (aif_connector).
RECORDS_IN = _connector("RecordsIn", "records read from raw files (valid or not)")
RECORDS_CURATED = _connector("RecordsCurated", "records written to the curated zone")
RECORDS_QUARANTINED = _connector("RecordsQuarantined", "records refused, each with its reason")
FILES_QUARANTINED = _connector("FilesQuarantined", "whole files refused")
OBJECTS_MISSING = _connector("ObjectsMissing", "notified objects that were gone when read")
RUNS_FAILED = _connector("RunsFailed", "runs that failed (a FAIL lineage event was written)")
PII_FINDINGS = _connector("PiiFindings", "PII spans masked, per kind", PII_KIND_DIMENSIONS)
# Amazon Comprehend PII detection (connector option ``pii_detection="comprehend"``).
COMPREHEND_REQUESTS = _connector("ComprehendRequests", "DetectPiiEntities requests sent")
COMPREHEND_UNITS = _connector("ComprehendUnits", "Comprehend units billed (100 characters, 3 minimum)")
COMPREHEND_COST_USD = _connector("ComprehendCostUSD", "Comprehend cost in US dollars at the list price")
PII_DETECTION_FAILURES = _connector(
    "PiiDetectionFailures", "records quarantined because Comprehend could not check them"
)

METRICS: tuple[Metric, ...] = (
    REQUESTS,
    STATUS_2XX,
    STATUS_4XX,
    STATUS_5XX,
    LATENCY_MS,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    CACHE_READ_TOKENS,
    CACHE_WRITE_TOKENS,
    COST_USD,
    FALLBACKS,
    CIRCUIT_BREAKER_OPENED,
    GUARDRAIL_INTERVENTIONS,
    THROTTLED,
    BUDGET_EXHAUSTED,
    FEEDBACK_SCORE,
    FEEDBACK_COUNT,
    CANARY_PASS_RATE,
    EVAL_PASS_RATE,
    GATE_PASS_RATE,
    CANARY_CASES,
    CANARY_ERRORS,
    CANARY_LATENCY_MS,
    ONLINE_SAMPLES_SCORED,
    ONLINE_ASSERTION_PASS_RATE,
    ONLINE_PII_LEAKS,
    ONLINE_JUDGE_SCORE,
    ONLINE_JUDGE_TOKENS,
    ONLINE_OUTPUT_CHARS,
    ONLINE_REFUSALS,
    ONLINE_TOOL_CALL_ANSWERS,
    ONLINE_GUARDRAIL_INTERVENTIONS,
    ONLINE_TRACE_FAILURES,
    INPUT_DRIFT,
    INPUT_DRIFT_P_VALUE,
    OUTPUT_LENGTH_RATIO,
    LANGUAGE_SHARE_CHANGE,
    REFUSAL_RATE_CHANGE,
    TOOL_CALL_RATE_CHANGE,
    GUARDRAIL_RATE_CHANGE,
    LEAD_TIME_DAYS,
    RECORDS_IN,
    RECORDS_CURATED,
    RECORDS_QUARANTINED,
    FILES_QUARANTINED,
    OBJECTS_MISSING,
    RUNS_FAILED,
    PII_FINDINGS,
    COMPREHEND_REQUESTS,
    COMPREHEND_UNITS,
    COMPREHEND_COST_USD,
    PII_DETECTION_FAILURES,
)
"""Every metric the factory emits (``docs/observability.md`` lists each one)."""

_STATUS_METRICS = {2: STATUS_2XX, 4: STATUS_4XX, 5: STATUS_5XX}


def status_metric(status: int) -> Metric:
    """``Status2xx`` / ``Status4xx`` / ``Status5xx`` for an HTTP status (other classes count as 5xx)."""
    return _STATUS_METRICS.get(status // 100, STATUS_5XX)


# ------------------------------------------------------------------------------ environment variables

# Gateway functions.
KEYS_TABLE_ENV = "AIF_KEYS_TABLE"
USAGE_TABLE_ENV = "AIF_USAGE_TABLE"
SPILL_QUEUE_URL_ENV = "AIF_SPILL_QUEUE_URL"
SAMPLE_QUEUE_URL_ENV = "AIF_SAMPLE_QUEUE_URL"
"""The gateway's online-evaluation sample queue (``online_samples``); set only when an
``OnlineEvaluation`` consumes it."""
GUARDRAIL_ID_ENV = "AIF_GUARDRAIL_ID"
GUARDRAIL_VERSION_ENV = "AIF_GUARDRAIL_VERSION"
GUARDRAIL_SCOPE_ENV = "AIF_GUARDRAIL_SCOPE"
"""Which messages the guardrail assesses: ``latest`` (the newest user turn, the default) or ``all``."""
PROMPT_VIEW_URI_ENV = "AIF_PROMPT_VIEW_URI"
KNOWLEDGE_BASE_PREFIX_ENV = "AIF_KNOWLEDGE_BASE_PREFIX"
# The data connector announces each curated dataset version on this EventBridge bus (knowledge-base sync).
CONNECTOR_EVENT_BUS_ENV = "AIF_CONNECTOR_EVENT_BUS"
CONFIG_PATH_ENV = "AIF_CONFIG_PATH"
FUNCTION_TIMEOUT_ENV = "AIF_FUNCTION_TIMEOUT_S"
"""The gateway function's timeout in seconds: the request deadline derives from it (minus a ledger margin)."""
ECHO_TOKEN_MS_ENV = "AIF_ECHO_TOKEN_MS"
"""Offline ``echo`` model: milliseconds between streamed words (local mode and benchmarks)."""
# Lambda Web Adapter (set on the gateway function; the adapter's own names).
TRACES_EXPORTER_ENV = "AIF_TRACES_EXPORTER"
"""Where the gateway's OpenTelemetry spans go: ``xray`` (deployed), ``console`` or ``none`` (default)."""
TRACES_ENDPOINT_ENV = "AIF_TRACES_ENDPOINT"
"""Overrides the X-Ray OTLP endpoint URL (tests point it at a local server)."""
LWA_PORT_ENV = "AWS_LWA_PORT"
LWA_INVOKE_MODE_ENV = "AWS_LWA_INVOKE_MODE"
LAMBDA_EXEC_WRAPPER_ENV = "AWS_LAMBDA_EXEC_WRAPPER"
# Canary and eval clients.
GATEWAY_URL_ENV = "AIF_GATEWAY_URL"
API_KEY_ENV = "AIF_API_KEY"
METRICS_NAMESPACE_ENV = "AIF_METRICS_NAMESPACE"
# Online scorer: sampled exchanges as MLflow traces.
MLFLOW_TRACKING_URI_ENV = "AIF_MLFLOW_TRACKING_URI"
"""Where the online scorer records traces: a SageMaker MLflow tracking-server ARN (SigV4-signed) or an
``http(s)://`` URL of a plain MLflow server (local runs, tests). Unset: no traces."""
MLFLOW_ENDPOINT_ENV = "AIF_MLFLOW_ENDPOINT"
"""Overrides the HTTPS endpoint an ARN resolves to (requests are still signed; tests use a local server)."""
MLFLOW_EXPERIMENT_ENV = "AIF_MLFLOW_EXPERIMENT"
"""The MLflow experiment the traces go to: the eval runs' (``ai-factory/evals``), so they sit side by side."""
# Data connector.
RAW_BUCKET_ENV = "AIF_RAW_BUCKET"
CURATED_BUCKET_ENV = "AIF_CURATED_BUCKET"
QUARANTINE_BUCKET_ENV = "AIF_QUARANTINE_BUCKET"
LINEAGE_BUCKET_ENV = "AIF_LINEAGE_BUCKET"
GLUE_DATABASE_ENV = "AIF_GLUE_DATABASE"
TABLE_NAMESPACE_ENV = "AIF_TABLE_NAMESPACE"
HMAC_SECRET_ARN_ENV = "AIF_HMAC_SECRET_ARN"
TOKEN_VAULT_TABLE_ENV = "AIF_TOKEN_VAULT_TABLE"
TOKEN_KEY_ARN_ENV = "AIF_TOKEN_KEY_ARN"
# Powertools (set on the gateway functions).
# Usage recovery (``aif_gateway.usage_recovery``): re-delivers audited records the ledger never got.
GATEWAY_LOG_GROUP_ENV = "AIF_GATEWAY_LOG_GROUP"
"""The gateway function's log group, whose ``audit`` lines the usage recovery reads."""
RECOVERY_LAG_S_ENV = "AIF_RECOVERY_LAG_S"
"""How old an audit line must be before the recovery checks it (the write-behind's head start)."""
RECOVERY_WINDOW_S_ENV = "AIF_RECOVERY_WINDOW_S"
"""Seconds of audit lines each recovery run checks (twice its schedule: one missed run is covered)."""
POWERTOOLS_SERVICE_NAME_ENV = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_METRICS_NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"

# ------------------------------------------------------------------------------------- audit lines

AUDIT_MESSAGE = "audit"
"""The ``message`` of the gateway's audit line (one per request; the audit trail's filter tests it)."""
AUDIT_LEDGER_FIELD = "ledger"
"""Top-level boolean of an audit line: true when the request's record goes to the usage ledger (it
reached a model, or a metered tool); false for requests refused before any model call, which write none.
The usage recovery re-delivers only lines where it is true."""

# ------------------------------------------------------------------------------------- table indexes

KEY_ID_INDEX = "by-key-id"
"""Keys table GSI, partition key ``key_id`` (projection ALL)."""
REQUEST_ID_INDEX = "by-request-id"
"""Usage table GSI on the audit records' ``request_id`` (sparse, KEYS_ONLY), for ``POST /v1/feedback``."""

# ----------------------------------------------------------------------------------- usage table items

MONTH_KEY_PREFIX = "MONTH#"
"""Sort-key prefix of the per-month items (``MONTH#{YYYY-MM}``): spend counters and feature gates."""
GATE_KEY_PREFIX = "GATE#"
"""Partition-key prefix of a feature's admission gate (``GATE#{team}#{feature}``): reservations, slots."""

# ---------------------------------------------------------------------------------- limits (HTTP 429)

LIMIT_HEADER = "x-aif-limit"
"""Response header of a 429: which limit refused the request (a key of ``LIMIT_CODES``)."""
BUDGET_EXHAUSTED_CODE = "budget_exhausted"
RATE_LIMIT_EXCEEDED_CODE = "rate_limit_exceeded"
TOKENS_PER_MINUTE_EXCEEDED_CODE = "tokens_per_minute_exceeded"
CONCURRENCY_LIMIT_EXCEEDED_CODE = "concurrency_limit_exceeded"
LIMIT_CODES: dict[str, str] = {
    "budget": BUDGET_EXHAUSTED_CODE,
    "requests_per_minute": RATE_LIMIT_EXCEEDED_CODE,
    "tokens_per_minute": TOKENS_PER_MINUTE_EXCEEDED_CODE,
    "concurrency": CONCURRENCY_LIMIT_EXCEEDED_CODE,
}
"""The error code of each limit's 429 (``docs/gateway.md``, "What each 429 means"); the ``Throttled``
metric counts them all."""

EDGE_LIMIT_CODE = "edge_rate_limited"
"""The code of an API Gateway 429 (the feature's usage plan or the stage ceiling): the edge, not the
gateway Lambda, refused the request, so the ``x-aif-limit`` header is absent."""

# ------------------------------------------------------------------------------------------ the edge

DEFAULT_GATEWAY_RESERVED_CONCURRENCY = 100
"""``LlmGateway``'s default reserved concurrency (``ai-factory preflight`` checks the account can give it)."""
LAMBDA_MIN_UNRESERVED_CONCURRENCY = 10
"""Lambda refuses a reservation that leaves fewer unreserved concurrent executions than this."""
EDGE_NAMESPACE_ENV = "AIF_EDGE_NAMESPACE"
"""Set on the edge authorizer and the gateway function: the gateway's namespace
(``LlmGateway.edge_namespace``), for usage identifiers and as the gateway's identity in Bedrock's
request metadata (``REQUEST_METADATA_GATEWAY``)."""
EDGE_NAMESPACE_RE = re.compile(r"[0-9a-f]{12}")
"""What ``edge_namespace`` returns (``fullmatch``)."""


def edge_namespace(gateway_path: str) -> str:
    """A gateway's namespace for usage identifiers, from its stack name and construct path."""
    return hashlib.sha256(gateway_path.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------ online sampling

LOGGED_BY_BEDROCK = frozenset({"bedrock"})
"""Providers whose answers Bedrock's model invocation log holds: the online sampler reads those there;
the gateway sends the samples of every other target itself (``online_samples``)."""
_SAMPLE_SCALE = float(1 << 64)


def is_sampled(request_id: str, rate: float) -> bool:
    """Whether the request with ``request_id`` belongs to the online sample at ``rate``: its SHA-256 as
    a number in [0, 1) below the rate. The one decision the gateway and the sampler both make, so a
    request is sampled whole or not at all, and replays sample the same requests."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(request_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _SAMPLE_SCALE < rate


def content_texts(content: object) -> list[str]:
    """The texts of a message's ``content``: the string itself, or the ``text`` of each block of a list
    (OpenAI's ``{"type": "text", "text": ...}`` parts and Converse's ``{"text": ...}`` blocks alike)."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [str(block["text"]) for block in content if isinstance(block, dict) and "text" in block]


def last_user_text(messages: object) -> str:
    """The question of a conversation, as online samples keep it: the text of the last user turn (the
    system prompt is the feature's own, not traffic). The gateway's samples and the sampler's reading of
    Bedrock's invocation log both take it this way."""
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            return "\n".join(content_texts(message.get("content")))
    return ""


# The requestMetadata the gateway sends with every Bedrock Converse/ConverseStream call. Bedrock writes
# it into the model invocation log (one log group per account and region), where the online sampler
# attributes each record to a gateway and a feature.
REQUEST_METADATA_TEAM = "aif_team"
REQUEST_METADATA_FEATURE = "aif_feature"
REQUEST_METADATA_REQUEST_ID = "aif_request_id"
REQUEST_METADATA_GATEWAY = "aif_gateway"
"""The calling gateway's ``edge_namespace``: two gateways in one account and region (a pipeline's staging
and production, two factories) share the invocation log and may serve features of the same names."""
REQUEST_METADATA_MAX_PAIRS = 16
REQUEST_METADATA_RE = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}")
"""Bedrock's constraint on a requestMetadata value (keys: the same, 1 to 256 characters), from the
bedrock-runtime API model (``RequestMetadataValueString``; use ``fullmatch``); at most
``REQUEST_METADATA_MAX_PAIRS`` pairs."""


def usage_identifier(namespace: str, team: str, feature: str) -> str:
    """The API Gateway API key value that ties ``team/feature`` to its own usage plan on one gateway.

    Not a secret: with the API key source ``AUTHORIZER`` API Gateway ignores any ``x-api-key`` a
    client sends and uses only what the authorizer returns, so knowing the value grants nothing. Derived
    (not stored), so the authorizer needs no extra read and the CDK app and the authorizer agree by
    construction. ``namespace`` keeps two gateways in one account and region (a pipeline's staging and
    production stages) apart: API key values are unique per account and region. 49 characters (API
    Gateway wants 20 to 128).
    """
    digest = hashlib.sha256(f"{namespace}/{team}/{feature}".encode()).hexdigest()[:40]
    return f"aif-edge-{digest}"


EDGE_BURST_WINDOW_S = 10
"""A feature's edge burst: ten seconds of its rate, at least 10 requests and at most its whole minute."""


def edge_throttle(rate_limit_rpm: int) -> tuple[float, int]:
    """(requests per second, burst) of a feature's usage plan for ``rate_limit_rpm``.

    The edge is a flood stop, not the exact limit (the gateway counts the minute exactly): the rate is
    the feature's requests per minute spread over the minute, the burst ``EDGE_BURST_WINDOW_S`` seconds
    of it (at least 10, at most the minute), so a client that sends its minute's requests together is
    not refused at the edge for a limit it keeps. One formula for the features' plans in CDK and the
    plans the shared provisioner makes for team-account features.
    """
    rate = rate_limit_rpm / 60
    burst = min(rate_limit_rpm, max(10, math.ceil(rate * EDGE_BURST_WINDOW_S)))
    return round(rate, 4), max(1, burst)


def shared_usage_identifier(namespace: str) -> str:
    """The API key value of the gateway's shared usage plan: keys whose feature has no plan of its own
    (``ai-factory keys create``, features deployed from team accounts)."""
    digest = hashlib.sha256(f"{namespace}/*shared*".encode()).hexdigest()[:40]
    return f"aif-edge-shared-{digest}"


# ---------------------------------------------------------------------------------- custom resources

FEATURE_KEY_RESOURCE_TYPE = "Custom::AiFactoryFeatureKey"


class FeatureKeyProperties:
    """Properties of ``Custom::AiFactoryFeatureKey`` (``AiFeature`` -> ``feature_key_provisioner``)."""

    KEYS_TABLE = "KeysTable"
    SECRET_ARN = "SecretArn"
    TEAM = "Team"
    FEATURE = "Feature"
    ALLOWED_MODELS = "AllowedModels"
    MONTHLY_BUDGET_USD = "MonthlyBudgetUsd"
    RATE_LIMIT_RPM = "RateLimitRpm"
    TOKENS_PER_MINUTE = "TokensPerMinute"
    MAX_CONCURRENCY = "MaxConcurrency"
    DESCRIPTION = "Description"
    KEY_GENERATION = "KeyGeneration"
    CLEARANCE = "Clearance"
    INFERENCE_PROFILES = "InferenceProfiles"
    """``{catalog model ID: application inference profile ARN}``: the profiles the gateway invokes for
    the feature (optional; absent or empty: the catalog's model IDs)."""
    EDGE_USAGE_PLAN = "EdgeUsagePlan"
    """``"true"`` when the feature has its own API Gateway usage plan (``usage_identifier``); only a
    feature's own provisioner honours it (the shared provisioner of team accounts ignores it and makes
    the feature's plan itself)."""
    GATEWAY_SAMPLING_RATE = "GatewaySamplingRate"
    """Share of requests, 0..1, whose exchanges with targets outside Bedrock's invocation log the gateway
    sends to its sample queue (``online_samples``); set by ``OnlineEvaluation`` (optional; absent: 0).
    Only a feature's own provisioner honours it."""
    DAILY_REQUEST_QUOTA = "DailyRequestQuota"
    """Requests per UTC day of the feature's usage plan (optional); read by the shared provisioner, which
    makes team-account features' plans (``TeamEdgeEnv``)."""
    REPLACING = (KEY_GENERATION, KEYS_TABLE, SECRET_ARN)
    """A change of any of these issues a new key (and deletes the old one)."""


FEATURE_KEY_ID_ATTRIBUTE = "KeyId"
"""The provisioner's ``Data`` attribute (and physical ID): the key's ID."""

INVOCATION_LOGGING_RESOURCE_TYPE = "Custom::AiFactoryBedrockInvocationLogging"


class InvocationLoggingProperties:
    """Properties of ``Custom::AiFactoryBedrockInvocationLogging``."""

    LOGGING_CONFIG = "LoggingConfig"
    OVERWRITE_EXISTING = "OverwriteExisting"


# ------------------------------------------------------------------------------ cloud assembly metadata

PROMPTS_METADATA_TYPE = "ai-factory:prompts"
"""Construct metadata of an ``AiFeature``'s prompts (read by ``ai-factory lineage`` and ``report``)."""
DATASETS_METADATA_TYPE = "ai-factory:datasets"
"""Construct metadata of an ``AiFeature``'s datasets (read by ``ai-factory lineage`` and ``report``)."""

# --------------------------------------------------------------------------------------- clearance

CLEARANCE_LEVELS = ("public", "internal", "confidential", "restricted")
"""Data classifications and feature clearances, least to most sensitive: a feature may read a dataset
(or a knowledge base) whose classification is at or below its clearance."""


def cleared_for(clearance: str, classification: str) -> bool:
    """Whether ``clearance`` covers data classified ``classification`` (both from ``CLEARANCE_LEVELS``)."""
    return CLEARANCE_LEVELS.index(clearance) >= CLEARANCE_LEVELS.index(classification)


# ------------------------------------------------------------------------ team accounts (own repositories)

GATEWAY_PARAMETER_PREFIX = "/ai-factory/gateway"
"""SSM path under which the gateway stack publishes what a team's own CDK app needs to import the
gateway (``LlmGateway.from_lookup``); each name below is appended as ``<prefix>/<name>``."""


class GatewayParameters:
    """Names of the gateway's SSM parameters (under ``GATEWAY_PARAMETER_PREFIX``)."""

    API_URL = "api-url"
    KEY_PROVISIONING_SERVICE_TOKEN = "key-provisioning-service-token"
    KEY_PROVISIONER_ROLE_ARN = "key-provisioner-role-arn"
    METRICS_NAMESPACE = "metrics-namespace"
    KMS_KEY_ARN = "kms-key-arn"
    KEYS_TABLE_NAME = "keys-table-name"
    FEATURE_REGISTRY_TABLE_NAME = "feature-registry-table-name"
    EDGE_NAMESPACE = "edge-namespace"
    """The gateway's ``edge_namespace``: which Bedrock invocation-log records are its features' traffic."""
    ALL = (
        API_URL,
        KEY_PROVISIONING_SERVICE_TOKEN,
        KEY_PROVISIONER_ROLE_ARN,
        METRICS_NAMESPACE,
        KMS_KEY_ARN,
        KEYS_TABLE_NAME,
        FEATURE_REGISTRY_TABLE_NAME,
        EDGE_NAMESPACE,
    )


FEATURE_REGISTRY_TABLE_ENV = "AIF_FEATURE_REGISTRY_TABLE"
"""The platform provisioner's registry of features (team, owner, account, clearance, limits)."""


class TeamEdgeEnv:
    """Environment of the shared provisioner for the edge and the inference profiles it makes for each
    team-account feature in the platform account (``LlmGateway.enable_team_accounts``)."""

    REST_API_ID = "AIF_EDGE_REST_API_ID"
    STAGE = "AIF_EDGE_STAGE"
    NAMESPACE = "AIF_EDGE_NAMESPACE"
    """The gateway's usage-identifier namespace (``LlmGateway.edge_namespace``)."""
    MAX_RATE_LIMIT_RPM = "AIF_EDGE_MAX_RATE_LIMIT_RPM"
    """The platform's cap on a team-account feature's edge throttle, in requests per minute."""
    GATEWAY_TAG = "AIF_PROFILE_GATEWAY_TAG"
    """The ``ai-factory:gateway`` tag value the gateway's role may invoke profiles with."""
    PARTITION = "AIF_PROFILE_PARTITION"
    ACCOUNT = "AIF_PROFILE_ACCOUNT"


TEAM_EDGE_ROUTES_FILE = "team_edge_routes.json"
"""In the shared provisioner's asset: ``{route alias: [[model ID the gateway calls, catalog name, kind]]}``
(``kind``: ``foundation-model`` or ``inference-profile``, what an application inference profile copies)."""
PROFILE_GATEWAY_TAG_KEY = "ai-factory:gateway"
"""Tag on every application inference profile naming the gateway whose role may invoke it."""


class TeamFeatureKeyProperties:
    """Extra properties of ``Custom::AiFactoryFeatureKey`` when a team's own app asks the platform's
    shared provisioner (``LlmGateway.enable_team_accounts``) for its key."""

    WRITER_ROLE_ARN = "WriterRoleArn"
    """A role in the team's account that the platform provisioner assumes to write the key into the
    team's secret (and nothing else)."""
    OWNER = "Owner"
    CLEARANCE = "Clearance"


KEY_WRITER_ROLE_PATH = "/ai-factory/key-writer/"
"""IAM path of the team-account roles the platform provisioner may assume (``AiFeature`` creates them)."""


# ------------------------------------------------------------------------ knowledge-base documents

DOCUMENT_PREFIX = "documents/"
"""Where a ``RagFeature``'s sync writes a dataset's documents (and their Bedrock ``.metadata.json``
sidecars) in the curated bucket: ``documents/<dataset prefix>``, apart from the Glue table location, which
must hold the dataset's JSON lines only."""
METADATA_SIDECAR_SUFFIX = ".metadata.json"
"""Bedrock Knowledge Bases read an S3 document's attributes from ``<object key>.metadata.json``."""
DOC_CLASSIFICATION = "aif_classification"
"""Chunk metadata: the dataset's classification (one of ``CLEARANCE_LEVELS``)."""
DOC_CLASSIFICATION_RANK = "aif_classification_rank"
"""Chunk metadata: the classification's index in ``CLEARANCE_LEVELS`` (a number, for range filters)."""
DOC_DOMAIN = "aif_domain"
"""Chunk metadata: the dataset's domain (``knowledge`` of ``knowledge.articles``)."""
DOC_DATASET = "aif_dataset"
"""Chunk metadata: the dataset's qualified name."""
DOC_DATASET_VERSION = "aif_dataset_version"
"""Chunk metadata: the dataset version the document was written from."""


def classification_rank(classification: str) -> int:
    """The rank of ``classification`` in ``CLEARANCE_LEVELS`` (ValueError for an unknown one)."""
    return CLEARANCE_LEVELS.index(classification)


# ------------------------------------------------------------------------ compliance report
# Template metadata key on a resource that is reachable anonymously by design (a static sign-in page):
# its value is the reviewer-grade reason. ``ai-factory report`` lists such endpoints with the reason and
# ``--fail-on-findings`` fails only on public endpoints without one.
PUBLIC_BY_DESIGN_METADATA = "aif:publicByDesign"
