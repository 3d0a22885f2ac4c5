"""QBusinessConnector: Q Business data sources over exactly the curated prefix of governed datasets, the
classification attributes they set, their least-privilege roles, the refusals, the created application,
the custom resource that adds the attribute fields to an existing index (and its IAM), and cdk-nag."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from ai_factory.constructs.governance import GovernedDataset
from ai_factory.constructs.q_business import (
    DEFAULT_SYNC_SCHEDULE,
    DOCUMENT_ATTRIBUTES,
    INDEX_FIELDS_RESOURCE_TYPE,
    QBusinessConnector,
    QBusinessError,
    stage_index_fields_asset,
)
from ai_factory.platform.nag import apply_nag_packs
from stacks.governance_stack import GovernanceStack

ENV = cdk.Environment(account="111122223333", region="us-east-1")
APP_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
INDEX_ID = "f0e1d2c3-b4a5-4968-8776-655443322110"
IDC_ARN = "arn:aws:sso:::instance/ssoins-1234567890abcdef"
INDEX_ARN = {
    "Fn::Join": [
        "",
        [
            "arn:",
            {"Ref": "AWS::Partition"},
            f":qbusiness:us-east-1:111122223333:application/{APP_ID}/index/{INDEX_ID}",
        ],
    ]
}
APP_ARN = {
    "Fn::Join": [
        "",
        ["arn:", {"Ref": "AWS::Partition"}, f":qbusiness:us-east-1:111122223333:application/{APP_ID}"],
    ]
}


@dataclass
class Built:
    governance: GovernanceStack
    stack: cdk.Stack
    connector: QBusinessConnector
    template: Template

    def only(self, kind: str) -> dict[str, Any]:
        [(_, resource)] = self.template.find_resources(kind).items()
        return dict(resource["Properties"])

    def resource(self, construct: Any) -> dict[str, Any]:
        """The template entry of ``construct`` (its default child when it is an L2)."""
        node = construct.node.default_child or construct
        return dict(self.template.to_json()["Resources"][self.stack.get_logical_id(node)])

    def export_of(self, construct: Any, attribute: str) -> str:
        """The export name CDK gives ``construct``'s ``attribute`` when this stack imports it."""
        logical = self.governance.get_logical_id(construct.node.default_child)
        for output in _outputs(self.governance).values():
            value = output["Value"]
            if value == {"Fn::GetAtt": [logical, attribute]} or (
                attribute == "Ref" and value == {"Ref": logical}
            ):
                return str(output["Export"]["Name"])
        raise AssertionError(f"no export of {logical}.{attribute}")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _outputs(stack: cdk.Stack) -> dict[str, Any]:
    return dict(Template.from_stack(stack).to_json().get("Outputs", {}))


def new_stacks(app: cdk.App | None = None) -> tuple[GovernanceStack, cdk.Stack]:
    app = app or cdk.App()
    governance = GovernanceStack(app, "Governance", env=ENV)
    return governance, cdk.Stack(app, "QBusiness", env=ENV)


def build(**props: Any) -> Built:
    governance, stack = new_stacks()
    props = {"cleared_for": "internal", "datasets": [governance.datasets["support.tickets"]], **props}
    connector = QBusinessConnector(stack, "QBusiness", **props)
    return Built(governance, stack, connector, Template.from_stack(stack))


@pytest.fixture(scope="module")
def existing() -> Built:
    return build(application_id=APP_ID, index_id=INDEX_ID)


# ------------------------------------------------------------------- data source: curated prefix only


