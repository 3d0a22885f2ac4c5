"""Registered prompts in the gateway: resolution, server-side rendering, records, and the cached view."""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import FakeClock, Harness, make_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from aif_gateway.config import ModelTarget
from aif_gateway.errors import NotFound
from aif_gateway.openai_schema import ChatRequest
from aif_gateway.prompt_view import PromptViewError, PromptViewSource, parse_view
from aif_gateway.provider_types import CallContext, ChatResult
from aif_gateway.providers import EchoProvider
from aif_gateway.records import StoreError, UsageRecord

CHAT = "/v1/chat/completions"


def version(
    messages: list[dict[str, str]],
    model: str = "echo",
    parameters: dict[str, Any] | None = None,
    content_hash: str = "sha256:abc",
) -> dict[str, Any]:
    from aif_gateway.prompt_template import extract_variables

    return {
        "hash": content_hash,
        "model": model,
        "parameters": parameters or {},
        "messages": messages,
        "variables": list(extract_variables(messages)),
    }


SUMMARIZE_V3 = version(
    [
        {"role": "system", "content": "You summarize support tickets."},
        {"role": "user", "content": "Summarize in at most {{max_sentences}} sentences:\n\n{{ ticket }}"},
    ],
    parameters={"temperature": 0.2, "max_tokens": 400, "stop": ["END"]},
)
SUMMARIZE_V4 = version(
    [{"role": "user", "content": "Summary ({{max_sentences}} sentences max): {{ticket}}"}],
    content_hash="sha256:def",
)


def make_view(**extra_prompts: Any) -> dict[str, Any]:
    """A fresh (deep-copied) view, so tests may break it in place."""
    view = {
        "schema": 1,
        "generated_at": "2026-11-25T12:00:00Z",
        "prompts": {
            "summarize-ticket": {
                "versions": {"3": SUMMARIZE_V3, "4": SUMMARIZE_V4},
                "aliases": {"production": "3", "staging": "4"},
            },
            "fast-answer": {
                "versions": {"1": version([{"role": "user", "content": "Answer: {{q}}"}], model="chat-fast")},
                "aliases": {"production": "1"},
            },
            "system-only": {
                "versions": {"1": version([{"role": "system", "content": "Be terse."}])},
                "aliases": {"production": "1"},
            },
            "unpromoted": {"versions": {"1": version([{"role": "user", "content": "hi"}])}, "aliases": {}},
            **extra_prompts,
        },
    }
    return copy.deepcopy(view)


class RecordingEcho(EchoProvider):
    """The echo model, keeping the requests it was sent."""

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    def chat(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatResult:
        self.requests.append(request)
        return super().chat(target, request, ctx)


@pytest.fixture
def view_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(make_view()), encoding="utf-8")
    return path


@pytest.fixture
def echo(harness: Harness, view_file: Path) -> RecordingEcho:
    """The harness gateway serving ``view_file`` with a recording echo model."""
    recorder = RecordingEcho()
    harness.gateway.providers["echo"] = recorder
    harness.gateway.prompts = PromptViewSource(view_file, clock=harness.clock)
    return recorder


def chat(h: Harness, key: str, prompt: Any, **body: Any) -> tuple[int, dict[str, str], Any]:
    return h.call("POST", CHAT, {"prompt": prompt, **body}, key)


def last_record(h: Harness) -> UsageRecord:
    return list(h.ledger.records.values())[-1]


TICKET = {"ticket": "Printer on fire.", "max_sentences": 2}


# ------------------------------------------------------------------------------------ rendering


def test_production_alias_is_rendered_first_and_recorded(harness: Harness, echo: RecordingEcho) -> None:
    key = harness.add_key()
    status, _, body = chat(
        harness,
        key,
        {"name": "summarize-ticket", "variables": TICKET},
        messages=[{"role": "user", "content": "Also mention the ticket number."}],
    )
    assert status == 200, body
    sent = echo.requests[-1]
    assert sent.model == "echo"
    assert sent.messages == [
        {"role": "system", "content": "You summarize support tickets."},
        {"role": "user", "content": "Summarize in at most 2 sentences:\n\nPrinter on fire."},
        {"role": "user", "content": "Also mention the ticket number."},
    ]
    record = last_record(harness)
    assert (record.prompt_name, record.prompt_version, record.route) == ("summarize-ticket", "3", "echo")
    assert harness.audit[-1].prompt_name == "summarize-ticket" and harness.audit[-1].prompt_version == "3"


