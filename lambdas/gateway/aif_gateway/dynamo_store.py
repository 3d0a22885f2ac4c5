"""DynamoDB implementations of the ``KeyStore`` and ``Ledger`` protocols (the gateway's cloud storage).

Table schemas are shared with the CDK construct:

* keys table: partition key ``key_hash``; GSI ``by-key-id`` (partition key ``key_id``, projection ALL).
* usage table: ``pk``/``sk`` with TTL attribute ``ttl``. Per request one audit record,
  ``LEDGER#{team}#{feature}#{YYYY-MM}`` / ``{timestamp}#{request_id}``, written with one ``PutItem``
  (no transaction, no counter: an item of its own, so requests never contend for it). The feature's
  running sums live on its quota gate, ``GATE#{team}#{feature}`` / ``MONTH#{YYYY-MM}``
  (``aif_gateway.dynamo_quota``), added to with atomic ``ADD`` updates when requests settle.
  Human feedback: ``FEEDBACK#{team}#{feature}#{YYYY-MM}`` / ``{request_id}`` (one per request, the
  request's month, so a feature-month's feedback is one Query). GSI ``by-request-id`` (partition key
  ``request_id``, KEYS_ONLY) finds a request's audit record; only audit records carry a ``request_id``
  attribute, so the index is sparse (feedback items keep the id in ``sk`` only).

The low-level client is used with hand-written attribute values: no ``boto3.resource`` layer and no
``TypeSerializer`` (which refuses floats). boto3 is imported when the first call needs a client, so
importing this module costs nothing at cold start.

Team and feature names are joined into keys with ``#``; they must not contain ``#`` themselves (the
catalog/CLI validates names), or two features could share counters.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aif_gateway.contract import GATE_KEY_PREFIX, KEY_ID_INDEX, MONTH_KEY_PREFIX, REQUEST_ID_INDEX
from aif_gateway.records import DEFAULT_MAX_CONCURRENCY as DEFAULT_CONC
from aif_gateway.records import DEFAULT_TOKENS_PER_MINUTE as DEFAULT_TPM
from aif_gateway.records import (
    ApiKeyRecord,
    FeedbackRecord,
    LedgerWriteError,
    StoreError,
    UnknownKeyError,
    UsageRecord,
    UsageSnapshot,
    minute_of,
    month_of,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

TTL_ATTRIBUTE = "ttl"

# The two tables' key schemas in CreateTable's shape: the one description the CDK construct is checked
# against (tests/infra) and that tests, benchmarks and tools create local tables from.
KEYS_TABLE_SCHEMA: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": "key_hash", "AttributeType": "S"},
        {"AttributeName": "key_id", "AttributeType": "S"},
    ],
    "KeySchema": [{"AttributeName": "key_hash", "KeyType": "HASH"}],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": KEY_ID_INDEX,
            "KeySchema": [{"AttributeName": "key_id", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
}
USAGE_TABLE_SCHEMA: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
        {"AttributeName": "request_id", "AttributeType": "S"},
    ],
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": REQUEST_ID_INDEX,
            "KeySchema": [{"AttributeName": "request_id", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
    ],
}


def create_tables(
    client: DynamoDBClient, keys_table: str | None = None, usage_table: str | None = None
) -> None:
    """Create the gateway's tables with their real schemas (for tests, benchmarks and local tools; in AWS
    the LlmGateway construct creates them)."""
    if keys_table:
        client.create_table(TableName=keys_table, BillingMode="PAY_PER_REQUEST", **KEYS_TABLE_SCHEMA)
    if usage_table:
        client.create_table(TableName=usage_table, BillingMode="PAY_PER_REQUEST", **USAGE_TABLE_SCHEMA)
        client.update_time_to_live(
            TableName=usage_table, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )


# DynamoDB numbers cannot be closer to zero than this; smaller magnitudes are stored as 0.
_DDB_MIN_MAGNITUDE = Decimal("1E-130")
_BATCH_GET_ATTEMPTS = 5
_BATCH_GET_LIMIT = 100  # keys per BatchGetItem call (DynamoDB's maximum)
_USAGE_FIELDS = {f.name for f in fields(UsageRecord)}
_USAGE_FLOAT_FIELDS = {"cost_usd", "latency_ms"}


def make_client() -> DynamoDBClient:
    """A DynamoDB client with bounded retries and timeouts, so a slow table cannot hold a request long.

    The region comes from ``AWS_REGION`` (set in Lambda) or ``AWS_DEFAULT_REGION``. Pass one client to
    both stores to pay the client's creation cost once per cold start.
    """
    import boto3
    from botocore.config import Config

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    config = Config(
        # total_max_attempts counts the first try (botocore's max_attempts would mean 3 retries).
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=2,
        read_timeout=3,
        # Every request is built by this module from typed records; client-side validation of it was
        # ~0.2 ms of the hot path's one write (benchmarks/gateway_overhead.py). DynamoDB still validates.
        parameter_validation=False,
    )
    return boto3.client("dynamodb", region_name=region, config=config)


def _aws_errors() -> tuple[type[Exception], ...]:
    """The exceptions a botocore call raises for service and transport failures."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


