"""The echo model's tool rules (``echo_agent``) that the coding-agent CLI tests rely on."""

from __future__ import annotations

import json
from typing import Any

from aif_gateway.config import ModelTarget
from aif_gateway.openai_schema import ChatRequest
from aif_gateway.provider_types import CallContext
from aif_gateway.providers import EchoProvider

TARGET = ModelTarget("echo", "echo", "echo", "chat")
READ = {
    "type": "function",
    "function": {"name": "Read", "parameters": {"type": "object", "properties": {"file_path": {}}}},
}


def answer(messages: list[dict[str, Any]], **extra: Any) -> Any:
    return EchoProvider().chat(
        TARGET, ChatRequest("echo", messages, **extra), CallContext("r", "t", "f", None)
    )


def test_json_after_the_tool_name_is_the_calls_arguments() -> None:
    result = answer([{"role": "user", "content": 'Read {"file_path": "/tmp/a b.txt"} please'}], tools=[READ])
    assert [json.loads(c["function"]["arguments"]) for c in result.tool_calls] == [
        {"file_path": "/tmp/a b.txt"}
    ]


def test_without_json_the_first_property_takes_the_users_text() -> None:
    result = answer([{"role": "user", "content": "Read notes"}], tools=[READ])
    assert json.loads(result.tool_calls[0]["function"]["arguments"]) == {"file_path": "Read notes"}


def test_a_trailing_system_turn_does_not_end_the_conversation() -> None:
    messages = [
        {"role": "user", "content": "Read {}"},
        {"role": "system", "content": "environment notes"},
    ]
    assert answer(messages, tools=[READ]).finish_reason == "tool_calls"
    call = {"id": "c1", "type": "function", "function": {"name": "Read", "arguments": "{}"}}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "file text"},
        {"role": "system", "content": "more notes"},
    ]
    assert answer(messages, tools=[READ]).text == "echo: file text"
