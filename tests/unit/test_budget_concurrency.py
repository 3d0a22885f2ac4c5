"""Budgets under concurrent requests: measured overspend against the bound in docs/gateway.md.

One gateway instance driven by many threads (the local server's case) can overspend by at most the
requests in flight when the budget runs out: ``threads x c``. Several instances sharing one ledger (the
Lambda case: one request at a time per instance) can also overspend by what the others spent since
their last snapshot: ``N x c + (N - 1) x (r x ttl + 1) x c`` (the ``+ 1``: the request that finds
a snapshot stale is still decided on it while the refresh runs). Run this file directly to print the
measurements quoted in docs/security.md: ``.venv/bin/python tests/unit/test_budget_concurrency.py``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # conftest's helpers when run directly

from conftest import make_config

from aif_gateway.app import Gateway
from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger
from aif_gateway.metering import CountingMetricsSink
from aif_gateway.provider_types import ChatResult, TokenUsage
from aif_gateway.records import ApiKeyRecord, UsageRecord, generate_key

NOW = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)
COST = 0.01  # USD per request: 10,000 input tokens at the echo target's $1 per 1M
BUDGET = 0.50  # 50 requests' worth


class FixedCostModel:
    """A model that takes ``latency_s`` and always costs ``COST`` on the echo target's prices."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s

    def chat(self, *args: Any) -> ChatResult:
        time.sleep(self.latency_s)
        return ChatResult("ok", "stop", TokenUsage(input=10_000))


