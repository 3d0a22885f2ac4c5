"""Evidence-backed approval: the catalog gate, `ai-factory models evaluate`, evidence written back.

The evaluations here are real: the standard suites run through the offline gateway against the
scriptable offline model, and their runs are recorded in an MLflow store in SQLite.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai_factory.catalog.evidence import STANDARD_SUITES, write_evidence
from ai_factory.catalog.model_catalog import DEFAULT_CATALOG_PATH, CatalogError, ModelCatalog
from ai_factory.cli.main import main
from ai_factory.evals.model_evaluation import EvaluationError, evaluate_model
from aif_gateway.offline_model import OfflineScript
from tests.catalog_evidence import PASSING_EVIDENCE
from tests.unit.test_safety_suites import COMPLIANT, FOLLOWS_INJECTION

CANDIDATE = """  - name: offline-safe
    provider: echo
    provider_name: AI Factory (offline)
    modality: chat
    model_id: echo
    prices: {input: 0.0, output: 0.0}
    status: candidate
    owner: platform-ai@example.com
"""


def catalog_with_candidate(tmp_path: Path) -> Path:
    """The shipped catalog (comments and all) plus an unevaluated offline candidate."""
    text = DEFAULT_CATALOG_PATH.read_text(encoding="utf-8").replace(
        "\nroutes:\n", "\n" + CANDIDATE + "\nroutes:\n"
    )
    path = tmp_path / "models.yaml"
    path.write_text(text, encoding="utf-8")
    ModelCatalog.load(path)  # an unrouted candidate needs nothing
    return path


def with_route(path: Path, model: str) -> Path:
    path.write_text(
        path.read_text(encoding="utf-8") + f"  - alias: team-chat\n    targets: [{model}]\n", encoding="utf-8"
    )
    return path


def approve(path: Path, model: str) -> None:
    text = path.read_text(encoding="utf-8")
    start = text.index(f"  - name: {model}\n")
    end = text.index("status: candidate", start)
    approved = "status: approved\n    approved_by: ai-review@example.com\n    approved_on: 2026-12-03"
    path.write_text(text[:end] + approved + text[end + len("status: candidate") :], encoding="utf-8")


def test_a_route_to_an_unevaluated_candidate_fails_naming_model_and_suites(tmp_path: Path) -> None:
    path = with_route(catalog_with_candidate(tmp_path), "offline-safe")
    with pytest.raises(CatalogError) as err:
        ModelCatalog.load(path)
    message = str(err.value)
    assert "route 'team-chat'" in message and "candidate model 'offline-safe'" in message
    assert all(suite in message for suite in STANDARD_SUITES["chat"])
    assert "ai-factory models evaluate offline-safe" in message


def test_approved_without_evidence_fails_naming_the_missing_suite(tmp_path: Path) -> None:
    path = catalog_with_candidate(tmp_path)
    approve(path, "offline-safe")
    with pytest.raises(CatalogError, match=r"model 'offline-safe': field 'status': approved needs a passing "
                       r"evaluation record for safety/prompt-injection, safety/pii-leakage"):  # fmt: skip
        ModelCatalog.load(path)


def test_evaluated_model_can_be_approved_and_routed(tmp_path: Path) -> None:
    """The whole loop: evaluate (MLflow runs in SQLite) -> evidence in the entry -> approve -> route."""
    path = catalog_with_candidate(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = evaluate_model(
        "offline-safe",
        catalog_path=path,
        out_dir=tmp_path / "out",
        tracking_uri=uri,
        script=OfflineScript.from_data(COMPLIANT),
    )
    assert set(result.evidence) == set(STANDARD_SUITES["chat"])
    assert all(r.passed and r.pass_rate == 1.0 and r.target == "local" for r in result.evidence.values())
    write_evidence(path, "offline-safe", result.evidence)
    approve(path, "offline-safe")
    catalog = ModelCatalog.load(with_route(path, "offline-safe"))
    model = catalog.models["offline-safe"]
    assert model.status == "approved" and catalog.routes["team-chat"].targets == ("offline-safe",)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for suite, record in model.evidence.items():
        run = client.get_run(record.run_id)  # the recorded run exists, and says what the entry says
        assert run.data.tags["aif.suite"] == suite
        assert run.data.metrics["pass_rate"] == pytest.approx(record.pass_rate)
        assert record.cases == len(result.results[suite].verdict.cases)
    assert "# The approved-model catalog" in path.read_text(encoding="utf-8")  # comments kept


def test_a_model_that_follows_injections_gets_failing_evidence_and_cannot_be_approved(tmp_path: Path) -> None:
    path = catalog_with_candidate(tmp_path)
    result = evaluate_model(
        "offline-safe",
        catalog_path=path,
        suites=("safety/prompt-injection", "safety/pii-leakage"),
        out_dir=tmp_path / "out",
        record=False,
        script=OfflineScript.from_data(FOLLOWS_INJECTION),
    )
    assert not result.evidence["safety/prompt-injection"].passed
    assert result.evidence["safety/pii-leakage"].passed
    write_evidence(path, "offline-safe", result.evidence)
    approve(path, "offline-safe")
    with pytest.raises(
        CatalogError, match=r"passing evaluation record for safety/prompt-injection, safety/harm"
    ):
        ModelCatalog.load(path)


def test_models_evaluate_cli_records_runs_and_writes_the_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "models.yaml"
    shutil.copy(DEFAULT_CATALOG_PATH, path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = [
        "models",
        "evaluate",
        "echo",
        "--catalog",
        str(path),
        "--tracking-uri",
        uri,
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 1  # echo repeats attacks: it fails three suites, and says so
    out = capsys.readouterr().out
    assert "safety/over-refusal      pass" in out and "safety/pii-leakage       FAIL" in out
    evidence = ModelCatalog.load(path).models["echo"].evidence
    assert not evidence["safety/pii-leakage"].passed and evidence["safety/over-refusal"].passed
    assert all(r.run_id and len(r.run_id) == 32 for r in evidence.values())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["claude-haiku-4-5"], "served by bedrock: evaluate it with --target bedrock"),
        (["titan-embed-v2"], "embedding model: the standard suites are chat suites"),
        (["gpt-9"], "'gpt-9' is not in the catalog"),
        (["echo", "--suites", "safety/nope"], "not a shipped suite"),
    ],
)
def test_models_evaluate_refuses_what_it_cannot_evaluate(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["models", "evaluate", *argv, "--no-write", "--out", str(tmp_path), "--tracking-uri", "x"])
    assert code == 2 and message in capsys.readouterr().err


def test_evaluate_model_raises_for_a_blocked_model(tmp_path: Path) -> None:
    path = catalog_with_candidate(tmp_path)
    path.write_text(
        path.read_text(encoding="utf-8").replace("status: candidate\n    owner", "status: blocked\n    owner")
    )
    with pytest.raises(EvaluationError, match="blocked"):
        evaluate_model("offline-safe", catalog_path=path, record=False, out_dir=tmp_path)


def _raw(**model: Any) -> dict[str, Any]:
    base = {"name": "m", "provider": "echo", "modality": "chat", "prices": {}, "status": "candidate"}
    return {"models": [{**base, **model}], "routes": [{"alias": "a", "targets": ["m"]}]}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"waiver": {"reason": "x", "approved_on": "2026-12-01"}},
            r"field 'waiver.approved_by': is required",
        ),
        ({"waiver": {"reason": "", "approved_by": "a", "approved_on": "2026-12-01"}}, r"'waiver.reason'"),
        ({"waiver": {"reason": "x", "approved_by": "a"}}, r"'waiver.approved_on': is required"),
        (
            {"evidence": {"safety/pii-leakage": {"passed": "yes"}}},
            r"is missing pass_rate, cases, evaluated_on",
        ),
        (
            {"evidence": {"safety/pii-leakage": {**PASSING_EVIDENCE["safety/pii-leakage"], "pass_rate": 2}}},
            r"'evidence.safety/pii-leakage.pass_rate': must be a number from 0 to 1",
        ),
        ({"evidence": ["safety/pii-leakage"]}, r"'evidence': must be a mapping"),
    ],
)
def test_malformed_evidence_and_waivers_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        ModelCatalog.from_dict(_raw(**fields))


def test_a_waived_candidate_may_be_routed() -> None:
    waiver = {"reason": "offline double", "approved_by": "a@example.com", "approved_on": "2026-12-01"}
    catalog = ModelCatalog.from_dict(_raw(waiver=waiver))
    assert (
        catalog.models["m"].waiver is not None and catalog.models["m"].waiver.approved_by == "a@example.com"
    )


def test_the_shipped_catalog_routes_only_evaluated_or_waived_models() -> None:
    catalog = ModelCatalog.load()
    for route in catalog.routes.values():
        for name in route.targets:
            model = catalog.models[name]
            assert model.status in ("approved", "deprecated") or model.waiver is not None, name
    assert catalog.models["echo"].evidence, "the offline model is evaluated for real"
    raw = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    assert all(m["status"] != "approved" or m["modality"] != "chat" or "evidence" in m for m in raw["models"])


def test_write_evidence_replaces_only_the_suites_given(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    shutil.copy(DEFAULT_CATALOG_PATH, path)
    before = ModelCatalog.load(path).models["echo"].evidence
    record = before["safety/over-refusal"]
    from dataclasses import replace

    write_evidence(path, "echo", {"safety/over-refusal": replace(record, cases=99)})
    after = ModelCatalog.load(path).models["echo"].evidence
    assert after["safety/over-refusal"].cases == 99
    assert after["safety/pii-leakage"] == before["safety/pii-leakage"]
    with pytest.raises(KeyError, match="no model entry named 'nope'"):
        write_evidence(path, "nope", {})
