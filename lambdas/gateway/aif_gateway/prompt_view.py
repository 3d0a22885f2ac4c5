"""The runtime view of the prompt registry: which prompt versions exist and where the aliases point.

The registry's system of record is MLflow, which the gateway must not import; ``ai-factory prompts
publish`` writes this JSON view (schema 1) to a file or an S3 object and the gateway reads it here::

    {"schema": 1, "generated_at": "...",
     "prompts": {"summarize-ticket": {
         "versions": {"3": {"hash": "sha256:...", "model": "chat-fast", "parameters": {...},
                            "messages": [{"role": "system", "content": "..."}, ...],
                            "variables": ["ticket"]}},
         "aliases": {"production": "3"}}}}

``PromptViewSource`` caches the parsed view per instance and looks at the source again at most every
``ttl_s`` seconds: an S3 conditional GET on the ETag (a 304 keeps the cache), a file's mtime and size.
So the hot path makes no AWS call. A missing view means no prompts; a malformed one is logged and the
last good view keeps serving (with none, prompt requests get a 503).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NotFound
from .prompt_template import extract_variables
from .records import StoreError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("aif_gateway")

SCHEMA_VERSION = 1
DEFAULT_TTL_S = 60.0
# After a failed read with no good view to fall back on, try again this soon (not a whole TTL later).
FAILED_RETRY_S = 5.0
MAX_VIEW_BYTES = 32 * 1024 * 1024
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
VERSION_PATTERN = re.compile(r"^[1-9][0-9]{0,17}$")
DEFAULT_ALIAS = "production"
PROMPT_ROLES = ("system", "developer", "user", "assistant")
# Parameter -> check; the ranges the prompt file loader (ai_factory.prompts.spec) enforces.
_PARAMETER_CHECKS: dict[str, Callable[[Any], bool]] = {
    "temperature": lambda v: _is_number(v) and 0 <= v <= 2,
    "top_p": lambda v: _is_number(v) and 0 <= v <= 1,
    "max_tokens": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "stop": lambda v: isinstance(v, list) and 0 < len(v) <= 4 and all(isinstance(s, str) and s for s in v),
}


class PromptViewError(ValueError):
    """The view's JSON does not have the schema-1 shape; the message names the field."""


@dataclass(frozen=True)
class PromptVersion:
    """One immutable prompt version as the gateway renders it."""

    name: str
    version: str
    hash: str
    model: str
    parameters: Mapping[str, Any]
    messages: tuple[Mapping[str, str], ...]
    variables: tuple[str, ...]


@dataclass(frozen=True)
class PromptEntry:
    versions: Mapping[str, PromptVersion]
    aliases: Mapping[str, str]


@dataclass(frozen=True)
class PromptView:
    prompts: Mapping[str, PromptEntry] = field(default_factory=dict)
    generated_at: str | None = None

    def resolve(self, name: str, version: str | None = None, alias: str | None = None) -> PromptVersion:
        """The version asked for (by number or alias; neither = ``production``), else 404 prompt_not_found."""
        entry = self.prompts.get(name)
        if entry is None:
            raise _not_found(f"No registered prompt is named {_quote(name)}.", "prompt.name")
        if version is not None:
            found = entry.versions.get(version)
            if found is None:
                known = ", ".join(sorted(entry.versions, key=int)) or "none"
                raise _not_found(
                    f"Prompt {_quote(name)} has no version {_quote(version)}; versions: {known}.",
                    "prompt.version",
                )
            return found
        alias = alias if alias is not None else DEFAULT_ALIAS
        target = entry.aliases.get(alias)
        if target is None:
            known = ", ".join(sorted(entry.aliases)) or "none"
            raise _not_found(
                f"Prompt {_quote(name)} has no alias {_quote(alias)}; aliases: {known}. "
                "Name a version or an alias that exists.",
                "prompt.alias",
            )
        return entry.versions[target]


def _not_found(message: str, param: str) -> NotFound:
    return NotFound(message, param=param, code="prompt_not_found")


def _quote(value: str) -> str:
    return json.dumps(value if len(value) <= 80 else value[:77] + "...")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# ------------------------------------------------------------------------------------------- parsing


