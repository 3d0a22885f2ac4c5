#!/usr/bin/env python3
"""The AI Factory CDK app: every stack, checked by the cdk-nag packs at synth time."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

import aws_cdk as cdk

from ai_factory.nag import apply_nag_packs
from features import TEAM_MODULES
from stacks.gateway_stack import GatewayStack
from stacks.team_stack import TeamStack, team_stack_id


def build_app(team_modules: Sequence[str] = TEAM_MODULES, **app_props: object) -> cdk.App:
    """The app with all stacks and the nag packs registered (not yet synthesized).

    ``team_modules``: the product teams' packages (each with ``TEAM`` and ``build(team_stack)``); one
    stack per team.
    """
    app = cdk.App(**app_props)  # type: ignore[arg-type]
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=os.environ.get("CDK_DEFAULT_REGION", "us-east-1"),
    )
    gateway = GatewayStack(app, "AiFactoryGateway", env=env, description="AI Factory: LLM gateway")
    for module_name in team_modules:
        module = importlib.import_module(module_name)
        team = TeamStack(app, team_stack_id(module.TEAM), team=module.TEAM, gateway_stack=gateway, env=env)
        module.build(team)
    apply_nag_packs(app)
    return app


if __name__ == "__main__":
    build_app().synth()
