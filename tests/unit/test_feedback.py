"""POST /v1/feedback: validation, ownership checks, storage (memory, SQLite, DynamoDB on moto), metrics,
and the ``ai-factory feedback`` summary."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from ai_factory.cli.main import main
from ai_factory.local.sqlite_store import SqliteKeyStore, SqliteLedger
from aif_gateway.app import Gateway
from aif_gateway.contract import REQUEST_ID_INDEX
from aif_gateway.dynamo_store import (
    DynamoKeyStore,
    DynamoLedger,
    create_tables,
    make_client,
)
from aif_gateway.feedback import parse_feedback
from aif_gateway.metering import CountingMetricsSink, EmfMetricsSink
from aif_gateway.providers import EchoProvider
from aif_gateway.records import ApiKeyRecord, FeedbackRecord, StoreError, UsageRecord, generate_key
from tests.conftest import Harness, make_config, make_event

NOW = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)
USAGE_TABLE = "aif-usage"
KEYS_TABLE = "aif-keys"


def answered(h: Harness, key: str) -> str:
    status, headers, _ = h.chat(key, model="echo")
    assert status == 200
    return headers["x-request-id"]


def feedback(h: Harness, key: str | None, body: Any = None, raw: str | None = None) -> tuple[int, Any]:
    status, _, parsed = h.call("POST", "/v1/feedback", body, key, raw=raw)
    return status, parsed


# --- the endpoint on in-memory stores --------------------------------------------------------------


def test_feedback_is_stored_with_the_requests_identity_and_counted(harness: Harness) -> None:
    key = harness.add_key()
    request_id = answered(harness, key)
    status, body = feedback(
        harness, key, {"request_id": request_id, "score": 0.25, "comment": "too long", "tags": ["verbose"]}
    )
    assert status == 200, body
    assert body["object"] == "feedback" and body["score"] == 0.25 and body["has_comment"] is True
    stored = harness.ledger.feedback[request_id]
    assert (stored.team, stored.feature, stored.request_month) == ("support", "summarizer", "2026-11")
    assert (stored.route, stored.model_served, stored.comment, stored.tags) == (
        "echo",
        "echo",
        "too long",
        ("verbose",),
    )
    assert harness.metrics.counts["FeedbackCount"] == 1


@pytest.mark.parametrize(("given_score", "stored"), [("up", 1.0), ("DOWN", 0.0), (1, 1.0), (0.5, 0.5)])
def test_thumbs_map_to_one_and_zero(harness: Harness, given_score: Any, stored: float) -> None:
    key = harness.add_key()
    request_id = answered(harness, key)
    assert feedback(harness, key, {"request_id": request_id, "score": given_score})[0] == 200
    assert harness.ledger.feedback[request_id].score == stored


def test_a_second_feedback_replaces_the_first(harness: Harness) -> None:
    key = harness.add_key()
    request_id = answered(harness, key)
    feedback(harness, key, {"request_id": request_id, "score": "down", "comment": "wrong"})
    feedback(harness, key, {"request_id": request_id, "score": "up"})
    stored = harness.ledger.feedback[request_id]
    assert stored.score == 1.0 and stored.comment is None
    assert len(harness.ledger.feedback) == 1
    assert harness.metrics.counts["FeedbackCount"] == 2  # the metric counts submissions


def test_unknown_request_is_404(harness: Harness) -> None:
    key = harness.add_key()
    status, body = feedback(harness, key, {"request_id": "no-such-request", "score": 1})
    assert status == 404
    assert body["error"]["code"] == "request_not_found" and body["error"]["param"] == "request_id"


def test_another_features_key_is_403_and_a_rotated_key_of_the_same_feature_may_rate(
    harness: Harness,
) -> None:
    key = harness.add_key()
    request_id = answered(harness, key)
    other = harness.add_key(feature="classifier")
    status, body = feedback(harness, other, {"request_id": request_id, "score": 1})
    assert status == 403
    assert body["error"]["code"] == "feedback_not_allowed" and body["error"]["type"] == "permission_error"
    assert request_id not in harness.ledger.feedback
    other_team = harness.add_key(team="payments")
    assert feedback(harness, other_team, {"request_id": request_id, "score": 1})[0] == 403
    rotated = harness.add_key()
    assert feedback(harness, rotated, {"request_id": request_id, "score": 1})[0] == 200


def test_a_key_is_required(harness: Harness) -> None:
    key = harness.add_key()
    request_id = answered(harness, key)
    assert feedback(harness, None, {"request_id": request_id, "score": 1})[0] == 401


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"score": 1}, "request_id"),
        ({"request_id": "", "score": 1}, "request_id"),
        ({"request_id": 7, "score": 1}, "request_id"),
        ({"request_id": "x" * 129, "score": 1}, "request_id"),
        ({"request_id": "r"}, "score"),
        ({"request_id": "r", "score": 1.5}, "score"),
        ({"request_id": "r", "score": -0.1}, "score"),
        ({"request_id": "r", "score": True}, "score"),
        ({"request_id": "r", "score": "meh"}, "score"),
        ({"request_id": "r", "score": [1]}, "score"),
        ({"request_id": "r", "score": 1, "comment": 3}, "comment"),
        ({"request_id": "r", "score": 1, "comment": "x" * 2001}, "comment"),
        ({"request_id": "r", "score": 1, "tags": "a"}, "tags"),
        ({"request_id": "r", "score": 1, "tags": [f"t{i}" for i in range(11)]}, "tags"),
        ({"request_id": "r", "score": 1, "tags": ["ok", "has space"]}, "tags[1]"),
        ({"request_id": "r", "score": 1, "rating": 5}, "rating"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(harness: Harness, body: dict[str, Any], param: str) -> None:
    key = harness.add_key()
    status, parsed = feedback(harness, key, body)
    assert status == 400, parsed
    assert parsed["error"]["param"] == param
    assert parsed["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw", ["", "not json", "[1, 2]", '"text"', "null"])
def test_non_object_bodies_are_400(harness: Harness, raw: str) -> None:
    key = harness.add_key()
    assert feedback(harness, key, raw=raw)[0] == 400


def test_wrong_method_is_405(harness: Harness) -> None:
    key = harness.add_key()
    status, _, _ = harness.call("GET", "/v1/feedback", key=key)
    assert status == 405


def test_score_nan_and_infinity_are_refused() -> None:
    for value in (float("nan"), float("inf")):
        with pytest.raises(Exception, match="between 0 and 1"):
            parse_feedback({"request_id": "r", "score": value})


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "request_id": _json | st.just("req-000001"),
            "score": _json | st.sampled_from(["up", "down", 0, 1, 0.5]),
            "comment": _json,
            "tags": _json | st.lists(st.text(max_size=45), max_size=12),
        },
    )
    | _json
)
def test_random_bodies_never_get_a_5xx(harness: Harness, body: Any) -> None:
    key = harness.add_key()
    status, parsed = feedback(harness, key, body)
    assert status < 500, parsed
    if status != 200:
        assert set(parsed["error"]) == {"message", "type", "param", "code"}


def test_store_failure_is_503(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    key = harness.add_key()

    def broken(request_id: str) -> None:
        raise StoreError("table unreachable")

    monkeypatch.setattr(harness.ledger, "find", broken)
    status, body = feedback(harness, key, {"request_id": "r", "score": 1})
    assert status == 503 and body["error"]["code"] == "store_unavailable"


def test_emf_feedback_metrics_have_team_and_feature(capsys: pytest.CaptureFixture[str]) -> None:
    record = FeedbackRecord("r1", "support", "summarizer", "2026-11", 0.75, NOW, "k1")
    EmfMetricsSink(namespace="AIFactory", service="gw").emit_feedback(record)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    directive = line["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "AIFactory"
    assert ["Team", "Feature"] in directive["Dimensions"]
    assert {m["Name"] for m in directive["Metrics"]} == {"FeedbackScore", "FeedbackCount"}
    assert (line["Team"], line["Feature"], line["FeedbackScore"], line["FeedbackCount"]) == (
        "support",
        "summarizer",
        [0.75],
        [1.0],
    )


# --- the real stores -------------------------------------------------------------------------------


def _gateway(keys: Any, ledger: Any) -> Gateway:
    return Gateway(
        make_config(),
        keys=keys,
        ledger=ledger,
        providers={"echo": EchoProvider()},
        metrics=CountingMetricsSink(),
    )


def _key(team: str = "support", feature: str = "summarizer") -> tuple[str, ApiKeyRecord]:
    plaintext, key_id, key_hash = generate_key()
    record = ApiKeyRecord(key_id, key_hash, team, feature, ("echo",), 100.0, 100, NOW)
    return plaintext, record


def _post(gateway: Gateway, key: str, path: str, body: Any) -> tuple[int, dict[str, str], Any]:
    event = make_event("POST", path, json.dumps(body), {"Authorization": f"Bearer {key}"})
    response = gateway.handle(event)
    return response["statusCode"], response["headers"], json.loads(response["body"])


def _round_trip(keys: Any, ledger: Any) -> str:
    gateway = _gateway(keys, ledger)
    plaintext, record = _key()
    keys.put(record)
    other_plain, other = _key(feature="classifier")
    keys.put(other)
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    status, headers, _ = _post(gateway, plaintext, "/v1/chat/completions", chat)
    assert status == 200
    request_id = headers["x-request-id"]
    assert _post(gateway, plaintext, "/v1/feedback", {"request_id": "nope", "score": 1})[0] == 404
    assert _post(gateway, other_plain, "/v1/feedback", {"request_id": request_id, "score": 1})[0] == 403
    body = {"request_id": request_id, "score": "down", "comment": "missed the point", "tags": ["wrong"]}
    assert _post(gateway, plaintext, "/v1/feedback", body)[0] == 200
    return request_id


def test_sqlite_ledger_round_trip_and_overwrite(tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    keys, ledger = SqliteKeyStore(db), SqliteLedger(db)
    request_id = _round_trip(keys, ledger)
    found = ledger.find(request_id)
    assert found is not None and found.team == "support"
    [stored] = ledger.list_feedback(month=found.month, team="support", feature="summarizer")
    assert (stored.score, stored.comment, stored.tags) == (0.0, "missed the point", ("wrong",))
    ledger.record_feedback(FeedbackRecord(request_id, "support", "summarizer", found.month, 1.0, NOW, "k"))
    assert [f.score for f in ledger.list_feedback(month=found.month)] == [1.0]
    assert ledger.list_feedback(month="1999-01") == []


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = make_client()
        create_tables(client, KEYS_TABLE, USAGE_TABLE)
        yield client


def test_dynamodb_round_trip_keys_feedback_by_feature_month(ddb: Any) -> None:
    keys, ledger = DynamoKeyStore(KEYS_TABLE, ddb), DynamoLedger(USAGE_TABLE, ddb)
    request_id = _round_trip(keys, ledger)
    found = ledger.find(request_id)
    assert found is not None and found.request_id == request_id and found.model_served == "echo"
    # One Query per feature-month; the item is keyed by request id (a second feedback overwrites it).
    items = ddb.query(
        TableName=USAGE_TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"FEEDBACK#support#summarizer#{found.month}"}},
    )["Items"]
    assert len(items) == 1 and items[0]["sk"] == {"S": request_id} and "request_id" not in items[0]
    assert float(items[0]["score"]["N"]) == 0.0
    assert items[0]["comment"] == {"S": "missed the point"}
    # The index stays sparse: only the audit record has a request_id attribute.
    index = ddb.query(
        TableName=USAGE_TABLE,
        IndexName=REQUEST_ID_INDEX,
        KeyConditionExpression="request_id = :r",
        ExpressionAttributeValues={":r": {"S": request_id}},
    )["Items"]
    assert len(index) == 1 and index[0]["pk"]["S"].startswith("LEDGER#")
    assert ledger.find("unknown") is None


def test_dynamodb_find_failure_is_a_store_error(ddb: Any) -> None:
    ledger = DynamoLedger("no-such-table", ddb)
    with pytest.raises(StoreError):
        ledger.find("r")
    with pytest.raises(StoreError):
        ledger.record_feedback(FeedbackRecord("r", "t", "f", "2026-11", 1.0, NOW, "k"))


# --- ai-factory feedback ---------------------------------------------------------------------------


def _seed_feedback(ledger: Any) -> None:
    for i, (feature, score, comment) in enumerate(
        [
            ("summarizer", 1.0, None),
            ("summarizer", 0.0, "made up an order number"),
            ("summarizer", 0.5, "ok"),
            ("classifier", 0.0, "wrong label"),
        ]
    ):
        request_id = f"req-{i}"
        ledger.record(UsageRecord(request_id, NOW, "support", feature, "k", "echo", 200, model_served="echo"))
        ledger.record_feedback(
            FeedbackRecord(request_id, "support", feature, "2026-11", score, NOW, "k", comment=comment)
        )
    other = UsageRecord("req-x", NOW, "payments", "fraud", "k", "echo", 200)
    ledger.record(other)
    ledger.record_feedback(FeedbackRecord("req-x", "payments", "fraud", "2026-11", 1.0, NOW, "k"))


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_cli_feedback_local_json(tmp_path: Path) -> None:
    _seed_feedback(SqliteLedger(tmp_path / "local.db"))
    code, text = run_cli(
        "feedback",
        "--month",
        "2026-11",
        "--team",
        "support",
        "--state-dir",
        str(tmp_path),
        "--format",
        "json",
    )
    assert code == 0, text
    report = json.loads(text)
    rows = {(r["team"], r["feature"]): r for r in report["features"]}
    assert set(rows) == {("support", "summarizer"), ("support", "classifier")}
    assert rows[("support", "summarizer")]["count"] == 3
    assert rows[("support", "summarizer")]["mean_score"] == pytest.approx(0.5)
    assert report["lowest"][0]["score"] == 0.0
    assert {low["comment"] for low in report["lowest"][:2]} == {"made up an order number", "wrong label"}


def test_cli_feedback_table_and_feature_filter(tmp_path: Path) -> None:
    _seed_feedback(SqliteLedger(tmp_path / "local.db"))
    code, text = run_cli(
        "feedback", "--month", "2026-11", "--feature", "summarizer", "--state-dir", str(tmp_path)
    )
    assert code == 0, text
    assert "summarizer" in text and "classifier" not in text
    assert "made up an order number" in text


def test_cli_feedback_aws(ddb: Any) -> None:
    _seed_feedback(DynamoLedger(USAGE_TABLE, ddb))
    code, text = run_cli(
        "feedback", "--month", "2026-11", "--store", "aws", "--table", USAGE_TABLE, "--format", "json"
    )
    assert code == 0, text
    report = json.loads(text)
    assert {(r["team"], r["feature"]) for r in report["features"]} == {
        ("support", "summarizer"),
        ("support", "classifier"),
        ("payments", "fraud"),
    }
    assert report["total"]["count"] == 5


def test_cli_feedback_rejects_a_bad_month(tmp_path: Path) -> None:
    assert run_cli("feedback", "--month", "2026-13", "--state-dir", str(tmp_path))[0] == 2
