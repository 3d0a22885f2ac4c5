"""The factory's name prefix: the start of every physical name that must be unique in an account.

Some AWS names are global to an account and region: LF-tag keys, Glue databases, the MLflow tracking
server, Secrets Manager secrets, guardrails, alarms and dashboards, Lambda functions and EventBridge
rules with a given name, SSM parameters. Every construct that names one starts it with the prefix in
effect where it is built, so two factories (or two pipeline stages) in one account never collide.

The prefix in effect is the context value ``ai-factory:prefix`` seen from the construct (``cdk.json``,
``-c ai-factory:prefix=...``, or set on a stack by ``build_factory``), else ``DEFAULT_PREFIX``. Each
service's own character rules are met by deriving from one validated prefix: lowercase letters,
digits and single hyphens, starting with a letter, at most ``MAX_LENGTH`` characters (guardrail and
Lambda function names are short).
"""

from __future__ import annotations

import hashlib
import re

import aws_cdk as cdk
from constructs import Construct

PREFIX_CONTEXT = "ai-factory:prefix"
DEFAULT_PREFIX = "ai-factory"
"""The first factory in an account keeps the names the docs, the CLI and team apps know
(``ai-factory/<team>/<feature>/api-key``, ``/ai-factory/gateway``, ``ai_factory_<domain>``); a second
factory in the same account sets another prefix (docs/deploy.md)."""
MAX_LENGTH = 32
_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class NamePrefixError(ValueError):
    """An invalid name prefix; the message names where it came from and why it is refused."""


def validate_prefix(prefix: object, source: str = PREFIX_CONTEXT) -> str:
    """``prefix`` if it is valid, else ``NamePrefixError`` naming ``source`` (the prop or context key)."""
    if not isinstance(prefix, str) or not _PATTERN.match(prefix) or len(prefix) > MAX_LENGTH:
        raise NamePrefixError(
            f"{source}: {prefix!r} is not a valid name prefix: use 1-{MAX_LENGTH} lowercase letters, digits "
            "and single hyphens, starting with a letter and not ending with a hyphen (e.g. 'ai-factory-b')"
        )
    return prefix


def name_prefix(scope: Construct, given: str | None = None) -> str:
    """The prefix for names made under ``scope``: ``given`` (a construct prop) if set, else the nearest
    ``ai-factory:prefix`` context value, else ``DEFAULT_PREFIX``."""
    if given is not None:
        return validate_prefix(given, "name_prefix")
    value = scope.node.try_get_context(PREFIX_CONTEXT)
    return DEFAULT_PREFIX if value is None else validate_prefix(value)


def set_name_prefix(scope: Construct, prefix: str) -> None:
    """Make ``prefix`` the one in effect under ``scope`` (before any child is added to it)."""
    scope.node.set_context(PREFIX_CONTEXT, validate_prefix(prefix))


def snake(prefix: str) -> str:
    """The prefix where hyphens are not allowed (Glue database names): ``ai-factory`` -> ``ai_factory``."""
    return prefix.replace("-", "_")


def prefixed_unique_name(scope: Construct, max_length: int) -> str:
    """``<prefix>-<the construct's unique name>`` in at most ``max_length`` characters: for names that must
    differ between factories (the prefix) and between stacks of one factory (the path hash)."""
    prefix = name_prefix(scope)
    rest = cdk.Names.unique_resource_name(scope, max_length=max_length - len(prefix) - 1, separator="-")
    return f"{prefix}-{rest}"


def stage_prefix(prefix: str, stage_name: str) -> str:
    """The prefix of a stage's factory: ``ai-factory`` in stage ``Staging`` -> ``ai-factory-staging``."""
    slug = re.sub(r"[^a-z0-9]+", "-", stage_name.lower()).strip("-")
    return validate_prefix(f"{prefix}-{slug}" if slug else prefix, f"{PREFIX_CONTEXT} (stage {stage_name})")


def bounded(name: str, max_length: int) -> str:
    """``name`` if it fits in ``max_length`` characters, else its start and a hash of the whole (two long
    names that share their first ``max_length`` characters stay distinct)."""
    if len(name) <= max_length:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{name[: max_length - 9].rstrip('-')}-{digest}"
