"""Retrieval evals: the suite's ``retrieval`` and the cases' ``relevant`` labels load with precise errors;
context recall and precision, citation correctness and groundedness (a judge) score real outputs; and
``eval changed`` selects a RAG suite when its RagFeature, documents, dataset or chunking code changed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from ai_factory.evals.assertions import evaluate
from ai_factory.evals.changed import changed_suites
from ai_factory.evals.model import Assertion, Case, CaseOutput
from ai_factory.evals.suite import SuiteError, load_suite

REPO = Path(__file__).resolve().parents[2]


def citation(index: int, uri: str, text: str = "passage") -> dict[str, Any]:
    return {"index": index, "text": text, "score": 1.0, "source": {"type": "S3", "uri": uri}}


CITATIONS = [
    citation(1, "s3://c/documents/k/a/laptop-requests.txt", "Request laptops in the IT portal."),
    citation(2, "s3://c/documents/k/a/vpn-access.txt", "Connect to vpn.corp.example.com."),
    citation(3, "s3://c/documents/k/a/travel-booking.txt", "Book travel in the travel portal."),
]
CASE = Case(
    id="c",
    vars={"question": "laptop and vpn?"},
    assertions=(),
    relevant=("laptop-requests", "vpn-access", "expense-reports"),
)


def check(
    kind: str, text: str, threshold: float, citations: list[dict[str, Any]] = CITATIONS, **kw: Any
) -> Any:
    return evaluate(
        Assertion(kind, threshold=threshold), CaseOutput(text, 1.0, citations=citations), CASE, **kw
    )


def test_context_recall_is_the_share_of_relevant_documents_retrieved() -> None:
    result = check("context-recall", "", 0.6)
    assert result.score == pytest.approx(2 / 3) and result.passed
    assert "missed: expense-reports" in result.reason
    assert not check("context-recall", "", 0.7).passed


def test_context_precision_is_the_share_of_passages_that_are_relevant() -> None:
    assert check("context-precision", "", 0.6).score == pytest.approx(2 / 3)
    empty = check("context-precision", "", 0.0, citations=[])
    assert not empty.passed and empty.reason == "no passages were retrieved"


@pytest.mark.parametrize(
    ("answer", "score", "passed"),
    [
        ("Use the IT portal [1] and the VPN host [2].", 1.0, True),
        ("Use the IT portal [1]; book it like travel [3].", 0.5, False),  # [3] is not relevant
        ("See [7].", 0.0, False),  # no such source
        ("Use the IT portal.", 0.0, False),  # cites nothing
    ],
)
def test_citation_correctness(answer: str, score: float, passed: bool) -> None:
    result = check("citation-correctness", answer, 1.0)
    assert (result.score, result.passed) == (score, passed), result.reason


class RecordingJudge:
    def __init__(self, score: float) -> None:
        self.value = score
        self.seen: list[tuple[str, str, str]] = []

    def score(
        self, rubric: str, input_text: str, output_text: str, *, model: str | None = None
    ) -> tuple[float, str]:
        self.seen.append((rubric, input_text, output_text))
        return self.value, "checked"


def test_groundedness_asks_the_judge_with_the_passages_and_the_question() -> None:
    judge = RecordingJudge(0.9)
    result = check("groundedness", "Use the IT portal [1].", 0.8, judge=judge)
    assert result.passed and result.score == 0.9
    [(rubric, given, answer)] = judge.seen
    assert "supported by the numbered sources" in rubric
    assert given.startswith("Sources:\n[1] Request laptops in the IT portal.")
    assert given.endswith("question: laptop and vpn?") and answer == "Use the IT portal [1]."
    assert not check("groundedness", "x", 0.95, judge=RecordingJudge(0.9)).passed
    assert not check("groundedness", "x", 0.5, citations=[], judge=judge).passed
    assert "needs a judge" in check("groundedness", "x", 0.5).reason


def test_the_knowledge_suite_loads_with_its_retrieval_and_labels() -> None:
    suite = load_suite(REPO / "features/knowledge/evals/grounded-answers.yaml")
    assert suite.retrieval == {"knowledge_base": "internal-qa", "top_k": 2}
    assert suite.documents == REPO / "features/knowledge/documents"
    assert {c.id: c.relevant for c in suite.cases}["leave-and-travel"] == ("parental-leave", "travel-booking")


SUITE = """\
suite: s
model: echo
messages: [{{role: user, content: "{{{{q}}}}"}}]
{retrieval}
cases:
  - id: one
    vars: {{q: hi}}
    {relevant}
    assert: [{{type: context-recall, threshold: 1.0}}]
