"""The report model: what the synthesized factory grants, stores, exposes and encrypts.

``build_report(assembly)`` reads only the assembly. Every section is a list of small frozen records;
``Report.inventory()`` flattens the access- and data-flow sections into comparable key -> value maps
(what ``diff`` compares).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ai_factory.catalog.model_catalog import EXTERNAL_PROVIDERS, CatalogError, ModelCatalog
from ai_factory.compliance.assembly import CloudAssembly, Resource, render
from ai_factory.compliance.evidence import ARTIFACTS
from aif_gateway import contract
from aif_gateway.config import CLASSIFICATIONS

FEATURE_KEY_TYPE = "Custom::AiFactoryFeatureKey"
PROMPTS_METADATA = contract.PROMPTS_METADATA_TYPE
GATEWAY_HANDLER_PREFIX = "aif_gateway"  # aif_gateway.<module>.<function>, or the aif_gateway/run.sh server
GATEWAY_CONFIG = "aif_gateway/gateway_config.json"
# Handlers that authenticate every request in code although API Gateway's authorization is NONE.
AUTHENTICATING_HANDLERS = {
    handler: "feature API key checked by the AI Factory gateway on every route"
    for handler in ("aif_gateway.handler.lambda_handler", "aif_gateway/run.sh")
}
# The gateway's edge authorizer (a Lambda REQUEST authorizer) in front of those handlers.
EDGE_AUTHORIZER_HANDLER = "aif_gateway.authorizer.handler"
EDGE_AUTH = "feature API key checked by the AI Factory edge authorizer and again by the gateway"
NO_ACK = "no acknowledgement found"
# Rules (any pack) about wildcard permissions: an acknowledgement of one of them without a finding
# detail ("[Resource::...]") covers every wildcard of the policy it is on.
_WILDCARD_RULES = ("IAM5", "FullAccess", "AdminAccess")
# Resources a KMS key "protects" are everything that references it except IAM and the key's aliases.
_KEY_USERS = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::Role")


@dataclass(frozen=True)
class ModelTarget:
    """One model behind an alias (in fallback order)."""

    name: str
    model_id: str
    provider: str
    max_classification: str = ""  # the most sensitive data it may receive ("" in older assemblies)

    @property
    def external(self) -> bool:
        return self.provider in EXTERNAL_PROVIDERS


@dataclass(frozen=True)
class ExternalFlow:
    """Data a feature may send to a model outside AWS: the CISO's question, one row per target."""

    feature: str  # team/feature
    clearance: str
    alias: str
    target: ModelTarget
    processed_in: str  # from the catalog's data_handling ("unknown" for a model not in the catalog)

    @property
    def sends(self) -> str:
        """What reaches the provider: data up to the feature's clearance, or nothing when the clearance
        is above the target's ceiling (the gateway skips the target; synth refuses such a feature)."""
        ceiling = self.target.max_classification
        known = self.clearance in CLASSIFICATIONS and ceiling in CLASSIFICATIONS
        if known and CLASSIFICATIONS.index(self.clearance) > CLASSIFICATIONS.index(ceiling):
            return f"nothing: clearance {self.clearance} is above the model's ceiling {ceiling}"
        return f"data up to {self.clearance}"


@dataclass(frozen=True)
class DatasetGrant:
    """A Lake Formation grant: who may do what on which data, at which classification."""

    grantee: str  # "team/feature" or the principal when no feature owns it
    principal: str
    resource: str
    permissions: tuple[str, ...]
    classification: str  # LF-tags naming the classification, "" when none found
    path: str


@dataclass(frozen=True)
class Feature:
    """An AiFeature as its key provisioner and tags describe it."""

    team: str
    feature: str
    stack: str
    path: str
    owner: str
    clearance: str
    aliases: tuple[str, ...]
    models: dict[str, tuple[ModelTarget, ...]] = field(hash=False)
    monthly_budget_usd: str
    rate_limit_rpm: str
    prompts: tuple[str, ...]
    caller_role: str
    datasets: tuple[DatasetGrant, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.team}/{self.feature}"


@dataclass(frozen=True)
class Guardrail:
    """A Bedrock guardrail's policies as synthesized."""

    label: str
    content_filters: tuple[tuple[str, str, str], ...]  # (type, input strength, output strength)
    pii: tuple[tuple[str, str], ...]  # (entity type, action)
    regexes: tuple[tuple[str, str], ...]  # (name, action)
    denied_topics: tuple[str, ...]
    word_filters: tuple[str, ...]
    grounding: tuple[tuple[str, str], ...]
    used_by: tuple[str, ...]
    versions: tuple[str, ...]


@dataclass(frozen=True)
class KeyUse:
    """A KMS key, its rotation, what it encrypts and which identity policies may use it."""

    label: str
    description: str
    rotation: bool
    protects: tuple[str, ...]  # "Type label"
    usable_by: tuple[str, ...]


