"""External providers' API keys, read from AWS Secrets Manager and cached per execution environment.

One secret per provider account (the catalog entry names it: ``secret``, a name or ARN; never the key).
The secret string is either the key itself or JSON with ``api_key`` (and, for OpenAI, optional
``organization`` and ``project``). A key is cached for ``ttl_s`` (default 5 minutes), so a rotated
secret is picked up without a redeploy; a provider that gets 401 re-reads the secret once at once
(``get(..., refresh=True)``, at most every ``MIN_REFRESH_S``), so a rotation takes effect on the
next request rather than after the TTL.

Keys never appear in logs, errors or ``repr``: ``ProviderCredentials`` hides them, and a secret that
cannot be read raises a ``ProviderError`` naming only the secret.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .aws_clients import LazyClients, make_client
from .provider_types import ProviderError

DEFAULT_SECRET_TTL_S = 300.0
# A refresh asked for (401) within this long after the last read is served from the cache: a key the
# provider keeps refusing must not turn every request into a Secrets Manager call.
MIN_REFRESH_S = 5.0


@dataclass(frozen=True)
class ProviderCredentials:
    api_key: str = field(repr=False)
    organization: str | None = None
    project: str | None = None


def parse_secret(secret_id: str, text: str) -> ProviderCredentials:
    """The credentials in a secret string: the bare key, or JSON ``{"api_key": ..., ...}``."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            raise _unusable(secret_id, "is not valid JSON") from None
        key = data.get("api_key") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise _unusable(secret_id, "has no non-empty 'api_key'")
        org, project = data.get("organization"), data.get("project")
        return ProviderCredentials(
            key.strip(),
            org if isinstance(org, str) and org else None,
            project if isinstance(project, str) and project else None,
        )
    if not stripped:
        raise _unusable(secret_id, "is empty")
    return ProviderCredentials(stripped)


def _unusable(secret_id: str, why: str) -> ProviderError:
    # Not retryable: every target using this secret fails alike until an operator fixes it.
    return ProviderError("InvalidSecret", f"secret {secret_id!r} {why}", retryable=False)


class SecretCache:
    """Cached reads of provider secrets. ``client_factory(region)`` gives a ``secretsmanager`` client."""

    def __init__(
        self,
        ttl_s: float = DEFAULT_SECRET_TTL_S,
        client_factory: Callable[[str | None], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._clients: LazyClients[str | None] = LazyClients(
            client_factory
            if client_factory is not None
            else (lambda region: make_client("secretsmanager", region, read_timeout=5, max_attempts=2))
        )
        self._cache: dict[str, tuple[ProviderCredentials, float]] = {}
        self._lock = threading.Lock()

    def get(self, secret_id: str, *, refresh: bool = False) -> ProviderCredentials:
        """The credentials in ``secret_id``, from the cache while fresh; ``refresh`` re-reads now."""
        cached = self._cache.get(secret_id)
        if cached is not None:
            age = self._clock() - cached[1]
            if age < (MIN_REFRESH_S if refresh else self.ttl_s):
                return cached[0]
        credentials = self._read(secret_id)
        with self._lock:
            self._cache[secret_id] = (credentials, self._clock())
        return credentials

    def _read(self, secret_id: str) -> ProviderCredentials:
        from botocore.exceptions import BotoCoreError, ClientError

        region = secret_id.split(":")[3] if secret_id.startswith("arn:") else None
        try:
            answer = self._clients.get(region).get_secret_value(SecretId=secret_id)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "ClientError"))
            retryable = code in ("InternalServiceError", "ThrottlingException")
            raise ProviderError(
                "SecretUnavailable", f"secret {secret_id!r} could not be read ({code})", retryable=retryable
            ) from None
        except BotoCoreError:
            raise ProviderError(
                "SecretUnavailable", f"secret {secret_id!r} could not be read", retryable=True
            ) from None
        text = answer.get("SecretString")
        if not isinstance(text, str):
            raise _unusable(secret_id, "holds no SecretString")
        return parse_secret(secret_id, text)
