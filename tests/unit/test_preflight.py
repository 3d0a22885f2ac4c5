"""``ai-factory preflight``: each read-only check against the real API shapes.

moto serves STS, SSM and Lake Formation; botocore Stubber (which validates requests and responses
against the service model) serves CloudFormation (moto's needs extras the project does not install),
Bedrock's model-availability and use-case APIs, Service Quotas and Lambda's layer lookup, which moto does
not implement.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.stub import Stubber
from moto import mock_aws

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.cli.main import main
from ai_factory.cli.preflight import cmd_preflight
from ai_factory.preflight import (
    LAMBDA_CONCURRENCY_QUOTA,
    MIN_BOOTSTRAP_VERSION,
    Status,
    bedrock_models,
    check_anthropic_use_case,
    check_bedrock_token_quotas,
    check_bootstrap,
    check_cloudtrail,
    check_lake_formation,
    check_lambda_concurrency,
    check_models,
    check_powertools_layer,
    check_reserved_concurrency,
    match_token_quota,
    powertools_layer,
    run_preflight,
)
from tests.catalog_evidence import PASSING_EVIDENCE

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
TESTED_POWERTOOLS = metadata.version("aws-lambda-powertools")
CATALOG = ModelCatalog.load()
EXEC_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def stubbed(service: Any) -> tuple[BaseClient, Stubber]:
    client = boto3.client(service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def toolkit(stub: Stubber, status: str | None = "UPDATE_COMPLETE") -> None:
    """The DescribeStacks answer for CDKToolkit: the stack in ``status``, or no such stack (None)."""
    if status is None:
        stub.add_client_error(
            "describe_stacks",
            service_error_code="ValidationError",
            service_message="Stack with id CDKToolkit does not exist",
            expected_params={"StackName": "CDKToolkit"},
        )
        return
    stack = {"StackName": "CDKToolkit", "CreationTime": "2026-01-01T00:00:00Z", "StackStatus": status}
    stub.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "CDKToolkit"})


def bootstrap_version(version: int = 30) -> None:
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/cdk-bootstrap/hnb659fds/version", Value=str(version), Type="String", Overwrite=True
    )


def availability(model_id: str, **overrides: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "modelId": model_id,
        "agreementAvailability": {"status": "AVAILABLE"},
        "authorizationStatus": "AUTHORIZED",
        "entitlementAvailability": "AVAILABLE",
        "regionAvailability": "AVAILABLE",
    }
    answer.update(overrides)
    return answer


def quota(service: str, code: str, name: str, value: float) -> dict[str, Any]:
    return {
        "ServiceCode": service,
        "ServiceName": service,
        "QuotaArn": f"arn:aws:servicequotas:{REGION}:{ACCOUNT}:{service}/{code}",
        "QuotaCode": code,
        "QuotaName": name,
        "Value": value,
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
    }


BEDROCK_QUOTAS = [
    quota(
        "bedrock",
        "L-AAAA0001",
        "Cross-region model inference tokens per minute for Anthropic Claude Haiku 4.5",
        4e6,
    ),
    quota(
        "bedrock",
        "L-AAAA0002",
        "On-demand model inference tokens per minute for Anthropic Claude Haiku 4.5",
        2e6,
    ),
    quota(
        "bedrock",
        "L-AAAA0003",
        "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1 1M Context Length",
        1e6,
    ),
    quota(
        "bedrock",
        "L-AAAA0004",
        "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1",
        2e6,
    ),
    quota(
        "bedrock", "L-AAAA0005", "Cross-region model inference tokens per minute for Amazon Nova Lite", 0.0
    ),
    quota(
        "bedrock",
        "L-AAAA0006",
        "Cross-region model inference requests per minute for Amazon Nova Lite",
        2000.0,
    ),
]


def layer_answer(description: str, runtimes: list[str] | None = None, arch: str = "arm64") -> dict[str, Any]:
    arn, runtime, _ = powertools_layer("aws", REGION)
    return {
        "Content": {"Location": "https://example.invalid/layer.zip", "CodeSha256": "abc", "CodeSize": 1},
        "LayerArn": arn.rsplit(":", 1)[0],
        "LayerVersionArn": arn,
        "Description": description,
        "CreatedDate": "2026-10-01T00:00:00.000+0000",
        "Version": int(arn.rsplit(":", 1)[1]),
        "CompatibleRuntimes": runtimes or [runtime],
        "CompatibleArchitectures": [arch],
    }


# ------------------------------------------------------------------------------------ CDK bootstrap


def test_bootstrap_missing_stack_blocks(aws: None) -> None:
    cfn, stub = stubbed("cloudformation")
    toolkit(stub, None)
    with stub:
        (finding,) = check_bootstrap(cfn, boto3.client("ssm"), "hnb659fds", "CDKToolkit")
    assert (finding.status, finding.message) == (Status.FAIL, "not bootstrapped")
    assert "cdk bootstrap" in finding.fix


def test_bootstrap_failed_stack_blocks(aws: None) -> None:
    cfn, stub = stubbed("cloudformation")
    toolkit(stub, "ROLLBACK_COMPLETE")
    with stub:
        (finding,) = check_bootstrap(cfn, boto3.client("ssm"), "hnb659fds", "CDKToolkit")
    assert finding.status is Status.FAIL and "ROLLBACK_COMPLETE" in finding.message


def test_bootstrap_too_old_blocks_and_current_passes(aws: None) -> None:
    cfn, stub = stubbed("cloudformation")
    for _ in range(3):
        toolkit(stub)
    bootstrap_version(MIN_BOOTSTRAP_VERSION - 1)
    with stub:
        (old,) = check_bootstrap(cfn, boto3.client("ssm"), "hnb659fds", "CDKToolkit")
        assert old.status is Status.FAIL and f"needs {MIN_BOOTSTRAP_VERSION}" in old.message
        bootstrap_version(30)
        (ok,) = check_bootstrap(cfn, boto3.client("ssm"), "hnb659fds", "CDKToolkit")
        assert ok.status is Status.OK and "version 30" in ok.message
        # Another qualifier has no parameter: that bootstrap is missing.
        (other,) = check_bootstrap(cfn, boto3.client("ssm"), "custom123", "CDKToolkit")
        assert other.status is Status.FAIL and "custom123" in other.message


# ------------------------------------------------------------------------------------------ Bedrock


def test_models_report_access_agreement_and_region() -> None:
    client, stub = stubbed("bedrock")
    models = bedrock_models(CATALOG, REGION)
    assert [m.name for m in models] == [
        "claude-haiku-4-5",
        "claude-sonnet-4-5",
        "nova-lite",
        "titan-embed-v2",
    ]
    answers = {
        "claude-haiku-4-5": availability(models[0].model_id),
        "claude-sonnet-4-5": availability(
            models[1].model_id, agreementAvailability={"status": "NOT_AVAILABLE"}
        ),
        "nova-lite": availability(models[2].model_id, entitlementAvailability="NOT_AVAILABLE"),
    }
    for model in models[:3]:
        stub.add_response(
            "get_foundation_model_availability", answers[model.name], {"modelId": model.model_id}
        )
    stub.add_client_error(
        "get_foundation_model_availability",
        service_error_code="AccessDeniedException",
        service_message="not allowed bedrock:GetFoundationModelAvailability",
        http_status_code=403,
        expected_params={"modelId": models[3].model_id},
    )
    with stub:
        findings = {f.subject: f for f in check_models(client, CATALOG, REGION)}
    stub.assert_no_pending_responses()
    assert findings["claude-haiku-4-5"].status is Status.OK
    sonnet = findings["claude-sonnet-4-5"]
    assert sonnet.status is Status.FAIL and "Marketplace" in sonnet.message
    assert "aws-marketplace:Subscribe" in sonnet.fix
    nova = findings["nova-lite"]
    assert nova.status is Status.FAIL and "no model access" in nova.message
    titan = findings["titan-embed-v2"]
    assert titan.status is Status.UNKNOWN and "AccessDeniedException" in titan.message


def test_pending_agreement_warns() -> None:
    client, stub = stubbed("bedrock")
    for model in bedrock_models(CATALOG, REGION):
        stub.add_response(
            "get_foundation_model_availability",
            availability(model.model_id, agreementAvailability={"status": "PENDING"}),
        )
    with stub:
        statuses = {f.status for f in check_models(client, CATALOG, REGION)}
    assert statuses == {Status.WARN}


def test_anthropic_use_case_form() -> None:
    client, stub = stubbed("bedrock")
    stub.add_client_error(
        "get_use_case_for_model_access",
        service_error_code="ResourceNotFoundException",
        service_message="No use case found",
        http_status_code=404,
    )
    stub.add_response("get_use_case_for_model_access", {"formData": b'{"companyName": "Example"}'})
    with stub:
        (missing,) = check_anthropic_use_case(client, CATALOG, REGION)
        (done,) = check_anthropic_use_case(client, CATALOG, REGION)
    assert missing.status is Status.FAIL
    assert "claude-haiku-4-5" in missing.message and "Submit use case details" in missing.fix
    assert done.status is Status.OK


def test_no_anthropic_model_no_form_check() -> None:
    catalog = ModelCatalog.from_dict(
        {
            "models": [
                {
                    "name": "echo",
                    "provider": "echo",
                    "modality": "chat",
                    "model_id": "echo",
                    "status": "approved",
                    "evidence": PASSING_EVIDENCE,
                    "prices": {"input": 0.0},
                    "owner": "platform-ai@example.com",
                }
            ],
            "routes": [{"alias": "chat", "targets": ["echo"]}],
        }
    )
    client, stub = stubbed("bedrock")
    with stub:  # any call would fail: nothing is stubbed
        assert check_anthropic_use_case(client, catalog, REGION) == []
        assert check_models(client, catalog, REGION) == []


# ---------------------------------------------------------------------------------- Lake Formation


def test_lake_formation_iam_allowed_principals_default_warns(aws: None) -> None:
    lf = boto3.client("lakeformation")
    findings = {f.subject: f for f in check_lake_formation(lf, ACCOUNT, REGION, "hnb659fds")}
    # moto's fresh account has the AWS defaults: IAMAllowedPrincipals on new databases and tables.
    assert findings["IAMAllowedPrincipals default"].status is Status.WARN
    assert "CreateDatabaseDefaultPermissions" in findings["IAMAllowedPrincipals default"].message
    lf.put_data_lake_settings(
        DataLakeSettings={
            "DataLakeAdmins": [{"DataLakePrincipalIdentifier": EXEC_ROLE}],
            "CreateDatabaseDefaultPermissions": [],
            "CreateTableDefaultPermissions": [],
        }
    )
    findings = {f.subject: f for f in check_lake_formation(lf, ACCOUNT, REGION, "hnb659fds")}
    assert findings["IAMAllowedPrincipals default"].status is Status.OK
    assert findings["Lake Formation admins"].message == "the CDK execution role is one"


# ------------------------------------------------------------------------------------------ quotas


def test_lambda_concurrency_low_warns_and_default_is_used_when_never_changed() -> None:
    client, stub = stubbed("service-quotas")
    params = {"ServiceCode": "lambda", "QuotaCode": LAMBDA_CONCURRENCY_QUOTA}
    stub.add_response(
        "get_service_quota",
        {"Quota": quota("lambda", LAMBDA_CONCURRENCY_QUOTA, "Concurrent executions", 10.0)},
        params,
    )
    stub.add_client_error(
        "get_service_quota", service_error_code="NoSuchResourceException", expected_params=params
    )
    stub.add_response(
        "get_aws_default_service_quota",
        {"Quota": quota("lambda", LAMBDA_CONCURRENCY_QUOTA, "Concurrent executions", 1000.0)},
        params,
    )
    with stub:
        (low,) = check_lambda_concurrency(client)
        (default,) = check_lambda_concurrency(client)
    assert low.status is Status.WARN and low.message.startswith("10:")
    assert (default.status, default.message) == (Status.OK, "1,000")


def account_settings(unreserved: int) -> dict[str, Any]:
    return {
        "AccountLimit": {
            "TotalCodeSize": 80530636800,
            "CodeSizeUnzipped": 262144000,
            "CodeSizeZipped": 52428800,
            "ConcurrentExecutions": max(unreserved, 10),
            "UnreservedConcurrentExecutions": unreserved,
        },
        "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0},
    }


@pytest.mark.parametrize(
    ("unreserved", "reserved", "status", "text"),
    [
        (1000, 100, Status.OK, "100 of 1,000 unreserved, 900 left"),
        (110, 100, Status.OK, "100 of 110 unreserved, 10 left"),
        (109, 100, Status.FAIL, "would leave 9 of 109"),
        (10, 100, Status.FAIL, "would leave -90 of 10"),
        (10, 1, Status.FAIL, "would leave 9 of 10"),
    ],
)
def test_gateway_reserved_concurrency_must_leave_lambdas_minimum_unreserved(
    unreserved: int, reserved: int, status: Status, text: str
) -> None:
    client, stub = stubbed("lambda")
    stub.add_response("get_account_settings", account_settings(unreserved), {})
    with stub:
        (finding,) = check_reserved_concurrency(client, reserved)
    assert finding.status is status and text in finding.message
    if status is Status.FAIL:
        assert "reserved_concurrency" in finding.fix and "--gateway-reserved-concurrency" in finding.fix


def test_no_reservation_needs_no_account_settings() -> None:
    client, stub = stubbed("lambda")
    with stub:
        (finding,) = check_reserved_concurrency(client, None)
    assert finding.status is Status.OK


def test_bedrock_token_quotas_match_each_model_and_zero_blocks() -> None:
    client, stub = stubbed("service-quotas")
    stub.add_response(
        "list_service_quotas",
        {"Quotas": BEDROCK_QUOTAS[:3], "NextToken": "page2"},
        {"ServiceCode": "bedrock"},
    )
    stub.add_response(
        "list_service_quotas",
        {"Quotas": BEDROCK_QUOTAS[3:]},
        {"ServiceCode": "bedrock", "NextToken": "page2"},
    )
    with stub:
        findings = {f.subject: f for f in check_bedrock_token_quotas(client, CATALOG, REGION)}
    # us-east-1 calls the us. cross-region profiles: their quotas, not the on-demand ones.
    haiku = findings["Bedrock tokens/min claude-haiku-4-5"]
    assert haiku.status is Status.OK and "Cross-region" in haiku.message and "4,000,000" in haiku.message
    sonnet = findings["Bedrock tokens/min claude-sonnet-4-5"]
    assert sonnet.message.endswith("Claude Sonnet 4.5 V1: 2,000,000")  # not the 1M-context variant
    nova = findings["Bedrock tokens/min nova-lite"]
    assert nova.status is Status.FAIL and "L-AAAA0005" in nova.fix
    assert "Bedrock tokens/min titan-embed-v2" not in findings  # embeddings: no chat token quota


def test_match_token_quota_needs_every_part_of_the_name() -> None:
    kind = "Cross-region model inference"
    assert match_token_quota(BEDROCK_QUOTAS, "claude-haiku-4-5", kind) == BEDROCK_QUOTAS[0]
    assert (
        match_token_quota(BEDROCK_QUOTAS, "claude-haiku-4-5", "On-demand model inference")
        == BEDROCK_QUOTAS[1]
    )
    assert match_token_quota(BEDROCK_QUOTAS, "claude-haiku-4", kind) is None  # 4 is not 4.5
    assert match_token_quota(BEDROCK_QUOTAS, "nova-pro", kind) is None


# ------------------------------------------------------------------------------- Powertools layer


@pytest.mark.parametrize(
    ("answer", "status", "text"),
    [
        (
            layer_answer(f"Powertools for AWS Lambda (Python) [ARM64] version {TESTED_POWERTOOLS}"),
            Status.OK,
            TESTED_POWERTOOLS,
        ),
        (layer_answer("Powertools for AWS Lambda (Python) [ARM64] version 3.1.0"), Status.WARN, "3.1.0"),
        (layer_answer("Powertools", runtimes=["python3.12"]), Status.FAIL, "not built for python3.14"),
        (layer_answer("Powertools", arch="x86_64"), Status.FAIL, "not built for arm64"),
    ],
)
def test_powertools_layer(answer: dict[str, Any], status: Status, text: str) -> None:
    client, stub = stubbed("lambda")
    stub.add_response("get_layer_version_by_arn", answer, {"Arn": answer["LayerVersionArn"]})
    with stub:
        (finding,) = check_powertools_layer(client, "aws", REGION)
    assert finding.status is status and text in finding.message


def test_powertools_layer_missing_blocks() -> None:
    client, stub = stubbed("lambda")
    stub.add_client_error(
        "get_layer_version_by_arn", service_error_code="AccessDeniedException", http_status_code=403
    )
    with stub:
        (finding,) = check_powertools_layer(client, "aws", "ap-east-2")
    assert (
        finding.status is Status.FAIL
        and "ap-east-2" in finding.message
        and "powertools_layer_arn" in finding.fix
    )


# --------------------------------------------------------------------------------- whole command


class _Session:
    """A boto3 Session whose clients are moto's (STS, CloudFormation, SSM, Lake Formation) or stubbed."""

    region_name = REGION

    def __init__(self, stubbed_clients: dict[str, BaseClient]) -> None:
        self._stubbed = stubbed_clients

    def client(self, service: Any, region_name: str | None = None) -> BaseClient:
        return self._stubbed.get(service) or boto3.client(service, region_name=region_name)


