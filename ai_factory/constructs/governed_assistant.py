"""``GovernedAssistant``: the factory's own chat assistant for employees, over its RAG features.

What it deploys (docs/assistant.md)::

    browser ──HTTPS──▶ CloudFront ──/*──────▶ S3 site bucket (private, KMS, origin access control)
       │                    └────/api/*──▶ REST API (Cognito authorizer) ──▶ backend Lambda (streams)
       └── sign-in: Cognito user pool (hosted UI, PKCE; SAML/OIDC federation)        │ assistant's key
                                                                                      ▼
                                               the factory's gateway: /v1/retrieve, /v1/chat/completions,
                                               /v1/feedback (metered, budgeted, guarded as the feature)

* **Identity**: a Cognito user pool (no self sign-up; admins or the company IdP create users), a hosted
  UI domain and a public app client (authorization code + PKCE, no secret in the browser). Each entry
  of ``clearance_groups`` becomes a Cognito group; a federated IdP's group claim maps onto the
  ``custom:groups`` attribute, so IdP groups of the same names count too.
* **Clearance**: the backend grants a user the highest clearance of their groups and answers only from
  the knowledge bases whose dataset classification that clearance covers; a user in no mapped group is
  refused.
* **Metering**: the browser never holds a gateway key. The backend calls the gateway with the
  ``feature``'s key (read from its secret), so every retrieval, answer and feedback is the feature's,
  in its budget, rate limit, usage ledger and audit trail.

Example (inside a ``TeamStack``)::

    assistant = AiFeature(team, "Assistant", feature="assistant", owner="it@example.com",
                          clearance="confidential", models=["chat-smart"], monthly_budget_usd=500,
                          rate_limit_rpm=300)
    handbook = RagFeature(team, "Handbook", feature=assistant, dataset=lake.datasets["hr.handbook"])
    GovernedAssistant(team, "CompanyAssistant", feature=assistant, knowledge_bases=[handbook],
                      clearance_groups={"employees": "internal", "hr": "confidential"})
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

import aif_assistant
import aif_gateway
from ai_factory.constructs.ai_feature import AiFeature
from ai_factory.constructs.rag_feature import RagFeature
from ai_factory.platform.custom_resources import secure_provider
from ai_factory.platform.functions import (
    ARCHITECTURE,
    function_log_group,
    hardened_function,
    write_own_logs_statement,
)
from ai_factory.platform.lambda_packaging import stage_asset
from ai_factory.platform.nag import (
    acknowledge,
    acknowledge_custom_resource_handler,
    acknowledge_outside_vpc,
    acknowledge_synchronous_invocation,
    acknowledge_unreserved_concurrency,
)
from ai_factory.platform.name_prefix import prefixed_unique_name
from ai_factory.platform.public_layers import layer_region, web_adapter_layer
from ai_factory.platform.secure_defaults import (
    access_log_bucket,
    encrypted_bucket,
    logs_kms_key,
    send_access_logs,
    via_services,
)
from aif_assistant import config as backend_config
from aif_assistant.identity import FEDERATED_GROUPS_CLAIM
from aif_assistant.web_policy import HSTS_MAX_AGE_S, content_security_policy
from aif_gateway import contract
from aif_gateway.contract import CLEARANCE_LEVELS, cleared_for

BACKEND_HANDLER = "aif_assistant/run.sh"
PUBLISHER_HANDLER = "aif_assistant.site_publisher.on_event"
WEB_ADAPTER_PORT = 8080
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "userSub": "$context.authorizer.claims.sub",
}
TOKEN_HEADER = "X-Aif-Id-Token"
"""The header the page sends its Cognito ID token in: a header of its own, which CloudFront's managed
AllViewerExceptHostHeader origin request policy forwards (an origin request policy cannot forward
``Authorization``), and which the API's Cognito authorizer reads."""
GROUP_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")
DOMAIN_PREFIX = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class GovernedAssistantError(ValueError):
    """An invalid ``GovernedAssistant`` prop; the message names the construct and the field."""


