"""Model cards: content, determinism, the writer, and that the committed docs/models/ is current."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai_factory.catalog.model_cards import (
    GENERATED_MARKER,
    INDEX_FILE,
    CardError,
    render_all,
    render_card,
    render_index,
    stale_cards,
    usd,
    write_cards,
)
from ai_factory.catalog.model_catalog import DEFAULT_CATALOG_PATH, ModelCatalog

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED_CARDS = REPO_ROOT / "docs" / "models"


def raw_catalog() -> dict[str, Any]:
    return dict(yaml.safe_load(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8")))


def catalog_from(data: dict[str, Any], tmp_path: Path) -> ModelCatalog:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return ModelCatalog.load(path)


def test_committed_cards_match_the_catalog() -> None:
    problems = stale_cards(ModelCatalog.load(), COMMITTED_CARDS)
    assert not problems, (
        "docs/models/ does not match the model catalog; run `ai-factory models cards` and commit it:\n"
        + "\n".join(problems)
    )


def test_card_has_every_section() -> None:
    card = render_card(ModelCatalog.load(), "claude-haiku-4-5")
    assert card.startswith(GENERATED_MARKER + "\n")
    for text in [
        "# claude-haiku-4-5",
        "| Status | **approved**; approved by platform-ai@example.com on 2026-11-24 |",
        "| Provider | Anthropic via Amazon Bedrock |",
        "| Modality | chat |",
        "| Owner | platform-ai@example.com |",
        "| Context window | 200,000 tokens |",
        "| Max output tokens | 64,000 tokens |",
        "| default | `us.anthropic.claude-haiku-4-5-20251001-v1:0` | inference profile |",
        "| eu-* | `eu.anthropic.claude-haiku-4-5-20251001-v1:0` | inference profile |",
        "| Input tokens | 1.00 |",
        "| Cache-read input tokens | 0.10 |",
        "| Cache-write input tokens | 1.25 |",
        "| `chat-fast` | 1 of 2 | **claude-haiku-4-5** → nova-lite |",
        "| `chat-smart` | 2 of 2 | claude-sonnet-4-5 → **claude-haiku-4-5** |",
        "## Evaluations\n\nNone recorded yet.",
        "- Data residency: us- stacks call the us. cross-region inference profile",
        "- Provider terms: unknown",
        "- temperature range 0-1",
        "- no image output (text only)",
    ]:
        assert text in card, text
    assert "/work" not in card and str(REPO_ROOT) not in card  # no machine-specific paths


def test_card_of_deprecated_unrouted_model_with_evaluations(tmp_path: Path) -> None:
    data = raw_catalog()
    old = copy.deepcopy(data["models"][2])
    old.update(
        name="nova-old",
        status="deprecated",
        deprecated_on="2026-03-31",
        evaluated_on=["mlflow:runs/0123abcd"],
        compliance_notes={"data_residency": "US | only", "provider_terms": "https://example.com/t"},
        known_limitations=[],
    )
    data["models"].append(old)
    catalog = catalog_from(data, tmp_path)
    card = render_card(catalog, "nova-old")
    assert (
        "**deprecated**; approved by platform-ai@example.com on 2026-11-24; deprecated on 2026-03-31" in card
    )
    assert "Not used by any route: product teams cannot call it." in card
    assert "- mlflow:runs/0123abcd" in card
    assert "- Data residency: US \\| only" in card  # a pipe would break the Markdown
    assert "- Provider terms: https://example.com/t" in card
    assert "## Known limitations\n\nNone recorded." in card
    assert "Source: `models.yaml`." in card
    assert "| [nova-old](nova-old.md) | deprecated 2026-03-31 |" in render_index(catalog)


def test_index_lists_models_and_routes() -> None:
    index = render_index(ModelCatalog.load())
    assert (
        "| [nova-lite](nova-lite.md) | approved 2026-11-24 | chat | Amazon | 300,000 | "
        "0.06 / 0.24 / 0.015 / 0.00 | `chat-fast` #2 |" in index
    )
    assert (
        "| `chat-fast` | chat | [claude-haiku-4-5](claude-haiku-4-5.md) → [nova-lite](nova-lite.md) |"
        in index
    )


def test_output_is_deterministic() -> None:
    assert render_all(ModelCatalog.load()) == render_all(ModelCatalog.load())


@pytest.mark.parametrize(
    ("price", "text"), [(1.0, "1.00"), (0.015, "0.015"), (0.0, "0.00"), (15, "15.00"), (0.1, "0.10")]
)
def test_usd(price: float, text: str) -> None:
    assert usd(price) == text


def test_write_cards_rewrites_only_changes_and_removes_only_generated_files(tmp_path: Path) -> None:
    out = tmp_path / "cards"
    catalog = ModelCatalog.load()
    first = write_cards(catalog, out)
    assert sorted(first.written) == sorted([INDEX_FILE, *(f"{m}.md" for m in catalog.models)])
    assert stale_cards(catalog, out) == []
    again = write_cards(catalog, out)
    assert again.written == [] and again.removed == [] and len(again.unchanged) == len(first.written)

    (out / "notes.md").write_text("# hand-written\n", encoding="utf-8")
    data = raw_catalog()
    data["models"] = [m for m in data["models"] if m["name"] != "echo-embed"]
    data["routes"] = [r for r in data["routes"] if r["alias"] != "echo-embed"]
    smaller = catalog_from(data, tmp_path)
    assert f"{out / 'echo-embed.md'}: no such model in the catalog" in stale_cards(smaller, out)
    result = write_cards(smaller, out)
    assert result.removed == ["echo-embed.md"]
    assert (out / "notes.md").exists()  # not generated: left alone
    assert INDEX_FILE in result.written


def test_stale_cards_reports_missing_and_changed(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    out = tmp_path / "cards"
    write_cards(catalog_from(raw_catalog(), tmp_path / "v1"), out)
    (out / "echo.md").unlink()
    data = raw_catalog()
    data["models"][0]["prices"]["input"] = 1.5
    assert stale_cards(catalog_from(data, tmp_path / "v2"), out) == [
        f"{out / INDEX_FILE}: out of date",
        f"{out / 'claude-haiku-4-5.md'}: out of date",
        f"{out / 'echo.md'}: missing",
    ]


def test_unsafe_model_name_is_refused(tmp_path: Path) -> None:
    data = raw_catalog()
    data["models"].append(
        {"name": "../evil", "provider": "echo", "modality": "chat", "prices": {}, "status": "preview"}
    )
    with pytest.raises(CardError, match=r"model '\.\./evil': the name is not a safe file name"):
        render_all(catalog_from(data, tmp_path))
    data["models"][-1]["name"] = "README"
    with pytest.raises(CardError, match="would overwrite the index"):
        render_all(catalog_from(data, tmp_path))
