"""DynamoKeyStore and DynamoLedger against moto tables built with the construct's exact schemas.

moto cannot fail on demand, so the failure paths use botocore's Stubber on a real client.
"""

from __future__ import annotations

import math
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from aif_gateway.dynamo_quota import DynamoQuotaStore
from aif_gateway.dynamo_store import (
    DynamoKeyStore,
    DynamoLedger,
    StoreError,
    create_tables,
    key_to_item,
    ledger_key,
    make_client,
    usage_from_item,
    usage_to_item,
)
from aif_gateway.quota import Carry, Claim, Limits
from aif_gateway.records import (
    ApiKeyRecord,
    LedgerWriteError,
    UnknownKeyError,
    UsageRecord,
    UsageSnapshot,
    generate_key,
    minute_of,
    month_of,
)

KEYS_TABLE = "aif-keys"
USAGE_TABLE = "aif-usage"
NOW = datetime(2026, 11, 25, 14, 7, 31, 250_000, tzinfo=UTC)


def create_keys_table(client: Any) -> None:
    create_tables(client, keys_table=KEYS_TABLE)


def create_usage_table(client: Any, table: str = USAGE_TABLE) -> None:
    create_tables(client, usage_table=table)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def ddb(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = make_client()
        create_keys_table(client)
        create_usage_table(client)
        yield client


def make_key(team: str = "search", feature: str = "summaries", **overrides: Any) -> ApiKeyRecord:
    _, key_id, key_hash = generate_key()
    fields: dict[str, Any] = {
        "key_id": key_id,
        "key_hash": key_hash,
        "team": team,
        "feature": feature,
        "allowed_models": ("claude-haiku", "titan-embed"),
        "monthly_budget_usd": 125.5,
        "rate_limit_rpm": 60,
        "created_at": NOW,
        **overrides,
    }
    return ApiKeyRecord(**fields)


def make_usage(request_id: str = "req-1", **overrides: Any) -> UsageRecord:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "timestamp": NOW,
        "team": "search",
        "feature": "summaries",
        "key_id": "abc123",
        "route": "fast-chat",
        "status": 200,
        "model_served": "claude-haiku",
        "model_id": "us.anthropic.claude-haiku",
        "input_tokens": 1200,
        "output_tokens": 300,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 50,
        "cost_usd": 0.0123,
        "latency_ms": 812.5,
        "attempts": 1,
        **overrides,
    }
    return UsageRecord(**fields)


# --- module hygiene ----------------------------------------------------------------------------


def test_importing_the_stores_does_not_import_boto3() -> None:
    code = "import sys, aif_gateway.dynamo_store, aif_gateway.spill; print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_client_is_made_lazily_with_bounded_retries(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    ledger = DynamoLedger(USAGE_TABLE)
    assert ledger._client is None
    client = ledger.client
    assert client.meta.region_name == "eu-west-1"
    config: Any = client.meta.config  # botocore-stubs does not type Config's options
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert config.connect_timeout <= 5
    assert config.read_timeout <= 5
    assert ledger.client is client


# --- key store ---------------------------------------------------------------------------------


def test_key_round_trip_by_hash_and_by_key_id(ddb: Any) -> None:
    store = DynamoKeyStore(KEYS_TABLE, client=ddb)
    record = make_key(expires_at=NOW + timedelta(days=90), description="nightly batch ✓")
    store.put(record)

    assert store.get_by_hash(record.key_hash) == record
    assert store.get(record.key_id) == record
    assert store.get_by_hash("0" * 64) is None
    assert store.get("missing") is None


def test_key_item_uses_the_shared_schema(ddb: Any) -> None:
    store = DynamoKeyStore(KEYS_TABLE, client=ddb)
    record = make_key(allowed_models=())
    store.put(record)
    item = ddb.get_item(TableName=KEYS_TABLE, Key={"key_hash": {"S": record.key_hash}})["Item"]
    assert item["monthly_budget_usd"] == {"N": "125.5"}
    assert item["rate_limit_rpm"] == {"N": "60"}
    assert item["created_at"] == {"S": NOW.isoformat()}
    assert item["allowed_models"] == {"L": []}
    assert "expires_at" not in item and "revoked_at" not in item
    assert store.get_by_hash(record.key_hash) == record


