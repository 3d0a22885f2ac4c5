"""preflight's bootstrap check asks for the version the real app's cloud assembly requires."""

from __future__ import annotations

import json

import pytest

from ai_factory.preflight import MIN_BOOTSTRAP_VERSION
from tests.infra.conftest import RealApp


@pytest.mark.synth
def test_min_bootstrap_version_is_what_the_assembly_requires(real_app: RealApp) -> None:
    manifest = json.loads((real_app.outdir / "manifest.json").read_text())
    required = [
        int(value)
        for artifact in manifest["artifacts"].values()
        for key, value in _walk(artifact)
        if key == "requiresBootstrapStackVersion"
    ]
    assert required and max(required) == MIN_BOOTSTRAP_VERSION


def _walk(node: object) -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((key, value))
            found += _walk(value)
    elif isinstance(node, list):
        for item in node:
            found += _walk(item)
    return found
