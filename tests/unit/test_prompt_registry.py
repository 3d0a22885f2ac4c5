"""Prompt registry over a real MLflow SQLite store: versions, aliases, the eval gate, rollback, the view.

One store per module (creating an MLflow database takes ~2 s); each test uses its own prompt names so
tests do not depend on each other's alias moves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import write_prompt
from moto import mock_aws

from ai_factory.prompts.registry import (
    DEPLOYMENT_EXPERIMENT,
    EVAL_EXPERIMENT,
    PromotionRefused,
    PromptNotFound,
    PromptRegistry,
    RollbackRefused,
)
from ai_factory.prompts.spec import PromptSpec, load_prompt_file
from ai_factory.prompts.view import build_view, find_prompt_files, publish_view, register_files

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PromptRegistry, Path]]:
    root = tmp_path_factory.mktemp("registry")
    yield PromptRegistry(f"sqlite:///{root / 'mlflow.db'}"), root


@pytest.fixture(scope="module")
def registry(store: tuple[PromptRegistry, Path]) -> PromptRegistry:
    return store[0]


@pytest.fixture
def files(store: tuple[PromptRegistry, Path], request: pytest.FixtureRequest) -> Path:
    folder = store[1] / request.node.name.replace("[", "-").replace("]", "")
    folder.mkdir()
    return folder


def spec_of(root: Path, name: str, content: str = "Summarize {{ticket}}", **extra: Any) -> PromptSpec:
    return load_prompt_file(write_prompt(root, name, content, **extra))


def record_eval(registry: PromptRegistry, name: str, version: int, passed: bool) -> str:
    """An eval run the way the eval harness (issue 4) records it, made with MLflow directly."""
    client = registry._client
    experiment = client.get_experiment_by_name(EVAL_EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EVAL_EXPERIMENT)
    run = client.create_run(
        experiment_id,
        tags={
            "aif.prompt_name": name,
            "aif.prompt_version": str(version),
            "aif.eval_passed": "true" if passed else "false",
        },
    )
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def register_versions(registry: PromptRegistry, root: Path, name: str, count: int) -> list[int]:
    return [registry.register(spec_of(root, name, f"Version {i}: {{{{ticket}}}}"))[0] for i in range(count)]


# --- versions ----------------------------------------------------------------------------------------


def test_same_content_same_version_changed_content_new_version(registry: PromptRegistry, files: Path) -> None:
    first = spec_of(files, "versioned")
    assert registry.register(first) == (1, True)
    assert registry.register(first) == (1, False)
    # Owner, description and eval suite are not content.
    assert registry.register(spec_of(files, "versioned", owner="other@example.com", description="x")) == (
        1,
        False,
    )
    assert registry.register(spec_of(files, "versioned", "Summarize briefly {{ticket}}")) == (2, True)
    assert registry.register(spec_of(files, "versioned", parameters={"temperature": 0.9})) == (3, True)
    # Going back to the first content finds the first version again.
    assert registry.register(first) == (1, False)
    assert [v.version for v in registry.versions("versioned")] == [1, 2, 3]


def test_version_metadata_round_trips(registry: PromptRegistry, files: Path) -> None:
    spec = spec_of(
        files, "metadata", "Hi {{name}}, about {{ topic }}", parameters={"max_tokens": 50, "stop": "END"}
    )
    version, _ = registry.register(spec)
    info = registry.get("metadata", version=version)
    assert info.content_hash == spec.content_hash
    assert info.model == "chat-fast"
    assert info.parameters == {"max_tokens": 50, "stop": ["END"]}
    assert info.messages == spec.messages
    assert info.variables == ("name", "topic")
    assert info.owner == "support@example.com"
    assert info.eval_suite.endswith("evals/metadata.yaml")
    assert info.source.endswith("prompts/metadata.yaml")
    assert abs((datetime.now(UTC) - info.created_at).total_seconds()) < 60
    # MLflow's own view of the version: a chat template plus the model config.
    mlflow_version = registry._client.get_prompt_version("metadata", version)
    assert mlflow_version.template == spec.messages
    assert mlflow_version.model_config["model_name"] == "chat-fast"
    assert registry.get("metadata").version == version  # latest


def test_unknown_prompt_version_and_alias(registry: PromptRegistry, files: Path) -> None:
    registry.register(spec_of(files, "lookup"))
    with pytest.raises(PromptNotFound, match="'nope' is not registered"):
        registry.versions("nope")
    with pytest.raises(PromptNotFound, match="no version 7"):
        registry.get("lookup", version=7)
    with pytest.raises(PromptNotFound, match="no alias 'staging'"):
        registry.get("lookup", alias="staging")


# --- alias moves and deployment records ----------------------------------------------------------------


def test_staging_needs_no_eval_and_writes_a_full_deployment_record(
    registry: PromptRegistry, files: Path
) -> None:
    register_versions(registry, files, "staged", 2)
    before = datetime.now(UTC)
    record = registry.promote("staged", 1, "staging", approved_by="ada", git_commit="abc123")
    assert record is not None
    assert (record.name, record.alias, record.from_version, record.to_version) == (
        "staged",
        "staging",
        None,
        1,
    )
    assert (record.action, record.git_commit, record.approved_by) == ("promote", "abc123", "ada")
    assert (record.eval_run_id, record.eval_passed) == (None, None)
    assert before.timestamp() - 1 <= record.when.timestamp() <= datetime.now(UTC).timestamp() + 1
    assert registry.aliases("staged") == {"staging": 1}
    assert registry.get("staged", alias="staging").version == 1

    second = registry.promote("staged", 2, "staging", approved_by="bob", git_commit="def456")
    assert second is not None and (second.from_version, second.to_version) == (1, 2)
    assert registry.promote("staged", 2, "staging", approved_by="bob") is None  # already there: no record
    assert [r.run_id for r in registry.deployments("staged")] == [second.run_id, record.run_id]

    # The record is a plain MLflow run with the documented tags, in the documented experiment.
    run = registry._client.get_run(second.run_id)
    experiment = registry._client.get_experiment(run.info.experiment_id)
    assert experiment.name == DEPLOYMENT_EXPERIMENT
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert {k: tags[k] for k in tags if k.startswith("aif.")} == {
        "aif.prompt_name": "staged",
        "aif.alias": "staging",
        "aif.from_version": "1",
        "aif.to_version": "2",
        "aif.action": "promote",
        "aif.git_commit": "def456",
        "aif.eval_run_id": "",
        "aif.eval_passed": "",
        "aif.approved_by": "bob",
    }


def test_defaults_for_approver_and_git_commit(
    registry: PromptRegistry, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_versions(registry, files, "defaults", 1)
    monkeypatch.setenv("USER", "grace")
    monkeypatch.chdir(files)  # not a git repository
    record = registry.promote("defaults", 1, "staging")
    assert record is not None and (record.approved_by, record.git_commit) == ("grace", "unknown")


def test_production_refused_without_any_eval_record(registry: PromptRegistry, files: Path) -> None:
    register_versions(registry, files, "ungated", 1)
    with pytest.raises(PromotionRefused) as info:
        registry.promote("ungated", 1, "production", approved_by="ada")
    message = str(info.value)
    assert "no eval run found" in message
    assert "aif.prompt_name=ungated, aif.prompt_version=1, aif.eval_passed=true" in message
    assert "evals/ungated.yaml" in message  # says which suite to run
    assert registry.aliases("ungated") == {}
    assert registry.deployments("ungated") == []


def test_production_refused_when_only_failing_or_other_version_evals_exist(
    registry: PromptRegistry, files: Path
) -> None:
    register_versions(registry, files, "failing", 2)
    failed = record_eval(registry, "failing", 2, passed=False)
    record_eval(registry, "failing", 1, passed=True)  # a different version does not count
    with pytest.raises(
        PromotionRefused, match=f"1 eval run\\(s\\) found, none passed \\(newest: {failed}\\)"
    ):
        registry.promote("failing", 2, "production", approved_by="ada")
    with pytest.raises(PromotionRefused, match="did not pass"):
        registry.promote("failing", 2, "production", approved_by="ada", eval_run_id=failed)
    assert registry.aliases("failing") == {}


def test_production_accepted_with_a_passing_eval_record(registry: PromptRegistry, files: Path) -> None:
    register_versions(registry, files, "gated", 1)
    record_eval(registry, "gated", 1, passed=False)
    passed = record_eval(registry, "gated", 1, passed=True)
    record = registry.promote("gated", 1, "production", approved_by="ada", git_commit="c0ffee")
    assert record is not None
    assert (record.eval_run_id, record.eval_passed, record.from_version, record.to_version) == (
        passed,
        True,
        None,
        1,
    )
    assert registry.aliases("gated") == {"production": 1}


def test_named_eval_run_must_match_name_and_version(registry: PromptRegistry, files: Path) -> None:
    register_versions(registry, files, "named", 2)
    other_version = record_eval(registry, "named", 1, passed=True)
    with pytest.raises(PromotionRefused, match="is for prompt named version 1, not named version 2"):
        registry.promote("named", 2, "production", approved_by="ada", eval_run_id=other_version)
    with pytest.raises(PromotionRefused, match="does not exist"):
        registry.promote("named", 2, "production", approved_by="ada", eval_run_id="0" * 32)
    good = record_eval(registry, "named", 2, passed=True)
    record = registry.promote("named", 2, "production", approved_by="ada", eval_run_id=good)
    assert record is not None and record.eval_run_id == good


def test_invalid_alias_is_rejected(registry: PromptRegistry, files: Path) -> None:
    register_versions(registry, files, "aliases", 1)
    for alias in ("latest", "v2", "Prod", "a b"):
        with pytest.raises(ValueError, match="alias"):
            registry.promote("aliases", 1, alias, approved_by="ada")


# --- rollback ---------------------------------------------------------------------------------------


def test_rollback_moves_the_alias_back_and_records_it(registry: PromptRegistry, files: Path) -> None:
    register_versions(registry, files, "rolled", 3)
    evals = {v: record_eval(registry, "rolled", v, passed=True) for v in (1, 2, 3)}
    for version in (1, 2, 3):
        registry.promote("rolled", version, "production", approved_by="ada", git_commit="c1")
    registry.promote("rolled", 3, "staging", approved_by="ada", git_commit="c1")  # another alias: ignored

    back = registry.rollback("rolled", "production", approved_by="oncall", git_commit="c2")
    assert (back.action, back.alias, back.from_version, back.to_version) == ("rollback", "production", 3, 2)
    assert (back.approved_by, back.git_commit, back.eval_run_id, back.eval_passed) == (
        "oncall",
        "c2",
        evals[2],
        True,
    )
    assert registry.aliases("rolled") == {"production": 2, "staging": 3}
    history = registry.deployments("rolled", alias="production")
    assert [(r.action, r.from_version, r.to_version) for r in history] == [
        ("rollback", 3, 2),
        ("promote", 2, 3),
        ("promote", 1, 2),
        ("promote", None, 1),
    ]
    assert [r.when for r in history] == sorted((r.when for r in history), reverse=True)
    # Rolling back a rollback undoes it.
    again = registry.rollback("rolled", "production", approved_by="oncall")
    assert (again.from_version, again.to_version) == (2, 3)


def test_rollback_refusals(registry: PromptRegistry, files: Path) -> None:
    register_versions(registry, files, "norollback", 2)
    with pytest.raises(RollbackRefused, match="no deployment records"):
        registry.rollback("norollback", "staging", approved_by="ada")
    registry.promote("norollback", 1, "staging", approved_by="ada", git_commit="c")
    with pytest.raises(RollbackRefused, match="was its first"):
        registry.rollback("norollback", "staging", approved_by="ada")
    registry._client.set_prompt_alias("norollback", "staging", 2)  # moved outside ai-factory
    with pytest.raises(RollbackRefused, match="moved outside ai-factory"):
        registry.rollback("norollback", "staging", approved_by="ada")


def test_failed_alias_move_leaves_no_record(
    registry: PromptRegistry, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_versions(registry, files, "broken", 1)

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("store unavailable")

    monkeypatch.setattr(registry._client, "set_prompt_alias", boom)
    with pytest.raises(RuntimeError):
        registry.promote("broken", 1, "staging", approved_by="ada", git_commit="c")
    monkeypatch.undo()
    assert registry.deployments("broken") == []
    assert registry.aliases("broken") == {}


# --- runtime view and bulk registration ----------------------------------------------------------------


def test_view_has_every_version_and_alias(registry: PromptRegistry, files: Path) -> None:
    register_versions(registry, files, "viewed", 2)
    registry.promote("viewed", 2, "staging", approved_by="ada", git_commit="c")
    view = build_view(registry, now=datetime(2026, 11, 25, 12, 0, 0, 123, tzinfo=UTC))
    assert view["schema"] == 1
    assert view["generated_at"] == "2026-11-25T12:00:00Z"
    entry = view["prompts"]["viewed"]
    assert entry["aliases"] == {"staging": "2"}
    assert set(entry["versions"]) == {"1", "2"}
    v2 = registry.get("viewed", version=2)
    assert entry["versions"]["2"] == {
        "hash": v2.content_hash,
        "model": "chat-fast",
        "parameters": {"temperature": 0.2},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Version 1: {{ticket}}"},
        ],
        "variables": ["ticket"],
    }
    # The contract with the gateway runtime: its parser accepts what the registry publishes.
    from aif_gateway.prompt_view import parse_view

    parsed = parse_view(json.loads(json.dumps(view)))
    assert parsed.prompts["viewed"].versions["2"].hash == v2.content_hash


def test_publish_to_a_file_is_atomic_and_complete(registry: PromptRegistry, files: Path) -> None:
    register_versions(registry, files, "published", 1)
    view = build_view(registry)
    target = files / "state" / "prompts.json"
    assert publish_view(view, str(target)) == str(target)
    assert json.loads(target.read_text()) == view
    assert [p.name for p in target.parent.iterdir()] == ["prompts.json"]  # no temp file left behind


def test_publish_to_s3_uses_kms() -> None:
    view = {"schema": 1, "generated_at": "2026-11-25T12:00:00Z", "prompts": {}}
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        s3.create_bucket(Bucket="views")
        assert publish_view(view, "s3://views/gateway/prompts.json", kms_key_id=key_id, s3_client=s3)
        obj = s3.get_object(Bucket="views", Key="gateway/prompts.json")
        assert json.loads(obj["Body"].read()) == view
        assert obj["ServerSideEncryption"] == "aws:kms"
        assert key_id in obj["SSEKMSKeyId"]
        assert obj["ContentType"] == "application/json"
        # No key given: no SSE headers, so the bucket's default KMS key applies (not S3's aws/s3 key).
        bucket_key = kms.create_key()["KeyMetadata"]["Arn"]
        s3.put_bucket_encryption(
            Bucket="views",
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": bucket_key,
                        }
                    }
                ]
            },
        )
        publish_view(view, "s3://views/prompts.json", s3_client=s3)
        head = s3.head_object(Bucket="views", Key="prompts.json")
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", bucket_key)
    with pytest.raises(ValueError, match="not an S3 object URI"):
        publish_view(view, "s3://bucket-only", s3_client=object())


def test_register_files_reports_per_file(registry: PromptRegistry, files: Path) -> None:
    write_prompt(files / "feature-a", "bulk-a")
    write_prompt(files / "feature-b", "bulk-b")
    (files / "feature-b" / "evals" / "not-a-prompt.yaml").write_text("x: 1\n")
    found = find_prompt_files([files])
    assert sorted(p.name for p in found) == ["bulk-a.yaml", "bulk-b.yaml"]
    results = register_files([files], registry)
    assert sorted((r.name, r.status, r.version) for r in results) == [
        ("bulk-a", "created", 1),
        ("bulk-b", "created", 1),
    ]
    again = register_files([files], registry)
    assert {r.status for r in again} == {"unchanged"}


def test_register_files_registers_nothing_when_one_is_invalid(registry: PromptRegistry, files: Path) -> None:
    write_prompt(files / "ok", "atomic-ok")
    bad = write_prompt(files / "bad", "atomic-bad", model="nope")
    dup_one = write_prompt(files / "dup1", "atomic-dup")
    dup_two = write_prompt(files / "dup2", "atomic-dup", "Other {{x}}")
    from ai_factory.catalog.model_catalog import ModelCatalog

    results = {r.path.resolve(): r for r in register_files([files], registry, ModelCatalog.load())}
    assert results[bad.resolve()].status == "invalid"
    assert "model: 'nope' is not a route" in (results[bad.resolve()].error or "")
    assert results[dup_one.resolve()].status == "invalid"
    assert "also declared by" in (results[dup_two.resolve()].error or "")
    assert {r.status for r in results.values()} == {"invalid", "skipped"}
    with pytest.raises(PromptNotFound):
        registry.versions("atomic-ok")
