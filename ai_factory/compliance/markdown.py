"""Markdown rendering of a report document (GitHub-flavoured tables)."""

from __future__ import annotations

from ai_factory.compliance.document import Bullets, Document, Heading, Paragraph, Table


def _cell(text: str) -> str:
    # A pipe ends a table cell and a newline ends the row.
    return _text(text).replace("|", "\\|").replace("\n", " ")


def _text(text: str) -> str:
    # "<" could open raw HTML in renderers that allow it (GitHub does); "&" keeps entities literal;
    # "*" in IAM wildcards would otherwise pair up into emphasis.
    return text.replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace("*", "\\*")


def render_markdown(doc: Document) -> str:
    """The document as Markdown."""
    lines = [f"# {_text(doc.title)}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            lines += [f"{'#' * block.level} {_text(block.text)}", ""]
        elif isinstance(block, Paragraph):
            lines += [_text(block.text), ""]
        elif isinstance(block, Bullets):
            lines += [f"- {_text(item)}" for item in block.items] + [""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_cell(h) for h in block.headers) + " |")
            lines.append("|" + "|".join(" --- " for _ in block.headers) + "|")
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