class SlowLedger(MemoryLedger):
    """A ledger whose write takes ``delay_s`` (a slow DynamoDB transaction)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def record(self, usage: UsageRecord) -> None:
        time.sleep(self.delay_s)
        super().record(usage)


@dataclass
class Measurement:
    scenario: str
    workers: int
    served: int
    refused: int
    spent_usd: float
    overspend_usd: float
    bound_usd: float
    per_worker_rps: float


def _gateway(ledger: MemoryLedger, keys: MemoryKeyStore, latency_s: float, ttl_s: float) -> Gateway:
    return Gateway(
        make_config(usage_snapshot_ttl_s=ttl_s),
        keys=keys,
        ledger=ledger,
        providers={"echo": FixedCostModel(latency_s)},
        metrics=CountingMetricsSink(),
        now=lambda: NOW,
    )


def _key(keys: MemoryKeyStore) -> str:
    plaintext, key_id, key_hash = generate_key()
    keys.put(
        ApiKeyRecord(
            key_id=key_id,
            key_hash=key_hash,
            team="support",
            feature="summarizer",
            allowed_models=("echo",),
            monthly_budget_usd=BUDGET,
            rate_limit_rpm=10**9,
            created_at=datetime(2026, 11, 1, tzinfo=UTC),
        )
    )
    return plaintext


def _event(key: str, n: int) -> dict[str, Any]:
    return {
        "httpMethod": "POST",
        "path": "/v1/chat/completions",
        "headers": {"Authorization": f"Bearer {key}"},
        "body": json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
        "requestContext": {"requestId": f"req-{n}"},
    }


def measure(
    scenario: str,
    *,
    threads: int,
    instances: int = 1,
    latency_s: float = 0.005,
    ledger_delay_s: float = 0.0,
    ttl_s: float = 5.0,
    refusals_to_stop: int = 3,
) -> Measurement:
    """Drive ``instances`` gateways sharing one ledger from ``threads`` threads (spread round-robin)
    until every thread has been refused ``refusals_to_stop`` times in a row."""
    keys = MemoryKeyStore()
    ledger = SlowLedger(ledger_delay_s) if ledger_delay_s else MemoryLedger()
    key = _key(keys)
    gateways = [_gateway(ledger, keys, latency_s, ttl_s) for _ in range(instances)]
    counter = iter(range(10**9))
    lock = threading.Lock()
    served, refused = [0] * threads, [0] * threads
    busy = [0.0] * threads  # seconds each worker spent on served requests
    start = threading.Barrier(threads)

    def worker(index: int) -> None:
        gateway = gateways[index % instances]
        start.wait()
        in_a_row = 0
        while in_a_row < refusals_to_stop:
            with lock:
                n = next(counter)
            t = time.perf_counter()
            status = gateway.handle(_event(key, n))["statusCode"]
            if status == 200:
                busy[index] += time.perf_counter() - t
                served[index] += 1
                in_a_row = 0
            else:
                assert status == 429, status
                refused[index] += 1
                in_a_row += 1
                time.sleep(min(ttl_s / 4, 0.02))  # let snapshots catch up before the next try

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    spent = ledger.snapshot("support", "summarizer", NOW).spent_usd
    # Measured requests per second of the fastest worker while it was being served.
    rps = max(n / b for n, b in zip(served, busy, strict=True) if b > 0)
    if instances == 1:
        bound = threads * COST
    else:
        per_instance = threads // instances  # concurrent requests per instance
        # Stale-while-revalidate: the request that finds a snapshot stale is still decided on it, so
        # each other instance's unseen spend is one snapshot interval plus that one request.
        bound = instances * per_instance * COST + (instances - 1) * per_instance * (rps * ttl_s + 1) * COST
    return Measurement(
        scenario,
        threads,
        sum(served),
        sum(refused),
        round(spent, 6),
        round(max(0.0, spent - BUDGET), 6),
        round(bound, 6),
        round(rps, 1),
    )


def test_single_instance_many_threads_overspend_is_within_threads_times_cost() -> None:
    m = measure("1 instance, 16 threads", threads=16)
    assert m.spent_usd >= BUDGET - 1e-9  # the budget is used up, not refused early
    assert m.overspend_usd <= m.bound_usd + 1e-9, m


def test_slow_ledger_write_does_not_widen_the_bound() -> None:
    """Requests between their model call and their (slow) ledger write are not yet counted; each
    thread has at most one such request, so the bound stays threads x c."""
    m = measure("1 instance, 16 threads, 20 ms ledger", threads=16, ledger_delay_s=0.02)
    assert m.spent_usd >= BUDGET - 1e-9
    assert m.overspend_usd <= m.bound_usd + 1e-9, m


def test_several_instances_overspend_within_the_documented_bound() -> None:
    """Four single-threaded instances (Lambda) with a 50 ms snapshot interval."""
    m = measure("4 instances x 1 thread, ttl 50 ms", threads=4, instances=4, ttl_s=0.05)
    assert m.spent_usd >= BUDGET - 1e-9
    assert m.overspend_usd <= m.bound_usd + 1e-9, m


def test_a_refused_request_writes_nothing_and_costs_nothing() -> None:
    keys, ledger = MemoryKeyStore(), MemoryLedger()
    key = _key(keys)
    gateway = _gateway(ledger, keys, 0.0, 5.0)
    statuses = [gateway.handle(_event(key, n))["statusCode"] for n in range(60)]
    assert statuses.count(200) == 50 and statuses.count(429) == 10  # sequential: exactly the budget
    assert len(ledger.records) == 50


if __name__ == "__main__":
    scenarios = [
        measure("1 instance, 16 threads, 5 ms model", threads=16),
        measure("1 instance, 64 threads, 5 ms model", threads=64),
        measure("1 instance, 16 threads, 20 ms ledger write", threads=16, ledger_delay_s=0.02),
        measure("4 instances x 1 thread, snapshot ttl 50 ms", threads=4, instances=4, ttl_s=0.05),
        measure("8 instances x 1 thread, snapshot ttl 50 ms", threads=8, instances=8, ttl_s=0.05),
    ]
    print("| scenario | served | spent $ | overspend $ | bound $ |")
    print("| --- | --- | --- | --- | --- |")
    for m in scenarios:
        print(
            f"| {m.scenario} | {m.served} | {m.spent_usd:.2f} | {m.overspend_usd:.2f} | {m.bound_usd:.2f} |"
        )
