"""Data connector throughput end to end, in one process: MB/s and records/s of ``Connector.process``.

    .venv/bin/python benchmarks/connector_throughput.py                  # writes its docs section
    .venv/bin/python benchmarks/connector_throughput.py --records 2000 --no-doc

The real ``aif_connector.connector.Connector`` (the code the connector Lambda runs) processes generated
support-ticket files that sit in a raw bucket: JSON lines and the same records as CSV, masking mode
``hash`` (and one JSON-lines run with ``redact``). Each run is one ``process()`` call on a fresh object:
GetObject, parse and validate, detect and mask PII in every string column, write the curated JSON lines,
register the partition in Glue, write the OpenLineage event and the EMF metrics (to memory).

S3 and Glue are moto, in this process: moto's latency is not the services', so the time each AWS call
spends in moto is measured with botocore hooks (``before-send``, registered first so it runs before
moto answers, to ``needs-retry``, when the response is in and not yet parsed) and taken out in the
"connector's own work" figures. botocore's client-side work (validation, serialisation, signing,
parsing) stays in, as it would in Lambda. The detect+mask-only figure (no parsing, no JSON output, no
AWS) is given for reference; ``benchmarks/pii_detectors.py`` measures that part in detail.

Peak memory: the process's peak RSS (``getrusage``; it includes moto, which keeps every object it is
sent in this process) and, in a separate untimed run under ``tracemalloc``, the peak of Python
allocations during one ``process()`` call above what was allocated before it (this includes moto's
copy of the curated output).

The section written to ``docs/benchmarks.md`` is ``connector-throughput`` (``doc_sections.py``).
"""

from __future__ import annotations

import argparse
import csv
import gc
import hashlib
import io
import json
import os
import platform
import random
import resource
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# moto and the SDK must never reach AWS from here: fake credentials and a fixed region, set before
# boto3 is imported.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)

import boto3
from aif_connector.connector import Connector, ConnectorSettings, masker_from
from aif_connector.masking import MaskingPolicy
from aif_connector.records import Column, DatasetSpec, parse_file
from moto import mock_aws

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BENCH_DIR = REPO / ".bench"
SECTION = "connector-throughput"
REGION = "us-east-1"
RAW, CURATED, QUARANTINE, LINEAGE = "bench-raw", "bench-curated", "bench-quarantine", "bench-lineage"
DATABASE, TABLE = "support", "tickets"
HMAC_KEY = hashlib.sha256(b"connector-throughput").digest()
SPEC = DatasetSpec(
    name="tickets",
    database=DATABASE,
    table=TABLE,
    columns=(
        Column("ticket_id", "bigint", required=True),
        Column("customer", "string", pii=True),
        Column("subject", "string"),
        Column("body", "string"),
        Column("amount", "double"),
        Column("opened", "date"),
        Column("channel", "string", masking="none"),
    ),
    masking="hash",
    classification="confidential",
)
LAMBDA_MEMORY_MB = 1024  # the DataConnector construct's default memory_size


# ---------------------------------------------------------------------------------------- the data

FIRST = ["Maria", "James", "Aisha", "Chen", "Olivia", "Lukas", "Sofia", "Mateo", "Priya", "Noah", "Emma"]
LAST = ["Garcia", "Smith", "Khan", "Wei", "Johnson", "Muller", "Rossi", "Silva", "Patel", "Brown", "Dubois"]
SUBJECTS = [
    "Refund request",
    "Login problem",
    "Late delivery",
    "Billing question",
    "Change of address",
    "Damaged item",
    "Subscription cancellation",
]
PLAIN = [
    "The parcel arrived two days late and the box was damaged on one side.",
    "After the update to version 3.2.1 the app logs me out every few minutes.",
    "Order 558213 was shipped on 2026-10-14 but tracking has not moved since.",
    "I was charged 49.99 instead of 39.99 for the monthly plan this cycle.",
    "Please cancel the add-on I ordered by mistake last week.",
    "The invoice for September lists an item I never received.",
    "Support chat closed before my question was answered, ticket 77120.",
]


def _card(rnd: random.Random) -> str:
    """A Luhn-valid 16-digit Visa-style number, grouped in fours."""
    digits = [4] + [rnd.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):  # the check digit will sit to the right of these
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return " ".join(s[i : i + 4] for i in range(0, 16, 4))


