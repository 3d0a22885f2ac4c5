"""The edge and the Bedrock cost split of features that teams deploy from their own accounts.

A feature deployed in the platform's app gets its own API Gateway usage plan and one Bedrock application
inference profile per model from CloudFormation, in its own stack. A feature deployed from a team account
cannot create resources in the platform account, so the shared provisioner (which runs there, next to the
API and Bedrock) makes them for it, on every Create and Update of the feature's key:

* **A usage plan of its own** on the gateway's API stage, with one API key whose value is the feature's
  usage identifier (``contract.usage_identifier``: the authorizer meters the feature's requests under it
  once the key record says ``edge_usage_plan``). Its throttle follows the feature's requests per minute
  (``contract.edge_throttle``), capped by the platform's maximum (``TeamEdgeEnv.MAX_RATE_LIMIT_RPM``): a
  team cannot ask for more than the platform allows. An optional daily quota. The plan and the key are
  found by name (the usage identifier), so a retried or repeated request updates them in place.
* **An application inference profile per Bedrock model** the feature's routes reach (fallbacks
  included), copied from exactly what the gateway calls in its region, tagged ``Team``, ``Feature``,
  ``Owner`` (cost allocation) and with the gateway's ``ai-factory:gateway`` tag, which the gateway role's
  invoke permission requires. The caller records ``{model ID: profile ARN}`` in the feature's key record,
  where the gateway looks for every feature's profiles (``ApiKeyRecord.inference_profiles``).

Everything made here carries the gateway's tag: the provisioner's role may change or delete only what
carries it (``aws:ResourceTag``), and create only what is tagged so (``aws:RequestTag``). Which feature a
request may touch is decided before this module runs: the registry's claim ties ``team/feature`` to one
account, and the names here derive from that ``team/feature``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aif_gateway.contract import (
    PROFILE_GATEWAY_TAG_KEY,
    TEAM_EDGE_ROUTES_FILE,
    TeamEdgeEnv,
    edge_throttle,
    usage_identifier,
)

logger = logging.getLogger(__name__)

PROFILE_NAME_MAX_LENGTH = 64  # Bedrock: 1-64 characters, ([0-9a-zA-Z][ _-]?)+
_DIGEST_LENGTH = 8
_SEPARATORS = re.compile(r"[^0-9A-Za-z]+")
SOURCE_KINDS = ("foundation-model", "inference-profile")
_PAGE_SIZE = 500  # API Gateway's largest page


class EdgeConflict(Exception):
    """A plan, key or profile with this feature's name exists but is not this gateway's."""


@dataclass(frozen=True)
class TeamEdgeSettings:
    """Where the plans go and what the profiles copy (from the environment and the asset's routes file).

    ``routes``: ``{route alias: [(model ID the gateway calls, catalog name, kind)]}``.
    """

    rest_api_id: str
    stage: str
    namespace: str
    max_rate_limit_rpm: int
    gateway_tag: str
    partition: str
    region: str
    account: str
    routes: Mapping[str, Sequence[tuple[str, str, str]]] = field(default_factory=dict)

    @classmethod
    def from_environment(
        cls, env: Mapping[str, str], routes_file: Path | None = None
    ) -> TeamEdgeSettings | None:
        """The settings when the shared provisioner serves the edge (``None`` when it does not)."""
        if not env.get(TeamEdgeEnv.REST_API_ID):
            return None
        path = routes_file or Path(__file__).with_name(TEAM_EDGE_ROUTES_FILE)
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            rest_api_id=env[TeamEdgeEnv.REST_API_ID],
            stage=env[TeamEdgeEnv.STAGE],
            namespace=env[TeamEdgeEnv.NAMESPACE],
            max_rate_limit_rpm=int(env[TeamEdgeEnv.MAX_RATE_LIMIT_RPM]),
            gateway_tag=env[TeamEdgeEnv.GATEWAY_TAG],
            partition=env[TeamEdgeEnv.PARTITION],
            region=env["AWS_REGION"],
            account=env[TeamEdgeEnv.ACCOUNT],
            routes={
                alias: [(str(t[0]), str(t[1]), str(t[2])) for t in targets] for alias, targets in raw.items()
            },
        )


@dataclass(frozen=True)
class FeatureEdge:
    """What ``TeamEdge.apply`` left in place for a feature."""

    usage_plan_id: str
    api_key_id: str
    rate_limit_rpm: int
    """The rate the plan's throttle follows: the feature's, capped by the platform's maximum."""
    profiles: dict[str, str]
    """``{model ID the gateway calls: application inference profile ARN}``."""
    stale_profiles: tuple[str, ...] = ()
    """Profiles of models the feature no longer reaches: delete them once the key record stops naming
    them (``TeamEdge.delete_profiles``)."""


class TeamEdge:
    """Usage plans and inference profiles of team-account features, through API Gateway and Bedrock."""

    def __init__(self, apigateway: Any, bedrock: Any, settings: TeamEdgeSettings) -> None:
        self.apigateway = apigateway
        self.bedrock = bedrock
        self.settings = settings

    # --- the feature's edge and profiles ----------------------------------------------------------

    def apply(
        self,
        *,
        team: str,
        feature: str,
        owner: str,
        rate_limit_rpm: int,
        daily_request_quota: int | None,
        allowed_models: Sequence[str],
        current_profiles: Mapping[str, str],
    ) -> FeatureEdge:
        """Create or update the feature's plan, key and profiles; idempotent."""
        applied = min(rate_limit_rpm, self.settings.max_rate_limit_rpm)
        if applied < rate_limit_rpm:
            logger.info(
                "%s/%s asks for %d requests/min at the edge; the platform allows %d",
                team,
                feature,
                rate_limit_rpm,
                applied,
            )
        plan_id, key_id = self._ensure_plan(team, feature, owner, applied, daily_request_quota)
        profiles, stale = self._ensure_profiles(team, feature, owner, allowed_models, current_profiles)
        return FeatureEdge(plan_id, key_id, applied, profiles, stale)

    def remove(self, *, team: str, feature: str, profiles: Mapping[str, str]) -> None:
        """Delete the feature's plan, key and profiles (what is already gone is skipped)."""
        identifier = self.identifier(team, feature)
        key = self._find_key(identifier)
        plan = self._find_plan(identifier)
        if plan is not None:
            self._check_ours(plan, "usage plan")
            if key is not None:
                self._ignore_missing(
                    self.apigateway,
                    self.apigateway.delete_usage_plan_key,
                    usagePlanId=plan["id"],
                    keyId=key["id"],
                )
            stage = f"{self.settings.rest_api_id}:{self.settings.stage}"
            if any(_stage_id(s) == stage for s in plan.get("apiStages", [])):
                self.apigateway.update_usage_plan(
                    usagePlanId=plan["id"],
                    patchOperations=[{"op": "remove", "path": "/apiStages", "value": stage}],
                )
            self._ignore_missing(self.apigateway, self.apigateway.delete_usage_plan, usagePlanId=plan["id"])
        if key is not None:
            self._check_ours(key, "API key")
            self._ignore_missing(self.apigateway, self.apigateway.delete_api_key, apiKey=key["id"])
        self.delete_profiles(profiles.values())
        logger.info("removed the edge plan and %d profile(s) of %s/%s", len(profiles), team, feature)

    def delete_profiles(self, arns: Sequence[str] | Any) -> None:
        for arn in arns:
            self._ignore_missing(
                self.bedrock, self.bedrock.delete_inference_profile, inferenceProfileIdentifier=arn
            )

    # --- names --------------------------------------------------------------------------------------

    def identifier(self, team: str, feature: str) -> str:
        """The feature's usage identifier: its API key's value, and the name of its plan and key."""
        return usage_identifier(self.settings.namespace, team, feature)

    def targets(self, allowed_models: Sequence[str]) -> dict[str, tuple[str, str]]:
        """``{model ID the gateway calls: (catalog name, ARN the profile copies)}`` for ``allowed_models``."""
        found: dict[str, tuple[str, str]] = {}
        for alias in allowed_models:
            for invoke_id, name, kind in self.settings.routes.get(alias, ()):
                found.setdefault(invoke_id, (name, self._source_arn(invoke_id, kind)))
        return found

    def profile_name(self, team: str, feature: str, model: str, source_arn: str) -> str:
        """``<team>-<feature>-<model>`` cut to fit, plus a digest of the gateway, feature and source (the
        name must be unique in the account and region; a new source is a new profile)."""
        seed = f"{self.settings.namespace}|{team}/{feature}|{source_arn}"
        digest = hashlib.sha256(seed.encode()).hexdigest()[:_DIGEST_LENGTH]
        readable = _SEPARATORS.sub("-", f"{team}-{feature}-{model}").strip("-")
        head = readable[: PROFILE_NAME_MAX_LENGTH - _DIGEST_LENGTH - 1].rstrip("-")
        return f"{head}-{digest}" if head else digest

    def _source_arn(self, invoke_id: str, kind: str) -> str:
        s = self.settings
        if kind == "foundation-model":
            return f"arn:{s.partition}:bedrock:{s.region}::foundation-model/{invoke_id}"
        if kind == "inference-profile":
            return f"arn:{s.partition}:bedrock:{s.region}:{s.account}:inference-profile/{invoke_id}"
        raise ValueError(f"unknown profile source kind {kind!r} (expected one of {SOURCE_KINDS})")

    # --- usage plan and key -------------------------------------------------------------------------

    def _ensure_plan(
        self, team: str, feature: str, owner: str, rate_limit_rpm: int, quota: int | None
    ) -> tuple[str, str]:
        identifier = self.identifier(team, feature)
        tags = self._tags(team, feature, owner)
        rate, burst = edge_throttle(rate_limit_rpm)
        label = f"AI Factory feature {team}/{feature}"
        key = self._find_key(identifier)
        if key is None:
            key = self.apigateway.create_api_key(
                name=identifier,
                value=identifier,
                enabled=True,
                description=f"{label}: usage identifier (not a secret; team account)",
                tags=tags,
            )
        else:
            self._check_ours(key, "API key")
        plan = self._find_plan(identifier)
        description = f"{label}: edge throttle from {rate_limit_rpm} requests/min (team account)"
        if plan is None:
            request: dict[str, Any] = {
                "name": identifier,
                "description": description,
                "apiStages": [{"apiId": self.settings.rest_api_id, "stage": self.settings.stage}],
                "throttle": {"rateLimit": rate, "burstLimit": burst},
                "tags": tags,
            }
            if quota is not None:
                request["quota"] = {"limit": quota, "period": "DAY"}
            plan = self.apigateway.create_usage_plan(**request)
        else:
            self._check_ours(plan, "usage plan")
            self.apigateway.update_usage_plan(
                usagePlanId=plan["id"],
                patchOperations=self._plan_patch(plan, description, rate, burst, quota),
            )
        # ConflictException: the key is in the plan already.
        with contextlib.suppress(self.apigateway.exceptions.ConflictException):
            self.apigateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
        return str(plan["id"]), str(key["id"])

    def _plan_patch(
        self, plan: Mapping[str, Any], description: str, rate: float, burst: int, quota: int | None
    ) -> list[dict[str, str]]:
        ops = [
            {"op": "replace", "path": "/description", "value": description},
            {"op": "replace", "path": "/throttle/rateLimit", "value": _number(rate)},
            {"op": "replace", "path": "/throttle/burstLimit", "value": str(burst)},
        ]
        if quota is not None:
            ops += [
                {"op": "replace", "path": "/quota/limit", "value": str(quota)},
                {"op": "replace", "path": "/quota/period", "value": "DAY"},
            ]
        elif plan.get("quota"):
            ops.append({"op": "remove", "path": "/quota"})
        stage = f"{self.settings.rest_api_id}:{self.settings.stage}"
        if not any(_stage_id(s) == stage for s in plan.get("apiStages", [])):
            ops.append({"op": "add", "path": "/apiStages", "value": stage})
        return ops

    def _find_key(self, identifier: str) -> dict[str, Any] | None:
        pages = self.apigateway.get_paginator("get_api_keys").paginate(
            nameQuery=identifier, PaginationConfig={"PageSize": _PAGE_SIZE}
        )
        for page in pages:
            for item in page.get("items", []):
                if item.get("name") == identifier:
                    return dict(item)
        return None

    def _find_plan(self, identifier: str) -> dict[str, Any] | None:
        # Every plan of the region is listed (API Gateway filters plans only by key): 500 per page, so
        # the default quota of 300 plans is one call.
        pages = self.apigateway.get_paginator("get_usage_plans").paginate(
            PaginationConfig={"PageSize": _PAGE_SIZE}
        )
        for page in pages:
            for item in page.get("items", []):
                if item.get("name") == identifier:
                    return dict(item)
        return None

    def _check_ours(self, item: Mapping[str, Any], what: str) -> None:
        tag = (item.get("tags") or {}).get(PROFILE_GATEWAY_TAG_KEY)
        if tag != self.settings.gateway_tag:
            raise EdgeConflict(
                f"{what} {item.get('id')} named {item.get('name')} does not carry this gateway's "
                f"{PROFILE_GATEWAY_TAG_KEY} tag: the shared provisioner leaves it alone (remove or rename it)"
            )

    # --- inference profiles ---------------------------------------------------------------------------

    def _ensure_profiles(
        self,
        team: str,
        feature: str,
        owner: str,
        allowed_models: Sequence[str],
        current: Mapping[str, str],
    ) -> tuple[dict[str, str], tuple[str, ...]]:
        wanted = self.targets(allowed_models)
        profiles: dict[str, str] = {}
        for invoke_id, (name, source) in wanted.items():
            arn = current.get(invoke_id)
            if arn is None or not self._profile_exists(arn):
                arn = self._create_profile(team, feature, owner, name, source)
            profiles[invoke_id] = arn
        stale = tuple(arn for model_id, arn in current.items() if model_id not in wanted)
        return profiles, stale

    def _profile_exists(self, arn: str) -> bool:
        try:
            self.bedrock.get_inference_profile(inferenceProfileIdentifier=arn)
        except self.bedrock.exceptions.ResourceNotFoundException:
            return False
        return True

    def _create_profile(self, team: str, feature: str, owner: str, model: str, source: str) -> str:
        name = self.profile_name(team, feature, model, source)
        tags = [{"key": k, "value": v} for k, v in self._tags(team, feature, owner).items()]
        try:
            response = self.bedrock.create_inference_profile(
                inferenceProfileName=name,
                description=_description(team, feature, model),
                modelSource={"copyFrom": source},
                tags=tags,
            )
        except self.bedrock.exceptions.ConflictException:
            # An earlier attempt created it and stopped before recording it: find it by its name.
            found = self._find_profile(name)
            if found is None:
                raise
            logger.info("profile %s already existed: %s", name, found)
            return found
        logger.info("created profile %s for %s/%s (%s)", name, team, feature, source)
        return str(response["inferenceProfileArn"])

    def _find_profile(self, name: str) -> str | None:
        kwargs: dict[str, Any] = {"typeEquals": "APPLICATION"}
        while True:
            page = self.bedrock.list_inference_profiles(**kwargs)
            for summary in page.get("inferenceProfileSummaries", []):
                if summary.get("inferenceProfileName") == name:
                    return str(summary["inferenceProfileArn"])
            if not page.get("nextToken"):
                return None
            kwargs["nextToken"] = page["nextToken"]

    # --- helpers ------------------------------------------------------------------------------------

    def _tags(self, team: str, feature: str, owner: str) -> dict[str, str]:
        return {
            "Team": team,
            "Feature": feature,
            "Owner": owner,
            PROFILE_GATEWAY_TAG_KEY: self.settings.gateway_tag,
        }

    @staticmethod
    def _ignore_missing(client: Any, call: Any, **kwargs: Any) -> None:
        """``call(**kwargs)``; a resource that is already gone is what a delete wants."""
        missing = tuple(
            getattr(client.exceptions, name)
            for name in ("NotFoundException", "ResourceNotFoundException")
            if hasattr(client.exceptions, name)
        )
        try:
            call(**kwargs)
        except missing:
            logger.info("%s: already gone (%s)", call.__name__ if hasattr(call, "__name__") else call, kwargs)


def _stage_id(stage: Mapping[str, Any]) -> str:
    return f"{stage.get('apiId')}:{stage.get('stage')}"


def _number(value: float) -> str:
    """A rate as API Gateway's patch value: ``2`` rather than ``2.0``."""
    return str(int(value)) if float(value).is_integer() else format(value, "g")


def _description(team: str, feature: str, model: str) -> str:
    # Bedrock's description pattern is ([0-9a-zA-Z:.][ _-]?)+ (no slashes or brackets), 200 characters.
    text = _SEPARATORS.sub(
        " ", f"AI Factory feature {team} {feature} model {model} cost allocation team account"
    )
    return text.strip()[:200].rstrip()
