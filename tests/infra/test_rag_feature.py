"""RagFeature: the knowledge base over a governed dataset's curated prefix (S3 Vectors, KMS), its
least-privilege role, the data source, the gateway registration and grant, clearance errors, and cdk-nag."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template

from ai_factory.constructs.ai_feature import AiFeature
from ai_factory.constructs.rag_feature import RagFeature, RagFeatureError
from ai_factory.platform.nag import apply_nag_packs
from ai_factory.platform.secure_defaults import encrypted_bucket
from stacks.gateway_stack import GatewayStack
from stacks.governance_stack import GovernanceStack
from stacks.team_stack import TeamStack

ENV = cdk.Environment(account="111122223333", region="us-east-1")
TITAN_ARN = {
    "Fn::Join": [
        "",
        [
            "arn:",
            {"Ref": "AWS::Partition"},
            ":bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0",
        ],
    ]
}
CALLER = iam.ArnPrincipal("arn:aws:iam::111122223333:role/app")


def feature(team: TeamStack, construct_id: str, name: str, clearance: str) -> AiFeature:
    return AiFeature(
        team,
        construct_id,
        feature=name,
        owner="owner@example.com",
        clearance=clearance,
        models=["chat-fast"],
        monthly_budget_usd=10,
        rate_limit_rpm=10,
    )


@dataclass
class Built:
    app: cdk.App
    team: TeamStack
    governance: GovernanceStack
    rag: RagFeature
    template: Template

    def resources(self, kind: str) -> dict[str, Any]:
        return dict(self.template.find_resources(kind))

    def only(self, kind: str) -> dict[str, Any]:
        [(_, resource)] = self.resources(kind).items()
        return resource["Properties"]


def build(*, nag: bool = False, outdir: str | None = None, **rag_props: Any) -> tuple[cdk.App, Built | None]:
    app = cdk.App(outdir=outdir) if outdir else cdk.App()
    if nag:
        apply_nag_packs(app)
    gateway = GatewayStack(app, "Gateway", env=ENV)
    governance = GovernanceStack(app, "Governance", env=ENV)
    team = TeamStack(app, "Team", team="support", gateway_stack=gateway, governance=governance)
    owner = feature(team, "Assistant", "assistant", "confidential")
    props = {"feature": owner, "dataset": governance.datasets["support.tickets"], **rag_props}
    rag = RagFeature(team, "Rag", **props)
    if nag:
        return app, None
    return app, Built(app, team, governance, rag, Template.from_stack(team))


@pytest.fixture(scope="module")
def built() -> Built:
    _, result = build(name="tickets", readers=[])
    assert result is not None
    return result


def test_knowledge_base_uses_s3_vectors_and_the_catalog_titan_model(built: Built) -> None:
    kb = built.only("AWS::Bedrock::KnowledgeBase")
    assert kb["Name"] == "ai-factory-support-tickets"
    config = kb["KnowledgeBaseConfiguration"]
    assert config["Type"] == "VECTOR"
    vector = config["VectorKnowledgeBaseConfiguration"]
    assert vector["EmbeddingModelArn"] == TITAN_ARN
    assert vector["EmbeddingModelConfiguration"]["BedrockEmbeddingModelConfiguration"]["Dimensions"] == 1024
    storage = kb["StorageConfiguration"]
    assert storage["Type"] == "S3_VECTORS"
    index_id = built.team.get_logical_id(built.rag.index)
    assert storage["S3VectorsConfiguration"] == {"IndexArn": {"Fn::GetAtt": [index_id, "IndexArn"]}}
    role_id = built.team.get_logical_id(built.rag.role.node.default_child)  # type: ignore[arg-type]
    assert kb["RoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert kb["Tags"]["Classification"] == "internal"


def test_vector_store_is_kms_encrypted_with_a_rotating_key_and_retained(built: Built) -> None:
    key_id = built.team.get_logical_id(built.rag.key.node.default_child)  # type: ignore[arg-type]
    bucket = built.resources("AWS::S3Vectors::VectorBucket")
    [(_, resource)] = bucket.items()
    assert resource["Properties"]["EncryptionConfiguration"] == {
        "SseType": "aws:kms",
        "KmsKeyArn": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    assert resource["DeletionPolicy"] == "Retain"
    index = built.only("AWS::S3Vectors::Index")
    assert (
        index["Dimension"] == 1024 and index["DistanceMetric"] == "cosine" and index["DataType"] == "float32"
    )
    assert index["MetadataConfiguration"]["NonFilterableMetadataKeys"] == [
        "AMAZON_BEDROCK_TEXT",
        "AMAZON_BEDROCK_METADATA",
    ]
    key = built.resources("AWS::KMS::Key")[key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    indexing = [s for s in key["KeyPolicy"]["Statement"] if s.get("Sid") == "AllowS3VectorsIndexing"]
    assert indexing[0]["Principal"] == {"Service": "indexing.s3vectors.amazonaws.com"}
    assert indexing[0]["Action"] == "kms:Decrypt"


def test_data_source_covers_exactly_the_document_prefix_with_kms(built: Built) -> None:
    source = built.only("AWS::Bedrock::DataSource")
    s3_config = source["DataSourceConfiguration"]["S3Configuration"]
    assert source["DataSourceConfiguration"]["Type"] == "S3"
    # The documents and their metadata sidecars, apart from the Glue table location support/tickets/.
    assert s3_config["InclusionPrefixes"] == ["documents/support/tickets/"]
    assert "Fn::ImportValue" in json.dumps(s3_config["BucketArn"])  # the governance stack's curated bucket
    key_id = built.team.get_logical_id(built.rag.key.node.default_child)  # type: ignore[arg-type]
    assert source["ServerSideEncryptionConfiguration"] == {"KmsKeyArn": {"Fn::GetAtt": [key_id, "Arn"]}}
    assert source["DataDeletionPolicy"] == "DELETE"
    chunking = source["VectorIngestionConfiguration"]["ChunkingConfiguration"]
    assert chunking["ChunkingStrategy"] == "FIXED_SIZE"


def role_statements(built: Built) -> dict[str, dict[str, Any]]:
    role = built.resources("AWS::IAM::Role")[built.team.get_logical_id(built.rag.role.node.default_child)]  # type: ignore[arg-type]
    [policy] = role["Properties"]["Policies"]
    return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}


def test_knowledge_base_role_is_least_privilege(built: Built) -> None:
    role = built.resources("AWS::IAM::Role")[built.team.get_logical_id(built.rag.role.node.default_child)]  # type: ignore[arg-type]
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "bedrock.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    statements = role_statements(built)
    assert set(statements) == {
        "InvokeEmbeddingModel",
        "ListDocumentPrefix",
        "ReadDocumentPrefix",
        "UseVectorIndex",
        "UseKnowledgeBaseKey",
        "DecryptDatasetThroughS3",
    }
    assert statements["InvokeEmbeddingModel"]["Action"] == "bedrock:InvokeModel"
    assert statements["InvokeEmbeddingModel"]["Resource"] == TITAN_ARN
    assert statements["ListDocumentPrefix"]["Condition"] == {
        "StringLike": {"s3:prefix": ["documents/support/tickets/*"]}
    }
    read = json.dumps(statements["ReadDocumentPrefix"]["Resource"])
    assert statements["ReadDocumentPrefix"]["Action"] == "s3:GetObject" and read.endswith(
        '"/documents/support/tickets/*"]]}'
    )
    index_id = built.team.get_logical_id(built.rag.index)
    assert statements["UseVectorIndex"]["Resource"] == {"Fn::GetAtt": [index_id, "IndexArn"]}
    assert statements["DecryptDatasetThroughS3"]["Condition"] == {
        "StringEquals": {
            "kms:ViaService": {"Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
        }
    }
    # The only wildcard anywhere in the role is the document prefix.
    wildcards = [s for s in statements.values() if "*" in json.dumps(s.get("Resource"))]
    assert [s["Sid"] for s in wildcards] == ["ReadDocumentPrefix"]


def test_gateway_may_retrieve_exactly_this_knowledge_base_and_read_its_registration(built: Built) -> None:
    [policy] = [p for k, p in built.resources("AWS::IAM::Policy").items() if "GatewayRetrieve" in k]
    props = policy["Properties"]
    assert "Fn::ImportValue" in json.dumps(props["Roles"])  # the gateway stack's function role
    kb_id = built.team.get_logical_id(built.rag.knowledge_base)
    retrieve, read = props["PolicyDocument"]["Statement"]
    assert retrieve["Action"] == "bedrock:Retrieve"
    assert retrieve["Resource"] == {"Fn::GetAtt": [kb_id, "KnowledgeBaseArn"]}
    assert read["Action"] == "ssm:GetParameter"
    parameter_id = built.team.get_logical_id(built.rag.registration.node.default_child)  # type: ignore[arg-type]
    assert {"Ref": parameter_id} in read["Resource"]["Fn::Join"][1]


def test_registration_carries_the_knowledge_base_id_and_allow_list(built: Built) -> None:
    parameter = built.only("AWS::SSM::Parameter")
    assert parameter["Name"] == "/ai-factory/Gateway/knowledge-bases/tickets"
    parts = parameter["Value"]["Fn::Join"][1]
    kb_id = built.team.get_logical_id(built.rag.knowledge_base)
    assert {"Fn::GetAtt": [kb_id, "KnowledgeBaseId"]} in parts
    text = "".join(p if isinstance(p, str) else "KB00000000" for p in parts)
    record = json.loads(text)
    assert record["allowed"] == ["support/assistant"]
    assert record["embedding_model"] == "titan-embed-v2" and record["embedding_input_price"] == 0.02
    assert record["classification"] == "internal" and record["schema"] == 1
    # The gateway's runtime reads exactly this JSON.
    from aif_gateway.retrieval import KnowledgeBaseRecord

    assert KnowledgeBaseRecord.from_json(text).allowed == ("support/assistant",)


def test_gateway_function_knows_where_registrations_live(built: Built) -> None:
    gateway_template = Template.from_stack(built.team.gateway_stack)
    gateway_template.has_resource_properties(
        "AWS::Lambda::Function",
        Match.object_like(
            {
                "Environment": {
                    "Variables": Match.object_like(
                        {"AIF_KNOWLEDGE_BASE_PREFIX": "/ai-factory/Gateway/knowledge-bases/"}
                    )
                }
            }
        ),
    )


# -- clearance and validation --------------------------------------------------------------------------


def new_team() -> tuple[TeamStack, GovernanceStack]:
    app = cdk.App()
    gateway = GatewayStack(app, "Gateway", env=ENV)
    governance = GovernanceStack(app, "Governance", env=ENV)
    return TeamStack(app, "Team", team="support", gateway_stack=gateway, governance=governance), governance


def test_feature_without_clearance_cannot_index_the_dataset() -> None:
    team, governance = new_team()
    low = feature(team, "Low", "faq-bot", "public")
    with pytest.raises(RagFeatureError) as caught:
        RagFeature(team, "Rag", feature=low, dataset=governance.datasets["support.tickets"])
    message = str(caught.value)
    assert message.startswith("RagFeature support/faq-bot: feature: ")
    assert "'public'" in message and "'internal'" in message and "tickets" in message


def test_reader_without_clearance_cannot_retrieve() -> None:
    team, governance = new_team()
    owner = feature(team, "Owner", "assistant", "internal")
    low = feature(team, "Low", "faq-bot", "public")
    with pytest.raises(
        RagFeatureError, match=r"RagFeature support/assistant: readers\[0\]: .*support/faq-bot"
    ):
        RagFeature(team, "Rag", feature=owner, dataset=governance.datasets["support.tickets"], readers=[low])


def test_cleared_reader_is_on_the_allow_list() -> None:
    team, governance = new_team()
    owner = feature(team, "Owner", "assistant", "internal")
    reader = feature(team, "Reader", "triage", "confidential")
    rag = RagFeature(
        team, "Rag", feature=owner, dataset=governance.datasets["support.tickets"], readers=[reader]
    )
    assert rag.allowed == ("support/assistant", "support/triage")


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"embedding_model": "chat-fast"}, "embedding_model"),
        ({"embedding_model": "no-such-model"}, "embedding_model"),
        ({"embedding_model": "echo-embed"}, "embedding_model"),
        ({"dimensions": 768}, "dimensions"),
        ({"name": "Bad Name"}, "name"),
        ({"chunk_max_tokens": 5}, "chunk_max_tokens"),
    ],
)
def test_invalid_props_name_the_field(props: dict[str, Any], field: str) -> None:
    team, governance = new_team()
    owner = feature(team, "Owner", "assistant", "internal")
    with pytest.raises(RagFeatureError, match=rf"RagFeature support/assistant: {field}: "):
        RagFeature(team, "Rag", feature=owner, dataset=governance.datasets["support.tickets"], **props)


@dataclass
class StandIn:
    """A dataset shaped as the brief describes it (curated_bucket + prefix), in the team's own stack."""

    name: str
    classification: str
    curated_bucket: s3.IBucket
    prefix: str


