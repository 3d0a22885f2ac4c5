"""``PromptPublication``: a feature's prompts published into its gateway's prompt view on every deploy.

Without it a new feature's canary (and every caller that names a prompt) gets ``404 prompt_not_found``
until someone runs ``ai-factory prompts publish``. The custom resource (``prompt_publisher.handler``)
merges the feature's prompt files, as validated at synth, into ``prompts.json`` in the gateway's prompts
bucket: a missing prompt gets version 1 with ``production`` pointing at it, new content becomes the next
version, and nothing the prompt registry decided (later versions, where aliases point) is undone.
Idempotent: the same prompts publish nothing. Delete leaves the view alone (versions are immutable and
may be pinned). ``docs/prompts.md`` describes the lifecycle.

One publisher function (and provider) per stack and gateway serves every feature in the stack; each
feature has its own ``Custom::AiFactoryPromptPublication``, which its canary depends on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import prompt_publisher
from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from ai_factory.constructs.gateway import prompt_view
from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from ai_factory.platform.custom_resources import secure_provider
from ai_factory.platform.functions import function_log_group, hardened_function, write_own_logs_statement
from ai_factory.platform.lambda_packaging import stage_asset
from ai_factory.platform.nag import acknowledge_custom_resource_handler

RESOURCE_TYPE = "Custom::AiFactoryPromptPublication"
HANDLER = "prompt_publisher.handler.on_event"
_SOURCE_DIR = Path(prompt_publisher.__file__).resolve().parent


def stage_prompt_publisher_asset(out_root: Path | None = None) -> Path:
    """A content-addressed folder with ``prompt_publisher/`` (standard library and boto3 only)."""
    return stage_asset(
        "prompt-publisher-", {"prompt_publisher": sorted(_SOURCE_DIR.glob("*.py"))}, out_root=out_root
    )


class PromptPublication(Construct):
    """Publishes ``prompts`` (view entries with a ``name``) of ``team``/``feature`` into ``gateway``'s view.

    :param key: KMS key of the publisher's log groups (when this is the stack's first publication).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        gateway: LlmGateway,
        team: str,
        feature: str,
        prompts: Sequence[Mapping[str, Any]],
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        provider_token = _shared_publisher(cdk.Stack.of(self), gateway, key)
        self.resource = cdk.CustomResource(
            self,
            "Resource",
            service_token=provider_token,
            resource_type=RESOURCE_TYPE,
            properties={
                "Bucket": gateway.prompts_bucket.bucket_name,
                "Key": prompt_view.PROMPT_VIEW_KEY,
                "Team": team,
                "Feature": feature,
                # A JSON string: CloudFormation hands custom resources every scalar as a string.
                "Prompts": json.dumps([dict(p) for p in prompts], sort_keys=True),
            },
        )


def _shared_publisher(stack: cdk.Stack, gateway: LlmGateway, key: kms.IKey) -> str:
    """The service token of the stack's publisher for ``gateway`` (created with the first publication)."""
    construct_id = f"AiFactoryPromptPublisher{gateway.node.addr[:8]}"
    existing = stack.node.try_find_child(construct_id)
    publisher = (
        existing
        if isinstance(existing, PromptPublisher)
        else PromptPublisher(stack, construct_id, gateway=gateway, key=key)
    )
    return publisher.service_token


class PromptPublisher(Construct):
    """The function (and custom-resource provider) that publishes a stack's feature prompts into
    ``gateway``'s view: it may read the view object and write it, nothing else in the bucket.

    :param key: KMS key of its log groups.
    """

    def __init__(self, scope: Construct, construct_id: str, *, gateway: LlmGateway, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        log_group = function_log_group(self, "Logs", key=key, retention=logs.RetentionDays.ONE_YEAR)
        statements = [
            write_own_logs_statement(log_group),
            *prompt_view.read_statements(gateway.prompts_bucket, gateway.key),
        ]
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="AI Factory: publishes the stack's feature prompts into the gateway's prompt view",
            inline_policies={"ReadPromptView": iam.PolicyDocument(statements=statements)},
        )
        prompt_view.grant_publish(gateway.prompts_bucket, gateway.key, role)
        self.function = hardened_function(
            self,
            "Function",
            description="AI Factory: publishes feature prompts into the gateway's prompt view",
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(stage_prompt_publisher_asset())),
            role=role,
            timeout=Duration.seconds(60),
            memory_size=256,
            log_group=log_group,
            tracing=False,  # runs a few times per deployment; its log lines say enough
        )
        acknowledge_custom_resource_handler(
            self.function, what="publishes the stack's feature prompts into the prompt view"
        )
        provider = secure_provider(
            self,
            self.function,
            key=key,
            role_description="AI Factory: custom-resource framework of the prompt publisher",
            handler_noun="the prompt publisher function",
        )
        self.service_token: str = provider.service_token
