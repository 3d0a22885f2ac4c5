"""Side by side in one run: ``ai-factory serve`` vs the LiteLLM proxy, same client, same bodies.

For each server (one at a time, the other stopped): start it on 127.0.0.1, check one request answers
200 with a completion, then for each body kind (non-streaming, streaming) and each concurrency level
run a warm-up and a fixed number of chat-completion requests with ``http_load``. Besides client-side
latency and throughput it records the server's own CPU time per request (from /proc, whole process
group), because client and server share the machine's cores.

Both servers answer without calling a model: ours routes alias ``echo`` to the offline echo provider;
LiteLLM's ``echo`` is a ``mock_response`` deployment. Both authenticate a bearer key; ours also checks
the key's model allow-list, budget and rate limit and writes a usage record to SQLite per request.

    python benchmarks/litellm_compare.py --requests 1000 --concurrency 1 8 32
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from http_load import chat_bodies, connect_burst, run_level
from servers import (
    BENCH_DIR,
    RunningServer,
    aif_serve,
    group_usage,
    litellm_proxy,
    litellm_version,
    stub_server,
)

RESULT_PATH = BENCH_DIR / "litellm_compare.json"


def _post(port: int, key: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _check_one(server: RunningServer, body: bytes) -> dict[str, Any]:
    """One request must succeed with an OpenAI-shaped completion before any timing is taken."""
    status, data = _post(server.port, server.key, body)
    if status != 200:
        raise RuntimeError(f"{server.name}: check request answered {status}: {data[:300]!r}")
    parsed: dict[str, Any] = json.loads(data)
    if not parsed.get("choices"):
        raise RuntimeError(f"{server.name}: check request returned no choices: {data[:300]!r}")
    return parsed


def _measure(
    server: RunningServer,
    levels: Sequence[int],
    requests: int,
    warmup: int,
    stream_modes: Sequence[bool],
    max_seconds: float,
) -> list[dict[str, Any]]:
    rows = []
    for stream in stream_modes:
        bodies = chat_bodies("echo", stream=stream)
        for concurrency in levels:
            cpu_before, _ = group_usage(server.process.pid)
            result = run_level(
                host="127.0.0.1",
                port=server.port,
                path="/v1/chat/completions",
                headers={"Authorization": f"Bearer {server.key}"},
                bodies=bodies,
                concurrency=concurrency,
                requests=requests,
                warmup=warmup,
                max_seconds=max_seconds,
            )
            cpu_after, rss = group_usage(server.process.pid)
            row = {
                "server": server.name,
                "stream": stream,
                **result.to_dict(),
                # CPU of warm-up plus measured phase, divided by all requests sent.
                "server_cpu_ms_per_request": round(
                    (cpu_after - cpu_before) * 1000.0 / (result.requests + result.errors + warmup), 3
                ),
                "server_rss_mb": round(rss / 2**20, 1),
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def run(
    levels: Sequence[int] = (1, 8, 32),
    requests: int = 1000,
    warmup: int = 100,
    stream_modes: Sequence[bool] = (False, True),
    servers: Sequence[str] = ("ai-factory", "litellm", "stub"),
    max_seconds: float = 120.0,
) -> dict[str, Any]:
    """Measure every server; returns a JSON-ready dict (also written to .bench/litellm_compare.json)."""
    check_body = chat_bodies("echo")[0]
    factories: dict[str, Callable[[], contextlib.AbstractContextManager[RunningServer]]] = {
        "ai-factory": aif_serve,
        "litellm": litellm_proxy,
        "litellm-2w": lambda: litellm_proxy(workers=2),
        "stub": stub_server,
    }
    out: dict[str, Any] = {
        "levels": list(levels),
        "requests_per_level": requests,
        "warmup_per_level": warmup,
        "litellm_version": litellm_version() if any(s.startswith("litellm") for s in servers) else None,
        "servers": {},
        "rows": [],
    }
    for name in servers:
        with factories[name]() as server:
            sample = _check_one(server, check_body)
            wrong_key_status, _ = _post(server.port, "sk-wrong-key", check_body)
            bursts = [
                connect_burst(
                    host="127.0.0.1",
                    port=server.port,
                    path="/v1/chat/completions",
                    headers={"Authorization": f"Bearer {server.key}"},
                    body=check_body,
                    clients=64,
                )
                for _ in range(3)
            ]
            rows = _measure(server, levels, requests, warmup, stream_modes, max_seconds)
            out["servers"][name] = {
                "startup_s": round(server.startup_s, 2),
                "how": server.how,
                "sample_response_keys": sorted(sample),
                "wrong_key_status": wrong_key_status,
                "connect_bursts": bursts,
            }
            out["rows"].extend(rows)
    out["ratios"] = ratios(out["rows"])
    RESULT_PATH.parent.mkdir(exist_ok=True)
    RESULT_PATH.write_text(json.dumps(out, indent=2))
    return out


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ai-factory / litellm per (stream, concurrency): latency ratios < 1 and rps ratio > 1 favour us."""
    by_key = {(r["server"], r["stream"], r["concurrency"]): r for r in rows}
    result = []
    for (name, stream, c), ours in sorted(by_key.items()):
        theirs = by_key.get(("litellm", stream, c))
        if name != "ai-factory" or theirs is None:
            continue
        result.append(
            {
                "stream": stream,
                "concurrency": c,
                "p50_ratio": round(ours["p50_ms"] / theirs["p50_ms"], 2),
                "p99_ratio": round(ours["p99_ms"] / theirs["p99_ms"], 2),
                "rps_ratio": round(ours["rps"] / theirs["rps"], 2),
                "server_cpu_ratio": round(
                    ours["server_cpu_ms_per_request"] / max(theirs["server_cpu_ms_per_request"], 1e-9), 2
                ),
            }
        )
    return result