def parse_view(data: Any) -> PromptView:
    """Validate a decoded schema-1 view; ``PromptViewError`` names the first bad field."""
    if not isinstance(data, dict):
        raise PromptViewError("the view must be a JSON object")
    schema = data.get("schema")
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        raise PromptViewError(f"'schema' must be {SCHEMA_VERSION}, got {schema!r}")
    generated_at = data.get("generated_at")
    if generated_at is not None and not isinstance(generated_at, str):
        raise PromptViewError("'generated_at' must be a string")
    prompts = data.get("prompts")
    if not isinstance(prompts, dict):
        raise PromptViewError("'prompts' must be an object")
    return PromptView({name: _parse_entry(name, raw) for name, raw in prompts.items()}, generated_at)


def _parse_entry(name: str, raw: Any) -> PromptEntry:
    where = f"prompts.{name}"
    if not NAME_PATTERN.match(name):
        raise PromptViewError(f"'{where}': prompt names must match {NAME_PATTERN.pattern}")
    if not isinstance(raw, dict):
        raise PromptViewError(f"'{where}' must be an object")
    versions = raw.get("versions")
    if not isinstance(versions, dict):
        raise PromptViewError(f"'{where}.versions' must be an object")
    parsed = {v: _parse_version(name, v, body) for v, body in versions.items()}
    aliases = raw.get("aliases", {})
    if not isinstance(aliases, dict):
        raise PromptViewError(f"'{where}.aliases' must be an object")
    for alias, target in aliases.items():
        if not alias or not isinstance(target, str) or target not in parsed:
            raise PromptViewError(f"'{where}.aliases.{alias}' must name one of the versions, got {target!r}")
    return PromptEntry(parsed, dict(aliases))


def _parse_version(name: str, version: str, raw: Any) -> PromptVersion:
    where = f"prompts.{name}.versions.{version}"
    if not VERSION_PATTERN.match(version):
        raise PromptViewError(f"'{where}': version keys must be positive integers as strings")
    if not isinstance(raw, dict):
        raise PromptViewError(f"'{where}' must be an object")
    content_hash, model = raw.get("hash"), raw.get("model")
    if not isinstance(content_hash, str) or not content_hash:
        raise PromptViewError(f"'{where}.hash' must be a non-empty string")
    if not isinstance(model, str) or not model:
        raise PromptViewError(f"'{where}.model' must be a non-empty string")
    parameters = raw.get("parameters", {})
    if not isinstance(parameters, dict):
        raise PromptViewError(f"'{where}.parameters' must be an object")
    for key, value in parameters.items():
        check = _PARAMETER_CHECKS.get(key)
        if check is None:
            raise PromptViewError(f"'{where}.parameters.{key}' is not one of {', '.join(_PARAMETER_CHECKS)}")
        if not check(value):
            raise PromptViewError(f"'{where}.parameters.{key}' is out of range or of the wrong type")
    messages = raw.get("messages")
    if not isinstance(messages, list) or not messages:
        raise PromptViewError(f"'{where}.messages' must be a non-empty array")
    for i, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in PROMPT_ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise PromptViewError(
                f"'{where}.messages[{i}]' must be {{role: {'|'.join(PROMPT_ROLES)}, content: string}}"
            )
    frozen = tuple({"role": m["role"], "content": m["content"]} for m in messages)
    declared = raw.get("variables", [])
    used = extract_variables(frozen)
    if not isinstance(declared, list) or sorted(declared) != list(used):
        # The renderer trusts the templates; a declared list that disagrees means a broken publisher.
        raise PromptViewError(f"'{where}.variables' must list the templates' variables {list(used)}")
    return PromptVersion(name, version, content_hash, model, dict(parameters), frozen, used)


# -------------------------------------------------------------------------------------------- source