def test_data_source_crawls_only_the_dataset_s_curated_prefix(existing: Built) -> None:
    source = existing.only("AWS::QBusiness::DataSource")
    assert source["ApplicationId"] == APP_ID and source["IndexId"] == INDEX_ID
    config = source["Configuration"]
    assert config["type"] == "S3" and config["syncMode"] == "FULL_CRAWL"
    assert config["additionalProperties"]["inclusionPrefixes"] == ["support/tickets/"]
    assert config["repositoryConfigurations"] == {"document": {"fieldMappings": []}}
    # The bucket is the lake's curated bucket (imported from the governance stack), not raw or quarantine.
    bucket = config["connectionConfiguration"]["repositoryEndpointMetadata"]["BucketName"]
    lake = existing.governance.lake
    assert bucket == {"Fn::ImportValue": existing.export_of(lake.curated_bucket, "Ref")}
    # ... and the only value taken from the lake: no other bucket, no other prefix.
    assert json.dumps(config).count("Fn::ImportValue") == 1
    assert source["SyncSchedule"] == DEFAULT_SYNC_SCHEDULE


def test_every_document_carries_the_dataset_s_classification_domain_and_name(existing: Built) -> None:
    source = existing.only("AWS::QBusiness::DataSource")
    inline = source["DocumentEnrichmentConfiguration"]["InlineConfigurations"]
    # No condition: the data source holds one dataset, so every document it indexes gets these values.
    assert all(set(rule) == {"Target"} for rule in inline)
    targets = {rule["Target"]["Key"]: rule["Target"]["Value"]["StringValue"] for rule in inline}
    assert targets == {
        "aif_classification": "internal",
        "aif_domain": "support",
        "aif_dataset": "support.tickets",
    }
    assert {"Key": "Classification", "Value": "internal"} in source["Tags"]


def test_role_reads_only_the_prefix_decrypts_through_s3_and_ingests_into_this_index(existing: Built) -> None:
    role = existing.resource(existing.connector.roles["support.tickets"])["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "qbusiness.amazonaws.com"}
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        "ArnEquals": {"aws:SourceArn": APP_ARN},
    }
    [policy] = role["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert set(statements) == {
        "ListDatasetPrefix",
        "ReadDatasetPrefix",
        "IngestIntoThisIndex",
        "PrincipalStoreOfThisApplication",
        "DecryptDatasetThroughS3",
    }
    lake = existing.governance.lake
    bucket_arn = {"Fn::ImportValue": existing.export_of(lake.curated_bucket, "Arn")}
    listing = statements["ListDatasetPrefix"]
    assert listing["Action"] == "s3:ListBucket" and listing["Resource"] == bucket_arn
    assert listing["Condition"]["StringLike"] == {"s3:prefix": ["support/tickets/*"]}
    read = statements["ReadDatasetPrefix"]
    assert read["Action"] == "s3:GetObject"
    assert read["Resource"] == {"Fn::Join": ["", [bucket_arn, "/support/tickets/*"]]}
    ingest = statements["IngestIntoThisIndex"]
    assert ingest["Action"] == ["qbusiness:BatchPutDocument", "qbusiness:BatchDeleteDocument"]
    assert ingest["Resource"] == INDEX_ARN
    assert statements["PrincipalStoreOfThisApplication"]["Resource"] == [APP_ARN, INDEX_ARN]
    decrypt = statements["DecryptDatasetThroughS3"]
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Resource"] == {"Fn::ImportValue": existing.export_of(lake.key, "Arn")}
    via_s3 = {"Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": via_s3}}
    # Nothing broader: no wildcard actions, no wildcard resources.
    text = json.dumps(policy)
    assert '"*"' not in text and ":*" not in text.replace("s3:prefix", "")
    source = existing.only("AWS::QBusiness::DataSource")
    role_node: Any = existing.connector.roles["support.tickets"].node.default_child
    assert source["RoleArn"] == {"Fn::GetAtt": [existing.stack.get_logical_id(role_node), "Arn"]}