def _phone(rnd: random.Random) -> str:
    return rnd.choice(
        [
            f"+44 20 7946 {rnd.randrange(10000):04d}",
            f"+1 415 555 {rnd.randrange(10000):04d}",
            f"(212) 555-{rnd.randrange(10000):04d}",
            f"+49 30 {rnd.randrange(1000000, 9999999)}",
        ]
    )


def _pii_sentence(rnd: random.Random, first: str, last: str) -> str:
    other = f"{rnd.choice(FIRST)} {rnd.choice(LAST)}"
    return rnd.choice(
        [
            f"You can reach me at {first.lower()}.{last.lower()}@example.com any time.",
            f"Please call me back on {_phone(rnd)} after 5pm.",
            f"My card {_card(rnd)} was charged twice for the same order.",
            f"I already spoke with {other} from your team about this.",  # no cue: not detected
            f"Your agent Ms. {rnd.choice(LAST)} promised a call back.",
            f"Send the replacement to {other}, my colleague, email {first[0].lower()}{last.lower()}"
            "@mail.test.",
            f"The refund should go to the card ending {_card(rnd)[-4:]}, phone {_phone(rnd)}.",
        ]
    )


def tickets(n: int, seed: int = 5) -> list[dict[str, Any]]:
    """``n`` support tickets; three quarters of the bodies carry one or two PII items in free text and
    two in five end with a signed name."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        parts = [rnd.choice(PLAIN)]
        for _ in range(rnd.choice([0, 1, 1, 2])):
            parts.insert(rnd.randrange(len(parts) + 1), _pii_sentence(rnd, first, last))
        if rnd.random() < 0.3:
            parts.append(rnd.choice(PLAIN))
        if rnd.random() < 0.4:  # a sign-off: the context the name detector keys on
            parts.append(f"Thanks, {first} {last}")
        out.append(
            {
                "ticket_id": 100000 + i,
                "customer": f"{first} {last}",
                "subject": rnd.choice(SUBJECTS),
                "body": " ".join(parts),
                "amount": round(rnd.uniform(5, 500), 2),
                "opened": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}",
                "channel": rnd.choice(["email", "web", "phone", "chat"]),
            }
        )
    return out


def as_jsonl(records: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def as_csv(records: Sequence[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(SPEC.column_names), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue().encode("utf-8")


# ---------------------------------------------------------------------------------- AWS on moto


class ServiceTimeMeter:
    """AWS calls by operation and the time moto spends answering them (``before-send`` to ``needs-retry``).

    Single-threaded: the connector makes its calls one after another on the calling thread.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # this thread's CPU time in moto (unaffected by other load)
        self._sent_at: float | None = None
        self._cpu_at = 0.0

    def register(self, events: Any) -> None:
        events.register("before-call", self.count)
        # First, so it runs before moto's own before-send hook answers the request.
        events.register_first("before-send", self.sent)
        events.register("needs-retry", self.answered)

    def count(self, event_name: str, **kwargs: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        self.calls[f"{service}:{operation}"] += 1

    def sent(self, **kwargs: Any) -> None:
        self._sent_at = time.perf_counter()
        self._cpu_at = time.thread_time()

    def answered(self, **kwargs: Any) -> None:
        if self._sent_at is not None:
            self.seconds += time.perf_counter() - self._sent_at
            self.cpu_seconds += time.thread_time() - self._cpu_at
            self._sent_at = None


def make_aws() -> tuple[Any, Any]:
    """S3 buckets (raw zone versioned, as deployed) and the Glue database and table, on moto."""
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in (RAW, CURATED, QUARANTINE, LINEAGE):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=RAW, VersioningConfiguration={"Status": "Enabled"})
    glue = boto3.client("glue", region_name=REGION)
    glue.create_database(DatabaseInput={"Name": DATABASE})
    glue.create_table(
        DatabaseName=DATABASE,
        TableInput={
            "Name": TABLE,
            "PartitionKeys": [{"Name": "dt", "Type": "string"}],
            "StorageDescriptor": {
                "Columns": [{"Name": c.name, "Type": c.type} for c in SPEC.columns],
                "Location": f"s3://{CURATED}/support/tickets/",
                "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
                "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                "SerdeInfo": {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe"},
            },
        },
    )
    return s3, glue