@pytest.mark.parametrize(
    ("selector", "expected_version", "expected_text"),
    [
        ({"version": 4}, "4", "Summary (2 sentences max): Printer on fire."),
        ({"version": "4"}, "4", "Summary (2 sentences max): Printer on fire."),
        ({"alias": "staging"}, "4", "Summary (2 sentences max): Printer on fire."),
        ({"alias": "production"}, "3", "Summarize in at most 2 sentences:\n\nPrinter on fire."),
        ({"version": 3}, "3", "Summarize in at most 2 sentences:\n\nPrinter on fire."),
    ],
)
def test_version_or_alias_selects_the_version(
    harness: Harness, echo: RecordingEcho, selector: dict[str, Any], expected_version: str, expected_text: str
) -> None:
    key = harness.add_key()
    status, _, body = chat(harness, key, {"name": "summarize-ticket", **selector, "variables": TICKET})
    assert status == 200, body
    assert echo.requests[-1].messages[-1]["content"] == expected_text
    assert last_record(harness).prompt_version == expected_version


def test_messages_may_be_empty_or_absent(harness: Harness, echo: RecordingEcho) -> None:
    key = harness.add_key()
    extras: list[dict[str, Any]] = [{"messages": []}, {}]
    for extra in extras:
        status, _, body = chat(harness, key, {"name": "summarize-ticket", "variables": TICKET}, **extra)
        assert status == 200, body
        assert len(echo.requests[-1].messages) == 2


def test_model_defaults_to_the_prompts_and_may_be_repeated(harness: Harness, echo: RecordingEcho) -> None:
    key = harness.add_key()
    status, _, body = chat(harness, key, {"name": "summarize-ticket", "variables": TICKET}, model="echo")
    assert status == 200, body
    assert body["model"] == "echo"


def test_a_different_model_is_a_400_naming_model(harness: Harness, echo: RecordingEcho) -> None:
    key = harness.add_key()
    status, _, body = chat(harness, key, {"name": "summarize-ticket", "variables": TICKET}, model="chat-solo")
    assert status == 400
    assert body["error"]["param"] == "model"
    assert "'echo'" in body["error"]["message"] and "'chat-solo'" in body["error"]["message"]
    assert echo.requests == []
    assert harness.audit[-1].prompt_name == "summarize-ticket" and harness.audit[-1].prompt_version == "3"


def test_the_key_must_be_allowed_the_prompts_model(harness: Harness, echo: RecordingEcho) -> None:
    key = harness.add_key(allowed_models=("chat-solo",))
    status, _, body = chat(harness, key, {"name": "summarize-ticket", "variables": TICKET})
    assert status == 403
    assert body["error"]["code"] == "model_not_allowed" and "'echo'" in body["error"]["message"]
    assert echo.requests == []
    key2 = harness.add_key(allowed_models=("echo",))
    status, _, body = chat(harness, key2, {"name": "fast-answer", "variables": {"q": "why?"}})
    assert status == 403 and "'chat-fast'" in body["error"]["message"]


def test_prompt_parameters_are_defaults_the_request_overrides(harness: Harness, echo: RecordingEcho) -> None:
    key = harness.add_key()
    prompt = {"name": "summarize-ticket", "variables": TICKET}
    assert chat(harness, key, prompt)[0] == 200
    sent = echo.requests[-1]
    assert (sent.temperature, sent.max_tokens, sent.stop, sent.top_p) == (0.2, 400, ["END"], None)
    assert chat(harness, key, prompt, temperature=0.9, max_tokens=50, stop="STOP", top_p=0.5)[0] == 200
    sent = echo.requests[-1]
    assert (sent.temperature, sent.max_tokens, sent.stop, sent.top_p) == (0.9, 50, ["STOP"], 0.5)
    assert chat(harness, key, prompt, temperature=0)[0] == 200  # an explicit 0 is not "unset"
    assert echo.requests[-1].temperature == 0.0


