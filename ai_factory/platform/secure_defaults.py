"""Secure building blocks the factory's constructs share: KMS keys for logs, encrypted buckets, access logs.

Each helper makes one thing the way every construct here wants it (rotation on, TLS only, no ACLs,
retained on stack deletion), so the policies stay the same wherever they are used:

* ``logs_kms_key`` / ``allow_cloudwatch_logs``: a key CloudWatch Logs may use, for this account's and
  region's log groups only;
* ``encrypted_bucket``: an SSE-KMS bucket (bucket key on, TLS only, no public access, no ACLs);
* ``encrypted_queue``: an SQS queue encrypted with a customer-managed key, TLS only, messages kept 14
  days (the factory's dead-letter, spill and failure queues);
* ``access_log_bucket`` / ``send_access_logs``: the destination of S3 server access logs, and a bucket
  delivering to it;
* ``via_services``: the condition that limits a KMS grant to calls AWS services make for the caller.

Example::

    key = logs_kms_key(self, "Key", "AI Factory: my logs")
    log_bucket = access_log_bucket(self, "AccessLogs", expiry_days=365, reason="Holds Data's access logs.")
    data = encrypted_bucket(self, "Data", key=key)
    send_access_logs(data, log_bucket, prefix="data/", sid="S3ServerAccessLogsFromDataBucket")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

CLOUDWATCH_LOGS_SID = "AllowCloudWatchLogsInThisAccount"


def via_services(*services: str, region: str = Aws.REGION) -> dict[str, Any]:
    """``kms:ViaService`` for ``services`` (``"s3"``, ``"dynamodb"``, ...) in ``region``: the key may be
    used only in requests those services make on the caller's behalf, never called directly."""
    names = [f"{service}.{region}.amazonaws.com" for service in services]
    return {"StringEquals": {"kms:ViaService": names[0] if len(names) == 1 else names}}


def allow_cloudwatch_logs(key: kms.IKey, *, sid: str = CLOUDWATCH_LOGS_SID) -> None:
    """Let the regional CloudWatch Logs service use ``key``, for log groups in this account and region only.

    Without this statement CloudWatch Logs cannot encrypt a log group with the key. The encryption-context
    condition keeps other accounts' (and regions') log groups from using it. No-op on an imported key
    (CDK cannot change its policy).
    """
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid=sid,
            principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
            actions=[
                "kms:Encrypt*",
                "kms:Decrypt*",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:Describe*",
            ],
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": (
                        f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                    )
                }
            },
        )
    )


def logs_kms_key(
    scope: Construct, construct_id: str, description: str, *, sid: str = CLOUDWATCH_LOGS_SID
) -> kms.Key:
    """A new KMS key (rotation on, retained) that CloudWatch Logs may use (see ``allow_cloudwatch_logs``)."""
    key = kms.Key(
        scope,
        construct_id,
        description=description,
        enable_key_rotation=True,
        removal_policy=RemovalPolicy.RETAIN,
    )
    allow_cloudwatch_logs(key, sid=sid)
    return key


def encrypted_bucket(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    versioned: bool = True,
    lifecycle_rules: Sequence[s3.LifecycleRule] | None = None,
) -> s3.Bucket:
    """An SSE-KMS bucket with ``key`` (S3 bucket key on), TLS only, no public access, no ACLs, retained."""
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        bucket_key_enabled=True,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=versioned,
        lifecycle_rules=list(lifecycle_rules) if lifecycle_rules is not None else None,
        removal_policy=RemovalPolicy.RETAIN,
    )


def encrypted_queue(scope: Construct, construct_id: str, *, key: kms.IKey, **props: Any) -> sqs.Queue:
    """An SQS queue encrypted with ``key``, TLS only, messages kept 14 days; ``props`` add to that
    (a visibility timeout, a dead-letter queue)."""
    return sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=Duration.days(14),
        **props,
    )


def access_log_bucket(
    scope: Construct,
    construct_id: str,
    *,
    expiry_days: int | None,
    reason: str,
    versioned: bool = True,
) -> s3.Bucket:
    """A bucket for S3 server access logs: S3-managed encryption, TLS only, no ACLs, retained.

    :param expiry_days: days a log object is kept; ``None`` keeps them forever.
    :param reason: why the bucket has no access logs of its own (the cdk-nag AwsSolutions-S1
        acknowledgement).
    :param versioned: versioning on (then old versions expire after a day: only the current ones count).
    """
    rule = s3.LifecycleRule(
        expiration=Duration.days(expiry_days) if expiry_days is not None else None,
        noncurrent_version_expiration=Duration.days(1) if versioned else None,
    )
    bucket = s3.Bucket(
        scope,
        construct_id,
        # S3 server access logging delivers only to buckets encrypted with S3-managed keys.
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=versioned,
        lifecycle_rules=[rule] if expiry_days is not None or versioned else [],
        removal_policy=RemovalPolicy.RETAIN,
    )
    cdk.Validations.of(bucket).acknowledge(cdk.Acknowledgment(id="AwsSolutions-S1", reason=reason))
    for rule_id, why in _ACCESS_LOG_BUCKET_REASONS.items():
        cdk.Validations.of(bucket).acknowledge(cdk.Acknowledgment(id=rule_id, reason=why))
    return bucket


_ACCESS_LOG_BUCKET_REASONS = {
    "NIST.800.53.R5-S3DefaultEncryptionKMS": (
        "S3 server access logging delivers only to destination buckets encrypted with S3-managed keys "
        "(SSE-S3); SSE-KMS is not supported for the destination. TLS only, no public access, no ACLs."
    ),
    "NIST.800.53.R5-S3BucketReplicationEnabled": (
        "The bucket holds S3 server access logs, which S3 delivers best-effort; replicating them to a "
        "second region needs a destination bucket there, which the organisation's log archive chooses."
    ),
}


def send_access_logs(bucket: s3.Bucket, log_bucket: s3.Bucket, *, prefix: str, sid: str) -> None:
    """Deliver ``bucket``'s server access logs to ``log_bucket`` under ``prefix``.

    Set on the L1 with a bucket policy for the logging service (not ``server_access_logs_bucket``,
    which falls back to ACLs unless the app sets a feature flag), so both buckets stay ACL-free. The
    policy lets the service write only ``prefix`` and only for ``bucket`` in this account.
    """
    cfn_bucket = bucket.node.default_child
    assert isinstance(cfn_bucket, s3.CfnBucket)
    cfn_bucket.logging_configuration = s3.CfnBucket.LoggingConfigurationProperty(
        destination_bucket_name=log_bucket.bucket_name, log_file_prefix=prefix
    )
    log_bucket.add_to_resource_policy(
        iam.PolicyStatement(
            sid=sid,
            principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
            actions=["s3:PutObject"],
            resources=[log_bucket.arn_for_objects(f"{prefix}*")],
            conditions={
                "ArnLike": {"aws:SourceArn": bucket.bucket_arn},
                "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
            },
        )
    )
