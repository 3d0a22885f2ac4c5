"""The approved-model catalog: load and validate ``models.yaml``, and derive what the stack needs from it.

The catalog is the single source for the gateway's routes (``gateway_config``), its IAM allow-list
(``bedrock_invoke_arns``) and its price table. Everything is validated when the file is loaded, and every
error names the file, the entry and the field, so a bad pull request fails ``make synth`` with a message
a reviewer can act on.

Besides what the gateway needs (IDs, prices, status), every Bedrock entry documents itself: owner, provider,
context window, who approved it and when, what it was evaluated on, compliance notes and known limitations.
Model cards (``ai_factory.catalog.model_cards``) and the MLflow registry
(``ai_factory.catalog.model_registry_mlflow``) are generated from those fields.
``docs/model-catalog.md`` describes the schema.

Example::

    catalog = ModelCatalog.load()  # the packaged ai_factory/data/models.yaml
    config = catalog.gateway_config(region="eu-west-1", model_timeout_s=20)
    arns = catalog.bedrock_invoke_arns("aws", "eu-west-1", "123456789012")
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, cast

import yaml

from ai_factory.catalog.evidence import SuiteEvidence, Waiver, missing_suites, parse_evidence, parse_waiver
from aif_gateway.capabilities import ModelCapabilities
from aif_gateway.config import (
    CLASSIFICATIONS,
    GUARD_SCOPES,
    GatewayConfig,
    GuardrailPrices,
    Modality,
    ModelTarget,
    Prices,
    Provider,
    Route,
    RouteTimeouts,
)

DEFAULT_CATALOG_PATH = Path(__file__).parent.parent / "data" / "models.yaml"

PROVIDERS = ("bedrock", "echo", "sagemaker", "openai", "anthropic", "mistral")
# Providers reached over the internet with a platform-owned API key (a Secrets Manager secret).
EXTERNAL_PROVIDERS = ("openai", "anthropic", "mistral")
API_FLAVORS = ("openai", "azure", "compatible")  # provider openai only (aif_gateway.openai_provider)
DATA_HANDLING_KEYS = ("processed_in", "retention", "trains_on_data", "contract", "max_classification")
# The ceiling of an entry that declares no data_handling (only bedrock, sagemaker and echo may omit it):
# in-account Bedrock confidential; a private SageMaker endpoint and the offline echo model restricted.
DEFAULT_MAX_CLASSIFICATION = {"bedrock": "confidential", "sagemaker": "restricted", "echo": "restricted"}
CONTENT_HANDLERS = ("openai-chat", "tgi")
MODALITIES = ("chat", "embedding")
STATUSES = ("approved", "candidate", "preview", "deprecated", "blocked")
PRICE_KEYS = ("input", "output", "cache_read", "cache_write")

COMPLIANCE_KEYS = ("data_residency", "provider_terms", "notes")

# Fields the loader interprets; anything else on an entry is kept as-is in ``extra``.
_MODEL_FIELDS = frozenset(
    {
        "name",
        "provider",
        "provider_name",
        "modality",
        "model_id",
        "inference_profile",
        "regional_ids",
        "regions",
        "context_window",
        "max_output_tokens",
        "prices",
        "status",
        "deprecated_on",
        "approved_by",
        "approved_on",
        "owner",
        "evaluated_on",
        "evidence",
        "waiver",
        "compliance_notes",
        "known_limitations",
        "endpoint_name",
        "content_handler",
        "base_url",
        "secret",
        "api_flavor",
        "data_handling",
        "profile_prices",
    }
)
_ROUTE_FIELDS = frozenset({"alias", "targets", "timeouts"})
TIMEOUT_KEYS = ("first_token_s", "idle_s", "total_minutes")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A region ("eu-west-1", "us-gov-west-1") or a region prefix ending in "-" ("eu-", "ap-southeast-").
_REGION_KEY_RE = re.compile(r"^[a-z]{2}(-[a-z]+)*-(\d+)?$")
# A cross-region inference profile ID is the model ID behind a geography prefix: "eu.", "apac.", "global.".
_PROFILE_PREFIX_RE = re.compile(r"^[a-z][a-z-]*\.$")


# Region-name prefix of the destinations of each geographic cross-region inference profile.
GEO_REGION_PREFIXES = {"us": "us-", "eu": "eu-", "apac": "ap-"}


class CatalogError(ValueError):
    """The catalog file is invalid. The message names the file, the entry and the field."""


class CatalogWarning(UserWarning):
    """The catalog is valid but something needs attention (a route uses a deprecated model)."""


def is_token(value: str) -> bool:
    """True for an unresolved CDK token (``Aws.REGION`` in a region-agnostic stack): not a real region."""
    return "${Token[" in value


@dataclass(frozen=True)
class ComplianceNotes:
    """What a reviewer needs to know before data reaches the model."""

    data_residency: str  # where prompts and completions are processed, per region set
    provider_terms: str | None = None  # https link to the provider's public model or terms page
    notes: str | None = None


@dataclass(frozen=True)
class DataHandling:
    """Where a model's prompts and answers go and on what terms (docs/model-catalog.md)."""

    max_classification: str  # the most sensitive data classification the model may receive
    processed_in: str | None = None  # region(s) and provider that process the data
    retention: str | None = None  # how long the provider keeps prompts and answers
    trains_on_data: bool | None = None  # whether the provider may train on them
    contract: str | None = None  # the agreement the traffic runs under (DPA, AWS service terms, ...)


