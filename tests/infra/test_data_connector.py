"""DataConnector: Lambda wiring, S3 notification, least privilege, Lake Formation grant, DLQ, logs, nag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from ai_factory.constructs.data_connector import CONFIG_FILE_NAME, DataConnector, DataConnectorError
from ai_factory.constructs.governance import DataLake, GovernedDataset

ENV = cdk.Environment(account="111122223333", region="us-east-1")
COLUMNS = {
    "ticket_id": "string",
    "customer": "string",
    "body": "string",
    "amount": "decimal(9,2)",
    "n": "bigint",
}


def build(nag: bool = False, **props: Any) -> tuple[cdk.App, cdk.Stack, DataConnector]:
    app = cdk.App()
    stack = cdk.Stack(app, "Gov", env=ENV)
    lake = DataLake(stack, "Lake", domains=["support"])
    dataset = GovernedDataset(
        stack,
        "Tickets",
        foundation=lake,
        name="tickets",
        domain="support",
        classification="confidential",
        pii=False,
        columns=COLUMNS,
        partition_keys={"ingest_date": "string"},
    )
    props = {"pii_columns": ["customer"], **props}
    connector = DataConnector(stack, "Connector", dataset=dataset, **props)
    if nag:
        from ai_factory.platform.nag import apply_nag_packs

        apply_nag_packs(app)
    return app, stack, connector


@pytest.fixture(scope="module")
def synth() -> dict[str, Any]:
    _, stack, connector = build(column_masking={"ticket_id": "tokenize"})
    return {"stack": stack, "connector": connector, "template": Template.from_stack(stack)}


def statements(template: Template) -> dict[str, dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    out = {}
    for policy in policies.values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "Sid" in statement:
                out[statement["Sid"]] = statement
    return out


def test_function_is_python_314_arm64_with_failure_destination_and_logs(synth: dict[str, Any]) -> None:
    template: Template = synth["template"]
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.14",
            "Architectures": ["arm64"],
            "Handler": "aif_connector.connector.lambda_handler",
            "TracingConfig": {"Mode": "Active"},
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "AIF_RAW_BUCKET": {"Ref": Match.string_like_regexp("LakeRawBucket")},
                        "AIF_GLUE_DATABASE": Match.any_value(),
                        "AIF_HMAC_SECRET_ARN": Match.any_value(),
                        "AIF_TOKEN_VAULT_TABLE": Match.any_value(),
                        "AIF_TOKEN_KEY_ARN": Match.any_value(),
                    }
                )
            },
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "MaximumRetryAttempts": 2,
            "DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}},
        },
    )
    template.has_resource_properties(
        "AWS::Logs::LogGroup", {"RetentionInDays": 365, "KmsKeyId": Match.any_value()}
    )
    template.has_resource_properties("AWS::SQS::Queue", {"KmsMasterKeyId": Match.any_value()})


def test_raw_prefix_notification(synth: dict[str, Any]) -> None:
    synth["template"].has_resource_properties(
        "Custom::S3BucketNotifications",
        {
            "NotificationConfiguration": {
                "LambdaFunctionConfigurations": [
                    {
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "support/tickets/"}]}},
                        "LambdaFunctionArn": Match.any_value(),
                    }
                ]
            }
        },
    )


def test_least_privilege_statements(synth: dict[str, Any]) -> None:
    stack: cdk.Stack = synth["stack"]
    found = statements(synth["template"])
    read = found["ReadRawFiles"]
    assert read["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert "support/tickets/*" in json.dumps(read["Resource"])
    writes = json.dumps(found["WriteOutputs"]["Resource"])
    assert found["WriteOutputs"]["Action"] == "s3:PutObject"
    for part in ("LakeCuratedBucket", "LakeQuarantineBucket", "/support/tickets/*", "/lineage/*"):
        assert part in writes
    assert "LakeRawBucket" not in writes  # never writes to the raw zone
    kms = found["LakeKeyThroughS3Only"]
    assert kms["Condition"] == {
        "StringEquals": {
            "kms:ViaService": {"Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
        }
    }
    glue = found["RegisterPartitions"]
    assert glue["Action"] == ["glue:GetTable", "glue:BatchCreatePartition"]
    assert "table/" in json.dumps(stack.resolve(glue["Resource"])) and "tickets" in json.dumps(
        glue["Resource"]
    )
    assert found["EncryptTokens"]["Condition"] == {"StringLike": {"kms:EncryptionContext:aif:token": "*"}}
    assert found["WriteTokenVault"]["Action"] == "dynamodb:PutItem"
    all_actions = json.dumps([s["Action"] for s in found.values()])
    for forbidden in ("s3:*", "glue:*", "s3:DeleteObject", "kms:*", "lakeformation:"):
        assert forbidden not in all_actions


def test_lake_formation_grant_on_exactly_the_table(synth: dict[str, Any]) -> None:
    template: Template = synth["template"]
    grants = template.find_resources(
        "AWS::LakeFormation::PrincipalPermissions",
        {"Properties": {"Resource": {"Table": Match.object_like({"Name": "tickets"})}}},
    )
    ((_, grant),) = grants.items()
    assert sorted(grant["Properties"]["Permissions"]) == ["DESCRIBE", "INSERT"]
    assert grant["Properties"]["PermissionsWithGrantOption"] == []
    assert any("TicketsTable" in d for d in grant["DependsOn"])


def test_staged_config_describes_the_dataset(synth: dict[str, Any]) -> None:
    connector: DataConnector = synth["connector"]
    spec = connector.spec
    assert spec["partition_key"] == "ingest_date" and spec["classification"] == "confidential"
    by_name = {c["name"]: c for c in spec["columns"]}
    assert by_name["customer"]["pii"] and by_name["ticket_id"]["masking"] == "tokenize"
    assert connector.modes == ["hash", "tokenize"]
    code = connector.function.node.default_child.code  # type: ignore[union-attr]
    assert code is not None
    from ai_factory.constructs.data_connector import stage_connector_asset

    folder = stage_connector_asset(
        {
            "dataset": spec,
            "domain": "support",
            "raw_prefix": connector.raw_prefix,
            "curated_prefix": connector.curated_prefix,
            "quarantine_prefix": connector.quarantine_prefix,
            "lineage_prefix": connector.lineage_prefix,
            "job_namespace": "ai-factory",
            "max_object_bytes": 256 * 1024 * 1024,
        }
    )
    staged = json.loads((Path(folder) / "aif_connector" / CONFIG_FILE_NAME).read_text())
    assert staged["dataset"]["name"] == "tickets"
    assert (Path(folder) / "aif_connector" / "connector.py").is_file()
    assert (Path(folder) / "aif_connector" / "pii.py").is_file()
    # The runtime reads what the construct staged.
    from aif_connector.records import DatasetSpec

    assert DatasetSpec.from_dict({**staged["dataset"], "database": "db"}).columns[3].base_type == "double"


def test_alarm_inputs_and_metrics(synth: dict[str, Any]) -> None:
    connector: DataConnector = synth["connector"]
    names = [a.name for a in connector.alarm_inputs()]
    assert names == [
        "support.tickets-connector-dead-letters",
        "support.tickets-connector-failed-runs",
        "support.tickets-connector-files-quarantined",
    ]
    metric = connector.metric_pii_findings("EMAIL")
    assert metric.namespace == "AIFactory/DataConnector"
    assert metric.dimensions == {"Dataset": "support.tickets", "Kind": "EMAIL"}


def test_redact_only_needs_no_secret_or_vault() -> None:
    _, stack, connector = build(masking="redact", pii_columns=[])
    template = Template.from_stack(stack)
    assert connector.hmac_secret is None and connector.token_vault is None
    template.resource_count_is("AWS::SecretsManager::Secret", 0)
    template.resource_count_is("AWS::DynamoDB::Table", 0)


def test_passes_the_nag_packs() -> None:
    app, _, _ = build(nag=True, column_masking={"ticket_id": "tokenize"})
    app.synth()  # raises ValidationFailed on any unacknowledged finding


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"masking": "encrypt"}, "masking: 'encrypt' is not one of"),
        ({"pii_columns": ["nope"]}, "pii_columns: nope not columns of support.tickets"),
        ({"column_masking": {"customer": "none"}}, "customer is a PII column"),
        ({"column_masking": {"n": "hash"}}, "n holds no strings, nested or not"),
        ({"pii_kinds": ["EMAIL", "DNA"]}, "pii_kinds: unknown kinds ['DNA']"),
        ({"raw_prefix": "/abs"}, "raw_prefix: '/abs' must be a key prefix"),
        ({"lineage_prefix": "support/tickets/lineage/"}, "outside the dataset's curated prefix"),
        ({"pii_detection": "model"}, "pii_detection: 'model' is not one of offline, comprehend"),
        ({"comprehend_language": "de"}, "comprehend_language: 'de': DetectPiiEntities reads en, es only"),
    ],
)
def test_invalid_configuration_names_the_field(props: dict[str, Any], message: str) -> None:
    with pytest.raises(DataConnectorError, match=None) as info:
        build(**props)
    assert message in str(info.value) and "DataConnector Gov/Connector" in str(info.value)


def test_nested_columns_are_accepted_and_staged() -> None:
    stack = cdk.Stack(cdk.App(), "Gov", env=ENV)
    lake = DataLake(stack, "Lake", domains=["support"])
    nested = GovernedDataset(
        stack, "A", foundation=lake, name="a", domain="support", classification="public", pii=False,
        columns={"tags": "array<string>", "author": "struct<name:string,karma:int>", "n": "array<int>"},
        partition_keys={"dt": "string"},
    )  # fmt: skip
    connector = DataConnector(stack, "CA", dataset=nested, masking="redact", pii_columns=["tags"])
    assert connector.modes == ["redact"]
    assert [c["type"] for c in connector.spec["columns"]] == [
        "array<string>",
        "struct<name:string,karma:int>",
        "array<int>",
    ]
    with pytest.raises(DataConnectorError, match="column_masking: n holds no strings"):
        DataConnector(stack, "CN", dataset=nested, masking="redact", column_masking={"n": "hash"})


def test_unsupported_dataset_shapes_are_refused() -> None:
    stack = cdk.Stack(cdk.App(), "Gov", env=ENV)
    lake = DataLake(stack, "Lake", domains=["support"])
    mapped = GovernedDataset(
        stack, "A", foundation=lake, name="a", domain="support", classification="public", pii=False,
        columns={"attrs": "map<string,string>"}, partition_keys={"dt": "string"},
    )  # fmt: skip
    with pytest.raises(
        DataConnectorError, match=r"dataset: column 'attrs': type 'map<string,string>': map<…>"
    ):
        DataConnector(stack, "CA", dataset=mapped)
    flat = GovernedDataset(
        stack, "B", foundation=lake, name="b", domain="support", classification="public", pii=False,
        columns={"x": "string"},
    )  # fmt: skip
    with pytest.raises(DataConnectorError, match="exactly one partition key"):
        DataConnector(stack, "CB", dataset=flat)


def test_comprehend_option_grants_detect_pii_entities_and_stages_the_setting() -> None:
    _, stack, connector = build(pii_detection="comprehend", comprehend_language="es")
    found = statements(Template.from_stack(stack))
    assert found["DetectPiiWithComprehend"] == {
        "Sid": "DetectPiiWithComprehend",
        "Effect": "Allow",
        "Action": "comprehend:DetectPiiEntities",
        "Resource": "*",  # the action has no resource-level permissions
    }
    assert "DetectPiiWithComprehend" not in statements(Template.from_stack(build()[1]))
    # What the asset stages as connector_config.json; the runtime reads both keys back.
    assert (connector.config["pii_detection"], connector.config["comprehend_language"]) == (
        "comprehend",
        "es",
    )
    names = [a.name for a in connector.alarm_inputs()]
    assert names[0] == "support.tickets-connector-pii-detection-failures"
    assert connector.metric_comprehend_cost().metric_name == "ComprehendCostUSD"


def test_comprehend_option_passes_the_nag_packs() -> None:
    app, _, _ = build(nag=True, pii_detection="comprehend")
    app.synth()  # the '*' for DetectPiiEntities is acknowledged with its reason


def test_connector_may_announce_versions_on_the_default_bus_only(synth: dict[str, Any]) -> None:
    found = statements(synth["template"])["AnnounceDatasetVersions"]
    assert found["Action"] == "events:PutEvents"
    assert found["Condition"] == {"StringEquals": {"events:source": "ai-factory.data-connector"}}
    assert json.dumps(found["Resource"]).endswith(':event-bus/default"]]}')
    synth["template"].has_resource_properties(
        "AWS::Lambda::Function",
        {"Environment": {"Variables": Match.object_like({"AIF_CONNECTOR_EVENT_BUS": "default"})}},
    )
    _, stack, _ = build(announce_versions=False)
    assert "AnnounceDatasetVersions" not in statements(Template.from_stack(stack))
