"""Bedrock application inference profiles of one ``AiFeature``: the AWS bill split by feature.

Bedrock bills a model call to the resource named in ``modelId``. Called with a foundation model or a
system (cross-region) inference profile, every team's cost lands on one line of the bill under the
gateway's IAM role. Called with an *application inference profile* - a tagged copy of that model or
system profile owned by the account - the cost carries the profile's tags, so Cost Explorer and the Cost
and Usage Report split Bedrock spend by ``Team``, ``Feature`` and ``Owner`` without trusting the
gateway's ledger (``ai-factory usage --reconcile`` compares the two).

``FeatureInferenceProfiles`` creates one ``AWS::Bedrock::ApplicationInferenceProfile`` per Bedrock model
the feature's routes can reach (fallbacks included), copied from exactly the ID the gateway calls in its
region (a system inference profile such as ``us.anthropic...`` or a foundation model), and exposes
``{catalog model ID: profile ARN}``, which the feature's key record carries to the gateway
(``ApiKeyRecord.inference_profiles``). The gateway's role may invoke application inference profiles of
its account and region only when they carry its ``GATEWAY_TAG_KEY`` tag (``LlmGateway``), plus the
catalog's models, which invoking through a profile requires as well.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from aws_cdk import Aws, CfnTag
from aws_cdk import aws_bedrock as bedrock
from constructs import Construct

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.platform.name_prefix import name_prefix
from aif_gateway import contract
from aif_gateway.config import GatewayConfig

GATEWAY_TAG_KEY = contract.PROFILE_GATEWAY_TAG_KEY
"""Tag on every profile naming the gateway that may invoke it (its role's policy matches on it)."""
COST_TAG_KEYS = ("Team", "Feature", "Owner")
"""The cost-allocation tags; activate them in the Billing console (docs/feedback-and-usage.md)."""
NAME_MAX_LENGTH = 64  # Bedrock's InferenceProfileName: 1-64 characters, ([0-9a-zA-Z][ _-]?)+
_DIGEST_LENGTH = 8
_SEPARATORS = re.compile(r"[^0-9A-Za-z]+")


def profile_name(
    team: str, feature: str, model: str, *, source_id: str, scope_path: str, prefix: str = ""
) -> str:
    """The profile's name: readable ``<prefix>-<team>-<feature>-<model>`` (``prefix``: the factory's name
    prefix, so two factories in one account stay apart), cut to fit, plus a digest.

    Bedrock allows 1-64 letters and digits, each optionally followed by one space, ``_`` or ``-``, and
    the name must be unique in the account and region. The digest of ``scope_path`` (the feature's
    construct path, which differs per pipeline stage) and ``source_id`` (what the profile copies) makes
    it unique where the readable part is cut or two stages share an account, and gives a profile whose
    source changes a new name: the source is immutable, so CloudFormation replaces the profile and must
    create the new one before deleting the old one.
    """
    digest = hashlib.sha256(f"{scope_path}|{source_id}".encode()).hexdigest()[:_DIGEST_LENGTH]
    readable = _SEPARATORS.sub("-", "-".join(p for p in (prefix, team, feature, model) if p)).strip("-")
    head = readable[: NAME_MAX_LENGTH - _DIGEST_LENGTH - 1].rstrip("-")
    return f"{head}-{digest}" if head else digest


def bedrock_targets(config: GatewayConfig, routes: Sequence[str]) -> dict[str, str]:
    """``{model ID the gateway calls: catalog entry name}`` for every Bedrock target of ``routes``,
    fallbacks included, in route order (the gateway's own config, so the IDs are its region's). A route
    the gateway does not serve (a feature checked against another catalog) has nothing to profile."""
    found: dict[str, str] = {}
    for alias in routes:
        route = config.routes.get(alias)
        for target in route.targets if route is not None else ():
            # A profile lives in one region: targets pinned elsewhere keep the catalog ID.
            if target.provider == "bedrock" and target.region is None:
                found.setdefault(target.model_id, target.name)
    return found


def source_arn(catalog: ModelCatalog, name: str, invoke_id: str) -> str:
    """The ARN a profile copies: the system inference profile ``invoke_id`` in this account and region,
    or the foundation model in this region when ``invoke_id`` is the model ID itself."""
    if invoke_id == catalog.models[name].model_id:
        return f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}::foundation-model/{invoke_id}"
    return f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:inference-profile/{invoke_id}"


class FeatureInferenceProfiles(Construct):
    """One application inference profile per Bedrock model a feature's routes reach, tagged for cost
    allocation (``Team``, ``Feature``, ``Owner``) and with the gateway's ``GATEWAY_TAG_KEY``.

    :param team: the feature's team.
    :param feature: the feature's name.
    :param owner: who answers for the feature (the ``Owner`` tag).
    :param models: ``{model ID the gateway calls: catalog entry name}`` (``bedrock_targets``).
    :param catalog: the catalog those entries come from.
    :param gateway_tag: the value of ``GATEWAY_TAG_KEY`` the gateway's role accepts.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        team: str,
        feature: str,
        owner: str,
        models: dict[str, str],
        catalog: ModelCatalog,
        gateway_tag: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.profiles: dict[str, bedrock.CfnApplicationInferenceProfile] = {}
        """``{model ID the gateway calls: its profile}``."""
        tags = [
            CfnTag(key=key, value=value)
            for key, value in (("Team", team), ("Feature", feature), ("Owner", owner))
        ]
        tags.append(CfnTag(key=GATEWAY_TAG_KEY, value=gateway_tag))
        for invoke_id, name in models.items():
            self.profiles[invoke_id] = bedrock.CfnApplicationInferenceProfile(
                self,
                _construct_id(name, invoke_id, models),
                inference_profile_name=profile_name(
                    team,
                    feature,
                    name,
                    source_id=invoke_id,
                    scope_path=self.node.path,
                    prefix=name_prefix(self),
                ),
                description=_description(team, feature, name),
                model_source=bedrock.CfnApplicationInferenceProfile.InferenceProfileModelSourceProperty(
                    copy_from=source_arn(catalog, name, invoke_id)
                ),
                tags=tags,
            )

    @property
    def arns(self) -> dict[str, str]:
        """``{model ID the gateway calls: profile ARN}``: what the feature's key record carries."""
        return {model_id: p.attr_inference_profile_arn for model_id, p in self.profiles.items()}


def _construct_id(name: str, invoke_id: str, models: dict[str, str]) -> str:
    """The catalog name, unless one entry is reached under two IDs (then the ID tells them apart)."""
    if list(models.values()).count(name) == 1:
        return name
    return _SEPARATORS.sub("-", invoke_id)


def _description(team: str, feature: str, model: str) -> str:
    # Bedrock's description pattern is ([0-9a-zA-Z:.][ _-]?)+ (no slashes or brackets), 200 characters.
    text = _SEPARATORS.sub(" ", f"AI Factory feature {team} {feature} model {model} cost allocation")
    return text.strip()[:200].rstrip()