# --- attribute values ---------------------------------------------------------------------------


def _number(value: int | float) -> str:
    """A DynamoDB N string in positional notation.

    Floats go through ``str()`` into ``Decimal`` so 0.1 is stored as 0.1, not as its binary expansion.
    Positional notation (no exponent) is accepted everywhere, including by moto's number arithmetic.
    """
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"DynamoDB cannot store the number {value!r}")
    number = Decimal(str(value))
    if abs(number) < _DDB_MIN_MAGNITUDE:
        return "0"
    return format(number, "f")


def _n(value: int | float) -> AttributeValueTypeDef:
    return {"N": _number(value)}


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _to_float(attr: AttributeValueTypeDef | None) -> float:
    return float(Decimal(attr["N"])) if attr else 0.0


def _to_int(attr: AttributeValueTypeDef | None) -> int:
    # Counters are sums of integers, but parse through Decimal in case one was written as "3.0".
    return int(Decimal(attr["N"])) if attr else 0


def _opt_datetime(attr: AttributeValueTypeDef | None) -> datetime | None:
    return datetime.fromisoformat(attr["S"]) if attr and "S" in attr else None


# --- keys ---------------------------------------------------------------------------------------


def key_to_item(record: ApiKeyRecord) -> dict[str, AttributeValueTypeDef]:
    """The keys-table item for a key record; absent datetimes are left out rather than stored as NULL."""
    item: dict[str, AttributeValueTypeDef] = {
        "key_hash": _s(record.key_hash),
        "key_id": _s(record.key_id),
        "team": _s(record.team),
        "feature": _s(record.feature),
        "allowed_models": {"L": [_s(m) for m in record.allowed_models]},
        "monthly_budget_usd": _n(record.monthly_budget_usd),
        "rate_limit_rpm": _n(record.rate_limit_rpm),
        "tokens_per_minute": _n(record.tokens_per_minute),
        "max_concurrency": _n(record.max_concurrency),
        "created_at": _s(record.created_at.isoformat()),
        "description": _s(record.description),
    }
    if record.expires_at is not None:
        item["expires_at"] = _s(record.expires_at.isoformat())
    if record.revoked_at is not None:
        item["revoked_at"] = _s(record.revoked_at.isoformat())
    if record.clearance is not None:
        item["clearance"] = _s(record.clearance)
    if record.inference_profiles:
        item["inference_profiles"] = {"M": {m: _s(arn) for m, arn in record.inference_profiles.items()}}
    if record.edge_usage_plan:
        item["edge_usage_plan"] = {"BOOL": True}
    if record.sampling_rate:
        item["sampling_rate"] = _n(record.sampling_rate)
    return item


def key_from_item(item: dict[str, Any]) -> ApiKeyRecord:
    """The key record stored in a keys-table item (inverse of ``key_to_item``)."""
    return ApiKeyRecord(
        key_id=item["key_id"]["S"],
        key_hash=item["key_hash"]["S"],
        team=item["team"]["S"],
        feature=item["feature"]["S"],
        allowed_models=tuple(v["S"] for v in item.get("allowed_models", {}).get("L", [])),
        monthly_budget_usd=_to_float(item.get("monthly_budget_usd")),
        rate_limit_rpm=_to_int(item.get("rate_limit_rpm")),
        created_at=datetime.fromisoformat(item["created_at"]["S"]),
        expires_at=_opt_datetime(item.get("expires_at")),
        revoked_at=_opt_datetime(item.get("revoked_at")),
        description=item.get("description", {}).get("S", ""),
        clearance=item.get("clearance", {}).get("S"),
        # Items written before these limits existed get the defaults.
        tokens_per_minute=_to_int(item["tokens_per_minute"]) if "tokens_per_minute" in item else DEFAULT_TPM,
        max_concurrency=_to_int(item["max_concurrency"]) if "max_concurrency" in item else DEFAULT_CONC,
        inference_profiles={
            m: v["S"] for m, v in item.get("inference_profiles", {}).get("M", {}).items() if "S" in v
        },
        edge_usage_plan=bool(item.get("edge_usage_plan", {}).get("BOOL", False)),
        sampling_rate=_to_float(item.get("sampling_rate")),
    )


