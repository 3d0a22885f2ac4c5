"""Calls to the factory's gateway with the assistant feature's key (standard library HTTP only).

The key is read once per process: from ``AIF_ASSISTANT_API_KEY`` locally, from the feature's Secrets
Manager secret in AWS (``AIF_ASSISTANT_KEY_SECRET_ARN``; the function may read exactly that secret).
Gateway errors keep their status and message, so the page can say what went wrong.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aif_gateway.errors import GatewayError

TIMEOUT_S = 60.0
ERROR_BODY_BYTES = 64 * 1024


class UpstreamError(GatewayError):
    """The gateway refused or failed a call; status and message are the gateway's own."""

    def __init__(self, status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(str(error.get("message") or f"The gateway answered HTTP {status}."), headers=headers)
        self.status = status
        self.type = str(error.get("type") or "upstream_error")
        self.code = error.get("code") if isinstance(error.get("code"), str) else None
        self.param = error.get("param") if isinstance(error.get("param"), str) else None


@dataclass
class ChatStream:
    """An open ``stream: true`` chat completion: the request ID (for feedback) and its SSE lines."""

    request_id: str
    response: Any

    def events(self) -> Iterator[dict[str, Any]]:
        """The decoded ``data:`` objects until ``[DONE]``."""
        for raw in self.response:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                return
            event = json.loads(data)
            if isinstance(event, dict):
                yield event

    def close(self) -> None:
        self.response.close()


class GatewayClient:
    """The gateway at ``base_url`` (ending in ``/v1``), called with the key ``key_source`` returns."""

    def __init__(self, base_url: str, key_source: Callable[[], str], timeout_s: float = TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._key_source = key_source
        self._key: str | None = None
        self._lock = threading.Lock()
        self.timeout_s = timeout_s

    def key(self) -> str:
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = self._key_source()
        return self._key

    def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._open(path, body) as response:
            data = json.loads(response.read().decode("utf-8"))
        return data if isinstance(data, dict) else {}

    def open_chat_stream(self, body: dict[str, Any]) -> ChatStream:
        response = self._open("/chat/completions", {**body, "stream": True})
        return ChatStream(response.headers.get("x-request-id") or "", response)

    def _open(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.key()}"},
        )
        try:
            return urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            raise _upstream_error(exc) from None


def _upstream_error(exc: urllib.error.HTTPError) -> UpstreamError:
    try:
        payload = json.loads(exc.read(ERROR_BODY_BYTES).decode("utf-8"))
        error = payload.get("error") if isinstance(payload, dict) else None
    except ValueError:
        error = None
    headers = {"Retry-After": exc.headers["Retry-After"]} if exc.headers.get("Retry-After") else None
    return UpstreamError(exc.code, error if isinstance(error, dict) else {}, headers)


def secret_key_source(secret_arn: str) -> Callable[[], str]:
    """The feature's key from its Secrets Manager secret, ``{"api_key", "key_id"}`` (boto3 from the
    Lambda runtime)."""

    def read() -> str:
        import boto3

        value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
        return str(json.loads(value)["api_key"])  # what AiFeature's key provisioner writes

    return read
