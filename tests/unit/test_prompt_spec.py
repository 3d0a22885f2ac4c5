"""Prompt files: validation errors name file, field and reason; variables; content hash; the renderer."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.prompts.spec import (
    PromptFileError,
    PromptVariablesError,
    check_model,
    load_prompt_file,
    render_messages,
)
from aif_gateway.prompt_template import content_hash, extract_variables

VALID: dict[str, Any] = {
    "name": "summarize-ticket",
    "description": "Summarize a support ticket for the next agent.",
    "owner": "support-platform@example.com",
    "model": "chat-fast",
    "parameters": {"temperature": 0.2, "max_tokens": 400},
    "eval_suite": "../evals/summarize-ticket.yaml",
    "messages": [
        {"role": "system", "content": "You summarize customer support tickets for agents."},
        {"role": "user", "content": "Summarize in at most {{max_sentences}} sentences:\n\n{{ ticket }}"},
    ],
}


def write_prompt(root: Path, data: dict[str, Any] | str, name: str = "summarize-ticket.yaml") -> Path:
    """A prompt file under root/feature/prompts with its eval suite in root/feature/evals."""
    (root / "feature" / "evals").mkdir(parents=True, exist_ok=True)
    (root / "feature" / "evals" / "summarize-ticket.yaml").write_text("cases: []\n")
    path = root / "feature" / "prompts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def with_changes(**changes: Any) -> dict[str, Any]:
    data = {**VALID, **changes}
    return {k: v for k, v in data.items() if v is not None}


def test_valid_file_loads_with_variables_hash_and_resolved_paths(tmp_path: Path) -> None:
    path = write_prompt(tmp_path, VALID)
    spec = load_prompt_file(path)
    assert spec.name == "summarize-ticket"
    assert spec.owner == "support-platform@example.com"
    assert spec.model == "chat-fast"
    assert spec.parameters == {"temperature": 0.2, "max_tokens": 400}
    assert spec.variables == ("max_sentences", "ticket")
    assert spec.messages == VALID["messages"]
    assert spec.eval_suite == (tmp_path / "feature" / "evals" / "summarize-ticket.yaml").resolve()
    assert spec.source == path.resolve()
    assert spec.content_hash == content_hash(VALID["messages"], "chat-fast", spec.parameters)
    assert spec.content_hash.startswith("sha256:") and len(spec.content_hash) == len("sha256:") + 64


def test_template_form_is_one_user_message(tmp_path: Path) -> None:
    spec = load_prompt_file(write_prompt(tmp_path, with_changes(messages=None, template="Hi {{name}}")))
    assert spec.messages == [{"role": "user", "content": "Hi {{name}}"}]
    assert spec.variables == ("name",)
    assert spec.render({"name": "Ada"}) == [{"role": "user", "content": "Hi Ada"}]


def test_hash_ignores_owner_description_and_eval_suite(tmp_path: Path) -> None:
    base = load_prompt_file(write_prompt(tmp_path, VALID)).content_hash
    (tmp_path / "feature" / "other.yaml").write_text("cases: []\n")
    other = with_changes(owner="someone@example.com", description="different", eval_suite="../other.yaml")
    assert load_prompt_file(write_prompt(tmp_path, other, "b.yaml")).content_hash == base


@pytest.mark.parametrize(
    "changes",
    [
        {"model": "chat-smart"},
        {"parameters": {"temperature": 0.3, "max_tokens": 400}},
        {"messages": [{"role": "user", "content": "Summarize {{ticket}}"}]},
        {
            "messages": [
                *VALID["messages"][:1],
                {"role": "user", "content": VALID["messages"][1]["content"] + " "},
            ]
        },
    ],
)
def test_hash_changes_with_content(tmp_path: Path, changes: dict[str, Any]) -> None:
    base = load_prompt_file(write_prompt(tmp_path, VALID)).content_hash
    assert load_prompt_file(write_prompt(tmp_path, with_changes(**changes), "b.yaml")).content_hash != base


def test_equivalent_parameter_spellings_hash_alike(tmp_path: Path) -> None:
    one = with_changes(parameters={"temperature": 1, "stop": "END"})
    other = with_changes(parameters={"temperature": 1.0, "stop": ["END"]})
    a = load_prompt_file(write_prompt(tmp_path, one))
    b = load_prompt_file(write_prompt(tmp_path, other, "b.yaml"))
    assert a.parameters == {"temperature": 1.0, "stop": ["END"]}
    assert a.content_hash == b.content_hash


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (with_changes(name="Summarize_Ticket"), "name", "lowercase"),
        (with_changes(name=None), "name", "is required"),
        (with_changes(owner=None), "owner", "is required"),
        (with_changes(model=None), "model", "is required"),
        (with_changes(eval_suite=None), "eval_suite", "is required"),
        (with_changes(eval_suite="../evals/missing.yaml"), "eval_suite", "does not exist"),
        (with_changes(template="Hi"), "messages", "not both"),
        (with_changes(messages=None), "messages", "exactly one of"),
        (with_changes(messages=[]), "messages", "non-empty list"),
        (with_changes(messages=[{"role": "robot", "content": "x"}]), "messages[0].role", "'robot'"),
        (with_changes(messages=[{"role": "user", "content": ""}]), "messages[0].content", "non-empty"),
        (
            with_changes(messages=[{"role": "user", "content": "x", "name": "a"}]),
            "messages[0].name",
            "unknown",
        ),
        (
            with_changes(messages=[{"role": "user", "content": "Hi {{first name}}"}]),
            "messages[0].content",
            "{{",
        ),
        (with_changes(temperature=0.5), "temperature", "unknown field"),
        (with_changes(parameters={"temperature": 2.5}), "parameters.temperature", "0 to 2"),
        (with_changes(parameters={"temperature": "hot"}), "parameters.temperature", "0 to 2"),
        (with_changes(parameters={"temperature": True}), "parameters.temperature", "0 to 2"),
        (with_changes(parameters={"top_p": 1.5}), "parameters.top_p", "0 to 1"),
        (with_changes(parameters={"max_tokens": 0}), "parameters.max_tokens", ">= 1"),
        (with_changes(parameters={"max_tokens": 10.5}), "parameters.max_tokens", ">= 1"),
        (with_changes(parameters={"stop": ["a", "b", "c", "d", "e"]}), "parameters.stop", "1 to 4"),
        (with_changes(parameters={"stop": [1]}), "parameters.stop", "1 to 4"),
        (with_changes(parameters={"seed": 1}), "parameters.seed", "unknown parameter"),
        (with_changes(parameters=[1]), "parameters", "mapping"),
        ("- just\n- a list\n", "file", "mapping"),
    ],
)
def test_invalid_files_name_file_field_and_reason(
    tmp_path: Path, data: dict[str, Any] | str, field: str, reason: str
) -> None:
    path = write_prompt(tmp_path, data)
    with pytest.raises(PromptFileError) as info:
        load_prompt_file(path)
    assert info.value.field == field
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{path.resolve()}: {field}: ")


def test_bad_yaml_reports_the_line(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        name: summarize-ticket
        owner: a@example.com
        messages:
          - role: user
            content: "unterminated
        """
    )
    with pytest.raises(PromptFileError, match=r"yaml: not valid YAML at line \d+") as info:
        load_prompt_file(write_prompt(tmp_path, text))
    assert info.value.field == "yaml"


