"""Knowledge-base documents: the sync turns a curated object's records into documents with Bedrock
metadata sidecars under the document prefix (moto S3), before it starts the ingestion (Stubber), and
refuses an event naming an object outside the dataset's prefix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from aif_connector.knowledge_sync import DocumentWriter, KnowledgeBaseSync, SyncError
from aif_connector.lineage import LineageWriter
from botocore.stub import ANY, Stubber
from moto import mock_aws

from tests.unit.test_knowledge_sync import DS_ID, KB_ARN, KB_ID, REGION, VERSION, event, job

CURATED_KEY = "knowledge/articles/dt=2026-12-01/a.jsonl"
RECORDS = [
    {"title": "Laptops", "body": "Request a laptop in the IT portal.", "tags": ["it", "hardware"]},
    {"title": "VPN", "body": "Connect to vpn.corp.example.com.", "owner": {"team": "network"}},
    {"title": "", "body": None},  # nothing to index: no document
]


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        for bucket in ("curated", "lineage"):
            client.create_bucket(Bucket=bucket)
        body = "\n".join(json.dumps(r) for r in RECORDS).encode()
        client.put_object(Bucket="curated", Key=CURATED_KEY, Body=body)
        yield client


def writer(s3: Any, **overrides: Any) -> DocumentWriter:
    settings: dict[str, Any] = {
        "s3": s3,
        "curated_bucket": "curated",
        "dataset_prefix": "knowledge/articles/",
        "document_prefix": "documents/knowledge/articles/",
        "classification": "confidential",
    }
    settings.update(overrides)
    return DocumentWriter(**settings)


def body(s3: Any, key: str) -> str:
    return s3.get_object(Bucket="curated", Key=key)["Body"].read().decode()


def test_each_record_becomes_a_document_with_its_metadata_sidecar_before_the_ingestion(s3: Any) -> None:
    agent = boto3.client("bedrock-agent", region_name=REGION)
    sync = KnowledgeBaseSync(
        bedrock_agent=agent,
        lineage=LineageWriter(s3, "lineage", "lineage/"),
        knowledge_base_id=KB_ID,
        data_source_id=DS_ID,
        knowledge_base_name="knowledge.internal-qa",
        knowledge_base_arn=KB_ARN,
        documents=writer(s3),
        clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
    )
    with Stubber(agent) as stubber:
        stubber.add_response(
            "start_ingestion_job",
            job(),
            {"knowledgeBaseId": KB_ID, "dataSourceId": DS_ID, "clientToken": ANY, "description": ANY},
        )
        result = sync.handle(event(curatedUri=f"s3://curated/{CURATED_KEY}"))
        stubber.assert_no_pending_responses()
    assert result["documents"] == 2
    base = "documents/knowledge/articles/dt=2026-12-01/a"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="curated", Prefix="documents/")["Contents"])
    assert keys == [
        f"{base}/000001.txt",
        f"{base}/000001.txt.metadata.json",
        f"{base}/000002.txt",
        f"{base}/000002.txt.metadata.json",
    ]
    assert (
        body(s3, f"{base}/000001.txt")
        == "title: Laptops\nbody: Request a laptop in the IT portal.\ntags: it, hardware"
    )
    assert body(s3, f"{base}/000002.txt").endswith('owner: {"team": "network"}')
    sidecar = json.loads(body(s3, f"{base}/000002.txt.metadata.json"))
    assert sidecar == {
        "metadataAttributes": {
            "aif_classification": "confidential",
            "aif_classification_rank": 2,
            "aif_dataset": "knowledge.articles",
            "aif_dataset_version": VERSION,
            "aif_domain": "knowledge",
        }
    }
    # Nothing was written into the Glue table location (a sidecar there would be a bad JSON line).
    table = [o["Key"] for o in s3.list_objects_v2(Bucket="curated", Prefix="knowledge/")["Contents"]]
    assert table == [CURATED_KEY]


def test_a_replayed_event_rewrites_the_same_documents(s3: Any) -> None:
    detail = event(curatedUri=f"s3://curated/{CURATED_KEY}")["detail"]
    first = writer(s3).write(detail)
    second = writer(s3).write(detail)
    assert first == second and len(first) == 2


def test_document_fields_pick_and_order_the_columns(s3: Any) -> None:
    [key, _] = writer(s3, fields=("body", "title")).write(
        event(curatedUri=f"s3://curated/{CURATED_KEY}")["detail"]
    )
    assert body(s3, key) == "body: Request a laptop in the IT portal.\ntitle: Laptops"


@pytest.mark.parametrize(
    "uri",
    [
        "s3://curated/support/tickets/a.jsonl",  # another dataset
        "s3://other/knowledge/articles/a.jsonl",  # another bucket
        "s3://curated/knowledge/articles/../../support/tickets/a.jsonl",
        None,
    ],
)
def test_an_object_outside_the_datasets_prefix_is_refused(s3: Any, uri: str | None) -> None:
    with pytest.raises(SyncError, match="is not an object under s3://curated/knowledge/articles/"):
        writer(s3).write(event(curatedUri=uri)["detail"])
    assert "Contents" not in s3.list_objects_v2(Bucket="curated", Prefix="documents/")


def test_an_unknown_classification_is_a_configuration_error(s3: Any) -> None:
    with pytest.raises(ValueError, match="classification 'secret'"):
        writer(s3, classification="secret")
