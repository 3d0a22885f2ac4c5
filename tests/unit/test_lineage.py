"""Lineage events (builder, required-field check, store keys) and ``ai-factory lineage FEATURE``."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from aif_connector.lineage import (
    LineageWriter,
    RunFacts,
    WrittenObject,
    build_run_event,
    check_run_event,
    event_key,
    run_id_for,
)
from moto import mock_aws

from ai_factory.cli.main import main

HASH = "sha256:" + "a" * 64


def facts(**changes: Any) -> RunFacts:
    base = RunFacts(
        job_namespace="ai-factory",
        job_name="connector.support.tickets",
        source_bucket="raw",
        source_key="support/tickets/day1.jsonl",
        source_version="v1",
        source_sha256="b" * 64,
        source_bytes=100,
        table_namespace="arn:aws:glue:us-east-1:111122223333",
        table_name="table/ai_factory_support/tickets",
        columns=[("ticket_id", "string"), ("body", "string"), ("ingest_date", "string")],
        dataset="support.tickets",
        classification="internal",
        masking_mode="hash",
        column_masking={"body": "hash"},
        pii_kinds=None,
        partition="ingest_date=2026-11-03",
        records_in=5,
        records_curated=4,
        records_quarantined=1,
        findings_by_kind={"EMAIL": 2},
        curated=[
            WrittenObject("s3://curated/support/tickets/ingest_date=2026-11-03/x.jsonl", "c" * 64, 80, 4)
        ],
    )
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def test_run_ids_are_stable_per_object_version() -> None:
    assert run_id_for("b", "k", "v1") == run_id_for("b", "k", "v1")
    assert run_id_for("b", "k", "v1") != run_id_for("b", "k", "v2")


def test_event_is_valid_and_carries_digest_schema_and_masking() -> None:
    event = build_run_event(
        facts(), run_id=run_id_for("raw", "k", "v1"), now=datetime(2026, 11, 3, tzinfo=UTC)
    )
    assert check_run_event(event) == []
    assert event["eventTime"] == "2026-11-03T00:00:00.000Z"
    table = event["outputs"][0]
    assert table["facets"]["version"]["datasetVersion"].startswith("sha256:")
    assert table["facets"]["aiFactory_maskingPolicy"]["detectorKinds"] == "all"
    assert event_key("lineage/", event, "ingest_date=2026-11-03") == (
        f"lineage/runs/connector.support.tickets/ingest_date=2026-11-03/{event['run']['runId']}.json"
    )


def test_check_run_event_names_each_problem() -> None:
    event = build_run_event(facts(), run_id="not-a-uuid")
    event["eventType"] = "DONE"
    del event["job"]["name"]
    event["outputs"][0]["facets"]["schema"].pop("_producer")
    problems = check_run_event(event)
    assert "run.runId: not a UUID" in problems
    assert "eventType: 'DONE' is not an OpenLineage event type" in problems
    assert "job: namespace and name are required" in problems
    assert "outputs[0].facets.schema: _producer and _schemaURL are required" in problems
    with pytest.raises(ValueError, match="invalid OpenLineage RunEvent"):
        LineageWriter(None, "bucket").write(event, "p")


# ------------------------------------------------------------------------------------------- CLI


def write_assembly(folder: Path, datasets: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, Any] = {
        "/AiFactoryTeamSupport/TicketSummarizer": [
            {
                "type": "ai-factory:prompts",
                "data": [
                    {
                        "team": "support",
                        "feature": "ticket-summarizer",
                        "name": "summarize-ticket",
                        "model": "chat-fast",
                        "contentHash": HASH,
                        "source": "features/support/prompts/summarize-ticket.yaml",
                    }
                ],
            }
        ]
    }
    if datasets:
        metadata["/AiFactoryTeamSupport/TicketSummarizer"].append(
            {
                "type": "ai-factory:datasets",
                "data": [{"team": "support", "feature": "ticket-summarizer", "dataset": "support.tickets"}],
            }
        )
    (folder / "AiFactoryTeamSupport.metadata.json").write_text(json.dumps(metadata))
    manifest = {
        "artifacts": {
            "AiFactoryTeamSupport": {
                "type": "aws:cloudformation:stack",
                "additionalMetadataFile": "AiFactoryTeamSupport.metadata.json",
            }
        }
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def write_store(folder: Path) -> None:
    for day, version in (("2026-11-02", "v1"), ("2026-11-03", "v2")):
        event = build_run_event(
            facts(source_key=f"support/tickets/{day}.jsonl", partition=f"ingest_date={day}"),
            run_id=run_id_for("raw", day, version),
            now=datetime.fromisoformat(f"{day}T10:00:00+00:00"),
        )
        path = folder / event_key("", event, f"ingest_date={day}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(event))
    failed = build_run_event(
        facts(source_key="support/tickets/bad.jsonl", error="ConnectorError: boom", curated=[]),
        run_id=run_id_for("raw", "bad", None),
        now=datetime(2026, 11, 4, tzinfo=UTC),
    )
    (folder / "failed.json").write_text(json.dumps(failed))
    (folder / "noise.json").write_text("not json")


class FakeRegistry:
    def __init__(self, tracking_uri: str | None = None) -> None:
        pass

    def versions(self, name: str) -> list[Any]:
        from types import SimpleNamespace

        return [
            SimpleNamespace(version=1, content_hash=HASH, model="chat-fast", aliases=()),
            SimpleNamespace(
                version=2, content_hash="sha256:" + "d" * 64, model="chat-smart", aliases=("production",)
            ),
        ]


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["lineage", *argv], out=out)
    return code, out.getvalue()


def test_lineage_prints_the_whole_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ai_factory.prompts.registry as registry_module

    monkeypatch.setattr(registry_module, "PromptRegistry", FakeRegistry)
    assembly = write_assembly(tmp_path / "cdk.out")
    write_store(tmp_path / "store")
    code, text = run_cli("ticket-summarizer", "--assembly", str(assembly), "--store", str(tmp_path / "store"))
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0] == "feature support/ticket-summarizer"
    assert "summarize-ticket  code sha256:aaaaaaaaaaaa (v1)  route chat-fast -> " in text
    assert (
        "serving v2 sha256:dddddddddddd  route chat-smart -> " in text and "(differs from the code)" in text
    )
    assert "    support.tickets" in lines
    versions = [line for line in lines if line.strip().startswith("version ")]
    assert [v.split()[2] for v in versions] == ["FAIL", "COMPLETE", "COMPLETE"]  # newest first
    assert "2026-11-03T10:00:00.000Z  4 curated, 1 quarantined" in text
    assert "masking hash (EMAIL 2)" in text and "error: ConnectorError: boom" in text
    assert "<- source s3://raw/support/tickets/2026-11-03.jsonl  sha256:bbbbbbbbbbbbbbbb" in text

    code, raw = run_cli(
        "support/ticket-summarizer",
        "--assembly",
        str(assembly),
        "--store",
        str(tmp_path / "store"),
        "--format",
        "json",
        "--versions",
        "1",
    )
    report = json.loads(raw)
    assert report["datasets"][0]["versions"][0]["status"] == "FAIL"
    assert report["prompts"][0]["serving"]["version"] == 2


def test_lineage_reads_an_s3_store_and_extra_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assembly = write_assembly(tmp_path / "cdk.out", datasets=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="lineage-store")
        event = build_run_event(facts(), run_id=run_id_for("raw", "k", "v1"))
        LineageWriter(s3, "lineage-store", "lineage/").write(event, "ingest_date=2026-11-03")
        code, text = run_cli(
            "ticket-summarizer",
            "--assembly",
            str(assembly),
            "--store",
            "s3://lineage-store/lineage/",
            "--dataset",
            "support.tickets",
            "--no-registry",
        )
    assert code == 0, text
    assert "COMPLETE" in text and "4 curated" in text
    assert "summarize-ticket  code sha256:aaaaaaaaaaaa (registry not queried)" in text


def test_lineage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_cli("nope", "--assembly", str(tmp_path / "missing"))
    assert code == 1
    assert "not found: run make synth" in capsys.readouterr().err
    code, _ = run_cli("x", "--dataset", "nodot")
    assert code == 2
    assert "--dataset: 'nodot' is not DOMAIN.NAME" in capsys.readouterr().err
    # Without an assembly entry, --dataset alone still answers (no runs recorded).
    code, text = run_cli("team/x", "--assembly", str(tmp_path), "--store", str(tmp_path), "--dataset", "a.b")
    assert code == 0 and "(no connector runs recorded)" in text and "(no prompts)" in text
