"""End to end: retrieval inside a chat request with the official ``openai`` SDK against ``ai-factory
serve``. The knowledge base is registered with ``ai-factory knowledge register`` over the knowledge team's
documents (the layout the sync writes to S3) plus one confidential document; the offline retriever
answers deterministically and applies the same clearance filter as Bedrock's Retrieve."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
from openai import OpenAI

from ai_factory.cli.main import main

from .conftest import LocalGateway

pytestmark = pytest.mark.e2e

DOCUMENTS = Path(__file__).resolve().parents[2] / "features" / "knowledge" / "documents"
SECRET = "title: Salary bands\nbody: The salary band for a senior engineer is confidential grade E7.\n"


@pytest.fixture(scope="module")
def knowledge_base(local_gateway: LocalGateway, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("documents")
    for path in DOCUMENTS.iterdir():
        shutil.copy(path, folder / path.name)
    (folder / "salary-bands.txt").write_text(SECRET, encoding="utf-8")
    meta = {"metadataAttributes": {"aif_classification": "confidential", "aif_classification_rank": 2}}
    (folder / "salary-bands.txt.metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    out = io.StringIO()
    with contextlib.redirect_stderr(io.StringIO()):
        code = main(
            [
                "knowledge", "register", "--name", "help-centre", "--documents", str(folder),
                "--allow", "e2e/rag-reader", "--allow", "e2e/rag-public", "--classification", "public",
                "--state-dir", str(local_gateway.state_dir),
            ],
            out=out,
        )  # fmt: skip
    assert code == 0, out.getvalue()
    return "help-centre"


def sdk(gw: LocalGateway, key: str) -> OpenAI:
    return OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)


def test_one_call_returns_a_grounded_answer_with_citations(
    local_gateway: LocalGateway, knowledge_base: str
) -> None:
    key = local_gateway.create_key("rag-reader", "echo", "e2e", "--clearance", "confidential")
    completion = sdk(local_gateway, key).chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "How do I request a new laptop?"}],
        extra_body={"retrieval": {"knowledge_base": knowledge_base, "top_k": 2}},
    )
    citations: list[dict[str, Any]] = completion.model_extra["citations"]
    assert [c["index"] for c in citations] == [1, 2]
    assert citations[0]["source"]["uri"] == "local://help-centre/laptop-requests.txt"
    assert "IT portal under Hardware" in citations[0]["text"]
    answer = completion.choices[0].message.content or ""
    assert "[1] title: Requesting a laptop" in answer  # the echo model answers with what it was given
    assert answer.rstrip().endswith("How do I request a new laptop?")


def test_a_stream_carries_the_citations_on_its_first_chunk(
    local_gateway: LocalGateway, knowledge_base: str
) -> None:
    key = local_gateway.create_key("rag-reader", "echo", "e2e", "--clearance", "confidential")
    stream = sdk(local_gateway, key).chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "Which host does the VPN client connect to?"}],
        stream=True,
        extra_body={"retrieval": {"knowledge_base": knowledge_base, "top_k": 1}},
    )
    chunks = list(stream)
    first = chunks[0].model_extra["citations"]
    assert [c["source"]["uri"] for c in first] == ["local://help-centre/vpn-access.txt"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "vpn.corp.example.com" in text


def test_a_feature_never_retrieves_above_its_clearance(
    local_gateway: LocalGateway, knowledge_base: str
) -> None:
    question = {"knowledge_base": knowledge_base, "query": "salary band senior engineer grade", "top_k": 5}
    cleared = local_gateway.create_key("rag-reader", "echo", "e2e", "--clearance", "confidential")
    public = local_gateway.create_key("rag-public", "echo", "e2e", "--clearance", "public")

    def retrieve(key: str) -> list[str]:
        answer = requests.post(
            f"{local_gateway.base_url}/retrieve",
            json=question,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        return [p["source"]["uri"] for p in answer.json()["data"]]

    assert "local://help-centre/salary-bands.txt" in retrieve(cleared)
    assert "local://help-centre/salary-bands.txt" not in retrieve(public)


def test_an_unknown_knowledge_base_is_a_404_naming_the_field(
    local_gateway: LocalGateway, knowledge_base: str
) -> None:
    key = local_gateway.create_key("rag-reader", "echo", "e2e", "--clearance", "confidential")
    answer = requests.post(
        f"{local_gateway.base_url}/chat/completions",
        json={
            "model": "echo",
            "messages": [{"role": "user", "content": "hi"}],
            "retrieval": {"knowledge_base": "nope"},
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["param"] == "retrieval.knowledge_base"
