"""cdk.json (the platform's and the team-repo example's) carries every feature flag the installed
aws-cdk-lib recommends, at the recommended value unless this file says why not (docs/product-teams.md)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import aws_cdk
import pytest

ROOT = Path(__file__).resolve().parents[2]
CDK_JSON_FILES = [ROOT / "cdk.json", ROOT / "examples" / "team-repo" / "cdk.json"]

# Flags set against the recommendation, with the reason (also in docs/product-teams.md).
DELIBERATE = {
    # Strong references keep CloudFormation from deleting a producer (the gateway) while consumers
    # (team stacks) still use its values; weak references would let features call a deleted resource.
    "@aws-cdk/core:defaultCrossStackReferences": "strong",
}


def recommended_flags() -> dict[str, object]:
    """The recommendations shipped inside the installed aws-cdk-lib (what `cdk flags` compares with)."""
    jsii_dir = Path(aws_cdk.__file__).parent / "_jsii"
    tarball = next(jsii_dir.glob("aws-cdk-lib@*.jsii.tgz"))
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/recommended-feature-flags.json")
        assert member is not None
        return dict(json.load(member))


@pytest.mark.parametrize("cdk_json", CDK_JSON_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_recommended_flag_is_configured(cdk_json: Path) -> None:
    context = json.loads(cdk_json.read_text(encoding="utf-8"))["context"]
    recommended = recommended_flags()
    assert recommended, "aws-cdk-lib ships no recommendations: the test would prove nothing"

    unconfigured = sorted(flag for flag in recommended if flag not in context)
    assert unconfigured == [], f"{cdk_json.name}: run cdk flags --set --unconfigured --recommended"
    differing = {
        flag: context[flag]
        for flag, value in recommended.items()
        if context[flag] != DELIBERATE.get(flag, value)
    }
    assert differing == {}