@dataclass(frozen=True)
class ClearanceViolation:
    """A route target that may not receive a feature's data (``ModelCatalog.clearance_violations``)."""

    route: str
    target: str
    provider: str
    max_classification: str
    clearance: str

    def __str__(self) -> str:
        return (
            f"route '{self.route}' target '{self.target}' ({self.provider}) may receive up to "
            f"{self.max_classification} data, below clearance {self.clearance}"
        )


@dataclass(frozen=True)
class CatalogModel:
    """One concrete model in the catalog.

    Fields the loader does not interpret are kept in ``extra`` and are also readable as attributes.
    """

    name: str
    provider: Provider
    modality: Modality
    model_id: str
    status: str
    prices: Prices
    regions: tuple[str, ...] = ()
    inference_profile: str | None = None
    deprecated_on: date | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)
    owner: str | None = None
    provider_name: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    # Region or region prefix ("eu-") -> the ID the gateway sends from a stack in that region.
    regional_ids: Mapping[str, str] = field(default_factory=dict, hash=False)
    approved_by: str | None = None
    approved_on: date | None = None
    evaluated_on: tuple[str, ...] = ()
    # Standard-suite results by suite (``ai-factory models evaluate``) and the waiver, if any, under which
    # a candidate is routed: what approval rests on (``ai_factory.catalog.evidence``).
    evidence: Mapping[str, SuiteEvidence] = field(default_factory=dict, hash=False)
    waiver: Waiver | None = None
    compliance_notes: ComplianceNotes | None = None
    known_limitations: tuple[str, ...] = ()
    # provider "sagemaker": the endpoint the gateway invokes (also in model_id) and how it talks.
    endpoint_name: str | None = None
    content_handler: str | None = None
    # External providers (openai, anthropic, mistral): API base URL (None: the provider's public API),
    # the Secrets Manager secret (name or ARN) holding the account's API key, and the OpenAI API flavor.
    base_url: str | None = None
    secret: str | None = None
    api_flavor: str | None = None
    data_handling: DataHandling | None = None  # declared facts; None: the provider's default ceiling

    @property
    def max_classification(self) -> str:
        """The most sensitive data classification this model may receive."""
        if self.data_handling is not None:
            return self.data_handling.max_classification
        return DEFAULT_MAX_CLASSIFICATION.get(self.provider, "public")

    @property
    def external(self) -> bool:
        """True for providers outside AWS, reached over the internet with an API key."""
        return self.provider in EXTERNAL_PROVIDERS

    # Inference-profile geography ("us", "eu", "apac", "global") -> its prices, where they differ from
    # ``prices`` (geographic profiles of some models carry a premium over the global profile).
    profile_prices: Mapping[str, Prices] = field(default_factory=dict, hash=False)

    def prices_for(self, invoke_id: str) -> Prices:
        """The prices of calling ``invoke_id``: its profile geography's, else ``prices``."""
        geography = invoke_id.split(".", 1)[0] if "." in invoke_id.split(":", 1)[0] else ""
        return self.profile_prices.get(geography, self.prices)

    def __getattr__(self, item: str) -> Any:
        # Only called when normal lookup fails. Read __dict__ directly so copy/pickle (which probe
        # attributes before __dict__ is filled) cannot recurse.
        extra = self.__dict__.get("extra", {})
        if not item.startswith("_") and item in extra:
            return extra[item]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {item!r}")

    @property
    def invoke_id(self) -> str:
        """The default ID the gateway sends to Bedrock: the inference profile when there is one."""
        return self.inference_profile or self.model_id

    def invoke_id_for(self, region: str | None) -> str:
        """The ID a gateway in ``region`` sends: the ``regional_ids`` entry for the region (an exact
        region first, then the longest matching prefix), else ``invoke_id``. ``None`` or an unresolved
        CDK token means "region unknown" and gives ``invoke_id``.
        """
        if region is None or is_token(region):
            return self.invoke_id
        if region in self.regional_ids:
            return self.regional_ids[region]
        prefixes = [k for k in self.regional_ids if k.endswith("-") and region.startswith(k)]
        if prefixes:
            return self.regional_ids[max(prefixes, key=len)]
        return self.invoke_id

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain JSON-able data (dates as YYYY-MM-DD), in catalog field names.

        ``models list --format json`` prints it and the MLflow publisher hashes it, so two entries with
        the same content always give the same dict.
        """
        notes = self.compliance_notes
        return {
            "name": self.name,
            "provider": self.provider,
            "provider_name": self.provider_name,
            "modality": self.modality,
            "model_id": self.model_id,
            "inference_profile": self.inference_profile,
            "regional_ids": dict(sorted(self.regional_ids.items())),
            "regions": list(self.regions),
            "context_window": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "prices": {key: getattr(self.prices, key) for key in PRICE_KEYS},
            "profile_prices": {
                geo: {key: getattr(p, key) for key in PRICE_KEYS}
                for geo, p in sorted(self.profile_prices.items())
            },
            "status": self.status,
            "deprecated_on": self.deprecated_on.isoformat() if self.deprecated_on else None,
            "approved_by": self.approved_by,
            "approved_on": self.approved_on.isoformat() if self.approved_on else None,
            "owner": self.owner,
            "evaluated_on": list(self.evaluated_on),
            **(
                {"evidence": {s: r.to_yaml() for s, r in sorted(self.evidence.items())}}
                if self.evidence
                else {}
            ),
            **(
                {
                    "waiver": {
                        "reason": w.reason,
                        "approved_by": w.approved_by,
                        "approved_on": str(w.approved_on),
                    }
                }
                if (w := self.waiver)
                else {}
            ),
            "compliance_notes": None
            if notes is None
            else {
                "data_residency": notes.data_residency,
                "provider_terms": notes.provider_terms,
                "notes": notes.notes,
            },
            "known_limitations": list(self.known_limitations),
            "extra": {k: _jsonable(v) for k, v in sorted(self.extra.items())},
            # Only SageMaker entries carry these, so other entries' dicts (and hashes) are unchanged.
            **(
                {"endpoint_name": self.endpoint_name, "content_handler": self.content_handler}
                if self.provider == "sagemaker"
                else {}
            ),
            **(
                {"base_url": self.base_url, "secret": self.secret, "api_flavor": self.api_flavor}
                if self.external
                else {}
            ),
            # Only entries that declare data handling carry it (other entries' hashes are unchanged).
            **({"data_handling": dict(self.data_handling.__dict__)} if self.data_handling else {}),
        }

    def covers_region(self, region: str) -> bool:
        """Whether the catalog says how to call this model from ``region`` (listed or a regional ID)."""
        if self.provider != "bedrock" or region in self.regions or region in self.regional_ids:
            return True
        return any(k.endswith("-") and region.startswith(k) for k in self.regional_ids)


def _jsonable(value: Any) -> Any:
    """YAML values (dates included) as JSON-able data, for ``to_dict`` of free-form ``extra`` fields."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class CatalogRoute:
    """A model alias product teams ask for: an ordered fallback chain of catalog models."""

    alias: str
    targets: tuple[str, ...]
    modality: Modality
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # Time to first token, idle time between chunks, total generation time (docs/gateway.md).
    timeouts: RouteTimeouts = field(default_factory=RouteTimeouts)


