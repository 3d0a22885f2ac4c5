"""Lambda entry point: builds one Gateway per execution environment from the environment variables the
LlmGateway construct sets, and hands it each API Gateway event.

Environment: AIF_KEYS_TABLE, AIF_USAGE_TABLE, AIF_SPILL_QUEUE_URL, AIF_GUARDRAIL_ID,
AIF_GUARDRAIL_VERSION, AIF_CONFIG_PATH (default: gateway_config.json next to this file),
AIF_PROMPT_VIEW_URI (the published prompt view, s3://bucket/prompts.json; unset: no prompts),
AIF_FUNCTION_TIMEOUT_S (the function's timeout: the request deadline is this minus the ledger margin),
AIF_SAMPLE_QUEUE_URL (the online-evaluation sample queue, ``online_samples``; unset: the gateway sends no
samples), AIF_EDGE_NAMESPACE (the gateway's identity on its samples and Bedrock calls),
POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE, AIF_TRACES_EXPORTER (``trace_export``: the
construct sets ``xray``; the spans of each request are exported before the invocation returns).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger

from . import contract, trace_export
from .app import Gateway
from .config import CONFIG_FILE_NAME, GatewayConfig
from .dynamo_quota import DynamoQuotaStore
from .dynamo_store import DynamoKeyStore, DynamoLedger, make_client
from .metering import EmfMetricsSink
from .online_samples import SampleQueue, SampleWriter
from .prompt_view import PromptViewSource
from .records import UsageRecord
from .spill import SpillQueue
from .streaming import StreamingResponse
from .usage_writer import DEFAULT_MAX_PENDING, UsageWriter

logger = Logger()
trace_export.configure()  # at init: the SDK and its exporter are ready before the first request


def audit_log(record: UsageRecord, ledger: bool = False) -> None:
    """One structured line per request: the audit trail's source (no prompt or completion text).

    ``ledger``: the record also goes to the usage ledger (``contract.AUDIT_LEDGER_FIELD``), so the
    usage recovery can re-deliver it if the environment dies before its write-behind lands."""
    logger.info(
        contract.AUDIT_MESSAGE, extra={"audit": record.to_dict(), contract.AUDIT_LEDGER_FIELD: ledger}
    )


def build_gateway(write_behind: bool = False) -> Gateway:
    """The gateway with its AWS stores. ``write_behind``: usage records are written after the response
    (``usage_writer``) — for the server behind the Lambda Web Adapter, which drains them on SIGTERM.
    This buffered handler writes before it returns: nothing would flush a backlog when Lambda ends an
    environment that registered no extension."""
    config_path = os.environ.get(contract.CONFIG_PATH_ENV) or str(Path(__file__).with_name(CONFIG_FILE_NAME))
    config = GatewayConfig.load(config_path).with_guardrail_from_env().with_deadline_from_env()
    spill_url = os.environ.get(contract.SPILL_QUEUE_URL_ENV)
    sample_url = os.environ.get(contract.SAMPLE_QUEUE_URL_ENV)
    dynamodb = make_client()  # one client for both stores: creating a client costs tens of ms
    return Gateway(
        config,
        keys=DynamoKeyStore(os.environ[contract.KEYS_TABLE_ENV], dynamodb),
        ledger=DynamoLedger(os.environ[contract.USAGE_TABLE_ENV], dynamodb),
        # The feature gates live in the usage table too (GATE# items): every environment shares them.
        quota=DynamoQuotaStore(os.environ[contract.USAGE_TABLE_ENV], dynamodb),
        spill=SpillQueue(spill_url) if spill_url else None,
        metrics=EmfMetricsSink(),
        audit_log=audit_log,
        # Read on the first prompt request, then at most once a minute: no S3 call at cold start.
        prompts=PromptViewSource(os.environ.get(contract.PROMPT_VIEW_URI_ENV) or None),
        usage_writer=UsageWriter() if write_behind else None,
        # Samples go after the response too, or (buffered: nothing drains) each request sends its own.
        samples=SampleWriter(SampleQueue(sample_url), max_pending=DEFAULT_MAX_PENDING if write_behind else 0)
        if sample_url
        else None,
        namespace=os.environ.get(contract.EDGE_NAMESPACE_ENV, ""),
    )


_gateway: Gateway | None = None


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _gateway
    if _gateway is None:
        _gateway = build_gateway()
    try:
        response = _gateway.handle(event, context)
        # A buffered proxy integration gets a stream as one body; streaming deployments serve the same
        # gateway over HTTP instead (``lambda_server``).
        return response.buffered() if isinstance(response, StreamingResponse) else response
    finally:
        trace_export.flush()  # Lambda freezes the environment once this returns
