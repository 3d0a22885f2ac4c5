"""Errors the gateway returns, in OpenAI's error JSON shape, with the status the issue contract names.

Every error a client sees is one of these: the handler turns anything unexpected into a generic 500
without internals (and logs it), so a traceback never reaches a caller.
"""

from __future__ import annotations

import json
from typing import Any

from . import contract


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def to_json(self) -> str:
        return json.dumps(self.body())


class InvalidRequest(GatewayError):
    """400: malformed JSON or a field that is missing, of the wrong type or out of range."""

    status = 400
    type = "invalid_request_error"


class Unauthorized(GatewayError):
    """401: missing, unknown, expired or revoked key."""

    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    """403: the key is valid but may not use this model."""

    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class NotFound(GatewayError):
    """404: unknown model alias or unknown path."""

    status = 404
    type = "not_found_error"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class NotImplementedByGateway(GatewayError):
    """501: an endpoint of a supported API that the gateway deliberately does not offer."""

    status = 501
    type = "invalid_request_error"
    code = "not_implemented"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    """429: one of the feature's rate limits (requests or tokens per minute, concurrency); ``code``
    names which."""

    status = 429
    type = "rate_limit_error"
    code = contract.RATE_LIMIT_EXCEEDED_CODE


class BudgetExhausted(GatewayError):
    """429: the feature's monthly budget is spent."""

    status = 429
    type = "insufficient_quota"
    code = contract.BUDGET_EXHAUSTED_CODE


class AllTargetsFailed(GatewayError):
    """503: every model in the route's chain failed or was skipped by its circuit breaker."""

    status = 503
    type = "service_unavailable"
    code = "all_targets_failed"


class StoreUnavailable(GatewayError):
    """503: the key or usage store could not be read; nothing about the request was wrong."""

    status = 503
    type = "service_unavailable"
    code = "store_unavailable"


class InternalError(GatewayError):
    """500 with a generic message: the details go to the log, never to the caller."""

    status = 500
    type = "server_error"
    code = "internal_error"
