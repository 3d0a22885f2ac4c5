"""End to end: the official ``anthropic`` SDK on ``/v1/messages`` and the ``openai`` SDK's Responses
API on ``/v1/responses``, against ``ai-factory serve``. The echo model calls an offered tool the user
names and answers tool results (``aif_gateway.echo_agent``), so tool loops run offline."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest
from anthropic import Anthropic
from openai import OpenAI

from .conftest import LocalGateway

pytestmark = pytest.mark.e2e

MakeKey = Callable[..., str]
WEATHER_TOOL: Any = {
    "name": "weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_FN: Any = {
    "type": "function",
    "name": "weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def claude(gw: LocalGateway, key: str, *, bearer: bool = False) -> Anthropic:
    if bearer:  # Claude Code's ANTHROPIC_AUTH_TOKEN: Authorization: Bearer
        return Anthropic(base_url=gw.server.url, auth_token=key, api_key=None, max_retries=0, timeout=30)
    return Anthropic(base_url=gw.server.url, api_key=key, max_retries=0, timeout=30)


def test_anthropic_sdk_messages_and_tool_round_trip(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    sdk = claude(local_gateway, make_key())
    plain = sdk.messages.create(
        model="echo",
        max_tokens=256,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hello there"}],
        metadata={"user_id": "dev-1"},
    )
    assert plain.content[0].type == "text" and plain.content[0].text == "echo: hello there"
    assert plain.stop_reason == "end_turn" and plain.usage.input_tokens > 0

    messages: list[Any] = [{"role": "user", "content": "Use weather for Paris"}]
    first = sdk.messages.create(model="echo", max_tokens=256, tools=[WEATHER_TOOL], messages=messages)
    assert first.stop_reason == "tool_use"
    use = first.content[0]
    assert use.type == "tool_use" and use.name == "weather" and use.input == {"city": "Use weather for Paris"}

    messages.append(
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]}
    )
    messages.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C"}]}
    )
    second = sdk.messages.create(model="echo", max_tokens=256, tools=[WEATHER_TOOL], messages=messages)
    assert second.content[0].type == "text" and second.content[0].text == "echo: 18C"


def test_anthropic_sdk_streaming(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    sdk = claude(local_gateway, make_key(), bearer=True)
    with sdk.messages.stream(
        model="echo", max_tokens=256, messages=[{"role": "user", "content": "stream me please"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "echo: stream me please"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0

    with sdk.messages.stream(
        model="echo",
        max_tokens=256,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "weather in Rome"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "weather in Rome"}


def test_anthropic_sdk_errors(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        claude(local_gateway, "aif-wrong").messages.create(
            model="echo", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    sdk = claude(local_gateway, make_key())
    with pytest.raises(anthropic.BadRequestError) as bad:
        sdk.messages.create(
            model="echo", max_tokens=10, messages=[{"role": "user", "content": "hi"}], extra_body={"top_k": 3}
        )
    assert "'top_k'" in str(bad.value) and bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(
            model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )


def test_openai_sdk_responses_with_tools(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    sdk = OpenAI(base_url=local_gateway.base_url, api_key=make_key(), max_retries=0, timeout=30)
    plain = sdk.responses.create(model="echo", instructions="Be brief.", input="hello responses")
    assert plain.output_text == "echo: hello responses" and plain.usage is not None

    items: list[Any] = [{"role": "user", "content": "Use weather for Oslo"}]
    first = sdk.responses.create(model="echo", input=items, tools=[WEATHER_FN], store=False)
    call = first.output[0]
    assert call.type == "function_call" and call.name == "weather"
    assert json.loads(call.arguments) == {"city": "Use weather for Oslo"}
    items += [item.model_dump(exclude_none=True) for item in first.output]
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": "-3C"})
    second = sdk.responses.create(model="echo", input=items, tools=[WEATHER_FN], store=False)
    assert second.output_text == "echo: -3C"

    with pytest.raises(openai.BadRequestError) as bad:
        sdk.responses.create(model="echo", input="hi", previous_response_id="resp_123")
    assert "previous_response_id" in str(bad.value)


def test_openai_sdk_responses_streaming(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    sdk = OpenAI(base_url=local_gateway.base_url, api_key=make_key(), max_retries=0, timeout=30)
    kinds, deltas = [], []
    with sdk.responses.stream(model="echo", input="stream this") as stream:
        for ev in stream:
            kinds.append(ev.type)
            if ev.type == "response.output_text.delta":
                deltas.append(ev.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == "echo: stream this" and final.output_text == "echo: stream this"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.usage is not None and final.usage.output_tokens > 0

    events = list(
        sdk.responses.create(model="echo", input="weather in Lima", tools=[WEATHER_FN], stream=True)
    )
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"city": "weather in Lima"}
    assert events[-1].type == "response.completed"


def test_anthropic_sdk_count_tokens_matches_the_billed_input(
    local_gateway: LocalGateway, make_key: MakeKey
) -> None:
    """The offline model counts with the same rule its answers are billed by."""
    sdk = claude(local_gateway, make_key())
    messages: Any = [{"role": "user", "content": "count these five words"}]
    counted = sdk.messages.count_tokens(
        model="echo", system="Be brief.", messages=messages, tools=[WEATHER_TOOL]
    )
    answer = sdk.messages.create(model="echo", max_tokens=64, system="Be brief.", messages=messages)
    assert counted.input_tokens == answer.usage.input_tokens == 6