def markdown(result: dict[str, Any]) -> Iterator[str]:
    """The comparison as Markdown tables (used by run_all.py for docs/benchmarks.md)."""
    yield (
        "| server | body | concurrency | requests | errors | p50 ms | p99 ms | req/s "
        "| server CPU ms/req | client CPU ms/req | connections |"
    )
    yield "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for r in result["rows"]:
        body = "stream" if r["stream"] else "json"
        yield (
            f"| {r['server']} | {body} | {r['concurrency']} | {r['requests']} | {r['errors']} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps']:.0f} | "
            f"{r['server_cpu_ms_per_request']:.2f} | {r['client_cpu_ms_per_request']:.2f} | "
            f"{r['connections_opened']} |"
        )
    yield ""
    yield (
        "Three bursts of 64 new connections opened at the same instant, one request each (not part of "
        "the timed runs above, whose connections are opened one by one beforehand). Connection resets "
        "and a slowest answer near 1 s are the signature of a full listen backlog: dropped connection "
        "attempts are retried after the kernel's 1 s SYN timeout (Python's `socketserver` listens with a "
        "backlog of 5 unless `request_queue_size` is raised)."
    )
    yield ""
    yield "| server | answered 2xx (of 3 x 64) | failures | slowest answer ms |"
    yield "|---|---:|---|---:|"
    for name, info in result["servers"].items():
        bursts = info.get("connect_bursts", [])
        failures: dict[str, int] = {}
        for b in bursts:
            for kind, n in b["failures"].items():
                failures[kind] = failures.get(kind, 0) + n
        shown = ", ".join(f"{k} x{n}" for k, n in failures.items()) or "none"
        slowest = max((b["slowest_ms"] for b in bursts), default=0.0)
        yield f"| {name} | {sum(b['ok'] for b in bursts)} | {shown} | {slowest:.0f} |"
    yield ""
    yield "Ratios ai-factory / LiteLLM (latency below 1 and req/s above 1 favour ai-factory):"
    yield ""
    yield "| body | concurrency | p50 ratio | p99 ratio | req/s ratio | server CPU/req ratio |"
    yield "|---|---:|---:|---:|---:|---:|"
    for q in result["ratios"]:
        body = "stream" if q["stream"] else "json"
        yield (
            f"| {body} | {q['concurrency']} | {q['p50_ratio']:.2f} | {q['p99_ratio']:.2f} | "
            f"{q['rps_ratio']:.2f} | {q['server_cpu_ratio']:.2f} |"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--no-stream", action="store_true", help="skip the streaming bodies")
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=["ai-factory", "litellm", "litellm-2w", "stub"],
        default=["ai-factory", "litellm", "stub"],
        help="litellm-2w: LiteLLM with --num_workers 2; stub: a bare standard-library server, the floor "
        "for any Python server",
    )
    parser.add_argument("--max-seconds", type=float, default=120.0, help="cap per level")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = run(
        args.concurrency,
        args.requests,
        args.warmup,
        (False,) if args.no_stream else (False, True),
        args.servers,
        args.max_seconds,
    )
    print("\n".join(markdown(result)))
    print(f"\n({time.perf_counter() - start:.0f} s; raw results in {Path(RESULT_PATH)})")


if __name__ == "__main__":
    main()
