"""OpenLineage RunEvents for connector runs, and the store they are written to.

One run = one raw object processed. The event (spec 2-0-2) names:

* the job ``<namespace>`` / ``connector.<domain>.<dataset>``;
* one input: the raw object (namespace ``s3://<raw bucket>``, name = the key), with a ``schema``-less
  ``aiFactory_contentDigest`` facet (sha256 of the bytes read);
* the outputs: the curated Glue table (namespace ``arn:<partition>:glue:<region>:<account>``, name
  ``table/<database>/<table>``, the OpenLineage naming for Glue) with the ``schema`` facet, a
  ``version`` facet whose ``datasetVersion`` is the sha256 of the curated output, the
  ``aiFactory_contentDigest`` facet (every object written, with its digest), the
  ``aiFactory_maskingPolicy`` facet (modes per column, detector kinds, findings per kind; never the HMAC
  or tokenization keys) and ``outputStatistics``; and, when records were refused, the quarantine
  objects;
* ``errorMessage`` on a FAIL event.

The run id is a UUID derived from the raw object's identity (bucket, key, version or ETag): a re-run of
the same object (a retried event, a replay) overwrites the same event in the store instead of adding a
second lineage record for one data version.

The store is a key prefix: ``<prefix>runs/<job name>/<partition>/<run id>.json``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SPEC_VERSION = "2-0-2"
SCHEMA_URL = f"https://openlineage.io/spec/{SPEC_VERSION}/OpenLineage.json#/$defs/RunEvent"
PRODUCER = "https://github.com/ai-factory/ai-factory/tree/main/lambdas/connector"
FACET_SCHEMA_BASE = "https://openlineage.io/spec/facets"
# Custom facets: the ``aiFactory_`` prefix keeps them apart from standard facets (the spec's convention).
CUSTOM_SCHEMA_BASE = "https://github.com/ai-factory/ai-factory/blob/main/docs/data-connectors.md"
DIGEST_FACET = "aiFactory_contentDigest"
MASKING_FACET = "aiFactory_maskingPolicy"
RUN_FACET = "aiFactory_connectorRun"
EVENT_TYPES = ("COMPLETE", "FAIL")
# uuid5 namespace for run ids (a fixed random UUID: run ids are stable across deployments).
_RUN_NAMESPACE = uuid.UUID("6f1f4a8e-3a5e-4c61-9a43-0d6c2b7e9b1d")


@dataclass(frozen=True)
class WrittenObject:
    """An object the run wrote (curated or quarantine)."""

    uri: str
    sha256: str
    bytes: int
    records: int

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "sha256": self.sha256, "bytes": self.bytes, "records": self.records}


@dataclass
class RunFacts:
    """Everything one run knows, from which the RunEvent is built."""

    job_namespace: str
    job_name: str
    source_bucket: str
    source_key: str
    source_version: str | None
    source_sha256: str | None
    source_bytes: int
    table_namespace: str
    table_name: str  # table/<database>/<table>
    columns: Sequence[tuple[str, str]]  # (name, Glue type), partition key last
    dataset: str  # <domain>.<name>
    classification: str
    masking_mode: str
    column_masking: Mapping[str, str]
    pii_kinds: Sequence[str] | None
    partition: str  # e.g. dt=2026-11-03
    policies: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # mode -> describe()
    records_in: int = 0
    records_curated: int = 0
    records_quarantined: int = 0
    findings_by_kind: dict[str, int] = field(default_factory=dict)
    curated: list[WrittenObject] = field(default_factory=list)
    quarantine: list[WrittenObject] = field(default_factory=list)
    file_error: str | None = None
    error: str | None = None  # set: the run failed (FAIL event)
    started: datetime | None = None


def run_id_for(bucket: str, key: str, version: str | None) -> str:
    """A stable UUID for one raw object version (same object -> same run id -> idempotent store)."""
    return str(uuid.uuid5(_RUN_NAMESPACE, f"s3://{bucket}/{key}#{version or ''}"))


def _custom(name: str, **body: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": f"{CUSTOM_SCHEMA_BASE}#{name.lower()}", **body}


def _standard(facet_file: str, definition: str, **body: Any) -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": f"{FACET_SCHEMA_BASE}/{facet_file}#/$defs/{definition}",
        **body,
    }


def dataset_version(curated: Sequence[WrittenObject]) -> str | None:
    """The dataset version of a run: sha256 over the curated objects' digests (None: nothing curated)."""
    if not curated:
        return None
    import hashlib

    joined = "\n".join(f"{o.uri} {o.sha256}" for o in sorted(curated, key=lambda o: o.uri))
    return "sha256:" + hashlib.sha256(joined.encode()).hexdigest()


