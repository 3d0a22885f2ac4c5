"""The assistant's backend: ``/api/me``, ``/api/chat`` (a streamed, grounded answer) and
``/api/feedback``, as a proxy handler for the gateway's own HTTP server (``aif_gateway.http_server``).

Every request carries the identity the edge verified (``identity``); the backend narrows retrieval to
the user's clearance (``grounding``) and calls the gateway with the assistant feature's key, so each
answer is metered, budgeted, guarded and audited as the feature's like any other call. Bad input gets a
400 naming the field; gateway refusals keep their status and message; nothing else leaks.

``/api/chat`` streams Server-Sent Events the page renders as they arrive::

    event: citations   data: {"citations": [...]}           (before the first token)
    event: delta       data: {"text": "..."}
    event: done        data: {"request_id": "...", "citations": [...]}
    event: error       data: {"message": "..."}            (the model failed mid-answer)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from aif_gateway.errors import GatewayError, InternalError, InvalidRequest, MethodNotAllowed, NotFound
from aif_gateway.openai_schema import parse_json_body, reject_unknown_fields
from aif_gateway.streaming import StreamingResponse

from .config import AssistantConfig
from .gateway_client import GatewayClient
from .grounding import citations_from_answer, grounded_messages, readable, retrieve
from .identity import User, user_from_event

log = logging.getLogger("aif_assistant")

MAX_MESSAGE_CHARS = 4000
MAX_HISTORY = 20
MAX_BODY_BYTES = 256 * 1024
CHAT_FIELDS = ("message", "history")
FEEDBACK_FIELDS = ("request_id", "score", "comment")
FEEDBACK_TAG = "assistant"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


class AssistantBackend:
    """What the browser calls; ``handle`` takes an API Gateway REST proxy event."""

    def __init__(self, config: AssistantConfig, gateway: GatewayClient) -> None:
        self.config = config
        self.gateway = gateway
        self._routes: dict[tuple[str, str], Callable[[User, dict[str, Any]], Any]] = {
            ("GET", "/api/me"): self._me,
            ("POST", "/api/chat"): self._chat,
            ("POST", "/api/feedback"): self._feedback,
        }

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any] | StreamingResponse:
        method = str(event.get("httpMethod") or "GET")
        path = str(event.get("path") or "/").rstrip("/")
        try:
            route = self._routes.get((method, path))
            if route is None:
                if any(p == path for _, p in self._routes):
                    raise MethodNotAllowed(f"{method} is not allowed on {path}.")
                raise NotFound(f"Unknown path {path}.", code="unknown_path")
            user = user_from_event(event, self.config.clearance_groups)
            response: dict[str, Any] | StreamingResponse = route(user, event)
            return response
        except GatewayError as exc:
            return _json(exc.status, exc.body(), exc.headers)
        except Exception:
            log.exception("assistant backend failed on %s %s", method, path)
            error = InternalError("The assistant failed to handle the request; it was logged.")
            return _json(error.status, error.body())

    def _me(self, user: User, event: dict[str, Any]) -> dict[str, Any]:
        kbs = readable(user, self.config.knowledge_bases)
        body = {
            "name": user.name,
            "groups": list(user.groups),
            "clearance": user.clearance,
            "knowledge_bases": [{"name": k.name, "title": k.title or k.name} for k in kbs],
        }
        return _json(200, body)

    def _chat(self, user: User, event: dict[str, Any]) -> StreamingResponse:
        body = _body(event)
        reject_unknown_fields(body, CHAT_FIELDS, "/api/chat")
        question = _text(body, "message", MAX_MESSAGE_CHARS, required=True)
        history = _history(body.get("history"))
        citations = retrieve(self.gateway, user, self.config.knowledge_bases, question, self.config.top_k)
        passages = {c.index: c.excerpt for c in citations}
        request = {
            "model": self.config.model,
            "messages": grounded_messages(question, history, citations, passages),
        }
        stream = self.gateway.open_chat_stream(request)  # errors before the first byte keep their status
        log.info(
            "assistant answer request=%s user=%s clearance=%s sources=%d",
            stream.request_id,
            user.subject,  # the pseudonymous Cognito subject: joins the API access log to the gateway
            user.clearance,
            len(citations),
        )

        def events() -> Iterator[bytes]:
            final = citations
            try:
                yield _sse("citations", {"citations": [c.to_json() for c in citations]})
                for chunk in stream.events():
                    if "error" in chunk:
                        yield _sse(
                            "error", {"message": str((chunk["error"] or {}).get("message") or "failed")}
                        )
                        return
                    final = citations_from_answer(chunk, final)
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield _sse("delta", {"text": text})
                done = {"request_id": stream.request_id, "citations": [c.to_json() for c in final]}
                yield _sse("done", done)
            except (OSError, ValueError):
                log.exception("gateway stream broke for request %s", stream.request_id)
                yield _sse("error", {"message": "The answer was interrupted; please ask again."})
            finally:
                stream.close()

        headers = {**SSE_HEADERS, "x-request-id": stream.request_id}
        return StreamingResponse(200, headers, events(), on_close=stream.close)

    def _feedback(self, user: User, event: dict[str, Any]) -> dict[str, Any]:
        body = _body(event)
        reject_unknown_fields(body, FEEDBACK_FIELDS, "/api/feedback")
        request_id = _text(body, "request_id", 128, required=True)
        score = body.get("score")
        if score not in ("up", "down"):
            raise InvalidRequest('\'score\' must be "up" or "down".', param="score")
        comment = _text(body, "comment", 2000, required=False)
        payload: dict[str, Any] = {"request_id": request_id, "score": score, "tags": [FEEDBACK_TAG]}
        if comment:
            payload["comment"] = comment
        answer = self.gateway.post_json("/feedback", payload)
        return _json(
            200, {"request_id": request_id, "score": score, "recorded": answer.get("object") or True}
        )


def _body(event: dict[str, Any]) -> dict[str, Any]:
    raw = event.get("body")
    if event.get("isBase64Encoded"):
        raise InvalidRequest("The request body must be JSON text.", code="invalid_json")
    if isinstance(raw, str) and len(raw.encode("utf-8")) > MAX_BODY_BYTES:
        raise InvalidRequest(f"The request body is larger than {MAX_BODY_BYTES} bytes.", code="too_large")
    return parse_json_body(raw)


def _text(body: dict[str, Any], field: str, limit: int, *, required: bool) -> str:
    value = body.get(field)
    if value is None:
        if required:
            raise InvalidRequest(f"'{field}' is required.", param=field, code="missing_field")
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidRequest(f"'{field}' must be a non-empty string.", param=field)
    if len(value) > limit:
        raise InvalidRequest(f"'{field}' is {len(value)} characters; the limit is {limit}.", param=field)
    return value


def _history(raw: Any) -> list[dict[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequest("'history' must be a list of {role, content} turns.", param="history")
    if len(raw) > MAX_HISTORY:
        raise InvalidRequest(f"'history' has {len(raw)} turns; the limit is {MAX_HISTORY}.", param="history")
    turns = []
    for i, turn in enumerate(raw):
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            raise InvalidRequest(
                f'\'history[{i}].role\' must be "user" or "assistant".', param=f"history[{i}]"
            )
        content = turn.get("content")
        if not isinstance(content, str) or len(content) > MAX_MESSAGE_CHARS:
            raise InvalidRequest(
                f"'history[{i}].content' must be a string of at most {MAX_MESSAGE_CHARS} characters.",
                param=f"history[{i}].content",
            )
        turns.append({"role": turn["role"], "content": content})
    return turns


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"statusCode": status, "headers": {**JSON_HEADERS, **(headers or {})}, "body": json.dumps(body)}
