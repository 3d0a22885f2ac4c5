"""How a failed Bedrock call maps to a ``ProviderError``: which errors move on to the next target and
which are the request's own fault. Shared by Converse, ConverseStream and InvokeModel."""

from __future__ import annotations

from .provider_types import ProviderError

# Bedrock errors worth trying the next target for. ValidationException is the request's own fault and is
# returned to the caller; every other failure also moves on (another model may well serve it) but only
# these count as transient in the audit record. ConverseStream reports them as events after HTTP 200
# (with a lower-case first letter); botocore raises them as EventStreamError with the same codes.
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "ModelNotReadyException",
        "InternalServerException",
        "ModelTimeoutException",
        "ModelStreamErrorException",
    }
)
CLIENT_FAULT_CODES = frozenset({"ValidationException"})


def to_provider_error(exc: Exception) -> ProviderError | None:
    """The ``ProviderError`` for a botocore/urllib3 failure; None for anything else (a bug: re-raise)."""
    from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "ClientError"))
        code = code[:1].upper() + code[1:]  # event-stream exceptions are named in camelCase
        message = str(exc.response.get("Error", {}).get("Message", ""))
        return ProviderError(
            code, message, retryable=code in RETRYABLE_CODES, client_fault=code in CLIENT_FAULT_CODES
        )
    if isinstance(exc, ReadTimeoutError) or type(exc).__name__ == "ReadTimeoutError":
        return ProviderError("Timeout", "the model did not answer in time", retryable=True)
    if isinstance(exc, BotoCoreError | Urllib3Error | OSError):
        # Connection errors, missing credentials, a reset stream...: this target cannot serve.
        return ProviderError(type(exc).__name__, "the model endpoint could not be reached", retryable=True)
    return None
