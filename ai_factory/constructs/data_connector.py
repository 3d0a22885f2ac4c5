"""``DataConnector``: the governed ingestion pipeline of one dataset (raw zone -> masked curated data).

Files land under the dataset's prefix in the data lake's raw bucket; an S3 ``ObjectCreated``
notification invokes the connector Lambda (``aif_connector.connector``), which validates the records,
masks PII per the dataset's policy, writes curated JSON lines under ``<partition key>=YYYY-MM-DD/``,
registers the partition in Glue, sends refused records (or whole unreadable files) to quarantine with
the reason, and writes an OpenLineage RunEvent to the lineage store. See ``docs/data-connectors.md``.

Example (in the stack that owns the lake's buckets, so the S3 notification stays in one stack)::

    tickets = GovernedDataset(self, "Tickets", foundation=lake, name="tickets", domain="support", ...)
    DataConnector(self, "TicketsConnector", dataset=tickets, masking="hash",
                  pii_columns=["customer_name"], column_masking={"account_id": "tokenize"})

What it creates: the Lambda (Python 3.14, arm64, a plain directory asset: the ``aif_connector`` package
plus ``connector_config.json``), its role (read the raw prefix; write the curated, quarantine and
lineage prefixes; the lake key only through S3; ``glue:GetTable``/``glue:BatchCreatePartition`` on
exactly the table, plus the Lake Formation ``INSERT``/``DESCRIBE`` grant on it), a dead-letter queue
for events that still fail after Lambda's retries, a KMS-encrypted log group with retention, the HMAC
key secret (modes ``hash``/``tokenize``), the token vault table and key (mode ``tokenize``), and
``metric_*``/``alarm_inputs`` hooks for the observability stack.

Why this module is longer than ~400 lines: one dataset's pipeline is one set of least-privilege
grants (S3 zones, Glue, Lake Formation, KMS, the vault) that must be read together to be reviewed; the
runtime itself lives in ``lambdas/connector/aif_connector``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aws_cdk as cdk
from aif_connector.glue_types import GlueTypeError, parse_type
from aif_connector.knowledge_sync import EVENT_SOURCE
from aif_connector.pii import COMPREHEND_LANGUAGES
from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lakeformation as lf
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from ai_factory.platform.functions import function_log_group, hardened_function, write_own_logs_statement
from ai_factory.platform.lambda_packaging import contract_files, stage_asset
from ai_factory.platform.secure_defaults import encrypted_queue, logs_kms_key, via_services
from aif_gateway import contract

if TYPE_CHECKING:
    from ai_factory.constructs.ai_feature import AlarmInput
    from ai_factory.constructs.governance import GovernedDataset

CONNECTOR_HANDLER = "aif_connector.connector.lambda_handler"
CONFIG_FILE_NAME = "connector_config.json"
MASKING_MODES = ("redact", "hash", "tokenize")
LAKE_FORMATION_PERMISSIONS = ("DESCRIBE", "INSERT")
PII_DETECTION_MODES = ("offline", "comprehend")
DEFAULT_LINEAGE_PREFIX = "lineage/"
_PREFIX = re.compile(r"^([A-Za-z0-9_.=-]+/)*$")
_PARTITION_TYPES = ("string", "date")


class DataConnectorError(ValueError):
    """An invalid ``DataConnector`` configuration; the message names the construct and the field."""


def connector_source_dir() -> Path:
    """``lambdas/connector/aif_connector`` (installed as ``aif_connector``)."""
    try:
        import aif_connector

        return Path(aif_connector.__file__).resolve().parent
    except ImportError:  # pragma: no cover - a checkout without the package installed
        return Path(__file__).resolve().parents[2] / "lambdas" / "connector" / "aif_connector"


def stage_connector_asset(config: Mapping[str, Any], out_root: Path | None = None) -> Path:
    """The ``aif_connector`` package plus ``connector_config.json`` in a content-addressed folder."""
    config_json = json.dumps(config, indent=1, sort_keys=True)
    return stage_asset(
        "connector-",
        {"aif_connector": connector_source_dir(), "aif_gateway": contract_files()},
        {f"aif_connector/{CONFIG_FILE_NAME}": config_json},
        out_root,
    )


class DataConnector(Construct):
    """The ingestion pipeline of one ``GovernedDataset`` (see the module docstring).

    :param dataset: the ``GovernedDataset`` to fill (its lake gives the raw, curated and quarantine
        buckets and the key; its partition key must be one ``string`` or ``date`` column).
    :param masking: the dataset's masking mode for PII found in string columns: ``redact``, ``hash``
        (keyed HMAC, joinable) or ``tokenize`` (reversible through the token vault and its KMS key).
    :param column_masking: per-column override, column -> ``redact``/``hash``/``tokenize``/``none``
        (``none``: the column is not scanned; not allowed for ``pii_columns``).
    :param pii_columns: columns whose whole value is personal data (masked even when no detector fires).
    :param pii_kinds: detector kinds to run (e.g. ``["EMAIL", "PHONE"]``). Default: all of them.
    :param raw_prefix: where files for this dataset land in the raw bucket. Default: the dataset's prefix.
    :param quarantine_prefix: where refused records and files go. Default: the dataset's prefix.
    :param lineage_bucket: the lineage store. Default: the lake's ``lineage_bucket`` if it has one, else
        the curated bucket (under ``lineage_prefix``, outside every table's prefix).
    :param lineage_prefix: key prefix of the lineage store. Default ``lineage/``.
    :param job_namespace: OpenLineage job namespace. Default ``ai-factory``.
    :param hmac_secret: the HMAC key secret (SecretString = the key in base64). Default: a new secret.
    :param pii_detection: ``offline`` (default: the stdlib detectors, no network) or ``comprehend``
        (the offline detectors plus Amazon Comprehend ``DetectPiiEntities`` on every scanned string:
        names, addresses and other free-text PII the offline rules miss; billed per 100 characters,
        metered as ``ComprehendUnits``/``ComprehendCostUSD``; a record Comprehend cannot check is
        quarantined, never written unchecked).
    :param comprehend_language: the language Comprehend reads the text as: ``en`` or ``es`` (the
        languages ``DetectPiiEntities`` supports). Default ``en``.
    :param announce_versions: after each run that curated records, put a ``Dataset version curated``
        event on the default EventBridge bus (the dataset, its new version, the run), which starts the
        ingestion of every ``RagFeature`` over the dataset. Default True.
    :param max_line_bytes: longest record accepted (longer ones are quarantined). Default 1 MiB.
    :param max_object_bytes: largest file processed (larger ones are quarantined whole). Default 256 MiB.
    :param memory_size: Lambda memory in MB (a file is held in memory). Default 1024.
    :param timeout: Lambda timeout. Default 5 minutes.
    :param log_retention: log retention. Default one year.
    :param encryption_key: KMS key for the logs, DLQ, secret and vault. Default: a new key.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dataset: GovernedDataset,
        masking: str = "hash",
        column_masking: Mapping[str, str] | None = None,
        pii_columns: Sequence[str] = (),
        pii_kinds: Sequence[str] | None = None,
        raw_prefix: str | None = None,
        quarantine_prefix: str | None = None,
        lineage_bucket: s3.IBucket | None = None,
        lineage_prefix: str = DEFAULT_LINEAGE_PREFIX,
        job_namespace: str = "ai-factory",
        hmac_secret: secretsmanager.ISecret | None = None,
        pii_detection: str = "offline",
        comprehend_language: str = "en",
        announce_versions: bool = True,
        max_line_bytes: int = 1_048_576,
        max_object_bytes: int = 256 * 1024 * 1024,
        memory_size: int = 1024,
        timeout: Duration | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._label = f"DataConnector {self.node.path}"
        self.dataset = dataset
        lake = dataset.foundation
        self.raw_bucket: s3.IBucket = lake.raw_bucket
        self.curated_bucket: s3.IBucket = lake.curated_bucket
        self.quarantine_bucket: s3.IBucket = lake.quarantine_bucket
        self.lineage_bucket: s3.IBucket = (
            lineage_bucket or getattr(lake, "lineage_bucket", None) or lake.curated_bucket
        )
        self.raw_prefix = self._prefix(
            "raw_prefix", raw_prefix if raw_prefix is not None else dataset.s3_prefix
        )
        self.curated_prefix = dataset.s3_prefix
        self.quarantine_prefix = self._prefix(
            "quarantine_prefix", quarantine_prefix if quarantine_prefix is not None else dataset.s3_prefix
        )
        self.lineage_prefix = self._prefix("lineage_prefix", lineage_prefix)
        if not self.lineage_prefix:
            raise self._fail("lineage_prefix", "must not be empty")
        if self.lineage_bucket is self.curated_bucket and self.lineage_prefix.startswith(self.curated_prefix):
            raise self._fail("lineage_prefix", "must be outside the dataset's curated prefix")
        self.spec = self._dataset_spec(masking, column_masking or {}, pii_columns, pii_kinds, max_line_bytes)
        if pii_detection not in PII_DETECTION_MODES:
            raise self._fail(
                "pii_detection", f"{pii_detection!r} is not one of {', '.join(PII_DETECTION_MODES)}"
            )
        if comprehend_language not in COMPREHEND_LANGUAGES:
            raise self._fail(
                "comprehend_language",
                f"{comprehend_language!r}: DetectPiiEntities reads {', '.join(COMPREHEND_LANGUAGES)} only",
            )
        self.pii_detection = pii_detection
        self.modes = sorted({m for m in self._effective_masking().values() if m != "none"})
        self.job_name = f"connector.{dataset.domain}.{dataset.name}"
        self.job_namespace = job_namespace
        stack = cdk.Stack.of(self)

        # ----------------------------------------------------------------------------- keys, logs, DLQ
        self.key = encryption_key or logs_kms_key(
            self, "Key", f"AI Factory data connector {dataset.qualified_name}"
        )
        self.log_group = function_log_group(self, "Logs", key=self.key, retention=log_retention)
        self.dead_letter_queue = encrypted_queue(
            self,
            "DeadLetterQueue",
            key=self.key,
        )
        self.hmac_secret: secretsmanager.ISecret | None = None
        if {"hash", "tokenize"} & set(self.modes):
            self.hmac_secret = hmac_secret or self._new_hmac_secret()
        self.token_vault: dynamodb.Table | None = None
        self.token_key: kms.Key | None = None
        if "tokenize" in self.modes:
            self.token_key = kms.Key(
                self,
                "TokenKey",
                description=f"AI Factory token vault of {dataset.qualified_name}: decrypt = detokenize",
                enable_key_rotation=True,
                removal_policy=RemovalPolicy.RETAIN,
            )
            self.token_vault = dynamodb.Table(
                self,
                "TokenVault",
                partition_key=dynamodb.Attribute(name="token", type=dynamodb.AttributeType.STRING),
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
                encryption_key=self.key,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                removal_policy=RemovalPolicy.RETAIN,
            )

        # ---------------------------------------------------------------------------------- function
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"AI Factory data connector of {dataset.qualified_name}",
        )
        config = {
            "dataset": self.spec,
            "domain": dataset.domain,
            "raw_prefix": self.raw_prefix,
            "curated_prefix": self.curated_prefix,
            "quarantine_prefix": self.quarantine_prefix,
            "lineage_prefix": self.lineage_prefix,
            "job_namespace": job_namespace,
            "max_object_bytes": max_object_bytes,
            "pii_detection": pii_detection,
            "comprehend_language": comprehend_language,
        }
        self.config = config  # staged as connector_config.json next to the code
        environment = {
            contract.RAW_BUCKET_ENV: self.raw_bucket.bucket_name,
            contract.CURATED_BUCKET_ENV: self.curated_bucket.bucket_name,
            contract.QUARANTINE_BUCKET_ENV: self.quarantine_bucket.bucket_name,
            contract.LINEAGE_BUCKET_ENV: self.lineage_bucket.bucket_name,
            contract.GLUE_DATABASE_ENV: dataset.database_name,
            contract.TABLE_NAMESPACE_ENV: f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}",
            contract.METRICS_NAMESPACE_ENV: contract.CONNECTOR_METRICS_NAMESPACE,
        }
        self.announce_versions = announce_versions
        if announce_versions:
            environment[contract.CONNECTOR_EVENT_BUS_ENV] = "default"
        if self.hmac_secret is not None:
            environment[contract.HMAC_SECRET_ARN_ENV] = self.hmac_secret.secret_arn
        if self.token_vault is not None and self.token_key is not None:
            environment[contract.TOKEN_VAULT_TABLE_ENV] = self.token_vault.table_name
            environment[contract.TOKEN_KEY_ARN_ENV] = self.token_key.key_arn
        self.function = hardened_function(
            self,
            "Function",
            description=f"AI Factory data connector: raw -> masked curated {dataset.qualified_name}",
            handler=CONNECTOR_HANDLER,
            code=lambda_.Code.from_asset(str(stage_connector_asset(config))),
            role=self.role,
            environment=environment,
            memory_size=memory_size,
            timeout=timeout or Duration.minutes(5),
            log_group=self.log_group,
            # Text log format: the connector writes its EMF documents to stdout itself.
            json_logs=False,
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
            retry_attempts=2,
            max_event_age=Duration.hours(6),
        )
        self._grant(stack)
        self.raw_bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.LambdaDestination(self.function),
            s3.NotificationKeyFilter(prefix=self.raw_prefix)
            if self.raw_prefix
            else s3.NotificationKeyFilter(),
        )
        self._acknowledge()

    # ------------------------------------------------------------------------------------ metrics

    def metric(
        self, metric_name: str, dimensions: Mapping[str, str] | None = None, **props: Any
    ) -> cloudwatch.Metric:
        """Any connector metric of this dataset (``aif_gateway.contract``'s ``CONNECTOR_METRICS_NAMESPACE``),
        with the ``Dataset`` dimension plus ``dimensions``. Default statistic ``Sum`` over 5 minutes."""
        return cloudwatch.Metric(
            namespace=contract.CONNECTOR_METRICS_NAMESPACE,
            metric_name=metric_name,
            dimensions_map={contract.DATASET: self.dataset.qualified_name, **(dimensions or {})},
            statistic=props.pop("statistic", "Sum"),
            period=props.pop("period", Duration.minutes(5)),
            **props,
        )

    def metric_records_in(self, **props: Any) -> cloudwatch.Metric:
        """Records read from raw files (valid or not)."""
        return self.metric(contract.RECORDS_IN.name, **props)

    def metric_records_curated(self, **props: Any) -> cloudwatch.Metric:
        """Records written to the curated zone."""
        return self.metric(contract.RECORDS_CURATED.name, **props)

    def metric_records_quarantined(self, **props: Any) -> cloudwatch.Metric:
        """Records refused (each with its reason in the quarantine bucket)."""
        return self.metric(contract.RECORDS_QUARANTINED.name, **props)

    def metric_files_quarantined(self, **props: Any) -> cloudwatch.Metric:
        """Whole files refused (wrong encoding, empty, unknown format, header mismatch, too big)."""
        return self.metric(contract.FILES_QUARANTINED.name, **props)

    def metric_pii_findings(self, kind: str, **props: Any) -> cloudwatch.Metric:
        """PII spans of ``kind`` (``EMAIL``, ``PHONE``, ``PII_COLUMN``...) masked."""
        return self.metric(contract.PII_FINDINGS.name, {contract.KIND: kind}, **props)

    def metric_failed_runs(self, **props: Any) -> cloudwatch.Metric:
        """Runs that failed (a FAIL lineage event was written; Lambda retries, then the DLQ)."""
        return self.metric(contract.RUNS_FAILED.name, **props)

    def metric_comprehend_units(self, **props: Any) -> cloudwatch.Metric:
        """Amazon Comprehend units billed (100 characters each, 3 minimum per request)."""
        return self.metric(contract.COMPREHEND_UNITS.name, **props)

    def metric_comprehend_cost(self, **props: Any) -> cloudwatch.Metric:
        """Amazon Comprehend cost in US dollars at the list price (``pii_detection="comprehend"``)."""
        return self.metric(contract.COMPREHEND_COST_USD.name, **props)

    def metric_pii_detection_failures(self, **props: Any) -> cloudwatch.Metric:
        """Records quarantined because Comprehend could not check them (throttling, errors)."""
        return self.metric(contract.PII_DETECTION_FAILURES.name, **props)

    def metric_dead_letters(self, **props: Any) -> cloudwatch.Metric:
        """Events in the dead-letter queue: files nobody processed yet."""
        return self.dead_letter_queue.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=Duration.minutes(5), **props
        )

    def alarm_inputs(self) -> list[AlarmInput]:
        """Alarms the observability stack should create: any dead letter, any failed run, any file
        quarantined whole (someone must fix the source export)."""
        from ai_factory.constructs.ai_feature import AlarmInput

        greater = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        name = self.dataset.qualified_name
        comprehend = [
            AlarmInput(f"{name}-connector-pii-detection-failures", self.metric_pii_detection_failures(), 0,
                       greater, 1, f"Data connector {name}: records quarantined because Amazon Comprehend "
                       "could not check them (re-drive them from quarantine once it answers)"),
        ] if self.pii_detection == "comprehend" else []  # fmt: skip
        return [
            *comprehend,
            AlarmInput(f"{name}-connector-dead-letters", self.metric_dead_letters(), 0, greater, 1,
                       f"Data connector {name}: events in the dead-letter queue (files not processed)"),
            AlarmInput(f"{name}-connector-failed-runs", self.metric_failed_runs(), 0, greater, 1,
                       f"Data connector {name}: runs failed (see the FAIL lineage events and the logs)"),
            AlarmInput(f"{name}-connector-files-quarantined", self.metric_files_quarantined(), 0, greater, 1,
                       f"Data connector {name}: whole files quarantined (reason next to each file)"),
        ]  # fmt: skip

    # ---------------------------------------------------------------------------------- internals

    def _prefix(self, field: str, value: Any) -> str:
        if not isinstance(value, str) or not _PREFIX.match(value):
            raise self._fail(field, f"{value!r} must be a key prefix ending with '/' (or empty)")
        return value

    def _effective_masking(self) -> dict[str, str]:
        return {c["name"]: c["masking"] or self.spec["masking"] for c in self.spec["columns"] if _is_text(c)}

    def _dataset_spec(
        self,
        masking: str,
        column_masking: Mapping[str, str],
        pii_columns: Sequence[str],
        pii_kinds: Sequence[str] | None,
        max_line_bytes: int,
    ) -> dict[str, Any]:
        dataset = self.dataset
        if masking not in MASKING_MODES:
            raise self._fail("masking", f"{masking!r} is not one of {', '.join(MASKING_MODES)}")
        if isinstance(pii_columns, str):
            raise self._fail("pii_columns", "must be a list of column names")
        if len(dataset.partition_keys) != 1:
            raise self._fail(
                "dataset",
                f"{dataset.qualified_name} needs exactly one partition key (the connector writes dates)",
            )
        ((partition_key, partition_type),) = dataset.partition_keys.items()
        if partition_type not in _PARTITION_TYPES:
            raise self._fail(
                "dataset", f"partition key {partition_key!r} must be string or date, not {partition_type}"
            )
        for column, kind in dataset.columns.items():
            try:
                parse_type(kind)
            except GlueTypeError as exc:
                raise self._fail("dataset", f"column {column!r}: {exc}") from None
        for field, names in (("column_masking", list(column_masking)), ("pii_columns", list(pii_columns))):
            unknown = [n for n in names if n not in dataset.columns]
            if unknown:
                raise self._fail(field, f"{', '.join(unknown)} not columns of {dataset.qualified_name}")
        for column, mode in column_masking.items():
            if mode not in (*MASKING_MODES, "none"):
                raise self._fail(
                    "column_masking", f"{column}: {mode!r} is not one of {MASKING_MODES} or 'none'"
                )
            if not _is_text({"type": dataset.columns[column]}):
                raise self._fail(
                    "column_masking", f"{column} holds no strings, nested or not (only text is masked)"
                )
        for column in pii_columns:
            if column_masking.get(column) == "none":
                raise self._fail("pii_columns", f"{column} is a PII column; its masking cannot be 'none'")
            if not _is_text({"type": dataset.columns[column]}):
                raise self._fail("pii_columns", f"{column} holds no strings, nested or not")
        if pii_kinds is not None:
            from aif_connector.pii import ALL_KINDS

            unknown = sorted(set(pii_kinds) - set(ALL_KINDS))
            if unknown or isinstance(pii_kinds, str):
                raise self._fail(
                    "pii_kinds", f"unknown kinds {unknown}; known: {', '.join(sorted(ALL_KINDS))}"
                )
        if not isinstance(max_line_bytes, int) or max_line_bytes < 1:
            raise self._fail("max_line_bytes", "must be a positive integer")
        return {
            "name": dataset.name,
            "database": "",  # the deploy-time name comes from AIF_GLUE_DATABASE
            "table": dataset.name,
            "columns": [
                {
                    "name": column,
                    "type": kind,
                    "required": False,
                    "pii": column in pii_columns,
                    "masking": column_masking.get(column),
                }
                for column, kind in dataset.columns.items()
            ],
            "masking": masking,
            "pii_kinds": list(pii_kinds) if pii_kinds is not None else None,
            "partition_key": partition_key,
            "classification": dataset.classification,
            "max_line_bytes": max_line_bytes,
        }

    def _new_hmac_secret(self) -> secretsmanager.Secret:
        # 44 characters from [A-Za-z0-9] are valid base64 (a multiple of 4, all in the alphabet): the
        # runtime decodes them to a 33-byte HMAC key.
        return secretsmanager.Secret(
            self,
            "HmacKey",
            description=f"AI Factory data connector {self.dataset.qualified_name}: HMAC key for masking",
            encryption_key=self.key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=44, exclude_punctuation=True, include_space=False
            ),
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _grant(self, stack: cdk.Stack) -> None:
        lake_key = self.dataset.foundation.key
        via_s3 = via_services("s3")
        policy = self.role
        policy.add_to_policy(write_own_logs_statement(self.log_group))
        policy.add_to_policy(
            iam.PolicyStatement(
                sid="ReadRawFiles",
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[self.raw_bucket.arn_for_objects(f"{self.raw_prefix}*")],
            )
        )
        writes = [
            self.curated_bucket.arn_for_objects(f"{self.curated_prefix}*"),
            self.quarantine_bucket.arn_for_objects(f"{self.quarantine_prefix}*"),
            self.lineage_bucket.arn_for_objects(f"{self.lineage_prefix}*"),
        ]
        policy.add_to_policy(
            iam.PolicyStatement(sid="WriteOutputs", actions=["s3:PutObject"], resources=writes)
        )
        keys: dict[str, kms.IKey] = {lake_key.key_arn: lake_key}
        if self.lineage_bucket.encryption_key is not None:
            keys.setdefault(self.lineage_bucket.encryption_key.key_arn, self.lineage_bucket.encryption_key)
        policy.add_to_policy(
            iam.PolicyStatement(
                sid="LakeKeyThroughS3Only",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=list(keys),
                conditions=via_s3,
            )
        )
        catalog = stack.format_arn(service="glue", resource="catalog")
        database = stack.format_arn(
            service="glue", resource="database", resource_name=self.dataset.database_name
        )
        policy.add_to_policy(
            iam.PolicyStatement(
                sid="RegisterPartitions",
                actions=["glue:GetTable", "glue:BatchCreatePartition"],
                resources=[catalog, database, self.dataset.table_arn],
            )
        )
        if self.hmac_secret is not None:
            self.hmac_secret.grant_read(self.role)
        if self.announce_versions:
            policy.add_to_policy(
                iam.PolicyStatement(
                    sid="AnnounceDatasetVersions",
                    actions=["events:PutEvents"],
                    resources=[
                        stack.format_arn(service="events", resource="event-bus", resource_name="default")
                    ],
                    conditions={"StringEquals": {"events:source": EVENT_SOURCE}},
                )
            )
        if self.pii_detection == "comprehend":
            # DetectPiiEntities has no resource-level permissions: "*" is the only resource it accepts.
            policy.add_to_policy(
                iam.PolicyStatement(
                    sid="DetectPiiWithComprehend", actions=["comprehend:DetectPiiEntities"], resources=["*"]
                )
            )
        if self.token_vault is not None and self.token_key is not None:
            policy.add_to_policy(
                iam.PolicyStatement(
                    sid="WriteTokenVault",
                    actions=["dynamodb:PutItem"],
                    resources=[self.token_vault.table_arn],
                )
            )
            policy.add_to_policy(
                iam.PolicyStatement(
                    sid="EncryptTokens",
                    actions=["kms:Encrypt"],
                    resources=[self.token_key.key_arn],
                    conditions={"StringLike": {"kms:EncryptionContext:aif:token": "*"}},
                )
            )
            policy.add_to_policy(
                iam.PolicyStatement(
                    sid="VaultTableKeyThroughDynamoDbOnly",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[self.key.key_arn],
                    conditions=via_services("dynamodb"),
                )
            )
        # Lake Formation decides catalog access (no IAMAllowedPrincipals): INSERT lets the role add
        # partitions, DESCRIBE read the table definition. A named-table grant: only this table.
        self.lake_formation_grant = lf.CfnPrincipalPermissions(
            self,
            "LakeFormationWrite",
            principal=lf.CfnPrincipalPermissions.DataLakePrincipalProperty(
                data_lake_principal_identifier=self.role.role_arn
            ),
            resource=lf.CfnPrincipalPermissions.ResourceProperty(
                table=lf.CfnPrincipalPermissions.TableResourceProperty(
                    catalog_id=stack.account, database_name=self.dataset.database_name, name=self.dataset.name
                )
            ),
            permissions=list(LAKE_FORMATION_PERMISSIONS),
            permissions_with_grant_option=[],
        )
        self.lake_formation_grant.node.add_dependency(self.dataset.table)

    def _acknowledge(self) -> None:
        from ai_factory.platform.nag import (
            XRAY_WILDCARD_REASON,
            acknowledge,
            acknowledge_outside_vpc,
            acknowledge_unreserved_concurrency,
        )

        policy = self.role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            prefixes = (
                (self.raw_bucket, self.raw_prefix, "reads the files of its raw prefix (keys are per upload)"),
                (self.curated_bucket, self.curated_prefix, "writes one curated object per file and run"),
                (self.quarantine_bucket, self.quarantine_prefix, "writes refused records and files"),
                (self.lineage_bucket, self.lineage_prefix, "writes one lineage event per run"),
            )
            key_reason = (
                "CDK's grant for sending to the failure-destination queue, which is encrypted with the "
                "connector's own key: the data-key action families on that one key."
            )
            wildcard = XRAY_WILDCARD_REASON
            if self.pii_detection == "comprehend":
                wildcard = (
                    "Only actions that support no resource-level permissions (AWS requires '*') use "
                    "Resource '*': X-Ray's xray:PutTraceSegments and xray:PutTelemetryRecords, and "
                    "comprehend:DetectPiiEntities, a stateless analysis of the text sent with the call "
                    "(pii_detection='comprehend'). Every other statement names its resource."
                )
            rules = {
                "AwsSolutions-IAM5[Resource::*]": wildcard,
                "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]": key_reason,
                "AwsSolutions-IAM5[Action::kms:ReEncrypt*]": key_reason,
            }
            for bucket, prefix, why in prefixes:
                ref = cdk.Stack.of(bucket).get_logical_id(bucket.node.default_child)  # type: ignore[arg-type]
                rules[f"AwsSolutions-IAM5[Resource::<{ref}.Arn>/{prefix}*]"] = (
                    f"Object-level S3 action on exactly the dataset's prefix {prefix!r}: the connector {why}."
                )
            acknowledge(policy, rules)
        acknowledge_outside_vpc(self.function)
        dlq_reason = (
            "Asynchronous failures (after 2 retries or 6 hours) go to the on-failure destination, the "
            "connector's SQS queue, which records the event and the error; a DLQ as well would duplicate it."
        )
        acknowledge(
            self.function.node.default_child,  # type: ignore[arg-type]
            {"NIST.800.53.R5-LambdaDLQ": dlq_reason, "Serverless-LambdaDLQ": dlq_reason},
        )
        acknowledge_unreserved_concurrency(
            self.function,
            bounded_by="the rate files are uploaded to the dataset's raw prefix (one invocation per file)",
        )
        acknowledge(
            self.dead_letter_queue,
            {
                rule: "This queue is itself the connector Lambda's failure destination; it needs no DLQ."
                for rule in ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy", "NIST.800.53.R5-SQSQueueDLQ")
            },
        )
        if isinstance(self.hmac_secret, secretsmanager.Secret) and self.hmac_secret.node.scope is self:
            reason = (
                "The HMAC masking key must stay stable: rotating it changes every pseudonym and token, which "
                "breaks joins and detokenization of data already curated. It never leaves Secrets Manager "
                "and the connector's role is its only reader."
            )
            acknowledge(
                self.hmac_secret,
                {"AwsSolutions-SMG4": reason, "NIST.800.53.R5-SecretsManagerRotationEnabled": reason},
            )
        if self.token_vault is not None:
            acknowledge(
                self.token_vault,
                {
                    "NIST.800.53.R5-DynamoDBInBackupPlan": (
                        "Point-in-time recovery (35 days) is on and the table is retained on stack deletion; "
                        "account-wide AWS Backup plans are the landing zone's decision, not this construct's."
                    )
                },
            )
        # CDK's own (deploy-time) handler that applies bucket notifications: one per stack.
        for child in cdk.Stack.of(self.raw_bucket).node.children:
            if child.node.id.startswith("BucketNotificationsHandler"):
                acknowledge(
                    child,
                    {
                        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                        "AWSLambdaBasicExecutionRole]": (
                            "CDK's built-in handler that writes S3 bucket notification settings at deploy "
                            "time; CDK attaches AWS's basic execution policy (logs only) to its role."
                        )
                    },
                )

    def _fail(self, field: str, why: str) -> DataConnectorError:
        return DataConnectorError(f"{self._label}: {field}: {why}")


def _is_text(column: Mapping[str, Any]) -> bool:
    """Whether the column holds strings at any depth (what the connector scans and masks)."""
    return parse_type(str(column["type"])).has_text


__all__ = ["DataConnector", "DataConnectorError", "stage_connector_asset"]
