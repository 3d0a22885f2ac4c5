"""Run every benchmark and rewrite docs/benchmarks.md with the figures, the machine and the command.

    make bench                                  # = .venv/bin/python benchmarks/run_all.py
    .venv/bin/python benchmarks/run_all.py --quick --skip synth

Pieces (each also runs on its own, see benchmarks/README.md):
  overhead   gateway_overhead.py  per-request overhead in process, AWS calls per request
  import     cold_import.py       cold import of aif_gateway.handler
  synth      synth_time.py        make synth, cold and warm
  scale      synth_scale.py       synth time and resources per stack, 1-100 features over 10 teams
  compare    litellm_compare.py   ai-factory serve vs LiteLLM proxy over HTTP (1, 8, 32 concurrent)
  apis       api_compare.py       /v1/messages and /v1/responses over HTTP, ai-factory serve vs LiteLLM
  stream     stream_compare.py    streaming with a paced model: TTFT and per-chunk overhead vs LiteLLM
  eval       eval_harness.py      ai-factory eval: harness overhead, local gateway, MLflow logging
Every piece's figures sit in a marked section of the document (benchmarks/doc_sections.py); a piece
that is skipped keeps its section, and its rows of the targets table, from the previous document.
Raw JSON of the last run goes to .bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import api_compare  # noqa: E402
import cold_import  # noqa: E402
import doc_sections  # noqa: E402
import litellm_compare  # noqa: E402
import stream_compare  # noqa: E402
import synth_scale  # noqa: E402
import synth_time  # noqa: E402

DOC = doc_sections.DOC
RAW = REPO / ".bench" / "results.json"
PIECES = ("overhead", "import", "synth", "scale", "compare", "apis", "stream", "eval")
# piece -> its marked section of the document, in document order
SECTIONS = {
    "overhead": "overhead",
    "import": "cold-import",
    "synth": "synth-time",
    "scale": "synth-scale",
    "compare": "litellm-compare",
    "apis": "api-compare",
    "stream": "streaming",
    "eval": "eval-harness",
}
# piece -> how its rows of the targets table begin (to carry them over when the piece is skipped)
TARGET_ROWS = {
    "overhead": ("overhead p50", "<= 1 synchronous"),
    "import": ("cold import",),
    "scale": ("synth scale",),
    "stream": ("streaming",),
    "eval": ("eval harness",),
}
CARRIED = " (earlier run)"

TARGET_OVERHEAD_P50_MS = 1.0
TARGET_OVERHEAD_P99_MS = 5.0
TARGET_AWS_CALLS = 1.0
TARGET_IMPORT_MS = 300.0


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": nproc or str(os.cpu_count()),
        "cpu": cpu,
        "memory": _memory(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "commit": f"{commit}{' (with uncommitted changes)' if dirty else ''}",
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _memory() -> str:
    with open("/proc/meminfo", encoding="utf-8") as f:
        kib = int(f.readline().split()[1])
    return f"{kib / 2**20:.0f} GiB"


def run_overhead(quick: bool) -> dict[str, Any]:
    # Its own process: it sets fake AWS credentials and runs moto, which must not leak into the rest.
    argv = [sys.executable, str(HERE / "gateway_overhead.py")]
    argv += ["--requests", "1000", "--warmup", "100", "--paced-seconds", "6"] if quick else []
    out = subprocess.run(argv, capture_output=True, text=True, timeout=1200, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run_eval(quick: bool) -> dict[str, Any]:
    # Its own process: it imports mlflow and runs a local gateway, neither of which should linger here.
    argv = [sys.executable, str(HERE / "eval_harness.py"), "--json", *(["--quick"] if quick else [])]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=1200, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def ok(flag: bool) -> str:
    return "met" if flag else "**not met**"


def render(results: dict[str, Any], command: str, previous: str = "") -> Iterator[str]:
    """The whole document; sections of pieces not run this time come from ``previous`` unchanged."""
    m = results["machine"]
    old = doc_sections.sections(previous)
    carried = [name for piece, name in SECTIONS.items() if piece not in results and name in old]
    yield "# Benchmarks"
    yield ""
    yield "Generated by `benchmarks/run_all.py`; do not edit by hand. Rerun and commit the result."
    yield ""
    yield f"Command: `{command}` (`make bench` runs `.venv/bin/python benchmarks/run_all.py`)."
    yield ""
    yield (
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory']} RAM, {m['os']}, Python {m['python']}; "
        f"{m['date']}; commit {m['commit']}. Wall time of the run: {results['seconds']:.0f} s. "
        f"Load average (1/5/15 min) before: {m['load_before']}, after: {m['load_after']} (anything else "
        "running on the machine shows here)."
    )
    yield ""
    if carried:
        titles = "; ".join(_title(old[name]) for name in carried)
        yield (
            f"Not rerun this time, kept from an earlier run (their rows of the targets table say "
            f'"{CARRIED.strip()}"): {titles}.'
        )
        yield ""
    # Documents written before the targets table was a marked section: search the whole text.
    yield from _targets(results, old.get("targets", previous))
    renderers: dict[str, Callable[[Any], Iterator[str]]] = {
        "overhead": _overhead,
        "import": _import,
        "synth": _synth,
        "scale": lambda r: iter([synth_scale.markdown(r, command)]),
        "compare": _compare,
        "apis": _apis,
        "stream": stream_compare.markdown,
        "eval": lambda r: iter([_eval_markdown(r, command)]),
    }
    for piece, name in SECTIONS.items():
        if piece in results:
            yield doc_sections.block(name, "\n".join(renderers[piece](results[piece])))
            yield ""
        elif name in old:
            yield old[name]
            yield ""
    # Sections some other script wrote that this one does not know: kept, at the end.
    for name, text in old.items():
        if name != "targets" and name not in SECTIONS.values():
            yield text
            yield ""


def _title(section: str) -> str:
    titles = [line[3:].strip() for line in section.splitlines() if line.startswith("## ")]
    return " and ".join(titles) or section.splitlines()[0]


def _eval_markdown(r: dict[str, Any], command: str) -> str:
    import eval_harness  # here: it imports the eval runner, which only this piece needs

    return eval_harness.markdown(r, command)


def _targets(results: dict[str, Any], previous: str) -> Iterator[str]:
    rows: list[str] = []
    old_rows = [line for line in previous.splitlines() if line.startswith("| ") and "---" not in line]
    for piece, prefixes in TARGET_ROWS.items():
        if piece in results:
            rows += _target_rows(piece, results[piece])
            continue
        for line in old_rows:  # the piece was skipped: its last figures, marked as such
            if line[2:].startswith(prefixes):
                rows.append(line if line.endswith(f"{CARRIED} |") else line[: -len(" |")] + f"{CARRIED} |")
    body = ["## Targets", "", "| target | measured | verdict |", "|---|---|---|", *rows]
    yield doc_sections.block("targets", "\n".join(body))
    yield ""


def _target_rows(piece: str, r: dict[str, Any]) -> list[str]:
    rows = []
    if piece == "overhead":
        cpu_of = {
            label: r[name]["request_thread_cpu"]
            for label, name in (
                ("buffered Lambda handler, DynamoDB answered instantly", "lambda_canned"),
                ("deployed server path, DynamoDB answered instantly", "server_canned"),
            )
            if "request_thread_cpu" in r.get(name, {})
        }
        for label, section in (
            ("gateway core (in-memory stores)", r["core"]["overhead"]),
            ("Lambda handler, in-memory stores", r["lambda_memory"]["overhead"]),
            ("buffered Lambda handler, DynamoDB answered instantly", r["lambda_canned"]["overhead"]),
            *(
                [("deployed server path, DynamoDB answered instantly", r["server_canned"]["overhead"])]
                if "server_canned" in r
                else []
            ),
        ):
            p50, p99 = section["p50_ms"], section["p99_ms"]
            verdict = ok(p50 <= TARGET_OVERHEAD_P50_MS and p99 <= TARGET_OVERHEAD_P99_MS)
            measured = f"p50 {p50:.3f} ms, p99 {p99:.3f} ms"
            cpu = cpu_of.get(label)
            if cpu is not None:
                measured += f" (request thread's CPU time p50 {cpu['p50_ms']:.3f} ms)"
            rows.append(f"| overhead p50 <= 1 ms, p99 <= 5 ms: {label} | {measured} | {verdict} |")
        d = r["lambda_dynamodb"]
        burst, paced, first, idle = d["burst"], d["paced"], d["first_request"], d["after_idle"]
        steady_over = burst["requests_over_one_call"] + paced["requests_over_one_call"]
        worst_mean = max(burst["aws_calls_per_request"], paced["aws_calls_per_request"])
        verdict = ok(steady_over == 0 and worst_mean <= TARGET_AWS_CALLS)
        if steady_over == 0:
            verdict += (
                f" (except an environment's first request, {first['aws_calls_per_request']:.0f}, and the "
                f"first after more than 2x TTL idle, {idle['aws_calls_per_request']:.0f})"
            )
        rows.append(
            f"| <= 1 synchronous AWS call per request on the request path besides the model call | mean "
            f"{burst['aws_calls_per_request']:.3f} at {burst['rps']:.0f} req/s, "
            f"{paced['aws_calls_per_request']:.3f} at {paced['rps']:.0f} req/s; requests with more than 1: "
            f"{burst['requests_over_one_call']} of {burst['requests']} and {paced['requests_over_one_call']} "
            f"of {paced['requests']}; background calls besides: {burst['background_calls_total']} "
            f"and {paced['background_calls_total']} | {verdict} |"
        )
    elif piece == "import":
        ms, cpu = r["lambda"]["median_ms"], r["lambda"]["cpu_median_ms"]
        verdict = ok(ms <= TARGET_IMPORT_MS)
        measured = f"median {ms:.0f} ms (CPU {cpu:.0f} ms)"
        rows.append(f"| cold import of aif_gateway.handler <= 300 ms | {measured} | {verdict} |")
    elif piece == "scale":
        largest = max(r["runs"], key=lambda x: x["features"])
        rows.append(
            f"| synth scale: every team and gateway stack <= {synth_scale.MAX_RESOURCES_PER_STACK} resources "
            "and every observability stack within its budget at 100 features over 10 teams | "
            f"{r['largest_max_stack_resources']} in the largest team or gateway stack, observability "
            f"{' + '.join(map(str, r['largest_observability_resources']))}, at {r['largest']} features, "
            f"wall {largest['wall_s']:.1f} s; +{r['marginal_wall_s_per_feature']:.3f} s and "
            f"+{r['marginal_resources_per_feature']:.1f} resources per feature | {ok(r['within_limit'])} |"
        )
    elif piece == "stream":
        target = stream_compare.TARGET_TTFT_OVERHEAD_P50_MS
        litellm = {row["concurrency"]: row for row in r["overheads"] if row["server"] == "litellm"}
        for row in (x for x in r["overheads"] if x["server"] == "ai-factory"):
            ours, level = row["ttft_overhead_p50_ms"], row["concurrency"]
            theirs = litellm.get(level)
            met = ours <= target
            versus = ""
            if theirs is not None:
                their_ms = theirs["ttft_overhead_p50_ms"]
                # Below the method's resolution, the ratio is taken against the resolution itself.
                floor = stream_compare.RESOLUTION_MS
                met = met and their_ms >= 10 * max(ours, floor)
                versus = f"; LiteLLM {their_ms:.3f} ms (>= {their_ms / max(ours, floor):.0f}x ours)"
            rows.append(
                f"| streaming TTFT overhead p50 <= {target:g} ms at {level} concurrent streams, >= 10x "
                f"better than LiteLLM | {ours:.3f} ms{versus} | {ok(met)} |"
            )
    elif piece == "eval":
        rows.append(
            f"| eval harness overhead <= {r['target_ms']:g} ms per case run, model time excluded | "
            f"{r['worst_overhead_ms']:.3f} ms (worst of concurrency 1 and 8) | {ok(r['met'])} |"
        )
    return rows


def _row(label: str, s: dict[str, float]) -> str:
    return f"| {label} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | {s['mean_ms']:.3f} | {s['max_ms']:.3f} |"


def _overhead(o: dict[str, Any]) -> Iterator[str]:
    d = o["lambda_dynamodb"]
    yield "## (a) Gateway overhead per request, in process"
    yield ""
    yield (
        "One non-streaming chat completion to alias `echo` per call, sequentially; the echo provider's own "
        "time is measured and subtracted (it is a few microseconds). Overhead = total - provider time "
        "[- AWS service time]. `gateway_overhead.py` describes each set-up. No OpenTelemetry SDK is "
        "configured (`AIF_TRACES_EXPORTER` unset), so the spans are the API's non-recording ones."
    )
    yield ""
    yield "| set-up | p50 ms | p99 ms | mean ms | max ms |"
    yield "|---|---:|---:|---:|---:|"
    yield _row(
        f"`Gateway.handle`, in-memory stores ({o['core']['requests']} requests)", o["core"]["overhead"]
    )
    yield _row(
        f"`lambda_handler` (Powertools logger, EMF metrics, audit line), in-memory stores "
        f"({o['lambda_memory']['requests']})",
        o["lambda_memory"]["overhead"],
    )
    yield _row(
        f"buffered `lambda_handler` (DynamoDB stores, botocore clients; records written before it returns), "
        f"every DynamoDB call answered at once with a canned response ({o['lambda_canned']['requests']})",
        o["lambda_canned"]["overhead"],
    )
    if "server_canned" in o:
        yield _row(
            f"deployed server path (`Gateway.handle` as `lambda_server` builds it: DynamoDB stores, records "
            f"written after the response), every DynamoDB call answered at once with a canned response "
            f"({o['server_canned']['requests']})",
            o["server_canned"]["overhead"],
        )
    yield _row(
        f"deployed server path, DynamoDB on moto, service time excluded ({d['burst']['requests']})",
        d["burst"]["overhead"],
    )
    yield _row("  the same, moto's service time alone (not DynamoDB's)", d["burst"]["aws_service_time"])
    apis = o.get("core_apis", {})
    labels = {
        "chat_completions": "`POST /v1/chat/completions`",
        "messages": "`POST /v1/messages` (Anthropic Messages API)",
        "responses": "`POST /v1/responses` (Responses API)",
    }
    for api, label in labels.items():
        if api in apis:
            yield _row(
                f"`Gateway.handle`, in-memory stores, the same request on {label} ({apis[api]['requests']})",
                apis[api]["overhead"],
            )
    yield _row(
        f"botocore client-side cost of the ledger write alone (`DynamoLedger.record`, answered without "
        f"network; {o['ledger_write_client']['requests']})",
        o["ledger_write_client"],
    )
    yield ""
    yield (
        "The canned-response rows are the hot path without store latency: the handler builds its "
        "DynamoDB stores and client from the environment as in Lambda (`make_client`: bounded retries "
        "and timeouts, client-side parameter validation off, since every request is built from typed "
        "records and DynamoDB validates anyway), and botocore serialises, signs and parses every call; "
        "only the service is replaced, at `before-send`. The buffered handler waits for the reservation "
        "and the record's `PutItem`; the deployed server path (the Lambda Web Adapter's server calls "
        "`Gateway.handle`) waits for the reservation only, while its usage-writer thread puts the record. "
        "Before each timed request of the DynamoDB rows the previous request's background work (record, "
        "settlement, cache refresh) is waited for, "
        "outside the timed span: in the deployed function a model call of hundreds of milliseconds "
        "separates one request's background write from the next request, and the echo model takes none "
        "(so the moto row would otherwise charge moto's in-process work for the previous request's writes "
        "to the next request). The background writes themselves are counted in (b). "
        "The moto row keeps botocore's client-side work (serialisation, SigV4 signing, parsing) in the "
        "overhead, as it is in Lambda, and takes out only the time between sending a request-path call's "
        "signed request and having the response (a background refresh started during the request is not "
        "taken out: it competes for the interpreter, as it would in Lambda). moto's service time grows "
        "with the table and means nothing for DynamoDB; "
        "the cyclic garbage collector is paused during that loop so that collections of moto's garbage do "
        "not land in the gateway's figures (the in-memory set-ups keep it on). The last row isolates what "
        "the record's write costs on our side, with the same client as deployed: botocore "
        "serialises and signs the `PutItem` request and parses the answer, with no service "
        "behind it."
    )
    yield ""
    yield "## (b) AWS calls per request: on the request path and in the background"
    yield ""
    yield (
        "The deployed server path (`Gateway.handle` on the gateway `lambda_server` builds, DynamoDB on "
        "moto). Counted with botocore `before-call` hooks on every client the gateway creates, by "
        "calling thread: a call on one of the gateway's `aif-refresh` threads (cache refreshes, gate "
        "settlements) or on its `aif-usage-writer` thread (the usage record, written after the response) "
        "is background work the request does not wait for; any other call is on the request path, and the "
        "request waits for it. Neither column counts the model call (the echo provider makes none; with "
        "Bedrock, Converse is one more)."
    )
    yield ""
    yield (
        "| phase | requests | req/s | request-path calls by operation | request-path calls per request "
        "| requests by request-path calls | requests with more than 1 | background calls |"
    )
    yield "|---|---:|---:|---|---:|---|---:|---|"
    idle = d["after_idle"]
    for label, r in (
        ("first request of a fresh execution environment", d["first_request"]),
        (f"back to back, {d['burst']['seconds']} s", d["burst"]),
        (f"steady rate, {d['paced']['seconds']} s", d["paced"]),
        (f"first request after {idle['idle_s']:.0f} s idle (> 2x the key TTL; simulated)", idle),
    ):
        rps = f"{r['rps']:.0f}" if "rps" in r else "-"
        yield (
            f"| {label} | {r['requests']} | {rps} | {_ops(r['aws_calls'])} | "
            f"{r['aws_calls_per_request']:.3f} | {_histogram(r['requests_by_aws_calls'])} | "
            f"{r['requests_over_one_call']} | {_ops(r['background_calls'])} |"
        )
    yield ""
    yield (
        "Every request makes one synchronous `UpdateItem`: its reservation on the feature's gate, before "
        "the model call. Its usage record (`PutItem`) and the reservation's settlement (`UpdateItem`, or "
        "folded into the next reservation) are written in the background after the response. The key "
        "record is cached per execution environment for `key_cache_ttl_s` "
        "(30 s) and the feature's usage snapshot for `usage_snapshot_ttl_s` (5 s). A request that finds "
        "an entry past its TTL but younger than twice it is still decided on it and hands the re-read "
        "(`GetItem` or `BatchGetItem`) to a background thread, so in steady traffic no request waits for "
        "a read: the background reads come to at most one per TTL per key and per feature and "
        "environment, whatever the request rate. Only two kinds of request make more than one "
        "synchronous call: the first request of an execution environment (`GetItem`, `BatchGetItem`, "
        "`UpdateItem`), and a request that finds an entry older than twice its TTL, which is "
        "not trusted and is re-read on the request path: after more than 10 s of idleness the usage "
        "snapshot (2 calls), after more than 60 s the key record too (3 calls, the last row; the idle gap "
        "is simulated by moving the caches' clock forward; the requests right after those: "
        f"{_histogram(idle['next_request_by_aws_calls'])} call). With the echo provider the model call "
        "takes no time, so a background refresh may still be running when the next request starts; the "
        "counts tell calls apart by thread, not by time. The caches trade reads for staleness: a revoked "
        "key keeps working for at most two key TTLs (60 s), and other environments' spend is seen at "
        "most two snapshot TTLs (10 s) late, about one in steady traffic."
    )
    yield ""


def _histogram(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} with {calls}" for calls, n in counts.items())


def _ops(calls: dict[str, int]) -> str:
    return ", ".join(f"{k.split(':', 1)[1]} x{v}" for k, v in calls.items()) or "none"


# The cold import with Powertools' Tracer (X-Ray SDK) against the OpenTelemetry version that replaced it,
# as deployed: the last commit with the X-Ray SDK and its own cold_import.py lambda path, run alternately
# with this version's (21 runs each, so both saw the same load), process CPU and wall medians in ms.
XRAY_SDK_BASELINE = {
    "commit": "0c2aa28",
    "measured": "2026-12-03 12:36 UTC, load average 2.4 on the 2 cores",
    "xray_cpu_ms": 224,
    "xray_wall_ms": 232,
    "otel_cpu_ms": 173,
    "otel_wall_ms": 182,
}


def _import(r: dict[str, Any]) -> Iterator[str]:
    yield "## (c) Cold import of `aif_gateway.handler`"
    yield ""
    yield (
        f"A fresh interpreter per repeat ({r['repeats']} repeats, bytecode compiled), timing "
        "`import aif_gateway.handler` alone (interpreter start-up excluded)."
    )
    yield ""
    yield "| environment | median ms | min ms | max ms | CPU median ms |"
    yield "|---|---:|---:|---:|---:|"
    for label, key in (
        ("as deployed: Lambda variables, X-Ray OTLP exporter built, only asset, runtime and layer", "lambda"),
        ("Lambda variables, X-Ray OTLP exporter built, whole project venv importable", "project_venv"),
        ("whole project venv, AIF_TRACES_EXPORTER=none (no OpenTelemetry SDK loaded)", "tracing_off"),
    ):
        s = r[key]
        yield (
            f"| {label} | {s['median_ms']:.0f} | {s['min_ms']:.0f} | {s['max_ms']:.0f} | "
            f"{s['cpu_median_ms']:.0f} |"
        )
    yield ""
    slow = ", ".join(f"{name} {ms:.0f} ms" for name, ms in r["slowest_imports_lambda"])
    venv = ", ".join(f"{name} {ms:.0f} ms" for name, ms in r["slowest_imports_project_venv"])
    yield (
        "The deployed function can import only its asset (`aif_gateway` and the OpenTelemetry API and "
        "SDK it ships), the runtime's boto3 and the Powertools layer; `cold_import.py` reproduces that "
        "path with `python -S` and links to exactly those files. The first row includes loading the "
        "OpenTelemetry SDK and building the SigV4 X-Ray OTLP exporter (`trace_export.configure`), as the "
        "handler does at import (botocore, which signs the exports, loads with the first export: the "
        "gateway needs it for its first request anyway)."
    )
    yield ""
    b = XRAY_SDK_BASELINE
    yield (
        "X-Ray SDK before, OpenTelemetry after: the as-deployed import with Powertools' Tracer on the "
        f"X-Ray SDK (commit {b['commit']}, its own `cold_import.py` path) and with the OpenTelemetry SDK and "
        f"X-Ray OTLP exporter, run alternately, 21 runs each ({b['measured']}): CPU median "
        f"{b['xray_cpu_ms']} ms before, {b['otel_cpu_ms']} ms after; wall median {b['xray_wall_ms']} ms "
        f"before, {b['otel_wall_ms']} ms after. The CPU time is the steadier figure on a shared machine: "
        "the wall time also counts waiting for a core."
    )
    yield ""
    yield (
        "Where the time goes, as deployed (own import time by top-level package, one `-X importtime` "
        f"run): {slow}."
    )
    yield ""
    yield f"The same in the project venv: {venv}."
    yield ""


def _synth(r: dict[str, Any]) -> Iterator[str]:
    yield "## (d) `make synth` wall time"
    yield ""
    if not r.get("ok"):
        yield f"`make synth` failed during the benchmark:\n\n```\n{r.get('error', '')}\n```\n"
        return
    yield "| run | seconds |"
    yield "|---|---:|"
    yield f"| cold (empty jsii package cache, no cdk.out) | {r['cold_s']:.1f} |"
    yield f"| warm (median of {len(r['warm_samples_s'])}) | {r['warm_s']:.1f} |"
    yield ""
    yield f"{r['templates']} template(s) in cdk.out; `.venv` and `node_modules` were already installed."
    yield ""


def _apis(a: dict[str, Any]) -> Iterator[str]:
    yield "## (e2) The Messages and Responses front doors over HTTP, vs LiteLLM"
    yield ""
    yield (
        f"`benchmarks/api_compare.py`: the same request on `/v1/chat/completions` (reference), "
        f"`/v1/messages` and `/v1/responses`, non-streaming, {a['requests_per_level']} requests per level, "
        f"one server at a time, same client as (e); LiteLLM {a.get('litellm_version') or '-'} with its "
        "mocked `echo` model. The in-process overhead of each front door is in (a)."
    )
    yield ""
    yield from api_compare.markdown(a)


def _compare(c: dict[str, Any]) -> Iterator[str]:
    servers = c["servers"]
    yield "## (e) `ai-factory serve` vs LiteLLM proxy, side by side"
    yield ""
    yield (
        f"One run, one server at a time, same client (`benchmarks/http_load.py`: a thread per connection, "
        f"persistent keep-alive `http.client` connections opened before the warm-up), same request bodies "
        f"(8 fixed chat-completion bodies, `model: echo`, in the same order), {c['requests_per_level']} "
        f"requests per level after {c['warmup_per_level']} warm-up requests. Latency is per request, from "
        "sending to having read the whole body. **Client and server share the same 2 cores**, so at "
        "8 and 32 concurrent requests the client's CPU (column client CPU) competes with the server's; "
        "server CPU per request is read from /proc for the server's whole process group."
    )
    yield ""
    yield from litellm_compare.markdown(c)
    yield ""
    yield (
        "Both servers stream `stream: true` chunk by chunk as it is produced (ai-factory: the unpaced echo "
        "model's tokens; LiteLLM: its mock's chunks). Latency here is to the last byte, so it compares "
        "total work; time to first token with a paced model is the streaming section below."
    )
    yield ""
    yield "What each server was doing:"
    yield ""
    if "ai-factory" in servers:
        s = servers["ai-factory"]
        yield (
            f"- **ai-factory** (ready {s['startup_s']:.1f} s after start; wrong key answers "
            f"{s['wrong_key_status']}): the real gateway (`aif_gateway.app.Gateway`) behind the "
            "standard-library HTTP server, alias `echo` on the offline echo provider; per request: key "
            "lookup (cached), model allow-list, budget and rate-limit check, pricing, usage/audit record "
            f"written to SQLite in a transaction. Set up with: `{s['how']}`."
        )
    if "litellm" in servers:
        s = servers["litellm"]
        yield (
            f"- **LiteLLM {c['litellm_version']}** proxy (ready {s['startup_s']:.1f} s after start; "
            f"wrong key answers {s['wrong_key_status']}: with no database its auth error path imports "
            "`prisma`, which `litellm[proxy]` does not install), installed only in "
            "`.bench/litellm-venv` from `benchmarks/litellm/requirements.txt`, configured by "
            "`benchmarks/litellm/config.yaml`: model `echo` = `openai/gpt-4o-mini` with "
            "`mock_response` (no provider call), master key, no database, uvicorn with 1 worker, "
            "default logging. Without a database LiteLLM has no virtual keys, so no per-key model "
            "lists, budgets, rate limits or spend logs: the closest feature set it supports is one "
            "shared master key, which is what it was measured with. It therefore does less per "
            "request than ai-factory (no usage record is written). "
            f"Started with: `{s['how']}`."
        )
    if "litellm-2w" in servers:
        yield (
            "- **litellm-2w**: the same LiteLLM with `--num_workers 2` (two uvicorn worker processes, one "
            "per core), since a single worker uses at most one core."
        )
    if "stub" in servers:
        yield (
            "- **stub**: `benchmarks/stub_server.py`, a bare standard-library HTTP/1.1 server answering a "
            "fixed completion without parsing or auth: the floor for any server on Python's `http.server`."
        )
    yield ""


def _shown_path(path: str) -> str:
    """Repo-relative when inside the repo, so the documented command works from any checkout."""
    p = Path(os.path.abspath(path))
    return p.relative_to(REPO).as_posix() if p.is_relative_to(REPO) else path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run, not for the doc)")
    parser.add_argument("--skip", nargs="*", choices=PIECES, default=[], help="pieces to leave out")
    parser.add_argument("--only", nargs="*", choices=PIECES, help="run just these pieces")
    parser.add_argument("--no-doc", action="store_true", help="print, do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    command = shlex.join([_shown_path(sys.executable), _shown_path(sys.argv[0]), *sys.argv[1:]])
    wanted = {p for p in (args.only or PIECES) if p not in args.skip}
    start = time.perf_counter()
    results: dict[str, Any] = {"machine": machine()}
    if "import" in wanted:
        print("cold import ...", file=sys.stderr, flush=True)
        results["import"] = cold_import.run(5 if args.quick else 11)
    if "overhead" in wanted:
        print("gateway overhead ...", file=sys.stderr, flush=True)
        results["overhead"] = run_overhead(args.quick)
    if "synth" in wanted:
        print("make synth ...", file=sys.stderr, flush=True)
        results["synth"] = synth_time.run(1 if args.quick else 2)
    if "scale" in wanted:
        print("synth scale ...", file=sys.stderr, flush=True)
        results["scale"] = synth_scale.run(synth_scale.SIZES, 1 if args.quick else 3)
    if "eval" in wanted:
        print("eval harness ...", file=sys.stderr, flush=True)
        results["eval"] = run_eval(args.quick)
    if "stream" in wanted:
        print("streaming: ai-factory serve vs LiteLLM ...", file=sys.stderr, flush=True)
        results["stream"] = stream_compare.run(
            requests=20 if args.quick else 60, rps_requests=100 if args.quick else 400
        )
    if "compare" in wanted:
        print("ai-factory serve vs LiteLLM ...", file=sys.stderr, flush=True)
        servers = (
            ["ai-factory", "litellm", "stub"]
            if args.quick
            else ["ai-factory", "litellm", "litellm-2w", "stub"]
        )
        results["compare"] = litellm_compare.run(
            requests=300 if args.quick else 2000, warmup=50 if args.quick else 200, servers=servers
        )
    if "apis" in wanted:
        print("messages and responses: ai-factory serve vs LiteLLM ...", file=sys.stderr, flush=True)
        results["apis"] = api_compare.run(
            requests=200 if args.quick else 1000, warmup=20 if args.quick else 100
        )
    results["seconds"] = time.perf_counter() - start
    results["machine"]["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    RAW.parent.mkdir(exist_ok=True)
    RAW.write_text(json.dumps(results, indent=2))
    previous = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    text = "\n".join(render(results, command, previous)).rstrip("\n") + "\n"
    if args.no_doc:
        print(text)
    else:
        DOC.write_text(text, encoding="utf-8")
        print(
            f"wrote {DOC.relative_to(REPO)} ({results['seconds']:.0f} s); raw results in {RAW}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
