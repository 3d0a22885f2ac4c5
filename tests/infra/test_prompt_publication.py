"""PromptPublication: a feature's prompts reach the gateway's prompt view during the deploy, before its
canary exists, through one least-privilege publisher per stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from ai_factory.constructs.ai_feature import AiFeature
from ai_factory.constructs.canary import add_canary
from ai_factory.constructs.prompt_publication import RESOURCE_TYPE
from ai_factory.prompts.spec import load_prompt_file
from stacks.gateway_stack import GatewayStack
from stacks.team_stack import TeamStack

ENV = cdk.Environment(account="111122223333", region="us-east-1")
PROMPT = Path(__file__).resolve().parents[2] / "features/support/prompts/summarize-ticket.yaml"


def feature(team: TeamStack, construct_id: str, name: str, prompts: list[Path]) -> AiFeature:
    return AiFeature(
        team,
        construct_id,
        feature=name,
        owner="o@example.com",
        clearance="internal",
        models=["chat-fast"],
        prompts=prompts,
        monthly_budget_usd=10,
        rate_limit_rpm=10,
        canary=False,
    )


@pytest.fixture(scope="module")
def synth() -> dict[str, Any]:
    app = cdk.App()
    gateway = GatewayStack(app, "Gw", env=ENV)
    team = TeamStack(app, "TeamSupport", team="support", gateway_stack=gateway, env=ENV)
    summarizer = AiFeature(
        team,
        "Summarizer",
        feature="ticket-summarizer",
        owner="o@example.com",
        clearance="internal",
        models=["chat-fast"],
        prompts=[PROMPT],
        monthly_budget_usd=10,
        rate_limit_rpm=10,
    )
    second = feature(team, "Second", "second", [PROMPT])
    feature(team, "NoPrompts", "no-prompts", [])
    canary = add_canary(team)
    assert canary is not None
    template = Template.from_stack(team)
    return {"team": team, "summarizer": summarizer, "second": second, "canary": canary, "template": template}


def test_each_feature_with_prompts_publishes_them_as_the_gateway_view_stores_them(
    synth: dict[str, Any],
) -> None:
    template: Template = synth["template"]
    publications = template.find_resources(RESOURCE_TYPE)
    assert len(publications) == 2, "one per feature with prompts, none for a feature without"
    spec = load_prompt_file(PROMPT)
    team: TeamStack = synth["team"]
    logical = team.get_logical_id(synth["summarizer"].prompt_publication.resource.node.default_child)
    props = template.to_json()["Resources"][logical]["Properties"]
    assert props["Team"] == "support" and props["Feature"] == "ticket-summarizer"
    assert props["Key"] == "prompts.json"
    assert json.loads(props["Prompts"]) == [
        {
            "name": spec.name,
            "hash": spec.content_hash,
            "model": spec.model,
            "parameters": spec.parameters,
            "messages": spec.messages,
            "variables": list(spec.variables),
        }
    ]
    # The bucket is the gateway stack's prompts bucket (a cross-stack import).
    assert "Fn::ImportValue" in json.dumps(props["Bucket"])


def test_one_publisher_per_stack_may_read_and_write_only_the_view(synth: dict[str, Any]) -> None:
    template: Template = synth["template"]
    functions = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": "prompt_publisher.handler.on_event"}}
    )
    assert len(functions) == 1
    policies = json.dumps(
        [
            r["Properties"]
            for r in template.to_json()["Resources"].values()
            if r["Type"] in ("AWS::IAM::Role", "AWS::IAM::Policy") and "PromptPublisher" in json.dumps(r)
        ]
    )
    assert '"s3:PutObject"' in policies and "/prompts.json" in policies
    assert '"s3:DeleteObject"' not in policies and '"s3:*"' not in policies


def test_the_canary_runs_only_after_the_prompts_are_published(synth: dict[str, Any]) -> None:
    template: Template = synth["template"]
    team: TeamStack = synth["team"]
    publication = team.get_logical_id(synth["summarizer"].prompt_publication.resource.node.default_child)
    schedules = template.find_resources("AWS::Scheduler::Schedule")
    function = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": Match.string_like_regexp("canary")}}
    )
    assert schedules and function
    for resource in [*schedules.values(), *function.values()]:
        assert publication in resource.get("DependsOn", []), resource.get("DependsOn")
