"""Governed data: Lake Formation admins (APPEND), LF-tags, encrypted registered zones, databases without
IAMAllowedPrincipals, governed tables, LF-tag grants and their dependencies, clearance checks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Match, Template

from ai_factory.constructs.ai_feature import AiFeature, AiFeatureError
from ai_factory.constructs.governance import DataLake, GovernanceError, GovernedDataset
from stacks.gateway_stack import GatewayStack
from stacks.governance_stack import GovernanceStack
from stacks.team_stack import TeamStack

ENV = cdk.Environment(account="111122223333", region="us-east-1")
CALLER_ARN = "arn:aws:iam::111122223333:role/support-app"
LAKE_ADMIN = "arn:aws:iam::111122223333:role/lake-admin"
EXEC_ROLE = "arn:${AWS::Partition}:iam::111122223333:role/cdk-hnb659fds-cfn-exec-role-111122223333-us-east-1"
PII_COLUMNS = {"ticket_id": "string", "body": "string"}

FEATURE_PROPS: dict[str, Any] = {
    "feature": "ticket-reader",
    "owner": "support-leads@example.com",
    "models": ["chat-fast"],
    "monthly_budget_usd": 50,
    "rate_limit_rpm": 60,
}


@dataclass
class Built:
    governance: GovernanceStack
    team: TeamStack
    feature: AiFeature
    lake_template: Template
    team_template: Template

    def lake_id(self, construct: Any) -> str:
        node = construct.node.default_child if not isinstance(construct, cdk.CfnResource) else construct
        return self.governance.get_logical_id(node)


def new_stacks(**governance_props: Any) -> tuple[cdk.App, GovernanceStack, TeamStack]:
    app = cdk.App()
    gateway = GatewayStack(app, "Gateway", env=ENV)
    governance = GovernanceStack(app, "Governance", env=ENV, **governance_props)
    team = TeamStack(app, "Team", team="support", gateway_stack=gateway, governance=governance)
    return app, governance, team


@pytest.fixture(scope="module")
def built() -> Built:
    _, governance, team = new_stacks(admin_arns=[LAKE_ADMIN])
    feature = AiFeature(
        team,
        "Reader",
        clearance="confidential",
        callers=[iam.ArnPrincipal(CALLER_ARN)],
        datasets=[governance.datasets["support.tickets"]],
        **FEATURE_PROPS,
    )
    return Built(governance, team, feature, Template.from_stack(governance), Template.from_stack(team))


def resources(template: Template, kind: str) -> dict[str, Any]:
    return dict(template.find_resources(kind))


# ------------------------------------------------------------------------------------ admins and tags


def test_admins_are_appended_never_replaced(built: Built) -> None:
    built.lake_template.resource_count_is("AWS::LakeFormation::DataLakeSettings", 1)
    built.lake_template.has_resource_properties(
        "AWS::LakeFormation::DataLakeSettings",
        {
            "MutationType": "APPEND",
            "Admins": [
                {"DataLakePrincipalIdentifier": {"Fn::Sub": EXEC_ROLE}},
                {"DataLakePrincipalIdentifier": LAKE_ADMIN},
            ],
        },
    )
    # Account-wide defaults stay as the account has them (other teams' databases are not ours to change).
    (settings,) = resources(built.lake_template, "AWS::LakeFormation::DataLakeSettings").values()
    assert "CreateDatabaseDefaultPermissions" not in settings["Properties"]


def test_execution_role_can_be_given_explicitly() -> None:
    stack = cdk.Stack(cdk.App(), "S", env=ENV)
    DataLake(stack, "Lake", cdk_execution_role_arn="arn:aws:iam::111122223333:role/deployer")
    Template.from_stack(stack).has_resource_properties(
        "AWS::LakeFormation::DataLakeSettings",
        {"Admins": [{"DataLakePrincipalIdentifier": "arn:aws:iam::111122223333:role/deployer"}]},
    )


def test_lf_tags_and_their_values(built: Built) -> None:
    tags = {
        r["Properties"]["TagKey"]: r["Properties"]["TagValues"]
        for r in resources(built.lake_template, "AWS::LakeFormation::Tag").values()
    }
    assert tags == {
        # Prefixed: LF-tag keys are account-wide (docs/deploy.md, two factories in one account).
        "ai-factory-classification": ["public", "internal", "confidential", "restricted"],
        "ai-factory-pii": ["yes", "no"],
        "ai-factory-domain": ["support", "knowledge", "sales"],
    }


def test_every_lake_formation_resource_waits_for_the_admin_settings(built: Built) -> None:
    settings_id = built.lake_id(built.governance.lake.settings)
    for kind in ("AWS::LakeFormation::Tag", "AWS::LakeFormation::Resource", "AWS::Glue::Database"):
        for logical_id, resource in resources(built.lake_template, kind).items():
            assert settings_id in resource.get("DependsOn", []), logical_id


# ----------------------------------------------------------------------------------------- the zones


def test_three_kms_encrypted_versioned_retained_logged_zones(built: Built) -> None:
    lake = built.governance.lake
    key_id = built.lake_id(lake.key)
    logs_id = built.lake_id(lake.access_logs)
    for zone, bucket in lake.buckets.items():
        resource = resources(built.lake_template, "AWS::S3::Bucket")[built.lake_id(bucket)]
        props = resource["Properties"]
        assert resource["DeletionPolicy"] == "Retain", zone
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, zone
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
        }, zone
        assert props["LoggingConfiguration"] == {
            "DestinationBucketName": {"Ref": logs_id},
            "LogFilePrefix": f"{zone}/",
        }, zone
    built.lake_template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_zones_deny_plain_http(built: Built) -> None:
    policies = resources(built.lake_template, "AWS::S3::BucketPolicy")
    for zone, bucket in built.governance.lake.buckets.items():
        bucket_ref = {"Ref": built.lake_id(bucket)}
        (policy,) = [p for p in policies.values() if p["Properties"]["Bucket"] == bucket_ref]
        denies = [
            s
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denies, zone


def test_zones_are_registered_with_their_own_least_privilege_role(built: Built) -> None:
    lake = built.governance.lake
    registered = resources(built.lake_template, "AWS::LakeFormation::Resource")
    assert len(registered) == 3
    roles = resources(built.lake_template, "AWS::IAM::Role")
    for zone, bucket in lake.buckets.items():
        role_id = built.lake_id(lake.data_access_roles[zone])
        bucket_id = built.lake_id(bucket)
        built.lake_template.has_resource_properties(
            "AWS::LakeFormation::Resource",
            {
                "ResourceArn": {"Fn::GetAtt": [bucket_id, "Arn"]},
                "RoleArn": {"Fn::GetAtt": [role_id, "Arn"]},
                "UseServiceLinkedRole": False,
            },
        )
        role = roles[role_id]["Properties"]
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "lakeformation.amazonaws.com"}
        statements = role["Policies"][0]["PolicyDocument"]["Statement"]
        text = json.dumps(statements)
        other_buckets = [built.lake_id(b) for z, b in lake.buckets.items() if z != zone]
        assert bucket_id in text and not any(other in text for other in other_buckets), zone
        actions = {
            a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        }
        assert actions == {
            "s3:ListBucket",
            "s3:GetObject",
            "s3:PutObject",
            "s3:DeleteObject",
            "kms:Decrypt",
            "kms:Encrypt",
            "kms:GenerateDataKey",
        }


# ---------------------------------------------------------------------------------- databases, tables


def test_databases_grant_nothing_to_iam_allowed_principals(built: Built) -> None:
    databases = resources(built.lake_template, "AWS::Glue::Database")
    names = sorted(d["Properties"]["DatabaseInput"]["Name"] for d in databases.values())
    assert names == ["ai_factory_knowledge", "ai_factory_sales", "ai_factory_support"]
    for database in databases.values():
        assert database["Properties"]["DatabaseInput"]["CreateTableDefaultPermissions"] == []
    for template in (built.lake_template, built.team_template):
        text = json.dumps(template.to_json())
        assert "IAM_ALLOWED_PRINCIPALS" not in text and "IAMAllowedPrincipals" not in text


def test_databases_carry_their_domain_tag(built: Built) -> None:
    lake = built.governance.lake
    association = resources(built.lake_template, "AWS::LakeFormation::TagAssociation")[
        built.lake_id(lake.database_tags["support"])
    ]
    assert association["Properties"]["Resource"] == {
        "Database": {"CatalogId": "111122223333", "Name": "ai_factory_support"}
    }
    assert association["Properties"]["LFTags"] == [
        {"CatalogId": "111122223333", "TagKey": "ai-factory-domain", "TagValues": ["support"]}
    ]
    assert sorted(association["DependsOn"]) == sorted(
        [built.lake_id(lake.tags["domain"]), built.lake_id(lake.databases["support"])]
    )


def test_governed_table_is_json_lines_over_curated(built: Built) -> None:
    dataset = built.governance.datasets["support.tickets"]
    table = resources(built.lake_template, "AWS::Glue::Table")[built.lake_id(dataset.table)]
    props = table["Properties"]
    assert props["DatabaseName"] == {"Ref": built.lake_id(built.governance.lake.databases["support"])}
    table_input = props["TableInput"]
    assert table_input["Name"] == "tickets"
    assert table_input["Parameters"]["classification"] == "json"
    assert table_input["PartitionKeys"] == [{"Name": "ingest_date", "Type": "string"}]
    descriptor = table_input["StorageDescriptor"]
    assert descriptor["SerdeInfo"] == {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe"}
    assert descriptor["InputFormat"] == "org.apache.hadoop.mapred.TextInputFormat"
    curated_id = built.lake_id(built.governance.lake.curated_bucket)
    assert descriptor["Location"] == {"Fn::Join": ["", ["s3://", {"Ref": curated_id}, "/support/tickets/"]]}
    assert {"Name": "ticket_id", "Type": "string"} in descriptor["Columns"]


def test_table_tags_are_associated_after_the_tags_and_the_table_exist(built: Built) -> None:
    lake = built.governance.lake
    dataset = built.governance.datasets["support.tickets"]
    association = resources(built.lake_template, "AWS::LakeFormation::TagAssociation")[
        built.lake_id(dataset.tag_association)
    ]
    pairs = {p["TagKey"]: p["TagValues"] for p in association["Properties"]["LFTags"]}
    assert pairs == {
        "ai-factory-classification": ["internal"],
        "ai-factory-pii": ["no"],
        "ai-factory-domain": ["support"],
    }
    assert association["Properties"]["Resource"]["Table"]["Name"] == "tickets"
    expected = {built.lake_id(lake.tags[k]) for k in ("classification", "pii", "domain")}
    expected.add(built.lake_id(dataset.table))
    assert expected <= set(association["DependsOn"])


# -------------------------------------------------------------------------------------------- grants


def test_feature_is_granted_through_an_lf_tag_expression_to_its_caller_role(built: Built) -> None:
    grants = resources(built.team_template, "AWS::LakeFormation::PrincipalPermissions")
    assert len(grants) == 1
    (grant,) = grants.values()
    assert built.feature.caller_role is not None
    role_id = built.team.get_logical_id(built.feature.caller_role.node.default_child)  # type: ignore[arg-type]
    assert grant["Properties"] == {
        "Principal": {"DataLakePrincipalIdentifier": {"Fn::GetAtt": [role_id, "Arn"]}},
        "Resource": {
            "LFTagPolicy": {
                "CatalogId": "111122223333",
                "ResourceType": "TABLE",
                "Expression": [
                    {"TagKey": "ai-factory-classification", "TagValues": ["internal"]},
                    {"TagKey": "ai-factory-domain", "TagValues": ["support"]},
                ],
            }
        },
        "Permissions": ["SELECT", "DESCRIBE"],
        "PermissionsWithGrantOption": [],
    }
    assert built.feature.data_role is built.feature.caller_role


def test_cross_stack_grant_deploys_after_the_lake(built: Built) -> None:
    assert built.governance in built.team.dependencies


def test_grantee_gets_the_iam_side_of_lake_formation(built: Built) -> None:
    policies = resources(built.team_template, "AWS::IAM::Policy")
    statements = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    access = [s for s in statements if s.get("Sid") == "LakeFormationGetDataAccess"]
    assert len(access) == 1 and access[0]["Resource"] == "*"
    glue = [s for s in statements if "glue:GetTable" in s["Action"]]
    assert glue and all("glue:*" not in s["Action"] for s in glue)


def reader_resources(template: Template, resource_type: str) -> list[dict[str, Any]]:
    """Resources of a type that concern the test's Reader role (the stack's connector has its own)."""
    return [
        resource
        for resource in template.find_resources(resource_type).values()
        if '"Reader' in json.dumps(resource["Properties"])
    ]


def test_same_stack_grant_depends_on_tags_and_association() -> None:
    _, governance, _ = new_stacks()
    reader = iam.Role(governance, "Reader", assumed_by=iam.AccountPrincipal("111122223333"))
    tickets = governance.datasets["support.tickets"]
    notes = governance.add_dataset(
        "Notes", name="notes", domain="support", classification="internal", pii=False, columns=PII_COLUMNS
    )
    first = tickets.grant_read(reader)
    second = notes.grant_read(reader)
    assert first is second  # one LF grant per principal and expression
    template = Template.from_stack(governance)
    (grant,) = reader_resources(template, "AWS::LakeFormation::PrincipalPermissions")
    lake = governance.lake
    expected = {
        governance.get_logical_id(lake.tags["classification"]),
        governance.get_logical_id(lake.tags["domain"]),
        governance.get_logical_id(tickets.tag_association),
        governance.get_logical_id(notes.tag_association),
    }
    assert expected <= set(grant["DependsOn"])
    # ...and the IAM side names both tables.
    (policy,) = reader_resources(template, "AWS::IAM::Policy")
    text = json.dumps(policy["Properties"]["PolicyDocument"])
    assert "/tickets" in text and "/notes" in text


def test_other_expressions_get_their_own_grant() -> None:
    _, governance, _ = new_stacks()
    reader = iam.Role(governance, "Reader", assumed_by=iam.AccountPrincipal("111122223333"))
    governance.datasets["support.tickets"].grant_read(reader)
    governance.datasets["knowledge.articles"].grant_read(reader)
    template = Template.from_stack(governance)
    assert len(reader_resources(template, "AWS::LakeFormation::PrincipalPermissions")) == 2


def test_never_grants_to_an_admin() -> None:
    _, governance, _ = new_stacks(admin_arns=[LAKE_ADMIN])
    admin = iam.Role.from_role_arn(governance, "Admin", LAKE_ADMIN)
    with pytest.raises(GovernanceError, match="is a data-lake admin; never grant data to admins"):
        governance.datasets["support.tickets"].grant_read(admin)


# -------------------------------------------------------------------------------- clearance and errors


def test_clearance_below_classification_fails_synth() -> None:
    _, governance, team = new_stacks()
    secret = governance.add_dataset(
        "Contracts",
        name="contracts",
        domain="sales",
        classification="confidential",
        pii=True,
        columns=PII_COLUMNS,
    )
    with pytest.raises(AiFeatureError) as error:
        AiFeature(
            team, "Reader", clearance="internal", callers=[iam.ArnPrincipal(CALLER_ARN)], datasets=[secret],
            **FEATURE_PROPS,
        )  # fmt: skip
    assert str(error.value) == (
        "AiFeature support/ticket-reader: datasets: clearance 'internal' is below dataset 'contracts' "
        "classification 'confidential'"
    )


@pytest.mark.parametrize("clearance", ["confidential", "restricted"])
def test_clearance_at_or_above_classification_is_granted(clearance: str) -> None:
    _, governance, team = new_stacks()
    contracts = governance.add_dataset(
        "Contracts",
        name="contracts",
        domain="sales",
        classification="confidential",
        pii=True,
        columns=PII_COLUMNS,
    )
    # Restricted data may go only to models whose ceiling is restricted (here the offline one).
    models = ["echo"] if clearance == "restricted" else FEATURE_PROPS["models"]
    AiFeature(
        team, "Reader", clearance=clearance, callers=[iam.ArnPrincipal(CALLER_ARN)], datasets=[contracts],
        **{**FEATURE_PROPS, "models": models},
    )  # fmt: skip
    Template.from_stack(team).has_resource_properties(
        "AWS::LakeFormation::PrincipalPermissions",
        {"Resource": {"LFTagPolicy": Match.object_like({"Expression": Match.array_with(
            [{"TagKey": "ai-factory-classification", "TagValues": ["confidential"]}])})}},
    )  # fmt: skip


def test_granting_a_feature_directly_checks_its_clearance() -> None:
    _, governance, team = new_stacks()
    feature = AiFeature(
        team, "Reader", clearance="public", callers=[iam.ArnPrincipal(CALLER_ARN)], **FEATURE_PROPS
    )
    with pytest.raises(AiFeatureError, match="clearance 'public' is below dataset 'tickets'"):
        governance.datasets["support.tickets"].grant_read(feature)


def test_datasets_need_callers() -> None:
    _, governance, team = new_stacks()
    with pytest.raises(AiFeatureError, match="datasets: need callers"):
        AiFeature(team, "Reader", clearance="internal", datasets=[governance.datasets["support.tickets"]],
                  **FEATURE_PROPS)  # fmt: skip


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"domain": "hr"}, "GovernedDataset hr.x: domain: 'hr' is not one of the lake's domains"),
        ({"classification": "secret"}, "classification: 'secret' is not one of public"),
        ({"name": "Bad-Name"}, "name: 'Bad-Name' is not valid"),
        ({"pii": "no"}, "pii: must be True or False"),
        ({"columns": {}}, "columns: must be a mapping"),
        ({"columns": {"id": "varchar"}}, "columns: column 'id': 'varchar' is not a Glue type"),
        ({"partition_keys": {"id": "string"}}, "partition_keys: ['id'] are also columns"),
        ({"s3_prefix": "/abs/"}, "s3_prefix: '/abs/' must be a relative key prefix"),
    ],
)
def test_dataset_validation(props: dict[str, Any], message: str) -> None:
    stack = cdk.Stack(cdk.App(), "S", env=ENV)
    lake = DataLake(stack, "Lake")
    base: dict[str, Any] = {"name": "x", "domain": "support", "classification": "internal", "pii": False}
    base["columns"] = {"id": "string"}
    with pytest.raises(GovernanceError, match=message.replace("[", r"\[").replace("(", r"\(")):
        GovernedDataset(stack, "D", foundation=lake, **{**base, **props})


@pytest.mark.parametrize(
    ("domains", "message"),
    [([], "domains: must be a non-empty list"), (["Sales"], "'Sales' is not valid"), (["a", "a"], "twice")],
)
def test_lake_validation(domains: list[str], message: str) -> None:
    stack = cdk.Stack(cdk.App(), "S", env=ENV)
    with pytest.raises(GovernanceError, match=message):
        DataLake(stack, "Lake", domains=domains)
