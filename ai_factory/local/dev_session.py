"""``ai-factory dev``: from a team's prompt files to a local answer in one step.

``start_dev_session`` registers the team's prompt files in a local prompt registry (MLflow on SQLite in
the session's state folder), points a local alias (default ``staging``) at each new version, publishes
the runtime view the gateway reads, creates a local API key for the team, and starts the real gateway
with every route served by the offline model (``aif_gateway.offline_model``): no AWS account, no
credentials, nothing outside the state folder (default ``.ai-factory/dev``, ignored by git).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = Path(".ai-factory") / "dev"
DEFAULT_ALIAS = "staging"
DEV_BUDGET_USD = 1000.0  # offline models cost nothing; the budget only keeps the key record realistic
DEV_RATE_LIMIT_RPM = 600


class DevSessionError(ValueError):
    """The session cannot start; the message names the input and the reason."""


@dataclass(frozen=True)
class DevPrompt:
    """One registered prompt as the session serves it."""

    name: str
    version: int
    model: str
    variables: tuple[str, ...]
    source: Path


@dataclass
class DevSession:
    """A running local gateway with the team's prompts published and a key to call it with."""

    team: str
    feature: str
    alias: str
    api_key: str
    state_dir: Path
    server: Any  # ai_factory.local.server.LocalGatewayServer
    prompts: list[DevPrompt] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/v1"

    def snippet(self, prompt: DevPrompt | None = None) -> str:
        """The openai-SDK code that calls ``prompt`` (default: the first) through this gateway."""
        chosen = prompt or self.prompts[0]
        variables = ", ".join(f'"{name}": "..."' for name in chosen.variables)
        return (
            "from openai import OpenAI\n"
            "\n"
            f'client = OpenAI(base_url="{self.base_url}", api_key="{self.api_key}")\n'
            "reply = client.chat.completions.create(\n"
            f'    model="{chosen.model}",\n'
            "    messages=[],\n"
            "    extra_body={\n"
            f'        "prompt": {{"name": "{chosen.name}", "alias": "{self.alias}",\n'
            f'                   "variables": {{{variables}}}}}\n'
            "    },\n"
            ")\n"
            "print(reply.choices[0].message.content)\n"
        )

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()


def start_dev_session(
    team_dir: str | os.PathLike[str],
    *,
    state_dir: str | os.PathLike[str] | None = None,
    alias: str = DEFAULT_ALIAS,
    feature: str = "dev",
    host: str = "127.0.0.1",
    port: int = 8080,
    catalog_path: str | None = None,
    script: Any = None,
) -> DevSession:
    """Register ``team_dir``'s prompts, move ``alias``, publish, create a key, start serving (returns
    at once; the server runs on a daemon thread). ``DevSessionError`` for bad input."""
    from ai_factory.catalog.model_catalog import ModelCatalog
    from ai_factory.local.offline import create_local_key, offline_config, offline_gateway
    from ai_factory.local.server import LocalGatewayServer
    from ai_factory.prompts.registry import PromptRegistry, check_alias
    from ai_factory.prompts.spec import load_prompt_file
    from ai_factory.prompts.view import build_view, find_prompt_files, publish_view, register_files

    folder = Path(team_dir)
    if not folder.is_dir():
        raise DevSessionError(f"TEAM_DIR: {folder} is not a folder (expected features/<team>)")
    team = folder.resolve().name
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", team):
        raise DevSessionError(f"TEAM_DIR: {team!r} is not a team name (lowercase letters, digits, hyphens)")
    check_alias(alias)
    files = find_prompt_files([folder])
    if not files:
        raise DevSessionError(
            f"TEAM_DIR: no prompt files under {folder}/**/prompts/ (try `ai-factory new feature`)"
        )
    state = Path(state_dir) if state_dir else DEFAULT_STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    registry = PromptRegistry(f"sqlite:///{(state / 'mlflow.db').resolve()}")
    results = register_files(files, registry, ModelCatalog.load(catalog_path))
    invalid = [r for r in results if r.status == "invalid"]
    if invalid:
        raise DevSessionError(f"invalid prompt file, nothing registered: {invalid[0].error}")
    prompts = []
    for result in results:
        assert result.name is not None and result.version is not None
        registry.promote(result.name, result.version, alias, approved_by="ai-factory dev", git_commit="local")
        spec = load_prompt_file(result.path)
        prompts.append(DevPrompt(spec.name, result.version, spec.model, spec.variables, result.path))
    publish_view(build_view(registry), str(state / "prompts.json"))

    config = offline_config(catalog_path)
    plaintext = create_local_key(
        state,
        team=team,
        feature=feature,
        models=tuple(sorted(config.routes)),
        monthly_budget_usd=DEV_BUDGET_USD,
        rate_limit_rpm=DEV_RATE_LIMIT_RPM,
        description="ai-factory dev (offline models)",
    )
    gateway, _ = offline_gateway(state, config, script)
    server = LocalGatewayServer(host, port, config=config, gateway=gateway).start()
    return DevSession(team, feature, alias, plaintext, state, server, prompts)
