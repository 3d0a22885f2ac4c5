"""Drift statistic on synthetic windows: the linear MMD with its permutation test separates a topic
shift from a resample of the same traffic, and output drift reports the changes it should."""

from __future__ import annotations

import random

import pytest

from aif_online.drift import (
    DRIFT_P_VALUE,
    OutputStats,
    hashed_embedding,
    input_drift,
    output_drift,
)

BILLING = ["invoice", "refund", "charge", "payment", "card", "billing", "overcharged", "receipt"]
SHIPPING = ["parcel", "delivery", "courier", "tracking", "shipment", "warehouse", "late", "address"]
COMMON = ["my", "the", "please", "help", "with", "order", "customer", "was", "is", "a"]


def prompts(topic: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(COMMON + topic) for _ in range(12)) for _ in range(n)]


def window(topic: list[str], n: int, seed: int) -> list[list[float]]:
    return [hashed_embedding(p) for p in prompts(topic, n, seed)]


def test_hashed_embedding_is_deterministic_unit_and_word_based() -> None:
    a = hashed_embedding("refund my invoice please")
    assert a == hashed_embedding("refund my invoice please")
    assert abs(sum(x * x for x in a) - 1.0) < 1e-9
    near = sum(x * y for x, y in zip(a, hashed_embedding("please refund my invoice"), strict=True))
    far = sum(x * y for x, y in zip(a, hashed_embedding("courier tracking parcel late"), strict=True))
    assert near > 0.5 > far


def test_same_distribution_is_not_drift() -> None:
    result = input_drift(window(BILLING, 60, 1), window(BILLING, 60, 2))
    assert not result.drifted and result.p_value > DRIFT_P_VALUE


def test_topic_shift_is_drift() -> None:
    baseline, same = window(BILLING, 60, 1), window(BILLING, 60, 2)
    shifted = window(SHIPPING, 60, 3)
    result = input_drift(baseline, shifted)
    assert result.drifted and result.p_value == pytest.approx(1 / 200)
    assert result.statistic > 5 * input_drift(baseline, same).statistic


def test_partial_shift_is_detected_at_a_third_of_traffic() -> None:
    mixed = window(BILLING, 40, 4) + window(SHIPPING, 20, 5)
    assert input_drift(window(BILLING, 60, 1), mixed).drifted


def test_permutation_test_is_seeded() -> None:
    a, b = window(BILLING, 30, 1), window(BILLING, 30, 2)
    assert input_drift(a, b, seed=7) == input_drift(a, b, seed=7)
    with pytest.raises(ValueError, match="at least 2"):
        input_drift(a[:1], b)


def test_output_drift_reports_length_refusals_tools_guardrail_and_language() -> None:
    base = OutputStats.of([100] * 10, [False] * 10, [0] * 10, [False] * 10, ["en"] * 10)
    now = OutputStats.of(
        [50] * 10, [True] * 3 + [False] * 7, [1] * 2 + [0] * 8, [True] + [False] * 9, ["de"] * 4 + ["en"] * 6
    )
    drift = output_drift(base, now)
    assert drift.length_ratio == 0.5
    assert drift.refusal_rate_change == pytest.approx(0.3)
    assert drift.tool_call_rate_change == pytest.approx(0.2)
    assert drift.guardrail_rate_change == pytest.approx(0.1)
    assert (drift.main_language, drift.main_language_share_change) == ("en", pytest.approx(-0.4))