def test_variable_values_are_inserted_literally(harness: Harness, echo: RecordingEcho) -> None:
    key = harness.add_key()
    variables = {"ticket": "{{max_sentences}} and {{ ticket }}", "max_sentences": 3.5}
    status, _, body = chat(harness, key, {"name": "summarize-ticket", "version": 4, "variables": variables})
    assert status == 200, body
    assert echo.requests[-1].messages[0]["content"] == (
        "Summary (3.5 sentences max): {{max_sentences}} and {{ ticket }}"
    )


def test_streaming_works_with_a_prompt(harness: Harness, echo: RecordingEcho) -> None:
    key = harness.add_key()
    status, headers, body = chat(harness, key, {"name": "summarize-ticket", "variables": TICKET}, stream=True)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    events = [json.loads(line[6:]) for line in body.split("\n\n") if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == "echo: Summarize in at most 2 sentences:\n\nPrinter on fire."
    assert body.endswith("data: [DONE]\n\n")


def test_a_prompt_of_only_system_messages_needs_request_messages(
    harness: Harness, echo: RecordingEcho
) -> None:
    key = harness.add_key()
    status, _, body = chat(harness, key, {"name": "system-only"})
    assert status == 400 and body["error"]["param"] == "messages"
    status, _, body = chat(
        harness, key, {"name": "system-only"}, messages=[{"role": "user", "content": "hi"}]
    )
    assert status == 200, body
    assert [m["role"] for m in echo.requests[-1].messages] == ["system", "user"]


# ------------------------------------------------------------------------------------ 404 and 400


@pytest.mark.parametrize(
    ("prompt", "param", "phrases"),
    [
        ({"name": "no-such-prompt"}, "prompt.name", ['"no-such-prompt"']),
        ({"name": "summarize-ticket", "version": 9}, "prompt.version", ['no version "9"', "versions: 3, 4"]),
        (
            {"name": "summarize-ticket", "alias": "canary"},
            "prompt.alias",
            ['no alias "canary"', "production"],
        ),
        ({"name": "unpromoted"}, "prompt.alias", ['no alias "production"', "aliases: none"]),
    ],
)
def test_unknown_prompt_version_or_alias_is_404(
    harness: Harness, echo: RecordingEcho, prompt: dict[str, Any], param: str, phrases: list[str]
) -> None:
    key = harness.add_key()
    status, _, body = chat(harness, key, prompt)
    assert status == 404
    assert body["error"]["code"] == "prompt_not_found" and body["error"]["param"] == param
    for phrase in phrases:
        assert phrase in body["error"]["message"]
    assert harness.audit[-1].error_type == "prompt_not_found"
    assert harness.audit[-1].prompt_name == prompt["name"] and harness.audit[-1].prompt_version is None
    assert not harness.ledger.records


def test_no_published_view_means_no_prompts(harness: Harness, tmp_path: Path) -> None:
    key = harness.add_key()
    status, _, body = chat(harness, key, {"name": "summarize-ticket"})  # the fixture's default source
    assert status == 404 and body["error"]["code"] == "prompt_not_found"
    harness.gateway.prompts = PromptViewSource(tmp_path / "missing.json", clock=harness.clock)
    status, _, body = chat(harness, key, {"name": "summarize-ticket"})
    assert status == 404 and body["error"]["code"] == "prompt_not_found"


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"ticket": "x"}, ["missing max_sentences"]),
        ({}, ["missing max_sentences, ticket"]),
        ({**TICKET, "tone": "friendly"}, ["unexpected tone"]),
        ({"ticket": "x", "tone": "friendly"}, ["missing max_sentences", "unexpected tone"]),
    ],
)
def test_missing_or_extra_variables_are_a_400_naming_them(
    harness: Harness, echo: RecordingEcho, variables: dict[str, Any], named: list[str]
) -> None:
    key = harness.add_key()
    status, _, body = chat(harness, key, {"name": "summarize-ticket", "variables": variables})
    assert status == 400
    assert body["error"]["param"] == "prompt.variables"
    assert body["error"]["code"] == "invalid_prompt_variables"
    for phrase in named:
        assert phrase in body["error"]["message"]
    assert "it takes: max_sentences, ticket" in body["error"]["message"]
    assert echo.requests == []
    assert harness.audit[-1].prompt_version == "3"


