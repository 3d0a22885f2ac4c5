"""The prompt registry: immutable prompt versions, aliases and deployment records, kept in MLflow.

MLflow is the system of record (a local SQLite store, or the SageMaker managed MLflow server in the
cloud). Each prompt file becomes an MLflow prompt; each distinct content hash one version of it. An
alias (``staging``, ``production``) points at a version; every alias move is also an MLflow run in the
experiment ``ai-factory/prompt-deployments`` (the deployment record), and ``production`` only accepts a
version with a passing eval run in ``ai-factory/evals``.

MLflow is imported lazily (it takes about a second): building a ``PromptRegistry`` costs nothing until
the first call.
"""

from __future__ import annotations

import builtins
import getpass
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ai_factory.prompts.spec import NAME_PATTERN, PromptSpec
from ai_factory.state import default_tracking_uri
from aif_gateway.prompt_template import extract_variables

EVAL_EXPERIMENT = "ai-factory/evals"
DEPLOYMENT_EXPERIMENT = "ai-factory/prompt-deployments"
# Aliases that need a passing eval record for the exact version before they may point at it.
GATED_ALIASES = frozenset({"production"})
# Eval targets whose answers do not come from the real model (the local gateway's offline echo model):
# a pass there proves the suite runs, not that the prompt is good, so it unlocks a gated alias only when
# the caller says so explicitly (demos and tests).
OFFLINE_EVAL_TARGETS = frozenset({"local"})
ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")

# Prompt-version tags (the version's metadata next to MLflow's own template tags).
TAG_HASH = "aif.content_hash"
TAG_MODEL = "aif.model"
TAG_PARAMETERS = "aif.parameters"
TAG_EVAL_SUITE = "aif.eval_suite"
TAG_OWNER = "aif.owner"
TAG_DESCRIPTION = "aif.description"
TAG_SOURCE = "aif.source"

# Run tags shared with the eval harness and written on deployment records.
TAG_PROMPT_NAME = "aif.prompt_name"
TAG_PROMPT_VERSION = "aif.prompt_version"
TAG_EVAL_PASSED = "aif.eval_passed"
TAG_EVAL_TARGET = "aif.target"
TAG_ALIAS = "aif.alias"
TAG_FROM_VERSION = "aif.from_version"
TAG_TO_VERSION = "aif.to_version"
TAG_ACTION = "aif.action"
TAG_GIT_COMMIT = "aif.git_commit"
TAG_EVAL_RUN_ID = "aif.eval_run_id"
TAG_APPROVED_BY = "aif.approved_by"


class RegistryError(Exception):
    """Base class for prompt registry failures the CLI reports without a traceback."""


class PromptNotFound(RegistryError, LookupError):
    """No such prompt, version or alias."""


class PromotionRefused(RegistryError):
    """An alias move was refused; the message says what is missing and how to get it."""


class RollbackRefused(PromotionRefused):
    """A rollback was refused (no earlier version, or the alias was moved outside ai-factory)."""


@dataclass(frozen=True)
class PromptVersionInfo:
    """One registered, immutable prompt version."""

    name: str
    version: int
    content_hash: str
    model: str
    parameters: dict[str, Any]
    messages: list[dict[str, str]]
    variables: tuple[str, ...]
    owner: str
    description: str
    eval_suite: str
    source: str
    created_at: datetime
    aliases: tuple[str, ...] = ()

    def view_entry(self) -> dict[str, Any]:
        """This version as the gateway's runtime view stores it (schema 1)."""
        return {
            "hash": self.content_hash,
            "model": self.model,
            "parameters": dict(self.parameters),
            "messages": [dict(m) for m in self.messages],
            "variables": list(self.variables),
        }


@dataclass(frozen=True)
class PromptSummary:
    """A prompt in ``list()``: its latest version and where its aliases point."""

    name: str
    latest_version: int
    model: str
    owner: str
    aliases: dict[str, int]


