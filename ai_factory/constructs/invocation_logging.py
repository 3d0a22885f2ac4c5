"""``BedrockInvocationLogging``: Bedrock model invocation logging to encrypted destinations.

Model invocation logging is one setting per account and region, and CloudFormation has no resource for
it, so a custom resource (``lambdas/invocation_logging_handler``) puts it. That handler refuses to
replace a configuration it did not set unless ``overwrite_existing=True`` and, on delete, removes only
a configuration that is still its own.

Destinations:

* a CloudWatch Logs group (KMS, retention) that Bedrock writes through a role it may assume only for
  this account's Bedrock (``aws:SourceAccount`` / ``aws:SourceArn`` conditions against the confused
  deputy);
* an S3 bucket for payloads too large for CloudWatch (over 100 KB, and images): SSE-KMS with the same
  key, TLS only, versioned, retained, with server access logs in a bucket of their own. Bedrock writes
  it as its service principal, allowed by the bucket and key policies under the same conditions.

Example::

    BedrockInvocationLogging(stack, "InvocationLogging", log_retention=logs.RetentionDays.ONE_YEAR)
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import invocation_logging_handler
from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ai_factory.platform.custom_resources import secure_provider
from ai_factory.platform.functions import function_log_group, hardened_function, write_own_logs_statement
from ai_factory.platform.lambda_packaging import contract_files, stage_asset
from ai_factory.platform.log_retention import RETENTION_DAYS
from ai_factory.platform.nag import acknowledge, acknowledge_custom_resource_handler
from ai_factory.platform.secure_defaults import (
    access_log_bucket,
    encrypted_bucket,
    logs_kms_key,
    send_access_logs,
)
from aif_gateway.contract import INVOCATION_LOGGING_RESOURCE_TYPE
from aif_gateway.contract import InvocationLoggingProperties as Props

# The runtime lives in lambdas/invocation_logging_handler (installed as ``invocation_logging_handler``).
HANDLER_DIR = Path(invocation_logging_handler.__file__).resolve().parent
RESOURCE_TYPE = INVOCATION_LOGGING_RESOURCE_TYPE
LARGE_PAYLOAD_PREFIX = "large-payloads/"
_BEDROCK = "bedrock.amazonaws.com"


class BedrockInvocationLogging(Construct):
    """Bedrock model invocation logging for this account and region, owned by this construct.

    :param overwrite_existing: replace a configuration someone else set (default ``False``: the
        deployment fails with a message naming the existing destinations).
    :param encryption_key: KMS key for the log group and the payload bucket. Default: a new key
        (rotation on, retained).
    :param log_retention: how long invocation logs are kept (CloudWatch, and the payload bucket's
        expiry). Default one year.
    :param text_data: log prompts and completions (``textDataDeliveryEnabled``). Default ``True``.
    :param image_data: log images (delivered to S3). Default ``True``.
    :param embedding_data: log embedding vectors. Default ``False`` (large and rarely useful).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        overwrite_existing: bool = False,
        encryption_key: kms.IKey | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        text_data: bool = True,
        image_data: bool = True,
        embedding_data: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        self.overwrite_existing = overwrite_existing
        bedrock_source = {
            "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
            "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:*"},
        }
        self.key: kms.IKey = encryption_key or self._new_key(bedrock_source)
        self.log_group = logs.LogGroup(
            self,
            "InvocationLogs",
            retention=log_retention,
            encryption_key=self.key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.payload_bucket = self._payload_bucket(log_retention, bedrock_source)
        self.logging_role = iam.Role(
            self,
            "BedrockLoggingRole",
            assumed_by=iam.ServicePrincipal(_BEDROCK, conditions=bedrock_source),
            description="AI Factory: Bedrock writes model invocation logs to the factory's log group",
            inline_policies={
                "WriteInvocationLogs": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                            resources=[self.log_group.log_group_arn],
                        )
                    ]
                )
            },
        )
        self.logging_config = {
            "cloudWatchConfig": {
                "logGroupName": self.log_group.log_group_name,
                "roleArn": self.logging_role.role_arn,
                "largeDataDeliveryS3Config": {
                    "bucketName": self.payload_bucket.bucket_name,
                    "keyPrefix": LARGE_PAYLOAD_PREFIX.rstrip("/"),
                },
            },
            "textDataDeliveryEnabled": text_data,
            "imageDataDeliveryEnabled": image_data,
            "embeddingDataDeliveryEnabled": embedding_data,
        }
        self.handler_function = self._handler_function()
        provider = secure_provider(
            self,
            self.handler_function,
            key=self.key,
            role_description="AI Factory: custom-resource framework of the invocation logging configuration",
            handler_noun="the handler function",
        )
        provider_role = self.node.find_child("ProviderRole")
        assert isinstance(provider_role, iam.Role)
        self.provider_role = provider_role
        self.resource = cdk.CustomResource(
            self,
            "Configuration",
            service_token=provider.service_token,
            resource_type=RESOURCE_TYPE,
            properties={
                # A JSON string: CloudFormation would turn booleans inside an object into strings.
                Props.LOGGING_CONFIG: cdk.Stack.of(self).to_json_string(self.logging_config),
                Props.OVERWRITE_EXISTING: "true" if overwrite_existing else "false",
            },
        )
        # Bedrock checks that it can write the destinations when the configuration is put.
        self.resource.node.add_dependency(self.payload_bucket, self.logging_role, self.log_group)
        self._acknowledge_design_findings()

    # ------------------------------------------------------------------------------------- resources

    def _new_key(self, bedrock_source: dict[str, dict[str, str]]) -> kms.Key:
        key = logs_kms_key(
            self,
            "Key",
            "AI Factory: Bedrock model invocation logs and large payloads",
            sid="CloudWatchLogsInThisAccount",
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BedrockWritesLargePayloads",
                principals=[iam.ServicePrincipal(_BEDROCK)],
                actions=["kms:GenerateDataKey"],
                resources=["*"],
                conditions=bedrock_source,
            )
        )
        return key

    def _payload_bucket(
        self, retention: logs.RetentionDays, bedrock_source: dict[str, dict[str, str]]
    ) -> s3.Bucket:
        days = next((d for d, member in RETENTION_DAYS.items() if member == retention), None)
        expiry = [s3.LifecycleRule(expiration=Duration.days(days))] if days else []
        access_logs = access_log_bucket(
            self,
            "PayloadAccessLogs",
            expiry_days=days,
            reason=(
                "This bucket receives the payload bucket's server access logs; logging it too would "
                "need another log bucket (or log into itself, which S3 advises against)."
            ),
        )
        bucket = encrypted_bucket(self, "PayloadBucket", key=self.key, lifecycle_rules=expiry)
        acknowledge(
            bucket,
            {
                "NIST.800.53.R5-S3BucketReplicationEnabled": (
                    "Holds the large request/response bodies of Bedrock invocation logs, which expire with "
                    "the log retention; versioned, KMS-encrypted, retained. Cross-region replication of "
                    "prompt and completion bodies would copy them to a second region, which needs its own "
                    "data-residency decision and destination bucket."
                )
            },
        )
        send_access_logs(
            bucket, access_logs, prefix="payload-bucket/", sid="S3ServerAccessLogsFromPayloadBucket"
        )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BedrockWritesLargePayloads",
                principals=[iam.ServicePrincipal(_BEDROCK)],
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{LARGE_PAYLOAD_PREFIX}*")],
                conditions=bedrock_source,
            )
        )
        return bucket

    def _handler_function(self) -> lambda_.Function:
        log_group = function_log_group(
            self, "HandlerLogs", key=self.key, retention=logs.RetentionDays.ONE_YEAR
        )
        statements = [
            write_own_logs_statement(log_group),
            iam.PolicyStatement(
                sid="ManageInvocationLoggingConfiguration",
                actions=[
                    "bedrock:GetModelInvocationLoggingConfiguration",
                    "bedrock:PutModelInvocationLoggingConfiguration",
                    "bedrock:DeleteModelInvocationLoggingConfiguration",
                ],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="PassOnlyTheLoggingRoleToBedrock",
                actions=["iam:PassRole"],
                resources=[self.logging_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": _BEDROCK}},
            ),
        ]
        self.handler_role = iam.Role(
            self,
            "HandlerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="AI Factory: puts and removes Bedrock model invocation logging",
            inline_policies={"ManageInvocationLogging": iam.PolicyDocument(statements=statements)},
        )
        return hardened_function(
            self,
            "Handler",
            description="AI Factory: Bedrock model invocation logging (custom resource)",
            handler="handler.on_event",
            code=lambda_.Code.from_asset(str(stage_handler_asset())),
            role=self.handler_role,
            timeout=Duration.seconds(60),
            memory_size=256,
            log_group=log_group,
            # A custom-resource handler runs a few times per deployment; its log lines say enough.
            tracing=False,
        )

    def _acknowledge_design_findings(self) -> None:
        """cdk-nag findings that are deliberate, acknowledged on the construct they concern."""
        star_reason = (
            "bedrock:Get/Put/DeleteModelInvocationLoggingConfiguration act on the account's single "
            "per-region setting and support no resource-level permissions, so IAM requires "
            "Resource '*'. iam:PassRole is limited to exactly the logging role."
        )
        for rule in ("AwsSolutions-IAM5[Resource::*]", "Serverless-LambdaStarPermissions"):
            cdk.Validations.of(self.handler_role).acknowledge(cdk.Acknowledgment(id=rule, reason=star_reason))
        acknowledge_custom_resource_handler(
            self.handler_function, what="puts or removes the account's Bedrock invocation logging setting"
        )


def stage_handler_asset(out_root: Path | None = None) -> Path:
    """The handler (at the asset's root, so its entry point stays ``handler.on_event``) and the runtime
    contract it imports, in a content-addressed folder."""
    root_files = {
        name: (HANDLER_DIR / name).read_text(encoding="utf-8") for name in ("__init__.py", "handler.py")
    }
    return stage_asset("invocation-logging-", {"aif_gateway": contract_files()}, root_files, out_root)
