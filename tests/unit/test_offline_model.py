"""The scriptable offline model: canned answers, the JSON mode, and how suites and the local target use it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ai_factory.evals.deterministic import schema_errors
from ai_factory.evals.runner import execute
from ai_factory.evals.suite import SuiteError, load_suite
from ai_factory.evals.targets import LocalTarget
from aif_gateway.config import ModelTarget
from aif_gateway.offline_model import (
    CannedAnswer,
    OfflineModel,
    OfflineRule,
    OfflineScript,
    ScriptError,
    conversation_sha256,
    example_for_schema,
)
from aif_gateway.openai_schema import ChatRequest
from aif_gateway.provider_types import CallContext

TARGET = ModelTarget("echo", "echo", "echo", "chat")
CTX = CallContext("r1", "legal", "clauses")
CLAUSES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "clauses": {
            "type": "array",
            "minItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "title": {"type": "string", "minLength": 3, "maxLength": 20},
                    "party": {"enum": ["buyer", "seller"]},
                    "days": {"type": "integer", "minimum": 1, "maximum": 90},
                    "signed": {"type": "string", "format": "date"},
                    "ref": {"$ref": "#/$defs/ref"},
                },
                "required": ["title", "party", "days"],
                "additionalProperties": False,
            },
        },
        "currency": {"const": "EUR"},
        "total": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "kind": {"anyOf": [{"type": "boolean"}, {"type": "string"}]},
    },
    "required": ["clauses", "currency", "total"],
    "additionalProperties": False,
    "$defs": {"ref": {"type": "string", "pattern": "^[0-9]+$"}},
}


def chat(model: OfflineModel, text: str, **options: Any) -> Any:
    request = ChatRequest(model="chat-fast", messages=[{"role": "user", "content": text}], **options)
    return model.chat(TARGET, request, CTX)


def json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def test_json_mode_answers_an_object_that_matches_the_requested_schema() -> None:
    result = chat(
        OfflineModel(),
        "Buyer pays within 30 days, ref 4711.",
        response_format=json_schema_format(CLAUSES_SCHEMA),
    )
    value = json.loads(result.text)
    assert schema_errors(value, CLAUSES_SCHEMA) == []
    assert value["currency"] == "EUR" and len(value["clauses"]) == 2
    assert value["clauses"][0]["ref"] == "30"  # a pattern is met with the first of the user's words that fits
    assert result.finish_reason == "stop" and result.usage.output > 0


@given(
    st.recursive(
        st.sampled_from(
            [
                {"type": "string"},
                {"type": "integer", "minimum": 3},
                {"type": "number", "maximum": -2},
                {"type": "boolean"},
                {"enum": ["a", "b"]},
                {"type": "string", "minLength": 12},
            ]
        ),
        lambda inner: st.one_of(
            st.builds(lambda items: {"type": "array", "items": items, "minItems": 1}, inner),
            st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), inner, min_size=1, max_size=4).map(
                lambda props: {"type": "object", "properties": props, "required": sorted(props)}
            ),
        ),
        max_leaves=8,
    ),
    st.text(max_size=40),
)
def test_json_mode_output_always_validates(schema: dict[str, Any], words: str) -> None:
    assert schema_errors(example_for_schema(schema, words), schema) == []


def test_canned_answers_match_by_contained_text_in_order_and_win_over_json_mode() -> None:
    script = OfflineScript.from_data(
        [
            {"when": {"contains": "INVOICE"}, "answer": "The total is 58.80 USD."},
            {"when": {"contains": "clause"}, "answer": {"json": {"clauses": []}}},
            {"answer": {"tool_call": {"name": "lookup_order", "arguments": {"order_id": "123"}}}},
        ]
    )
    model = OfflineModel(script)
    assert chat(model, "explain this invoice").text == "The total is 58.80 USD."
    canned = chat(model, "list each clause", response_format=json_schema_format(CLAUSES_SCHEMA))
    assert json.loads(canned.text) == {"clauses": []}  # scripted answers are returned as written
    tool = chat(
        model, "where is my order?", tools=[{"type": "function", "function": {"name": "lookup_order"}}]
    )
    assert tool.finish_reason == "tool_calls"
    assert json.loads(tool.tool_calls[0]["function"]["arguments"]) == {"order_id": "123"}


def test_without_a_script_it_is_the_echo_model() -> None:
    assert chat(OfflineModel(), "hello there").text == "echo: hello there"
    assert json.loads(chat(OfflineModel(), "hi", response_format={"type": "json_object"}).text) == {
        "echo": "hi"
    }


def test_conversation_rules_answer_only_their_own_conversation() -> None:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    model = OfflineModel()
    model.learn([OfflineRule(CannedAnswer("exact"), messages_sha256=conversation_sha256(messages))])
    model.learn([OfflineRule(CannedAnswer("exact"), messages_sha256=conversation_sha256(messages))])
    assert len(model.script.rules) == 1  # learning the same rule twice keeps one
    request = ChatRequest(model="m", messages=messages)
    assert model.chat(TARGET, request, CTX).text == "exact"
    assert chat(model, "q").text == "echo: q"  # same user text, no system message: another conversation


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"answer": "x"}, "must be a list of rules"),
        ([{"when": {"contains": "x"}}], "rule 1: must be"),
        ([{"when": {"startswith": "x"}, "answer": "y"}], "rule 1: 'when' takes only 'contains'"),
        ([{"answer": {"json": 1, "text": "x"}}], "rule 1: answer: give text"),
        (
            [{"answer": {"tool_call": {"name": "f", "arguments": [1]}}}],
            "tool_call.arguments must be a mapping",
        ),
        ([{"answer": {"yaml": "x"}}], "'yaml' is not text, json or tool_call"),
    ],
)
def test_malformed_scripts_name_the_rule_and_field(data: Any, message: str) -> None:
    with pytest.raises(ScriptError, match=message):
        OfflineScript.from_data(data, source="answers.yaml")


# --- suites: request options and offline answers ------------------------------------------------------

PROMPT = """name: extract-clauses
description: d
owner: legal@example.com
model: chat-fast
eval_suite: ../evals/extract-clauses.yaml
messages:
  - {role: user, content: "List the clauses of: {{contract}}"}
