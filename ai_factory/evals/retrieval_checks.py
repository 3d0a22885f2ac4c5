"""Retrieval assertions: what a grounded answer was given and how it used it.

A suite with ``retrieval`` sends the chat ``retrieval`` field with every case, and the gateway returns the
passages it put in the prompt as ``citations`` (``docs/rag.md``). A case labels the documents that are
relevant to its question (``relevant``: parts of the source URIs, e.g. ``laptops.md``); then

* ``context-recall``: the share of the relevant documents that some passage came from;
* ``context-precision``: the share of the passages that came from a relevant document;
* ``citation-correctness``: the answer cites at least one source as ``[n]``, and the share of the cited
  sources that exist and are relevant (a ``[n]`` beyond the passages counts as wrong);
* ``groundedness``: a judge model scores whether every claim of the answer is supported by the passages
  (the judge sees the numbered passages and the question).

Each compares its score with ``threshold`` (0..1).
"""

from __future__ import annotations

import re
from typing import Any

from .deterministic import _result
from .model import Assertion, AssertionResult, Case, CaseOutput

GROUNDEDNESS_RUBRIC = (
    "Score 1 when every factual claim in the answer is supported by the numbered sources in the input, "
    "0 when the answer makes claims the sources do not support, and in between by the share of "
    "supported claims. An answer that says the sources do not contain the answer is grounded."
)
_MARKER = re.compile(r"\[(\d{1,4})\]")


def is_relevant(citation: dict[str, Any], relevant: tuple[str, ...]) -> bool:
    """Whether a passage came from one of the labelled documents (a label is part of its source URI)."""
    where = " ".join(
        str(v) for v in ((citation.get("source") or {}).get("uri"), citation.get("document_id")) if v
    )
    return any(label in where for label in relevant)


def _verdict(a: Assertion, score: float, what: str) -> AssertionResult:
    threshold = a.threshold if a.threshold is not None else 1.0
    verdict = ">=" if score >= threshold else "<"
    return _result(a, score >= threshold, score, f"{what} {score:.3f} {verdict} threshold {threshold:g}")


def context_recall(a: Assertion, out: CaseOutput, case: Case) -> AssertionResult:
    found = [r for r in case.relevant if any(is_relevant(c, (r,)) for c in out.citations)]
    missed = [r for r in case.relevant if r not in found]
    score = len(found) / len(case.relevant)
    note = f" (missed: {', '.join(missed)})" if missed else ""
    return _verdict(a, score, f"context recall {len(found)}/{len(case.relevant)}{note}:")


def context_precision(a: Assertion, out: CaseOutput, case: Case) -> AssertionResult:
    if not out.citations:
        return _result(a, False, 0.0, "no passages were retrieved")
    hits = sum(is_relevant(c, case.relevant) for c in out.citations)
    return _verdict(a, hits / len(out.citations), f"context precision {hits}/{len(out.citations)}:")


def citation_correctness(a: Assertion, out: CaseOutput, case: Case) -> AssertionResult:
    cited = list(dict.fromkeys(int(n) for n in _MARKER.findall(out.text)))
    if not cited:
        return _result(a, False, 0.0, "the answer cites no source as [n]")
    by_index = {c.get("index"): c for c in out.citations}
    wrong = [n for n in cited if n not in by_index or not is_relevant(by_index[n], case.relevant)]
    score = (len(cited) - len(wrong)) / len(cited)
    note = f" (not a relevant source: {', '.join(f'[{n}]' for n in wrong)})" if wrong else ""
    return _verdict(a, score, f"citations correct {len(cited) - len(wrong)}/{len(cited)}{note}:")


def sources_text(out: CaseOutput) -> str:
    """The numbered passages as the model saw them, for the groundedness judge."""
    return "\n\n".join(f"[{c.get('index')}] {c.get('text', '')}" for c in out.citations)


RETRIEVAL_CHECKS = {
    "context-recall": context_recall,
    "context-precision": context_precision,
    "citation-correctness": citation_correctness,
}
