"""Streaming, side by side in one run: ``ai-factory serve`` vs the LiteLLM proxy with a paced model.

The model sends one token every ``pace_ms``, its first one ``pace_ms`` after the request. ai-factory's
model is the paced ``echo`` (in the gateway process, ``AIF_ECHO_TOKEN_MS``); LiteLLM's is
``benchmarks/stub_server.py --pace-ms``, which LiteLLM calls over HTTP (model ``paced``), and which is
also measured directly so that LiteLLM is charged only for what it adds. Per request the client records
the time to the first content chunk (TTFT), the gaps between content chunks, and the whole stream:

- TTFT overhead: TTFT minus the model's own first token, taken as the paced stub's TTFT measured
  directly with the same client at the same concurrency (the same sleep behind a bare standard-library
  HTTP server: the machine's sleep and scheduling jitter cancel out);
- per-chunk overhead: the mean gap between content chunks minus the stub's measured mean gap;
- streamed requests/s with an unpaced model (``pace_ms`` 0), i.e. the servers' own streaming cost.

It also measures the in-process path (what the Lambda runs, without HTTP): ``Gateway.handle`` plus
reading the whole streamed body, in-memory stores, unpaced echo; per request (1-token answer) and per
chunk (the slope between a 1-token and a 201-token answer).

    python benchmarks/stream_compare.py --pace-ms 20 --tokens 20 --requests 60
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from http_load import percentile
from servers import BENCH_DIR, RunningServer, aif_serve, litellm_proxy, litellm_version, stub_server

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lambdas" / "gateway"))

RESULT_PATH = BENCH_DIR / "stream_compare.json"
TARGET_TTFT_OVERHEAD_P50_MS = 1.0
# What the HTTP measurement resolves: the paced stub's own TTFT p50 moves by about this much between
# runs on a shared 2-core machine. Overheads below it are reported, but ratios are taken against it.
RESOLUTION_MS = 0.5


@dataclass
class StreamTimes:
    ttft_s: list[float] = field(default_factory=list)
    gaps_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0


def _body(model: str, tokens: int) -> bytes:
    # ai-factory's echo answers "echo: <prompt>", one token per word: tokens - 1 words give `tokens`.
    words = " ".join(f"w{i}" for i in range(max(tokens - 1, 0)))
    payload = {"model": model, "messages": [{"role": "user", "content": words or "hi"}], "stream": True}
    return json.dumps(payload, separators=(",", ":")).encode()


def _one_stream(conn: http.client.HTTPConnection, key: str, body: bytes, times: StreamTimes) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        resp.read()
        times.errors += 1
        return
    arrivals: list[float] = []
    while True:
        line = resp.readline()
        if not line:
            break
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        chunk = json.loads(data)
        choices = chunk.get("choices") or []
        if choices and (choices[0].get("delta") or {}).get("content"):
            arrivals.append(time.perf_counter())
    resp.read()  # the terminating chunk, so the connection can be reused
    end = time.perf_counter()
    if not arrivals:
        times.errors += 1
        return
    times.ttft_s.append(arrivals[0] - start)
    times.gaps_s.extend(b - a for a, b in itertools.pairwise(arrivals))
    times.total_s.append(end - start)
    times.chunks.append(len(arrivals))


def stream_load(
    port: int, key: str, body: bytes, concurrency: int, requests: int, warmup: int, max_seconds: float
) -> StreamTimes:
    """``requests`` streamed requests from ``concurrency`` threads, each on its own keep-alive connection."""
    times = StreamTimes()
    lock = threading.Lock()
    counter = {"left": warmup + requests, "done": 0}
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        local = StreamTimes()
        warm = StreamTimes()
        try:
            while time.monotonic() < deadline:
                with lock:
                    if counter["left"] <= 0:
                        return
                    counter["left"] -= 1
                    n = counter["done"]
                    counter["done"] += 1
                _one_stream(conn, key, body, warm if n < warmup else local)
        finally:
            conn.close()
            with lock:
                for name in ("ttft_s", "gaps_s", "total_s", "chunks"):
                    getattr(times, name).extend(getattr(local, name))
                times.errors += local.errors

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times.wall_s = time.perf_counter() - started
    return times


def _ms(values: Sequence[float], q: float) -> float:
    return round(percentile(sorted(values), q) * 1000, 3) if values else float("nan")


def summary(times: StreamTimes, requests: int) -> dict[str, Any]:
    return {
        "requests": len(times.total_s),
        "errors": times.errors,
        "ttft_p50_ms": _ms(times.ttft_s, 50),
        "ttft_p99_ms": _ms(times.ttft_s, 99),
        "gap_mean_ms": round(statistics.fmean(times.gaps_s) * 1000, 3) if times.gaps_s else float("nan"),
        "gap_p50_ms": _ms(times.gaps_s, 50),
        "total_p50_ms": _ms(times.total_s, 50),
        "chunks_per_request": round(statistics.fmean(times.chunks), 1) if times.chunks else 0,
        # Measured requests over the whole run's wall time (warm-up included in the wall time).
        "rps": round(len(times.total_s) / times.wall_s, 1) if times.wall_s else 0.0,
    }


def _measure(
    server: RunningServer,
    model: str,
    tokens: int,
    levels: Sequence[int],
    requests: int,
    warmup: int,
    max_seconds: float,
) -> dict[int, dict[str, Any]]:
    out = {}
    for concurrency in levels:
        times = stream_load(
            server.port, server.key, _body(model, tokens), concurrency, requests, warmup, max_seconds
        )
        out[concurrency] = summary(times, requests)
        print(
            json.dumps({"server": server.name, "concurrency": concurrency, **out[concurrency]}),
            file=sys.stderr,
        )
    return out


def in_process(tokens_small: int = 1, tokens_large: int = 201, repeats: int = 2000) -> dict[str, Any]:
    """``Gateway.handle`` + reading the streamed body, no HTTP: the Lambda's path, per request and chunk."""
    from gateway_overhead import new_key

    from aif_gateway.app import Gateway
    from aif_gateway.config import GatewayConfig, ModelTarget, Route
    from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger
    from aif_gateway.providers import EchoProvider
    from aif_gateway.streaming import StreamingResponse

    echo = ModelTarget(name="echo", provider="echo", model_id="echo", modality="chat")
    config = GatewayConfig(routes={"echo": Route("echo", "chat", (echo,))})
    keys = MemoryKeyStore()
    gateway = Gateway(config, keys=keys, ledger=MemoryLedger(), providers={"echo": EchoProvider(0)})
    plaintext = new_key(keys)  # may use echo, budget and rate limit out of reach

    def event(body: bytes, n: int) -> dict[str, Any]:
        return {
            "httpMethod": "POST",
            "path": "/v1/chat/completions",
            "headers": {"Authorization": f"Bearer {plaintext}"},
            "body": body.decode(),
            "requestContext": {"requestId": f"bench-{n}"},
        }

    def timed(body: bytes, offset: int) -> list[float]:
        samples = []
        for i in range(repeats):
            ev = event(body, offset + i)
            t0 = time.perf_counter()
            response = gateway.handle(ev)
            assert isinstance(response, StreamingResponse)
            for _ in response.body:
                pass
            samples.append(time.perf_counter() - t0)
        return samples

    small, large = _body("echo", tokens_small), _body("echo", tokens_large)
    timed(small, 10**7)  # warm-up
    s = timed(small, 0)
    big = timed(large, 10**6)
    per_chunk_us = (statistics.median(big) - statistics.median(s)) / (tokens_large - tokens_small) * 1e6
    return {
        "repeats": repeats,
        "per_request_p50_ms": _ms(s, 50),
        "per_request_p99_ms": _ms(s, 99),
        "large_p50_ms": _ms(big, 50),
        "tokens_small": tokens_small,
        "tokens_large": tokens_large,
        "per_chunk_us": round(per_chunk_us, 2),
    }


