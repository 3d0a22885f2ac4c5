"""The edge authorizer: API Gateway's Lambda REQUEST authorizer in front of the gateway function.

It decides with the gateway's own key code (``KeyAuthenticator`` over ``DynamoKeyStore``: one
``GetItem`` by the key's SHA-256 hash, never a scan, with the same per-environment cache), so a request
without a valid key is refused before it reaches the gateway function, and a valid key's request is
counted against its feature's API Gateway usage plan through ``usageIdentifierKey``:

* a valid key: ``Allow`` on every method of the stage (API Gateway may cache the answer for the key and
  reuse it on another route), with the key's team, feature and key ID as context, and its feature's
  usage identifier (``contract.usage_identifier``) or, for a key whose feature has no plan of its own,
  the shared plan's (``contract.shared_usage_identifier``);
* an unknown, revoked or expired key: ``Deny`` (API Gateway answers 403; a cached ``Deny`` spares the
  key table a flood of the same bad key);
* no credential at all: ``Unauthorized`` (API Gateway answers 401).

The credential is read as the gateway reads it (``app.Gateway._authenticate``): ``Authorization:
Bearer <key>``, or on the Anthropic Messages routes ``x-api-key`` first. The gateway function still
authenticates every request itself: the edge is a filter in front of it, not a replacement, and local
mode (``ai-factory serve``) has no edge at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import contract
from .access import KeyAuthenticator
from .config import CONFIG_FILE_NAME, GatewayConfig
from .dynamo_store import DynamoKeyStore
from .errors import Unauthorized
from .records import ApiKeyRecord, utc_now

ANTHROPIC_RESOURCES = ("/v1/messages", "/v1/messages/count_tokens")
"""The Anthropic front door's resources, where ``x-api-key`` is the usual header."""

_authenticator: KeyAuthenticator | None = None


def credential(headers: Mapping[str, Any] | None, resource: str) -> str | None:
    """The ``Authorization`` value the gateway would check for a request with these headers."""
    lowered = {str(k).lower(): v for k, v in (headers or {}).items() if isinstance(v, str)}
    api_key = lowered.get("x-api-key")
    if api_key and resource in ANTHROPIC_RESOURCES:
        return f"Bearer {api_key}"
    return lowered.get("authorization") or None


def stage_wildcard(method_arn: str) -> str:
    """``arn:...:execute-api:region:account:api/stage/*/*``: every method of the stage.

    A cached answer is reused for the same key on any route, so it must cover them all (a policy naming
    only the first method would deny the key's next call to another route until the cache expires).
    """
    prefix, _, path = method_arn.partition(":execute-api:")
    parts = path.split("/")
    return f"{prefix}:execute-api:{parts[0]}/{parts[1]}/*/*"


def decide(event: Mapping[str, Any], authenticator: KeyAuthenticator, namespace: str) -> dict[str, Any]:
    """The authorizer's answer for ``event`` (a REQUEST authorizer event); raises ``PermissionError``
    with the message ``Unauthorized`` when the request carries no credential."""
    authorization = credential(event.get("headers"), str(event.get("resource", "")))
    if not authorization:
        raise PermissionError("Unauthorized")  # API Gateway: 401 (the gateway's missing_api_key)
    resource = stage_wildcard(str(event["methodArn"]))
    try:
        record = authenticator.authenticate(authorization, utc_now())
    except Unauthorized as exc:
        return _policy("anonymous", "Deny", resource, {"reason": exc.code or "invalid_api_key"})
    return _policy(
        record.key_id,
        "Allow",
        resource,
        {"team": record.team, "feature": record.feature, "keyId": record.key_id},
        usage_key=usage_key(record, namespace),
    )


def usage_key(record: ApiKeyRecord, namespace: str) -> str:
    """The usage identifier API Gateway meters the key's requests under."""
    if record.edge_usage_plan:
        return contract.usage_identifier(namespace, record.team, record.feature)
    return contract.shared_usage_identifier(namespace)


def _policy(
    principal: str, effect: str, resource: str, context: dict[str, str], usage_key: str | None = None
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": context,
    }
    if usage_key is not None:
        answer["usageIdentifierKey"] = usage_key
    return answer


def build_authenticator() -> KeyAuthenticator:
    """The key check over the keys table, with the gateway's key-cache TTL (``gateway_config.json``)."""
    path = os.environ.get(contract.CONFIG_PATH_ENV) or str(Path(__file__).with_name(CONFIG_FILE_NAME))
    config = GatewayConfig.load(path)
    return KeyAuthenticator(DynamoKeyStore(os.environ[contract.KEYS_TABLE_ENV]), config.key_cache_ttl_s)


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """Lambda entry point (``aif_gateway.authorizer.handler``)."""
    global _authenticator
    if _authenticator is None:
        _authenticator = build_authenticator()
    try:
        return decide(event, _authenticator, os.environ[contract.EDGE_NAMESPACE_ENV])
    except PermissionError:
        # The exact message "Unauthorized" is what makes API Gateway answer 401.
        raise Exception("Unauthorized") from None
