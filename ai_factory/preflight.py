"""Read-only checks of an AWS account and region before the factory's first deploy.

Each check calls only read APIs (``Describe*``, ``Get*``, ``List*``) with the caller's credentials and
returns ``Finding``s: ``ok``, ``warn`` (deploys, but something will not work as documented), ``fail``
(blocks the deploy or the first requests) or ``unknown`` (the caller may not read it). What is checked:

* **CDK bootstrap**: the ``CDKToolkit`` stack and its SSM version parameter, against the version the
  app's templates require.
* **Bedrock models**: for each model a route uses, ``GetFoundationModelAvailability`` (model access,
  Marketplace agreement, region), and the Anthropic use-case form when a route uses an Anthropic model.
* **Lake Formation**: the data-lake admins and whether new databases default to ``IAMAllowedPrincipals``.
* **Service quotas**: Lambda concurrent executions, Bedrock tokens per minute per model.
* **Gateway concurrency**: the account's unreserved Lambda concurrency (``GetAccountSettings``) can give
  the gateway function its reserved concurrency and still keep the 10 Lambda requires.
* **Powertools layer**: the pinned public layer version exists in the region, for the runtime and
  architecture the gateway uses, and carries the Powertools version the tests run against.
* **CloudTrail**: a trail that is logging covers the region and records write management events, without
  which CloudTrail delivers no API call events to EventBridge and ``GatewayEnforcement``'s alarms on
  direct model calls never fire (``DescribeTrails``, ``GetTrailStatus``, ``GetEventSelectors``).

Example::

    report = run_preflight(boto3.Session(region_name="eu-west-1"), ModelCatalog.load())
    print(report.blocking)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from importlib import metadata
from typing import Any

from botocore.exceptions import ClientError

from ai_factory.catalog.model_catalog import CatalogModel, ModelCatalog
from aif_gateway.contract import DEFAULT_GATEWAY_RESERVED_CONCURRENCY, LAMBDA_MIN_UNRESERVED_CONCURRENCY

DEFAULT_QUALIFIER = "hnb659fds"
DEFAULT_TOOLKIT_STACK = "CDKToolkit"
# The highest ``requiresBootstrapStackVersion`` in the app's cloud assembly (the default synthesizer's
# asset publishing roles); tests/infra/test_preflight_bootstrap.py keeps it in step with a real synth.
MIN_BOOTSTRAP_VERSION = 8
# Below this, a burst of requests throttles the gateway (new accounts start at 10; AWS's default is 1000).
MIN_LAMBDA_CONCURRENCY = 100
LAMBDA_CONCURRENCY_QUOTA = "L-B99A9384"  # "Concurrent executions"


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Finding:
    """One result: ``check`` (e.g. ``bedrock-model``), what it is about, and how to fix a problem."""

    check: str
    subject: str
    status: Status
    message: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


@dataclass
class Report:
    account: str
    region: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.status is Status.FAIL]

    def to_dict(self) -> dict[str, Any]:
        counts = {s.value: sum(f.status is s for f in self.findings) for s in Status}
        return {
            "account": self.account,
            "region": self.region,
            "ready": not self.blocking,
            "counts": counts,
            "findings": [f.to_dict() for f in self.findings],
        }


Client = Any  # a boto3 client of the service the parameter names
ClientFactory = Callable[[str], Client]


class PreflightError(Exception):
    """The checks cannot run at all (no credentials, no region)."""


def run_preflight(
    session: Any,
    catalog: ModelCatalog,
    *,
    qualifier: str = DEFAULT_QUALIFIER,
    toolkit_stack: str = DEFAULT_TOOLKIT_STACK,
    clients: ClientFactory | None = None,
    gateway_reserved_concurrency: int | None = DEFAULT_GATEWAY_RESERVED_CONCURRENCY,
) -> Report:
    """Every check for ``session``'s account and region. ``clients(service)`` overrides client creation;
    ``gateway_reserved_concurrency`` is the ``LlmGateway`` prop the app deploys with (``None``: none)."""
    region = session.region_name
    if not region:
        raise PreflightError("no region: pass --region or set AWS_REGION / a profile region")
    make = clients or (lambda service: session.client(service, region_name=region))
    try:
        identity = make("sts").get_caller_identity()
    except ClientError as exc:
        raise PreflightError(f"cannot identify the caller: {_error(exc)}") from exc
    account = str(identity["Account"])
    partition = str(identity["Arn"]).split(":")[1]
    report = Report(account=account, region=region)
    bedrock = make("bedrock")
    report.findings += check_bootstrap(
        make("cloudformation"), make("ssm"), qualifier, toolkit_stack, f"aws://{account}/{region}"
    )
    report.findings += check_models(bedrock, catalog, region)
    report.findings += check_anthropic_use_case(bedrock, catalog, region)
    report.findings += check_lake_formation(make("lakeformation"), account, region, qualifier, partition)
    quotas = make("service-quotas")
    report.findings += check_lambda_concurrency(quotas)
    report.findings += check_bedrock_token_quotas(quotas, catalog, region)
    lambda_client = make("lambda")
    report.findings += check_reserved_concurrency(lambda_client, gateway_reserved_concurrency)
    report.findings += check_powertools_layer(lambda_client, partition, region)
    report.findings += check_cloudtrail(make("cloudtrail"), region)
    return report


# ------------------------------------------------------------------------------------ CDK bootstrap


def check_bootstrap(
    cloudformation: Client,
    ssm: Client,
    qualifier: str,
    toolkit_stack: str,
    environment: str = "aws://ACCOUNT/REGION",
) -> list[Finding]:
    """The bootstrap stack exists and is healthy, and its version is at least ``MIN_BOOTSTRAP_VERSION``."""
    fix = f"run `cdk bootstrap {environment}` (docs/deploy.md, step 2)"
    try:
        stacks = cloudformation.describe_stacks(StackName=toolkit_stack)["Stacks"]
    except ClientError as exc:
        if _code(exc) == "ValidationError":  # "Stack with id CDKToolkit does not exist"
            return [Finding("cdk-bootstrap", toolkit_stack, Status.FAIL, "not bootstrapped", fix)]
        return [_unknown("cdk-bootstrap", toolkit_stack, exc)]
    status = stacks[0]["StackStatus"]
    if not status.endswith("_COMPLETE") or status in ("ROLLBACK_COMPLETE", "DELETE_COMPLETE"):
        return [
            Finding(
                "cdk-bootstrap",
                toolkit_stack,
                Status.FAIL,
                f"bootstrap stack is {status}",
                "fix or delete the stack in the CloudFormation console, then bootstrap again",
            )
        ]
    parameter = f"/cdk-bootstrap/{qualifier}/version"
    try:
        version = int(ssm.get_parameter(Name=parameter)["Parameter"]["Value"])
    except ClientError as exc:
        if _code(exc) == "ParameterNotFound":
            return [
                Finding(
                    "cdk-bootstrap",
                    parameter,
                    Status.FAIL,
                    f"no bootstrap version parameter for qualifier {qualifier!r}",
                    fix,
                )
            ]
        return [_unknown("cdk-bootstrap", parameter, exc)]
    if version < MIN_BOOTSTRAP_VERSION:
        return [
            Finding(
                "cdk-bootstrap",
                parameter,
                Status.FAIL,
                f"bootstrap version {version}, the app needs {MIN_BOOTSTRAP_VERSION} or later",
                fix,
            )
        ]
    return [Finding("cdk-bootstrap", toolkit_stack, Status.OK, f"{status}, version {version}")]


# ---------------------------------------------------------------------------------------- Bedrock


def bedrock_models(catalog: ModelCatalog, region: str) -> list[CatalogModel]:
    """The Bedrock models a route uses that the catalog says run in (or are routed from) ``region``."""
    return [m for m in catalog.routed_models() if m.provider == "bedrock" and m.covers_region(region)]


def check_models(bedrock: Client, catalog: ModelCatalog, region: str) -> list[Finding]:
    """Model access, Marketplace agreement and region availability of each routed Bedrock model."""
    findings = []
    for model in bedrock_models(catalog, region):
        try:
            answer = bedrock.get_foundation_model_availability(modelId=model.model_id)
        except ClientError as exc:
            if _code(exc) in ("ResourceNotFoundException", "ValidationException"):
                findings.append(
                    Finding(
                        "bedrock-model",
                        model.name,
                        Status.FAIL,
                        f"{model.model_id} is not a Bedrock model in {region}: {_error(exc)}",
                        "fix the model_id or regions in the catalog (docs/model-catalog.md)",
                    )
                )
            else:
                findings.append(_unknown("bedrock-model", model.name, exc))
            continue
        findings.append(_model_finding(model, answer, region))
    return findings


def _model_finding(model: CatalogModel, answer: Mapping[str, Any], region: str) -> Finding:
    console = (
        f"Bedrock console ({region}) > Model catalog > {model.provider_name or ''} {model.name}".replace(
            "  ", " "
        )
    )
    problems: list[tuple[str, str]] = []
    if answer.get("regionAvailability") == "NOT_AVAILABLE":
        problems.append(
            (f"not offered in {region}", "route it from a region the catalog lists, or drop it here")
        )
    if answer.get("entitlementAvailability") == "NOT_AVAILABLE":
        problems.append(("no model access in this account", f"request access: {console}"))
    if answer.get("authorizationStatus") == "NOT_AUTHORIZED":
        problems.append(
            (
                "the account is not authorized for this model",
                "for Anthropic models submit the use-case form; check SCPs that deny bedrock:*",
            )
        )
    agreement = answer.get("agreementAvailability") or {}
    state = agreement.get("status")
    if state == "NOT_AVAILABLE":
        problems.append(
            (
                "no AWS Marketplace agreement (subscription) for this model",
                f"accept the offer once: {console}, or invoke it once as a principal allowed "
                "aws-marketplace:Subscribe",
            )
        )
    elif state == "ERROR":
        problems.append((f"Marketplace agreement failed: {agreement.get('errorMessage', '')}", console))
    if problems:
        return Finding(
            "bedrock-model",
            model.name,
            Status.FAIL,
            "; ".join(p for p, _ in problems),
            "; ".join(dict.fromkeys(f for _, f in problems)),
        )
    if state == "PENDING":
        return Finding(
            "bedrock-model",
            model.name,
            Status.WARN,
            "Marketplace agreement pending (usually minutes)",
            "run preflight again before the smoke test",
        )
    return Finding("bedrock-model", model.name, Status.OK, f"{model.model_id}: access and agreement in place")


def check_anthropic_use_case(bedrock: Client, catalog: ModelCatalog, region: str) -> list[Finding]:
    """Anthropic models answer only after the account's one-time use-case form is submitted."""
    anthropic = [m.name for m in bedrock_models(catalog, region) if m.model_id.startswith("anthropic.")]
    if not anthropic:
        return []
    subject = "Anthropic use-case form"
    try:
        form = bedrock.get_use_case_for_model_access().get("formData")
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return [
                Finding(
                    "anthropic-use-case",
                    subject,
                    Status.FAIL,
                    f"not submitted: {', '.join(anthropic)} will be refused",
                    "submit it once per account: Bedrock console > Model catalog > any Anthropic model > "
                    "Submit use case details (or PutUseCaseForModelAccess)",
                )
            ]
        return [_unknown("anthropic-use-case", subject, exc)]
    if not form:
        return [
            Finding("anthropic-use-case", subject, Status.FAIL, "empty form on record", "submit it again")
        ]
    return [Finding("anthropic-use-case", subject, Status.OK, "submitted")]


