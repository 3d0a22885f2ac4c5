"""Knowledge-base sync: the connector announces each curated dataset version (EventBridge PutEvents,
Stubber), and the sync Lambda starts exactly one ingestion job per version (bedrock-agent
StartIngestionJob, Stubber) and records which version it indexed (OpenLineage event, moto S3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from aif_connector.knowledge_sync import (
    EVENT_DETAIL_TYPE,
    EVENT_SOURCE,
    KnowledgeBaseSync,
    SyncError,
    client_token,
    curated_event,
)
from aif_connector.lineage import LineageWriter, check_run_event
from botocore.stub import ANY, Stubber
from moto import mock_aws

REGION = "us-east-1"
KB_ID, DS_ID = "KB12345678", "DS12345678"
KB_ARN = f"arn:aws:bedrock:{REGION}:111122223333:knowledge-base/{KB_ID}"
VERSION = "sha256:" + "ab" * 32


def event(**detail: Any) -> dict[str, Any]:
    entry = curated_event(
        dataset="knowledge.articles",
        dataset_version=VERSION,
        run_id="6f1f4a8e-3a5e-4c61-9a43-0d6c2b7e9b1d",
        table_namespace=f"arn:aws:glue:{REGION}:111122223333",
        table_name="table/ai_factory_knowledge/articles",
        curated_uri="s3://curated/knowledge/articles/dt=2026-12-01/a.jsonl",
        records=12,
    )
    body = json.loads(entry["Detail"])
    body.update(detail)
    # What EventBridge delivers to the rule's target.
    return {"source": entry["Source"], "detail-type": entry["DetailType"], "detail": body}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket="lineage")
        yield client


def sync(s3: Any) -> tuple[KnowledgeBaseSync, Any]:
    agent = boto3.client("bedrock-agent", region_name=REGION)
    return (
        KnowledgeBaseSync(
            bedrock_agent=agent,
            lineage=LineageWriter(s3, "lineage", "lineage/"),
            knowledge_base_id=KB_ID,
            data_source_id=DS_ID,
            knowledge_base_name="knowledge.internal-qa",
            knowledge_base_arn=KB_ARN,
            clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        ),
        agent,
    )


def job(job_id: str = "JOB1234567") -> dict[str, Any]:
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    return {
        "ingestionJob": {
            "knowledgeBaseId": KB_ID,
            "dataSourceId": DS_ID,
            "ingestionJobId": job_id,
            "status": "STARTING",
            "startedAt": now,
            "updatedAt": now,
        }
    }


def test_a_new_version_starts_one_ingestion_job_and_records_which_version_it_indexed(s3: Any) -> None:
    syncer, agent = sync(s3)
    expected = {
        "knowledgeBaseId": KB_ID,
        "dataSourceId": DS_ID,
        "clientToken": client_token(KB_ID, DS_ID, VERSION),
        "description": ANY,
    }
    with Stubber(agent) as stub:
        stub.add_response("start_ingestion_job", job(), expected)
        # The same event again (a Lambda retry, an EventBridge redelivery): the same client token, so
        # Bedrock returns the same job instead of starting a second one.
        stub.add_response("start_ingestion_job", job(), expected)
        first = syncer.handle(event())
        second = syncer.handle(event())
        stub.assert_no_pending_responses()
    assert first == second
    assert first["ingestionJobId"] == "JOB1234567"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lineage")["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("lineage/runs/knowledge-base-sync.knowledge.internal-qa/")
    lineage = json.loads(s3.get_object(Bucket="lineage", Key=keys[0])["Body"].read())
    assert check_run_event(lineage) == []
    (source,) = lineage["inputs"]
    assert source["name"] == "table/ai_factory_knowledge/articles"
    assert source["facets"]["version"]["datasetVersion"] == VERSION
    assert lineage["outputs"] == [{"namespace": "bedrock-knowledge-base", "name": KB_ARN}]
    assert lineage["run"]["facets"]["aiFactory_knowledgeBaseSync"]["ingestionJobId"] == "JOB1234567"


def test_client_token_is_per_version_and_within_bedrock_limits() -> None:
    token = client_token(KB_ID, DS_ID, VERSION)
    assert 33 <= len(token) <= 256
    assert token == client_token(KB_ID, DS_ID, VERSION) != client_token(KB_ID, DS_ID, VERSION + "0")


def test_a_failed_start_raises_with_the_reason_and_writes_no_lineage(s3: Any) -> None:
    syncer, agent = sync(s3)
    with Stubber(agent) as stub:
        stub.add_client_error("start_ingestion_job", "ConflictException", http_status_code=409)
        with pytest.raises(
            SyncError, match=r"knowledge.articles version sha256:ab.* failed: ConflictException"
        ):
            syncer.handle(event())
    assert "Contents" not in s3.list_objects_v2(Bucket="lineage")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"source": "aws.s3", "detail-type": EVENT_DETAIL_TYPE, "detail": {}}, "not a 'Dataset version"),
        ({"source": EVENT_SOURCE, "detail-type": EVENT_DETAIL_TYPE, "detail": {"dataset": "x"}}, "lacks"),
    ],
)
def test_unexpected_events_are_refused(s3: Any, bad: dict[str, Any], message: str) -> None:
    syncer, _ = sync(s3)
    with pytest.raises(SyncError, match=message):
        syncer.handle(bad)