def test_duck_typed_dataset_in_the_same_stack_works_and_prefix_is_normalized() -> None:
    team, _ = new_team()
    key = kms.Key(team, "DataKey", enable_key_rotation=True)
    bucket = encrypted_bucket(team, "Curated", key=key)
    owner = feature(team, "Owner", "assistant", "internal")
    rag = RagFeature(
        team, "Rag", feature=owner, dataset=StandIn("handbook", "internal", bucket, "/docs/handbook")
    )
    assert rag.prefix == "docs/handbook/"
    source = Template.from_stack(team).find_resources("AWS::Bedrock::DataSource")
    [(_, resource)] = source.items()
    assert resource["Properties"]["DataSourceConfiguration"]["S3Configuration"]["InclusionPrefixes"] == [
        "documents/docs/handbook/"
    ]
    with pytest.raises(RagFeatureError, match=r"dataset: .*prefix"):
        RagFeature(team, "Rag2", feature=owner, name="other", dataset=StandIn("x", "internal", bucket, "a/*"))


def test_rag_feature_passes_cdk_nag(tmp_path: Path) -> None:
    """No cdk-nag finding on anything the RagFeature creates (other stacks' findings are not ours)."""
    app, _ = build(nag=True, outdir=str(tmp_path))
    # ValidationFailed (a jsii RuntimeError) when any stack has a finding; the report says which.
    with contextlib.suppress(Exception):
        app.synth()
    report_file = tmp_path / "validation-report.json"
    if not report_file.exists():
        return  # clean everywhere
    report = json.loads(report_file.read_text())
    ours = [
        (violation["ruleName"], construct["constructPath"])
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
        if construct["constructPath"].startswith(("Team/Rag/", "Gateway/Gateway/Function/ServiceRole"))
    ]
    assert ours == []


