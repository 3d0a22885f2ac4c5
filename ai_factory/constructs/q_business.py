"""``QBusinessConnector``: an Amazon Q Business application indexes governed datasets' curated zone.

Amazon Q Business stopped accepting new customers on 31 July 2026 (AWS points new customers to Amazon
Quick). This construct is for organizations that already run it: it connects their existing application
(``application_id`` + ``index_id``) — or, in an account that may still create one, a new application,
index and native retriever — to the factory's governed datasets through factory-managed connectors.
New deployments use the factory's own assistant over ``RagFeature`` instead (``docs/q-business.md``).

Per dataset it creates

* an ``AWS::QBusiness::DataSource`` with the S3 connector configuration (a JSON document) whose only
  inclusion prefix is the dataset's curated prefix in the lake's curated bucket: the masked records the
  data connector wrote, never the raw or quarantine zones (they are other buckets);
* document attributes set by the data source itself (inline document enrichment): ``aif_classification``,
  ``aif_domain`` and ``aif_dataset`` on every document it indexes. The values come from the deployed
  configuration, not from metadata files next to the data, so whoever can write the curated prefix
  cannot relabel a document;
* a role only Q Business can assume, for this application only: ``s3:ListBucket`` with an ``s3:prefix``
  condition and ``s3:GetObject`` on exactly that prefix, ``kms:Decrypt`` on the lake key through S3
  only, ``qbusiness:BatchPutDocument``/``BatchDeleteDocument`` on exactly this index, and the principal
  store actions the S3 connector calls, on this application and index only.

For an existing application, a custom resource (``aif_connector.q_business_index``) adds the three
attribute fields to its index when they are missing — the index's whole field list plus the missing ones,
never dropping a field; nothing on delete, since the index is not the factory's — with a handler allowed
``qbusiness:GetIndex``/``UpdateIndex`` on exactly that index. A created index declares the fields itself.

A Q Business application answers every signed-in user from everything its index holds (the connector
ingests no per-document ACLs), so the application as a whole has a clearance (``cleared_for``): synth
fails for a dataset classified above it, naming the dataset and both levels. Datasets that still hold
personal data after masking (``pii=True``) are refused unless ``allow_personal_data=True``.

Example (an existing application, cleared for internal data)::

    QBusinessConnector(self, "QBusiness", application_id="a1b2c3d4-...", index_id="e5f6a7b8-...",
        cleared_for="internal", datasets=[governance.datasets["support.tickets"]],
        sync_schedule="cron(0 3 * * ? *)")
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aif_connector.q_business_index as index_fields_runtime
import aws_cdk as cdk
from aws_cdk import Aws, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_qbusiness as qbusiness
from constructs import Construct

from ai_factory.constructs.data_connector import connector_source_dir
from ai_factory.constructs.governance import GovernedDataset
from ai_factory.constructs.rag_feature import _nag_arn_ref
from ai_factory.platform.custom_resources import secure_provider
from ai_factory.platform.functions import function_log_group, hardened_function, write_own_logs_statement
from ai_factory.platform.lambda_packaging import contract_files, stage_asset
from ai_factory.platform.nag import acknowledge_custom_resource_handler
from ai_factory.platform.secure_defaults import logs_kms_key, via_services
from aif_gateway.contract import CLEARANCE_LEVELS, cleared_for

ATTRIBUTE_CLASSIFICATION = "aif_classification"
ATTRIBUTE_DOMAIN = "aif_domain"
ATTRIBUTE_DATASET = "aif_dataset"
DOCUMENT_ATTRIBUTES = (ATTRIBUTE_CLASSIFICATION, ATTRIBUTE_DOMAIN, ATTRIBUTE_DATASET)
"""Index fields every document from a factory data source carries (STRING, searchable)."""
INDEX_FIELDS = tuple({"name": n, "type": "STRING", "search": "ENABLED"} for n in DOCUMENT_ATTRIBUTES)
"""Their ``DocumentAttributeConfiguration``s: what a created index declares and an existing one gets."""
INDEX_FIELDS_RESOURCE_TYPE = index_fields_runtime.RESOURCE_TYPE

DEFAULT_SYNC_SCHEDULE = "cron(0 3 * * ? *)"
"""Daily at 03:00 UTC, after the nightly connector runs."""

# Q Business application and index IDs: 36 characters, letters, digits and hyphens.
_RESOURCE_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{35}$")
# Q Business schedules are EventBridge-style cron expressions with six fields.
_CRON = re.compile(r"^cron\((\S+ ){5}\S+\)$")
_PRINCIPAL_STORE_ACTIONS = [
    "qbusiness:PutGroup",
    "qbusiness:CreateUser",
    "qbusiness:DeleteGroup",
    "qbusiness:UpdateUser",
    "qbusiness:ListGroups",
]


class QBusinessError(ValueError):
    """An invalid ``QBusinessConnector`` configuration, or a dataset it must not index. The message names
    the construct, the field and the reason."""


class QBusinessConnector(Construct):
    """Governed datasets in an Amazon Q Business index, through one S3 data source each (module docstring).

    :param cleared_for: the most sensitive classification every user of the application may read
        (``public``, ``internal``, ``confidential`` or ``restricted``).
    :param datasets: the ``GovernedDataset`` objects to index (each at most ``cleared_for``).
    :param application_id: an existing application's ID. Give it with ``index_id``, or neither to create
        an application (accounts that are not yet Q Business customers cannot).
    :param index_id: the existing application's index ID. Q Business sets a document attribute only for
        an existing index field, so a custom resource adds the string fields ``aif_classification``,
        ``aif_domain`` and ``aif_dataset`` to that index when they are missing (``index_fields``).
    :param identity_center_instance_arn: when creating an application: the IAM Identity Center instance
        its users sign in through (required then).
    :param display_name: name of the created application, index and retriever, and prefix of the data
        sources' names. Default ``ai-factory``.
    :param sync_schedule: when Q Business re-crawls each data source, a six-field ``cron(...)``
        expression, or ``None`` for syncs started on demand only. Default daily at 03:00 UTC.
    :param allow_personal_data: index datasets that still hold personal data after masking
        (``pii=True``). Default False.
    :param index_capacity_units: when creating: the index's capacity units. Default 1.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cleared_for: str,
        datasets: Sequence[GovernedDataset],
        application_id: str | None = None,
        index_id: str | None = None,
        identity_center_instance_arn: str | None = None,
        display_name: str = "ai-factory",
        sync_schedule: str | None = DEFAULT_SYNC_SCHEDULE,
        allow_personal_data: bool = False,
        index_capacity_units: int = 1,
    ) -> None:
        super().__init__(scope, construct_id)
        self._label = f"QBusinessConnector {self.node.path}"
        if cleared_for not in CLEARANCE_LEVELS:
            raise self._fail("cleared_for", f"{cleared_for!r} is not one of {', '.join(CLEARANCE_LEVELS)}")
        self.cleared_for = cleared_for
        if not isinstance(display_name, str) or not re.fullmatch(
            r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,899}", display_name
        ):
            raise self._fail("display_name", f"{display_name!r}: use letters, digits, '-' and '_'")
        if sync_schedule is not None and not (isinstance(sync_schedule, str) and _CRON.match(sync_schedule)):
            raise self._fail(
                "sync_schedule",
                f"{sync_schedule!r} is not a six-field cron expression such as {DEFAULT_SYNC_SCHEDULE!r} "
                "(or None for on-demand syncs)",
            )
        self.sync_schedule = sync_schedule
        self.datasets = self._check_datasets(datasets, allow_personal_data)

        stack = Stack.of(self)
        self.application: qbusiness.CfnApplication | None = None
        self.index: qbusiness.CfnIndex | None = None
        self.retriever: qbusiness.CfnRetriever | None = None
        self.key: kms.Key | None = None
        self.index_fields: cdk.CustomResource | None = None
        self.index_fields_role: iam.Role | None = None
        if application_id is None and index_id is None:
            self.application_id, self.index_id = self._create_application(
                display_name, identity_center_instance_arn, index_capacity_units
            )
        else:
            self.application_id = self._check_id("application_id", application_id)
            self.index_id = self._check_id("index_id", index_id)
            if identity_center_instance_arn is not None:
                raise self._fail(
                    "identity_center_instance_arn",
                    "only for a created application; an existing one keeps its identity configuration",
                )
        self.application_arn = stack.format_arn(
            service="qbusiness", resource="application", resource_name=self.application_id
        )
        self.index_arn = stack.format_arn(
            service="qbusiness",
            resource="application",
            resource_name=f"{self.application_id}/index/{self.index_id}",
        )
        if self.index is None:  # an existing index: add the attribute fields it lacks
            self.index_fields = self._ensure_index_fields()

        self.data_sources: dict[str, qbusiness.CfnDataSource] = {}
        self.roles: dict[str, iam.Role] = {}
        for dataset in self.datasets:
            self._connect(dataset, display_name)

    # ------------------------------------------------------------------------------------------ API

    def data_source_configuration(self, dataset: GovernedDataset) -> dict[str, Any]:
        """The S3 connector configuration (Q Business ``S3`` schema) of ``dataset``'s data source."""
        return {
            "type": "S3",
            "syncMode": "FULL_CRAWL",
            "connectionConfiguration": {
                "repositoryEndpointMetadata": {"BucketName": dataset.foundation.curated_bucket.bucket_name}
            },
            # The S3 connector's own fields are not mapped; the factory's attributes come from the inline
            # enrichment below, so nothing in the bucket can set them.
            "repositoryConfigurations": {"document": {"fieldMappings": []}},
            "additionalProperties": {
                "inclusionPrefixes": [dataset.s3_prefix],
                "exclusionPrefixes": [],
                "inclusionPatterns": [],
                "exclusionPatterns": [],
                "maxFileSizeInMegaBytes": "50",
            },
        }

    # ------------------------------------------------------------------------------------ resources

    def _create_application(
        self, display_name: str, identity_center_instance_arn: str | None, capacity_units: int
    ) -> tuple[str, str]:
        if not identity_center_instance_arn:
            raise self._fail(
                "identity_center_instance_arn",
                "creating an application needs the IAM Identity Center instance its users sign in through "
                "(or pass application_id and index_id of an existing application)",
            )
        if not isinstance(capacity_units, int) or capacity_units < 1:
            raise self._fail("index_capacity_units", f"must be a positive integer, got {capacity_units!r}")
        self.key = kms.Key(
            self,
            "Key",
            enable_key_rotation=True,
            description=f"AI Factory Amazon Q Business application {display_name}",
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.application = qbusiness.CfnApplication(
            self,
            "Application",
            display_name=display_name,
            description="AI Factory: answers from governed, masked datasets",
            identity_center_instance_arn=identity_center_instance_arn,
            encryption_configuration=qbusiness.CfnApplication.EncryptionConfigurationProperty(
                kms_key_id=self.key.key_id
            ),
            # Files users upload into chat would bypass the governed datasets' classification.
            attachments_configuration=qbusiness.CfnApplication.AttachmentsConfigurationProperty(
                attachments_control_mode="DISABLED"
            ),
            q_apps_configuration=qbusiness.CfnApplication.QAppsConfigurationProperty(
                q_apps_control_mode="DISABLED"
            ),
        )
        self.index = qbusiness.CfnIndex(
            self,
            "Index",
            application_id=self.application.attr_application_id,
            display_name=display_name,
            type="ENTERPRISE",
            capacity_configuration=qbusiness.CfnIndex.IndexCapacityConfigurationProperty(
                units=capacity_units
            ),
            document_attribute_configurations=[
                qbusiness.CfnIndex.DocumentAttributeConfigurationProperty(**field) for field in INDEX_FIELDS
            ],
        )
        self.retriever = qbusiness.CfnRetriever(
            self,
            "Retriever",
            application_id=self.application.attr_application_id,
            display_name=display_name,
            type="NATIVE_INDEX",
            configuration=qbusiness.CfnRetriever.RetrieverConfigurationProperty(
                native_index_configuration=qbusiness.CfnRetriever.NativeIndexConfigurationProperty(
                    index_id=self.index.attr_index_id
                )
            ),
        )
        return self.application.attr_application_id, self.index.attr_index_id

    def _ensure_index_fields(self) -> cdk.CustomResource:
        """The custom resource that adds the missing attribute fields to the existing index, and its
        handler: ``qbusiness:GetIndex``/``UpdateIndex`` on exactly this index, logs encrypted and kept."""
        scope = Construct(self, "IndexFields")
        key = logs_kms_key(
            scope, "LogsKey", "AI Factory: logs of the Q Business index-fields custom resource"
        )
        log_group = function_log_group(scope, "HandlerLogs", key=key, retention=logs.RetentionDays.ONE_YEAR)
        role = iam.Role(
            scope,
            "HandlerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="AI Factory: adds the aif_* document attribute fields to the Q Business index",
            inline_policies={
                "AddIndexFields": iam.PolicyDocument(
                    statements=[
                        write_own_logs_statement(log_group),
                        iam.PolicyStatement(
                            sid="ReadAndUpdateThisIndex",
                            actions=["qbusiness:GetIndex", "qbusiness:UpdateIndex"],
                            resources=[self.index_arn],
                        ),
                    ]
                )
            },
        )
        code = stage_index_fields_asset()
        handler = hardened_function(
            scope,
            "Handler",
            description="AI Factory: aif_* fields on an existing Q Business index (custom resource)",
            handler=index_fields_runtime.HANDLER,
            code=lambda_.Code.from_asset(str(code)),
            role=role,
            # It may wait for a busy index (index_fields_runtime.WAIT_S) before and after the update.
            timeout=Duration.seconds(840),
            memory_size=256,
            log_group=log_group,
            tracing=False,  # a deployment-time handler; its log lines say enough
        )
        acknowledge_custom_resource_handler(
            handler, what="adds the missing aif_* attribute fields to an existing Q Business index"
        )
        provider = secure_provider(
            scope,
            handler,
            key=key,
            role_description="AI Factory: custom-resource framework of the Q Business index fields",
            handler_noun="the index-fields handler",
        )
        self.index_fields_role = role
        return cdk.CustomResource(
            scope,
            "Resource",
            service_token=provider.service_token,
            resource_type=INDEX_FIELDS_RESOURCE_TYPE,
            properties={
                index_fields_runtime.APPLICATION_ID: self.application_id,
                index_fields_runtime.INDEX_ID: self.index_id,
                index_fields_runtime.FIELDS: json.dumps(list(INDEX_FIELDS)),
            },
        )

    def _connect(self, dataset: GovernedDataset, display_name: str) -> None:
        name = dataset.qualified_name
        suffix = "".join(part.capitalize() for part in re.split(r"[._]", name))
        role = self._role(dataset, suffix)
        attributes = {
            ATTRIBUTE_CLASSIFICATION: dataset.classification,
            ATTRIBUTE_DOMAIN: dataset.domain,
            ATTRIBUTE_DATASET: name,
        }
        source = qbusiness.CfnDataSource(
            self,
            f"DataSource{suffix}",
            application_id=self.application_id,
            index_id=self.index_id,
            display_name=f"{display_name}-{name.replace('.', '-')}"[:1000],
            description=f"AI Factory: curated, masked zone of {name} ({dataset.classification})",
            configuration=self.data_source_configuration(dataset),
            role_arn=role.role_arn,
            sync_schedule=self.sync_schedule,
            document_enrichment_configuration=qbusiness.CfnDataSource.DocumentEnrichmentConfigurationProperty(
                inline_configurations=[
                    qbusiness.CfnDataSource.InlineDocumentEnrichmentConfigurationProperty(
                        target=qbusiness.CfnDataSource.DocumentAttributeTargetProperty(
                            key=key,
                            value=qbusiness.CfnDataSource.DocumentAttributeValueProperty(string_value=value),
                        )
                    )
                    for key, value in attributes.items()
                ]
            ),
            tags=[
                cdk.CfnTag(key="Classification", value=dataset.classification),
                cdk.CfnTag(key="Dataset", value=name),
            ],
        )
        # The role's policy must exist before Q Business validates the role.
        source.node.add_dependency(role)
        if self.retriever is not None:
            source.node.add_dependency(self.retriever)
        if self.index_fields is not None:  # the fields before the first sync sets the attributes
            source.node.add_dependency(self.index_fields)
        self.data_sources[name] = source
        self.roles[name] = role

    def _role(self, dataset: GovernedDataset, suffix: str) -> iam.Role:
        stack = Stack.of(self)
        bucket = dataset.foundation.curated_bucket
        prefix = dataset.s3_prefix
        same_account = {"StringEquals": {"aws:ResourceAccount": Aws.ACCOUNT_ID}}
        statements = [
            iam.PolicyStatement(
                sid="ListDatasetPrefix",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}, **same_account},
            ),
            iam.PolicyStatement(
                sid="ReadDatasetPrefix",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{prefix}*")],
                conditions=same_account,
            ),
            iam.PolicyStatement(
                sid="IngestIntoThisIndex",
                actions=["qbusiness:BatchPutDocument", "qbusiness:BatchDeleteDocument"],
                resources=[self.index_arn],
            ),
            iam.PolicyStatement(
                sid="PrincipalStoreOfThisApplication",
                actions=_PRINCIPAL_STORE_ACTIONS,
                resources=[self.application_arn, self.index_arn],
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
        role = iam.Role(
            self,
            f"Role{suffix}",
            assumed_by=iam.ServicePrincipal(
                "qbusiness.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnEquals": {"aws:SourceArn": self.application_arn},
                },
            ),
            description=f"AI Factory: Amazon Q Business reads the curated zone of {dataset.qualified_name}",
            inline_policies={"DataSource": iam.PolicyDocument(statements=statements)},
        )
        cdk.Validations.of(role).acknowledge(
            cdk.Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{_nag_arn_ref(bucket, stack)}/{prefix}*]",
                reason=(
                    f"Amazon Q Business reads every object under the governed dataset's curated prefix "
                    f"'{prefix}' (object keys are not known at deploy time) and nothing else in the bucket."
                ),
            )
        )
        return role

    # ------------------------------------------------------------------------------------ validation

    def _check_datasets(self, datasets: Any, allow_personal_data: bool) -> tuple[GovernedDataset, ...]:
        if isinstance(datasets, GovernedDataset) or not isinstance(datasets, Sequence) or not datasets:
            raise self._fail("datasets", "must be a non-empty list of GovernedDataset")
        seen: set[str] = set()
        for i, dataset in enumerate(datasets):
            field = f"datasets[{i}]"
            if not isinstance(dataset, GovernedDataset):
                raise self._fail(field, f"must be a GovernedDataset (curated, masked data), got {dataset!r}")
            name = dataset.qualified_name
            if name in seen:
                raise self._fail(field, f"dataset {name} is listed twice")
            seen.add(name)
            if not cleared_for(self.cleared_for, dataset.classification):
                raise self._fail(
                    field,
                    f"dataset {name} is classified {dataset.classification!r}, above the application's "
                    f"clearance {self.cleared_for!r}: every user of the application could read it",
                )
            if dataset.pii and not allow_personal_data:
                raise self._fail(
                    field,
                    f"dataset {name} still holds personal data after masking (pii=True); pass "
                    "allow_personal_data=True only if every user of the application may read it",
                )
        return tuple(datasets)

    def _check_id(self, field: str, value: Any) -> str:
        if value is None:
            other = "index_id" if field == "application_id" else "application_id"
            raise self._fail(
                field, f"is required with {other} (give both, or neither to create an application)"
            )
        if not isinstance(value, str) or (not Token.is_unresolved(value) and not _RESOURCE_ID.match(value)):
            raise self._fail(field, f"{value!r} is not an Amazon Q Business ID (36 letters, digits, hyphens)")
        return value

    def _fail(self, field: str, why: str) -> QBusinessError:
        return QBusinessError(f"{self._label}: {field}: {why}")


def stage_index_fields_asset(out_root: Path | None = None) -> Path:
    """The index-fields handler's asset: the ``aif_connector`` package (its entry point
    ``aif_connector.q_business_index.on_event``) and the runtime contract, in a content-addressed folder."""
    return stage_asset(
        "qbusiness-index-fields-",
        {"aif_connector": connector_source_dir(), "aif_gateway": contract_files()},
        out_root=out_root,
    )
