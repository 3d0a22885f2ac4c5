"""The spill queue: where a usage record goes when the ledger write fails, so it is never lost.

``spill_replay`` drains the queue back into the ledger; the queue's dead-letter queue keeps whatever
cannot be replayed for a person to look at.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aif_gateway.records import UsageRecord

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

MESSAGE_KIND = "usage"


class SpillError(Exception):
    """The record could not be queued either (the cause is chained); the caller must log it in full."""


def make_client() -> SQSClient:
    """An SQS client with bounded retries and timeouts; region from AWS_REGION / AWS_DEFAULT_REGION."""
    import boto3
    from botocore.config import Config

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    config = Config(
        # total_max_attempts counts the first try (botocore's max_attempts would mean 3 retries).
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=2,
        read_timeout=5,
    )
    return boto3.client("sqs", region_name=region, config=config)


class JsonQueue:
    """An SQS queue the gateway sends JSON messages to, each with a ``kind`` message attribute; the client
    is created on first use (importing boto3 is not free at cold start)."""

    kind = ""

    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> SQSClient:
        if self._client is None:
            self._client = make_client()
        return self._client

    def send_json(self, body: Mapping[str, Any]) -> None:
        """Queue ``body``; raises botocore's errors when SQS does not accept it after retries."""
        self.client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=json.dumps(body),
            MessageAttributes={"kind": {"DataType": "String", "StringValue": self.kind}},
        )


class SpillQueue(JsonQueue):
    """Sends usage records to the spill queue as JSON (``UsageRecord.to_dict``)."""

    kind = MESSAGE_KIND

    def send(self, usage: UsageRecord) -> None:
        """Queue the record. Raises SpillError when SQS does not accept it after retries."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.send_json(usage.to_dict())
        except (ClientError, BotoCoreError) as exc:
            raise SpillError(f"spilling usage {usage.request_id} to {self.queue_url} failed: {exc}") from exc
