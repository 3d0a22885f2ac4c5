"""The scriptable offline model: ``echo`` plus canned answers and a JSON mode.

Registered as the ``echo`` provider (``provider_registry.default_providers``), so every offline route uses it:

- **Canned answers** (an ``OfflineScript``): the first rule that matches the request answers it. A rule
  matches on text the last user message contains (``when: {contains: ...}``, for hand-written prompt
  fixtures) or on the exact conversation (``messages_sha256``, what ``ai-factory eval --target local``
  builds from a case's ``offline_answer``; a grounded conversation also matches with the gateway's
  instruction and sources taken out). An answer is text, a JSON value, or a tool call.
- **JSON mode**: with ``response_format`` ``json_schema`` and no canned answer, the reply is a
  deterministic object built from the schema (required and optional properties, enums, consts,
  bounds, string formats, ``$ref`` into ``$defs``), with strings taken from the user's words, so the
  prompt's structured-output wiring is exercised end to end. ``json_object`` answers
  ``{"echo": <last user text>}``.
- Otherwise it is the ``echo`` model (``providers.EchoProvider``): the same words back.

It checks wiring (the prompt renders, the request options reach the model, the answer is parsed), never
quality: an offline answer is as good as the script that wrote it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import ModelTarget
from .grounding import ungrounded
from .openai_schema import ChatRequest
from .provider_types import CallContext, ChatResult, TokenUsage
from .providers import EchoProvider, count_tokens

__all__ = [
    "CannedAnswer",
    "OfflineModel",
    "OfflineRule",
    "OfflineScript",
    "ScriptError",
    "example_for_schema",
]


class ScriptError(ValueError):
    """An offline script or answer is malformed; the message names the rule and the field."""


@dataclass(frozen=True)
class CannedAnswer:
    """What the offline model replies: text, or tool calls (OpenAI shape, arguments as JSON text)."""

    text: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()

    @classmethod
    def parse(cls, raw: Any, where: str = "answer") -> CannedAnswer:
        """``"text"`` | ``{json: <value>}`` | ``{tool_call: {name, arguments}}`` | ``{text: "..."}``."""
        if isinstance(raw, str):
            return cls(text=raw)
        if not isinstance(raw, Mapping) or len(raw) != 1:
            raise ScriptError(
                f"{where}: give text, or one of {{text: ...}}, {{json: ...}}, {{tool_call: ...}}"
            )
        [(kind, value)] = raw.items()
        if kind == "text" and isinstance(value, str):
            return cls(text=value)
        if kind == "json":
            return cls(text=json.dumps(value, ensure_ascii=False))
        if kind == "tool_call" and isinstance(value, Mapping) and isinstance(value.get("name"), str):
            arguments = value.get("arguments", {})
            if not isinstance(arguments, Mapping):
                raise ScriptError(f"{where}: tool_call.arguments must be a mapping")
            call_id = (
                "call_" + hashlib.sha256(json.dumps([value["name"], arguments]).encode()).hexdigest()[:12]
            )
            call = {
                "id": call_id,
                "type": "function",
                "function": {"name": value["name"], "arguments": json.dumps(arguments, ensure_ascii=False)},
            }
            return cls(tool_calls=(call,))
        raise ScriptError(f"{where}: {kind!r} is not text, json or tool_call {{name, arguments}}")


@dataclass(frozen=True)
class OfflineRule:
    """One canned answer and when it applies (no condition: always)."""

    answer: CannedAnswer
    contains: str | None = None  # the last user message contains this text (case-insensitive)
    messages_sha256: str | None = None  # exactly this conversation (``conversation_sha256``)

    def matches(self, messages: Sequence[Mapping[str, Any]]) -> bool:
        if self.messages_sha256 is not None and self.messages_sha256 not in _fingerprints(messages):
            return False
        return self.contains is None or self.contains.casefold() in _last_user_text(messages).casefold()


@dataclass(frozen=True)
class OfflineScript:
    """Ordered rules; the first match answers."""

    rules: tuple[OfflineRule, ...] = field(default_factory=tuple)

    def answer_for(self, messages: Sequence[Mapping[str, Any]]) -> CannedAnswer | None:
        return next((rule.answer for rule in self.rules if rule.matches(messages)), None)

    def plus(self, rules: Iterable[OfflineRule]) -> OfflineScript:
        """A script with ``rules`` tried before this one's."""
        return OfflineScript((*rules, *self.rules))

    @classmethod
    def from_data(cls, data: Any, source: str = "offline script") -> OfflineScript:
        """A script from plain data (a parsed YAML or JSON file)::

        - when: {contains: invoice}
          answer: "The total is 58.80 USD."
        - answer: {json: {total: 58.8}}
        """
        if data is None:
            return cls()
        if not isinstance(data, list):
            raise ScriptError(f"{source}: must be a list of rules ({{when: {{contains: ...}}, answer: ...}})")
        rules = []
        for index, item in enumerate(data):
            where = f"{source}: rule {index + 1}"
            if not isinstance(item, Mapping) or "answer" not in item or set(item) - {"when", "answer"}:
                raise ScriptError(
                    f"{where}: must be {{when: {{contains: ...}}, answer: ...}} ('when' optional)"
                )
            when = item.get("when") or {}
            if not isinstance(when, Mapping) or set(when) - {"contains"}:
                raise ScriptError(f"{where}: 'when' takes only 'contains' (text of the last user message)")
            contains = when.get("contains")
            if contains is not None and (not isinstance(contains, str | int | float) or str(contains) == ""):
                raise ScriptError(f"{where}: when.contains must be non-empty text")
            answer = CannedAnswer.parse(item["answer"], f"{where}: answer")
            rules.append(OfflineRule(answer, contains=None if contains is None else str(contains)))
        return cls(tuple(rules))


