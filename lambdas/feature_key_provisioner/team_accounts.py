"""The platform side of features that teams ship from their own AWS accounts.

When the gateway stack enables team accounts (``LlmGateway.enable_team_accounts``), one provisioner in
the platform account serves every team: a team's stack in another account of the organization creates a
``Custom::AiFactoryFeatureKey`` whose service token is the platform's provisioner. Two things then differ
from a feature deployed in the platform's own app:

* **The registry.** Every feature is claimed in one DynamoDB table (``FeatureRegistry``), keyed by
  ``team/feature``, with its owner, account, clearance, models and limits. The first account to deploy a
  feature owns its name; the same name from another account is refused with the owner's account in the
  message. The claim is a conditional write, so two accounts racing for one name cannot both win.
* **The secret lives in the team's account.** The plaintext key is written with a role in the team's
  account (``WriterRoleArn``, created by ``AiFeature`` under ``KEY_WRITER_ROLE_PATH``) that trusts only
  the platform provisioner's role and may only put that one secret's value. The team owns the secret, its
  KMS key and who may read it; the platform never keeps a copy.

Which account is asking: CloudFormation puts the stack's ARN (``StackId``) in every event. The role and
the secret must be in that account, so a stack in one account cannot direct a key into another's secret.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aif_gateway.contract import KEY_WRITER_ROLE_PATH, TeamFeatureKeyProperties
from aif_gateway.contract import FeatureKeyProperties as Props

_ARN_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):")
_SESSION_NAME = "ai-factory-key-provisioner"


class RegistryRefused(Exception):
    """The registry refuses the request (a name owned by another account, a role in the wrong account)."""


def arn_account(arn: str, what: str) -> str:
    """The 12-digit account of an ARN; ``RegistryRefused`` naming ``what`` when it has none."""
    match = _ARN_ACCOUNT.match(arn or "")
    if match is None:
        raise RegistryRefused(f"{what} must be an ARN with an account ID, got {arn!r}")
    return match.group(1)


def requesting_account(event: Mapping[str, Any]) -> str:
    """The account of the stack that sent the event (from CloudFormation's ``StackId``)."""
    return arn_account(str(event.get("StackId", "")), "StackId")


def check_writer(props: Mapping[str, Any], account: str) -> str:
    """The writer role ARN, after checking that it and the secret are in the requesting account."""
    role_arn = str(props.get(TeamFeatureKeyProperties.WRITER_ROLE_ARN, ""))
    secret_arn = str(props.get(Props.SECRET_ARN, ""))
    for what, arn in ((TeamFeatureKeyProperties.WRITER_ROLE_ARN, role_arn), (Props.SECRET_ARN, secret_arn)):
        owner = arn_account(arn, what)
        if owner != account:
            raise RegistryRefused(
                f"{what} {arn} is in account {owner}, but the request comes from a stack in account "
                f"{account}: a feature's key can only be written into its own account"
            )
    if f":role{KEY_WRITER_ROLE_PATH}" not in role_arn:
        raise RegistryRefused(
            f"{TeamFeatureKeyProperties.WRITER_ROLE_ARN} {role_arn} must be a role under the path "
            f"{KEY_WRITER_ROLE_PATH} (AiFeature creates it)"
        )
    return role_arn


def writer_secrets_client(sts: Any, role_arn: str, region: str | None) -> Any:
    """A Secrets Manager client acting as the team's writer role (one short session per request)."""
    import boto3

    creds = _assume(sts, role_arn)
    return boto3.client(
        "secretsmanager",
        region_name=region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def _assume(sts: Any, role_arn: str, attempts: int = 5, sleep: Any = time.sleep) -> dict[str, Any]:
    """Credentials of the writer role. A role created moments ago in the same deployment can be refused
    for a few seconds while IAM propagates its trust policy, so AccessDenied is retried with a backoff."""
    for attempt in range(attempts):
        try:
            response = sts.assume_role(RoleArn=role_arn, RoleSessionName=_SESSION_NAME, DurationSeconds=900)
            return dict(response["Credentials"])
        except sts.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "AccessDenied" or attempt + 1 == attempts:
                raise RegistryRefused(
                    f"the platform provisioner cannot assume {role_arn}: {exc}. The role must trust the "
                    "provisioner's role (AiFeature creates it so)"
                ) from None
            sleep(2.0 * (attempt + 1))
    raise AssertionError("unreachable")


class FeatureRegistry:
    """The platform's one list of features: ``team/feature`` -> team, owner, account, clearance, limits."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self.dynamodb = dynamodb
        self.table = table

    @staticmethod
    def feature_id(team: str, feature: str) -> str:
        return f"{team}/{feature}"

    def claim(
        self,
        *,
        settings: Mapping[str, Any],
        props: Mapping[str, Any],
        account: str,
        stack_id: str,
        now: datetime,
    ) -> None:
        """Register the feature for ``account`` or update its entry; refuse a name another account owns.

        ``first_deployed_at`` is written once (the lead-time clock starts there); the rest follows the
        latest deploy.
        """
        feature_id = self.feature_id(settings["team"], settings["feature"])
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"feature_id": {"S": feature_id}},
                UpdateExpression=(
                    "SET team = :team, feature = :feature, account_id = :account, stack_id = :stack, "
                    "#owner = :owner, clearance = :clearance, allowed_models = :models, "
                    "monthly_budget_usd = :budget, rate_limit_rpm = :rpm, updated_at = :now, "
                    "#status = :active, first_deployed_at = if_not_exists(first_deployed_at, :now)"
                ),
                ConditionExpression="attribute_not_exists(feature_id) OR account_id = :account",
                ExpressionAttributeNames={"#owner": "owner", "#status": "status"},
                ExpressionAttributeValues={
                    ":team": {"S": settings["team"]},
                    ":feature": {"S": settings["feature"]},
                    ":account": {"S": account},
                    ":stack": {"S": stack_id},
                    ":owner": {"S": str(props.get(TeamFeatureKeyProperties.OWNER, "")) or "unknown"},
                    ":clearance": {"S": str(props.get(TeamFeatureKeyProperties.CLEARANCE, "")) or "unknown"},
                    ":models": {"L": [{"S": m} for m in settings["allowed_models"]]},
                    ":budget": {"N": format(settings["monthly_budget_usd"], "f")},
                    ":rpm": {"N": str(settings["rate_limit_rpm"])},
                    ":now": {"S": now.isoformat()},
                    ":active": {"S": "active"},
                },
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            current = self.get(feature_id) or {}
            raise RegistryRefused(
                f"feature {feature_id} is already registered to account {current.get('account_id', '?')} "
                f"(owner {current.get('owner', '?')}); account {account} cannot use that name: choose "
                "another feature name, or ask the platform team to transfer it"
            ) from None

    def record_key(self, team: str, feature: str, key_id: str) -> None:
        """The feature's current gateway key ID (not secret), for ``ai-factory keys`` and audits."""
        self.dynamodb.update_item(
            TableName=self.table,
            Key={"feature_id": {"S": self.feature_id(team, feature)}},
            UpdateExpression="SET key_id = :key",
            ConditionExpression="attribute_exists(feature_id)",
            ExpressionAttributeValues={":key": {"S": key_id}},
        )

    def record_edge(
        self,
        team: str,
        feature: str,
        *,
        usage_plan_id: str,
        edge_rate_limit_rpm: int,
        profiles: Mapping[str, str],
    ) -> None:
        """The feature's usage plan, the rate its throttle follows (capped) and its inference profiles
        (``{model ID: profile ARN}``: what the next update starts from and a delete removes)."""
        self.dynamodb.update_item(
            TableName=self.table,
            Key={"feature_id": {"S": self.feature_id(team, feature)}},
            UpdateExpression=(
                "SET usage_plan_id = :plan, edge_rate_limit_rpm = :rpm, inference_profiles = :profiles"
            ),
            ConditionExpression="attribute_exists(feature_id)",
            ExpressionAttributeValues={
                ":plan": {"S": usage_plan_id},
                ":rpm": {"N": str(edge_rate_limit_rpm)},
                ":profiles": {"M": {m: {"S": arn} for m, arn in profiles.items()}},
            },
        )

    def clear_edge(self, team: str, feature: str) -> None:
        """Forget the feature's plan and profiles (deleted with the feature)."""
        with contextlib.suppress(self.dynamodb.exceptions.ConditionalCheckFailedException):
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"feature_id": {"S": self.feature_id(team, feature)}},
                UpdateExpression="REMOVE usage_plan_id, edge_rate_limit_rpm, inference_profiles",
                ConditionExpression="attribute_exists(feature_id)",
            )

    def retire(self, team: str, feature: str, account: str, now: datetime) -> None:
        """Mark a deleted feature ``retired``; the name stays with its account (and the audit trail)."""
        # Not registered, or another account's: nothing of the requester's to retire.
        with contextlib.suppress(self.dynamodb.exceptions.ConditionalCheckFailedException):
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"feature_id": {"S": self.feature_id(team, feature)}},
                UpdateExpression="SET #status = :retired, retired_at = :now",
                ConditionExpression="account_id = :account",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":retired": {"S": "retired"},
                    ":now": {"S": now.isoformat()},
                    ":account": {"S": account},
                },
            )

    def get(self, feature_id: str) -> dict[str, Any] | None:
        item = self.dynamodb.get_item(
            TableName=self.table, Key={"feature_id": {"S": feature_id}}, ConsistentRead=True
        )
        raw = item.get("Item")
        if raw is None:
            return None
        return {k: _plain(v) for k, v in raw.items()}

    def entries(self) -> list[dict[str, Any]]:
        """Every registered feature (a scan: the registry holds one item per feature)."""
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            page = self.dynamodb.scan(**kwargs)
            out.extend({k: _plain(v) for k, v in item.items()} for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return sorted(out, key=lambda e: str(e.get("feature_id", "")))
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _plain(value: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as plain Python (S, N, L and M of those)."""
    if "S" in value:
        return value["S"]
    if "N" in value:
        return float(value["N"])
    if "L" in value:
        return [_plain(v) for v in value["L"]]
    if "M" in value:
        return {k: _plain(v) for k, v in value["M"].items()}
    return None
