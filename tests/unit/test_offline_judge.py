"""The offline judge: ``groundedness`` scored by the documented lexical support check against the passages
(grounded answers pass, unsupported claims fail and are named, "the sources do not say" is grounded), and
every other rubric refused with a clear reason instead of a made-up score."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ai_factory.evals.assertions import GroundednessJudge, evaluate
from ai_factory.evals.model import Assertion, Case, CaseOutput
from ai_factory.evals.offline_judge import (
    ONLY_GROUNDEDNESS,
    OfflineJudge,
    claims,
    content_words,
    is_abstention,
    lexical_groundedness,
)

DOCUMENTS = Path(__file__).resolve().parents[2] / "features/knowledge/documents"


def passage(index: int, name: str) -> dict[str, Any]:
    text = (DOCUMENTS / f"{name}.txt").read_text(encoding="utf-8")
    return {"index": index, "text": text, "source": {"type": "LOCAL", "uri": f"local://kb/{name}.txt"}}


CASE = Case(
    id="c", vars={"question": "How long is parental leave, and who approves a trip abroad?"}, assertions=()
)
LEAVE_AND_TRAVEL = [passage(1, "parental-leave"), passage(2, "travel-booking")]


def grounded(answer: str, threshold: float = 0.8, citations: list[dict[str, Any]] | None = None) -> Any:
    return evaluate(
        Assertion("groundedness", threshold=threshold),
        CaseOutput(answer, 1.0, citations=LEAVE_AND_TRAVEL if citations is None else citations),
        CASE,
        judge=OfflineJudge(),
        input_text="[user] How long is parental leave, and who approves a trip abroad?",
    )


def test_a_grounded_answer_passes() -> None:
    result = grounded(
        "Up to 16 weeks of paid parental leave [1]; a trip abroad needs your manager's approval [2]."
    )
    assert result.passed and result.score == 1.0, result.reason
    assert "2/2 claims supported" in result.reason


def test_an_unsupported_claim_fails_and_is_named_with_its_words() -> None:
    result = grounded("Up to 16 weeks of paid parental leave [1]. You also get a company car.")
    assert not result.passed and result.score == 0.5
    assert "unsupported: 'You also get a company car' (company, car)" in result.reason


def test_a_wrong_number_is_an_unsupported_claim() -> None:
    result = grounded("Up to 20 weeks of paid parental leave [1].")
    assert not result.passed and result.score == 0.0
    assert "(20)" in result.reason


@pytest.mark.parametrize(
    "answer",
    [
        "The sources do not say.",
        "The sources do not contain the answer.",
        "It is not mentioned in the documents.",
        "I could not find that in the provided articles.",
        "There is no information about a parental leave trip.",  # the question's words name what is missing
    ],
)
def test_saying_the_sources_do_not_contain_the_answer_is_grounded(answer: str) -> None:
    assert is_abstention(answer)
    result = grounded(answer, threshold=1.0)
    assert result.passed and result.score == 1.0, result.reason


def test_an_abstention_that_adds_an_invented_fact_is_not_grounded() -> None:
    result = grounded("The sources do not say, but the Wi-Fi password is hunter2.", threshold=0.5)
    assert not result.passed and "(Wi-Fi, password, hunter2)" in result.reason


def test_the_judge_sees_every_passage_and_nothing_else() -> None:
    # "eight weeks" is in the parental-leave passage; without that passage it is unsupported.
    answer = "Tell HR eight weeks before the leave starts [1]."
    assert grounded(answer, threshold=1.0).passed
    assert not grounded(answer, threshold=1.0, citations=[passage(1, "travel-booking")]).passed


def test_no_passages_and_no_claims_score_zero() -> None:
    assert grounded("Sixteen weeks.", citations=[]).reason.startswith("no passages were retrieved")
    result = grounded("Yes [1].", threshold=0.0)
    assert result.score == 0.0 and "makes no claim" in result.reason


@pytest.mark.parametrize(
    ("source", "answer", "supported"),
    [
        ("connect to vpn.corp.example.com.", "Use vpn.corp.example.com", True),
        ("connect to vpn.corp.example.com.", "Use vpn.corp.example.org", False),  # a host exactly
        ("reset at id.corp.example.com/reset.", "Reset at id.corp.example.com", True),  # part of a path
        ("Multi-factor authentication is required.", "MFA is required", True),  # acronym spelled out
        ("Multi-factor authentication is required.", "SSO is required", False),
        ("Your manager approves the request.", "It needs your manager's approval", True),  # stems
        ("Due by the 5th.", "Due by the 6th", False),  # numbers exactly
        ("Economy class applies to flights under six hours.", "Flights under six hours fly economy", False),
    ],
)
def test_word_support_rules(source: str, answer: str, supported: bool) -> None:
    score, why = lexical_groundedness([source], "question", answer)
    assert (score == 1.0) is supported, why


def test_claims_are_sentences_and_clauses_without_markers() -> None:
    assert claims("One [1]; two [2].\n- three! Four?") == ["One", "two", "three", "Four"]
    assert content_words("You may get the 16 weeks of leave [1]") == ["16", "weeks", "leave"]


def test_any_other_rubric_is_refused_not_scored() -> None:
    result = evaluate(
        Assertion("llm-judge", "Is the answer polite?", threshold=0.5),
        CaseOutput("Yes.", 1.0),
        CASE,
        judge=OfflineJudge(),
    )
    assert not result.passed and result.score is None
    assert result.reason == ONLY_GROUNDEDNESS


def test_the_offline_judge_is_a_groundedness_judge() -> None:
    assert isinstance(OfflineJudge(), GroundednessJudge)
