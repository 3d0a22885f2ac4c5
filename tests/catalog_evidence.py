"""Catalog fixtures' approval evidence: a passing record of every standard suite.

Approved chat models need it (``ai_factory.catalog.evidence``); test catalogs that are about something
else (prices, routes, SageMaker) add it so their models stay approved.
"""

from __future__ import annotations

from typing import Any

from ai_factory.catalog.evidence import STANDARD_SUITES

PASSING_EVIDENCE: dict[str, Any] = {
    suite: {"passed": True, "pass_rate": 1.0, "cases": 5, "evaluated_on": "2026-12-01", "run_id": f"run-{i}"}
    for i, suite in enumerate(STANDARD_SUITES["chat"])
}
# The same as YAML flow text, for catalogs written as strings.
PASSING_EVIDENCE_YAML = (
    "{"
    + ", ".join(
        f"{suite}: {{passed: true, pass_rate: 1.0, cases: 5, evaluated_on: 2026-12-01}}"
        for suite in STANDARD_SUITES["chat"]
    )
    + "}"
)


def approved_shipped_data() -> dict[str, Any]:
    """The shipped catalog as data, with its waived candidates approved on passing evidence: for tests of
    what approved models do (publishing, aliases), independent of which models are evaluated today."""
    import yaml

    from ai_factory.catalog.model_catalog import DEFAULT_CATALOG_PATH

    data: dict[str, Any] = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    for model in data["models"]:
        waiver = model.pop("waiver", None)
        if model["status"] == "candidate" and waiver:
            model.update(
                status="approved",
                approved_by=waiver["approved_by"],
                approved_on=waiver["approved_on"],
                evidence=PASSING_EVIDENCE,
            )
    return data


def approved_shipped_catalog() -> Any:
    """``approved_shipped_data`` as a ``ModelCatalog`` (its source: the shipped file's path)."""
    from ai_factory.catalog.model_catalog import DEFAULT_CATALOG_PATH, ModelCatalog

    return ModelCatalog.from_dict(approved_shipped_data(), source=str(DEFAULT_CATALOG_PATH))
