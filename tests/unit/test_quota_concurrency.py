"""Feature limits under concurrency, across TWO gateway instances sharing their stores.

Each scenario runs against the DynamoDB quota store (moto) and the SQLite quota store (two connections
to one file, as two local processes have): a $1 budget with a slow model, requests and tokens per
minute, and the concurrency cap. The measured overspend is checked against ``overspend_bound``
(docs/gateway.md, "Budgets under concurrency"). Faults injected at the store boundary (throttling,
conditional-check failures) lose no usage record and the gate converges.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import make_config, put_key
from moto import mock_aws

from ai_factory.local.sqlite_store import SqliteQuotaStore
from aif_gateway.app import Gateway
from aif_gateway.dynamo_quota import DynamoQuotaStore
from aif_gateway.dynamo_store import DynamoLedger, create_tables, make_client
from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger
from aif_gateway.metering import CountingMetricsSink
from aif_gateway.provider_types import ChatResult, TokenUsage
from aif_gateway.quota import QuotaStore, overspend_bound
from aif_gateway.usage_writer import UsageWriter

NOW = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)
TABLE = "usage"
PROMPT = "Summarise this ticket please."  # 29 chars: the gateway estimates 8 input tokens
ESTIMATED_INPUT = 8
# The echo target costs $1 per 1M input and $2 per 1M output tokens.
MAX_TOKENS = 50_000  # reserved: 8 x $1/M + 50,000 x $2/M = $0.100008
OUTPUT = 40_000  # real output: $0.08
EXTRA_INPUT = 10_000  # the model bills 10,008 input tokens, 10,000 more than estimated
EXCESS_USD = EXTRA_INPUT * 1.0 / 1_000_000  # e: what one request can exceed its reservation by


class SlowModel:
    """Takes ``latency_s``; bills more input than the gateway estimates (the bound's ``e``); counts how
    many calls run at once."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def chat(self, *args: Any) -> ChatResult:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(self.latency_s)
        finally:
            with self._lock:
                self.running -= 1
        return ChatResult("ok", "stop", TokenUsage(input=ESTIMATED_INPUT + EXTRA_INPUT, output=OUTPUT))


class SerialClient:
    """A DynamoDB client whose calls are serialised, as DynamoDB serialises writes to one item (moto's
    in-memory backend promises no atomicity between threads). ``faults`` raise before a call."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.faults: list[tuple[str, str]] = []  # (operation, error code), consumed in order
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] = self.calls.get(name, 0) + 1
                for i, (op, code) in enumerate(self.faults):
                    if op == name:
                        del self.faults[i]
                        raise ClientError({"Error": {"Code": code, "Message": "injected"}}, name)
                return target(**kwargs)

        return call


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(params=["dynamodb", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path, aws_env: None) -> Iterator[list[QuotaStore]]:
    """Two quota stores over one shared state: one per gateway instance."""
    if request.param == "dynamodb":
        with mock_aws():
            client = SerialClient(make_client())
            create_tables(client._client, usage_table=TABLE)
            yield [DynamoQuotaStore(TABLE, client), DynamoQuotaStore(TABLE, client)]  # type: ignore[arg-type]
    else:
        db = tmp_path / "local.db"
        pair = [SqliteQuotaStore(db), SqliteQuotaStore(db)]
        yield pair  # type: ignore[misc]
        for store in pair:
            store.close()


class Fleet:
    """Two gateway instances sharing keys, ledger and quota state; drives them from many threads."""

    def __init__(self, stores: list[QuotaStore], latency_s: float, **limits: Any) -> None:
        self.keys, self.ledger, self.model = MemoryKeyStore(), MemoryLedger(), SlowModel(latency_s)
        self.executors = [ThreadPoolExecutor(2) for _ in stores]
        self.gateways = [
            Gateway(
                make_config(),
                keys=self.keys,
                ledger=self.ledger,
                providers={"echo": self.model},  # type: ignore[dict-item]
                metrics=CountingMetricsSink(),
                now=lambda: NOW,
                refresh_executor=executor,
                quota=store,
                usage_writer=UsageWriter(),  # as deployed: records written after the response
            )
            for store, executor in zip(stores, self.executors, strict=True)
        ]
        fields = {
            "feature": "summarizer",
            "monthly_budget_usd": 1000.0,
            "rate_limit_rpm": 10**6,
            "tokens_per_minute": 10**9,
            **limits,
        }
        self.key = put_key(self.keys, **fields)
        self.statuses: dict[str, int] = {}
        self._n = 0
        self._lock = threading.Lock()

    def request(self, instance: int, max_tokens: int = MAX_TOKENS) -> tuple[int, dict[str, Any], str]:
        with self._lock:
            self._n += 1
            n = self._n
        event = {
            "httpMethod": "POST",
            "path": "/v1/chat/completions",
            "headers": {"Authorization": f"Bearer {self.key}"},
            "body": json.dumps(
                {"model": "echo", "max_tokens": max_tokens, "messages": [{"role": "user", "content": PROMPT}]}
            ),
            "requestContext": {"requestId": f"req-{n}"},
        }
        response = self.gateways[instance].handle(event)
        assert isinstance(response, dict)
        body = json.loads(response["body"])
        code = body["error"]["code"] if response["statusCode"] != 200 else "ok"
        with self._lock:
            self.statuses[code] = self.statuses.get(code, 0) + 1
        return response["statusCode"], response["headers"], code

    def drive(self, threads: int, until: Callable[[str], bool], max_requests: int = 400) -> None:
        """``threads`` threads, alternating instances, each until ``until(code)`` or the request cap."""
        budget = [max_requests]

        def worker(i: int) -> None:
            while True:
                with self._lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                _, _, code = self.request(i % 2)
                if until(code):
                    return
                if code == "concurrency_limit_exceeded":
                    time.sleep(0.02)  # a client backs off (Retry-After) instead of spinning

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    def settle(self) -> None:
        """Wait for background settlements and record writes, then apply what is left (what a later
        request would carry)."""
        for executor in self.executors:
            executor.shutdown(wait=True)
        for gateway in self.gateways:
            assert gateway.drain(10.0) == 0
            gateway.gate.flush()

    def spent(self) -> float:
        return sum(r.cost_usd for r in self.ledger.records.values())

    def served(self) -> int:
        return sum(1 for r in self.ledger.records.values() if r.status == 200)


def test_budget_holds_across_two_instances_within_the_documented_bound(stores: list[QuotaStore]) -> None:
    cap = 8
    fleet = Fleet(stores, latency_s=0.03, monthly_budget_usd=1.0, max_concurrency=cap)

    fleet.drive(threads=16, until=lambda code: code == "budget_exhausted")
    fleet.settle()

    spent = fleet.spent()
    bound = overspend_bound(cap, EXCESS_USD)
    assert spent <= 1.0 + bound + 1e-9, (spent, bound, fleet.statuses)
    # Not vacuous: the budget was used (each request really costs $0.090008, reserves $0.100008).
    assert spent >= 1.0 - 0.100008 - 1e-9, (spent, fleet.statuses)
    assert fleet.statuses.get("budget_exhausted", 0) > 0
    # Every admitted request was settled to its real cost and freed its slot on both instances' gate.
    gate = stores[0].state("support", "summarizer", "2026-11")
    assert gate.in_flight == 0
    assert gate.committed_usd == pytest.approx(spent)
    assert gate.spent_usd == pytest.approx(spent)
    assert gate.settled_requests == len(fleet.ledger.records)


def test_requests_per_minute_hold_across_two_instances(stores: list[QuotaStore]) -> None:
    fleet = Fleet(stores, latency_s=0.0, rate_limit_rpm=25)

    fleet.drive(threads=8, until=lambda code: code == "rate_limit_exceeded", max_requests=120)
    fleet.settle()

    assert fleet.served() == 25, fleet.statuses
    assert fleet.statuses["rate_limit_exceeded"] >= 8


def test_tokens_per_minute_hold_and_unused_reservations_come_back(stores: list[QuotaStore]) -> None:
    # Each request reserves 8 + 50,000 tokens and really uses 50,008 (10,008 in + 40,000 out); with a
    # 1,000,000-token minute, the last admissions only fit because earlier settlements gave tokens back.
    fleet = Fleet(stores, latency_s=0.01, tokens_per_minute=1_000_000, max_concurrency=4)

    # The request cap only stops a runaway loop: concurrency refusals (cap 4, 8 threads) count against it,
    # and on a loaded machine there are many of them before every thread has met the token limit.
    fleet.drive(threads=8, until=lambda code: code == "tokens_per_minute_exceeded", max_requests=1000)
    fleet.settle()

    real = sum(r.input_tokens + r.output_tokens for r in fleet.ledger.records.values())
    assert real <= 1_000_000 + overspend_bound(4, EXTRA_INPUT), (real, fleet.statuses)
    assert fleet.served() >= 19, fleet.statuses
    assert fleet.statuses["tokens_per_minute_exceeded"] >= 8, fleet.statuses


def test_concurrency_cap_holds_across_two_instances_and_every_slot_is_freed(stores: list[QuotaStore]) -> None:
    fleet = Fleet(stores, latency_s=0.05, max_concurrency=3)

    fleet.drive(threads=12, until=lambda code: False, max_requests=300)
    fleet.settle()

    assert fleet.model.peak <= 3
    assert fleet.statuses.get("concurrency_limit_exceeded", 0) > 0
    assert fleet.served() > 3
    assert stores[0].state("support", "summarizer", "2026-11").in_flight == 0


def test_a_429_names_the_limit_and_when_to_retry(stores: list[QuotaStore]) -> None:
    fleet = Fleet(stores, latency_s=0.0, rate_limit_rpm=1, monthly_budget_usd=0.15)
    assert fleet.request(0)[0] == 200
    for gateway in fleet.gateways:  # the first request's record is written (after its response)
        assert gateway.drain(5.0) == 0

    status, headers, code = fleet.request(1)
    assert (status, code) == (429, "rate_limit_exceeded")
    assert headers["x-aif-limit"] == "requests_per_minute" and headers["Retry-After"] == "30"

    fleet2 = Fleet(stores, latency_s=0.0, monthly_budget_usd=0.05, feature="translator")
    status, headers, code = fleet2.request(0)  # reserves $0.100008: more than the whole budget
    assert (status, code) == (429, "budget_exhausted") and int(headers["Retry-After"]) > 86_400
    status, headers, code = fleet2.request(1, max_tokens=10_000)  # reserves $0.02: admitted
    assert status == 200


def test_store_faults_lose_no_record_and_the_gate_converges(aws_env: None) -> None:
    with mock_aws():
        raw = make_client()
        create_tables(raw, usage_table=TABLE)
        client = SerialClient(raw)
        stores = [DynamoQuotaStore(TABLE, client), DynamoQuotaStore(TABLE, client)]  # type: ignore[arg-type]
        fleet = Fleet(stores, latency_s=0.0)  # type: ignore[arg-type]
        fleet.ledger = DynamoLedger(TABLE, client)  # type: ignore[assignment,arg-type]
        spilled: list[Any] = []
        for gateway in fleet.gateways:
            gateway.ledger = fleet.ledger
            gateway.spill = type("Spill", (), {"send": lambda self, u: spilled.append(u)})()
        client.faults = [
            ("update_item", "ThrottlingException"),  # a reservation: 503, nothing admitted or billed
            ("put_item", "ThrottlingException"),  # a ledger write (after the response): spilled
            ("update_item", "ConditionalCheckFailedException"),  # the gate looked changed: retried
            ("put_item", "InternalServerError"),
            ("update_item", "ProvisionedThroughputExceededException"),
        ]
        statuses = [fleet.request(i % 2)[0] for i in range(12)]
        # Settlement writes fail too: they stay pending and ride on the next reservation or flush.
        client.faults = [("update_item", "ThrottlingException")] * 3
        statuses += [fleet.request(i % 2)[0] for i in range(4)]
        fleet.settle()

        assert statuses.count(503) >= 1 and statuses.count(200) + statuses.count(503) == 16
        served = [s for s in statuses if s == 200]
        recorded = raw.scan(
            TableName=TABLE,
            FilterExpression="begins_with(pk, :p)",
            ExpressionAttributeValues={":p": {"S": "LEDGER#"}},
        )["Count"]
        assert recorded + len(spilled) == len(served)  # no usage record lost
        gate = stores[0].state("support", "summarizer", "2026-11")
        assert gate.in_flight == 0 and gate.settled_requests == len(served)
        assert gate.committed_usd == pytest.approx(len(served) * 0.090008)
