"""The public Lambda layers the factory's functions use, pinned, with the regions AWS publishes them in.

Two layers, both published by AWS in every commercial region under the same version number:

* **Powertools for AWS Lambda (Python)** (``017000801446``): Logger, Tracer and EMF metrics for every
  gateway function. ``POWERTOOLS_LAYERS`` is the table per architecture (layer name and pinned version)
  and ``POWERTOOLS_CARRIED`` says which ``aws-lambda-powertools`` release each pinned version carries:
  a unit test keeps it equal to the version ``constraints.txt`` pins, so the deployed code imports
  exactly the Powertools the tests import (``ai-factory preflight`` checks the same in the account).
* **Lambda Web Adapter** (``753240598075``): the extension that runs the gateway's HTTP server as the
  function's handler and streams its responses (``docs/gateway.md``, "Deployed streaming").

ARNs are built from the stack's partition and region (CDK tokens, or the stack's concrete region).
China and GovCloud publish both layers from other accounts: pass the full ARN to ``LlmGateway`` there.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Token
from aws_cdk import aws_lambda as lambda_

POWERTOOLS_LAYER_ACCOUNT = "017000801446"
WEB_ADAPTER_LAYER_ACCOUNT = "753240598075"

COMMERCIAL_REGIONS = frozenset(
    {
        "af-south-1",
        "ap-east-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ap-southeast-5",
        "ap-southeast-7",
        "ca-central-1",
        "ca-west-1",
        "eu-central-1",
        "eu-central-2",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "il-central-1",
        "me-central-1",
        "me-south-1",
        "mx-central-1",
        "sa-east-1",
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
    }
)
"""Regions where both layers are published from the accounts above (the layers' own region tables)."""


@dataclass(frozen=True)
class PublicLayer:
    """One pinned public layer: publishing account, layer name and version."""

    account: str
    name: str
    version: int

    def arn(self, region: str | None = None) -> str:
        """The ARN in the stack's partition and ``region`` (default: the stack's region token)."""
        where = region or Aws.REGION
        return f"arn:{Aws.PARTITION}:lambda:{where}:{self.account}:layer:{self.name}:{self.version}"


_ARM64 = lambda_.Architecture.ARM_64.name
_X86_64 = lambda_.Architecture.X86_64.name

DEFAULT_POWERTOOLS_LAYER_VERSION = 38
POWERTOOLS_LAYERS: dict[str, PublicLayer] = {
    _ARM64: PublicLayer(
        POWERTOOLS_LAYER_ACCOUNT,
        "AWSLambdaPowertoolsPythonV3-python314-arm64",
        DEFAULT_POWERTOOLS_LAYER_VERSION,
    ),
    _X86_64: PublicLayer(
        POWERTOOLS_LAYER_ACCOUNT,
        "AWSLambdaPowertoolsPythonV3-python314-x86_64",
        DEFAULT_POWERTOOLS_LAYER_VERSION,
    ),
}
"""The Powertools layer per function architecture (``lambda_.Architecture.name``), Python 3.14."""
POWERTOOLS_CARRIED = {38: "3.37.0"}
"""``aws-lambda-powertools`` release in each pinned layer version. Bump the layer, this and
``constraints.txt`` together: ``tests/unit/test_public_layers.py`` fails when they disagree."""

WEB_ADAPTER_LAYERS: dict[str, PublicLayer] = {
    _ARM64: PublicLayer(WEB_ADAPTER_LAYER_ACCOUNT, "LambdaAdapterLayerArm64", 27),
    _X86_64: PublicLayer(WEB_ADAPTER_LAYER_ACCOUNT, "LambdaAdapterLayerX86", 27),
}
"""The Lambda Web Adapter layer per function architecture (one version for both, bumped deliberately)."""


def _layer_for(table: dict[str, PublicLayer], architecture: lambda_.Architecture, what: str) -> PublicLayer:
    try:
        return table[architecture.name]
    except KeyError:
        raise ValueError(
            f"{what}: no pinned layer for architecture {architecture.name!r} (known: {sorted(table)})"
        ) from None


def powertools_layer(
    architecture: lambda_.Architecture = lambda_.Architecture.ARM_64, *, version: int | None = None
) -> PublicLayer:
    """The pinned Powertools layer for ``architecture`` (``version`` overrides the pinned version)."""
    layer = _layer_for(POWERTOOLS_LAYERS, architecture, "Powertools layer")
    return layer if version is None else PublicLayer(layer.account, layer.name, version)


def web_adapter_layer(architecture: lambda_.Architecture = lambda_.Architecture.ARM_64) -> PublicLayer:
    """The pinned Lambda Web Adapter layer for ``architecture``."""
    return _layer_for(WEB_ADAPTER_LAYERS, architecture, "Lambda Web Adapter layer")


def layer_region(stack_region: str) -> tuple[str | None, bool]:
    """(region for the ARN, whether the layers are known to be published there) for a stack's region.

    An environment-agnostic stack (token region) gets the region token and counts as known: the layer
    is resolved in whatever commercial region it is deployed to."""
    if Token.is_unresolved(stack_region):
        return None, True
    return stack_region, stack_region in COMMERCIAL_REGIONS
