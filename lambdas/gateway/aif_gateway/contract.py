"""The names the runtime and the infrastructure share, defined once.

The Lambda functions emit metrics and read environment variables, tables and custom-resource properties;
the constructs declare them, build alarms and dashboards on the metrics, and the CLI and the compliance
report read what the constructs wrote. Every such name lives here, so a rename is one edit and the two
sides cannot drift. Standard library only: the gateway, canary, connector and key-provisioner assets ship
this file, and the construct library imports it at synth time.
"""

from __future__ import annotations

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
FEATURE_DIMENSIONS = (TEAM, FEATURE)
MODEL_DIMENSIONS = (TEAM, FEATURE, MODEL)
DATASET_DIMENSIONS = (DATASET,)
PII_KIND_DIMENSIONS = (DATASET, KIND)

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
BUDGET_EXHAUSTED = _feature(
    "BudgetExhausted",
    COUNT,
    "requests refused because the key's monthly budget is spent (from the audit log)",
)
# Feedback (POST /v1/feedback).
FEEDBACK_SCORE = _feature("FeedbackScore", NO_UNIT, "user feedback score, 0..1 (average it)")
FEEDBACK_COUNT = _feature("FeedbackCount", COUNT, "feedback records received")
# Canary, one EMF record per scheduled run (aif_canary).
CANARY_PASS_RATE = _feature("CanaryPassRate", NO_UNIT, "share of the canary's cases that passed, 0..1")
EVAL_PASS_RATE = _feature("EvalPassRate", NO_UNIT, "share of the canary's assertions that passed, 0..1")
CANARY_CASES = _feature("CanaryCases", COUNT, "cases the canary ran")
CANARY_ERRORS = _feature("CanaryErrors", COUNT, "canary cases the gateway did not answer")
CANARY_LATENCY_MS = _feature("CanaryLatencyMs", MILLISECONDS, "mean latency of the canary's cases")
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
    CANARY_CASES,
    CANARY_ERRORS,
    CANARY_LATENCY_MS,
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
GUARDRAIL_ID_ENV = "AIF_GUARDRAIL_ID"
GUARDRAIL_VERSION_ENV = "AIF_GUARDRAIL_VERSION"
PROMPT_VIEW_URI_ENV = "AIF_PROMPT_VIEW_URI"
KNOWLEDGE_BASE_PREFIX_ENV = "AIF_KNOWLEDGE_BASE_PREFIX"
# The data connector announces each curated dataset version on this EventBridge bus (knowledge-base sync).
CONNECTOR_EVENT_BUS_ENV = "AIF_CONNECTOR_EVENT_BUS"
CONFIG_PATH_ENV = "AIF_CONFIG_PATH"
# Canary and eval clients.
GATEWAY_URL_ENV = "AIF_GATEWAY_URL"
API_KEY_ENV = "AIF_API_KEY"
METRICS_NAMESPACE_ENV = "AIF_METRICS_NAMESPACE"
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
POWERTOOLS_SERVICE_NAME_ENV = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_METRICS_NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"

# ------------------------------------------------------------------------------------- table indexes

KEY_ID_INDEX = "by-key-id"
"""Keys table GSI, partition key ``key_id`` (projection ALL)."""
REQUEST_ID_INDEX = "by-request-id"
"""Usage table GSI on the audit records' ``request_id`` (sparse, KEYS_ONLY), for ``POST /v1/feedback``."""

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
    DESCRIPTION = "Description"
    KEY_GENERATION = "KeyGeneration"
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