class _Checker:
    """Builds error messages that always name the file, the entry and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, entry: str, fld: str, why: str) -> CatalogError:
        return CatalogError(f"{self.source}: {entry}: field '{fld}': {why}")

    def string(self, raw: Mapping[str, Any], key: str, entry: str, *, required: bool = True) -> str | None:
        if key not in raw or raw[key] is None:
            if required:
                raise self.fail(entry, key, "is required")
            return None
        value = raw[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(entry, key, f"must be a non-empty string, got {value!r}")
        return value

    def choice(self, raw: Mapping[str, Any], key: str, entry: str, allowed: tuple[str, ...]) -> str:
        value = self.string(raw, key, entry)
        if value not in allowed:
            raise self.fail(entry, key, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def string_list(self, raw: Mapping[str, Any], key: str, entry: str) -> tuple[str, ...]:
        value = raw.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(entry, key, f"must be a list of non-empty strings, got {value!r}")
        if len(set(value)) != len(value):
            raise self.fail(entry, key, f"lists an item twice: {value!r}")
        return tuple(value)

    def positive_int(self, raw: Mapping[str, Any], key: str, entry: str, *, required: bool) -> int | None:
        value = raw.get(key)
        if value is None:
            if required:
                raise self.fail(entry, key, "is required (a whole number of tokens)")
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise self.fail(entry, key, f"must be a whole number > 0, got {value!r}")
        return value

    def day(self, raw: Mapping[str, Any], key: str, entry: str) -> date | None:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, date) and not isinstance(value, datetime):
            return value  # YAML reads an unquoted 2026-01-31 as a date already
        if isinstance(value, str) and _DATE_RE.match(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise self.fail(entry, key, f"must be a date YYYY-MM-DD, got {value!r}")


def _parse_prices(check: _Checker, raw: Mapping[str, Any], entry: str, name: str = "prices") -> Prices:
    value = raw.get(name) if name == "prices" else raw
    if value is None:
        raise check.fail(entry, name, "is required (USD per 1M tokens; omitted keys count as 0)")
    if not isinstance(value, Mapping):
        raise check.fail(entry, name, f"must be a mapping of {', '.join(PRICE_KEYS)}, got {value!r}")
    unknown = sorted(str(k) for k in value if k not in PRICE_KEYS)
    if unknown:
        # A typo such as "ouput" would otherwise silently price a counter at zero.
        raise check.fail(entry, name, f"unknown key(s) {unknown}; allowed: {', '.join(PRICE_KEYS)}")
    parsed: dict[str, float] = {}
    for key in PRICE_KEYS:
        price = value.get(key, 0.0)
        ok = isinstance(price, int | float) and not isinstance(price, bool)
        if not ok or not math.isfinite(price) or price < 0:
            raise check.fail(entry, f"{name}.{key}", f"must be a non-negative number, got {price!r}")
        parsed[key] = float(price)
    return Prices(**parsed)


PROFILE_GEOGRAPHIES = ("us", "eu", "apac", "global")


def _parse_profile_prices(check: _Checker, raw: Mapping[str, Any], entry: str) -> dict[str, Prices]:
    """``profile_prices``: geography -> prices (each checked like ``prices``)."""
    value = raw.get("profile_prices")
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not value:
        raise check.fail(entry, "profile_prices", f"must be a mapping of geography -> prices, got {value!r}")
    parsed = {}
    for geo, prices in value.items():
        if geo not in PROFILE_GEOGRAPHIES:
            allowed = ", ".join(PROFILE_GEOGRAPHIES)
            raise check.fail(
                entry, f"profile_prices.{geo}", f"is not an inference-profile geography ({allowed})"
            )
        parsed[str(geo)] = _parse_prices(check, prices, entry, f"profile_prices.{geo}")
    return parsed


def _parse_regional_ids(check: _Checker, raw: Mapping[str, Any], entry: str, model_id: str) -> dict[str, str]:
    value = raw.get("regional_ids")
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not value:
        raise check.fail(entry, "regional_ids", f"must be a non-empty mapping of region -> ID, got {value!r}")
    parsed: dict[str, str] = {}
    for key, regional_id in value.items():
        fld = f"regional_ids.{key}"
        if not isinstance(key, str) or not _REGION_KEY_RE.match(key):
            raise check.fail(
                entry, fld, "keys must be a region (eu-west-1) or a region prefix ending in '-' (eu-)"
            )
        if not isinstance(regional_id, str) or not regional_id.strip():
            raise check.fail(entry, fld, f"must be a non-empty string, got {regional_id!r}")
        # IAM allows the foundation model behind every ID, so an ID must be this entry's model: the
        # model ID itself or a cross-region inference profile of it.
        prefix = regional_id.removesuffix(model_id)
        if regional_id != model_id and (prefix == regional_id or not _PROFILE_PREFIX_RE.match(prefix)):
            raise check.fail(
                entry,
                fld,
                f"must be the model_id {model_id!r} or an inference profile of it (<geo>.{model_id}), "
                f"got {regional_id!r}",
            )
        parsed[key] = regional_id
    return parsed


def _parse_compliance(check: _Checker, raw: Mapping[str, Any], entry: str) -> ComplianceNotes | None:
    value = raw.get("compliance_notes")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise check.fail(entry, "compliance_notes", f"must be a mapping of {', '.join(COMPLIANCE_KEYS)}")
    unknown = sorted(str(k) for k in value if k not in COMPLIANCE_KEYS)
    if unknown:
        raise check.fail(
            entry, "compliance_notes", f"unknown key(s) {unknown}; allowed: {', '.join(COMPLIANCE_KEYS)}"
        )
    residency = check.string(value, "data_residency", entry)
    terms = check.string(value, "provider_terms", entry, required=False)
    notes = check.string(value, "notes", entry, required=False)
    if terms is not None and not re.match(r"^https://[^\s/]+\.[^\s]+$", terms):
        raise check.fail(entry, "compliance_notes.provider_terms", f"must be an https:// URL, got {terms!r}")
    assert residency is not None
    return ComplianceNotes(data_residency=residency, provider_terms=terms, notes=notes)


def _parse_model(check: _Checker, raw: Any, index: int) -> CatalogModel:
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{check.source}: models[{index}]: must be a mapping, got {raw!r}")
    name_field = raw.get("name")
    label = f"model {name_field!r}" if isinstance(name_field, str) else f"models[{index}]"
    name = check.string(raw, "name", label)
    assert name is not None
    entry = f"model '{name}'"
    provider = cast(Provider, check.choice(raw, "provider", entry, PROVIDERS))
    modality = cast(Modality, check.choice(raw, "modality", entry, MODALITIES))
    status = check.choice(raw, "status", entry, STATUSES)
    endpoint_name, content_handler = _parse_sagemaker(check, raw, entry, provider, modality)
    base_url, secret, api_flavor = _parse_external(check, raw, entry, provider)
    data_handling = _parse_data_handling(check, raw, entry, provider)
    if provider == "sagemaker" and ("model_id" in raw or "regions" in raw):
        raise check.fail(
            entry,
            "model_id" if "model_id" in raw else "regions",
            "does not apply to sagemaker models (use endpoint_name)",
        )
    needs_id = provider == "bedrock" or provider in EXTERNAL_PROVIDERS
    model_id = endpoint_name or check.string(raw, "model_id", entry, required=needs_id) or name
    profile = check.string(raw, "inference_profile", entry, required=False)
    regions = check.string_list(raw, "regions", entry)
    if provider == "bedrock" and not regions:
        raise check.fail(entry, "regions", "is required for bedrock models (a non-empty list of regions)")
    if profile is not None and provider != "bedrock":
        raise check.fail(entry, "inference_profile", "only applies to bedrock models")
    regional_ids = _parse_regional_ids(check, raw, entry, model_id)
    if regional_ids and provider != "bedrock":
        raise check.fail(entry, "regional_ids", "only applies to bedrock models")
    prices = _parse_prices(check, raw, entry)
    profile_prices = _parse_profile_prices(check, raw, entry)
    if profile_prices and provider != "bedrock":
        raise check.fail(entry, "profile_prices", "only applies to bedrock models")
    deprecated_on = check.day(raw, "deprecated_on", entry)
    if status == "deprecated" and deprecated_on is None:
        raise check.fail(entry, "deprecated_on", "is required when status is deprecated (YYYY-MM-DD)")
    # Echo models are offline test doubles: the documentation fields are only required of real models.
    real = provider != "echo"
    owner = check.string(raw, "owner", entry, required=real)
    context_window = check.positive_int(raw, "context_window", entry, required=real and modality == "chat")
    max_output = check.positive_int(raw, "max_output_tokens", entry, required=False)
    if max_output is not None and context_window is not None and max_output > context_window:
        raise check.fail(entry, "max_output_tokens", f"exceeds the context window ({context_window})")
    approved_by = check.string(raw, "approved_by", entry, required=real and status == "approved")
    approved_on = check.day(raw, "approved_on", entry)
    if real and status == "approved" and approved_on is None:
        raise check.fail(entry, "approved_on", "is required when status is approved (YYYY-MM-DD)")
    extra = {str(k): v for k, v in raw.items() if k not in _MODEL_FIELDS}
    try:  # kept in extra; checked here, read by gateway_config (aif_gateway.capabilities)
        ModelCapabilities.from_catalog(extra.get("capabilities"), max_output)
    except ValueError as exc:
        raise check.fail(entry, *str(exc).split(": ", 1)) from None
    evidence, waiver = _check_approval(check, raw, entry, name, modality, status)
    return CatalogModel(
        name=name,
        provider=provider,
        modality=modality,
        model_id=model_id,
        status=status,
        prices=prices,
        regions=regions,
        inference_profile=profile,
        deprecated_on=deprecated_on,
        extra=extra,
        owner=owner,
        provider_name=check.string(raw, "provider_name", entry, required=False),
        context_window=context_window,
        max_output_tokens=max_output,
        regional_ids=regional_ids,
        approved_by=approved_by,
        approved_on=approved_on,
        evaluated_on=check.string_list(raw, "evaluated_on", entry),
        evidence=evidence,
        waiver=waiver,
        compliance_notes=_parse_compliance(check, raw, entry),
        known_limitations=check.string_list(raw, "known_limitations", entry),
        endpoint_name=endpoint_name,
        content_handler=content_handler,
        base_url=base_url,
        secret=secret,
        api_flavor=api_flavor,
        data_handling=data_handling,
        profile_prices=profile_prices,
    )


# A Secrets Manager secret name, or a secret ARN.
_SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
_SECRET_ARN_RE = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$")
# What API keys look like: never in the catalog (OpenAI sk-..., Anthropic sk-ant-..., long random tokens).
_KEY_LIKE_RE = re.compile(r"^(sk-|sk_|key-)|^[A-Za-z0-9]{32,}$")
# https anywhere; plain http only to this machine (a local vLLM or Ollama).
_BASE_URL_RE = re.compile(r"^(https://[^\s/]+\.[^\s]+|http://(127\.0\.0\.1|localhost)(:\d+)?(/\S*)?)$")


def _parse_external(
    check: _Checker, raw: Mapping[str, Any], entry: str, provider: str
) -> tuple[str | None, str | None, str | None]:
    """``base_url``, ``secret`` and ``api_flavor``: for external providers only; ``secret`` required."""
    if provider not in EXTERNAL_PROVIDERS:
        for key in ("base_url", "secret", "api_flavor"):
            if key in raw:
                raise check.fail(entry, key, f"only applies to {', '.join(EXTERNAL_PROVIDERS)} models")
        return None, None, None
    secret = check.string(raw, "secret", entry)
    assert secret is not None
    if _KEY_LIKE_RE.search(secret) and not secret.startswith("arn:"):
        raise check.fail(
            entry,
            "secret",
            "looks like an API key; store the key in AWS Secrets Manager and name the secret here",
        )
    if not (_SECRET_ARN_RE.match(secret) or _SECRET_NAME_RE.match(secret)):
        raise check.fail(entry, "secret", f"must be a Secrets Manager secret name or ARN, got {secret!r}")
    base_url = check.string(raw, "base_url", entry, required=False)
    if base_url is not None and not _BASE_URL_RE.match(base_url):
        raise check.fail(
            entry, "base_url", f"must be an https:// URL (http only to localhost), got {base_url!r}"
        )
    if "api_flavor" in raw and provider != "openai":
        raise check.fail(entry, "api_flavor", "only applies to openai models")
    api_flavor = check.choice(raw, "api_flavor", entry, API_FLAVORS) if "api_flavor" in raw else None
    if api_flavor in ("azure", "compatible") and base_url is None:
        raise check.fail(entry, "base_url", f"is required with api_flavor {api_flavor}")
    return base_url, secret, api_flavor


def _parse_data_handling(
    check: _Checker, raw: Mapping[str, Any], entry: str, provider: str
) -> DataHandling | None:
    """``data_handling``: required (every key) of external providers; optional elsewhere, where only
    ``max_classification`` is required when the block is given."""
    value = raw.get("data_handling")
    external = provider in EXTERNAL_PROVIDERS
    if value is None:
        if external:
            raise check.fail(
                entry,
                "data_handling",
                f"is required for external providers ({', '.join(DATA_HANDLING_KEYS)})",
            )
        return None
    if not isinstance(value, Mapping):
        raise check.fail(entry, "data_handling", f"must be a mapping of {', '.join(DATA_HANDLING_KEYS)}")
    unknown = sorted(str(k) for k in value if k not in DATA_HANDLING_KEYS)
    if unknown:
        raise check.fail(
            entry, "data_handling", f"unknown key(s) {unknown}; allowed: {', '.join(DATA_HANDLING_KEYS)}"
        )
    fields = {}
    for key in ("processed_in", "retention", "contract"):
        fields[key] = check.string(value, key, entry, required=external)
        if fields[key] is None and key in value:
            raise check.fail(entry, f"data_handling.{key}", "must be a non-empty string")
    trains = value.get("trains_on_data")
    if trains is None and external:
        raise check.fail(entry, "data_handling.trains_on_data", "is required (true or false)")
    if trains is not None and not isinstance(trains, bool):
        raise check.fail(entry, "data_handling.trains_on_data", f"must be true or false, got {trains!r}")
    ceiling = value.get("max_classification")
    if ceiling not in CLASSIFICATIONS:
        raise check.fail(
            entry,
            "data_handling.max_classification",
            f"must be one of {', '.join(CLASSIFICATIONS)}, got {ceiling!r}",
        )
    if trains and CLASSIFICATIONS.index(ceiling) > CLASSIFICATIONS.index("public"):
        raise check.fail(
            entry,
            "data_handling.max_classification",
            f"is {ceiling}, but the provider may train on the data: only public data may go there",
        )
    return DataHandling(
        max_classification=ceiling,
        processed_in=fields["processed_in"],
        retention=fields["retention"],
        trains_on_data=trains,
        contract=fields["contract"],
    )


def _check_approval(
    check: _Checker, raw: Mapping[str, Any], entry: str, name: str, modality: str, status: str
) -> tuple[dict[str, SuiteEvidence], Waiver | None]:
    """``evidence`` and ``waiver``, checked: well formed, and ``approved`` rests on a passing evaluation
    of every standard suite of the model's modality (``ai_factory.catalog.evidence``)."""

    def fail(fld: str, why: str) -> CatalogError:
        return check.fail(entry, fld, why)

    records = parse_evidence(raw.get("evidence"), fail)
    waiver = parse_waiver(raw.get("waiver"), fail)
    missing = missing_suites(modality, records)
    if status == "approved" and missing:
        raise check.fail(
            entry,
            "status",
            f"approved needs a passing evaluation record for {', '.join(missing)}; run `ai-factory models "
            f"evaluate {name}` (or make it a candidate, routed only under a recorded waiver)",
        )
    return records, waiver


