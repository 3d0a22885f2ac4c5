#!/usr/bin/env python3
"""The AI Factory CDK app: every stack, checked by the cdk-nag packs at synth time."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

import aws_cdk as cdk

from ai_factory.canary import add_canary
from ai_factory.nag import apply_nag_packs
from features import TEAM_MODULES
from stacks.gateway_stack import GatewayStack
from stacks.governance_stack import GovernanceStack
from stacks.mlops_stack import MlopsStack
from stacks.observability_stack import add_observability
from stacks.pipeline_stack import PipelineSettings, PipelineStack
from stacks.team_stack import TeamStack, team_stack_id


def build_app(team_modules: Sequence[str] = TEAM_MODULES, **app_props: object) -> cdk.App:
    """The app with all stacks and the nag packs registered (not yet synthesized).

    ``team_modules``: the product teams' packages (each with ``TEAM`` and ``build(team_stack)``); one
    stack per team; then the observability stack(s), which monitor every feature they find.
    """
    app = cdk.App(**app_props)  # type: ignore[arg-type]
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=os.environ.get("CDK_DEFAULT_REGION", "us-east-1"),
    )
    gateway = GatewayStack(app, "AiFactoryGateway", env=env, description="AI Factory: LLM gateway")
    # Before the team stacks: their features' datasets and Lake Formation grants come from it.
    governance = GovernanceStack(
        app, "AiFactoryGovernance", env=env, description="AI Factory: Lake Formation governed data"
    )
    for module_name in team_modules:
        module = importlib.import_module(module_name)
        team = TeamStack(
            app,
            team_stack_id(module.TEAM),
            team=module.TEAM,
            gateway_stack=gateway,
            governance=governance,
            env=env,
        )
        module.build(team)
        add_canary(team)  # drift detection for the team's features (EventBridge Scheduler)
    # After the team stacks: it finds every AiFeature in the app and monitors it.
    add_observability(app, gateway)
    mlops = MlopsStack(app, "AiFactoryMlops", env=env, description="AI Factory: SageMaker managed MLflow")
    # The delivery pipeline only when the context names a repository (docs/delivery.md), so a fresh
    # clone synthesizes without one.
    pipeline_settings = PipelineSettings.from_context(app)
    if pipeline_settings is not None:
        PipelineStack(
            app,
            "AiFactoryPipeline",
            settings=pipeline_settings,
            team_modules=team_modules,
            tracking=mlops.tracking,
            env=env,
        )
    apply_nag_packs(app)
    return app


if __name__ == "__main__":
    build_app().synth()
