"""``ILlmGateway`` and the imported gateway: what a team's own CDK app uses instead of the platform's stack.

A gateway deployed by the platform is referenced, not rebuilt, in the aws-cdk-lib style:

* ``LlmGateway.from_gateway_attributes(scope, id, attributes=GatewayAttributes(...))`` when the values are
  known (pinned in the team's ``cdk.json`` or passed by the pipeline);
* ``LlmGateway.from_lookup(scope, id)`` reads the SSM parameters the gateway stack publishes under
  ``aif_gateway.contract.GATEWAY_PARAMETER_PREFIX`` (names in ``GatewayParameters``) at synth time; the
  CDK caches the values in the app's ``cdk.context.json``, so later synths (and CI) need no AWS access.
  The edge namespace is optional there: a platform deployed before it was published lacks it, and the
  gateway then has none (``OnlineEvaluation`` refuses to sample its features and says what to do).

``AiFeature``, ``RagFeature`` and ``FeatureCanary`` take either kind of gateway. With an imported gateway
an ``AiFeature`` asks the platform's shared provisioner for its key (the gateway stack must have called
``LlmGateway.enable_team_accounts`` for the team's account); see ``docs/product-teams.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from aws_cdk import ContextProvider, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from ai_factory.catalog.model_catalog import ModelCatalog
from aif_gateway import contract
from aif_gateway.contract import GATEWAY_PARAMETER_PREFIX, GatewayParameters


@runtime_checkable
class ILlmGateway(Protocol):
    """What features need from a gateway, whether built in this app (``LlmGateway``) or imported.

    ``key_provisioning_service_token`` and ``key_provisioner_role_arn`` are set when the gateway serves
    team accounts (``LlmGateway.enable_team_accounts``); ``keys_table_name`` is ``None`` on an imported
    gateway (its keys table is written only by the platform's provisioner). ``runtime_role`` and
    ``knowledge_base_parameter_prefix`` are ``None`` when the gateway is in another account (knowledge
    bases register in the gateway's own account).
    """

    @property
    def url(self) -> str: ...

    @property
    def catalog(self) -> ModelCatalog: ...

    @property
    def metrics_namespace(self) -> str: ...

    @property
    def key_provisioning_service_token(self) -> str | None: ...

    @property
    def key_provisioner_role_arn(self) -> str | None: ...

    @property
    def keys_table_name(self) -> str | None: ...

    @property
    def runtime_role(self) -> iam.IRole | None: ...

    @property
    def knowledge_base_parameter_prefix(self) -> str | None: ...


@dataclass(frozen=True)
class GatewayAttributes:
    """The values that identify a deployed gateway (the gateway stack's SSM parameters hold them).

    :param url: OpenAI-compatible base URL (``https://.../<stage>/v1``).
    :param key_provisioning_service_token: ARN of the platform's shared key provisioner (the service
        token of ``Custom::AiFactoryFeatureKey``).
    :param key_provisioner_role_arn: the provisioner's role, which a feature's key-writer role trusts.
    :param metrics_namespace: CloudWatch namespace of the gateway's metrics.
    :param kms_key_arn: the gateway's KMS key (tables, logs).
    :param catalog: the approved-model catalog. Default: the one packaged with this library version.
    :param runtime_role_arn: the gateway function's role, for knowledge bases in the gateway's account.
    :param knowledge_base_parameter_prefix: where knowledge bases register (same account only).
    :param edge_namespace: the gateway's ``LlmGateway.edge_namespace`` (12 hexadecimal digits; the
        gateway function's ``AIF_EDGE_NAMESPACE``), its identity in Bedrock's invocation logs. Needed
        only to sample the features of this gateway (``OnlineEvaluation``), which refuses a feature whose
        gateway has none. ``from_lookup`` reads it from the ``edge-namespace`` parameter.
    """

    url: str
    key_provisioning_service_token: str
    key_provisioner_role_arn: str
    metrics_namespace: str = contract.METRICS_NAMESPACE
    kms_key_arn: str | None = None
    catalog: ModelCatalog | None = None
    runtime_role_arn: str | None = None
    knowledge_base_parameter_prefix: str | None = None
    edge_namespace: str | None = None


class ImportedLlmGateway(Construct):
    """A gateway deployed elsewhere (another app or account), referenced by its attributes."""

    def __init__(self, scope: Construct, construct_id: str, *, attributes: GatewayAttributes) -> None:
        super().__init__(scope, construct_id)
        label = f"LlmGateway.from_gateway_attributes '{self.node.path}'"
        for field in (
            "url",
            "key_provisioning_service_token",
            "key_provisioner_role_arn",
            "metrics_namespace",
        ):
            value = getattr(attributes, field)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{label}: {field}: is required, got {value!r}")
        if _checkable(attributes.url) and not attributes.url.startswith("https://"):
            raise ValueError(f"{label}: url: must be an https:// URL, got {attributes.url!r}")
        for field in ("key_provisioning_service_token", "key_provisioner_role_arn"):
            value = getattr(attributes, field)
            if _checkable(value) and not value.startswith("arn:"):
                raise ValueError(f"{label}: {field}: must be an ARN, got {value!r}")
        namespace = attributes.edge_namespace
        # A lookup's placeholder (first synth) is left unchecked, like the other values.
        pending = isinstance(namespace, str) and namespace.startswith(PENDING_LOOKUP)
        concrete = (
            isinstance(namespace, str)
            and not Token.is_unresolved(namespace)
            and contract.EDGE_NAMESPACE_RE.fullmatch(namespace) is not None
        )
        if namespace is not None and not pending and not concrete:
            # Concrete: the sampler's subscription filter and settings are built from it at synth.
            raise ValueError(
                f"{label}: edge_namespace: must be the gateway's LlmGateway.edge_namespace as a concrete "
                f"value (12 lowercase hexadecimal digits), got {namespace!r}"
            )
        self.attributes = attributes
        self._catalog = attributes.catalog or ModelCatalog.load()
        self._runtime_role = (
            iam.Role.from_role_arn(self, "RuntimeRole", attributes.runtime_role_arn)
            if attributes.runtime_role_arn
            else None
        )

    @property
    def url(self) -> str:
        return self.attributes.url

    @property
    def catalog(self) -> ModelCatalog:
        return self._catalog

    @property
    def metrics_namespace(self) -> str:
        return self.attributes.metrics_namespace

    @property
    def key_provisioning_service_token(self) -> str | None:
        return self.attributes.key_provisioning_service_token

    @property
    def key_provisioner_role_arn(self) -> str | None:
        return self.attributes.key_provisioner_role_arn

    @property
    def keys_table_name(self) -> str | None:
        return None

    @property
    def runtime_role(self) -> iam.IRole | None:
        return self._runtime_role

    @property
    def knowledge_base_parameter_prefix(self) -> str | None:
        return self.attributes.knowledge_base_parameter_prefix

    @property
    def edge_namespace(self) -> str | None:
        """The gateway's identity in Bedrock's invocation logs, when the attributes give it (during the
        CDK's first synth of a ``from_lookup``, its ``dummy-value-for-...`` placeholder)."""
        return self.attributes.edge_namespace


PENDING_LOOKUP = "dummy-value-for-"
"""How the CDK marks a lookup it has not resolved yet (the CLI resolves it and synthesizes again)."""

NOT_PUBLISHED = "not-published"
"""What the CDK CLI caches for the ``edge-namespace`` lookup when the platform has no such parameter (a
gateway deployed before it was published): the lookup's default, which means "no namespace"."""


def _checkable(value: str) -> bool:
    """A concrete value: not a token, not a lookup the CLI has yet to resolve."""
    return not Token.is_unresolved(value) and not value.startswith(PENDING_LOOKUP)


def parameter_name(name: str, prefix: str = GATEWAY_PARAMETER_PREFIX) -> str:
    """The full SSM name (or ARN, for a prefix shared from the platform account) of one parameter."""
    return f"{prefix.rstrip('/')}/{name}"


def lookup_attributes(
    scope: Construct, *, parameter_prefix: str = GATEWAY_PARAMETER_PREFIX, catalog: ModelCatalog | None = None
) -> GatewayAttributes:
    """Read the gateway's SSM parameters at synth time (cached in ``cdk.context.json``).

    ``parameter_prefix`` may be a parameter ARN prefix (``arn:aws:ssm:<region>:<platform account>:
    parameter/ai-factory/gateway``) when the platform shares its parameters with the team's account
    through AWS RAM. The stack needs a concrete account and region for the lookup.
    """

    def value(name: str) -> str:
        return ssm.StringParameter.value_from_lookup(scope, parameter_name(name, parameter_prefix))

    return GatewayAttributes(
        url=value(GatewayParameters.API_URL),
        key_provisioning_service_token=value(GatewayParameters.KEY_PROVISIONING_SERVICE_TOKEN),
        key_provisioner_role_arn=value(GatewayParameters.KEY_PROVISIONER_ROLE_ARN),
        metrics_namespace=value(GatewayParameters.METRICS_NAMESPACE),
        kms_key_arn=value(GatewayParameters.KMS_KEY_ARN),
        catalog=catalog,
        edge_namespace=_lookup_edge_namespace(
            scope, parameter_name(GatewayParameters.EDGE_NAMESPACE, parameter_prefix)
        ),
    )


def _lookup_edge_namespace(scope: Construct, name: str) -> str | None:
    """The ``edge-namespace`` parameter, ``None`` when the platform has not published it.

    With a default, a missing parameter is cached as that default instead of failing the synth. The CDK
    also returns the default while the lookup is pending, so the cache itself tells the two apart.
    """
    value = ssm.StringParameter.value_from_lookup(scope, name, NOT_PUBLISHED)
    # The key value_from_lookup caches under ("ssm": the schema's SSM_PARAMETER_PROVIDER, which this
    # get_key's Python binding takes as text).
    key = ContextProvider.get_key(scope, provider="ssm", props={"parameterName": name}).key
    if not isinstance(scope.node.try_get_context(key), str):
        # Not looked up yet, or the lookup failed (then the CDK reports the error on ``scope``): a
        # placeholder, like the other values, so the first synth completes and the CLI can look it up.
        return f"{PENDING_LOOKUP}{name}"
    return None if value == NOT_PUBLISHED else value
