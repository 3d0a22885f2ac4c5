"""The drift widgets of the dashboards: what the daily drift job publishes for each sampled feature (the
day's production samples against the baseline window before it), drawn against its alarms' thresholds.

A feature gets them only when ``OnlineEvaluation`` watches its drift (it added the ``InputDrift`` alarm
input, ``ai_factory.constructs.online_alarms``): without the drift job the metrics never exist, and a
graph that can only be empty is noise. The lines' thresholds are read from those alarm inputs, so a
dashboard line and the alarm it stands for cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aws_cdk import aws_cloudwatch as cloudwatch

from ai_factory.constructs.ai_feature import AiFeature
from ai_factory.constructs.observability.queries import expression, search
from ai_factory.constructs.observability.settings import ONE_DAY
from aif_gateway import contract

__all__ = [
    "DRIFT_RANGE",
    "DRIFT_WIDTH",
    "drift_thresholds",
    "feature_drift_widgets",
    "platform_drift_widget",
]

DRIFT_WIDTH = 8
"""Each of a feature's three drift widgets: one dashboard row together."""
DRIFT_RANGE = "-P30D"
"""The drift widgets' own time range: one point a day needs weeks to show a trend, where the dashboards'
default range (a day) would show a single point."""


def drift_thresholds(feature: AiFeature) -> dict[str, float] | None:
    """The feature's online alarm thresholds by alarm name, or None when nothing watches its drift."""
    thresholds = {given.name: given.threshold for given in feature.alarm_inputs}
    return thresholds if "InputDrift" in thresholds else None


def feature_drift_widgets(feature: AiFeature) -> list[cloudwatch.IWidget]:
    """Prompt drift, answer length and refusal rate, and the changes of the answer shares of one
    feature, daily (the drift job's period), each against its alarms' lines; empty when nothing watches
    the feature's drift."""
    t = drift_thresholds(feature)
    if t is None:
        return []
    label = f"{feature.team}/{feature.feature}"
    window = "production samples: the day vs the baseline window, daily"

    def daily(metric: contract.Metric, line: str, statistic: str = "Average") -> cloudwatch.Metric:
        # One data point a day per feature: the statistic only matters if the job ran twice in a day.
        return feature.metric(metric.name, statistic=statistic, period=ONE_DAY, label=line)

    inputs = cloudwatch.GraphWidget(
        title=f"{label}: drift of prompts ({window})",
        left=[daily(contract.INPUT_DRIFT_P_VALUE, "prompt drift p-value (low: drifted)", "Minimum")],
        right=[daily(contract.INPUT_DRIFT, "prompt embedding distance")],
        left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
        right_y_axis=cloudwatch.YAxisProps(min=0),
        left_annotations=_lines([(t["InputDrift"], "InputDrift alarm (2 days below)")]),
        width=DRIFT_WIDTH,
        start=DRIFT_RANGE,
    )
    length = cloudwatch.GraphWidget(
        title=f"{label}: drift of answer length and refusal rate ({window})",
        left=[daily(contract.OUTPUT_LENGTH_RATIO, "answer length, day / baseline")],
        # The scorer's refusal rate of the day's samples (its alarm judges 3 hours, the graph a day).
        right=[daily(contract.ONLINE_REFUSALS, "refusal rate of the day's samples")],
        left_y_axis=cloudwatch.YAxisProps(min=0),
        right_y_axis=cloudwatch.YAxisProps(min=0, max=1),
        left_annotations=_lines(
            [
                (t.get("OutputLengthDrop"), "OutputLengthDrop alarm"),
                (t.get("OutputLengthGrowth"), "OutputLengthGrowth alarm"),
            ]
        ),
        right_annotations=_lines([(t.get("OutputRefusalRate"), "OutputRefusalRate alarm (3 h)")]),
        width=DRIFT_WIDTH,
        start=DRIFT_RANGE,
    )
    tool, guardrail = t.get("OutputToolCallShift"), t.get("OutputGuardrailShift")
    rates = cloudwatch.GraphWidget(
        title=f"{label}: drift of answer shares, day minus baseline ({window})",
        left=[
            daily(contract.LANGUAGE_SHARE_CHANGE, "answers in the main language"),
            daily(contract.TOOL_CALL_RATE_CHANGE, "answers that call a tool"),
            daily(contract.GUARDRAIL_RATE_CHANGE, "answers the guardrail intervened on"),
            daily(contract.REFUSAL_RATE_CHANGE, "answers that refuse"),
        ],
        left_y_axis=cloudwatch.YAxisProps(min=-1, max=1),
        left_annotations=_lines(
            [
                # OutputLanguageShift's threshold is already negative: only a fall alarms.
                (t.get("OutputLanguageShift"), "OutputLanguageShift alarm"),
                # The tool-call and guardrail alarms watch the absolute change: a line either side.
                (tool, "OutputToolCallShift alarm"),
                (-tool if tool is not None else None, "OutputToolCallShift alarm"),
                (guardrail, "OutputGuardrailShift alarm"),
                (-guardrail if guardrail is not None else None, "OutputGuardrailShift alarm"),
            ]
        ),
        width=DRIFT_WIDTH,
        start=DRIFT_RANGE,
    )
    return [inputs, length, rates]


def platform_drift_widget(features: Sequence[AiFeature]) -> cloudwatch.GraphWidget | None:
    """Input drift p-value of every sampled feature (a SEARCH, daily minimum) against the alarm line;
    None when no feature of the app has its drift watched."""
    watched = [t for t in (drift_thresholds(f) for f in features) if t is not None]
    if not watched:
        return None
    return cloudwatch.GraphWidget(
        title=(
            "Input drift per sampled feature: prompt drift p-value, production samples of the day vs the "
            "baseline window (daily minimum; low: drifted)"
        ),
        left=[
            expression(
                search(contract.INPUT_DRIFT_P_VALUE.name, "Minimum", ONE_DAY),
                "",
                ONE_DAY,
            )
        ],
        left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
        left_annotations=_lines([(t["InputDrift"], "InputDrift alarm (2 days below)") for t in watched]),
        width=24,
        start=DRIFT_RANGE,
    )


def _lines(values: Iterable[tuple[float | None, str]]) -> list[cloudwatch.HorizontalAnnotation]:
    """One horizontal line per distinct value, naming every alarm at it (defaults often coincide, e.g.
    the language and tool-call thresholds at -0.2); missing thresholds draw nothing."""
    names: dict[float, list[str]] = {}
    for value, name in values:
        if value is not None and name not in names.setdefault(value, []):
            names[value].append(name)
    return [
        cloudwatch.HorizontalAnnotation(value=value, label=" · ".join(n))
        for value, n in sorted(names.items())
    ]
