"""Reservations: their cost on the request path, and the overspend they allow under concurrency.

* ``overhead``: ``Gate.reserve`` (request path) and ``Reservation.settle`` + ``Gate.flush`` (applied off the
  request path) in process, with stores that answer at once: the in-memory store, and the DynamoDB store
  with every call answered at ``before-send`` by a canned success (botocore's client-side work in: build,
  serialise, sign; no network).
* ``sweep``: two gateway instances sharing one quota store, a $1 budget, a model that takes 20 ms and
  bills more than reserved on every request (the worst case for the bound), ``C`` = 1, 8, 32, 128
  threads with the concurrency cap at ``C``. The measured overspend is set against the documented bound
  ``C x e`` (docs/gateway.md, "Budgets under concurrency").

    python benchmarks/quota_overspend.py            # prints JSON, rewrites its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.update(
    {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
)

import doc_sections
from http_load import percentile

from aif_gateway.app import Gateway
from aif_gateway.config import GatewayConfig, ModelTarget, Prices, Route
from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger, MemoryQuotaStore
from aif_gateway.metering import CountingMetricsSink
from aif_gateway.provider_types import ChatResult, TokenUsage
from aif_gateway.quota import Estimate, Gate, QuotaStore, overspend_bound
from aif_gateway.records import ApiKeyRecord, generate_key

NOW = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)
ECHO = ModelTarget(name="echo", provider="echo", model_id="echo", modality="chat", prices=Prices(1.0, 2.0))
PROMPT = "Summarise this ticket please."  # estimated 8 input tokens
MAX_TOKENS = 1_000  # reserved: (8 x $1 + 1,000 x $2) / 1M = $0.002008
REAL_INPUT, REAL_OUTPUT = 1_008, 800  # billed: $0.001008 + $0.0016 = $0.002608
EXCESS_USD = 0.0006  # e: billed minus reserved, $0.002608 - $0.002008
BUDGET = 1.0


def _key(**limits: Any) -> ApiKeyRecord:
    _, key_id, key_hash = generate_key()
    fields: dict[str, Any] = {
        "key_id": key_id,
        "key_hash": key_hash,
        "team": "bench",
        "feature": "quota",
        "allowed_models": ("echo",),
        "monthly_budget_usd": 10**9,
        "rate_limit_rpm": 10**9,
        "tokens_per_minute": 10**12,
        "max_concurrency": 10**6,
        "created_at": NOW,
        **limits,
    }
    return ApiKeyRecord(**fields)


def _time_gate(store: QuotaStore, n: int) -> dict[str, Any]:
    gate = Gate(store, epoch=time.time)
    gate._refresher.submit = lambda *a, **k: None  # type: ignore[method-assign]  # flushed inline below
    key = _key()
    estimate = Estimate(0.002008, 1_008, 8, 1_000)
    reserve_ms, settle_ms = [], []
    for i in range(n + 100):
        t0 = time.perf_counter()
        reservation = gate.reserve(key, NOW, estimate)
        t1 = time.perf_counter()
        reservation.settle(0.0016, 900)
        gate.flush()
        t2 = time.perf_counter()
        if i >= 100:
            reserve_ms.append((t1 - t0) * 1000)
            settle_ms.append((t2 - t1) * 1000)
    reserve_ms.sort()
    settle_ms.sort()
    return {
        "reserve_p50_ms": round(percentile(reserve_ms, 50), 4),
        "reserve_p99_ms": round(percentile(reserve_ms, 99), 4),
        "settle_flush_p50_ms": round(percentile(settle_ms, 50), 4),
        "settle_flush_p99_ms": round(percentile(settle_ms, 99), 4),
    }


def _canned_dynamo_store() -> QuotaStore:
    from botocore.awsrequest import AWSResponse

    from aif_gateway.dynamo_quota import DynamoQuotaStore
    from aif_gateway.dynamo_store import make_client

    client = make_client()
    headers: Any = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "bench"}

    class Body:
        def stream(self, **kwargs: Any) -> Any:
            yield b"{}"

    def answer(request: Any, **kwargs: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, headers, Body())

    events: Any = client.meta.events
    events.register_first("before-send.dynamodb", answer)
    return DynamoQuotaStore("usage", client)


def bench_overhead(n: int) -> dict[str, Any]:
    return {
        "memory": _time_gate(MemoryQuotaStore(), n),
        "dynamodb-canned": _time_gate(_canned_dynamo_store(), n),
    }


class PricedModel:
    def chat(self, *args: Any) -> ChatResult:
        time.sleep(0.02)
        return ChatResult("ok", "stop", TokenUsage(input=REAL_INPUT, output=REAL_OUTPUT))


def bench_sweep(in_flight: int) -> dict[str, Any]:
    store = MemoryQuotaStore()
    keys, ledger = MemoryKeyStore(), MemoryLedger()
    plaintext, key_id, key_hash = generate_key()
    keys.put(_key(monthly_budget_usd=BUDGET, max_concurrency=in_flight, key_id=key_id, key_hash=key_hash))
    config = GatewayConfig(routes={"echo": Route("echo", "chat", (ECHO,))})
    model: Any = PricedModel()
    gateways = [
        Gateway(
            config, keys, ledger, {"echo": model}, metrics=CountingMetricsSink(), now=lambda: NOW, quota=store
        )
        for _ in range(2)
    ]
    request = {"model": "echo", "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": PROMPT}]}
    body = json.dumps(request)
    counter = [0]
    lock = threading.Lock()
    statuses: dict[str, int] = {}

    def worker(i: int) -> None:
        while True:
            with lock:
                counter[0] += 1
                n = counter[0]
            event = {
                "httpMethod": "POST",
                "path": "/v1/chat/completions",
                "headers": {"Authorization": f"Bearer {plaintext}"},
                "body": body,
                "requestContext": {"requestId": f"r-{in_flight}-{n}"},
            }
            response = gateways[i % 2].handle(event)
            assert isinstance(response, dict)
            code = "ok" if response["statusCode"] == 200 else json.loads(response["body"])["error"]["code"]
            with lock:
                statuses[code] = statuses.get(code, 0) + 1
            if code == "budget_exhausted":
                return
            if code == "concurrency_limit_exceeded":
                time.sleep(0.005)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(in_flight)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    spent = sum(r.cost_usd for r in ledger.records.values())
    return {
        "in_flight": in_flight,
        "served": statuses.get("ok", 0),
        "refused": {k: v for k, v in statuses.items() if k != "ok"},
        "spent_usd": round(spent, 6),
        "overspend_usd": round(max(0.0, spent - BUDGET), 6),
        "bound_usd": round(overspend_bound(in_flight, EXCESS_USD), 6),
        "seconds": round(seconds, 2),
    }


def section(result: dict[str, Any]) -> str:
    o = result["overhead"]
    lines = [
        "## Budget reservations: overhead and overspend under concurrency",
        "",
        f"Command: `{result['command']}` ({result['date']}, {result['nproc']} CPUs shared with other work).",
        "",
        "Reservation (request path) and settlement (applied off the request path, folded into the next",
        "reservation or flushed by a background thread), stores answering at once:",
        "",
        "| store | reserve p50 | reserve p99 | settle + flush p50 | settle + flush p99 |",
        "|---|---|---|---|---|",
    ]
    for name, r in o.items():
        lines.append(
            f"| {name} | {r['reserve_p50_ms']} ms | {r['reserve_p99_ms']} ms | "
            f"{r['settle_flush_p50_ms']} ms | {r['settle_flush_p99_ms']} ms |"
        )
    lines += [
        "",
        f"Overspend sweep: two gateway instances sharing one quota store, budget ${BUDGET:g}, each request",
        f"reserves $0.002008 and bills $0.002608 (e = ${EXCESS_USD:.6f} over its reservation, every time),",
        "model latency 20 ms, concurrency cap = threads:",
        "",
        "| in flight (C) | served | spent | overspend | bound C x e | refusals |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["sweep"]:
        refused = ", ".join(f"{k} {v}" for k, v in sorted(r["refused"].items()))
        lines.append(
            f"| {r['in_flight']} | {r['served']} | ${r['spent_usd']:.4f} | ${r['overspend_usd']:.4f} | "
            f"${r['bound_usd']:.4f} | {refused} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "command": f"python benchmarks/quota_overspend.py --requests {args.requests}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "overhead": bench_overhead(args.requests),
        "sweep": [bench_sweep(c) for c in (1, 8, 32, 128)],
    }
    print(json.dumps(result, indent=2))
    if not args.no_doc:
        doc_sections.write_section("quota", section(result))


if __name__ == "__main__":
    main()
