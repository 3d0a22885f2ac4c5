"""PII detectors: throughput of detect+mask, and precision/recall per kind on the labelled set, vs Presidio.

    .venv/bin/python benchmarks/pii_detectors.py                 # everything, writes its docs section
    .venv/bin/python benchmarks/pii_detectors.py --no-presidio --no-doc
    AWS_PROFILE=... .venv/bin/python benchmarks/pii_detectors.py --comprehend us-east-1   # in an account

Ours: ``aif_connector.pii.detect`` then ``aif_connector.masking.mask`` (hash mode) over a generated
corpus of connector-like records (JSON lines mixing PII and plain text), in this one process, after a
warm-up; MB/s counts the UTF-8 bytes of the records. Quality: precision and recall per kind on
``tests/data/pii_labelled.jsonl`` (a prediction counts when its kind matches and it overlaps a labelled
span not matched yet; the exact-boundary figures are given too).

Presidio: ``presidio-analyzer`` in its own venv (``.bench/presidio-venv``, created from
``benchmarks/presidio/requirements.txt``), with a *blank* spaCy English pipeline: no model is
downloaded, so only its pattern recognizers run, which is what the structured kinds compare. Its
country-specific recognizers for the kinds we cover (UK NINO, ES NIF/NIE, DE tax ID) are added for
English. This script runs itself in that venv (``--presidio-worker``), which prints Presidio's
findings and timings as JSON; scoring happens here, with the same rules as ours.

``--comprehend REGION`` (needs AWS credentials; about 1,000 Comprehend units, ~$0.10) also scores what
the connector masks with ``pii_detection="comprehend"``: the union of our findings and Amazon Comprehend
``DetectPiiEntities``'s (``aif_connector.pii.detect_comprehend``, English, minimum score 0.5), person
names above all (the issue's target: recall >= 0.8 at precision >= 0.9). Nothing offline can stand in for
it: moto's Comprehend answers a fixed set of entities whatever the text.

The section written to ``docs/benchmarks.md`` is ``pii-detectors`` (``doc_sections.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LABELLED = REPO / "tests" / "data" / "pii_labelled.jsonl"
BENCH_DIR = REPO / ".bench"
PRESIDIO_DIR = HERE / "presidio"
PRESIDIO_VENV = BENCH_DIR / "presidio-venv"
SECTION = "pii-detectors"

# Presidio entity -> our kind (only kinds both sides detect are compared for Presidio).
PRESIDIO_KINDS = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_SSN": "US_SSN",
    "UK_NINO": "UK_NINO",
    "DE_TAX_ID": "DE_TAX_ID",
    "ES_NIF": "ES_DNI",
    "ES_NIE": "ES_DNI",
    "PERSON": "PERSON_NAME",
}
STRUCTURED = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "IP_ADDRESS",
    "US_SSN",
    "UK_NINO",
    "DE_TAX_ID",
    "FR_NIR",
    "ES_DNI",
)


# ------------------------------------------------------------------------------------------ scoring

Span = tuple[str, int, int]  # kind, start, end


def load_labelled(path: Path = LABELLED) -> list[dict[str, Any]]:
    """The labelled records: ``{"id", "text", "spans": [{"kind","start","end"}], "note", "tags"}``."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def gold_spans(record: dict[str, Any]) -> list[Span]:
    return [(s["kind"], s["start"], s["end"]) for s in record["spans"]]


