#!/usr/bin/env python3
"""The AI Factory CDK app: every stack, checked by the cdk-nag packs at synth time."""

from __future__ import annotations

import os

import aws_cdk as cdk

from ai_factory.nag import apply_nag_packs
from stacks.gateway_stack import GatewayStack


def build_app(**app_props: object) -> cdk.App:
    """The app with all stacks and the nag packs registered (not yet synthesized)."""
    app = cdk.App(**app_props)  # type: ignore[arg-type]
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=os.environ.get("CDK_DEFAULT_REGION", "us-east-1"),
    )
    GatewayStack(app, "AiFactoryGateway", env=env, description="AI Factory: LLM gateway")
    apply_nag_packs(app)
    return app


if __name__ == "__main__":
    build_app().synth()
