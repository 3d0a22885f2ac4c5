"""The Q Business index-fields custom resource against botocore's Stubber (moto has no qbusiness; the
Stubber checks every request and response against the real qbusiness API model): missing fields are added
with the index's whole list kept, a second run changes nothing, a type conflict and a failed index are
precise errors, a busy index is waited for, and Delete touches nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from aif_connector.q_business_index import (
    FIELDS,
    IndexFieldError,
    IndexFields,
)
from botocore.stub import Stubber

APP_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
INDEX_ID = "f0e1d2c3-b4a5-4968-8776-655443322110"
OURS = [
    {"name": "aif_classification", "type": "STRING", "search": "ENABLED"},
    {"name": "aif_domain", "type": "STRING", "search": "ENABLED"},
    {"name": "aif_dataset", "type": "STRING", "search": "ENABLED"},
]
THEIRS = [
    {"name": "department", "type": "STRING", "search": "ENABLED"},
    {"name": "published", "type": "DATE", "search": "DISABLED"},
]
KEY = {"applicationId": APP_ID, "indexId": INDEX_ID}


def index(fields: list[dict[str, str]], status: str = "ACTIVE", **extra: Any) -> dict[str, Any]:
    """A GetIndex response (the Stubber validates it against the qbusiness output shape)."""
    return {
        "applicationId": APP_ID,
        "indexId": INDEX_ID,
        "displayName": "company-index",
        "indexArn": f"arn:aws:qbusiness:us-east-1:111122223333:application/{APP_ID}/index/{INDEX_ID}",
        "status": status,
        "type": "ENTERPRISE",
        "createdAt": datetime(2025, 3, 1, tzinfo=UTC),
        "updatedAt": datetime(2026, 11, 1, tzinfo=UTC),
        "capacityConfiguration": {"units": 1},
        "documentAttributeConfigurations": fields,
        **extra,
    }


def event(request: str, **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": request,
        "LogicalResourceId": "IndexFields",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:us-east-1:111122223333:function:provider",
            "ApplicationId": APP_ID,
            "IndexId": INDEX_ID,
            FIELDS: json.dumps(OURS),
        },
        **extra,
    }


@pytest.fixture
def stub() -> Iterator[tuple[IndexFields, Stubber, list[float]]]:
    client = boto3.client(
        "qbusiness", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    sleeps: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with Stubber(client) as stubber:
        yield IndexFields(client, wait_s=60, poll_s=10, sleep=sleep, clock=lambda: now[0]), stubber, sleeps
        stubber.assert_no_pending_responses()


def test_missing_fields_are_added_keeping_every_existing_field(
    stub: tuple[IndexFields, Stubber, list[float]],
) -> None:
    fields, stubber, _ = stub
    mine = [OURS[1]]  # one of ours is there already, with its own settings
    stubber.add_response("get_index", index(THEIRS + mine), KEY)
    stubber.add_response(
        "update_index", {}, {**KEY, "documentAttributeConfigurations": THEIRS + mine + [OURS[0], OURS[2]]}
    )
    stubber.add_response("get_index", index(THEIRS + mine + [OURS[0], OURS[2]]), KEY)
    answer = fields.handle(event("Create"))
    assert answer == {
        "PhysicalResourceId": f"{APP_ID}/{INDEX_ID}/document-attributes",
        "Data": {"Added": "aif_classification,aif_dataset"},
    }


def test_an_index_with_every_field_is_left_alone(stub: tuple[IndexFields, Stubber, list[float]]) -> None:
    fields, stubber, _ = stub
    # Ours with search DISABLED: the same type, so the owner's setting stays; no UpdateIndex at all.
    theirs_of_ours = [{**f, "search": "DISABLED"} for f in OURS]
    stubber.add_response("get_index", index(THEIRS + theirs_of_ours), KEY)
    assert fields.handle(event("Update", PhysicalResourceId="p"))["Data"] == {"Added": ""}


def test_a_field_with_another_type_fails_naming_field_and_types(
    stub: tuple[IndexFields, Stubber, list[float]],
) -> None:
    fields, stubber, _ = stub
    stubber.add_response(
        "get_index", index([{"name": "aif_domain", "type": "STRING_LIST", "search": "ENABLED"}]), KEY
    )
    with pytest.raises(IndexFieldError, match="'aif_domain' as STRING_LIST, not STRING"):
        fields.handle(event("Create"))


def test_a_busy_index_is_waited_for_before_and_after_the_update(
    stub: tuple[IndexFields, Stubber, list[float]],
) -> None:
    fields, stubber, sleeps = stub
    stubber.add_response("get_index", index(THEIRS, status="UPDATING"), KEY)
    stubber.add_response("get_index", index(THEIRS), KEY)
    stubber.add_response("update_index", {}, {**KEY, "documentAttributeConfigurations": THEIRS + OURS})
    stubber.add_response("get_index", index(THEIRS + OURS, status="UPDATING"), KEY)
    stubber.add_response("get_index", index(THEIRS + OURS), KEY)
    assert fields.handle(event("Create"))["Data"]["Added"] == "aif_classification,aif_domain,aif_dataset"
    assert sleeps == [10, 10]


def test_an_index_that_stays_busy_fails_after_the_wait(
    stub: tuple[IndexFields, Stubber, list[float]],
) -> None:
    fields, stubber, _ = stub
    for _ in range(7):  # at 0, 10, ..., 60 s
        stubber.add_response("get_index", index(THEIRS, status="UPDATING"), KEY)
    with pytest.raises(IndexFieldError, match="still UPDATING after 60 s"):
        fields.handle(event("Create"))


def test_a_failed_index_is_reported_with_its_error(stub: tuple[IndexFields, Stubber, list[float]]) -> None:
    fields, stubber, _ = stub
    failed = index(THEIRS, status="FAILED", error={"errorMessage": "capacity", "errorCode": "InternalError"})
    stubber.add_response("get_index", failed, KEY)
    with pytest.raises(IndexFieldError, match="is FAILED: capacity"):
        fields.handle(event("Create"))


def test_an_index_that_would_exceed_500_fields_is_refused(
    stub: tuple[IndexFields, Stubber, list[float]],
) -> None:
    fields, stubber, _ = stub
    full = [{"name": f"f{i}", "type": "STRING", "search": "DISABLED"} for i in range(499)]
    stubber.add_response("get_index", index(full), KEY)
    with pytest.raises(IndexFieldError, match="exceeds the 500"):
        fields.handle(event("Create"))


def test_delete_calls_nothing(stub: tuple[IndexFields, Stubber, list[float]]) -> None:
    fields, _, _ = stub  # no response queued: any call would fail the Stubber
    assert fields.handle(event("Delete", PhysicalResourceId="p")) == {"PhysicalResourceId": "p"}


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({FIELDS: "[]"}, "non-empty JSON list"),
        ({FIELDS: json.dumps([{"name": "x"}])}, "needs name, type and search"),
        ({"IndexId": ""}, "are required"),
    ],
)
def test_malformed_properties_are_errors(
    stub: tuple[IndexFields, Stubber, list[float]], props: dict[str, str], message: str
) -> None:
    fields, _, _ = stub
    bad = event("Create")
    bad["ResourceProperties"].update(props)
    with pytest.raises(ValueError, match=message):
        fields.handle(bad)
