"""Governed data: a Lake Formation data lake (``DataLake``) and the datasets in it (``GovernedDataset``).

``DataLake`` is the foundation the platform deploys once per account and region:

* Lake Formation data-lake settings that **add** the CDK CloudFormation execution role (and any other
  admins given) to the data-lake admins (``MutationType: APPEND``; ``REPLACE`` would remove the admins
  someone else configured);
* the LF-tags ``classification`` (public, internal, confidential, restricted), ``pii`` (yes, no) and
  ``domain`` (one value per data domain);
* the raw, curated and quarantine buckets (one customer-managed KMS key, access logs, TLS only,
  versioned, retained), each registered with Lake Formation through its own least-privilege data-access
  role (not the account-wide service-linked role, which every registered location shares);
* one Glue database per domain, tagged ``domain=<domain>``, whose new tables get no
  ``IAMAllowedPrincipals`` grant (``CreateTableDefaultPermissions: []``): Lake Formation decides.

``GovernedDataset`` is a Glue table over curated JSON-lines data, LF-tagged with its classification,
PII flag and domain. ``dataset.grant_read(feature_or_role)`` grants ``SELECT`` and ``DESCRIBE`` through
an LF-tag expression (``CfnPrincipalPermissions``), after the tags and their associations exist.

Example::

    lake = DataLake(self, "Lake", domains=["support", "knowledge"])
    tickets = GovernedDataset(self, "Tickets", foundation=lake, name="tickets", domain="support",
        classification="internal", pii=False,
        columns={"ticket_id": "string", "subject": "string", "body": "string"},
        partition_keys={"ingest_date": "string"})
    tickets.grant_read(reporting_role)

Why this module is longer than ~400 lines: ``DataLake`` and ``GovernedDataset`` share the LF-tag
vocabulary, the admin and grant rules and the reader protocol; keeping them together keeps the Lake
Formation permission model in one place to review.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast, runtime_checkable

import aws_cdk as cdk
from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lakeformation as lf
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ai_factory.platform.name_prefix import name_prefix as factory_name_prefix
from ai_factory.platform.name_prefix import snake
from ai_factory.platform.secure_defaults import (
    access_log_bucket,
    encrypted_bucket,
    send_access_logs,
    via_services,
)
from aif_gateway.contract import CLEARANCE_LEVELS

CLASSIFICATIONS = CLEARANCE_LEVELS
"""Data classifications, least to most sensitive (the scale of ``AiFeature.clearance``, from the contract)."""
PII_VALUES = ("yes", "no")
DEFAULT_DOMAINS = ("support", "knowledge", "sales")
ZONES = ("raw", "curated", "quarantine")


@runtime_checkable
class DatasetReader(Protocol):
    """What ``GovernedDataset.grant_read`` needs from a consumer that is not a bare role (``AiFeature``):
    its team and name, the role its callers use, and a clearance check. Governance depends only on this
    shape, so features import governance and never the other way round."""

    team: str
    feature: str

    @property
    def data_role(self) -> iam.IRole | None: ...

    def check_clearance(self, dataset: GovernedDataset) -> None: ...


# The lake's LF-tags by role. Their keys in Lake Formation start with the factory's name prefix
# (``DataLake.tag_key``): LF-tag keys are account-wide, and ``classification`` or ``domain`` are likely
# to exist already in an account's own tag ontology.
TAG_CLASSIFICATION = "classification"
TAG_PII = "pii"
TAG_DOMAIN = "domain"

READ_PERMISSIONS = ("SELECT", "DESCRIBE")
_GET_DATA_ACCESS_MARKER = "AiFactoryLakeFormationGetDataAccess"
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
GLUE_SCALAR_TYPES = frozenset(
    {"string", "boolean", "tinyint", "smallint", "int", "bigint", "float", "double", "date", "timestamp",
     "binary"}
)  # fmt: skip
GLUE_TYPE = re.compile(r"^(decimal\(\d{1,2}(,\d{1,2})?\)|(varchar|char)\(\d+\)|(array|map|struct)<.+>)$")

# JSON lines: what the data connector writes (one record per line, masked) and what Athena, Glue and
# Bedrock Knowledge Bases read without a conversion step.
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"
TEXT_INPUT_FORMAT = "org.apache.hadoop.mapred.TextInputFormat"
TEXT_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"


_NO_REPLICATION_REASON = (
    "Enterprise data stays in the lake's region unless the data owners decide otherwise: cross-region "
    "replication is a data-residency decision (and needs a second-region key and bucket), not a default. "
    "Durability comes from S3 itself, versioning and retention on delete; the curated and quarantine "
    "zones are rebuilt from raw by the connector, and raw from the source systems."
)


class GovernanceError(ValueError):
    """An invalid ``DataLake`` or ``GovernedDataset`` configuration, or a grant that must not happen.
    The message names the construct and the field."""


def classification_rank(value: str) -> int:
    """Position of ``value`` on the sensitivity scale (``public`` = 0 ... ``restricted`` = 3)."""
    return CLASSIFICATIONS.index(value)


class DataLake(Construct):
    """The governed data lake: Lake Formation admins and LF-tags, the three zones, a database per domain.

    :param domains: data domains (``^[a-z][a-z0-9_]{0,63}$``): the ``domain`` LF-tag's values and one
        Glue database each. Default: ``DEFAULT_DOMAINS``.
    :param admin_arns: IAM role or user ARNs to add as data-lake admins besides the CDK CloudFormation
        execution role (never grant data to them: admins already see everything).
    :param cdk_execution_role_arn: the role CloudFormation deploys with. Default: the stack
        synthesizer's (``DefaultStackSynthesizer``: the bootstrap ``cdk-...-cfn-exec-role``). It must be
        an admin, or CloudFormation cannot create LF-tags, associations and grants.
    :param database_prefix: Glue database name prefix; the database of domain ``d`` is ``prefix + d``.
        Default: the factory's name prefix with underscores, e.g. ``ai_factory_``.
    :param name_prefix: start of the LF-tag keys (``<prefix>-classification``, ...) and the default
        database prefix. Default: the factory's (``ai_factory.platform.name_prefix``).
    :param access_log_expiry_days: days S3 access logs are kept.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domains: Sequence[str] = DEFAULT_DOMAINS,
        admin_arns: Sequence[str] = (),
        cdk_execution_role_arn: str | None = None,
        database_prefix: str | None = None,
        access_log_expiry_days: int = 365,
        name_prefix: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._label = f"DataLake {self.node.path}"
        self.domains: tuple[str, ...] = self._validate_domains(domains)
        self.name_prefix: str = factory_name_prefix(self, name_prefix)
        if database_prefix is None:
            database_prefix = f"{snake(self.name_prefix)}_"
        if not IDENTIFIER.match(database_prefix + self.domains[0]):
            raise GovernanceError(f"{self._label}: database_prefix: {database_prefix!r} is not valid")
        stack = cdk.Stack.of(self)
        self.catalog_id: str = stack.account

        # ---------------------------------------------------------------- admins (append, never replace)
        exec_role = cdk_execution_role_arn or _synthesizer_execution_role(stack)
        if exec_role is None:
            raise GovernanceError(
                f"{self._label}: cdk_execution_role_arn: the stack's synthesizer names no CloudFormation "
                "execution role; pass the ARN of the role CloudFormation deploys with"
            )
        self.admin_arns: tuple[str, ...] = (exec_role, *admin_arns)
        self.settings = lf.CfnDataLakeSettings(
            self,
            "Settings",
            admins=[
                lf.CfnDataLakeSettings.DataLakePrincipalProperty(data_lake_principal_identifier=a)
                for a in self.admin_arns
            ],
            mutation_type="APPEND",
        )

        # ----------------------------------------------------------------------------------- LF-tags
        self.tags: dict[str, lf.CfnTag] = {}
        """The LF-tags by role (``TAG_CLASSIFICATION``, ...); their keys are ``tag_key(role)``."""
        for key, values in (
            (TAG_CLASSIFICATION, CLASSIFICATIONS),
            (TAG_PII, PII_VALUES),
            (TAG_DOMAIN, self.domains),
        ):
            tag = lf.CfnTag(
                self,
                f"Tag-{key}",
                catalog_id=self.catalog_id,
                tag_key=self.tag_key(key),
                tag_values=list(values),
            )
            tag.node.add_dependency(self.settings)  # created by an admin
            self.tags[key] = tag

        # ------------------------------------------------------------------------------------- zones
        self.key = kms.Key(
            self,
            "Key",
            description="AI Factory data lake: raw, curated and quarantine zones",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.access_logs = access_log_bucket(
            self,
            "AccessLogs",
            expiry_days=access_log_expiry_days,
            reason="Holds the S3 server access logs of the data lake's raw, curated and quarantine buckets.",
        )
        self.buckets: dict[str, s3.Bucket] = {}
        self.data_access_roles: dict[str, iam.Role] = {}
        self.locations: dict[str, lf.CfnResource] = {}
        for zone in ZONES:
            bucket = encrypted_bucket(self, f"{zone.capitalize()}Bucket", key=self.key)
            send_access_logs(bucket, self.access_logs, prefix=f"{zone}/", sid=f"S3ServerAccessLogsFrom{zone}")
            cdk.Validations.of(bucket).acknowledge(
                cdk.Acknowledgment(
                    id="NIST.800.53.R5-S3BucketReplicationEnabled", reason=_NO_REPLICATION_REASON
                )
            )
            self.buckets[zone] = bucket
            self._register(zone, bucket)
        self.raw_bucket = self.buckets["raw"]
        self.curated_bucket = self.buckets["curated"]
        self.quarantine_bucket = self.buckets["quarantine"]

        # --------------------------------------------------------------------------------- databases
        self.databases: dict[str, glue.CfnDatabase] = {}
        self.database_tags: dict[str, lf.CfnTagAssociation] = {}
        for domain in self.domains:
            self._database(domain, database_prefix + domain)

    # ------------------------------------------------------------------------------------------ API

    def tag_key(self, role: str) -> str:
        """The LF-tag key in Lake Formation of the tag ``role``: ``TAG_DOMAIN`` -> ``ai-factory-domain``."""
        return f"{self.name_prefix}-{role}"

    def database_name(self, domain: str) -> str:
        """The Glue database name of ``domain``."""
        return self.database(domain).ref

    def database(self, domain: str) -> glue.CfnDatabase:
        """The Glue database of ``domain`` (raises ``GovernanceError`` for an unknown domain)."""
        database = self.databases.get(domain)
        if database is None:
            known = ", ".join(self.domains)
            raise GovernanceError(
                f"{self._label}: domain {domain!r} is not one of the lake's domains ({known})"
            )
        return database

    def is_admin(self, principal_arn: str) -> bool:
        """Whether ``principal_arn`` is one of the admins this lake adds (compared after resolution)."""
        stack = cdk.Stack.of(self)
        wanted = _canonical(stack, principal_arn)
        return any(_canonical(stack, a) == wanted for a in self.admin_arns)

    # ------------------------------------------------------------------------------------ internals

    def _register(self, zone: str, bucket: s3.Bucket) -> None:
        """Register ``bucket`` with Lake Formation through a role that can use only it and its key."""
        role = iam.Role(
            self,
            f"{zone.capitalize()}DataAccessRole",
            assumed_by=iam.ServicePrincipal(
                "lakeformation.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            description=f"AI Factory data lake: Lake Formation reads and writes the {zone} zone",
            inline_policies={
                "ZoneData": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="ListZone", actions=["s3:ListBucket"], resources=[bucket.bucket_arn]
                        ),
                        iam.PolicyStatement(
                            sid="ReadWriteZoneObjects",
                            actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                            resources=[bucket.arn_for_objects("*")],
                        ),
                        iam.PolicyStatement(
                            sid="UseLakeKeyThroughS3",
                            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                            resources=[self.key.key_arn],
                            conditions=via_services("s3"),
                        ),
                    ]
                )
            },
        )
        bucket_ref = cdk.Stack.of(self).get_logical_id(bucket.node.default_child)  # type: ignore[arg-type]
        cdk.Validations.of(role).acknowledge(
            cdk.Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{bucket_ref}.Arn>/*]",
                reason=(
                    f"Lake Formation vends credentials for any object of the registered {zone} zone; the "
                    "grant names that one bucket, and Lake Formation permissions decide who gets them."
                ),
            )
        )
        location = lf.CfnResource(
            self,
            f"{zone.capitalize()}Location",
            resource_arn=bucket.bucket_arn,
            role_arn=role.role_arn,
            use_service_linked_role=False,
            hybrid_access_enabled=False,
        )
        location.node.add_dependency(self.settings)
        self.data_access_roles[zone] = role
        self.locations[zone] = location

    def _database(self, domain: str, name: str) -> None:
        database = glue.CfnDatabase(
            self,
            f"Database-{domain}",
            catalog_id=self.catalog_id,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=name,
                description=f"AI Factory governed data, domain {domain} (access decided by Lake Formation)",
                location_uri=self.curated_bucket.s3_url_for_object(f"{domain}/"),
                # No IAMAllowedPrincipals grant on new tables: only Lake Formation grants give access.
                create_table_default_permissions=[],
            ),
        )
        database.node.add_dependency(self.settings)
        association = lf.CfnTagAssociation(
            self,
            f"DatabaseTags-{domain}",
            resource=lf.CfnTagAssociation.ResourceProperty(
                database=lf.CfnTagAssociation.DatabaseResourceProperty(catalog_id=self.catalog_id, name=name)
            ),
            lf_tags=[
                lf.CfnTagAssociation.LFTagPairProperty(
                    catalog_id=self.catalog_id, tag_key=self.tag_key(TAG_DOMAIN), tag_values=[domain]
                )
            ],
        )
        association.node.add_dependency(self.tags[TAG_DOMAIN], database)
        self.databases[domain] = database
        self.database_tags[domain] = association

    def _validate_domains(self, domains: Sequence[str]) -> tuple[str, ...]:
        if isinstance(domains, str) or not domains:
            raise GovernanceError(f"{self._label}: domains: must be a non-empty list, e.g. ['support']")
        for domain in domains:
            if not isinstance(domain, str) or not IDENTIFIER.match(domain):
                raise GovernanceError(
                    f"{self._label}: domains: {domain!r} is not valid: use 1-64 lowercase letters, digits "
                    "and underscores, starting with a letter (it becomes a Glue database name)"
                )
        if len(set(domains)) != len(domains):
            raise GovernanceError(f"{self._label}: domains: lists a domain twice: {list(domains)!r}")
        return tuple(domains)


class GovernedDataset(Construct):
    """A Glue table over curated JSON-lines data, LF-tagged with classification, PII flag and domain.

    :param foundation: the ``DataLake``.
    :param name: table name, ``^[a-z][a-z0-9_]{0,63}$``, unique in its domain.
    :param domain: one of the lake's domains (the table lives in that domain's database).
    :param classification: ``public``, ``internal``, ``confidential`` or ``restricted``. A feature may
        read the dataset only with at least this clearance.
    :param pii: whether records still hold personal data after the connector's masking (LF-tag ``pii``).
    :param columns: column name to Glue type (``string``, ``bigint``, ``timestamp``, ``array<string>``...).
    :param partition_keys: partition column name to Glue type (the connector registers partitions).
    :param s3_prefix: where the data lives in the curated bucket. Default ``<domain>/<name>/``.
    :param description: what the data is, for the catalog.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        foundation: DataLake,
        name: str,
        domain: str,
        classification: str,
        pii: bool,
        columns: Mapping[str, str],
        partition_keys: Mapping[str, str] | None = None,
        s3_prefix: str | None = None,
        description: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self._label = f"GovernedDataset {domain}.{name}"
        if not isinstance(name, str) or not IDENTIFIER.match(name):
            raise self._fail(
                "name", f"{name!r} is not valid: use 1-64 lowercase letters, digits and underscores"
            )
        if domain not in foundation.domains:
            raise self._fail(
                "domain", f"{domain!r} is not one of the lake's domains ({', '.join(foundation.domains)})"
            )
        if classification not in CLASSIFICATIONS:
            raise self._fail(
                "classification", f"{classification!r} is not one of {', '.join(CLASSIFICATIONS)}"
            )
        if not isinstance(pii, bool):
            raise self._fail("pii", f"must be True or False, got {pii!r}")
        self.foundation = foundation
        self.name = name
        self.domain = domain
        self.classification = classification
        self.pii = pii
        self.columns: dict[str, str] = self._validate_columns("columns", columns, required=True)
        self.partition_keys: dict[str, str] = self._validate_columns("partition_keys", partition_keys or {})
        clash = set(self.columns) & set(self.partition_keys)
        if clash:
            raise self._fail("partition_keys", f"{sorted(clash)} are also columns")
        self.s3_prefix = self._validate_prefix(s3_prefix if s3_prefix is not None else f"{domain}/{name}/")
        self.database_name: str = foundation.database_name(domain)
        self.location = foundation.curated_bucket.s3_url_for_object(self.s3_prefix)

        self.table = glue.CfnTable(
            self,
            "Table",
            catalog_id=foundation.catalog_id,
            database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=name,
                description=description or f"AI Factory governed dataset {domain}.{name} ({classification})",
                table_type="EXTERNAL_TABLE",
                parameters={
                    "classification": "json",
                    "aif:classification": classification,
                    "aif:pii": self.pii_tag,
                },
                partition_keys=[
                    glue.CfnTable.ColumnProperty(name=k, type=t) for k, t in self.partition_keys.items()
                ],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=[glue.CfnTable.ColumnProperty(name=k, type=t) for k, t in self.columns.items()],
                    location=self.location,
                    input_format=TEXT_INPUT_FORMAT,
                    output_format=TEXT_OUTPUT_FORMAT,
                    compressed=False,
                    serde_info=glue.CfnTable.SerdeInfoProperty(serialization_library=JSON_SERDE),
                ),
            ),
        )
        self.table.node.add_dependency(foundation.database(domain))
        self.tag_association = lf.CfnTagAssociation(
            self,
            "Tags",
            resource=lf.CfnTagAssociation.ResourceProperty(
                table=lf.CfnTagAssociation.TableResourceProperty(
                    catalog_id=foundation.catalog_id, database_name=self.database_name, name=name
                )
            ),
            lf_tags=[
                lf.CfnTagAssociation.LFTagPairProperty(
                    catalog_id=foundation.catalog_id, tag_key=foundation.tag_key(k), tag_values=[v]
                )
                for k, v in self.lf_tags.items()
            ],
        )
        # Tags must exist before they are associated; the table before it is tagged.
        self.tag_association.node.add_dependency(*(foundation.tags[k] for k in self.lf_tags), self.table)

    # ------------------------------------------------------------------------------------------ API

    @property
    def qualified_name(self) -> str:
        """``<domain>.<name>``."""
        return f"{self.domain}.{self.name}"

    @property
    def pii_tag(self) -> str:
        """The ``pii`` LF-tag value: ``yes`` or ``no``."""
        return "yes" if self.pii else "no"

    @property
    def lf_tags(self) -> dict[str, str]:
        """The LF-tags on the table by role (their keys in Lake Formation: ``foundation.tag_key(role)``)."""
        return {TAG_CLASSIFICATION: self.classification, TAG_PII: self.pii_tag, TAG_DOMAIN: self.domain}

    @property
    def table_arn(self) -> str:
        stack = cdk.Stack.of(self)
        return stack.format_arn(
            service="glue", resource="table", resource_name=f"{self.database_name}/{self.name}"
        )

    def grant_read(self, grantee: DatasetReader | iam.IRole) -> lf.CfnPrincipalPermissions:
        """Let ``grantee`` read this dataset: Lake Formation ``SELECT`` and ``DESCRIBE`` on tables tagged
        ``classification=<this dataset's>`` and ``domain=<this dataset's>``, plus the IAM actions Lake
        Formation needs beside it (``lakeformation:GetDataAccess``, Glue catalog reads).

        An ``AiFeature`` is granted through its caller role (``AiFeature.data_role``) after its clearance
        is checked. The grant is created next to the grantee (its stack deploys after the lake's) and
        depends on the LF-tags and the table's tag association. Note that an LF-tag grant covers every
        table with the same tags: tags, not table names, are the unit of access.

        Raises ``GovernanceError`` for a data-lake admin (admins see everything; a grant would only hide
        that), ``AiFeatureError`` for a feature whose clearance is below the classification.
        """
        role, scope = self._grantee_role(grantee)
        if self.foundation.is_admin(role.role_arn):
            raise self._fail(
                "grant_read", f"{role.role_arn} is a data-lake admin; never grant data to admins"
            )
        stack = cdk.Stack.of(scope)
        grant_id = f"LakeFormationRead-{self.classification}-{self.domain}"
        existing = scope.node.try_find_child(grant_id)
        if isinstance(existing, lf.CfnPrincipalPermissions):
            # One LF-tag grant per (principal, expression): a second one would collide in Lake Formation.
            existing.node.add_dependency(self.tag_association)
            self._grant_iam(role, stack)
            return existing
        grant = lf.CfnPrincipalPermissions(
            scope,
            grant_id,
            principal=lf.CfnPrincipalPermissions.DataLakePrincipalProperty(
                data_lake_principal_identifier=role.role_arn
            ),
            resource=lf.CfnPrincipalPermissions.ResourceProperty(
                lf_tag_policy=lf.CfnPrincipalPermissions.LFTagPolicyResourceProperty(
                    catalog_id=stack.account,
                    resource_type="TABLE",
                    expression=[
                        lf.CfnPrincipalPermissions.LFTagProperty(
                            tag_key=self.foundation.tag_key(TAG_CLASSIFICATION),
                            tag_values=[self.classification],
                        ),
                        lf.CfnPrincipalPermissions.LFTagProperty(
                            tag_key=self.foundation.tag_key(TAG_DOMAIN), tag_values=[self.domain]
                        ),
                    ],
                )
            ),
            permissions=list(READ_PERMISSIONS),
            permissions_with_grant_option=[],
        )
        # Across stacks CDK turns these into a stack dependency (the lake's stack deploys first).
        grant.node.add_dependency(
            self.foundation.tags[TAG_CLASSIFICATION], self.foundation.tags[TAG_DOMAIN], self.tag_association
        )
        self._grant_iam(role, stack)
        return grant

    # ------------------------------------------------------------------------------------ internals

    def _grantee_role(self, grantee: Any) -> tuple[iam.IRole, Construct]:
        if isinstance(grantee, DatasetReader):
            grantee.check_clearance(self)
            if grantee.data_role is None:
                raise self._fail(
                    "grant_read",
                    f"{type(grantee).__name__} {grantee.team}/{grantee.feature} has no caller role: "
                    "give it callers",
                )
            return grantee.data_role, cast(Construct, grantee)
        # Imported roles are jsii proxies of IRole, not Role instances: recognise a role by its shape.
        if all(hasattr(grantee, a) for a in ("role_arn", "add_to_principal_policy", "node")):
            return grantee, grantee
        raise self._fail("grant_read", f"expects an AiFeature or an IAM role, got {grantee!r}")

    def _grant_iam(self, role: iam.IRole, stack: cdk.Stack) -> None:
        catalog = stack.format_arn(service="glue", resource="catalog")
        database = stack.format_arn(service="glue", resource="database", resource_name=self.database_name)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["glue:GetDatabase", "glue:GetTable", "glue:GetPartition", "glue:GetPartitions"],
                resources=[catalog, database, self.table_arn],
            )
        )
        # Once per role: the statement and its acknowledgement (a marker child remembers it).
        if role.node.try_find_child(_GET_DATA_ACCESS_MARKER) is not None:
            return
        Construct(cast(Construct, role), _GET_DATA_ACCESS_MARKER)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="LakeFormationGetDataAccess", actions=["lakeformation:GetDataAccess"], resources=["*"]
            )
        )
        policy = role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            cdk.Validations.of(policy).acknowledge(
                cdk.Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::*]",
                    reason=(
                        "lakeformation:GetDataAccess has no resource-level permissions; Lake Formation "
                        "grants (LF-tag expressions) decide which data the credentials it vends can read."
                    ),
                )
            )

    def _validate_columns(self, field: str, columns: Any, *, required: bool = False) -> dict[str, str]:
        if not isinstance(columns, Mapping) or (required and not columns):
            raise self._fail(field, "must be a mapping of column name to Glue type, e.g. {'id': 'string'}")
        for column, kind in columns.items():
            if not isinstance(column, str) or not IDENTIFIER.match(column):
                raise self._fail(
                    field, f"column {column!r} is not valid: use lowercase letters, digits, underscores"
                )
            if not isinstance(kind, str) or not (kind in GLUE_SCALAR_TYPES or GLUE_TYPE.match(kind)):
                raise self._fail(field, f"column {column!r}: {kind!r} is not a Glue type")
        return dict(columns)

    def _validate_prefix(self, prefix: Any) -> str:
        if not isinstance(prefix, str) or not re.match(r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*/$", prefix):
            raise self._fail("s3_prefix", f"{prefix!r} must be a relative key prefix ending with '/'")
        return prefix

    def _fail(self, field: str, why: str) -> GovernanceError:
        return GovernanceError(f"{self._label}: {field}: {why}")


def _synthesizer_execution_role(stack: cdk.Stack) -> str | None:
    synthesizer = stack.synthesizer
    arn = getattr(synthesizer, "cloud_formation_execution_role_arn", None)
    if not isinstance(arn, str) or not arn:
        return None
    # Unresolved environments leave ${AWS::...} placeholders in the ARN: let CloudFormation fill them in.
    return cdk.Fn.sub(arn) if "${" in arn else arn


def _canonical(stack: cdk.Stack, value: str) -> str:
    return json.dumps(stack.resolve(value), sort_keys=True)
