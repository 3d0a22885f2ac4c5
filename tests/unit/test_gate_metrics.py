"""The eval gate publishes GatePassRate (Team, Feature, Suite): validated against CloudWatch's API model with
a Stubber, skipped with a clear line when there are no AWS credentials, and wired into `ai-factory eval`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from ai_factory.cli.main import main
from ai_factory.evals import gate_metrics
from ai_factory.evals.gate_metrics import GateDimensions, PublishError, dimensions_for, publish_pass_rate
from ai_factory.evals.suite import load_suite

SUITE = """\
suite: smoke
description: one case the echo model passes, one it cannot
model: echo
messages:
  - {role: user, content: "Say {{word}}"}
gate: {min_pass_rate: 0.5}
cases:
  - id: echoes
    vars: {word: hello}
    assert: [{type: contains, value: hello}]
  - id: cannot
    vars: {word: bye}
    assert: [{type: contains, value: never-said}]
"""


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    folder = tmp_path / "repo" / "features" / "support" / "evals"
    folder.mkdir(parents=True)
    path = folder / "smoke.yaml"
    path.write_text(SUITE)
    return path


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_put_metric_data_has_the_contract_name_dimensions_and_value() -> None:
    client = boto3.client(
        "cloudwatch", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    dims = GateDimensions("support", "summarize-ticket", "summarize-ticket")
    with Stubber(client) as stub:
        stub.add_response(
            "put_metric_data",
            {},
            {
                "Namespace": "AIFactory",
                "MetricData": [
                    {
                        "MetricName": "GatePassRate",
                        "Dimensions": [
                            {"Name": "Team", "Value": "support"},
                            {"Name": "Feature", "Value": "summarize-ticket"},
                            {"Name": "Suite", "Value": "summarize-ticket"},
                        ],
                        "Value": 0.666667,
                        "Unit": "None",
                    }
                ],
            },
        )
        assert publish_pass_rate(dims, 2 / 3, client=client) is True
        stub.assert_no_pending_responses()


def test_refused_metric_is_an_error_naming_the_suite() -> None:
    client = boto3.client(
        "cloudwatch", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        stub.add_client_error("put_metric_data", "AccessDenied", "not authorized to cloudwatch:PutMetricData")
        with pytest.raises(PublishError, match=r"GatePassRate for suite smoke: .*AccessDenied"):
            publish_pass_rate(GateDimensions("t", "f", "smoke"), 1.0, client=client)


def test_without_credentials_nothing_is_sent(no_credentials: None) -> None:
    assert publish_pass_rate(GateDimensions("t", "f", "s"), 1.0, region="us-east-1") is False


def test_dimensions_come_from_the_suite_path_and_prompt_unless_given(suite_file: Path) -> None:
    suite = load_suite(suite_file)
    assert dimensions_for(suite) == GateDimensions("support", "smoke", "smoke")
    assert dimensions_for(suite, team="ops", feature="triage") == GateDimensions("ops", "triage", "smoke")
    shipped = load_suite(Path(__file__).resolve().parents[2] / "features/support/evals/summarize-ticket.yaml")
    assert dimensions_for(shipped) == GateDimensions("support", "summarize-ticket", "summarize-ticket")


def _eval(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["eval", *args, "--no-mlflow"], out=out), out.getvalue()


def test_eval_says_the_metric_was_not_published_without_credentials(
    suite_file: Path, tmp_path: Path, no_credentials: None
) -> None:
    code, text = _eval(str(suite_file), "--target", "local", "--out", str(tmp_path / "out"))
    assert code == 0, text
    assert "smoke: PASSED: 1/2 cases passed" in text
    assert "GatePassRate not published: no AWS credentials found" in text


def test_eval_publishes_its_pass_rate_with_credentials(
    suite_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        gate_metrics, "publish_pass_rate", lambda dims, rate, region=None: sent.append((dims, rate)) or True
    )
    code, text = _eval(
        str(suite_file), "--target", "local", "--out", str(tmp_path / "out"), "--feature", "smoky"
    )
    assert code == 0, text
    assert sent == [(GateDimensions("support", "smoky", "smoke"), 0.5)]
    assert "GatePassRate 0.50 published (Team=support, Feature=smoky, Suite=smoke)" in text

    sent.clear()
    code, text = _eval(str(suite_file), "--target", "local", "--out", str(tmp_path / "o2"), "--no-metrics")
    assert code == 0 and sent == [] and "GatePassRate" not in text
