"""``ai-factory models``: list, show, routes, cards and publish, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ai_factory.catalog.model_catalog import ModelCatalog
from ai_factory.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_table_is_aligned_with_status_prices_and_routes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "PROVIDER", "MODALITY", "CONTEXT", "IN", "OUT", "CACHE-R",
                                "CACHE-W", "ROUTES"]  # fmt: skip
    haiku = next(line for line in lines if line.startswith("claude-haiku-4-5 "))
    assert (
        "approved 2026-11-24" in haiku and "200,000" in haiku and haiku.endswith("chat-fast#1, chat-smart#2")
    )
    assert haiku.split()[-6:-2] == ["1.00", "5.00", "0.10", "1.25"]
    # Columns line up: every ROUTES cell starts where the header does.
    start = lines[0].index("ROUTES")
    assert all(line[start - 2 : start] == "  " and line[start] != " " for line in lines[1:7])
    assert lines[-1].startswith("Prices: USD per 1M tokens")


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "list", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert [m["name"] for m in data] == list(ModelCatalog.load().models)
    nova = next(m for m in data if m["name"] == "nova-lite")
    assert nova["prices"] == {"input": 0.06, "output": 0.24, "cache_read": 0.015, "cache_write": 0.0}
    assert nova["routes"] == [{"alias": "chat-fast", "position": 2}]
    assert nova["approved_on"] == "2026-11-24" and nova["context_window"] == 300000
    assert nova["regional_ids"]["eu-"] == "eu.amazon.nova-lite-v1:0"


def test_show_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "show", "titan-embed-v2")
    assert code == 0
    lines = out.splitlines()
    column = len(lines[0]) - len("titan-embed-v2")  # values start in one column
    assert all(line[column - 2 : column] == "  " and line[column] != " " for line in lines)
    fields = {line[:column].strip(): line[column:] for line in lines}
    assert fields["status"] == "approved"
    assert fields["approved"] == "by platform-ai@example.com on 2026-11-24"
    assert fields["context window"] == "8,192 tokens"
    assert fields["price input"] == "0.02 USD / 1M tokens"
    assert fields["routes"] == "embed#1"
    assert fields["limitations"].startswith("text input only; input up to 8192 tokens")
    code, out, _ = run(capsys, "models", "show", "claude-sonnet-4-5", "--format", "json")
    assert code == 0 and json.loads(out)["routes"] == [{"alias": "chat-smart", "position": 1}]


def test_show_unknown_model_is_exit_1_listing_known(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "models", "show", "gpt-5")
    assert code == 1
    assert "no model 'gpt-5' in the catalog; known: claude-haiku-4-5," in err


def test_routes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "models", "routes")
    assert code == 0
    assert "chat-fast   chat       claude-haiku-4-5 -> nova-lite" in out.splitlines()
    catalog = tmp_path / "models.yaml"
    catalog.write_text(
        "models:\n"
        "  - {name: e, provider: echo, modality: chat, prices: {}, status: deprecated,\n"
        "     deprecated_on: 2026-01-31}\n"
        "routes:\n  - {alias: old, targets: [e]}\n",
        encoding="utf-8",
    )
    code, out, err = run(capsys, "models", "routes", "--catalog", str(catalog))
    assert code == 0 and "old    chat      e (deprecated 2026-01-31)" in out and err == ""
    code, out, _ = run(capsys, "models", "routes", "--format", "json", "--catalog", str(catalog))
    assert json.loads(out) == [
        {"alias": "old", "modality": "chat", "targets": [{"name": "e", "status": "deprecated"}]}
    ]


def test_invalid_catalog_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "models", "list", "--catalog", str(tmp_path / "missing.yaml"))
    assert code == 2 and "--catalog: invalid model catalog" in err


def test_cards_write_then_check(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "cards"
    code, out, _ = run(capsys, "models", "cards", "--out", str(out_dir), "--check")
    assert code == 1
    code, _, err = run(capsys, "models", "cards", "--out", str(out_dir), "--check")
    assert f"run `ai-factory models cards --out {out_dir}`" in err and "README.md: missing" in err
    code, out, _ = run(capsys, "models", "cards", "--out", str(out_dir))
    assert code == 0 and f"wrote {out_dir}/claude-haiku-4-5.md" in out and out.endswith("0 removed\n")
    code, out, _ = run(capsys, "models", "cards", "--out", str(out_dir), "--check")
    assert code == 0 and "model cards are current" in out
    code, out, _ = run(capsys, "models", "cards", "--out", str(out_dir))
    assert out.startswith("0 written, 7 unchanged")


def test_publish_then_republish(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, out, _ = run(capsys, "models", "publish", "--tracking-uri", uri, "--dry-run")
    assert code == 0 and "would bedrock.nova-lite: create-model (approved)" in out and "(dry run)" in out
    code, out, _ = run(capsys, "models", "publish", "--tracking-uri", uri)
    assert code == 0
    assert "bedrock.claude-haiku-4-5: set-alias approved -> 1" in out
    code, out, _ = run(capsys, "models", "publish", "--tracking-uri", uri)
    assert code == 0 and out == f"{uri}: the registry already matches the catalog (6 models)\n"
