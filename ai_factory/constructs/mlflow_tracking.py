"""``MlflowTracking``: an Amazon SageMaker managed MLflow tracking server, as one CDK construct.

The server is the cloud system of record for the prompt and model registries and for eval runs
(``ai-factory eval``, ``ai_factory.training``). Clients use the ``sagemaker-mlflow`` plugin: the tracking
URI is the server's ARN and requests are signed with the caller's AWS credentials, so access is IAM:
``grant_access`` is the only door in. See ``docs/mlops.md``.

Example::

    from ai_factory.constructs.mlflow_tracking import MlflowTracking

    tracking = MlflowTracking(self, "Mlflow", tracking_server_name="ai-factory")
    tracking.grant_access(ci_role)      # MLFLOW_TRACKING_URI=<tracking.tracking_server_arn>

Creating the server takes 25-35 minutes; changing ``mlflow_version`` later replaces it (SageMaker has
no in-place MLflow upgrade), which is why the name and version are explicit props.
"""

from __future__ import annotations

import re

import aws_cdk as cdk
from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from ai_factory.platform.name_prefix import name_prefix
from ai_factory.platform.secure_defaults import (
    access_log_bucket,
    encrypted_bucket,
    send_access_logs,
    via_services,
)

# SageMaker's rules for these props.
_SERVER_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$")
SERVER_SIZES = ("Small", "Medium", "Large")
_WINDOW_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun):([01]\d|2[0-3]):([0-5]\d)$")
ARTIFACT_PREFIX = "mlflow"

# What the tracking server itself does when automatic model registration is on: it mirrors each MLflow
# registered model into a SageMaker model package group.
_MODEL_REGISTRATION_ACTIONS = [
    "sagemaker:AddTags",
    "sagemaker:CreateModelPackageGroup",
    "sagemaker:CreateModelPackage",
    "sagemaker:UpdateModelPackage",
    "sagemaker:DescribeModelPackageGroup",
]


