"""Human feedback on answered requests: ``POST /v1/feedback``.

Body: ``{"request_id": str, "score": number 0..1 | "up" | "down", "comment"?: str, "tags"?: [str]}``.
``"up"``/``"down"`` are stored as 1 and 0, so thumbs and graded scores share one metric. The request
must be in the usage ledger (404 otherwise) and belong to the caller key's team and feature (403
otherwise); any key of that feature may rate it (a rotated key still can). One feedback per request:
a second submission replaces the first (last write wins), so a user may change their mind without
skewing the summary; the ``FeedbackCount`` metric counts submissions.

Nothing here imports boto3 or Powertools: the stores and the metrics sink are handed in.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import GatewayError, InvalidRequest, NotFound
from .openai_schema import reject_unknown_fields
from .records import ApiKeyRecord, FeedbackRecord, Ledger

log = logging.getLogger("aif_gateway")

MAX_REQUEST_ID_CHARS = 128
MAX_COMMENT_CHARS = 2000
MAX_TAGS = 10
TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,39}$")
THUMBS = {"up": 1.0, "down": 0.0}
FIELDS = ("request_id", "score", "comment", "tags")


class FeedbackForbidden(GatewayError):
    """403: the request belongs to another team or feature than the caller's key."""

    status = 403
    type = "permission_error"
    code = "feedback_not_allowed"


@dataclass(frozen=True)
class FeedbackInput:
    """A validated feedback body."""

    request_id: str
    score: float
    comment: str | None
    tags: tuple[str, ...]


def parse_feedback(body: Any) -> FeedbackInput:
    """Validate a parsed JSON body; raises InvalidRequest naming the field (``param``)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    reject_unknown_fields(body, FIELDS, "feedback")
    request_id = body.get("request_id")
    if request_id is None:
        raise InvalidRequest("'request_id' is required.", param="request_id", code="missing_field")
    if not isinstance(request_id, str) or not request_id.strip():
        raise InvalidRequest(
            "'request_id' must be a non-empty string (the x-request-id of the answer being rated).",
            param="request_id",
        )
    if len(request_id) > MAX_REQUEST_ID_CHARS or not request_id.isprintable():
        raise InvalidRequest(
            f"'request_id' must be at most {MAX_REQUEST_ID_CHARS} printable characters.", param="request_id"
        )
    return FeedbackInput(request_id, _score(body), _comment(body.get("comment")), _tags(body.get("tags")))


def _score(body: dict[str, Any]) -> float:
    if "score" not in body or body["score"] is None:
        raise InvalidRequest(
            '\'score\' is required: a number from 0 to 1, or "up" / "down".',
            param="score",
            code="missing_field",
        )
    score = body["score"]
    if isinstance(score, str) and score.lower() in THUMBS:
        return THUMBS[score.lower()]
    # bool is an int in Python; true/false are not scores.
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise InvalidRequest('\'score\' must be a number from 0 to 1, or "up" / "down".', param="score")
    value = float(score)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidRequest(f"'score' must be between 0 and 1, got {score!r}.", param="score")
    return value


def _comment(comment: Any) -> str | None:
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise InvalidRequest("'comment' must be a string.", param="comment")
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidRequest(
            f"'comment' is {len(comment)} characters; the limit is {MAX_COMMENT_CHARS}.", param="comment"
        )
    # Lone surrogates cannot be stored as UTF-8 (DynamoDB, SQLite): refuse rather than fail later.
    try:
        comment.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("'comment' must be valid Unicode text.", param="comment") from None
    return comment or None


def _tags(tags: Any) -> tuple[str, ...]:
    if tags is None:
        return ()
    if not isinstance(tags, list):
        raise InvalidRequest("'tags' must be a list of strings.", param="tags")
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"'tags' has {len(tags)} entries; the limit is {MAX_TAGS}.", param="tags")
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not TAG_PATTERN.match(tag):
            raise InvalidRequest(
                f"'tags[{i}]' must be 1-40 letters, digits and _ . : - (starting with a letter or digit).",
                param=f"tags[{i}]",
            )
    return tuple(dict.fromkeys(tags))


class FeedbackService:
    """Checks feedback against the usage ledger, stores it and counts it."""

    def __init__(self, ledger: Ledger, metrics: Any) -> None:
        self._ledger = ledger
        self._metrics = metrics

    def submit(self, key: ApiKeyRecord, body: Any, now: datetime) -> FeedbackRecord:
        """Raises InvalidRequest (400), NotFound (404), FeedbackForbidden (403) or StoreError (503)."""
        given = parse_feedback(body)
        usage = self._ledger.find(given.request_id)
        if usage is None:
            raise NotFound(
                f"No recorded request with id '{given.request_id}'. Only requests that reached a model "
                "are recorded; a request that finished within the last few seconds may not be visible "
                "yet: retry shortly.",
                param="request_id",
                code="request_not_found",
            )
        if (usage.team, usage.feature) != (key.team, key.feature):
            # Say no more than that: the other team's name is not the caller's business.
            raise FeedbackForbidden(
                f"Request '{given.request_id}' was not made by {key.team}/{key.feature}; API key "
                f"{key.key_id} may only rate its own feature's requests.",
                param="request_id",
            )
        feedback = FeedbackRecord(
            request_id=usage.request_id,
            team=usage.team,
            feature=usage.feature,
            request_month=usage.month,
            score=given.score,
            submitted_at=now,
            key_id=key.key_id,
            comment=given.comment,
            tags=given.tags,
            route=usage.route,
            model_served=usage.model_served,
        )
        self._ledger.record_feedback(feedback)
        emit = getattr(self._metrics, "emit_feedback", None)
        if emit is not None:
            try:
                emit(feedback)
            except Exception:  # metrics never fail a request
                log.exception("feedback metrics emit failed")
        return feedback


def feedback_response(feedback: FeedbackRecord) -> dict[str, Any]:
    """The 200 body: what was stored (the comment is not echoed back)."""
    return {
        "object": "feedback",
        "request_id": feedback.request_id,
        "score": feedback.score,
        "tags": list(feedback.tags),
        "has_comment": feedback.comment is not None,
        "submitted_at": feedback.submitted_at.isoformat(),
    }
