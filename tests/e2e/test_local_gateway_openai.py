"""End to end: the official ``openai`` SDK against ``ai-factory serve`` (the real gateway code, SQLite
stores, echo models), keys created through the CLI."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable

import openai
import pytest
from openai import OpenAI

from ai_factory.local.sqlite_store import SqliteLedger, default_db_path

from .conftest import LocalGateway

pytestmark = pytest.mark.e2e

MakeKey = Callable[..., str]


def client(gw: LocalGateway, key: str) -> OpenAI:
    # No SDK retries: a 429 or 5xx must surface here, not be retried behind the test's back.
    return OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)


def test_models_list_shows_only_the_keys_aliases(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    models = client(local_gateway, make_key("echo")).models.list()
    assert [m.id for m in models] == ["echo"]
    models = client(local_gateway, make_key("echo-embed,echo-priced")).models.list()
    assert sorted(m.id for m in models) == ["echo-embed", "echo-priced"]


def test_chat_completion(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    response = client(local_gateway, make_key()).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello from the sdk"}]
    )
    assert response.object == "chat.completion"
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content is not None
    assert "hello from the sdk" in response.choices[0].message.content
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None and response.usage.total_tokens > 0


def test_streaming(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    text = " ".join(f"word{i}" for i in range(40))  # long enough to come back in several chunks
    stream = client(local_gateway, make_key()).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": text}], stream=True
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert text in content
    assert finish == ["stop"]
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_embeddings(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    sdk = client(local_gateway, make_key())
    result = sdk.embeddings.create(model="echo-embed", input=["alpha", "beta"])  # SDK asks for base64
    assert [d.index for d in result.data] == [0, 1]
    vectors = [d.embedding for d in result.data]
    assert len(vectors[0]) > 0 and len(vectors[0]) == len(vectors[1])
    assert vectors[0] != vectors[1]
    floats = sdk.embeddings.create(model="echo-embed", input="alpha", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vectors[0], rel=1e-6)


def test_usage_is_recorded_in_the_local_ledger(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    sdk = client(local_gateway, make_key())
    raw = sdk.chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "x"}]
    )
    request_id = raw.headers["x-request-id"]
    records = SqliteLedger(default_db_path(local_gateway.state_dir)).list_usage(team="e2e")
    mine = [r for r in records if r.request_id == request_id]
    assert len(mine) == 1
    assert (mine[0].route, mine[0].status, mine[0].model_served) == ("echo", 200, "echo")


def test_registered_prompt_rendered_server_side(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    """A prompt view published into the state folder is served; the SDK passes the prompt in extra_body."""
    user = "Summarize in at most {{max_sentences}} sentences: {{ ticket }}"
    view = {
        "schema": 1,
        "generated_at": "2026-11-25T12:00:00Z",
        "prompts": {
            "summarize-ticket": {
                "versions": {
                    "3": {
                        "hash": "sha256:e2e",
                        "model": "echo",
                        "parameters": {"max_tokens": 400},
                        "messages": [
                            {"role": "system", "content": "You summarize tickets."},
                            {"role": "user", "content": user},
                        ],
                        "variables": ["max_sentences", "ticket"],
                    }
                },
                "aliases": {"production": "3"},
            }
        },
    }
    (local_gateway.state_dir / "prompts.json").write_text(json.dumps(view), encoding="utf-8")
    sdk = client(local_gateway, make_key())
    variables = {"ticket": "The printer is on fire.", "max_sentences": 2}
    raw = sdk.chat.completions.with_raw_response.create(
        model="echo",  # the SDK requires it; the gateway would default to the prompt's model
        messages=[],
        extra_body={"prompt": {"name": "summarize-ticket", "alias": "production", "variables": variables}},
    )
    response = raw.parse()
    assert (
        response.choices[0].message.content
        == "echo: Summarize in at most 2 sentences: The printer is on fire."
    )
    records = SqliteLedger(default_db_path(local_gateway.state_dir)).list_usage(team="e2e")
    mine = [r for r in records if r.request_id == raw.headers["x-request-id"]]
    assert [(r.prompt_name, r.prompt_version) for r in mine] == [("summarize-ticket", "3")]

    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(
            model="echo", messages=[], extra_body={"prompt": {"name": "summarize-ticket", "variables": {}}}
        )
    assert "missing max_sentences, ticket" in err.value.message
    assert isinstance(err.value.body, dict) and err.value.body.get("param") == "prompt.variables"
    with pytest.raises(openai.NotFoundError) as not_found:
        sdk.chat.completions.create(model="echo", messages=[], extra_body={"prompt": {"name": "nope"}})
    assert isinstance(not_found.value.body, dict) and not_found.value.body.get("code") == "prompt_not_found"


# -- errors ------------------------------------------------------------------------------------------


def test_400_invalid_body(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    sdk = client(local_gateway, make_key())
    with pytest.raises(openai.BadRequestError) as err:
        sdk.post("/chat/completions", body={"model": "echo"}, cast_to=object)
    assert err.value.status_code == 400
    assert "'messages' is required" in err.value.message
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="echo", messages=[])


def test_401_bad_key(local_gateway: LocalGateway) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        client(local_gateway, "aif-000000000000-not-a-real-key").models.list()
    assert err.value.status_code == 401


def test_401_revoked_key_via_cli(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    from ai_factory.cli.main import main

    key = make_key()
    key_id = key.split("-")[1]
    assert main(["keys", "revoke", key_id, "--state-dir", str(local_gateway.state_dir)]) == 0
    # a fresh key is not in the gateway's key cache yet, so revocation takes effect at once
    with pytest.raises(openai.AuthenticationError):
        client(local_gateway, key).models.list()


def test_403_model_not_allowed(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    with pytest.raises(openai.PermissionDeniedError) as err:
        client(local_gateway, make_key("echo")).chat.completions.create(
            model="echo-priced", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 403


def test_404_unknown_model(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client(local_gateway, make_key()).chat.completions.create(
            model="gpt-nonexistent", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 404


def test_413_body_over_the_gateway_limit(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    huge = "x" * 1_500_000  # over max_body_bytes (1 MB), under the server's hard cap
    with pytest.raises(openai.APIStatusError) as err:
        client(local_gateway, make_key()).chat.completions.create(
            model="echo", messages=[{"role": "user", "content": huge}]
        )
    assert err.value.status_code == 413
    body = err.value.body
    assert isinstance(body, dict) and body.get("code") == "request_too_large"


def test_413_before_reading_a_body_over_the_hard_cap(local_gateway: LocalGateway) -> None:
    """The server answers from the headers alone: the 50 MB body is never sent."""
    conn = http.client.HTTPConnection("127.0.0.1", local_gateway.server.port, timeout=10)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(50_000_000))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    assert response.getheader("Connection") == "close"
    assert json.loads(response.read())["error"]["code"] == "request_too_large"
    conn.close()


def test_411_and_400_on_missing_or_bad_content_length(local_gateway: LocalGateway) -> None:
    for headers, status in ((b"", 411), (b"Content-Length: abc\r\n", 400), (b"Content-Length: -1\r\n", 400)):
        with socket.create_connection(("127.0.0.1", local_gateway.server.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
            head, _, body = sock.makefile("rb").read().partition(b"\r\n\r\n")
        assert head.split(b" ", 2)[1] == str(status).encode()
        assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_keep_alive_serves_many_requests_on_one_connection(
    local_gateway: LocalGateway, make_key: MakeKey
) -> None:
    key = make_key()
    conn = http.client.HTTPConnection("127.0.0.1", local_gateway.server.port, timeout=10)
    sockets = set()
    for _ in range(5):
        conn.request("GET", "/v1/models?x=1", headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["data"][0]["id"] == "echo"
        sockets.add(id(conn.sock))
    assert len(sockets) == 1
    conn.close()


def test_429_rate_limit(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    sdk = client(local_gateway, make_key("echo", "--rate-limit", "1"))
    # Three tries: if a minute boundary falls between the first two, the third is still over the limit.
    with pytest.raises(openai.RateLimitError) as err:
        for _ in range(3):
            sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert "Rate limit of 1 requests per minute" in err.value.message
    assert err.value.response.headers.get("retry-after")


def test_429_budget_exhausted(local_gateway: LocalGateway, make_key: MakeKey) -> None:
    # echo-priced costs a cent a token. Without max_tokens a request reserves the 4,096-token worst case
    # ($40+), more than the $0.50 budget: refused before any model call, with the advice to send max_tokens.
    sdk = client(local_gateway, make_key("echo-priced", "--budget", "0.5"))
    ask = [{"role": "user", "content": "this costs a few cents"}]
    with pytest.raises(openai.RateLimitError) as err:
        sdk.chat.completions.create(model="echo-priced", messages=ask)
    assert "monthly budget of $0.50" in err.value.message and "max_tokens" in err.value.message
    # With max_tokens the requests fit until what they really cost uses the budget up.
    first = sdk.chat.completions.create(model="echo-priced", messages=ask, max_tokens=10)
    assert first.choices[0].message.content
    with pytest.raises(openai.RateLimitError) as err:
        for _ in range(20):
            sdk.chat.completions.create(model="echo-priced", messages=ask, max_tokens=10)
    assert "monthly budget of $0.50" in err.value.message
    body = err.value.body
    assert isinstance(body, dict) and body.get("code") == "budget_exhausted"
    assert err.value.response.headers["x-aif-limit"] == "budget"
