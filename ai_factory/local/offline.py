"""Local mode on offline models: the catalog's routes served by the offline model, a local key, and the
real gateway over SQLite stores. Shared by ``ai-factory dev`` and the evaluation harness's local target."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any


def offline_config(catalog_path: str | None = None) -> Any:
    """The catalog's routes with every chat alias served by ``echo`` and every embedding alias by
    ``echo-embed``: a suite naming ``chat-fast`` runs offline, through the real gateway code."""
    from ai_factory.catalog.model_catalog import ModelCatalog
    from aif_gateway.config import ModelTarget, Route

    config = ModelCatalog.load(catalog_path).gateway_config()
    echo = {
        "chat": ModelTarget("echo", "echo", "echo", "chat"),
        "embedding": ModelTarget("echo-embed", "echo", "echo-embed", "embedding"),
    }
    routes = {alias: Route(alias, r.modality, (echo[r.modality],)) for alias, r in config.routes.items()}
    return replace(config, routes=routes)


def create_local_key(
    state_dir: str | Path,
    *,
    team: str,
    feature: str,
    models: tuple[str, ...],
    monthly_budget_usd: float,
    rate_limit_rpm: int,
    description: str,
    clearance: str | None = None,
) -> str:
    """A key in ``state_dir``'s local key store (what ``ai-factory keys create`` writes); returns the
    plaintext key, which is not stored. ``clearance``: the feature's data clearance (None: not recorded)."""
    from ai_factory.local.sqlite_store import SqliteKeyStore, default_db_path
    from aif_gateway.records import ApiKeyRecord, generate_key, utc_now

    plaintext, key_id, key_hash = generate_key()
    store = SqliteKeyStore(default_db_path(state_dir))
    try:
        store.put(
            ApiKeyRecord(
                key_id=key_id,
                key_hash=key_hash,
                team=team,
                feature=feature,
                allowed_models=models,
                monthly_budget_usd=monthly_budget_usd,
                rate_limit_rpm=rate_limit_rpm,
                created_at=utc_now(),
                description=description,
                clearance=clearance,
            )
        )
    finally:
        store.close()
    return plaintext


def offline_gateway(state_dir: str | Path, config: Any, script: Any = None) -> tuple[Any, Any]:
    """The real gateway over ``state_dir``'s SQLite stores with ``config`` (from ``offline_config``)
    and an ``OfflineModel`` answering every echo route: ``(gateway, offline_model)``."""
    from ai_factory.local.server import build_gateway
    from aif_gateway.offline_model import OfflineModel
    from aif_gateway.provider_registry import default_providers

    model = OfflineModel(script)
    gateway, _ = build_gateway(state_dir, config=config)
    gateway.providers = {**default_providers(config.model_timeout_s), "echo": model}  # type: ignore[attr-defined]
    return gateway, model
