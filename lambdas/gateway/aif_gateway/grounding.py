"""Retrieval inside a chat request: the ``retrieval`` extension field of ``POST /v1/chat/completions``.

One call instead of two (``docs/rag.md``): the gateway retrieves from the feature's knowledge base
(clearance-filtered, metered as a ``retrieve`` record), puts the passages in front of the newest user
turn as numbered sources, asks the model to answer from them and cite ``[n]``, and returns the
passages as ``citations`` (in the completion, and on the first chunk of a stream).

``grounding_check: true`` asks the guardrail's contextual grounding check: on Bedrock Converse the
sources go in a ``guardContent`` block qualified ``grounding_source`` and the user's words in blocks
qualified ``query`` (``bedrock_translate``), so the guardrail blocks an answer that is not grounded
in the sources or not relevant to the question.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequest
from .retrieval import NAME_PATTERN
from .stream_format import ChunkEncoder

FIELDS = ("knowledge_base", "top_k", "query", "grounding_check")
DEFAULT_TOP_K = 4
MAX_TOP_K = 20  # passages go into the prompt: more is cost, not quality
MAX_QUERY_CHARS = 8000  # retrieval.MAX_QUERY_CHARS: Retrieve's limit
INSTRUCTION = (
    "Answer the user's question only from the numbered sources in their message, and cite the sources "
    "you use as [n]. If the sources do not contain the answer, say that you do not know."
)
SOURCES_HEADER = "Sources:\n"
_CITE = re.compile(r"\[(\d{1,3})\]")


@dataclass(frozen=True)
class ChatRetrieval:
    """What a chat request asked to retrieve (the parsed ``retrieval`` field)."""

    knowledge_base: str
    top_k: int = DEFAULT_TOP_K
    query: str | None = None  # None: the newest user message's text
    grounding_check: bool = False


@dataclass(frozen=True)
class Grounding:
    """Where the sources and the question sit in the grounded request (for the guardrail's qualifiers)."""

    source: str  # the exact text of the sources block in the newest user turn
    query: str  # what was searched for
    check: bool  # mark them for the contextual grounding check


def parse_chat_retrieval(raw: Any) -> ChatRetrieval | None:
    """The ``retrieval`` field; None when absent. Errors name the field (``retrieval.top_k``)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest("'retrieval' must be an object.", param="retrieval")
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        raise InvalidRequest(
            f"'retrieval' has unknown fields: {', '.join(unknown)[:200]}; allowed: {', '.join(FIELDS)}.",
            param=f"retrieval.{unknown[0]}"[:200],
            code="unknown_field",
        )
    name = raw.get("knowledge_base")
    if name is None:
        raise InvalidRequest(
            "'retrieval.knowledge_base' is required.", param="retrieval.knowledge_base", code="missing_field"
        )
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidRequest(
            "'retrieval.knowledge_base' must be a knowledge base name: 1-63 lowercase letters, digits and "
            "hyphens.",
            param="retrieval.knowledge_base",
        )
    top_k = raw.get("top_k", DEFAULT_TOP_K)
    top_k = DEFAULT_TOP_K if top_k is None else top_k
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidRequest(
            f"'retrieval.top_k' must be a whole number from 1 to {MAX_TOP_K}.", param="retrieval.top_k"
        )
    query = raw.get("query")
    if query is not None:
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequest("'retrieval.query' must be a non-empty string.", param="retrieval.query")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidRequest(
                f"'retrieval.query' is {len(query)} characters; the limit is {MAX_QUERY_CHARS}.",
                param="retrieval.query",
            )
    check = raw.get("grounding_check", False)
    if not isinstance(check, bool):
        raise InvalidRequest(
            "'retrieval.grounding_check' must be true or false.", param="retrieval.grounding_check"
        )
    return ChatRetrieval(name, top_k, query, check)


def search_text(retrieval: ChatRetrieval, messages: list[dict[str, Any]]) -> str:
    """What to search for: ``retrieval.query``, else the newest user message's text (400 when none)."""
    if retrieval.query is not None:
        return retrieval.query
    last = _last_user(messages)
    text = _text(last.get("content")) if last is not None else ""
    if not text.strip():
        raise InvalidRequest(
            "'retrieval' needs a question: the newest user message has no text; send 'retrieval.query'.",
            param="retrieval.query",
        )
    return text[:MAX_QUERY_CHARS]


def citations(passages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The passages as the answer's ``citations``, numbered as the model saw them (``[1]`` first)."""
    return [{"index": i + 1, **passage} for i, passage in enumerate(passages)]


def sources_block(passages: list[dict[str, Any]]) -> str:
    """The numbered sources the model answers from."""
    parts = []
    for i, passage in enumerate(passages):
        uri = (passage.get("source") or {}).get("uri")
        where = f"\n(source: {uri})" if uri else ""
        parts.append(f"[{i + 1}] {passage.get('text', '')}{where}")
    return SOURCES_HEADER + "\n\n".join(parts) if parts else SOURCES_HEADER + "(no sources were found)"


def ground(
    messages: list[dict[str, Any]], passages: list[dict[str, Any]], query: str, check: bool
) -> tuple[list[dict[str, Any]], Grounding]:
    """``messages`` with the instruction first and the numbered sources in front of the newest user
    turn's content (a text part of its own, so the guardrail can qualify it)."""
    source = sources_block(passages)
    out = [{"role": "system", "content": INSTRUCTION}, *(dict(m) for m in messages)]
    last = _last_user(out)
    if last is None:
        out.append(
            {"role": "user", "content": [{"type": "text", "text": source}, {"type": "text", "text": query}]}
        )
    else:
        content = last.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        last["content"] = [{"type": "text", "text": source}, *parts]
    return out, Grounding(source, query, check)


def ungrounded(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The conversation ``ground`` was given, from the one it made; None when ``messages`` is not grounded.

    The offline model matches a case's canned answer on the exact conversation the case sent, so it needs
    the conversation without what the gateway added (the instruction and the sources part)."""
    if not messages or messages[0].get("role") != "system" or messages[0].get("content") != INSTRUCTION:
        return None
    out = [dict(m) for m in messages[1:]]
    last = _last_user(out)
    parts = last.get("content") if last is not None else None
    if not isinstance(parts, list) or not parts or not isinstance(parts[0], dict):
        return None
    if not str(parts[0].get("text", "")).startswith(SOURCES_HEADER):
        return None
    assert last is not None
    rest = parts[1:]
    if len(rest) == 1 and rest[0].get("type") == "text":
        last["content"] = rest[0].get("text", "")  # ground made a part of the plain text
    elif rest:
        last["content"] = rest
    else:
        out.remove(last)  # ground added a user turn of its own (the query without a user turn)
    return out


def cited_indexes(text: str, count: int) -> list[int]:
    """The source numbers ``[n]`` an answer cites, in order of first use, within 1..count."""
    seen: dict[int, None] = {}
    for match in _CITE.finditer(text or ""):
        n = int(match.group(1))
        if 1 <= n <= count:
            seen.setdefault(n)
    return list(seen)


def _last_user(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((m for m in reversed(messages) if m.get("role") == "user"), None)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


class CitingChunkEncoder(ChunkEncoder):
    """Chat Completions chunks whose first (role) chunk also carries the answer's ``citations``."""

    def __init__(self, completion_id: str, created: int, model: str, cited: list[dict[str, Any]]) -> None:
        super().__init__(completion_id, created, model)
        self._citations = b'"citations":' + json.dumps(cited, separators=(",", ":")).encode("utf-8") + b","

    def role(self) -> bytes:
        return super().role().replace(b'"choices":[', self._citations + b'"choices":[', 1)