@dataclass(frozen=True)
class Retention:
    """How long something that holds logs, records or data keeps them."""

    kind: str
    label: str
    retention: str
    deletion: str  # what happens to it when the stack is deleted


@dataclass(frozen=True)
class Endpoint:
    """Something callable from outside the account's network."""

    kind: str
    label: str
    exposure: str  # "public (anonymous)" | "internet (authenticated)" | "private"
    auth: str
    detail: str
    # Why it is public by design, recorded on the resource by the construct that made it (template
    # metadata ``aif_gateway.contract.PUBLIC_BY_DESIGN_METADATA``); "" when nobody said.
    public_by_design: str = ""

    @property
    def is_public(self) -> bool:
        return self.exposure.startswith("public")


@dataclass(frozen=True)
class IamStatement:
    """One statement of an identity-based policy, with its wildcards and acknowledgements."""

    stack: str
    policy: str
    attached_to: tuple[str, ...]
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: str
    wildcards: tuple[str, ...]
    acknowledgements: tuple[tuple[str, str], ...]  # (rule, reason) per wildcard, NO_ACK when none

    @property
    def key(self) -> str:
        cond = f" when {self.conditions}" if self.conditions else ""
        return (
            f"{self.policy} ({self.stack}): {self.effect} {', '.join(self.actions)} on "
            f"{', '.join(self.resources)}{cond}"
        )


@dataclass
class Report:
    """Everything ``ai-factory report`` shows, read from one assembly."""

    source: str
    stacks: list[str]
    features: list[Feature]
    teams: dict[str, list[str]]  # team -> stacks
    routes: dict[str, tuple[ModelTarget, ...]]
    datasets: list[DatasetGrant]
    guardrails: list[Guardrail]
    keys: list[KeyUse]
    retention: list[Retention]
    endpoints: list[Endpoint]
    statements: list[IamStatement]
    evidence_present: dict[str, bool]
    notes: list[str] = field(default_factory=list)

    @property
    def wildcards(self) -> list[IamStatement]:
        return [s for s in self.statements if s.wildcards]

    @property
    def public_endpoints(self) -> list[Endpoint]:
        return [e for e in self.endpoints if e.is_public]

    @property
    def unreviewed_public_endpoints(self) -> list[Endpoint]:
        """Public endpoints whose construct recorded no reason: each needs a reviewer's decision."""
        return [e for e in self.public_endpoints if not e.public_by_design]

    def external_flows(self, processed_in: dict[str, str] | None = None) -> list[ExternalFlow]:
        """Which features may send which data classification to which external providers (OpenAI,
        Anthropic, Mistral), through which alias. ``processed_in``: model name -> where the provider
        processes the data (the catalog's ``data_handling``); default: the packaged catalog."""
        if processed_in is None:
            processed_in = _catalog_processed_in()
        return [
            ExternalFlow(f.name, f.clearance, alias, t, processed_in.get(t.name, "unknown"))
            for f in self.features
            for alias in f.aliases
            for t in f.models.get(alias, ())
            if t.external
        ]

    def inventory(self) -> dict[str, dict[str, str]]:
        """Access and data flows as section -> key -> value (the basis of ``--diff``)."""
        return {
            "Features": {
                f.name: f"owner {f.owner}, clearance {f.clearance}, budget ${f.monthly_budget_usd}/month, "
                f"{f.rate_limit_rpm} rpm"
                for f in self.features
            },
            "Model allow-lists": {
                f.name: "; ".join(
                    f"{a} -> {', '.join(t.model_id for t in f.models.get(a, ())) or 'unknown route'}"
                    for a in f.aliases
                )
                or "none"
                for f in self.features
            },
            "Prompts": {f.name: ", ".join(f.prompts) or "none" for f in self.features},
            "Dataset grants": {
                f"{g.grantee}: {g.resource}": f"{', '.join(g.permissions)}"
                + (f" [{g.classification}]" if g.classification else "")
                for g in self.datasets
            },
            "IAM statements": {
                s.key: ("wildcards: " + ", ".join(s.wildcards)) if s.wildcards else "no wildcard"
                for s in self.statements
            },
            "Endpoints": {e.label: f"{e.kind}, {e.exposure}, {e.auth}" for e in self.endpoints},
            "Retention": {f"{r.kind} {r.label}": r.retention for r in self.retention},
            "KMS keys": {
                k.label: f"rotation {'on' if k.rotation else 'off'}; protects "
                + (", ".join(k.protects) or "nothing found")
                for k in self.keys
            },
            "Guardrails": {g.label: _guardrail_summary(g) for g in self.guardrails},
            "External providers": {
                f"{x.feature} -> {x.target.name} ({x.target.provider})": f"{x.sends} via {x.alias}"
                for x in self.external_flows()
            },
        }


