"""Which eval suites a change touches: ``ai-factory eval changed --base REF`` (the pipeline's eval step).

A suite is affected when, in ``git diff --name-only REF...HEAD`` (what the branch changed since it
left REF), any of these changed: the suite file itself; its prompt file (``<feature>/prompts/<name>.yaml``
by the suite's ``prompt.name``, or any prompt file whose ``eval_suite`` points at the suite); or the
model catalog (every suite: a route may now reach another model).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

CATALOG_PATHS = ("ai_factory/data/models.yaml",)
SUITE_PATTERNS = ("*/evals/*.yaml", "*/evals/*.yml")


class GitError(Exception):
    """git failed (not a repository, unknown REF): the message is git's."""


def _git(repo: Path, *args: str) -> list[str]:
    try:
        result = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from exc
    if result.returncode != 0:
        raise GitError(result.stderr.strip() or f"git {' '.join(args)} failed")
    return [line for line in result.stdout.splitlines() if line.strip()]


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None  # an unreadable file is the suite loader's or prompt loader's to report


def _prompt_name(suite: Path) -> str | None:
    data = _yaml(suite)
    prompt = data.get("prompt") if isinstance(data, dict) else None
    if isinstance(prompt, dict) and isinstance(prompt.get("name"), str):
        return str(prompt["name"])
    return prompt if isinstance(prompt, str) else None


def _is_prompt_file(rel: PurePosixPath) -> bool:
    return rel.suffix in (".yaml", ".yml") and len(rel.parts) >= 2 and rel.parts[-2] == "prompts"


def changed_suites(
    base: str,
    repo: str | os.PathLike[str] = ".",
    *,
    catalog_paths: tuple[str, ...] = CATALOG_PATHS,
) -> list[str]:
    """Suite files (paths relative to the repository root, sorted) affected since ``base``."""
    root = Path(_git(Path(repo), "rev-parse", "--show-toplevel")[0])
    changed = {PurePosixPath(p) for p in _git(root, "diff", "--name-only", f"{base}...HEAD", "--")}
    suites = [PurePosixPath(p) for p in _git(root, "ls-files", "--", *SUITE_PATTERNS)]
    if any(PurePosixPath(c) in changed for c in catalog_paths):
        return sorted(str(s) for s in suites)
    # Prompt files that changed (or were deleted), by prompt name and by the suite they name.
    changed_names: set[str] = set()
    pointed_suites: set[PurePosixPath] = set()
    for rel in filter(_is_prompt_file, changed):
        path = root / rel
        data = _yaml(path) if path.is_file() else None
        data = data if isinstance(data, dict) else {}
        changed_names.add(str(data.get("name") or rel.stem))
        eval_suite = data.get("eval_suite")
        if isinstance(eval_suite, str):
            target = (path.parent / eval_suite).resolve()
            if target.is_relative_to(root.resolve()):
                pointed_suites.add(PurePosixPath(target.relative_to(root.resolve()).as_posix()))
    affected = set()
    for suite in suites:
        by_name = bool(changed_names) and _prompt_name(root / suite) in changed_names
        if suite in changed or suite in pointed_suites or by_name:
            affected.add(suite)
    return sorted(str(s) for s in affected)