def match(gold: Sequence[Span], predicted: Sequence[Span], *, exact: bool = False) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) for one record.

    A prediction is a true positive when its kind equals that of a labelled span not matched yet and
    the two overlap (``exact``: same boundaries); each labelled span is matched at most once.
    """
    unmatched = list(gold)
    tp = 0
    for kind, start, end in predicted:
        for g in unmatched:
            same = (g[1], g[2]) == (start, end) if exact else start < g[2] and g[1] < end
            if g[0] == kind and same:
                unmatched.remove(g)
                tp += 1
                break
    return tp, len(predicted) - tp, len(unmatched)


def score(
    records: Sequence[dict[str, Any]],
    predictions: Sequence[Sequence[Span]],
    *,
    kinds: Iterable[str] | None = None,
    exact: bool = False,
) -> dict[str, dict[str, float]]:
    """Per kind and ``"ALL"``: tp, fp, fn, precision, recall (restricted to ``kinds`` when given)."""
    keep = set(kinds) if kinds is not None else None
    counts: dict[str, Counter[str]] = {}
    for record, predicted in zip(records, predictions, strict=True):
        gold = gold_spans(record)
        for kind in {k for k, _, _ in gold} | {k for k, _, _ in predicted}:
            if keep is not None and kind not in keep:
                continue
            tp, fp, fn = match(
                [g for g in gold if g[0] == kind], [p for p in predicted if p[0] == kind], exact=exact
            )
            c = counts.setdefault(kind, Counter())
            c.update(tp=tp, fp=fp, fn=fn)
    total: Counter[str] = Counter()
    for c in counts.values():
        total.update(c)
    out = {kind: _rates(c) for kind, c in sorted(counts.items())}
    out["ALL"] = _rates(total)
    return out


def _rates(c: Counter[str]) -> dict[str, float]:
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
    }


# ---------------------------------------------------------------------------------------- ours


def our_predictions(records: Sequence[dict[str, Any]]) -> list[list[Span]]:
    from aif_connector.pii import detect

    return [[(f.kind, f.start, f.end) for f in detect(r["text"])] for r in records]


def corpus(n: int, seed: int = 5) -> list[str]:
    """``n`` connector-like JSON records: about a third carry PII, the rest are plain business text."""
    rnd = random.Random(seed)
    labelled = [r["text"] for r in load_labelled()]
    filler = [
        "Customer reported that the delivery arrived two days late and the box was damaged.",
        "Upgrade to version 2.4.1 fixed the login issue; see ticket 48213 for details.",
        "Quarterly revenue grew 12% on 2024-03-31 with 1,204 new subscriptions.",
        "The warehouse in Rotterdam shipped order 77812 on 15.01.2024 via carrier DHL.",
        "Please review the attached contract and return it by Friday.",
    ]
    out = []
    for i in range(n):
        body = {
            "id": i,
            "created": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "status": rnd.choice(["open", "closed", "pending"]),
            "notes": rnd.choice(labelled) if rnd.random() < 0.35 else rnd.choice(filler),
            "comment": rnd.choice(filler),
        }
        out.append(json.dumps(body, ensure_ascii=False))
    return out


# The detector as it was before the rewrite for speed, frozen as the differential test's oracle.
REFERENCE = REPO / "tests" / "unit" / "pii_reference.py"


def _reference_detect() -> Any:
    """``detect`` of the frozen pre-rewrite detector, or None when the file is gone."""
    if not REFERENCE.exists():
        return None
    import importlib.util

    spec = importlib.util.spec_from_file_location("pii_reference", REFERENCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pii_reference"] = module
    spec.loader.exec_module(module)
    return module.detect


def throughput(records: Sequence[str], *, repeats: int = 3) -> dict[str, Any]:
    """detect + mask (hash) over ``records`` ``repeats`` times after one warm-up pass; best pass kept.

    When the frozen pre-rewrite detector is there, each pass of ours is followed by one of it on the
    same records (findings masked the same way), so both see the same load: ``before`` is its figures."""
    from aif_connector.masking import MaskingPolicy, mask
    from aif_connector.pii import detect

    policy = MaskingPolicy("hash", hmac_key=hashlib.sha256(b"benchmark").digest())
    size = sum(len(r.encode("utf-8")) for r in records)
    reference = _reference_detect()

    def one_pass(detector: Any = detect) -> tuple[float, float, int]:
        found = 0
        start, cpu_start = time.perf_counter(), time.thread_time()
        for record in records:
            findings = detector(record)
            found += len(findings)
            mask(record, findings, policy)
        return time.perf_counter() - start, time.thread_time() - cpu_start, found

    load_before = os.getloadavg()[0]
    one_pass()
    times, cpu_times, before_times, before_cpu = [], [], [], []
    found = 0
    for _ in range(repeats):
        seconds, cpu_seconds, found = one_pass()
        times.append(seconds)
        cpu_times.append(cpu_seconds)
        if reference is not None:
            seconds, cpu_seconds, _ = one_pass(reference)
            before_times.append(seconds)
            before_cpu.append(cpu_seconds)
    detect_only = time.perf_counter()
    for record in records:
        detect(record)
    detect_seconds = time.perf_counter() - detect_only
    best = min(times)
    return {
        "records": len(records),
        "bytes": size,
        "findings_per_pass": found,
        "seconds_best": round(best, 3),
        "seconds_all": [round(t, 3) for t in times],
        "mb_per_s": round(size / best / 1e6, 2),
        "records_per_s": round(len(records) / best),
        "detect_only_mb_per_s": round(size / detect_seconds / 1e6, 2),
        # This thread's CPU time: what other load on the machine changes least.
        "cpu_mb_per_s": round(size / min(cpu_times) / 1e6, 2),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "before": {
            "mb_per_s": round(size / min(before_times) / 1e6, 2),
            "cpu_mb_per_s": round(size / min(before_cpu) / 1e6, 2),
        }
        if before_times
        else None,
    }


# ------------------------------------------------------------------------------------ Presidio


def ensure_presidio_venv() -> Path:
    """Create ``.bench/presidio-venv`` from the pinned requirements when missing or when the pins change."""
    requirements = PRESIDIO_DIR / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = PRESIDIO_VENV / ".requirements.sha256"
    python = PRESIDIO_VENV / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python
    print(f"creating {PRESIDIO_VENV} from {requirements} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PRESIDIO_VENV)], check=True, timeout=300)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True, timeout=900)
    stamp.write_text(digest + "\n")
    return python


def presidio(records: Sequence[dict[str, Any]], texts: Sequence[str]) -> dict[str, Any]:
    """Run the worker in the Presidio venv: its predictions on ``records``, its throughput on ``texts``."""
    python = ensure_presidio_venv()
    payload = json.dumps({"labelled": [r["text"] for r in records], "corpus": list(texts)})
    out = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--presidio-worker"],
        input=payload,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"presidio worker failed ({out.returncode}): {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _presidio_worker() -> None:  # pragma: no cover - runs only inside the Presidio venv
    """Inside the Presidio venv: read texts on stdin, print findings and timings as JSON."""
    import importlib.metadata

    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        DeTaxIdRecognizer,
        EsNieRecognizer,
        EsNifRecognizer,
        UkNinoRecognizer,
    )

    # Presidio's e-mail and URL recognizers call tldextract, which would try to download the public
    # suffix list: use the snapshot the package ships, offline.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())

    class BlankSpacy(SpacyNlpEngine):
        """spaCy's blank English pipeline (tokenizer only): no model to download, no NER."""

        def __init__(self) -> None:
            super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}])

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    data = json.loads(sys.stdin.read())
    started = time.perf_counter()
    engine = BlankSpacy()
    engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
    for cls in (UkNinoRecognizer, EsNifRecognizer, EsNieRecognizer, DeTaxIdRecognizer):
        registry.add_recognizer(cls(supported_language="en"))
    analyzer = AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])
    entities = sorted(PRESIDIO_KINDS)
    analyzer.analyze("warm up john@example.com", language="en", entities=entities)
    init_s = time.perf_counter() - started

    def spans(text: str) -> list[list[Any]]:
        results = analyzer.analyze(text, language="en", entities=entities)
        return [[PRESIDIO_KINDS[r.entity_type], r.start, r.end, r.score] for r in results]

    labelled = [spans(t) for t in data["labelled"]]
    corpus_texts = data["corpus"]
    for t in corpus_texts[: max(1, len(corpus_texts) // 10)]:  # warm-up
        analyzer.analyze(t, language="en", entities=entities)
    start = time.perf_counter()
    for t in corpus_texts:
        analyzer.analyze(t, language="en", entities=entities)
    seconds = time.perf_counter() - start
    size = sum(len(t.encode("utf-8")) for t in corpus_texts)
    json.dump(
        {
            "version": importlib.metadata.version("presidio-analyzer"),
            "spacy": spacy.__version__,
            "recognizers": sorted(r.name for r in registry.recognizers),
            "init_seconds": round(init_s, 2),
            "labelled": labelled,
            "throughput": {
                "records": len(corpus_texts),
                "bytes": size,
                "seconds": round(seconds, 3),
                "mb_per_s": round(size / seconds / 1e6, 3),
                "records_per_s": round(len(corpus_texts) / seconds),
            },
        },
        sys.stdout,
    )


def presidio_predictions(result: dict[str, Any], min_score: float) -> list[list[Span]]:
    """Presidio's findings above ``min_score``, overlaps resolved like ours (higher score, then longer)."""
    out = []
    for found in result["labelled"]:
        ranked = sorted((f for f in found if f[3] >= min_score), key=lambda f: (-f[3], -(f[2] - f[1]), f[1]))
        taken: list[Span] = []
        for kind, start, end, _ in ranked:
            if all(end <= s or start >= e for _, s, e in taken):
                taken.append((kind, start, end))
        out.append(sorted(taken, key=lambda s: s[1]))
    return out


# -------------------------------------------------------------------------------------- report


def run(*, n_records: int, with_presidio: bool) -> dict[str, Any]:
    records = load_labelled()
    ours = our_predictions(records)
    texts = corpus(n_records)
    result: dict[str, Any] = {
        "labelled_records": len(records),
        "labelled_spans": sum(len(r["spans"]) for r in records),
        "negative_records": sum(1 for r in records if not r["spans"]),
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "ours": {
            "overlap": score(records, ours),
            "exact": score(records, ours, exact=True),
            "structured": score(records, ours, kinds=STRUCTURED)["ALL"],
            "freetext_names": _subset_names(records, ours, "freetext"),
            "freetext_names_holdout": _subset_names(records, ours, "freetext", "holdout"),
            "throughput": throughput(texts),
        },
    }
    if with_presidio:
        p = presidio(records, texts)
        compared = sorted({PRESIDIO_KINDS[e] for e in PRESIDIO_KINDS} & set(STRUCTURED))
        preds = presidio_predictions(p, 0.0)
        preds_default = presidio_predictions(p, 0.5)
        result["presidio"] = {
            key: p[key] for key in ("version", "spacy", "recognizers", "init_seconds", "throughput")
        }
        result["presidio"]["compared_kinds"] = compared
        result["presidio"]["overlap"] = score(records, preds, kinds=compared)
        result["presidio"]["overlap_score_0_5"] = score(records, preds_default, kinds=compared)
        result["ours"]["compared"] = score(records, ours, kinds=compared)
    return result


def comprehend_scores(
    records: Sequence[dict[str, Any]], ours: Sequence[Sequence[Span]], client: Any, language_code: str = "en"
) -> dict[str, Any]:
    """Precision/recall of what the connector masks with Comprehend on (our findings plus Comprehend's),
    per kind, and of Comprehend's person names alone; ``client`` is a ``comprehend`` client."""
    from aif_connector.pii import detect_comprehend

    found = detect_comprehend([r["text"] for r in records], client=client, language_code=language_code)
    theirs = [[(f.kind, f.start, f.end) for f in findings] for findings in found]
    union = [[*a, *(p for p in b if p not in a)] for a, b in zip(ours, theirs, strict=True)]
    return {
        "union": score(records, union),
        "comprehend_names": score(records, theirs, kinds=["PERSON_NAME"])["ALL"],
        "freetext_names": _subset_names(records, union, "freetext"),
    }


def _subset_names(
    records: Sequence[dict[str, Any]], predictions: Sequence[Sequence[Span]], *tags: str
) -> dict[str, float]:
    """Person-name precision/recall on the records carrying every tag in ``tags``."""
    keep = [i for i, r in enumerate(records) if set(tags) <= set(r.get("tags", []))]
    subset = [records[i] for i in keep]
    return score(subset, [predictions[i] for i in keep], kinds=["PERSON_NAME"])["ALL"]


def _comprehend_lines(c: dict[str, Any] | None) -> Iterator[str]:
    if c is None:
        yield (
            'Amazon Comprehend (`pii_detection="comprehend"`) is not measured in this run: the only '
            "Comprehend this machine can reach is moto's, which returns a fixed answer whatever the text, so "
            "any figure would describe moto. In an account: `--comprehend REGION`."
        )
        yield ""
        return
    names, union, free = c["comprehend_names"], c["union"], c["freetext_names"]
    yield 'With Amazon Comprehend on (`pii_detection="comprehend"`: our findings plus Comprehend\'s):'
    yield ""
    yield "| what | precision | recall |"
    yield "|---|---:|---:|"
    yield f"| all kinds, union | {_pct(union['ALL']['precision'])} | {_pct(union['ALL']['recall'])} |"
    if "PERSON_NAME" in union:
        person = union["PERSON_NAME"]
        yield f"| person names, union | {_pct(person['precision'])} | {_pct(person['recall'])} |"
    yield f"| person names without a cue word, union | {_pct(free['precision'])} | {_pct(free['recall'])} |"
    yield f"| person names, Comprehend alone | {_pct(names['precision'])} | {_pct(names['recall'])} |"
    yield ""


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def markdown(r: dict[str, Any], command: str) -> Iterator[str]:
    ours = r["ours"]
    t = ours["throughput"]
    yield "## PII detectors: throughput and precision/recall"
    yield ""
    yield (
        f"Command: `{command}`. Labelled set `tests/data/pii_labelled.jsonl`: {r['labelled_records']} "
        f"records, {r['labelled_spans']} labelled spans, {r['negative_records']} records with none "
        "(tricky negatives: order numbers, dates, versions, Luhn-failing card-like numbers, IBANs with a "
        "bad checksum, invalid IPs, product codes). A prediction counts when its kind matches a labelled "
        "span it overlaps (each span matched once); exact = same boundaries too."
    )
    yield ""
    yield "| kind | labelled | TP | FP | FN | precision | recall | exact precision | exact recall |"
    yield "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for kind, s in ours["overlap"].items():
        e = ours["exact"][kind]
        label = "**all kinds**" if kind == "ALL" else f"`{kind}`"
        yield (
            f"| {label} | {s['tp'] + s['fn']} | {s['tp']} | {s['fp']} | {s['fn']} | {_pct(s['precision'])} | "
            f"{_pct(s['recall'])} | {_pct(e['precision'])} | {_pct(e['recall'])} |"
        )
    st = ours["structured"]
    yield (
        f"| structured kinds (all but names) | {st['tp'] + st['fn']} | {st['tp']} | {st['fp']} | "
        f"{st['fn']} | "
        f"{_pct(st['precision'])} | {_pct(st['recall'])} | | |"
    )
    ft, fh = ours["freetext_names"], ours["freetext_names_holdout"]
    yield (
        f"| person names without a cue word (tag `freetext`, {ft['tp'] + ft['fn']} names in 9 languages, "
        f"negatives included) | {ft['tp'] + ft['fn']} | {ft['tp']} | {ft['fp']} | {ft['fn']} | "
        f"{_pct(ft['precision'])} | {_pct(ft['recall'])} | | |"
    )
    yield (
        f"| of which `holdout` (names outside the given-name list) | {fh['tp'] + fh['fn']} | {fh['tp']} | "
        f"{fh['fp']} | {fh['fn']} | {_pct(fh['precision'])} | {_pct(fh['recall'])} | | |"
    )
    yield ""
    yield from _comprehend_lines(r.get("comprehend"))
    yield (
        f"Throughput of `detect` + `mask` (hash mode), one process, {r['nproc']} cores, "
        f"Python {r['python']}: "
        f"{t['records']} generated JSON records ({t['bytes'] / 1e6:.2f} MB, about a third with PII, "
        f"{t['findings_per_pass']} findings per pass), best of {len(t['seconds_all'])} passes after a "
        f"warm-up: **{t['mb_per_s']} MB/s, {t['records_per_s']} records/s** wall clock (detect alone "
        f"{t['detect_only_mb_per_s']} MB/s); by this thread's CPU time {t['cpu_mb_per_s']} MB/s. "
        f"1-minute load average {t['load_before']:.1f} before and {t['load_after']:.1f} after, on "
        f"{r['nproc']} cores shared with other work: above about {r['nproc']} the wall-clock figure "
        "drops with the load, the CPU-time one much less."
    )
    b = t.get("before")
    if b:
        yield ""
        yield (
            "Before the rewrite for speed (the frozen copy in `tests/unit/pii_reference.py`, "
            "which finds exactly the same spans, timed in alternate passes with ours in this run): "
            f"{b['mb_per_s']} MB/s wall clock, {b['cpu_mb_per_s']} MB/s by CPU time; ours is "
            f"{t['cpu_mb_per_s'] / b['cpu_mb_per_s']:.1f}x by CPU time."
        )
    p = r.get("presidio")
    if not p:
        kept = r.get("presidio_kept")
        if kept:
            yield ""
            yield from kept
        return
    pt = p["throughput"]
    yield ""
    yield (f"### Presidio {p['version']} (pattern recognizers, blank spaCy {p['spacy']} English pipeline)")
    yield ""
    yield (
        "Same labelled set and scoring, on the kinds both detect: "
        + ", ".join(f"`{k}`" for k in p["compared_kinds"])
        + " (Presidio has no French NIR recognizer; names need an NER model, which a blank pipeline "
        "does not have). Presidio's findings at any score, and at its usual 0.5 threshold; ours at any "
        "confidence. Throughput: `AnalyzerEngine.analyze` alone (no anonymizer) on the same corpus, "
        "same machine, after a warm-up."
    )
    yield ""
    yield (
        "| kind | labelled | ours P | ours R | Presidio P | Presidio R "
        "| Presidio P (score >= 0.5) | Presidio R (score >= 0.5) |"
    )
    yield "|---|---:|---:|---:|---:|---:|---:|---:|"
    for kind, s in p["overlap"].items():
        o = r["ours"]["compared"].get(kind, {"precision": 1.0, "recall": 1.0})
        d = p["overlap_score_0_5"].get(kind, {"precision": 1.0, "recall": 1.0})
        label = "**compared kinds**" if kind == "ALL" else f"`{kind}`"
        yield (
            f"| {label} | {s['tp'] + s['fn']} | {_pct(o['precision'])} | {_pct(o['recall'])} | "
            f"{_pct(s['precision'])} | {_pct(s['recall'])} | {_pct(d['precision'])} | {_pct(d['recall'])} |"
        )
    yield ""
    ratio = t["mb_per_s"] / pt["mb_per_s"] if pt["mb_per_s"] else float("inf")
    yield (
        f"| throughput | MB/s | records/s |\n|---|---:|---:|\n"
        f"| ours, detect + mask | {t['mb_per_s']} | {t['records_per_s']} |\n"
        f"| Presidio, analyze only | {pt['mb_per_s']} | {pt['records_per_s']} |\n\n"
        f"Ours is {ratio:.1f}x Presidio's throughput. Presidio's engine set-up took {p['init_seconds']} s."
    )


def _kept_presidio() -> list[str]:
    """The Presidio subsection of the section now in docs/benchmarks.md, for a run without Presidio.

    Presidio's figures do not depend on our detector, and measuring them takes minutes of a core:
    ``--no-presidio`` keeps them, marked as kept, minus the lines that compare them with our throughput
    of that earlier run (our figures of this run are above them)."""
    sys.path.insert(0, str(HERE))
    import doc_sections

    doc = doc_sections.DOC.read_text(encoding="utf-8") if doc_sections.DOC.exists() else ""
    current = doc_sections.sections(doc).get(SECTION, "")
    if "### Presidio" not in current:
        return []
    kept = current[current.index("### Presidio") :].splitlines()[:-1]  # without the end marker
    kept = [
        line
        for line in kept
        if not line.startswith(("| ours, detect + mask", "Ours is ", "_Kept from an earlier run"))
    ]
    note = (
        "_Kept from an earlier run (this one ran with `--no-presidio`): Presidio's figures below are "
        "from that run; compare our throughput above with its analyze-only figure with the load of "
        "each run in mind._"
    )
    return [kept[0], "", note, *kept[1:]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="generated records for throughput")
    parser.add_argument("--no-presidio", action="store_true")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--presidio-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--comprehend", metavar="REGION", help="also score Amazon Comprehend in REGION (AWS credentials)"
    )
    args = parser.parse_args(argv)
    if args.presidio_worker:
        _presidio_worker()
        return 0
    result = run(n_records=args.records, with_presidio=not args.no_presidio)
    if args.comprehend:
        import boto3

        records = load_labelled()
        client = boto3.client("comprehend", region_name=args.comprehend)
        result["comprehend"] = comprehend_scores(records, our_predictions(records), client)
    if args.no_presidio and not args.no_doc:
        result["presidio_kept"] = _kept_presidio()
    BENCH_DIR.mkdir(exist_ok=True)
    (BENCH_DIR / "pii_detectors.json").write_text(json.dumps(result, indent=2))
    command = " ".join([".venv/bin/python", "benchmarks/pii_detectors.py", *(argv or sys.argv[1:])])
    text = "\n".join(markdown(result, command))
    print(text)
    if not args.no_doc:
        sys.path.insert(0, str(HERE))
        import doc_sections

        doc_sections.write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