def make_connector(s3: Any, glue: Any, masking: str, detector: Any = None) -> Connector:
    policies = {"hash": MaskingPolicy("hash", hmac_key=HMAC_KEY), "redact": MaskingPolicy("redact")}
    spec = DatasetSpec(**{**SPEC.__dict__, "masking": masking})
    settings = ConnectorSettings(
        spec=spec,
        raw_bucket=RAW,
        curated_bucket=CURATED,
        quarantine_bucket=QUARANTINE,
        lineage_bucket=LINEAGE,
        table_namespace=f"arn:aws:glue:{REGION}:123456789012",
        raw_prefix="incoming/",
        curated_prefix="support/tickets/",
        quarantine_prefix="support/tickets/",
        domain="support",
    )
    return Connector(
        settings,
        s3=s3,
        glue=glue,
        masker=masker_from(policies),
        policy_descriptions={m: p.describe() for m, p in policies.items()},
        metrics_out=io.StringIO(),
        clock=lambda: datetime(2026, 11, 3, 12, 0, tzinfo=UTC),
        detector=detector,
    )


# ------------------------------------------------------------------------------------ measuring

_RUNS = iter(range(1, 10**9))


def one_run(conn: Connector, s3: Any, meter: ServiceTimeMeter, body: bytes, suffix: str) -> dict[str, Any]:
    """Put ``body`` as a fresh raw object (untimed), then time one ``process()`` of it."""
    key = f"incoming/tickets-{next(_RUNS):04d}{suffix}"
    s3.put_object(Bucket=RAW, Key=key, Body=body)
    meter.calls.clear()
    meter.seconds = meter.cpu_seconds = 0.0
    gc.collect()
    start, cpu_start = time.perf_counter(), time.thread_time()
    result = conn.process(RAW, key)
    seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
    if result.status != "COMPLETE" or result.records_quarantined or result.file_quarantined:
        raise RuntimeError(f"unexpected run result: {result.to_dict()}")
    return {
        "seconds": seconds,
        "service_seconds": meter.seconds,
        "own_cpu_seconds": cpu - meter.cpu_seconds,
        "records": result.records_in,
        "findings": sum(result.findings_by_kind.values()),
        "findings_by_kind": dict(sorted(result.findings_by_kind.items())),
        "calls": dict(sorted(meter.calls.items())),
    }


def summarise(runs: Sequence[dict[str, Any]], size: int) -> dict[str, Any]:
    """Best run (other load on the machine only ever adds time): end to end, and with the AWS (moto)
    service time taken out."""
    best = min(runs, key=lambda r: r["seconds"])
    total = best["seconds"]
    own = best["seconds"] - best["service_seconds"]
    records = runs[0]["records"]
    return {
        "runs": len(runs),
        "bytes": size,
        "records": records,
        "findings": runs[0]["findings"],
        "findings_by_kind": runs[0]["findings_by_kind"],
        "aws_calls": runs[0]["calls"],
        "seconds_all": [round(r["seconds"], 3) for r in runs],
        "seconds": round(total, 3),
        "service_seconds": round(best["service_seconds"], 3),
        "mb_per_s": round(size / total / 1e6, 3),
        "records_per_s": round(records / total),
        "own_seconds": round(own, 3),
        "own_mb_per_s": round(size / own / 1e6, 3),
        "own_records_per_s": round(records / own),
        "own_cpu_seconds": round(min(r["own_cpu_seconds"] for r in runs), 3),
        "own_cpu_mb_per_s": round(size / min(r["own_cpu_seconds"] for r in runs) / 1e6, 3),
    }


def detect_mask_only(conn: Connector, body: bytes, key: str) -> dict[str, Any]:
    """Detect + mask over every masked string column of the parsed records (parsing untimed)."""
    parsed = parse_file(body, key, conn.spec)
    records = [r for _, r in parsed.records]
    masking = conn.spec.column_masking()
    pii_columns = {c.name for c in conn.spec.columns if c.pii}
    gc.collect()
    start, cpu_start = time.perf_counter(), time.thread_time()
    for record in records:
        for name, mode in masking.items():
            value = record.get(name)
            if not isinstance(value, str) or not value or mode == "none":
                continue
            if name in pii_columns:
                findings = [conn.finding("PII_COLUMN", 0, len(value), value, 1.0)]
            else:
                findings = conn.detector(value, kinds=conn.spec.pii_kinds)
            if findings:
                conn.masker(value, findings, mode)
    seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
    parse_start = time.perf_counter()
    parse_file(body, key, conn.spec)
    parse_seconds = time.perf_counter() - parse_start
    return {
        "seconds": round(seconds, 3),
        "mb_per_s": round(len(body) / seconds / 1e6, 3),
        "records_per_s": round(len(records) / seconds),
        "cpu_mb_per_s": round(len(body) / cpu / 1e6, 3),
        "parse_seconds": round(parse_seconds, 3),
        "parse_mb_per_s": round(len(body) / parse_seconds / 1e6, 2),
    }