def run(
    pace_ms: float = 20.0,
    tokens: int = 20,
    levels: Sequence[int] = (1, 8),
    requests: int = 60,
    warmup: int = 8,
    rps_requests: int = 400,
    servers: Sequence[str] = ("ai-factory", "litellm"),
    max_seconds: float = 120.0,
) -> dict[str, Any]:
    """Measure every server; returns a JSON-ready dict (also written to .bench/stream_compare.json)."""
    out: dict[str, Any] = {
        "pace_ms": pace_ms,
        "tokens": tokens,
        "levels": list(levels),
        "requests_per_level": requests,
        "rps_requests": rps_requests,
        "litellm_version": litellm_version() if "litellm" in servers else None,
        "paced": {},
        "unpaced": {},
        "how": {},
    }
    stubs: dict[str, Callable[[], contextlib.AbstractContextManager[RunningServer]]] = {
        "paced": lambda: stub_server(pace_ms=pace_ms, tokens=tokens),
        "unpaced": lambda: stub_server(pace_ms=0, tokens=tokens),
    }
    for phase, pace in (("paced", pace_ms), ("unpaced", 0.0)):
        n, w = (requests, warmup) if phase == "paced" else (rps_requests, warmup * 4)
        lv = levels if phase == "paced" else (max(levels),)
        with stubs[phase]() as upstream:
            out[phase]["model-direct"] = _measure(upstream, "paced", tokens, lv, n, w, max_seconds)
            out["how"][f"stub-{phase}"] = upstream.how
            if "litellm" in servers:
                with litellm_proxy(paced_api_base=f"http://127.0.0.1:{upstream.port}/v1") as proxy:
                    out[phase]["litellm"] = _measure(proxy, "paced", tokens, lv, n, w, max_seconds)
                    out["how"]["litellm"] = proxy.how
        if "ai-factory" in servers:
            with aif_serve(echo_token_ms=pace) as aif:
                out[phase]["ai-factory"] = _measure(aif, "echo", tokens, lv, n, w, max_seconds)
                out["how"]["ai-factory"] = aif.how
    out["in_process"] = in_process()
    out["overheads"] = overheads(out)
    RESULT_PATH.parent.mkdir(exist_ok=True)
    RESULT_PATH.write_text(json.dumps(out, indent=2))
    return out