@dataclass(frozen=True)
class EvalRecord:
    """An eval run (``ai-factory/evals``) for one prompt version."""

    run_id: str
    name: str
    version: int
    passed: bool
    when: datetime
    target: str = ""  # gateway, bedrock or local (see OFFLINE_EVAL_TARGETS)

    @property
    def offline(self) -> bool:
        return self.target in OFFLINE_EVAL_TARGETS


@dataclass(frozen=True)
class DeploymentRecord:
    """One alias move: an MLflow run in ``ai-factory/prompt-deployments``; its start time is ``when``."""

    run_id: str
    name: str
    alias: str
    from_version: int | None
    to_version: int
    action: str  # "promote" | "rollback"
    git_commit: str
    eval_run_id: str | None
    eval_passed: bool | None
    approved_by: str
    when: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``when`` as ISO-8601 UTC)."""
        return {
            "run_id": self.run_id,
            "name": self.name,
            "alias": self.alias,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "action": self.action,
            "git_commit": self.git_commit,
            "eval_run_id": self.eval_run_id,
            "eval_passed": self.eval_passed,
            "approved_by": self.approved_by,
            "when": _iso(self.when),
        }


def current_git_commit(cwd: str | os.PathLike[str] | None = None) -> str:
    """``git rev-parse HEAD`` in ``cwd`` (default: the working directory), or ``"unknown"``."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else "unknown"


