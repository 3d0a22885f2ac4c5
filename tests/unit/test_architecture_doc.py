"""docs/architecture.md matches the tree: every repository path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
GATEWAY_RUNTIME = ROOT / "lambdas" / "gateway" / "aif_gateway"
# A path: letters, digits, dots, dashes and underscores, with at least one slash or a file suffix.
PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/?$")


def named_paths(text: str) -> list[str]:
    """Every code span that is a path (``ai_factory/platform/``, ``app.py``, ``.importlinter``)."""
    spans = re.findall(r"`([^`\n]+)`", text)
    return [s for s in spans if PATH.match(s) and ("/" in s or re.search(r"\.(py|yaml|md|toml)$", s))]


def test_every_path_in_the_architecture_doc_exists() -> None:
    missing, count = [], 0
    for line in DOC.read_text().splitlines():
        paths = named_paths(line)
        count += len(paths)
        # A bare file name lives in a folder named on the same line (a table row), or in the gateway
        # runtime (the runtime-modules table).
        bases = [ROOT, GATEWAY_RUNTIME, *(ROOT / p for p in paths if p.endswith("/"))]
        missing += [p for p in paths if not any((base / p).exists() for base in bases)]
    assert count > 40, "the page should name where each piece lives"
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_library_package_is_on_the_page() -> None:
    text = DOC.read_text()
    packages = sorted(
        p.parent.relative_to(ROOT).as_posix() + "/" for p in (ROOT / "ai_factory").glob("*/__init__.py")
    )
    absent = [p for p in packages if f"`{p}`" not in text]
    assert not absent, f"docs/architecture.md does not say where these live: {absent}"


def test_path_finder_sees_paths_and_ignores_prose() -> None:
    assert named_paths("see `ai_factory/platform/` and `app.py`, run `make test` or `metric()`") == [
        "ai_factory/platform/",
        "app.py",
    ]


def test_every_gateway_runtime_module_is_in_the_runtime_table() -> None:
    text = DOC.read_text()
    table = text[text.index("## Runtime modules") : text.index("## Decisions")]
    modules = sorted(p.name for p in GATEWAY_RUNTIME.glob("*.py") if p.name != "__init__.py")
    absent = [m for m in modules if f"`{m}`" not in table]
    assert not absent, f"docs/architecture.md's runtime-modules table lacks: {absent}"
