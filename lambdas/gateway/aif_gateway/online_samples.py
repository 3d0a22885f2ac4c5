"""Online-evaluation samples the gateway itself hands over: answers Bedrock's invocation log never holds.

Online evaluation samples a feature's Bedrock traffic from Bedrock's model invocation log (Bedrock
writes it after answering; ``aif_online.sampling``). Answers of external providers and SageMaker
endpoints never reach that log, so for those the gateway sends the sample itself: when a feature's key
record carries a ``sampling_rate`` (set only for features an ``OnlineEvaluation`` samples) and the
request id falls in the sample (``contract.is_sampled``, the one decision both paths use), the
finished exchange goes to the gateway's sample queue (SQS, ``AIF_SAMPLE_QUEUE_URL``) on a background
thread after the response (``SampleWriter``), and the online sampler writes it into the feature's
sample table exactly as it writes an invocation-log record. The message holds the fields of
``aif_online.sampling.Exchange``.

A sample that cannot be sent (SQS refused it after retries, or the process ended first) is dropped and
logged by request id, team and feature only: a sample is a statistical copy, not a usage or audit record,
and its text must not end up in the function's log.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .contract import LOGGED_BY_BEDROCK, is_sampled, last_user_text
from .records import ApiKeyRecord
from .spill import JsonQueue
from .usage_writer import DEFAULT_MAX_PENDING, WriteBehind

log = logging.getLogger("aif_gateway")

__all__ = [
    "MESSAGE_KIND",
    "Answer",
    "SampleQueue",
    "SampleSender",
    "SampleWriter",
    "exchange_sample",
    "samples_request",
]

MESSAGE_KIND = "online-sample"
_NO_SAMPLING_CLEARANCES = frozenset({"restricted"})
# The gateway's finish reasons (OpenAI's words) in Bedrock's stopReason words, which the invocation-log
# samples carry: one vocabulary in the sample tables.
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "content_filtered",
}


def samples_request(key: ApiKeyRecord, provider: str, request_id: str) -> bool:
    """Whether the gateway sends this request's exchange: the feature samples through the gateway, the
    target's answers are not in Bedrock's invocation log, its clearance allows copies (checked at synth
    too; a key without a clearance counts as restricted) and the request falls in the sample."""
    return (
        key.sampling_rate > 0.0
        and provider not in LOGGED_BY_BEDROCK
        and key.clearance is not None
        and key.clearance not in _NO_SAMPLING_CLEARANCES
        and is_sampled(request_id, key.sampling_rate)
    )


@dataclass(frozen=True)
class Answer:
    """What the model answered, as far as a sample keeps it (from a buffered result or a stream's end)."""

    text: str
    finish_reason: str  # the gateway's (OpenAI's) words
    stop_sequence: str | None = None
    tool_calls: int = 0
    guardrail_intervened: bool = False


def exchange_sample(
    *,
    request_id: str,
    key: ApiKeyRecord,
    model_id: str,
    started: datetime,
    messages: list[dict[str, Any]],
    answer: Answer,
    input_tokens: int,
    output_tokens: int,
    latency_ms: float,
    gateway: str,
) -> dict[str, Any]:
    """The sample message of one finished exchange (``aif_online.sampling.Exchange``'s fields)."""
    if answer.guardrail_intervened:
        stop_reason = "guardrail_intervened"
    elif answer.stop_sequence:
        stop_reason = "stop_sequence"
    else:
        stop_reason = _STOP_REASONS.get(answer.finish_reason, answer.finish_reason)
    return {
        "request_id": request_id,
        "team": key.team,
        "feature": key.feature,
        "model": model_id,
        "timestamp": started.isoformat().replace("+00:00", "Z"),
        "input": last_user_text(messages),
        "output": answer.text,
        "stop_reason": stop_reason,
        "tool_calls": answer.tool_calls,
        "guardrail_intervened": answer.guardrail_intervened,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "latency_ms": round(latency_ms),
        "gateway": gateway,
    }


class SampleSender(Protocol):
    """Where samples go: the gateway's sample queue in AWS (``SampleQueue``)."""

    def send(self, sample: Mapping[str, Any]) -> None: ...


class SampleQueue(JsonQueue):
    """Sends sample messages to the gateway's sample queue (JSON, ``kind`` attribute ``online-sample``)."""

    kind = MESSAGE_KIND

    def send(self, sample: Mapping[str, Any]) -> None:
        """Queue the sample; raises botocore's errors when SQS does not accept it after retries."""
        self.send_json(sample)


def _dropped(sample: Mapping[str, Any]) -> None:
    log.warning(
        "ONLINE_SAMPLE_DROPPED request %s of %s/%s was not sent to the sample queue",
        sample.get("request_id"),
        sample.get("team"),
        sample.get("feature"),
    )


class SampleWriter(WriteBehind[Mapping[str, Any]]):
    """Sends samples on a background thread after their responses (``max_pending=0``: each request
    sends its own, for the buffered handler that nothing drains). Never raises into a request: a
    sample that cannot be sent is dropped and logged without its text (``ONLINE_SAMPLE_DROPPED``)."""

    def __init__(self, queue: SampleSender, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.queue = queue
        super().__init__(self._send, _dropped, max_pending=max_pending, thread_name="aif-sample-writer")

    def _send(self, sample: Mapping[str, Any]) -> None:
        try:
            self.queue.send(sample)
        except Exception:
            log.warning("sending online sample %s failed", sample.get("request_id"), exc_info=True)
            _dropped(sample)
