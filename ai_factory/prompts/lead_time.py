"""Lead time from template to production: the factory's success metric, computed from its own records.

A feature's lead time starts when the feature first appears — the earliest of its first synthesis in CI
(``FirstSeenLedger``, a JSON file CI keeps as a build artifact) and its first deploy (``first_deployed_at``
in the platform's feature registry) — and ends when the first version of any of its prompts reaches
``production`` (the prompt registry's deployment records, ``PromptRegistry.deployments``). A feature not
yet in production has an open lead time: its age so far, reported as such and never in the medians.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PRODUCTION = "production"


@dataclass(frozen=True)
class FeatureLeadTime:
    """One feature's lead time (``production_at`` is ``None`` while no prompt has reached production)."""

    team: str
    feature: str
    first_seen: datetime
    production_at: datetime | None
    production_prompt: str | None
    as_of: datetime

    @property
    def in_production(self) -> bool:
        return self.production_at is not None

    @property
    def days(self) -> float:
        """Days from first appearance to production (or, while open, to ``as_of``)."""
        end = self.production_at or self.as_of
        return max(0.0, (end - self.first_seen).total_seconds() / 86400)

    def to_dict(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "feature": self.feature,
            "first_seen": self.first_seen.isoformat(),
            "production_at": self.production_at.isoformat() if self.production_at else None,
            "production_prompt": self.production_prompt,
            "in_production": self.in_production,
            "lead_time_days": round(self.days, 2),
        }


@dataclass(frozen=True)
class TeamSummary:
    """Median and worst lead time of a team's features in production, and how many are still open."""

    team: str
    features: int
    in_production: int
    median_days: float | None
    worst_days: float | None
    worst_feature: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "features": self.features,
            "in_production": self.in_production,
            "median_days": None if self.median_days is None else round(self.median_days, 2),
            "worst_days": None if self.worst_days is None else round(self.worst_days, 2),
            "worst_feature": self.worst_feature,
        }


def parse_time(value: str, where: str) -> datetime:
    """An ISO-8601 time (UTC when it has no offset); ``ValueError`` naming ``where`` otherwise."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not an ISO-8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class FirstSeenLedger:
    """``{"team/feature": first synth time}`` in a JSON file: CI records each feature it synthesizes once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, datetime] = {}
        if path.exists():
            raw = json.loads(path.read_text(encoding="utf-8") or "{}")
            if not isinstance(raw, dict):
                raise ValueError(f"{path}: must hold a JSON object of 'team/feature': ISO time")
            self.entries = {str(k): parse_time(str(v), f"{path}: {k}") for k, v in raw.items()}

    def record(self, features: Iterable[tuple[str, str]], now: datetime) -> list[str]:
        """Add features not seen before (with ``now``); the IDs added."""
        added = []
        for team, feature in features:
            feature_id = f"{team}/{feature}"
            if feature_id not in self.entries:
                self.entries[feature_id] = now
                added.append(feature_id)
        return added

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v.isoformat() for k, v in sorted(self.entries.items())}
        self.path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def first_production(
    prompts: Sequence[str], deployments: Callable[[str], Sequence[Any]]
) -> tuple[datetime, str] | None:
    """When the first version of any of ``prompts`` reached ``production``, and which prompt.

    ``deployments(name)`` returns the prompt's deployment records (``DeploymentRecord``: ``alias``,
    ``action``, ``when``); rollbacks do not count as reaching production.
    """
    best: tuple[datetime, str] | None = None
    for name in prompts:
        for record in deployments(name):
            if record.alias != PRODUCTION or record.action == "rollback":
                continue
            if best is None or record.when < best[0]:
                best = (record.when, name)
    return best


def lead_times(
    features: Mapping[tuple[str, str], Sequence[str]],
    first_seen: Mapping[tuple[str, str], datetime],
    deployments: Callable[[str], Sequence[Any]],
    as_of: datetime,
) -> list[FeatureLeadTime]:
    """The lead time of every feature that has a first-seen time (``features``: its prompt names)."""
    out = []
    for (team, feature), prompts in sorted(features.items()):
        seen = first_seen.get((team, feature))
        if seen is None:
            continue
        reached = first_production(prompts, deployments)
        out.append(
            FeatureLeadTime(
                team=team,
                feature=feature,
                first_seen=seen,
                production_at=reached[0] if reached else None,
                production_prompt=reached[1] if reached else None,
                as_of=as_of,
            )
        )
    return out


def summarize(results: Sequence[FeatureLeadTime]) -> list[TeamSummary]:
    """Per team (by name), then ``*`` for all teams: median and worst of the features in production."""
    teams = sorted({r.team for r in results})
    groups = [(team, [r for r in results if r.team == team]) for team in teams]
    if len(teams) > 1:
        groups.append(("*", list(results)))
    summaries = []
    for team, members in groups:
        done = [r for r in members if r.in_production]
        worst = max(done, key=lambda r: r.days, default=None)
        summaries.append(
            TeamSummary(
                team=team,
                features=len(members),
                in_production=len(done),
                median_days=statistics.median(r.days for r in done) if done else None,
                worst_days=worst.days if worst else None,
                worst_feature=f"{worst.team}/{worst.feature}" if worst else None,
            )
        )
    return summaries
