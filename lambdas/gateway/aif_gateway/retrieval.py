"""Retrieval from Bedrock Knowledge Bases through the gateway: ``POST /v1/retrieve``.

Body: ``{"knowledge_base": str, "query": str, "top_k"?: int 1..100 (default 5)}``. The answer lists
passages with their sources; generation stays ``POST /v1/chat/completions`` (the client puts the
passages in its messages), so guardrails, budgets and metering apply to both calls.

Who may retrieve what: every knowledge base a ``RagFeature`` deploys is *registered* for the gateway
as one SSM parameter, ``<prefix><name>``, holding a JSON ``KnowledgeBaseRecord`` (the Knowledge Base
ID and region, the embedding model and its price, and the ``team/feature`` pairs allowed to query it,
each checked against the dataset's classification at synth time). The gateway resolves the key to its
team/feature, the name to the record, and answers 404 for an unknown name and 403 for a feature not on
the list. Records are cached per instance for ``ttl_s`` (60 s), so a change reaches every instance
within a minute; an unknown name is cached for 5 s. The gateway role may read exactly the registered
parameters, so an unregistered name reads as AccessDenied, which means the same as "not found".

Document-level access: every chunk carries its dataset's classification as metadata (the sync writes a
``.metadata.json`` sidecar per document: ``contract.DOC_CLASSIFICATION`` and ``DOC_CLASSIFICATION_RANK``),
and every Retrieve carries a filter built from the calling key's clearance (``access_filter``), so a
chunk above the feature's clearance, or without a classification, is never returned; a key whose
clearance is below the knowledge base's classification is refused before Bedrock is called (403).

Metering: Retrieve does not report the tokens it embedded, so the query's embedding tokens are
*estimated* as one token per 4 UTF-8 bytes (at least 1), priced at the embedding model's input price,
and recorded with ``operation="retrieve"`` and ``extra["tokens_estimated"]="true"``. When Bedrock
reports a count (the ``x-amzn-bedrock-input-token-count`` header), that count is used instead.

boto3 is imported on the first call that needs a client: local mode and cold starts never pay for it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from . import contract
from .aws_clients import LazyClients, make_client
from .clearance import ClearanceRefused, clearance_of
from .errors import Forbidden, GatewayError, InvalidRequest, NotFound
from .openai_schema import reject_unknown_fields
from .records import ApiKeyRecord, StoreError, UsageRecord

log = logging.getLogger("aif_gateway")

PARAMETER_PREFIX_ENV = contract.KNOWLEDGE_BASE_PREFIX_ENV
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
FIELDS = ("knowledge_base", "query", "top_k")
DEFAULT_TOP_K = 5
MAX_TOP_K = 100  # Retrieve's numberOfResults limit
MAX_QUERY_CHARS = 8000
BYTES_PER_TOKEN = 4
RECORD_SCHEMA = 1
ROUTE_PREFIX = "kb/"  # usage records name the knowledge base as their route: kb/<name>

_NOT_FOUND_CODES = ("ParameterNotFound", "AccessDeniedException", "AccessDenied")
_CALLER_ERRORS = ("ValidationException",)
_THROTTLED = ("ThrottlingException", "ServiceQuotaExceededException", "TooManyRequestsException")


class KnowledgeBaseForbidden(Forbidden):
    """403: the key's feature is not on the knowledge base's allow-list."""

    code = "knowledge_base_not_allowed"


class RetrieveFailed(GatewayError):
    """503: Bedrock could not answer the retrieval (throttled, unavailable, misconfigured)."""

    status = 503
    type = "service_unavailable"
    code = "retrieve_failed"


@dataclass(frozen=True)
class KnowledgeBaseRecord:
    """What the gateway knows about one registered knowledge base (the SSM parameter's JSON)."""

    name: str
    knowledge_base_id: str
    allowed: tuple[str, ...]  # "team/feature" pairs
    embedding_model: str = ""  # catalog model name, for the usage record
    embedding_input_price: float = 0.0  # USD per 1M input tokens
    region: str | None = None  # None: the gateway's region
    classification: str = ""

    def allows(self, key: ApiKeyRecord) -> bool:
        return f"{key.team}/{key.feature}" in self.allowed

    @classmethod
    def from_json(cls, text: str) -> KnowledgeBaseRecord:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("schema") != RECORD_SCHEMA:
            raise ValueError(f"unsupported knowledge base record: schema {data.get('schema')!r}")
        allowed = data.get("allowed")
        if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
            raise ValueError("'allowed' must be a list of 'team/feature' strings")
        return cls(
            name=str(data["name"]),
            knowledge_base_id=str(data["knowledge_base_id"]),
            allowed=tuple(allowed),
            embedding_model=str(data.get("embedding_model") or ""),
            embedding_input_price=float(data.get("embedding_input_price") or 0.0),
            region=data.get("region") or None,
            classification=str(data.get("classification") or ""),
        )


@dataclass(frozen=True)
class RetrieveRequest:
    knowledge_base: str
    query: str
    top_k: int = DEFAULT_TOP_K
    # The calling feature's clearance: only chunks classified at or below it are returned. The gateway
    # always sets it from the key (``RetrievalService.for_key``); "restricted" reads everything.
    clearance: str = "restricted"


@dataclass
class RetrieveResult:
    passages: list[dict[str, Any]]
    embedding_tokens: int
    tokens_estimated: bool
    guardrail_action: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class KnowledgeBaseDirectory(Protocol):
    def get(self, name: str) -> KnowledgeBaseRecord | None:
        """The registered knowledge base, or None. Raises StoreError when the registry is unreachable."""
        ...


class Retriever(Protocol):
    def retrieve(self, kb: KnowledgeBaseRecord, request: RetrieveRequest) -> RetrieveResult:
        """Raises InvalidRequest (400) or RetrieveFailed (503)."""
        ...


# -- request -------------------------------------------------------------------------------------------


def parse_retrieve_request(body: Any) -> RetrieveRequest:
    """Validate a parsed JSON body; raises InvalidRequest naming the field (``param``)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    reject_unknown_fields(body, FIELDS, "retrieve")
    name = body.get("knowledge_base")
    if name is None:
        raise InvalidRequest("'knowledge_base' is required.", param="knowledge_base", code="missing_field")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidRequest(
            "'knowledge_base' must be a knowledge base name: 1-63 lowercase letters, digits and hyphens.",
            param="knowledge_base",
        )
    query = body.get("query")
    if query is None:
        raise InvalidRequest("'query' is required.", param="query", code="missing_field")
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("'query' must be a non-empty string.", param="query")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(
            f"'query' is {len(query)} characters; the limit is {MAX_QUERY_CHARS}.", param="query"
        )
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("'query' must be valid Unicode text.", param="query") from None
    top_k = body.get("top_k", DEFAULT_TOP_K)
    if top_k is None:
        top_k = DEFAULT_TOP_K
    # bool is an int in Python; true is not a count.
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidRequest(f"'top_k' must be a whole number from 1 to {MAX_TOP_K}.", param="top_k")
    return RetrieveRequest(name, query, top_k)


def access_filter(clearance: str) -> dict[str, Any]:
    """The Retrieve ``vectorSearchConfiguration.filter`` for a feature of ``clearance``: the chunk's
    classification rank at most the clearance's, and its classification one of those the clearance
    covers. Both must hold, and a chunk without the attributes matches neither (fails closed)."""
    rank = contract.classification_rank(clearance)
    return {
        "andAll": [
            {"lessThanOrEquals": {"key": contract.DOC_CLASSIFICATION_RANK, "value": rank}},
            {
                "in": {
                    "key": contract.DOC_CLASSIFICATION,
                    "value": list(contract.CLEARANCE_LEVELS[: rank + 1]),
                }
            },
        ]
    }


def estimate_tokens(text: str) -> int:
    """Embedding tokens of ``text`` when the service does not report them: 1 per 4 UTF-8 bytes."""
    return max(1, math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN))


# -- the service the gateway calls ------------------------------------------------------------------


class RetrievalService:
    """Resolves a knowledge base for a key (404/403), retrieves, and fills the usage record."""

    def __init__(self, directory: KnowledgeBaseDirectory, retriever: Retriever) -> None:
        self.directory = directory
        self.retriever = retriever

    @classmethod
    def from_env(cls) -> RetrievalService:
        """SSM-registered knowledge bases when ``AIF_KNOWLEDGE_BASE_PREFIX`` is set, else none."""
        prefix = os.environ.get(PARAMETER_PREFIX_ENV)
        directory: KnowledgeBaseDirectory = SsmKnowledgeBases(prefix) if prefix else StaticKnowledgeBases()
        return cls(directory, BedrockRetriever())

    def resolve(self, key: ApiKeyRecord, name: str) -> KnowledgeBaseRecord:
        kb = self.directory.get(name)
        if kb is None:
            raise NotFound(
                f"The knowledge base '{name}' is not registered with this gateway.",
                param="knowledge_base",
                code="knowledge_base_not_found",
            )
        if not kb.allows(key):
            raise KnowledgeBaseForbidden(
                f"API key {key.key_id} ({key.team}/{key.feature}) may not query knowledge base '{name}'.",
                param="knowledge_base",
            )
        clearance = clearance_of(key)
        if kb.classification and not _covers(clearance, kb.classification):
            raise ClearanceRefused(
                f"API key {key.key_id} ({key.team}/{key.feature}) has clearance '{clearance}', below the "
                f"classification of knowledge base '{name}' ('{kb.classification}').",
                param="knowledge_base",
            )
        return kb

    @staticmethod
    def for_key(key: ApiKeyRecord, request: RetrieveRequest) -> RetrieveRequest:
        """``request`` limited to what ``key``'s feature may read (its clearance)."""
        return replace(request, clearance=clearance_of(key))

    def retrieve(self, kb: KnowledgeBaseRecord, request: RetrieveRequest) -> RetrieveResult:
        return self.retriever.retrieve(kb, request)

    @staticmethod
    def meter(record: UsageRecord, kb: KnowledgeBaseRecord, result: RetrieveResult) -> None:
        record.model_served = kb.embedding_model or None
        record.model_id = kb.knowledge_base_id
        record.input_tokens = result.embedding_tokens
        record.cost_usd = round(result.embedding_tokens * kb.embedding_input_price / 1_000_000, 10)
        record.attempts = 1
        if result.tokens_estimated:
            record.extra["tokens_estimated"] = "true"
        if result.guardrail_action == "INTERVENED":
            record.guardrail_action = "INTERVENED"
        record.extra.update(result.extra)


def retrieve_response(request_id: str, kb: KnowledgeBaseRecord, result: RetrieveResult) -> dict[str, Any]:
    return {
        "object": "list",
        "id": f"retrieve-{request_id}",
        "knowledge_base": kb.name,
        "data": result.passages,
        "usage": {"prompt_tokens": result.embedding_tokens, "total_tokens": result.embedding_tokens},
    }


def knowledge_base_route(name: str) -> str:
    return ROUTE_PREFIX + name


# -- registries --------------------------------------------------------------------------------------


class StaticKnowledgeBases:
    """Knowledge bases given in code: tests, benchmarks and local mode (none by default)."""

    def __init__(self, records: dict[str, KnowledgeBaseRecord] | None = None) -> None:
        self._records = dict(records or {})

    def get(self, name: str) -> KnowledgeBaseRecord | None:
        return self._records.get(name)


class SsmKnowledgeBases:
    """Registered knowledge bases read from SSM parameters ``<prefix><name>``, cached per instance."""

    def __init__(
        self,
        prefix: str,
        *,
        ttl_s: float = 60.0,
        negative_ttl_s: float = 5.0,
        client_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self._client_factory = client_factory
        self._client: Any = None
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, KnowledgeBaseRecord | None]] = {}

    def get(self, name: str) -> KnowledgeBaseRecord | None:
        now = self._clock()
        cached = self._cache.get(name)
        if cached is not None:
            expires, record = cached
            if now < expires:
                return record
        record = self._read(name)
        ttl = self.ttl_s if record is not None else self.negative_ttl_s
        self._cache[name] = (now + ttl, record)
        return record

    def _read(self, name: str) -> KnowledgeBaseRecord | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client().get_parameter(Name=self.prefix + name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES:
                return None
            raise StoreError(f"cannot read knowledge base registration {name!r}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot read knowledge base registration {name!r}") from exc
        try:
            record = KnowledgeBaseRecord.from_json(response["Parameter"]["Value"])
        except (KeyError, TypeError, ValueError) as exc:
            # A broken registration is the platform's fault, not the caller's: 503, logged.
            raise StoreError(f"knowledge base registration {name!r} is not valid: {exc}") from exc
        return record if record.name == name else None

    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._new_client()
        return self._client

    def _new_client(self) -> Any:
        if self._client_factory is not None:
            return self._client_factory()
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"})
        return boto3.client("ssm", config=config)


# -- Bedrock -----------------------------------------------------------------------------------------


class BedrockRetriever:
    """``bedrock-agent-runtime`` Retrieve, one lazily created client per region."""

    def __init__(
        self, client_factory: Callable[[str | None], Any] | None = None, timeout_s: float = 20
    ) -> None:
        self._clients: LazyClients[str | None] = LazyClients(
            client_factory
            or (
                lambda region: make_client(
                    "bedrock-agent-runtime", region, read_timeout=timeout_s, max_attempts=2
                )
            )
        )

    def client(self, region: str | None) -> Any:
        return self._clients.get(region)

    def retrieve(self, kb: KnowledgeBaseRecord, request: RetrieveRequest) -> RetrieveResult:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client(kb.region).retrieve(
                knowledgeBaseId=kb.knowledge_base_id,
                retrievalQuery={"text": request.query},
                retrievalConfiguration={
                    "vectorSearchConfiguration": {
                        "numberOfResults": request.top_k,
                        "filter": access_filter(request.clearance),
                    }
                },
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "")
            if code in _CALLER_ERRORS:
                raise InvalidRequest(
                    f"The knowledge base rejected the query: {error.get('Message') or code}", param="query"
                ) from None
            log.warning("retrieve from %s failed: %s", kb.name, code, exc_info=True)
            retry = "5" if code in _THROTTLED else "30"
            raise RetrieveFailed(
                f"Knowledge base '{kb.name}' could not answer ({code or 'error'}). Retry after {retry} s.",
                headers={"Retry-After": retry},
            ) from None
        except BotoCoreError:
            log.warning("retrieve from %s failed", kb.name, exc_info=True)
            raise RetrieveFailed(
                f"Knowledge base '{kb.name}' could not be reached. Retry after 5 s.",
                headers={"Retry-After": "5"},
            ) from None
        reported = _reported_tokens(response)
        return RetrieveResult(
            passages=[_passage(r) for r in response.get("retrievalResults") or []],
            embedding_tokens=reported if reported is not None else estimate_tokens(request.query),
            tokens_estimated=reported is None,
            guardrail_action=response.get("guardrailAction"),
        )


def _covers(clearance: str, classification: str) -> bool:
    """Whether ``clearance`` covers ``classification``; an unknown classification is covered by nothing."""
    if classification not in contract.CLEARANCE_LEVELS or clearance not in contract.CLEARANCE_LEVELS:
        return False
    return contract.cleared_for(clearance, classification)


def _reported_tokens(response: dict[str, Any]) -> int | None:
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    value = headers.get("x-amzn-bedrock-input-token-count")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _passage(result: dict[str, Any]) -> dict[str, Any]:
    """One retrieval result as the API returns it: text, score and where it came from."""
    content = result.get("content") or {}
    location = result.get("location") or {}
    kind = location.get("type")
    uri = None
    for value in location.values():
        if isinstance(value, dict):
            uri = value.get("uri") or value.get("url") or uri
    metadata = result.get("metadata") or {}
    return {
        "text": content.get("text", ""),
        "score": result.get("score"),
        "source": {"type": kind, "uri": uri},
        "document_id": result.get("documentId"),
        "metadata": json.loads(json.dumps(metadata, default=str)),
    }