def current_user() -> str:
    """Who is approving: ``$USER``, else the login name, else ``"unknown"``."""
    user = os.environ.get("USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "unknown"


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _from_ms(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC)


def _display_path(path: Path) -> str:
    """Paths in tags are relative to the working directory (the repo root in CI) when possible."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def check_alias(alias: str) -> None:
    """Aliases are lowercase words (``staging``, ``production``, ``canary-eu``)."""
    if not ALIAS_PATTERN.match(alias) or alias == "latest" or re.fullmatch(r"v\d+", alias):
        raise ValueError(
            f"alias {alias!r} must be lowercase letters, digits and '-', start with a letter, "
            "and not be 'latest' or 'v<number>' (reserved by MLflow)"
        )


class PromptRegistry:
    """Prompt versions, aliases and deployment records in an MLflow tracking store.

    ``tracking_uri`` defaults to ``default_tracking_uri()``. Any MLflow URI works, including a SageMaker
    managed MLflow tracking-server ARN (with the ``sagemaker-mlflow`` plugin installed).
    """

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self._mlflow_client: Any = None
        self._experiment_ids: dict[str, str] = {}

    # --- MLflow plumbing --------------------------------------------------------------------------

    @property
    def _client(self) -> Any:
        if self._mlflow_client is None:
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            from mlflow import MlflowClient

            self._mlflow_client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._mlflow_client

    @staticmethod
    def _is_not_found(exc: Exception) -> bool:
        code = getattr(exc, "error_code", "")
        return code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower()

    def _experiment_id(self, name: str, *, create: bool) -> str | None:
        if name in self._experiment_ids:
            return self._experiment_ids[name]
        experiment = self._client.get_experiment_by_name(name)
        if experiment is None:
            if not create:
                return None
            experiment_id = self._client.create_experiment(name, tags={"aif.kind": name.rsplit("/", 1)[-1]})
        else:
            experiment_id = experiment.experiment_id
        self._experiment_ids[name] = experiment_id
        return str(experiment_id)

    def _search_runs(self, experiment: str, filter_string: str) -> list[Any]:
        experiment_id = self._experiment_id(experiment, create=False)
        if experiment_id is None:
            return []
        runs: list[Any] = []
        token = None
        while True:
            page = self._client.search_runs(
                [experiment_id],
                filter_string=filter_string,
                order_by=["attributes.start_time DESC"],
                max_results=1000,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _version_info(self, pv: Any, aliases: tuple[str, ...] = ()) -> PromptVersionInfo:
        tags = pv.tags
        template = pv.template
        messages = template if isinstance(template, list) else [{"role": "user", "content": template}]
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        return PromptVersionInfo(
            name=pv.name,
            version=int(pv.version),
            content_hash=tags.get(TAG_HASH, ""),
            model=tags.get(TAG_MODEL, ""),
            parameters=json.loads(tags.get(TAG_PARAMETERS) or "{}"),
            messages=messages,
            variables=extract_variables(messages),
            owner=tags.get(TAG_OWNER, ""),
            description=tags.get(TAG_DESCRIPTION, ""),
            eval_suite=tags.get(TAG_EVAL_SUITE, ""),
            source=tags.get(TAG_SOURCE, ""),
            created_at=_from_ms(pv.creation_timestamp),
            aliases=tuple(sorted(aliases)),
        )

    def _raw_versions(self, name: str) -> list[Any]:
        """All versions of a prompt, lowest first (empty if the prompt does not exist)."""
        found: list[Any] = []
        token = None
        try:
            while True:
                page = self._client.search_prompt_versions(name, max_results=1000, page_token=token)
                found.extend(page)
                token = getattr(page, "token", None)
                if not token:
                    break
        except Exception as exc:
            if self._is_not_found(exc):
                return []
            raise
        return sorted(found, key=lambda pv: int(pv.version))

    # --- versions ---------------------------------------------------------------------------------

    def register(self, spec: PromptSpec) -> tuple[int, bool]:
        """Register a prompt file's content: ``(version, created)``.

        Idempotent on the content hash: content already registered under this name returns that
        version with ``created=False`` (even if a later version exists), so re-running CI is a no-op.
        """
        for pv in self._raw_versions(spec.name):
            if pv.tags.get(TAG_HASH) == spec.content_hash:
                return int(pv.version), False
        tags = {
            TAG_HASH: spec.content_hash,
            TAG_MODEL: spec.model,
            TAG_PARAMETERS: json.dumps(spec.parameters, sort_keys=True),
            TAG_EVAL_SUITE: _display_path(spec.eval_suite),
            TAG_OWNER: spec.owner,
            TAG_DESCRIPTION: spec.description,
            TAG_SOURCE: _display_path(spec.source),
        }
        # MLflow's own model config, so the MLflow UI shows the model and its settings too.
        model_config: dict[str, Any] = {"model_name": spec.model}
        model_config.update({k: v for k, v in spec.parameters.items() if k != "stop"})
        if "stop" in spec.parameters:
            model_config["stop_sequences"] = list(spec.parameters["stop"])
        pv = self._client.register_prompt(
            name=spec.name,
            template=[dict(m) for m in spec.messages],
            commit_message=spec.description or f"registered from {_display_path(spec.source)}",
            tags=tags,
            model_config=model_config,
        )
        return int(pv.version), True

    def versions(self, name: str) -> list[PromptVersionInfo]:
        """Every version of ``name``, lowest first, with the aliases pointing at each."""
        raw = self._existing_versions(name)
        by_version: dict[int, list[str]] = {}
        for alias, version in self._aliases_of(name, raw).items():
            by_version.setdefault(version, []).append(alias)
        return [self._version_info(pv, tuple(by_version.get(int(pv.version), ()))) for pv in raw]

    def aliases(self, name: str) -> dict[str, int]:
        """``{alias: version}`` for ``name`` (empty if none; ``PromptNotFound`` if no such prompt)."""
        return self._aliases_of(name, self._existing_versions(name))

    def _existing_versions(self, name: str) -> list[Any]:
        raw = self._raw_versions(name)
        if not raw:
            raise PromptNotFound(f"prompt {name!r} is not registered (run: ai-factory prompts register PATH)")
        return raw

    def _aliases_of(self, name: str, raw: list[Any]) -> dict[str, int]:
        # search_prompt_versions does not return aliases; get_prompt_version does.
        out: dict[str, int] = {}
        for pv in raw:
            full = self._client.get_prompt_version(name, int(pv.version))
            for alias in getattr(full, "aliases", None) or ():
                out[alias] = int(pv.version)
        return dict(sorted(out.items()))

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> PromptVersionInfo:
        """One version by number or alias (neither: the latest version)."""
        if version is not None and alias is not None:
            raise ValueError("give a version or an alias, not both")
        versions = self.versions(name)
        if alias is not None:
            matching = [v for v in versions if alias in v.aliases]
            if not matching:
                raise PromptNotFound(f"prompt {name!r} has no alias {alias!r}")
            return matching[0]
        if version is None:
            return versions[-1]
        for info in versions:
            if info.version == version:
                return info
        known = ", ".join(str(v.version) for v in versions)
        raise PromptNotFound(f"prompt {name!r} has no version {version} (versions: {known})")

    # --- eval records -----------------------------------------------------------------------------

    def eval_runs(self, name: str, version: int) -> list[EvalRecord]:
        """Eval runs recorded for exactly this prompt version, newest first."""
        runs = self._search_runs(
            EVAL_EXPERIMENT,
            f"tags.`{TAG_PROMPT_NAME}` = '{name}' AND tags.`{TAG_PROMPT_VERSION}` = '{int(version)}'",
        )
        return [self._eval_record(run) for run in runs]

    @staticmethod
    def _eval_record(run: Any) -> EvalRecord:
        tags = run.data.tags
        return EvalRecord(
            run_id=run.info.run_id,
            name=tags.get(TAG_PROMPT_NAME, ""),
            version=_int_or_none(tags.get(TAG_PROMPT_VERSION)) or 0,
            passed=tags.get(TAG_EVAL_PASSED, "").lower() == "true",
            when=_from_ms(run.info.start_time),
            target=tags.get(TAG_EVAL_TARGET, ""),
        )

    def _named_eval(self, run_id: str, name: str, version: int) -> EvalRecord:
        try:
            run = self._client.get_run(run_id)
        except Exception as exc:
            if self._is_not_found(exc):
                raise PromotionRefused(f"eval run {run_id!r} does not exist in {self.tracking_uri}") from exc
            raise
        record = self._eval_record(run)
        if record.name != name or record.version != version:
            got = f"{record.name or '?'} version {record.version or '?'}"
            raise PromotionRefused(
                f"eval run {run_id} is for prompt {got}, not {name} version {version} "
                f"(its tags {TAG_PROMPT_NAME} and {TAG_PROMPT_VERSION} must match)"
            )
        return record

    # --- alias moves ------------------------------------------------------------------------------

    def promote(
        self,
        name: str,
        version: int,
        alias: str,
        approved_by: str | None = None,
        git_commit: str | None = None,
        eval_run_id: str | None = None,
        allow_offline_eval: bool = False,
    ) -> DeploymentRecord | None:
        """Point ``alias`` at ``version`` and write the deployment record (``None``: already there).

        ``production`` needs a passing eval run for exactly this version: the named ``eval_run_id``, or
        else the newest passing run found by its tags. Runs against the offline local gateway count only
        with ``allow_offline_eval``. Refusals raise ``PromotionRefused``.
        """
        check_alias(alias)
        target = self.get(name, version=version)
        current = self.aliases(name).get(alias)
        if current == target.version:
            return None
        if eval_run_id:
            evaluation: EvalRecord | None = self._named_eval(eval_run_id, name, target.version)
            assert evaluation is not None
            if alias in GATED_ALIASES and not evaluation.passed:
                raise PromotionRefused(
                    f"eval run {eval_run_id} for {name} version {target.version} did not pass "
                    f"({TAG_EVAL_PASSED} is not 'true'): fix the prompt or the suite, re-run the eval, "
                    f"and promote the version that passes"
                )
            if alias in GATED_ALIASES and evaluation.offline and not allow_offline_eval:
                raise PromotionRefused(_offline_refusal(name, target.version, eval_run_id, alias))
        else:
            runs = self.eval_runs(name, target.version)
            passing = [r for r in runs if r.passed and (allow_offline_eval or not r.offline)]
            if alias in GATED_ALIASES and not passing and any(r.passed for r in runs):
                raise PromotionRefused(
                    _offline_refusal(name, target.version, next(r.run_id for r in runs if r.passed), alias)
                )
            evaluation = passing[0] if passing else (runs[0] if runs else None)
            if alias in GATED_ALIASES and not passing:
                seen = (
                    f"{len(runs)} eval run(s) found, none passed (newest: {runs[0].run_id})"
                    if runs
                    else "no eval run found"
                )
                suite = f" ({target.eval_suite})" if target.eval_suite else ""
                raise PromotionRefused(
                    f"{name} version {target.version} cannot take '{alias}' without a passing eval record: "
                    f"{seen} in experiment '{EVAL_EXPERIMENT}' with tags {TAG_PROMPT_NAME}={name}, "
                    f"{TAG_PROMPT_VERSION}={target.version}, {TAG_EVAL_PASSED}=true. Run the prompt's eval "
                    f"suite{suite} against version {target.version}, then promote again "
                    f"(optionally naming the run with --eval-run)"
                )
        return self._move(
            name, alias, current, target.version, "promote", approved_by, git_commit, evaluation
        )

    def rollback(
        self, name: str, alias: str, approved_by: str | None = None, git_commit: str | None = None
    ) -> DeploymentRecord:
        """Move ``alias`` back to where it pointed before its latest move (from the deployment records).

        The rollback is itself a deployment record (``action="rollback"``), so rolling back twice undoes
        the rollback. The eval gate is not re-applied: the earlier version already held the alias.
        """
        check_alias(alias)
        records = self.deployments(name, alias=alias)
        if not records:
            raise RollbackRefused(
                f"{name}@{alias} has no deployment records, so there is nothing to roll back to "
                f"(use: ai-factory prompts promote {name} --version N --to {alias})"
            )
        latest = records[0]
        current = self.aliases(name).get(alias)
        if current != latest.to_version:
            raise RollbackRefused(
                f"{name}@{alias} points at version {current}, but its latest deployment record "
                f"({latest.run_id}) set version {latest.to_version}: the alias was moved outside "
                f"ai-factory. Pick the version explicitly with: ai-factory prompts promote"
            )
        if latest.from_version is None:
            raise RollbackRefused(
                f"{name}@{alias}'s latest move ({latest.run_id}) was its first: there is no earlier "
                f"version to roll back to (use: ai-factory prompts promote {name} --version N --to {alias})"
            )
        target = self.get(name, version=latest.from_version)
        runs = self.eval_runs(name, target.version)
        passing = [r for r in runs if r.passed]
        evaluation = passing[0] if passing else (runs[0] if runs else None)
        record = self._move(
            name, alias, current, target.version, "rollback", approved_by, git_commit, evaluation
        )
        assert record is not None
        return record

    def _move(
        self,
        name: str,
        alias: str,
        from_version: int | None,
        to_version: int,
        action: str,
        approved_by: str | None,
        git_commit: str | None,
        evaluation: EvalRecord | None,
    ) -> DeploymentRecord:
        approved_by = approved_by or current_user()
        git_commit = git_commit or current_git_commit()
        experiment_id = self._experiment_id(DEPLOYMENT_EXPERIMENT, create=True)
        # Records are ordered by start time: keep it strictly increasing per prompt even when two
        # moves land in the same millisecond (rollback reads "the latest move").
        newest = self.deployments(name)
        start_ms = int(time.time() * 1000)
        if newest:
            start_ms = max(start_ms, int(newest[0].when.timestamp() * 1000) + 1)
        tags = {
            TAG_PROMPT_NAME: name,
            TAG_ALIAS: alias,
            TAG_FROM_VERSION: "" if from_version is None else str(from_version),
            TAG_TO_VERSION: str(to_version),
            TAG_ACTION: action,
            TAG_GIT_COMMIT: git_commit,
            TAG_EVAL_RUN_ID: evaluation.run_id if evaluation else "",
            TAG_EVAL_PASSED: "" if evaluation is None else str(evaluation.passed).lower(),
            TAG_APPROVED_BY: approved_by,
            "mlflow.user": approved_by,
            "mlflow.runName": f"{action} {name}@{alias} -> v{to_version}",
        }
        # The run stays RUNNING until the alias has moved: only FINISHED runs count as records, so
        # a failed move never leaves a record of something that did not happen.
        run = self._client.create_run(experiment_id, start_time=start_ms, tags=tags)
        try:
            self._client.set_prompt_alias(name, alias, to_version)
        except BaseException:
            self._client.set_terminated(run.info.run_id, status="FAILED")
            raise
        self._client.set_terminated(run.info.run_id, status="FINISHED", end_time=int(time.time() * 1000))
        return self._deployment_record(self._client.get_run(run.info.run_id))

    # --- deployment records -----------------------------------------------------------------------

    @staticmethod
    def _deployment_record(run: Any) -> DeploymentRecord:
        tags = run.data.tags
        passed = tags.get(TAG_EVAL_PASSED, "")
        return DeploymentRecord(
            run_id=run.info.run_id,
            name=tags.get(TAG_PROMPT_NAME, ""),
            alias=tags.get(TAG_ALIAS, ""),
            from_version=_int_or_none(tags.get(TAG_FROM_VERSION)),
            to_version=_int_or_none(tags.get(TAG_TO_VERSION)) or 0,
            action=tags.get(TAG_ACTION, ""),
            git_commit=tags.get(TAG_GIT_COMMIT, ""),
            eval_run_id=tags.get(TAG_EVAL_RUN_ID) or None,
            eval_passed=None if not passed else passed == "true",
            approved_by=tags.get(TAG_APPROVED_BY, ""),
            when=_from_ms(run.info.start_time),
        )

    def deployments(self, name: str, alias: str | None = None) -> list[DeploymentRecord]:
        """Completed alias moves of ``name`` (optionally one alias), newest first."""
        if not NAME_PATTERN.match(name):
            raise PromptNotFound(f"{name!r} is not a valid prompt name")
        filter_string = f"tags.`{TAG_PROMPT_NAME}` = '{name}' AND attributes.status = 'FINISHED'"
        if alias is not None:
            check_alias(alias)
            filter_string += f" AND tags.`{TAG_ALIAS}` = '{alias}'"
        return [
            self._deployment_record(run) for run in self._search_runs(DEPLOYMENT_EXPERIMENT, filter_string)
        ]

    def list(self) -> builtins.list[PromptSummary]:
        """Every registered prompt, by name."""
        return [
            PromptSummary(
                name,
                versions[-1].version,
                versions[-1].model,
                versions[-1].owner,
                dict(sorted((a, v.version) for v in versions for a in v.aliases)),
            )
            for name, versions in self.all_versions().items()
        ]

    def all_versions(self) -> dict[str, builtins.list[PromptVersionInfo]]:
        """``{name: versions()}`` for every registered prompt, by name (what the runtime view needs)."""
        names: set[str] = set()
        token = None
        while True:
            page = self._client.search_prompts(max_results=1000, page_token=token)
            names.update(p.name for p in page)
            token = getattr(page, "token", None)
            if not token:
                break
        return {name: self.versions(name) for name in sorted(names)}


def _offline_refusal(name: str, version: int, run_id: str, alias: str) -> str:
    return (
        f"{name} version {version} cannot take '{alias}' on eval run {run_id}: it ran against the offline "
        f"local gateway (echo model), which proves the suite runs, not that the prompt works on its model. "
        f"Run the suite with --target gateway (staging) or --target bedrock, or pass --allow-offline-eval "
        f"for a demo"
    )
