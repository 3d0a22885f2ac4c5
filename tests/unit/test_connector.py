"""The data connector end to end on moto (S3, Glue, KMS, Secrets Manager, DynamoDB): masked curated output,
quarantine with reasons for every bad-file case, partitions, idempotent re-runs, valid lineage events."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from aif_connector import connector as connector_module
from aif_connector.connector import (
    CONFIG_FILE_NAME,
    Connector,
    ConnectorError,
    ConnectorSettings,
    build_policies,
    masker_from,
    objects_in,
)
from aif_connector.lineage import check_run_event
from aif_connector.records import Column, DatasetSpec
from moto import mock_aws

from aif_gateway import contract

REGION = "us-east-1"
RAW, CURATED, QUARANTINE, LINEAGE = "aif-raw-zone", "aif-curated-zone", "aif-quarantine-zone", "aif-lineage"
DATABASE, TABLE = "ai_factory_support", "tickets"
HMAC_KEY = b"k" * 32
SPEC = DatasetSpec(
    name="tickets",
    database=DATABASE,
    table=TABLE,
    columns=(
        Column("ticket_id", "bigint", required=True),
        Column("customer", "string", pii=True),
        Column("body", "string"),
        Column("amount", "double"),
        Column("opened", "date"),
        Column("channel", "string", masking="none"),
    ),
    masking="hash",
    classification="confidential",
    max_line_bytes=2000,
)
GOOD_JSONL = "\n".join(
    json.dumps(r)
    for r in [
        {
            "ticket_id": 1,
            "customer": "Ada Lovelace",
            "body": "Contact me at ada@example.com or +44 20 7946 0958 please",
            "amount": 12.5,
            "opened": "2026-11-03",
            "channel": "email",
        },
        {
            "ticket_id": 2,
            "customer": "Alan Turing",
            "body": "Card 4111 1111 1111 1111 was charged twice",
            "channel": "web",
        },
        {"ticket_id": 3, "body": "Order 2026-11-03-17 arrived late, version 10.2.0.1 app"},
    ]
)
BAD_LINES = [
    '{"ticket_id": 4, "body": "broken',  # invalid JSON
    '["not", "an", "object"]',
    '{"ticket_id": "five", "body": "x"}',  # wrong type
    '{"body": "no id"}',  # missing required field
    '{"ticket_id": 6, "surprise": "alice@example.org"}',  # undeclared field
    json.dumps({"ticket_id": 7, "body": "y" * 3000}),  # over max_line_bytes
]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        kms = boto3.client("kms", region_name=REGION)
        key_id = kms.create_key(Description="lake")["KeyMetadata"]["KeyId"]
        for bucket in (RAW, CURATED, QUARANTINE, LINEAGE):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            s3.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {
                            "ApplyServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": key_id,
                            },
                            "BucketKeyEnabled": True,
                        }
                    ]
                },
            )
        glue = boto3.client("glue", region_name=REGION)
        glue.create_database(DatabaseInput={"Name": DATABASE})
        glue.create_table(
            DatabaseName=DATABASE,
            TableInput={
                "Name": TABLE,
                "PartitionKeys": [{"Name": "dt", "Type": "string"}],
                "StorageDescriptor": {
                    "Columns": [{"Name": c.name, "Type": c.type} for c in SPEC.columns],
                    "Location": f"s3://{CURATED}/support/tickets/",
                    "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
                    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    "SerdeInfo": {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe"},
                },
            },
        )
        yield {"s3": s3, "glue": glue, "kms": kms, "key_id": key_id}


def settings(**changes: Any) -> ConnectorSettings:
    base = ConnectorSettings(
        spec=SPEC,
        raw_bucket=RAW,
        curated_bucket=CURATED,
        quarantine_bucket=QUARANTINE,
        lineage_bucket=LINEAGE,
        table_namespace=f"arn:aws:glue:{REGION}:123456789012",
        raw_prefix="incoming/",
        curated_prefix="support/tickets/",
        quarantine_prefix="support/tickets/",
        lineage_prefix="lineage/",
        domain="support",
    )
    return replace(base, **changes)


def make_connector(aws: dict[str, Any], **changes: Any) -> tuple[Connector, io.StringIO]:
    from aif_connector.masking import MaskingPolicy

    policies = {"hash": MaskingPolicy("hash", hmac_key=HMAC_KEY), "redact": MaskingPolicy("redact")}
    metrics = io.StringIO()
    conn = Connector(
        settings(**changes),
        s3=aws["s3"],
        glue=aws["glue"],
        masker=masker_from(policies),
        policy_descriptions={m: p.describe() for m, p in policies.items()},
        metrics_out=metrics,
        clock=lambda: datetime(2026, 11, 3, 12, 0, tzinfo=UTC),
    )
    return conn, metrics


def put_raw(aws: dict[str, Any], key: str, body: bytes) -> str:
    aws["s3"].put_object(Bucket=RAW, Key=key, Body=body)
    return key


def read(aws: dict[str, Any], uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(aws["s3"].get_object(Bucket=bucket, Key=key)["Body"].read())


def keys(aws: dict[str, Any], bucket: str) -> list[str]:
    listed = aws["s3"].list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def lineage_events(aws: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(read(aws, f"s3://{LINEAGE}/{k}")) for k in keys(aws, LINEAGE)]


def openlineage_check(event: dict[str, Any]) -> None:
    """Rebuild the event with the OpenLineage client's typed classes (their validators run: run id is a
    UUID, eventTime an ISO date-time, URLs parse) and compare the standard facets' schema URLs."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.generated import (
        dataset_version_dataset,
        error_message_run,
        output_statistics_output_dataset,
        schema_dataset,
    )

    assert check_run_event(event) == []
    assert event["schemaURL"] == RunEvent._get_schema()
    typed = RunEvent(
        eventType=RunState(event["eventType"]),
        eventTime=event["eventTime"],
        producer=event["producer"],
        run=Run(runId=event["run"]["runId"]),
        job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in event["inputs"]],
        outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in event["outputs"]],
    )
    assert typed.run.runId == event["run"]["runId"]
    facet_classes: dict[str, Any] = {
        "schema": schema_dataset.SchemaDatasetFacet,
        "version": dataset_version_dataset.DatasetVersionDatasetFacet,
        "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet,
        "errorMessage": error_message_run.ErrorMessageRunFacet,
    }
    facets = [event["run"]["facets"]]
    for dataset in event["outputs"]:
        facets += [dataset["facets"], dataset.get("outputFacets", {})]
    for group in facets:
        for name, facet in group.items():
            if name in facet_classes:
                assert facet["_schemaURL"] == facet_classes[name]._get_schema(), name
            else:
                assert name.startswith("aiFactory_"), f"custom facet {name} lacks the aiFactory_ prefix"
    table = event["outputs"][0]["facets"]
    schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(name=f["name"], type=f["type"])
            for f in table["schema"]["fields"]
        ]
    )
    if "version" in table:
        dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=table["version"]["datasetVersion"])


