"""Stage the gateway Lambda code as a plain directory asset (no Docker needed).

The asset is the ``aif_gateway`` package plus its ``gateway_config.json`` (the runtime view of the model
catalog) and the pure-Python OpenTelemetry API and SDK, copied from the installed (pinned) distributions.
boto3 comes from the Lambda runtime and Powertools from AWS's public Lambda layer (``public_layers``), so
nothing has to be pip-installed into the asset and synth works offline.
Executable files (``run.sh``, the gateway's start command under the Lambda Web Adapter) keep their
execute bit in the staged folder, and so in the asset's zip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import feature_key_provisioner

import aif_gateway
from ai_factory.platform.public_layers import (
    DEFAULT_POWERTOOLS_LAYER_VERSION,
    POWERTOOLS_LAYER_ACCOUNT,
    powertools_layer,
)
from aif_gateway.config import CONFIG_FILE_NAME, GatewayConfig

GATEWAY_HANDLER = "aif_gateway.handler.lambda_handler"
"""The buffered entry (one API Gateway event in, one proxy response out)."""
GATEWAY_SERVER_HANDLER = "aif_gateway/run.sh"
"""The streaming entry: the start command the Lambda Web Adapter runs (the gateway's HTTP server)."""
SPILL_REPLAY_HANDLER = "aif_gateway.spill_replay.handler"
USAGE_RECOVERY_HANDLER = "aif_gateway.usage_recovery.handler"
GATEWAY_VENDORED_DISTRIBUTIONS = (
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-semantic-conventions",
)
"""Pure-Python distributions the gateway asset ships (``aif_gateway.tracing`` and ``trace_export``)."""

__all__ = [
    "DEFAULT_POWERTOOLS_LAYER_VERSION",
    "GATEWAY_HANDLER",
    "GATEWAY_SERVER_HANDLER",
    "GATEWAY_VENDORED_DISTRIBUTIONS",
    "POWERTOOLS_LAYER_ACCOUNT",
    "POWERTOOLS_LAYER_NAME",
    "SPILL_REPLAY_HANDLER",
    "USAGE_RECOVERY_HANDLER",
    "contract_files",
    "distribution_files",
    "gateway_source_dir",
    "powertools_layer_arn",
    "stage_asset",
    "stage_gateway_asset",
]

POWERTOOLS_LAYER_NAME = powertools_layer().name
"""The gateway functions' (arm64) Powertools layer name."""

_EXCLUDED_DIRS = {"__pycache__"}
_EXCLUDED_SUFFIXES = (".pyc", ".pyo")
_INSTALLER_RECORDS = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def gateway_source_dir() -> Path:
    """Where the installed ``aif_gateway`` package lives (lambdas/gateway/aif_gateway in this repo)."""
    return Path(aif_gateway.__file__).resolve().parent


def contract_files() -> list[Path]:
    """``aif_gateway/__init__.py`` and ``aif_gateway/contract.py``: what a Lambda asset other than the
    gateway's ships so its runtime can import ``aif_gateway.contract`` (standard library only)."""
    source = gateway_source_dir()
    return [source / "__init__.py", source / "contract.py"]


def _source_files(source: Path) -> list[Path]:
    files: list[Path] = []
    for root, dirs, names in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d not in _EXCLUDED_DIRS)
        files.extend(Path(root) / n for n in sorted(names) if not n.endswith(_EXCLUDED_SUFFIXES))
    return files


def distribution_files(names: Sequence[str] = GATEWAY_VENDORED_DISTRIBUTIONS) -> dict[str, Path]:
    """Every file of the installed distributions ``names`` (their modules and ``.dist-info``, whose entry
    points the OpenTelemetry API reads), by path relative to site-packages; compiled files left out.
    They are pure Python and pinned in constraints.txt, so the build machine's copies serve Lambda's
    Python and architecture unchanged."""
    from importlib.metadata import distribution

    files: dict[str, Path] = {}
    for name in names:
        dist = distribution(name)
        for entry in dist.files or ():
            path = Path(str(dist.locate_file(entry)))
            relative = entry.as_posix()
            if (
                relative.startswith("..")
                or "__pycache__" in relative
                or relative.endswith(_EXCLUDED_SUFFIXES)
            ):
                continue  # console scripts outside site-packages, bytecode
            if entry.name in _INSTALLER_RECORDS:
                continue  # written by the installer, not the wheel: they would vary the asset's hash
            if path.is_file():
                files[relative] = path
    return files


