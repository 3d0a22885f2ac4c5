"""docs/product-teams.md, executed: the newcomer's path from nothing to a tested feature, offline.

Every fenced block of the guide is run in order on a copy of the repository (a fresh git repo):

- ``console`` blocks: each ``$ command`` runs; the lines shown under it must appear in its output.
  ``ai-factory ...`` runs in this process (``ai_factory.cli.main.main``) in the copy;
  ``ai-factory dev`` starts the same session in-process on a free port (it would serve until Ctrl-C);
  ``make synth`` runs ``app.py`` (the app with the cdk-nag packs) in a subprocess; ``make test`` runs
  ruff and the tests a new team touches (its own, the team-stack and observability tests) in a
  subprocess — the whole suite is what CI runs; ``git status --short`` must print exactly the lines
  shown.
- ``yaml``/``python`` blocks whose first line is ``# file: PATH`` are written to PATH.
- other ``python`` blocks run, with the local session's URL and key in place of the placeholders (the
  deployed-gateway snippet: the secret in moto, the local gateway for the API, ``staging`` for
  ``production``).

A block of any other kind fails the test: the guide holds nothing that is not run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "product-teams.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
FILE_MARKER = re.compile(r"^# file: (\S+)\n")
DEPLOYED_URL = "https://<api-id>.execute-api.<region>.amazonaws.com/prod/v1"

pytestmark = [pytest.mark.e2e, pytest.mark.synth]


@dataclass
class Block:
    lang: str
    text: str
    line: int


def guide_blocks() -> list[Block]:
    text = GUIDE.read_text(encoding="utf-8")
    return [Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def copy_repo(dest: Path) -> None:
    """The repository's files (tracked and new, not ignored) in a fresh git repository at ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        source = REPO / rel
        if source.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    git = ["git", "-c", "user.email=guide@example.com", "-c", "user.name=guide"]
    subprocess.run([*git, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "copy"], cwd=dest, check=True)


class GuideRunner:
    """Runs the guide's blocks in ``root``; keeps the dev session and the time of each command."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.session: Any = None
        self.timings: list[tuple[str, float]] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        self.env = {
            **env,
            "CDK_VALIDATION": "false",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "1",
            "PATH": f"{REPO / 'node_modules' / '.bin'}:{Path(sys.executable).parent}:{env.get('PATH', '')}",
        }

    def run(self, block: Block) -> None:
        marker = FILE_MARKER.match(block.text)
        if marker and block.lang in ("yaml", "python"):
            path = self.root / marker.group(1)
            assert path.resolve().is_relative_to(self.root / "features"), f"line {block.line}: {path}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text[marker.end() :], encoding="utf-8")
        elif block.lang == "console":
            self.console(block)
        elif block.lang == "python":
            self.python(block)
        else:
            raise AssertionError(
                f"docs/product-teams.md:{block.line}: a ```{block.lang} block the test cannot run"
            )

    def console(self, block: Block) -> None:
        commands: list[tuple[str, list[str]]] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            else:
                assert commands, f"docs/product-teams.md:{block.line}: output before any command"
                commands[-1][1].append(line)
        for command, expected in commands:
            started = time.perf_counter()
            output = self.command(command)
            self.timings.append((command, time.perf_counter() - started))
            if command == "git status --short":
                assert sorted(output.splitlines()) == sorted(expected), output
            else:
                for line in expected:
                    assert line in output, f"{command!r}: {line!r} not in its output:\n{output}"

    def command(self, command: str) -> str:
        argv = shlex.split(command)
        if argv[:2] == ["ai-factory", "dev"]:
            from ai_factory.local.dev_session import start_dev_session

            self.session = start_dev_session(argv[2], port=0)
            return self.session.snippet()
        if argv[0] == "ai-factory":
            from ai_factory.cli.main import main

            out = io.StringIO()
            code = main(argv[1:], out=out)
            assert code == 0, f"{command!r} exited {code}:\n{out.getvalue()}"
            return out.getvalue()
        if command == "make synth":
            output = self.subprocess([sys.executable, "app.py"], CDK_OUTDIR=str(self.root / "cdk.out"))
            teams = {p.name for p in (self.root / "cdk.out").glob("AiFactoryTeam*.template.json")}
            assert "AiFactoryTeamLegal.template.json" in teams, teams
            return output
        if command == "make test":
            bin_dir = Path(sys.executable).parent
            self.subprocess([str(bin_dir / "ruff"), "check", "features"])
            self.subprocess([str(bin_dir / "ruff"), "format", "--check", "features"])
            tests = ["features", "tests/infra/test_team_stacks.py", "tests/infra/test_observability.py"]
            return self.subprocess(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *tests]
            )
        if command == "git status --short":
            return self.subprocess(["git", "status", "--short"])
        raise AssertionError(f"the guide runs {command!r}, which this test does not know how to run")

    def subprocess(self, argv: list[str], **env: str) -> str:
        done = subprocess.run(
            argv, cwd=self.root, env={**self.env, **env}, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (
            f"{argv} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        return done.stdout

    def python(self, block: Block) -> None:
        assert self.session is not None, f"line {block.line}: a Python block before `ai-factory dev`"
        code = (
            block.text.replace("http://127.0.0.1:8080/v1", self.session.base_url)
            .replace('api_key="aif-..."', f'api_key="{self.session.api_key}"')
            .replace(DEPLOYED_URL, self.session.base_url)
            .replace('"alias": "production"', '"alias": "staging"')
        )
        printed = io.StringIO()
        with self.deployed_secret(), contextlib.redirect_stdout(printed):
            exec(compile(code, f"docs/product-teams.md:{block.line}", "exec"), {"__name__": "guide"})
        answer = printed.getvalue().strip()
        assert answer, f"line {block.line}: printed nothing"
        shown = re.search(r"^print\(.*\)  # (.+)$", block.text, re.M)
        if shown:  # the guide shows what it prints: it must be what it prints
            assert answer == shown.group(1), answer

    @contextlib.contextmanager
    def deployed_secret(self) -> Iterator[None]:
        """Secrets Manager (moto) holding the local key where a deployed feature's key would be."""
        import boto3
        from moto import mock_aws

        env = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with mock_aws():
                boto3.client("secretsmanager").create_secret(
                    Name="ai-factory/legal/clause-extractor/api-key",
                    SecretString=json.dumps({"api_key": self.session.api_key, "key_id": "k"}),
                )
                yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def test_the_guide_runs_and_touches_only_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    copy_repo(root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("AI_FACTORY_HOME", str(tmp_path / "home"))  # the eval's MLflow record
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    runner = GuideRunner(root)
    blocks = guide_blocks()
    assert {b.lang for b in blocks} <= {"console", "yaml", "python"}
    try:
        for block in blocks:
            runner.run(block)
    finally:
        if runner.session is not None:
            runner.session.close()
    assert runner.session is not None, "the guide never starts `ai-factory dev`"
    ran = [command for command, _ in runner.timings]
    for step in ("ai-factory new feature", "ai-factory eval", "ai-factory dev", "make synth", "make test"):
        assert any(c.startswith(step) for c in ran), f"the guide never runs {step}"
    assert ran[-1] == "git status --short"
    with capsys.disabled():
        print("\nproduct-teams guide, seconds per command:")
        for command, seconds in runner.timings:
            print(f"  {seconds:6.1f}  {command}")