"""


@pytest.mark.parametrize(
    ("retrieval", "relevant", "message"),
    [
        ("", "relevant: [a]", "the suite has no 'retrieval'"),
        ("retrieval: {knowledge_base: kb}", "", "needs the case's 'relevant' documents"),
        ("retrieval: {knowledge_base: kb}", "relevant: []", "'relevant' must be a non-empty list"),
        ("retrieval: {knowledge_base: Not A Name}", "relevant: [a]", "is not a knowledge base name"),
        (
            "retrieval: {knowledge_base: kb, top_k: 50}",
            "relevant: [a]",
            "'top_k' must be a whole number 1..20",
        ),
        ("retrieval: {knowledge_base: kb, documents: nowhere}", "relevant: [a]", "is not a folder"),
        ("retrieval: {knowledge_base: kb, dataset: articles}", "relevant: [a]", "is not domain.name"),
        ("retrieval: {knowledge_base: kb, filter: x}", "relevant: [a]", "filter"),
    ],
)
def test_suite_errors_name_the_line_and_reason(
    tmp_path: Path, retrieval: str, relevant: str, message: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SUITE.format(retrieval=retrieval, relevant=relevant))
    with pytest.raises(SuiteError, match=message):
        load_suite(path)


# -- eval changed ------------------------------------------------------------------------------------

RAG_SUITE = """\
suite: rag
model: echo
messages: [{role: user, content: "{{q}}"}]
retrieval: {knowledge_base: kb, dataset: knowledge.articles, documents: ../documents}
cases: []
"""
PLAIN_SUITE = "suite: plain\nmodel: echo\nmessages: [{role: user, content: hi}]\ncases: []\n"
GOVERNANCE = """\
class Governance:
    def build(self):
        self.add_dataset(
            "SupportTickets",
            name="tickets",
            domain="support",
            classification="internal",
        )
%s
        self.add_dataset(
            "KnowledgeArticles",
            name="articles",
            domain="knowledge",
            classification="public",
        )
"""

PADDING = "".join(f"        # line {i}\n" for i in range(40))


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {
        "features/knowledge/__init__.py": "RagFeature(chunk_max_tokens=300)\n",
        "features/knowledge/evals/rag.yaml": RAG_SUITE,
        "features/knowledge/documents/a.txt": "a\n",
        "features/support/__init__.py": "x = 1\n",
        "features/support/evals/plain.yaml": PLAIN_SUITE,
        # 40 lines between the two datasets: a change to one is out of the other's diff context.
        "stacks/governance_stack.py": GOVERNANCE % PADDING,
        "ai_factory/constructs/rag_feature.py": "CHUNKING = 300\n",
        "README.md": "x\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "base")
    git(tmp_path, "checkout", "-q", "-b", "change")
    return tmp_path


def change(repo: Path, name: str, text: str) -> list[str]:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "change")
    return changed_suites("main", repo)


RAG = ["features/knowledge/evals/rag.yaml"]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("README.md", "y\n", []),
        (
            "features/knowledge/__init__.py",
            "RagFeature(chunk_max_tokens=500)\n",
            RAG,
        ),  # the feature's chunking
        ("features/knowledge/documents/b.txt", "b\n", RAG),  # its documents
        ("ai_factory/constructs/rag_feature.py", "CHUNKING = 200\n", RAG),  # chunking code
        ("lambdas/gateway/aif_gateway/grounding.py", "x = 2\n", RAG),
        ("features/support/__init__.py", "x = 2\n", []),  # another feature's code
    ],
)
def test_changed_selects_rag_suites_by_what_they_depend_on(
    repo: Path, name: str, text: str, expected: list[str]
) -> None:
    assert change(repo, name, text) == expected


def test_a_change_to_the_datasets_declaration_selects_its_rag_suites(repo: Path) -> None:
    text = GOVERNANCE.replace('classification="public"', 'classification="internal"') % (
        "        # " + "-" * 40 + "\n"
    )
    assert change(repo, "stacks/governance_stack.py", text) == RAG


def test_a_change_to_another_dataset_does_not(repo: Path) -> None:
    text = (repo / "stacks/governance_stack.py").read_text()
    assert change(repo, "stacks/governance_stack.py", text.replace('"internal"', '"confidential"')) == []
