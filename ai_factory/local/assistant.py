"""``ai-factory serve --assistant``: the governed assistant's page, its backend and the gateway on one
local server, on offline models, with a sign-in stub in place of the company identity provider.

The same code runs as in AWS: the page from ``aif_assistant/web`` (under the same security headers as
CloudFront sends), the backend (``aif_assistant.app``) calling the gateway over HTTP with a local key of
the assistant's feature, and the gateway answering on the offline model with a local retriever over a
folder of documents. Only the edge differs: where API Gateway's Cognito authorizer verifies an ID token
and passes its claims, the stub (``POST /auth/local/sign-in`` with a name and a group) issues an opaque
token whose claims this server passes in the same place.

Documents are Markdown files with a header naming their knowledge base and classification::

    ---
    title: Requesting a laptop
    knowledge_base: handbook
    classification: internal
    ---
    Employees request a new laptop through the IT service portal ...

Each knowledge base takes its classification from its documents (all must agree); a user sees the
knowledge bases their group's clearance covers, exactly as in AWS.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aif_gateway.contract import CLEARANCE_LEVELS
from aif_gateway.errors import GatewayError, InvalidRequest, NotFound
from aif_gateway.openai_schema import parse_json_body, reject_unknown_fields
from aif_gateway.retrieval import (
    KnowledgeBaseRecord,
    RetrievalService,
    RetrieveRequest,
    RetrieveResult,
    StaticKnowledgeBases,
    estimate_tokens,
)
from aif_gateway.streaming import StreamingResponse

SAMPLE_DOCUMENTS = Path(__file__).resolve().parent.parent / "data" / "assistant"
DEFAULT_CLEARANCE_GROUPS = {"employees": "internal", "finance": "confidential"}
ASSISTANT_TEAM = "assistant"
ASSISTANT_FEATURE = "assistant"
ASSISTANT_MODEL = "chat-smart"
TOKEN_HEADER = "x-aif-id-token"  # where the page sends its ID token (as in AWS, read by the authorizer)
_WORD = re.compile(r"\w+", re.UNICODE)
_HEADER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


class AssistantSetupError(ValueError):
    """The local assistant cannot start; the message names the file or option and the reason."""


@dataclass(frozen=True)
class Document:
    title: str
    knowledge_base: str
    classification: str
    text: str
    path: Path


def load_documents(folder: str | Path) -> list[Document]:
    """Every ``*.md`` under ``folder`` with a valid header (title, knowledge_base, classification)."""
    root = Path(folder)
    if not root.is_dir():
        raise AssistantSetupError(f"--assistant-docs: {root} is not a folder")
    documents = []
    for path in sorted(root.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        match = _HEADER.match(text)
        if match is None:
            raise AssistantSetupError(
                f"{path}: starts with no '---' header (title, knowledge_base, classification)"
            )
        header = dict(
            (k.strip(), v.strip())
            for k, _, v in (line.partition(":") for line in match.group(1).splitlines())
        )
        for name in ("title", "knowledge_base", "classification"):
            if not header.get(name):
                raise AssistantSetupError(f"{path}: header field '{name}' is missing")
        if header["classification"] not in CLEARANCE_LEVELS:
            raise AssistantSetupError(
                f"{path}: classification {header['classification']!r} is not one of "
                f"{', '.join(CLEARANCE_LEVELS)}"
            )
        body = text[match.end() :].strip()
        documents.append(
            Document(header["title"], header["knowledge_base"], header["classification"], body, path)
        )
    if not documents:
        raise AssistantSetupError(f"--assistant-docs: no *.md documents under {root}")
    return documents


def knowledge_bases(documents: list[Document]) -> dict[str, str]:
    """Knowledge base name -> classification; every document of one base must agree."""
    found: dict[str, str] = {}
    for doc in documents:
        known = found.setdefault(doc.knowledge_base, doc.classification)
        if known != doc.classification:
            raise AssistantSetupError(
                f"{doc.path}: knowledge base '{doc.knowledge_base}' is '{known}' elsewhere, "
                f"this document says '{doc.classification}' (a knowledge base indexes one dataset, so one "
                "classification)"
            )
    return found


def _terms(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text) if len(w) > 2]


@dataclass
class OfflineRetriever:
    """Deterministic keyword retrieval (term overlap weighted by inverse document frequency) over the
    documents, answering in the shape Bedrock's Retrieve gives the gateway. It checks wiring, not
    retrieval quality."""

    documents: list[Document]
    _idf: dict[str, float] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        counts: Counter[str] = Counter()
        for doc in self.documents:
            counts.update(set(_terms(doc.title + " " + doc.text)))
        n = len(self.documents)
        self._idf = {t: math.log(1 + n / c) for t, c in counts.items()}

    def retrieve(self, kb: KnowledgeBaseRecord, request: RetrieveRequest) -> RetrieveResult:
        query = set(_terms(request.query))
        scored = []
        for doc in self.documents:
            if doc.knowledge_base != kb.name:
                continue
            terms = set(_terms(doc.title + " " + doc.text))
            score = sum(self._idf.get(t, 0.0) for t in query & terms)
            if score > 0:
                scored.append((round(score / (1 + sum(self._idf.get(t, 0) for t in query)), 4), doc))
        scored.sort(key=lambda item: (-item[0], item[1].title))
        passages = [
            {
                "text": doc.text,
                "score": score,
                "source": {"type": "LOCAL", "uri": doc.path.resolve().as_uri()},
                "document_id": doc.path.name,
                "metadata": {"title": doc.title, "aif_classification": doc.classification},
            }
            for score, doc in scored[: request.top_k]
        ]
        return RetrieveResult(passages, estimate_tokens(request.query), tokens_estimated=True)


class SignInStub:
    """Opaque local tokens for a name and a group; claims shaped like a Cognito ID token's."""

    def __init__(self, groups: dict[str, str]) -> None:
        self.groups = groups
        self._tokens: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def sign_in(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
        reject_unknown_fields(body, ("name", "group"), "sign-in")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 128:
            raise InvalidRequest("'name' must be a non-empty string of at most 128 characters.", param="name")
        group = body.get("group")
        if group not in self.groups:
            raise InvalidRequest(f"'group' must be one of {', '.join(sorted(self.groups))}.", param="group")
        token = "local." + secrets.token_urlsafe(24)
        claims = {"sub": str(uuid.uuid4()), "cognito:username": name.strip(), "cognito:groups": group}
        with self._lock:
            self._tokens[token] = claims
        return {"id_token": token, "token_type": "Bearer"}

    def claims(self, token: str | None) -> dict[str, Any] | None:
        return self._tokens.get(token.strip()) if token else None


class LocalAssistantHandler:
    """One local origin: ``/v1/*`` the gateway, ``/api/*`` the backend (claims from the stub),
    ``/auth/local/sign-in`` the stub, ``/config.json`` the page's settings, everything else the page."""

    def __init__(self, gateway: Any, backend: Any, stub: SignInStub, web_dir: Path) -> None:
        from aif_assistant.web_policy import WEB_FILES, security_headers

        self.gateway = gateway
        self.backend = backend
        self.stub = stub
        self._files = {
            name: ((web_dir / name).read_text(encoding="utf-8"), kind) for name, kind in WEB_FILES.items()
        }
        self._headers = security_headers(https=False)
        self._config = json.dumps({"auth": {"mode": "local", "groups": sorted(stub.groups)}})

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any] | StreamingResponse:
        path = str(event.get("path") or "/")
        if path.startswith("/v1/") or path == "/v1":
            return self.gateway.handle(event, context)
        if path.startswith("/api/"):
            claims = self.stub.claims(_header(event, TOKEN_HEADER))
            context_ = dict(event.get("requestContext") or {})
            context_["authorizer"] = {"claims": claims} if claims else {}
            return self._with_headers(self.backend.handle({**event, "requestContext": context_}, context))
        try:
            if path == "/auth/local/sign-in" and event.get("httpMethod") == "POST":
                return self._json(200, self.stub.sign_in(parse_json_body(event.get("body"))))
            if path == "/config.json":
                return self._response(200, self._config, "application/json")
            name = path.lstrip("/") or "index.html"
            if name not in self._files or event.get("httpMethod") not in ("GET", "HEAD"):
                raise NotFound(f"Unknown path {path}.", code="unknown_path")
            text, kind = self._files[name]
            return self._response(200, text, kind)
        except GatewayError as exc:
            return self._json(exc.status, exc.body())

    def _with_headers(self, response: Any) -> Any:
        if isinstance(response, StreamingResponse):
            response.headers = {**self._headers, **response.headers}
        else:
            response["headers"] = {**self._headers, **(response.get("headers") or {})}
        return response

    def _json(self, status: int, body: dict[str, Any]) -> dict[str, Any]:
        return self._response(status, json.dumps(body), "application/json")

    def _response(self, status: int, body: str, kind: str) -> dict[str, Any]:
        headers = {**self._headers, "Content-Type": kind, "Cache-Control": "no-store"}
        return {"statusCode": status, "headers": headers, "body": body}


