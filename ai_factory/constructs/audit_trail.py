"""``AuditTrail``: the gateway's audit lines, delivered to a write-once (Object Lock) S3 bucket.

CloudWatch Logs subscription filter on the gateway function's log group (only the ``audit`` lines)
-> Kinesis Data Firehose (KMS, decompresses and unwraps the CloudWatch Logs envelope, buffers)
-> S3 bucket with Object Lock (default retention), versioning, SSE-KMS and server access logs, under
``audit/year=YYYY/month=MM/day=DD/`` (records Firehose could not deliver go under ``errors/``).

Each line holds one ``UsageRecord`` (no prompt or completion text): every request that reached a
model and every request refused before one. ``docs/security.md`` explains the tamper evidence.

Example::

    from ai_factory.constructs.audit_trail import AuditTrail

    trail = AuditTrail(self, "AuditTrail", log_group=gateway.audit_log_group, retention_days=365)
    trail.grant_read(auditor_role)
"""

from __future__ import annotations

from typing import Literal

import aws_cdk as cdk
from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ai_factory.platform.secure_defaults import (
    access_log_bucket,
    encrypted_bucket,
    logs_kms_key,
    send_access_logs,
    via_services,
)

ObjectLockMode = Literal["GOVERNANCE", "COMPLIANCE"]

# Powertools Logger writes the gateway's audit record as {"message": "audit", "audit": {...}, ...}
# (aif_gateway.handler.audit_log); Lambda's JSON log format passes such lines through unchanged.
AUDIT_FILTER_PATTERN = logs.FilterPattern.string_value("$.message", "=", "audit")
AUDIT_PREFIX = "audit/"
ERROR_PREFIX = "errors/"
_DATE_PATH = "year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
DEFAULT_RETENTION_DAYS = 365
MIN_DEFAULT_RETENTION_DAYS = 180  # EU AI Act art. 19/26: logs kept at least six months


