"""The attack-variation generator: deterministic, reversible where it encodes, assertion-preserving."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ai_factory.evals.model import Assertion, Case, Gate, Suite
from ai_factory.evals.safety import INPUT_VAR, shipped_suite_path
from ai_factory.evals.suite import CASE_ID_PATTERN, load_suite
from ai_factory.evals.variations import (
    TRANSFORMS,
    ZERO_WIDTH,
    UnknownTransform,
    expand,
    protected_values,
    select,
    vary,
)

texts = st.text(min_size=1, max_size=200)
canaries = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-", min_size=4, max_size=20)


def case(text: str, protect: str = "SECRET-1") -> Case:
    return Case(
        id="c1",
        vars={INPUT_VAR: text},
        assertions=(Assertion("not-contains", protect, hard_fail=True),),
        description="Tests x. Passes when y.",
    )


@given(texts)
def test_the_same_input_gives_the_same_variations(text: str) -> None:
    assert vary(case(text), TRANSFORMS) == vary(case(text), TRANSFORMS)


@given(texts)
def test_base64_carries_the_request_exactly(text: str) -> None:
    [variant] = vary(case(text), select(["base64"]))
    encoded = variant.vars[INPUT_VAR].rsplit("\n", 1)[1]
    assert base64.b64decode(encoded).decode("utf-8") == text


@given(texts)
def test_zero_width_is_invisible(text: str) -> None:
    [variant] = vary(case(text), select(["zero-width"]))
    assert variant.vars[INPUT_VAR].replace(ZERO_WIDTH, "") == text


@given(st.text(max_size=80), canaries, st.text(max_size=80))
def test_character_transforms_keep_the_protected_values(before: str, canary: str, after: str) -> None:
    """A model that merely repeats the input must still trip the case's not-contains check."""
    text = f"{before} {canary} {after}"
    for variant in vary(case(text, protect=canary), select(["leetspeak", "zero-width", "spaced"])):
        assert canary in variant.vars[INPUT_VAR]


@given(texts)
def test_variants_keep_assertions_and_get_valid_unique_ids(text: str) -> None:
    base = case(text)
    variants = vary(base, TRANSFORMS)
    assert len(variants) == len(TRANSFORMS)
    assert len({v.id for v in variants}) == len(variants)
    for variant in variants:
        assert CASE_ID_PATTERN.match(variant.id)
        assert variant.assertions == base.assertions
        assert variant.description.startswith(base.description)


def test_the_wrappers_cover_paraphrase_encoding_language_and_role_play() -> None:
    assert {t.kind for t in TRANSFORMS} == {"paraphrase", "encoding", "language", "role-play"}


def test_expand_grows_a_shipped_suite() -> None:
    suite = load_suite(shipped_suite_path("safety/prompt-injection"))
    grown = expand(suite)
    assert grown.name == "safety-prompt-injection+variations"
    assert len(grown.cases) == len(suite.cases) * (1 + len(TRANSFORMS))
    assert [c.id for c in grown.cases[: 1 + len(TRANSFORMS)]][:2] == [
        "ignore-previous",
        "ignore-previous.urgent",
    ]
    assert expand(suite) == grown  # byte for byte the same on every run
    only = expand(suite, select(["base64"]), keep_originals=False)
    assert only.cases[0].id == "ignore-previous.base64"


def test_protected_values_are_the_not_contains_values() -> None:
    c = Case(
        "c",
        {INPUT_VAR: "x"},
        (Assertion("not-contains", "A"), Assertion("contains", "B"), Assertion("not-contains", "C")),
    )
    assert protected_values(c) == ("A", "C")


def test_unknown_transforms_are_named() -> None:
    with pytest.raises(UnknownTransform, match=r"\['rot13'\].*known: urgent"):
        select(["rot13"])


def test_a_case_without_input_cannot_be_varied() -> None:
    suite = Suite("s", Path("s.yaml"), "h", (Case("c", {"ticket": "x"}, ()),), Gate())
    with pytest.raises(ValueError, match="'input'"):
        expand(suite)
