"""The example custom model: a keyword text classifier (multinomial naive Bayes), pure Python.

Small on purpose: the point is the lineage around it, and it must train in milliseconds in tests.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

_WORD = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class KeywordClassifier:
    """Multinomial naive Bayes over lowercased words, with add-``alpha`` smoothing.

    :param alpha: smoothing (> 0). :param min_count: ignore words seen fewer times in training.
    """

    def __init__(self, alpha: float = 1.0, min_count: int = 1) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        self.alpha = alpha
        self.min_count = min_count
        self.priors: dict[str, float] = {}
        self.word_logp: dict[str, dict[str, float]] = {}
        self.unknown_logp: dict[str, float] = {}

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> KeywordClassifier:
        if len(texts) != len(labels) or not texts:
            raise ValueError("fit needs as many labels as texts, and at least one")
        totals = Counter(w for t in texts for w in tokens(t))
        vocab = {w for w, n in totals.items() if n >= self.min_count}
        by_label: dict[str, Counter[str]] = {}
        for text, label in zip(texts, labels, strict=True):
            by_label.setdefault(label, Counter()).update(w for w in tokens(text) if w in vocab)
        label_counts = Counter(labels)
        size = len(vocab) + 1  # +1: one bucket for unseen words
        for label, counts in by_label.items():
            denominator = sum(counts.values()) + self.alpha * size
            self.priors[label] = math.log(label_counts[label] / len(labels))
            self.word_logp[label] = {w: math.log((counts[w] + self.alpha) / denominator) for w in vocab}
            self.unknown_logp[label] = math.log(self.alpha / denominator)
        return self

    def scores(self, text: str) -> dict[str, float]:
        words = tokens(text)
        return {
            label: prior + sum(self.word_logp[label].get(w, self.unknown_logp[label]) for w in words)
            for label, prior in self.priors.items()
        }

    def predict(self, text: str) -> str:
        if not self.priors:
            raise RuntimeError("the classifier is not trained")
        scores = self.scores(text)
        return max(sorted(scores), key=lambda label: scores[label])  # sorted: ties break alphabetically

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "keyword-naive-bayes",
            "alpha": self.alpha,
            "min_count": self.min_count,
            "priors": self.priors,
            "word_logp": self.word_logp,
            "unknown_logp": self.unknown_logp,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeywordClassifier:
        model = cls(alpha=data["alpha"], min_count=data["min_count"])
        model.priors = dict(data["priors"])
        model.word_logp = {k: dict(v) for k, v in data["word_logp"].items()}
        model.unknown_logp = dict(data["unknown_logp"])
        return model


def evaluate(model: KeywordClassifier, texts: Iterable[str], labels: Iterable[str]) -> dict[str, float]:
    """Accuracy and macro-averaged F1 (over the labels present in either truth or predictions)."""
    truth, predicted = list(labels), [model.predict(t) for t in texts]
    if not truth:
        raise ValueError("evaluate needs at least one example")
    correct = sum(p == t for p, t in zip(predicted, truth, strict=True))
    f1s = []
    for label in sorted(set(truth) | set(predicted)):
        tp = sum(p == t == label for p, t in zip(predicted, truth, strict=True))
        fp = sum(p == label != t for p, t in zip(predicted, truth, strict=True))
        fn = sum(t == label != p for p, t in zip(predicted, truth, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": correct / len(truth), "macro_f1": sum(f1s) / len(f1s)}
