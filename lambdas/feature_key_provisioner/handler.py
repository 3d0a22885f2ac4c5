"""Custom-resource handler that owns one feature's API key.

* Create: issue a key, store the plaintext in the feature's Secrets Manager secret, then write its
  ``ApiKeyRecord`` (hash only) to the gateway's keys table. The physical resource ID is the key ID.
* Update: change team, feature, allowed models, budget and rate limit on the existing record; the key
  itself (and the secret) stay as they are. A changed ``KeyGeneration`` (or a different table or secret)
  issues a new key instead: the new physical ID makes CloudFormation delete, i.e. revoke, the old one.
  The new key's record names the key it replaced (``replaces_key_id``) and each record its generation.
* Rollback: when a later resource fails, CloudFormation sends an Update of the new key with the old
  properties. If the new key replaced a key that is still valid and was issued for exactly those
  properties, that key comes back (its plaintext from the secret's ``AWSPREVIOUS`` version) and the
  new one is revoked, instead of a third key being issued while the first stays valid and unowned. When
  the previous plaintext cannot be read back (the secret was written since, or the provisioner may only
  write it: team accounts), a fresh key is issued and both other keys are revoked.
* Delete: revoke the key (set ``revoked_at``). The record is never deleted: it is part of the audit trail.

Idempotency: the key ID is derived from the stack, the logical resource and the CloudFormation request,
so a retried Create finds the key an earlier attempt finished instead of issuing a second one. The secret
is written before the record, so a record that exists always has its plaintext in the secret.

Resource properties (CloudFormation passes scalars as strings): ``KeysTable``, ``SecretArn``, ``Team``,
``Feature``, ``AllowedModels`` (list), ``MonthlyBudgetUsd``, ``RateLimitRpm``, ``Description``,
``KeyGeneration``, ``InferenceProfiles`` (``{catalog model ID: application inference profile ARN}``).

The platform's shared provisioner (``LlmGateway.enable_team_accounts``) runs the same code with its keys
table and feature registry from the environment: it serves stacks in teams' own accounts, claims each
feature in the registry and writes the key into the team's secret through the team's writer role
(``team_accounts``). With the gateway's API and Bedrock at hand (``team_edge``), it also gives each such
feature its own usage plan (throttle capped by the platform's maximum) and an application inference
profile per Bedrock model, records them in the registry and in the key record (``edge_usage_plan``,
``inference_profiles``), and deletes them with the feature. A Delete of a key that is no longer the
feature's current one (the old key after a rotation) revokes that key only: the feature stays active.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from aif_gateway.contract import (
    CLEARANCE_LEVELS,
    FEATURE_KEY_ID_ATTRIBUTE,
    FEATURE_REGISTRY_TABLE_ENV,
    KEY_ID_INDEX,
    KEYS_TABLE_ENV,
    TeamFeatureKeyProperties,
)
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

from .team_accounts import (
    FeatureRegistry,
    RegistryRefused,
    check_writer,
    requesting_account,
    writer_secrets_client,
)
from .team_edge import EdgeConflict, FeatureEdge, TeamEdge, TeamEdgeSettings

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)

# Properties whose change means "a different key" rather than "the same key, new settings".
_REPLACING_PROPERTIES = Props.REPLACING
_KEY_LOOKUP_ATTEMPTS = 3
_PROFILE_ARN = re.compile(
    r"^arn:aws[a-z-]*:bedrock:[a-z0-9-]+:\d{12}:application-inference-profile/[a-z0-9]+$"
)
# Extra attributes of a provisioned key's item (the gateway ignores them): what rollback needs to know.
_GENERATION_ATTRIBUTE = "key_generation"
_REPLACES_ATTRIBUTE = "replaces_key_id"


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
    """Carries out custom-resource events against a DynamoDB client and a Secrets Manager client.

    The platform's shared provisioner also passes ``keys_table`` (its own table: a ``KeysTable``
    property is ignored), ``registry``, ``writer_client`` (a Secrets Manager client acting as a
    team's writer role) and ``edge`` (usage plans and inference profiles of the features it serves).
    """

    def __init__(
        self,
        dynamodb: Any,
        secretsmanager: Any,
        now: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        *,
        keys_table: str | None = None,
        registry: FeatureRegistry | None = None,
        writer_client: Callable[[str], Any] | None = None,
        edge: TeamEdge | None = None,
    ) -> None:
        self.dynamodb = dynamodb
        self.secretsmanager = secretsmanager
        self.now = now
        self.sleep = sleep
        self.keys_table = keys_table
        self.registry = registry
        self.writer_client = writer_client
        self.edge = edge if registry is not None else None

    def _table(self, props: Mapping[str, Any]) -> str:
        return self.keys_table or _required(props, Props.KEYS_TABLE)

    def _settings(self, props: Mapping[str, Any]) -> dict[str, Any]:
        settings = _settings(props)
        if self.registry is not None:
            # A team account's template cannot put its key into a usage plan of its choosing: the plan
            # (and the profiles) are the ones the shared provisioner makes for it (_apply_edge), else none.
            settings["edge_usage_plan"] = False
            settings["inference_profiles"] = {}
            # Nor make the platform's gateway copy its traffic: samples are the platform app's choice.
            settings["sampling_rate"] = 0.0
        return settings

    def _apply_edge(self, event: Mapping[str, Any], settings: dict[str, Any]) -> FeatureEdge | None:
        """Shared provisioner: the feature's own usage plan and inference profiles, recorded in the
        registry and (through ``settings``) in its key record. After ``_claim``: the name is the
        requester's."""
        if self.edge is None or self.registry is None:
            return None
        props = event["ResourceProperties"]
        team, feature = settings["team"], settings["feature"]
        entry = self.registry.get(self.registry.feature_id(team, feature)) or {}
        try:
            edge = self.edge.apply(
                team=team,
                feature=feature,
                owner=str(props.get(TeamFeatureKeyProperties.OWNER, "")) or "unknown",
                rate_limit_rpm=settings["rate_limit_rpm"],
                daily_request_quota=_daily_quota(props),
                allowed_models=settings["allowed_models"],
                current_profiles=dict(entry.get("inference_profiles") or {}),
            )
        except EdgeConflict as exc:
            raise ProvisioningError(str(exc)) from None
        self.registry.record_edge(
            team,
            feature,
            usage_plan_id=edge.usage_plan_id,
            edge_rate_limit_rpm=edge.rate_limit_rpm,
            profiles=edge.profiles,
        )
        settings["edge_usage_plan"] = True
        settings["inference_profiles"] = dict(edge.profiles)
        return edge

    def _drop_stale_profiles(self, edge: FeatureEdge | None) -> None:
        """Profiles of models the feature no longer reaches, once its key record stops naming them."""
        if edge is not None and self.edge is not None and edge.stale_profiles:
            self.edge.delete_profiles(edge.stale_profiles)

    def _remove_edge(self, team: str, feature: str) -> None:
        if self.edge is None or self.registry is None:
            return
        entry = self.registry.get(self.registry.feature_id(team, feature)) or {}
        self.edge.remove(team=team, feature=feature, profiles=dict(entry.get("inference_profiles") or {}))
        self.registry.clear_edge(team, feature)

    def _claim(self, event: Mapping[str, Any], settings: Mapping[str, Any]) -> Any:
        """Shared provisioner: claim the feature for the requesting account; the client that writes the
        secret (the team's writer role when the request names one, else this account's client)."""
        if self.registry is None:
            return self.secretsmanager
        props = event["ResourceProperties"]
        account = requesting_account(event)
        writer_role = None
        if props.get(TeamFeatureKeyProperties.WRITER_ROLE_ARN):
            writer_role = check_writer(props, account)
        self.registry.claim(
            settings=settings, props=props, account=account, stack_id=str(event["StackId"]), now=self.now()
        )
        if writer_role is None or self.writer_client is None:
            return self.secretsmanager
        return self.writer_client(writer_role)

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The response the CDK provider framework expects: ``PhysicalResourceId`` and ``Data``."""
        request = event.get("RequestType")
        if request == "Create":
            key_id = self.create(event)
        elif request == "Update":
            key_id = self.update(event)
        elif request == "Delete":
            key_id = str(event.get("PhysicalResourceId", ""))
            self.delete(event["ResourceProperties"], key_id, event)
        else:
            raise ProvisioningError(f"unknown RequestType {request!r}")
        return {"PhysicalResourceId": key_id, "Data": {FEATURE_KEY_ID_ATTRIBUTE: key_id}}

    # --- requests ---------------------------------------------------------------------------------

    def create(self, event: Mapping[str, Any], *, replaces: str | None = None) -> str:
        props = event["ResourceProperties"]
        table = self._table(props)
        settings = self._settings(props)
        secrets_client = self._claim(event, settings)
        edge = self._apply_edge(event, settings)
        key_id = derive_key_id(event)
        if self._find(table, key_id, attempts=1) is not None:
            logger.info("key %s already provisioned by an earlier attempt of this request", key_id)
            return key_id
        plaintext = new_plaintext(key_id)
        record = ApiKeyRecord(
            key_id=key_id,
            key_hash=hash_key(plaintext),
            created_at=self.now(),
            **settings,
        )
        # Secret first: a record in the table must always have its plaintext in the secret.
        secrets_client.put_secret_value(
            SecretId=_required(props, Props.SECRET_ARN),
            SecretString=json.dumps({"api_key": plaintext, "key_id": key_id}),
        )
        item: dict[str, Any] = dict(key_to_item(record))
        item[_GENERATION_ATTRIBUTE] = {"S": str(props.get(Props.KEY_GENERATION, ""))}
        if replaces:
            item[_REPLACES_ATTRIBUTE] = {"S": replaces}
        self.dynamodb.put_item(
            TableName=table, Item=item, ConditionExpression="attribute_not_exists(key_hash)"
        )
        if self.registry is not None:
            self.registry.record_key(record.team, record.feature, key_id)
        self._drop_stale_profiles(edge)
        logger.info("issued key %s for %s/%s", key_id, record.team, record.feature)
        return key_id

    def update(self, event: Mapping[str, Any]) -> str:
        props, old = event["ResourceProperties"], event.get("OldResourceProperties") or {}
        if any(str(props.get(k, "")) != str(old.get(k, "")) for k in _REPLACING_PROPERTIES):
            current = str(event.get("PhysicalResourceId", ""))
            restored = self._roll_back(event, current)
            return restored if restored is not None else self.create(event, replaces=current)
        key_id = str(event.get("PhysicalResourceId", ""))
        table = self._table(props)
        settings = self._settings(props)
        self._claim(event, settings)
        edge = self._apply_edge(event, settings)
        record = self._find(table, key_id, attempts=_KEY_LOOKUP_ATTEMPTS)
        if record is None:
            raise ProvisioningError(
                f"key {key_id} is not in table {table}; bump the feature's key_generation to issue a new key"
            )
        values = {
            ":team": {"S": settings["team"]},
            ":feature": {"S": settings["feature"]},
            ":models": {"L": [{"S": m} for m in settings["allowed_models"]]},
            ":budget": {"N": _number(settings["monthly_budget_usd"])},
            ":rpm": {"N": str(settings["rate_limit_rpm"])},
            ":description": {"S": settings["description"]},
            ":tpm": {"N": str(settings["tokens_per_minute"])},
            ":conc": {"N": str(settings["max_concurrency"])},
            ":profiles": {"M": {m: {"S": arn} for m, arn in settings["inference_profiles"].items()}},
            ":sampling": {"N": _number(settings["sampling_rate"])},
        }
        expression = (
            "SET #team = :team, #feature = :feature, allowed_models = :models, "
            "monthly_budget_usd = :budget, rate_limit_rpm = :rpm, description = :description, "
            "tokens_per_minute = :tpm, max_concurrency = :conc, inference_profiles = :profiles, "
            "sampling_rate = :sampling"
        )
        if settings["clearance"] is not None:
            expression += ", clearance = :clearance"
            values[":clearance"] = {"S": settings["clearance"]}
        expression += ", edge_usage_plan = :edge"
        values[":edge"] = {"BOOL": settings["edge_usage_plan"]}
        self.dynamodb.update_item(
            TableName=table,
            Key={"key_hash": {"S": record.key_hash}},
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(key_hash)",
            ExpressionAttributeNames={"#team": "team", "#feature": "feature"},
            ExpressionAttributeValues=values,
        )
        self._drop_stale_profiles(edge)
        self._release_old_name(event, settings)
        logger.info("updated key %s for %s/%s", key_id, settings["team"], settings["feature"])
        return key_id

    def _release_old_name(self, event: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
        """A renamed feature (``Team``/``Feature`` changed in place): the old name's plan and profiles go
        when the old name is the requester's."""
        if self.edge is None or self.registry is None:
            return
        old = event.get("OldResourceProperties") or {}
        old_team, old_feature = old.get(Props.TEAM), old.get(Props.FEATURE)
        if (
            not old_team
            or not old_feature
            or (old_team, old_feature) == (settings["team"], settings["feature"])
        ):
            return
        entry = self.registry.get(self.registry.feature_id(str(old_team), str(old_feature)))
        if entry is not None and entry.get("account_id") == requesting_account(event):
            self._remove_edge(str(old_team), str(old_feature))

    def delete(self, props: Mapping[str, Any], key_id: str, event: Mapping[str, Any] | None = None) -> None:
        table = self._table(props)
        record = self._find(table, key_id, attempts=_KEY_LOOKUP_ATTEMPTS)
        retiring: str | None = None
        if record is not None and self.registry is not None and event is not None:
            account = requesting_account(event)
            entry = self.registry.get(self.registry.feature_id(record.team, record.feature))
            if entry is not None and entry.get("account_id") != account:
                # Only the owning account's stack may revoke a feature's key.
                logger.info("key %s belongs to another account: not revoked for %s", key_id, account)
                return
            # The old key of a rotation is deleted after the new one is in place: the feature lives on.
            if entry is not None and entry.get("key_id") in (None, key_id):
                retiring = account
        if record is None:
            # A Create that failed before writing the record (its physical ID is not a key ID).
            logger.info("no key %s in %s: nothing to revoke", key_id, table)
            return
        self._revoke(table, record)
        if retiring is not None and self.registry is not None:
            self._remove_edge(record.team, record.feature)
            self.registry.retire(record.team, record.feature, retiring, self.now())

    # --- rollback of a rotation -------------------------------------------------------------------

    def _roll_back(self, event: Mapping[str, Any], current_id: str) -> str | None:
        """The key this replacing Update restores when it is CloudFormation rolling back a rotation,
        else ``None`` (a rotation: the caller issues a new key).

        A rollback is recognised by the current key's record: it replaced a key that is still valid,
        whose generation is the one now asked for, in the same table. That key is restored and the
        current one, issued by the failed update, revoked. If the previous plaintext cannot be read from
        the secret, a new key is issued and the replaced key revoked too, so after the rollback exactly
        one key is valid.
        """
        props = event["ResourceProperties"]
        table = self._table(props)
        current = self._find_item(table, current_id, attempts=_KEY_LOOKUP_ATTEMPTS)
        replaced_id = _attribute(current, _REPLACES_ATTRIBUTE)
        if current is None or not replaced_id:
            return None
        replaced = self._find_item(table, replaced_id, attempts=1)
        if replaced is None or _attribute(replaced, _GENERATION_ATTRIBUTE) != str(
            props.get(Props.KEY_GENERATION, "")
        ):
            return None
        previous = key_from_item(replaced)
        now = self.now()
        if previous.revoked_at is not None and previous.revoked_at <= now:
            return None  # a completed rotation revoked it: going back to its generation is a new key
        settings = _settings(props)
        secrets_client = self._claim(event, settings)
        secret_arn = _required(props, Props.SECRET_ARN)
        if self._restore_secret(secrets_client, secret_arn, replaced_id):
            # The edge and profiles go back to the restored properties, and so does the restored record.
            settings = self._settings(props)
            edge = self._apply_edge(event, settings)
            if edge is not None:
                self._write_edge_fields(table, previous.key_hash, settings)
            self._revoke(table, key_from_item(current))
            if self.registry is not None:
                self.registry.record_key(settings["team"], settings["feature"], replaced_id)
            self._drop_stale_profiles(edge)
            logger.info("rollback: restored key %s, revoked %s", replaced_id, current_id)
            return replaced_id
        # The previous plaintext is gone: one fresh key, and neither of the others stays valid.
        fresh = self.create(event, replaces=current_id)
        self._revoke(table, key_from_item(current))
        self._revoke(table, previous)
        logger.info(
            "rollback: previous key %s unreadable; issued %s, revoked it and %s",
            replaced_id,
            fresh,
            current_id,
        )
        return fresh

    def _restore_secret(self, secrets_client: Any, secret_arn: str, key_id: str) -> bool:
        """Make the secret's current value the one that holds ``key_id`` (already current, or its
        ``AWSPREVIOUS`` version written again); False when neither holds it or it cannot be read."""
        for stage in ("AWSCURRENT", "AWSPREVIOUS"):
            try:
                value = secrets_client.get_secret_value(SecretId=secret_arn, VersionStage=stage)[
                    "SecretString"
                ]
                held = json.loads(value).get("key_id")
            except (secrets_client.exceptions.ClientError, ValueError, AttributeError) as exc:
                logger.info("cannot read %s of %s: %s", stage, secret_arn, exc)
                return False
            if held == key_id:
                if stage == "AWSPREVIOUS":
                    secrets_client.put_secret_value(SecretId=secret_arn, SecretString=value)
                return True
        return False

    def _write_edge_fields(self, table: str, key_hash: str, settings: Mapping[str, Any]) -> None:
        """The usage-plan flag and the profiles of ``settings`` on an existing key record."""
        self.dynamodb.update_item(
            TableName=table,
            Key={"key_hash": {"S": key_hash}},
            UpdateExpression="SET edge_usage_plan = :edge, inference_profiles = :profiles",
            ConditionExpression="attribute_exists(key_hash)",
            ExpressionAttributeValues={
                ":edge": {"BOOL": settings["edge_usage_plan"]},
                ":profiles": {"M": {m: {"S": arn} for m, arn in settings["inference_profiles"].items()}},
            },
        )

    def _revoke(self, table: str, record: ApiKeyRecord) -> None:
        """Set ``revoked_at`` now, unless the key was revoked already (that time is kept)."""
        now = self.now()
        if record.revoked_at is not None and record.revoked_at <= now:
            logger.info("key %s was already revoked at %s", record.key_id, record.revoked_at.isoformat())
            return
        self.dynamodb.update_item(
            TableName=table,
            Key={"key_hash": {"S": record.key_hash}},
            UpdateExpression="SET revoked_at = :at",
            ConditionExpression="attribute_exists(key_hash)",
            ExpressionAttributeValues={":at": {"S": now.isoformat()}},
        )
        logger.info("revoked key %s", record.key_id)

    # --- helpers ----------------------------------------------------------------------------------

    def _find(self, table: str, key_id: str, *, attempts: int) -> ApiKeyRecord | None:
        """The record with this key ID, via the ``by-key-id`` index (eventually consistent: a record
        written moments ago may need a short retry)."""
        item = self._find_item(table, key_id, attempts=attempts)
        return None if item is None else key_from_item(item)

    def _find_item(self, table: str, key_id: str, *, attempts: int) -> dict[str, Any] | None:
        """The raw item of ``_find`` (with the provisioner's own attributes)."""
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
                return dict(items[0])
            if attempt + 1 < attempts:
                self.sleep(1.0 * (attempt + 1))
        return None


def _attribute(item: Mapping[str, Any] | None, name: str) -> str | None:
    """A string attribute of a keys-table item (``None`` when absent: items from before it existed)."""
    value = (item or {}).get(name)
    return value.get("S") if isinstance(value, Mapping) else None


def _required(props: Mapping[str, Any], name: str) -> str:
    value = props.get(name)
    if not isinstance(value, str) or not value:
        raise ProvisioningError(f"resource property {name} is required")
    return value


def _optional_number(
    props: Mapping[str, Any], name: str, valid: Callable[[float], bool], expected: str
) -> float | None:
    """An optional numeric resource property: ``None`` when absent, else its value when ``valid``."""
    raw = props.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(str(raw))
    except ValueError:
        value = math.nan  # valid() is false for it
    if not valid(value):
        raise ProvisioningError(f"resource property {name} must be {expected}, got {raw!r}")
    return value


def _daily_quota(props: Mapping[str, Any]) -> int | None:
    """``DailyRequestQuota``: a whole number of requests per UTC day, or ``None`` (no quota)."""
    value = _optional_number(
        props, Props.DAILY_REQUEST_QUOTA, lambda v: v >= 1 and v.is_integer(), "a whole number >= 1"
    )
    return None if value is None else int(value)


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
        "inference_profiles": _inference_profiles(props),
        "edge_usage_plan": str(props.get(Props.EDGE_USAGE_PLAN, "")).lower() == "true",
        "sampling_rate": _sampling_rate(props),
    }


