"""Custom-resource handler that publishes one feature's prompts into the gateway's prompt view.

* Create and Update: merge the feature's prompts (``merge.merge``) into ``s3://<bucket>/prompts.json``
  and write it back only if something changed. The write is conditional on the object read
  (``If-Match`` its ETag, or ``If-None-Match: *`` when there was none), so team stacks deploying at the
  same time never overwrite each other's prompts: a lost race reads again and merges again.
* Delete: nothing. Prompt versions are immutable and may be pinned by callers; the registry (and
  ``ai-factory prompts publish``) decides what the view holds.

The physical resource ID is ``<bucket>/<key>#<team>/<feature>``, stable across updates.

Resource properties: ``Bucket``, ``Key`` (default ``prompts.json``), ``Team``, ``Feature``, ``Prompts``
(a JSON string, so CloudFormation does not turn numbers such as ``temperature`` into strings).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .merge import ViewError, merge

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)

VIEW_KEY = "prompts.json"
_ATTEMPTS = 5
_CONFLICTS = ("PreconditionFailed", "ConditionalRequestConflict")


class PublishError(Exception):
    """The request cannot be carried out; CloudFormation shows the message as the failure reason."""


class PromptPublisher:
    """Carries out custom-resource events against an S3 client."""

    def __init__(self, s3: Any, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.s3 = s3
        self.now = now

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        props = event.get("ResourceProperties") or {}
        bucket, key = _required(props, "Bucket"), str(props.get("Key") or VIEW_KEY)
        physical_id = f"{bucket}/{key}#{_required(props, 'Team')}/{_required(props, 'Feature')}"
        request = event.get("RequestType")
        if request == "Delete":
            logger.info("delete %s: the view keeps its versions", event.get("PhysicalResourceId"))
            return {"PhysicalResourceId": str(event.get("PhysicalResourceId") or physical_id), "Data": {}}
        if request not in ("Create", "Update"):
            raise PublishError(f"unknown RequestType {request!r}")
        prompts = _prompts(props)
        changes = self.publish(bucket, key, prompts)
        return {
            "PhysicalResourceId": physical_id,
            "Data": {"Prompts": ",".join(sorted(p["name"] for p in prompts)), "Changed": str(bool(changes))},
        }

    def publish(self, bucket: str, key: str, prompts: list[dict[str, Any]]) -> list[str]:
        """Merge ``prompts`` into the view at ``s3://bucket/key``; what changed (empty: nothing written)."""
        for attempt in range(_ATTEMPTS):
            view, etag = self._read(bucket, key)
            try:
                merged, changes = merge(view, prompts)
            except ViewError as exc:
                raise PublishError(
                    f"s3://{bucket}/{key}: {exc}; republish it with 'ai-factory prompts publish'"
                ) from None
            if not changes:
                logger.info("s3://%s/%s already holds %d prompt(s)", bucket, key, len(prompts))
                return []
            merged["generated_at"] = (
                self.now().astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
            )
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                # No SSE headers: the bucket's default encryption (the gateway's KMS key) applies.
                self.s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=(json.dumps(merged, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode(),
                    ContentType="application/json",
                    **condition,
                )
            except self.s3.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in _CONFLICTS or attempt + 1 == _ATTEMPTS:
                    raise
                logger.info(
                    "s3://%s/%s changed while merging (attempt %d): merging again", bucket, key, attempt + 1
                )
                continue
            logger.info("published to s3://%s/%s: %s", bucket, key, "; ".join(changes))
            return changes
        raise AssertionError("unreachable")

    def _read(self, bucket: str, key: str) -> tuple[dict[str, Any] | None, str | None]:
        try:
            response = self.s3.get_object(Bucket=bucket, Key=key)
        except self.s3.exceptions.NoSuchKey:
            return None, None
        try:
            view = json.loads(response["Body"].read())
        except ValueError as exc:
            raise PublishError(
                f"s3://{bucket}/{key} is not JSON ({exc}); republish it with 'ai-factory prompts publish'"
            ) from None
        return view, str(response["ETag"])


def _required(props: Mapping[str, Any], name: str) -> str:
    value = props.get(name)
    if not isinstance(value, str) or not value:
        raise PublishError(f"resource property {name} is required")
    return value


def _prompts(props: Mapping[str, Any]) -> list[dict[str, Any]]:
    try:
        prompts = json.loads(_required(props, "Prompts"))
    except ValueError as exc:
        raise PublishError(f"resource property Prompts must be a JSON list: {exc}") from None
    if not isinstance(prompts, list) or not all(isinstance(p, dict) for p in prompts):
        raise PublishError("resource property Prompts must be a JSON list of prompt objects")
    return prompts


def on_event(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point for the CDK ``Provider`` framework's onEvent handler."""
    import boto3

    logger.info("%s %s/%s", event.get("RequestType"), event.get("StackId"), event.get("LogicalResourceId"))
    return PromptPublisher(boto3.client("s3", region_name=os.environ.get("AWS_REGION"))).handle(event)
