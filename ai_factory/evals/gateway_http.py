"""One HTTP client for the gateway's OpenAI-compatible API, shared by the eval target, judge and embedder.

``GatewayHttpClient.post(path, payload)`` POSTs JSON with a bearer key over a keep-alive connection per
thread (targets, judges and embedders are called from several threads at once) and retries throttling,
outages and connection failures with capped exponential backoff and full jitter, honouring
``Retry-After``. It returns the final answer whatever its status, with the latency of that attempt;
callers decide what a non-2xx answer means. Standard library only (the core has no HTTP dependency).
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_RETRY_STATUSES = frozenset({429, 503})
DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF_S = 0.5
DEFAULT_MAX_BACKOFF_S = 8.0
DEFAULT_MAX_RETRY_AFTER_S = 60.0  # longer (a monthly budget that resets in days): not worth waiting
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_USER_AGENT = "ai-factory-eval"


@dataclass
class HttpAnswer:
    """One HTTP response: status, reason phrase, headers (names lowercased) and the body."""

    status: int
    headers: dict[str, str]
    body: bytes
    reason: str = ""


class GatewayConnectionError(Exception):
    """Every attempt failed before an HTTP answer arrived (refused, reset, timed out)."""


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (headers with lowercased names); ``None`` when absent or a date."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # an HTTP date: rare from this gateway; fall back to backoff


class GatewayHttpClient:
    """POSTs JSON to ``base_url`` (``http(s)://host[:port][/prefix]``) with bounded retries.

    - ``attempts``: requests made at most (>= 1).
    - ``retry_statuses``: HTTP statuses worth another attempt; connection failures always are.
    - ``backoff_s``/``max_backoff_s``: the delay before retry ``n`` (0-based) is uniform in
      ``0..min(max_backoff_s, backoff_s * 2**n)`` (full jitter spreads threads hit by the same limit).
    - ``max_retry_after_s``: the longest ``Retry-After`` waited for. Above it, ``give_up_above_cap``
      returns that answer at once (a budget that resets next month is not worth waiting for);
      otherwise the wait is cut to the cap.
    - ``timeout_s``: socket timeout per attempt. ``sleep``: injected by tests. ``user_agent``: sent as is.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_statuses: Collection[int] = DEFAULT_RETRY_STATUSES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
        max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
        give_up_above_cap: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url.rstrip("/"))
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"gateway URL {base_url!r} must be http(s)://HOST[:PORT][/PATH]")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self._scheme = parsed.scheme
        self._netloc = parsed.netloc
        self._path = parsed.path or ""
        self.api_key = api_key
        self.attempts = attempts
        self.retry_statuses = frozenset(retry_statuses)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.give_up_above_cap = give_up_above_cap
        self.timeout_s = timeout_s
        self.user_agent = user_agent
        self._sleep = sleep
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    # One keep-alive connection per thread: http.client connections are not thread-safe.
    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = cls(self._netloc, timeout=self.timeout_s)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _post(self, path: str, payload: Mapping[str, Any]) -> HttpAnswer:
        body = json.dumps(payload).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.api_key}",
            "User-Agent": self.user_agent,
        }
        conn = self._connection()
        try:
            conn.request("POST", self._path + path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise _Retryable(f"connection failed: {type(exc).__name__}: {exc}") from exc
        headers_in = {k.lower(): v for k, v in response.getheaders()}
        answer = HttpAnswer(response.status, headers_in, data, response.reason or "")
        if response.will_close:
            self._drop_connection()
        return answer

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))

    def post(self, path: str, payload: Mapping[str, Any]) -> tuple[HttpAnswer, float]:
        """POST ``payload`` to ``base_url + path`` with retries.

        Returns the final answer (any status) and the latency of its attempt in ms. Raises
        ``GatewayConnectionError`` ("connection failed: ...") when the last attempt got no answer.
        """
        path = "/" + path.lstrip("/")
        last: _Retryable | None = None
        for attempt in range(self.attempts):
            started = time.perf_counter()
            try:
                answer = self._post(path, payload)
            except _Retryable as exc:
                last = exc
            else:
                latency_ms = (time.perf_counter() - started) * 1000
                if answer.status not in self.retry_statuses or attempt == self.attempts - 1:
                    return answer, latency_ms
                retry_after = retry_after_seconds(answer.headers)
                if (
                    self.give_up_above_cap
                    and retry_after is not None
                    and retry_after > self.max_retry_after_s
                ):
                    return answer, latency_ms
                last = _Retryable(f"HTTP {answer.status}", retry_after)
            if attempt < self.attempts - 1:
                self._sleep(self._delay(attempt, last.retry_after))
        assert last is not None
        raise GatewayConnectionError(str(last))

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
