"""Lead time from first appearance to production, from fixture records with known dates."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ai_factory.cli import lead_time as cli
from ai_factory.cli.errors import UsageError
from ai_factory.cli.main import main
from ai_factory.prompts.lead_time import FirstSeenLedger, first_production, lead_times, summarize
from ai_factory.prompts.registry import DeploymentRecord
from aif_gateway import contract


def _at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def _record(
    name: str, alias: str, when: datetime, action: str = "promote", version: int = 1
) -> DeploymentRecord:
    return DeploymentRecord(
        run_id=f"run-{name}-{when:%d%H}",
        name=name,
        alias=alias,
        from_version=None,
        to_version=version,
        action=action,
        git_commit="abc123",
        eval_run_id="eval-1",
        eval_passed=True,
        approved_by="ci",
        when=when,
    )


DEPLOYMENTS = {
    # Staging first, production three days after first appearance; a later promotion does not count.
    "summarize-ticket": [
        _record("summarize-ticket", "production", _at(10), version=2),
        _record("summarize-ticket", "production", _at(4)),
        _record("summarize-ticket", "staging", _at(2)),
    ],
    # Reached production only by a rollback (which is not "reaching" production) and later for real.
    "draft-reply": [
        _record("draft-reply", "production", _at(20), action="rollback"),
        _record("draft-reply", "production", _at(21)),
    ],
    "answer-question": [_record("answer-question", "staging", _at(5))],
}
FEATURES = {
    ("support", "ticket-summarizer"): ["summarize-ticket"],
    ("support", "reply-drafter"): ["draft-reply"],
    ("knowledge", "qa"): ["answer-question"],
    ("knowledge", "unseen"): ["answer-question"],
}
FIRST_SEEN = {
    ("support", "ticket-summarizer"): _at(1),
    ("support", "reply-drafter"): _at(11),
    ("knowledge", "qa"): _at(3),
}


def _deployments(name: str) -> list[DeploymentRecord]:
    return DEPLOYMENTS.get(name, [])


def test_lead_time_runs_from_first_appearance_to_the_first_production_promotion() -> None:
    results = {(r.team, r.feature): r for r in lead_times(FEATURES, FIRST_SEEN, _deployments, _at(30))}

    summarizer = results[("support", "ticket-summarizer")]
    assert summarizer.production_at == _at(4)
    assert summarizer.production_prompt == "summarize-ticket"
    assert summarizer.days == pytest.approx(3.0)
    drafter = results[("support", "reply-drafter")]
    assert drafter.production_at == _at(21)  # the rollback on the 20th does not count
    assert drafter.days == pytest.approx(10.0)
    qa = results[("knowledge", "qa")]
    assert not qa.in_production
    assert qa.days == pytest.approx(27.0)  # open: its age so far
    assert ("knowledge", "unseen") not in results  # no first appearance recorded


def test_team_summaries_give_median_and_worst_of_features_in_production() -> None:
    summaries = {s.team: s for s in summarize(lead_times(FEATURES, FIRST_SEEN, _deployments, _at(30)))}

    support = summaries["support"]
    assert (support.features, support.in_production) == (2, 2)
    assert support.median_days == pytest.approx(6.5)
    assert support.worst_days == pytest.approx(10.0)
    assert support.worst_feature == "support/reply-drafter"
    knowledge = summaries["knowledge"]
    assert (knowledge.in_production, knowledge.median_days, knowledge.worst_days) == (0, None, None)
    everyone = summaries["*"]
    assert (everyone.features, everyone.in_production, everyone.median_days) == (3, 2, pytest.approx(6.5))


def test_first_production_ignores_other_aliases_and_empty_histories() -> None:
    assert first_production(["answer-question"], _deployments) is None
    assert first_production([], _deployments) is None


def test_the_ledger_keeps_the_first_time_a_feature_was_seen(tmp_path: Path) -> None:
    path = tmp_path / "first-seen.json"
    ledger = FirstSeenLedger(path)
    assert ledger.record([("support", "a")], _at(1)) == ["support/a"]
    ledger.save()

    again = FirstSeenLedger(path)
    assert again.record([("support", "a"), ("support", "b")], _at(9)) == ["support/b"]
    assert again.entries == {"support/a": _at(1), "support/b": _at(9)}


def test_a_ledger_that_is_not_an_object_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "first-seen.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match=r"first-seen\.json: must hold a JSON object"):
        FirstSeenLedger(path)


# --- the CLI ------------------------------------------------------------------------------------------


def _assembly(tmp_path: Path) -> Path:
    """A minimal cloud assembly with AiFeature prompt metadata (what cdk synth writes)."""
    folder = tmp_path / "cdk.out"
    folder.mkdir()
    metadata = {
        "/AiFactoryTeamSupport/TicketSummarizer": [
            {
                "type": contract.PROMPTS_METADATA_TYPE,
                "data": [{"team": "support", "feature": "ticket-summarizer", "name": "summarize-ticket"}],
            }
        ],
        "/AiFactoryTeamKnowledge/Qa": [
            {
                "type": contract.PROMPTS_METADATA_TYPE,
                "data": [{"team": "knowledge", "feature": "qa", "name": "answer-question"}],
            }
        ],
    }
    manifest = {"version": "48.0.0", "artifacts": {"AiFactoryTeamSupport": {"metadata": metadata}}}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


class _FakeRegistry:
    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri

    def deployments(self, name: str, alias: str | None = None) -> list[DeploymentRecord]:
        return [r for r in _deployments(name) if alias is None or r.alias == alias]


def test_cli_reports_per_feature_and_team_from_the_assembly_ledger_and_deployment_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ai_factory.prompts.registry as registry

    monkeypatch.setattr(registry, "PromptRegistry", _FakeRegistry)
    assembly = _assembly(tmp_path)
    ledger = tmp_path / "first-seen.json"
    ledger.write_text(
        json.dumps({"support/ticket-summarizer": "2026-11-01T12:00:00+00:00"}), encoding="utf-8"
    )
    out = io.StringIO()

    code = main(
        [
            "lead-time",
            "--assembly",
            str(assembly),
            "--first-seen",
            str(ledger),
            "--record",
            "--as-of",
            "2026-11-30T12:00:00+00:00",
            "--format",
            "json",
        ],
        out=out,
    )

    assert code == 0
    report = json.loads(out.getvalue())
    by_feature = {f["feature"]: f for f in report["features"]}
    assert by_feature["ticket-summarizer"]["lead_time_days"] == 3.0
    assert by_feature["ticket-summarizer"]["production_at"] == "2026-11-04T12:00:00+00:00"
    assert by_feature["qa"]["in_production"] is False  # recorded just now by --record
    assert "knowledge/qa" in json.loads(ledger.read_text(encoding="utf-8"))
    teams = {t["team"]: t for t in report["teams"]}
    assert teams["support"]["median_days"] == 3.0 and teams["support"]["worst_days"] == 3.0


def test_cli_publishes_lead_time_days_per_feature_in_production(tmp_path: Path) -> None:
    from moto import mock_aws

    results = lead_times(FEATURES, FIRST_SEEN, _deployments, _at(30))
    with mock_aws():
        import boto3

        cli.publish(results, "us-east-1")
        listed = boto3.client("cloudwatch", region_name="us-east-1").list_metrics(
            Namespace=contract.METRICS_NAMESPACE, MetricName=contract.LEAD_TIME_DAYS.name
        )["Metrics"]
    features = sorted(
        next(d["Value"] for d in m["Dimensions"] if d["Name"] == contract.FEATURE) for m in listed
    )
    assert features == ["reply-drafter", "ticket-summarizer"]  # the open one is not published


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--record"], "--record needs --first-seen"),
        ([], "give --first-seen and/or --registry-table"),
        (["--first-seen", "x.json", "--as-of", "yesterday"], "--as-of: 'yesterday' is not an ISO-8601 time"),
    ],
)
def test_cli_names_the_flag_on_bad_input(argv: list[str], message: str, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.add_parser(sub)
    args = parser.parse_args(["lead-time", "--assembly", str(_assembly(tmp_path)), *argv])
    with pytest.raises(UsageError, match=message):
        cli.cmd_lead_time(args, io.StringIO())


def test_cli_table_output_marks_open_lead_times() -> None:
    results = lead_times(FEATURES, FIRST_SEEN, _deployments, _at(30))
    text: Any = cli.render(results, summarize(results))
    assert "support/ticket-summarizer" in text and "3.0" in text
    assert "27.0+" in text  # knowledge/qa, not in production yet
