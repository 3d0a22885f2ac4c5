"""``KnowledgeBaseSync``: a new curated version of a dataset starts the ingestion of a knowledge base over it.

The data connector announces every run that curated records as an EventBridge event
(``ai-factory.data-connector`` / ``Dataset version curated``, on the default bus). This construct,
created by ``RagFeature`` for its knowledge base, adds

* an EventBridge rule on that event for exactly its dataset (``detail.dataset``);
* a small Lambda (``aif_connector.knowledge_sync.lambda_handler``) that calls ``StartIngestionJob`` with
  a client token derived from the dataset version (a retried or replayed event starts no second job)
  and writes an OpenLineage event: which dataset version this sync indexed, and the ingestion job id;
* its role: ``bedrock:StartIngestionJob``/``GetIngestionJob``/``ListIngestionJobs`` on exactly this
  knowledge base, ``s3:PutObject`` on exactly its lineage key prefix, ``s3:GetObject`` on the dataset's
  curated prefix and ``s3:PutObject`` on its document prefix (the documents and their metadata
  sidecars; the lake key only through S3);
* a failure queue (KMS) for events that still fail after Lambda's two retries or that EventBridge
  could not deliver, and the
  ``KnowledgeBaseSyncFailed`` alarm input on the feature (runbook ``knowledge-base-sync``).

See ``docs/rag.md`` ("Keeping the index current").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import aws_cdk as cdk
from aif_connector import knowledge_sync as runtime
from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ai_factory.platform.functions import function_log_group, hardened_function, write_own_logs_statement
from ai_factory.platform.lambda_packaging import contract_files, stage_asset
from ai_factory.platform.name_prefix import bounded, name_prefix
from ai_factory.platform.secure_defaults import encrypted_queue, logs_kms_key, via_services


class SyncedKnowledgeBase(Protocol):
    """What the sync needs from a ``RagFeature`` (a protocol: ``rag_feature`` imports this module)."""

    name: str
    feature: Any
    knowledge_base_id: str
    knowledge_base_arn: str
    data_source_id: str

    def grant_start_ingestion(self, grantee: iam.IGrantable) -> iam.Grant: ...


@dataclass(frozen=True)
class DocumentSource:
    """Where the sync reads a dataset's curated records and writes its documents (``documents/…``)."""

    bucket: s3.IBucket
    bucket_nag_ref: str  # how cdk-nag names the bucket's ARN in this stack
    dataset_prefix: str
    document_prefix: str
    classification: str
    fields: tuple[str, ...] = ()


SYNC_HANDLER = "aif_connector.knowledge_sync.lambda_handler"
ALARM_NAME = "KnowledgeBaseSyncFailed"


