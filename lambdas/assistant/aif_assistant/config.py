"""The backend's settings, from environment variables the ``GovernedAssistant`` construct sets (and
``ai-factory serve --assistant`` sets locally)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from aif_gateway.contract import CLEARANCE_LEVELS

GATEWAY_URL_ENV = "AIF_ASSISTANT_GATEWAY_URL"
MODEL_ENV = "AIF_ASSISTANT_MODEL"
KNOWLEDGE_BASES_ENV = "AIF_ASSISTANT_KNOWLEDGE_BASES"
CLEARANCE_GROUPS_ENV = "AIF_ASSISTANT_CLEARANCE_GROUPS"
KEY_SECRET_ENV = "AIF_ASSISTANT_KEY_SECRET_ARN"
API_KEY_ENV = "AIF_ASSISTANT_API_KEY"  # local mode only; in AWS the key stays in Secrets Manager
TOP_K_ENV = "AIF_ASSISTANT_TOP_K"


@dataclass(frozen=True)
class KnowledgeBase:
    """A knowledge base the assistant answers from, with its dataset's classification."""

    name: str
    classification: str
    title: str = ""


@dataclass(frozen=True)
class AssistantConfig:
    gateway_url: str  # the gateway's base URL, ending in /v1
    model: str  # the catalog route the assistant's answers use
    knowledge_bases: tuple[KnowledgeBase, ...]
    clearance_groups: dict[str, str]
    top_k: int = 4

    def __post_init__(self) -> None:
        for group, clearance in self.clearance_groups.items():
            if clearance not in CLEARANCE_LEVELS:
                raise ValueError(
                    f"{CLEARANCE_GROUPS_ENV}: group {group!r} maps to {clearance!r}; "
                    f"expected one of {', '.join(CLEARANCE_LEVELS)}"
                )
        for kb in self.knowledge_bases:
            if kb.classification not in CLEARANCE_LEVELS:
                raise ValueError(
                    f"{KNOWLEDGE_BASES_ENV}: {kb.name!r} has classification {kb.classification!r}"
                )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> AssistantConfig:
        env = os.environ if environ is None else environ
        kbs = json.loads(env.get(KNOWLEDGE_BASES_ENV) or "[]")
        return cls(
            gateway_url=env[GATEWAY_URL_ENV].rstrip("/"),
            model=env[MODEL_ENV],
            knowledge_bases=tuple(
                KnowledgeBase(str(k["name"]), str(k["classification"]), str(k.get("title") or ""))
                for k in kbs
            ),
            clearance_groups={str(g): str(c) for g, c in json.loads(env[CLEARANCE_GROUPS_ENV]).items()},
            top_k=int(env.get(TOP_K_ENV) or 4),
        )
