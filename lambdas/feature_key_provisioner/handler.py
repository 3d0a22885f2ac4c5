"""Custom-resource handler that owns one feature's API key.

* Create: issue a key, store the plaintext in the feature's Secrets Manager secret, then write its
  ``ApiKeyRecord`` (hash only) to the gateway's keys table. The physical resource ID is the key ID.
* Update: change team, feature, allowed models, budget and rate limit on the existing record; the key
  itself (and the secret) stay as they are. A changed ``KeyGeneration`` (or a different table or secret)
  issues a new key instead: the new physical ID makes CloudFormation delete, i.e. revoke, the old one.
* Delete: revoke the key (set ``revoked_at``). The record is never deleted: it is part of the audit trail.

Idempotency: the key ID is derived from the stack, the logical resource and the CloudFormation request,
so a retried Create finds the key an earlier attempt finished instead of issuing a second one. The secret
is written before the record, so a record that exists always has its plaintext in the secret.

Resource properties (CloudFormation passes scalars as strings): ``KeysTable``, ``SecretArn``, ``Team``,
``Feature``, ``AllowedModels`` (list), ``MonthlyBudgetUsd``, ``RateLimitRpm``, ``Description``,
``KeyGeneration``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from aif_gateway.contract import CLEARANCE_LEVELS, FEATURE_KEY_ID_ATTRIBUTE, KEY_ID_INDEX
from aif_gateway.contract import FeatureKeyProperties as Props
from aif_gateway.dynamo_store import key_from_item, key_to_item
from aif_gateway.records import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TOKENS_PER_MINUTE,
    KEY_PREFIX,
    ApiKeyRecord,
    hash_key,
    utc_now,
)

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)

# Properties whose change means "a different key" rather than "the same key, new settings".
_REPLACING_PROPERTIES = Props.REPLACING
_KEY_LOOKUP_ATTEMPTS = 3


class ProvisioningError(Exception):
    """The request cannot be carried out; CloudFormation shows the message as the failure reason."""


def derive_key_id(event: Mapping[str, Any]) -> str:
    """A 12-hex-digit key ID unique to this stack, resource and request (stable across retries)."""
    seed = "|".join(str(event.get(k, "")) for k in ("StackId", "LogicalResourceId", "RequestId"))
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:12]


def new_plaintext(key_id: str) -> str:
    """A key in the gateway's format ``aif-<key_id>-<secret>`` (as ``records.generate_key`` makes)."""
    return f"{KEY_PREFIX}-{key_id}-{secrets.token_urlsafe(32)}"


