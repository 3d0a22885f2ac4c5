#!/usr/bin/env python3
"""The AI Factory CDK app: every stack, checked by the cdk-nag packs at synth time."""

from __future__ import annotations

import os
from collections.abc import Sequence

import aws_cdk as cdk

from ai_factory.platform.nag import apply_nag_packs
from features import TEAM_MODULES
from stacks.factory import build_factory
from stacks.mlops_stack import MlopsStack
from stacks.pipeline_stack import PipelineSettings, PipelineStack


def build_app(team_modules: Sequence[str] = TEAM_MODULES, **app_props: object) -> cdk.App:
    """The app with all stacks and the nag packs registered (not yet synthesized).

    ``team_modules``: the product teams' packages (each with ``TEAM`` and ``build(team_stack)``); one
    stack per team; then the observability stack(s), which monitor every feature they find (MLOps, whose
    MLflow holds the online samples' traces, comes first) and, when the context names a repository, the
    delivery pipeline.
    """
    app = cdk.App(**app_props)  # type: ignore[arg-type]
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=os.environ.get("CDK_DEFAULT_REGION", "us-east-1"),
    )
    mlops = MlopsStack(app, "AiFactoryMlops", env=env, description="AI Factory: SageMaker managed MLflow")
    # Gateway, governance, one stack per team (with its canary), observability: the same in every
    # pipeline stage (stacks/factory.py). Sampled requests become MLflow traces beside the eval runs.
    build_factory(
        app, team_modules=team_modules, env=env, tracking_server_arn=mlops.tracking.tracking_server_arn
    )
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
