"""Knowledge-base sync: a dataset version the connector curated starts the ingestion of the knowledge
bases that index that dataset, and lineage records which version each sync indexed.

Flow (event driven, no schedule, no manual ``start-ingestion-job``):

1. the connector, after a run that curated records, puts a ``Dataset version curated`` event on the
   default EventBridge bus (:func:`curated_event`: the dataset, its new version, the run);
2. each ``RagFeature`` over that dataset has a rule on the event (matching the dataset's qualified name)
   whose target is this module's Lambda (:func:`lambda_handler`), configured with its knowledge base and
   data source;
3. :class:`DocumentWriter` turns the curated object the event names (masked JSON lines) into the knowledge
   base's documents: one text document per record under the document prefix (``documents/<dataset
   prefix>``, apart from the Glue table location), each with its Bedrock ``.metadata.json`` sidecar
   carrying the dataset's classification (and its rank), domain, name and version, which the gateway's
   clearance filter matches on; keys derive from the curated object and line, so a replay rewrites the
   same documents;
4. :class:`KnowledgeBaseSync` calls ``bedrock-agent`` ``StartIngestionJob`` with a client token derived
   from the knowledge base, data source and dataset version — a retried or replayed event starts no
   second job for the same version — and writes an OpenLineage RunEvent: input the curated dataset at
   that version, output the knowledge base, with the ingestion job id.

A failure raises: Lambda retries the asynchronous event twice, then sends it to the rule target's
dead-letter queue, which is alarmed (runbook ``docs/runbooks/knowledge-base-sync.md``). A sync already
running for the data source (``ConflictException``) is such a failure: the retry a minute later starts the
job once the running one is done; a later version's sync indexes the whole prefix anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aif_connector.lineage import PRODUCER, SCHEMA_URL, LineageWriter, _custom, _iso, _standard
from aif_gateway import contract as c

logger = logging.getLogger("aif_connector.knowledge_sync")

EVENT_SOURCE = "ai-factory.data-connector"
EVENT_DETAIL_TYPE = "Dataset version curated"
SYNC_FACET = "aiFactory_knowledgeBaseSync"
_SYNC_NAMESPACE = uuid.UUID("0b7e0f55-8a7c-4d0e-9f5e-2f1b3c4d5e6f")
# Environment of the sync Lambda (set by RagFeature).
KNOWLEDGE_BASE_ID_ENV = "AIF_KNOWLEDGE_BASE_ID"
DATA_SOURCE_ID_ENV = "AIF_DATA_SOURCE_ID"
KNOWLEDGE_BASE_NAME_ENV = "AIF_KNOWLEDGE_BASE_NAME"
KNOWLEDGE_BASE_ARN_ENV = "AIF_KNOWLEDGE_BASE_ARN"
SYNC_LINEAGE_BUCKET_ENV = "AIF_SYNC_LINEAGE_BUCKET"
SYNC_LINEAGE_PREFIX_ENV = "AIF_SYNC_LINEAGE_PREFIX"
CURATED_BUCKET_ENV = "AIF_SYNC_CURATED_BUCKET"
DATASET_PREFIX_ENV = "AIF_SYNC_DATASET_PREFIX"
DOCUMENT_PREFIX_ENV = "AIF_SYNC_DOCUMENT_PREFIX"
CLASSIFICATION_ENV = "AIF_SYNC_CLASSIFICATION"
DOCUMENT_FIELDS_ENV = "AIF_SYNC_DOCUMENT_FIELDS"  # comma-separated; empty: every field
MAX_DOCUMENTS_PER_OBJECT = 100_000


class SyncError(RuntimeError):
    """The sync could not be started (the event is retried, then dead-lettered)."""


def curated_event(
    *,
    dataset: str,
    dataset_version: str,
    run_id: str,
    table_namespace: str,
    table_name: str,
    curated_uri: str | None,
    records: int,
    bus: str = "default",
) -> dict[str, Any]:
    """The EventBridge ``PutEvents`` entry the connector sends after a run that curated records (the
    table is named as in the connector's lineage events, so the two join)."""
    detail = {
        "dataset": dataset,
        "datasetVersion": dataset_version,
        "runId": run_id,
        "tableNamespace": table_namespace,
        "tableName": table_name,
        "curatedUri": curated_uri,
        "recordsCurated": records,
    }
    return {
        "Source": EVENT_SOURCE,
        "DetailType": EVENT_DETAIL_TYPE,
        "Detail": json.dumps(detail),
        "EventBusName": bus,
    }


def client_token(knowledge_base_id: str, data_source_id: str, version: str) -> str:
    """StartIngestionJob's idempotency token (33-256 characters): one job per dataset version."""
    digest = hashlib.sha256(f"{knowledge_base_id}/{data_source_id}/{version}".encode()).hexdigest()
    return f"aif-sync-{digest[:48]}"


class DocumentWriter:
    """Writes the documents (and metadata sidecars) of one curated object under the document prefix.

    A document is the record's fields as ``field: value`` lines (``fields`` picks and orders them;
    lists are joined with ", ", nested objects are JSON). Only objects in ``curated_bucket`` under
    ``dataset_prefix`` are read: an event naming anything else fails the sync."""

    def __init__(
        self,
        *,
        s3: Any,
        curated_bucket: str,
        dataset_prefix: str,
        document_prefix: str,
        classification: str,
        fields: tuple[str, ...] = (),
    ) -> None:
        if classification not in c.CLEARANCE_LEVELS:
            raise ValueError(f"classification {classification!r} is not one of {c.CLEARANCE_LEVELS}")
        self.s3 = s3
        self.bucket = curated_bucket
        self.dataset_prefix = dataset_prefix
        self.document_prefix = document_prefix
        self.classification = classification
        self.fields = fields

    def write(self, detail: Mapping[str, Any]) -> list[str]:
        """The document keys written for the event's curated object (sidecars next to them)."""
        uri = str(detail.get("curatedUri") or "")
        expected = f"s3://{self.bucket}/{self.dataset_prefix}"
        if not uri.startswith(expected) or ".." in uri:
            raise SyncError(f"curatedUri {uri!r} is not an object under {expected}")
        key = uri[len(f"s3://{self.bucket}/") :]
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        relative = key[len(self.dataset_prefix) :]
        stem = relative[: -len(".jsonl")] if relative.endswith(".jsonl") else relative
        dataset = str(detail["dataset"])
        attributes = {
            c.DOC_CLASSIFICATION: self.classification,
            c.DOC_CLASSIFICATION_RANK: c.classification_rank(self.classification),
            c.DOC_DOMAIN: dataset.split(".", 1)[0],
            c.DOC_DATASET: dataset,
            c.DOC_DATASET_VERSION: str(detail["datasetVersion"])[:256],
        }
        sidecar = json.dumps({"metadataAttributes": attributes}, sort_keys=True).encode("utf-8")
        written: list[str] = []
        for line_number, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            if len(written) >= MAX_DOCUMENTS_PER_OBJECT:
                raise SyncError(f"{uri} has more than {MAX_DOCUMENTS_PER_OBJECT} records")
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise SyncError(f"{uri} line {line_number} is not JSON") from exc
            text = self.document_text(record)
            if not text:
                continue
            doc_key = f"{self.document_prefix}{stem}/{line_number:06d}.txt"
            self.s3.put_object(
                Bucket=self.bucket,
                Key=doc_key,
                Body=text.encode("utf-8"),
                ContentType="text/plain; charset=utf-8",
            )
            self.s3.put_object(
                Bucket=self.bucket,
                Key=doc_key + c.METADATA_SIDECAR_SUFFIX,
                Body=sidecar,
                ContentType="application/json",
            )
            written.append(doc_key)
        return written

    def document_text(self, record: Any) -> str:
        if not isinstance(record, dict):
            return ""
        names = self.fields or tuple(record)
        lines = []
        for name in names:
            value = record.get(name)
            if value is None or value == "" or value == []:
                continue
            if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
                shown = ", ".join(str(v) for v in value)
            elif isinstance(value, dict | list):
                shown = json.dumps(value, ensure_ascii=False, sort_keys=True)
            else:
                shown = str(value)
            lines.append(f"{name}: {shown}")
        return "\n".join(lines)


class KnowledgeBaseSync:
    """Starts one knowledge base's ingestion for a curated dataset version and records its lineage."""

    def __init__(
        self,
        *,
        bedrock_agent: Any,
        lineage: LineageWriter,
        knowledge_base_id: str,
        data_source_id: str,
        knowledge_base_name: str,
        knowledge_base_arn: str,
        documents: DocumentWriter | None = None,
        clock: Any = None,
    ) -> None:
        self.agent = bedrock_agent
        self.documents = documents
        self.lineage = lineage
        self.knowledge_base_id = knowledge_base_id
        self.data_source_id = data_source_id
        self.name = knowledge_base_name
        self.arn = knowledge_base_arn
        self.clock = clock or (lambda: datetime.now(UTC))

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """One ``Dataset version curated`` event -> an ingestion job and its lineage event."""
        if event.get("source") != EVENT_SOURCE or event.get("detail-type") != EVENT_DETAIL_TYPE:
            raise SyncError(f"not a {EVENT_DETAIL_TYPE!r} event from {EVENT_SOURCE}: {event.get('source')!r}")
        detail = event.get("detail") or {}
        required = ("dataset", "datasetVersion", "runId", "tableNamespace", "tableName")
        missing = [k for k in required if not detail.get(k)]
        if missing:
            raise SyncError(f"event detail lacks {', '.join(missing)}")
        version = str(detail["datasetVersion"])
        written = self.documents.write(detail) if self.documents is not None else []
        try:
            response = self.agent.start_ingestion_job(
                knowledgeBaseId=self.knowledge_base_id,
                dataSourceId=self.data_source_id,
                clientToken=client_token(self.knowledge_base_id, self.data_source_id, version),
                description=f"AI Factory: {detail['dataset']} version {version[:71]}"[:200],
            )
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            raise SyncError(
                f"StartIngestionJob for knowledge base {self.name} ({self.knowledge_base_id}) and "
                f"{detail['dataset']} version {version} failed: {code}"
            ) from exc
        job = response["ingestionJob"]
        lineage_uri = self.lineage.write(self._run_event(detail, job), partition=self.name)
        logger.info(
            "knowledge base %s: ingestion job %s started for %s version %s",
            self.name,
            job["ingestionJobId"],
            detail["dataset"],
            version,
        )
        return {
            "ingestionJobId": job["ingestionJobId"],
            "status": job["status"],
            "lineage": lineage_uri,
            "documents": len(written),
        }

    def _run_event(self, detail: Mapping[str, Any], job: Mapping[str, Any]) -> dict[str, Any]:
        version = str(detail["datasetVersion"])
        run_id = str(uuid.uuid5(_SYNC_NAMESPACE, f"{self.arn}#{version}"))
        return {
            "eventType": "START",  # the job runs on after this; its result is in Bedrock's job history
            "eventTime": _iso(self.clock()),
            "producer": PRODUCER,
            "schemaURL": SCHEMA_URL,
            "run": {
                "runId": run_id,
                "facets": {
                    SYNC_FACET: _custom(
                        SYNC_FACET,
                        knowledgeBaseId=self.knowledge_base_id,
                        dataSourceId=self.data_source_id,
                        ingestionJobId=job["ingestionJobId"],
                        connectorRunId=detail["runId"],
                    )
                },
            },
            "job": {"namespace": "ai-factory", "name": f"knowledge-base-sync.{self.name}"},
            "inputs": [
                {
                    "namespace": detail["tableNamespace"],
                    "name": detail["tableName"],
                    "facets": {
                        "version": _standard(
                            "DatasetVersionDatasetFacet.json",
                            "DatasetVersionDatasetFacet",
                            datasetVersion=version,
                        )
                    },
                }
            ],
            "outputs": [{"namespace": "bedrock-knowledge-base", "name": self.arn}],
        }


_SYNC: KnowledgeBaseSync | None = None


def lambda_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The EventBridge rule's target: start the ingestion of this Lambda's knowledge base."""
    global _SYNC
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO)
    if _SYNC is None:
        import boto3

        env = os.environ
        session = boto3.session.Session()
        documents = None
        if env.get(DOCUMENT_PREFIX_ENV):
            documents = DocumentWriter(
                s3=session.client("s3"),
                curated_bucket=env[CURATED_BUCKET_ENV],
                dataset_prefix=env[DATASET_PREFIX_ENV],
                document_prefix=env[DOCUMENT_PREFIX_ENV],
                classification=env[CLASSIFICATION_ENV],
                fields=tuple(f for f in env.get(DOCUMENT_FIELDS_ENV, "").split(",") if f),
            )
        _SYNC = KnowledgeBaseSync(
            bedrock_agent=session.client("bedrock-agent"),
            lineage=LineageWriter(
                session.client("s3"),
                env[SYNC_LINEAGE_BUCKET_ENV],
                env.get(SYNC_LINEAGE_PREFIX_ENV, "lineage/"),
            ),
            knowledge_base_id=env[KNOWLEDGE_BASE_ID_ENV],
            data_source_id=env[DATA_SOURCE_ID_ENV],
            knowledge_base_name=env[KNOWLEDGE_BASE_NAME_ENV],
            knowledge_base_arn=env[KNOWLEDGE_BASE_ARN_ENV],
            documents=documents,
        )
    return _SYNC.handle(event)
