"""The per-feature alarms of online evaluation: what ``OnlineEvaluation`` asks the observability stack
to create for each sampled feature (``AiFeature.add_alarm_input``), with the thresholds of its
``OnlineSampling`` props.

Scorer alarms (every sampled exchange, minutes after the request):

* ``OnlinePiiLeak``: any personal data in an answer that its question did not contain, in an hour.
* ``OnlineQualityDrop``: the judge's mean score below ``min_judge_score`` over 3 hours (only with a judge:
  without one the metric never exists and the alarm could never fire).
* ``OutputRefusalRate``: the share of answers that refuse above ``max_refusal_rate`` over 3 hours.

Drift-job alarms (one data point a day per feature, the day's samples against the baseline window):

* ``InputDrift``: prompts moved away from the baseline (permutation p-value below 0.01) two days running.
* ``OutputLengthDrop`` / ``OutputLengthGrowth``: mean answer length outside
  [``min_length_ratio``, ``max_length_ratio``] times the baseline's (two alarms, so the name says which
  way it went).
* ``OutputLanguageShift``: the share of answers in the baseline's main language fell by more than
  ``max_language_share_drop`` (a rise only means more answers in the usual language).
* ``OutputToolCallShift``: the share of answers that call a tool moved by more than
  ``max_tool_call_rate_change``, either way (a drop: tools stopped being called; a rise: loops).
* ``OutputGuardrailShift``: the share of answers the guardrail intervened on moved by more than
  ``max_guardrail_rate_change``, either way (a rise: more blocked answers; a drop: a guardrail that no
  longer applies).

Plumbing:

* ``OnlineSamplesStuck``: a message waits in a dead-letter queue the feature's samples pass through (the
  ``OnlineEvaluation``'s: failed log batches, stream batches and drift runs; the gateway's sample queue's:
  samples of targets outside Bedrock the sampler could not write). Nothing there is retried by itself.

Missing data never breaches (the observability facade's rule): a day with too few samples is silent.
Runbooks: ``online-evaluation`` for the first four and ``OnlineSamplesStuck``, ``output-drift`` for the
output ones (``ALARM_RUNBOOKS``).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs

from ai_factory.constructs.ai_feature import AiFeature, AlarmInput
from aif_gateway import contract

__all__ = [
    "DRIFT_ALARM_NAMES",
    "PLUMBING_ALARM_NAMES",
    "SCORER_ALARM_NAMES",
    "drift_alarm_inputs",
    "scorer_alarm_inputs",
    "stuck_samples_alarm_input",
]

SCORER_ALARM_NAMES = ("OnlinePiiLeak", "OnlineQualityDrop", "OutputRefusalRate")
PLUMBING_ALARM_NAMES = ("OnlineSamplesStuck",)
DRIFT_ALARM_NAMES = (
    "InputDrift",
    "OutputLengthDrop",
    "OutputLengthGrowth",
    "OutputLanguageShift",
    "OutputToolCallShift",
    "OutputGuardrailShift",
)
_ABOVE = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
_BELOW = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
_DAY = Duration.days(1)
_THREE_HOURS = Duration.hours(3)


def scorer_alarm_inputs(feature: AiFeature, *, judged: bool) -> list[AlarmInput]:
    """The alarms on the scorer's per-exchange metrics (``judged``: a judge model scores samples)."""
    sampling = feature.online_sampling
    assert sampling is not None, "only sampled features have online alarms"
    label = f"{feature.team}/{feature.feature}"
    alarms = [
        AlarmInput(
            "OnlinePiiLeak",
            feature.metric(contract.ONLINE_PII_LEAKS.name, statistic="Sum", period=Duration.hours(1)),
            0,
            _ABOVE,
            1,
            f"{label}: a sampled answer contained personal data its question did not (last hour)",
        ),
        AlarmInput(
            "OutputRefusalRate",
            feature.metric(contract.ONLINE_REFUSALS.name, statistic="Average", period=_THREE_HOURS),
            sampling.max_refusal_rate,
            _ABOVE,
            1,
            f"{label}: more than {sampling.max_refusal_rate:.0%} of sampled answers refused over 3 h "
            "(OnlineSampling.max_refusal_rate)",
        ),
    ]
    if judged:
        alarms.insert(
            1,
            AlarmInput(
                "OnlineQualityDrop",
                feature.metric(contract.ONLINE_JUDGE_SCORE.name, statistic="Average", period=_THREE_HOURS),
                sampling.min_judge_score,
                _BELOW,
                1,
                f"{label}: mean judge score of sampled answers below {sampling.min_judge_score:g} over 3 h "
                "(OnlineSampling.min_judge_score)",
            ),
        )
    return alarms