@pytest.mark.parametrize("value", [True, None, {"a": 1}, [1], float("nan")])
def test_variable_values_must_be_strings_or_numbers(
    harness: Harness, echo: RecordingEcho, value: Any
) -> None:
    key = harness.add_key()
    prompt = {"name": "summarize-ticket", "variables": {**TICKET, "ticket": value}}
    status, _, body = chat(harness, key, prompt)
    assert status == 400
    assert body["error"]["param"] == "prompt.variables"
    assert "prompt.variables.ticket" in body["error"]["message"]


@pytest.mark.parametrize(
    ("prompt", "param"),
    [
        ("summarize-ticket", "prompt"),
        ({"version": 3}, "prompt.name"),
        ({"name": ""}, "prompt.name"),
        ({"name": 7}, "prompt.name"),
        ({"name": "summarize-ticket", "version": 3, "alias": "production"}, "prompt.version"),
        ({"name": "summarize-ticket", "version": 0}, "prompt.version"),
        ({"name": "summarize-ticket", "version": True}, "prompt.version"),
        ({"name": "summarize-ticket", "version": "three"}, "prompt.version"),
        ({"name": "summarize-ticket", "alias": ""}, "prompt.alias"),
        ({"name": "summarize-ticket", "variables": ["x"]}, "prompt.variables"),
        ({"name": "summarize-ticket", "variabels": {}}, "prompt.variabels"),
    ],
)
def test_malformed_prompt_field_is_a_400(
    harness: Harness, echo: RecordingEcho, prompt: Any, param: str
) -> None:
    key = harness.add_key()
    status, _, body = chat(harness, key, prompt)
    assert status == 400, body
    assert body["error"]["param"] == param


def test_without_a_prompt_model_and_messages_stay_required(harness: Harness, echo: RecordingEcho) -> None:
    key = harness.add_key()
    status, _, body = harness.call("POST", CHAT, {"messages": [{"role": "user", "content": "x"}]}, key)
    assert status == 400 and body["error"]["param"] == "model"
    status, _, body = harness.call("POST", CHAT, {"model": "echo", "messages": []}, key)
    assert status == 400 and body["error"]["param"] == "messages"


def test_an_unreadable_view_is_a_503_not_a_404(
    harness: Harness, echo: RecordingEcho, view_file: Path
) -> None:
    view_file.write_text("{not json", encoding="utf-8")
    key = harness.add_key()
    status, headers, body = chat(harness, key, {"name": "summarize-ticket", "variables": TICKET})
    assert status == 503
    assert body["error"]["code"] == "store_unavailable" and headers["Retry-After"] == "5"
    assert "prompt registry" in body["error"]["message"]
    # Requests without a prompt do not depend on the view.
    assert harness.chat(key, model="echo")[0] == 200


# ------------------------------------------------------------------------------------ view parsing


def test_the_example_view_parses() -> None:
    view = parse_view(make_view())
    found = view.resolve("summarize-ticket")
    assert (found.version, found.model, found.variables) == ("3", "echo", ("max_sentences", "ticket"))
    assert view.resolve("summarize-ticket", alias="staging").version == "4"
    with pytest.raises(NotFound):
        view.resolve("summarize-ticket", version="5")


def _broken(path: list[Any], value: Any) -> dict[str, Any]:
    view = make_view()
    target: Any = view
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return view