def test_list_all_and_by_team_across_scan_pages(ddb: Any) -> None:
    store = DynamoKeyStore(KEYS_TABLE, client=ddb)
    search = [make_key("search", f"f{i}", created_at=NOW + timedelta(minutes=i)) for i in range(3)]
    ads = [make_key("ads", "bids")]
    for record in [*search, *ads]:
        store.put(record)

    assert store.list() == [*ads, *search]  # ordered by team, feature, created_at
    assert store.list(team="search") == search
    assert store.list(team="nobody") == []


def test_list_follows_last_evaluated_key(aws_env: None) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    record = make_key()
    item = key_to_item(record)
    with Stubber(client) as stub:
        stub.add_response(
            "scan",
            {"Items": [item], "LastEvaluatedKey": {"key_hash": item["key_hash"]}},
            {"TableName": KEYS_TABLE},
        )
        stub.add_response(
            "scan",
            {"Items": []},
            {"TableName": KEYS_TABLE, "ExclusiveStartKey": {"key_hash": item["key_hash"]}},
        )
        assert DynamoKeyStore(KEYS_TABLE, client=client).list() == [record]
        stub.assert_no_pending_responses()


def test_revoke_and_set_expiry_return_the_updated_record(ddb: Any) -> None:
    store = DynamoKeyStore(KEYS_TABLE, client=ddb)
    record = make_key()
    store.put(record)

    later = NOW + timedelta(hours=1)
    revoked = store.revoke(record.key_id, later)
    assert revoked == replace(record, revoked_at=later)
    assert revoked.state(later) == "revoked" and revoked.state(NOW) == "active"
    assert store.get_by_hash(record.key_hash) == revoked

    expiry = NOW + timedelta(days=7)
    expiring = store.set_expiry(record.key_id, expiry)
    assert expiring == replace(record, revoked_at=later, expires_at=expiry)
    assert store.get(record.key_id) == expiring


def test_unknown_key_raises(ddb: Any) -> None:
    store = DynamoKeyStore(KEYS_TABLE, client=ddb)
    with pytest.raises(UnknownKeyError):
        store.revoke("nope", NOW)
    with pytest.raises(UnknownKeyError):
        store.set_expiry("nope", NOW)
    assert ddb.scan(TableName=KEYS_TABLE)["Items"] == []  # no partial item was created


def test_key_read_failure_is_a_store_error(aws_env: None) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("get_item", "InternalServerError", http_status_code=500)
        with pytest.raises(StoreError) as info:
            DynamoKeyStore(KEYS_TABLE, client=client).get_by_hash("x")
    assert info.value.__cause__ is not None


# --- ledger ------------------------------------------------------------------------------------


def _settle(client: Any, usage: UsageRecord, table: str = USAGE_TABLE) -> None:
    """What the gateway does for a request besides recording it: reserve, then settle to its cost."""
    store = DynamoQuotaStore(table, client=client)
    claim = Claim(
        usage.team,
        usage.feature,
        month_of(usage.timestamp),
        minute_of(usage.timestamp),
        usage.timestamp.timestamp(),
        usage.cost_usd,
        10,
    )
    store.reserve(claim, Limits(100.0, 1000, 1_000_000, 32), Carry())
    store.apply(
        usage.team,
        usage.feature,
        claim.month,
        Carry(0.0, usage.cost_usd, claim.minute, 0, -1, 1),
    )


def test_record_writes_the_audit_item_alone_with_one_put(ddb: Any) -> None:
    ledger = DynamoLedger(USAGE_TABLE, client=ddb)
    usage = make_usage(extra={"caller": "batch"}, prompt_name="summary")
    calls: list[str] = []
    ddb.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    ledger.record(usage)
    assert calls == ["PutItem"]  # no transaction, no counter item: nothing another request contends for

    stored = ddb.get_item(TableName=USAGE_TABLE, Key=ledger_key(usage))["Item"]
    assert stored["pk"] == {"S": "LEDGER#search#summaries#2026-11"}
    assert stored["sk"] == {"S": f"{NOW.isoformat()}#req-1"}
    assert stored["cost_usd"] == {"N": "0.0123"}  # via str(): no binary-expansion digits
    assert "error_type" not in stored  # None fields are left out
    assert usage_from_item(stored) == usage
    assert len(ddb.scan(TableName=USAGE_TABLE)["Items"]) == 1


def test_the_same_request_twice_is_recorded_once(ddb: Any) -> None:
    ledger = DynamoLedger(USAGE_TABLE, client=ddb)
    usage = make_usage()
    ledger.record(usage)
    ledger.record(replace(usage, cost_usd=99.0))  # a replayed spill, or a retry after a lost response
    stored = ddb.get_item(TableName=USAGE_TABLE, Key=ledger_key(usage))["Item"]
    assert stored["cost_usd"] == {"N": "0.0123"}  # the first write stands
    assert len(ddb.scan(TableName=USAGE_TABLE)["Items"]) == 1


