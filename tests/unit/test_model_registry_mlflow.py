"""Publishing the catalog to the MLflow model registry (a throwaway SQLite tracking store per test)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai_factory.catalog.model_cards import render_card
from ai_factory.catalog.model_catalog import DEFAULT_CATALOG_PATH, ModelCatalog
from ai_factory.catalog.model_registry_mlflow import (
    HASH_TAG,
    entry_hash,
    make_client,
    model_source,
    publish_catalog,
)
from ai_factory.state import default_tracking_uri

pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty tracking store, created once: MLflow's schema migrations take seconds per database."""
    path = tmp_path_factory.mktemp("mlflow") / "empty.db"
    make_client(f"sqlite:///{path}").search_registered_models()
    return path


@pytest.fixture
def uri(tmp_path: Path, empty_store: Path) -> str:
    db = tmp_path / "mlflow.db"
    shutil.copyfile(empty_store, db)
    return f"sqlite:///{db}"


def raw() -> dict[str, Any]:
    return dict(yaml.safe_load(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8")))


def load(data: dict[str, Any], folder: Path) -> ModelCatalog:
    """The catalog from ``folder/models.yaml``: every copy has the same file name, so the same cards."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "models.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return ModelCatalog.load(path)


def aliases(uri: str, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in make_client(uri).get_registered_model(name).aliases.items()}


def entry(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in data["models"] if m["name"] == name)


def test_publish_creates_models_versions_tags_and_aliases(uri: str) -> None:
    catalog = ModelCatalog.load()
    actions = publish_catalog(catalog, uri)
    assert len([a for a in actions if a.action == "create-model"]) == len(catalog.models)
    client = make_client(uri)
    names = sorted(m.name for m in client.search_registered_models())
    assert names == sorted(
        ["bedrock.claude-haiku-4-5", "bedrock.claude-sonnet-4-5", "bedrock.nova-lite",
         "bedrock.titan-embed-v2", "echo.echo", "echo.echo-embed"]
    )  # fmt: skip
    haiku = client.get_registered_model("bedrock.claude-haiku-4-5")
    assert haiku.description == render_card(catalog, "claude-haiku-4-5")
    assert {
        k: haiku.tags[k] for k in ("provider", "provider_name", "modality", "status", "owner", "routes")
    } == {
        "provider": "bedrock",
        "provider_name": "Anthropic",
        "modality": "chat",
        "status": "approved",
        "owner": "platform-ai@example.com",
        "routes": "chat-fast#1,chat-smart#2",
    }
    assert (
        haiku.tags["price.input_usd_per_1m"] == "1.0" and haiku.tags["price.cache_read_usd_per_1m"] == "0.1"
    )
    assert aliases(uri, "bedrock.claude-haiku-4-5") == {"approved": "1"}
    version = client.get_model_version_by_alias("bedrock.claude-haiku-4-5", "approved")
    assert version.source == "bedrock://us-east-1/foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0"
    assert version.tags[HASH_TAG] == entry_hash(catalog.models["claude-haiku-4-5"])
    assert version.tags["approved_by"] == "platform-ai@example.com"
    assert version.tags["approved_on"] == "2026-11-24"
    assert version.tags["invoke_id"] == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert client.get_model_version("echo.echo", "1").source == "echo://local/echo"


def test_republishing_an_unchanged_catalog_changes_nothing(uri: str) -> None:
    catalog = ModelCatalog.load()
    publish_catalog(catalog, uri)
    assert publish_catalog(catalog, uri) == []
    assert publish_catalog(ModelCatalog.load(), uri, dry_run=True) == []
    client = make_client(uri)
    assert len(client.search_model_versions("name='bedrock.nova-lite'")) == 1


def test_a_changed_price_creates_one_new_version_and_moves_the_alias(uri: str, tmp_path: Path) -> None:
    original = load(raw(), tmp_path / "v1")
    publish_catalog(original, uri)
    data = raw()
    entry(data, "nova-lite")["prices"]["output"] = 0.30
    changed = load(data, tmp_path / "v2")
    preview = publish_catalog(changed, uri, dry_run=True)
    assert [str(a) for a in preview if a.action == "create-version"] == [
        "bedrock.nova-lite: create-version (new content)"
    ]
    actions = publish_catalog(changed, uri)
    assert {a.registered_model for a in actions} == {"bedrock.nova-lite"}
    assert [a.action for a in actions] == ["update-model", "create-version", "set-alias"]
    client = make_client(uri)
    nova = client.get_registered_model("bedrock.nova-lite")
    assert aliases(uri, "bedrock.nova-lite") == {"approved": "2"}
    assert nova.tags["price.output_usd_per_1m"] == "0.3"
    assert client.get_model_version("bedrock.nova-lite", "1").tags["price.output_usd_per_1m"] == "0.24"
    assert publish_catalog(changed, uri) == []
    # Back to the old content: the old version is found by its hash, no third version.
    actions = publish_catalog(original, uri)
    assert [a.action for a in actions] == ["update-model", "set-alias"]
    assert aliases(uri, "bedrock.nova-lite") == {"approved": "1"}
    assert len(client.search_model_versions("name='bedrock.nova-lite'")) == 2


def test_deprecating_moves_the_aliases_and_a_route_change_only_updates_the_model(
    uri: str, tmp_path: Path
) -> None:
    publish_catalog(load(raw(), tmp_path / "v1"), uri)
    data = raw()
    old = entry(data, "nova-lite")
    old.update(status="deprecated", deprecated_on="2027-01-31")
    data["routes"][0]["targets"] = ["claude-haiku-4-5"]  # the deprecated model leaves chat-fast
    catalog = load(data, tmp_path / "v2")  # unrouted: no deprecation warning
    actions = sorted(str(a) for a in publish_catalog(catalog, uri))
    assert actions == [
        "bedrock.claude-haiku-4-5: update-model description",  # its card shows the new chain; no new version
        "bedrock.nova-lite: create-version 2",
        "bedrock.nova-lite: delete-alias approved",
        "bedrock.nova-lite: set-alias deprecated -> 2",
        "bedrock.nova-lite: update-model aif.catalog_hash, routes, status, description",
    ]
    client = make_client(uri)
    assert aliases(uri, "bedrock.nova-lite") == {"deprecated": "2"}
    assert client.get_registered_model("bedrock.nova-lite").tags["status"] == "deprecated"
    assert len(client.search_model_versions("name='bedrock.claude-haiku-4-5'")) == 1

    blocked = copy.deepcopy(data)
    entry(blocked, "nova-lite").update(status="blocked")
    publish_catalog(load(blocked, tmp_path / "v3"), uri)
    assert aliases(uri, "bedrock.nova-lite") == {}


def test_source_is_accepted_by_a_tracking_server() -> None:
    """A remote server (SageMaker MLflow) validates ``source``; a relative path such as a bare ARN fails."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _validate_artifact_uri_scheme, _validate_source_run

    for model in ModelCatalog.load().models.values():
        source = model_source(model)
        _validate_artifact_uri_scheme(source, "source")
        _validate_source_run(source, "")
    with pytest.raises(MlflowException):
        _validate_source_run("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0", "")


def test_default_tracking_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("AI_FACTORY_HOME", str(tmp_path / "home"))
    assert default_tracking_uri() == f"sqlite:///{(tmp_path / 'home' / 'mlflow.db').resolve()}"
    monkeypatch.setenv(
        "MLFLOW_TRACKING_URI", "arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/x"
    )
    assert default_tracking_uri().startswith("arn:aws:sagemaker:")


def test_entry_hash_ignores_routes_but_not_content(tmp_path: Path) -> None:
    base = ModelCatalog.load().models["claude-haiku-4-5"]
    data = raw()
    data["routes"] = [r for r in data["routes"] if r["alias"] != "chat-smart"]
    data["model_aliases"] = {k: v for k, v in data["model_aliases"].items() if v != "chat-smart"}
    assert entry_hash(load(data, tmp_path / "a").models["claude-haiku-4-5"]) == entry_hash(base)
    entry(data, "claude-haiku-4-5")["known_limitations"].append("new one")
    assert entry_hash(load(data, tmp_path / "b").models["claude-haiku-4-5"]) != entry_hash(base)
    assert entry_hash(base).startswith("sha256:") and len(entry_hash(base)) == 71