_DELETE = object()
_V3 = ["prompts", "summarize-ticket", "versions", "3"]


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (["schema"], 2, "'schema'"),
        (["schema"], True, "'schema'"),
        (["prompts"], [], "'prompts'"),
        (["prompts", "Bad Name"], {"versions": {}}, "prompts.Bad Name"),
        (["prompts", "summarize-ticket", "versions"], [], "prompts.summarize-ticket.versions"),
        (["prompts", "summarize-ticket", "aliases", "production"], "7", "aliases.production"),
        (["prompts", "summarize-ticket", "versions", "v5"], SUMMARIZE_V4, "versions.v5"),
        ([*_V3, "model"], "", "versions.3.model"),
        ([*_V3, "hash"], _DELETE, "versions.3.hash"),
        ([*_V3, "messages"], [], "versions.3.messages"),
        ([*_V3, "messages"], [{"role": "tool", "content": "x"}], "versions.3.messages[0]"),
        ([*_V3, "messages"], [{"role": "user", "content": 5}], "versions.3.messages[0]"),
        ([*_V3, "parameters"], {"temperature": 3}, "parameters.temperature"),
        ([*_V3, "parameters"], {"seed": 1}, "parameters.seed"),
        ([*_V3, "variables"], ["ticket"], "versions.3.variables"),
    ],
)
def test_malformed_views_are_refused_naming_the_field(path: list[Any], value: Any, named: str) -> None:
    with pytest.raises(PromptViewError) as caught:
        parse_view(_broken(path, value))
    assert named in str(caught.value)


# ------------------------------------------------------------------------------------ cache: files


def test_file_view_is_cached_and_rechecked_by_mtime_after_the_ttl(view_file: Path) -> None:
    clock = FakeClock()
    source = PromptViewSource(view_file, ttl_s=60, clock=clock)
    assert source.resolve("summarize-ticket")[0] == "3"
    moved = make_view()
    moved["prompts"]["summarize-ticket"]["aliases"]["production"] = "4"
    _write(view_file, moved, mtime_step=1)
    clock.advance(59)
    assert source.resolve("summarize-ticket")[0] == "3", "within the TTL the cached view serves"
    clock.advance(1)
    assert source.resolve("summarize-ticket")[0] == "4"


