"""Drift on the dashboards: a feature whose drift the online evaluation watches gets a row of daily drift
widgets (prompts, answer length and refusal rate, answer shares) with its own alarms' thresholds as lines;
a feature that does not sample, or samples without an ``OnlineEvaluation``, gets none; and the platform
dashboard shows every sampled feature's input-drift p-value."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_logs as logs
from aws_cdk.assertions import Template

from ai_factory.constructs.ai_feature import AiFeature
from ai_factory.constructs.observability.facade import Observability
from ai_factory.constructs.online_evaluation import OnlineEvaluation, OnlineSampling
from aif_online.drift import DRIFT_P_VALUE
from stacks.gateway_stack import GatewayStack
from stacks.team_stack import TeamStack
from tests.infra.test_observability import widgets
from tests.infra.test_online_evaluation import CUSTOM  # thresholds away from the defaults

ENV = cdk.Environment(account="111122223333", region="us-east-1")
LOG_GROUP_ARN = "arn:aws:logs:us-east-1:111122223333:log-group:/aws/bedrock/invocation-logs"
DAY = 86_400
WATCHED = ("support", "ticket-summarizer")
DRIFT_TITLES = ("drift of prompts", "drift of answer length and refusal rate", "drift of answer shares")


def feature(team: TeamStack, name: str, **props: Any) -> AiFeature:
    return AiFeature(
        team,
        name.title().replace("-", ""),
        feature=name,
        owner="o@example.com",
        clearance="internal",
        models=["chat-fast"],
        monthly_budget_usd=10,
        rate_limit_rpm=10,
        **props,
    )


def titled(found: dict[str, list[dict[str, Any]]], text: str) -> list[dict[str, Any]]:
    return [w for ws in found.values() for w in ws if text in w.get("properties", {}).get("title", "")]


def metric_lines(widget: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Metric name -> {dimensions, options} of a widget's plain metric lines."""
    out = {}
    for line in widget["properties"]["metrics"]:
        namespace, name, *rest = line
        options = rest.pop() if rest and isinstance(rest[-1], dict) else {}
        out[name] = {
            "namespace": namespace,
            "dimensions": dict(zip(rest[::2], rest[1::2], strict=True)),
            **options,
        }
    return out


def annotations(widget: dict[str, Any]) -> list[tuple[float, str, str]]:
    return sorted(
        (a["value"], a["label"], a["yAxis"]) for a in widget["properties"]["annotations"]["horizontal"]
    )


@pytest.fixture(scope="module")
def found() -> dict[str, list[dict[str, Any]]]:
    """One sampled feature the online evaluation watches, one that samples without it, one that does
    not sample; an Observability facade with the platform dashboard over them."""
    app = cdk.App()
    gateway = GatewayStack(app, "Gw", env=ENV)
    team = TeamStack(app, "TeamSupport", team="support", gateway_stack=gateway, env=ENV)
    watched = feature(team, WATCHED[1], online_sampling=CUSTOM)
    unwatched = feature(team, "sampled-elsewhere", online_sampling=OnlineSampling(rate=0.1))
    plain = feature(team, "not-sampled")
    log_group = logs.LogGroup.from_log_group_arn(team, "InvocationLogs", LOG_GROUP_ARN)
    OnlineEvaluation(team, "OnlineEvaluation", features=[watched], invocation_log_group=log_group)
    Observability(team, "Observability", gateway=gateway.gateway, features=[watched, unwatched, plain])
    return widgets(Template.from_stack(team))


def test_a_watched_feature_gets_one_row_of_three_daily_drift_widgets(
    found: dict[str, list[dict[str, Any]]],
) -> None:
    label = "/".join(WATCHED)
    drift = [w for title in DRIFT_TITLES for w in titled(found, f"{label}: {title}")]
    assert len(drift) == 3
    assert {w["y"] for w in drift} == {drift[0]["y"]} and sum(w["width"] for w in drift) == 24
    for widget in drift:
        props = widget["properties"]
        # Named as what they are: the day's production samples against the baseline window.
        assert "production samples: the day vs the baseline window, daily" in props["title"]
        assert props["start"] == "-P30D"  # one point a day: the dashboards' one-day range shows one
        for line in metric_lines(widget).values():
            assert line["namespace"] == "AIFactory"
            assert line["dimensions"] == {"Team": WATCHED[0], "Feature": WATCHED[1]}
            assert line["period"] == DAY


