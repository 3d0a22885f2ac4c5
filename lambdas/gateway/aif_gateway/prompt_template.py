"""Prompt templates: ``{{ variable }}`` extraction, rendering and the canonical content hash.

Shared by the gateway runtime (server-side rendering of registered prompts) and the prompt registry
(``ai_factory.prompts``), so both agree on what a variable is and what a version's content is. Stdlib
only: the gateway's cold start must not pay for YAML or MLflow.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# A variable is {{name}} with optional spaces inside the braces; anything else is literal text.
VARIABLE_PATTERN = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Any {{ ... }} span: the loader uses it to reject things that look like variables but are not.
BRACED_PATTERN = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
HASH_PREFIX = "sha256:"


class PromptVariablesError(ValueError):
    """The variables given do not match the template's: ``missing`` and ``extra`` are sorted names.

    ``invalid`` names variables whose value is not a string or a number (booleans and null included).
    """

    def __init__(self, missing: Sequence[str], extra: Sequence[str], invalid: Sequence[str] = ()) -> None:
        self.missing = sorted(missing)
        self.extra = sorted(extra)
        self.invalid = sorted(invalid)
        parts = []
        if self.missing:
            parts.append("missing: " + ", ".join(self.missing))
        if self.extra:
            parts.append("unexpected: " + ", ".join(self.extra))
        if self.invalid:
            parts.append("not a string or number: " + ", ".join(self.invalid))
        super().__init__("prompt variables " + "; ".join(parts))


def extract_variables(messages: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The sorted, de-duplicated variable names used in the messages' contents."""
    names: set[str] = set()
    for message in messages:
        names.update(VARIABLE_PATTERN.findall(str(message.get("content", ""))))
    return tuple(sorted(names))


def _as_text(value: Any) -> str | None:
    # bool is an int subclass: reject it explicitly, "True" in a prompt is almost always a bug.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def render_messages(
    messages: Sequence[Mapping[str, Any]], variables: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Substitute every ``{{ name }}`` in the messages' contents with ``variables[name]``.

    Exactly the template's variables must be given (strings or numbers), otherwise
    ``PromptVariablesError`` names the missing, unexpected and invalid ones. Substitution is a single
    pass, so a value that itself contains ``{{ x }}`` is inserted literally, never expanded again.
    """
    expected = set(extract_variables(messages))
    given = set(variables)
    invalid = [name for name in given & expected if _as_text(variables[name]) is None]
    if expected != given or invalid:
        raise PromptVariablesError(sorted(expected - given), sorted(given - expected), invalid)
    texts = {name: _as_text(variables[name]) or "" for name in expected}
    rendered = []
    for message in messages:
        content = VARIABLE_PATTERN.sub(lambda m: texts[m.group(1)], str(message["content"]))
        rendered.append({**message, "content": content})
    return rendered


def normalize_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Messages reduced to what defines a version: ``role`` and ``content`` strings, in order."""
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def content_hash(messages: Iterable[Mapping[str, Any]], model: str, parameters: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of messages, model and parameters.

    Canonical = sorted keys, no whitespace, UTF-8: the same content hashes the same on every machine,
    and anything else about the prompt (owner, description, eval suite) does not change the version.
    """
    document = {"messages": normalize_messages(messages), "model": model, "parameters": dict(parameters)}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return HASH_PREFIX + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