# ------------------------------------------------------------------------------------------- build
def build_report(assembly: CloudAssembly) -> Report:
    """Read every section of the report from ``assembly``."""
    notes: list[str] = []
    if assembly.nested:
        notes.append(
            "Nested assemblies (pipeline stages) are present but not read: "
            + ", ".join(assembly.nested)
            + ". Run the report on each stage's folder for its resources."
        )
    routes = _routes(assembly, notes)
    datasets = _datasets(assembly)
    features = _features(assembly, routes, datasets)
    teams: dict[str, list[str]] = {}
    for stack in assembly.stacks:
        if "Team" in stack.tags:
            teams.setdefault(stack.tags["Team"], []).append(stack.name)
    for feature in features:
        stacks = teams.setdefault(feature.team, [])
        if feature.stack not in stacks:
            stacks.append(feature.stack)
    present = {
        a.id: any(True for _ in assembly.resources(*a.resource_types))
        or any(any(True for _ in assembly.metadata_entries(t)) for t in a.metadata_types)
        for a in ARTIFACTS
        if a.resource_types or a.metadata_types
    }
    return Report(
        source=str(assembly.directory),
        stacks=[s.name for s in assembly.stacks],
        features=features,
        teams=dict(sorted(teams.items())),
        routes=routes,
        datasets=datasets,
        guardrails=_guardrails(assembly),
        keys=_keys(assembly),
        retention=_retention(assembly),
        endpoints=_endpoints(assembly),
        statements=_statements(assembly),
        evidence_present=present,
        notes=notes,
    )


def _routes(assembly: CloudAssembly, notes: list[str]) -> dict[str, tuple[ModelTarget, ...]]:
    """Model routes from the gateway's staged configuration (the catalog as deployed)."""
    routes: dict[str, tuple[ModelTarget, ...]] = {}
    gateways = 0
    for function in assembly.resources("AWS::Lambda::Function"):
        if not str(function.properties.get("Handler", "")).startswith(GATEWAY_HANDLER_PREFIX):
            continue
        asset = assembly.asset_dir(function)
        config_path = asset / GATEWAY_CONFIG if asset else None
        if config_path is None or not config_path.is_file():
            continue
        gateways += 1
        config = json.loads(config_path.read_text(encoding="utf-8"))
        for alias, route in (config.get("routes") or {}).items():
            routes[alias] = tuple(
                ModelTarget(
                    str(t.get("name", "")),
                    str(t.get("model_id", "")),
                    str(t.get("provider", "")),
                    str(t.get("max_classification", "")),
                )
                for t in route.get("targets", [])
            )
    if gateways == 0:
        notes.append(
            "No gateway configuration found in the assembly's assets: model aliases are listed without "
            "the models behind them."
        )
    return dict(sorted(routes.items()))


def _catalog_processed_in() -> dict[str, str]:
    """Model name -> where its data is processed, from the packaged catalog (empty if unreadable)."""
    try:
        catalog = ModelCatalog.load()
    except CatalogError:
        return {}
    return {
        m.name: m.data_handling.processed_in
        for m in catalog.models.values()
        if m.data_handling is not None and m.data_handling.processed_in
    }


def _features(
    assembly: CloudAssembly, routes: dict[str, tuple[ModelTarget, ...]], datasets: list[DatasetGrant]
) -> list[Feature]:
    prompts: dict[str, list[str]] = {}
    for _stack, _path, data in assembly.metadata_entries(PROMPTS_METADATA):
        for entry in data if isinstance(data, list) else []:
            name = f"{entry.get('team')}/{entry.get('feature')}"
            prompts.setdefault(name, []).append(
                f"{entry.get('name')} ({entry.get('model')}, {str(entry.get('contentHash', ''))[:19]})"
            )
    features: list[Feature] = []
    for key in assembly.resources(FEATURE_KEY_TYPE):
        props = key.properties
        team, name = str(props.get("Team", "?")), str(props.get("Feature", "?"))
        feature_path = _feature_path(key)
        tags = _feature_tags(assembly, key.stack, team, name)
        aliases = tuple(str(a) for a in props.get("AllowedModels") or [])
        caller = ""
        for role in assembly.resources("AWS::IAM::Role"):
            if role.stack == key.stack and role.path.startswith(feature_path + "/CallerRole"):
                caller = _owner_label(role)
        full = f"{team}/{name}"
        features.append(
            Feature(
                team=team,
                feature=name,
                stack=key.stack,
                path=feature_path,
                owner=tags.get("Owner", "") or _owner_from_description(str(props.get("Description", ""))),
                clearance=tags.get("Clearance", "unknown"),
                aliases=aliases,
                models={a: routes[a] for a in aliases if a in routes},
                monthly_budget_usd=str(props.get("MonthlyBudgetUsd", "")),
                rate_limit_rpm=str(props.get("RateLimitRpm", "")),
                prompts=tuple(prompts.get(full, [])),
                caller_role=caller,
                datasets=tuple(g for g in datasets if g.grantee == full),
            )
        )
    return sorted(features, key=lambda f: f.name)


