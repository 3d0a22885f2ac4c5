"""One stack per team: every listed team's features land in its own stack, apart from the gateway.

Generic over ``features.TEAM_MODULES``: adding a team or a feature needs no change here."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from ai_factory.constructs.ai_feature import AiFeature
from features import TEAM_MODULES
from stacks.gateway_stack import GatewayStack
from stacks.governance_stack import GovernanceStack
from stacks.team_stack import TeamStack, team_stack_id

ENV = cdk.Environment(account="111122223333", region="us-east-1")


@pytest.fixture(scope="module")
def teams() -> dict[str, Any]:
    """The example teams wired as app.py wires them, in an app without the nag plugin."""
    app = cdk.App()
    gateway = GatewayStack(app, "AiFactoryGateway", env=ENV)
    governance = GovernanceStack(app, "AiFactoryGovernance", env=ENV)
    stacks: dict[str, TeamStack] = {}
    for name in TEAM_MODULES:
        module = importlib.import_module(name)
        stacks[module.TEAM] = TeamStack(
            app,
            team_stack_id(module.TEAM),
            team=module.TEAM,
            gateway_stack=gateway,
            governance=governance,
            env=ENV,
        )
        module.build(stacks[module.TEAM])
    return {"app": app, "gateway": gateway, "stacks": stacks}


def features_in(stack: cdk.Stack) -> list[AiFeature]:
    return [c for c in stack.node.find_all() if isinstance(c, AiFeature)]


def test_each_team_gets_one_stack_holding_only_its_features(teams: dict[str, Any]) -> None:
    stacks: dict[str, TeamStack] = teams["stacks"]
    listed = [importlib.import_module(name).TEAM for name in TEAM_MODULES]
    assert sorted(stacks) == sorted(listed)
    assert len(set(listed)) == len(listed), "two team modules declare the same TEAM"
    assert {s.stack_name for s in stacks.values()} == {team_stack_id(t) for t in listed}
    for team, stack in stacks.items():
        features = features_in(stack)
        assert features, f"team {team} defines no AiFeature"
        assert {f.team for f in features} == {team}
        template = Template.from_stack(stack)
        template.resource_count_is("Custom::AiFactoryFeatureKey", len(features))
        secrets_key = stack.get_logical_id(stack.secrets_key.node.default_child)  # type: ignore[arg-type]
        assert secrets_key in template.find_resources("AWS::KMS::Key")
        for props in template.find_resources("Custom::AiFactoryFeatureKey").values():
            assert props["Properties"]["Team"] == team
    # The gateway stack holds no feature resources.
    Template.from_stack(teams["gateway"]).resource_count_is("Custom::AiFactoryFeatureKey", 0)


def test_team_stacks_depend_on_the_gateway_and_share_its_environment(teams: dict[str, Any]) -> None:
    gateway: GatewayStack = teams["gateway"]
    assembly = teams["app"].synth()  # cross-stack references become dependencies during synth
    for stack in teams["stacks"].values():
        artifact = assembly.get_stack_artifact(stack.artifact_id)
        assert gateway.artifact_id in [d.id for d in artifact.dependencies]
        assert (stack.account, stack.region) == (gateway.account, gateway.region)


def test_every_feature_uses_catalog_models_and_its_own_prompts(teams: dict[str, Any]) -> None:
    routes = set(teams["gateway"].catalog.gateway_config().routes)
    prompt_owners: dict[str, str] = {}
    for stack in teams["stacks"].values():
        for feature in features_in(stack):
            assert set(feature.models) <= routes, feature.feature
            for prompt in feature.prompts:
                assert prompt.model in feature.models, (feature.feature, prompt.name)
                owner = prompt_owners.setdefault(prompt.name, feature.feature)
                assert owner == feature.feature, (
                    f"prompt {prompt.name} is used by {owner} and {feature.feature}"
                )


def test_example_features_use_their_models_and_prompts(teams: dict[str, Any]) -> None:
    by_name = {f.feature: f for stack in teams["stacks"].values() for f in features_in(stack)}
    summarizer, qa = by_name["ticket-summarizer"], by_name["internal-qa"]
    assert (summarizer.models, [p.name for p in summarizer.prompts]) == (("chat-fast",), ["summarize-ticket"])
    assert (qa.models, [p.name for p in qa.prompts]) == (("chat-smart",), ["answer-question"])


def test_team_code_stays_under_forty_lines_per_module() -> None:
    for name in TEAM_MODULES:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        folder = Path(module.__file__).parent
        for source in [folder / "__init__.py", *sorted(folder.glob("[!_]*.py"))]:
            if source.name.startswith("test_"):
                continue
            assert len(source.read_text(encoding="utf-8").splitlines()) < 40, source


def test_team_stack_ids_and_names() -> None:
    assert team_stack_id("support") == "AiFactoryTeamSupport"
    assert team_stack_id("data-platform") == "AiFactoryTeamDataPlatform"
    app = cdk.App()
    gateway = GatewayStack(app, "Gw", env=ENV)
    with pytest.raises(ValueError, match=r"TeamStack Bad: team: 'Data_Platform' is not valid"):
        TeamStack(app, "Bad", team="Data_Platform", gateway_stack=gateway)
    # Without an explicit env the team stack takes the gateway's.
    stack = TeamStack(app, "Ok", team="ok", gateway_stack=gateway)
    assert (stack.account, stack.region) == ("111122223333", "us-east-1")
