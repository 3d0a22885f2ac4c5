"""``RagFeature``: retrieval-augmented generation over a governed dataset, through the gateway.

A Bedrock Knowledge Base indexes exactly the dataset's curated S3 prefix into an S3 Vectors index
(KMS-encrypted with the feature's own key). The gateway is the only reader: product code calls
``POST /v1/retrieve`` for passages and ``POST /v1/chat/completions`` to generate, so both calls are
authenticated, metered, budgeted and (for generation) guarded. Synth fails when the feature — or any
extra reader — lacks the clearance for the dataset's classification.

Example (the knowledge team's internal Q&A over a governed dataset)::

    qa = AiFeature(team, "InternalQa", feature="internal-qa", clearance="confidential", ...)
    RagFeature(team, "InternalQaDocs", feature=qa, dataset=handbook, embedding_model="embed")

See ``docs/rag.md`` for the two-call pattern and the permission model.

Why this module is longer than ~400 lines: the knowledge base, its vector store, its data source and
the Lake Formation and KMS grants between them only make sense together; a third of it is validation
with precise errors.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

import aws_cdk as cdk
from aws_cdk import Aws, RemovalPolicy, Stack, Token
from aws_cdk import aws_bedrock as bedrock
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3vectors as s3vectors
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from ai_factory.catalog.model_catalog import CatalogModel, ModelCatalog
from ai_factory.constructs.ai_feature import NAME_PATTERN, AiFeature
from ai_factory.platform.name_prefix import bounded, name_prefix
from ai_factory.platform.secure_defaults import via_services
from aif_gateway.contract import CLEARANCE_LEVELS, DOCUMENT_PREFIX, cleared_for

RECORD_SCHEMA = 1  # aif_gateway.retrieval.RECORD_SCHEMA: the registration's JSON layout
# Output dimensions of the Titan text embedding models a knowledge base can use.
TITAN_DIMENSIONS = {
    "amazon.titan-embed-text-v2:0": (1024, 512, 256),
    "amazon.titan-embed-text-v1": (1536,),
}
# Bedrock stores each chunk's text and metadata in these keys; S3 Vectors limits filterable metadata
# to 2 KB per vector, so they must be declared non-filterable.
BEDROCK_METADATA_KEYS = ["AMAZON_BEDROCK_TEXT", "AMAZON_BEDROCK_METADATA"]


class RagFeatureError(ValueError):
    """An invalid ``RagFeature`` configuration. The message names the feature and the field."""


class Dataset(Protocol):
    """What a ``RagFeature`` needs from a dataset: a ``name`` and a ``classification``, plus where its
    curated data lives — ``curated_bucket`` and ``prefix``, or (``GovernedDataset``)
    ``foundation.curated_bucket`` and ``s3_prefix``."""

    name: str
    classification: str


class RagFeature(Construct):
    """A Bedrock Knowledge Base over one governed dataset, queried only through the gateway.

    What it creates:

    * a KMS key (rotation on) for the vector store and the data source's transient ingestion data;
    * an S3 Vectors bucket and index (SSE-KMS, retained on deletion: the embeddings are derived from
      governed data and are deleted deliberately, not by a stack rollback);
    * the knowledge base (``VECTOR``, ``S3_VECTORS`` storage) with the catalog's Titan embedding model;
    * an S3 data source on exactly the dataset's curated prefix, with the key above;
    * the knowledge base's service role: read exactly that prefix (and decrypt its objects through S3),
      invoke exactly the embedding model, write and query exactly the index;
    * the gateway registration: an SSM parameter ``<gateway prefix><name>`` with the knowledge base ID,
      the embedding model and price, and the ``team/feature`` pairs allowed to query it (the feature
      and ``readers``); and a policy on the gateway role allowing ``bedrock:Retrieve`` on exactly this
      knowledge base and ``ssm:GetParameter`` on exactly this registration.

    :param feature: the ``AiFeature`` that owns the knowledge base; its clearance must cover the
        dataset's classification, and generation uses its models through the gateway.
    :param dataset: the governed dataset (``name``, ``classification``, ``curated_bucket``, ``prefix``).
    :param name: the knowledge base name callers send as ``knowledge_base``. Default: the feature's.
    :param embedding_model: a catalog route alias or model name of a Bedrock Titan text embedding model.
        Default ``"embed"``.
    :param dimensions: embedding size. Default: the model's largest.
    :param readers: other features allowed to query the knowledge base (each clearance-checked).
    :param chunk_max_tokens: fixed-size chunking: tokens per chunk. Default 300.
    :param chunk_overlap_pct: fixed-size chunking: overlap between chunks in percent. Default 20.
    :param encryption_key: KMS key for the vector store and ingestion. Default: a new key.
    :param sync_on_new_versions: start the knowledge base's ingestion whenever the data connector
        curates a new version of the dataset (``KnowledgeBaseSync``: EventBridge rule, documents and
        metadata sidecars written under ``documents/<prefix>``, idempotent per version, lineage, alarmed
        failures). Needs a governed dataset (``qualified_name`` and a ``foundation``); ignored for other
        datasets, whose documents your own pipeline writes in the same layout. Default True.
    :param document_fields: the columns a record's document is made of, in order. Default: all.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        feature: AiFeature,
        dataset: Dataset,
        name: str | None = None,
        embedding_model: str = "embed",
        dimensions: int | None = None,
        readers: Sequence[AiFeature] = (),
        chunk_max_tokens: int = 300,
        chunk_overlap_pct: int = 20,
        encryption_key: kms.IKey | None = None,
        sync_on_new_versions: bool = True,
        document_fields: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        if not isinstance(feature, AiFeature):
            raise RagFeatureError(
                f"RagFeature {construct_id}: feature: must be an AiFeature, got {feature!r}"
            )
        self.feature = feature
        self._label = f"RagFeature {feature.team}/{feature.feature}"
        self.name = name if name is not None else feature.feature
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise self._fail(
                "name", f"{self.name!r} is not valid: use 1-63 lowercase letters, digits, hyphens"
            )
        self.dataset = dataset
        self.classification = self._check_dataset(dataset)
        self.bucket: s3.IBucket = self._dataset_bucket(dataset)
        self.prefix = self._dataset_prefix(dataset)
        # What the knowledge base indexes: the dataset's documents and their metadata sidecars, apart
        # from the Glue table location (which must hold the dataset's JSON lines only).
        self.document_prefix = DOCUMENT_PREFIX + self.prefix
        self._check_clearance(feature, "feature")
        if isinstance(readers, AiFeature) or not isinstance(readers, Sequence):
            raise self._fail("readers", "must be a list of AiFeature")
        for i, reader in enumerate(readers):
            if not isinstance(reader, AiFeature):
                raise self._fail(f"readers[{i}]", f"must be an AiFeature, got {reader!r}")
            self._check_clearance(reader, f"readers[{i}]")
        self.readers = tuple(readers)
        if isinstance(document_fields, str) or not all(
            isinstance(f, str) and re.fullmatch(r"[A-Za-z0-9_]{1,128}", f) for f in document_fields
        ):
            raise self._fail("document_fields", f"must be a list of column names, got {document_fields!r}")
        self._document_fields = tuple(document_fields)
        gateway = feature.gateway
        self.embedding_model = self._embedding_model(gateway.catalog, embedding_model)
        supported = TITAN_DIMENSIONS[self.embedding_model.model_id]
        self.dimensions = dimensions if dimensions is not None else supported[0]
        if self.dimensions not in supported:
            raise self._fail(
                "dimensions", f"{self.dimensions!r} is not one of {self.embedding_model.name}'s {supported}"
            )
        if not 20 <= chunk_max_tokens <= 8192:
            raise self._fail("chunk_max_tokens", f"must be 20..8192, got {chunk_max_tokens!r}")
        if not 1 <= chunk_overlap_pct <= 99:
            raise self._fail("chunk_overlap_pct", f"must be 1..99, got {chunk_overlap_pct!r}")

        stack = Stack.of(self)
        region = Aws.REGION if Token.is_unresolved(stack.region) else stack.region
        self.embedding_model_arn = (
            f"arn:{Aws.PARTITION}:bedrock:{region}::foundation-model/{self.embedding_model.model_id}"
        )
        self.key: kms.IKey = encryption_key or self._new_key()
        self.vector_bucket = s3vectors.CfnVectorBucket(
            self,
            "VectorBucket",
            encryption_configuration=s3vectors.CfnVectorBucket.EncryptionConfigurationProperty(
                sse_type="aws:kms", kms_key_arn=self.key.key_arn
            ),
        )
        self.vector_bucket.apply_removal_policy(RemovalPolicy.RETAIN)
        self.index = s3vectors.CfnIndex(
            self,
            "Index",
            vector_bucket_arn=self.vector_bucket.attr_vector_bucket_arn,
            data_type="float32",
            dimension=self.dimensions,
            distance_metric="cosine",
            metadata_configuration=s3vectors.CfnIndex.MetadataConfigurationProperty(
                non_filterable_metadata_keys=BEDROCK_METADATA_KEYS
            ),
        )
        self.index.apply_removal_policy(RemovalPolicy.RETAIN)

        self.role = self._knowledge_base_role()
        self.knowledge_base = bedrock.CfnKnowledgeBase(
            self,
            "KnowledgeBase",
            name=bounded(f"{name_prefix(self)}-{feature.team}-{self.name}", 100),  # unique in the account
            description=(
                f"AI Factory {feature.team}/{feature.feature}: dataset {dataset.name} "
                f"({self.classification}), queried through the gateway"
            ),
            role_arn=self.role.role_arn,
            knowledge_base_configuration=bedrock.CfnKnowledgeBase.KnowledgeBaseConfigurationProperty(
                type="VECTOR",
                vector_knowledge_base_configuration=bedrock.CfnKnowledgeBase.VectorKnowledgeBaseConfigurationProperty(
                    embedding_model_arn=self.embedding_model_arn,
                    embedding_model_configuration=bedrock.CfnKnowledgeBase.EmbeddingModelConfigurationProperty(
                        bedrock_embedding_model_configuration=bedrock.CfnKnowledgeBase.BedrockEmbeddingModelConfigurationProperty(
                            dimensions=self.dimensions, embedding_data_type="FLOAT32"
                        )
                    ),
                ),
            ),
            storage_configuration=bedrock.CfnKnowledgeBase.StorageConfigurationProperty(
                type="S3_VECTORS",
                s3_vectors_configuration=bedrock.CfnKnowledgeBase.S3VectorsConfigurationProperty(
                    index_arn=self.index.attr_index_arn
                ),
            ),
            tags={"Team": feature.team, "Feature": feature.feature, "Classification": self.classification},
        )
        self.knowledge_base_id: str = self.knowledge_base.attr_knowledge_base_id
        self.knowledge_base_arn: str = self.knowledge_base.attr_knowledge_base_arn

        bucket = self.bucket
        self.data_source = bedrock.CfnDataSource(
            self,
            "DataSource",
            knowledge_base_id=self.knowledge_base_id,
            name=re.sub(r"[^0-9A-Za-z]+", "-", f"{dataset.name}-curated")[:100],
            description=f"Documents of dataset {dataset.name}: s3://…/{self.document_prefix}",
            # Removing the data source removes its vectors: de-indexing governed data is deliberate.
            data_deletion_policy="DELETE",
            data_source_configuration=bedrock.CfnDataSource.DataSourceConfigurationProperty(
                type="S3",
                s3_configuration=bedrock.CfnDataSource.S3DataSourceConfigurationProperty(
                    bucket_arn=bucket.bucket_arn,
                    bucket_owner_account_id=Aws.ACCOUNT_ID,
                    inclusion_prefixes=[self.document_prefix],
                ),
            ),
            server_side_encryption_configuration=bedrock.CfnDataSource.ServerSideEncryptionConfigurationProperty(
                kms_key_arn=self.key.key_arn
            ),
            vector_ingestion_configuration=bedrock.CfnDataSource.VectorIngestionConfigurationProperty(
                chunking_configuration=bedrock.CfnDataSource.ChunkingConfigurationProperty(
                    chunking_strategy="FIXED_SIZE",
                    fixed_size_chunking_configuration=bedrock.CfnDataSource.FixedSizeChunkingConfigurationProperty(
                        max_tokens=chunk_max_tokens, overlap_percentage=chunk_overlap_pct
                    ),
                )
            ),
        )
        self.data_source_id: str = self.data_source.attr_data_source_id

        self.registration = self._register_with_gateway()
        self.sync = self._sync_on_new_versions() if sync_on_new_versions else None
        for key, value in (("Team", feature.team), ("Feature", feature.feature)):
            cdk.Tags.of(self).add(key, value)
        cdk.Tags.of(self).add("Classification", self.classification)

    def _sync_on_new_versions(self) -> Any:
        from ai_factory.constructs.ai_feature import AlarmInput
        from ai_factory.constructs.knowledge_sync import ALARM_NAME, DocumentSource, KnowledgeBaseSync

        qualified = getattr(self.dataset, "qualified_name", None)
        foundation = getattr(self.dataset, "foundation", None)
        if qualified is None or foundation is None:
            return None  # not a governed dataset: no connector announces its versions
        lineage_bucket = getattr(foundation, "lineage_bucket", None) or foundation.curated_bucket
        stack = Stack.of(self)
        sync = KnowledgeBaseSync(
            self,
            "Sync",
            rag=self,
            dataset_name=qualified,
            lineage_bucket=lineage_bucket,
            lineage_bucket_nag_ref=_nag_arn_ref(lineage_bucket, stack),
            documents=DocumentSource(
                bucket=self.bucket,
                bucket_nag_ref=_nag_arn_ref(self.bucket, stack),
                dataset_prefix=self.prefix,
                document_prefix=self.document_prefix,
                classification=self.classification,
                fields=tuple(self._document_fields),
            ),
        )
        self.feature.add_alarm_input(
            AlarmInput(
                ALARM_NAME,
                sync.metric_errors(),
                0,
                cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                1,
                f"{self.feature.team}/{self.feature.feature}: the ingestion of knowledge base {self.name} "
                f"could not be started for a new version of {qualified}",
            )
        )
        return sync

    # ----------------------------------------------------------------------------------------- grants

    def grant_start_ingestion(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` (the data connector, a scheduler) start and watch ingestion jobs of this
        knowledge base: ``bedrock:StartIngestionJob``, ``GetIngestionJob``, ``ListIngestionJobs``."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["bedrock:StartIngestionJob", "bedrock:GetIngestionJob", "bedrock:ListIngestionJobs"],
            resource_arns=[self.knowledge_base_arn],
        )

    @property
    def allowed(self) -> tuple[str, ...]:
        """The ``team/feature`` pairs the gateway lets query this knowledge base."""
        pairs = [f"{self.feature.team}/{self.feature.feature}"]
        pairs += [f"{r.team}/{r.feature}" for r in self.readers]
        return tuple(dict.fromkeys(pairs))

    # ------------------------------------------------------------------------------------- resources

    def _new_key(self) -> kms.Key:
        key = kms.Key(
            self,
            "Key",
            enable_key_rotation=True,
            description=f"AI Factory {self.feature.team}/{self.name}: knowledge base vectors and ingestion",
            removal_policy=RemovalPolicy.RETAIN,
        )
        # S3 Vectors' indexing service reads the key to maintain the index of an SSE-KMS vector bucket,
        # for vector buckets in this account only.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowS3VectorsIndexing",
                principals=[iam.ServicePrincipal("indexing.s3vectors.amazonaws.com")],
                actions=["kms:Decrypt"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        return key

    def _knowledge_base_role(self) -> iam.Role:
        bucket = self.bucket
        stack = Stack.of(self)
        statements = [
            iam.PolicyStatement(
                sid="InvokeEmbeddingModel",
                actions=["bedrock:InvokeModel"],
                resources=[self.embedding_model_arn],
            ),
            iam.PolicyStatement(
                sid="ListDocumentPrefix",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{self.document_prefix}*"]}},
            ),
            iam.PolicyStatement(
                sid="ReadDocumentPrefix",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{self.document_prefix}*")],
            ),
            iam.PolicyStatement(
                sid="UseVectorIndex",
                actions=[
                    "s3vectors:GetIndex",
                    "s3vectors:PutVectors",
                    "s3vectors:GetVectors",
                    "s3vectors:DeleteVectors",
                    "s3vectors:QueryVectors",
                ],
                resources=[self.index.attr_index_arn],
            ),
            iam.PolicyStatement(
                sid="UseKnowledgeBaseKey",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self.key.key_arn],
            ),
        ]
        if bucket.encryption_key is not None:
            statements.append(
                iam.PolicyStatement(
                    sid="DecryptDatasetThroughS3",
                    actions=["kms:Decrypt"],
                    resources=[bucket.encryption_key.key_arn],
                    conditions=via_services("s3"),
                )
            )
        # Inline: the knowledge base can never be created (and validate its role) before the policy exists.
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "bedrock.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="bedrock", resource="knowledge-base", resource_name="*"
                        )
                    },
                },
            ),
            description=(
                f"AI Factory {self.feature.team}/{self.name}: Bedrock knowledge base over {self.dataset.name}"
            ),
            inline_policies={"KnowledgeBase": iam.PolicyDocument(statements=statements)},
        )
        cdk.Validations.of(role).acknowledge(
            cdk.Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{_nag_arn_ref(bucket, stack)}/{self.document_prefix}*]",
                reason=(
                    f"The knowledge base reads every document under the governed dataset's document prefix "
                    f"'{self.document_prefix}' (object keys are not known at deploy time) and nothing else."
                ),
            )
        )
        return role

    def _register_with_gateway(self) -> ssm.StringParameter:
        feature = self.feature
        gateway = feature.gateway
        prefix = getattr(gateway, "knowledge_base_parameter_prefix", None)
        role = getattr(gateway, "runtime_role", None)
        if not prefix or role is None:
            raise self._fail(
                "feature",
                "its gateway was imported without runtime_role_arn and knowledge_base_parameter_prefix: the "
                "gateway reads knowledge-base registrations in its own account, so a RagFeature must be "
                "deployed in the gateway's account (GatewayAttributes takes both)",
            )
        stack = Stack.of(self)
        region = None if Token.is_unresolved(stack.region) else stack.region
        record: dict[str, Any] = {
            "schema": RECORD_SCHEMA,
            "name": self.name,
            "knowledge_base_id": self.knowledge_base_id,
            "allowed": list(self.allowed),
            "embedding_model": self.embedding_model.name,
            "embedding_input_price": self.embedding_model.prices.input,
            "region": region,
            "classification": self.classification,
            "dataset": self.dataset.name,
        }
        parameter = ssm.StringParameter(
            self,
            "GatewayRegistration",
            parameter_name=f"{prefix}{self.name}",
            string_value=stack.to_json_string(record),
            description=f"AI Factory: knowledge base {self.name} for the gateway's POST /v1/retrieve",
        )
        # A policy in this stack on the gateway's role: the gateway stack never references this one.
        iam.Policy(
            self,
            "GatewayRetrieve",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    sid="RetrieveFromKnowledgeBase",
                    actions=["bedrock:Retrieve"],
                    resources=[self.knowledge_base_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadKnowledgeBaseRegistration",
                    actions=["ssm:GetParameter"],
                    resources=[parameter.parameter_arn],
                ),
            ],
        )
        return parameter

    # ------------------------------------------------------------------------------------ validation

    def _fail(self, field: str, why: str) -> RagFeatureError:
        return RagFeatureError(f"{self._label}: {field}: {why}")

    def _check_dataset(self, dataset: Any) -> str:
        for attribute in ("name", "classification"):
            if getattr(dataset, attribute, None) is None:
                raise self._fail("dataset", f"has no {attribute!r}; pass a governed dataset")
        classification = dataset.classification
        if classification not in CLEARANCE_LEVELS:
            raise self._fail(
                "dataset",
                f"{dataset.name}: classification {classification!r} is not one of "
                f"{', '.join(CLEARANCE_LEVELS)}",
            )
        return str(classification)

    def _dataset_bucket(self, dataset: Any) -> s3.IBucket:
        bucket = getattr(dataset, "curated_bucket", None)
        if bucket is None:
            bucket = getattr(getattr(dataset, "foundation", None), "curated_bucket", None)
        if bucket is None:
            raise self._fail("dataset", f"{dataset.name}: has no curated bucket; pass a governed dataset")
        return bucket

    def _dataset_prefix(self, dataset: Any) -> str:
        prefix = getattr(dataset, "prefix", None)
        prefix = prefix if prefix is not None else getattr(dataset, "s3_prefix", None)
        try:
            return _normalize_prefix(prefix)
        except ValueError as exc:
            raise self._fail("dataset", f"{dataset.name}: {exc}") from None

    def _check_clearance(self, feature: AiFeature, field: str) -> None:
        if not cleared_for(feature.clearance, self.classification):
            raise self._fail(
                field,
                f"AiFeature {feature.team}/{feature.feature} has clearance {feature.clearance!r}, below "
                f"dataset {self.dataset.name}'s classification {self.classification!r}: it may not index or "
                "retrieve it",
            )

    def _embedding_model(self, catalog: ModelCatalog, alias: str) -> CatalogModel:
        route = catalog.routes.get(alias)
        name = route.targets[0] if route is not None else alias
        model = catalog.models.get(name)
        if model is None:
            raise self._fail("embedding_model", f"{alias!r} is neither a route nor a model in the catalog")
        if model.modality != "embedding" or model.provider != "bedrock":
            raise self._fail("embedding_model", f"{alias!r} is not a Bedrock embedding model ({model.name})")
        if model.model_id not in TITAN_DIMENSIONS:
            raise self._fail(
                "embedding_model",
                f"{model.name} ({model.model_id}) is not a supported Titan text embedding model "
                f"({', '.join(TITAN_DIMENSIONS)})",
            )
        if model.status != "approved":
            raise self._fail("embedding_model", f"{model.name} is {model.status}, not approved")
        return model


def _normalize_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str) or not prefix.strip("/"):
        raise ValueError(f"the curated prefix must be a non-empty S3 key prefix, got {prefix!r}")
    if Token.is_unresolved(prefix):
        raise ValueError("the curated prefix must be known at synth time (it scopes the IAM policy)")
    # No wildcards or odd characters: the prefix becomes an IAM resource and an s3:prefix condition.
    if not re.fullmatch(r"[A-Za-z0-9_.=/-]+", prefix) or "//" in prefix:
        raise ValueError(f"the curated prefix {prefix!r} must be letters, digits and _ . = - /")
    return prefix.strip("/") + "/"


def _nag_arn_ref(bucket: s3.IBucket, stack: Stack) -> str:
    """How cdk-nag names ``bucket``'s ARN in a finding of ``stack``: ``<LogicalId.Arn>`` in the same
    stack, the export name of the cross-stack reference otherwise (the same export CDK's automatic
    reference would create, so no extra output)."""
    producer = Stack.of(bucket)
    child = bucket.node.default_child
    if producer is stack or child is None:
        return f"<{_logical_ref(bucket)}.Arn>"
    imported = stack.resolve(producer.export_value(bucket.bucket_arn))
    return str(imported["Fn::ImportValue"])


def _logical_ref(bucket: s3.IBucket) -> str:
    """The logical ID of the bucket's resource, as cdk-nag names it in findings (cross-stack: imported)."""
    child = bucket.node.default_child
    if child is None:
        return bucket.node.id
    return Stack.of(bucket).get_logical_id(child)  # type: ignore[arg-type]
