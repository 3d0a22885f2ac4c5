"""The Anthropic Messages and Responses front doors over HTTP: ``ai-factory serve`` vs the LiteLLM proxy.

For each server (one at a time) and each API (``/v1/chat/completions`` as the reference,
``/v1/messages``, ``/v1/responses``): one check request must answer 200 in that API's shape (an API a
server does not serve is reported as such, with its status, and not timed), then a warm-up and a fixed
number of non-streaming requests per concurrency level with ``http_load``. Same bodies for both servers;
ours routes ``echo`` to the offline echo provider, LiteLLM's ``echo`` is a ``mock_response``
deployment (``benchmarks/litellm/config.yaml``).

    python benchmarks/api_compare.py --requests 500 --concurrency 1 8
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from http_load import chat_bodies, run_level
from servers import BENCH_DIR, RunningServer, aif_serve, litellm_proxy, litellm_version

RESULT_PATH = BENCH_DIR / "api_compare.json"
PATHS = {"chat_completions": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses"}
_SYSTEM = "You are a terse assistant."
_PROMPTS = ("Say hello.", "List three colours.", "What is 2 + 2?", "Reply with the word OK.")


def bodies(api: str) -> list[bytes]:
    """The same requests in each API's shape."""
    if api == "chat_completions":
        return chat_bodies("echo")
    out = []
    for prompt in _PROMPTS:
        if api == "messages":
            payload: dict[str, Any] = {
                "model": "echo",
                "system": _SYSTEM,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 64,
            }
        else:
            payload = {"model": "echo", "instructions": _SYSTEM, "input": prompt, "max_output_tokens": 64}
        out.append(json.dumps(payload, separators=(",", ":")).encode())
    return out


def headers(api: str, key: str) -> dict[str, str]:
    if api == "messages":
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return {"Authorization": f"Bearer {key}"}


def _shape_ok(api: str, parsed: dict[str, Any]) -> bool:
    if api == "chat_completions":
        return bool(parsed.get("choices"))
    if api == "messages":
        return parsed.get("type") == "message" and bool(parsed.get("content"))
    return parsed.get("object") == "response" and bool(parsed.get("output"))


def check(server: RunningServer, api: str) -> tuple[bool, str]:
    """(served, what the check request answered)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        sent = {"Content-Type": "application/json", **headers(api, server.key)}
        conn.request("POST", PATHS[api], body=bodies(api)[0], headers=sent)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = {}
    served = resp.status == 200 and isinstance(parsed, dict) and _shape_ok(api, parsed)
    return served, f"{resp.status}: {data[:200].decode('utf-8', 'replace')}"


def run(
    levels: Sequence[int] = (1, 8),
    requests: int = 500,
    warmup: int = 50,
    servers: Sequence[str] = ("ai-factory", "litellm"),
    max_seconds: float = 60.0,
) -> dict[str, Any]:
    factories: dict[str, Callable[[], contextlib.AbstractContextManager[RunningServer]]] = {
        "ai-factory": aif_serve,
        "litellm": litellm_proxy,
    }
    out: dict[str, Any] = {
        "levels": list(levels),
        "requests_per_level": requests,
        "litellm_version": litellm_version() if "litellm" in servers else None,
        "checks": {},
        "rows": [],
    }
    for name in servers:
        with factories[name]() as server:
            for api, path in PATHS.items():
                served, answer = check(server, api)
                out["checks"][f"{name} {api}"] = {"served": served, "answer": answer}
                if not served:
                    continue
                for concurrency in levels:
                    result = run_level(
                        host="127.0.0.1",
                        port=server.port,
                        path=path,
                        headers=headers(api, server.key),
                        bodies=bodies(api),
                        concurrency=concurrency,
                        requests=requests,
                        warmup=warmup,
                        max_seconds=max_seconds,
                    )
                    row = {"server": name, "api": api, **result.to_dict()}
                    out["rows"].append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    RESULT_PATH.parent.mkdir(exist_ok=True)
    RESULT_PATH.write_text(json.dumps(out, indent=2))
    return out


def markdown(result: dict[str, Any]) -> Iterator[str]:
    yield "| server | API | concurrency | requests | errors | p50 ms | p99 ms | req/s |"
    yield "|---|---|---:|---:|---:|---:|---:|---:|"
    for r in result["rows"]:
        yield (
            f"| {r['server']} | `{PATHS[r['api']]}` | {r['concurrency']} | {r['requests']} | {r['errors']} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps']:.0f} |"
        )
    missing = [(k, v["answer"]) for k, v in result["checks"].items() if not v["served"]]
    if missing:
        yield ""
        yield "Not timed (the check request did not get a 200 answer in the API's shape):"
        yield ""
        for what, answer in missing:
            yield f"- {what}: `{answer[:160]}`"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument(
        "--servers", nargs="+", choices=["ai-factory", "litellm"], default=["ai-factory", "litellm"]
    )
    args = parser.parse_args(argv)
    result = run(args.concurrency, args.requests, args.warmup, args.servers)
    print("\n".join(markdown(result)))


if __name__ == "__main__":
    main()