def stage_asset(
    prefix: str,
    packages: Mapping[str, Path | Sequence[Path]],
    generated: Mapping[str, str] | None = None,
    out_root: Path | None = None,
    vendored: Mapping[str, Path] | None = None,
) -> Path:
    """Stage a Lambda code directory in a content-addressed folder and return that folder.

    ``packages`` maps a folder name in the asset to its source: a directory (copied whole, without
    ``__pycache__`` and compiled files) or a list of files (copied flat into that folder).
    ``generated`` maps a relative path in the asset to text written there (e.g. a config file).
    ``vendored`` maps a relative path in the asset to a file copied there (``distribution_files``).
    The folder, ``<out_root>/<prefix><hash>`` (default root: ``ai-factory-assets`` in the temp dir), is
    named by a hash of every path and byte, so the same inputs always give the same path (and CDK the
    same asset hash). Concurrent synths (pytest-xdist) never see a half-written folder: each builds in
    a private folder and renames it into place; losing that race means the folder is already there.
    """
    files: list[tuple[str, Path]] = []
    for package, source in packages.items():
        if isinstance(source, Path):
            files += [(f"{package}/{f.relative_to(source).as_posix()}", f) for f in _source_files(source)]
        else:
            files += [(f"{package}/{f.name}", f) for f in source]
    files += sorted((vendored or {}).items())
    texts = {name: text.encode("utf-8") for name, text in (generated or {}).items()}

    digest = hashlib.sha256()
    for name, file in files:
        digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0" + _mode_tag(file))
    for name, data in sorted(texts.items()):
        digest.update(name.encode() + b"\0" + data + b"\0")
    root = out_root or Path(tempfile.gettempdir()) / "ai-factory-assets"
    target = root / f"{prefix}{digest.hexdigest()[:32]}"
    if target.is_dir():  # only ever created complete, by the rename below
        return target

    root.mkdir(parents=True, exist_ok=True)
    building = root / f".build-{uuid.uuid4().hex}"
    for name, file in files:
        dest = building / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, dest)
        if _is_executable(file):
            dest.chmod(dest.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    for name, data in texts.items():
        dest = building / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    try:
        building.rename(target)
    except OSError:
        # Another process staged the same content first; its folder is identical.
        shutil.rmtree(building, ignore_errors=True)
        if not target.is_dir():
            raise
    return target


def stage_gateway_asset(
    config: GatewayConfig,
    *,
    source_dir: Path | None = None,
    out_root: Path | None = None,
) -> Path:
    """The ``aif_gateway`` package, its ``gateway_config.json`` and the OpenTelemetry API and SDK (the
    gateway's tracing; neither the runtime nor the Powertools layer ships them) in a content-addressed
    folder."""
    return stage_asset(
        "",
        {"aif_gateway": source_dir or gateway_source_dir()},
        {f"aif_gateway/{CONFIG_FILE_NAME}": config.to_json()},
        out_root,
        vendored=distribution_files(),
    )


def _is_executable(file: Path) -> bool:
    return bool(file.stat().st_mode & stat.S_IXUSR)


def _mode_tag(file: Path) -> bytes:
    # The execute bit is part of the content: a start script that lost it would not run.
    return b"x" if _is_executable(file) else b"-"


def powertools_layer_arn(version: int = DEFAULT_POWERTOOLS_LAYER_VERSION, region: str | None = None) -> str:
    """The public (arm64) Powertools layer ARN in the stack's partition and ``region`` (default: token)."""
    return powertools_layer(version=version).arn(region)


# The runtime lives in lambdas/feature_key_provisioner (installed as the package ``feature_key_provisioner``).
_PROVISIONER_DIR = Path(feature_key_provisioner.__file__).resolve().parent
# The provisioner needs only these light gateway modules (standard library + boto3).
_GATEWAY_MODULES = ("__init__.py", "contract.py", "records.py", "dynamo_store.py")


def stage_provisioner_asset(out_root: Path | None = None, generated: Mapping[str, str] | None = None) -> Path:
    """A content-addressed folder with ``feature_key_provisioner/`` and the gateway modules it imports,
    plus ``generated`` files (the shared provisioner's routes file)."""
    gateway_dir = Path(aif_gateway.__file__).resolve().parent
    return stage_asset(
        "provisioner-",
        {
            "feature_key_provisioner": sorted(_PROVISIONER_DIR.glob("*.py")),
            "aif_gateway": [gateway_dir / name for name in _GATEWAY_MODULES],
        },
        generated,
        out_root=out_root,
    )
