"""Grounding an answer in the knowledge bases a user may read, and the citations the page shows.

This is the one module that knows how the gateway exposes retrieval, so a change there is a change
here only:

* which knowledge bases a user may see: those whose dataset classification is at or below the user's
  clearance (``readable``). Each ``RagFeature`` indexes exactly one governed dataset, so this is
  document-level access at the granularity the factory classifies data; the gateway additionally
  checks that the assistant's feature may query each of them (its allow-list);
* retrieval: ``POST /v1/retrieve`` on each readable knowledge base (docs/rag.md, "The two-call
  pattern"), the best ``top_k`` passages overall become numbered sources in the system message;
* citations: the page renders ``Citation.to_json()``. When the gateway answers a chat completion with
  its own ``citations`` (retrieval inside a chat request: ``{index, text, score, source: {uri},
  metadata}``, on the first chunk of a stream), ``citations_from_answer`` maps them to the same shape.
  The assistant retrieves itself because a user may read several knowledge bases and a chat request
  names one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aif_gateway.contract import CLEARANCE_LEVELS, cleared_for

from .config import KnowledgeBase
from .identity import User

EXCERPT_CHARS = 400
CLASSIFICATION_KEY = "aif_classification"  # the chunk metadata the knowledge-base sync writes
SYSTEM_PROMPT = (
    "You are the company's assistant. Answer only from the numbered sources below and cite each fact "
    "as [n]. If the sources do not answer the question, say that you do not know."
)


class GatewayCaller(Protocol):
    def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Citation:
    """One numbered source of an answer."""

    index: int
    title: str
    uri: str | None
    excerpt: str
    knowledge_base: str
    classification: str
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "title": self.title,
            "uri": self.uri,
            "excerpt": self.excerpt,
            "knowledge_base": self.knowledge_base,
            "classification": self.classification,
            "score": self.score,
        }


def readable(user: User, knowledge_bases: tuple[KnowledgeBase, ...]) -> tuple[KnowledgeBase, ...]:
    """The knowledge bases whose classification ``user``'s clearance covers."""
    return tuple(kb for kb in knowledge_bases if cleared_for(user.clearance, kb.classification))


def retrieve(
    gateway: GatewayCaller, user: User, knowledge_bases: tuple[KnowledgeBase, ...], question: str, top_k: int
) -> list[Citation]:
    """The ``top_k`` best passages for ``question`` from the knowledge bases ``user`` may read."""
    scored: list[tuple[float, KnowledgeBase, dict[str, Any]]] = []
    for kb in readable(user, knowledge_bases):
        answer = gateway.post_json(
            "/retrieve", {"knowledge_base": kb.name, "query": question, "top_k": top_k}
        )
        for passage in answer.get("data") or []:
            if (
                isinstance(passage, dict)
                and isinstance(passage.get("text"), str)
                and _may_read(user, passage)
            ):
                score = passage.get("score")
                scored.append((float(score) if isinstance(score, int | float) else 0.0, kb, passage))
    scored.sort(key=lambda item: item[0], reverse=True)
    return [_citation(i + 1, kb, p) for i, (_, kb, p) in enumerate(scored[:top_k])]


def _may_read(user: User, passage: dict[str, Any]) -> bool:
    """Defence in depth: a passage whose chunk says it is classified above the user's clearance is
    dropped, whatever its knowledge base is registered as (the gateway filters by the feature's
    clearance, which may be higher than this user's)."""
    metadata = passage.get("metadata")
    level = metadata.get(CLASSIFICATION_KEY) if isinstance(metadata, dict) else None
    if level is None:
        return True
    return level in CLEARANCE_LEVELS and cleared_for(user.clearance, str(level))


def _citation(index: int, kb: KnowledgeBase, passage: dict[str, Any]) -> Citation:
    source = passage.get("source") or {}
    uri = source.get("uri") if isinstance(source, dict) else None
    metadata = passage.get("metadata") or {}
    title = (metadata.get("title") if isinstance(metadata, dict) else None) or _title_from(uri) or kb.name
    score = passage.get("score")
    return Citation(
        index=index,
        title=str(title),
        uri=uri if isinstance(uri, str) else None,
        excerpt=_excerpt(passage["text"]),
        knowledge_base=kb.name,
        classification=kb.classification,
        score=float(score) if isinstance(score, int | float) else None,
    )


def _title_from(uri: Any) -> str | None:
    if not isinstance(uri, str) or not uri:
        return None
    return uri.rstrip("/").rsplit("/", 1)[-1] or None


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1].rstrip() + "…"


def grounded_messages(
    question: str, history: list[dict[str, str]], citations: list[Citation], passages: dict[int, str]
) -> list[dict[str, str]]:
    """The chat messages: instructions with the numbered sources, the conversation so far, the question."""
    if citations:
        sources = "\n\n".join(f"[{c.index}] {passages.get(c.index, c.excerpt)}" for c in citations)
    else:
        sources = "(no sources you may read match this question)"
    return [
        {"role": "system", "content": f"{SYSTEM_PROMPT}\n\nSources:\n{sources}"},
        *history,
        {"role": "user", "content": question},
    ]


def citations_from_answer(body: dict[str, Any], known: list[Citation]) -> list[Citation]:
    """Citations the gateway returned with a chat completion (retrieval inside the request), in the
    page's shape; ``known`` when the answer carries none."""
    raw = body.get("citations")
    if not isinstance(raw, list) or not raw:
        return known
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            continue
        source = item.get("source")
        uri = item.get("uri") or (source.get("uri") if isinstance(source, dict) else None)
        out.append(
            Citation(
                index=int(item.get("index") or i + 1),
                title=str(item.get("title") or _metadata(item).get("title") or _title_from(uri) or "source"),
                uri=uri if isinstance(uri, str) else None,
                excerpt=_excerpt(str(item.get("text") or item.get("excerpt") or "")),
                knowledge_base=str(item.get("knowledge_base") or ""),
                classification=str(
                    item.get("classification") or _metadata(item).get(CLASSIFICATION_KEY) or ""
                ),
                score=item.get("score") if isinstance(item.get("score"), int | float) else None,
            )
        )
    return out


def _metadata(item: dict[str, Any]) -> dict[str, Any]:
    metadata = item.get("metadata")
    return metadata if isinstance(metadata, dict) else {}
