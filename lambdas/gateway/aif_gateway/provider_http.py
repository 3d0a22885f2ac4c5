"""HTTPS calls to external model APIs (OpenAI, Anthropic, Mistral) with the standard library only.

``post_json`` makes one JSON request and returns the decoded answer; ``open_sse`` starts a streamed
request and returns its server-sent events one ``(event, data)`` pair at a time. Both wait at most
``first_s`` for the response to start (connect plus time to the status line), a stream then at most
``idle_s`` between two reads. There are no retries here: the route's fallback chain is the retry.

``http_error`` maps a provider's failed answer to a ``ProviderError`` in the gateway's vocabulary, so
the router treats every provider alike:

- 429 rate limits are ``TooManyRequestsException`` (one short retry, then fallback; a chain where every
  target was throttled answers the client 429); an exhausted quota or credit (OpenAI
  ``insufficient_quota``) moves on without the retry;
- 5xx and Anthropic's 529 ``overloaded_error`` are transient (fallback, counted by the breaker);
- 400, 413 and 422 are the request's own fault (a 400 to the client; a prompt too long for the model
  becomes ``context_length_exceeded`` in ``routing.client_error``);
- 401 and 403 are the platform's credential problem (``AuthenticationError``): the provider re-reads its
  secret once, then the chain moves on without blaming the target's health;
- 404 (unknown model or deployment) is a configuration problem: the chain moves on.

Error bodies are summarised (type and message, at most 300 characters); request bodies and keys are
never part of an error or a log line.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Generator, Iterator
from typing import Any
from urllib.parse import urlsplit

from .provider_types import ProviderError

USER_AGENT = "ai-factory-gateway"
_MAX_ERROR_TEXT = 300


class HttpStatusError(Exception):
    """A non-2xx answer, before it is mapped (``http_error``): providers look at 401 themselves."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = headers


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ProviderError("InvalidConfiguration", f"not an http(s) URL: {url!r}", retryable=False)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:  # local OpenAI-compatible servers (vLLM, Ollama) and the tests' fakes
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    return conn, path


def _start(
    url: str, headers: dict[str, str], body: dict[str, Any], timeout: float, accept: str
) -> tuple[http.client.HTTPConnection, socket.socket | None, http.client.HTTPResponse]:
    conn, path = _connection(url, timeout)
    payload = json.dumps(body, separators=(",", ":")).encode()
    all_headers = {
        "Content-Type": "application/json",
        "Accept": accept,
        "User-Agent": USER_AGENT,
        **headers,
    }
    try:
        conn.request("POST", path, body=payload, headers=all_headers)
        sock = conn.sock  # getresponse drops it from the connection when the answer says Connection: close
        response = conn.getresponse()
    except TimeoutError as exc:
        conn.close()
        raise ProviderError("Timeout", "the provider did not answer in time", retryable=True) from exc
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise ProviderError(type(exc).__name__, "the provider could not be reached", retryable=True) from exc
    if not 200 <= response.status < 300:
        try:
            raw = response.read(65536)
        except (OSError, http.client.HTTPException):
            raw = b""
        conn.close()
        raise HttpStatusError(response.status, raw, {k.lower(): v for k, v in response.getheaders()})
    return conn, sock, response


