"""cfn-lint and checkov over the real app's templates, and the checkov skips cdk-nag decisions write.

The scanners live in ``.venv-tools`` (``make setup`` installs them from ``requirements-tools.txt``):
checkov pins versions of boto3 and pydantic that clash with the project's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs

from ai_factory.platform.checkov_skips import (
    CHECKOV_ONLY,
    EQUIVALENTS,
    LAMBDA_ENVIRONMENT_REASON,
    acknowledged_rules,
    add_checkov_skips,
    secret_variable_names,
)
from ai_factory.platform.nag import PACKS, acknowledge
from tests.infra.conftest import RealApp

TOOLS = Path(__file__).resolve().parents[2] / ".venv-tools" / "bin"


def _tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make setup` (it installs requirements-tools.txt)")
    return str(path)


def _checkov(directory: Path) -> dict[str, Any]:
    """checkov's JSON report for the CloudFormation templates in ``directory`` (offline)."""
    run = subprocess.run(
        [
            _tool("checkov"),
            "--directory",
            str(directory),
            "--framework",
            "cloudformation",
            "--skip-download",
            "--compact",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode in (0, 1), run.stderr[-2000:]  # 1: there are failed checks
    report = json.loads(run.stdout)
    reports = report if isinstance(report, list) else [report]
    (cfn,) = [r for r in reports if r.get("check_type") == "cloudformation"]
    return dict(cfn)


@pytest.fixture(scope="module")
def checkov_report(real_app: RealApp) -> dict[str, Any]:
    return _checkov(real_app.outdir)


@pytest.mark.synth
def test_cfn_lint_finds_no_errors(real_app: RealApp) -> None:
    run = subprocess.run(
        [
            _tool("cfn-lint"),
            "--format",
            "json",
            "--non-zero-exit-code",
            "none",
            *map(str, real_app.templates),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    errors = [m for m in json.loads(run.stdout) if m["Level"] == "Error"]
    assert errors == [], json.dumps(errors, indent=1)[:4000]


@pytest.mark.synth
def test_checkov_finds_nothing_unskipped(checkov_report: dict[str, Any]) -> None:
    results = checkov_report["results"]
    failed = [(f["check_id"], f["resource"], f["file_path"]) for f in results["failed_checks"]]
    assert failed == []
    assert checkov_report["summary"]["parsing_errors"] == 0
    assert checkov_report["summary"]["passed"] > 100  # it really read the templates


@pytest.mark.synth
def test_every_checkov_skip_carries_a_reason(checkov_report: dict[str, Any]) -> None:
    skipped = checkov_report["results"]["skipped_checks"]
    assert skipped, "the real app acknowledges cdk-nag findings that checkov also reports"
    for check in skipped:
        comment = check["check_result"].get("suppress_comment", "")
        assert len(comment) > 60, (check["check_id"], check["resource"], comment)


@pytest.mark.synth
def test_lambda_environment_skip_holds_no_secret(real_app: RealApp) -> None:
    """LAMBDA_ENVIRONMENT_REASON says the variables are references: check every function it is on."""
    checked = 0
    for path in real_app.templates:
        for name, resource in json.loads(path.read_text())["Resources"].items():
            skips = resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
            if not any(s["id"] == "CKV_AWS_173" for s in skips):
                continue
            variables = resource["Properties"].get("Environment", {}).get("Variables", {})
            assert secret_variable_names(variables) == [], f"{path.name} {name}"
            checked += 1
    assert checked >= 5


def test_secret_variable_names() -> None:
    names = {
        "AIF_HMAC_SECRET_ARN": "arn:...",  # a reference to a secret
        "AIF_KEYS_TABLE": "t",
        "DB_PASSWORD": "x",
        "GITHUB_TOKEN": "y",
        "OPENAI_API_KEY": "z",
        "SIGNING_SECRET_NAME": "n",
    }
    assert secret_variable_names(names) == ["DB_PASSWORD", "GITHUB_TOKEN", "OPENAI_API_KEY"]


def test_equivalents_name_rules_of_the_registered_packs() -> None:
    for equivalent in EQUIVALENTS:
        assert equivalent.check.startswith("CKV_AWS_")
        assert equivalent.resource_type.startswith("AWS::")
        for rule in equivalent.rules:
            assert rule.split("-", 1)[0] in PACKS, rule
    assert len({e.check for e in EQUIVALENTS}) == len(EQUIVALENTS)
    for only in CHECKOV_ONLY:
        assert only.check.startswith("CKV_AWS_") and len(only.reason) > 60


def test_acknowledged_rules_nearest_scope_wins_and_granular_ids_count() -> None:
    app = cdk.App()
    stack = cdk.Stack(app, "S")
    queue = sqs.Queue(stack, "Q", enforce_ssl=True)
    acknowledge(stack, {"AwsSolutions-SQS3": "stack-wide reason", "AwsSolutions-IAM5[Resource::*]": "wild"})
    acknowledge(queue, {"AwsSolutions-SQS3": "the queue's own reason"})
    rules = acknowledged_rules(queue.node.default_child)  # type: ignore[arg-type]
    assert rules["AwsSolutions-SQS3"] == "the queue's own reason"
    assert rules["AwsSolutions-IAM5"] == "wild"


def _two_functions(outdir: Path) -> None:
    """Two identical functions; only ``Acked`` acknowledges the NIST Lambda findings."""
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "Skips", env=cdk.Environment(account="111122223333", region="us-east-1"))
    reasons = {
        "NIST.800.53.R5-LambdaDLQ": "DLQ reason: invoked synchronously by the test, errors go back to it.",
        "NIST.800.53.R5-LambdaInsideVPC": "VPC reason: calls only AWS APIs over TLS, accepts no connections.",
        "NIST.800.53.R5-LambdaConcurrency": "Concurrency reason: bounded by the test that calls it, once.",
    }
    for name in ("Acked", "Plain"):
        function = lambda_.Function(
            stack,
            name,
            runtime=lambda_.Runtime.PYTHON_3_13,
            handler="index.handler",
            code=lambda_.Code.from_inline("def handler(event, context):\n    return event\n"),
            environment={"TABLE_NAME": "t"},
        )
        if name == "Acked":
            acknowledge(function.node.default_child, reasons)  # type: ignore[arg-type]
    # The mechanism apply_nag_packs hooks in, without the packs (the plain function would fail them).
    add_checkov_skips(app)
    app.synth()


@pytest.mark.synth
def test_acknowledged_nag_rules_become_checkov_skips_with_the_same_reason(tmp_path: Path) -> None:
    _two_functions(tmp_path)
    template = json.loads((tmp_path / "Skips.template.json").read_text())
    functions = {
        name[:5]: r for name, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Function"
    }
    acked = functions["Acked"]["Metadata"]["checkov"]["skip"]
    assert {s["id"]: s["comment"] for s in acked} == {
        "CKV_AWS_115": "Concurrency reason: bounded by the test that calls it, once.",
        "CKV_AWS_116": "DLQ reason: invoked synchronously by the test, errors go back to it.",
        "CKV_AWS_117": "VPC reason: calls only AWS APIs over TLS, accepts no connections.",
        "CKV_AWS_173": LAMBDA_ENVIRONMENT_REASON,
    }
    plain = functions["Plain"]["Metadata"]["checkov"]["skip"]
    assert [s["id"] for s in plain] == ["CKV_AWS_173"]

    # checkov itself honours the skips and still reports the unacknowledged function.
    report = _checkov(tmp_path)
    failed = {(f["check_id"], f["resource"].split(".")[-1][:5]) for f in report["results"]["failed_checks"]}
    assert {("CKV_AWS_115", "Plain"), ("CKV_AWS_116", "Plain"), ("CKV_AWS_117", "Plain")} <= failed
    assert not {f for f in failed if f[1] == "Acked"}
    skipped = {(s["check_id"], s["resource"].split(".")[-1][:5]) for s in report["results"]["skipped_checks"]}
    assert {("CKV_AWS_115", "Acked"), ("CKV_AWS_116", "Acked"), ("CKV_AWS_117", "Acked")} <= skipped
