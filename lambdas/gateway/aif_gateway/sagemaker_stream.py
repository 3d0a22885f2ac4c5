"""A SageMaker endpoint's streamed answer (``InvokeEndpointWithResponseStream``) as stream events.

The endpoint's container speaks OpenAI's streaming chat format (content handler ``openai-chat``: vLLM,
LMI, SGLang): SageMaker wraps its output in ``PayloadPart`` events whose bytes are arbitrary slices of
the container's server-sent events, so lines are reassembled here before each ``data: {...}`` chunk
becomes a ``TextDelta``, a ``StreamStop`` or (with ``stream_options.include_usage``) a ``StreamUsage``.
A container that reports no usage gets it estimated from the words it sent, as ``chat`` does.
``ModelStreamError`` and ``InternalStreamFailure`` events, which botocore raises while iterating,
become ``ProviderError``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from .provider_types import ProviderError, StreamEvent, StreamStop, StreamUsage, TextDelta, TokenUsage

log = logging.getLogger(__name__)

_FINISH = frozenset({"stop", "length", "content_filter"})


class SageMakerSseStream:
    def __init__(self, event_stream: Any, estimated_input: int) -> None:
        self._stream = event_stream
        self._events = self._generate(iter(event_stream), estimated_input)

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        try:
            self._stream.close()
        except Exception:
            log.warning("closing the SageMaker response stream failed", exc_info=True)

    def _generate(self, raw: Iterator[dict[str, Any]], estimated_input: int) -> Iterator[StreamEvent]:
        buffer = b""
        words = 0
        usage: TokenUsage | None = None
        while True:
            try:
                event = next(raw)
            except StopIteration:
                break
            except Exception as exc:
                raise _provider_error(exc) from exc
            part = event.get("PayloadPart")
            if part is None:
                continue
            buffer += part.get("Bytes", b"")
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                chunk = _chunk(line)
                if chunk is None:
                    continue
                if chunk.get("usage"):
                    u = chunk["usage"]
                    usage = TokenUsage(
                        input=int(u.get("prompt_tokens", 0)), output=int(u.get("completion_tokens", 0))
                    )
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if isinstance(text, str) and text:
                        words += len(text.split())
                        yield TextDelta(text)
                    finish = choice.get("finish_reason")
                    if finish:
                        yield StreamStop(finish if finish in _FINISH else "stop")
        yield StreamUsage(usage or TokenUsage(input=estimated_input, output=words))


def _chunk(line: bytes) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith(b"data:"):
        return None
    data = line[5:].strip()
    if not data or data == b"[DONE]":
        return None
    try:
        chunk = json.loads(data)
    except ValueError:
        raise ProviderError(
            "InvalidModelResponse", "the endpoint's stream is not OpenAI chat chunks", retryable=True
        ) from None
    return chunk if isinstance(chunk, dict) else None


def _provider_error(exc: Exception) -> ProviderError:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return ProviderError(
            str(error.get("Code", "StreamError")), str(error.get("Message", "")), retryable=True
        )
    return ProviderError(type(exc).__name__, "the endpoint's stream broke", retryable=True)