def stuck_samples_alarm_input(feature: AiFeature, dead_letter_queues: Sequence[sqs.IQueue]) -> AlarmInput:
    """``OnlineSamplesStuck``: any message in ``dead_letter_queues`` (the highest count over 5 minutes)."""
    label = f"{feature.team}/{feature.feature}"
    metrics = {
        f"q{i}": queue.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=Duration.minutes(5)
        )
        for i, queue in enumerate(dead_letter_queues)
    }
    return AlarmInput(
        "OnlineSamplesStuck",
        cloudwatch.MathExpression(
            expression=" + ".join(metrics),
            using_metrics=metrics,
            label=f"{label} online-evaluation dead letters",
            period=Duration.minutes(5),
        ),
        0,
        _ABOVE,
        1,
        f"{label}: online-evaluation work waits in a dead-letter queue (samples, log batches or drift "
        "runs that failed); it is not retried by itself",
    )


def drift_alarm_inputs(feature: AiFeature, *, p_value: float) -> list[AlarmInput]:
    """The alarms on the daily drift job's metrics (``p_value``: the input-drift significance level)."""
    s = feature.online_sampling
    assert s is not None, "only sampled features have online alarms"
    label = f"{feature.team}/{feature.feature}"

    def daily(metric: contract.Metric) -> cloudwatch.Metric:
        # One data point a day: the statistic only matters if the job ever ran twice in a day.
        return feature.metric(metric.name, statistic="Average", period=_DAY)

    def either_way(metric: contract.Metric, what: str) -> cloudwatch.MathExpression:
        return cloudwatch.MathExpression(
            expression="ABS(change)",
            using_metrics={"change": daily(metric)},
            label=f"{label} {what}, absolute change",
            period=_DAY,
        )

    return [
        AlarmInput(
            "InputDrift",
            feature.metric(contract.INPUT_DRIFT_P_VALUE.name, statistic="Minimum", period=_DAY),
            p_value,
            _BELOW,
            2,
            f"{label}: prompts drifted from the baseline (InputDriftPValue < {p_value:g}) two days running",
        ),
        AlarmInput(
            "OutputLengthDrop",
            daily(contract.OUTPUT_LENGTH_RATIO),
            s.min_length_ratio,
            _BELOW,
            1,
            f"{label}: the day's sampled answers are shorter than {s.min_length_ratio:g} x the baseline's "
            "mean length (OutputLengthRatio, OnlineSampling.min_length_ratio)",
        ),
        AlarmInput(
            "OutputLengthGrowth",
            daily(contract.OUTPUT_LENGTH_RATIO),
            s.max_length_ratio,
            _ABOVE,
            1,
            f"{label}: the day's sampled answers are longer than {s.max_length_ratio:g} x the baseline's "
            "mean length (OutputLengthRatio, OnlineSampling.max_length_ratio)",
        ),
        AlarmInput(
            "OutputLanguageShift",
            daily(contract.LANGUAGE_SHARE_CHANGE),
            -s.max_language_share_drop,
            _BELOW,
            1,
            f"{label}: the share of sampled answers in the baseline's main language fell by more than "
            f"{s.max_language_share_drop:g} (LanguageShareChange, OnlineSampling.max_language_share_drop)",
        ),
        AlarmInput(
            "OutputToolCallShift",
            either_way(contract.TOOL_CALL_RATE_CHANGE, "tool-call rate"),
            s.max_tool_call_rate_change,
            _ABOVE,
            1,
            f"{label}: the share of sampled answers that call a tool moved by more than "
            f"{s.max_tool_call_rate_change:g} from the baseline, up or down (ToolCallRateChange, "
            "OnlineSampling.max_tool_call_rate_change)",
        ),
        AlarmInput(
            "OutputGuardrailShift",
            either_way(contract.GUARDRAIL_RATE_CHANGE, "guardrail intervention rate"),
            s.max_guardrail_rate_change,
            _ABOVE,
            1,
            f"{label}: the share of sampled answers the guardrail intervened on moved by more than "
            f"{s.max_guardrail_rate_change:g} from the baseline, up or down (GuardrailRateChange, "
            "OnlineSampling.max_guardrail_rate_change)",
        ),
    ]
