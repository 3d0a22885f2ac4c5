"""The contract module: the names the runtime emits and reads are the ones the infrastructure declares,
and the documentation lists every metric."""

from __future__ import annotations

import ast
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aif_canary.handler import emf
from aif_canary.runner import CaseResult, SuiteResult

from aif_gateway import contract
from aif_gateway.metering import EmfMetricsSink
from aif_gateway.records import FeedbackRecord, UsageRecord

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "lambdas" / "gateway" / "aif_gateway" / "contract.py"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." if node.level else (node.module or "").split(".")[0])
    return names


def test_contract_imports_only_the_standard_library() -> None:
    # Every Lambda asset ships it alone (with an empty package __init__), and the library imports it.
    outside = {m for m in _imported_modules(CONTRACT) if m not in sys.stdlib_module_names}
    assert not outside, f"contract.py must import only the standard library, imports {sorted(outside)}"


def test_metric_names_are_unique_and_well_formed() -> None:
    names = [m.name for m in contract.METRICS]
    assert len(names) == len(set(names)), "a metric is declared twice"
    for metric in contract.METRICS:
        assert metric.unit in (contract.COUNT, contract.MILLISECONDS, contract.NO_UNIT), metric
        assert metric.namespace in (contract.METRICS_NAMESPACE, contract.CONNECTOR_METRICS_NAMESPACE)
        assert metric.dimension_sets and all(metric.dimension_sets), metric
        assert metric.description, metric
    declared = {v for v in vars(contract).values() if isinstance(v, contract.Metric)}
    assert declared == set(contract.METRICS), "a Metric constant is missing from METRICS"


def test_observability_doc_lists_every_metric() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text()
    missing = [m.name for m in contract.METRICS if f"`{m.name}`" not in doc]
    assert not missing, f"docs/observability.md does not list {missing}"


def _emf_metrics(text: str) -> list[tuple[str, str, str, list[list[str]]]]:
    """(namespace, name, unit, dimension sets) of every metric in EMF lines."""
    found = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                found.append(
                    (directive["Namespace"], metric["Name"], metric["Unit"], directive["Dimensions"])
                )
    return found


def _assert_declared(emitted: list[tuple[str, str, str, list[list[str]]]]) -> None:
    by_name = {m.name: m for m in contract.METRICS}
    assert emitted
    for namespace, name, unit, dimension_sets in emitted:
        assert name in by_name, f"{name} is emitted but not declared in the contract"
        metric = by_name[name]
        assert (namespace, unit) == (metric.namespace, metric.unit), name
        # Powertools adds its "service" dimension to every set, and a set of its own (service only).
        sets = {tuple(d for d in dims if d != "service") for dims in dimension_sets} - {()}
        assert sets <= set(metric.dimension_sets), (name, sets)


def test_gateway_emits_only_declared_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    sink = EmfMetricsSink(namespace=contract.METRICS_NAMESPACE, service="gw")
    for status, error in ((200, None), (429, "budget_exhausted"), (502, "upstream_error")):
        record = UsageRecord(
            "r1",
            datetime(2026, 11, 25, tzinfo=UTC),
            "support",
            "summarizer",
            "k1",
            "chat-fast",
            status,
            model_served="nova-lite" if status == 200 else None,
            input_tokens=10,
            output_tokens=5,
            cost_usd=0.001,
            latency_ms=42.0,
            guardrail_action="INTERVENED",
            error_type=error,
        )
        sink.emit(record, fell_back=True, breaker_opened=1)
    sink.emit_feedback(
        FeedbackRecord(
            request_id="r1",
            team="support",
            feature="summarizer",
            request_month="2026-11",
            score=1.0,
            submitted_at=datetime(2026, 11, 25, tzinfo=UTC),
            key_id="k1",
        )
    )
    emitted = _emf_metrics(capsys.readouterr().out)
    _assert_declared(emitted)
    assert {"Status2xx", "Status4xx", "Status5xx", "Throttled", "FeedbackScore"} <= {e[1] for e in emitted}


def test_canary_emits_only_declared_metrics() -> None:
    result = SuiteResult(
        name="smoke",
        cases=[CaseResult(id="c1", passed=True, assertions_passed=2, assertions=2, latency_ms=12.0)],
    )
    record = emf("support", "summarizer", result, contract.METRICS_NAMESPACE)
    _assert_declared(_emf_metrics(json.dumps(record)))
