"""The one recipe for the factory's Lambda functions and their log groups.

Every function the factory creates runs Python 3.14 on arm64 with an explicit execution role (no
AWS-managed basic execution policy) and writes to a log group of its own, KMS-encrypted, with a finite
retention and retained on stack deletion. ``function_log_group`` makes that log group,
``write_own_logs_statement`` is the only logs permission its role needs, and ``hardened_function``
makes the function. X-Ray tracing and JSON log format are on unless a caller says why not.

Example::

    logs_group = function_log_group(self, "Logs", key=key, retention=logs.RetentionDays.ONE_YEAR)
    role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    role.add_to_policy(write_own_logs_statement(logs_group))
    fn = hardened_function(self, "Function", description="...", handler="pkg.handler.main",
                           code=lambda_.Code.from_asset(folder), role=role, log_group=logs_group)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

RUNTIME = lambda_.Runtime.PYTHON_3_14
"""The newest Python runtime (cdk-nag's AwsSolutions-L1 asks for the latest); runtime code stays valid
on 3.11, where the tests run."""
ARCHITECTURE = lambda_.Architecture.ARM_64


def function_log_group(
    scope: Construct, construct_id: str, *, key: kms.IKey, retention: logs.RetentionDays
) -> logs.LogGroup:
    """A function's own log group: encrypted with ``key``, kept ``retention``, retained on delete."""
    return logs.LogGroup(
        scope, construct_id, retention=retention, encryption_key=key, removal_policy=RemovalPolicy.RETAIN
    )


def write_own_logs_statement(log_group: logs.ILogGroup) -> iam.PolicyStatement:
    """The only CloudWatch Logs permission a function's role needs: write to its own log group."""
    return iam.PolicyStatement(
        sid="WriteOwnLogGroup",
        actions=["logs:CreateLogStream", "logs:PutLogEvents"],
        resources=[log_group.log_group_arn],
    )


def hardened_function(
    scope: Construct,
    construct_id: str,
    *,
    description: str,
    handler: str,
    code: lambda_.Code,
    role: iam.IRole,
    log_group: logs.ILogGroup,
    timeout: Duration,
    memory_size: int,
    environment: Mapping[str, str] | None = None,
    layers: Sequence[lambda_.ILayerVersion] | None = None,
    tracing: bool = True,
    json_logs: bool = True,
    **props: Any,
) -> lambda_.Function:
    """A Python 3.14 arm64 function with ``role`` (explicit, least privilege) logging to ``log_group``.

    :param tracing: X-Ray active tracing (its role then gets the two X-Ray actions, which need '*').
    :param json_logs: Lambda's JSON log format (structured system and application logs).
    :param props: further ``lambda_.Function`` options (dead-letter queue, destinations, retries).
    """
    return lambda_.Function(
        scope,
        construct_id,
        description=description,
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        handler=handler,
        code=code,
        layers=list(layers) if layers else None,
        role=role,
        environment=dict(environment) if environment is not None else None,
        timeout=timeout,
        memory_size=memory_size,
        tracing=lambda_.Tracing.ACTIVE if tracing else None,
        log_group=log_group,
        logging_format=lambda_.LoggingFormat.JSON if json_logs else None,
        **props,
    )
