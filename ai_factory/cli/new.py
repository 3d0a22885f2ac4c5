"""``ai-factory new feature``: a team's new AI feature, ready for ``make test`` and ``ai-factory eval``.

    ai-factory new feature --team billing --name invoice-explainer [--model chat-fast] [--rag]

Writes, under ``features/<team>/`` only (plus the team's line in ``features/__init__.py``):

- ``<feature>.py``: the ``AiFeature`` (and with ``--rag`` a ``RagFeature`` over a governed dataset);
- ``prompts/<feature>.yaml`` and ``evals/<feature>.yaml``: a prompt and its suite, whose starter cases
  pass on the offline model (one checks a JSON answer against a schema);
- ``test_<feature>.py``: a CDK assertion test of the feature's key, budget and rate limit;
- ``__init__.py`` for a new team (``TEAM``, ``FEATURES``, ``build``), or the feature added to an
  existing team's ``FEATURES``.

Nothing is overwritten: an existing file is an error naming it.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ai_factory.cli.errors import UsageError

NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
DEFAULT_MODEL = "chat-fast"
DEFAULT_DATASET = "knowledge.articles"
TEAM_LIST = "features/__init__.py"


def add_parser(subparsers: Any) -> None:
    """``ai-factory new feature``."""
    new = subparsers.add_parser("new", help="scaffold a team's new feature (new feature --team T --name N)")
    sub = new.add_subparsers(dest="new_command", metavar="WHAT", required=True)
    feature = sub.add_parser(
        "feature",
        help="feature module, prompt, eval suite, test and team-list entry under features/<team>/",
        description="Scaffold a feature under features/<team>/ that passes `make test` and "
        "`ai-factory eval` as written (offline).",
    )
    feature.add_argument("--team", required=True, help="team name: lowercase letters, digits, hyphens")
    feature.add_argument("--name", required=True, help="feature name, e.g. invoice-explainer")
    feature.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"model route alias (default: {DEFAULT_MODEL}; see `ai-factory models`)",
    )
    feature.add_argument("--owner", help="owner email (default: <team>-eng@example.com)")
    feature.add_argument(
        "--rag", action="store_true", help="add a knowledge base over a governed dataset (RagFeature)"
    )
    feature.add_argument(
        "--dataset",
        default=DEFAULT_DATASET,
        help=f"with --rag: governed dataset (default: {DEFAULT_DATASET})",
    )
    feature.add_argument("--root", default=".", help="repository root (default: the current folder)")
    feature.set_defaults(run=cmd_new_feature)


@dataclass(frozen=True)
class Names:
    """Every spelling of the team and feature names the files need."""

    team: str
    feature: str
    model: str
    owner: str
    dataset: str

    @property
    def module(self) -> str:
        return self.feature.replace("-", "_")

    @property
    def construct_id(self) -> str:
        return "".join(part.capitalize() for part in self.feature.split("-") if part)

    @property
    def team_module(self) -> str:
        return self.team.replace("-", "_")


def cmd_new_feature(args: argparse.Namespace, out: TextIO) -> int:
    for flag, value in (("--team", args.team), ("--name", args.name)):
        if not NAME.match(value):
            raise UsageError(
                f"{flag}: {value!r} must be 1-63 lowercase letters, digits and hyphens, "
                "starting with a letter"
            )
    from ai_factory.catalog.model_catalog import ModelCatalog

    catalog = ModelCatalog.load(None)
    routes = catalog.gateway_config().routes
    if args.model not in routes or routes[args.model].modality != "chat":
        chat = ", ".join(sorted(a for a, r in routes.items() if r.modality == "chat"))
        raise UsageError(f"--model: {args.model!r} is not a chat route of the model catalog (routes: {chat})")
    if args.dataset != DEFAULT_DATASET and not args.rag:
        raise UsageError("--dataset: only with --rag")
    names = Names(
        args.team, args.name, args.model, args.owner or f"{args.team}-eng@example.com", args.dataset
    )
    written = scaffold_feature(Path(args.root), names, rag=args.rag)
    for path in written:
        print(f"wrote {path}", file=out)
    print(
        f"\nNext:\n"
        f"  ai-factory eval features/{names.team_module}/evals/{names.feature}.yaml   # offline, about 5 s\n"
        f"  ai-factory dev features/{names.team_module}                               # a local gateway\n"
        f"  make test && make synth",
        file=out,
    )
    return 0


def scaffold_feature(root: Path, names: Names, *, rag: bool = False) -> list[Path]:
    """Write the feature's files under ``root/features/<team>/``; returns the paths written (relative)."""
    team_dir = root / "features" / names.team_module
    files = {
        team_dir / f"{names.module}.py": feature_module(names, rag),
        team_dir / "prompts" / f"{names.feature}.yaml": prompt_file(names),
        team_dir / "evals" / f"{names.feature}.yaml": suite_file(names),
        team_dir / f"test_{names.module}.py": test_module(names, rag),
    }
    for path in files:
        if path.exists():
            raise UsageError(f"--name: {path.relative_to(root)} already exists; nothing was written")
    init = team_dir / "__init__.py"
    init_text = (
        add_to_team(init.read_text(encoding="utf-8"), names, init) if init.exists() else team_init(names)
    )
    team_list = root / TEAM_LIST
    if not team_list.is_file():
        raise UsageError(f"--root: {team_list} not found (run from the repository root or pass --root)")
    list_text = add_to_team_list(team_list.read_text(encoding="utf-8"), names)
    written = []
    for path, text in [*files.items(), (init, init_text), (team_list, list_text)]:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path.relative_to(root))
    return written