def _reference_detect() -> Any:
    """``detect`` of the frozen pre-rewrite PII detector (``tests/unit/pii_reference.py``), if there."""
    sys.path.insert(0, str(HERE))
    from pii_detectors import _reference_detect as load

    return load()


def traced_peak(conn: Connector, s3: Any, body: bytes) -> int:
    """Peak Python allocations (bytes) during one ``process()``, above what was allocated before it."""
    key = f"incoming/tickets-traced-{next(_RUNS):04d}.jsonl"
    s3.put_object(Bucket=RAW, Key=key, Body=body)
    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    conn.process(RAW, key)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - before


def run(n_records: int, repeats: int) -> dict[str, Any]:
    records = tickets(n_records)
    jsonl, csv_body = as_jsonl(records), as_csv(records)
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "records": n_records,
        "jsonl_bytes": len(jsonl),
        "csv_bytes": len(csv_body),
    }
    out["load_before"] = os.getloadavg()[0]
    rss_start_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with mock_aws():
        s3, glue = make_aws()
        meter = ServiceTimeMeter()
        for client in (s3, glue):
            meter.register(client.meta.events)
        hashing, redacting = make_connector(s3, glue, "hash"), make_connector(s3, glue, "redact")
        warm = as_jsonl(records[:200])
        for conn in (hashing, redacting):  # compiled patterns, the cached Glue table descriptor
            one_run(conn, s3, meter, warm, ".jsonl")
        out["jsonl_hash"] = summarise(
            [one_run(hashing, s3, meter, jsonl, ".jsonl") for _ in range(repeats)], len(jsonl)
        )
        out["csv_hash"] = summarise(
            [one_run(hashing, s3, meter, csv_body, ".csv") for _ in range(repeats)], len(csv_body)
        )
        out["jsonl_redact"] = summarise(
            [one_run(redacting, s3, meter, jsonl, ".jsonl") for _ in range(repeats)], len(jsonl)
        )
        out["detect_mask_only"] = min(
            (detect_mask_only(hashing, jsonl, "x.jsonl") for _ in range(repeats)), key=lambda d: d["seconds"]
        )
        before = _reference_detect()
        if before is not None:  # the same, with the detector as it was before the rewrite for speed
            conn = make_connector(s3, glue, "hash", detector=before)
            out["detect_mask_only_before"] = min(
                (detect_mask_only(conn, jsonl, "x.jsonl") for _ in range(repeats)), key=lambda d: d["seconds"]
            )
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out["rss_before_mb"] = round(rss_start_kb / 1024, 1)
        out["load_after"] = os.getloadavg()[0]
        out["traced_peak_mb"] = round(traced_peak(hashing, s3, jsonl) / 1e6, 1)
    return out


# ------------------------------------------------------------------------------------- reporting


