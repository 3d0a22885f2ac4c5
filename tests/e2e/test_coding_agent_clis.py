"""End to end: the real Claude Code and Codex CLIs (npm packages pinned in package.json, installed by
``make setup``) run non-interactively against ``ai-factory serve``, configured with the environment
variables and config file docs/gateway.md gives a team. Each runs one prompt that makes the offline echo
model call one of the CLI's own tools (``echo_agent``: a tool named in the prompt, its arguments the
JSON written after the name); the CLI runs the tool, sends the result back, and the echo model's answer
quotes it. So the CLIs' real requests (their beta fields, system turns, tool search placeholders,
namespaced and built-in tools, streaming) all pass the gateway."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import LocalGateway

pytestmark = pytest.mark.e2e

MakeKey = Callable[..., str]
BIN = Path(__file__).resolve().parents[2] / "node_modules" / ".bin"
TIMEOUT_S = 240  # each CLI makes two model calls; the machine may be busy


def cli(name: str) -> Path:
    """The CLI binary, or a skip that says why it cannot run here."""
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{path} is not installed: run `make setup` (package.json pins it)")
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": "/nonexistent"}
    try:
        subprocess.run([str(path), "--version"], env=env, capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"{name} cannot run on this machine: {type(exc).__name__}: {exc}")
    return path


def project_with_notes(tmp_path: Path, text: str) -> Path:
    """A project folder holding ``notes.txt`` with ``text``: what the CLI's tool call reads."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text(text + "\n", encoding="utf-8")
    return project


def test_claude_code_prompt_and_tool_round_trip(
    local_gateway: LocalGateway, make_key: MakeKey, tmp_path: Path
) -> None:
    claude = cli("claude")
    project = project_with_notes(tmp_path, "the password is pelican-42")
    notes = project / "notes.txt"
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        # What docs/gateway.md tells a team to set.
        "ANTHROPIC_BASE_URL": local_gateway.server.url,
        "ANTHROPIC_AUTH_TOKEN": make_key("echo"),
        "ANTHROPIC_MODEL": "echo",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "echo",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    prompt = "Read " + json.dumps({"file_path": str(notes)})
    done = subprocess.run(
        [str(claude), "-p", prompt, "--output-format", "json", "--allowedTools", "Read", "--max-turns", "3"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["is_error"] is False, result
    assert result["num_turns"] == 2  # the tool call, then the answer to its result
    # The echo model answers the tool result, which is Read's numbered view of the file.
    assert result["result"].startswith("echo: ") and "the password is pelican-42" in result["result"]
    assert result["usage"]["input_tokens"] > 0


def test_codex_prompt_and_tool_round_trip(
    local_gateway: LocalGateway, make_key: MakeKey, tmp_path: Path
) -> None:
    codex = cli("codex")
    project = project_with_notes(tmp_path, "the heron flies at dawn")
    home = tmp_path / "codex-home"
    home.mkdir()
    # The ~/.codex/config.toml of docs/gateway.md, pointed at the local gateway.
    (home / "config.toml").write_text(
        'model = "echo"\n'
        'model_provider = "aif"\n\n'
        "[model_providers.aif]\n"
        'name = "AI Factory gateway"\n'
        f'base_url = "{local_gateway.base_url}"\n'
        'env_key = "AIF_API_KEY"\n'
        'wire_api = "responses"\n',
        encoding="utf-8",
    )
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "CODEX_HOME": str(home),
        "AIF_API_KEY": make_key("echo"),
    }
    if os.environ.get("LANG"):
        env["LANG"] = os.environ["LANG"]
    prompt = "exec_command " + json.dumps({"cmd": "cat notes.txt"})
    done = subprocess.run(
        [str(codex), "exec", "--skip-git-repo-check", "--json", prompt],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    items = [e["item"] for e in events if e.get("type") == "item.completed"]
    commands = [i for i in items if i.get("type") == "command_execution"]
    assert commands and "the heron flies at dawn" in commands[0]["aggregated_output"], items
    answers = [i["text"] for i in items if i.get("type") == "agent_message"]
    assert answers and answers[-1].startswith("echo: ") and "the heron flies at dawn" in answers[-1]
    turns = [e for e in events if e.get("type") == "turn.completed"]
    assert turns and turns[-1]["usage"]["input_tokens"] > 0