def test_prompt_drift_widget_draws_the_p_value_under_the_alarm_line(
    found: dict[str, list[dict[str, Any]]],
) -> None:
    (widget,) = titled(found, "support/ticket-summarizer: drift of prompts")
    lines = metric_lines(widget)
    assert set(lines) == {"InputDriftPValue", "InputDrift"}
    # The alarm's statistic (Minimum): the dashboard shows what the InputDrift alarm judges.
    assert lines["InputDriftPValue"]["stat"] == "Minimum"
    assert lines["InputDrift"].get("yAxis") == "right"
    assert annotations(widget) == [(DRIFT_P_VALUE, "InputDrift alarm (2 days below)", "left")]
    assert widget["properties"]["yAxis"]["left"] == {"min": 0, "max": 1}


def test_length_and_refusal_widget_draws_the_feature_thresholds(
    found: dict[str, list[dict[str, Any]]],
) -> None:
    (widget,) = titled(found, "support/ticket-summarizer: drift of answer length and refusal rate")
    lines = metric_lines(widget)
    assert set(lines) == {"OutputLengthRatio", "OnlineRefusals"}
    assert lines["OnlineRefusals"].get("yAxis") == "right"
    assert lines["OnlineRefusals"].get("stat", "Average") == "Average"  # the refusal rate, 0..1
    assert annotations(widget) == [
        (0.3, "OutputRefusalRate alarm (3 h)", "right"),
        (0.6, "OutputLengthDrop alarm", "left"),
        (1.8, "OutputLengthGrowth alarm", "left"),
    ]


def test_answer_shares_widget_draws_each_alarm_either_way_it_fires(
    found: dict[str, list[dict[str, Any]]],
) -> None:
    (widget,) = titled(found, "support/ticket-summarizer: drift of answer shares, day minus baseline")
    assert set(metric_lines(widget)) == {
        "LanguageShareChange",
        "ToolCallRateChange",
        "GuardrailRateChange",
        "RefusalRateChange",
    }
    assert annotations(widget) == [
        (-0.25, "OutputLanguageShift alarm", "left"),  # only a fall of the main language alarms
        (-0.15, "OutputToolCallShift alarm", "left"),
        (-0.05, "OutputGuardrailShift alarm", "left"),
        (0.05, "OutputGuardrailShift alarm", "left"),
        (0.15, "OutputToolCallShift alarm", "left"),
    ]
    assert widget["properties"]["yAxis"]["left"] == {"min": -1, "max": 1}


@pytest.mark.parametrize("name", ["not-sampled", "sampled-elsewhere"])
def test_no_drift_widgets_without_the_drift_job(found: dict[str, list[dict[str, Any]]], name: str) -> None:
    """No sampling, or sampling no OnlineEvaluation reads: the metrics never exist, so no empty graphs
    (the rest of the section is there)."""
    assert titled(found, f"support/{name}: pass rates")
    assert not titled(found, f"support/{name}: drift")


def test_platform_dashboard_shows_every_sampled_features_input_drift(
    found: dict[str, list[dict[str, Any]]],
) -> None:
    (widget,) = titled(found, "Input drift per sampled feature")
    assert widget["width"] == 24 and widget["properties"]["start"] == "-P30D"
    ((query,),) = widget["properties"]["metrics"]
    assert query["expression"] == (
        "SEARCH('{AIFactory,Feature,Team} MetricName=\"InputDriftPValue\"', 'Minimum', 86400)"
    )
    assert query["period"] == DAY
    assert annotations(widget) == [(DRIFT_P_VALUE, "InputDrift alarm (2 days below)", "left")]


def test_no_platform_drift_widget_when_nothing_is_watched() -> None:
    app = cdk.App()
    gateway = GatewayStack(app, "Gw", env=ENV)
    team = TeamStack(app, "TeamSupport", team="support", gateway_stack=gateway, env=ENV)
    sampled = feature(team, "sampled-elsewhere", online_sampling=OnlineSampling(rate=0.1))
    Observability(team, "Observability", gateway=gateway.gateway, features=[sampled])
    found = widgets(Template.from_stack(team))
    assert titled(found, "Pass rates per feature")
    assert not titled(found, "drift")