# ---------------------------------------------------------------------------------- Lake Formation


def cdk_execution_role_arn(partition: str, account: str, region: str, qualifier: str) -> str:
    return f"arn:{partition}:iam::{account}:role/cdk-{qualifier}-cfn-exec-role-{account}-{region}"


def check_lake_formation(
    lakeformation: Client, account: str, region: str, qualifier: str, partition: str = "aws"
) -> list[Finding]:
    """Who administers the data lake, and whether new databases default to IAM-only access."""
    try:
        settings = lakeformation.get_data_lake_settings()["DataLakeSettings"]
    except ClientError as exc:
        return [_unknown("lake-formation", "data lake settings", exc)]
    findings = []
    admins = [a["DataLakePrincipalIdentifier"] for a in settings.get("DataLakeAdmins", [])]
    exec_role = cdk_execution_role_arn(partition, account, region, qualifier)
    if exec_role in admins:
        findings.append(
            Finding("lake-formation", "Lake Formation admins", Status.OK, "the CDK execution role is one")
        )
    else:
        findings.append(
            Finding(
                "lake-formation",
                "Lake Formation admins",
                Status.OK,
                f"{len(admins)} admin(s); the governance stack appends the CDK execution role "
                "(MutationType APPEND, the others stay)",
            )
        )
    iam_default = [
        key
        for key in ("CreateDatabaseDefaultPermissions", "CreateTableDefaultPermissions")
        if any(
            p.get("Principal", {}).get("DataLakePrincipalIdentifier") == "IAM_ALLOWED_PRINCIPALS"
            for p in settings.get(key, [])
        )
    ]
    if iam_default:
        findings.append(
            Finding(
                "lake-formation",
                "IAMAllowedPrincipals default",
                Status.WARN,
                f"{' and '.join(iam_default)} grant IAMAllowedPrincipals: new databases get IAM-only "
                "access until it is revoked (the factory's tables opt out; its databases do not)",
                "after the first deploy revoke it on each ai_factory_* database (docs/data-governance.md)",
            )
        )
    else:
        findings.append(
            Finding("lake-formation", "IAMAllowedPrincipals default", Status.OK, "not granted by default")
        )
    return findings