# ------------------------------------------------------------------- sync on new dataset versions


def test_a_new_dataset_version_starts_ingestion_through_an_eventbridge_rule(built: Built) -> None:
    template = built.template
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["ai-factory.data-connector"],
                "detail-type": ["Dataset version curated"],
                "detail": {"dataset": ["support.tickets"]},
            },
            "State": "ENABLED",
            "Targets": [
                Match.object_like(
                    {"Arn": {"Fn::GetAtt": [Match.string_like_regexp("RagSyncFunction"), "Arn"]}}
                )
            ],
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "aif_connector.knowledge_sync.lambda_handler",
            "FunctionName": "ai-factory-kb-sync-support-tickets",
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "AIF_KNOWLEDGE_BASE_ID": {
                            "Fn::GetAtt": [Match.string_like_regexp("RagKnowledgeBase"), "KnowledgeBaseId"]
                        },
                        "AIF_DATA_SOURCE_ID": {
                            "Fn::GetAtt": [Match.string_like_regexp("RagDataSource"), "DataSourceId"]
                        },
                        "AIF_KNOWLEDGE_BASE_NAME": "support.tickets",
                    }
                )
            },
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "MaximumRetryAttempts": 2,
            "DestinationConfig": {
                "OnFailure": {
                    "Destination": {"Fn::GetAtt": [Match.string_like_regexp("RagSyncFailureQueue"), "Arn"]}
                }
            },
        },
    )
    statements = [
        s
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if "RagSyncRole" in json.dumps(policy["Properties"]["Roles"])
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    ingestion = next(s for s in statements if "bedrock:StartIngestionJob" in s["Action"])
    assert ingestion["Action"] == [
        "bedrock:StartIngestionJob",
        "bedrock:GetIngestionJob",
        "bedrock:ListIngestionJobs",
    ]
    logical_id, attribute = ingestion["Resource"]["Fn::GetAtt"]
    assert logical_id.startswith("RagKnowledgeBase") and attribute == "KnowledgeBaseArn"
    lineage = next(s for s in statements if s.get("Sid") == "WriteSyncLineage")
    assert lineage["Action"] == "s3:PutObject"
    assert json.dumps(lineage["Resource"]).endswith('/lineage/runs/knowledge-base-sync.support.tickets/*"]]}')
    names = [a.name for a in built.rag.feature.alarm_inputs]
    assert names[-1] == "KnowledgeBaseSyncFailed"
    assert built.rag.sync is not None
    assert (
        built.rag.sync.metric_errors().to_metric_config().metric_stat.dimensions[0].value
        == "ai-factory-kb-sync-support-tickets"
    )  # type: ignore[union-attr]


def test_sync_can_be_turned_off() -> None:
    _, result = build(name="manual", sync_on_new_versions=False)
    assert result is not None and result.rag.sync is None
    result.template.resource_count_is("AWS::Events::Rule", 0)


def test_the_sync_reads_the_curated_records_and_writes_only_the_document_prefix(built: Built) -> None:
    """The documents (with classification metadata) are written by the sync: read on the dataset's
    curated prefix, write on its document prefix, the lake key through S3 only, and its settings."""
    template = built.template
    statements = {
        s.get("Sid"): s
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if "RagSyncRole" in json.dumps(policy["Properties"]["Roles"])
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    }
    read, write = statements["ReadCuratedRecords"], statements["WriteDocuments"]
    assert read["Action"] == "s3:GetObject"
    assert json.dumps(read["Resource"]).endswith('"/support/tickets/*"]]}')
    assert write["Action"] == "s3:PutObject"
    assert json.dumps(write["Resource"]).endswith('"/documents/support/tickets/*"]]}')
    key = statements["CuratedKeyThroughS3Only"]
    assert key["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert "kms:ViaService" in key["Condition"]["StringEquals"]
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": "ai-factory-kb-sync-support-tickets",
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "AIF_SYNC_DATASET_PREFIX": "support/tickets/",
                        "AIF_SYNC_DOCUMENT_PREFIX": "documents/support/tickets/",
                        "AIF_SYNC_CLASSIFICATION": "internal",
                        "AIF_SYNC_DOCUMENT_FIELDS": "",
                    }
                )
            },
        },
    )


def test_document_fields_must_be_column_names() -> None:
    with pytest.raises(RagFeatureError, match=r"document_fields: must be a list of column names"):
        build(name="fields", document_fields="body")
