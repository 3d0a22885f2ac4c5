"""Function tools declared on the Messages and Responses front doors: one shared rule for names,
schemas and descriptions, with errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from aif_gateway.anthropic_messages import parse_messages_request
from aif_gateway.errors import InvalidRequest
from aif_gateway.openai_responses import parse_responses_request


def messages(tools: list[Any]) -> dict[str, Any]:
    return {
        "model": "echo",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": tools,
    }


def responses(tools: list[Any]) -> dict[str, Any]:
    return {"model": "echo", "input": "hi", "tools": tools}


SCHEMA = {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            messages([{"name": "a", "input_schema": SCHEMA}, {"name": "a", "input_schema": SCHEMA}]),
            "tools[1].name",
        ),
        (messages([{"name": "a"}]), "tools[0].input_schema"),
        (messages([{"name": "a", "input_schema": SCHEMA, "description": 3}]), "tools[0].description"),
        (responses([{"type": "function", "name": "a"}, {"type": "function", "name": "a"}]), "tools[1].name"),
        (responses([{"type": "function", "name": "a", "parameters": "x"}]), "tools[0].parameters"),
        (responses([{"type": "function", "name": "a", "description": 3}]), "tools[0].description"),
    ],
)
def test_a_bad_tool_is_a_400_naming_the_field(body: dict[str, Any], param: str) -> None:
    parse = parse_messages_request if "messages" in body else parse_responses_request
    with pytest.raises(InvalidRequest) as error:
        parse(body)
    assert error.value.param == param


def test_tools_become_the_same_internal_function_on_both_doors() -> None:
    described = {"name": "lookup", "description": "find a ticket"}
    from_messages = parse_messages_request(messages([{**described, "input_schema": SCHEMA}]))
    from_responses = parse_responses_request(
        responses([{"type": "function", **described}])
    )  # schema defaulted
    expected = {"type": "function", "function": {**described, "parameters": SCHEMA}}
    assert from_messages.tools == [expected] and from_responses.tools == [expected]