def _feature_path(key: Resource) -> str:
    parts = key.path.split("/")
    # <stack>/<feature>/ApiKey/Default -> <stack>/<feature>
    return "/".join(parts[:-2]) if len(parts) > 2 else key.path


def _feature_tags(assembly: CloudAssembly, stack: str, team: str, feature: str) -> dict[str, str]:
    for resource in assembly.resources():
        tags = resource.tags
        same = resource.stack == stack and tags.get("Team") == team and tags.get("Feature") == feature
        if same and ("Clearance" in tags or "Owner" in tags):
            return tags
    return {}


def _owner_from_description(description: str) -> str:
    marker = "owner "
    if marker in description:
        return description.split(marker, 1)[1].split(" ", 1)[0]
    return ""


def _owner_label(resource: Resource) -> str:
    """A construct's path without CDK's trailing ``/Resource`` (the name a reader recognises)."""
    return resource.label.removesuffix("/Resource")


def _datasets(assembly: CloudAssembly) -> list[DatasetGrant]:
    tag_index = _lf_tag_associations(assembly)
    key_paths = {
        (k.stack, f"{k.properties.get('Team')}/{k.properties.get('Feature')}"): _feature_path(k)
        for k in assembly.resources(FEATURE_KEY_TYPE)
    }
    grants: list[DatasetGrant] = []
    for grant in assembly.resources(
        "AWS::LakeFormation::PrincipalPermissions", "AWS::LakeFormation::Permissions"
    ):
        props = grant.properties
        principal_value = (props.get("Principal") or props.get("DataLakePrincipal") or {}).get(
            "DataLakePrincipalIdentifier"
        )
        principal = assembly.target(grant.stack, principal_value)
        principal_label = _owner_label(principal) if principal else render(principal_value)
        grantee = principal_label
        tags = principal.tags if principal else {}
        if "Team" in tags and "Feature" in tags:
            grantee = f"{tags['Team']}/{tags['Feature']}"
        else:
            for (stack, name), path in key_paths.items():
                inside = [grant.path, principal.path if principal else ""]
                if stack == grant.stack and any(p.startswith(path + "/") for p in inside if p):
                    grantee = name
        resource_text, classification = _lf_resource(assembly, grant, props.get("Resource") or {}, tag_index)
        permissions = tuple(str(p) for p in props.get("Permissions") or [])
        grants.append(
            DatasetGrant(grantee, principal_label, resource_text, permissions, classification, grant.label)
        )
    return sorted(grants, key=lambda g: (g.grantee, g.resource))


def _lf_tag_associations(assembly: CloudAssembly) -> dict[str, str]:
    """Rendered LF resource -> "key=value" tags associated with it (AWS::LakeFormation::TagAssociation)."""
    index: dict[str, str] = {}
    for assoc in assembly.resources("AWS::LakeFormation::TagAssociation"):
        text, _ = _lf_resource(assembly, assoc, assoc.properties.get("Resource") or {}, {})
        tags = [
            f"{render(t.get('TagKey'))}={','.join(render(v) for v in t.get('TagValues') or [])}"
            for t in assoc.properties.get("LFTags") or []
            if isinstance(t, dict)
        ]
        classifying = [t for t in tags if "classif" in t.split("=", 1)[0].lower()]
        index[text] = "; ".join(classifying or tags)
    return index


def _lf_resource(
    assembly: CloudAssembly, owner: Resource, resource: dict[str, Any], tag_index: dict[str, str]
) -> tuple[str, str]:
    """(readable resource, classification) of a Lake Formation resource property."""
    if "LFTagPolicy" in resource:
        policy = resource["LFTagPolicy"]
        terms = [
            f"{render(t.get('TagKey'))}={','.join(render(v) for v in t.get('TagValues') or [])}"
            for t in policy.get("Expression") or []
            if isinstance(t, dict)
        ]
        text = f"{render(policy.get('ResourceType', 'TABLE')).lower()}s tagged " + " and ".join(terms)
        # The classification tag when the expression has one (other tags such as domain narrow the
        # grant but do not classify the data).
        classifying = [t for t in terms if "classif" in t.split("=", 1)[0].lower()]
        return text, "; ".join(classifying or terms)
    if "Table" in resource or "TableWithColumns" in resource:
        table = resource.get("Table") or resource.get("TableWithColumns") or {}
        name = render(table["Name"]) if "Name" in table else "all tables"
        text = f"table {render(table.get('DatabaseName', '?'))}.{name}"
        if "ColumnNames" in table:
            text += f" columns {', '.join(render(c) for c in table['ColumnNames'])}"
    elif "Database" in resource:
        text = f"database {render(resource['Database'].get('Name', '?'))}"
    elif "DataLocation" in resource:
        text = f"location {render(resource['DataLocation'].get('ResourceArn', '?'))}"
    elif "LFTag" in resource:
        tag = resource["LFTag"]
        text = f"LF-tag {render(tag.get('TagKey'))}={','.join(render(v) for v in tag.get('TagValues') or [])}"
    else:
        text = render(resource)
    return text, tag_index.get(text, "")