def post_json(url: str, headers: dict[str, str], body: dict[str, Any], timeout: float) -> Any:
    """POST ``body`` as JSON and return the decoded JSON answer. Raises ``HttpStatusError`` for a
    non-2xx answer and ``ProviderError`` for timeouts, connection failures and undecodable answers."""
    conn, _, response = _start(url, headers, body, timeout, "application/json")
    try:
        raw = response.read()
    except TimeoutError as exc:
        raise ProviderError(
            "Timeout", "the provider did not finish its answer in time", retryable=True
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise ProviderError(type(exc).__name__, "the provider's answer broke off", retryable=True) from exc
    finally:
        conn.close()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ProviderError(
            "InvalidModelResponse", "the provider's answer is not JSON", retryable=True
        ) from exc


class SseResponse:
    """A started server-sent-events response: iterate for ``(event, data)`` pairs (``event`` is "" when
    the provider names none); ``close`` drops the connection, which stops the generation."""

    def __init__(
        self,
        conn: http.client.HTTPConnection,
        sock: socket.socket | None,
        response: http.client.HTTPResponse,
        idle_s: float,
    ) -> None:
        self._conn, self._response = conn, response
        if sock is not None:
            sock.settimeout(idle_s)  # from now on: the longest silence between two reads
        self._events = self._read()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return self._events

    def _read(self) -> Generator[tuple[str, str], None, None]:
        event, data = "", list[str]()
        while True:
            try:
                line = self._response.readline()
            except TimeoutError as exc:
                raise ProviderError("Timeout", "the provider's stream went silent", retryable=True) from exc
            except (OSError, http.client.HTTPException) as exc:
                raise ProviderError(
                    type(exc).__name__, "the provider's stream broke", retryable=True
                ) from exc
            if not line:  # end of the body
                if data:
                    yield event, "\n".join(data)
                return
            text = line.decode("utf-8").rstrip("\r\n")
            if not text:  # a blank line ends one event
                if data:
                    yield event, "\n".join(data)
                event, data = "", list[str]()
            elif text.startswith(":"):
                continue  # a comment (keep-alive)
            else:
                name, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)

    def close(self) -> None:
        self._events.close()
        self._response.close()
        self._conn.close()


def open_sse(
    url: str, headers: dict[str, str], body: dict[str, Any], first_s: float, idle_s: float
) -> SseResponse:
    """POST ``body`` and return its event stream once the response has started (HTTP 2xx)."""
    conn, sock, response = _start(url, headers, body, first_s, "text/event-stream")
    return SseResponse(conn, sock, response, idle_s)


def http_error(exc: HttpStatusError, provider: str) -> ProviderError:
    """The ``ProviderError`` for a provider's non-2xx answer (see the module docstring)."""
    kind, message = _describe(exc.body)
    summary = (
        f"{provider} HTTP {exc.status}" + (f" {kind}" if kind else "") + (f": {message}" if message else "")
    )
    status = exc.status
    if status == 429:
        if kind in ("insufficient_quota", "billing_error") or "quota" in message.lower():
            return ProviderError("InsufficientQuota", summary, retryable=True)
        return ProviderError("TooManyRequestsException", summary, retryable=True)
    if status in (400, 413, 422):
        return ProviderError("ValidationException", message or summary, retryable=False, client_fault=True)
    if status in (401, 403):
        return ProviderError("AuthenticationError", summary, retryable=False)
    if status == 404:
        return ProviderError("ModelNotFound", summary, retryable=False)
    if status == 408 or status == 504:
        return ProviderError("Timeout", summary, retryable=True)
    if status >= 500:  # 500, 502, 503 and Anthropic's 529 overloaded_error
        return ProviderError("ServiceUnavailableException", summary, retryable=True)
    return ProviderError(f"HTTP{status}", summary, retryable=False)


def _describe(body: bytes) -> tuple[str, str]:
    """(error type or code, message) from an OpenAI-, Anthropic- or Mistral-style error body."""
    try:
        data = json.loads(body)
    except ValueError:
        return "", body.decode("utf-8", "replace")[:_MAX_ERROR_TEXT]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):  # OpenAI {"error": {...}} and Anthropic {"type": "error", "error": {...}}
        kind = str(error.get("code") or error.get("type") or "")
        return kind, str(error.get("message") or "")[:_MAX_ERROR_TEXT]
    if isinstance(data, dict):  # Mistral {"object": "error", "message": ..., "type": ...}
        message = data.get("message") or data.get("detail") or ""
        if not isinstance(message, str):
            message = json.dumps(message)
        return str(data.get("type") or data.get("code") or ""), message[:_MAX_ERROR_TEXT]
    return "", ""
