"""The gateway's Bedrock Guardrail: content filters and PII actions, and an immutable version per policy.

The gateway applies it to every prompt and answer (``bedrock:ApplyGuardrail``), pinned to the version
its stack creates. Each policy change creates a new version and CloudFormation deletes the superseded
one once the update has succeeded (after the function points at the new version), so versions never
pile up against Bedrock's per-guardrail version quota and stop deploys; a failed update rolls back to
the old version, which is deleted only in the successful update's cleanup.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_bedrock as bedrock
from aws_cdk import aws_iam as iam
from constructs import Construct

from ai_factory.platform.name_prefix import prefixed_unique_name

# Content filter strengths (input, output). PROMPT_ATTACK only applies to input.
DEFAULT_CONTENT_FILTERS: dict[str, tuple[str, str]] = {
    "HATE": ("HIGH", "HIGH"),
    "INSULTS": ("HIGH", "HIGH"),
    "SEXUAL": ("HIGH", "HIGH"),
    "VIOLENCE": ("HIGH", "HIGH"),
    "MISCONDUCT": ("HIGH", "HIGH"),
    "PROMPT_ATTACK": ("HIGH", "NONE"),
}
# PII in prompts and answers: personal contact data is masked, secrets and card numbers are refused.
DEFAULT_PII_ACTIONS: dict[str, str] = {
    "EMAIL": "ANONYMIZE",
    "PHONE": "ANONYMIZE",
    "NAME": "ANONYMIZE",
    "ADDRESS": "ANONYMIZE",
    "CREDIT_DEBIT_CARD_NUMBER": "BLOCK",
    "AWS_ACCESS_KEY": "BLOCK",
    "AWS_SECRET_KEY": "BLOCK",
}
BLOCKED_INPUT_MESSAGE = (
    "This request was blocked by the AI Factory guardrail (content or sensitive-data policy). "
    "Rephrase it without the flagged content."
)
BLOCKED_OUTPUT_MESSAGE = (
    "The model's answer was blocked by the AI Factory guardrail (content or sensitive-data policy)."
)
# Contextual grounding (score thresholds, 0..0.99): an answer grounded in its sources below GROUNDING, or
# relevant to the question below RELEVANCE, is blocked. It applies only to requests whose content is
# qualified ``grounding_source`` and ``query`` (chat ``retrieval`` with ``grounding_check``, docs/rag.md).
DEFAULT_GROUNDING_THRESHOLDS: dict[str, float] = {"GROUNDING": 0.75, "RELEVANCE": 0.5}
FILTER_STRENGTHS = ("NONE", "LOW", "MEDIUM", "HIGH")
PII_ACTIONS = ("ANONYMIZE", "BLOCK")


def validate_policy(
    filters: Mapping[str, tuple[str, str]],
    pii_actions: Mapping[str, str],
    fail: Callable[[str, str], Exception],
) -> None:
    """Raise ``fail(field, why)`` for a filter strength or PII action Bedrock does not accept."""
    for kind, strengths in filters.items():
        if not (
            isinstance(strengths, tuple | list)
            and len(strengths) == 2
            and all(s in FILTER_STRENGTHS for s in strengths)
        ):
            raise fail(
                f"guardrail_content_filters[{kind!r}]",
                f"must be (input, output) strengths from {FILTER_STRENGTHS}, got {strengths!r}",
            )
    for kind, action in pii_actions.items():
        if action not in PII_ACTIONS:
            raise fail(f"guardrail_pii_actions[{kind!r}]", f"must be ANONYMIZE or BLOCK, got {action!r}")


def build_guardrail(
    scope: Construct, filters: Mapping[str, tuple[str, str]], pii_actions: Mapping[str, str]
) -> tuple[bedrock.CfnGuardrail, bedrock.CfnGuardrailVersion]:
    """The guardrail (``Guardrail``) and its retained version (``GuardrailVersion``) in ``scope``."""
    guardrail = bedrock.CfnGuardrail(
        scope,
        "Guardrail",
        name=prefixed_unique_name(scope, max_length=50),  # unique in the account (docs/deploy.md)
        description="AI Factory gateway guardrail: harmful content, prompt attacks and PII",
        blocked_input_messaging=BLOCKED_INPUT_MESSAGE,
        blocked_outputs_messaging=BLOCKED_OUTPUT_MESSAGE,
        content_policy_config=bedrock.CfnGuardrail.ContentPolicyConfigProperty(
            filters_config=[
                bedrock.CfnGuardrail.ContentFilterConfigProperty(
                    type=kind, input_strength=strengths[0], output_strength=strengths[1]
                )
                for kind, strengths in sorted(filters.items())
            ]
        ),
        sensitive_information_policy_config=bedrock.CfnGuardrail.SensitiveInformationPolicyConfigProperty(
            pii_entities_config=[
                bedrock.CfnGuardrail.PiiEntityConfigProperty(type=kind, action=action)
                for kind, action in sorted(pii_actions.items())
            ]
        ),
        contextual_grounding_policy_config=bedrock.CfnGuardrail.ContextualGroundingPolicyConfigProperty(
            filters_config=[
                bedrock.CfnGuardrail.ContextualGroundingFilterConfigProperty(type=kind, threshold=threshold)
                for kind, threshold in sorted(DEFAULT_GROUNDING_THRESHOLDS.items())
            ]
        ),
    )
    # Versions are immutable snapshots; a policy change gets a new version (the description carries
    # the policy hash, so CloudFormation replaces the resource) and the old one is pruned in the
    # update's cleanup phase: only the gateway pins it, and by then the gateway uses the new one.
    policy_hash = hashlib.sha256(
        json.dumps(
            [
                sorted(filters.items()),
                sorted(pii_actions.items()),
                sorted(DEFAULT_GROUNDING_THRESHOLDS.items()),
            ]
        ).encode()
    ).hexdigest()[:12]
    version = bedrock.CfnGuardrailVersion(
        scope,
        "GuardrailVersion",
        guardrail_identifier=guardrail.attr_guardrail_id,
        description=f"AI Factory gateway guardrail, policy {policy_hash}",
    )
    version.apply_removal_policy(RemovalPolicy.DESTROY)
    return guardrail, version


def apply_statement(guardrail: bedrock.CfnGuardrail) -> iam.PolicyStatement:
    """What the gateway runtime needs: ``bedrock:ApplyGuardrail`` on this guardrail only."""
    return iam.PolicyStatement(
        sid="ApplyGatewayGuardrail",
        actions=["bedrock:ApplyGuardrail"],
        resources=[guardrail.attr_guardrail_arn],
    )
