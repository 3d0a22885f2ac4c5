"""``ai-factory prompts``: output, exit codes (0 ok, 1 refused or not found, 2 bad input) and publishing."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_prompt

from ai_factory.cli.main import main
from ai_factory.prompts.registry import EVAL_EXPERIMENT, PromptRegistry

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


class Cli:
    """Runs ``ai-factory`` in-process against one MLflow store."""

    def __init__(self, uri: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.uri = uri
        self.capsys = capsys

    def __call__(self, *argv: str, uri: bool = True) -> tuple[int, str, str]:
        self.capsys.readouterr()
        out = io.StringIO()
        args = [*argv, "--tracking-uri", self.uri] if uri else list(argv)
        code = main(args, out=out)
        return code, out.getvalue(), self.capsys.readouterr().err

    def json(self, *argv: str) -> Any:
        code, out, err = self(*argv, "--format", "json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("cli")
    features = root / "features"
    write_prompt(features / "support", "cli-summarize", "Summarize {{ticket}}")
    write_prompt(features / "knowledge", "cli-answer", "Answer {{question}} from {{context}}")
    yield f"sqlite:///{root / 'mlflow.db'}", root


@pytest.fixture
def cli(workspace: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(workspace[0], capsys)


@pytest.fixture(scope="module")
def registered(workspace: tuple[str, Path]) -> tuple[str, Path]:
    """Both example prompts registered once, with a second version of cli-summarize."""
    uri, root = workspace
    assert (
        main(["prompts", "register", str(root / "features"), "--tracking-uri", uri], out=io.StringIO()) == 0
    )
    v2 = write_prompt(
        root / "v2", "cli-summarize", "Summarize briefly {{ticket}}", parameters={"temperature": 0.5}
    )
    assert main(["prompts", "register", str(v2), "--tracking-uri", uri], out=io.StringIO()) == 0
    return uri, root


def record_eval(uri: str, name: str, version: int, passed: bool) -> str:
    client = PromptRegistry(uri)._client
    experiment = client.get_experiment_by_name(EVAL_EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EVAL_EXPERIMENT)
    tags = {
        "aif.prompt_name": name,
        "aif.prompt_version": str(version),
        "aif.eval_passed": str(passed).lower(),
    }
    run = client.create_run(experiment_id, tags=tags)
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def test_register_folder_then_again_is_unchanged(cli: Cli, workspace: tuple[str, Path]) -> None:
    root = workspace[1] / "fresh"
    write_prompt(root, "cli-fresh", "Hello {{name}}")
    code, out, err = cli("prompts", "register", str(root))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["FILE", "STATUS", "NAME", "VERSION", "HASH", "/", "ERROR"]
    assert lines[1].split()[1:4] == ["created", "cli-fresh", "1"]
    assert lines[0].index("STATUS") == lines[1].index("created")  # aligned columns
    again = cli.json("prompts", "register", str(root))
    assert [(r["status"], r["name"], r["version"]) for r in again] == [("unchanged", "cli-fresh", 1)]
    assert again[0]["content_hash"].startswith("sha256:")


def test_register_invalid_file_exits_2_and_registers_nothing(cli: Cli, workspace: tuple[str, Path]) -> None:
    root = workspace[1] / "invalid"
    write_prompt(root, "cli-good", "Hi {{x}}")
    bad = write_prompt(root, "cli-bad", "Hi {{x}}", parameters={"temperature": 7})
    code, out, err = cli("prompts", "register", str(root))
    assert code == 2
    assert f"{bad.resolve()}: parameters.temperature: must be a number from 0 to 2" in err
    assert "invalid" in out and "skipped" in out
    code, _, err = cli("prompts", "show", "cli-good")
    assert code == 1 and "'cli-good' is not registered" in err


def test_register_rejects_unknown_model_and_missing_paths(cli: Cli, workspace: tuple[str, Path]) -> None:
    bad = write_prompt(workspace[1] / "model", "cli-model", "Hi", model="gpt-5")
    code, _, err = cli("prompts", "register", str(bad))
    assert code == 2 and "model: 'gpt-5' is not a route in the catalog" in err
    code, _, err = cli("prompts", "register", str(workspace[1] / "missing"))
    assert code == 2 and "does not exist" in err
    empty = workspace[1] / "empty"
    empty.mkdir()
    code, _, err = cli("prompts", "register", str(empty))
    assert code == 2 and "no prompt files found" in err


def test_list_table_and_json(cli: Cli, registered: tuple[str, Path]) -> None:
    code, out, _ = cli("prompts", "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "LATEST", "MODEL", "ALIASES", "OWNER"]
    row = next(r for r in rows if r.startswith("cli-summarize"))
    assert row.split()[:3] == ["cli-summarize", "2", "chat-fast"]
    data = {p["name"]: p for p in cli.json("prompts", "list")}
    assert data["cli-answer"] == {
        "name": "cli-answer",
        "latest_version": 1,
        "model": "chat-fast",
        "owner": "support@example.com",
        "aliases": {},
    }


def test_list_uses_mlflow_tracking_uri_env(
    cli: Cli, registered: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered[0])
    code, out, _ = cli("prompts", "list", uri=False)
    assert code == 0 and "cli-answer" in out


def test_show_version_and_json(cli: Cli, registered: tuple[str, Path]) -> None:
    code, out, _ = cli("prompts", "show", "cli-answer", "--version", "1")
    assert code == 0
    assert out.splitlines()[0] == "cli-answer"
    assert "  model:       chat-fast" in out
    assert "  variables:   context, question" in out
    assert "  parameters:  temperature=0.2" in out
    assert "  [1] user\n      Answer {{question}} from {{context}}" in out
    data = cli.json("prompts", "show", "cli-summarize")
    assert data["version"] == 2 and data["parameters"] == {"temperature": 0.5}
    assert data["messages"][1]["content"] == "Summarize briefly {{ticket}}"


def test_show_errors(cli: Cli, registered: tuple[str, Path]) -> None:
    assert cli("prompts", "show", "cli-answer", "--version", "9")[0] == 1
    code, _, err = cli("prompts", "show", "Bad_Name")
    assert code == 2 and "NAME" in err
    assert cli("prompts", "show", "cli-answer", "--version", "1", "--alias", "production")[0] == 2
    code, _, err = cli("prompts", "show", "cli-answer", "--alias", "nowhere")
    assert code == 1 and "no alias 'nowhere'" in err


def test_diff_shows_content_and_parameter_changes(cli: Cli, registered: tuple[str, Path]) -> None:
    code, out, _ = cli("prompts", "diff", "cli-summarize", "1", "2")
    assert code == 0
    assert "parameters.temperature: 0.2 -> 0.5" in out
    assert "--- cli-summarize v1" in out and "+++ cli-summarize v2" in out
    assert "-      Summarize {{ticket}}" in out
    assert "+      Summarize briefly {{ticket}}" in out
    code, out, _ = cli("prompts", "diff", "cli-summarize", "2", "2")
    assert code == 0 and "identical content" in out


def test_promote_gate_history_rollback_and_publish(
    cli: Cli, registered: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, root = registered
    view = root / "view" / "prompts.json"
    code, out, err = cli(
        "prompts", "promote", "cli-summarize", "--version", "1", "--to", "staging", "--approved-by", "ada",
        "--git-commit", "abc123", "--publish-to", str(view),
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[0] == "promoted cli-summarize@staging: (unset) -> v1"
    assert "  approved by:  ada" in out and "  git commit:   abc123" in out
    assert json.loads(view.read_text())["prompts"]["cli-summarize"]["aliases"] == {"staging": "1"}

    # production without a passing eval: refused (exit 1) with the reason and how to fix it.
    code, out, err = cli("prompts", "promote", "cli-summarize", "--version", "2", "--to", "production")
    assert code == 1 and out == ""
    assert "without a passing eval record" in err and "Run the prompt's eval suite" in err

    passed = record_eval(uri, "cli-summarize", 2, passed=True)
    monkeypatch.setenv("AIF_PROMPT_VIEW_URI", str(view))  # publishes without --publish-to
    record = cli.json(
        "prompts", "promote", "cli-summarize", "--version", "2", "--to", "production", "--eval-run", passed,
        "--approved-by", "ada", "--git-commit", "abc123",
    )  # fmt: skip
    assert record["changed"] is True and record["published"] == str(view)
    assert {
        k: record["record"][k] for k in ("alias", "from_version", "to_version", "eval_run_id", "eval_passed")
    } == {
        "alias": "production",
        "from_version": None,
        "to_version": 2,
        "eval_run_id": passed,
        "eval_passed": True,
    }
    assert json.loads(view.read_text())["prompts"]["cli-summarize"]["aliases"] == {
        "production": "2",
        "staging": "1",
    }

    code, out, _ = cli("prompts", "promote", "cli-summarize", "--version", "2", "--to", "production")
    assert code == 0 and "already points at version 2" in out

    cli("prompts", "promote", "cli-summarize", "--version", "2", "--to", "staging", "--approved-by", "bob")
    code, out, err = cli(
        "prompts", "rollback", "cli-summarize", "--alias", "staging", "--approved-by", "oncall"
    )
    assert code == 0, err
    assert out.splitlines()[0] == "rolled back cli-summarize@staging: v2 -> v1"
    assert json.loads(view.read_text())["prompts"]["cli-summarize"]["aliases"] == {
        "production": "2",
        "staging": "1",
    }

    code, _, err = cli("prompts", "rollback", "cli-summarize", "--alias", "production")
    assert code == 1 and "was its first" in err

    code, out, _ = cli("prompts", "history", "cli-summarize")
    header, *rows = out.splitlines()
    assert header.split() == ["WHEN", "ACTION", "ALIAS", "FROM", "TO", "APPROVED", "BY", "EVAL", "COMMIT"]
    assert [r.split()[1:5] for r in rows] == [
        ["rollback", "staging", "v2", "v1"],
        ["promote", "staging", "v1", "v2"],
        ["promote", "production", "-", "v2"],
        ["promote", "staging", "-", "v1"],
    ]
    assert f"{passed[:12]} pass" in rows[2]
    records = cli.json("prompts", "history", "cli-summarize", "--alias", "production")
    assert [(r["action"], r["to_version"], r["approved_by"], r["git_commit"]) for r in records] == [
        ("promote", 2, "ada", "abc123")
    ]


def test_promote_and_rollback_bad_input(cli: Cli, registered: tuple[str, Path]) -> None:
    code, _, err = cli("prompts", "promote", "cli-answer", "--version", "1", "--to", "latest")
    assert code == 2 and "--to" in err and "reserved" in err
    assert cli("prompts", "promote", "cli-answer", "--version", "0", "--to", "staging")[0] == 2
    assert cli("prompts", "promote", "cli-answer", "--to", "staging")[0] == 2  # --version required
    assert cli("prompts", "promote", "cli-answer", "--version", "5", "--to", "staging")[0] == 1
    assert cli("prompts", "rollback", "cli-answer", "--alias", "Prod")[0] == 2
    code, _, err = cli("prompts", "history", "no-such-prompt")
    assert code == 1 and "not registered" in err


def test_publish_defaults_to_ai_factory_home(
    cli: Cli, registered: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIF_PROMPT_VIEW_URI", raising=False)
    monkeypatch.setenv("AI_FACTORY_HOME", str(tmp_path))
    code, out, _ = cli("prompts", "publish")
    assert code == 0
    view = json.loads((tmp_path / "prompts.json").read_text())
    assert view["schema"] == 1 and {"cli-summarize", "cli-answer"} <= set(view["prompts"])
    assert out.startswith("published ") and str(tmp_path / "prompts.json") in out
    code, _, err = cli("prompts", "publish", "--to", "s3://bucket-only")
    assert code == 2 and "--to" in err