# --------------------------------------------------------------------------------------------- tests


def test_jsonl_end_to_end_masks_pii_quarantines_bad_records_and_records_lineage(aws: dict[str, Any]) -> None:
    conn, metrics = make_connector(aws)
    body = (GOOD_JSONL + "\n\n" + "\n".join(BAD_LINES) + "\n").encode()
    key = put_raw(aws, "incoming/2026/tickets batch.jsonl", body)

    result = conn.process(RAW, key)

    assert result.status == "COMPLETE"
    assert (result.records_in, result.records_curated, result.records_quarantined) == (9, 3, 6)
    curated = [json.loads(line) for line in read(aws, result.curated_uri or "").splitlines()]
    text = json.dumps(curated)
    for secret in ("ada@example.com", "7946 0958", "4111 1111", "Ada Lovelace", "Alan Turing"):
        assert secret not in text
    assert curated[0]["customer"].startswith("[PII_COLUMN:")
    assert "[EMAIL:" in curated[0]["body"] and "[PHONE:" in curated[0]["body"]
    assert "[CREDIT_CARD:" in curated[1]["body"]
    assert curated[2]["body"] == "Order 2026-11-03-17 arrived late, version 10.2.0.1 app"  # tricky negatives
    assert curated[0]["channel"] == "email" and curated[1]["amount"] is None
    # Same value, same pseudonym (joins still work); keys are stable across runs.
    assert "dt=" not in json.dumps(curated) and "/dt=" in (result.curated_uri or "")

    rejects = [json.loads(line) for line in read(aws, result.quarantine_uri or "").splitlines()]
    assert [r["line"] for r in rejects] == [5, 6, 7, 8, 9, 10]  # line 4 is blank
    reasons = [r["reason"] for r in rejects]
    assert reasons[0].startswith("invalid JSON at column")
    assert reasons[1] == "expected a JSON object, got an array"
    assert reasons[2] == "field 'ticket_id': expected an integer, got a string 'five'"
    assert reasons[3] == "field 'ticket_id' is required"
    assert reasons[4] == "unexpected field(s) not in the dataset: 'surprise'"
    assert "over the limit of 2000 bytes" in reasons[5]
    assert [r["raw"] for r in rejects] == BAD_LINES  # nothing lost, byte for byte

    partitions = aws["glue"].get_partitions(DatabaseName=DATABASE, TableName=TABLE)["Partitions"]
    assert [p["Values"] for p in partitions] == [[(result.curated_uri or "").split("dt=")[1][:10]]]
    assert partitions[0]["StorageDescriptor"]["Location"].startswith(f"s3://{CURATED}/support/tickets/dt=")

    (event,) = lineage_events(aws)
    openlineage_check(event)
    assert event["eventType"] == "COMPLETE"
    assert event["job"] == {"namespace": "ai-factory", "name": "connector.support.tickets", "facets": {}}
    assert event["inputs"][0]["namespace"] == f"s3://{RAW}" and event["inputs"][0]["name"] == key
    import hashlib

    assert (
        event["inputs"][0]["facets"]["aiFactory_contentDigest"]["digest"] == hashlib.sha256(body).hexdigest()
    )
    table = event["outputs"][0]
    assert table["name"] == f"table/{DATABASE}/{TABLE}"
    assert table["facets"]["version"]["datasetVersion"] == result.dataset_version
    assert [f["name"] for f in table["facets"]["schema"]["fields"]][-1] == "dt"
    masking = table["facets"]["aiFactory_maskingPolicy"]
    assert masking["mode"] == "hash" and masking["columns"]["channel"] == "none"
    assert masking["findingsByKind"]["EMAIL"] == 1 and masking["findingsByKind"]["PII_COLUMN"] == 2
    assert "key_fingerprint" in masking["policies"]["hash"] and "k" * 32 not in json.dumps(event)
    assert table["outputFacets"]["outputStatistics"]["rowCount"] == 3
    assert event["outputs"][1]["outputFacets"]["outputStatistics"]["rowCount"] == 6

    emf = [json.loads(line) for line in metrics.getvalue().splitlines()]
    assert emf[0]["RecordsIn"] == 9 and emf[0]["RecordsCurated"] == 3 and emf[0]["RecordsQuarantined"] == 6
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Dataset"]]
    kinds = {d["Kind"]: d["PiiFindings"] for d in emf[1:]}
    assert kinds["EMAIL"] == 1 and kinds["CREDIT_CARD"] == 1
    # Every metric is the contract's: same namespace, unit and dimension set the constructs alarm on.
    declared = {(m.namespace, m.name): m for m in contract.METRICS}
    for doc in emf:
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]:
            spec = declared[(directive["Namespace"], metric["Name"])]
            assert metric["Unit"] == spec.unit and tuple(directive["Dimensions"][0]) in spec.dimension_sets