# SageMaker's endpoint-name rule.
_ENDPOINT_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def _parse_sagemaker(
    check: _Checker, raw: Mapping[str, Any], entry: str, provider: str, modality: str
) -> tuple[str | None, str | None]:
    """``endpoint_name`` and ``content_handler``: required of sagemaker models, refused elsewhere."""
    if provider != "sagemaker":
        for key in ("endpoint_name", "content_handler"):
            if key in raw:
                raise check.fail(entry, key, "only applies to sagemaker models")
        return None, None
    if modality != "chat":
        raise check.fail(entry, "modality", "sagemaker models serve chat routes only")
    endpoint = check.string(raw, "endpoint_name", entry)
    assert endpoint is not None
    if not _ENDPOINT_NAME_RE.match(endpoint):
        raise check.fail(
            entry,
            "endpoint_name",
            f"must be a SageMaker endpoint name (1-63 letters, digits, '-'), got {endpoint!r}",
        )
    handler = check.choice(raw, "content_handler", entry, CONTENT_HANDLERS)
    return endpoint, handler


def _parse_route(check: _Checker, raw: Any, index: int, models: Mapping[str, CatalogModel]) -> CatalogRoute:
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{check.source}: routes[{index}]: must be a mapping, got {raw!r}")
    alias_field = raw.get("alias")
    label = f"route {alias_field!r}" if isinstance(alias_field, str) else f"routes[{index}]"
    alias = check.string(raw, "alias", label)
    entry = f"route '{alias}'"
    targets = check.string_list(raw, "targets", entry)
    if not targets:
        raise check.fail(entry, "targets", "must list at least one model")
    for target in targets:
        model = models.get(target)
        if model is None:
            raise check.fail(entry, "targets", f"names unknown model {target!r}; known: {sorted(models)}")
        if model.status == "blocked":
            raise check.fail(entry, "targets", f"names blocked model {target!r}; remove it from the route")
        if model.status == "candidate" and model.waiver is None:
            lacking = missing_suites(model.modality, model.evidence)
            raise check.fail(
                entry,
                "targets",
                f"names candidate model {target!r}, which has no passing evaluation record for "
                f"{', '.join(lacking) or 'the standard suites'} and no waiver; run `ai-factory models "
                "evaluate "
                f"{target}` and approve it, or record a waiver (reason, approved_by, approved_on)",
            )
        if model.status == "preview":
            raise check.fail(
                entry, "targets", f"names preview model {target!r}; approve it before routing traffic to it"
            )
        if model.status == "deprecated":
            warnings.warn(
                f"{check.source}: {entry} uses model {target!r}, deprecated on {model.deprecated_on}",
                CatalogWarning,
                stacklevel=4,
            )
    modalities: list[Modality] = sorted({models[t].modality for t in targets})
    if len(modalities) > 1:
        raise check.fail(entry, "targets", f"mixes modalities {modalities}; a route serves one modality")
    extra = {str(k): v for k, v in raw.items() if k not in _ROUTE_FIELDS}
    if extra.get("prompt_cache", "off") not in ("off", "auto"):
        raise check.fail(entry, "prompt_cache", "must be auto (cache points after system and tools) or off")
    if extra.get("guard_scope", "latest") not in GUARD_SCOPES:
        raise check.fail(
            entry,
            "guard_scope",
            "must be latest (the guardrail assesses the newest user turn and its tool results) or all "
            f"(the whole conversation and system prompt on every call), got {extra['guard_scope']!r}",
        )
    assert alias is not None
    timeouts = _parse_timeouts(check, raw, entry)
    return CatalogRoute(alias=alias, targets=targets, modality=modalities[0], extra=extra, timeouts=timeouts)


