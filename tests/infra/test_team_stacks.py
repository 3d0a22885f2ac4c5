"""One stack per team: the example teams' features land in their own stacks, apart from the gateway."""

from __future__ import annotations

import importlib
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from ai_factory.constructs.ai_feature import AiFeature
from features import TEAM_MODULES
from stacks.gateway_stack import GatewayStack
from stacks.team_stack import TeamStack, team_stack_id

ENV = cdk.Environment(account="111122223333", region="us-east-1")


@pytest.fixture(scope="module")
def teams() -> dict[str, Any]:
    """The example teams wired as app.py wires them, in an app without the nag plugin."""
    app = cdk.App()
    gateway = GatewayStack(app, "AiFactoryGateway", env=ENV)
    stacks: dict[str, TeamStack] = {}
    for name in TEAM_MODULES:
        module = importlib.import_module(name)
        stacks[module.TEAM] = TeamStack(
            app, team_stack_id(module.TEAM), team=module.TEAM, gateway_stack=gateway, env=ENV
        )
        module.build(stacks[module.TEAM])
    return {"app": app, "gateway": gateway, "stacks": stacks}


def features_in(stack: cdk.Stack) -> list[AiFeature]:
    return [c for c in stack.node.find_all() if isinstance(c, AiFeature)]


def test_two_teams_give_two_stacks_each_holding_only_its_features(teams: dict[str, Any]) -> None:
    stacks: dict[str, TeamStack] = teams["stacks"]
    assert sorted(stacks) == ["knowledge", "support"]
    assert {s.stack_name for s in stacks.values()} == {"AiFactoryTeamSupport", "AiFactoryTeamKnowledge"}
    assert [(f.team, f.feature) for f in features_in(stacks["support"])] == [("support", "ticket-summarizer")]
    assert [(f.team, f.feature) for f in features_in(stacks["knowledge"])] == [("knowledge", "internal-qa")]
    for team, stack in stacks.items():
        template = Template.from_stack(stack)
        template.resource_count_is("Custom::AiFactoryFeatureKey", 1)
        template.resource_count_is("AWS::KMS::Key", 1)
        keys = template.find_resources("Custom::AiFactoryFeatureKey")
        assert next(iter(keys.values()))["Properties"]["Team"] == team
    # The gateway stack holds no feature resources.
    Template.from_stack(teams["gateway"]).resource_count_is("Custom::AiFactoryFeatureKey", 0)


def test_team_stacks_depend_on_the_gateway_and_share_its_environment(teams: dict[str, Any]) -> None:
    gateway: GatewayStack = teams["gateway"]
    assembly = teams["app"].synth()  # cross-stack references become dependencies during synth
    for stack in teams["stacks"].values():
        artifact = assembly.get_stack_artifact(stack.artifact_id)
        assert gateway.artifact_id in [d.id for d in artifact.dependencies]
        assert (stack.account, stack.region) == (gateway.account, gateway.region)


def test_example_features_use_their_models_and_prompts(teams: dict[str, Any]) -> None:
    [summarizer] = features_in(teams["stacks"]["support"])
    [qa] = features_in(teams["stacks"]["knowledge"])
    assert (summarizer.models, [p.name for p in summarizer.prompts]) == (("chat-fast",), ["summarize-ticket"])
    assert (qa.models, [p.name for p in qa.prompts]) == (("chat-smart",), ["answer-question"])


def test_team_code_stays_under_forty_lines() -> None:
    for name in TEAM_MODULES:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        with open(module.__file__, encoding="utf-8") as source:
            assert len(source.readlines()) < 40, name


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
