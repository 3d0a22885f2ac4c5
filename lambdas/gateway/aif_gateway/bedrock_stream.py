"""Bedrock ConverseStream events as the gateway's provider-neutral stream events.

botocore parses the binary event stream into dicts, one per event: ``messageStart``,
``contentBlockStart`` (a tool call's id and name), ``contentBlockDelta`` (text, tool-input JSON
pieces, reasoning), ``contentBlockStop``, ``messageStop`` (the stop reason), ``metadata`` (usage with
cache counters, latency). A model error after HTTP 200 arrives as an exception event, which botocore
raises while iterating (``EventStreamError``); it becomes a ``ProviderError`` here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from .bedrock_errors import to_provider_error
from .bedrock_translate import STOP_REASONS, matched_stop_sequence
from .guardrail_metering import assessment_units
from .provider_types import (
    ReasoningDelta,
    StreamEvent,
    StreamStop,
    StreamUsage,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
)

log = logging.getLogger(__name__)


class ConverseStreamReader:
    """Iterates one ConverseStream response. Content blocks are numbered by Bedrock across text and
    tool use; OpenAI numbers tool calls on their own (0, 1, ...), so the reader keeps that mapping."""

    def __init__(self, event_stream: Any, idle_s: float | None = None, stop: list[str] | None = None) -> None:
        self._stream = event_stream
        self._stop = stop or []
        self._events: Iterator[dict[str, Any]] = iter(event_stream)
        self._idle_s = idle_s
        self._tool_index: dict[int, int] = {}
        self._first = True
        self._closed = False

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        while True:
            try:
                raw = next(self._events)
            except StopIteration:
                raise
            except Exception as exc:
                error = to_provider_error(exc)
                if error is None:
                    raise
                raise error from exc
            event = self._translate(raw)
            if event is None:
                continue  # messageStart and the like: not yet a token, the first-token limit holds
            if self._first:
                self._first = False
                if self._idle_s is not None:
                    _set_read_timeout(self._stream, self._idle_s)
            return event

    def _translate(self, raw: dict[str, Any]) -> StreamEvent | None:
        if "contentBlockDelta" in raw:
            body = raw["contentBlockDelta"]
            delta = body.get("delta", {})
            if "text" in delta:
                return TextDelta(delta["text"]) if delta["text"] else None
            if "toolUse" in delta:
                index = self._tool_index.get(body.get("contentBlockIndex", 0))
                if index is None:  # input without a start event: not a call we can name
                    return None
                return ToolCallDelta(index, delta["toolUse"].get("input", ""))
            reasoning = delta.get("reasoningContent")
            if isinstance(reasoning, dict) and (reasoning.get("text") or reasoning.get("signature")):
                return ReasoningDelta(reasoning.get("text", ""), reasoning.get("signature", ""))
            return None
        if "contentBlockStart" in raw:
            body = raw["contentBlockStart"]
            use = body.get("start", {}).get("toolUse")
            if use is None:
                return None
            index = self._tool_index[body.get("contentBlockIndex", 0)] = len(self._tool_index)
            return ToolCallDelta(index, "", use["toolUseId"], use["name"])
        if "messageStop" in raw:
            body = raw["messageStop"]
            reason = body.get("stopReason", "end_turn")
            matched = matched_stop_sequence(reason, body.get("additionalModelResponseFields"), self._stop)
            return StreamStop(STOP_REASONS.get(reason, "stop"), reason == "guardrail_intervened", matched)
        if "metadata" in raw:
            usage = raw["metadata"].get("usage", {})
            return StreamUsage(
                TokenUsage(
                    input=int(usage.get("inputTokens", 0)),
                    output=int(usage.get("outputTokens", 0)),
                    cache_read=int(usage.get("cacheReadInputTokens", 0) or 0),
                    cache_write=int(usage.get("cacheWriteInputTokens", 0) or 0),
                ),
                assessment_units(raw["metadata"].get("trace")),
            )
        return None  # messageStart, contentBlockStop

    def close(self) -> None:
        """Close the HTTP response: Bedrock stops generating when the connection goes away."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.close()
        except Exception:  # closing must not fail a request that is already ending
            log.warning("closing the ConverseStream response failed", exc_info=True)


def _set_read_timeout(event_stream: Any, seconds: float) -> None:
    """Switch the open stream's socket from the first-token to the idle timeout. Best effort: the
    attribute path is urllib3's (HTTPResponse -> connection -> socket); without it the first-token
    timeout stays in force between events."""
    raw = getattr(event_stream, "_raw_stream", None)
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if sock is None:
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(seconds)