def _parse_model_aliases(source: str, raw: Any, routes: Mapping[str, CatalogRoute]) -> dict[str, str]:
    """``model_aliases: {client model name: chat route alias}``. A name may not shadow a route."""
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{source}: top level: field 'model_aliases': must be a mapping of name -> route")
    aliases: dict[str, str] = {}
    for name, target in raw.items():
        where = f"{source}: model_aliases: {name!r}"
        if not isinstance(name, str) or not name.strip():
            raise CatalogError(f"{where}: the name must be a non-empty string")
        if name in routes:
            raise CatalogError(f"{where}: is already a route alias; a model alias may not shadow a route")
        if not isinstance(target, str) or target not in routes:
            known = ", ".join(sorted(routes))
            raise CatalogError(f"{where}: must name a route ({known}); got {target!r}")
        if routes[target].modality != "chat":
            raise CatalogError(f"{where}: route {target!r} is not a chat route")
        aliases[name] = target
    return aliases


def _parse_timeouts(check: _Checker, raw: Mapping[str, Any], entry: str) -> RouteTimeouts:
    value = raw.get("timeouts")
    if value is None:
        return RouteTimeouts()
    if not isinstance(value, Mapping):
        raise check.fail(entry, "timeouts", f"must be a mapping of {', '.join(TIMEOUT_KEYS)}, got {value!r}")
    unknown = sorted(str(k) for k in value if k not in TIMEOUT_KEYS)
    if unknown:
        raise check.fail(entry, "timeouts", f"unknown keys {unknown}; allowed: {', '.join(TIMEOUT_KEYS)}")
    try:
        return RouteTimeouts(**{str(k): v for k, v in value.items()})
    except ValueError as exc:
        raise check.fail(entry, "timeouts", str(exc)) from None