def _fingerprints(messages: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The conversation's fingerprint, and for a grounded one also the fingerprint of the conversation
    the client sent (before the gateway added the instruction and the sources)."""
    original = ungrounded([dict(m) for m in messages])
    own = conversation_sha256(messages)
    return (own,) if original is None else (own, conversation_sha256(original))


def conversation_sha256(messages: Sequence[Mapping[str, Any]]) -> str:
    """A stable fingerprint of a conversation's roles and text (what a case's canned answer keys on)."""
    canonical = [[str(m.get("role")), _text(m.get("content"))] for m in messages]
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False).encode("utf-8")).hexdigest()


class OfflineModel(EchoProvider):
    """The ``echo`` model, scriptable (see the module docstring). Safe across threads: the script is an
    immutable value that ``learn`` replaces."""

    def __init__(self, script: OfflineScript | None = None, token_ms: float | None = None) -> None:
        super().__init__(token_ms)  # the paced stream (AIF_ECHO_TOKEN_MS) works for scripted answers too
        self.script = script or OfflineScript()

    def learn(self, rules: Iterable[OfflineRule]) -> None:
        """Try ``rules`` first from now on (the script is replaced, never changed in place)."""
        self.script = self.script.plus(r for r in rules if r not in self.script.rules)

    def chat(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatResult:
        canned = self.script.answer_for(request.messages)
        usage_in = sum(count_tokens(_text(m.get("content"))) for m in request.messages)
        if canned is not None and (canned.text or not request.tools or request.tool_choice != "none"):
            if canned.tool_calls:
                return ChatResult(
                    "", "tool_calls", TokenUsage(usage_in, 1), tool_calls=list(canned.tool_calls)
                )
            return ChatResult(canned.text, "stop", TokenUsage(usage_in, count_tokens(canned.text)))
        fmt = request.response_format or {}
        if fmt.get("type") == "json_schema":
            schema = fmt["json_schema"]["schema"]
            reply = json.dumps(
                example_for_schema(schema, _last_user_text(request.messages)), ensure_ascii=False
            )
            return ChatResult(reply, "stop", TokenUsage(usage_in, count_tokens(reply)))
        return super().chat(target, request, ctx)


# --- JSON Schema -> an instance -------------------------------------------------------------------

_FORMATS = {
    "date": "2026-01-01",
    "date-time": "2026-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def example_for_schema(schema: Mapping[str, Any], seed_text: str = "") -> Any:
    """A deterministic value that satisfies ``schema`` for the keywords structured-output schemas use
    (type, properties, required, items, enum, const, min/max bounds and lengths, formats, anyOf, oneOf,
    allOf of objects, local ``$ref``). Strings are the seed text's words, cut to fit. A ``pattern`` is
    honoured only when the seed text happens to match it."""
    words = _WORD.findall(seed_text) or ["example"]
    return _Instance(schema, words).build(schema, 0)


_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*")


class _Instance:
    def __init__(self, root: Mapping[str, Any], words: list[str]) -> None:
        self.root = root
        self.words = words
        self.next_word = 0

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = (
                node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, Mapping) else {}
            )
        return node if isinstance(node, Mapping) else {}

    def build(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, Mapping) or depth > 32:
            return None
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        if isinstance(schema.get("examples"), list) and schema["examples"]:
            return schema["examples"][0]
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return self.build(schema[key][0], depth + 1)
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolve(part) if isinstance(part, Mapping) else {}
                merged.setdefault("properties", {}).update(part.get("properties", {}))
                merged["required"] = [*merged.get("required", []), *part.get("required", [])]
                merged.setdefault("type", part.get("type"))
            return self.build(merged, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if kind == "object":
            properties = schema.get("properties") or {}
            return {name: self.build(sub, depth + 1) for name, sub in properties.items()}
        if kind == "array":
            count = max(int(schema.get("minItems", 1)), 0)
            if "maxItems" in schema:
                count = min(count, int(schema["maxItems"]))
            return [self.build(schema.get("items") or {}, depth + 1) for _ in range(count)]
        if kind in ("integer", "number"):
            return self.number(schema, kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self.string(schema)

    @staticmethod
    def number(schema: Mapping[str, Any], integer: bool) -> int | float:
        low = schema.get("minimum")
        if low is None and "exclusiveMinimum" in schema:
            low = schema["exclusiveMinimum"] + 1
        high = schema.get("maximum")
        if high is None and "exclusiveMaximum" in schema:
            high = schema["exclusiveMaximum"] - 1
        value = low if low is not None else min(high, 0) if high is not None else 0
        step = schema.get("multipleOf")
        if step:
            value = (int(value // step) + (1 if value % step else 0)) * step
        return int(value) if integer else float(value)

    def string(self, schema: Mapping[str, Any]) -> str:
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            return _FORMATS[fmt]
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        word = self.words[self.next_word % len(self.words)]
        self.next_word += 1
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            found = next((w for w in self.words if re.search(pattern, w)), None)
            word = found if found is not None else word
        text = word.ljust(low, "x")
        return text[: int(high)] if high is not None else text


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text"
        )
    return ""


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    return next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