def markdown(r: dict[str, Any], command: str) -> Iterator[str]:
    j, c, x, d = r["jsonl_hash"], r["csv_hash"], r["jsonl_redact"], r["detect_mask_only"]
    kinds = ", ".join(f"{k} {v}" for k, v in j["findings_by_kind"].items())
    calls = ", ".join(f"{k} {v}" for k, v in j["aws_calls"].items())
    yield "## Data connector throughput (one process)"
    yield ""
    yield (
        f"Command: `{command}`. Python {r['python']}, {r['cpus']} cores; everything runs in one process "
        "on one core. The real `aif_connector.connector.Connector` processes one raw object per run "
        "(GetObject, parse and validate, detect and mask PII in every string column, curated JSON lines "
        "PutObject, Glue `BatchCreatePartition`, OpenLineage event PutObject, EMF metrics), after a "
        f"warm-up run on a small file; each row is the best of {j['runs']} runs (other load on the "
        f"machine only adds time; 1-minute load average {r['load_before']:.1f} before the runs and "
        f"{r['load_after']:.1f} after, on 2 cores, so wall-clock figures are noisy here and the last "
        "column, from this thread's CPU time, is the steadier one). **S3 and Glue are moto, in process**: "
        "moto's latency is not the "
        "services', so the second pair of figures takes out the time moto spends answering each call "
        "(botocore `before-send` to `needs-retry`; botocore's own client-side work stays in)."
    )
    yield ""
    yield (
        f"Data: {r['records']} generated support tickets (fixed seed), JSON lines "
        f"{r['jsonl_bytes'] / 1e6:.2f} MB and the same records as CSV {r['csv_bytes'] / 1e6:.2f} MB; "
        "columns ticket_id, customer (declared `pii`, masked whole), subject, body (free text), "
        "amount, opened, channel (`masking: none`). Three quarters of the bodies carry one or two "
        "e-mail addresses, phone numbers, card numbers or names in free text, and two in five end with "
        f"a signed name; {j['findings']} findings per file ({kinds}; `PII_COLUMN` is the `customer` "
        "column). Names are found by their context (sign-offs, titles, salutations, `name:`) and, "
        'without a cue ("spoke with Maria Garcia"), as a known given name followed by a surname. '
        f"AWS calls per run: {calls}."
    )
    yield ""
    yield (
        "| run | MB/s end to end | records/s end to end | MB/s, moto time out | records/s, moto time out "
        "| s per file (moto part) | MB/s by CPU time, moto out |"
    )
    yield "|---|---:|---:|---:|---:|---:|---:|"
    for label, s in (
        ("JSON lines, hash", j),
        ("CSV, hash", c),
        ("JSON lines, redact", x),
    ):
        yield (
            f"| {label} | {s['mb_per_s']} | {s['records_per_s']} | **{s['own_mb_per_s']}** | "
            f"**{s['own_records_per_s']}** | {s['seconds']} ({s['service_seconds']}) | "
            f"{s['own_cpu_mb_per_s']} |"
        )
    yield (
        f"| reference: detect + mask only (JSON lines, hash; no parsing, output or AWS) | {d['mb_per_s']} | "
        f"{d['records_per_s']} | | | {d['seconds']} | {d['cpu_mb_per_s']} |"
    )
    b = r.get("detect_mask_only_before")
    if b:
        yield (
            "| the same with the PII detector as it was before the rewrite for speed (same "
            f"findings) | {b['mb_per_s']} | {b['records_per_s']} | | | {b['seconds']} | {b['cpu_mb_per_s']} |"
        )
    yield ""
    yield (
        "The CSV file holds the same records in fewer bytes, so compare it by records/s. "
        f"Parsing and validation alone: {d['parse_mb_per_s']} MB/s (JSON lines). "
        "Peak memory: process peak RSS "
        f"{r['peak_rss_mb']} MB after all runs (before them, with the interpreter and the libraries "
        f"loaded: {r['rss_before_mb']} MB; moto keeps every object written in this process); Python "
        f"allocations during one `process()` of the {r['jsonl_bytes'] / 1e6:.2f} MB JSON-lines file "
        f"(tracemalloc, separate untimed run): peak {r['traced_peak_mb']} MB above the start, moto's "
        "stored copy of the curated output included."
    )
    yield ""
    yield (
        f"Detection and masking take {j['own_cpu_mb_per_s'] / d['cpu_mb_per_s']:.0%} of the connector's "
        "own CPU time on the JSON-lines file (the reference row against the hash run), and it is one Python "
        "thread per object. Lambda gives a function CPU in proportion to its memory (1,769 MB is one "
        "full vCPU), "
        f"so at the construct's default of {LAMBDA_MEMORY_MB} MB expect roughly "
        f"{LAMBDA_MEMORY_MB / 1769:.2f} of the single-core rate above, less or more with the CPU model; "
        "a larger `memory_size` buys CPU up to one core, and more objects run as more concurrent "
        "invocations."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="generated tickets per file")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each kind (best kept)")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    result = run(args.records, args.repeats)
    BENCH_DIR.mkdir(exist_ok=True)
    (BENCH_DIR / "connector_throughput.json").write_text(json.dumps(result, indent=2))
    command = " ".join([".venv/bin/python", "benchmarks/connector_throughput.py", *(argv or sys.argv[1:])])
    text = "\n".join(markdown(result, command))
    print(text)
    if not args.no_doc:
        sys.path.insert(0, str(HERE))
        import doc_sections

        doc_sections.write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
