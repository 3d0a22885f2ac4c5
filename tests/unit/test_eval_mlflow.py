"""Eval records in MLflow, end to end with the prompt registry's promotion gate (a temp SQLite store)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from ai_factory.cli.main import main
from ai_factory.evals.mlflow_log import eval_metrics, log_eval
from ai_factory.evals.model import AssertionResult, Case, CaseOutput, CaseRun, Gate, Suite
from ai_factory.evals.runner import EvalResult
from ai_factory.prompts.registry import PromotionRefused, PromptRegistry
from ai_factory.prompts.spec import load_prompt_file

PROMPT = """\
name: triage-ticket
description: test prompt
owner: team@example.com
model: chat-fast
eval_suite: ../evals/triage.yaml
messages:
  - role: system
    content: You triage tickets.
  - role: user
    content: "{verb} this ticket: {{{{ticket}}}}"
"""

SUITE = """\
suite: triage
prompt: {name: triage-ticket, alias: staging}
gate: {min_pass_rate: 1.0, repeats: 2}
defaults:
  assert:
    - {type: not-contains, value: "4111 1111", hard_fail: true}
cases:
  - id: refund
    vars: {ticket: "refund for order 123"}
    assert:
      - {type: icontains, value: triage this}
      - {type: regex, value: "order\\\\s+123"}
  - id: login
    vars: {ticket: "cannot log in"}
    assert:
      - {type: contains, value: log in}
