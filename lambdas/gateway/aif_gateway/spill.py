"""The spill queue: where a usage record goes when the ledger write fails, so it is never lost.

``spill_replay`` drains the queue back into the ledger; the queue's dead-letter queue keeps whatever
cannot be replayed for a person to look at.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

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


class SpillQueue:
    """Sends usage records to the spill queue as JSON (``UsageRecord.to_dict``)."""

    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> SQSClient:
        if self._client is None:  # created on first use: importing boto3 is not free at cold start
            self._client = make_client()
        return self._client

    def send(self, usage: UsageRecord) -> None:
        """Queue the record. Raises SpillError when SQS does not accept it after retries."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.send_message(
                QueueUrl=self.queue_url,
                MessageBody=json.dumps(usage.to_dict()),
                MessageAttributes={"kind": {"DataType": "String", "StringValue": MESSAGE_KIND}},
            )
        except (ClientError, BotoCoreError) as exc:
            raise SpillError(f"spilling usage {usage.request_id} to {self.queue_url} failed: {exc}") from exc
