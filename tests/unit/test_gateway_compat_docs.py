"""docs/gateway.md's Chat Completions compatibility table says what the parser does: every field of the
table is in exactly the parser list its status names, and every field the parser knows is in the table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from aif_gateway import anthropic_messages, openai_responses
from aif_gateway.openai_schema import IGNORED_FIELDS, REFUSED_FIELDS, SUPPORTED_FIELDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"
ROW = re.compile(r"^\| `([a-z_]+)` \| (supported|mapped|ignored|refused) \| (.+) \|$")


def table() -> dict[str, tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Chat Completions compatibility", 1)[1].split("\n## ", 1)[0]
    section = section.split("\nMessages:", 1)[0]  # the field table comes first
    rows = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} is listed twice"
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def test_every_field_in_the_table_matches_the_parsers_lists() -> None:
    rows = table()
    by_status = {
        status: {name for name, (s, _) in rows.items() if s == status}
        for status in ("supported", "mapped", "ignored", "refused")
    }
    assert by_status["supported"] | by_status["mapped"] == set(SUPPORTED_FIELDS)
    assert by_status["ignored"] == set(IGNORED_FIELDS)
    assert by_status["refused"] == set(REFUSED_FIELDS)


def test_refused_fields_give_the_documented_reason() -> None:
    rows = table()
    for name, reason in REFUSED_FIELDS.items():
        assert rows[name][1] == reason


def api_table(heading: str) -> dict[str, tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            assert match.group(1) not in rows, f"{heading}: {match.group(1)} is listed twice"
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


@pytest.mark.parametrize(
    ("heading", "module"),
    [("Messages API compatibility", anthropic_messages), ("Responses API compatibility", openai_responses)],
)
def test_messages_and_responses_tables_match_their_parsers(heading: str, module: Any) -> None:
    rows = api_table(heading)
    by_status = {
        status: {name for name, (s, _) in rows.items() if s == status}
        for status in ("supported", "mapped", "ignored", "refused")
    }
    assert by_status["supported"] | by_status["mapped"] == set(module.SUPPORTED_FIELDS)
    assert by_status["ignored"] == set(module.IGNORED_FIELDS)
    assert by_status["refused"] == set(module.REFUSED_FIELDS)
    for name, reason in {**module.IGNORED_FIELDS, **module.REFUSED_FIELDS}.items():
        assert rows[name][1] == reason, name
