"""The governed assistant in local mode over real HTTP: sign-in stub, clearance by group, grounded and
streamed answers with citations, feedback recorded against the assistant's feature, usage metered."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ai_factory.local.assistant import LocalAssistant, start_local_assistant
from ai_factory.local.sqlite_store import SqliteLedger, default_db_path
from aif_gateway.offline_model import OfflineScript

pytestmark = pytest.mark.e2e

SCRIPT = OfflineScript.from_data(
    [{"when": {"contains": "laptop"}, "answer": "Request it in the IT service portal under Hardware [1]."}]
)


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAssistant]:
    running = start_local_assistant(tmp_path_factory.mktemp("assistant"), port=0, script=SCRIPT)
    yield running
    running.close()


def call(
    assistant: LocalAssistant, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["X-Aif-Id-Token"] = token
    request = urllib.request.Request(assistant.server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def sign_in(assistant: LocalAssistant, name: str, group: str) -> str:
    status, _, body = call(assistant, "POST", "/auth/local/sign-in", {"name": name, "group": group})
    assert status == 200, body
    return str(json.loads(body)["id_token"])


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_the_page_is_served_under_the_deployed_security_headers(assistant: LocalAssistant) -> None:
    status, headers, body = call(assistant, "GET", "/")
    assert status == 200 and b'<script src="app.js" defer></script>' in body
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    status, _, body = call(assistant, "GET", "/config.json")
    assert json.loads(body) == {"auth": {"mode": "local", "groups": ["employees", "finance"]}}


def test_without_sign_in_the_backend_answers_401(assistant: LocalAssistant) -> None:
    status, _, body = call(assistant, "GET", "/api/me")
    assert status == 401
    assert json.loads(body)["error"]["code"] == "not_signed_in"
    status, _, _ = call(assistant, "GET", "/api/me", token="local.forged")
    assert status == 401


def test_the_stub_refuses_an_unknown_group_naming_the_field(assistant: LocalAssistant) -> None:
    status, _, body = call(assistant, "POST", "/auth/local/sign-in", {"name": "Eve", "group": "admins"})
    assert status == 400
    error = json.loads(body)["error"]
    assert error["param"] == "group" and "employees, finance" in error["message"]


def test_a_users_group_decides_the_knowledge_bases_they_see(assistant: LocalAssistant) -> None:
    _, _, body = call(assistant, "GET", "/api/me", token=sign_in(assistant, "Ann", "employees"))
    me = json.loads(body)
    assert me["clearance"] == "internal"
    assert [k["name"] for k in me["knowledge_bases"]] == ["handbook"]
    _, _, body = call(assistant, "GET", "/api/me", token=sign_in(assistant, "Fin", "finance"))
    assert [k["name"] for k in json.loads(body)["knowledge_bases"]] == ["handbook", "hr-confidential"]


def test_a_grounded_answer_streams_with_citations_only_from_readable_data(assistant: LocalAssistant) -> None:
    question = {"message": "How do I get a new laptop?"}
    status, headers, raw = call(
        assistant, "POST", "/api/chat", question, sign_in(assistant, "Ann", "employees")
    )
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    stream = events(raw)
    names = [name for name, _ in stream]
    assert names[0] == "citations" and names[-1] == "done" and "delta" in names
    answer = "".join(data["text"] for name, data in stream if name == "delta")
    assert answer == "Request it in the IT service portal under Hardware [1]."
    citations = stream[-1][1]["citations"]
    assert citations[0]["title"] == "Requesting a laptop" and citations[0]["index"] == 1
    # "laptop" also appears in the confidential salary document: an internal user never sees it.
    assert {c["classification"] for c in citations} == {"internal"}
    _, _, raw = call(assistant, "POST", "/api/chat", question, sign_in(assistant, "Fin", "finance"))
    finance = events(raw)[-1][1]["citations"]
    assert "Salary bands 2027" in {c["title"] for c in finance}


def test_answers_and_retrievals_are_metered_to_the_assistant_feature(assistant: LocalAssistant) -> None:
    _, headers, _ = call(
        assistant,
        "POST",
        "/api/chat",
        {"message": "travel expenses?"},
        sign_in(assistant, "Ann", "employees"),
    )
    ledger = SqliteLedger(default_db_path(assistant.state_dir))
    try:
        records = ledger.list_usage(team="assistant")
    finally:
        ledger.close()
    request_id = headers["x-request-id"]
    chat = [r for r in records if r.request_id == request_id]
    assert len(chat) == 1 and chat[0].feature == "assistant" and chat[0].route == "chat-smart"
    assert any(r.operation == "retrieve" and r.route == "kb/handbook" for r in records)


def test_feedback_is_recorded_against_the_answer(assistant: LocalAssistant) -> None:
    token = sign_in(assistant, "Ann", "employees")
    _, _, raw = call(assistant, "POST", "/api/chat", {"message": "laptop?"}, token)
    request_id = events(raw)[-1][1]["request_id"]
    status, _, body = call(
        assistant,
        "POST",
        "/api/feedback",
        {"request_id": request_id, "score": "down", "comment": "vague"},
        token,
    )
    assert status == 200, body
    ledger = SqliteLedger(default_db_path(assistant.state_dir))
    try:
        [feedback] = [f for f in ledger.list_feedback(team="assistant") if f.request_id == request_id]
    finally:
        ledger.close()
    assert feedback.score == 0.0 and feedback.comment == "vague" and feedback.tags == ("assistant",)
    assert feedback.feature == "assistant"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/api/chat", {}, "message"),
        ("/api/chat", {"message": "  "}, "message"),
        ("/api/chat", {"message": "x" * 4001}, "message"),
        ("/api/chat", {"message": "hi", "history": [{"role": "system", "content": "x"}]}, "history[0]"),
        ("/api/chat", {"message": "hi", "model": "chat-fast"}, "model"),
        ("/api/feedback", {"request_id": "r", "score": 1}, "score"),
        ("/api/feedback", {"score": "up"}, "request_id"),
    ],
)
def test_bad_input_gets_400_naming_the_field(
    assistant: LocalAssistant, path: str, body: dict[str, Any], param: str
) -> None:
    status, _, raw = call(assistant, "POST", path, body, sign_in(assistant, "Ann", "employees"))
    assert status == 400
    assert json.loads(raw)["error"]["param"] == param


def test_feedback_on_an_unknown_request_keeps_the_gateways_404(assistant: LocalAssistant) -> None:
    status, _, raw = call(
        assistant,
        "POST",
        "/api/feedback",
        {"request_id": "nope", "score": "up"},
        sign_in(assistant, "A", "employees"),
    )
    assert status == 404
    assert "nope" in json.loads(raw)["error"]["message"]


def test_documents_must_agree_on_their_knowledge_bases_classification(tmp_path: Path) -> None:
    from ai_factory.local.assistant import AssistantSetupError, knowledge_bases, load_documents

    for name, level in (("a.md", "internal"), ("b.md", "restricted")):
        (tmp_path / name).write_text(
            f"---\ntitle: {name}\nknowledge_base: kb\nclassification: {level}\n---\nx\n"
        )
    with pytest.raises(AssistantSetupError, match=r"b.md: knowledge base 'kb' is 'internal' elsewhere"):
        knowledge_bases(load_documents(tmp_path))


def test_the_cli_refuses_assistant_options_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ai_factory.cli.main import main

    assert main(["serve", "--assistant-docs", str(tmp_path)]) == 2
    assert "--assistant-docs needs --assistant" in capsys.readouterr().err
    state = str(tmp_path / "state")
    assert main(["serve", "--assistant", "--assistant-docs", str(tmp_path), "--state-dir", state]) == 2
    assert f"--assistant-docs: no *.md documents under {tmp_path}" in capsys.readouterr().err