class PromptViewSource:
    """The prompt view from a file path or ``s3://bucket/key``, cached and refreshed at most every ttl.

    ``uri=None`` means no view: every prompt is unknown. Thread-safe (the local server is threaded);
    one caller refreshes while the others keep using the cached view.

    :param uri: a local path or ``s3://bucket/key``.
    :param ttl_s: how long a view is used before the source is checked again.
    :param clock: monotonic seconds (injectable for tests).
    :param s3_client: a boto3 S3 client; default: one with short timeouts, made on first use.
    """

    def __init__(
        self,
        uri: str | os.PathLike[str] | None,
        ttl_s: float = DEFAULT_TTL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        s3_client: S3Client | None = None,
    ) -> None:
        self.uri = str(uri) if uri is not None else None
        self.ttl_s = ttl_s
        self._clock = clock
        self._s3 = s3_client
        self._bucket = self._key = ""
        if self.uri and self.uri.startswith("s3://"):
            self._bucket, _, self._key = self.uri[len("s3://") :].partition("/")
            if not self._bucket or not self._key:
                raise ValueError(f"prompt view URI must be s3://bucket/key, got {self.uri!r}")
        self._view: PromptView | None = None  # the last good view
        self._version: Any = None  # ETag (S3) or (mtime_ns, size) (file) of the last good view
        self._next_check = -math.inf
        self._failure: str | None = None  # why there is no good view yet
        self._lock = threading.Lock()

    def resolve(
        self, name: str, version: str | None = None, alias: str | None = None
    ) -> tuple[str, PromptVersion]:
        """``(version, entry)`` for a prompt by version or alias (default ``production``).

        Raises ``NotFound`` (404 prompt_not_found) for an unknown name, version or alias and
        ``StoreError`` when no view could ever be read.
        """
        found = self.view().resolve(name, version, alias)
        return found.version, found

    def view(self) -> PromptView:
        """The current view, refreshing it first if the TTL has passed."""
        if self._clock() >= self._next_check:
            with self._lock:
                if self._clock() >= self._next_check:
                    self._refresh()
        if self._view is None:
            raise StoreError(f"the prompt view {self.uri} could not be read: {self._failure}")
        return self._view

    def _refresh(self) -> None:
        try:
            self._load()
            self._failure = None
        except _Unreadable as exc:
            self._failure = str(exc)
            if self._view is None:
                log.error("prompt view %s unreadable and no earlier view to serve: %s", self.uri, exc)
            else:
                log.error("prompt view %s unreadable; serving the last good view: %s", self.uri, exc)
        good = self._view is not None
        self._next_check = self._clock() + (self.ttl_s if good else min(self.ttl_s, FAILED_RETRY_S))

    def _load(self) -> None:
        if self.uri is None:
            self._accept(PromptView(), None)
        elif self._bucket:
            self._load_s3()
        else:
            self._load_file(Path(self.uri))

    def _accept(self, view: PromptView, version: Any) -> None:
        self._view, self._version = view, version

    def _parse(self, raw: bytes, version: Any) -> None:
        if len(raw) > MAX_VIEW_BYTES:
            raise _Unreadable(f"the view is larger than {MAX_VIEW_BYTES} bytes")
        try:
            view = parse_view(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # PromptViewError is a ValueError
            raise _Unreadable(f"malformed view: {exc}") from None
        self._accept(view, version)

    def _load_file(self, path: Path) -> None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._accept(PromptView(), None)
            return
        except OSError as exc:
            raise _Unreadable(str(exc)) from None
        version = (stat.st_mtime_ns, stat.st_size)
        if self._view is not None and version == self._version:
            return
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            self._accept(PromptView(), None)
            return
        except OSError as exc:
            raise _Unreadable(str(exc)) from None
        self._parse(raw, version)

    def _load_s3(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client()
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": self._key}
        if self._view is not None and self._version is not None:
            kwargs["IfNoneMatch"] = self._version
        try:
            response = client.get_object(**kwargs)
            raw = response["Body"].read(MAX_VIEW_BYTES + 1)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 304 or error.get("Code") in ("304", "NotModified"):
                return
            if error.get("Code") in ("NoSuchKey", "404"):
                self._accept(PromptView(), None)
                return
            raise _Unreadable(f"{error.get('Code')}: {error.get('Message')}") from None
        except BotoCoreError as exc:
            raise _Unreadable(str(exc)) from None
        self._parse(raw, response.get("ETag"))

    def _client(self) -> S3Client:
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            config = Config(
                retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=1, read_timeout=2
            )
            self._s3 = boto3.client("s3", region_name=region, config=config)
        return self._s3


class _Unreadable(Exception):
    """The source could not be read or parsed this time."""
