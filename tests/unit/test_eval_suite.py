"""Suite files: the format, defaults merging, hashing, and a line-numbered error for every mistake."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from ai_factory.evals.model import Gate, PromptRef
from ai_factory.evals.suite import SuiteError, load_suite, local_prompt_path

REPO = Path(__file__).resolve().parents[2]

PROMPT_FILE = """\
name: summarize-ticket
owner: support@example.com
model: chat-fast
eval_suite: ../evals/suite.yaml
messages:
  - role: user
    content: "Summarize in {{max_sentences}} sentences: {{ticket}}"
"""

GOOD = """\
suite: summarize-ticket
description: Summaries keep the facts.
prompt: {name: summarize-ticket, alias: staging}
gate: {min_pass_rate: 0.9, repeats: 3, min_case_pass_fraction: 0.66}
defaults:
  assert:
    - {type: not-contains, value: "4111 1111", hard_fail: true}
cases:
  - id: refund-request
    vars: {ticket: "I want a refund for order 123", max_sentences: 2}
    assert:
      - {type: icontains, value: refund}
      - {type: regex, value: "order\\\\s+123"}
      - {type: latency_ms, threshold: 8000}
      - {type: cost_usd, threshold: 0.01}
      - {type: similarity, value: "The customer asks for a refund.", threshold: 0.5}
      - {type: similarity, value: "A refund.", threshold: 0.8, method: embedding, model: embed}
      - {type: llm-judge, value: "States the request? 1 = yes", threshold: 0.7, model: chat-smart}
      - {type: is-json}
      - {type: json-schema, value: {type: object, required: [a]}}
      - {type: equals, value: 42}
  - id: second
    vars: {ticket: "Hello", max_sentences: 1}