class DynamoKeyStore:
    """API keys in the keys table, found by hash (every request) or by key ID (the CLI)."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = make_client()
        return self._client

    def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        """The key with this hash, read strongly consistently so a revocation takes effect at once."""
        try:
            resp = self.client.get_item(
                TableName=self.table_name, Key={"key_hash": _s(key_hash)}, ConsistentRead=True
            )
        except _aws_errors() as exc:
            raise StoreError(f"reading key from {self.table_name} failed: {exc}") from exc
        item = resp.get("Item")
        return key_from_item(item) if item else None

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this key ID (via the GSI, which is eventually consistent)."""
        try:
            resp = self.client.query(
                TableName=self.table_name,
                IndexName=KEY_ID_INDEX,
                KeyConditionExpression="key_id = :k",
                ExpressionAttributeValues={":k": _s(key_id)},
            )
        except _aws_errors() as exc:
            raise StoreError(f"looking up key {key_id} in {self.table_name} failed: {exc}") from exc
        items = resp.get("Items", [])
        return key_from_item(items[0]) if items else None

    def put(self, record: ApiKeyRecord) -> None:
        """Create or replace the key's item."""
        try:
            self.client.put_item(TableName=self.table_name, Item=key_to_item(record))
        except _aws_errors() as exc:
            raise StoreError(f"writing key {record.key_id} to {self.table_name} failed: {exc}") from exc

    def list(self, team: str | None = None) -> list[ApiKeyRecord]:
        """Every key (or one team's), ordered by team, feature and creation time. Scans the table: for
        the CLI, not the request path."""
        kwargs: dict[str, Any] = {"TableName": self.table_name}
        if team is not None:
            kwargs["FilterExpression"] = "#team = :team"
            kwargs["ExpressionAttributeNames"] = {"#team": "team"}
            kwargs["ExpressionAttributeValues"] = {":team": _s(team)}
        records: list[ApiKeyRecord] = []
        try:
            while True:
                resp = self.client.scan(**kwargs)
                records.extend(key_from_item(item) for item in resp.get("Items", []))
                if "LastEvaluatedKey" not in resp:
                    break
                kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        except _aws_errors() as exc:
            raise StoreError(f"listing keys in {self.table_name} failed: {exc}") from exc
        return sorted(records, key=lambda r: (r.team, r.feature, r.created_at, r.key_id))

    def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Set the key's revocation time (may be in the future, e.g. a rotation grace period)."""
        return self._set_datetime(key_id, "revoked_at", at)

    def set_expiry(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Set the key's expiry time."""
        return self._set_datetime(key_id, "expires_at", at)

    def _set_datetime(self, key_id: str, attribute: str, at: datetime) -> ApiKeyRecord:
        current = self.get(key_id)
        if current is None:
            raise UnknownKeyError(key_id)
        try:
            resp = self.client.update_item(
                TableName=self.table_name,
                Key={"key_hash": _s(current.key_hash)},
                UpdateExpression="SET #a = :at",
                # The key may have been deleted since the GSI read: do not recreate a partial item.
                ConditionExpression="attribute_exists(key_hash)",
                ExpressionAttributeNames={"#a": attribute},
                ExpressionAttributeValues={":at": _s(at.isoformat())},
                ReturnValues="ALL_NEW",
            )
        except _aws_errors() as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise UnknownKeyError(key_id) from exc
            raise StoreError(f"updating key {key_id} in {self.table_name} failed: {exc}") from exc
        return key_from_item(resp["Attributes"])


# --- usage ledger -------------------------------------------------------------------------------


def ledger_key(usage: UsageRecord) -> dict[str, AttributeValueTypeDef]:
    """Primary key of the request's audit record."""
    return {
        "pk": _s(f"LEDGER#{usage.team}#{usage.feature}#{usage.month}"),
        "sk": _s(f"{usage.timestamp.isoformat()}#{usage.request_id}"),
    }


def gate_key(team: str, feature: str, month: str) -> dict[str, AttributeValueTypeDef]:
    """Primary key of a feature's quota gate for a month (``aif_gateway.dynamo_quota``)."""
    return {"pk": _s(f"{GATE_KEY_PREFIX}{team}#{feature}"), "sk": _s(f"{MONTH_KEY_PREFIX}{month}")}


def usage_to_item(usage: UsageRecord) -> dict[str, AttributeValueTypeDef]:
    """The audit-record item: its key plus every UsageRecord field (None fields are left out)."""
    item = ledger_key(usage)
    for name, value in usage.to_dict().items():
        if value is None:
            continue
        if isinstance(value, bool):  # no bool fields today; keep them from becoming numbers
            item[name] = {"BOOL": value}
        elif isinstance(value, int | float):
            item[name] = _n(value)
        elif isinstance(value, dict):
            item[name] = {"M": {k: _s(str(v)) for k, v in value.items()}}
        else:
            item[name] = _s(str(value))
    return item


def usage_from_item(item: dict[str, Any]) -> UsageRecord:
    """The UsageRecord stored in an audit-record item (inverse of ``usage_to_item``)."""
    data: dict[str, Any] = {}
    for name, attr in item.items():
        if name not in _USAGE_FIELDS:
            continue
        if "N" in attr:
            data[name] = _to_float(attr) if name in _USAGE_FLOAT_FIELDS else _to_int(attr)
        elif "M" in attr:
            data[name] = {k: v["S"] for k, v in attr["M"].items()}
        elif "BOOL" in attr:
            data[name] = attr["BOOL"]
        else:
            data[name] = attr["S"]
    return UsageRecord.from_dict(data)


class DynamoLedger:
    """Usage records (and feedback) in the usage table; the sums budgets read are on the quota gate."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = make_client()
        return self._client

    def record(self, usage: UsageRecord) -> None:
        """Put the audit record: one ``PutItem`` on an item of its own, no transaction, no counter.

        Idempotent on the request: the item's key holds the request id and the put is conditional on
        ``attribute_not_exists``, so a replay or a retry after a lost response finds the record there and
        changes nothing (``ConditionalCheckFailedException`` means "already recorded"). The request's
        cost reaches the feature's sums through its gate's settlement (``aif_gateway.quota``), not here,
        so a record that is spilled and replayed later never counts twice or goes uncounted.
        Raises LedgerWriteError for anything else (after botocore's retries): the caller spills.
        """
        try:
            item = usage_to_item(usage)
        except ValueError as exc:  # a NaN/inf value: still spill it so nothing is lost silently
            raise LedgerWriteError(f"usage record {usage.request_id} is not storable: {exc}") from exc
        try:
            self.client.put_item(
                TableName=self.table_name, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except _aws_errors() as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return
            raise LedgerWriteError(f"recording usage {usage.request_id} failed: {exc}") from exc

    def snapshot(self, team: str, feature: str, now: datetime) -> UsageSnapshot:
        """Month-to-date spend and this minute's admitted requests, read from the feature's gate (zeros
        when it has none yet). Strongly consistent. Raises StoreError when the read fails."""
        month, minute = month_of(now), minute_of(now)
        found = self._batch_get([gate_key(team, feature, month)])
        gate = found.get(f"{MONTH_KEY_PREFIX}{month}", {})
        same_minute = gate.get("minute", {}).get("S") == minute
        return UsageSnapshot(
            month=month,
            spent_usd=_to_float(gate.get("spent_usd")),
            minute=minute,
            requests_this_minute=_to_int(gate.get("minute_requests")) if same_minute else 0,
        )

    def recorded(self, usages: list[UsageRecord]) -> set[str]:
        """The request ids among ``usages`` whose audit record is in the table (the usage recovery's
        check): BatchGetItem by each record's key, 100 keys a call, only the keys read back.
        Strongly consistent, so a record written a moment ago counts as written. Raises StoreError."""
        by_sk = {ledger_key(u)["sk"]["S"]: u for u in usages}
        found: set[str] = set()
        keys = [ledger_key(u) for u in by_sk.values()]
        for start in range(0, len(keys), _BATCH_GET_LIMIT):
            items = self._batch_get(keys[start : start + _BATCH_GET_LIMIT], projection="pk, sk")
            found.update(by_sk[sk].request_id for sk in items if sk in by_sk)
        return found

    def _batch_get(
        self, keys: list[dict[str, AttributeValueTypeDef]], projection: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """Items by sort key; retries UnprocessedKeys (throttled partitions) with a short backoff."""
        read: dict[str, Any] = {"Keys": keys, "ConsistentRead": True}
        if projection is not None:
            read["ProjectionExpression"] = projection
        request: dict[str, Any] = {self.table_name: read}
        found: dict[str, dict[str, Any]] = {}
        try:
            for attempt in range(_BATCH_GET_ATTEMPTS):
                resp = self.client.batch_get_item(RequestItems=request)
                for item in resp.get("Responses", {}).get(self.table_name, []):
                    found[item["sk"]["S"]] = item
                request = dict(resp.get("UnprocessedKeys") or {})
                if not request:
                    return found
                time.sleep(0.02 * 2**attempt)
        except _aws_errors() as exc:
            raise StoreError(f"reading usage counters from {self.table_name} failed: {exc}") from exc
        raise StoreError(f"usage counters in {self.table_name} stayed unprocessed after retries")

    def find(self, request_id: str) -> UsageRecord | None:
        """The request's audit record: the by-request-id index gives its key, a consistent GetItem the
        record. The index is eventually consistent (typically well under a second behind), so a record
        written a moment ago may not be found yet. Raises StoreError."""
        try:
            resp = self.client.query(
                TableName=self.table_name,
                IndexName=REQUEST_ID_INDEX,
                KeyConditionExpression="request_id = :r",
                ExpressionAttributeValues={":r": _s(request_id)},
                Limit=1,
            )
            items = resp.get("Items", [])
            if not items:
                return None
            key = {"pk": items[0]["pk"], "sk": items[0]["sk"]}
            found = self.client.get_item(TableName=self.table_name, Key=key, ConsistentRead=True)
        except _aws_errors() as exc:
            raise StoreError(f"looking up request {request_id} in {self.table_name} failed: {exc}") from exc
        item = found.get("Item")
        return usage_from_item(item) if item else None

    def record_feedback(self, feedback: FeedbackRecord) -> None:
        """Put the request's feedback item (replacing an earlier one). Raises StoreError."""
        try:
            self.client.put_item(TableName=self.table_name, Item=feedback_to_item(feedback))
        except _aws_errors() as exc:
            raise StoreError(f"storing feedback on {feedback.request_id} failed: {exc}") from exc


def feedback_key(team: str, feature: str, month: str, request_id: str) -> dict[str, AttributeValueTypeDef]:
    """Primary key of a request's feedback item."""
    return {"pk": _s(f"FEEDBACK#{team}#{feature}#{month}"), "sk": _s(request_id)}


def feedback_to_item(feedback: FeedbackRecord) -> dict[str, AttributeValueTypeDef]:
    """The feedback item. No ``request_id`` attribute: that would put it in the by-request-id index."""
    item = feedback_key(feedback.team, feedback.feature, feedback.request_month, feedback.request_id)
    item.update(
        {
            "team": _s(feedback.team),
            "feature": _s(feedback.feature),
            "request_month": _s(feedback.request_month),
            "score": _n(feedback.score),
            "submitted_at": _s(feedback.submitted_at.isoformat()),
            "key_id": _s(feedback.key_id),
            "route": _s(feedback.route),
            "tags": {"L": [_s(t) for t in feedback.tags]},
        }
    )
    if feedback.comment is not None:
        item["comment"] = _s(feedback.comment)
    if feedback.model_served is not None:
        item["model_served"] = _s(feedback.model_served)
    return item


def feedback_from_item(item: dict[str, Any]) -> FeedbackRecord:
    """The FeedbackRecord stored in a feedback item (inverse of ``feedback_to_item``)."""
    return FeedbackRecord(
        request_id=item["sk"]["S"],
        team=item["team"]["S"],
        feature=item["feature"]["S"],
        request_month=item["request_month"]["S"],
        score=_to_float(item.get("score")),
        submitted_at=datetime.fromisoformat(item["submitted_at"]["S"]),
        key_id=item.get("key_id", {}).get("S", ""),
        comment=item["comment"]["S"] if "comment" in item else None,
        tags=tuple(v["S"] for v in item.get("tags", {}).get("L", [])),
        route=item.get("route", {}).get("S", ""),
        model_served=item["model_served"]["S"] if "model_served" in item else None,
    )
