"""Spill replay Lambda: writes spilled usage records from the SQS spill queue into the ledger.

Uses SQS partial batch responses (the event source mapping must enable ``ReportBatchItemFailures``):
a message that cannot be parsed or written is reported in ``batchItemFailures``, so SQS delivers it
again and, after the queue's maxReceiveCount, moves it to the dead-letter queue. Nothing is dropped,
and replaying a record twice is harmless because ``Ledger.record`` is idempotent.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from aws_lambda_powertools import Logger

from aif_gateway import contract
from aif_gateway.dynamo_store import DynamoLedger
from aif_gateway.records import LedgerWriteError, UsageRecord

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "aif-spill-replay"))


@functools.cache
def _ledger() -> DynamoLedger:
    """One ledger (and DynamoDB client) per execution environment, made on the first invocation."""
    return DynamoLedger(os.environ[contract.USAGE_TABLE_ENV])


def handler(event: dict[str, Any], context: Any = None) -> dict[str, list[dict[str, str]]]:
    """Record each spilled message; report the ones that failed so SQS retries them."""
    ledger = _ledger()
    failures: list[dict[str, str]] = []
    records = event.get("Records", [])
    for message in records:
        message_id = message["messageId"]
        try:
            usage = UsageRecord.from_dict(json.loads(message["body"]))
        except (ValueError, TypeError, KeyError) as exc:
            # Retrying will not fix a malformed body, but the DLQ keeps it for a person to look at.
            logger.error("malformed spilled usage message", message_id=message_id, error=str(exc))
            failures.append({"itemIdentifier": message_id})
            continue
        try:
            ledger.record(usage)
        except LedgerWriteError:
            logger.exception("replaying usage failed", message_id=message_id, request_id=usage.request_id)
            failures.append({"itemIdentifier": message_id})
    logger.info("spill replay batch done", messages=len(records), failed=len(failures))
    return {"batchItemFailures": failures}
