"""The gateway's runtime view of the prompt registry, and bulk registration of prompt files.

The gateway never imports MLflow: it reads one small JSON document (schema 1) with every version's
content and where every alias points, published to a local file (``ai-factory serve``) or to an S3
object in the gateway's KMS-encrypted bucket (the Lambda). See docs/prompts.md for why.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ai_factory.prompts.registry import PromptRegistry
from ai_factory.prompts.spec import PromptFileError, PromptSpec, check_model, load_prompt_file
from ai_factory.state import default_state_dir
from aif_gateway import contract

VIEW_SCHEMA = 1
VIEW_URI_ENV = contract.PROMPT_VIEW_URI_ENV
VIEW_KMS_KEY_ENV = "AIF_PROMPT_VIEW_KMS_KEY_ID"
VIEW_FILE_NAME = "prompts.json"
# Folders never searched for prompt files.
SKIP_DIRS = frozenset({".git", ".venv", "node_modules", "cdk.out", "__pycache__", ".mypy_cache"})


def default_view_uri() -> str:
    """``$AIF_PROMPT_VIEW_URI`` if set, else ``prompts.json`` in the local state folder."""
    return os.environ.get(VIEW_URI_ENV) or str(default_state_dir() / VIEW_FILE_NAME)


def build_view(registry: PromptRegistry, now: datetime | None = None) -> dict[str, Any]:
    """Every version and alias of every registered prompt, as the gateway reads it (schema 1)."""
    generated = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    prompts: dict[str, Any] = {}
    for name, versions in registry.all_versions().items():
        prompts[name] = {
            "versions": {str(v.version): v.view_entry() for v in versions},
            "aliases": dict(sorted((a, str(v.version)) for v in versions for a in v.aliases)),
        }
    return {
        "schema": VIEW_SCHEMA,
        "generated_at": generated.isoformat().replace("+00:00", "Z"),
        "prompts": prompts,
    }


def view_bytes(view: dict[str, Any]) -> bytes:
    """The published bytes: stable key order so identical registries publish identical objects."""
    return (json.dumps(view, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"{uri!r} is not an S3 object URI (s3://bucket/key)")
    return bucket, key


def publish_view(
    view: dict[str, Any], uri: str, *, kms_key_id: str | None = None, s3_client: Any = None
) -> str:
    """Write the view to ``uri`` (a local path or ``s3://bucket/key``); returns where it went.

    Local files are replaced atomically (temp file + ``os.replace``) so ``ai-factory serve`` never reads
    half a file. S3 objects are encrypted by the bucket's default KMS key, or with SSE-KMS under
    ``kms_key_id`` (default ``$AIF_PROMPT_VIEW_KMS_KEY_ID``) when one is named.
    """
    body = view_bytes(view)
    if uri.startswith("s3://"):
        bucket, key = _split_s3(uri)
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        # Without SSE headers S3 applies the bucket's default encryption (the gateway's KMS key, set by
        # LlmGateway). Naming aws:kms without a key would pick the AWS-managed aws/s3 key instead.
        extra: dict[str, Any] = {}
        key_id = kms_key_id or os.environ.get(VIEW_KMS_KEY_ENV)
        if key_id:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id}
        s3_client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **extra)
        return uri
    target = Path(uri).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(target)


# --- bulk registration ------------------------------------------------------------------------------


def find_prompt_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, plus every ``*.yaml``/``*.yml`` under a ``prompts/`` folder inside given folders."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                rel = candidate.relative_to(path)
                if candidate.suffix not in (".yaml", ".yml") or not candidate.is_file():
                    continue
                if any(part in SKIP_DIRS for part in rel.parts):
                    continue
                folders = (path.resolve().name, *rel.parts[:-1])
                if "prompts" in folders:
                    found.append(candidate)
        else:
            found.append(path)
    unique: dict[Path, Path] = {}
    for file in found:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


@dataclass(frozen=True)
class RegisterResult:
    """What happened to one prompt file: ``status`` is created, unchanged, invalid or skipped."""

    path: Path
    status: str
    name: str | None = None
    version: int | None = None
    content_hash: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": str(self.path),
            "status": self.status,
            "name": self.name,
            "version": self.version,
            "content_hash": self.content_hash,
            "error": self.error,
        }


def register_files(
    paths: Sequence[str | os.PathLike[str]], registry: PromptRegistry, catalog: Any = None
) -> list[RegisterResult]:
    """Load, validate and register prompt files; one result per file.

    All files are validated first (and against ``catalog``, a ``ModelCatalog``, when given). If any is
    invalid, or two files claim the same name, nothing is registered: the others are ``skipped``, so a
    fix-and-rerun never leaves half a set registered.
    """
    files = find_prompt_files(paths)
    loaded: list[tuple[Path, PromptSpec | None, str | None]] = []
    for file in files:
        try:
            parsed = load_prompt_file(file)
            if catalog is not None:
                check_model(parsed, catalog)
            loaded.append((file, parsed, None))
        except PromptFileError as exc:
            loaded.append((file, None, str(exc)))
    owners: dict[str, list[Path]] = {}
    for file, spec, _ in loaded:
        if spec is not None:
            owners.setdefault(spec.name, []).append(file)
    checked: list[tuple[Path, PromptSpec | None, str | None]] = []
    for file, spec, error in loaded:
        if spec is not None and len(owners[spec.name]) > 1:
            others = ", ".join(str(f) for f in owners[spec.name] if f != file)
            checked.append((file, None, f"{file}: name: {spec.name!r} is also declared by {others}"))
        else:
            checked.append((file, spec, error))
    if any(error for _, _, error in checked):
        return [
            RegisterResult(file, "invalid", error=error)
            if error
            else RegisterResult(file, "skipped", spec.name if spec else None, error="another file is invalid")
            for file, spec, error in checked
        ]
    results = []
    for file, valid, _ in checked:
        assert valid is not None
        version, created = registry.register(valid)
        results.append(
            RegisterResult(
                file, "created" if created else "unchanged", valid.name, version, valid.content_hash
            )
        )
    return results