def _sampling_rate(props: Mapping[str, Any]) -> float:
    """``GatewaySamplingRate``: a share from 0 to 1 (optional; absent: the gateway sends no samples)."""
    value = _optional_number(
        props, Props.GATEWAY_SAMPLING_RATE, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1"
    )
    return 0.0 if value is None else value


def _inference_profiles(props: Mapping[str, Any]) -> dict[str, str]:
    """``InferenceProfiles``: catalog model ID -> application inference profile ARN (optional)."""
    raw = props.get(Props.INFERENCE_PROFILES) or {}
    if not isinstance(raw, Mapping):
        raise ProvisioningError(
            f"resource property {Props.INFERENCE_PROFILES} must be a map of model ID -> profile ARN, "
            f"got {raw!r}"
        )
    for model_id, arn in raw.items():
        if not isinstance(arn, str) or not _PROFILE_ARN.match(arn):
            raise ProvisioningError(
                f"resource property {Props.INFERENCE_PROFILES}: {model_id!r}: {arn!r} is not an "
                "application inference profile ARN"
            )
    return {str(m): str(a) for m, a in raw.items()}


def _number(value: float) -> str:
    # Through str() so 0.1 is stored as 0.1, in positional notation (as the gateway's store writes it).
    return format(Decimal(str(value)), "f")


