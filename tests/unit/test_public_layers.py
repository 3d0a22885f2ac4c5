"""The pinned public layers: the Powertools layer carries exactly the Powertools the tests import, and
every architecture the factory can build for has both layers."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from aws_cdk import aws_lambda as lambda_

from ai_factory.platform import public_layers
from ai_factory.platform.functions import ARCHITECTURE
from ai_factory.platform.public_layers import (
    POWERTOOLS_CARRIED,
    POWERTOOLS_LAYERS,
    WEB_ADAPTER_LAYERS,
    layer_region,
    powertools_layer,
    web_adapter_layer,
)

REPO = Path(__file__).resolve().parents[2]


def _pinned(package: str) -> str:
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if re.sub(r"[-_.]+", "-", name.strip().lower()) == package:
            return version.strip()
    raise AssertionError(f"{package} is not pinned in constraints.txt")


def test_each_pinned_powertools_layer_carries_the_pinned_and_installed_powertools() -> None:
    pinned = _pinned("aws-lambda-powertools")
    assert metadata.version("aws-lambda-powertools") == pinned, "the tests run the pinned Powertools"
    for architecture, layer in POWERTOOLS_LAYERS.items():
        assert layer.version in POWERTOOLS_CARRIED, f"{architecture}: layer {layer.version} not in the table"
        assert POWERTOOLS_CARRIED[layer.version] == pinned, (
            f"{architecture}: layer version {layer.version} carries Powertools "
            f"{POWERTOOLS_CARRIED[layer.version]}, constraints.txt pins {pinned}: bump them together"
        )


def test_layers_match_the_function_runtime_and_architecture() -> None:
    assert set(POWERTOOLS_LAYERS) == set(WEB_ADAPTER_LAYERS) == {"arm64", "x86_64"}
    for architecture, layer in POWERTOOLS_LAYERS.items():
        assert layer.name == f"AWSLambdaPowertoolsPythonV3-python314-{architecture}"
    assert web_adapter_layer(lambda_.Architecture.ARM_64).name == "LambdaAdapterLayerArm64"
    assert web_adapter_layer(lambda_.Architecture.X86_64).name == "LambdaAdapterLayerX86"
    assert ARCHITECTURE.name in POWERTOOLS_LAYERS


def test_arns_use_the_partition_and_the_given_or_token_region() -> None:
    arn = powertools_layer(lambda_.Architecture.ARM_64).arn("eu-west-1")
    assert arn.endswith(":lambda:eu-west-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-arm64:38")
    assert arn.startswith("arn:${Token[AWS.Partition")
    assert "${Token[AWS.Region" in web_adapter_layer().arn()
    assert powertools_layer(version=40).arn("us-east-1").endswith(":40")


def test_region_table() -> None:
    assert layer_region("us-east-1") == ("us-east-1", True)
    assert layer_region("cn-north-1") == ("cn-north-1", False)  # published from another account there
    region, known = layer_region(public_layers.Aws.REGION)
    assert region is None and known


def test_unknown_architecture_is_refused_with_the_layer_named() -> None:
    class Other:
        name = "riscv"

    with pytest.raises(
        ValueError, match="Lambda Web Adapter layer: no pinned layer for architecture 'riscv'"
    ):
        web_adapter_layer(Other())  # type: ignore[arg-type]
