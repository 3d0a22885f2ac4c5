"""Usage recovery: re-delivers audited usage records that never reached the ledger.

The gateway writes a request's usage record after the response (``usage_writer``), and its audit line
— the full record — before it. An execution environment that ends without SIGTERM (a crash, a reset
after a function timeout) takes the records its writer still held with it; their audit lines remain.
This scheduled Lambda closes that gap: every run reads the ``audit`` lines marked for the ledger
(``contract.AUDIT_LEDGER_FIELD``) from the gateway's log group over a window that ended ``lag`` seconds
ago, asks the usage table which of those records it holds (BatchGetItem by their keys), and sends the
others to the spill queue, whose replay Lambda writes them like any spilled record.

Idempotent end to end: the ledger write is a ``PutItem`` conditional on the item not existing, keyed by
the request's timestamp and id, so a record the writer (or a replay) wrote meanwhile, a window checked
twice or a message delivered twice leaves one item. Budgets are not touched: the feature's gate holds
the request's reservation from admission (docs/gateway.md, "Usage that was spilled").

Bounded delay: with ``lag`` L, a schedule every P and a window of W >= P seconds, a record whose write
was lost at time t is re-delivered by the first run after t + L, so within L + P (10 minutes as
deployed), then written by the replay within seconds. A window twice the schedule covers one missed
run; a failed run is retried by Lambda and then kept, with its event, in the recovery's dead-letter
queue, from which it can be re-run (its window comes from the event's ``time``, or ``start``/``end``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import contract
from .dynamo_store import DynamoLedger, ledger_key
from .records import UsageRecord
from .spill import SpillQueue

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

log = logging.getLogger("aif_gateway.usage_recovery")

DEFAULT_LAG_S = 300
"""Audit lines younger than this are left to the write-behind (it drains within a second normally)."""
DEFAULT_WINDOW_S = 600
"""Seconds of audit lines each run checks: twice the 5-minute schedule, so one missed run is covered."""
SCHEDULE_S = 300
"""How often the deployed recovery runs (``LlmGateway``)."""

# Only the lines the ledger should hold: refused requests are audited but never ledgered.
FILTER_PATTERN = (
    f'{{ ($.message = "{contract.AUDIT_MESSAGE}") && ($.{contract.AUDIT_LEDGER_FIELD} IS TRUE) }}'
)


@dataclass
class RecoveryResult:
    """What one run found: audit lines read, records already in the ledger, records re-delivered."""

    start: str
    end: str
    audited: int = 0
    already_recorded: int = 0
    redelivered: int = 0
    unreadable: int = 0


def ledger_record(message: str) -> UsageRecord | None:
    """The usage record of an audit line meant for the ledger; None for any other line.

    Raises ValueError for an audit line marked for the ledger whose record does not parse."""
    try:
        line = json.loads(message)
    except ValueError:
        return None
    if not isinstance(line, dict) or line.get("message") != contract.AUDIT_MESSAGE:
        return None
    if line.get(contract.AUDIT_LEDGER_FIELD) is not True:
        return None
    try:
        return UsageRecord.from_dict(line["audit"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"audit line without a readable usage record: {exc}") from exc


class UsageRecovery:
    """Reads audit lines, checks them against the ledger, re-delivers the missing ones to the spill queue."""

    def __init__(
        self, logs: CloudWatchLogsClient, log_group: str, ledger: DynamoLedger, spill: SpillQueue
    ) -> None:
        self.logs = logs
        self.log_group = log_group
        self.ledger = ledger
        self.spill = spill

    def audit_lines(self, start: datetime, end: datetime) -> Iterator[str]:
        """The messages of the log group's ledger-bound audit lines logged in [start, end)."""
        paginator = self.logs.get_paginator("filter_log_events")
        pages = paginator.paginate(
            logGroupName=self.log_group,
            startTime=_epoch_ms(start),
            endTime=_epoch_ms(end) - 1,  # endTime is inclusive
            filterPattern=FILTER_PATTERN,
        )
        for page in pages:
            for event in page.get("events", []):
                yield event.get("message", "")

    def run(self, start: datetime, end: datetime) -> RecoveryResult:
        """Re-deliver every ledger-bound record audited in [start, end) that the ledger does not hold.

        Raises (StoreError, SpillError, botocore errors) when a step fails, so the run is retried; what
        was re-delivered before the failure is written once however often it is re-delivered."""
        result = RecoveryResult(start=start.isoformat(), end=end.isoformat())
        records: dict[tuple[str, str], UsageRecord] = {}
        for message in self.audit_lines(start, end):
            try:
                record = ledger_record(message)
            except ValueError:
                # Retrying cannot fix it; the line itself stays in the log and the audit trail.
                log.error("unreadable audit line in %s: %s", self.log_group, message[:2000])
                result.unreadable += 1
                continue
            if record is None:
                continue
            result.audited += 1
            key = ledger_key(record)
            records[(key["pk"]["S"], key["sk"]["S"])] = record
        pending = list(records.values())
        present = self.ledger.recorded(pending)
        result.already_recorded = sum(1 for r in pending if r.request_id in present)
        for record in pending:
            if record.request_id in present:
                continue
            self.spill.send(record)
            result.redelivered += 1
            log.warning(
                "re-delivered usage record %s (%s/%s) found only in the audit log",
                record.request_id,
                record.team,
                record.feature,
            )
        return result


def window(event: dict[str, Any], lag_s: float, window_s: float) -> tuple[datetime, datetime]:
    """The run's window: ``start``/``end`` (ISO 8601) when the event names them (an operator's re-run),
    else the ``window_s`` seconds that ended ``lag_s`` before the scheduled event's ``time``."""
    if "start" in event or "end" in event:
        try:
            start, end = _utc(event["start"]), _utc(event["end"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"usage recovery: 'start' and 'end' must both be ISO 8601 times ({exc})"
            ) from exc
        if start >= end:
            raise ValueError(f"usage recovery: 'start' ({start.isoformat()}) must be before 'end'")
        return start, end
    try:
        fired = _utc(event["time"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"usage recovery: the event needs a 'time' (a scheduled event) ({exc})") from exc
    end = fired - timedelta(seconds=lag_s)
    return end - timedelta(seconds=window_s), end


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry: one window (``window``), its result as the return value and one log line."""
    import boto3

    logging.getLogger().setLevel(logging.INFO)
    lag_s = float(os.environ.get(contract.RECOVERY_LAG_S_ENV, DEFAULT_LAG_S))
    window_s = float(os.environ.get(contract.RECOVERY_WINDOW_S_ENV, DEFAULT_WINDOW_S))
    start, end = window(event, lag_s, window_s)
    recovery = UsageRecovery(
        boto3.client("logs"),
        os.environ[contract.GATEWAY_LOG_GROUP_ENV],
        DynamoLedger(os.environ[contract.USAGE_TABLE_ENV]),
        SpillQueue(os.environ[contract.SPILL_QUEUE_URL_ENV]),
    )
    result = recovery.run(start, end)
    log.info("usage recovery run %s", json.dumps(asdict(result), sort_keys=True))
    return asdict(result)


def _epoch_ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _utc(value: str) -> datetime:
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