def build_run_event(facts: RunFacts, *, run_id: str, now: datetime | None = None) -> dict[str, Any]:
    """The OpenLineage RunEvent (a JSON-ready dict) for one connector run."""
    now = now or datetime.now(UTC)
    event_type = "FAIL" if facts.error else "COMPLETE"
    source_facets: dict[str, Any] = {}
    if facts.source_sha256:
        source_facets[DIGEST_FACET] = _custom(
            DIGEST_FACET,
            algorithm="sha256",
            digest=facts.source_sha256,
            bytes=facts.source_bytes,
            versionId=facts.source_version,
        )
    inputs = [
        {
            "namespace": f"s3://{facts.source_bucket}",
            "name": facts.source_key,
            "facets": source_facets,
            "inputFacets": {},
        }
    ]
    version = dataset_version(facts.curated)
    table_facets: dict[str, Any] = {
        "schema": _standard(
            "1-2-0/SchemaDatasetFacet.json",
            "SchemaDatasetFacet",
            fields=[{"name": n, "type": t} for n, t in facts.columns],
        ),
        DIGEST_FACET: _custom(
            DIGEST_FACET,
            algorithm="sha256",
            digest=version,
            partition=facts.partition,
            objects=[o.to_dict() for o in facts.curated],
        ),
        MASKING_FACET: _custom(
            MASKING_FACET,
            mode=facts.masking_mode,
            columns=dict(facts.column_masking),
            policies={mode: dict(d) for mode, d in sorted(facts.policies.items())},
            detectorKinds=list(facts.pii_kinds) if facts.pii_kinds is not None else "all",
            findingsByKind=dict(sorted(facts.findings_by_kind.items())),
            classification=facts.classification,
        ),
    }
    if version:
        table_facets["version"] = _standard(
            "1-0-1/DatasetVersionDatasetFacet.json", "DatasetVersionDatasetFacet", datasetVersion=version
        )
    outputs: list[dict[str, Any]] = [
        {
            "namespace": facts.table_namespace,
            "name": facts.table_name,
            "facets": table_facets,
            "outputFacets": {
                "outputStatistics": _standard(
                    "1-0-2/OutputStatisticsOutputDatasetFacet.json",
                    "OutputStatisticsOutputDatasetFacet",
                    rowCount=facts.records_curated,
                    size=sum(o.bytes for o in facts.curated),
                )
            },
        }
    ]
    for written in facts.quarantine:
        bucket, _, key = written.uri.removeprefix("s3://").partition("/")
        outputs.append(
            {
                "namespace": f"s3://{bucket}",
                "name": key,
                "facets": {
                    DIGEST_FACET: _custom(
                        DIGEST_FACET, algorithm="sha256", digest=written.sha256, bytes=written.bytes
                    )
                },
                "outputFacets": {
                    "outputStatistics": _standard(
                        "1-0-2/OutputStatisticsOutputDatasetFacet.json",
                        "OutputStatisticsOutputDatasetFacet",
                        rowCount=written.records,
                        size=written.bytes,
                    )
                },
            }
        )
    run_facets: dict[str, Any] = {
        RUN_FACET: _custom(
            RUN_FACET,
            dataset=facts.dataset,
            recordsIn=facts.records_in,
            recordsCurated=facts.records_curated,
            recordsQuarantined=facts.records_quarantined,
            fileQuarantineReason=facts.file_error,
            startedAt=_iso(facts.started) if facts.started else None,
        )
    }
    if facts.error:
        run_facets["errorMessage"] = _standard(
            "1-0-1/ErrorMessageRunFacet.json",
            "ErrorMessageRunFacet",
            message=facts.error,
            programmingLanguage="python",
        )
    return {
        "eventType": event_type,
        "eventTime": _iso(now),
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "run": {"runId": run_id, "facets": run_facets},
        "job": {"namespace": facts.job_namespace, "name": facts.job_name, "facets": {}},
        "inputs": inputs,
        "outputs": outputs,
    }


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_key(prefix: str, event: Mapping[str, Any], partition: str) -> str:
    """Where ``event`` lives in the store: ``<prefix>runs/<job>/<partition>/<run id>.json``.

    The partition (from the raw object, not the clock) and the run id are stable for one object
    version, so a re-run replaces its event."""
    return f"{prefix}runs/{event['job']['name']}/{partition}/{event['run']['runId']}.json"


def check_run_event(event: Mapping[str, Any]) -> list[str]:
    """The spec's required RunEvent fields that are missing or malformed (empty list: valid).

    A dependency-free check the Lambda runs before writing; the tests validate further with the
    OpenLineage client's typed classes.
    """
    problems: list[str] = []
    for name in ("eventTime", "producer", "schemaURL"):
        if not isinstance(event.get(name), str) or not event.get(name):
            problems.append(f"{name}: required string")
    try:
        datetime.fromisoformat(str(event.get("eventTime", "")).replace("Z", "+00:00"))
    except ValueError:
        problems.append("eventTime: not an ISO-8601 date-time")
    if event.get("eventType") not in ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"):
        problems.append(f"eventType: {event.get('eventType')!r} is not an OpenLineage event type")
    run = event.get("run")
    if not isinstance(run, Mapping):
        problems.append("run: required object")
    else:
        try:
            uuid.UUID(str(run.get("runId")))
        except ValueError:
            problems.append("run.runId: not a UUID")
    job = event.get("job")
    if not isinstance(job, Mapping) or not job.get("namespace") or not job.get("name"):
        problems.append("job: namespace and name are required")
    for side in ("inputs", "outputs"):
        for index, dataset in enumerate(event.get(side) or []):
            if not dataset.get("namespace") or not dataset.get("name"):
                problems.append(f"{side}[{index}]: namespace and name are required")
            for fname, facet in (dataset.get("facets") or {}).items():
                if not facet.get("_producer") or not facet.get("_schemaURL"):
                    problems.append(f"{side}[{index}].facets.{fname}: _producer and _schemaURL are required")
    return problems


class LineageWriter:
    """Writes RunEvents as JSON objects to ``s3://<bucket>/<prefix>`` (S3 client injected)."""

    def __init__(self, s3: Any, bucket: str, prefix: str = "lineage/") -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix

    def write(self, event: Mapping[str, Any], partition: str) -> str:
        """Store ``event`` and return its ``s3://`` URI. Raises ValueError for an invalid event."""
        problems = check_run_event(event)
        if problems:
            raise ValueError("invalid OpenLineage RunEvent: " + "; ".join(problems))
        key = event_key(self.prefix, event, partition)
        body = json.dumps(event, sort_keys=True, ensure_ascii=False).encode("utf-8")
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        return f"s3://{self.bucket}/{key}"
