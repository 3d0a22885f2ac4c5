"""Prompt files: load and validate one YAML prompt file into a ``PromptSpec``.

A prompt file lives next to the feature that owns it (``features/<feature>/prompts/<name>.yaml``)::

    name: summarize-ticket
    description: Summarize a support ticket for the next agent.
    owner: support-platform@example.com
    model: chat-fast
    parameters: {temperature: 0.2, max_tokens: 400}
    eval_suite: ../evals/summarize-ticket.yaml
    messages:
      - role: system
        content: You summarize customer support tickets for agents.
      - role: user
        content: "Summarize in at most {{max_sentences}} sentences:\\n\\n{{ticket}}"

Every problem raises ``PromptFileError`` naming the file, the field and the reason.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aif_gateway.prompt_template import (
    BRACED_PATTERN,
    VARIABLE_PATTERN,
    PromptVariablesError,
    content_hash,
    extract_variables,
    normalize_messages,
    render_messages,
)

__all__ = [
    "NAME_PATTERN",
    "ROLES",
    "PromptFileError",
    "PromptSpec",
    "PromptVariablesError",
    "check_model",
    "load_prompt_file",
    "render_messages",
]

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
ROLES = ("system", "user", "assistant")
TOP_LEVEL_FIELDS = (
    "name",
    "description",
    "owner",
    "model",
    "parameters",
    "eval_suite",
    "messages",
    "template",
)
MAX_STOP_SEQUENCES = 4


class PromptFileError(ValueError):
    """A prompt file is unreadable or invalid. ``str()`` is ``"<file>: <field>: <reason>"``."""

    def __init__(self, path: str | os.PathLike[str], field_name: str, reason: str) -> None:
        self.path = str(path)
        self.field = field_name
        self.reason = reason
        super().__init__(f"{self.path}: {field_name}: {reason}")


@dataclass(frozen=True)
class PromptSpec:
    """One validated prompt file. ``content_hash`` identifies the version its content would get."""

    name: str
    description: str
    owner: str
    model: str
    parameters: dict[str, Any]
    messages: list[dict[str, str]]
    variables: tuple[str, ...]
    eval_suite: Path
    source: Path
    content_hash: str

    def render(self, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The messages with ``variables`` substituted (``PromptVariablesError`` if they do not match)."""
        return render_messages(self.messages, variables)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PromptFileError(path, "file", f"cannot read it: {exc.strerror or exc}") from exc
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise PromptFileError(path, "yaml", f"not valid YAML at {where}: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise PromptFileError(path, "yaml", f"not valid YAML: {exc}") from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _parameters(path: Path, raw: Any) -> dict[str, Any]:
    """Validate and normalize parameters, so equivalent spellings (1 vs 1.0, "x" vs ["x"]) hash alike."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise PromptFileError(path, "parameters", "must be a mapping (temperature, top_p, max_tokens, stop)")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        fld = f"parameters.{key}"
        if key == "temperature":
            if not _is_number(value) or not 0 <= value <= 2:
                raise PromptFileError(path, fld, f"must be a number from 0 to 2, got {value!r}")
            out[key] = float(value)
        elif key == "top_p":
            if not _is_number(value) or not 0 <= value <= 1:
                raise PromptFileError(path, fld, f"must be a number from 0 to 1, got {value!r}")
            out[key] = float(value)
        elif key == "max_tokens":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PromptFileError(path, fld, f"must be an integer >= 1, got {value!r}")
            out[key] = value
        elif key == "stop":
            stops = [value] if isinstance(value, str) else value
            if (
                not isinstance(stops, list)
                or not 1 <= len(stops) <= MAX_STOP_SEQUENCES
                or not all(isinstance(s, str) and s for s in stops)
            ):
                raise PromptFileError(
                    path, fld, f"must be a non-empty string or a list of 1 to {MAX_STOP_SEQUENCES} of them"
                )
            out[key] = list(stops)
        else:
            raise PromptFileError(
                path, fld, "unknown parameter (allowed: temperature, top_p, max_tokens, stop)"
            )
    return out


def _check_braces(path: Path, fld: str, content: str) -> None:
    # "{{ticket id}}" or "{{ 1st }}" would be sent to the model literally: almost certainly a typo.
    for match in BRACED_PATTERN.finditer(content):
        if not VARIABLE_PATTERN.fullmatch(match.group(0)):
            raise PromptFileError(
                path,
                fld,
                f"{match.group(0)!r} is not a valid variable (use {{{{ name }}}} with letters, digits, _)",
            )


def _messages(path: Path, data: Mapping[str, Any]) -> list[dict[str, str]]:
    has_messages, has_template = "messages" in data, "template" in data
    if has_messages == has_template:
        raise PromptFileError(
            path,
            "messages",
            "give exactly one of 'messages' (a chat) or 'template' (one user message)"
            + (", not both" if has_messages else ""),
        )
    if has_template:
        template = data["template"]
        if not isinstance(template, str) or not template.strip():
            raise PromptFileError(path, "template", "must be a non-empty string")
        _check_braces(path, "template", template)
        return [{"role": "user", "content": template}]
    raw = data["messages"]
    if not isinstance(raw, list) or not raw:
        raise PromptFileError(path, "messages", "must be a non-empty list of {role, content}")
    messages = []
    for index, item in enumerate(raw):
        fld = f"messages[{index}]"
        if not isinstance(item, Mapping):
            raise PromptFileError(path, fld, "must be a mapping with 'role' and 'content'")
        unknown = sorted(set(map(str, item)) - {"role", "content"})
        if unknown:
            raise PromptFileError(path, f"{fld}.{unknown[0]}", "unknown field (allowed: role, content)")
        role = item.get("role")
        if role not in ROLES:
            raise PromptFileError(path, f"{fld}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        content = item.get("content")
        if not isinstance(content, str) or not content.strip():
            raise PromptFileError(path, f"{fld}.content", "must be a non-empty string")
        _check_braces(path, f"{fld}.content", content)
        messages.append({"role": role, "content": content})
    return normalize_messages(messages)


def _string(path: Path, data: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise PromptFileError(
            path, key, "is required (a non-empty string)" if value is None else "must be a string"
        )
    return value.strip()


def load_prompt_file(path: str | os.PathLike[str]) -> PromptSpec:
    """Read, validate and normalize one prompt file (``PromptFileError`` on any problem)."""
    source = Path(path).expanduser().resolve()
    data = _read_yaml(source)
    if not isinstance(data, Mapping):
        raise PromptFileError(source, "file", "must be a YAML mapping (name, owner, model, messages, ...)")
    unknown = sorted(str(k) for k in data if k not in TOP_LEVEL_FIELDS)
    if unknown:
        raise PromptFileError(source, unknown[0], f"unknown field (allowed: {', '.join(TOP_LEVEL_FIELDS)})")
    name = _string(source, data, "name")
    if not NAME_PATTERN.match(name):
        raise PromptFileError(
            source, "name", f"{name!r} must be lowercase letters, digits and '-', 1-63 characters"
        )
    owner = _string(source, data, "owner")
    model = _string(source, data, "model")
    description = _string(source, data, "description", required=False)
    parameters = _parameters(source, data.get("parameters"))
    suite_raw = _string(source, data, "eval_suite")
    eval_suite = (source.parent / suite_raw).resolve()
    if not eval_suite.is_file():
        raise PromptFileError(
            source,
            "eval_suite",
            f"{suite_raw!r} does not exist (looked for {eval_suite}); every prompt needs one",
        )
    messages = _messages(source, data)
    return PromptSpec(
        name=name,
        description=description,
        owner=owner,
        model=model,
        parameters=parameters,
        messages=messages,
        variables=extract_variables(messages),
        eval_suite=eval_suite,
        source=source,
        content_hash=content_hash(messages, model, parameters),
    )


def check_model(spec: PromptSpec, catalog: Any) -> None:
    """Check the spec's model against a ``ModelCatalog``: it must be a chat route alias."""
    route = catalog.routes.get(spec.model)
    if route is None:
        known = ", ".join(sorted(a for a, r in catalog.routes.items() if r.modality == "chat"))
        raise PromptFileError(
            spec.source, "model", f"{spec.model!r} is not a route in the catalog (chat routes: {known})"
        )
    if route.modality != "chat":
        raise PromptFileError(spec.source, "model", f"{spec.model!r} is a {route.modality} route, not chat")
