"""``SageMakerEndpoint``: host a registered custom model on a SageMaker real-time endpoint.

CfnModel -> CfnEndpointConfig (KMS-encrypted storage) -> CfnEndpoint, with an execution role that may
pull only its image and read only its model artifact. Add the endpoint to the model catalog as
``provider: sagemaker`` (``endpoint_name`` + ``content_handler``) and the gateway routes to it with the
same keys, metering, budgets, guardrail and audit as Bedrock models (``docs/mlops.md``).

Example (an MLflow model, served by the image ``mlflow sagemaker build-and-push-container`` builds)::

    endpoint = SageMakerEndpoint(
        self, "TicketClassifier",
        endpoint_name="aif-ticket-classifier",
        image_uri="111122223333.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.17.2",
        model_data_url="s3://ai-factory-models/ticket-classifier/v3/model.tar.gz",
        environment={"MLFLOW_DEPLOYMENT_FLAVOR_NAME": "python_function"},
    )
    endpoint.grant_invoke(gateway.function)   # LlmGateway does this itself for catalog endpoints
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct, IConstruct

from ai_factory.platform.secure_defaults import via_services

_ENDPOINT_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>(:<tag>|@<digest>)
_ECR_IMAGE_RE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
    r"(?P<repository>[a-z0-9._/-]+)(:[\w.-]+|@sha256:[0-9a-f]{64})$"
)
_S3_URL_RE = re.compile(r"^s3://(?P<bucket>[a-z0-9.-]{3,63})/(?P<key>.+)$")


class SageMakerEndpoint(Construct):
    """A single-variant real-time endpoint for one model image (+ optional model artifact).

    Safe defaults: network isolation on (the container makes no outbound calls); endpoint storage
    encrypted with a customer-managed KMS key (rotation on); an execution role limited to pulling its
    ECR image, reading its ``model.tar.gz`` and writing its own endpoint logs and metrics.

    :param endpoint_name: the SageMaker endpoint name (what the catalog's ``endpoint_name`` names).
    :param image_uri: an ECR image URI in this partition
        (``<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>``).
    :param model_data_url: optional ``s3://bucket/key`` of the model artifact (``model.tar.gz``).
    :param model_data_key: the KMS key that encrypts the artifact object, if it is not S3-managed.
    :param environment: container environment variables.
    :param instance_type: default ``ml.m5.large``. :param initial_instance_count: default 1.
    :param encryption_key: KMS key for the endpoint's storage volume. Default: a new key.
    :param subnet_ids / security_group_ids: run the model in your VPC (both or neither).
    :param network_isolation: default True.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        image_uri: str,
        model_data_url: str | None = None,
        model_data_key: kms.IKey | None = None,
        environment: Mapping[str, str] | None = None,
        instance_type: str = "ml.m5.large",
        initial_instance_count: int = 1,
        encryption_key: kms.IKey | None = None,
        subnet_ids: Sequence[str] | None = None,
        security_group_ids: Sequence[str] | None = None,
        network_isolation: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        image = self._validate(
            endpoint_name,
            image_uri,
            model_data_url,
            instance_type,
            initial_instance_count,
            subnet_ids,
            security_group_ids,
        )
        self.endpoint_name = endpoint_name
        self.key: kms.IKey = encryption_key or kms.Key(
            self,
            "Key",
            description=f"AI Factory SageMaker endpoint {endpoint_name}: storage volume",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker endpoint {endpoint_name}: model execution role",
        )
        partition = Aws.PARTITION
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PullModelImage",
                actions=[
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                resources=[
                    f"arn:{partition}:ecr:{image['region']}:{image['account']}:repository/{image['repository']}"
                ],
            )
        )
        # ECR's token call has no resource-level permissions.
        self.role.add_to_policy(
            iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"])
        )
        if model_data_url is not None:
            match = _S3_URL_RE.match(model_data_url)
            assert match is not None
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="ReadModelArtifact",
                    actions=["s3:GetObject"],
                    resources=[f"arn:{partition}:s3:::{match['bucket']}/{match['key']}"],
                )
            )
            if model_data_key is not None:
                self.role.add_to_policy(
                    iam.PolicyStatement(
                        sid="DecryptModelArtifactThroughS3",
                        actions=["kms:Decrypt"],
                        resources=[model_data_key.key_arn],
                        conditions=via_services("s3"),
                    )
                )
        log_group = (
            f"arn:{partition}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:"
            f"/aws/sagemaker/Endpoints/{endpoint_name}"
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteEndpointLogs",
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                resources=[log_group, f"{log_group}:log-stream:*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PublishEndpointMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints*"}},
            )
        )

        container = sagemaker.CfnModel.ContainerDefinitionProperty(
            image=image_uri,
            model_data_url=model_data_url,
            environment=dict(environment) if environment else None,
        )
        vpc_config = (
            sagemaker.CfnModel.VpcConfigProperty(
                subnets=list(subnet_ids), security_group_ids=list(security_group_ids or [])
            )
            if subnet_ids
            else None
        )
        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            primary_container=container,
            enable_network_isolation=network_isolation,
            vpc_config=vpc_config,
        )
        policy = self.role.node.find_child("DefaultPolicy")
        self.model.node.add_dependency(policy)  # SageMaker checks the role's access at creation
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            kms_key_id=self.key.key_arn,
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name="AllTraffic",
                    model_name=self.model.attr_model_name,
                    initial_instance_count=initial_instance_count,
                    instance_type=instance_type,
                    initial_variant_weight=1.0,
                )
            ],
        )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
        )
        self.endpoint_arn: str = self.endpoint.ref  # Ref of AWS::SageMaker::Endpoint is its ARN
        self._acknowledge(policy, vpc=vpc_config is not None, endpoint_name=endpoint_name)

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """``sagemaker:InvokeEndpoint`` on this endpoint only."""
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=["sagemaker:InvokeEndpoint"], resource_arns=[self.endpoint_arn]
        )

    def _acknowledge(self, policy: IConstruct, *, vpc: bool, endpoint_name: str) -> None:
        log_group = (
            "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/Endpoints/"
            f"{endpoint_name}:log-stream:*"
        )
        for finding, reason in {
            "Resource::*": (
                "ecr:GetAuthorizationToken and cloudwatch:PutMetricData support no resource-level "
                "permissions; PutMetricData is limited to SageMaker endpoint namespaces by condition."
            ),
            f"Resource::{log_group}": "SageMaker names the endpoint's log streams per instance at run time.",
        }.items():
            cdk.Validations.of(policy).acknowledge(
                cdk.Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason)
            )
        if not vpc:
            cdk.Validations.of(self.model).acknowledge(
                cdk.Acknowledgment(
                    id="AwsSolutions-SM1",
                    reason=(
                        "Network isolation is on: the container has no network access at all. Pass "
                        "subnet_ids and security_group_ids to run it in a VPC instead."
                    ),
                )
            )

    def _validate(
        self,
        endpoint_name: str,
        image_uri: str,
        model_data_url: str | None,
        instance_type: str,
        count: int,
        subnet_ids: Sequence[str] | None,
        security_group_ids: Sequence[str] | None,
    ) -> dict[str, str]:
        def fail(fld: str, why: str) -> ValueError:
            return ValueError(f"SageMakerEndpoint {self.node.path}: {fld}: {why}")

        if not isinstance(endpoint_name, str) or not _ENDPOINT_NAME_RE.match(endpoint_name):
            raise fail("endpoint_name", f"must be 1-63 letters, digits and '-', got {endpoint_name!r}")
        match = _ECR_IMAGE_RE.match(image_uri) if isinstance(image_uri, str) else None
        if match is None:
            raise fail(
                "image_uri",
                "must be an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>), "
                f"got {image_uri!r}",
            )
        if model_data_url is not None and not _S3_URL_RE.match(model_data_url):
            raise fail("model_data_url", f"must be s3://bucket/key, got {model_data_url!r}")
        if not isinstance(instance_type, str) or not instance_type.startswith("ml."):
            raise fail("instance_type", f"must be a SageMaker instance type (ml.*), got {instance_type!r}")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise fail("initial_instance_count", f"must be a whole number >= 1, got {count!r}")
        if bool(subnet_ids) != bool(security_group_ids):
            raise fail("subnet_ids", "give subnet_ids and security_group_ids together")
        return {k: match[k] for k in ("account", "region", "repository")}