# --- the team package and the team list ------------------------------------------------------------

_FEATURES_LINE = re.compile(r"^FEATURES(?:: [^=]+)? = \((?P<items>[^)]*)\)$", re.M)


def team_init(names: Names) -> str:
    return f'''"""Team {names.team}: one module per feature (``ai-factory new feature`` adds one)."""

from stacks.team_stack import TeamStack

from . import {names.module}

TEAM = "{names.team}"
FEATURES = ({names.module},)


def build(team: TeamStack) -> None:
    """The {names.team} team's features, each in its own stack-local construct."""
    for feature in FEATURES:
        feature.build(team)
'''


def add_to_team(text: str, names: Names, path: Path) -> str:
    """An existing team's ``__init__.py`` with the feature imported and listed in ``FEATURES``."""
    match = _FEATURES_LINE.search(text)
    imports = list(re.finditer(r"^from \. import ([\w, ]+)$", text, re.M))
    if match is None or not imports:
        raise UsageError(
            f"--team: {path} has no `FEATURES = (...)` line and `from . import ...` lines to add to; "
            f"add `from . import {names.module}` and call `{names.module}.build(team)` in its build()"
        )
    items = [i.strip() for i in match.group("items").split(",") if i.strip()]
    items.append(names.module)
    listed = f"FEATURES = ({', '.join(items)}{',' if len(items) == 1 else ''})"
    text = text[: match.start()] + listed + text[match.end() :]
    # One sorted `from . import a, b` line, as ruff's import sorting keeps it.
    modules = sorted({m.strip() for line in imports for m in line.group(1).split(",")} | {names.module})
    first, last = imports[0], imports[-1]
    return text[: first.start()] + f"from . import {', '.join(modules)}" + text[last.end() :]


def add_to_team_list(text: str, names: Names) -> str:
    """``features/__init__.py`` with ``"features.<team>"`` appended to ``TEAM_MODULES`` (once)."""
    entry = f'"features.{names.team_module}"'
    if entry in text:
        return text
    match = re.search(r"^TEAM_MODULES[^=]*= \((?P<items>.*?)\n?\)", text, re.M | re.S)
    if match is None:
        raise UsageError(f"{TEAM_LIST}: no `TEAM_MODULES = (...)` to add {entry} to")
    body = match.group("items").rstrip().rstrip(",")
    new_body = f"{body},\n    {entry},\n" if body.strip() else f"\n    {entry},\n"
    return text[: match.start("items")] + new_body + text[match.end() - 1 :]


# --- the feature's files ----------------------------------------------------------------------------


