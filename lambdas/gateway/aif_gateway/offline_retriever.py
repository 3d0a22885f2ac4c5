"""Knowledge bases in local mode: registrations in a folder and a deterministic, offline retriever.

``ai-factory serve`` (and ``ai-factory eval --target local``) answer ``POST /v1/retrieve`` and chat
``retrieval`` from ``<state>/knowledge/<name>/knowledge-base.json``: the record the SSM parameter holds in
AWS (``retrieval.KnowledgeBaseRecord``) plus ``"documents"``, a folder laid out like the S3 document
prefix (documents with their Bedrock ``<document>.metadata.json`` sidecars).

The retriever ranks paragraphs with BM25 (k1 1.2, b 0.75) over lowercase word tokens, ties broken by
document path and paragraph number, so the same question always gets the same passages; and it applies
the same Retrieve ``filter`` the gateway sends to Bedrock (``matches``), so the clearance filter is
exercised offline too. It checks wiring and retrieval assertions, not embedding quality.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contract import METADATA_SIDECAR_SUFFIX
from .records import StoreError
from .retrieval import KnowledgeBaseRecord, RetrieveRequest, RetrieveResult, access_filter, estimate_tokens

REGISTRATION_FILE = "knowledge-base.json"
DOCUMENT_SUFFIXES = (".txt", ".md")
K1, B = 1.2, 0.75
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def tokens(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def matches(condition: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """Whether ``metadata`` satisfies a Retrieve ``RetrievalFilter`` (the operators Bedrock documents).
    A missing attribute satisfies no comparison, as in Bedrock."""
    (op, arg), *rest = condition.items()
    if rest:
        raise ValueError(f"a filter has exactly one operator, got {sorted(condition)}")
    if op == "andAll":
        return all(matches(c, metadata) for c in arg)
    if op == "orAll":
        return any(matches(c, metadata) for c in arg)
    key, value = arg["key"], arg["value"]
    if key not in metadata:
        return op in ("notEquals", "notIn")
    have = metadata[key]
    comparisons = {
        "equals": lambda: have == value,
        "notEquals": lambda: have != value,
        "in": lambda: have in value,
        "notIn": lambda: have not in value,
        "greaterThan": lambda: _num(have) > value,
        "greaterThanOrEquals": lambda: _num(have) >= value,
        "lessThan": lambda: _num(have) < value,
        "lessThanOrEquals": lambda: _num(have) <= value,
        "startsWith": lambda: isinstance(have, str) and have.startswith(value),
        "stringContains": lambda: isinstance(have, str) and value in have,
        "listContains": lambda: isinstance(have, list) and value in have,
    }
    if op not in comparisons:
        raise ValueError(f"unsupported filter operator {op!r}")
    try:
        return bool(comparisons[op]())
    except TypeError:
        return False


def _num(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return float(value)


@dataclass(frozen=True)
class Chunk:
    path: str  # relative to the documents folder
    number: int  # paragraph number in the document
    text: str
    metadata: dict[str, Any]
    terms: Counter[str]


def load_chunks(folder: Path) -> list[Chunk]:
    """Every paragraph (blank-line separated) of every document under ``folder``, with its sidecar's
    ``metadataAttributes`` (none when the sidecar is missing: then no clearance filter matches it)."""
    chunks: list[Chunk] = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.endswith(METADATA_SIDECAR_SUFFIX):
            continue
        if path.suffix not in DOCUMENT_SUFFIXES:
            continue
        sidecar = path.with_name(path.name + METADATA_SIDECAR_SUFFIX)
        metadata: dict[str, Any] = {}
        if sidecar.is_file():
            metadata = dict(json.loads(sidecar.read_text(encoding="utf-8")).get("metadataAttributes") or {})
        relative = path.relative_to(folder).as_posix()
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if p.strip()]
        for i, text in enumerate(paragraphs):
            chunks.append(Chunk(relative, i, text, metadata, Counter(tokens(text))))
    return chunks


class OfflineRetriever:
    """BM25 over a knowledge base's local documents, filtered like Bedrock's Retrieve."""

    def __init__(self, documents: dict[str, Path]) -> None:
        self.documents = documents  # knowledge base name -> folder
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, list[Chunk]]] = {}

    def chunks(self, name: str) -> list[Chunk]:
        folder = self.documents[name]
        stamp = max((p.stat().st_mtime for p in folder.rglob("*")), default=0.0)
        with self._lock:
            cached = self._cache.get(name)
            if cached is None or cached[0] != stamp:
                cached = (stamp, load_chunks(folder))
                self._cache[name] = cached
        return cached[1]

    def retrieve(self, kb: KnowledgeBaseRecord, request: RetrieveRequest) -> RetrieveResult:
        condition = access_filter(request.clearance)
        chunks = [c for c in self.chunks(kb.name) if matches(condition, c.metadata)]
        query = set(tokens(request.query))
        if not chunks or not query:
            return RetrieveResult([], estimate_tokens(request.query), True)
        average = sum(sum(c.terms.values()) for c in chunks) / len(chunks)
        frequency = Counter(t for c in chunks for t in set(c.terms) if t in query)
        scored = []
        for chunk in chunks:
            length = sum(chunk.terms.values())
            score = 0.0
            for term in query:
                tf = chunk.terms.get(term, 0)
                if not tf:
                    continue
                idf = math.log(1 + (len(chunks) - frequency[term] + 0.5) / (frequency[term] + 0.5))
                score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average))
            if score > 0:
                scored.append((-score, chunk.path, chunk.number, chunk))
        scored.sort(key=lambda s: s[:3])
        base = f"local://{kb.name}/"
        passages = [
            {
                "text": chunk.text,
                "score": round(-negative, 6),
                "source": {"type": "LOCAL", "uri": base + chunk.path},
                "document_id": None,
                "metadata": {**chunk.metadata, "x-amz-bedrock-kb-source-uri": base + chunk.path},
            }
            for negative, _, _, chunk in scored[: request.top_k]
        ]
        return RetrieveResult(passages, estimate_tokens(request.query), True)


class LocalKnowledgeBases:
    """Registrations in ``<root>/<name>/knowledge-base.json`` (read on every call: local and small)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, name: str) -> KnowledgeBaseRecord | None:
        path = self.root / name / REGISTRATION_FILE
        if not path.is_file():
            return None
        try:
            return KnowledgeBaseRecord.from_json(path.read_text(encoding="utf-8"))
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"knowledge base registration {path} is not valid: {exc}") from exc

    def documents(self, name: str) -> Path:
        data = json.loads((self.root / name / REGISTRATION_FILE).read_text(encoding="utf-8"))
        folder = Path(data.get("documents") or self.root / name / "documents")
        return folder if folder.is_absolute() else (self.root / name / folder).resolve()


class LocalRetriever:
    """The ``Retriever`` of local mode: each registered knowledge base's folder, searched offline."""

    def __init__(self, directory: LocalKnowledgeBases) -> None:
        self.directory = directory
        self._offline = OfflineRetriever({})

    def retrieve(self, kb: KnowledgeBaseRecord, request: RetrieveRequest) -> RetrieveResult:
        self._offline.documents[kb.name] = self.directory.documents(kb.name)
        return self._offline.retrieve(kb, request)


def register_local(
    root: Path,
    name: str,
    documents: Path,
    allowed: list[str],
    classification: str,
    embedding_model: str = "echo-embed",
) -> Path:
    """Write ``<root>/<name>/knowledge-base.json`` (what ``ai-factory knowledge register`` does)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "schema": 1,
        "name": name,
        "knowledge_base_id": f"local-{name}",
        "allowed": allowed,
        "embedding_model": embedding_model,
        "embedding_input_price": 0.0,
        "region": None,
        "classification": classification,
        "documents": str(Path(documents).resolve()),
    }
    path = folder / REGISTRATION_FILE
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)  # atomic: a gateway reading it concurrently sees the old or the new file
    return path