def overheads(r: dict[str, Any]) -> list[dict[str, Any]]:
    """TTFT and per-chunk overhead over the model's own (the paced stub measured directly), per server
    and concurrency."""
    rows = []
    paced = r["paced"]
    for server in ("ai-factory", "litellm"):
        if server not in paced:
            continue
        for level, s in paced[server].items():
            direct = paced["model-direct"][level]
            own_ttft, own_gap = direct["ttft_p50_ms"], direct["gap_mean_ms"]
            rows.append(
                {
                    "server": server,
                    "concurrency": int(level),
                    "ttft_overhead_p50_ms": round(s["ttft_p50_ms"] - own_ttft, 3),
                    "chunk_overhead_ms": round(s["gap_mean_ms"] - own_gap, 3),
                }
            )
    return rows


def markdown(r: dict[str, Any]) -> Iterator[str]:
    yield "## Streaming: time to first token and per-chunk overhead, ai-factory vs LiteLLM"
    yield ""
    yield (
        f"A paced model sends {r['tokens']} tokens, one every {r['pace_ms']:g} ms (its first one "
        f"{r['pace_ms']:g} ms after the request). ai-factory's is the offline `echo` in the gateway "
        "process (`AIF_ECHO_TOKEN_MS`); LiteLLM's is `benchmarks/stub_server.py --pace-ms`, called by "
        "LiteLLM over HTTP (model `paced`), and measured directly as well (`model-direct`): each server is "
        "charged only for what it adds to that. One client (`benchmarks/stream_compare.py`: a thread per "
        f"keep-alive connection), {r['requests_per_level']} streamed requests per level after a warm-up. "
        "TTFT is from sending the request to the first content chunk. Client and servers share the "
        "machine's 2 cores."
    )
    yield ""
    yield "| server | concurrency | TTFT p50 ms | TTFT p99 ms | gap mean ms | stream p50 ms | errors |"
    yield "|---|---|---|---|---|---|---|"
    for server, levels in r["paced"].items():
        for level, s in levels.items():
            yield (
                f"| {server} | {level} | {s['ttft_p50_ms']:.3f} | {s['ttft_p99_ms']:.3f} | "
                f"{s['gap_mean_ms']:.3f} | {s['total_p50_ms']:.3f} | {s['errors']} |"
            )
    yield ""
    yield (
        "Overhead over the model's own timing (`model-direct`: the paced stub called directly, same client, "
        "same concurrency; the same sleeps, so the machine's timer and scheduling jitter cancel out):"
    )
    yield ""
    yield "| server | concurrency | TTFT overhead p50 ms | per-chunk overhead ms |"
    yield "|---|---|---|---|"
    for row in r["overheads"]:
        yield (
            f"| {row['server']} | {row['concurrency']} | {row['ttft_overhead_p50_ms']:.3f} | "
            f"{row['chunk_overhead_ms']:.3f} |"
        )
    yield ""
    yield (
        f"Differences below about {RESOLUTION_MS:g} ms are within this method's jitter (the paced stub's own "
        "TTFT moves by that much between levels and runs; a negative overhead is such jitter), and ratios "
        f"are taken against {RESOLUTION_MS:g} ms when ours is smaller. Per-chunk overhead over HTTP is "
        "below what the method resolves for both servers; the in-process slope at the end of this "
        "section resolves ai-factory's."
    )
    yield ""
    yield f"Streamed requests/s with an unpaced model ({r['tokens']} tokens, no sleeps):"
    yield ""
    yield "| server | concurrency | req/s | stream p50 ms | errors |"
    yield "|---|---|---|---|---|"
    for server, levels in r["unpaced"].items():
        for level, s in levels.items():
            yield f"| {server} | {level} | {s['rps']:.1f} | {s['total_p50_ms']:.3f} | {s['errors']} |"
    ip = r["in_process"]
    yield ""
    yield (
        f"In process (the path the Lambda runs, no HTTP): `Gateway.handle` plus reading the whole streamed "
        f"body, in-memory stores, unpaced echo, {ip['repeats']} requests each: per streamed request "
        f"p50 {ip['per_request_p50_ms']:.3f} ms, p99 {ip['per_request_p99_ms']:.3f} ms "
        f"({ip['tokens_small']}-token answer); per chunk {ip['per_chunk_us']:.2f} µs "
        f"(slope from {ip['tokens_small']} to {ip['tokens_large']} tokens)."
    )
    if r.get("litellm_version"):
        yield ""
        how = r["how"].get("litellm", "")
        yield f"LiteLLM {r['litellm_version']}, set up as in the comparison above; started with `{how}`."


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pace-ms", type=float, default=20.0)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--rps-requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--servers", nargs="+", choices=["ai-factory", "litellm"], default=["ai-factory", "litellm"]
    )
    args = parser.parse_args(argv)
    result = run(
        pace_ms=args.pace_ms,
        tokens=args.tokens,
        levels=args.concurrency,
        requests=args.requests,
        rps_requests=args.rps_requests,
        servers=args.servers,
    )
    print("\n".join(markdown(result)))


if __name__ == "__main__":
    main()