def on_event(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point for the CDK ``Provider`` framework's onEvent handler."""
    import boto3

    region = os.environ.get("AWS_REGION")
    dynamodb = boto3.client("dynamodb", region_name=region)
    registry_table = os.environ.get(FEATURE_REGISTRY_TABLE_ENV)
    registry = FeatureRegistry(dynamodb, registry_table) if registry_table else None
    sts = boto3.client("sts", region_name=region) if registry is not None else None
    edge_settings = TeamEdgeSettings.from_environment(os.environ) if registry is not None else None
    edge = (
        TeamEdge(
            boto3.client("apigateway", region_name=region),
            boto3.client("bedrock", region_name=region),
            edge_settings,
        )
        if edge_settings is not None
        else None
    )
    provisioner = KeyProvisioner(
        dynamodb,
        boto3.client("secretsmanager", region_name=region),
        keys_table=os.environ.get(KEYS_TABLE_ENV) or None,
        registry=registry,
        writer_client=(lambda role_arn: writer_secrets_client(sts, role_arn, region)) if sts else None,
        edge=edge,
    )
    logger.info(
        "%s %s/%s from %s",
        event.get("RequestType"),
        event.get("LogicalResourceId"),
        event.get("PhysicalResourceId"),
        event.get("StackId"),
    )
    try:
        return provisioner.handle(event)
    except RegistryRefused as exc:
        # CloudFormation shows this message as the resource's failure reason.
        raise ProvisioningError(str(exc)) from None