def feature_module(names: Names, rag: bool) -> str:
    rag_import = "from ai_factory.constructs.rag_feature import RagFeature\n" if rag else ""
    rag_code = (
        f'''
    # Retrieval over a governed dataset: POST /v1/retrieve with knowledge_base="{names.feature}".
    if team.governance is None:
        raise ValueError("{names.feature}: a knowledge base needs TeamStack(governance=...) (app.py has it)")
    dataset = team.governance.datasets["{names.dataset}"]
    RagFeature(team, "{names.construct_id}Docs", feature=feature, dataset=dataset)
'''
        if rag
        else ""
    )
    clearance = "confidential" if rag else "internal"
    return f'''"""Feature {names.feature} of team {names.team} (prompt: prompts/, suite: evals/)."""

from ai_factory.constructs.ai_feature import AiFeature, AlertThresholds
{rag_import}from stacks.team_stack import TeamStack


def build(team: TeamStack) -> AiFeature:
    """The {names.feature} feature: its gateway key, budget, prompts and alarms."""
    feature = AiFeature(
        team,
        "{names.construct_id}",
        feature="{names.feature}",
        owner="{names.owner}",
        clearance="{clearance}",  # public | internal | confidential | restricted
        models=["{names.model}"],  # route aliases: `ai-factory models`
        prompts=["prompts/{names.feature}.yaml"],  # relative to this file
        monthly_budget_usd=100,  # the gateway answers 429 past it
        rate_limit_rpm=60,
        guardrail_policy="default",
        alert_thresholds=AlertThresholds(p99_latency_ms=8000, error_rate_pct=5, budget_pct=80),
        # Hourly, up to 5 cases of the suite run against the `production` alias, billed to this budget
        # (about 3,600 requests a month); canary=False turns it off.
        canary=True,
    )
{rag_code}    return feature
'''


def prompt_file(names: Names) -> str:
    return f"""# Prompt {names.feature} (format: ai_factory/prompts/spec.py). Its version is the hash of the
# messages, model and parameters; `ai-factory dev features/{names.team_module}` serves it locally.
name: {names.feature}
description: Answer the user's request for team {names.team}.
owner: {names.owner}
model: {names.model}
parameters: {{temperature: 0.2, max_tokens: 500}}
eval_suite: ../evals/{names.feature}.yaml
messages:
  - role: system
    content: You are a careful assistant for the {names.team} team. Answer briefly and never invent facts.
  - role: user
    content: "{{{{request}}}}"
"""


def suite_file(names: Names) -> str:
    return f"""# Eval suite for prompt {names.feature} (format: docs/evaluation.md). Run it offline with
#   ai-factory eval features/{names.team_module}/evals/{names.feature}.yaml
# Offline, every route is the offline model: it answers the user's words back, a case's
# `offline_answer`, or (with response_format json_schema) an object built from the schema. These
# cases check the wiring; add cases that need a real model and run them with --target gateway.
suite: {names.feature}
description: Starter cases for {names.feature}; replace them with your feature's real ones.
prompt: {{name: {names.feature}, alias: staging}}
gate: {{min_pass_rate: 1.0}}
defaults:
  assert:
    - {{type: latency_ms, threshold: 10000}}
    - {{type: cost_usd, threshold: 0.01}}
cases:
  - id: keeps-the-request
    vars: {{request: "Summarize order 123 for the customer."}}
    assert:
      - {{type: icontains, value: order 123}}
  - id: answers-json
    vars: {{request: "Reply with the order number as JSON."}}
    request:
      response_format:
        type: json_schema
        json_schema:
          name: order
          schema:
            type: object
            properties: {{order_id: {{type: string}}}}
            required: [order_id]
            additionalProperties: false
    offline_answer: {{json: {{order_id: "123"}}}}
    assert:
      - type: json-schema
        value:
          type: object
          properties: {{order_id: {{type: string}}}}
          required: [order_id]
      - {{type: contains, value: "123"}}
"""


def test_module(names: Names, rag: bool = False) -> str:
    governance_import = "from stacks.governance_stack import GovernanceStack\n" if rag else ""
    governance = '\n        governance=GovernanceStack(app, "Gov", env=env),' if rag else ""
    # Written the way ruff formats it (exploded calls keep their trailing commas).
    return f'''"""{names.team}/{names.feature}: the feature's key carries its budget and rate limit."""

import aws_cdk as cdk
from aws_cdk.assertions import Template

from features.{names.team_module} import {names.module}
from stacks.gateway_stack import GatewayStack
{governance_import}from stacks.team_stack import TeamStack


def test_key_has_its_budget_and_rate_limit() -> None:
    app = cdk.App()  # no nag plugin here: tests/infra/test_app_synth.py synthesizes the app with it
    env = cdk.Environment(account="111122223333", region="us-east-1")
    team = TeamStack(
        app,
        "Team",
        team="{names.team}",
        gateway_stack=GatewayStack(app, "Gw", env=env),{governance}
    )
    feature = {names.module}.build(team)
    assert feature.feature == "{names.feature}"
    Template.from_stack(team).has_resource_properties(
        "Custom::AiFactoryFeatureKey",
        {{
            "Feature": "{names.feature}",
            "MonthlyBudgetUsd": "100.0",
            "RateLimitRpm": "60",
        }},
    )
'''
