#!/usr/bin/env python3
"""The claims team's own CDK app: its features on the platform's AI Factory gateway, checked by the
cdk-nag packs on every synth (``pip install ai-factory``; ``docs/product-teams.md`` in the platform repo).
"""

from __future__ import annotations

import os

import aws_cdk as cdk
from claims_team.stack import ClaimsFeaturesStack

from ai_factory import apply_nag_packs


def build_app(**app_props: object) -> cdk.App:
    """The app with the team's stack and the nag packs registered (not yet synthesized)."""
    app = cdk.App(**app_props)  # type: ignore[arg-type]
    # A lookup needs a concrete account and region: the team's (set by the CLI from its credentials,
    # or in cdk.json's context for CI).
    account = os.environ.get("CDK_DEFAULT_ACCOUNT") or app.node.try_get_context("account")
    region = os.environ.get("CDK_DEFAULT_REGION") or app.node.try_get_context("region")
    ClaimsFeaturesStack(
        app,
        "ClaimsFeatures",
        env=cdk.Environment(account=account, region=region),
        parameter_prefix=app.node.try_get_context("ai-factory:gatewayParameterPrefix"),
        description="Claims team: AI features on the platform gateway",
    )
    apply_nag_packs(app)
    return app


if __name__ == "__main__":
    build_app().synth()
