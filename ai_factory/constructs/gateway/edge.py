"""The gateway's edge: what API Gateway refuses before the gateway function runs.

* **Two Lambda REQUEST authorizers, one per front door**, both backed by the gateway's own key check
  (``aif_gateway.authorizer``): the OpenAI door (``/v1/chat/completions``, ``/v1/responses``,
  ``/v1/{proxy+}``) identifies callers by ``Authorization`` and API Gateway caches the answer per key
  for ``authorizer_cache_ttl``; the Anthropic door (``/v1/messages``, ``/v1/messages/count_tokens``)
  accepts ``x-api-key`` *or* ``Authorization``. API Gateway refuses a request that lacks any identity
  source of a cached authorizer before calling it, so a cached authorizer can name only one header:
  the Anthropic door's authorizer is therefore uncached (no identity source) and its function answers
  from its own per-environment key cache (one ``GetItem`` per key per TTL, not per request).
* **Usage plans**: the API's key source is ``AUTHORIZER``; the authorizer returns the feature's usage
  identifier (``aif_gateway.contract.usage_identifier``), an API key of the feature's own usage plan
  (``add_feature_usage_plan``, throttle from its requests per minute, optional daily quota). Keys
  without a plan of their own share one plan (``build_shared_usage_plan``).
* **Gateway responses**: the edge's 401/403/429/503 in the JSON shape both SDKs read
  (``{"type": "error", "error": {"type", "message", "code"}}``).
* **Optional AWS WAF** (``build_web_acl``): a per-IP rate rule and AWS's common and known-bad-inputs
  rule groups, logged (with the key headers redacted) to a KMS-encrypted log group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from aif_gateway import contract

DEFAULT_AUTHORIZER_CACHE_TTL = Duration.seconds(60)
"""How long API Gateway reuses an authorizer answer for the same key (the edge's revocation delay)."""
MAX_AUTHORIZER_CACHE_TTL_S = 3600  # API Gateway's maximum
ANTHROPIC_ROUTES = ("messages", "messages/count_tokens")
"""Generation routes of the Anthropic front door (the others, and ``{proxy+}``, are the OpenAI door's)."""
BURST_WINDOW_S = contract.EDGE_BURST_WINDOW_S
"""A feature's edge burst: ten seconds of its rate, at least 10 requests and at most its whole minute."""
WAF_BODY_RULES_COUNTED = (
    "SizeRestrictions_BODY",
    "CrossSiteScripting_BODY",
    "GenericRFI_BODY",
    "GenericLFI_BODY",
    "EC2MetaDataSSRF_BODY",
)
"""Common-rule-set rules that inspect the body and would block ordinary prompts (bodies over 8 KB,
prompts quoting HTML, URLs, file paths or metadata addresses): counted and logged, not blocked."""


@dataclass(frozen=True)
class EdgeAuthorizers:
    """The authorizer of each front door."""

    openai: apigw.RequestAuthorizer
    anthropic: apigw.RequestAuthorizer


def build_authorizers(scope: Construct, function: lambda_.IFunction, cache_ttl: Duration) -> EdgeAuthorizers:
    """The two front doors' authorizers on ``function`` (``aif_gateway.authorizer.handler``)."""
    openai = apigw.RequestAuthorizer(
        scope,
        "OpenAiAuthorizer",
        handler=function,
        identity_sources=[apigw.IdentitySource.header("Authorization")],
        results_cache_ttl=cache_ttl,
    )
    # Uncached: API Gateway then calls the authorizer for every request, whichever header it carries.
    anthropic = apigw.RequestAuthorizer(
        scope,
        "AnthropicAuthorizer",
        handler=function,
        identity_sources=[],
        results_cache_ttl=Duration.seconds(0),
    )
    return EdgeAuthorizers(openai=openai, anthropic=anthropic)


def edge_rate(rate_limit_rpm: int) -> tuple[float, int]:
    """(requests per second, burst) of a feature's usage plan (``contract.edge_throttle``)."""
    return contract.edge_throttle(rate_limit_rpm)


def _api_stage(api: apigw.RestApi) -> apigw.UsagePlanPerApiStage:
    return apigw.UsagePlanPerApiStage(api=api, stage=api.deployment_stage)


def build_shared_usage_plan(
    scope: Construct, api: apigw.RestApi, namespace: str, rate_limit: float, burst_limit: int
) -> apigw.UsagePlan:
    """The plan of keys whose feature has none of its own: one API key, one bucket for all of them."""
    plan = apigw.UsagePlan(
        scope,
        "SharedUsagePlan",
        description="AI Factory gateway: keys without a usage plan of their own (CLI keys, team accounts)",
        api_stages=[_api_stage(api)],
        throttle=apigw.ThrottleSettings(rate_limit=rate_limit, burst_limit=burst_limit),
    )
    key = apigw.ApiKey(
        scope,
        "SharedUsageKey",
        description="AI Factory gateway: usage identifier of the shared plan (not a secret)",
        value=contract.shared_usage_identifier(namespace),
        enabled=True,
    )
    plan.add_api_key(key)
    return plan


def add_feature_usage_plan(
    scope: Construct,
    api: apigw.RestApi,
    namespace: str,
    *,
    team: str,
    feature: str,
    rate_limit_rpm: int,
    daily_request_quota: int | None = None,
) -> apigw.UsagePlan:
    """``team/feature``'s own usage plan on ``api``'s stage, in ``scope`` (the feature's stack)."""
    rate, burst = edge_rate(rate_limit_rpm)
    quota = (
        apigw.QuotaSettings(limit=daily_request_quota, period=apigw.Period.DAY)
        if daily_request_quota is not None
        else None
    )
    plan = apigw.UsagePlan(
        scope,
        "EdgeUsagePlan",
        description=f"AI Factory feature {team}/{feature}: edge throttle from {rate_limit_rpm} requests/min",
        api_stages=[_api_stage(api)],
        throttle=apigw.ThrottleSettings(rate_limit=rate, burst_limit=burst),
        quota=quota,
    )
    key = apigw.ApiKey(
        scope,
        "EdgeUsageKey",
        description=f"AI Factory feature {team}/{feature}: usage identifier (not a secret)",
        value=contract.usage_identifier(namespace, team, feature),
        enabled=True,
    )
    plan.add_api_key(key)
    return plan


def _error_template(error_type: str, code: str, message: str) -> dict[str, str]:
    body = {"type": "error", "error": {"type": error_type, "code": code, "message": message, "param": None}}
    return {"application/json": json.dumps(body)}


def add_gateway_responses(api: apigw.RestApi) -> None:
    """The edge's refusals in the error shape the OpenAI and Anthropic SDKs both read."""
    responses = {
        "Unauthorized": (
            apigw.ResponseType.UNAUTHORIZED,
            "401",
            {},
            (
                "authentication_error",
                "missing_api_key",
                "Missing API key: send 'Authorization: Bearer "
                "<key>' (on /v1/messages 'x-api-key: <key>' works too).",
            ),
        ),
        "AccessDenied": (
            apigw.ResponseType.ACCESS_DENIED,
            "401",
            {},
            (
                "authentication_error",
                "invalid_api_key",
                "Invalid API key: it is unknown, revoked or "
                "expired (on a private API: or the request did not come through its VPC endpoint).",
            ),
        ),
        "Throttled": (
            apigw.ResponseType.THROTTLED,
            "429",
            {"Retry-After": "'1'", contract.LIMIT_HEADER: "'edge'"},
            (
                "rate_limit_error",
                contract.EDGE_LIMIT_CODE,
                "Too many requests at the edge: the feature's "
                "usage-plan throttle or the API's stage-wide ceiling. Retry after 1 s.",
            ),
        ),
        "QuotaExceeded": (
            apigw.ResponseType.QUOTA_EXCEEDED,
            "429",
            {contract.LIMIT_HEADER: "'edge_quota'"},
            (
                "rate_limit_error",
                "edge_quota_exceeded",
                "The feature's daily request quota at the edge is used up; it resets at 00:00 UTC.",
            ),
        ),
        "AuthorizerFailure": (
            apigw.ResponseType.AUTHORIZER_FAILURE,
            "503",
            {"Retry-After": "'5'"},
            (
                "api_error",
                "key_check_unavailable",
                "The gateway cannot check API keys right now. Retry after 5 s.",
            ),
        ),
        # An authorizer that raised or timed out (e.g. the keys table throttled): the same answer.
        "AuthorizerError": (
            apigw.ResponseType.AUTHORIZER_CONFIGURATION_ERROR,
            "503",
            {"Retry-After": "'5'"},
            (
                "api_error",
                "key_check_unavailable",
                "The gateway cannot check API keys right now. Retry after 5 s.",
            ),
        ),
        "InvalidApiKey": (
            apigw.ResponseType.INVALID_API_KEY,
            "403",
            {},
            (
                "permission_error",
                "no_usage_plan",
                "The key's feature has no usage plan on this API "
                "stage yet: deploy the feature's stack, or ask the platform team.",
            ),
        ),
    }
    for construct_id, (response_type, status, headers, (error_type, code, message)) in responses.items():
        api.add_gateway_response(
            construct_id,
            type=response_type,
            status_code=status,
            response_headers={"Content-Type": "'application/json'", **headers},
            templates=_error_template(error_type, code, message),
        )


def build_web_acl(
    scope: Construct, *, key: kms.IKey, retention: logs.RetentionDays, rate_limit_per_ip: int
) -> wafv2.CfnWebACL:
    """A regional web ACL (per-IP rate rule, AWS's known-bad-inputs and common rule sets), logged."""

    def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
        return wafv2.CfnWebACL.VisibilityConfigProperty(
            cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
        )

    def managed(name: str, priority: int, counted: tuple[str, ...] = ()) -> wafv2.CfnWebACL.RuleProperty:
        return wafv2.CfnWebACL.RuleProperty(
            name=name,
            priority=priority,
            override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                    vendor_name="AWS",
                    name=name,
                    rule_action_overrides=[
                        wafv2.CfnWebACL.RuleActionOverrideProperty(
                            name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                        )
                        for rule in counted
                    ]
                    or None,
                )
            ),
            visibility_config=visibility(name),
        )

    acl = wafv2.CfnWebACL(
        scope,
        "WebAcl",
        scope="REGIONAL",
        description="AI Factory gateway: per-IP rate limit and AWS managed rules",
        default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
        visibility_config=visibility("AiFactoryGateway"),
        rules=[
            wafv2.CfnWebACL.RuleProperty(
                name="RateLimitPerIp",
                priority=0,
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        aggregate_key_type="IP", limit=rate_limit_per_ip, evaluation_window_sec=300
                    )
                ),
                visibility_config=visibility("RateLimitPerIp"),
            ),
            managed("AWSManagedRulesKnownBadInputsRuleSet", 1),
            managed("AWSManagedRulesCommonRuleSet", 2, WAF_BODY_RULES_COUNTED),
        ],
    )
    # WAF logs only to log groups whose name starts with aws-waf-logs-.
    name = f"aws-waf-logs-{cdk.Names.unique_resource_name(acl, max_length=100, separator='-')}"
    log_group = logs.LogGroup(
        scope,
        "WebAclLogs",
        log_group_name=name,
        retention=retention,
        encryption_key=key,
        removal_policy=RemovalPolicy.RETAIN,
    )
    logging = wafv2.CfnLoggingConfiguration(
        scope,
        "WebAclLogging",
        resource_arn=acl.attr_arn,
        log_destination_configs=[f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{name}"],
        # The gateway's keys travel in these headers: never in a log.
        redacted_fields=[
            wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": "authorization"}),
            wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": "x-api-key"}),
        ],
    )
    logging.node.add_dependency(log_group)
    return acl


def validate_cache_ttl(ttl: object, fail: object) -> Duration:
    """A concrete ``Duration`` of whole seconds from 1 s to one hour (API Gateway's bounds)."""
    assert callable(fail)
    if not isinstance(ttl, Duration) or ttl.is_unresolved():
        raise fail("authorizer_cache_ttl", f"must be a concrete aws_cdk.Duration, got {ttl!r}")
    seconds = ttl.to_milliseconds() / 1000
    if seconds != int(seconds) or not 1 <= seconds <= MAX_AUTHORIZER_CACHE_TTL_S:
        raise fail(
            "authorizer_cache_ttl",
            f"must be whole seconds from 1 s to {MAX_AUTHORIZER_CACHE_TTL_S} s (API Gateway's bounds), "
            f"got {seconds:g} s",
        )
    return Duration.seconds(int(seconds))