def _guardrails(assembly: CloudAssembly) -> list[Guardrail]:
    guardrails: list[Guardrail] = []
    for g in assembly.resources("AWS::Bedrock::Guardrail"):
        p = g.properties
        filters = tuple(
            (str(f.get("Type")), str(f.get("InputStrength")), str(f.get("OutputStrength")))
            for f in (p.get("ContentPolicyConfig") or {}).get("FiltersConfig") or []
        )
        sensitive = p.get("SensitiveInformationPolicyConfig") or {}
        pii = tuple(
            (str(e.get("Type")), str(e.get("Action"))) for e in sensitive.get("PiiEntitiesConfig") or []
        )
        regexes = tuple(
            (str(r.get("Name")), str(r.get("Action"))) for r in sensitive.get("RegexesConfig") or []
        )
        topics = tuple(
            str(t.get("Name")) for t in (p.get("TopicPolicyConfig") or {}).get("TopicsConfig") or []
        )
        words_cfg = p.get("WordPolicyConfig") or {}
        words = tuple(str(w.get("Text")) for w in words_cfg.get("WordsConfig") or []) + tuple(
            f"managed list {m.get('Type')}" for m in words_cfg.get("ManagedWordListsConfig") or []
        )
        grounding = tuple(
            (str(f.get("Type")), str(f.get("Threshold")))
            for f in (p.get("ContextualGroundingPolicyConfig") or {}).get("FiltersConfig") or []
        )
        used_by = sorted(
            _owner_label(fn)
            for fn in assembly.resources("AWS::Lambda::Function")
            if fn.stack == g.stack
            and any(r.logical_id == g.logical_id for r in assembly.references(fn.stack, fn.properties))
        )
        versions = sorted(
            _owner_label(v)
            for v in assembly.resources("AWS::Bedrock::GuardrailVersion")
            if v.stack == g.stack
            and any(r.logical_id == g.logical_id for r in assembly.references(v.stack, v.properties))
        )
        guardrails.append(
            Guardrail(
                _owner_label(g),
                filters,
                pii,
                regexes,
                topics,
                words,
                grounding,
                tuple(used_by),
                tuple(versions),
            )
        )
    return guardrails


def _guardrail_summary(g: Guardrail) -> str:
    parts = [
        "filters " + ", ".join(f"{t} {i}/{o}" for t, i, o in g.content_filters),
        "PII " + ", ".join(f"{t} {a}" for t, a in g.pii),
    ]
    if g.regexes:
        parts.append("regexes " + ", ".join(f"{n} {a}" for n, a in g.regexes))
    if g.denied_topics:
        parts.append("denied topics " + ", ".join(g.denied_topics))
    if g.word_filters:
        parts.append("words " + ", ".join(g.word_filters))
    if g.grounding:
        parts.append("grounding " + ", ".join(f"{t} {v}" for t, v in g.grounding))
    return "; ".join(parts)


def _keys(assembly: CloudAssembly) -> list[KeyUse]:
    keys: list[KeyUse] = []
    all_keys = list(assembly.resources("AWS::KMS::Key"))
    protects: dict[tuple[str, str], set[str]] = {(k.stack, k.logical_id): set() for k in all_keys}
    users: dict[tuple[str, str], set[str]] = {(k.stack, k.logical_id): set() for k in all_keys}
    for resource in assembly.resources():
        if resource.type in ("AWS::KMS::Key", "AWS::KMS::Alias"):
            continue
        for ref in assembly.references(resource.stack, resource.properties):
            ident = (ref.stack, ref.logical_id)
            if ident not in protects:
                continue
            if resource.type in _KEY_USERS:
                users[ident].add(_owner_label(resource).removesuffix("/DefaultPolicy"))
            elif not resource.type.startswith("AWS::Lambda::"):  # a function's env var naming a key
                protects[ident].add(f"{resource.type.removeprefix('AWS::')} {_owner_label(resource)}")
    for k in all_keys:
        ident = (k.stack, k.logical_id)
        keys.append(
            KeyUse(
                label=_owner_label(k),
                description=str(k.properties.get("Description", "")),
                rotation=bool(k.properties.get("EnableKeyRotation", False)),
                protects=tuple(sorted(protects[ident])),
                usable_by=tuple(sorted(users[ident])),
            )
        )
    return keys


