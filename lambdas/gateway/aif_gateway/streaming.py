"""A streamed chat answer: started before the first byte, relayed event by event, metered at the end.

``open_stream`` runs inside the route's fallback chain: it starts the model call and waits for the
model's first event, so a target that fails or stays silent past its first-token timeout is passed over
before anything reached the client. ``relay`` then turns the events into the API's wire format (a
``StreamEncoder``: Chat Completions chunks, Anthropic Messages events or Responses events) as they
arrive. However the stream ends, ``on_end`` runs exactly once with what the model reported (or,
when it never reported usage, an estimate from what arrived) before the last
bytes are sent, so the usage record is written while the client and the function are still there:

- finished: the encoder's end (Chat Completions: finish chunk, usage chunk with ``include_usage``,
  ``[DONE]``);
- the model failed or the generation hit its time limit mid-way: the encoder's error event;
- the client went away (the server closes the generator): the model stream is closed, which stops
  the Bedrock call, and the consumed tokens are recorded.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .config import ModelTarget
from .openai_schema import ChatRequest
from .provider_types import (
    BufferedStream,
    CallContext,
    ChatStream,
    Provider,
    ProviderError,
    ReasoningDelta,
    StreamEvent,
    StreamStop,
    StreamUsage,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
)

log = logging.getLogger(__name__)

# Without the model's own usage (it failed or was stopped before its metadata event), tokens are
# estimated at this many characters per token and the record says so (``usage_estimated``).
CHARS_PER_TOKEN = 4


class StreamEncoder(Protocol):
    """One API's streaming wire format (``stream_format``: Chat Completions; ``anthropic_stream``:
    Messages; ``responses_stream``: Responses). Each method returns the bytes to send (maybe none)."""

    def role(self) -> bytes: ...
    def content(self, text: str) -> bytes: ...
    def reasoning(self, text: str, signature: str) -> bytes: ...
    def tool_call(self, index: int, arguments: str, call_id: str | None, name: str | None) -> bytes: ...
    def end(
        self, finish_reason: str, usage: TokenUsage | None, stop_sequence: str | None = None
    ) -> bytes: ...
    def error(self, message: str, code: str) -> bytes: ...


@dataclass
class OpenedStream:
    """A model stream whose first event has arrived (None: the model ended without any)."""

    first: StreamEvent | None
    stream: ChatStream


def open_stream(
    provider: Provider, target: ModelTarget, request: ChatRequest, ctx: CallContext
) -> OpenedStream:
    """Start the call and wait for its first event. A provider without ``chat_stream`` is buffered:
    its whole answer arrives as the first events."""
    chat_stream = getattr(provider, "chat_stream", None)
    stream: ChatStream = (
        chat_stream(target, request, ctx)
        if chat_stream
        else BufferedStream(provider.chat(target, request, ctx))
    )
    if not request.parallel_tool_calls:
        stream = FirstToolCallOnly(stream)
    try:
        first: StreamEvent | None = next(stream)
    except StopIteration:
        first = None
    except BaseException:
        stream.close()
        raise
    return OpenedStream(first, stream)


class FirstToolCallOnly:
    """``parallel_tool_calls: false`` on a stream: the model's events without any tool call after the
    first (the buffered answer keeps ``tool_calls[:1]`` the same way)."""

    def __init__(self, stream: ChatStream) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        while True:
            event = next(self._stream)
            if not (isinstance(event, ToolCallDelta) and event.index > 0):
                return event

    def close(self) -> None:
        self._stream.close()


@dataclass
class StreamEnd:
    """How a relayed stream ended: what the usage record is written from."""

    usage: TokenUsage
    usage_estimated: bool
    finish_reason: str | None
    guardrail_intervened: bool
    error_code: str | None = None  # model_stream_error, generation_timeout, client_disconnected, ...
    error_kind: str | None = None  # the provider's error name, e.g. ThrottlingException
    retryable: bool = False
    guardrail_units: dict[str, int] = field(default_factory=dict)
    stop_sequence: str | None = None
    # The answer's text and how many tool calls it made: kept only when the relay was asked to
    # (``collect_text``: the request is an online sample), else empty and 0.
    text: str = ""
    tool_calls: int = 0


@dataclass
class StreamingResponse:
    """An HTTP response whose body is produced while it is sent. Servers write each piece as it comes
    and call ``close`` when the client went away; ``buffered`` is the Lambda proxy form (one body)."""

    status: int
    headers: dict[str, str]
    body: Iterator[bytes]
    # Called once after the body is closed: accounts for a stream the client left before its first
    # piece (a generator that never started runs no ``finally``), so no usage record or slot is lost.
    on_close: Callable[[], None] | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
            if self.on_close is not None:
                self.on_close()

    def buffered(self) -> dict[str, Any]:
        text = b"".join(self.body).decode("utf-8")
        return {"statusCode": self.status, "headers": self.headers, "body": text, "isBase64Encoded": False}


def estimate_tokens(request: ChatRequest) -> int:
    """The request's input tokens, estimated from its text (used only when the model reported none)."""
    chars = 0
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
        if message.get("tool_calls"):
            chars += len(json.dumps(message["tool_calls"]))
    return math.ceil(chars / CHARS_PER_TOKEN)