# ---------------------------------------------------------------------------------------- quotas


def check_lambda_concurrency(quotas: Client) -> list[Finding]:
    subject = "Lambda concurrent executions"
    try:
        value = _quota_value(quotas, "lambda", LAMBDA_CONCURRENCY_QUOTA)
    except ClientError as exc:
        return [_unknown("quota", subject, exc)]
    if value < MIN_LAMBDA_CONCURRENCY:
        return [
            Finding(
                "quota",
                subject,
                Status.WARN,
                f"{value:,.0f}: the gateway, connector and canaries share it and throttle under load",
                f"request at least {MIN_LAMBDA_CONCURRENCY} (Service Quotas > AWS Lambda > "
                f"{LAMBDA_CONCURRENCY_QUOTA}); AWS's default is 1000",
            )
        ]
    return [Finding("quota", subject, Status.OK, f"{value:,.0f}")]


def check_reserved_concurrency(lambda_client: Client, reserved: int | None) -> list[Finding]:
    """Can the account reserve ``reserved`` for the gateway function? Lambda refuses (and the deploy
    fails) when a reservation would leave fewer than 10 unreserved concurrent executions."""
    subject = "Gateway reserved concurrency"
    if reserved is None:
        return [Finding("quota", subject, Status.OK, "none reserved (LlmGateway reserved_concurrency=None)")]
    try:
        limits = lambda_client.get_account_settings()["AccountLimit"]
    except ClientError as exc:
        return [_unknown("quota", subject, exc)]
    unreserved = int(limits.get("UnreservedConcurrentExecutions", 0))
    left = unreserved - reserved
    if left < LAMBDA_MIN_UNRESERVED_CONCURRENCY:
        return [
            Finding(
                "quota",
                subject,
                Status.FAIL,
                f"reserving {reserved} would leave {left} of {unreserved:,} unreserved concurrent "
                f"executions; Lambda keeps at least {LAMBDA_MIN_UNRESERVED_CONCURRENCY}, so the gateway's "
                "deploy fails",
                f"request a concurrency quota of at least {reserved + LAMBDA_MIN_UNRESERVED_CONCURRENCY} "
                "more than other functions reserve (Service Quotas > AWS Lambda > "
                f"{LAMBDA_CONCURRENCY_QUOTA}), "
                "or lower LlmGateway(reserved_concurrency=...) (None: unreserved) and pass the same "
                "--gateway-reserved-concurrency here",
            )
        ]
    return [Finding("quota", subject, Status.OK, f"{reserved} of {unreserved:,} unreserved, {left:,} left")]


