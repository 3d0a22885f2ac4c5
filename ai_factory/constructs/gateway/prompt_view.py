"""The bucket the prompt registry publishes its runtime view to (``ai-factory prompts publish``), which
the gateway reads (only that one object) to render managed prompts.

Versioned, KMS-encrypted with the gateway key, with server access logs in a bucket of their own.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ai_factory.platform.nag import acknowledge
from ai_factory.platform.secure_defaults import (
    access_log_bucket,
    encrypted_bucket,
    send_access_logs,
    via_services,
)

PROMPT_VIEW_KEY = "prompts.json"


def build_prompts_bucket(scope: Construct, key: kms.IKey, *, access_log_days: int) -> s3.Bucket:
    """``PromptsBucket`` (and ``PromptsAccessLogs``, kept ``access_log_days``) in ``scope``."""
    access_logs = access_log_bucket(
        scope,
        "PromptsAccessLogs",
        expiry_days=access_log_days,
        reason=(
            "This bucket is the destination of the prompts bucket's server access logs; logging "
            "it too would need yet another log bucket (or log into itself, which S3 advises "
            "against because every delivered log would create more logs)."
        ),
    )
    # Every published view is kept: what the gateway served, and when, can be reconstructed.
    bucket = encrypted_bucket(scope, "PromptsBucket", key=key)
    send_access_logs(bucket, access_logs, prefix="prompts-bucket/", sid="S3ServerAccessLogsFromPromptsBucket")
    return bucket


def view_uri(bucket: s3.IBucket) -> str:
    """``s3://<bucket>/prompts.json``: where the registry publishes and the gateway reads."""
    return f"s3://{bucket.bucket_name}/{PROMPT_VIEW_KEY}"


def grant_publish(bucket: s3.IBucket, key: kms.IKey, grantee: iam.IGrantable) -> iam.Grant:
    """Write the view object (and nothing else in the bucket), with ``key`` through S3."""
    grant = iam.Grant.add_to_principal(
        grantee=grantee, actions=["s3:PutObject"], resource_arns=[bucket.arn_for_objects(PROMPT_VIEW_KEY)]
    )
    return grant.combine(
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resource_arns=[key.key_arn],
            conditions=via_services("s3"),
        )
    )


def read_statements(bucket: s3.IBucket, key: kms.IKey) -> list[iam.PolicyStatement]:
    """What the gateway runtime needs to read the view."""
    return [
        iam.PolicyStatement(
            sid="ReadPromptView",
            actions=["s3:GetObject"],
            resources=[bucket.arn_for_objects(PROMPT_VIEW_KEY)],
        ),
        # Without s3:ListBucket S3 answers 403, not 404, for an object that does not exist yet, and
        # the gateway could not tell "nothing published" from "no access". The bucket holds only the view.
        iam.PolicyStatement(
            sid="SeeWhetherPromptViewExists",
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
        ),
        iam.PolicyStatement(
            sid="DecryptPromptViewThroughS3",
            actions=["kms:Decrypt"],
            resources=[key.key_arn],
            conditions=via_services("s3"),
        ),
    ]


def acknowledge_prompts_bucket(bucket: s3.Bucket) -> None:
    """No cross-region replication: the view is regenerated from MLflow, the system of record."""
    acknowledge(
        bucket.node.default_child or bucket,
        {
            "NIST.800.53.R5-S3BucketReplicationEnabled": (
                "The bucket holds the published view of the prompt registry, which MLflow (the system "
                "of record) regenerates with 'ai-factory prompts publish'; it is versioned, "
                "KMS-encrypted and retained. Cross-region replication needs a destination bucket in "
                "a second region, which the organisation's recovery plan chooses."
            )
        },
    )