def relay(
    opened: OpenedStream,
    encoder: StreamEncoder,
    *,
    include_usage: bool,
    deadline: float,
    clock: Callable[[], float],
    input_estimate: Callable[[], int],
    on_end: Callable[[StreamEnd], None],
    collect_text: bool = False,
) -> Iterator[bytes]:
    """The SSE bytes of one streamed answer (a generator: closing it stops the model call).
    ``collect_text``: keep the answer's text for ``StreamEnd.text`` (an online sample)."""
    stream = opened.stream
    events: Iterator[StreamEvent] = (
        itertools.chain((opened.first,), stream) if opened.first is not None else iter(stream)
    )
    usage: TokenUsage | None = None
    finish: str | None = None
    stop_sequence: str | None = None
    intervened = False
    guardrail_units: dict[str, int] = {}
    produced_chars = 0
    pieces: list[str] = []
    tool_indices: set[int] = set()
    error: tuple[str, str, str | None, bool] | None = None  # code, message, provider kind, retryable
    disconnected = False
    try:
        yield encoder.role()
        for event in events:
            if isinstance(event, TextDelta):
                produced_chars += len(event.text)
                if collect_text:
                    pieces.append(event.text)
                yield encoder.content(event.text)
            elif isinstance(event, ReasoningDelta):
                produced_chars += len(event.text)
                piece = encoder.reasoning(event.text, event.signature)
                if piece:
                    yield piece
            elif isinstance(event, ToolCallDelta):
                produced_chars += len(event.arguments) + len(event.name or "")
                if collect_text:
                    tool_indices.add(event.index)
                yield encoder.tool_call(event.index, event.arguments, event.id, event.name)
            elif isinstance(event, StreamStop):
                finish, intervened = event.finish_reason, event.guardrail_intervened
                stop_sequence = event.stop_sequence
            elif isinstance(event, StreamUsage):
                usage, guardrail_units = event.usage, event.guardrail_units
            if clock() > deadline and finish is None:
                error = (
                    "generation_timeout",
                    "The model was still generating when the route's total generation time ran out; "
                    "the answer is incomplete.",
                    None,
                    False,
                )
                break
    except ProviderError as exc:
        log.warning("model stream failed after its first byte: %s", exc)
        message = f"The model failed mid-stream ({exc.kind}); the answer is incomplete."
        error = ("model_stream_error", message, exc.kind, exc.retryable)
    except GeneratorExit:
        disconnected = True
        raise
    except Exception:
        log.exception("stream relay failed")
        error = ("internal_error", "The gateway failed while streaming; it was logged.", None, False)
    finally:
        stream.close()  # stops the model call when it has not finished (error, deadline, disconnect)
        estimated = usage is None
        if usage is None:
            usage = TokenUsage(input=input_estimate(), output=math.ceil(produced_chars / CHARS_PER_TOKEN))
        code = "client_disconnected" if disconnected else error[0] if error else None
        end = StreamEnd(
            usage,
            estimated,
            finish,
            intervened,
            error_code=code,
            error_kind=error[2] if error else None,
            retryable=error[3] if error else False,
            guardrail_units=guardrail_units,
            stop_sequence=stop_sequence,
            text="".join(pieces),
            tool_calls=len(tool_indices),
        )
        try:
            on_end(end)
        except Exception:  # the record's own fallbacks (spill, log) live in on_end; never break here
            log.exception("recording the end of a stream failed")
    if error is not None:
        yield encoder.error(error[1], error[0])
    else:
        yield encoder.end(finish or "stop", usage if include_usage else None, stop_sequence)