class ModelCatalog:
    """A validated model catalog. Build it with ``load`` (a YAML file) or ``from_dict``."""

    def __init__(
        self,
        models: Mapping[str, CatalogModel],
        routes: Mapping[str, CatalogRoute],
        source: str = "<catalog>",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.models: dict[str, CatalogModel] = dict(models)
        self.routes: dict[str, CatalogRoute] = dict(routes)
        self.source = source
        self.extra: dict[str, Any] = dict(extra or {})

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> ModelCatalog:
        """Read and validate a catalog file (default: the packaged ``ai_factory/data/models.yaml``).

        Raises ``CatalogError`` for any invalid content; warns ``CatalogWarning`` when a route uses a
        deprecated model.
        """
        file = Path(path) if path is not None else DEFAULT_CATALOG_PATH
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogError(f"{file}: cannot read the catalog: {exc}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CatalogError(f"{file}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, source=str(file))

    @classmethod
    def from_dict(cls, data: Any, source: str = "<catalog>") -> ModelCatalog:
        """Validate an already-parsed catalog (``{"models": [...], "routes": [...]}``)."""
        check = _Checker(source)
        if not isinstance(data, Mapping):
            raise CatalogError(f"{source}: the catalog must be a mapping with 'models' and 'routes'")
        for key in ("models", "routes"):
            if not isinstance(data.get(key), list):
                raise CatalogError(f"{source}: top level: field '{key}': must be a list")
        models: dict[str, CatalogModel] = {}
        for index, raw in enumerate(data["models"]):
            model = _parse_model(check, raw, index)
            if model.name in models:
                raise check.fail(f"model '{model.name}'", "name", "is used by more than one model")
            models[model.name] = model
        routes: dict[str, CatalogRoute] = {}
        for index, raw in enumerate(data["routes"]):
            route = _parse_route(check, raw, index, models)
            if route.alias in routes:
                raise check.fail(f"route '{route.alias}'", "alias", "is used by more than one route")
            routes[route.alias] = route
        extra = {str(k): v for k, v in data.items() if k not in ("models", "routes")}
        if "model_aliases" in extra:
            extra["model_aliases"] = _parse_model_aliases(source, extra["model_aliases"], routes)
        return cls(models, routes, source=source, extra=extra)

    @property
    def model_aliases(self) -> dict[str, str]:
        """Client model names (``claude-sonnet-4-5``, ``gpt-5``) -> the chat route they reach."""
        return dict(self.extra.get("model_aliases") or {})

    def routed_models(self) -> list[CatalogModel]:
        """The models at least one route uses, in catalog order."""
        used = {t for route in self.routes.values() for t in route.targets}
        return [m for m in self.models.values() if m.name in used]

    def routes_using(self, name: str) -> list[tuple[CatalogRoute, int]]:
        """The routes whose chain contains model ``name``, each with the model's 1-based position."""
        return [(r, r.targets.index(name) + 1) for r in self.routes.values() if name in r.targets]

    def gateway_config(self, region: str | None = None, **overrides: Any) -> GatewayConfig:
        """The runtime view of the catalog for a gateway in ``region``.

        Each Bedrock target gets the ID for that region (``CatalogModel.invoke_id_for``); ``None`` (or a
        CDK token) uses every model's default ID. Warns ``CatalogWarning`` when a routed model has no
        ID for a concrete ``region``. ``overrides`` set other ``GatewayConfig`` fields.
        """
        if region is not None and not is_token(region):
            for m in self.routed_models():
                if not m.covers_region(region):
                    warnings.warn(
                        f"{self.source}: model '{m.name}' lists no ID for region {region}; the gateway "
                        f"will call {m.invoke_id!r} there (add a regional_ids entry)",
                        CatalogWarning,
                        stacklevel=2,
                    )
        if "guardrail_prices" in self.extra and "guardrail_prices" not in overrides:
            raw = self.extra["guardrail_prices"]
            try:
                prices = GuardrailPrices(**raw)
                bad = [
                    k
                    for k, v in vars(prices).items()
                    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0
                ]
            except TypeError as exc:
                raise CatalogError(f"{self.source}: guardrail_prices: {exc}") from None
            if bad:
                raise CatalogError(f"{self.source}: guardrail_prices.{bad[0]}: must be a non-negative number")
            overrides["guardrail_prices"] = prices
        routes = {}
        for alias, route in self.routes.items():
            targets = tuple(
                ModelTarget(
                    name=m.name,
                    provider=m.provider,
                    model_id=(invoke := m.invoke_id_for(region)),
                    modality=m.modality,
                    prices=m.prices_for(invoke),
                    region=None,
                    content_handler=m.content_handler,
                    capabilities=ModelCapabilities.from_catalog(
                        m.extra.get("capabilities"), m.max_output_tokens
                    ),
                    base_url=m.base_url,
                    secret=m.secret,
                    api_flavor=m.api_flavor,
                    max_classification=m.max_classification,
                )
                for m in (self.models[name] for name in route.targets)
            )
            auto_cache = route.extra.get("prompt_cache") == "auto"
            routes[alias] = Route(
                alias=alias,
                modality=route.modality,
                targets=targets,
                timeouts=route.timeouts,
                prompt_cache=auto_cache,
                guard_scope=route.extra.get("guard_scope"),
            )
        overrides.setdefault("model_aliases", self.model_aliases)
        return GatewayConfig(routes=routes, **overrides)

    def clearance_violations(self, clearance: str, aliases: Iterable[str]) -> list[ClearanceViolation]:
        """Every target of the routes ``aliases`` (fallbacks included) whose ``max_classification`` is
        below ``clearance``: what synth refuses for a feature with that clearance using those routes.

        Raises ``CatalogError`` for an unknown clearance or alias (a typo must not pass the check).
        """
        if clearance not in CLASSIFICATIONS:
            raise CatalogError(
                f"{self.source}: clearance {clearance!r} is not one of {', '.join(CLASSIFICATIONS)}"
            )
        found: list[ClearanceViolation] = []
        for alias in aliases:
            route = self.routes.get(alias)
            if route is None:
                raise CatalogError(
                    f"{self.source}: route {alias!r} does not exist; known: {sorted(self.routes)}"
                )
            for name in route.targets:
                model = self.models[name]
                ceiling = model.max_classification
                if CLASSIFICATIONS.index(ceiling) < CLASSIFICATIONS.index(clearance):
                    found.append(ClearanceViolation(alias, name, model.provider, ceiling, clearance))
        return found

    def external_secrets(self) -> list[str]:
        """The Secrets Manager secrets (names or ARNs) of routed external models: what the gateway's
        role must read (``secretsmanager:GetSecretValue``) and the key used to decrypt them."""
        return sorted({m.secret for m in self.routed_models() if m.external and m.secret})

    def sagemaker_endpoint_arns(self, partition: str, region: str, account: str) -> list[str]:
        """The SageMaker endpoints routed models use: the IAM allow-list for ``sagemaker:InvokeEndpoint``.

        Endpoint ARNs use the lowercased endpoint name (SageMaker lowercases names in ARNs).
        """
        return sorted(
            {
                f"arn:{partition}:sagemaker:{region}:{account}:endpoint/{m.endpoint_name.lower()}"
                for m in self.routed_models()
                if m.provider == "sagemaker" and m.endpoint_name
            }
        )

    def bedrock_count_tokens_arns(self, partition: str, region: str) -> list[str]:
        """The foundation models the gateway may call ``bedrock:CountTokens`` on: each routed Bedrock
        model whose ``capabilities`` say ``count_tokens: true``, in the gateway's own region (CountTokens
        takes the foundation-model ID, never an inference profile)."""
        return sorted(
            f"arn:{partition}:bedrock:{region}::foundation-model/{m.model_id}"
            for m in self.routed_models()
            if m.provider == "bedrock" and (m.extra.get("capabilities") or {}).get("count_tokens") is True
        )

    def bedrock_invoke_arns(self, partition: str, region: str, account: str) -> list[str]:
        """Every ARN the gateway may invoke: the IAM allow-list for ``bedrock:InvokeModel*``.

        The ID each model is called with is the one for ``region`` (as in ``gateway_config``). For an
        inference profile: the profile in the gateway's region and account, plus the foundation model
        in every listed region the profile may route to. For a plain model ID: the foundation model in
        each listed region, and in ``region`` itself when it is concrete. Only models some route uses
        are included; echo models never reach Bedrock. The arguments may be CDK tokens
        (``Aws.PARTITION`` ...); a token region means every model's default ID.
        """
        arns: set[str] = set()
        for model in self.routed_models():
            if model.provider != "bedrock":
                continue
            invoke_id = model.invoke_id_for(region)
            destinations: list[str] = list(model.regions)
            if invoke_id != model.model_id:
                arns.add(f"arn:{partition}:bedrock:{region}:{account}:inference-profile/{invoke_id}")
                # A geographic profile (us., eu., apac.) only routes inside its geography: allow the
                # model only in the listed regions there, not in every region the catalog lists.
                geo = GEO_REGION_PREFIXES.get(invoke_id.split(".", 1)[0])
                if geo is not None:
                    destinations = [r for r in destinations if r.startswith(geo)]
            elif not is_token(region):
                arns.add(f"arn:{partition}:bedrock:{region}::foundation-model/{model.model_id}")
            for model_region in destinations:
                arns.add(f"arn:{partition}:bedrock:{model_region}::foundation-model/{model.model_id}")
        return sorted(arns)