def test_unchanged_mtime_and_size_are_not_reread(view_file: Path) -> None:
    clock = FakeClock()
    source = PromptViewSource(view_file, ttl_s=60, clock=clock)
    assert source.resolve("summarize-ticket")[0] == "3"
    stat = view_file.stat()
    same_size = view_file.read_text(encoding="utf-8").replace('"production": "3"', '"production": "4"')
    view_file.write_text(same_size, encoding="utf-8")
    os.utime(view_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    clock.advance(61)
    assert source.resolve("summarize-ticket")[0] == "3", "same mtime and size: the file was not read"


def test_malformed_file_keeps_the_last_good_view_and_logs(
    view_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    source = PromptViewSource(view_file, ttl_s=60, clock=clock)
    assert source.resolve("summarize-ticket")[0] == "3"
    view_file.write_text('{"schema": 1, "prompts": {"x": 1}}', encoding="utf-8")
    clock.advance(60)
    with caplog.at_level(logging.ERROR, logger="aif_gateway"):
        assert source.resolve("summarize-ticket")[0] == "3"
    assert "serving the last good view" in caplog.text and "prompts.x" in caplog.text
    fixed = make_view()
    fixed["prompts"]["summarize-ticket"]["aliases"]["production"] = "4"
    _write(view_file, fixed, mtime_step=2)
    clock.advance(60)
    assert source.resolve("summarize-ticket")[0] == "4"


def test_never_good_view_raises_store_error_and_retries_soon(view_file: Path) -> None:
    clock = FakeClock()
    view_file.write_text("[]", encoding="utf-8")
    source = PromptViewSource(view_file, ttl_s=60, clock=clock)
    with pytest.raises(StoreError, match="must be a JSON object"):
        source.resolve("summarize-ticket")
    _write(view_file, make_view(), mtime_step=1)
    clock.advance(5)  # not a whole TTL: with nothing to serve, a fixed view is picked up quickly
    assert source.resolve("summarize-ticket")[0] == "3"


def test_deleted_file_means_no_prompts(view_file: Path) -> None:
    clock = FakeClock()
    source = PromptViewSource(view_file, ttl_s=60, clock=clock)
    assert source.resolve("summarize-ticket")[0] == "3"
    view_file.unlink()
    clock.advance(60)
    with pytest.raises(NotFound):
        source.resolve("summarize-ticket")


def _write(path: Path, view: dict[str, Any], mtime_step: int) -> None:
    """Rewrite the view with an mtime visibly later than before (coarse file-system clocks)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(json.dumps(view), encoding="utf-8")
    os.utime(path, ns=(before + mtime_step * 10**9, before + mtime_step * 10**9))


# ------------------------------------------------------------------------------------ cache: S3


@pytest.fixture
def s3() -> Any:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="aif-prompts")
        yield client


def _count_gets(client: Any) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    client.meta.events.register("before-call.s3.GetObject", lambda params, **_: calls.append(params))
    return calls


def test_s3_view_uses_conditional_gets_after_the_ttl(s3: Any) -> None:
    s3.put_object(Bucket="aif-prompts", Key="prompts.json", Body=json.dumps(make_view()).encode())
    clock = FakeClock()
    calls = _count_gets(s3)
    source = PromptViewSource("s3://aif-prompts/prompts.json", ttl_s=60, clock=clock, s3_client=s3)
    assert source.resolve("summarize-ticket")[0] == "3"
    for _ in range(50):  # hot requests: no S3 call
        source.resolve("summarize-ticket", alias="staging")
    assert len(calls) == 1 and "If-None-Match" not in calls[0]["headers"]

    clock.advance(60)
    assert source.resolve("summarize-ticket")[0] == "3"  # 304 Not Modified keeps the cache
    assert len(calls) == 2 and calls[1]["headers"]["If-None-Match"].strip('"')

    moved = make_view()
    moved["prompts"]["summarize-ticket"]["aliases"]["production"] = "4"
    s3.put_object(Bucket="aif-prompts", Key="prompts.json", Body=json.dumps(moved).encode())
    assert source.resolve("summarize-ticket")[0] == "3"
    clock.advance(60)
    assert source.resolve("summarize-ticket")[0] == "4"
    assert len(calls) == 3


def test_s3_missing_object_is_no_prompts_and_errors_keep_the_last_view(
    s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    source = PromptViewSource("s3://aif-prompts/prompts.json", ttl_s=60, clock=clock, s3_client=s3)
    with pytest.raises(NotFound):
        source.resolve("summarize-ticket")
    s3.put_object(Bucket="aif-prompts", Key="prompts.json", Body=json.dumps(make_view()).encode())
    clock.advance(60)
    assert source.resolve("summarize-ticket")[0] == "3"

    s3.put_object(Bucket="aif-prompts", Key="prompts.json", Body=b'{"schema": 1}')
    clock.advance(60)
    with caplog.at_level(logging.ERROR, logger="aif_gateway"):
        assert source.resolve("summarize-ticket")[0] == "3"
    assert "'prompts' must be an object" in caplog.text


def test_s3_unreachable_with_no_view_is_a_store_error(s3: Any) -> None:
    source = PromptViewSource("s3://no-such-bucket/prompts.json", clock=FakeClock(), s3_client=s3)
    with pytest.raises(StoreError, match="NoSuchBucket"):
        source.resolve("summarize-ticket")


def test_s3_uri_must_name_bucket_and_key() -> None:
    with pytest.raises(ValueError, match="s3://bucket/key"):
        PromptViewSource("s3://only-a-bucket")


def test_lambda_handler_builds_the_source_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from aif_gateway import handler

    config = tmp_path / "gateway_config.json"
    config.write_text(make_config().to_json(), encoding="utf-8")
    monkeypatch.setenv("AIF_CONFIG_PATH", str(config))

    monkeypatch.setenv("AIF_KEYS_TABLE", "keys")
    monkeypatch.setenv("AIF_USAGE_TABLE", "usage")
    monkeypatch.setenv("AIF_PROMPT_VIEW_URI", "s3://aif-prompts/prompts.json")
    gateway = handler.build_gateway()
    assert gateway.prompts.uri == "s3://aif-prompts/prompts.json"
    assert gateway.prompts._s3 is None, "no S3 client (or call) before the first prompt request"
    monkeypatch.delenv("AIF_PROMPT_VIEW_URI")
    assert handler.build_gateway().prompts.uri is None


# ------------------------------------------------------------------------------------ property


_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10), st.floats(allow_nan=True), st.text(max_size=12)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
)
_names = st.sampled_from(["summarize-ticket", "fast-answer", "system-only", "unpromoted", "nope", ""])
_values = st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=False, allow_infinity=False))
# Mostly well-formed (so rendering and the model call are reached), sometimes anything at all.
_variables = st.one_of(
    st.fixed_dictionaries({"ticket": _values, "max_sentences": _values}),
    st.fixed_dictionaries({"q": _values}),
    st.dictionaries(st.sampled_from(["ticket", "max_sentences", "q", "tone"]) | st.text(max_size=6), _json),
    _json,
)
_prompt_objects = st.fixed_dictionaries(
    {"name": _names | st.text(max_size=20)},
    optional={
        "version": st.one_of(st.integers(-1, 5), st.sampled_from(["3", "4", "x"]), _json),
        "variables": _variables,
    },
) | st.fixed_dictionaries(
    {"name": _names},
    optional={
        "alias": st.one_of(st.sampled_from(["production", "staging", "canary"]), _json),
        "variables": _variables,
        "junk": _json,
    },
)
_valid_prompts = st.builds(
    lambda selector, values: {**selector, "variables": values},
    st.sampled_from(
        [
            {"name": "summarize-ticket"},
            {"name": "summarize-ticket", "version": 4},
            {"name": "summarize-ticket", "version": "3"},
            {"name": "summarize-ticket", "alias": "staging"},
        ]
    ),
    st.fixed_dictionaries({"ticket": _values, "max_sentences": _values}),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prompt=st.one_of(_valid_prompts, _prompt_objects, _prompt_objects, _json),
    model=st.one_of(st.none(), st.none(), st.sampled_from(["echo", "chat-fast", "embed", "nope"])),
    messages=st.one_of(
        st.none(), st.none(), st.just([]), st.just([{"role": "user", "content": "hi"}]), _json
    ),
)
def test_random_prompt_objects_never_give_a_5xx(
    harness: Harness, echo: RecordingEcho, prompt: Any, model: Any, messages: Any
) -> None:
    # Only offline models: a Bedrock-backed prompt (fast-answer) gets its 403 instead of a stubbed call.
    key = harness.__dict__.setdefault(
        "_prop_key",
        harness.add_key(allowed_models=("echo", "embed"), rate_limit_rpm=10**9, monthly_budget_usd=10**9),
    )
    body: dict[str, Any] = {"prompt": prompt}
    if model is not None:
        body["model"] = model
    if messages is not None:
        body["messages"] = messages
    status, _, response = harness.call("POST", CHAT, body, key)
    assert status < 500, response
    if status >= 400:
        assert response["error"]["message"]


def test_local_mode_reads_prompts_json_in_the_state_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ai_factory.local.server import build_gateway, prompt_view_path

    monkeypatch.setenv("AI_FACTORY_HOME", str(tmp_path / "home"))
    assert prompt_view_path() == tmp_path / "home" / "prompts.json"
    assert prompt_view_path(tmp_path / "state") == tmp_path / "state" / "prompts.json"
    gateway, _ = build_gateway(tmp_path / "state", config=make_config())
    assert gateway.prompts.uri == str(tmp_path / "state" / "prompts.json")  # type: ignore[attr-defined]
