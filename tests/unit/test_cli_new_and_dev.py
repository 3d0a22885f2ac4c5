"""``ai-factory new feature``, ``ai-factory dev`` and group commands without a subcommand."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from openai import OpenAI

from ai_factory.cli.main import main, with_default_subcommand
from ai_factory.local.dev_session import DevSessionError, start_dev_session

REPO = Path(__file__).resolve().parents[2]


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository root with the real team list and no teams' folders."""
    (tmp_path / "features").mkdir()
    shutil.copy(REPO / "features" / "__init__.py", tmp_path / "features" / "__init__.py")
    return tmp_path


def test_new_feature_writes_only_under_features_and_lists_the_team_once(repo: Path) -> None:
    code, out = run("new", "feature", "--team", "data-platform", "--name", "sql-helper", "--root", str(repo))
    assert code == 0, out
    team = repo / "features" / "data_platform"
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()) == [
        "features/__init__.py",
        "features/data_platform/__init__.py",
        "features/data_platform/evals/sql-helper.yaml",
        "features/data_platform/prompts/sql-helper.yaml",
        "features/data_platform/sql_helper.py",
        "features/data_platform/test_sql_helper.py",
    ]
    assert 'TEAM = "data-platform"' in (team / "__init__.py").read_text()
    code, _ = run("new", "feature", "--team", "data-platform", "--name", "sql-review", "--root", str(repo))
    assert code == 0
    init = (team / "__init__.py").read_text()
    assert "from . import sql_helper, sql_review" in init and "FEATURES = (sql_helper, sql_review)" in init
    assert (repo / "features" / "__init__.py").read_text().count('"features.data_platform"') == 1


def test_the_starter_suite_passes_offline(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("new", "feature", "--team", "legal", "--name", "clauses", "--root", str(repo))[0] == 0
    monkeypatch.chdir(repo)
    code, out = run("eval", "features/legal/evals/clauses.yaml", "--no-mlflow")
    assert code == 0, out
    assert "clauses (clauses vunresolved): PASSED: 2/2 cases passed" in out
    assert (repo / ".ai-factory" / "eval-out" / "verdict.json").is_file()  # in the ignored folder


def test_new_feature_refuses_bad_input_without_writing(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (repo / "features" / "__init__.py").read_text()
    assert run("new", "feature", "--team", "Legal", "--name", "x", "--root", str(repo))[0] == 2
    assert "--team: 'Legal' must be 1-63 lowercase letters" in capsys.readouterr().err
    assert (
        run("new", "feature", "--team", "legal", "--name", "x", "--model", "embed", "--root", str(repo))[0]
        == 2
    )
    assert "--model: 'embed' is not a chat route" in capsys.readouterr().err
    assert run("new", "feature", "--team", "legal", "--name", "x", "--root", str(repo))[0] == 0
    assert run("new", "feature", "--team", "legal", "--name", "x", "--root", str(repo))[0] == 2
    assert "features/legal/x.py already exists; nothing was written" in capsys.readouterr().err
    (repo / "features" / "support").mkdir()
    (repo / "features" / "support" / "__init__.py").write_text(
        'TEAM = "support"\n\n\ndef build(team):\n    pass\n'
    )
    assert run("new", "feature", "--team", "support", "--name", "y", "--root", str(repo))[0] == 2
    assert "has no `FEATURES = (...)` line" in capsys.readouterr().err
    assert not (repo / "features" / "support" / "y.py").exists()
    assert (repo / "features" / "__init__.py").read_text() != before  # only the successful run listed legal


def test_group_commands_without_a_subcommand_do_their_common_action() -> None:
    assert with_default_subcommand(["models"]) == ["models", "list"]
    assert with_default_subcommand(["models", "--catalog", "c.yaml"]) == [
        "models",
        "list",
        "--catalog",
        "c.yaml",
    ]
    assert with_default_subcommand(["models", "--help"]) == ["models", "--help"]
    assert with_default_subcommand(["models", "show", "echo"]) == ["models", "show", "echo"]
    assert with_default_subcommand(["new"]) == ["new", "--help"]
    assert run("new")[0] == 0
    code, out = run("models")
    assert code == 0 and "claude-haiku-4-5" in out and "chat-fast" in out
    code, out = run()
    assert code == 0 and "new" in out and "dev" in out  # the bare command prints its help


def test_dev_session_serves_the_teams_prompts_on_the_offline_model(repo: Path, tmp_path: Path) -> None:
    assert run("new", "feature", "--team", "legal", "--name", "clauses", "--root", str(repo))[0] == 0
    session = start_dev_session(repo / "features" / "legal", state_dir=tmp_path / "state", port=0)
    try:
        assert [(p.name, p.version, p.model) for p in session.prompts] == [("clauses", 1, "chat-fast")]
        snippet = session.snippet()
        assert session.base_url in snippet and session.api_key in snippet and '"alias": "staging"' in snippet
        client = OpenAI(base_url=session.base_url, api_key=session.api_key)
        prompt = {"name": "clauses", "alias": "staging", "variables": {"request": "Pay in 30 days."}}
        reply = client.chat.completions.create(model="chat-fast", messages=[], extra_body={"prompt": prompt})
        assert reply.choices[0].message.content == "echo: Pay in 30 days."
        schema = {"type": "object", "properties": {"days": {"type": "integer"}}, "required": ["days"]}
        reply = client.chat.completions.create(
            model="chat-fast",
            messages=[],
            extra_body={"prompt": prompt},
            response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
        )
        assert json.loads(reply.choices[0].message.content or "") == {"days": 0}
    finally:
        session.close()
    # Unchanged prompts keep their version on the next start; the view is in the state folder.
    again = start_dev_session(repo / "features" / "legal", state_dir=tmp_path / "state", port=0)
    again.close()
    assert again.prompts[0].version == 1
    assert "clauses" in json.loads((tmp_path / "state" / "prompts.json").read_text())["prompts"]


def test_dev_refuses_a_folder_without_prompts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "legal").mkdir()
    with pytest.raises(DevSessionError, match="no prompt files under"):
        start_dev_session(tmp_path / "legal", state_dir=tmp_path / "state", port=0)
    assert run("dev", str(tmp_path / "missing"), "--port", "0")[0] == 2
    assert "is not a folder" in capsys.readouterr().err
