"""Marked sections of docs/benchmarks.md: the one way every benchmark script writes its figures.

A section is a block between ``<!-- name -->`` and ``<!-- /name -->`` lines. A script that measures one
thing replaces only its own block (or appends it when absent) and leaves every other block alone;
``run_all.py`` rebuilds the whole document and carries over the blocks it did not regenerate.
"""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
_NAME = r"[a-z0-9][a-z0-9-]*"
_ANY_SECTION = re.compile(rf"<!-- ({_NAME}) -->\n.*?\n<!-- /\1 -->", re.DOTALL)


def block(name: str, body: str) -> str:
    """``body`` wrapped in the markers of section ``name`` (no trailing newline)."""
    if not re.fullmatch(_NAME, name):
        raise ValueError(f"bad section name {name!r}")
    return f"<!-- {name} -->\n{body.strip(chr(10))}\n<!-- /{name} -->"


def sections(text: str) -> dict[str, str]:
    """Every marked section of ``text``, name -> whole block (markers included), in document order."""
    return {m.group(1): m.group(0) for m in _ANY_SECTION.finditer(text)}


def replace(text: str, name: str, body: str) -> str:
    """``text`` with section ``name`` replaced by ``body``, or appended at the end when absent."""
    new = block(name, body)
    pattern = re.compile(rf"<!-- {re.escape(name)} -->\n.*?\n<!-- /{re.escape(name)} -->", re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: new, text, count=1)
    return text.rstrip("\n") + "\n\n" + new + "\n"


def write_section(name: str, body: str, doc: Path = DOC) -> None:
    """Replace (or append) section ``name`` in ``doc``; every other part of the file is kept as is."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    doc.write_text(replace(text, name, body), encoding="utf-8")