class KnowledgeBaseSync(Construct):
    """Event-driven ingestion of one ``RagFeature``'s knowledge base (see the module docstring).

    :param rag: the ``RagFeature`` whose knowledge base and data source are synced.
    :param dataset_name: the dataset's qualified name as the connector announces it (``domain.name``).
    :param lineage_bucket: where the lineage events go (the lake's lineage store).
    :param lineage_bucket_nag_ref: how cdk-nag names that bucket's ARN in this stack (for the
        acknowledgement of the lineage prefix wildcard).
    :param lineage_prefix: the lineage store's key prefix. Default ``lineage/``.
    :param documents: write the documents of each curated version (with metadata sidecars) before the
        ingestion starts. Default: none (the knowledge base's prefix is filled some other way).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        rag: SyncedKnowledgeBase,
        dataset_name: str,
        lineage_bucket: s3.IBucket,
        lineage_bucket_nag_ref: str,
        lineage_prefix: str = "lineage/",
        documents: DocumentSource | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dataset_name = dataset_name
        self.knowledge_base_name = f"{rag.feature.team}.{rag.name}"
        # Function and rule names are account-wide: they start with the factory's name prefix.
        self.function_name = bounded(f"{name_prefix(self)}-kb-sync-{rag.feature.team}-{rag.name}", 64)
        self.key: kms.Key = logs_kms_key(self, "Key", f"AI Factory knowledge base sync {rag.name}")
        self.log_group = function_log_group(self, "Logs", key=self.key, retention=log_retention)
        self.failure_queue = encrypted_queue(
            self,
            "FailureQueue",
            key=self.key,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"AI Factory knowledge base sync of {rag.name}",
        )
        job_prefix = f"{lineage_prefix}runs/knowledge-base-sync.{self.knowledge_base_name}/"
        self.role.add_to_policy(write_own_logs_statement(self.log_group))
        rag.grant_start_ingestion(self.role)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteSyncLineage",
                actions=["s3:PutObject"],
                resources=[lineage_bucket.arn_for_objects(f"{job_prefix}*")],
            )
        )
        if lineage_bucket.encryption_key is not None:
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="LineageKeyThroughS3Only",
                    actions=["kms:GenerateDataKey"],
                    resources=[lineage_bucket.encryption_key.key_arn],
                    conditions=via_services("s3"),
                )
            )
        environment = {
            runtime.KNOWLEDGE_BASE_ID_ENV: rag.knowledge_base_id,
            runtime.DATA_SOURCE_ID_ENV: rag.data_source_id,
            runtime.KNOWLEDGE_BASE_NAME_ENV: self.knowledge_base_name,
            runtime.KNOWLEDGE_BASE_ARN_ENV: rag.knowledge_base_arn,
            runtime.SYNC_LINEAGE_BUCKET_ENV: lineage_bucket.bucket_name,
            runtime.SYNC_LINEAGE_PREFIX_ENV: lineage_prefix,
        }
        self.documents = documents
        if documents is not None:
            environment.update(self._document_access(documents))
        code = stage_asset(
            "kb-sync-",
            {"aif_connector": _connector_source(), "aif_gateway": contract_files()},
        )
        self.function = hardened_function(
            self,
            "Function",
            description=f"AI Factory: start ingestion of knowledge base {rag.name} on a new dataset version",
            # A fixed name: the feature's alarm (in the observability stack) names the function without
            # a cross-stack reference.
            function_name=self.function_name,
            handler=SYNC_HANDLER,
            code=lambda_.Code.from_asset(str(code)),
            role=self.role,
            environment=environment,
            memory_size=256,
            timeout=Duration.seconds(60),
            log_group=self.log_group,
            on_failure=destinations.SqsDestination(self.failure_queue),
            retry_attempts=2,
            max_event_age=Duration.hours(6),
        )
        self._lineage = (lineage_bucket_nag_ref, job_prefix)
        rule_name = self.function_name  # <prefix>-kb-sync-<team>-<name>, at most 64 characters
        rule_arn = cdk.Stack.of(self).format_arn(service="events", resource="rule", resource_name=rule_name)
        self.rule = events.Rule(
            self,
            "OnDatasetVersion",
            rule_name=rule_name,
            description=f"AI Factory: a new curated version of {dataset_name} starts the sync of {rag.name}",
            event_pattern=events.EventPattern(
                source=[runtime.EVENT_SOURCE],
                detail_type=[runtime.EVENT_DETAIL_TYPE],
                detail={"dataset": [dataset_name]},
            ),
            targets=[
                targets.LambdaFunction(
                    self.function,
                    retry_attempts=8,
                    max_event_age=Duration.hours(6),
                    # Events EventBridge could not deliver land in the same failure queue.
                    dead_letter_queue=self.failure_queue,
                )
            ],
        )
        # EventBridge writes undeliverable events to the KMS-encrypted queue: it needs the key, for
        # this rule only.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowEventBridgeDeadLetters",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" is this key
                # The ARN from the rule's fixed name: a reference to the rule would be a dependency cycle
                # (rule -> function -> role policy -> log group -> this key).
                conditions={"ArnEquals": {"aws:SourceArn": rule_arn}},
            )
        )
        self._acknowledge()

    def _document_access(self, documents: DocumentSource) -> dict[str, str]:
        """Read the curated records, write the documents; returns the function's settings for it."""
        bucket = documents.bucket
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadCuratedRecords",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{documents.dataset_prefix}*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteDocuments",
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{documents.document_prefix}*")],
            )
        )
        if bucket.encryption_key is not None:
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="CuratedKeyThroughS3Only",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[bucket.encryption_key.key_arn],
                    conditions=via_services("s3"),
                )
            )
        return {
            runtime.CURATED_BUCKET_ENV: bucket.bucket_name,
            runtime.DATASET_PREFIX_ENV: documents.dataset_prefix,
            runtime.DOCUMENT_PREFIX_ENV: documents.document_prefix,
            runtime.CLASSIFICATION_ENV: documents.classification,
            runtime.DOCUMENT_FIELDS_ENV: ",".join(documents.fields),
        }

    def metric_failed_syncs(self, **props: Any) -> cloudwatch.Metric:
        """Sync events that failed after Lambda's retries (messages in the failure queue)."""
        return self.failure_queue.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=Duration.minutes(5), **props
        )

    def metric_errors(self, **props: Any) -> cloudwatch.Metric:
        """Failed sync attempts (each is retried; ``metric_failed_syncs`` counts the final failures)."""
        return cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name="Errors",
            dimensions_map={"FunctionName": self.function_name},
            statistic="Sum",
            period=Duration.minutes(5),
            **props,
        )

    def _acknowledge(self) -> None:
        from ai_factory.platform.nag import (
            XRAY_WILDCARD_REASON,
            acknowledge,
            acknowledge_outside_vpc,
            acknowledge_unreserved_concurrency,
        )

        policy = self.role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            key_reason = (
                "CDK's grant for sending to the failure-destination queue, which is encrypted with the "
                "sync's own key: the data-key action families on that one key."
            )
            lineage_arn, job_prefix = self._lineage
            documents: dict[str, str] = {}
            if self.documents is not None:
                ref, d = self.documents.bucket_nag_ref, self.documents
                documents = {
                    f"AwsSolutions-IAM5[Resource::{ref}/{d.dataset_prefix}*]": (
                        "The sync reads the curated object the event names; its key (run id) is not known "
                        f"at deploy time: objects under exactly the dataset's prefix {d.dataset_prefix!r}."
                    ),
                    f"AwsSolutions-IAM5[Resource::{ref}/{d.document_prefix}*]": (
                        "The sync writes one document and its metadata sidecar per curated record under "
                        f"exactly the dataset's document prefix {d.document_prefix!r}."
                    ),
                }
            acknowledge(
                policy,
                {
                    **documents,
                    "AwsSolutions-IAM5[Resource::*]": XRAY_WILDCARD_REASON,
                    "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]": key_reason,
                    "AwsSolutions-IAM5[Action::kms:ReEncrypt*]": key_reason,
                    f"AwsSolutions-IAM5[Resource::{lineage_arn}/{job_prefix}*]": (
                        "The sync writes one lineage event per dataset version under exactly its own job's "
                        f"key prefix {job_prefix!r} in the lineage store (keys carry the run id)."
                    ),
                },
            )
        acknowledge_outside_vpc(self.function)
        dlq_reason = (
            "Asynchronous failures (after 2 retries or 6 hours) go to the on-failure destination, the sync's "
            "SQS queue, which records the event and the error; a DLQ as well would duplicate it."
        )
        acknowledge(
            self.function.node.default_child,  # type: ignore[arg-type]
            {"NIST.800.53.R5-LambdaDLQ": dlq_reason, "Serverless-LambdaDLQ": dlq_reason},
        )
        acknowledge_unreserved_concurrency(
            self.function, bounded_by="one invocation per curated dataset version (connector runs)"
        )
        acknowledge(
            self.failure_queue,
            {
                rule: "This queue is itself the sync Lambda's failure destination; it needs no DLQ."
                for rule in ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy", "NIST.800.53.R5-SQSQueueDLQ")
            },
        )


def _connector_source() -> Any:
    from ai_factory.constructs.data_connector import connector_source_dir

    return connector_source_dir()