def _quota_value(quotas: Client, service: str, code: str) -> float:
    try:
        return float(quotas.get_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])
    except ClientError as exc:
        if _code(exc) != "NoSuchResourceException":  # never changed: the account has AWS's default
            raise
    return float(quotas.get_aws_default_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])


def check_bedrock_token_quotas(quotas: Client, catalog: ModelCatalog, region: str) -> list[Finding]:
    """The tokens-per-minute quota each routed chat model is called under (cross-region or on-demand)."""
    models = [m for m in bedrock_models(catalog, region) if m.modality == "chat"]
    if not models:
        return []
    try:
        listed: list[Mapping[str, Any]] = []
        for page in quotas.get_paginator("list_service_quotas").paginate(ServiceCode="bedrock"):
            listed += page["Quotas"]
    except ClientError as exc:
        return [_unknown("quota", "Bedrock tokens per minute", exc)]
    findings = []
    for model in models:
        cross_region = model.invoke_id_for(region) != model.model_id
        kind = "Cross-region model inference" if cross_region else "On-demand model inference"
        quota = match_token_quota(listed, model.name, kind)
        subject = f"Bedrock tokens/min {model.name}"
        if quota is None:
            findings.append(
                Finding(
                    "quota",
                    subject,
                    Status.WARN,
                    f"no '{kind} tokens per minute' quota found for this model",
                    "check Service Quotas > Amazon Bedrock for the model's tokens-per-minute quota",
                )
            )
        elif float(quota["Value"]) <= 0:
            findings.append(
                Finding(
                    "quota",
                    subject,
                    Status.FAIL,
                    f"{quota['QuotaName']} is 0: every call is throttled",
                    f"request an increase of {quota['QuotaCode']} in Service Quotas",
                )
            )
        else:
            findings.append(
                Finding("quota", subject, Status.OK, f"{quota['QuotaName']}: {float(quota['Value']):,.0f}")
            )
    return findings


