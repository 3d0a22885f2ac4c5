"""Custom-resource handler that owns the account's Bedrock model invocation logging configuration.

Model invocation logging is one setting per account and region with no CloudFormation resource, so a
stack that simply wrote it could silently replace a configuration another team (or the security team's
baseline) depends on. This handler therefore:

* Create: reads the current configuration. If one exists and differs from ours, it fails the
  deployment with a message naming the existing destinations, unless ``OverwriteExisting`` is
  ``"true"``. Otherwise it puts ours.
* Update: the same check, except that the configuration the previous deployment set (the old
  properties) counts as ours; then it re-applies the new configuration.
* Delete: removes the configuration only if it is still exactly the one this resource set; anything
  else (someone changed it since, or our Create was refused) is left alone. A Delete never fails.

Resource properties (CloudFormation passes scalars as strings): ``LoggingConfig`` (the Bedrock
``loggingConfig`` as a JSON string, so booleans survive), ``OverwriteExisting`` (``"true"``/``"false"``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from aif_gateway.contract import InvocationLoggingProperties as Props

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)

PHYSICAL_ID_PREFIX = "bedrock-model-invocation-logging"
_DELIVERY_FLAGS = (
    "textDataDeliveryEnabled",
    "imageDataDeliveryEnabled",
    "embeddingDataDeliveryEnabled",
    "videoDataDeliveryEnabled",
    "audioDataDeliveryEnabled",
)


class ConfigurationConflict(Exception):
    """An existing configuration would be overwritten; CloudFormation shows the message."""


def normalize(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A comparable form: empty values dropped, absent delivery flags read as ``False``.

    ``{}`` means "no configuration" (what Get answers when logging is off)."""

    def clean(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items() if v not in (None, "", {}, [])}
        return value

    result = clean(dict(config or {}))
    destinations = {k: v for k, v in result.items() if k not in _DELIVERY_FLAGS}
    if not destinations:
        return {}
    for flag in _DELIVERY_FLAGS:
        result[flag] = bool(result.get(flag, False))
    return result


def describe(config: Mapping[str, Any]) -> str:
    """The destinations of a configuration, for error messages and logs."""
    parts = []
    cloudwatch = config.get("cloudWatchConfig") or {}
    if cloudwatch:
        parts.append(f"CloudWatch Logs group {cloudwatch.get('logGroupName')!r}")
        large = cloudwatch.get("largeDataDeliveryS3Config") or {}
        if large:
            parts.append(f"large payloads to s3://{large.get('bucketName')}/{large.get('keyPrefix', '')}")
    s3 = config.get("s3Config") or {}
    if s3:
        parts.append(f"S3 s3://{s3.get('bucketName')}/{s3.get('keyPrefix', '')}")
    return ", ".join(parts) or "no destinations"


class InvocationLoggingManager:
    """Carries out custom-resource events against a boto3 ``bedrock`` client."""

    def __init__(self, bedrock: Any, region: str) -> None:
        self.bedrock = bedrock
        self.region = region

    @property
    def physical_id(self) -> str:
        return f"{PHYSICAL_ID_PREFIX}-{self.region}"

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The response the CDK provider framework expects: ``PhysicalResourceId`` and ``Data``."""
        request = event.get("RequestType")
        props = event.get("ResourceProperties") or {}
        desired = _config_from(props)
        if request == "Create":
            return self._apply(desired, ours=None, overwrite=_flag(props.get(Props.OVERWRITE_EXISTING)))
        if request == "Update":
            previous = _config_from(event.get("OldResourceProperties") or {})
            return self._apply(desired, ours=previous, overwrite=_flag(props.get(Props.OVERWRITE_EXISTING)))
        if request == "Delete":
            return self._delete(desired, event.get("PhysicalResourceId") or self.physical_id)
        raise ValueError(f"Unknown custom-resource request type {request!r}")

    def current(self) -> dict[str, Any]:
        """The account's configuration in this region (normalised; ``{}`` when logging is off)."""
        answer = self.bedrock.get_model_invocation_logging_configuration()
        return normalize(answer.get("loggingConfig"))

    def _apply(
        self, desired: dict[str, Any], *, ours: dict[str, Any] | None, overwrite: bool
    ) -> dict[str, Any]:
        existing = self.current()
        owned = [normalize(desired)] + ([normalize(ours)] if ours is not None else [])
        replaced = bool(existing) and existing not in owned
        if replaced and not overwrite:
            raise ConfigurationConflict(
                f"Bedrock model invocation logging in {self.region} is already configured by someone else "
                f"({describe(existing)}). AI Factory refuses to overwrite an account-wide setting it does "
                "not own. Either keep it (turn AI Factory's invocation logging off with the context flag "
                "ai-factory:invocationLogging=false) or take it over explicitly: BedrockInvocationLogging("
                "overwrite_existing=True), or the context flag ai-factory:invocationLoggingOverwrite=true."
            )
        if replaced:
            logger.warning(
                "Overwriting the existing invocation logging configuration: %s", describe(existing)
            )
        self.bedrock.put_model_invocation_logging_configuration(loggingConfig=desired)
        logger.info("Put invocation logging configuration: %s", describe(desired))
        return {
            "PhysicalResourceId": self.physical_id,
            "Data": {"Overwrote": "true" if replaced else "false", "Destinations": describe(desired)},
        }

    def _delete(self, desired: dict[str, Any], physical_id: str) -> dict[str, Any]:
        existing = self.current()
        if existing and existing == normalize(desired):
            self.bedrock.delete_model_invocation_logging_configuration()
            logger.info("Deleted the invocation logging configuration this resource had set")
        else:
            logger.info(
                "Left the invocation logging configuration alone (not the one this resource set): %s",
                describe(existing),
            )
        return {"PhysicalResourceId": physical_id}


def _config_from(props: Mapping[str, Any]) -> dict[str, Any]:
    raw = props.get(Props.LOGGING_CONFIG)
    if not raw:
        raise ValueError(f"Resource property {Props.LOGGING_CONFIG} (a JSON string) is required")
    config = json.loads(raw) if isinstance(raw, str) else dict(raw)
    if not isinstance(config, dict):
        raise ValueError(f"Resource property {Props.LOGGING_CONFIG} must be a JSON object")
    return config


def _flag(value: Any) -> bool:
    return str(value).strip().lower() == "true"


def on_event(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point (the CDK provider framework's ``onEvent`` handler)."""
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    logger.info("%s request for %s", event.get("RequestType"), event.get("LogicalResourceId"))
    return InvocationLoggingManager(boto3.client("bedrock", region_name=region), region).handle(event)