class KeyProvisioner:
    """Carries out custom-resource events against a DynamoDB client and a Secrets Manager client."""

    def __init__(
        self,
        dynamodb: Any,
        secretsmanager: Any,
        now: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.dynamodb = dynamodb
        self.secretsmanager = secretsmanager
        self.now = now
        self.sleep = sleep

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The response the CDK provider framework expects: ``PhysicalResourceId`` and ``Data``."""
        request = event.get("RequestType")
        if request == "Create":
            key_id = self.create(event)
        elif request == "Update":
            key_id = self.update(event)
        elif request == "Delete":
            key_id = str(event.get("PhysicalResourceId", ""))
            self.delete(event["ResourceProperties"], key_id)
        else:
            raise ProvisioningError(f"unknown RequestType {request!r}")
        return {"PhysicalResourceId": key_id, "Data": {FEATURE_KEY_ID_ATTRIBUTE: key_id}}

    # --- requests ---------------------------------------------------------------------------------

    def create(self, event: Mapping[str, Any]) -> str:
        props = event["ResourceProperties"]
        table = _required(props, Props.KEYS_TABLE)
        key_id = derive_key_id(event)
        if self._find(table, key_id, attempts=1) is not None:
            logger.info("key %s already provisioned by an earlier attempt of this request", key_id)
            return key_id
        plaintext = new_plaintext(key_id)
        record = ApiKeyRecord(
            key_id=key_id,
            key_hash=hash_key(plaintext),
            created_at=self.now(),
            **_settings(props),
        )
        # Secret first: a record in the table must always have its plaintext in the secret.
        self.secretsmanager.put_secret_value(
            SecretId=_required(props, Props.SECRET_ARN),
            SecretString=json.dumps({"api_key": plaintext, "key_id": key_id}),
        )
        self.dynamodb.put_item(
            TableName=table,
            Item=key_to_item(record),
            ConditionExpression="attribute_not_exists(key_hash)",
        )
        logger.info("issued key %s for %s/%s", key_id, record.team, record.feature)
        return key_id

    def update(self, event: Mapping[str, Any]) -> str:
        props, old = event["ResourceProperties"], event.get("OldResourceProperties") or {}
        if any(str(props.get(k, "")) != str(old.get(k, "")) for k in _REPLACING_PROPERTIES):
            return self.create(event)
        key_id = str(event.get("PhysicalResourceId", ""))
        table = _required(props, Props.KEYS_TABLE)
        record = self._find(table, key_id, attempts=_KEY_LOOKUP_ATTEMPTS)
        if record is None:
            raise ProvisioningError(
                f"key {key_id} is not in table {table}; bump the feature's key_generation to issue a new key"
            )
        settings = _settings(props)
        values = {
            ":team": {"S": settings["team"]},
            ":feature": {"S": settings["feature"]},
            ":models": {"L": [{"S": m} for m in settings["allowed_models"]]},
            ":budget": {"N": _number(settings["monthly_budget_usd"])},
            ":rpm": {"N": str(settings["rate_limit_rpm"])},
            ":description": {"S": settings["description"]},
            ":tpm": {"N": str(settings["tokens_per_minute"])},
            ":conc": {"N": str(settings["max_concurrency"])},
        }
        expression = (
            "SET #team = :team, #feature = :feature, allowed_models = :models, "
            "monthly_budget_usd = :budget, rate_limit_rpm = :rpm, description = :description, "
            "tokens_per_minute = :tpm, max_concurrency = :conc"
        )
        if settings["clearance"] is not None:
            expression += ", clearance = :clearance"
            values[":clearance"] = {"S": settings["clearance"]}
        self.dynamodb.update_item(
            TableName=table,
            Key={"key_hash": {"S": record.key_hash}},
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(key_hash)",
            ExpressionAttributeNames={"#team": "team", "#feature": "feature"},
            ExpressionAttributeValues=values,
        )
        logger.info("updated key %s for %s/%s", key_id, settings["team"], settings["feature"])
        return key_id

    def delete(self, props: Mapping[str, Any], key_id: str) -> None:
        table = _required(props, Props.KEYS_TABLE)
        record = self._find(table, key_id, attempts=_KEY_LOOKUP_ATTEMPTS)
        if record is None:
            # A Create that failed before writing the record (its physical ID is not a key ID).
            logger.info("no key %s in %s: nothing to revoke", key_id, table)
            return
        now = self.now()
        if record.revoked_at is not None and record.revoked_at <= now:
            logger.info("key %s was already revoked at %s", key_id, record.revoked_at.isoformat())
            return
        self.dynamodb.update_item(
            TableName=table,
            Key={"key_hash": {"S": record.key_hash}},
            UpdateExpression="SET revoked_at = :at",
            ConditionExpression="attribute_exists(key_hash)",
            ExpressionAttributeValues={":at": {"S": now.isoformat()}},
        )
        logger.info("revoked key %s", key_id)

    # --- helpers ----------------------------------------------------------------------------------

    def _find(self, table: str, key_id: str, *, attempts: int) -> ApiKeyRecord | None:
        """The record with this key ID, via the ``by-key-id`` index (eventually consistent: a record
        written moments ago may need a short retry)."""
        if not key_id:
            return None
        for attempt in range(attempts):
            resp = self.dynamodb.query(
                TableName=table,
                IndexName=KEY_ID_INDEX,
                KeyConditionExpression="key_id = :k",
                ExpressionAttributeValues={":k": {"S": key_id}},
            )
            items = resp.get("Items", [])
            if items:
                return key_from_item(items[0])
            if attempt + 1 < attempts:
                self.sleep(1.0 * (attempt + 1))
        return None


def _required(props: Mapping[str, Any], name: str) -> str:
    value = props.get(name)
    if not isinstance(value, str) or not value:
        raise ProvisioningError(f"resource property {name} is required")
    return value


def _settings(props: Mapping[str, Any]) -> dict[str, Any]:
    """Team, feature, models, budget, rate limit and description from the resource properties."""
    models = props.get(Props.ALLOWED_MODELS) or []
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ProvisioningError(f"resource property AllowedModels must be a list of strings, got {models!r}")
    try:
        budget = float(props.get(Props.MONTHLY_BUDGET_USD, ""))
        rpm = int(float(props.get(Props.RATE_LIMIT_RPM, "")))
        # Optional (templates from before these limits existed): the gateway's defaults.
        tpm = int(float(props.get(Props.TOKENS_PER_MINUTE, DEFAULT_TOKENS_PER_MINUTE)))
        concurrency = int(float(props.get(Props.MAX_CONCURRENCY, DEFAULT_MAX_CONCURRENCY)))
    except ValueError as exc:
        raise ProvisioningError(
            f"MonthlyBudgetUsd, RateLimitRpm, TokensPerMinute and MaxConcurrency must be numbers: {exc}"
        ) from exc
    clearance = props.get(Props.CLEARANCE) or None  # absent on stacks from before keys carried it
    if clearance is not None and clearance not in CLEARANCE_LEVELS:
        raise ProvisioningError(
            f"resource property Clearance must be one of {', '.join(CLEARANCE_LEVELS)}, got {clearance!r}"
        )
    return {
        "team": _required(props, Props.TEAM),
        "feature": _required(props, Props.FEATURE),
        "allowed_models": tuple(models),
        "monthly_budget_usd": budget,
        "rate_limit_rpm": rpm,
        "description": str(props.get(Props.DESCRIPTION, "")),
        "clearance": clearance,
        "tokens_per_minute": tpm,
        "max_concurrency": concurrency,
    }


def _number(value: float) -> str:
    # Through str() so 0.1 is stored as 0.1, in positional notation (as the gateway's store writes it).
    return format(Decimal(str(value)), "f")


def on_event(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point for the CDK ``Provider`` framework's onEvent handler."""
    import boto3

    region = os.environ.get("AWS_REGION")
    provisioner = KeyProvisioner(
        boto3.client("dynamodb", region_name=region), boto3.client("secretsmanager", region_name=region)
    )
    logger.info(
        "%s %s/%s", event.get("RequestType"), event.get("LogicalResourceId"), event.get("PhysicalResourceId")
    )
    return provisioner.handle(event)
