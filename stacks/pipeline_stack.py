"""The delivery pipeline: CDK Pipelines on CodePipeline + CodeBuild, with the eval gate.

Source (CodeConnections: GitHub, GitLab, Bitbucket) -> Synth (``make test``, then ``make synth`` with
the cdk-nag packs) -> self-mutation and asset publishing -> Staging (the factory stacks) ->
eval gate against staging (every suite whose prompt, suite file or model route changed since the
commit production runs) -> manual approval -> Production (same stacks) -> promote the evaluated
prompt versions to ``production`` (the registry refuses any without a passing eval run) and record
the deployed commit. ``docs/delivery.md`` walks a prompt change through it.

The pipeline is part of the app only when the context ``ai-factory:pipeline`` is set (in ``cdk.json``
or ``-c``), so ``make synth`` on a fresh clone needs no repository or connection::

    "ai-factory:pipeline": {"repo": "my-org/ai-factory", "branch": "main",
                            "connectionArn": "arn:aws:codeconnections:us-east-1:111122223333:connection/...",
                            "staging": {"account": "111122223333", "region": "us-east-1"},
                            "production": {"account": "111122223333", "region": "us-east-1"},
                            "evalApiKeySecret": "ai-factory/staging/eval-api-key"}

Nothing in it needs Docker: the Lambda assets are plain directories and CodeBuild runs unprivileged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aws_cdk as cdk
from aws_cdk import Aws, Duration, RemovalPolicy, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from ai_factory.constructs.mlflow_tracking import MlflowTracking
from ai_factory.platform.secure_defaults import (
    access_log_bucket,
    encrypted_bucket,
    logs_kms_key,
    send_access_logs,
    via_services,
)
from aif_gateway import contract
from stacks.factory import build_factory

CONTEXT_KEY = "ai-factory:pipeline"
DEFAULT_EVAL_SECRET = "ai-factory/staging/eval-api-key"
_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_CONNECTION_RE = re.compile(
    r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:\d{12}:connection/.+$"
)
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")

# The same commands run locally, in CodeBuild and in .github/workflows/eval-gate.yml.
SETUP = "make setup"
AIF = ".venv/bin/ai-factory"


def promote_all(alias: str) -> list[str]:
    """Commands: register every prompt of the commit, then point ``alias`` at each one's version (a
    no-op where it already points; for ``production`` the registry refuses a version without a passing
    eval run). With ``AIF_PROMPT_VIEW_URI`` set, each promotion also publishes the gateway's view."""
    return [
        f"{AIF} prompts register features --format json > registered.json",
        ".venv/bin/python -c \"import json; [print(r['name'], r['version']) for r in "
        "json.load(open('registered.json')) if r.get('version') is not None]\" > versions.txt",
        f'while read -r name version; do {AIF} prompts promote "$name" --version "$version" --to {alias} '
        '--git-commit "$CODEBUILD_RESOLVED_SOURCE_VERSION" || exit 1; done < versions.txt',
    ]