def match_token_quota(
    quotas: Iterable[Mapping[str, Any]], model_name: str, kind: str
) -> Mapping[str, Any] | None:
    """The quota named '<kind> tokens per minute for <provider> <model>' that names every part of
    ``model_name`` (``claude-haiku-4-5`` matches '... Anthropic Claude Haiku 4.5'); the shortest name wins
    over variants such as '(1M context length)'."""
    wanted = _name_parts(model_name)
    prefix = f"{kind} tokens per minute for ".lower()
    candidates = []
    for quota in quotas:
        name = str(quota.get("QuotaName", ""))
        if not name.lower().startswith(prefix):
            continue
        words = re.findall(r"[a-z0-9.]+", name.lower()[len(prefix) :])
        if all(any(w == part or (part.isalpha() and w.startswith(part)) for w in words) for part in wanted):
            candidates.append(quota)
    return min(candidates, key=lambda q: len(str(q["QuotaName"])), default=None)


def _name_parts(model_name: str) -> list[str]:
    """``claude-haiku-4-5`` -> ``["claude", "haiku", "4.5"]``; ``nova-lite`` -> ``["nova", "lite"]``."""
    parts: list[str] = []
    for piece in model_name.lower().split("-"):
        if piece.isdigit() and parts and re.fullmatch(r"\d+(\.\d+)*", parts[-1]):
            parts[-1] += f".{piece}"
        else:
            parts.append(piece)
    return parts


# ------------------------------------------------------------------------------- Powertools layer


def powertools_layer(partition: str, region: str) -> tuple[str, str, str]:
    """(layer ARN, runtime, architecture) of the gateway's pinned Powertools layer in ``region``."""
    from ai_factory.platform.lambda_packaging import (  # imports the CDK (~1 s): only when this check runs
        DEFAULT_POWERTOOLS_LAYER_VERSION,
        POWERTOOLS_LAYER_ACCOUNT,
        POWERTOOLS_LAYER_NAME,
    )

    arn = (
        f"arn:{partition}:lambda:{region}:{POWERTOOLS_LAYER_ACCOUNT}:layer:{POWERTOOLS_LAYER_NAME}:"
        f"{DEFAULT_POWERTOOLS_LAYER_VERSION}"
    )
    match = re.search(r"python(\d)(\d+)-(arm64|x86_64|x86)", POWERTOOLS_LAYER_NAME)
    assert match, POWERTOOLS_LAYER_NAME
    return arn, f"python{match[1]}.{match[2]}", "x86_64" if match[3].startswith("x86") else match[3]


