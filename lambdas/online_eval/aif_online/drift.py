"""Input and output drift between a baseline window and the current window of a feature's sample.

Input drift: the prompts of each window are embedded (through the gateway's embeddings route in AWS; the
offline ``hashed_embedding`` locally and in tests) and compared with the **squared distance between the
window means**, ``||mean(current) - mean(baseline)||²``. That is the maximum mean discrepancy (MMD) with a
linear kernel: it is zero in expectation when both windows come from the same distribution, grows with
any shift of where prompts sit in embedding space (a new topic, a new language, a new user population),
costs O(n·d) instead of the O(n²·d) of a kernel MMD, and reads as a distance. It does not see a change of
spread alone (same centre, wider cloud); topic and population shifts, which move the centre, are the
drift that breaks prompts. Whether a value is large is decided by a **permutation test** (seeded, so
reruns agree): the p-value is the share of random re-splits of the pooled prompts whose statistic is at
least the observed one. Drift is flagged at ``p < DRIFT_P_VALUE`` (0.01) — about one false alarm in a
hundred windows with no drift — and the alarm needs it on consecutive windows.

Output drift compares the windows' answer statistics: mean length (ratio), refusal rate, tool-call rate
and guardrail intervention rate (differences of shares), and the share of answers in the baseline's
main language.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DRIFT_P_VALUE",
    "InputDrift",
    "OutputDrift",
    "OutputStats",
    "hashed_embedding",
    "input_drift",
    "mean_distance",
    "output_drift",
]

DRIFT_P_VALUE = 0.01
"""Input drift is flagged when the permutation test's p-value is below this."""
PERMUTATIONS = 199
EMBEDDING_DIM = 256
_WORD = re.compile(r"[^\W_]+")


def hashed_embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """A deterministic offline embedding: word unigrams and bigrams hashed into ``dim`` signed buckets,
    L2-normalised. Texts that share words land near each other, which is what drift needs (the gateway's
    offline embedder hashes whole texts, so every text is equally far from every other)."""
    words = _WORD.findall(text.lower())
    vector = [0.0] * dim
    for gram in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
        digest = hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "big") % dim
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


def _mean(vectors: Sequence[Sequence[float]]) -> list[float]:
    dim = len(vectors[0])
    total = [0.0] * dim
    for vector in vectors:
        for i, value in enumerate(vector):
            total[i] += value
    return [t / len(vectors) for t in total]


def mean_distance(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float:
    """``||mean(a) - mean(b)||²`` (linear-kernel MMD)."""
    ma, mb = _mean(a), _mean(b)
    return sum((x - y) ** 2 for x, y in zip(ma, mb, strict=True))


@dataclass(frozen=True)
class InputDrift:
    """The statistic, its permutation p-value, and whether it counts as drift."""

    statistic: float
    p_value: float
    baseline_size: int
    current_size: int

    @property
    def drifted(self) -> bool:
        return self.p_value < DRIFT_P_VALUE


def input_drift(
    baseline: Sequence[Sequence[float]],
    current: Sequence[Sequence[float]],
    *,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> InputDrift:
    """Linear MMD between the windows' embeddings, with a seeded permutation p-value."""
    if len(baseline) < 2 or len(current) < 2:
        raise ValueError("each window needs at least 2 embeddings")
    observed = mean_distance(baseline, current)
    pooled = list(baseline) + list(current)
    rng = random.Random(seed)
    at_least = 0
    for _ in range(permutations):
        rng.shuffle(pooled)
        if mean_distance(pooled[: len(baseline)], pooled[len(baseline) :]) >= observed:
            at_least += 1
    return InputDrift(observed, (at_least + 1) / (permutations + 1), len(baseline), len(current))


@dataclass(frozen=True)
class OutputStats:
    """One window's answer statistics."""

    count: int
    mean_chars: float
    refusal_rate: float
    tool_call_rate: float
    guardrail_rate: float
    languages: dict[str, float]

    @classmethod
    def of(
        cls,
        chars: Sequence[int],
        refused: Sequence[bool],
        tool_calls: Sequence[int],
        guardrail: Sequence[bool],
        languages: Sequence[str],
    ) -> OutputStats:
        n = len(chars)
        if n == 0:
            raise ValueError("a window needs at least one answer")
        counts = Counter(languages)
        return cls(
            count=n,
            mean_chars=sum(chars) / n,
            refusal_rate=sum(refused) / n,
            tool_call_rate=sum(1 for t in tool_calls if t) / n,
            guardrail_rate=sum(guardrail) / n,
            languages={lang: c / n for lang, c in counts.items()},
        )


@dataclass(frozen=True)
class OutputDrift:
    """How the current window's answers differ from the baseline's."""

    length_ratio: float
    refusal_rate_change: float
    tool_call_rate_change: float
    guardrail_rate_change: float
    main_language: str
    main_language_share_change: float


def output_drift(baseline: OutputStats, current: OutputStats) -> OutputDrift:
    """Changes from ``baseline`` to ``current`` (ratios for length, differences for shares)."""
    main = max(baseline.languages, key=lambda lang: baseline.languages[lang])
    return OutputDrift(
        length_ratio=current.mean_chars / baseline.mean_chars if baseline.mean_chars else math.inf,
        refusal_rate_change=current.refusal_rate - baseline.refusal_rate,
        tool_call_rate_change=current.tool_call_rate - baseline.tool_call_rate,
        guardrail_rate_change=current.guardrail_rate - baseline.guardrail_rate,
        main_language=main,
        main_language_share_change=current.languages.get(main, 0.0) - baseline.languages[main],
    )
