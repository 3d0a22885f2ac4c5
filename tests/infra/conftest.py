"""Shared, synthesized-once stacks for the fine-grained infrastructure tests.

The stacks are built in apps WITHOUT the cdk-nag plugin (with it, ``Template.from_stack`` raises on any
finding); ``test_app_synth.py`` checks the real app with the packs. Templates are session-scoped so each
pytest-xdist worker synthesizes each variant once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Template

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.constructs.gateway.llm_gateway import LlmGateway

# CDK's built-in CloudFormation validation plugin costs seconds per synth; cdk-nag is unaffected.
os.environ.setdefault("CDK_VALIDATION", "false")

ENV = cdk.Environment(account="111122223333", region="us-east-1")


@dataclass
class Synthesized:
    stack: cdk.Stack
    gateway: LlmGateway
    template: Template
    vpc_endpoint: ec2.InterfaceVpcEndpoint | None = None

    def resolve(self, value: Any) -> Any:
        return self.stack.resolve(value)


def build(
    props: dict[str, Any] | None = None,
    *,
    private: bool = False,
    extra: Callable[[cdk.Stack, LlmGateway], None] | None = None,
) -> Synthesized:
    """A stack with one LlmGateway (default catalog) plus whatever ``extra`` adds, synthesized."""
    app = cdk.App()
    stack = cdk.Stack(app, "TestGateway", env=ENV)
    props = dict(props or {})
    endpoint = None
    if private:
        vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
        endpoint = vpc.add_interface_endpoint(
            "ExecuteApi", service=ec2.InterfaceVpcEndpointAwsService.APIGATEWAY
        )
        props.update(endpoint_type="private", vpc_endpoint=endpoint)
    gateway = LlmGateway(stack, "Gateway", catalog=ModelCatalog.load(), **props)
    if extra is not None:
        extra(stack, gateway)
    return Synthesized(stack, gateway, Template.from_stack(stack), endpoint)


def gateway_in_new_stack(**props: Any) -> LlmGateway:
    """Construct only (no synth): for validation errors raised at construction time."""
    stack = cdk.Stack(cdk.App(), "TestGateway", env=ENV)
    return LlmGateway(stack, "Gateway", catalog=ModelCatalog.load(), **props)


@pytest.fixture(scope="session")
def build_gateway() -> Callable[..., Synthesized]:
    """``build_gateway(props, private=False, extra=None)``: a freshly synthesized variant."""
    return build


@pytest.fixture(scope="session")
def new_gateway() -> Callable[..., LlmGateway]:
    """``new_gateway(**props)``: construct only, for construction-time validation errors."""
    return gateway_in_new_stack


@pytest.fixture(scope="session")
def default_gateway() -> Synthesized:
    return build()


@pytest.fixture(scope="session")
def private_gateway() -> Synthesized:
    return build(private=True)


@dataclass
class RealApp:
    """The real app (``app.build_app``), cdk-nag packs registered, synthesized into ``outdir``."""

    app: cdk.App
    assembly: Any  # cx_api.CloudAssembly
    outdir: Path

    @property
    def templates(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))


@pytest.fixture(scope="session")
def real_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealApp]:
    """The real app synthesized once per session (per xdist worker): raises on any nag finding.

    With cdk.json's context (the feature flags), so the templates are the ones ``make synth`` writes.
    """
    from app import build_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    context = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]
    app = build_app(outdir=str(outdir), context=context)
    yield RealApp(app, app.synth(), outdir)
