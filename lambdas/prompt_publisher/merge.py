"""Merging a feature's shipped prompts into the gateway's runtime view (schema 1), without taking over
the registry's job.

The view (``ai_factory.prompts.view``) is what ``ai-factory prompts publish`` writes from the prompt
registry, the system of record: every version and where every alias points. A deploy adds only what is
missing, so a fresh factory works on the first deploy and nothing the registry decided is undone:

* a prompt the view does not have gets version ``1`` with the shipped content, and ``production``
  pointing at it (what a first registration and promotion would give);
* a prompt whose shipped content (by content hash) is already a version: nothing changes;
* new content for a known prompt becomes the next version; ``production`` stays where the registry
  (a gated ``ai-factory prompts promote``) put it, unless the prompt has no ``production`` alias yet.

Merging the same prompts again changes nothing, so the publisher writes only when something changed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

SCHEMA = 1
DEFAULT_ALIAS = "production"
ENTRY_FIELDS = ("hash", "model", "parameters", "messages", "variables")


class ViewError(ValueError):
    """The existing view or a shipped prompt is not in the expected shape; the message says which."""


def empty_view() -> dict[str, Any]:
    return {"schema": SCHEMA, "generated_at": None, "prompts": {}}


def merge(
    view: Mapping[str, Any] | None, prompts: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any], list[str]]:
    """The view with ``prompts`` merged in, and what changed (``"<name> v<n>"``, ``"<name>@production"``).

    Each prompt is ``{"name", "hash", "model", "parameters", "messages", "variables"}``. ``view`` is left
    untouched; ``None`` means nothing has been published yet.
    """
    merged = empty_view() if view is None else copy.deepcopy(dict(view))
    if merged.get("schema") != SCHEMA or not isinstance(merged.get("prompts"), dict):
        raise ViewError(f"the published view is not a schema-{SCHEMA} prompt view (no 'prompts' object)")
    changes: list[str] = []
    for prompt in prompts:
        name = prompt.get("name")
        if not isinstance(name, str) or not name:
            raise ViewError(f"a shipped prompt has no name: {dict(prompt)!r}")
        body = {field: copy.deepcopy(prompt.get(field)) for field in ENTRY_FIELDS}
        if not isinstance(body["hash"], str) or not body["hash"]:
            raise ViewError(f"prompt {name}: 'hash' must be a non-empty string")
        entry = merged["prompts"].setdefault(name, {"versions": {}, "aliases": {}})
        versions = entry.setdefault("versions", {})
        aliases = entry.setdefault("aliases", {})
        if not isinstance(versions, dict) or not isinstance(aliases, dict):
            raise ViewError(f"prompt {name}: 'versions' and 'aliases' must be objects in the published view")
        version = next((v for v, existing in versions.items() if existing.get("hash") == body["hash"]), None)
        if version is None:
            version = str(max((int(v) for v in versions), default=0) + 1)
            versions[version] = body
            changes.append(f"{name} v{version}")
        if DEFAULT_ALIAS not in aliases:
            aliases[DEFAULT_ALIAS] = version
            changes.append(f"{name}@{DEFAULT_ALIAS} -> v{version}")
    return merged, changes
