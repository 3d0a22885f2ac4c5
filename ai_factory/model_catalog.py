"""The approved-model catalog: load and validate ``models.yaml``, and derive what the stack needs from it.

The catalog is the single source for the gateway's routes (``gateway_config``), its IAM allow-list
(``bedrock_invoke_arns``) and its price table. Everything is validated when the file is loaded, and every
error names the file, the entry and the field, so a bad pull request fails ``make synth`` with a message
a reviewer can act on.

Example::

    catalog = ModelCatalog.load()  # the packaged ai_factory/data/models.yaml
    config = catalog.gateway_config(model_timeout_s=20)
    arns = catalog.bedrock_invoke_arns("aws", "us-east-1", "123456789012")
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, cast

import yaml

from aif_gateway.config import GatewayConfig, Modality, ModelTarget, Prices, Provider, Route

DEFAULT_CATALOG_PATH = Path(__file__).parent / "data" / "models.yaml"

PROVIDERS = ("bedrock", "echo")
MODALITIES = ("chat", "embedding")
STATUSES = ("approved", "preview", "deprecated", "blocked")
PRICE_KEYS = ("input", "output", "cache_read", "cache_write")

# Fields the loader interprets; anything else on an entry is kept as-is in ``extra`` (owner,
# context_window, compliance_notes, ... are documentation fields other tools read).
_MODEL_FIELDS = frozenset(
    {
        "name",
        "provider",
        "modality",
        "model_id",
        "inference_profile",
        "regions",
        "prices",
        "status",
        "deprecated_on",
    }
)
_ROUTE_FIELDS = frozenset({"alias", "targets"})
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class CatalogError(ValueError):
    """The catalog file is invalid. The message names the file, the entry and the field."""


class CatalogWarning(UserWarning):
    """The catalog is valid but something needs attention (a route uses a deprecated model)."""


@dataclass(frozen=True)
class CatalogModel:
    """One concrete model in the catalog.

    Optional documentation fields the loader does not interpret (``owner``, ``context_window``, ...) are
    kept in ``extra`` and are also readable as attributes (``model.owner``).
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

    def __getattr__(self, item: str) -> Any:
        # Only called when normal lookup fails. Read __dict__ directly so copy/pickle (which probe
        # attributes before __dict__ is filled) cannot recurse.
        extra = self.__dict__.get("extra", {})
        if not item.startswith("_") and item in extra:
            return extra[item]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {item!r}")

    @property
    def invoke_id(self) -> str:
        """The ID the gateway sends to Bedrock: the inference profile when there is one."""
        return self.inference_profile or self.model_id


@dataclass(frozen=True)
class CatalogRoute:
    """A model alias product teams ask for: an ordered fallback chain of catalog models."""

    alias: str
    targets: tuple[str, ...]
    modality: Modality
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)


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


def _parse_prices(check: _Checker, raw: Mapping[str, Any], entry: str) -> Prices:
    value = raw.get("prices")
    if value is None:
        raise check.fail(entry, "prices", "is required (USD per 1M tokens; omitted keys count as 0)")
    if not isinstance(value, Mapping):
        raise check.fail(entry, "prices", f"must be a mapping of {', '.join(PRICE_KEYS)}, got {value!r}")
    unknown = sorted(str(k) for k in value if k not in PRICE_KEYS)
    if unknown:
        # A typo such as "ouput" would otherwise silently price a counter at zero.
        raise check.fail(entry, "prices", f"unknown key(s) {unknown}; allowed: {', '.join(PRICE_KEYS)}")
    parsed: dict[str, float] = {}
    for key in PRICE_KEYS:
        price = value.get(key, 0.0)
        ok = isinstance(price, int | float) and not isinstance(price, bool)
        if not ok or not math.isfinite(price) or price < 0:
            raise check.fail(entry, f"prices.{key}", f"must be a non-negative number, got {price!r}")
        parsed[key] = float(price)
    return Prices(**parsed)


def _parse_date(check: _Checker, raw: Mapping[str, Any], entry: str) -> date | None:
    value = raw.get("deprecated_on")
    if value is None:
        return None
    if isinstance(value, date):  # YAML reads an unquoted 2026-01-31 as a date already
        return value
    if isinstance(value, str) and _DATE_RE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise check.fail(entry, "deprecated_on", f"must be a date YYYY-MM-DD, got {value!r}")


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
    model_id = check.string(raw, "model_id", entry, required=provider == "bedrock") or name
    profile = check.string(raw, "inference_profile", entry, required=False)
    regions = check.string_list(raw, "regions", entry)
    if provider == "bedrock" and not regions:
        raise check.fail(entry, "regions", "is required for bedrock models (a non-empty list of regions)")
    if profile is not None and provider != "bedrock":
        raise check.fail(entry, "inference_profile", "only applies to bedrock models")
    prices = _parse_prices(check, raw, entry)
    deprecated_on = _parse_date(check, raw, entry)
    if status == "deprecated" and deprecated_on is None:
        raise check.fail(entry, "deprecated_on", "is required when status is deprecated (YYYY-MM-DD)")
    extra = {str(k): v for k, v in raw.items() if k not in _MODEL_FIELDS}
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
    )


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
    assert alias is not None
    return CatalogRoute(alias=alias, targets=targets, modality=modalities[0], extra=extra)


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
        return cls(models, routes, source=source, extra=extra)

    def routed_models(self) -> list[CatalogModel]:
        """The models at least one route uses, in catalog order."""
        used = {t for route in self.routes.values() for t in route.targets}
        return [m for m in self.models.values() if m.name in used]

    def gateway_config(self, **overrides: Any) -> GatewayConfig:
        """The runtime view of the catalog. ``overrides`` set other ``GatewayConfig`` fields."""
        routes = {}
        for alias, route in self.routes.items():
            targets = tuple(
                ModelTarget(
                    name=m.name,
                    provider=m.provider,
                    model_id=m.invoke_id,
                    modality=m.modality,
                    prices=m.prices,
                    region=None,
                )
                for m in (self.models[name] for name in route.targets)
            )
            routes[alias] = Route(alias=alias, modality=route.modality, targets=targets)
        return GatewayConfig(routes=routes, **overrides)

    def bedrock_invoke_arns(self, partition: str, region: str, account: str) -> list[str]:
        """Every ARN the gateway may invoke: the IAM allow-list for ``bedrock:InvokeModel*``.

        For a model with a cross-region inference profile: the profile in the gateway's region and
        account, plus the foundation model in every region the profile may route to. Otherwise the
        foundation model in each listed region. Only models some route uses are included; echo models
        never reach Bedrock. The arguments may be CDK tokens (``Aws.PARTITION`` ...).
        """
        arns: set[str] = set()
        for model in self.routed_models():
            if model.provider != "bedrock":
                continue
            if model.inference_profile:
                arns.add(
                    f"arn:{partition}:bedrock:{region}:{account}:inference-profile/{model.inference_profile}"
                )
            for model_region in model.regions:
                arns.add(f"arn:{partition}:bedrock:{model_region}::foundation-model/{model.model_id}")
        return sorted(arns)