def test_csv_end_to_end_with_quoted_newlines_and_broken_rows(aws: dict[str, Any]) -> None:
    conn, _ = make_connector(aws, spec=replace(SPEC, masking="redact"))
    body = (
        b"ticket_id,customer,body,channel\n"
        b'1,Grace Hopper,"Mail grace@example.com,\nthanks",phone\n'
        b"2,,short row\n"
        b'3,,"bad "quote",web\n'
        b"4,,IBAN DE89 3704 0044 0532 0130 00 please refund,web\n"
    )
    key = put_raw(aws, "incoming/t.csv", body)
    result = conn.process(RAW, key)
    curated = [json.loads(line) for line in read(aws, result.curated_uri or "").splitlines()]
    assert [r["ticket_id"] for r in curated] == [1, 4]
    assert curated[0]["customer"] == "[PII_COLUMN]" and curated[0]["body"] == "Mail [EMAIL],\nthanks"
    assert curated[1]["body"] == "IBAN [IBAN] please refund"
    rejects = [json.loads(line) for line in read(aws, result.quarantine_uri or "").splitlines()]
    assert [(r["line"], r["raw"]) for r in rejects] == [(4, "2,,short row"), (5, '3,,"bad "quote",web')]
    assert rejects[0]["reason"] == "the row has 3 fields, the header has 4"
    assert rejects[1]["reason"].startswith("broken CSV row:")
    openlineage_check(lineage_events(aws)[0])


