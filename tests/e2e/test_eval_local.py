"""``ai-factory eval`` through the CLI: the example suites offline, a gateway target over HTTP, exit
codes, --resume, and ``eval changed`` in a throwaway git repository."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from ai_factory.cli.main import main

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SUITES = (
    "features/support/evals/summarize-ticket.yaml",
    "features/knowledge/evals/answer-question.yaml",
    "features/knowledge/evals/grounded-answers.yaml",  # retrieval assertions on the offline retriever
)

INLINE_SUITE = """\
suite: inline
gate: {min_pass_rate: 1.0, repeats: 2}
model: echo
messages: [{role: user, content: "Say {{thing}}"}]
cases:
  - id: hello
    vars: {thing: hello}
    assert:
      - {type: equals, value: "echo: Say hello"}
      - {type: similarity, value: "echo say hello", threshold: 0.9}
      - {type: similarity, method: embedding, model: echo-embed, value: "echo: Say hello", threshold: 0.99}
  - id: world
    vars: {thing: world}
    assert: [{type: icontains, value: WORLD}]
"""


def cli(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.chdir(cwd or Path.cwd()):
        code = main(list(args), out=out)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private AI_FACTORY_HOME (the default MLflow store lives there)."""
    monkeypatch.setenv("AI_FACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "home"


def test_summarize_ticket_suite_passes_on_the_local_target(tmp_path: Path, home: Path) -> None:
    out_dir = tmp_path / "out"
    code, out, err = cli("eval", EXAMPLE_SUITES[0], "--target", "local", "--out", str(out_dir), cwd=REPO)
    assert code == 0, out + err
    assert "summarize-ticket (summarize-ticket vunresolved): PASSED" in out
    assert "MLflow run" in out and (home / "mlflow.db").is_file()
    for name in ("runs.jsonl", "cases.csv", "junit.xml", "report.html", "verdict.json"):
        assert (out_dir / name).is_file(), name
    junit = ET.parse(out_dir / "junit.xml").getroot()
    assert len(junit.findall(".//testcase")) >= 3 and not junit.findall(".//failure")
    verdict = json.loads((out_dir / "verdict.json").read_text())
    assert "summarize-ticket" in json.dumps(verdict)


def test_every_example_suite_passes_offline(tmp_path: Path) -> None:
    code, out, err = cli(
        "eval", *EXAMPLE_SUITES, "--out", str(tmp_path), "--no-mlflow", "--concurrency", "4", cwd=REPO
    )
    assert code == 0, out + err
    assert out.count("PASSED") == 3
    assert (tmp_path / "summarize-ticket" / "verdict.json").is_file()
    assert (tmp_path / "answer-question" / "verdict.json").is_file()
    assert (tmp_path / "grounded-answers" / "verdict.json").is_file()


RAG_SUITE = """\
suite: rag-offline
model: chat-smart
messages: [{{role: user, content: "{{{{question}}}}"}}]
retrieval: {{knowledge_base: internal-qa, top_k: 2, documents: {documents}}}
cases:
  - id: invented
    vars: {{question: "How many weeks of parental leave are there?"}}
    relevant: [parental-leave]
    offline_answer: "Up to 16 weeks of paid parental leave [1]. Employees also get a company car."
    assert: [{{type: groundedness, threshold: 0.8}}]
  - id: polite
    vars: {{question: "How long is parental leave?"}}
    relevant: [parental-leave]
    offline_answer: "Up to 16 weeks of paid parental leave [1]."
    assert: [{{type: llm-judge, value: "The answer is polite.", threshold: 0.5}}]
"""


def test_groundedness_runs_offline_with_the_offline_judge(tmp_path: Path) -> None:
    # The shipped RAG suite's groundedness assertions are scored offline, from the retrieved passages.
    suite = "features/knowledge/evals/grounded-answers.yaml"
    code, out, err = cli("eval", suite, "--out", str(tmp_path / "ok"), "--no-mlflow", cwd=REPO)
    assert code == 0, out + err
    runs = [json.loads(line) for line in (tmp_path / "ok" / "runs.jsonl").read_text().splitlines()[1:]]
    grounded = [r for run in runs for r in run["results"] if r["type"] == "groundedness"]
    assert len(grounded) == len(runs) == 5
    assert all(r["passed"] and "claims supported by the sources" in r["reason"] for r in grounded)
    # An invented claim fails it; a generic rubric is refused with the reason, never scored.
    rag = tmp_path / "rag.yaml"
    rag.write_text(RAG_SUITE.format(documents=REPO / "features/knowledge/documents"))
    code, out, err = cli("eval", str(rag), "--out", str(tmp_path / "bad"), "--no-mlflow", cwd=REPO)
    assert code == 1 and "rag-offline: FAILED: 0/2 cases passed" in out, out + err
    runs = [json.loads(line) for line in (tmp_path / "bad" / "runs.jsonl").read_text().splitlines()[1:]]
    reasons = {run["case_id"]: run["results"][0]["reason"] for run in runs}
    assert "1/2 claims supported" in reasons["invented"]
    assert "'Employees also get a company car' (Employees, company, car)" in reasons["invented"]
    assert reasons["polite"].startswith("the offline judge scores only groundedness")


def test_gateway_target_over_http(
    tmp_path: Path, local_gateway: Any, make_key: Any, monkeypatch: Any
) -> None:
    suite = tmp_path / "inline.yaml"
    suite.write_text(INLINE_SUITE)
    monkeypatch.setenv("EVAL_KEY", make_key())
    code, out, err = cli(
        "eval", str(suite), "--target", "gateway", "--gateway-url", local_gateway.base_url,
        "--api-key-env", "EVAL_KEY", "--out", str(tmp_path / "o"), "--no-mlflow",
    )  # fmt: skip
    assert code == 0, out + err
    assert "inline: PASSED: 2/2 cases passed" in out and "4 runs made" in out
    runs = [json.loads(line) for line in (tmp_path / "o" / "runs.jsonl").read_text().splitlines()[1:]]
    assert {r["output"]["model_served"] for r in runs} == {"echo"}
    assert all(r["output"]["request_id"] for r in runs)


def test_gateway_target_needs_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = tmp_path / "inline.yaml"
    suite.write_text(INLINE_SUITE)
    monkeypatch.delenv("AIF_API_KEY", raising=False)
    code, _, err = cli("eval", str(suite), "--target", "gateway", "--gateway-url", "http://127.0.0.1:1/v1")
    assert code == 2 and "AIF_API_KEY is not set" in err


def test_a_failing_gate_exits_1(tmp_path: Path) -> None:
    suite = tmp_path / "inline.yaml"
    suite.write_text(INLINE_SUITE.replace("value: WORLD", "value: planet"))
    code, out, _ = cli("eval", str(suite), "--out", str(tmp_path / "o"), "--no-mlflow")
    assert code == 1
    assert "inline: FAILED: 1/2 cases passed" in out
    junit = ET.parse(tmp_path / "o" / "junit.xml").getroot()
    assert len(junit.findall(".//failure")) == 1


def test_a_malformed_suite_exits_2_before_any_call(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(INLINE_SUITE)
    bad = tmp_path / "bad.yaml"
    bad.write_text(INLINE_SUITE.replace("type: icontains", "type: sounds-like"))
    code, _out, err = cli("eval", str(good), str(bad), "--out", str(tmp_path / "o"), "--no-mlflow")
    assert code == 2
    assert f"{bad}:" in err and "sounds-like" in err
    assert not (tmp_path / "o").exists()  # nothing ran, not even the good suite


def test_resume_of_a_changed_suite_exits_2(tmp_path: Path) -> None:
    suite = tmp_path / "inline.yaml"
    suite.write_text(INLINE_SUITE)
    assert cli("eval", str(suite), "--out", str(tmp_path / "o"), "--no-mlflow")[0] == 0
    code, out, _ = cli("eval", str(suite), "--out", str(tmp_path / "o"), "--no-mlflow", "--resume")
    assert code == 0 and "0 runs made, 4 resumed" in out
    suite.write_text(INLINE_SUITE.replace("repeats: 2", "repeats: 3"))
    code, _, err = cli("eval", str(suite), "--out", str(tmp_path / "o"), "--no-mlflow", "--resume")
    assert code == 2 and "suite_hash" in err


# --- eval changed ---------------------------------------------------------------------------------

PROMPT = """\
name: {name}
owner: t@example.com
model: echo
eval_suite: ../evals/{suite}.yaml
template: "Say {{{{thing}}}}"
"""


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for feature, name in (("alpha", "a-prompt"), ("beta", "b-prompt"), ("gamma", "c-prompt")):
        (root / "features" / feature / "prompts").mkdir(parents=True)
        (root / "features" / feature / "evals").mkdir(parents=True)
        suite = f"{feature}-suite"
        (root / "features" / feature / "prompts" / f"{name}.yaml").write_text(
            PROMPT.format(name=name, suite=suite)
        )
        (root / "features" / feature / "evals" / f"{suite}.yaml").write_text(
            f"suite: {suite}\nprompt: {{name: {name}, alias: staging}}\ncases: []\n"
        )
    (root / "ai_factory" / "data").mkdir(parents=True)
    (root / "ai_factory" / "data" / "models.yaml").write_text("models: []\n")
    (root / "README.md").write_text("x\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "base")
    git(root, "checkout", "-q", "-b", "change")
    return root


def changed(repo: Path) -> tuple[int, list[str]]:
    code, out, _err = cli("eval", "changed", "--base", "main", cwd=repo)
    return code, out.split()


def commit(repo: Path, path: str, text: str) -> None:
    (repo / path).write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "change")


def test_changed_lists_nothing_for_unrelated_changes(repo: Path) -> None:
    commit(repo, "README.md", "y\n")
    assert changed(repo) == (0, [])


def test_changed_lists_the_suite_of_a_changed_prompt_file(repo: Path) -> None:
    commit(
        repo,
        "features/beta/prompts/b-prompt.yaml",
        PROMPT.format(name="b-prompt", suite="beta-suite") + "#\n",
    )
    assert changed(repo) == (0, ["features/beta/evals/beta-suite.yaml"])


def test_changed_lists_a_changed_suite_file(repo: Path) -> None:
    commit(repo, "features/gamma/evals/gamma-suite.yaml", "suite: gamma-suite\nprompt: c-prompt\ncases: []\n")
    assert changed(repo) == (0, ["features/gamma/evals/gamma-suite.yaml"])


def test_changed_lists_every_suite_when_the_catalog_changed(repo: Path) -> None:
    commit(repo, "ai_factory/data/models.yaml", "models: [] # new\n")
    code, suites = changed(repo)
    assert code == 0 and len(suites) == 3


def test_changed_needs_a_known_base(repo: Path) -> None:
    code, _out, err = cli("eval", "changed", "--base", "no-such-ref", cwd=repo)
    assert code == 1 and "git" in err
    assert cli("eval", "changed", cwd=repo)[0] == 2
