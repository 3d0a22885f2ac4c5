"""Which eval suites a change touches: ``ai-factory eval changed --base REF`` (the pipeline's eval step).

A suite is affected when, in ``git diff --name-only REF...HEAD`` (what the branch changed since it
left REF), any of these changed: the suite file itself; its prompt file (``<feature>/prompts/<name>.yaml``
by the suite's ``prompt.name``, or any prompt file whose ``eval_suite`` points at the suite); or the
model catalog (every suite: a route may now reach another model).

A suite with ``retrieval`` (a RAG suite) is also affected by what its answers are grounded in: the
feature's own Python files (``features/<team>/*.py``: the ``RagFeature`` declaration, its chunking and
document fields); its ``retrieval.documents`` folder; the retrieval and chunking code (``RAG_PATHS``);
and its ``retrieval.dataset`` (``domain.name``): a changed ``stacks/`` or ``features/`` Python file whose
diff, with 15 lines of context, names the dataset (``name="<name>"`` or ``"<domain>.<name>"``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

CATALOG_PATHS = ("ai_factory/data/models.yaml",)
# What every RAG suite's results depend on: the knowledge base and its chunking, the documents the sync
# writes (and their metadata), retrieval in the gateway (filter, grounding) and the offline retriever.
RAG_PATHS = (
    "ai_factory/constructs/rag_feature.py",
    "ai_factory/constructs/knowledge_sync.py",
    "lambdas/connector/aif_connector/knowledge_sync.py",
    "lambdas/gateway/aif_gateway/retrieval.py",
    "lambdas/gateway/aif_gateway/grounding.py",
    "lambdas/gateway/aif_gateway/offline_retriever.py",
)
DATASET_DECLARATION_DIRS = ("stacks", "features")
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
        direct = suite in changed or suite in pointed_suites or by_name
        if direct or _retrieval_changed(root, suite, changed, base):
            affected.add(suite)
    return sorted(str(s) for s in affected)


def _retrieval_changed(root: Path, suite: PurePosixPath, changed: set[PurePosixPath], base: str) -> bool:
    """Whether a RAG suite's knowledge base, chunking, documents or dataset changed (module docstring)."""
    data = _yaml(root / suite)
    retrieval = data.get("retrieval") if isinstance(data, dict) else None
    if not isinstance(retrieval, dict):
        return False
    if any(PurePosixPath(p) in changed for p in RAG_PATHS):
        return True
    feature = suite.parent.parent  # features/<team>/evals/<suite>.yaml -> features/<team>
    if any(c.parent == feature and c.suffix == ".py" for c in changed):
        return True
    documents = retrieval.get("documents")
    if isinstance(documents, str):
        folder = ((root / suite).parent / documents).resolve()
        if folder.is_relative_to(root.resolve()):
            rel = PurePosixPath(folder.relative_to(root.resolve()).as_posix())
            if any(c == rel or rel in c.parents for c in changed):
                return True
    dataset = retrieval.get("dataset")
    if isinstance(dataset, str) and "." in dataset:
        domain, name = dataset.split(".", 1)
        needles = (f'name="{name}"', f"name='{name}'", f'"{dataset}"', f"'{dataset}'")
        for c in changed:
            if c.suffix == ".py" and c.parts and c.parts[0] in DATASET_DECLARATION_DIRS:
                diff = "\n".join(_git(root, "diff", "-U15", f"{base}...HEAD", "--", str(c)))
                if any(n in diff for n in needles) and domain in diff:
                    return True
    return False
