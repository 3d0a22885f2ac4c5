"""What changed in access and data flows between two synths (``ai-factory report --diff``).

Compares the two reports' inventories section by section: entries added, removed, or changed (same
key, different value). A model alias added to a feature shows up as a changed allow-list; a new IAM
statement as an added one (statements are keyed by their whole content).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ai_factory.compliance.model import Report


@dataclass
class SectionDiff:
    """Changes in one inventory section."""

    name: str
    added: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # (key, before, after)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass
class ReportDiff:
    """``before`` (the base synth, e.g. main) -> ``after`` (this change)."""

    before: str
    after: str
    sections: list[SectionDiff]

    @property
    def empty(self) -> bool:
        return all(s.empty for s in self.sections)


def diff_reports(before: Report, after: Report) -> ReportDiff:
    """Section-by-section differences from ``before`` to ``after``."""
    old, new = before.inventory(), after.inventory()
    sections: list[SectionDiff] = []
    for name in new:
        a, b = old.get(name, {}), new[name]
        section = SectionDiff(name)
        section.added = [(k, b[k]) for k in sorted(b.keys() - a.keys())]
        section.removed = [(k, a[k]) for k in sorted(a.keys() - b.keys())]
        section.changed = [(k, a[k], b[k]) for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
        sections.append(section)
    return ReportDiff(before.source, after.source, sections)