def _deletion(resource: Resource, assembly: CloudAssembly) -> str:
    policy = assembly.stack(resource.stack).template["Resources"][resource.logical_id].get("DeletionPolicy")
    return {"Retain": "retained", "RetainExceptOnCreate": "retained", "Snapshot": "snapshot"}.get(
        str(policy), "deleted"
    )


def _days(value: Any) -> str:
    return "1 day" if str(value) == "1" else f"{render(value)} days"


def _retention(assembly: CloudAssembly) -> list[Retention]:
    rows: list[Retention] = []
    for r in assembly.resources("AWS::Logs::LogGroup"):
        days = r.properties.get("RetentionInDays")
        text = _days(days) if days is not None else "never expires"
        rows.append(Retention("log group", _owner_label(r), text, _deletion(r, assembly)))
    for r in assembly.resources("AWS::S3::Bucket"):
        p = r.properties
        parts: list[str] = []
        lock = p.get("ObjectLockConfiguration") or {}
        default = (lock.get("Rule") or {}).get("DefaultRetention") or {}
        if p.get("ObjectLockEnabled") or lock:
            period = (
                _days(default["Days"])
                if "Days" in default
                else f"{default['Years']} year{'' if default['Years'] == 1 else 's'}"
                if "Years" in default
                else "no default period"
            )
            parts.append(f"Object Lock {default.get('Mode', '')} {period}".replace("  ", " "))
        for rule in (p.get("LifecycleConfiguration") or {}).get("Rules") or []:
            if rule.get("Status", "Enabled") != "Enabled":
                continue
            if "ExpirationInDays" in rule:
                parts.append(f"objects expire after {_days(rule['ExpirationInDays'])}")
            noncurrent = rule.get("NoncurrentVersionExpiration") or {}
            if "NoncurrentDays" in noncurrent:
                parts.append(f"old versions expire after {_days(noncurrent['NoncurrentDays'])}")
            if "NoncurrentVersionExpirationInDays" in rule:
                parts.append(f"old versions expire after {_days(rule['NoncurrentVersionExpirationInDays'])}")
        if (p.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
            parts.append("versioned")
        rows.append(
            Retention(
                "bucket", _owner_label(r), "; ".join(parts) or "kept until deleted", _deletion(r, assembly)
            )
        )
    for r in assembly.resources("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
        p = r.properties
        parts = []
        if (p.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled"):
            days = (p.get("PointInTimeRecoverySpecification") or {}).get("RecoveryPeriodInDays", 35)
            parts.append(f"point-in-time recovery {_days(days)}")
        ttl = p.get("TimeToLiveSpecification") or {}
        if ttl.get("Enabled"):
            parts.append(f"items expire by TTL attribute {ttl.get('AttributeName')}")
        rows.append(
            Retention(
                "table", _owner_label(r), "; ".join(parts) or "kept until deleted", _deletion(r, assembly)
            )
        )
    for r in assembly.resources("AWS::SQS::Queue"):
        seconds = int(r.properties.get("MessageRetentionPeriod", 345600))
        rows.append(
            Retention(
                "queue",
                _owner_label(r),
                _days(seconds // 86400) if seconds >= 86400 else f"{seconds} seconds",
                _deletion(r, assembly),
            )
        )
    return sorted(rows, key=lambda row: (row.kind, row.label))


def _endpoints(assembly: CloudAssembly) -> list[Endpoint]:
    endpoints: list[Endpoint] = []
    for api in assembly.resources("AWS::ApiGateway::RestApi"):
        types = [
            str(t) for t in ((api.properties.get("EndpointConfiguration") or {}).get("Types") or ["EDGE"])
        ]
        methods = [
            m
            for m in assembly.resources("AWS::ApiGateway::Method")
            if m.stack == api.stack
            and (t := assembly.target(m.stack, m.properties.get("RestApiId"))) is not None
            and t.logical_id == api.logical_id
        ]
        auths = sorted(
            {_method_auth(assembly, m) for m in methods if m.properties.get("HttpMethod") != "OPTIONS"}
        )
        waf = any(
            any(
                r.logical_id == api.logical_id or r.type == "AWS::ApiGateway::Stage"
                for r in assembly.references(a.stack, a.properties)
            )
            for a in assembly.resources("AWS::WAFv2::WebACLAssociation")
            if a.stack == api.stack
        )
        detail = f"endpoint type {', '.join(types)}" + (", AWS WAF web ACL attached" if waf else "")
        if api.properties.get("Policy"):
            detail += ", resource policy"
        if "PRIVATE" in types:
            exposure = "private"
        elif any(a.startswith("anonymous") for a in auths):
            exposure = "public (anonymous)"
        else:
            exposure = "internet (authenticated)"
        endpoints.append(
            Endpoint(
                "API Gateway REST API", _owner_label(api), exposure, "; ".join(auths) or "no methods", detail
            )
        )
    for api in assembly.resources("AWS::ApiGatewayV2::Api"):
        routes = [
            r
            for r in assembly.resources("AWS::ApiGatewayV2::Route")
            if r.stack == api.stack
            and (t := assembly.target(r.stack, r.properties.get("ApiId"))) is not None
            and t.logical_id == api.logical_id
        ]
        anon = any(str(r.properties.get("AuthorizationType", "NONE")) == "NONE" for r in routes)
        endpoints.append(
            Endpoint(
                f"API Gateway {api.properties.get('ProtocolType', 'HTTP')} API",
                _owner_label(api),
                "public (anonymous)" if anon else "internet (authenticated)",
                "a route without authorization" if anon else "every route authorized",
                "",
            )
        )
    for url in assembly.resources("AWS::Lambda::Url"):
        auth = str(url.properties.get("AuthType", ""))
        endpoints.append(
            Endpoint(
                "Lambda function URL",
                _owner_label(url),
                "public (anonymous)" if auth == "NONE" else "internet (authenticated)",
                f"AuthType {auth}",
                "",
            )
        )
    for bucket in assembly.resources("AWS::S3::Bucket"):
        reasons = _public_bucket_reasons(assembly, bucket)
        if reasons:
            endpoints.append(
                Endpoint("S3 bucket", _owner_label(bucket), "public (anonymous)", "none", "; ".join(reasons))
            )
    for dist in assembly.resources("AWS::CloudFront::Distribution"):
        reason = dist.metadata.get(contract.PUBLIC_BY_DESIGN_METADATA)
        endpoints.append(
            Endpoint(
                "CloudFront distribution",
                _owner_label(dist),
                "public (anonymous)",
                "none at the edge",
                "the origin decides what is served; review it",
                public_by_design=reason if isinstance(reason, str) else "",
            )
        )
    for lb in assembly.resources("AWS::ElasticLoadBalancingV2::LoadBalancer"):
        if lb.properties.get("Scheme") == "internet-facing":
            endpoints.append(
                Endpoint(
                    "load balancer",
                    _owner_label(lb),
                    "public (anonymous)",
                    "listener rules decide",
                    "internet-facing",
                )
            )
    for perm in assembly.resources("AWS::Lambda::Permission"):
        if perm.properties.get("Principal") == "*" and not perm.properties.get("SourceArn"):
            endpoints.append(
                Endpoint(
                    "Lambda permission",
                    _owner_label(perm),
                    "public (anonymous)",
                    "Principal *",
                    "no SourceArn",
                )
            )
    for policy_type, field_name in (
        ("AWS::SQS::QueuePolicy", "PolicyDocument"),
        ("AWS::SNS::TopicPolicy", "PolicyDocument"),
    ):
        for pol in assembly.resources(policy_type):
            if _anonymous_allow(pol.properties.get(field_name) or {}):
                endpoints.append(
                    Endpoint(
                        policy_type.split("::")[1],
                        _owner_label(pol),
                        "public (anonymous)",
                        "Principal * without condition",
                        "",
                    )
                )
    return sorted(endpoints, key=lambda e: (e.exposure, e.label))


def _method_auth(assembly: CloudAssembly, method: Resource) -> str:
    p = method.properties
    kind = str(p.get("AuthorizationType", "NONE"))
    if kind == "CUSTOM":
        for authorizer in assembly.references(method.stack, p.get("AuthorizerId")):
            for target in assembly.references(method.stack, authorizer.properties.get("AuthorizerUri")):
                if str(target.properties.get("Handler", "")) == EDGE_AUTHORIZER_HANDLER:
                    return EDGE_AUTH
    if kind != "NONE":
        return f"API Gateway {kind}"
    if p.get("ApiKeyRequired"):
        return "API Gateway API key"
    integration = p.get("Integration") or {}
    for target in assembly.references(method.stack, integration.get("Uri")):
        reason = AUTHENTICATING_HANDLERS.get(str(target.properties.get("Handler", "")))
        if target.type == "AWS::Lambda::Function" and reason:
            return reason
    return "anonymous (authorization NONE)"


def _anonymous_allow(document: dict[str, Any]) -> bool:
    for st in _as_list(document.get("Statement")):
        principal = st.get("Principal")
        star = principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS")))
        if st.get("Effect") == "Allow" and star and not st.get("Condition"):
            return True
    return False


def _public_bucket_reasons(assembly: CloudAssembly, bucket: Resource) -> list[str]:
    p = bucket.properties
    reasons: list[str] = []
    block = p.get("PublicAccessBlockConfiguration") or {}
    flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    if p.get("AccessControl") in ("PublicRead", "PublicReadWrite"):
        reasons.append(f"ACL {p['AccessControl']}")
    if p.get("WebsiteConfiguration"):
        reasons.append("static website hosting")
    for pol in assembly.resources("AWS::S3::BucketPolicy"):
        target = assembly.target(pol.stack, pol.properties.get("Bucket"))
        mine = target is not None and target.logical_id == bucket.logical_id and pol.stack == bucket.stack
        if mine and _anonymous_allow(pol.properties.get("PolicyDocument") or {}):
            reasons.append("bucket policy allows Principal * without condition")
    if reasons and all(block.get(f) is True for f in flags):
        return []  # Block Public Access overrides public ACLs and policies
    return reasons


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _statements(assembly: CloudAssembly) -> list[IamStatement]:
    statements: list[IamStatement] = []
    for policy in assembly.resources("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        attached = tuple(
            sorted(
                _owner_label(t)
                for field_name in ("Roles", "Users", "Groups")
                for ref in _as_list(policy.properties.get(field_name))
                if (t := assembly.target(policy.stack, ref)) is not None
            )
        )
        statements.extend(
            _policy_statements(
                assembly, policy, _owner_label(policy), attached, policy.properties.get("PolicyDocument")
            )
        )
    for role in assembly.resources("AWS::IAM::Role"):
        for inline in _as_list(role.properties.get("Policies")):
            label = f"{_owner_label(role)} inline {render(inline.get('PolicyName', ''))}"
            statements.extend(
                _policy_statements(assembly, role, label, (_owner_label(role),), inline.get("PolicyDocument"))
            )
    return sorted(statements, key=lambda s: (s.stack, s.policy, s.actions))


def _policy_statements(
    assembly: CloudAssembly, owner: Resource, label: str, attached: tuple[str, ...], document: Any
) -> Iterable[IamStatement]:
    acks = assembly.acknowledgements(owner)
    for st in _as_list((document or {}).get("Statement")):
        actions = tuple(render(a) for a in _as_list(st.get("Action")))
        not_actions = tuple(render(a) for a in _as_list(st.get("NotAction")))
        resources = tuple(render(r) for r in _as_list(st.get("Resource")))
        not_resources = tuple(render(r) for r in _as_list(st.get("NotResource")))
        effect = str(st.get("Effect", "Allow"))
        wildcards: list[str] = []
        findings: list[str] = []
        if effect == "Allow":
            for a in actions:
                if "*" in a:
                    wildcards.append(f"action {a}")
                    findings.append(f"Action::{a}")
            for a in not_actions:
                wildcards.append(f"NotAction {a}")
                findings.append(f"Action::{a}")
            for r in resources:
                if "*" in r:
                    wildcards.append("Resource *" if r == "*" else f"resource {r}")
                    findings.append(f"Resource::{_nag_style(r)}")
            for r in not_resources:
                wildcards.append(f"NotResource {r}")
                findings.append(f"Resource::{_nag_style(r)}")
        acknowledged: list[tuple[str, str]] = []
        for finding in findings:
            exact = [(rule, reason) for rule, reason in acks.items() if rule.endswith(f"[{finding}]")]
            general = [
                (rule, reason)
                for rule, reason in acks.items()
                if "[" not in rule and any(w in rule for w in _WILDCARD_RULES)
            ]
            acknowledged.extend(exact or general or [(finding, NO_ACK)])
        # Sorted: CDK's policy minimization reorders actions, which is not a change in access.
        statements_actions = tuple(sorted(actions)) + tuple(f"NOT {a}" for a in sorted(not_actions))
        statements_resources = tuple(sorted(resources)) + tuple(f"NOT {r}" for r in sorted(not_resources))
        yield IamStatement(
            stack=owner.stack,
            policy=label,
            attached_to=attached,
            effect=effect,
            actions=statements_actions,
            resources=statements_resources,
            conditions=_render_condition(st.get("Condition")),
            wildcards=tuple(wildcards),
            acknowledgements=tuple(dict.fromkeys(acknowledged)),
        )


def _render_condition(condition: Any) -> str:
    """``{"StringEquals": {"kms:ViaService": "s3...."}}`` as ``StringEquals kms:ViaService=s3....``."""
    if not isinstance(condition, dict):
        return ""
    terms = []
    for operator, pairs in sorted(condition.items()):
        if isinstance(pairs, dict):
            terms += [f"{operator} {k}={render(v)}" for k, v in sorted(pairs.items())]
        else:
            terms.append(f"{operator} {render(pairs)}")
    return " and ".join(terms)


def _nag_style(text: str) -> str:
    """A rendered resource as cdk-nag names it in finding IDs: ``<Logical.Attr>`` for references, the
    bare export name for cross-stack imports (``${Import:Stack:ExportsOutput...}``)."""
    text = re.sub(r"\$\{Import:([^}]*)\}", r"\1", text)
    return text.replace("${", "<").replace("}", ">")


def load_report(path: str | Path) -> Report:
    """``build_report(CloudAssembly.load(path))``."""
    return build_report(CloudAssembly.load(path))
