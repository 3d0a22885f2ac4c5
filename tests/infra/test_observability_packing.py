"""Observability stacks filled by resources, not by a flat count: sampled features (16-17 alarms each)
spread over as many stacks as CloudFormation's 500-resource limit needs, every feature monitored
exactly once, unsampled apps keep 40 features to a stack, and a feature too large for any stack is
refused at synth naming it."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_cloudwatch as cloudwatch

from ai_factory.constructs.ai_feature import AiFeature, AlarmInput
from ai_factory.constructs.observability.feature_section import FIXED_FEATURE_ALARMS
from ai_factory.constructs.online_sampling import OnlineSampling
from stacks.gateway_stack import GatewayStack
from stacks.observability_stack import (
    FEATURES_PER_STACK,
    MAX_STACK_RESOURCES,
    RESOURCE_BUDGET,
    FeatureMonitoringStack,
    ObservabilityStack,
    add_observability,
)
from stacks.team_stack import TeamStack

ENV = cdk.Environment(account="111122223333", region="us-east-1")
PER_TEAM = 20  # a feature adds about 12 resources to its team's stack (limit 500)


@dataclass
class Packed:
    features: list[AiFeature]
    stacks: list[ObservabilityStack | FeatureMonitoringStack]
    templates: dict[str, dict[str, Any]]  # stack name -> synthesized template


def pack(sampled: int, unsampled: int = 0, **options: Any) -> Packed:
    """``sampled`` features with online sampling and ``unsampled`` without, interleaved, across teams of
    ``PER_TEAM``, monitored by ``add_observability`` (the first feature judges), synthesized once."""
    app = cdk.App()
    gateway = GatewayStack(app, "AiFactoryGateway", env=ENV)
    total = sampled + unsampled
    teams = [
        TeamStack(app, f"AiFactoryTeamLoad{n}", team=f"load{n}", gateway_stack=gateway, env=ENV)
        for n in range(-(-total // PER_TEAM))
    ]
    # Every k-th feature does not sample, so costs vary along the order.
    step = total // unsampled if unsampled else total + 1
    features = [
        AiFeature(
            teams[i // PER_TEAM],
            f"F{i}",
            feature=f"f{i}",
            owner="load@example.com",
            clearance="internal",
            models=["chat-fast"],
            monthly_budget_usd=10,
            rate_limit_rpm=10,
            online_sampling=None if (i + 1) % step == 0 else OnlineSampling(rate=0.1),
        )
        for i in range(total)
    ]
    assert sum(f.online_sampling is None for f in features) == unsampled
    platform = add_observability(app, gateway, online_judge=features[0] if sampled else None, **options)
    stacks = [s for s in app.node.children if isinstance(s, (ObservabilityStack, FeatureMonitoringStack))]
    assert stacks[0] is platform
    assembly = app.synth()
    templates = {s.stack_name: assembly.get_stack_by_name(s.stack_name).template for s in stacks}
    return Packed(features, stacks, templates)


def resources(template: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if kind is None or r["Type"] == kind]


@pytest.fixture(scope="module")
def sampled_app() -> Packed:
    return pack(sampled=60, unsampled=6)


def test_every_observability_stack_stays_under_cloudformations_limit(sampled_app: Packed) -> None:
    """60 sampled features (16 alarms each, 17 with the judge's) would be 1,000+ resources in 40-feature
    stacks (CloudFormation refuses a stack over 500): they spread over as many stacks as it takes."""
    assert len(sampled_app.stacks) == 3
    for name, template in sampled_app.templates.items():
        assert len(template["Resources"]) <= RESOURCE_BUDGET < MAX_STACK_RESOURCES, name
    assert [s.stack_name for s in sampled_app.stacks] == [
        "AiFactoryObservability",
        "AiFactoryObservabilityFeatures2",
        "AiFactoryObservabilityFeatures3",
    ]


def test_a_stack_takes_features_until_the_next_would_pass_the_budget(sampled_app: Packed) -> None:
    """Greedy in order: a new stack starts only when the next feature's alarms and a possible dashboard
    would take the current one past the budget, so no stack is left half empty. (Checked on the
    overflow stacks, whose count is exact; the platform stack's count includes an upper estimate of the
    policies its roles split off at synth, ``test_resource_count.py``.)"""
    stacks = sampled_app.stacks
    assert stacks[0].observability.features, "the platform stack takes features too"
    for current, following in pairwise(stacks[1:]):
        held = len(sampled_app.templates[current.stack_name]["Resources"])
        first_next = following.observability.features[0]
        # + 1: CDK's metadata resource, counted though a plain test app leaves it out
        assert held + 1 + current.observability.feature_resources(first_next) > RESOURCE_BUDGET
        assert len(current.observability.features) < FEATURES_PER_STACK


def test_every_feature_is_monitored_exactly_once_with_all_its_alarms(sampled_app: Packed) -> None:
    monitored = [f for s in sampled_app.stacks for f in s.observability.features]
    assert [f.node.path for f in monitored] == [f.node.path for f in sampled_app.features]  # in order
    names: dict[str, str] = {}
    for name, template in sampled_app.templates.items():
        for alarm in resources(template, "AWS::CloudWatch::Alarm"):
            alarm_name = alarm["Properties"]["AlarmName"]
            assert alarm_name not in names, (alarm_name, names.get(alarm_name), name)
            names[alarm_name] = name
    for stack in sampled_app.stacks:
        for feature in stack.observability.features:
            kinds = {n.rsplit("-", 1)[1] for n in names if f"-{feature.team}-{feature.feature}-" in n}
            # What the facade predicted it would create is what it created.
            expected = {a.name for a in feature.alarm_inputs} | set(FIXED_FEATURE_ALARMS)
            assert kinds == expected, feature.feature
            assert len(stack.observability.feature_alarms[(feature.team, feature.feature)]) == len(expected)
            if feature.online_sampling is not None:
                assert {"InputDrift", "OnlineSamplesStuck", "OnlineQualityDrop"} <= kinds
            assert {names[n] for n in names if f"-{feature.team}-{feature.feature}-" in n} == {
                stack.stack_name
            }


def test_overflow_stacks_deploy_one_after_the_other(sampled_app: Packed) -> None:
    """A feature that moves to a later stack leaves the old one first (alarm names stay the same)."""
    for earlier, later in pairwise(sampled_app.stacks):
        assert earlier in later.dependencies


def test_unsampled_features_keep_forty_to_a_stack() -> None:
    """7 alarms each: the budget never binds before ``FEATURES_PER_STACK`` (the chunking of existing
    apps, and so their stacks, do not change)."""
    packed = pack(sampled=0, unsampled=45)
    assert [len(s.observability.features) for s in packed.stacks] == [FEATURES_PER_STACK, 5]
    assert all(len(t["Resources"]) < 350 for t in packed.templates.values())


def test_a_smaller_budget_packs_fewer_features_per_stack() -> None:
    packed = pack(sampled=0, unsampled=20, resource_budget=60)
    counts = [len(t["Resources"]) for t in packed.templates.values()]
    assert len(packed.stacks) == 3
    assert all(count <= 60 for count in counts), counts
    assert sum(len(s.observability.features) for s in packed.stacks) == 20


def _huge_feature(alarm_inputs: int) -> tuple[cdk.App, GatewayStack]:
    app = cdk.App()
    gateway = GatewayStack(app, "AiFactoryGateway", env=ENV)
    team = TeamStack(app, "AiFactoryTeamHuge", team="huge", gateway_stack=gateway, env=ENV)
    feature = AiFeature(
        team,
        "Noisy",
        feature="noisy",
        owner="o@example.com",
        clearance="internal",
        models=["chat-fast"],
        monthly_budget_usd=10,
        rate_limit_rpm=10,
    )
    for i in range(alarm_inputs):
        feature.add_alarm_input(
            AlarmInput(
                f"Custom{i}",
                feature.metric_requests(),
                1,
                cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                1,
                f"custom alarm {i}",
            )
        )
    return app, gateway


def test_a_feature_that_no_stack_could_hold_is_refused_naming_it() -> None:
    # 450 + its 3 own + 4 fixed alarms, a dashboard, CDK's metadata
    app, gateway = _huge_feature(RESOURCE_BUDGET)
    with pytest.raises(ValueError, match=r"huge/noisy alone needs 459 resources .*more than the resource_bu"):
        add_observability(app, gateway)


def test_a_feature_too_large_for_the_platform_stack_alone_goes_to_an_overflow_stack() -> None:
    """The platform stack's own resources count: a feature that fits only an empty stack gets one."""
    app, gateway = _huge_feature(RESOURCE_BUDGET - 20)
    platform = add_observability(app, gateway)
    stacks = [s for s in app.node.children if isinstance(s, FeatureMonitoringStack)]
    assert platform.observability.features == []
    assert [len(s.observability.features) for s in stacks] == [1]
    assert len(app.synth().get_stack_by_name(stacks[0].stack_name).template["Resources"]) <= RESOURCE_BUDGET


@pytest.mark.parametrize("budget", [0, MAX_STACK_RESOURCES + 1])
def test_a_budget_outside_cloudformations_limit_is_refused(budget: int) -> None:
    app = cdk.App()
    gateway = GatewayStack(app, "AiFactoryGateway", env=ENV)
    with pytest.raises(ValueError, match=r"resource_budget must be 1\.\.500"):
        add_observability(app, gateway, resource_budget=budget)