def check_powertools_layer(lambda_client: Client, partition: str, region: str) -> list[Finding]:
    arn, runtime, architecture = powertools_layer(partition, region)
    subject = f"Powertools layer v{arn.rsplit(':', 1)[-1]}"
    try:
        layer = lambda_client.get_layer_version_by_arn(Arn=arn)
    except ClientError as exc:
        if _code(exc) in ("ResourceNotFoundException", "AccessDeniedException"):
            return [
                Finding(
                    "powertools-layer",
                    subject,
                    Status.FAIL,
                    f"{arn} does not exist in {region} (or is not public there)",
                    "pass powertools_layer_arn= to LlmGateway with the version AWS publishes in this region",
                )
            ]
        return [_unknown("powertools-layer", subject, exc)]
    problems = []
    if runtime not in layer.get("CompatibleRuntimes", [runtime]):
        problems.append(f"not built for {runtime}")
    if architecture not in layer.get("CompatibleArchitectures", [architecture]):
        problems.append(f"not built for {architecture}")
    if problems:
        return [Finding("powertools-layer", subject, Status.FAIL, "; ".join(problems), "pin another layer")]
    published = re.search(r"(\d+\.\d+\.\d+)", str(layer.get("Description", "")))
    tested = metadata.version("aws-lambda-powertools")
    if published and published[1].split(".")[:2] != tested.split(".")[:2]:
        return [
            Finding(
                "powertools-layer",
                subject,
                Status.WARN,
                f"the layer carries Powertools {published[1]}, the tests run {tested}",
                "pin the layer version that carries the tested Powertools (or the tested version to it)",
            )
        ]
    carried = published[1] if published else "unknown version"
    return [
        Finding("powertools-layer", subject, Status.OK, f"Powertools {carried} for {runtime} {architecture}")
    ]


# ------------------------------------------------------------------------------------------ CloudTrail


def check_cloudtrail(cloudtrail: Client, region: str) -> list[Finding]:
    """A logging trail that covers ``region`` and records write management events (Bedrock's
    ``InvokeModel`` and ``Converse`` are such events): EventBridge receives "AWS API Call via CloudTrail"
    events only from one. Organization and multi-region trails from other regions count."""
    subject = f"CloudTrail trail in {region}"
    try:
        trails = cloudtrail.describe_trails(includeShadowTrails=True)["trailList"]
    except ClientError as exc:
        return [_unknown("cloudtrail", subject, exc)]
    problems: list[str] = []
    for trail in trails:
        arn = trail["TrailARN"]
        try:
            logging = cloudtrail.get_trail_status(Name=arn).get("IsLogging", False)
            # Without custom selectors a trail logs every management event, reads and writes.
            records = not trail.get("HasCustomEventSelectors") or _records_write_management_events(
                cloudtrail.get_event_selectors(TrailName=arn)
            )
        except ClientError as exc:
            problems.append(f"{trail['Name']}: {_error(exc)}")
            continue
        if logging and records:
            return [Finding("cloudtrail", subject, Status.OK, f"{trail['Name']} logs management events")]
        problems.append(f"{trail['Name']}: {'no write management events' if logging else 'not logging'}")
    found = f" ({'; '.join(problems)})" if problems else ""
    return [
        Finding(
            "cloudtrail",
            subject,
            Status.WARN,
            f"no logging trail records this region's management events{found}: the alarms on model calls "
            "that skip the gateway will never fire",
            "create a multi-region trail (or have the organization trail cover this account) that logs "
            "management events (docs/security.md#detection)",
        )
    ]


def _records_write_management_events(selectors: Mapping[str, Any]) -> bool:
    for basic in selectors.get("EventSelectors") or []:
        if basic.get("IncludeManagementEvents", True) and basic.get("ReadWriteType", "All") != "ReadOnly":
            return True
    for advanced in selectors.get("AdvancedEventSelectors") or []:
        fields = {f["Field"]: f for f in advanced.get("FieldSelectors", [])}
        category = fields.get("eventCategory", {})
        read_only = fields.get("readOnly", {})
        if "Management" in category.get("Equals", []) and "true" not in read_only.get("Equals", []):
            return True
    return False


# ---------------------------------------------------------------------------------------------- private


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _error(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": ")


def _unknown(check: str, subject: str, exc: ClientError) -> Finding:
    return Finding(
        check,
        subject,
        Status.UNKNOWN,
        f"cannot check: {_error(exc)}",
        "run preflight with credentials allowed the read action named in the message",
    )
