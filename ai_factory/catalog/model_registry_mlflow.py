"""Publish the model catalog to the MLflow model registry, so every approved model has a documented record.

One registered model per catalog model (``bedrock.claude-haiku-4-5``), described by its model card and
tagged with provider, modality, status, owner and prices. Each distinct catalog content of an entry is one
model version: the SHA-256 of the entry is stored as the version tag ``aif.catalog_hash``, so re-publishing
an unchanged catalog creates nothing and a changed price creates exactly one new version. The alias
``approved`` points at the current version of an approved model and ``deprecated`` at that of a deprecated
one; neither is left on a model whose status no longer has it.

MLflow is imported lazily (``import mlflow`` takes about a second and it is never part of the gateway
runtime). The tracking URI is ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the local SQLite store
``$AI_FACTORY_HOME/mlflow.db``; in the cloud it is the SageMaker managed MLflow tracking server's ARN (the
``sagemaker-mlflow`` plugin signs the requests).

Example::

    from ai_factory.catalog.model_registry_mlflow import publish_catalog
    for action in publish_catalog(ModelCatalog.load(), "sqlite:///mlflow.db"):
        print(action)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ai_factory.catalog.model_cards import render_card
from ai_factory.catalog.model_catalog import PRICE_KEYS, CatalogModel, ModelCatalog
from ai_factory.state import default_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

HASH_TAG = "aif.catalog_hash"
STATUS_ALIASES = {"approved": "approved", "deprecated": "deprecated"}  # catalog status -> alias


@dataclass(frozen=True)
class PublishAction:
    """One change ``publish_catalog`` made (or, with ``dry_run``, would make)."""

    registered_model: str
    action: str  # create-model | update-model | create-version | set-alias | delete-alias
    detail: str

    def __str__(self) -> str:
        return f"{self.registered_model}: {self.action} {self.detail}".rstrip()


def registered_model_name(model: CatalogModel) -> str:
    """``<provider>.<catalog name>``, e.g. ``bedrock.claude-haiku-4-5``."""
    return f"{model.provider}.{model.name}"


def entry_hash(model: CatalogModel) -> str:
    """``sha256:<hex>`` of the entry's canonical JSON: equal content, equal hash."""
    canonical = json.dumps(model.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def model_source(model: CatalogModel) -> str:
    """The model version's ``source``: a URI naming the model, not an artifact location.

    ``bedrock://<home region>/foundation-model/<model id>`` for Bedrock (the home region is the first
    listed), ``echo://local/<model id>`` for the offline models. An MLflow tracking server accepts any
    absolute URI whose scheme does not address a host it would fetch from (http, ftp, mlflow-artifacts
    ...); it rejects relative paths, which is why a bare ARN (``arn:aws:...``, no leading ``/``) is not used.
    """
    if model.provider == "bedrock":
        return f"bedrock://{model.regions[0]}/foundation-model/{model.model_id}"
    return f"{model.provider}://local/{model.model_id}"


def _routes_tag(catalog: ModelCatalog, model: CatalogModel) -> str:
    return ",".join(f"{route.alias}#{pos}" for route, pos in catalog.routes_using(model.name))


def model_tags(catalog: ModelCatalog, model: CatalogModel) -> dict[str, str]:
    """Registered-model tags: what people filter the registry by (values are strings, None -> "")."""
    tags = {
        "provider": model.provider,
        "provider_name": model.provider_name or "unknown",
        "modality": model.modality,
        "status": model.status,
        "owner": model.owner or "unknown",
        "model_id": model.model_id,
        "context_window": str(model.context_window or "unknown"),
        "routes": _routes_tag(catalog, model),
        HASH_TAG: entry_hash(model),
    }
    tags.update({f"price.{key}_usd_per_1m": repr(getattr(model.prices, key)) for key in PRICE_KEYS})
    return tags


def version_tags(model: CatalogModel) -> dict[str, str]:
    """Model-version tags: the content of this version of the entry, for audits."""
    tags = {
        HASH_TAG: entry_hash(model),
        "status": model.status,
        "model_id": model.model_id,
        "invoke_id": model.invoke_id,
        "owner": model.owner or "unknown",
    }
    tags.update({f"price.{key}_usd_per_1m": repr(getattr(model.prices, key)) for key in PRICE_KEYS})
    for key in ("approved_by", "approved_on", "deprecated_on"):
        value = getattr(model, key)
        if value is not None:
            tags[key] = str(value)
    if model.evaluated_on:
        tags["evaluated_on"] = ",".join(model.evaluated_on)
    return tags


def make_client(tracking_uri: str | None = None) -> MlflowClient:
    """An ``MlflowClient`` whose tracking and registry URIs are ``tracking_uri`` (or the default)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _is_missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


def publish_model(
    client: MlflowClient, catalog: ModelCatalog, model: CatalogModel, *, dry_run: bool = False
) -> list[PublishAction]:
    """Bring one model's registered model, version and aliases in line with the catalog."""
    from mlflow.exceptions import MlflowException

    name = registered_model_name(model)
    card = render_card(catalog, model.name)
    tags = model_tags(catalog, model)
    actions: list[PublishAction] = []

    def act(action: str, detail: str) -> None:
        actions.append(PublishAction(name, action, detail))

    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        if not _is_missing(exc):
            raise
        registered = None
    if registered is None:
        act("create-model", f"({model.status})")
        if dry_run:
            return [*actions, PublishAction(name, "create-version", "1")]
        client.create_registered_model(name, tags=tags, description=card)
        current_tags: dict[str, str] = tags
        aliases: dict[str, str] = {}
    else:
        current_tags = dict(registered.tags or {})
        aliases = {str(k): str(v) for k, v in (registered.aliases or {}).items()}
        changed = sorted(k for k, v in tags.items() if current_tags.get(k) != v)
        if registered.description != card:
            changed.append("description")
        if changed:
            act("update-model", ", ".join(changed))
        if not dry_run:
            if registered.description != card:
                client.update_registered_model(name, description=card)
            for key in changed:
                if key != "description":
                    client.set_registered_model_tag(name, key, tags[key])

    digest = entry_hash(model)
    existing = [
        mv for mv in client.search_model_versions(f"name='{name}'") if (mv.tags or {}).get(HASH_TAG) == digest
    ]
    if existing:
        version = str(max(int(mv.version) for mv in existing))
    elif dry_run:
        act("create-version", "(new content)")
        version = ""
    else:
        created = client.create_model_version(
            name,
            model_source(model),
            tags=version_tags(model),
            description=card,
        )
        version = str(created.version)
        act("create-version", version)

    for status, alias in STATUS_ALIASES.items():
        if model.status == status:
            if version and aliases.get(alias) != version:
                act("set-alias", f"{alias} -> {version}")
                if not dry_run:
                    client.set_registered_model_alias(name, alias, version)
        elif alias in aliases:
            act("delete-alias", alias)
            if not dry_run:
                client.delete_registered_model_alias(name, alias)
    return actions


def publish_catalog(
    catalog: ModelCatalog,
    tracking_uri: str | None = None,
    *,
    client: MlflowClient | None = None,
    dry_run: bool = False,
) -> list[PublishAction]:
    """Publish every catalog model; return the changes made (empty: the registry was already current)."""
    client = client or make_client(tracking_uri)
    actions: list[PublishAction] = []
    for model in catalog.models.values():
        actions += publish_model(client, catalog, model, dry_run=dry_run)
    return actions