def test_one_data_source_and_role_per_dataset_and_on_demand_sync() -> None:
    governance, stack = new_stacks()
    datasets = [governance.datasets["support.tickets"], governance.datasets["knowledge.articles"]]
    QBusinessConnector(
        stack, "QBusiness", cleared_for="internal", datasets=datasets,
        application_id=APP_ID, index_id=INDEX_ID, sync_schedule=None,
    )  # fmt: skip
    template = Template.from_stack(stack)
    sources = template.find_resources("AWS::QBusiness::DataSource")
    prefixes = sorted(
        s["Properties"]["Configuration"]["additionalProperties"]["inclusionPrefixes"][0]
        for s in sources.values()
    )
    assert prefixes == ["knowledge/articles/", "support/tickets/"]
    assert all("SyncSchedule" not in s["Properties"] for s in sources.values())
    roles = {s["Properties"]["RoleArn"]["Fn::GetAtt"][0] for s in sources.values()}
    assert len(roles) == 2


# ---------------------------------------------------------------------------------------- refusals


def test_a_dataset_above_the_application_s_clearance_is_refused_naming_dataset_and_level() -> None:
    governance, stack = new_stacks()
    secret = governance.add_dataset(
        "Contracts", name="contracts", domain="sales", classification="confidential", pii=False,
        columns={"contract_id": "string", "body": "string"},
    )  # fmt: skip
    with pytest.raises(QBusinessError) as caught:
        QBusinessConnector(
            stack, "QBusiness", cleared_for="internal",
            datasets=[governance.datasets["support.tickets"], secret],
            application_id=APP_ID, index_id=INDEX_ID,
        )  # fmt: skip
    message = str(caught.value)
    assert "datasets[1]" in message and "sales.contracts" in message
    assert "'confidential'" in message and "clearance 'internal'" in message
    # Cleared for it: accepted.
    QBusinessConnector(
        stack,
        "Cleared",
        cleared_for="confidential",
        datasets=[secret],
        application_id=APP_ID,
        index_id=INDEX_ID,
    )


def test_a_dataset_that_still_holds_personal_data_needs_an_explicit_opt_in() -> None:
    governance, stack = new_stacks()
    people = governance.add_dataset(
        "People", name="people", domain="sales", classification="internal", pii=True,
        columns={"person_id": "string", "notes": "string"},
    )  # fmt: skip
    with pytest.raises(
        QBusinessError, match=r"datasets\[0\]: dataset sales.people still holds personal data"
    ):
        QBusinessConnector(
            stack,
            "QBusiness",
            cleared_for="internal",
            datasets=[people],
            application_id=APP_ID,
            index_id=INDEX_ID,
        )
    QBusinessConnector(
        stack, "OptIn", cleared_for="internal", datasets=[people], application_id=APP_ID, index_id=INDEX_ID,
        allow_personal_data=True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"cleared_for": "secret"}, r"cleared_for: 'secret' is not one of public, internal"),
        ({"datasets": []}, r"datasets: must be a non-empty list of GovernedDataset"),
        ({"datasets": ["support.tickets"]}, r"datasets\[0\]: must be a GovernedDataset"),
        ({"application_id": APP_ID}, r"index_id: is required with application_id"),
        ({"index_id": INDEX_ID}, r"application_id: is required with index_id"),
        ({"application_id": "my-app", "index_id": INDEX_ID}, r"application_id: 'my-app' is not an Amazon Q"),
        ({"sync_schedule": "daily"}, r"sync_schedule: 'daily' is not a six-field cron expression"),
        ({"sync_schedule": "cron(0 3 * * ?)"}, r"sync_schedule: .* six-field"),
        ({}, r"identity_center_instance_arn: creating an application needs the IAM Identity Center"),
        (
            {"application_id": APP_ID, "index_id": INDEX_ID, "identity_center_instance_arn": IDC_ARN},
            r"identity_center_instance_arn: only for a created application",
        ),
    ],
)
def test_invalid_props_name_the_field(props: dict[str, Any], message: str) -> None:
    governance, stack = new_stacks()
    full = {"cleared_for": "internal", "datasets": [governance.datasets["support.tickets"]], **props}
    with pytest.raises(QBusinessError, match=r"QBusinessConnector QBusiness/QBusiness: " + message):
        QBusinessConnector(stack, "QBusiness", **full)