def test_duplicate_keys_are_rejected_with_their_line(tmp_path: Path) -> None:
    text = "name: a\nowner: x@example.com\nname: b\n"
    with pytest.raises(PromptFileError, match=r"line 3.*duplicate key 'name'"):
        load_prompt_file(write_prompt(tmp_path, text))


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match="file: cannot read it"):
        load_prompt_file(tmp_path / "nope.yaml")


def test_check_model_against_the_catalog(tmp_path: Path) -> None:
    catalog = ModelCatalog.load()
    check_model(load_prompt_file(write_prompt(tmp_path, VALID)), catalog)
    with pytest.raises(PromptFileError, match="model: 'nope' is not a route in the catalog"):
        check_model(load_prompt_file(write_prompt(tmp_path, with_changes(model="nope"), "b.yaml")), catalog)
    with pytest.raises(PromptFileError, match="model: 'embed' is a embedding route, not chat"):
        check_model(load_prompt_file(write_prompt(tmp_path, with_changes(model="embed"), "c.yaml")), catalog)


# --- the renderer (shared with the gateway runtime) --------------------------------------------------


def test_render_substitutes_and_keeps_other_fields() -> None:
    messages = [{"role": "user", "content": "{{a}} and {{ b }} and {{a}}", "name": "x"}]
    assert render_messages(messages, {"a": "1", "b": 2.5}) == [
        {"role": "user", "content": "1 and 2.5 and 1", "name": "x"}
    ]
    assert messages[0]["content"] == "{{a}} and {{ b }} and {{a}}"  # not mutated


def test_render_reports_missing_extra_and_invalid() -> None:
    messages = [{"role": "user", "content": "{{a}} {{b}} {{c}}"}]
    with pytest.raises(PromptVariablesError) as info:
        render_messages(messages, {"b": "x", "c": True, "z": "y", "d": "w"})
    assert (info.value.missing, info.value.extra, info.value.invalid) == (["a"], ["d", "z"], ["c"])
    assert "missing: a" in str(info.value) and "unexpected: d, z" in str(info.value)
    for bad in (None, {"k": 1}, [1]):
        with pytest.raises(PromptVariablesError):
            render_messages(messages, {"a": "1", "b": "2", "c": bad})


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
values = st.one_of(st.text(max_size=30), st.integers(), st.floats(allow_nan=False, allow_infinity=False))
literal = st.text(max_size=20).filter(lambda s: "{" not in s and "}" not in s)


@given(st.lists(st.tuples(literal, names), max_size=6), literal, st.data())
def test_render_round_trip(parts: list[tuple[str, str]], tail: str, data: st.DataObject) -> None:
    template = "".join(f"{text}{{{{{name}}}}}" for text, name in parts) + tail
    messages = [{"role": "user", "content": template}]
    assert set(extract_variables(messages)) == {name for _, name in parts}
    variables = {name: data.draw(values) for name in extract_variables(messages)}
    rendered = render_messages(messages, variables)[0]["content"]
    assert rendered == "".join(f"{text}{variables[name]}" for text, name in parts) + tail


@given(names, st.text(max_size=40))
def test_values_with_braces_are_not_expanded(name: str, payload: str) -> None:
    value = "{{" + name + "}}" + payload
    messages = [{"role": "system", "content": "<{{" + name + "}}>"}]
    assert render_messages(messages, {name: value}) == [{"role": "system", "content": f"<{value}>"}]


@given(st.sets(names, max_size=5), st.sets(names, max_size=5))
def test_missing_and_extra_are_exact(expected: set[str], given_names: set[str]) -> None:
    messages = [{"role": "user", "content": " ".join("{{" + n + "}}" for n in sorted(expected))}]
    variables = dict.fromkeys(given_names, "v")
    if expected == given_names:
        render_messages(messages, variables)
        return
    with pytest.raises(PromptVariablesError) as info:
        render_messages(messages, variables)
    assert info.value.missing == sorted(expected - given_names)
    assert info.value.extra == sorted(given_names - expected)