"""


def write(tmp_path: Path, text: str, *, with_prompt: bool = False) -> Path:
    """Write a suite at <tmp>/feature/evals/suite.yaml (and optionally its local prompt file)."""
    evals = tmp_path / "feature" / "evals"
    evals.mkdir(parents=True, exist_ok=True)
    path = evals / "suite.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    if with_prompt:
        prompts = tmp_path / "feature" / "prompts"
        prompts.mkdir(exist_ok=True)
        (prompts / "summarize-ticket.yaml").write_text(PROMPT_FILE, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, *, with_prompt: bool = False) -> SuiteError:
    path = write(tmp_path, text, with_prompt=with_prompt)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(info.value).startswith(f"{path}:{info.value.line}: ")
    return info.value


def test_loads_the_documented_format(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, with_prompt=True)
    suite = load_suite(path)
    assert suite.name == "summarize-ticket"
    assert suite.description == "Summaries keep the facts."
    assert suite.prompt == PromptRef(name="summarize-ticket", alias="staging")
    assert suite.gate == Gate(min_pass_rate=0.9, repeats=3, min_case_pass_fraction=0.66)
    assert suite.content_hash == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    first, second = suite.cases
    assert first.id == "refund-request" and first.line == 9
    assert first.vars == {"ticket": "I want a refund for order 123", "max_sentences": 2}
    types = [a.type for a in first.assertions]
    assert types[-1] == "not-contains"  # defaults come after the case's own assertions
    assert first.assertions[-1].hard_fail and first.assertions[-1].line == 7
    assert first.assertions[1].value == "order\\s+123" and first.assertions[1].line == 13
    assert first.assertions[5].method == "embedding" and first.assertions[5].model == "embed"
    assert first.assertions[8].value == {"type": "object", "required": ["a"]}
    assert type(first.assertions[8].value) is dict  # plain data, no YAML bookkeeping
    assert first.assertions[9].value == "42"  # numbers are text to compare
    assert [a.type for a in second.assertions] == ["not-contains"]


def test_inline_messages_and_shorthand_prompt(tmp_path: Path) -> None:
    suite = load_suite(
        write(
            tmp_path,
            """\
            suite: inline
            model: echo
            messages: [{role: user, content: "Say {{thing}}"}]
            cases:
              - id: a
                vars: {thing: hi}
                messages: [{role: assistant, content: ok}]
                assert: [{type: contains, value: hi}]
            """,
        )
    )
    assert suite.prompt is None and suite.model == "echo"
    assert suite.messages == ({"role": "user", "content": "Say {{thing}}"},)
    assert suite.cases[0].messages == ({"role": "assistant", "content": "ok"},)
    assert suite.gate == Gate()
    shorthand = write(tmp_path, "suite: s\nprompt: other\ncases: [{id: a, assert: [{type: is-json}]}]\n")
    assert load_suite(shorthand).prompt == PromptRef(name="other")


def test_unknown_registered_prompt_skips_the_vars_check(tmp_path: Path) -> None:
    # No local prompt file: the gateway checks the variables when it renders.
    text = "suite: s\nprompt: {name: elsewhere, version: 3}\ncases:\n  - id: a\n    vars: {x: 1}\n" + IS_JSON
    path = write(tmp_path, text)
    suite = load_suite(path)
    assert suite.prompt == PromptRef(name="elsewhere", version=3)
    assert local_prompt_path(path, "elsewhere") == tmp_path / "feature" / "prompts" / "elsewhere.yaml"


# Shared beginnings of malformed suites: HEAD is 2 lines, a case starts on line 4, its first
# assertion is on line 6.
HEAD = "suite: s\nprompt: p\n"
CASE = HEAD + "cases:\n  - id: a\n"
ASSERT = CASE + "    assert:\n"
IS_JSON = "    assert: [{type: is-json}]\n"
ONE_CASE = "cases: [{id: a, assert: [{type: is-json}]}]\n"
INLINE = "suite: s\nmodel: m\nmessages:\n"


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("suite: s\ncases: [\n  {id: a\n", 4, "not valid YAML"),
        ("suite: s\nsuite: t\n", 2, "duplicate key 'suite'"),
        ("- a\n", 1, "suite file must be a mapping"),
        ("", 1, "empty"),
        (HEAD + "color: red\ncases: []\n", 3, "unknown field 'color'"),
        ("prompt: p\n" + ONE_CASE, 1, "'suite' is required"),
        ("suite: s\n" + ONE_CASE, 1, "give 'prompt'"),
        ("suite: s\nmessages: [{role: user, content: hi}]\n" + ONE_CASE, 2, "need a 'model'"),
        (HEAD + "model: m\nmessages: [{role: user, content: hi}]\ncases: []\n", 4, "not both"),
        (INLINE + "  - {role: robot, content: hi}\ncases: []\n", 4, "'role' must be one of"),
        (INLINE + "  - role: user\n    content: 'hi {{ a b }}'\ncases: []\n", 5, "not a valid variable"),
        ("suite: s\nprompt: {name: p, version: 0}\ncases: []\n", 2, "'version' must be an integer >= 1"),
        ("suite: s\nprompt: {name: p, version: 2, alias: x}\ncases: []\n", 2, "not both"),
        (HEAD + "gate:\n  repeats: 0\ncases: []\n", 4, "'repeats' must be an integer >= 1"),
        (HEAD + "gate:\n  repeats: 1.5\ncases: []\n", 4, "'repeats' must be an integer >= 1"),
        (HEAD + "gate:\n  min_pass_rate: 1.2\ncases: []\n", 4, "from 0 to 1"),
        (HEAD + "gate:\n  min_case_pass_fraction: -0.1\ncases: []\n", 4, "from 0 to 1"),
        (HEAD + "gate:\n  retries: 2\ncases: []\n", 4, "unknown field 'retries'"),
        (HEAD, 1, "'cases' is required"),
        (HEAD + "cases: []\n", 3, "non-empty list"),
        (CASE, 4, "has no assertions"),
        (HEAD + "cases:\n  - vars: {}\n" + IS_JSON, 4, "'id' is required"),
        (HEAD + "cases:\n  - id: 'a b'\n" + IS_JSON, 4, "id must be"),
        (CASE + IS_JSON + "  - id: a\n" + IS_JSON, 6, "duplicate case id 'a' (first at line 4)"),
        (CASE + "    vars: [1]\n" + IS_JSON, 5, "'vars' must be a mapping"),
        (CASE + "    vars:\n      x: true\n" + IS_JSON, 6, "string or a number"),
        (
            ASSERT + "      - {type: contains, value: x}\n      - {type: sentiment}\n",
            7,
            "unknown assertion type",
        ),
        (ASSERT + "      - {value: x}\n", 6, "'type' is required"),
        (ASSERT + "      - {type: contains}\n", 6, "'value' is required"),
        (ASSERT + "      - {type: contains, value: ''}\n", 6, "non-empty string"),
        (ASSERT + "      - type: regex\n        value: 'a(b'\n", 7, "bad regex"),
        (ASSERT + "      - type: json-schema\n        value: {type: thing}\n", 7, "invalid JSON Schema"),
        (ASSERT + "      - type: json-schema\n        value: {$ref: '#/x'}\n", 7, "keyword not supported"),
        (ASSERT + "      - type: json-schema\n        value: [1]\n", 7, "must be a JSON Schema"),
        (ASSERT + "      - {type: similarity, value: x}\n", 6, "'threshold' is required"),
        (ASSERT + "      - type: similarity\n        value: x\n        threshold: 1.5\n", 8, "from 0 to 1"),
        (ASSERT + "      - {type: llm-judge, threshold: 0.5}\n", 6, "'value' is required"),
        (ASSERT + "      - {type: llm-judge, value: r, threshold: -1}\n", 6, "from 0 to 1"),
        (ASSERT + "      - {type: latency_ms, threshold: 0}\n", 6, "greater than 0"),
        (ASSERT + "      - {type: cost_usd, threshold: -0.01}\n", 6, "0 or more"),
        (ASSERT + "      - {type: cost_usd, threshold: cheap}\n", 6, "must be a number"),
        (ASSERT + "      - {type: latency_ms}\n", 6, "'threshold' is required"),
        (ASSERT + "      - {type: is-json, value: x}\n", 6, "takes no 'value'"),
        (ASSERT + "      - {type: contains, value: x, threshold: 1}\n", 6, "takes no 'threshold'"),
        (ASSERT + "      - {type: contains, value: x, hard_fail: yes please}\n", 6, "true or false"),
        (
            ASSERT + "      - {type: similarity, value: x, threshold: 0.5, method: fuzzy}\n",
            6,
            "'method' must be",
        ),
        (ASSERT + "      - {type: contains, value: x, method: token}\n", 6, "only applies to similarity"),
        (
            ASSERT + "      - {type: similarity, value: x, threshold: 0.5, model: embed}\n",
            6,
            "'model' only applies",
        ),
        (ASSERT + "      - {type: contains, value: x, weight: 2}\n", 6, "unknown field 'weight'"),
        (
            HEAD + "defaults:\n  assert:\n    - {type: nope}\ncases:\n  - id: a\n",
            5,
            "unknown assertion type 'nope'",
        ),
        (HEAD + "defaults:\n  assert: []\n  other: 1\ncases: []\n", 5, "unknown field 'other'"),
        (CASE + "    messages: [{role: user}]\n" + IS_JSON, 5, "'content' is required"),
    ],
)
def test_malformed_suites_name_the_line(tmp_path: Path, text: str, line: int, needle: str) -> None:
    error = error_of(tmp_path, text)
    assert needle in error.reason
    assert error.line == line


def test_vars_must_match_the_local_prompt_file(tmp_path: Path) -> None:
    text = """\
    suite: s
    prompt: {name: summarize-ticket}
    cases:
      - id: ok
        vars: {ticket: t, max_sentences: 1}
        assert: [{type: is-json}]
      - id: wrong
        vars: {ticket: t, tone: warm}
        assert: [{type: is-json}]
    """
    error = error_of(tmp_path, text, with_prompt=True)
    assert error.line == 8
    assert "case 'wrong'" in error.reason
    assert "missing: max_sentences" in error.reason and "unexpected: tone" in error.reason
    assert "summarize-ticket.yaml" in error.reason


def test_vars_missing_entirely_point_at_the_case(tmp_path: Path) -> None:
    text = "suite: s\nprompt: summarize-ticket\ncases:\n  - id: a\n    assert: [{type: is-json}]\n"
    error = error_of(tmp_path, text, with_prompt=True)
    assert error.line == 4 and "missing: max_sentences, ticket" in error.reason


def test_vars_must_match_inline_messages(tmp_path: Path) -> None:
    text = (
        "suite: s\nmodel: echo\nmessages: [{role: user, content: 'Say {{thing}}'}]\n"
        "cases:\n  - id: a\n    vars: {other: 1}\n    assert: [{type: is-json}]\n"
    )
    error = error_of(tmp_path, text)
    assert error.line == 6 and error.reason.endswith("(missing: thing)")  # extra vars are fine inline


def test_invalid_local_prompt_file_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "suite: s\nprompt: broken\ncases: [{id: a, assert: [{type: is-json}]}]\n")
    (tmp_path / "feature" / "prompts").mkdir()
    (tmp_path / "feature" / "prompts" / "broken.yaml").write_text("name: broken\n", encoding="utf-8")
    with pytest.raises(SuiteError, match="its local file is invalid"):
        load_suite(path)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="cannot read it"):
        load_suite(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"suite: \xff\n")
    with pytest.raises(SuiteError, match="not UTF-8"):
        load_suite(bad)


@pytest.mark.parametrize(
    "relative",
    ["features/support/evals/summarize-ticket.yaml", "features/knowledge/evals/answer-question.yaml"],
)
def test_example_suites_load_and_match_their_prompts(relative: str) -> None:
    suite = load_suite(REPO / relative)
    assert suite.prompt is not None
    assert local_prompt_path(suite.path, suite.prompt.name).is_file()  # so the vars were checked
    assert len(suite.cases) >= 3
    assert any(a.hard_fail for case in suite.cases for a in case.assertions)