class MlflowTracking(Construct):
    """A SageMaker managed MLflow tracking server with its own encrypted, access-logged artifact store.

    Safe defaults: a customer-managed KMS key (rotation on) for the artifact bucket; the bucket is
    versioned, SSL-only, blocks public access, writes server access logs to a log bucket of its own,
    and is retained on stack deletion (with the key) so no run's artifacts disappear with a stack; the
    server's role (trusted by ``sagemaker.amazonaws.com``) may use only that bucket and key, plus the
    SageMaker model-registry calls automatic model registration makes.

    :param tracking_server_name: the server's name (1-256 letters, digits, '-'), unique in the account.
        Default: the factory's name prefix (``ai-factory``; ``ai_factory.platform.name_prefix``).
    :param tracking_server_size: ``"Small"`` (default, up to 25 users), ``"Medium"`` or ``"Large"``.
    :param mlflow_version: the MLflow version to run. Default: SageMaker's current default. Changing
        it replaces the server (a new, empty server; export and import runs first).
    :param automatic_model_registration: mirror MLflow registered models into the SageMaker model
        registry. Default True.
    :param weekly_maintenance_window_start: ``"Sun:03:00"`` (UTC) by default.
    :param access_log_retention: days to keep the artifact bucket's server access logs. Default 365.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        tracking_server_name: str | None = None,
        tracking_server_size: str = "Small",
        mlflow_version: str | None = None,
        automatic_model_registration: bool = True,
        weekly_maintenance_window_start: str = "Sun:03:00",
        access_log_retention: int = 365,
    ) -> None:
        super().__init__(scope, construct_id)
        if tracking_server_name is None:
            tracking_server_name = name_prefix(self)
        self._validate(
            tracking_server_name, tracking_server_size, weekly_maintenance_window_start, access_log_retention
        )
        self.tracking_server_name = tracking_server_name

        self.key = kms.Key(
            self,
            "ArtifactKey",
            description=f"AI Factory MLflow tracking server {tracking_server_name}: artifact store",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.access_logs_bucket = access_log_bucket(
            self,
            "AccessLogs",
            expiry_days=access_log_retention,
            reason=(
                "This bucket receives the MLflow artifact bucket's server access logs; logging it too "
                "would need another log bucket (or log into itself, which S3 advises against)."
            ),
        )
        self.artifact_bucket = encrypted_bucket(self, "ArtifactBucket", key=self.key)
        send_access_logs(
            self.artifact_bucket,
            self.access_logs_bucket,
            prefix="artifact-bucket/",
            sid="S3ServerAccessLogsFromArtifactBucket",
        )
        self.artifact_store_uri = f"s3://{self.artifact_bucket.bucket_name}/{ARTIFACT_PREFIX}"

        self.role = iam.Role(
            self,
            "ServerRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker MLflow tracking server {tracking_server_name}: artifact store access",
        )
        statements = self._artifact_statements(
            "TrackingServer", self.artifact_bucket.bucket_arn, self.key.key_arn
        )
        for statement in statements:
            self.role.add_to_policy(statement)
        if automatic_model_registration:
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="AutomaticModelRegistration",
                    actions=_MODEL_REGISTRATION_ACTIONS,
                    resources=[
                        f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:model-package-group/*",
                        f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:model-package/*",
                    ],
                )
            )

        self.tracking_server = sagemaker.CfnMlflowTrackingServer(
            self,
            "TrackingServer",
            tracking_server_name=tracking_server_name,
            artifact_store_uri=self.artifact_store_uri,
            role_arn=self.role.role_arn,
            tracking_server_size=tracking_server_size,
            mlflow_version=mlflow_version,
            automatic_model_registration=automatic_model_registration,
            weekly_maintenance_window_start=weekly_maintenance_window_start,
        )
        # The server checks its role's access when it is created: the policy must exist first.
        policy = self.role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            self.tracking_server.node.add_dependency(policy)
        self.tracking_server_arn: str = self.tracking_server.attr_tracking_server_arn
        """The server's ARN: also the MLflow tracking URI for clients with the sagemaker-mlflow plugin."""
        self.tracking_uri: str = self.tracking_server_arn

        self._output("TrackingServerArn", self.tracking_server_arn, "ARN of the MLflow tracking server")
        self._output(
            "TrackingUri",
            self.tracking_uri,
            "MLFLOW_TRACKING_URI for clients with the sagemaker-mlflow plugin",
        )
        self._output("ArtifactStoreUri", self.artifact_store_uri, "S3 location of the MLflow artifacts")
        self._acknowledge(automatic_model_registration)

    # ----------------------------------------------------------------------------------------- public

    def access_policy_statements(self, consumer: cdk.Stack | None = None) -> list[iam.PolicyStatement]:
        """What a client (a team role, CI) needs, as statements (for ``CodeBuildStep`` role policies).

        ``consumer``: the stack the statements will live in. When it is another stack, the ARNs are
        explicit imports of this stack's exports (``Stack.export_value``), so they are concrete
        ``Fn::ImportValue`` names already at construction time (cdk-nag acknowledgements can name them).
        """
        here = cdk.Stack.of(self)

        def ref(value: str) -> str:
            return here.export_value(value) if consumer is not None and consumer is not here else value

        server = ref(self.tracking_server_arn)
        return [
            iam.PolicyStatement(
                sid="UseMlflowTrackingServer", actions=["sagemaker-mlflow:*"], resources=[server]
            ),
            iam.PolicyStatement(
                sid="OpenMlflowUi",
                actions=["sagemaker:CreatePresignedMlflowTrackingServerUrl"],
                resources=[server],
            ),
            # MLflow clients upload and download artifacts themselves, straight to the artifact store.
            *self._artifact_statements(
                "MlflowClient", ref(self.artifact_bucket.bucket_arn), ref(self.key.key_arn)
            ),
        ]

    def grant_access(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` log runs, register prompts and models and open the MLflow UI on this server.

        ``sagemaker-mlflow:*`` on this server's ARN only (every MLflow REST call maps to one of those
        actions), ``sagemaker:CreatePresignedMlflowTrackingServerUrl`` for the UI, and read/write of the
        artifact store (the client writes artifacts to S3 itself) with its KMS key through S3.
        """
        grant: iam.Grant | None = None
        for statement in self.access_policy_statements():
            part = iam.Grant.add_to_principal(
                grantee=grantee,
                actions=statement.actions,
                resource_arns=statement.resources,
                conditions=statement.conditions or None,
            )
            grant = part if grant is None else grant.combine(part)
        assert grant is not None
        return grant

    # ---------------------------------------------------------------------------------------- private

    def _artifact_statements(
        self, sid_prefix: str, bucket_arn: str, key_arn: str
    ) -> list[iam.PolicyStatement]:
        objects = f"{bucket_arn}/{ARTIFACT_PREFIX}/*"
        return [
            iam.PolicyStatement(
                sid=f"{sid_prefix}ReadWriteArtifacts",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                resources=[objects],
            ),
            iam.PolicyStatement(
                sid=f"{sid_prefix}ListArtifacts",
                actions=["s3:ListBucket", "s3:GetBucketLocation"],
                resources=[bucket_arn],
            ),
            iam.PolicyStatement(
                sid=f"{sid_prefix}UseArtifactKeyThroughS3",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[key_arn],
                conditions=via_services("s3"),
            ),
        ]

    def _output(self, name: str, value: str, description: str) -> None:
        output = cdk.CfnOutput(self, name, value=value, description=description)
        # Stable output keys (TrackingServerArn ...) for scripts, CI and docs.
        output.override_logical_id(name)

    def _acknowledge(self, automatic_model_registration: bool) -> None:
        policy = self.role.node.find_child("DefaultPolicy")
        stack = cdk.Stack.of(self)
        cfn_bucket = self.artifact_bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        bucket_id = stack.resolve(stack.get_logical_id(cfn_bucket))
        findings = {
            f"Resource::<{bucket_id}.Arn>/{ARTIFACT_PREFIX}/*": (
                "MLflow names artifact objects by experiment and run ID, which exist only at run time; the "
                "wildcard is confined to this server's own bucket and prefix."
            )
        }
        if automatic_model_registration:
            reason = (
                "Automatic model registration creates one SageMaker model package group (and its "
                "versions) per MLflow registered model, named by the teams that register them; the "
                "actions are limited to the five registration calls in this account and region."
            )
            for kind in ("model-package-group", "model-package"):
                arn = f"arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:{kind}/*"
                findings[f"Resource::{arn}"] = reason
        for finding, reason in findings.items():
            cdk.Validations.of(policy).acknowledge(
                cdk.Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason)
            )
        cdk.Validations.of(cfn_bucket).acknowledge(
            cdk.Acknowledgment(
                id="NIST.800.53.R5-S3BucketReplicationEnabled",
                reason=(
                    "MLflow's artifact store (run artifacts, eval reports, model files): versioned, "
                    "KMS-encrypted, retained. Cross-region replication needs a destination bucket and key "
                    "in a second region, which the organisation's recovery plan chooses."
                ),
            )
        )

    def _validate(self, name: str, size: str, window: str, retention: int) -> None:
        def fail(field: str, why: str) -> ValueError:
            return ValueError(f"MlflowTracking {self.node.path}: {field}: {why}")

        if not isinstance(name, str) or not _SERVER_NAME_RE.match(name):
            raise fail("tracking_server_name", f"must be 1-256 letters, digits and '-', got {name!r}")
        if size not in SERVER_SIZES:
            raise fail("tracking_server_size", f"must be one of {', '.join(SERVER_SIZES)}, got {size!r}")
        if not isinstance(window, str) or not _WINDOW_RE.match(window):
            raise fail("weekly_maintenance_window_start", f"must look like 'Sun:03:00' (UTC), got {window!r}")
        if not isinstance(retention, int) or isinstance(retention, bool) or retention < 1:
            raise fail("access_log_retention", f"must be a whole number of days >= 1, got {retention!r}")