def test_the_same_dataset_twice_is_refused() -> None:
    governance, stack = new_stacks()
    tickets: GovernedDataset = governance.datasets["support.tickets"]
    with pytest.raises(QBusinessError, match=r"datasets\[1\]: dataset support.tickets is listed twice"):
        QBusinessConnector(
            stack, "QBusiness", cleared_for="internal", datasets=[tickets, tickets], application_id=APP_ID,
            index_id=INDEX_ID,
        )  # fmt: skip


# ------------------------------------------------------------------------------ created application


def test_a_created_application_has_kms_identity_center_no_uploads_and_the_attribute_fields() -> None:
    built = build(identity_center_instance_arn=IDC_ARN, display_name="factory-qa")
    connector = built.connector
    assert connector.application is not None and connector.index is not None and connector.key is not None
    app = built.only("AWS::QBusiness::Application")
    key_id = built.stack.get_logical_id(connector.key.node.default_child)  # type: ignore[arg-type]
    assert app["IdentityCenterInstanceArn"] == IDC_ARN
    assert app["EncryptionConfiguration"] == {"KmsKeyId": {"Ref": key_id}}
    assert app["AttachmentsConfiguration"] == {"AttachmentsControlMode": "DISABLED"}
    assert app["QAppsConfiguration"] == {"QAppsControlMode": "DISABLED"}
    assert built.only("AWS::KMS::Key")["EnableKeyRotation"] is True
    index = built.only("AWS::QBusiness::Index")
    app_id = built.stack.get_logical_id(connector.application)
    assert index["ApplicationId"] == {"Fn::GetAtt": [app_id, "ApplicationId"]}
    assert index["DocumentAttributeConfigurations"] == [
        {"Name": name, "Type": "STRING", "Search": "ENABLED"} for name in DOCUMENT_ATTRIBUTES
    ]
    retriever = built.only("AWS::QBusiness::Retriever")
    index_id = built.stack.get_logical_id(connector.index)
    assert retriever["Type"] == "NATIVE_INDEX"
    assert retriever["Configuration"] == {
        "NativeIndexConfiguration": {"IndexId": {"Fn::GetAtt": [index_id, "IndexId"]}}
    }
    source = built.only("AWS::QBusiness::DataSource")
    assert source["ApplicationId"] == {"Fn::GetAtt": [app_id, "ApplicationId"]}
    assert source["IndexId"] == {"Fn::GetAtt": [index_id, "IndexId"]}
    [(_, resource)] = built.template.find_resources("AWS::QBusiness::DataSource").items()
    retriever_id = built.stack.get_logical_id(connector.retriever)  # type: ignore[arg-type]
    assert retriever_id in resource["DependsOn"]


# ----------------------------------------------------------------- an existing index: its attribute fields


def test_an_existing_index_gets_the_attribute_fields_from_a_custom_resource(existing: Built) -> None:
    fields = existing.connector.index_fields
    assert fields is not None
    resource = existing.resource(fields)
    assert resource["Type"] == INDEX_FIELDS_RESOURCE_TYPE
    props = resource["Properties"]
    assert (props["ApplicationId"], props["IndexId"]) == (APP_ID, INDEX_ID)
    assert json.loads(props["Fields"]) == [
        {"name": name, "type": "STRING", "search": "ENABLED"} for name in DOCUMENT_ATTRIBUTES
    ]
    # Every data source waits for the fields: its attributes are set only for fields the index has.
    logical = existing.stack.get_logical_id(fields.node.default_child)  # type: ignore[arg-type]
    for source in existing.connector.data_sources.values():
        assert logical in existing.resource(source).get("DependsOn", [])


