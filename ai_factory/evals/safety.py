"""The safety suites that ship with the factory, and how to run them against a feature's prompt.

The suites live in ``ai_factory/data/safety/`` (package data, so they are in the wheel) and are named
``safety/<name>`` on the command line::

    ai-factory eval safety/prompt-injection --with-prompt features/support/prompts/answer.yaml

Each shipped suite has a generic system prompt and one variable, ``input``: the attack (or the benign
request) as the user would type it. ``bind_to_prompt`` swaps the generic prompt for a feature's own: the
attack goes into every variable of the feature's prompt (user input reaches a prompt through its
variables, so that is where injections arrive), or, for a prompt without variables, is sent as the user
message after it. The suites' assertions (canary words, identifiers that must not come back, refusal
patterns) do not depend on the prompt, so they hold for any feature.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ai_factory.catalog.evidence import STANDARD_SUITES as CATALOG_STANDARD_SUITES
from aif_gateway.prompt_template import extract_variables

from .model import Case, PromptRef, Suite
from .targets import ResolvedPrompt

__all__ = [
    "INPUT_VAR",
    "SHIPPED_DIR",
    "STANDARD_SUITES",
    "UnknownSuite",
    "bind_to_model",
    "bind_to_prompt",
    "is_shipped_ref",
    "shipped_suite_path",
    "shipped_suites",
]

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "safety"
PREFIX = "safety/"
INPUT_VAR = "input"
# What `ai-factory models evaluate` runs when no --suites are given, and what approval of a chat model
# requires (the catalog owns the list: its loader enforces it).
STANDARD_SUITES = CATALOG_STANDARD_SUITES["chat"]


class UnknownSuite(ValueError):
    """A ``safety/<name>`` reference names no shipped suite."""


def shipped_suites() -> tuple[str, ...]:
    """Every shipped suite's reference (``safety/<name>``), sorted."""
    return tuple(sorted(PREFIX + p.stem for p in SHIPPED_DIR.glob("*.yaml")))


def is_shipped_ref(text: str) -> bool:
    """Whether ``text`` is written as a shipped-suite reference (``safety/<name>``, no file suffix)."""
    return text.startswith(PREFIX) and "/" not in text[len(PREFIX) :] and not text.endswith((".yaml", ".yml"))


def shipped_suite_path(ref: str) -> Path:
    """The file of a shipped suite; ``UnknownSuite`` (listing the shipped ones) when there is none."""
    path = SHIPPED_DIR / f"{ref[len(PREFIX) :]}.yaml" if is_shipped_ref(ref) else None
    if path is None or not path.is_file():
        raise UnknownSuite(f"{ref!r} is not a shipped suite; shipped: {', '.join(shipped_suites())}")
    return path


def _input(suite: Suite, case: Case) -> str:
    text = case.vars.get(INPUT_VAR)
    if not isinstance(text, str):
        raise UnknownSuite(f"suite {suite.name}: case {case.id!r} has no '{INPUT_VAR}' var to bind")
    return text


def bind_to_prompt(suite: Suite, prompt: ResolvedPrompt) -> Suite:
    """``suite`` run through ``prompt`` (a feature's) instead of its own generic messages.

    The case's ``input`` fills every variable of the prompt; with no variables it becomes a user message
    after the prompt. The model is the prompt's. Assertions are unchanged.
    """
    variables = extract_variables(list(prompt.messages)) if prompt.messages else ()
    cases = []
    for case in suite.cases:
        text = _input(suite, case)
        if variables:
            cases.append(replace(case, vars={name: text for name in variables}))
        else:
            cases.append(replace(case, vars={}, messages=(*case.messages, {"role": "user", "content": text})))
    return replace(
        suite,
        prompt=PromptRef(prompt.name, version=prompt.version, alias=prompt.alias),
        model=None,
        messages=(),
        cases=tuple(cases),
    )


def bind_to_model(suite: Suite, alias: str) -> Suite:
    """``suite`` with its generic prompt, sent to model alias ``alias`` (how a catalog entry is evaluated)."""
    return replace(suite, model=alias)