@dataclass(frozen=True)
class FederatedIdentityProvider:
    """The company identity provider users sign in with (SAML 2.0 or OpenID Connect).

    :param name: the provider's name in the user pool (shown on the hosted UI; 1-32 characters).
    :param saml_metadata_url: the IdP's SAML metadata URL (SAML), or
    :param oidc_issuer: the IdP's OIDC issuer URL (OIDC), with ``oidc_client_id`` and
        ``oidc_client_secret`` (a ``SecretValue``, e.g. ``SecretValue.secrets_manager(...)``).
    :param groups_attribute: the IdP claim (SAML attribute name) holding the user's groups; it is
        mapped onto ``custom:groups``, where the backend reads it beside Cognito's own groups.
    :param email_attribute: the IdP claim holding the user's e-mail address.
    """

    name: str
    saml_metadata_url: str | None = None
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: cdk.SecretValue | None = None
    groups_attribute: str = "groups"
    email_attribute: str = "email"


class GovernedAssistant(Construct):
    """A chat web app for employees over the factory's RAG features (see the module docstring).

    :param feature: the assistant's own ``AiFeature``; its key, budget and limits govern every call.
    :param knowledge_bases: the ``RagFeature``s it answers from; the feature must own or read each
        (``readers=[feature]``), and its clearance must cover each dataset's classification.
    :param clearance_groups: group name -> clearance (``public`` .. ``restricted``); each becomes a
        Cognito group. A clearance may not exceed the feature's.
    :param model: the catalog route for answers (default: the feature's first model).
    :param identity_providers: company IdPs to federate with (SAML or OIDC); none: Cognito users only.
    :param domain_prefix: the Cognito hosted UI's domain prefix (unique per region; default
        ``aif-<feature>-<account>-<hash of the construct path>``).
    :param web_acl_arn: an AWS WAF web ACL (scope CLOUDFRONT, us-east-1) for the distribution.
    :param log_retention: retention of the backend's and API's logs (default one year).
    :param top_k: passages per answer, over all the knowledge bases a user may read (1-20).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        feature: AiFeature,
        knowledge_bases: Sequence[RagFeature],
        clearance_groups: Mapping[str, str],
        model: str | None = None,
        identity_providers: Sequence[FederatedIdentityProvider] = (),
        domain_prefix: str | None = None,
        web_acl_arn: str | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        top_k: int = 4,
    ) -> None:
        super().__init__(scope, construct_id)
        self._label = f"GovernedAssistant {construct_id}"
        if not isinstance(feature, AiFeature):
            raise self._fail("feature", f"must be an AiFeature, got {feature!r}")
        self.feature = feature
        self.clearance_groups = self._validate_groups(clearance_groups)
        self.knowledge_bases = self._validate_knowledge_bases(knowledge_bases)
        self.model = self._validate_model(model)
        if not 1 <= top_k <= 20:
            raise self._fail("top_k", f"must be 1 to 20, got {top_k}")
        self.identity_providers = tuple(identity_providers)
        for i, idp in enumerate(self.identity_providers):
            self._validate_idp(i, idp)
        # Unique per account and construct path (two stages in one account get two domains).
        path_hash = hashlib.sha256(self.node.path.encode()).hexdigest()[:8]
        prefix = domain_prefix or f"aif-{feature.feature[:24]}-{Aws.ACCOUNT_ID}-{path_hash}"
        if domain_prefix is not None and not DOMAIN_PREFIX.match(domain_prefix):
            raise self._fail("domain_prefix", "must be 1-63 lowercase letters, digits and hyphens")
        if domain_prefix is not None and re.search(r"aws|amazon|cognito", domain_prefix):
            raise self._fail(
                "domain_prefix", "may not contain 'aws', 'amazon' or 'cognito' (Cognito reserves them)"
            )

        self.key = logs_kms_key(
            self, "Key", f"AI Factory assistant {feature.team}/{feature.feature}: site and logs"
        )
        self.site_bucket = self._site_bucket()
        self.user_pool, self.groups = self._user_pool()
        self.domain = self.user_pool.add_domain(
            "Domain", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=prefix)
        )
        self.backend = self._backend(log_retention, top_k)
        self.api = self._api(log_retention)
        self.distribution = self._distribution(web_acl_arn)
        self.url = f"https://{self.distribution.distribution_domain_name}/"
        """The page's URL (the CloudFront domain)."""
        self.client = self._client()
        self._publish_site()
        cdk.CfnOutput(self, "Url", value=self.url, description="The assistant's page")
        cdk.CfnOutput(self, "UserPoolId", value=self.user_pool.user_pool_id, description="Assistant users")

    # -- validation ----------------------------------------------------------------------------------

    def _fail(self, field: str, why: str) -> GovernedAssistantError:
        return GovernedAssistantError(f"{self._label}: {field}: {why}")

    def _validate_groups(self, groups: Mapping[str, str]) -> dict[str, str]:
        if not isinstance(groups, Mapping) or not groups:
            raise self._fail("clearance_groups", "must map at least one group name to a clearance")
        for name, clearance in groups.items():
            if not isinstance(name, str) or not GROUP_NAME.match(name):
                raise self._fail(
                    f"clearance_groups[{name!r}]", "a group name is 1-128 letters, digits and +=,.@-_"
                )
            if clearance not in CLEARANCE_LEVELS:
                raise self._fail(
                    f"clearance_groups[{name!r}]",
                    f"{clearance!r} is not one of {', '.join(CLEARANCE_LEVELS)}",
                )
            if not cleared_for(self.feature.clearance, clearance):
                raise self._fail(
                    f"clearance_groups[{name!r}]",
                    f"grants '{clearance}', above the feature {self.feature.team}/{self.feature.feature}'s "
                    f"clearance '{self.feature.clearance}'",
                )
        return dict(groups)

    def _validate_knowledge_bases(self, kbs: Sequence[RagFeature]) -> tuple[RagFeature, ...]:
        if isinstance(kbs, RagFeature) or not isinstance(kbs, Sequence) or not kbs:
            raise self._fail("knowledge_bases", "must be a non-empty list of RagFeature")
        pair = f"{self.feature.team}/{self.feature.feature}"
        names = set()
        for i, kb in enumerate(kbs):
            if not isinstance(kb, RagFeature):
                raise self._fail(f"knowledge_bases[{i}]", f"must be a RagFeature, got {kb!r}")
            if pair not in kb.allowed:
                raise self._fail(
                    f"knowledge_bases[{i}]",
                    f"knowledge base '{kb.name}' does not allow {pair}: declare the RagFeature with "
                    f"feature={self.feature.feature} or readers=[...{self.feature.feature}]",
                )
            if kb.name in names:
                raise self._fail(f"knowledge_bases[{i}]", f"knowledge base '{kb.name}' is listed twice")
            names.add(kb.name)
        return tuple(kbs)

    def _validate_model(self, model: str | None) -> str:
        chosen = model or self.feature.models[0]
        if chosen not in self.feature.models:
            raise self._fail(
                "model", f"'{chosen}' is not one of the feature's models ({', '.join(self.feature.models)})"
            )
        return chosen

    def _validate_idp(self, i: int, idp: FederatedIdentityProvider) -> None:
        field = f"identity_providers[{i}]"
        if not isinstance(idp, FederatedIdentityProvider):
            raise self._fail(field, "must be a FederatedIdentityProvider")
        if not re.fullmatch(r"[\w\s+=,.@-]{1,32}", idp.name) or idp.name.upper() == "COGNITO":
            raise self._fail(f"{field}.name", "must be 1-32 characters and not 'Cognito'")
        if (idp.saml_metadata_url is None) == (idp.oidc_issuer is None):
            raise self._fail(field, "set exactly one of saml_metadata_url (SAML) and oidc_issuer (OIDC)")
        if idp.oidc_issuer is not None and (idp.oidc_client_id is None or idp.oidc_client_secret is None):
            raise self._fail(field, "an OIDC provider needs oidc_client_id and oidc_client_secret")
        for url in (idp.saml_metadata_url, idp.oidc_issuer):
            if url is not None and not url.startswith("https://"):
                raise self._fail(field, f"{url!r} must be an https:// URL")

    # -- site ----------------------------------------------------------------------------------------

    def _site_bucket(self) -> cdk.aws_s3.Bucket:
        bucket = encrypted_bucket(self, "SiteBucket", key=self.key, versioned=True)
        self.access_logs = access_log_bucket(
            self,
            "AccessLogs",
            expiry_days=365,
            reason="This bucket receives the site bucket's S3 server access logs; logging it to itself "
            "would loop.",
        )
        send_access_logs(bucket, self.access_logs, prefix="site/", sid="SiteBucketAccessLogs")
        acknowledge(
            bucket,
            {
                "NIST.800.53.R5-S3BucketReplicationEnabled": (
                    "The bucket holds only the page's own code (HTML, JavaScript, CSS, config.json), "
                    "republished from the construct library on every deploy; there is nothing to recover "
                    "from a second region."
                ),
            },
        )
        return bucket

    def _distribution(self, web_acl_arn: str | None) -> cloudfront.Distribution:
        idp_origin = self.domain.base_url()  # https://<prefix>.auth.<region>.amazoncognito.com
        headers = cloudfront.ResponseHeadersPolicy(
            self,
            "SecurityHeaders",
            comment="AI Factory assistant: CSP, HSTS, no framing, no sniffing, no referrer",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=content_security_policy([idp_origin]), override=True
                ),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.seconds(HSTS_MAX_AGE_S),
                    include_subdomains=True,
                    preload=True,
                    override=True,
                ),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True
                ),
            ),
            custom_headers_behavior=cloudfront.ResponseCustomHeadersBehavior(
                custom_headers=[
                    cloudfront.ResponseCustomHeader(
                        header="Permissions-Policy",
                        value="camera=(), microphone=(), geolocation=()",
                        override=True,
                    )
                ]
            ),
        )
        # The stage is named "api": a viewer's /api/chat reaches stage "api", resource /chat, unchanged.
        api_origin = origins.HttpOrigin(
            f"{self.api.rest_api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}",
            protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
            origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
            read_timeout=Duration.seconds(60),
        )
        distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"AI Factory assistant {self.feature.team}/{self.feature.feature}",
            default_root_object="index.html",
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            web_acl_id=web_acl_arn,
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.site_bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=headers,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
            ),
            additional_behaviors={
                "/api/*": cloudfront.BehaviorOptions(
                    origin=api_origin,
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                    # Per-user answers: never cached; every viewer header (the ID token's) but Host goes on.
                    cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                    origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
                    response_headers_policy=headers,
                    allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                )
            },
        )
        self._acknowledge_distribution(distribution, web_acl=web_acl_arn is not None)
        # For `ai-factory report`: the anonymous part is the static page; every answer needs a sign-in.
        cfn_distribution = distribution.node.default_child
        assert isinstance(cfn_distribution, cdk.CfnResource)
        cfn_distribution.add_metadata(
            contract.PUBLIC_BY_DESIGN_METADATA,
            "Serves the assistant's static page (no data) from a private bucket through origin access "
            "control, HTTPS only, with security headers; /api/* goes to an API whose every method needs "
            "a Cognito ID token, so nothing but the page is reachable without signing in.",
        )
        return distribution

    def _publish_site(self) -> None:
        source = _package_dir(aif_assistant)
        staged = stage_asset(
            "assistant-site-",
            {
                "aif_assistant": [
                    source / "__init__.py",
                    source / "site_publisher.py",
                    source / "web_policy.py",
                ],
                "aif_assistant/web": source / "web",
            },
        )
        code = lambda_.Code.from_asset(str(staged))
        log_group = function_log_group(
            self, "PublisherLogs", key=self.key, retention=logs.RetentionDays.ONE_YEAR
        )
        role = iam.Role(
            self,
            "PublisherRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="AI Factory assistant: publishes the page into its site bucket",
        )
        role.add_to_policy(write_own_logs_statement(log_group))
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PutPageFiles",
                actions=["s3:PutObject"],
                resources=[
                    self.site_bucket.arn_for_objects(n)
                    for n in ("index.html", "app.js", "app.css", "config.json")
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="EncryptPageFiles",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[self.key.key_arn],
                conditions=via_services("s3"),
            )
        )
        function = hardened_function(
            self,
            "Publisher",
            description="AI Factory assistant: publishes the page into its site bucket",
            handler=PUBLISHER_HANDLER,
            code=code,
            role=role,
            log_group=log_group,
            timeout=Duration.minutes(1),
            memory_size=256,
            tracing=False,
        )
        acknowledge_custom_resource_handler(function, what="publishes the page's files into the site bucket")
        provider = secure_provider(
            self,
            function,
            key=self.key,
            role_description="AI Factory assistant: custom-resource framework of the page publisher",
            handler_noun="the page publisher",
        )
        config = {
            "auth": {
                "mode": "cognito",
                "domain": self.domain.base_url(),
                "client_id": self.client.user_pool_client_id,
                "redirect_uri": self.url,
                **(
                    {"identity_provider": self.identity_providers[0].name}
                    if len(self.identity_providers) == 1
                    else {}
                ),
            }
        }
        cdk.CustomResource(
            self,
            "Site",
            service_token=provider.service_token,
            resource_type="Custom::AssistantSite",
            properties={
                "Bucket": self.site_bucket.bucket_name,
                "Config": cdk.Stack.of(self).to_json_string(config),
                # The staged folder is named by its content: a changed page file updates the resource.
                "Files": staged.name,
            },
        )

    # -- identity ------------------------------------------------------------------------------------

    def _user_pool(self) -> tuple[cognito.UserPool, dict[str, cognito.CfnUserPoolGroup]]:
        pool = cognito.UserPool(
            self,
            "Users",
            self_sign_up_enabled=False,  # users come from the admins or the company IdP
            sign_in_aliases=cognito.SignInAliases(email=True),
            custom_attributes={"groups": cognito.StringAttribute(min_len=0, max_len=2048, mutable=True)},
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=True,
                require_symbols=True,
            ),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        groups = {
            name: cognito.CfnUserPoolGroup(
                self,
                f"Group{i}",
                user_pool_id=pool.user_pool_id,
                group_name=name,
                description=f"Assistant users with clearance {clearance}",
            )
            for i, (name, clearance) in enumerate(sorted(self.clearance_groups.items()))
        }
        self._providers: list[Construct] = []
        for i, idp in enumerate(self.identity_providers):
            mapping = cognito.AttributeMapping(
                email=cognito.ProviderAttribute.other(idp.email_attribute),
                custom={FEDERATED_GROUPS_CLAIM: cognito.ProviderAttribute.other(idp.groups_attribute)},
            )
            provider: cognito.UserPoolIdentityProviderSaml | cognito.UserPoolIdentityProviderOidc
            if idp.saml_metadata_url is not None:
                provider = cognito.UserPoolIdentityProviderSaml(
                    self,
                    f"Idp{i}",
                    user_pool=pool,
                    name=idp.name,
                    metadata=cognito.UserPoolIdentityProviderSamlMetadata.url(idp.saml_metadata_url),
                    attribute_mapping=mapping,
                )
            else:
                assert idp.oidc_client_id is not None and idp.oidc_client_secret is not None
                provider = cognito.UserPoolIdentityProviderOidc(
                    self,
                    f"Idp{i}",
                    user_pool=pool,
                    name=idp.name,
                    issuer_url=str(idp.oidc_issuer),
                    client_id=idp.oidc_client_id,
                    # A dynamic reference ({{resolve:secretsmanager:...}}) when the SecretValue comes from
                    # Secrets Manager: CloudFormation resolves it, the template never holds the secret.
                    client_secret=idp.oidc_client_secret.unsafe_unwrap(),
                    scopes=["openid", "email", "profile"],
                    attribute_mapping=mapping,
                )
            pool.register_identity_provider(provider)
            self._providers.append(provider)
        return pool, groups

    def _client(self) -> cognito.UserPoolClient:
        providers = [cognito.UserPoolClientIdentityProvider.custom(i.name) for i in self.identity_providers]
        if not providers:
            providers = [cognito.UserPoolClientIdentityProvider.COGNITO]
        client = self.user_pool.add_client(
            "WebClient",
            generate_secret=False,  # a browser cannot keep a secret: authorization code + PKCE
            auth_flows=cognito.AuthFlow(user_srp=True),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE],
                callback_urls=[self.url],
                logout_urls=[self.url],
            ),
            supported_identity_providers=providers,
            prevent_user_existence_errors=True,
            id_token_validity=Duration.hours(1),
            access_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.hours(8),
            enable_token_revocation=True,
            read_attributes=cognito.ClientAttributes()
            .with_standard_attributes(email=True)
            .with_custom_attributes("groups"),
        )
        for provider in self._providers:
            client.node.add_dependency(provider)  # the client names them: they must exist first
        return client

    # -- backend -------------------------------------------------------------------------------------

    def _backend(self, retention: logs.RetentionDays, top_k: int) -> lambda_.Function:
        gateway_dir = _package_dir(aif_gateway)
        code = lambda_.Code.from_asset(
            str(
                stage_asset(
                    "assistant-backend-",
                    {"aif_assistant": _package_dir(aif_assistant), "aif_gateway": gateway_dir},
                )
            )
        )
        region, _ = layer_region(cdk.Stack.of(self).region)
        adapter = lambda_.LayerVersion.from_layer_version_arn(
            self, "WebAdapterLayer", web_adapter_layer(ARCHITECTURE).arn(region)
        )
        log_group = function_log_group(self, "BackendLogs", key=self.key, retention=retention)
        role = iam.Role(
            self,
            "BackendRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="AI Factory assistant backend: reads the assistant feature's key, writes its logs",
        )
        role.add_to_policy(write_own_logs_statement(log_group))
        kbs = [
            {"name": kb.name, "classification": kb.classification, "title": kb.name}
            for kb in self.knowledge_bases
        ]
        function = hardened_function(
            self,
            "Backend",
            description="AI Factory assistant backend (/api/*): grounded, streamed answers via the gateway",
            handler=BACKEND_HANDLER,
            code=code,
            role=role,
            log_group=log_group,
            layers=[adapter],
            timeout=Duration.minutes(5),
            memory_size=512,
            tracing=False,
            environment={
                backend_config.GATEWAY_URL_ENV: self.feature.gateway.url,
                backend_config.MODEL_ENV: self.model,
                backend_config.KNOWLEDGE_BASES_ENV: json.dumps(kbs),
                backend_config.CLEARANCE_GROUPS_ENV: json.dumps(self.clearance_groups, sort_keys=True),
                backend_config.KEY_SECRET_ENV: self.feature.secret.secret_arn,
                backend_config.TOP_K_ENV: str(top_k),
                contract.LAMBDA_EXEC_WRAPPER_ENV: "/opt/bootstrap",
                contract.LWA_INVOKE_MODE_ENV: "response_stream",
                contract.LWA_PORT_ENV: str(WEB_ADAPTER_PORT),
                "AWS_LWA_READINESS_CHECK_PROTOCOL": "tcp",
            },
        )
        self.feature.grant_read_api_key(function)
        acknowledge_synchronous_invocation(
            function,
            caller="API Gateway (streamed Lambda proxy integration)",
            failures="the browser gets the error",
        )
        acknowledge_unreserved_concurrency(
            function, bounded_by="the API stage's throttling and the assistant feature key's rate limit"
        )
        acknowledge_outside_vpc(function)
        acknowledge(
            function.node.default_child,  # type: ignore[arg-type]
            {
                "Serverless-LambdaTracing": (
                    "The backend relays each answer from the gateway, whose own function is traced and "
                    "writes the usage and audit record of every call; a second trace segment per request "
                    "would add a Resource '*' X-Ray grant and no information."
                ),
            },
        )
        return function

    def _api(self, retention: logs.RetentionDays) -> apigw.RestApi:
        access_logs = logs.LogGroup(
            self,
            "ApiAccessLogs",
            retention=retention,
            encryption_key=self.key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=prefixed_unique_name(self, max_length=128),
            description=f"AI Factory assistant {self.feature.team}/{self.feature.feature}",
            endpoint_configuration=apigw.EndpointConfiguration(types=[apigw.EndpointType.REGIONAL]),
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name="api",
                throttling_rate_limit=50,
                throttling_burst_limit=100,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # questions and answers never land in API Gateway's logs
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                # The user's pseudonymous Cognito subject, never the name or e-mail: joined with the
                # backend's log line (subject -> gateway request id) it says who asked what.
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
            ),
        )
        execution_logs = logs.LogGroup(
            self,
            "ApiExecutionLogs",
            log_group_name=f"API-Gateway-Execution-Logs_{api.rest_api_id}/api",
            retention=retention,
            encryption_key=self.key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        api.deployment_stage.node.add_dependency(execution_logs)
        authorizer = apigw.CognitoUserPoolsAuthorizer(
            self,
            "Authorizer",
            cognito_user_pools=[self.user_pool],
            identity_source=f"method.request.header.{TOKEN_HEADER}",
        )
        integration = apigw.LambdaIntegration(
            self.backend,
            proxy=True,
            response_transfer_mode=apigw.ResponseTransferMode.STREAM,
            timeout=Duration.minutes(5),
            scope_permission_to_method=False,
        )
        # The stage is named "api", so CloudFront's /api/* reaches the resources below without a rewrite.
        root = api.root
        for route, method in (("me", "GET"), ("chat", "POST"), ("feedback", "POST")):
            root.add_resource(route).add_method(
                method, integration, authorizer=authorizer, authorization_type=apigw.AuthorizationType.COGNITO
            )
        acknowledge(
            api,
            {
                "AwsSolutions-APIG2": (
                    "The backend validates every body field by field and answers 400 naming the field; "
                    "API Gateway's validation would answer in a different error shape than the page reads."
                ),
            },
        )
        acknowledge(
            api.deployment_stage,
            {
                "AwsSolutions-APIG3": (
                    "The API is reached through the CloudFront distribution, where the optional WAF web "
                    "ACL (web_acl_arn) applies; every method needs a Cognito ID token and the stage is "
                    "throttled."
                ),
                "NIST.800.53.R5-APIGWAssociatedWithWAF": (
                    "The API is reached through the CloudFront distribution, where the optional WAF web "
                    "ACL (web_acl_arn) applies; every method needs a Cognito ID token and the stage is "
                    "throttled."
                ),
                "NIST.800.53.R5-APIGWCacheEnabledAndEncrypted": (
                    "Every response is one signed-in user's answer; a stage cache could serve it to "
                    "another user. No cache cluster exists, so nothing cached needs encryption."
                ),
                "NIST.800.53.R5-APIGWSSLEnabled": (
                    "A client certificate authenticates API Gateway to an HTTP backend; the only "
                    "integration is the backend Lambda, invoked through the Lambda API with IAM."
                ),
            },
        )
        return api

    # -- nag -------------------------------------------------------------------------------------------

    def _acknowledge_distribution(self, distribution: cloudfront.Distribution, *, web_acl: bool) -> None:
        rules = {
            "AwsSolutions-CFR1": (
                "Employees sign in from wherever they work; access is decided by the company identity "
                "(Cognito, federated with the IdP) and each user's clearance, not by country."
            ),
            "AwsSolutions-CFR3": (
                "CloudFront standard logs need an ACL-enabled bucket, which the factory's buckets forbid "
                "(BucketOwnerEnforced). Every API call is in the API's access log with the user's "
                "identity, and every gateway call in the usage ledger and audit trail; the site "
                "bucket has S3 server access logs."
            ),
            "AwsSolutions-CFR4": (
                "The distribution uses the default *.cloudfront.net certificate, for which CloudFront "
                "fixes the viewer protocol policy; viewers connect over HTTPS only. A custom domain "
                "with its own certificate can set TLSv1.2_2021 as the minimum."
            ),
        }
        if not web_acl:
            rules["AwsSolutions-CFR2"] = (
                "AWS WAF is opt-in (web_acl_arn, a CLOUDFRONT-scope web ACL in us-east-1) because web ACLs "
                "are usually owned centrally (Firewall Manager). Without it every API call still needs "
                "a Cognito ID token, the API stage is throttled and the feature key has a rate limit."
            )
        acknowledge(distribution, rules)


def _package_dir(module: object) -> Path:
    """Where an installed runtime package lives (``lambdas/<name>/<package>`` in this repo)."""
    return Path(str(getattr(module, "__file__", ""))).resolve().parent
