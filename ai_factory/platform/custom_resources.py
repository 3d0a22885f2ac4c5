"""``secure_provider``: the CDK custom-resource ``Provider`` every factory construct puts its handler behind.

The framework function gets a KMS-encrypted, retained log group of its own and a role that may write only
that group (and, through the ``Provider``, invoke only the given handler); its nag findings are fixed or
acknowledged the same way wherever a construct needs a custom resource.

Example::

    handler = lambda_.Function(self, "Handler", ...)
    provider = secure_provider(
        self, handler, key=key, role_description="AI Factory: custom-resource framework of X",
        handler_noun="the handler function",
    )
    cdk.CustomResource(self, "Resource", service_token=provider.service_token, ...)
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from ai_factory.platform.functions import function_log_group, write_own_logs_statement
from ai_factory.platform.nag import acknowledge, harden_provider


def secure_provider(
    scope: Construct,
    on_event_handler: lambda_.IFunction,
    *,
    key: kms.IKey,
    role_description: str,
    handler_noun: str,
) -> cr.Provider:
    """A ``Provider`` (construct IDs ``ProviderLogs``, ``ProviderRole``, ``Provider`` under ``scope``) that
    relays CloudFormation events to ``on_event_handler``.

    :param key: KMS key of the framework's log group (one year retention, retained on delete).
    :param role_description: description of the framework function's role.
    :param handler_noun: how the IAM5 acknowledgement names the handler, e.g. "the handler function".
    """
    log_group = function_log_group(scope, "ProviderLogs", key=key, retention=logs.RetentionDays.ONE_YEAR)
    role = iam.Role(
        scope,
        "ProviderRole",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=role_description,
    )
    role.add_to_policy(write_own_logs_statement(log_group))
    provider = cr.Provider(
        scope,
        "Provider",
        on_event_handler=on_event_handler,
        framework_on_event_role=role,
        log_group=log_group,
    )
    harden_provider(provider)
    # The Provider grants lambda:InvokeFunction on the handler's ARN and ARN:* (its versions).
    handler_ref = cdk.Stack.of(scope).get_logical_id(
        on_event_handler.node.default_child  # type: ignore[arg-type]
    )
    acknowledge(
        role.node.find_child("DefaultPolicy"),
        {
            f"AwsSolutions-IAM5[Resource::<{handler_ref}.Arn>:*]": (
                f"The CDK custom-resource framework invokes {handler_noun} and any of its "
                "versions (the ':*' suffix); the grant names that one function."
            )
        },
    )
    return provider