def _account(*, ready: bool) -> tuple[_Session, list[Stubber]]:
    """Stubbed answers of an account that is ready (or not bootstrapped, without the Sonnet subscription
    and the Anthropic form)."""
    cfn, cfn_stub = stubbed("cloudformation")
    toolkit(cfn_stub, "CREATE_COMPLETE" if ready else None)
    bedrock, bedrock_stub = stubbed("bedrock")
    for model in bedrock_models(CATALOG, REGION):
        agreement = "AVAILABLE" if ready or model.name != "claude-sonnet-4-5" else "NOT_AVAILABLE"
        bedrock_stub.add_response(
            "get_foundation_model_availability",
            availability(model.model_id, agreementAvailability={"status": agreement}),
        )
    if ready:
        bedrock_stub.add_response("get_use_case_for_model_access", {"formData": b"{}"})
    else:
        bedrock_stub.add_client_error(
            "get_use_case_for_model_access", service_error_code="ResourceNotFoundException"
        )
    quotas, quotas_stub = stubbed("service-quotas")
    quotas_stub.add_response(
        "get_service_quota",
        {"Quota": quota("lambda", LAMBDA_CONCURRENCY_QUOTA, "Concurrent executions", 1000.0)},
    )
    live = [dict(q, Value=4e6) for q in BEDROCK_QUOTAS]
    quotas_stub.add_response("list_service_quotas", {"Quotas": live})
    lambda_client, lambda_stub = stubbed("lambda")
    lambda_stub.add_response("get_account_settings", account_settings(1000 if ready else 10))
    lambda_stub.add_response(
        "get_layer_version_by_arn", layer_answer(f"Powertools version {TESTED_POWERTOOLS}")
    )
    clients = {"cloudformation": cfn, "bedrock": bedrock, "service-quotas": quotas, "lambda": lambda_client}
    return _Session(clients), [cfn_stub, bedrock_stub, quotas_stub, lambda_stub]


