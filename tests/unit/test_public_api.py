"""The package root exports the documented public API, and nothing documented is missing."""

from __future__ import annotations

import re
from pathlib import Path

import ai_factory

DOC = Path(__file__).resolve().parents[2] / "docs" / "library.md"


def _documented() -> list[str]:
    text = DOC.read_text(encoding="utf-8").split("## Public API", 1)[1]
    return re.findall(r"^\| `([A-Za-z_]+)` \|", text, flags=re.MULTILINE)


def test_every_documented_name_is_exported_and_importable() -> None:
    documented = _documented()
    assert len(documented) >= 20
    for name in documented:
        assert name in ai_factory.__all__, f"{name} is documented but not in ai_factory.__all__"
        assert getattr(ai_factory, name) is not None


def test_every_export_is_documented_once() -> None:
    documented = _documented()
    assert sorted(documented) == sorted(ai_factory.__all__)
    assert len(set(documented)) == len(documented)


def test_the_issue_s_missing_constructs_are_exported() -> None:
    from ai_factory.constructs.audit_trail import AuditTrail
    from ai_factory.constructs.canary import FeatureCanary
    from ai_factory.constructs.data_connector import DataConnector
    from ai_factory.constructs.mlflow_tracking import MlflowTracking
    from ai_factory.constructs.sagemaker_endpoint import SageMakerEndpoint

    for cls in (DataConnector, FeatureCanary, AuditTrail, MlflowTracking, SageMakerEndpoint):
        assert getattr(ai_factory, cls.__name__) is cls


def test_unknown_names_raise_attribute_error() -> None:
    try:
        ai_factory.NotAConstruct  # noqa: B018
    except AttributeError as exc:
        assert "NotAConstruct" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")