class AuditTrail(Construct):
    """Tamper-evident audit storage for the gateway: logs -> Firehose -> Object Lock bucket.

    :param log_group: the gateway function's log group (the source of the ``audit`` lines).
    :param filter_pattern: which log events are audit records. Default: ``{ $.message = "audit" }``.
    :param object_lock_mode: ``"GOVERNANCE"`` (default) or ``"COMPLIANCE"``. In GOVERNANCE mode the
        bucket policy also denies ``s3:BypassGovernanceRetention`` to every principal, so shortening a
        retention or deleting a locked version first needs a bucket-policy change (a CloudTrail
        management event). COMPLIANCE mode makes that impossible for anyone, root included, until the
        retention ends: use it where a regulator requires WORM storage.
    :param retention_days: default Object Lock retention of every audit object. Default 365 (at
        least the 180 days EU AI Act art. 19 asks of deployers' logs).
    :param expiration_days: delete audit objects this many days after delivery (a lifecycle rule;
        must be >= ``retention_days``). Default: keep them.
    :param encryption_key: KMS key for the bucket, the delivery stream and Firehose's error log.
        Default: a new key (rotation on) dedicated to the audit trail.
    :param buffering_interval: how long Firehose buffers before writing an object (0-900 s).
        Default 300 s.
    :param buffering_size_mib: buffer size that triggers a write (1-128 MiB). Default 5.
    :param log_retention: retention of Firehose's delivery-error log group. Default one year.
    :param access_log_expiry_days: days the bucket's server access logs are kept. Default 365.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_group: logs.ILogGroup,
        filter_pattern: logs.IFilterPattern = AUDIT_FILTER_PATTERN,
        object_lock_mode: ObjectLockMode = "GOVERNANCE",
        retention_days: int = DEFAULT_RETENTION_DAYS,
        expiration_days: int | None = None,
        encryption_key: kms.IKey | None = None,
        buffering_interval: Duration | None = None,
        buffering_size_mib: int = 5,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        access_log_expiry_days: int = 365,
    ) -> None:
        super().__init__(scope, construct_id)
        buffering_interval = buffering_interval or Duration.seconds(300)
        self._validate(
            object_lock_mode, retention_days, expiration_days, buffering_interval, buffering_size_mib
        )
        self.object_lock_mode = object_lock_mode
        self.retention_days = retention_days

        self.key: kms.IKey = encryption_key or logs_kms_key(
            self, "Key", "AI Factory audit trail: audit bucket, delivery stream and its error log"
        )
        self.bucket = self._bucket(expiration_days, access_log_expiry_days)

        self.delivery_errors = logs.LogGroup(
            self,
            "DeliveryErrors",
            retention=log_retention,
            encryption_key=self.key,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        error_stream = logs.LogStream(
            self, "DeliveryErrorStream", log_group=self.delivery_errors, log_stream_name="S3Delivery"
        )

        self.delivery_role = iam.Role(
            self,
            "DeliveryRole",
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com", conditions={"StringEquals": {"sts:ExternalId": Aws.ACCOUNT_ID}}
            ),
            description="AI Factory audit trail: Firehose writes audit objects to the audit bucket",
        )
        self._grant_delivery(self.delivery_role)

        self.delivery_stream = firehose.CfnDeliveryStream(
            self,
            "DeliveryStream",
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=(
                firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                    key_type="CUSTOMER_MANAGED_CMK", key_arn=self.key.key_arn
                )
            ),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=self.bucket.bucket_arn,
                role_arn=self.delivery_role.role_arn,
                prefix=AUDIT_PREFIX + _DATE_PATH,
                error_output_prefix=ERROR_PREFIX + "!{firehose:error-output-type}/" + _DATE_PATH,
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    interval_in_seconds=int(buffering_interval.to_seconds()),
                    size_in_m_bs=buffering_size_mib,
                ),
                compression_format="GZIP",
                file_extension=".jsonl.gz",
                encryption_configuration=firehose.CfnDeliveryStream.EncryptionConfigurationProperty(
                    kms_encryption_config=firehose.CfnDeliveryStream.KMSEncryptionConfigProperty(
                        awskms_key_arn=self.key.key_arn
                    )
                ),
                # CloudWatch Logs delivers gzip'd envelopes of several log events; unwrap them so each
                # object line is one audit log line (JSON), readable with Athena or jq.
                processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                    enabled=True,
                    processors=[
                        firehose.CfnDeliveryStream.ProcessorProperty(
                            type="Decompression",
                            parameters=[
                                firehose.CfnDeliveryStream.ProcessorParameterProperty(
                                    parameter_name="CompressionFormat", parameter_value="GZIP"
                                )
                            ],
                        ),
                        firehose.CfnDeliveryStream.ProcessorProperty(
                            type="CloudWatchLogProcessing",
                            parameters=[
                                firehose.CfnDeliveryStream.ProcessorParameterProperty(
                                    parameter_name="DataMessageExtraction", parameter_value="true"
                                )
                            ],
                        ),
                    ],
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True,
                    log_group_name=self.delivery_errors.log_group_name,
                    log_stream_name=error_stream.log_stream_name,
                ),
            ),
        )
        # The stream validates its role on creation: the policy must exist first.
        self.delivery_stream.node.add_dependency(self.delivery_role)

        self.subscription_role = iam.Role(
            self,
            "SubscriptionRole",
            assumed_by=iam.ServicePrincipal(
                "logs.amazonaws.com",
                conditions={
                    "StringLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:*"
                    }
                },
            ),
            description="AI Factory audit trail: CloudWatch Logs forwards audit lines to Firehose",
        )
        self.subscription_role.add_to_policy(
            iam.PolicyStatement(
                sid="PutAuditLinesIntoTheDeliveryStream",
                actions=["firehose:PutRecord", "firehose:PutRecordBatch"],
                resources=[self.delivery_stream.attr_arn],
            )
        )
        self.subscription = logs.CfnSubscriptionFilter(
            self,
            "Subscription",
            log_group_name=log_group.log_group_name,
            filter_pattern=filter_pattern.log_pattern_string,
            destination_arn=self.delivery_stream.attr_arn,
            role_arn=self.subscription_role.role_arn,
        )
        # CloudWatch Logs test-delivers when the filter is created: role policy and stream must be ready.
        self.subscription.node.add_dependency(self.subscription_role)

        cdk.CfnOutput(self, "BucketName", value=self.bucket.bucket_name, description="Audit trail bucket")

    # ----------------------------------------------------------------------------------------- public

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` (an auditor role) list and read audit objects (and their versions and
        retention), and decrypt them through S3. Nothing that writes or deletes."""
        grant = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention"],
            resource_arns=[self.bucket.arn_for_objects(f"{AUDIT_PREFIX}*")],
        )
        grant = grant.combine(
            iam.Grant.add_to_principal(
                grantee=grantee,
                actions=["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketObjectLockConfiguration"],
                resource_arns=[self.bucket.bucket_arn],
            )
        )
        return grant.combine(
            iam.Grant.add_to_principal(
                grantee=grantee,
                actions=["kms:Decrypt"],
                resource_arns=[self.key.key_arn],
                conditions=via_services("s3"),
            )
        )

    # ------------------------------------------------------------------------------------- building

    def _fail(self, field: str, why: str) -> ValueError:
        return ValueError(f"AuditTrail '{self.node.path}': {field}: {why}")

    def _validate(
        self,
        mode: str,
        retention_days: int,
        expiration_days: int | None,
        buffering_interval: Duration,
        buffering_size_mib: int,
    ) -> None:
        if mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise self._fail("object_lock_mode", f"must be 'GOVERNANCE' or 'COMPLIANCE', got {mode!r}")
        if not _int_in(retention_days, 1, 36500):
            raise self._fail("retention_days", f"must be an integer from 1 to 36500, got {retention_days!r}")
        if expiration_days is not None and not (
            _int_in(expiration_days, 1, 36500) and expiration_days >= retention_days
        ):
            raise self._fail(
                "expiration_days",
                f"must be an integer >= retention_days ({retention_days}), got {expiration_days!r}",
            )
        seconds = buffering_interval.to_seconds()
        if not 0 <= seconds <= 900:
            raise self._fail("buffering_interval", f"must be 0 to 900 seconds, got {seconds}")
        if not _int_in(buffering_size_mib, 1, 128):
            raise self._fail(
                "buffering_size_mib", f"must be an integer from 1 to 128, got {buffering_size_mib!r}"
            )

    def _bucket(self, expiration_days: int | None, access_log_expiry_days: int) -> s3.Bucket:
        rules = None
        if expiration_days is not None:
            rules = [
                s3.LifecycleRule(
                    expiration=Duration.days(expiration_days),
                    noncurrent_version_expiration=Duration.days(1),
                )
            ]
        bucket = encrypted_bucket(self, "Bucket", key=self.key, versioned=True, lifecycle_rules=rules)
        cfn_bucket = bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        # Object Lock can only be turned on when the bucket is created; every object written gets the
        # default retention, so no writer can skip it.
        cfn_bucket.object_lock_enabled = True
        cfn_bucket.object_lock_configuration = s3.CfnBucket.ObjectLockConfigurationProperty(
            object_lock_enabled="Enabled",
            rule=s3.CfnBucket.ObjectLockRuleProperty(
                default_retention=s3.CfnBucket.DefaultRetentionProperty(
                    mode=self.object_lock_mode, days=self.retention_days
                )
            ),
        )
        cdk.Validations.of(cfn_bucket).acknowledge(
            cdk.Acknowledgment(
                id="NIST.800.53.R5-S3BucketReplicationEnabled",
                reason=(
                    "Replication is the deployer's choice of a second region or account (S3 replicates "
                    "Object Lock retention with the objects); S3 already stores the objects redundantly "
                    "across Availability Zones, and Object Lock plus versioning protect them from deletion "
                    "and overwrite. docs/security.md says how to add a replica in a log-archive account."
                ),
            )
        )
        access_logs = access_log_bucket(
            self,
            "AccessLogs",
            expiry_days=access_log_expiry_days,
            reason=(
                "This bucket is the destination of the audit bucket's server access logs; logging it "
                "too would need another log bucket (or log into itself, which S3 advises against)."
            ),
        )
        send_access_logs(bucket, access_logs, prefix="audit-bucket/", sid="S3ServerAccessLogsFromAuditBucket")
        if self.object_lock_mode == "GOVERNANCE":
            bucket.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="DenyGovernanceBypass",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=["s3:BypassGovernanceRetention"],
                    resources=[bucket.bucket_arn, bucket.arn_for_objects("*")],
                )
            )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenyDeletingAuditObjects",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:DeleteObject", "s3:DeleteObjectVersion"],
                resources=[bucket.arn_for_objects("*")],
            )
        )
        return bucket

    def _grant_delivery(self, role: iam.Role) -> None:
        """Firehose's S3-destination permissions, limited to the two prefixes it writes and the key via S3."""
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyTheDeliveryRoleWrites",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects("*")],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": role.role_arn}},
            )
        )
        prefixes = [self.bucket.arn_for_objects(f"{p}*") for p in (AUDIT_PREFIX, ERROR_PREFIX)]
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteAuditObjects",
                actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
                resources=prefixes,
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="FindTheAuditBucket",
                actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                resources=[self.bucket.bucket_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="EncryptAuditObjectsThroughS3",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[self.key.key_arn],
                conditions={
                    **via_services("s3"),
                    # With an S3 bucket key the encryption context is the bucket's ARN.
                    "StringLike": {
                        "kms:EncryptionContext:aws:s3:arn": [
                            self.bucket.bucket_arn,
                            f"{self.bucket.bucket_arn}/*",
                        ]
                    },
                },
            )
        )
        bucket_id = cdk.Stack.of(self).resolve(
            cdk.Stack.of(self).get_logical_id(self.bucket.node.default_child)  # type: ignore[arg-type]
        )
        for prefix in (AUDIT_PREFIX, ERROR_PREFIX):
            cdk.Validations.of(role.node.find_child("DefaultPolicy")).acknowledge(
                cdk.Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{prefix}*]",
                    reason=(
                        f"Firehose names each object itself under '{prefix}': "
                        "the role may write only under its two prefixes of the audit bucket, and the bucket "
                        "policy denies s3:PutObject to every other principal."
                    ),
                )
            )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="LogDeliveryErrors",
                actions=["logs:PutLogEvents"],
                resources=[self.delivery_errors.log_group_arn],
            )
        )


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