BAD_FILES = [
    (
        "latin1.jsonl",
        '{"ticket_id": 1, "body": "caf\u00e9"}\n'.encode("latin-1"),
        "not valid UTF-8: byte 0xe9",
    ),
    ("utf16.csv", "ticket_id\n1\n".encode("utf-16"), "UTF-16 encoded"),
    ("empty.jsonl", b"", "the file is empty"),
    ("blank.csv", b"\n \n\t\n", "only whitespace"),
    ("binary.jsonl", b"\x00\x01\x02PK\x03\x04", "binary (NUL bytes)"),
    ("archive.zip", b"PK\x03\x04 whatever", "unsupported file type 'archive.zip'"),
    ("gz.jsonl", b"\x1f\x8b\x08\x00rest", "gzip-compressed"),
    ("header.csv", b"ticket_id,secret_notes\n1,x\n", "unknown columns secret_notes"),
    ("noid.csv", b"body\nhello\n", "missing required columns ticket_id"),
]


@pytest.mark.parametrize(("name", "body", "reason"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_unreadable_files_go_to_quarantine_whole_with_the_reason(
    aws: dict[str, Any], name: str, body: bytes, reason: str
) -> None:
    conn, metrics = make_connector(aws)
    key = put_raw(aws, f"incoming/{name}", body)
    result = conn.process(RAW, key)

    assert result.status == "COMPLETE" and result.file_quarantined
    assert reason in (result.reason or "")
    assert read(aws, result.quarantine_uri or "") == body  # the whole file, byte for byte
    doc = json.loads(read(aws, (result.quarantine_uri or "") + ".reason.json"))
    assert doc["source"] == f"s3://{RAW}/{key}" and reason in doc["reason"]
    assert keys(aws, CURATED) == []
    assert aws["glue"].get_partitions(DatabaseName=DATABASE, TableName=TABLE)["Partitions"] == []
    (event,) = lineage_events(aws)
    openlineage_check(event)
    assert reason in event["run"]["facets"]["aiFactory_connectorRun"]["fileQuarantineReason"]
    assert "version" not in event["outputs"][0]["facets"]  # no curated data, no dataset version
    assert json.loads(metrics.getvalue().splitlines()[0])["FilesQuarantined"] == 1


def test_oversized_object_is_quarantined_without_being_read(aws: dict[str, Any]) -> None:
    conn, _ = make_connector(aws, max_object_bytes=100)
    body = (GOOD_JSONL + "\n").encode()
    key = put_raw(aws, "incoming/big.jsonl", body)
    result = conn.process(RAW, key)
    assert result.file_quarantined and "over the connector's limit of 100 bytes" in (result.reason or "")
    assert read(aws, result.quarantine_uri or "") == body


def test_rerun_is_idempotent(aws: dict[str, Any]) -> None:
    conn, _ = make_connector(aws)
    key = put_raw(aws, "incoming/a.jsonl", (GOOD_JSONL + "\n" + BAD_LINES[0] + "\n").encode())
    first = conn.process(RAW, key)
    before = {b: keys(aws, b) for b in (CURATED, QUARANTINE, LINEAGE)}
    conn2, _ = make_connector(aws)  # a fresh Lambda instance
    second = conn2.process(RAW, key)
    assert {b: keys(aws, b) for b in (CURATED, QUARANTINE, LINEAGE)} == before
    assert (second.run_id, second.curated_uri, second.dataset_version) == (
        first.run_id,
        first.curated_uri,
        first.dataset_version,
    )
    assert read(aws, second.curated_uri or "") == read(aws, first.curated_uri or "")
    assert len(aws["glue"].get_partitions(DatabaseName=DATABASE, TableName=TABLE)["Partitions"]) == 1
    assert len(lineage_events(aws)) == 1


def test_glue_failure_writes_a_fail_event_and_raises(aws: dict[str, Any]) -> None:
    conn, metrics = make_connector(aws, spec=replace(SPEC, table="missing_table"))
    key = put_raw(aws, "incoming/a.jsonl", (GOOD_JSONL + "\n").encode())
    with pytest.raises(ConnectorError, match="EntityNotFoundException"):
        conn.process(RAW, key)
    (event,) = lineage_events(aws)
    openlineage_check(event)
    assert event["eventType"] == "FAIL"
    assert "EntityNotFoundException" in event["run"]["facets"]["errorMessage"]["message"]
    assert json.loads(metrics.getvalue().splitlines()[-1])["RunsFailed"] == 1


def test_objects_outside_the_raw_zone_are_refused_and_missing_ones_skipped(aws: dict[str, Any]) -> None:
    conn, metrics = make_connector(aws)
    with pytest.raises(ConnectorError, match="not under the raw zone"):
        conn.process(RAW, "elsewhere/a.jsonl")
    with pytest.raises(ConnectorError, match="not under the raw zone"):
        conn.process(CURATED, "incoming/a.jsonl")
    skipped = conn.process(RAW, "incoming/gone.jsonl")
    assert skipped.status == "SKIPPED"
    assert json.loads(metrics.getvalue())["ObjectsMissing"] == 1


def test_objects_in_decodes_s3_and_eventbridge_events() -> None:
    s3_event = {
        "Records": [
            {
                "s3": {
                    "bucket": {"name": RAW},
                    "object": {"key": "incoming/my+file%C3%A9.csv", "versionId": "v1"},
                }
            }
        ]
    }
    assert list(objects_in(s3_event)) == [(RAW, "incoming/my fileé.csv", "v1")]
    bridge = {"source": "aws.s3", "detail": {"bucket": {"name": RAW}, "object": {"key": "incoming/a b.csv"}}}
    assert list(objects_in(bridge)) == [(RAW, "incoming/a b.csv", None)]
    assert list(objects_in({"Event": "s3:TestEvent"})) == []


def test_lambda_handler_with_staged_config_tokenization_and_secret(
    aws: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secret_arn = secrets.create_secret(Name="hmac", SecretString=base64.b64encode(HMAC_KEY).decode())["ARN"]
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName="vault",
        KeySchema=[{"AttributeName": "token", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "token", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    spec = replace(
        SPEC, database="from-file", columns=(*SPEC.columns[:2], replace(SPEC.columns[2], masking="tokenize"))
    )
    config = tmp_path / CONFIG_FILE_NAME
    config.write_text(
        json.dumps(
            {
                "dataset": spec.to_dict(),
                "raw_prefix": "incoming/",
                "curated_prefix": "support/tickets/",
                "quarantine_prefix": "support/tickets/",
                "domain": "support",
            }
        )
    )
    env = {
        "AIF_CONNECTOR_CONFIG": str(config),
        "AIF_RAW_BUCKET": RAW,
        "AIF_CURATED_BUCKET": CURATED,
        "AIF_QUARANTINE_BUCKET": QUARANTINE,
        "AIF_LINEAGE_BUCKET": LINEAGE,
        "AIF_GLUE_DATABASE": DATABASE,
        "AIF_TABLE_NAMESPACE": f"arn:aws:glue:{REGION}:123456789012",
        "AIF_HMAC_SECRET_ARN": secret_arn,
        "AIF_TOKEN_VAULT_TABLE": "vault",
        "AIF_TOKEN_KEY_ARN": aws["key_id"],
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(connector_module, "_CONNECTOR", None)
    monkeypatch.setattr(connector_module, "_TOKENIZERS", [])
    put_raw(
        aws,
        "incoming/my file.jsonl",
        b'{"ticket_id": 1, "customer": "Bob Smith", "body": "bob@example.com"}\n',
    )
    event = {"Records": [{"s3": {"bucket": {"name": RAW}, "object": {"key": "incoming/my+file.jsonl"}}}]}

    out = connector_module.lambda_handler(event, None)

    (result,) = out["processed"]
    (record,) = [json.loads(line) for line in read(aws, result["curated_uri"]).splitlines()]
    assert record["customer"].startswith("[PII_COLUMN:") and record["body"].startswith("[EMAIL:tok:")
    assert dynamodb.scan(TableName="vault")["Count"] == 1
    assert all(not t._tokens for t in connector_module._TOKENIZERS)  # plaintext cache cleared
    (lineage,) = lineage_events(aws)
    assert lineage["outputs"][0]["name"] == f"table/{DATABASE}/{TABLE}"  # database from the environment
    assert set(lineage["outputs"][0]["facets"]["aiFactory_maskingPolicy"]["policies"]) == {"hash", "tokenize"}
    assert '"RecordsCurated": 1' in capsys.readouterr().out

    # A failing object makes the handler raise after trying every object (Lambda retries, then DLQ).
    put_raw(aws, "incoming/ok.jsonl", b'{"ticket_id": 2}\n')
    two = {
        "Records": [
            {"s3": {"bucket": {"name": RAW}, "object": {"key": "wrong/prefix.jsonl"}}},
            {"s3": {"bucket": {"name": RAW}, "object": {"key": "incoming/ok.jsonl"}}},
        ]
    }
    with pytest.raises(ConnectorError, match="1 object"):
        connector_module.lambda_handler(two, None)
    assert any("ok" in k for k in keys(aws, CURATED))


def test_policies_need_the_secret_for_hash() -> None:
    with pytest.raises(ConnectorError, match="AIF_HMAC_SECRET_ARN"):
        build_policies(settings(), {}, session=None)


# ------------------------------------------------------------------------------- nested columns

ARTICLES = DatasetSpec(
    name="articles",
    database=DATABASE,
    table="articles",
    columns=(
        Column("article_id", "string", required=True),
        Column("body", "string"),
        Column("tags", "array<string>"),
        Column(
            "author", "struct<name:string,contact:struct<email:string,phone:string>,karma:int>", pii=False
        ),
        Column("reviewers", "array<struct<name:string,note:string>>"),
        Column("owners", "array<string>", pii=True),
        Column("scores", "array<double>"),
    ),
    masking="redact",
    classification="internal",
    max_line_bytes=1_048_576,
)


def _articles_table(aws: dict[str, Any]) -> None:
    aws["glue"].create_table(
        DatabaseName=DATABASE,
        TableInput={
            "Name": "articles",
            "PartitionKeys": [{"Name": "dt", "Type": "string"}],
            "StorageDescriptor": {
                "Columns": [{"Name": c.name, "Type": c.type} for c in ARTICLES.columns],
                "Location": f"s3://{CURATED}/knowledge/articles/",
                "SerdeInfo": {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe"},
            },
        },
    )


def test_nested_arrays_and_structs_are_validated_and_masked_at_every_depth(aws: dict[str, Any]) -> None:
    _articles_table(aws)
    conn, _ = make_connector(aws, spec=ARTICLES, curated_prefix="knowledge/articles/")
    long_body = ("Reset the router, then wait. " * 8000) + "Write to help@example.com."  # ~230 KB
    good = {
        "article_id": "a1",
        "body": long_body,
        "tags": ["router", "mail ops@example.com", None],
        "author": {"name": "Dear Ada Lovelace", "contact": {"email": "ada@example.com", "phone": None}},
        "reviewers": [{"name": "x", "note": "call +44 20 7946 0958"}, {"note": "fine"}],
        "owners": ["Grace Hopper", "Alan Turing"],
        "scores": [1, 2.5],
    }
    bad = [
        {"article_id": "b1", "tags": ["ok", 5]},
        {"article_id": "b2", "author": {"contact": {"email": 7}}},
        {"article_id": "b3", "author": {"nickname": "x"}},
        {"article_id": "b4", "reviewers": [{"name": "a"}, "not an object"]},
        {"article_id": "b5", "tags": "router"},
        {"article_id": "b6", "scores": [1, "high"]},
    ]
    body = "\n".join(json.dumps(r) for r in [good, *bad]).encode()
    result = conn.process(RAW, put_raw(aws, "incoming/articles.jsonl", body))
    assert (result.records_in, result.records_curated, result.records_quarantined) == (7, 1, 6)

    (curated,) = [json.loads(line) for line in read(aws, result.curated_uri or "").splitlines()]
    assert curated["tags"] == ["router", "mail [EMAIL]", None]
    assert curated["author"] == {
        "name": "Dear [PERSON_NAME]",
        "contact": {"email": "[EMAIL]", "phone": None},
        "karma": None,
    }
    assert curated["reviewers"] == [
        {"name": "x", "note": "call [PHONE]"},
        {"name": None, "note": "fine"},
    ]
    assert curated["owners"] == ["[PII_COLUMN]", "[PII_COLUMN]"]  # a pii column is masked whole per leaf
    assert curated["scores"] == [1.0, 2.5]
    assert curated["body"].endswith("Write to [EMAIL].") and len(curated["body"]) > 200_000
    assert "@example.com" not in read(aws, result.curated_uri or "").decode()
    assert result.findings_by_kind["EMAIL"] == 3

    reasons = [json.loads(line)["reason"] for line in read(aws, result.quarantine_uri or "").splitlines()]
    assert reasons == [
        "field 'tags[1]': expected a string, got a number 5",
        "field 'author.contact.email': expected a string, got a number 7",
        "field 'author': unexpected field(s) not in the struct: 'nickname'",
        "field 'reviewers[1]': expected an object, got a string 'not an object'",
        "field 'tags': expected an array, got a string 'router'",
        "field 'scores[1]': expected a number, got a string 'high'",
    ]


def test_nested_csv_cells_are_json_text(aws: dict[str, Any]) -> None:
    _articles_table(aws)
    conn, _ = make_connector(aws, spec=ARTICLES, curated_prefix="knowledge/articles/")
    rows = [
        "article_id,tags,author",
        'a1,"[""faq"", ""x@example.org""]","{""name"": ""Bob"", ""karma"": 3}"',
        'a2,"[""faq""",',
        "a3,,",
    ]
    result = conn.process(RAW, put_raw(aws, "incoming/articles.csv", "\n".join(rows).encode()))
    curated = [json.loads(line) for line in read(aws, result.curated_uri or "").splitlines()]
    assert [c["article_id"] for c in curated] == ["a1", "a3"]
    assert curated[0]["tags"] == ["faq", "[EMAIL]"] and curated[0]["author"]["karma"] == 3
    assert curated[1]["tags"] is None
    (reject,) = [json.loads(line) for line in read(aws, result.quarantine_uri or "").splitlines()]
    assert reject["line"] == 3 and reject["reason"].startswith("field 'tags': invalid JSON in the cell")


# --------------------------------------------------------------------------- Amazon Comprehend option


def _comprehend_connector(aws: dict[str, Any], **changes: Any) -> tuple[Connector, io.StringIO, Any]:
    from aif_connector.masking import MaskingPolicy

    client = boto3.client("comprehend", region_name=REGION)
    policies = {"hash": MaskingPolicy("hash", hmac_key=HMAC_KEY), "redact": MaskingPolicy("redact")}
    metrics = io.StringIO()
    conn = Connector(
        settings(pii_detection="comprehend", **changes),
        s3=aws["s3"],
        glue=aws["glue"],
        masker=masker_from(policies),
        metrics_out=metrics,
        clock=lambda: datetime(2026, 11, 3, 12, 0, tzinfo=UTC),
        comprehend=client,
    )
    return conn, metrics, client


def _metric_values(metrics: io.StringIO) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in metrics.getvalue().splitlines():
        doc = json.loads(line)
        for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            out[m["Name"]] = out.get(m["Name"], 0) + doc[m["Name"]]
    return out


def test_comprehend_names_are_masked_in_one_batched_request_and_metered(aws: dict[str, Any]) -> None:
    from botocore.stub import Stubber

    conn, metrics, client = _comprehend_connector(aws)
    records = [
        {"ticket_id": 1, "customer": "Ada", "body": "Bartholomew Quill called twice", "channel": "web"},
        {"ticket_id": 2, "body": "mail ops@example.com", "subject_missing": None},
    ]
    records[1].pop("subject_missing")
    body = "\n".join(json.dumps(r) for r in records).encode()
    # Scanned strings in record order (the pii column 'customer' and masking 'none' are not sent).
    joined = "Bartholomew Quill called twice\n\nmail ops@example.com"
    with Stubber(client) as stub:
        stub.add_response(
            "detect_pii_entities",
            {"Entities": [{"Type": "NAME", "BeginOffset": 0, "EndOffset": 17, "Score": 0.98}]},
            {"Text": joined, "LanguageCode": "en"},
        )
        result = conn.process(RAW, put_raw(aws, "incoming/t.jsonl", body))
        stub.assert_no_pending_responses()
    curated = [json.loads(line) for line in read(aws, result.curated_uri or "").splitlines()]
    assert curated[0]["body"].startswith("[PERSON_NAME:") and curated[0]["body"].endswith(" called twice")
    assert curated[1]["body"].startswith("mail [EMAIL:")  # the offline detectors still run
    values = _metric_values(metrics)
    assert values["ComprehendRequests"] == 1
    assert values["ComprehendUnits"] == 3  # 52 characters: the 3-unit minimum per request
    assert values["ComprehendCostUSD"] == pytest.approx(0.0003)
    assert values["PiiDetectionFailures"] == 0


def test_comprehend_failure_quarantines_the_records_it_could_not_check(aws: dict[str, Any]) -> None:
    from aif_connector import pii
    from botocore.stub import Stubber

    conn, metrics, client = _comprehend_connector(aws, spec=replace(SPEC, max_line_bytes=200_000))
    # 60 KB each: two texts do not fit in one 100 KB request, so two requests; the first fails
    # (throttled after botocore's retries), the second succeeds.
    first, second = "a " * 30_000, "b " * 30_000
    assert 2 * len(first.encode()) > pii.COMPREHEND_MAX_BYTES
    body = "\n".join(
        json.dumps({"ticket_id": i, "body": text}) for i, text in ((1, first), (2, second))
    ).encode()
    with Stubber(client) as stub:
        stub.add_client_error("detect_pii_entities", "ThrottlingException", http_status_code=400)
        stub.add_response("detect_pii_entities", {"Entities": []}, {"Text": second, "LanguageCode": "en"})
        result = conn.process(RAW, put_raw(aws, "incoming/t2.jsonl", body))
        stub.assert_no_pending_responses()
    assert (result.records_curated, result.records_quarantined) == (1, 1)
    curated = [json.loads(line) for line in read(aws, result.curated_uri or "").splitlines()]
    assert [c["ticket_id"] for c in curated] == [2]
    (reject,) = [json.loads(line) for line in read(aws, result.quarantine_uri or "").splitlines()]
    assert reject["line"] == 1
    assert reject["reason"] == (
        "PII detection failed, the record was not written: "
        "Amazon Comprehend DetectPiiEntities failed: ThrottlingException"
    )
    values = _metric_values(metrics)
    assert values["PiiDetectionFailures"] == 1
    assert (
        values["ComprehendRequests"] == 2 and values["ComprehendUnits"] == 600
    )  # failed requests are not billed


def test_comprehend_setting_is_loaded_and_needs_a_client(tmp_path: Any) -> None:
    config = {"dataset": SPEC.to_dict(), "pii_detection": "comprehend", "comprehend_language": "es"}
    path = tmp_path / CONFIG_FILE_NAME
    path.write_text(json.dumps(config))
    env = {
        contract.RAW_BUCKET_ENV: RAW,
        contract.CURATED_BUCKET_ENV: CURATED,
        contract.QUARANTINE_BUCKET_ENV: QUARANTINE,
        contract.LINEAGE_BUCKET_ENV: LINEAGE,
        contract.TABLE_NAMESPACE_ENV: "arn:aws:glue:us-east-1:1",
    }
    loaded = ConnectorSettings.load(path, env)
    assert (loaded.pii_detection, loaded.comprehend_language) == ("comprehend", "es")
    with pytest.raises(ConnectorError, match="needs a Comprehend client"):
        Connector(loaded, s3=None, glue=None, masker=masker_from({}))


# ---------------------------------------------------------------- announcing versions (knowledge-base sync)


def test_connector_announces_a_curated_version_before_its_complete_event(aws: dict[str, Any]) -> None:
    from aif_connector.knowledge_sync import EVENT_DETAIL_TYPE, EVENT_SOURCE
    from aif_connector.masking import MaskingPolicy
    from botocore.stub import ANY, Stubber

    events = boto3.client("events", region_name=REGION)
    conn = Connector(
        settings(event_bus="default"),
        s3=aws["s3"],
        glue=aws["glue"],
        masker=masker_from({"hash": MaskingPolicy("hash", hmac_key=HMAC_KEY)}),
        metrics_out=io.StringIO(),
        events=events,
    )
    body = json.dumps({"ticket_id": 1, "body": "hello"}).encode()
    entry = {
        "Source": EVENT_SOURCE,
        "DetailType": EVENT_DETAIL_TYPE,
        "Detail": ANY,
        "EventBusName": "default",
    }
    with Stubber(events) as stub:
        stub.add_response(
            "put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]}, {"Entries": [entry]}
        )
        result = conn.process(RAW, put_raw(aws, "incoming/a.jsonl", body))
        stub.assert_no_pending_responses()
    assert result.status == "COMPLETE" and result.dataset_version
    # A failed announcement fails the run (Lambda retries it whole; the run is idempotent).
    with Stubber(events) as stub:
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "x"}]},
        )
        with pytest.raises(ConnectorError, match="could not announce dataset version sha256:"):
            conn.process(RAW, put_raw(aws, "incoming/b.jsonl", body))
    # A run that curated nothing announces nothing (no stubbed response: a call would fail the test).
    with Stubber(events):
        empty = conn.process(RAW, put_raw(aws, "incoming/c.jsonl", b'{"body": "no id"}'))
    assert empty.records_curated == 0