"""


@pytest.fixture
def feature(tmp_path: Path) -> Path:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / "triage.yaml").write_text(SUITE)
    return tmp_path


def register(feature: Path, registry: PromptRegistry, verb: str) -> int:
    path = feature / "prompts" / "triage-ticket.yaml"
    path.write_text(PROMPT.format(verb=verb))
    version, _ = registry.register(load_prompt_file(path))
    return version


def eval_cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["eval", *args], out=out), out.getvalue()


def test_a_passing_local_eval_unlocks_production_and_a_failing_one_does_not(
    feature: Path, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = PromptRegistry(uri)
    v1 = register(feature, registry, "Triage")
    registry.promote("triage-ticket", v1, alias="staging", approved_by="t", git_commit="abc")
    v2 = register(feature, registry, "Ignore")  # echo will not say "triage this": the eval fails
    suite = str(feature / "evals" / "triage.yaml")

    with pytest.raises(PromotionRefused, match="no eval run found"):
        registry.promote("triage-ticket", v1, alias="production", approved_by="t", git_commit="abc")

    code, text = eval_cli(suite, "--target", "local", "--out", str(tmp_path / "o1"), "--tracking-uri", uri)
    assert code == 0, text
    assert f"triage (triage-ticket v{v1}): PASSED: 2/2 cases passed" in text
    # The pass came from the offline echo model: it unlocks production only when the caller says so.
    with pytest.raises(PromotionRefused, match="offline"):
        registry.promote("triage-ticket", v1, alias="production", approved_by="t", git_commit="abc")
    record = registry.promote(
        "triage-ticket", v1, alias="production", approved_by="t", git_commit="abc", allow_offline_eval=True
    )
    assert record is not None and record.eval_passed is True and record.eval_run_id

    code, text = eval_cli(
        suite, "--target", "local", "--prompt-version", str(v2), "--out", str(tmp_path / "o2"),
        "--tracking-uri", uri,
    )  # fmt: skip
    assert code == 1, text
    assert "FAILED" in text
    with pytest.raises(PromotionRefused, match="none passed"):
        registry.promote("triage-ticket", v2, alias="production", approved_by="t", git_commit="abc")

    # The record: tags the gate reads, params, metrics and artifacts.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(record.eval_run_id)
    tags = run.data.tags
    assert tags["aif.prompt_name"] == "triage-ticket"
    assert tags["aif.prompt_version"] == str(v1)
    assert (tags["aif.eval_passed"], tags["aif.suite"], tags["aif.target"]) == ("true", "triage", "local")
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["suite"], params["prompt_version"], params["model"]) == ("triage", str(v1), "chat-fast")
    assert (params["repeats"], params["concurrency"], params["target"]) == ("2", "8", "local")
    assert params["suite_hash"].startswith("sha256:")
    metrics = run.data.metrics
    assert metrics["pass_rate"] == 1.0 and metrics["cases_total"] == 2 and metrics["hard_failures"] == 0
    assert metrics["assert.icontains.pass_rate"] == 1.0 and metrics["assert.not-contains.pass_rate"] == 1.0
    assert metrics["latency_p95_ms"] >= metrics["latency_p50_ms"] > 0
    assert metrics["total_cost_usd"] == 0.0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert run.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())  # not ./mlruns
    assert artifacts == {"runs.jsonl", "cases.csv", "junit.xml", "report.html", "verdict.json"}


def test_a_prompt_missing_from_the_registry_is_evaluated_from_its_file_as_unresolved(
    feature: Path, tmp_path: Path
) -> None:
    (feature / "prompts" / "triage-ticket.yaml").write_text(PROMPT.format(verb="Triage"))
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    code, text = eval_cli(
        str(feature / "evals" / "triage.yaml"), "--out", str(tmp_path / "o"), "--tracking-uri", uri
    )
    assert code == 0, text
    assert "vunresolved" in text
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ai-factory/evals")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert [r.data.tags["aif.prompt_version"] for r in runs] == ["unresolved"]


def make_result(tmp_path: Path) -> EvalResult:
    from ai_factory.evals.model import CaseVerdict, SuiteVerdict

    suite = Suite("s", tmp_path / "s.yaml", "sha256:h", (Case("a", {}, ()), Case("b", {}, ())), Gate())
    runs = [
        CaseRun(
            "a",
            0,
            CaseOutput("x", latency_ms=10.0, cost_usd=0.5),
            [AssertionResult("similarity", True, 0.8, ""), AssertionResult("contains", True, None, "")],
        ),
        CaseRun(
            "b",
            0,
            CaseOutput("y", latency_ms=30.0, cost_usd=0.25),
            [AssertionResult("similarity", False, 0.2, ""), AssertionResult("contains", True, None, "")],
        ),
    ]
    verdict = SuiteVerdict(
        "s", [CaseVerdict("a", 1, 1, True, []), CaseVerdict("b", 1, 0, False, [])], 0.5, False, False, ["x"]
    )
    (tmp_path / "runs.jsonl").write_text("{}\n")
    return EvalResult(
        suite, verdict, runs, tmp_path, "local", "3", 4, 2, 0, 1.0, {"runs.jsonl": tmp_path / "runs.jsonl"}
    )


def test_eval_metrics(tmp_path: Path) -> None:
    m = eval_metrics(make_result(tmp_path))
    assert (m["pass_rate"], m["cases_passed"], m["cases_total"]) == (0.5, 1, 2)
    assert m["assert.similarity.pass_rate"] == 0.5
    assert m["assert.similarity.mean_score"] == pytest.approx(0.5)
    assert m["assert.contains.pass_rate"] == 1.0 and "assert.contains.mean_score" not in m
    assert (m["latency_p50_ms"], m["latency_p95_ms"], m["total_cost_usd"]) == (10.0, 30.0, 0.75)


class BrokenArtifactsClient:
    """An MLflow client whose artifact upload fails: the run must not read as a pass."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.status = ""

    def get_experiment_by_name(self, name: str) -> Any:
        return None

    def create_experiment(self, name: str, artifact_location: Any = None, tags: Any = None) -> str:
        return "1"

    def create_run(self, experiment_id: str, tags: dict[str, str]) -> Any:
        self.tags.update(tags)

        class Run:
            class info:
                run_id = "r1"

        return Run()

    def log_batch(self, run_id: str, metrics: Any, params: Any) -> None:
        pass

    def log_artifact(self, run_id: str, path: str) -> None:
        raise OSError("bucket unreachable")

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.tags[key] = value

    def set_terminated(self, run_id: str, status: str) -> None:
        self.status = status


def test_a_half_logged_run_is_failed_and_carries_no_eval_passed_tag(tmp_path: Path) -> None:
    client = BrokenArtifactsClient()
    with pytest.raises(OSError, match="bucket"):
        log_eval(make_result(tmp_path), client=client, git_commit="abc")
    assert client.status == "FAILED"
    assert "aif.eval_passed" not in client.tags
    assert client.tags["aif.suite"] == "s" and "aif.prompt_name" not in client.tags  # no prompt in suite
