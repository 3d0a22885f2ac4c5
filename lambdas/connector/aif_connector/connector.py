"""The data connector: one raw object in -> masked curated records, quarantine, a partition, a lineage event.

Flow for each object that lands in the raw zone (S3 ``ObjectCreated`` notification):

1. read it (``GetObject``); the partition (``<key>=YYYY-MM-DD``) is the object's ``LastModified`` date, so
   a re-run of the same object lands in the same place;
2. parse and validate (``records.parse_file``): a file that cannot be read at all is copied to
   quarantine whole (server-side copy, byte for byte) with a ``.reason.json`` next to it;
3. detect PII in every string field and mask it with the column's mode (``pii.detect``,
   ``masking.mask``); a column declared ``pii`` is masked whole;
4. write the curated JSON lines and the refused records (line, reason, raw text) to deterministic keys
   (re-runs overwrite, never duplicate), register the partition in Glue (``BatchCreatePartition``;
   "already exists" is success);
5. write the OpenLineage RunEvent (COMPLETE, or FAIL with the error) and EMF metrics.

A failure raises after the FAIL event is written, so Lambda retries the event and finally sends it to
the dead-letter queue: nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aif_connector.glue_types import GlueType
from aif_connector.lineage import LineageWriter, RunFacts, WrittenObject, build_run_event, run_id_for
from aif_connector.records import SUFFIX_FORMATS, DatasetSpec, ParsedFile, Reject, parse_file
from aif_gateway import contract as c

logger = logging.getLogger("aif_connector")

CONFIG_FILE_NAME = "connector_config.json"
DEFAULT_METRICS_NAMESPACE = c.CONNECTOR_METRICS_NAMESPACE
DEFAULT_MAX_OBJECT_BYTES = 256 * 1024 * 1024
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._=-]+")


class ConnectorError(RuntimeError):
    """The run failed (AWS call, invalid configuration); the FAIL lineage event names it."""


@dataclass(frozen=True)
class ConnectorSettings:
    """Where the connector reads and writes. ``prefix`` values end with ``/`` (or are empty)."""

    spec: DatasetSpec
    raw_bucket: str
    curated_bucket: str
    quarantine_bucket: str
    lineage_bucket: str
    table_namespace: str  # arn:<partition>:glue:<region>:<account>
    raw_prefix: str = ""
    curated_prefix: str = ""
    quarantine_prefix: str = ""
    lineage_prefix: str = "lineage/"
    job_namespace: str = "ai-factory"
    domain: str = ""
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    event_bus: str | None = None  # set: announce each curated dataset version (knowledge-base sync)
    pii_detection: str = "offline"  # offline | comprehend (offline detectors plus Amazon Comprehend)
    comprehend_language: str = "en"

    @property
    def job_name(self) -> str:
        return f"connector.{self.dataset_name}"

    @property
    def dataset_name(self) -> str:
        return f"{self.domain}.{self.spec.name}" if self.domain else self.spec.name

    @classmethod
    def load(cls, path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> ConnectorSettings:
        """The staged config file, with the deploy-time names (bucket names, database) from ``env``."""
        env = os.environ if env is None else env
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        dataset = dict(raw["dataset"])
        dataset["database"] = env.get(c.GLUE_DATABASE_ENV, dataset.get("database", ""))
        return cls(
            spec=DatasetSpec.from_dict(dataset),
            raw_bucket=env[c.RAW_BUCKET_ENV],
            curated_bucket=env[c.CURATED_BUCKET_ENV],
            quarantine_bucket=env[c.QUARANTINE_BUCKET_ENV],
            lineage_bucket=env[c.LINEAGE_BUCKET_ENV],
            table_namespace=env[c.TABLE_NAMESPACE_ENV],
            raw_prefix=raw.get("raw_prefix", ""),
            curated_prefix=raw.get("curated_prefix", ""),
            quarantine_prefix=raw.get("quarantine_prefix", ""),
            lineage_prefix=raw.get("lineage_prefix", "lineage/"),
            job_namespace=raw.get("job_namespace", "ai-factory"),
            domain=raw.get("domain", ""),
            max_object_bytes=int(raw.get("max_object_bytes", DEFAULT_MAX_OBJECT_BYTES)),
            metrics_namespace=env.get(c.METRICS_NAMESPACE_ENV, DEFAULT_METRICS_NAMESPACE),
            event_bus=env.get(c.CONNECTOR_EVENT_BUS_ENV) or None,
            pii_detection=raw.get("pii_detection", "offline"),
            comprehend_language=raw.get("comprehend_language", "en"),
        )


@dataclass
class RunResult:
    """What one run did (also the Lambda's return value per object)."""

    source: str
    run_id: str
    status: str  # COMPLETE | FAIL | SKIPPED
    records_in: int = 0
    records_curated: int = 0
    records_quarantined: int = 0
    file_quarantined: bool = False
    findings_by_kind: dict[str, int] = field(default_factory=dict)
    curated_uri: str | None = None
    quarantine_uri: str | None = None
    lineage_uri: str | None = None
    dataset_version: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# (value, findings, mode) -> masked value; built from the masking module by ``masker_from``.
Masker = Callable[[str, list[Any], str], str]
Detector = Callable[..., list[Any]]


class Connector:
    """Processes raw objects for one dataset. AWS clients and the PII functions are injected (tests use
    moto and the real detectors; the Lambda entry point builds the real ones)."""

    def __init__(
        self,
        settings: ConnectorSettings,
        *,
        s3: Any,
        glue: Any,
        masker: Masker,
        detector: Detector | None = None,
        finding_factory: Callable[..., Any] | None = None,
        policy_descriptions: Mapping[str, Mapping[str, Any]] | None = None,
        metrics_out: TextIO | None = None,
        clock: Callable[[], datetime] | None = None,
        comprehend: Any | None = None,
        events: Any | None = None,
    ) -> None:
        if detector is None or finding_factory is None:
            from aif_connector import pii

            detector = detector or pii.detect
            finding_factory = finding_factory or pii.Finding
        self.settings = settings
        self.spec = settings.spec
        self.s3 = s3
        self.glue = glue
        self.masker = masker
        self.detector = detector
        self.finding = finding_factory
        self.policy_descriptions = dict(policy_descriptions or {})
        self.metrics_out = metrics_out
        self.clock = clock or (lambda: datetime.now(UTC))
        self.lineage = LineageWriter(s3, settings.lineage_bucket, settings.lineage_prefix)
        self._storage_descriptor: dict[str, Any] | None = None
        self._masking = self.spec.column_masking()
        self._pii_columns = {c.name for c in self.spec.columns if c.pii}
        self._types = {c.name: c.glue_type for c in self.spec.columns}
        if settings.pii_detection not in ("offline", "comprehend"):
            raise ConnectorError(f"pii_detection {settings.pii_detection!r} is not 'offline' or 'comprehend'")
        if settings.pii_detection == "comprehend" and comprehend is None:
            raise ConnectorError("pii_detection 'comprehend' needs a Comprehend client")
        self.comprehend = comprehend if settings.pii_detection == "comprehend" else None
        if settings.event_bus and events is None:
            raise ConnectorError("an event bus is configured but no EventBridge client was given")
        self.events = events if settings.event_bus else None

    # ----------------------------------------------------------------------------------------- run

    def process(self, bucket: str, key: str, version_id: str | None = None) -> RunResult:
        """Process one raw object; raises ``ConnectorError`` (after writing the FAIL event) on failure."""
        s = self.settings
        started = self.clock()
        source = f"s3://{bucket}/{key}"
        if bucket != s.raw_bucket or not key.startswith(s.raw_prefix):
            raise ConnectorError(f"{source} is not under the raw zone s3://{s.raw_bucket}/{s.raw_prefix}")
        obj = self._head(bucket, key, version_id)
        if obj is None:
            # Deleted before we got to it: there is nothing to curate or to lose. Logged and counted.
            logger.warning("raw object %s no longer exists; nothing to process", source)
            self._emit_metrics({c.OBJECTS_MISSING.name: 1}, {})
            return RunResult(source=source, run_id="", status="SKIPPED", reason="object no longer exists")
        version = obj.get("VersionId") or version_id
        etag = str(obj.get("ETag", "")).strip('"')
        run_id = run_id_for(bucket, key, version or etag)
        modified: datetime = obj["LastModified"]
        partition_value = modified.astimezone(UTC).date().isoformat()
        partition = f"{self.spec.partition_key}={partition_value}"
        facts = RunFacts(
            job_namespace=s.job_namespace,
            job_name=s.job_name,
            source_bucket=bucket,
            source_key=key,
            source_version=version,
            source_sha256=None,
            source_bytes=int(obj.get("ContentLength", 0)),
            table_namespace=s.table_namespace,
            table_name=f"table/{self.spec.database}/{self.spec.table}",
            columns=[(c.name, c.type) for c in self.spec.columns] + [(self.spec.partition_key, "string")],
            dataset=s.dataset_name,
            classification=self.spec.classification,
            masking_mode=self.spec.masking,
            column_masking=self._masking,
            pii_kinds=self.spec.pii_kinds,
            partition=partition,
            policies=self.policy_descriptions,
            started=started,
        )
        result = RunResult(source=source, run_id=run_id, status="COMPLETE")
        stem = _safe_stem(key)
        try:
            self._run(bucket, key, version, obj, facts, result, partition, partition_value, run_id, stem)
        except Exception as exc:
            facts.error = f"{type(exc).__name__}: {exc}"
            result.status = "FAIL"
            result.reason = facts.error
            logger.exception("connector run %s for %s failed", run_id, source)
            try:
                result.lineage_uri = self.lineage.write(build_run_event(facts, run_id=run_id), partition)
            except Exception:  # the original failure matters more; the retry writes the event again
                logger.exception("could not write the FAIL lineage event of run %s", run_id)
            self._emit_metrics({c.RUNS_FAILED.name: 1}, {})
            raise ConnectorError(f"{source}: {facts.error}") from exc
        return result

    def _head(self, bucket: str, key: str, version_id: str | None) -> dict[str, Any] | None:
        """The object's metadata, or None when it (or that version) no longer exists."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        try:
            return dict(self.s3.head_object(**params))
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NoSuchVersion"):
                return None
            raise

    def _run(
        self,
        bucket: str,
        key: str,
        version: str | None,
        obj: Mapping[str, Any],
        facts: RunFacts,
        result: RunResult,
        partition: str,
        partition_value: str,
        run_id: str,
        stem: str,
    ) -> None:
        s = self.settings
        size = int(obj.get("ContentLength", 0))
        file_error: str | None = None
        data = b""
        if size > s.max_object_bytes:
            file_error = (
                f"the object is {size} bytes, over the connector's limit of {s.max_object_bytes} bytes; "
                "split it into smaller files"
            )
        else:
            params: dict[str, Any] = {"Bucket": bucket, "Key": key}
            if version:
                params["VersionId"] = version
            data = self.s3.get_object(**params)["Body"].read()
            facts.source_sha256 = hashlib.sha256(data).hexdigest()
            facts.source_bytes = len(data)
        parsed = None
        if file_error is None:
            parsed = parse_file(data, key, self.spec)
            file_error = parsed.file_error
        if file_error is not None:
            self._quarantine_file(bucket, key, version, facts, result, partition, run_id, file_error)
        else:
            assert parsed is not None
            extra = self._comprehend_pass(parsed, facts) if self.comprehend is not None else None
            curated_lines: list[bytes] = []
            for index, (_, record) in enumerate(parsed.records):
                more = iter(extra[index]) if extra is not None else None
                curated_lines.append(self._masked_line(record, facts.findings_by_kind, more))
            facts.records_in = parsed.records_in
            facts.records_curated = len(curated_lines)
            facts.records_quarantined = len(parsed.rejects)
            if curated_lines:
                curated_key = f"{s.curated_prefix}{partition}/{stem}-{run_id[:8]}.jsonl"
                written = self._put(
                    s.curated_bucket, curated_key, b"".join(curated_lines), len(curated_lines)
                )
                facts.curated.append(written)
                result.curated_uri = written.uri
                self._register_partition(
                    partition_value, f"s3://{s.curated_bucket}/{s.curated_prefix}{partition}/"
                )
            if parsed.rejects:
                lines = [
                    json.dumps(
                        {
                            "source": f"s3://{bucket}/{key}",
                            "versionId": version,
                            "line": r.line,
                            "reason": r.reason,
                            "raw": r.raw,
                        },
                        ensure_ascii=False,
                    ).encode("utf-8")
                    + b"\n"
                    for r in parsed.rejects
                ]
                q_key = f"{s.quarantine_prefix}records/{partition}/{stem}-{run_id[:8]}.jsonl"
                written = self._put(s.quarantine_bucket, q_key, b"".join(lines), len(lines))
                facts.quarantine.append(written)
                result.quarantine_uri = written.uri
        result.records_in = facts.records_in
        result.records_curated = facts.records_curated
        result.records_quarantined = facts.records_quarantined
        result.findings_by_kind = dict(facts.findings_by_kind)
        event = build_run_event(facts, run_id=run_id, now=self.clock())
        result.dataset_version = event["outputs"][0]["facets"].get("version", {}).get("datasetVersion")
        if self.events is not None and result.dataset_version and facts.records_curated:
            self._announce(facts, result)  # before the COMPLETE event: a failed announcement fails the run
        result.lineage_uri = self.lineage.write(event, partition)
        self._emit_metrics(
            {
                c.RECORDS_IN.name: facts.records_in,
                c.RECORDS_CURATED.name: facts.records_curated,
                c.RECORDS_QUARANTINED.name: facts.records_quarantined,
                c.FILES_QUARANTINED.name: 1 if result.file_quarantined else 0,
            },
            facts.findings_by_kind,
        )
        logger.info(
            "run %s: %s -> %d in, %d curated, %d quarantined%s",
            run_id,
            result.source,
            facts.records_in,
            facts.records_curated,
            facts.records_quarantined,
            f" (file quarantined: {file_error})" if file_error else "",
        )

    def _announce(self, facts: RunFacts, result: RunResult) -> None:
        """Tell the knowledge bases over this dataset that a new version is curated (EventBridge)."""
        from aif_connector.knowledge_sync import curated_event

        assert self.settings.event_bus is not None and result.dataset_version is not None
        entry = curated_event(
            dataset=self.settings.dataset_name,
            dataset_version=result.dataset_version,
            run_id=result.run_id,
            table_namespace=facts.table_namespace,
            table_name=facts.table_name,
            curated_uri=result.curated_uri,
            records=facts.records_curated,
            bus=self.settings.event_bus,
        )
        assert self.events is not None  # checked by the caller
        response = self.events.put_events(Entries=[entry])
        if response.get("FailedEntryCount"):
            failed = response["Entries"][0]
            raise ConnectorError(
                f"could not announce dataset version {result.dataset_version}: "
                f"{failed.get('ErrorCode')}: {failed.get('ErrorMessage')}"
            )

    # ------------------------------------------------------------------------------------ masking

    def _scanned_texts(self, record: Mapping[str, Any]) -> list[str]:
        """The string leaves the detectors scan, in the order ``_masked_line`` visits them."""
        texts: list[str] = []

        def walk(value: Any, gtype: GlueType) -> None:
            if value is None:
                return
            if gtype.kind == "array":
                assert gtype.element is not None
                for item in value:
                    walk(item, gtype.element)
            elif gtype.kind == "struct":
                for k, t in gtype.fields:
                    walk(value.get(k), t)
            elif gtype.kind == "string" and isinstance(value, str) and value:
                texts.append(value)

        for name, mode in self._masking.items():
            if mode != "none" and name not in self._pii_columns:
                walk(record.get(name), self._types[name])
        return texts

    def _comprehend_pass(self, parsed: ParsedFile, facts: RunFacts) -> list[list[list[Any]]]:
        """Comprehend's findings for every scanned text of every record (batched over the whole file);
        records Comprehend could not check move to the rejects: never written without the check."""
        from aif_connector.pii import comprehend_findings

        per_record = [self._scanned_texts(record) for _, record in parsed.records]
        flat = [t for texts in per_record for t in texts]
        outcome = comprehend_findings(
            flat, client=self.comprehend, language_code=self.settings.comprehend_language
        )
        kept: list[tuple[int, dict[str, Any]]] = []
        extra: list[list[list[Any]]] = []
        failed = 0
        pos = 0
        for (line, record), texts in zip(parsed.records, per_record, strict=True):
            errors = [e for e in outcome.errors[pos : pos + len(texts)] if e]
            findings = outcome.findings[pos : pos + len(texts)]
            pos += len(texts)
            if errors:
                failed += 1
                raw = json.dumps(record, ensure_ascii=False)
                reason = f"PII detection failed, the record was not written: {errors[0]}"
                parsed.rejects.append(Reject(line, reason, raw))
                continue
            if self.spec.pii_kinds is not None:
                findings = [[f for f in fs if f.kind in self.spec.pii_kinds] for fs in findings]
            kept.append((line, record))
            extra.append(findings)
        parsed.rejects.sort(key=lambda r: r.line)
        parsed.records = kept
        self._emit_metrics(
            {
                c.COMPREHEND_REQUESTS.name: outcome.requests,
                c.COMPREHEND_UNITS.name: outcome.units,
                c.COMPREHEND_COST_USD.name: outcome.cost_usd,
                c.PII_DETECTION_FAILURES.name: failed,
            },
            {},
        )
        return extra

    def _masked_line(
        self,
        record: dict[str, Any],
        findings_by_kind: dict[str, int],
        extra: Iterator[list[Any]] | None = None,
    ) -> bytes:
        out = dict(record)
        for name, mode in self._masking.items():
            if mode == "none" or out.get(name) is None:
                continue
            whole = name in self._pii_columns
            out[name] = self._mask_value(out[name], self._types[name], mode, whole, findings_by_kind, extra)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"

    def _mask_value(
        self,
        value: Any,
        gtype: GlueType,
        mode: str,
        whole: bool,
        findings_by_kind: dict[str, int],
        extra: Iterator[list[Any]] | None,
    ) -> Any:
        """``value`` with PII masked in every string leaf, at any depth of arrays and structs (a ``pii``
        column is masked whole in each leaf). ``extra``: Comprehend's findings, one list per scanned
        leaf in visiting order."""
        if value is None:
            return None
        if gtype.kind == "array":
            assert gtype.element is not None
            return [self._mask_value(v, gtype.element, mode, whole, findings_by_kind, extra) for v in value]
        if gtype.kind == "struct":
            return {
                k: self._mask_value(value.get(k), t, mode, whole, findings_by_kind, extra)
                for k, t in gtype.fields
            }
        if gtype.kind != "string" or not isinstance(value, str) or not value:
            return value
        if whole:
            findings = [self.finding("PII_COLUMN", 0, len(value), value, 1.0)]
        else:
            findings = self.detector(value, kinds=self.spec.pii_kinds)
            if extra is not None:
                findings = list(findings) + next(extra)
                if findings:
                    from aif_connector.pii import resolve

                    findings = resolve(findings)
        if not findings:
            return value
        for finding in findings:
            findings_by_kind[finding.kind] = findings_by_kind.get(finding.kind, 0) + 1
        return self.masker(value, findings, mode)

    # ------------------------------------------------------------------------------------ outputs

    def _put(self, bucket: str, key: str, body: bytes, records: int) -> WrittenObject:
        self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")
        return WrittenObject(f"s3://{bucket}/{key}", hashlib.sha256(body).hexdigest(), len(body), records)

    def _quarantine_file(
        self,
        bucket: str,
        key: str,
        version: str | None,
        facts: RunFacts,
        result: RunResult,
        partition: str,
        run_id: str,
        reason: str,
    ) -> None:
        """Copy the whole object to quarantine (server-side, byte for byte) with the reason next to it."""
        s = self.settings
        name = key.rsplit("/", 1)[-1] or "object"
        base = f"{s.quarantine_prefix}files/{partition}/{run_id}/"
        source: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version:
            source["VersionId"] = version
        self.s3.copy_object(Bucket=s.quarantine_bucket, Key=base + name, CopySource=source)
        reason_doc = {
            "source": f"s3://{bucket}/{key}",
            "versionId": version,
            "sha256": facts.source_sha256,
            "bytes": facts.source_bytes,
            "reason": reason,
            "quarantined": f"s3://{s.quarantine_bucket}/{base}{name}",
            "accepted_formats": sorted(SUFFIX_FORMATS),
        }
        self.s3.put_object(
            Bucket=s.quarantine_bucket,
            Key=f"{base}{name}.reason.json",
            Body=json.dumps(reason_doc, indent=1).encode(),
            ContentType="application/json",
        )
        facts.file_error = reason
        facts.quarantine.append(
            WrittenObject(
                f"s3://{s.quarantine_bucket}/{base}{name}", facts.source_sha256 or "", facts.source_bytes, 0
            )
        )
        result.file_quarantined = True
        result.quarantine_uri = f"s3://{s.quarantine_bucket}/{base}{name}"
        result.reason = reason

    def _register_partition(self, value: str, location: str) -> None:
        """Add the partition to the Glue table; an existing partition is success (idempotent)."""
        descriptor = dict(self._table_descriptor())
        descriptor["Location"] = location
        response = self.glue.batch_create_partition(
            DatabaseName=self.spec.database,
            TableName=self.spec.table,
            PartitionInputList=[{"Values": [value], "StorageDescriptor": descriptor}],
        )
        for error in response.get("Errors", []):
            detail = error.get("ErrorDetail", {})
            if detail.get("ErrorCode") != "AlreadyExistsException":
                raise ConnectorError(
                    f"cannot register partition {value} of {self.spec.database}.{self.spec.table}: "
                    f"{detail.get('ErrorCode')}: {detail.get('ErrorMessage')}"
                )

    def _table_descriptor(self) -> dict[str, Any]:
        if self._storage_descriptor is None:
            table = self.glue.get_table(DatabaseName=self.spec.database, Name=self.spec.table)["Table"]
            sd = table.get("StorageDescriptor", {})
            keep = ("Columns", "InputFormat", "OutputFormat", "SerdeInfo", "Compressed", "Parameters")
            self._storage_descriptor = {k: sd[k] for k in keep if k in sd}
        return self._storage_descriptor

    # ------------------------------------------------------------------------------------ metrics

    def _emit_metrics(self, values: Mapping[str, float], findings_by_kind: Mapping[str, int]) -> None:
        """CloudWatch embedded metric format on stdout: one document per dimension set."""
        out = self.metrics_out or sys.stdout
        ns = self.settings.metrics_namespace
        dataset = self.settings.dataset_name
        stamp = int(time.time() * 1000)
        docs = [_emf(ns, stamp, {c.DATASET: dataset}, values)]
        for kind, count in sorted(findings_by_kind.items()):
            docs.append(_emf(ns, stamp, {c.DATASET: dataset, c.KIND: kind}, {c.PII_FINDINGS.name: count}))
        for doc in docs:
            out.write(json.dumps(doc) + "\n")
        out.flush()


def _emf(
    namespace: str, stamp: int, dimensions: Mapping[str, str], values: Mapping[str, float]
) -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": stamp,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": c.COUNT} for name in values],
                }
            ],
        },
        **dimensions,
        **values,
    }


def _safe_stem(key: str) -> str:
    """The object's file name without its suffix, safe as a key segment (plus a short hash of the
    full key, so two files with the same name in different folders never collide)."""
    name = key.rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    safe = _UNSAFE_KEY_CHARS.sub("_", stem)[:80] or "object"
    return f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def objects_in(event: Mapping[str, Any]) -> Iterable[tuple[str, str, str | None]]:
    """``(bucket, key, version)`` for each object in an S3 notification (or EventBridge) event."""
    if event.get("Event") == "s3:TestEvent":
        return []
    if event.get("source") == "aws.s3" and isinstance(event.get("detail"), Mapping):
        detail = event["detail"]
        return [(detail["bucket"]["name"], detail["object"]["key"], detail["object"].get("version-id"))]
    found = []
    for record in event.get("Records", []):
        s3 = record.get("s3") or {}
        # Keys in S3 notifications are URL-encoded, with '+' for spaces.
        key = urllib.parse.unquote_plus(s3["object"]["key"])
        found.append((s3["bucket"]["name"], key, s3["object"].get("versionId")))
    return found


# ------------------------------------------------------------------------------------ Lambda entry


def masker_from(policies: Mapping[str, Any]) -> Masker:
    """A ``Masker`` over ``{mode: MaskingPolicy}`` (the masking module's ``mask``)."""
    from aif_connector.masking import mask

    def masker(value: str, findings: list[Any], mode: str) -> str:
        policy = policies.get(mode)
        if policy is None:
            raise ConnectorError(f"masking mode {mode!r} is used but not configured")
        return mask(value, findings, policy)

    return masker


def build_policies(settings: ConnectorSettings, env: Mapping[str, str], session: Any) -> dict[str, Any]:
    """The ``MaskingPolicy`` of every mode the dataset uses, with keys from Secrets Manager (and the
    token vault for ``tokenize``)."""
    from aif_connector.masking import MaskingPolicy, Tokenizer, hmac_key_from_secret

    modes = {m for m in settings.spec.column_masking().values() if m != "none"}
    policies: dict[str, Any] = {}
    key: bytes | None = None
    if modes & {"hash", "tokenize"}:
        secret = env.get(c.HMAC_SECRET_ARN_ENV)
        if not secret:
            raise ConnectorError("AIF_HMAC_SECRET_ARN is not set; masking modes hash/tokenize need the key")
        key = hmac_key_from_secret(session.client("secretsmanager"), secret)
    for mode in sorted(modes):
        if mode == "redact":
            policies[mode] = MaskingPolicy("redact")
        elif mode == "hash":
            policies[mode] = MaskingPolicy("hash", hmac_key=key)
        else:
            assert key is not None
            tokenizer = Tokenizer(
                table_name=env[c.TOKEN_VAULT_TABLE_ENV],
                kms_key_id=env[c.TOKEN_KEY_ARN_ENV],
                hmac_key=key,
                dynamodb=session.client("dynamodb"),
                kms=session.client("kms"),
            )
            policies[mode] = MaskingPolicy("tokenize", tokenizer=tokenizer)
    return policies


_CONNECTOR: Connector | None = None
_TOKENIZERS: list[Any] = []


def _connector() -> Connector:
    """Built once per Lambda instance (clients, keys and the table descriptor are reused)."""
    global _CONNECTOR
    if _CONNECTOR is None:
        import boto3
        from botocore.config import Config

        config_path = os.environ.get(
            "AIF_CONNECTOR_CONFIG", str(Path(__file__).resolve().parent / CONFIG_FILE_NAME)
        )
        settings = ConnectorSettings.load(config_path)
        session = boto3.session.Session()
        retry = Config(retries={"mode": "standard", "max_attempts": 5})
        policies = build_policies(settings, os.environ, session)
        _TOKENIZERS.extend(p.tokenizer for p in policies.values() if p.tokenizer is not None)
        _CONNECTOR = Connector(
            settings,
            s3=session.client("s3", config=retry),
            glue=session.client("glue", config=retry),
            masker=masker_from(policies),
            policy_descriptions={mode: p.describe() for mode, p in policies.items()},
            comprehend=session.client("comprehend", config=retry)
            if settings.pii_detection == "comprehend"
            else None,
            events=session.client("events", config=retry) if settings.event_bus else None,
        )
    return _CONNECTOR


def lambda_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """S3 ``ObjectCreated`` notifications from the raw zone: process every object in the event.

    All objects are attempted; if any failed, the handler raises afterwards so Lambda retries the event
    (re-processing is idempotent) and finally hands it to the dead-letter queue.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO)
    logger.setLevel(logging.INFO)
    connector = _connector()
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    for bucket, key, version in objects_in(event):
        try:
            results.append(connector.process(bucket, key, version).to_dict())
        except ConnectorError as exc:
            failures.append(str(exc))
    for tokenizer in _TOKENIZERS:
        tokenizer.clear_cache()  # plaintext values must not outlive the invocation that needed them
    if failures:
        raise ConnectorError(f"{len(failures)} object(s) failed: " + " | ".join(failures))
    return {"processed": results}
