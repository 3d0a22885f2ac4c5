"""A small closed-loop HTTP load client, the one used for every server the benchmarks compare.

Each of ``concurrency`` threads owns one persistent ``http.client.HTTPConnection`` (keep-alive when the
server allows it; ``http.client`` reopens the connection by itself when the server closes it) and sends
requests back to back until the shared request budget or the deadline is used up. Latency is the wall
time from sending the request to having read the whole response body. The client is deliberately
plain (no async framework, no JSON parsing of responses) so that it costs little CPU next to the
server: on a 2-core machine client and server share the cores.

Only loopback targets are accepted: every load this repo generates stays on the machine.

Run on its own against any OpenAI-compatible server::

    python benchmarks/http_load.py --port 4000 --key sk-... --model echo --concurrency 1 8 32
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

MAX_REQUESTS_PER_LEVEL = 100_000
MAX_SECONDS_PER_LEVEL = 600.0

# Fixed prompts of a few sizes, so both servers parse the same bodies in the same order.
_PROMPTS = (
    "Say hello.",
    "Summarise the following sentence in five words: the quick brown fox jumps over the lazy dog.",
    "List three colours.",
    "Translate 'good morning' into French, German and Spanish, one per line, no commentary.",
    "What is 2 + 2?",
    "Write one sentence about the sea. " * 8,
    "Name a prime number larger than 100.",
    "Reply with the word OK.",
)


def chat_bodies(model: str, stream: bool = False, count: int = len(_PROMPTS)) -> list[bytes]:
    """Chat-completion request bodies, identical for every server under test."""
    bodies = []
    for i in range(count):
        payload: dict[str, object] = {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a terse assistant."},
                {"role": "user", "content": _PROMPTS[i % len(_PROMPTS)]},
            ],
            "max_tokens": 64,
            "temperature": 0,
        }
        if stream:
            payload["stream"] = True
        bodies.append(json.dumps(payload, separators=(",", ":")).encode())
    return bodies


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Exact percentile with linear interpolation between closest ranks (numpy's default method)."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError("q must be within 0..100")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class LoadResult:
    """One concurrency level against one server. Latencies in milliseconds."""

    concurrency: int
    requests: int  # completed in the measured phase (warm-up excluded)
    errors: int  # non-2xx statuses and transport errors in the measured phase
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    connections_opened: int  # in the measured phase; > 0 means the server closed connections
    warmup_errors: int  # failures while the connections were being opened and warmed
    client_cpu_ms_per_request: float  # this client's own CPU cost, to show it does not dominate
    error_samples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _check_loopback(host: str) -> None:
    try:
        addr = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot resolve load target {host!r}") from exc
    if not addr.is_loopback:
        raise ValueError(f"load target {host!r} is not a loopback address; refusing to send load there")


class _CountingConnection(http.client.HTTPConnection):
    """Counts TCP connects, so the report shows whether keep-alive was in effect."""

    opened = 0
    _lock = threading.Lock()

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with _CountingConnection._lock:
            _CountingConnection.opened += 1


class _Budget:
    """Hands out request numbers until the count or the deadline is reached (thread-safe)."""

    def __init__(self, count: int, deadline: float) -> None:
        self._next = 0
        self._count = count
        self._deadline = deadline
        self._lock = threading.Lock()

    def take(self) -> int | None:
        with self._lock:
            if self._next >= self._count or time.perf_counter() >= self._deadline:
                return None
            n = self._next
            self._next += 1
            return n


def _worker(
    conn: http.client.HTTPConnection,
    path: str,
    headers: dict[str, str],
    bodies: Sequence[bytes],
    budget: _Budget,
    latencies: list[float],
    errors: list[str],
) -> None:
    while (n := budget.take()) is not None:
        body = bodies[n % len(bodies)]
        start = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            elapsed = time.perf_counter() - start
            if 200 <= resp.status < 300:
                latencies.append(elapsed)
            else:
                errors.append(f"HTTP {resp.status}: {data[:200]!r}")
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            conn.close()  # the next request reconnects


def run_level(
    *,
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    bodies: Sequence[bytes],
    concurrency: int,
    requests: int,
    warmup: int,
    max_seconds: float = 120.0,
    timeout_s: float = 30.0,
) -> LoadResult:
    """Warm up, then send ``requests`` requests with ``concurrency`` workers; bounded by ``max_seconds``.

    Connections are opened one by one before the warm-up and reused by the measured phase, so it
    measures steady-state keep-alive traffic (``connections_opened`` counts reconnects only).
    """
    _check_loopback(host)
    if not 1 <= concurrency <= 256:
        raise ValueError("concurrency must be within 1..256")
    requests = min(requests, MAX_REQUESTS_PER_LEVEL)
    max_seconds = min(max_seconds, MAX_SECONDS_PER_LEVEL)
    all_headers = {"Content-Type": "application/json", "Connection": "keep-alive", **headers}
    conns = [_CountingConnection(host, port, timeout=timeout_s) for _ in range(concurrency)]

    def phase(count: int) -> tuple[list[float], list[str], float, int, float]:
        latencies: list[float] = []  # list.append is atomic under the GIL
        errors: list[str] = []
        opened_before = _CountingConnection.opened
        budget = _Budget(count, time.perf_counter() + max_seconds)
        threads = [
            threading.Thread(
                target=_worker,
                args=(conn, path, all_headers, bodies, budget, latencies, errors),
                daemon=True,
            )
            for conn in conns
        ]
        start, cpu_start = time.perf_counter(), time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(max_seconds + timeout_s + 5)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        return latencies, errors, seconds, _CountingConnection.opened - opened_before, cpu

    try:
        for conn in conns:  # one at a time: a connect storm is not what this measures
            conn.connect()
        warmup_errors = phase(warmup)[1] if warmup else []
        latencies, errors, seconds, opened, cpu = phase(requests)
    finally:
        for conn in conns:
            conn.close()
    ms = sorted(x * 1000.0 for x in latencies)
    if not ms:
        raise RuntimeError(f"no successful request at concurrency {concurrency}: {errors[:3]}")
    return LoadResult(
        concurrency=concurrency,
        requests=len(ms),
        errors=len(errors),
        seconds=round(seconds, 3),
        rps=round(len(ms) / seconds, 1),
        p50_ms=round(percentile(ms, 50), 3),
        p90_ms=round(percentile(ms, 90), 3),
        p99_ms=round(percentile(ms, 99), 3),
        max_ms=round(ms[-1], 3),
        mean_ms=round(sum(ms) / len(ms), 3),
        connections_opened=opened,
        client_cpu_ms_per_request=round(cpu * 1000.0 / max(1, len(ms) + len(errors)), 3),
        warmup_errors=len(warmup_errors),
        error_samples=sorted(set(errors + warmup_errors))[:3],
    )


def connect_burst(
    *,
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    body: bytes,
    clients: int = 64,
    timeout_s: float = 10.0,
) -> dict[str, object]:
    """``clients`` new connections at the same instant, one request each: what a fleet of clients
    starting together (or a connection pool filling up) meets. Reports failures and the slowest answer;
    a slowest answer near 1 s means connection attempts were dropped and retransmitted (listen backlog).
    """
    _check_loopback(host)
    clients = max(1, min(clients, 256))
    all_headers = {"Content-Type": "application/json", **headers}
    barrier = threading.Barrier(clients, timeout=timeout_s)
    outcomes: list[tuple[str, float]] = []

    def one() -> None:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            outcomes.append(("barrier", 0.0))
            return
        start = time.perf_counter()
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        try:
            conn.request("POST", path, body=body, headers=all_headers)
            resp = conn.getresponse()
            resp.read()
            outcomes.append((str(resp.status), time.perf_counter() - start))
        except (OSError, http.client.HTTPException) as exc:
            outcomes.append((type(exc).__name__, time.perf_counter() - start))
        finally:
            conn.close()

    threads = [threading.Thread(target=one, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * timeout_s + 5)
    ok = [x for status, x in outcomes if status.startswith("2")]
    failures: dict[str, int] = {}
    for status, _ in outcomes:
        if not status.startswith("2"):
            failures[status] = failures.get(status, 0) + 1
    return {
        "clients": clients,
        "ok": len(ok),
        "failures": failures,
        "slowest_ms": round(max((x for _, x in outcomes), default=0.0) * 1000.0, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True, help="sent as Authorization: Bearer KEY")
    parser.add_argument("--model", default="echo")
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    bodies = chat_bodies(args.model, stream=args.stream)
    for c in args.concurrency:
        result = run_level(
            host=args.host,
            port=args.port,
            path=args.path,
            headers={"Authorization": f"Bearer {args.key}"},
            bodies=bodies,
            concurrency=c,
            requests=args.requests,
            warmup=args.warmup,
            max_seconds=args.max_seconds,
        )
        print(json.dumps(result.to_dict()))


if __name__ == "__main__":
    main()
