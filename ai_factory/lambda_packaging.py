"""Stage the gateway Lambda code as a plain directory asset (no Docker needed).

The asset is the ``aif_gateway`` package plus its ``gateway_config.json`` (the runtime view of the model
catalog). boto3 comes from the Lambda runtime and Powertools from AWS's public Lambda layer, so nothing
has to be pip-installed into the asset and synth works offline.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from aws_cdk import Aws

import aif_gateway
from aif_gateway.config import CONFIG_FILE_NAME, GatewayConfig

GATEWAY_HANDLER = "aif_gateway.handler.lambda_handler"
SPILL_REPLAY_HANDLER = "aif_gateway.spill_replay.handler"

# AWS publishes the Powertools for AWS Lambda (Python) layer from this account in the commercial
# regions. China (aws-cn) and GovCloud regions publish it from other accounts: pass
# ``powertools_layer_arn`` to the construct there.
POWERTOOLS_LAYER_ACCOUNT = "017000801446"
POWERTOOLS_LAYER_NAME = "AWSLambdaPowertoolsPythonV3-python314-arm64"
DEFAULT_POWERTOOLS_LAYER_VERSION = 38

_EXCLUDED_DIRS = {"__pycache__"}
_EXCLUDED_SUFFIXES = (".pyc", ".pyo")


def gateway_source_dir() -> Path:
    """Where the installed ``aif_gateway`` package lives (lambdas/gateway/aif_gateway in this repo)."""
    return Path(aif_gateway.__file__).resolve().parent


def _source_files(source: Path) -> list[Path]:
    files: list[Path] = []
    for root, dirs, names in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d not in _EXCLUDED_DIRS)
        files.extend(Path(root) / n for n in sorted(names) if not n.endswith(_EXCLUDED_SUFFIXES))
    return files


def stage_gateway_asset(
    config: GatewayConfig,
    *,
    source_dir: Path | None = None,
    out_root: Path | None = None,
) -> Path:
    """Copy the gateway package and its config into a content-addressed folder and return that folder.

    The folder name is a hash of the code and the config, so the same inputs always give the same path
    (and CDK the same asset hash), and concurrent synths (pytest-xdist) never see a half-written folder:
    each builds in a private temporary folder and renames it into place.
    """
    source = source_dir or gateway_source_dir()
    root = out_root or Path(tempfile.gettempdir()) / "ai-factory-assets"
    config_json = config.to_json()
    files = _source_files(source)

    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(source).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    digest.update(config_json.encode())
    target = root / digest.hexdigest()[:32]
    if (target / "aif_gateway" / CONFIG_FILE_NAME).is_file():
        return target

    root.mkdir(parents=True, exist_ok=True)
    building = root / f".build-{uuid.uuid4().hex}"
    package = building / "aif_gateway"
    for file in files:
        dest = package / file.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, dest)
    (package / CONFIG_FILE_NAME).write_text(config_json, encoding="utf-8")
    try:
        building.rename(target)
    except OSError:
        # Another process staged the same content first; its folder is identical.
        shutil.rmtree(building, ignore_errors=True)
        if not (target / "aif_gateway" / CONFIG_FILE_NAME).is_file():
            raise
    return target


def powertools_layer_arn(version: int = DEFAULT_POWERTOOLS_LAYER_VERSION) -> str:
    """The public Powertools layer ARN in the stack's partition and region (CDK tokens)."""
    return (
        f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{POWERTOOLS_LAYER_ACCOUNT}:layer:"
        f"{POWERTOOLS_LAYER_NAME}:{version}"
    )
