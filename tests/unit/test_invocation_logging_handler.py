"""The Bedrock invocation-logging custom resource against moto's bedrock: create, refuse to overwrite,
explicit overwrite, update, and a delete that only removes its own configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from invocation_logging_handler import handler
from invocation_logging_handler.handler import (
    ConfigurationConflict,
    InvocationLoggingManager,
    normalize,
)
from moto import mock_aws

REGION = "us-east-1"
OURS: dict[str, Any] = {
    "cloudWatchConfig": {
        "logGroupName": "aif-invocations",
        "roleArn": "arn:aws:iam::123456789012:role/aif-bedrock-logging",
        "largeDataDeliveryS3Config": {"bucketName": "aif-invocation-payloads", "keyPrefix": "large/"},
    },
    "textDataDeliveryEnabled": True,
    "imageDataDeliveryEnabled": True,
    "embeddingDataDeliveryEnabled": False,
}
FOREIGN: dict[str, Any] = {
    "s3Config": {"bucketName": "security-team-bedrock-logs", "keyPrefix": "org/"},
    "textDataDeliveryEnabled": True,
}


@pytest.fixture
def bedrock() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("bedrock", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")


def event(request: str, config: dict[str, Any], *, overwrite: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": request,
        "LogicalResourceId": "InvocationLogging",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:provider",
            "LoggingConfig": json.dumps(config),
            "OverwriteExisting": "true" if overwrite else "false",
        },
        **extra,
    }


def current(bedrock: Any) -> dict[str, Any]:
    return normalize(bedrock.get_model_invocation_logging_configuration().get("loggingConfig"))


def test_create_puts_the_configuration_when_none_exists(bedrock: Any) -> None:
    response = InvocationLoggingManager(bedrock, REGION).handle(event("Create", OURS))

    assert current(bedrock) == normalize(OURS)
    assert response["PhysicalResourceId"] == f"bedrock-model-invocation-logging-{REGION}"
    assert response["Data"]["Overwrote"] == "false"
    assert "aif-invocations" in response["Data"]["Destinations"]


def test_create_refuses_to_overwrite_a_foreign_configuration(bedrock: Any) -> None:
    bedrock.put_model_invocation_logging_configuration(loggingConfig=FOREIGN)

    with pytest.raises(ConfigurationConflict) as raised:
        InvocationLoggingManager(bedrock, REGION).handle(event("Create", OURS))

    message = str(raised.value)
    assert "s3://security-team-bedrock-logs/org/" in message  # names what is there
    assert "overwrite_existing=True" in message  # and how to take it over
    assert current(bedrock) == normalize(FOREIGN)  # untouched


def test_create_overwrites_only_when_told_to(bedrock: Any) -> None:
    bedrock.put_model_invocation_logging_configuration(loggingConfig=FOREIGN)

    response = InvocationLoggingManager(bedrock, REGION).handle(event("Create", OURS, overwrite=True))

    assert response["Data"]["Overwrote"] == "true"
    assert current(bedrock) == normalize(OURS)


def test_create_accepts_an_identical_existing_configuration(bedrock: Any) -> None:
    # e.g. a retried Create, or a stack re-created after a retained configuration
    bedrock.put_model_invocation_logging_configuration(loggingConfig=OURS)

    response = InvocationLoggingManager(bedrock, REGION).handle(event("Create", OURS))

    assert response["Data"]["Overwrote"] == "false"


def test_update_reapplies_over_the_previous_own_configuration(bedrock: Any) -> None:
    manager = InvocationLoggingManager(bedrock, REGION)
    manager.handle(event("Create", OURS))
    changed = {**OURS, "embeddingDataDeliveryEnabled": True}

    manager.handle(
        event(
            "Update",
            changed,
            PhysicalResourceId=manager.physical_id,
            OldResourceProperties={"LoggingConfig": json.dumps(OURS)},
        )
    )

    assert current(bedrock)["embeddingDataDeliveryEnabled"] is True


def test_update_refuses_when_someone_else_replaced_it_meanwhile(bedrock: Any) -> None:
    manager = InvocationLoggingManager(bedrock, REGION)
    manager.handle(event("Create", OURS))
    bedrock.put_model_invocation_logging_configuration(loggingConfig=FOREIGN)

    with pytest.raises(ConfigurationConflict):
        manager.handle(event("Update", OURS, OldResourceProperties={"LoggingConfig": json.dumps(OURS)}))
    assert current(bedrock) == normalize(FOREIGN)


def test_delete_removes_only_its_own_configuration(bedrock: Any) -> None:
    manager = InvocationLoggingManager(bedrock, REGION)
    manager.handle(event("Create", OURS))

    manager.handle(event("Delete", OURS, PhysicalResourceId=manager.physical_id))

    assert current(bedrock) == {}


def test_delete_leaves_a_foreign_configuration_alone(bedrock: Any) -> None:
    # what a rollback after a refused Create looks like
    bedrock.put_model_invocation_logging_configuration(loggingConfig=FOREIGN)

    response = InvocationLoggingManager(bedrock, REGION).handle(
        event("Delete", OURS, PhysicalResourceId="some-failed-create-id")
    )

    assert response == {"PhysicalResourceId": "some-failed-create-id"}
    assert current(bedrock) == normalize(FOREIGN)


def test_normalize_treats_missing_flags_as_false_and_empty_as_off() -> None:
    assert normalize({}) == {}
    assert normalize({"textDataDeliveryEnabled": False}) == {}
    assert normalize({"s3Config": {"bucketName": "b", "keyPrefix": ""}}) == normalize(
        {"s3Config": {"bucketName": "b"}, "imageDataDeliveryEnabled": False}
    )


def test_lambda_entry_point_uses_the_function_region(bedrock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")

    response = handler.on_event(event("Create", OURS))

    assert response["PhysicalResourceId"].endswith(REGION)
    assert current(bedrock) == normalize(OURS)


def test_unknown_request_type_and_missing_config_fail_clearly(bedrock: Any) -> None:
    manager = InvocationLoggingManager(bedrock, REGION)
    with pytest.raises(ValueError, match="Unknown custom-resource request type"):
        manager.handle(event("Replace", OURS))
    with pytest.raises(ValueError, match="LoggingConfig"):
        manager.handle({"RequestType": "Create", "ResourceProperties": {}})


def test_staged_asset_runs_the_handler_with_the_contract_and_no_site_packages(tmp_path: Path) -> None:
    from ai_factory.constructs.invocation_logging import stage_handler_asset

    asset = stage_handler_asset(out_root=tmp_path)
    assert sorted(p.name for p in asset.iterdir()) == ["__init__.py", "aif_gateway", "handler.py"]
    code = "import sys, handler; assert 'ai_factory' not in sys.modules; print(handler.on_event.__name__)"
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=asset, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "on_event"
