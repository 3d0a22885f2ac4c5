"""``LlmGateway.from_lookup``: the SSM parameters it reads in a team's app, through the CDK's context
protocol as the CLI drives it (first synth reports the lookups missing, the CLI caches their values in
``cdk.context.json`` and synthesizes again), including the gateway's edge namespace, which a platform
deployed before it was published does not have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Annotations, Match

from ai_factory.constructs.ai_feature import AiFeature
from ai_factory.constructs.gateway.imported import NOT_PUBLISHED, PENDING_LOOKUP, ImportedLlmGateway
from ai_factory.constructs.gateway.llm_gateway import LlmGateway
from ai_factory.constructs.online_evaluation import OnlineEvaluation, OnlineEvaluationError, OnlineSampling
from aif_gateway import contract

TEAM_ENV = cdk.Environment(account="222222222222", region="us-east-1")
LOG_GROUP_ARN = "arn:aws:logs:us-east-1:222222222222:log-group:/aws/bedrock/invocation-logs"
NAMESPACE = contract.edge_namespace("AiFactoryGateway/Gateway")
NAMES = contract.GatewayParameters
PUBLISHED = {
    NAMES.API_URL: "https://abc123defg.execute-api.us-east-1.amazonaws.com/prod/v1",
    NAMES.KEY_PROVISIONING_SERVICE_TOKEN: "arn:aws:lambda:us-east-1:111111111111:function:p",
    NAMES.KEY_PROVISIONER_ROLE_ARN: "arn:aws:iam::111111111111:role/p",
    NAMES.METRICS_NAMESPACE: "AIFactory",
    NAMES.KMS_KEY_ARN: "arn:aws:kms:us-east-1:111111111111:key/0b8f4c1e",
}


def context_key(name: str) -> str:
    """The key the CDK caches an SSM lookup under in ``cdk.context.json`` (written out, not computed by
    the CDK: a lookup code that asked under another key would never find the CLI's value)."""
    full_name = f"{contract.GATEWAY_PARAMETER_PREFIX}/{name}"
    return f"ssm:account=222222222222:parameterName={full_name}:region=us-east-1"


def cached(edge_namespace: Any = None) -> dict[str, Any]:
    """``cdk.context.json`` after the CLI's lookups; ``edge_namespace`` None: that one not cached yet."""
    context: dict[str, Any] = {context_key(name): value for name, value in PUBLISHED.items()}
    if edge_namespace is not None:
        context[context_key(NAMES.EDGE_NAMESPACE)] = edge_namespace
    return context


def team_app(
    context: dict[str, Any], tmp_path: Path | None = None
) -> tuple[cdk.App, cdk.Stack, ImportedLlmGateway]:
    app = cdk.App(context=context, outdir=str(tmp_path) if tmp_path else None)
    stack = cdk.Stack(app, "ClaimsFeatures", env=TEAM_ENV)
    gateway = LlmGateway.from_lookup(stack, "Gateway")
    return app, stack, gateway


def sample(stack: cdk.Stack, gateway: ImportedLlmGateway) -> OnlineEvaluation:
    """A sampled feature of ``gateway`` and the ``OnlineEvaluation`` that samples it."""
    feature = AiFeature(
        stack,
        "Triage",
        team="claims",
        gateway=gateway,
        feature="triage",
        owner="a@example.com",
        clearance="internal",
        models=["chat-fast"],
        monthly_budget_usd=10,
        rate_limit_rpm=10,
        online_sampling=OnlineSampling(rate=0.1),
    )
    log_group = logs.LogGroup.from_log_group_arn(stack, "InvocationLogs", LOG_GROUP_ARN)
    return OnlineEvaluation(stack, "Online", features=[feature], invocation_log_group=log_group)


def missing_lookups(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """What the synthesized assembly asks the CLI to look up, by context key."""
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    return {entry["key"]: entry for entry in manifest.get("missing", [])}


def test_the_cached_edge_namespace_reaches_the_imported_gateway_and_the_sampler() -> None:
    _, stack, gateway = team_app(cached(NAMESPACE))

    assert gateway.edge_namespace == NAMESPACE
    assert gateway.url == PUBLISHED[NAMES.API_URL]
    online = sample(stack, gateway)
    assert online.sampler_settings["claims/triage"]["gateway"] == NAMESPACE
    assert online.subscription_filter_pattern == '{ $.requestMetadata.aif_gateway = "' + NAMESPACE + '" }'


def test_the_edge_namespace_lookup_tolerates_a_platform_that_has_not_published_it(tmp_path: Path) -> None:
    """A platform deployed before the parameter existed: the lookup asks the CLI to cache a marker
    instead of failing the synth, and the marker means "no namespace"."""
    app, stack, gateway = team_app(cached(), tmp_path)
    sample(stack, gateway)
    app.synth()
    (lookup,) = missing_lookups(tmp_path).values()
    assert lookup["key"] == context_key(NAMES.EDGE_NAMESPACE)
    assert lookup["provider"] == "ssm"
    # What the CLI's SSM provider returns (and caches) when the parameter does not exist.
    assert lookup["props"]["ignoreErrorOnMissingContext"] is True
    assert lookup["props"]["dummyValue"] == NOT_PUBLISHED

    _, stack, gateway = team_app(cached(NOT_PUBLISHED))
    assert gateway.edge_namespace is None
    with pytest.raises(OnlineEvaluationError) as refused:
        sample(stack, gateway)
    message = str(refused.value)
    assert "its gateway ClaimsFeatures/Gateway has no edge_namespace" in message
    assert "redeploy the platform's gateway stack" in message
    assert "edge-namespace entry from cdk.context.json" in message


def test_before_the_cli_resolves_the_lookups_the_app_still_synthesizes(tmp_path: Path) -> None:
    """The first synth (nothing cached): every value is the CDK's placeholder, nothing validates it as
    a real value, and the assembly lists every lookup so the CLI can resolve them and synthesize again.
    A sampled feature must not stop that synth (the refusal is for a namespace known to be absent)."""
    app, stack, gateway = team_app({}, tmp_path)

    assert gateway.edge_namespace is not None and gateway.edge_namespace.startswith(PENDING_LOOKUP)
    assert gateway.url.startswith(PENDING_LOOKUP)
    sample(stack, gateway)
    app.synth()
    assert sorted(missing_lookups(tmp_path)) == sorted(
        context_key(name) for name in (*PUBLISHED, NAMES.EDGE_NAMESPACE)
    )


def test_a_failed_edge_namespace_lookup_is_reported_not_taken_for_an_absent_one() -> None:
    """The CLI could not read the parameter (no permission on the shared prefix, say): the synth reports
    the provider's error rather than the sampler's "no namespace" refusal."""
    error = {"$providerError": "AccessDeniedException: ssm:GetParameter", "$dontSaveContext": True}
    _, stack, gateway = team_app(cached(error))

    assert gateway.edge_namespace is not None and gateway.edge_namespace.startswith(PENDING_LOOKUP)
    sample(stack, gateway)
    Annotations.from_stack(stack).has_error("*", Match.string_like_regexp("AccessDenied"))


@pytest.mark.parametrize("value", ["Prod-Gateway", "0123456789AB", ""])
def test_a_cached_edge_namespace_of_the_wrong_form_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"edge_namespace: must be the gateway's LlmGateway.edge_namespace"):
        team_app(cached(value))