def _header(event: dict[str, Any], name: str) -> str | None:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return None


@dataclass
class LocalAssistant:
    """A running local assistant: its URL, the gateway's, and the objects tests look into."""

    server: Any  # LocalGatewayServer
    state_dir: Path
    knowledge_bases: dict[str, str]
    clearance_groups: dict[str, str]

    @property
    def url(self) -> str:
        return f"{self.server.url}/"

    def close(self) -> None:
        self.server.shutdown()


def start_local_assistant(
    state_dir: str | Path,
    *,
    documents: str | Path | None = None,
    clearance_groups: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    catalog_path: str | None = None,
    script: Any = None,
    model: str = ASSISTANT_MODEL,
) -> LocalAssistant:
    """Start page, backend and gateway on one loopback server (returns at once; serves on a thread)."""
    import aif_assistant
    from ai_factory.local.offline import create_local_key, offline_config, offline_gateway
    from ai_factory.local.server import LocalGatewayServer
    from aif_assistant.app import AssistantBackend
    from aif_assistant.config import AssistantConfig, KnowledgeBase
    from aif_assistant.gateway_client import GatewayClient

    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    docs = load_documents(documents or SAMPLE_DOCUMENTS)
    kbs = knowledge_bases(docs)
    groups = dict(clearance_groups or DEFAULT_CLEARANCE_GROUPS)
    config = offline_config(catalog_path)
    if model not in config.routes:
        raise AssistantSetupError(f"--assistant-model: '{model}' is not a route of the catalog")
    clearance = max(groups.values(), key=CLEARANCE_LEVELS.index)
    plaintext = create_local_key(
        state,
        team=ASSISTANT_TEAM,
        feature=ASSISTANT_FEATURE,
        models=(model,),
        monthly_budget_usd=1000.0,
        rate_limit_rpm=600,
        description="ai-factory serve --assistant (offline models)",
        clearance=clearance,
    )
    gateway, _ = offline_gateway(state, config, script)
    allowed = (f"{ASSISTANT_TEAM}/{ASSISTANT_FEATURE}",)
    records = {
        name: KnowledgeBaseRecord(name, f"local-{name}", allowed, classification=level)
        for name, level in kbs.items()
    }
    gateway.retrieval = RetrievalService(StaticKnowledgeBases(records), OfflineRetriever(docs))
    assistant_config = AssistantConfig(
        gateway_url="",  # set once the server has its port
        model=model,
        knowledge_bases=tuple(KnowledgeBase(n, c, n) for n, c in sorted(kbs.items())),
        clearance_groups=groups,
    )
    client = GatewayClient("", lambda: plaintext)
    backend = AssistantBackend(assistant_config, client)
    stub = SignInStub(groups)
    web_dir = Path(str(aif_assistant.__file__)).resolve().parent / "web"
    handler = LocalAssistantHandler(gateway, backend, stub, web_dir)
    server = LocalGatewayServer(host, port, config=config, gateway=handler).start()
    client.base_url = f"{server.url}/v1"
    return LocalAssistant(server, state, kbs, groups)