def test_snapshot_reads_the_features_gate(ddb: Any) -> None:
    """The sums budgets read are the gate's (settled cost, admitted requests this minute), not the ledger's:
    recording alone counts nothing, settling does."""
    ledger = DynamoLedger(USAGE_TABLE, client=ddb)
    usage = make_usage()
    ledger.record(usage)
    assert ledger.snapshot("search", "summaries", NOW) == UsageSnapshot("2026-11", 0.0, "2026-11-25T14:07", 0)
    _settle(ddb, usage)
    assert ledger.snapshot("search", "summaries", NOW) == UsageSnapshot(
        "2026-11", 0.0123, "2026-11-25T14:07", 1
    )


def test_snapshot_separates_minutes_months_and_features(ddb: Any) -> None:
    ledger = DynamoLedger(USAGE_TABLE, client=ddb)
    _settle(ddb, make_usage("a", cost_usd=0.1))
    _settle(ddb, make_usage("b", cost_usd=0.2, timestamp=NOW + timedelta(seconds=20)))
    _settle(ddb, make_usage("d", cost_usd=5.0, feature="other"))
    _settle(ddb, make_usage("e", cost_usd=7.0, timestamp=datetime(2026, 12, 1, tzinfo=UTC)))

    snap = ledger.snapshot("search", "summaries", NOW)
    assert snap.month == "2026-11" and snap.minute == "2026-11-25T14:07"
    assert snap.spent_usd == pytest.approx(0.3)
    assert snap.requests_this_minute == 2
    assert ledger.snapshot("search", "summaries", NOW + timedelta(minutes=1)).requests_this_minute == 0
    _settle(ddb, make_usage("c", cost_usd=0.4, timestamp=NOW + timedelta(minutes=1)))
    later = ledger.snapshot("search", "summaries", NOW + timedelta(minutes=1))
    assert (later.spent_usd, later.requests_this_minute) == (pytest.approx(0.7), 1)
    assert ledger.snapshot("search", "other", NOW).spent_usd == 5.0
    december = ledger.snapshot("search", "summaries", datetime(2026, 12, 1, 0, 0, 30, tzinfo=UTC))
    assert (december.spent_usd, december.requests_this_minute) == (7.0, 1)


def test_snapshot_of_nothing_is_zero(ddb: Any) -> None:
    snap = DynamoLedger(USAGE_TABLE, client=ddb).snapshot("new", "feature", NOW)
    assert snap == UsageSnapshot("2026-11", 0.0, "2026-11-25T14:07", 0)


def _gate_key() -> dict[str, Any]:
    return {"pk": {"S": "GATE#search#summaries"}, "sk": {"S": "MONTH#2026-11"}}


def test_snapshot_retries_unprocessed_keys(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aif_gateway.dynamo_store.time.sleep", lambda _: None)
    client = boto3.client("dynamodb", region_name="us-east-1")
    gate = _gate_key()
    request = {"RequestItems": {USAGE_TABLE: {"Keys": [gate], "ConsistentRead": True}}}
    with Stubber(client) as stub:
        stub.add_response(
            "batch_get_item",
            {"Responses": {}, "UnprocessedKeys": {USAGE_TABLE: {"Keys": [gate], "ConsistentRead": True}}},
            request,
        )
        item = {**gate, "spent_usd": {"N": "2.5"}, "minute": {"S": "2026-11-25T14:07"}}
        stub.add_response(
            "batch_get_item", {"Responses": {USAGE_TABLE: [{**item, "minute_requests": {"N": "9"}}]}}, request
        )
        snap = DynamoLedger(USAGE_TABLE, client=client).snapshot("search", "summaries", NOW)
        stub.assert_no_pending_responses()
    assert (snap.spent_usd, snap.requests_this_minute) == (2.5, 9)


def test_snapshot_gives_up_when_keys_stay_unprocessed(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aif_gateway.dynamo_store.time.sleep", lambda _: None)
    client = boto3.client("dynamodb", region_name="us-east-1")
    keys = [_gate_key()]
    with Stubber(client) as stub:
        for _ in range(5):
            stub.add_response(
                "batch_get_item",
                {"Responses": {}, "UnprocessedKeys": {USAGE_TABLE: {"Keys": keys, "ConsistentRead": True}}},
            )
        with pytest.raises(StoreError, match="unprocessed"):
            DynamoLedger(USAGE_TABLE, client=client).snapshot("search", "summaries", NOW)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ProvisionedThroughputExceededException", 400),
        ("ThrottlingException", 400),
        ("InternalServerError", 500),
    ],
)
def test_a_failed_write_raises_ledger_write_error(aws_env: None, code: str, status: int) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("put_item", service_error_code=code, http_status_code=status)
        with pytest.raises(LedgerWriteError) as info:
            DynamoLedger(USAGE_TABLE, client=client).record(make_usage())
        stub.assert_no_pending_responses()
    assert code in str(info.value.__cause__)