"""

SUITE = """suite: extract-clauses
prompt: {name: extract-clauses, alias: staging}
request: {temperature: 0}
cases:
  - id: schema-shaped
    vars: {contract: "The buyer pays in 30 days."}
    request:
      response_format:
        type: json_schema
        json_schema:
          name: clauses
          schema: {type: object, properties: {days: {type: integer}}, required: [days]}
    assert:
      - {type: json-schema, value: {type: object, properties: {days: {type: integer}}, required: [days]}}
  - id: canned
    vars: {contract: "Seller delivers."}
    offline_answer: {json: {days: 30, party: seller}}
    assert:
      - {type: contains, value: seller}
      - {type: is-json}
  - id: echoed
    vars: {contract: "Seller delivers in May."}
    request: {temperature: 0.5, max_tokens: 50}
    assert:
      - {type: icontains, value: seller delivers in may}
"""


def write_feature(root: Path, suite: str = SUITE) -> Path:
    (root / "prompts").mkdir(parents=True)
    (root / "evals").mkdir()
    (root / "prompts" / "extract-clauses.yaml").write_text(PROMPT)
    path = root / "evals" / "extract-clauses.yaml"
    path.write_text(suite)
    return path


def test_suite_request_options_merge_case_over_suite(tmp_path: Path) -> None:
    suite = load_suite(write_feature(tmp_path))
    schema_case, canned, echoed = suite.cases
    assert (
        schema_case.request["temperature"] == 0
        and schema_case.request["response_format"]["type"] == "json_schema"
    )
    assert echoed.request == {"temperature": 0.5, "max_tokens": 50}
    assert canned.offline_answer == {"json": {"days": 30, "party": "seller"}}


@pytest.mark.parametrize(
    ("case_extra", "message"),
    [
        ("    request: {temprature: 0}\n", "unknown field 'temprature'"),
        ("    request: {temperature: 3}\n", "'temperature' must be a number from 0 to 2"),
        ("    request: {response_format: {type: xml}}\n", "must be {type: text | json_object | json_schema}"),
        (
            "    request: {response_format: {type: json_schema, json_schema: {name: x, schema: {type: 7}}}}"
            "\n",
            "invalid JSON Schema",
        ),
        ("    request: {tools: []}\n", "'tools' must be a non-empty list"),
        ("    offline_answer: {yaml: x}\n", "offline_answer: 'yaml' is not text, json or tool_call"),
    ],
)
def test_bad_request_options_and_offline_answers_fail_with_the_line(
    tmp_path: Path, case_extra: str, message: str
) -> None:
    suite = (
        "suite: s\nprompt: extract-clauses\ncases:\n  - id: a\n    vars: {contract: x}\n"
        + case_extra
        + "    assert: [{type: is-json}]\n"
    )
    with pytest.raises(SuiteError, match=message) as caught:
        load_suite(write_feature(tmp_path, suite))
    assert caught.value.line == 6


def test_local_target_sends_request_options_and_answers_cases_offline(tmp_path: Path) -> None:
    from ai_factory.evals.targets import resolve_prompt

    suite = load_suite(write_feature(tmp_path / "legal"))
    target = LocalTarget(prompt=resolve_prompt(suite, need_template=True), state_dir=tmp_path / "state")
    try:
        body = target.request_body(suite, suite.cases[2])
        assert (body["temperature"], body["max_tokens"], body["model"]) == (0.5, 50, "chat-fast")
        result = execute(suite, target, out_dir=tmp_path / "out", concurrency=2)
    finally:
        target.close()
    assert result.verdict.passed, result.verdict.reasons
    outputs = {run.case_id: run.output.text for run in result.runs}
    assert json.loads(outputs["schema-shaped"]) == {"days": 0}
    assert json.loads(outputs["canned"]) == {"days": 30, "party": "seller"}
    assert outputs["echoed"] == "echo: List the clauses of: Seller delivers in May."


def test_the_registered_echo_model_keeps_the_paced_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    from aif_gateway.provider_registry import default_providers

    monkeypatch.setenv("AIF_ECHO_TOKEN_MS", "5")
    echo = default_providers()["echo"]
    assert isinstance(echo, OfflineModel) and echo.token_s == pytest.approx(0.005)


NESTED_QUESTIONS_SUITE = """\
suite: nested-questions
model: chat-smart
messages: [{{role: user, content: "{{{{question}}}}"}}]
retrieval: {{knowledge_base: internal-qa, top_k: 1, documents: {documents}}}
cases:
  - id: short
    vars: {{question: "How long is parental leave?"}}
    offline_answer: "The short answer [1]."
    assert: [{{type: contains, value: short}}]
  - id: long
    vars: {{question: "Tell me: how long is parental leave?"}}
    offline_answer: "The long answer [1]."
    assert: [{{type: contains, value: long}}]
"""


def test_retrieval_cases_whose_questions_contain_one_another_keep_their_own_answers(tmp_path: Path) -> None:
    # The gateway adds sources to a retrieval case's conversation, so the offline model cannot see the
    # case's exact messages; it once matched the question as text, and a case whose question contains an
    # earlier-learned case's question got that case's answer (which one depended on the order cases ran).
    repo = Path(__file__).resolve().parents[2]
    path = tmp_path / "suite.yaml"
    path.write_text(NESTED_QUESTIONS_SUITE.format(documents=repo / "features/knowledge/documents"))
    suite = load_suite(path)
    short, long = suite.cases
    target = LocalTarget(state_dir=tmp_path / "state")
    try:
        answers = [target.run(suite, case).text for case in (long, short, long, short)]
    finally:
        target.close()
    assert answers == [
        "The long answer [1].",
        "The short answer [1].",
        "The long answer [1].",
        "The short answer [1].",
    ]