def test_the_index_fields_handler_may_read_and_update_only_this_index(existing: Built) -> None:
    role = existing.connector.index_fields_role
    assert role is not None
    [policy] = existing.resource(role)["Properties"]["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert set(statements) == {"WriteOwnLogGroup", "ReadAndUpdateThisIndex"}
    index = statements["ReadAndUpdateThisIndex"]
    assert index["Action"] == ["qbusiness:GetIndex", "qbusiness:UpdateIndex"]
    assert index["Resource"] == INDEX_ARN and index["Effect"] == "Allow"
    assert statements["WriteOwnLogGroup"]["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    # No other policy is attached to it, and nothing grants a wildcard resource.
    assert "ManagedPolicyArns" not in existing.resource(role)["Properties"]
    attached = [
        p
        for p in existing.template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": existing.stack.get_logical_id(role.node.default_child)} in p["Properties"]["Roles"]  # type: ignore[arg-type]
    ]
    assert attached == []
    # No IAM statement in the stack has a wildcard resource (KMS key policies' "*" is the key itself).
    documents = [
        policy["PolicyDocument"]
        for role_resource in existing.template.find_resources("AWS::IAM::Role").values()
        for policy in role_resource["Properties"].get("Policies", [])
    ] + [
        p["Properties"]["PolicyDocument"]
        for p in existing.template.find_resources("AWS::IAM::Policy").values()
    ]
    resources = [r for d in documents for st in d["Statement"] for r in _as_list(st["Resource"])]
    assert resources and "*" not in resources


def test_the_index_fields_handler_is_a_logged_encrypted_deployment_time_function(existing: Built) -> None:
    functions = existing.template.find_resources(
        "AWS::Lambda::Function",
        {"Properties": {"Handler": "aif_connector.q_business_index.on_event"}},
    )
    [(_, function)] = functions.items()
    props = function["Properties"]
    assert props["Timeout"] == 840 and props["Runtime"].startswith("python3.")
    [log_group] = [
        g["Properties"]
        for name, g in existing.template.find_resources("AWS::Logs::LogGroup").items()
        if name == props["LoggingConfig"]["LogGroup"]["Ref"]
    ]
    assert log_group["RetentionInDays"] == 365 and "KmsKeyId" in log_group
    # Nothing happens on delete: the custom resource has no removal behaviour of its own to configure,
    # and the handler leaves the index alone (tests/unit/test_q_business_index_fields.py).


def test_the_staged_handler_imports_without_site_packages(tmp_path: Path) -> None:
    asset = stage_index_fields_asset(out_root=tmp_path)
    assert {p.name for p in asset.iterdir()} == {"aif_connector", "aif_gateway"}
    code = (
        "import sys, aif_connector.q_business_index as h; assert 'ai_factory' not in sys.modules; "
        "print(h.on_event.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=asset, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "on_event"


def test_a_created_index_declares_the_fields_itself() -> None:
    built = build(identity_center_instance_arn=IDC_ARN)
    assert built.connector.index_fields is None
    assert built.template.find_resources(INDEX_FIELDS_RESOURCE_TYPE) == {}


# ---------------------------------------------------------------------------------------- cdk-nag


@pytest.mark.parametrize("create", [False, True])
def test_q_business_connector_passes_cdk_nag(tmp_path: Path, create: bool) -> None:
    """No cdk-nag finding on anything the connector creates (other stacks' findings are not ours)."""
    app = cdk.App(outdir=str(tmp_path))
    governance, stack = new_stacks(app)
    props: dict[str, Any] = (
        {"identity_center_instance_arn": IDC_ARN}
        if create
        else {"application_id": APP_ID, "index_id": INDEX_ID}
    )
    QBusinessConnector(
        stack, "QBusiness", cleared_for="internal", datasets=[governance.datasets["support.tickets"]], **props
    )
    apply_nag_packs(app)
    failure: Exception | None = None
    try:
        app.synth()
    except Exception as exc:  # ValidationFailed (a jsii RuntimeError) when any stack has a finding
        failure = exc
    report_file = tmp_path / "validation-report.json"
    if not report_file.exists():
        assert failure is None, failure  # clean everywhere, and not failing for another reason
        return
    report = json.loads(report_file.read_text())
    ours = [
        (violation["ruleName"], construct["constructPath"])
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
        if construct["constructPath"].startswith("QBusiness/")
    ]
    assert ours == []
