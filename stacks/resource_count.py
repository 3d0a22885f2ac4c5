"""How many CloudFormation resources a stack will have when synthesized, counted while it is built.

The constructs defined so far are most of it. Two kinds join only at synth, and are estimated here:
CDK's ``AWS::CDK::Metadata`` resource, and the managed policies an ``iam.Role`` splits off its default
policy when that grows past what an inline policy holds (a role granted access to many tables, such as
the online evaluation's roles with many sampled features, gets one ``OverflowPolicy`` per 6,000
characters or so). The split follows CDK's own rule (``Role.splitLargePolicy``: statements stay inline
while the estimated size stays under 10,000, the rest go first-fit into documents of 6,000; a statement
is sized with every unresolved ARN counted as ``@aws-cdk/aws-iam.arnSizeEstimate``, default 150, and
an action as 20). It is applied to the statements before CDK merges them (``minimizePolicies``), which
only makes them smaller, so the estimate errs on the side of more policies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam

__all__ = ["cfn_resources", "synth_resources"]

MAX_INLINE_POLICY_SIZE = 10_000  # CDK's MAX_INLINE_SIZE (IAM's limit is 10,240 per role)
MAX_MANAGED_POLICY_SIZE = 6_000  # CDK's MAX_MANAGEDPOL_SIZE (IAM's limit is 6,144)
_ARN_ESTIMATE_KEY = "@aws-cdk/aws-iam.arnSizeEstimate"
_DEFAULT_ARN_ESTIMATE = 150
_ACTION_ESTIMATE = 20


def cfn_resources(scope: cdk.Stack) -> int:
    """The CloudFormation resources defined in ``scope`` so far."""
    return sum(1 for c in scope.node.find_all() if cdk.CfnResource.is_cfn_resource(c))


def synth_resources(stack: cdk.Stack) -> int:
    """The resources synth will add to ``stack``: CDK's metadata resource and the overflow managed
    policies of its roles (at most; call it once the roles have all their grants)."""
    roles = [c for c in stack.node.find_all() if isinstance(c, iam.Role)]
    arn = stack.node.try_get_context(_ARN_ESTIMATE_KEY) or _DEFAULT_ARN_ESTIMATE
    return 1 + sum(overflow_policies(role, arn_estimate=int(arn)) for role in roles)


def overflow_policies(role: iam.Role, *, arn_estimate: int = _DEFAULT_ARN_ESTIMATE) -> int:
    """How many managed policies CDK will split off ``role``'s default policy at synth."""
    policy = role.node.try_find_child("DefaultPolicy")
    if not isinstance(policy, iam.Policy):
        return 0
    document = policy.document.to_json() or {}
    sizes = [_estimate(s, arn_estimate) for s in document.get("Statement", [])]
    inline, documents = 0, list[int]()
    for size in sizes:
        if inline + size < MAX_INLINE_POLICY_SIZE:
            inline += size
            continue
        for i, used in enumerate(documents):
            if used + size <= MAX_MANAGED_POLICY_SIZE:
                documents[i] += size
                break
        else:
            documents.append(size)
    return len(documents)


def _estimate(statement: dict[str, Any], arn_estimate: int) -> int:
    """``PolicyStatement._estimateSize`` on a rendered statement."""
    size = len(f'"Effect": "{statement.get("Effect", "Allow")}",')
    for key, token_size in (
        ("Action", _ACTION_ESTIMATE),
        ("NotAction", _ACTION_ESTIMATE),
        ("Resource", arn_estimate),
        ("NotResource", arn_estimate),
    ):
        values = _listed(statement.get(key))
        if values:
            size += len(key) + 5 + sum(_value_size(v, token_size) + 3 for v in values)
    for key in ("Principal", "NotPrincipal"):
        principal = statement.get(key)
        if isinstance(principal, dict):
            size += sum(len(_listed(v)) for v in principal.values()) * arn_estimate
        elif principal is not None:
            size += arn_estimate
    size += len(json.dumps(statement.get("Condition", {}), separators=(",", ":")))
    return size


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, Iterable) and not isinstance(value, (str, dict)) else [value]


def _value_size(value: Any, token_size: int) -> int:
    if not isinstance(value, str) or cdk.Token.is_unresolved(value):
        return token_size
    return len(value)