def test_the_records_condition_failing_means_already_recorded(aws_env: None) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    usage = make_usage()
    with Stubber(client) as stub:
        expected = {
            "TableName": USAGE_TABLE,
            "Item": usage_to_item(usage),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        stub.add_client_error(
            "put_item", service_error_code="ConditionalCheckFailedException", expected_params=expected
        )
        DynamoLedger(USAGE_TABLE, client=client).record(usage)  # no exception
        stub.assert_no_pending_responses()


def test_a_non_finite_value_raises_ledger_write_error_before_calling_aws(aws_env: None) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    with Stubber(client), pytest.raises(LedgerWriteError, match="not storable"):
        DynamoLedger(USAGE_TABLE, client=client).record(make_usage(cost_usd=math.nan))


# --- property: whatever a record holds, it round-trips and the counters agree -------------------

# Any text DynamoDB can store (UTF-8: no lone surrogates); '#' joins key parts, so names never hold it.
names = st.text(st.characters(exclude_characters="#", exclude_categories=("Cs",)), min_size=1, max_size=40)


def storable_text(**kwargs: Any) -> st.SearchStrategy[str]:
    """Text DynamoDB can store: UTF-8, so no lone surrogates (the gateway refuses them at the door)."""
    return st.text(st.characters(exclude_categories=("Cs",)), **kwargs)


finite = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=2**53)


@st.composite
def usage_batches(draw: st.DrawFn) -> list[UsageRecord]:
    team, feature = draw(names), draw(names)
    minute = draw(st.datetimes(datetime(2000, 1, 1), datetime(2090, 1, 1), timezones=st.just(UTC)))
    minute = minute.replace(second=0, microsecond=0)
    ids = draw(st.lists(storable_text(min_size=1, max_size=30), min_size=1, max_size=4, unique=True))
    return [
        UsageRecord(
            request_id=request_id,
            timestamp=minute + timedelta(microseconds=draw(st.integers(0, 59_999_999))),
            team=team,
            feature=feature,
            key_id=draw(storable_text(max_size=12)),
            route=draw(storable_text(max_size=20)),
            status=draw(st.integers(100, 599)),
            model_served=draw(st.none() | storable_text(max_size=20)),
            input_tokens=draw(counts),
            output_tokens=draw(counts),
            cache_read_tokens=draw(counts),
            cache_write_tokens=draw(counts),
            cost_usd=draw(finite),
            latency_ms=draw(finite),
            attempts=draw(st.integers(0, 5)),
            extra=draw(
                st.dictionaries(
                    storable_text(min_size=1, max_size=10), storable_text(max_size=10), max_size=3
                )
            ),
        )
        for request_id in ids
    ]


# The ``ddb`` fixture (one moto backend and client) is shared by all examples; each gets its own table.
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=usage_batches(), replay=st.data())
def test_records_round_trip_and_replays_change_nothing(
    ddb: Any, batch: list[UsageRecord], replay: Any
) -> None:
    table = f"usage-{uuid.uuid4().hex}"
    create_usage_table(ddb, table)
    ledger = DynamoLedger(table, client=ddb)
    for usage in batch:
        ledger.record(usage)
    for usage in replay.draw(st.lists(st.sampled_from(batch), max_size=3)):
        ledger.record(usage)  # replays must not write again

    assert len(ddb.scan(TableName=table)["Items"]) == len(batch)
    for usage in batch:
        stored = usage_from_item(ddb.get_item(TableName=table, Key=ledger_key(usage))["Item"])
        # DynamoDB cannot hold magnitudes below 1e-130: those are stored as 0.
        assert stored == replace(
            usage,
            cost_usd=usage.cost_usd if usage.cost_usd >= 1e-130 else 0.0,
            latency_ms=usage.latency_ms if usage.latency_ms >= 1e-130 else 0.0,
        )
    ddb.delete_table(TableName=table)
