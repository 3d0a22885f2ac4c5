"""Dataset digests and lineage tags: what a registered model version must say about where it came from.

Standard library only, so SageMaker's job launcher and the tests can use it without MLflow.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Tags on the training run and on the registered model version (the MLflow registry is searchable by them).
TAG_PREFIX = "aif.lineage."


class DatasetError(ValueError):
    """A dataset file is missing, empty or malformed; the message names the file and the row."""


@dataclass(frozen=True)
class Example:
    text: str
    label: str


@dataclass(frozen=True)
class DatasetFile:
    """One input file: its path, SHA-256 digest (of the bytes) and number of examples."""

    name: str  # the channel: "train", "validation"
    path: Path
    sha256: str
    rows: int


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_examples(path: str | os.PathLike[str]) -> list[Example]:
    """Examples from a ``.jsonl`` file (``{"text", "label"}`` per line) or a ``.csv`` with those columns.

    A directory (a SageMaker channel) must hold exactly one such file.
    """
    file = resolve_file(path)
    examples: list[Example] = []
    if file.suffix == ".jsonl":
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"{file}:{number}: not valid JSON: {exc}") from None
            examples.append(_example(row, f"{file}:{number}"))
    elif file.suffix == ".csv":
        with file.open(encoding="utf-8", newline="") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                examples.append(_example(row, f"{file}:{number}"))
    else:
        raise DatasetError(f"{file}: use a .jsonl or .csv file with 'text' and 'label'")
    if not examples:
        raise DatasetError(f"{file}: no examples")
    return examples


def resolve_file(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or the single ``.jsonl``/``.csv`` file in a directory."""
    file = Path(path)
    if file.is_dir():
        candidates = sorted(p for p in file.iterdir() if p.suffix in (".jsonl", ".csv"))
        if len(candidates) != 1:
            raise DatasetError(f"{file}: expected exactly one .jsonl or .csv file, found {len(candidates)}")
        file = candidates[0]
    if not file.is_file():
        raise DatasetError(f"{file}: no such file")
    return file


def _example(row: object, where: str) -> Example:
    if not isinstance(row, Mapping):
        raise DatasetError(f"{where}: expected an object with 'text' and 'label'")
    text, label = row.get("text"), row.get("label")
    if not isinstance(text, str) or not text.strip() or not isinstance(label, str) or not label.strip():
        raise DatasetError(f"{where}: 'text' and 'label' must be non-empty strings")
    return Example(text, label.strip())


def describe(name: str, path: str | os.PathLike[str]) -> tuple[DatasetFile, list[Example]]:
    file = resolve_file(path)
    examples = read_examples(file)
    return DatasetFile(name, file, sha256_file(file), len(examples)), examples


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str:
    """``$AIF_GIT_COMMIT`` (CI and the SageMaker launcher set it), else ``git rev-parse HEAD``, else
    ``unknown``."""
    if os.environ.get("AIF_GIT_COMMIT"):
        return os.environ["AIF_GIT_COMMIT"]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def lineage_tags(datasets: list[DatasetFile], *, code_digest: str, commit: str) -> dict[str, str]:
    """The tags that tie a model version to its data, code and where it was trained."""
    tags = {
        f"{TAG_PREFIX}git_commit": commit,
        f"{TAG_PREFIX}code_sha256": code_digest,
        # SageMaker sets TRAINING_JOB_NAME inside a training job; locally the host is recorded.
        f"{TAG_PREFIX}training_job": os.environ.get("TRAINING_JOB_NAME", "local"),
    }
    for dataset in datasets:
        tags[f"{TAG_PREFIX}dataset.{dataset.name}.sha256"] = dataset.sha256
        tags[f"{TAG_PREFIX}dataset.{dataset.name}.rows"] = str(dataset.rows)
        tags[f"{TAG_PREFIX}dataset.{dataset.name}.file"] = dataset.path.name
    return tags