def _args(**overrides: Any) -> argparse.Namespace:
    values = {
        "region": REGION,
        "profile": None,
        "qualifier": "hnb659fds",
        "toolkit_stack_name": "CDKToolkit",
        "catalog": None,
        "json": False,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def _run(session: _Session, stubs: list[Stubber], **args: Any) -> tuple[int, str]:
    out = io.StringIO()
    for stub in stubs:
        stub.activate()
    try:
        code = cmd_preflight(_args(**args), out, session=session)
    finally:
        for stub in stubs:
            stub.deactivate()
    for stub in stubs:
        stub.assert_no_pending_responses()
    return code, out.getvalue()


def test_ready_account_exits_zero(aws: None) -> None:
    bootstrap_version(30)
    _trail()
    boto3.client("lakeformation").put_data_lake_settings(
        DataLakeSettings={
            "DataLakeAdmins": [],
            "CreateDatabaseDefaultPermissions": [],
            "CreateTableDefaultPermissions": [],
        }
    )
    code, text = _run(*_account(ready=True))
    assert code == 0, text
    assert text.splitlines()[0] == f"Preflight for account {ACCOUNT}, region {REGION} (read-only)"
    assert "FAIL" not in text and text.rstrip().endswith("ready to deploy")


def test_blocked_account_exits_one_and_says_what_to_fix(aws: None) -> None:
    code, text = _run(*_account(ready=False))
    assert code == 1
    fails = [line for line in text.splitlines() if line.lstrip().startswith("FAIL")]
    assert len(fails) == 4, text
    assert any("Gateway reserved concurrency" in line and "would leave -90 of 10" in line for line in fails)
    assert any("CDKToolkit" in line and "not bootstrapped" in line for line in fails)
    assert f"fix: run `cdk bootstrap aws://{ACCOUNT}/{REGION}`" in text
    assert any("claude-sonnet-4-5" in line and "Marketplace" in line for line in fails)
    assert any("Anthropic use-case form" in line for line in fails)
    assert "WARN  IAMAllowedPrincipals default" in text
    assert text.rstrip().endswith("NOT READY: fix the FAIL lines before `cdk deploy`")


def test_json_report(aws: None) -> None:
    code, text = _run(*_account(ready=False), json=True)
    report = json.loads(text)
    assert code == 1 and report["ready"] is False
    assert report["account"] == ACCOUNT and report["region"] == REGION
    assert report["counts"]["fail"] == 4
    checks = {f["check"] for f in report["findings"]}
    assert checks == {
        "cdk-bootstrap",
        "bedrock-model",
        "anthropic-use-case",
        "lake-formation",
        "quota",
        "powertools-layer",
        "cloudtrail",
    }


def test_no_credentials_is_an_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["preflight", "--region", REGION]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ai-factory preflight: error: cannot reach AWS: Unable to locate credentials")


def test_unknown_profile_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert main(["preflight", "--profile", "nope"]) == 2
    assert "--profile" in capsys.readouterr().err


def test_run_preflight_needs_a_region() -> None:
    from ai_factory.preflight import PreflightError

    class NoRegion:
        region_name = None

    with pytest.raises(PreflightError, match="--region"):
        run_preflight(NoRegion(), CATALOG)


# ------------------------------------------------------------------------------------------ CloudTrail


def _trail(name: str = "org-trail", *, logging: bool = True) -> Any:
    """A multi-region trail in moto (its bucket too), logging or not; returns the CloudTrail client."""
    boto3.client("s3").create_bucket(Bucket=f"{name}-logs")
    cloudtrail = boto3.client("cloudtrail")
    cloudtrail.create_trail(Name=name, S3BucketName=f"{name}-logs", IsMultiRegionTrail=True)
    if logging:
        cloudtrail.start_logging(Name=name)
    return cloudtrail


def test_cloudtrail_without_a_trail_warns_that_the_bypass_alarms_cannot_fire(aws: None) -> None:
    (finding,) = check_cloudtrail(boto3.client("cloudtrail"), REGION)
    assert finding.status is Status.WARN
    assert "never fire" in finding.message and "multi-region trail" in finding.fix


def test_cloudtrail_trail_that_is_not_logging_warns_and_names_it(aws: None) -> None:
    (finding,) = check_cloudtrail(_trail(logging=False), REGION)
    assert finding.status is Status.WARN and "org-trail: not logging" in finding.message


def test_cloudtrail_logging_trail_with_management_events_is_ok(aws: None) -> None:
    (finding,) = check_cloudtrail(_trail(), REGION)
    assert (finding.status, finding.message) == (Status.OK, "org-trail logs management events")


@pytest.mark.parametrize(
    ("selectors", "status"),
    [
        ({"EventSelectors": [{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": True}]}, Status.WARN),
        ({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": False}]}, Status.WARN),
        ({"EventSelectors": [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}]}, Status.OK),
        (
            {
                "AdvancedEventSelectors": [
                    {"Name": "m", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]}
                ]
            },
            Status.OK,
        ),
        (
            {
                "AdvancedEventSelectors": [
                    {
                        "Name": "reads",
                        "FieldSelectors": [
                            {"Field": "eventCategory", "Equals": ["Management"]},
                            {"Field": "readOnly", "Equals": ["true"]},
                        ],
                    }
                ]
            },
            Status.WARN,
        ),
    ],
)
def test_cloudtrail_needs_write_management_events(selectors: dict[str, Any], status: Status) -> None:
    # A trail with custom selectors (moto keeps no HasCustomEventSelectors flag: Stubber, real shapes).
    arn = f"arn:aws:cloudtrail:eu-west-1:{ACCOUNT}:trail/org-trail"
    trail = {"Name": "org-trail", "TrailARN": arn, "HomeRegion": "eu-west-1", "HasCustomEventSelectors": True}
    client, stub = stubbed("cloudtrail")
    stub.add_response("describe_trails", {"trailList": [trail]}, {"includeShadowTrails": True})
    stub.add_response("get_trail_status", {"IsLogging": True}, {"Name": arn})
    stub.add_response("get_event_selectors", {"TrailARN": arn, **selectors}, {"TrailName": arn})
    with stub:
        (finding,) = check_cloudtrail(client, REGION)
    stub.assert_no_pending_responses()
    assert finding.status is status, finding
    if status is Status.WARN:
        assert "no write management events" in finding.message