@dataclass(frozen=True)
class PipelineSettings:
    """What the pipeline needs from the context ``ai-factory:pipeline`` (see the module docstring)."""

    repo: str
    connection_arn: str
    branch: str = "main"
    staging: cdk.Environment | None = None  # None: the pipeline's own account and region
    production: cdk.Environment | None = None
    eval_api_key_secret: str = DEFAULT_EVAL_SECRET
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_context(cls, scope: Construct) -> PipelineSettings | None:
        """The settings, or None when the context is not set. Raises ``ValueError`` naming the field."""
        raw = scope.node.try_get_context(CONTEXT_KEY)
        if raw is None or raw == "":
            return None
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)  # `cdk synth -c ai-factory:pipeline='{"repo": ...}'` gives a string
            except ValueError as exc:
                raise ValueError(f"Context '{CONTEXT_KEY}' must be a JSON object: {exc}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Any) -> PipelineSettings:
        def fail(fld: str, why: str) -> ValueError:
            return ValueError(f"Context '{CONTEXT_KEY}': field '{fld}': {why}")

        if not isinstance(raw, Mapping):
            raise ValueError(f"Context '{CONTEXT_KEY}' must be an object, got {raw!r}")
        known = {"repo", "branch", "connectionArn", "staging", "production", "evalApiKeySecret"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise fail(unknown[0], f"unknown; allowed: {', '.join(sorted(known))}")
        repo, arn = raw.get("repo"), raw.get("connectionArn")
        if not isinstance(repo, str) or not _REPO_RE.match(repo):
            raise fail("repo", f"must be 'owner/name', got {repo!r}")
        if not isinstance(arn, str) or not _CONNECTION_RE.match(arn):
            raise fail("connectionArn", f"must be a CodeConnections connection ARN, got {arn!r}")
        branch = raw.get("branch", "main")
        if not isinstance(branch, str) or not branch.strip():
            raise fail("branch", f"must be a branch name, got {branch!r}")
        secret = raw.get("evalApiKeySecret", DEFAULT_EVAL_SECRET)
        if not isinstance(secret, str) or not secret.strip():
            raise fail("evalApiKeySecret", f"must be a Secrets Manager secret name, got {secret!r}")

        def env(name: str) -> cdk.Environment | None:
            value = raw.get(name)
            if value is None:
                return None
            if not isinstance(value, Mapping) or set(value) - {"account", "region"}:
                raise fail(name, "must be an object with 'account' and 'region'")
            account, region = value.get("account"), value.get("region")
            if not isinstance(account, str) or not _ACCOUNT_RE.match(account):
                raise fail(f"{name}.account", f"must be a 12-digit account ID, got {account!r}")
            if not isinstance(region, str) or not _REGION_RE.match(region):
                raise fail(f"{name}.region", f"must be a region such as us-east-1, got {region!r}")
            return cdk.Environment(account=account, region=region)

        return cls(
            repo=repo,
            connection_arn=arn,
            branch=branch,
            staging=env("staging"),
            production=env("production"),
            eval_api_key_secret=secret,
        )


class FactoryStage(cdk.Stage):
    """One environment of the factory: the same stacks as the app (``stacks.factory.build_factory``):
    gateway, governance, one stack per product team with its canary, and observability.

    :param invocation_logging: manage Bedrock model invocation logging in this stage. It is one setting
        per account and region, so when two stages share an account and region only one may own it
        (``PipelineStack`` gives it to production). Default: the context flag (default true).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        team_modules: Sequence[str],
        invocation_logging: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.factory = build_factory(
            self, team_modules=team_modules, label=construct_id, invocation_logging=invocation_logging
        )
        self.gateway_stack = self.factory.gateway
        self.governance_stack = self.factory.governance

    def output(self, name: str) -> cdk.CfnOutput:
        """One of the gateway construct's outputs (``ApiUrl``, ``PromptViewUri`` ...)."""
        child = self.gateway_stack.gateway.node.find_child(name)
        assert isinstance(child, cdk.CfnOutput)
        return child


class PipelineStack(cdk.Stack):
    """The factory's delivery pipeline (see the module docstring).

    :param settings: repository, connection and stage environments.
    :param team_modules: the product teams' packages deployed in each stage.
    :param tracking: the MLflow tracking server the eval and promotion steps record to (its ARN is
        their ``MLFLOW_TRACKING_URI``). Default: none (then ``MLFLOW_TRACKING_URI`` must be supplied
        another way, e.g. a pipeline variable; without it the eval runs are logged nowhere durable).
    :param log_retention: CodeBuild log retention. Default one year.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: PipelineSettings,
        team_modules: Sequence[str],
        tracking: MlflowTracking | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("description", "AI Factory: delivery pipeline with the eval gate")
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.key = logs_kms_key(self, "Key", "AI Factory pipeline: artifacts and build logs")
        self.artifact_bucket = self._artifact_bucket()
        self.log_group = logs.LogGroup(
            self,
            "BuildLogs",
            retention=log_retention,
            encryption_key=self.key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # The commit production runs: the base the eval gate diffs against.
        self.deployed_commit = ssm.StringParameter(
            self,
            "ProductionCommit",
            description="AI Factory: the git commit the production stage last deployed (eval-gate base)",
            string_value="none",
        )

        source = pipelines.CodePipelineSource.connection(
            settings.repo,
            settings.branch,
            connection_arn=settings.connection_arn,
            # A full clone (not a zip) so the eval gate can `git diff` against the deployed commit.
            code_build_clone_output=True,
        )
        build_environment = codebuild.BuildEnvironment(
            build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
            compute_type=codebuild.ComputeType.MEDIUM,
            privileged=False,
        )
        synth = pipelines.CodeBuildStep(
            "Synth",
            input=source,
            # The Makefile installs everything, pinned, from the repo's own files.
            commands=["make test", "make synth"],
            primary_output_directory="cdk.out",
            env={"CI": "true"},
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            synth=synth,
            # Our own bucket and key (rotation on, access-logged) instead of the generated ones.
            artifact_bucket=self.artifact_bucket,
            docker_enabled_for_synth=False,
            docker_enabled_for_self_mutation=False,
            publish_assets_in_parallel=False,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=build_environment,
                # The versions the Makefile and tests are pinned for (standard:7.0 offers several).
                partial_build_spec=codebuild.BuildSpec.from_object(
                    {"phases": {"install": {"runtime-versions": {"python": "3.11", "nodejs": "20"}}}}
                ),
                logging=codebuild.LoggingOptions(
                    cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=self.log_group)
                ),
                timeout=Duration.minutes(60),
            ),
        )

        mlflow_env: dict[str, str] = {}
        mlflow_statements: list[iam.PolicyStatement] = []
        if tracking is not None:
            mlflow_statements = tracking.access_policy_statements(consumer=self)
            mlflow_env["MLFLOW_TRACKING_URI"] = mlflow_statements[0].resources[0]  # the server ARN
        commit_param = self.deployed_commit.parameter_name

        staging = FactoryStage(
            self,
            "Staging",
            team_modules=team_modules,
            env=settings.staging,
            # Invocation logging is one setting per account and region: production owns it, staging
            # only when it deploys somewhere else.
            invocation_logging=None if _different_places(settings.staging, settings.production) else False,
        )
        eval_gate = pipelines.CodeBuildStep(
            "EvalGate",
            input=source,
            commands=[
                SETUP,
                f"BASE=$(aws ssm get-parameter --name {commit_param} --query Parameter.Value --output text)",
                'if [ "$BASE" = none ] || ! git cat-file -e "$BASE^{commit}"; then BASE=HEAD~1; fi',
                # New prompt versions first, so the staging gateway serves what the suites evaluate.
                *promote_all("staging"),
                f'{AIF} eval changed --base "$BASE" | tee changed-suites.txt',
                f'xargs -r {AIF} eval --target gateway --gateway-url "$AIF_GATEWAY_URL" '
                "--api-key-env AIF_API_KEY --prompt-alias staging --out eval-results < changed-suites.txt",
            ],
            env={"MLFLOW_DISABLE_TELEMETRY": "true", **mlflow_env},
            env_from_cfn_outputs={
                contract.GATEWAY_URL_ENV: staging.output("ApiUrl"),
                contract.PROMPT_VIEW_URI_ENV: staging.output("PromptViewUri"),
            },
            build_environment=codebuild.BuildEnvironment(
                environment_variables={
                    contract.API_KEY_ENV: codebuild.BuildEnvironmentVariable(
                        type=codebuild.BuildEnvironmentVariableType.SECRETS_MANAGER,
                        value=settings.eval_api_key_secret,
                    )
                }
            ),
            role_policy_statements=[
                *mlflow_statements,
                self._read_commit_statement(),
                *self._publish_view_statements(settings.staging),
                # `ai-factory eval` publishes GatePassRate per suite (docs/observability.md).
                iam.PolicyStatement(
                    sid="PublishGatePassRate",
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],  # PutMetricData has no resource-level permissions
                    conditions={"StringEquals": {"cloudwatch:namespace": contract.GATE_PASS_RATE.namespace}},
                ),
            ],
        )
        self.pipeline.add_stage(staging, post=[eval_gate])

        production = FactoryStage(self, "Production", team_modules=team_modules, env=settings.production)
        approval = pipelines.ManualApprovalStep(
            "PromoteToProduction",
            comment=(
                "The eval gate passed against staging. Review the eval runs (MLflow experiment "
                "ai-factory/evals) and the staging gateway, then approve to deploy production."
            ),
        )
        promote = pipelines.CodeBuildStep(
            "PromotePrompts",
            input=source,
            commands=[
                SETUP,
                # The registry's gate refuses any version without a passing eval run.
                *promote_all("production"),
                f"aws ssm put-parameter --name {commit_param} --type String --overwrite "
                "--value $CODEBUILD_RESOLVED_SOURCE_VERSION",
            ],
            env={"MLFLOW_DISABLE_TELEMETRY": "true", **mlflow_env},
            env_from_cfn_outputs={contract.PROMPT_VIEW_URI_ENV: production.output("PromptViewUri")},
            role_policy_statements=[
                *mlflow_statements,
                self._read_commit_statement(),
                iam.PolicyStatement(
                    sid="RecordProductionCommit",
                    actions=["ssm:PutParameter"],
                    resources=[self.deployed_commit.parameter_arn],
                ),
                *self._publish_view_statements(settings.production),
            ],
        )
        self.pipeline.add_stage(production, pre=[approval], post=[promote])
        self.pipeline.build_pipeline()
        self._acknowledge()

    # ---------------------------------------------------------------------------------------- private

    def _artifact_bucket(self) -> s3.Bucket:
        access_logs = access_log_bucket(
            self,
            "ArtifactAccessLogs",
            expiry_days=365,
            reason=(
                "The destination of the artifact bucket's access logs; logging it would need another bucket."
            ),
        )
        bucket = encrypted_bucket(
            self,
            "Artifacts",
            key=self.key,
            lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=Duration.days(30))],
        )
        send_access_logs(bucket, access_logs, prefix="artifacts/", sid="S3ServerAccessLogsFromArtifactBucket")
        cdk.Validations.of(bucket).acknowledge(
            cdk.Acknowledgment(
                id="NIST.800.53.R5-S3BucketReplicationEnabled",
                reason=(
                    "Pipeline artifacts are intermediate build outputs, rebuilt from the source repository "
                    "on every run (old versions expire after 30 days); nothing here needs a "
                    "second-region copy."
                ),
            )
        )
        return bucket

    def _read_commit_statement(self) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="ReadProductionCommit",
            actions=["ssm:GetParameter"],
            resources=[self.deployed_commit.parameter_arn],
        )

    def _publish_view_statements(self, env: cdk.Environment | None) -> list[iam.PolicyStatement]:
        """Write ``prompts.json`` into the stage's gateway bucket.

        A stage is a separate cloud assembly, so its bucket name cannot be referenced here: the grant
        is the object name ``prompts.json`` in the stage's account, with the key used through S3 there.
        """
        account = (env.account if env else None) or Aws.ACCOUNT_ID
        region = (env.region if env else None) or Aws.REGION
        return [
            iam.PolicyStatement(
                sid="PublishPromptView",
                actions=["s3:PutObject"],
                resources=[f"arn:{Aws.PARTITION}:s3:::*/prompts.json"],
                conditions={"StringEquals": {"s3:ResourceAccount": account}},
            ),
            iam.PolicyStatement(
                sid="EncryptPromptViewThroughS3",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[f"arn:{Aws.PARTITION}:kms:{region}:{account}:key/*"],
                conditions=via_services("s3", region=region),
            ),
        ]

    def _acknowledge(self) -> None:
        """cdk-nag IAM5 findings on the pipeline's policies, each matched to the reason it exists.

        CDK Pipelines generates most of these policies. Each wildcard is rendered the way cdk-nag names
        it and acknowledged only if it matches a known category below; anything else still fails synth.
        """
        stack = cdk.Stack.of(self)
        for construct in self.pipeline.node.find_all():
            if not isinstance(construct, iam.CfnPolicy):
                continue
            document = stack.resolve(construct.policy_document)
            for statement in document.get("Statement", []):
                for kind in ("Action", "Resource"):
                    values = statement.get(kind, [])
                    for value in values if isinstance(values, list) else [values]:
                        rendered = _nag_render(value)
                        if "*" not in rendered:
                            continue
                        reason = _wildcard_reason(kind, rendered)
                        if reason is not None:
                            cdk.Validations.of(construct).acknowledge(
                                cdk.Acknowledgment(id=f"AwsSolutions-IAM5[{kind}::{rendered}]", reason=reason)
                            )


def _different_places(a: cdk.Environment | None, b: cdk.Environment | None) -> bool:
    """Whether two stage environments are surely different accounts or regions (None: the pipeline's)."""
    where_a = (a.account, a.region) if a is not None else (None, None)
    where_b = (b.account, b.region) if b is not None else (None, None)
    return None not in (*where_a, *where_b) and where_a != where_b


def _nag_render(value: Any) -> str:
    """An IAM policy value as cdk-nag prints it in finding IDs (``<Logical.Arn>``, ``<AWS::Region>``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return f"<{arg}>"
        if fn == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>"
        if fn == "Fn::Join":
            return str(arg[0]).join(_nag_render(part) for part in arg[1])
        if fn == "Fn::ImportValue":
            return _nag_render(arg)
    return json.dumps(value, sort_keys=True)


# (kind, pattern, reason): the wildcards the pipeline's policies may contain.
_WILDCARD_REASONS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "Action",
        re.compile(
            r"^(s3:(GetObject|GetBucket|List|DeleteObject|Abort)\*|kms:(GenerateDataKey|ReEncrypt)\*)$"
        ),
        "CDK Pipelines grants these action groups (Bucket.grantReadWrite, Key.grantEncryptDecrypt) on the "
        "pipeline's own artifact bucket and key only; CodePipeline and CodeBuild need the multipart, "
        "versioned-object and re-encrypt variants they cover.",
    ),
    (
        "Resource",
        re.compile(r"^<Artifacts[0-9A-F]{8}\.Arn>/\*$"),
        "CodePipeline names artifact objects per execution and action: the roles may use any object, but "
        "only in the pipeline's own KMS-encrypted artifact bucket.",
    ),
    (
        "Resource",
        re.compile(r"^arn:<AWS::Partition>:(logs:.+:log-group:/aws/codebuild/|codebuild:.+:report-group/)"),
        "CodeBuild's default grant for each project: its own /aws/codebuild/<project> log streams and "
        "<project>-* report groups (for the shared asset-publishing role: every asset project's). Build "
        "output goes to the pipeline's KMS-encrypted log group with its retention.",
    ),
    (
        "Resource",
        re.compile(r"^\*$"),
        "CDK Pipelines: the self-mutation and asset roles call cloudformation:DescribeStacks and "
        "s3:ListAllMyBuckets-style discovery actions that support no resource-level permissions; "
        "everything they change goes through the CDK bootstrap roles. The eval gate's "
        "cloudwatch:PutMetricData (GatePassRate) has no resource-level permissions either; its "
        "cloudwatch:namespace condition limits it to the factory's namespace.",
    ),
    (
        "Resource",
        re.compile(r"^arn:\*:iam::.+:role/\*$"),
        "CDK Pipelines' self-mutation assumes the CDK bootstrap roles (cdk-<qualifier>-*-role), which carry "
        "their own trust and permissions; it is how `cdk deploy` works from CI.",
    ),
    (
        "Action",
        re.compile(r"^sagemaker-mlflow:\*$"),
        "MlflowTracking.grant_access: every MLflow REST call maps to one sagemaker-mlflow action (logging "
        "runs, registering prompts, reading the registry); the statement is limited to the factory's "
        "tracking server ARN.",
    ),
    (
        "Resource",
        re.compile(r"/mlflow/\*$"),
        "MLflow clients write run artifacts (eval reports) straight to the tracking server's artifact "
        "store; object names contain run IDs known only at run time; limited to that bucket's mlflow/ "
        "prefix.",
    ),
    (
        "Resource",
        re.compile(r"^arn:<AWS::Partition>:(s3:::\*/prompts\.json|kms:.+:key/\*)$"),
        "A pipeline stage is a separate cloud assembly, so its gateway bucket and key cannot be named here: "
        "the steps may write only objects called prompts.json in buckets of the stage's account "
        "(s3:ResourceAccount) and use keys only through S3 in that account and region.",
    ),
)


def _wildcard_reason(kind: str, rendered: str) -> str | None:
    for want, pattern, reason in _WILDCARD_REASONS:
        if want == kind and pattern.search(rendered):
            return reason
    return None
