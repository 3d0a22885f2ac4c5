"""Reports: CSV rows, valid JUnit XML with failure reasons, a standalone escaped HTML page, verdict JSON."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ai_factory.evals.gate import verdict
from ai_factory.evals.model import (
    Assertion,
    AssertionResult,
    Case,
    CaseOutput,
    CaseRun,
    Gate,
    PromptRef,
    Suite,
)
from ai_factory.evals.reports import (
    CSV_COLUMNS,
    write_cases_csv,
    write_junit_xml,
    write_report_html,
    write_verdict_json,
)

SUITE = Suite(
    name="summarize-ticket",
    path=Path("features/support/evals/summarize-ticket.yaml"),
    content_hash="sha256:abc",
    cases=tuple(
        Case(id=i, vars={}, assertions=(Assertion("contains", "refund"),)) for i in ("good", "bad", "leaky")
    ),
    gate=Gate(min_pass_rate=0.5, repeats=2, min_case_pass_fraction=0.5),
    prompt=PromptRef("summarize-ticket", alias="staging"),
    description="Summaries <keep> the facts.",
)


def runs() -> list[CaseRun]:
    ok = AssertionResult("contains", True, None, "output contains 'refund'")
    miss = AssertionResult("contains", False, None, "output does not contain 'refund'")
    leak = AssertionResult(
        "not-contains", False, None, "output contains '4111' (at character 0)", hard_fail=True
    )
    return [
        CaseRun("good", 0, CaseOutput("a refund", 1200, 0.002, 10, 3, "claude", "req-1"), [ok]),
        CaseRun("good", 1, CaseOutput("a refund", 800, 0.002), [ok]),
        CaseRun("bad", 0, CaseOutput("<script>alert('x')</script>", 100), [miss]),
        CaseRun("bad", 1, CaseOutput("", 5, error="HTTP 503: all targets failed"), [miss]),
        CaseRun("leaky", 0, CaseOutput("4111 refund", 100), [ok, leak]),
        CaseRun("leaky", 1, CaseOutput('=HYPERLINK("x") refund', 100), [ok]),
    ]


def test_verdict_of_the_fixture() -> None:
    result = verdict(SUITE, runs())
    assert [c.passed for c in result.cases] == [True, False, True]
    assert result.hard_failed and not result.passed


def test_cases_csv(tmp_path: Path) -> None:
    data = runs()
    path = write_cases_csv(tmp_path / "deep" / "cases.csv", SUITE, verdict(SUITE, data), data)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["case_id"] for r in rows] == ["good", "bad", "leaky"]
    good, bad, leaky = rows
    assert good["passed"] == "true" and good["passed_runs"] == "2" and good["repeats"] == "2"
    assert good["mean_latency_ms"] == "1000.0" and good["total_cost_usd"] == "0.004000"
    assert good["failed_assertions"] == "" and good["first_output"] == "a refund"
    assert bad["passed"] == "false"
    assert "run 1: contains: output does not contain 'refund'" in bad["failed_assertions"]
    assert "run 2: the call failed: HTTP 503" in bad["failed_assertions"]
    assert leaky["hard_failures"] == "1" and "not-contains [hard fail]" in leaky["failed_assertions"]


def test_csv_defuses_formulas(tmp_path: Path) -> None:
    formula = [CaseRun("good", 0, CaseOutput("=1+1", 1), [])]
    path = write_cases_csv(tmp_path / "cases.csv", SUITE, verdict(SUITE, formula), formula)
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert rows[0]["first_output"] == "'=1+1"


def test_junit_xml_is_valid_and_lists_failure_reasons(tmp_path: Path) -> None:
    data = runs()
    path = write_junit_xml(tmp_path / "junit.xml", SUITE, verdict(SUITE, data), data)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "summarize-ticket"
    assert suite.get("tests") == "3" and suite.get("failures") == "2" and suite.get("errors") == "0"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["good", "bad", "leaky"]
    assert {c.get("classname") for c in cases} == {"summarize-ticket"}
    assert cases[0].find("failure") is None and cases[0].get("time") == "2.000"
    bad_failure = cases[1].find("failure")
    assert bad_failure is not None
    message = bad_failure.get("message") or ""
    assert message.startswith("passed 0 of 2 runs: ")
    assert "contains: output does not contain 'refund'" in message and "the call failed: HTTP 503" in message
    leaky_failure = cases[2].find("failure")
    assert (
        leaky_failure is not None and leaky_failure.get("type") == "hard_fail"
    )  # passed on fraction, still red
    assert "output contains '4111'" in (leaky_failure.get("message") or "")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["gate_passed"] == "false" and properties["hard_failed"] == "true"
    assert properties["suite_hash"] == "sha256:abc"
    assert "<script>" in (cases[1].findtext("system-out") or "")  # text round-trips through escaping
    assert "gate failed" in (suite.findall("system-out")[-1].text or "")


def test_verdict_json(tmp_path: Path) -> None:
    data = runs()
    result = verdict(SUITE, data)
    path = write_verdict_json(tmp_path / "verdict.json", SUITE, result, data, metadata={"target": "local"})
    document = json.loads(path.read_text(encoding="utf-8"))
    assert (
        document["suite"] == "summarize-ticket"
        and document["passed"] is False
        and document["hard_failed"] is True
    )
    assert document["cases_total"] == 3 and document["cases_passed"] == 2 and document["hard_failures"] == 1
    assert document["suite_hash"] == "sha256:abc" and document["gate"]["repeats"] == 2
    assert document["total_cost_usd"] == 0.004 and document["runs_total"] == 6
    assert document["metadata"] == {"target": "local"}
    assert document["cases"][1] == {
        "case_id": "bad",
        "runs": 2,
        "passed_runs": 0,
        "passed": False,
        "hard_failures": [],
    }
    assert document["reasons"] == result.reasons


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]


def test_report_html_is_standalone_and_escaped(tmp_path: Path) -> None:
    data = runs()
    path = write_report_html(
        tmp_path / "report.html", SUITE, verdict(SUITE, data), data, metadata={"target": "local"}
    )
    page = path.read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    assert "script" not in parser.tags and parser.links == []  # no injected script, no external assets
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Summaries &lt;keep&gt; the facts." in page
    assert "GATE FAILED" in page and "HARD FAILURE" in page
    assert "summarize-ticket@staging" in page and "sha256:abc" in page and "local" in page
    for case_id in ("good", "bad", "leaky"):
        assert f'id="case-{case_id}"' in page
    assert "output does not contain &#x27;refund&#x27;" in page  # each assertion result with its reason
    assert "the call failed: HTTP 503: all targets failed" in page
    assert "hard failure in case &#x27;leaky&#x27;" in page  # the gate's reasons


def test_passing_report(tmp_path: Path) -> None:
    good = [r for r in runs() if r.case_id == "good"]
    one = Suite(**{**SUITE.__dict__, "cases": SUITE.cases[:1]})
    result = verdict(one, good)
    page = write_report_html(tmp_path / "r.html", one, result, good).read_text(encoding="utf-8")
    assert "GATE PASSED" in page and "Why the gate failed" not in page
    root = ET.parse(write_junit_xml(tmp_path / "j.xml", one, result, good)).getroot()
    assert root.find("testsuite/testcase/failure") is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80), reason=st.text(max_size=40), case_id=st.text(min_size=1, max_size=10))
@example(text="nul\x00 esc\x1b lone\ud800 surrogate", reason="\x0b</failure>]]>", case_id="\x01<&>")
def test_any_output_text_keeps_the_reports_valid(
    tmp_path: Path, text: str, reason: str, case_id: str
) -> None:
    suite = Suite(
        name="s",
        path=Path("s.yaml"),
        content_hash="h",
        cases=(Case(id=case_id, vars={}, assertions=()),),
        gate=Gate(),
    )
    data = [CaseRun(case_id, 0, CaseOutput(text, 1), [AssertionResult("equals", False, None, reason)])]
    result = verdict(suite, data)
    root = ET.parse(write_junit_xml(tmp_path / "j.xml", suite, result, data)).getroot()
    assert root.find("testsuite/testcase/failure") is not None
    write_report_html(tmp_path / "r.html", suite, result, data)
    parser = _Tags()
    parser.feed((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "script" not in parser.tags
    rows = list(
        csv.reader(
            write_cases_csv(tmp_path / "c.csv", suite, result, data).open(newline="", encoding="utf-8")
        )
    )
    assert len(rows) == 2
    json.loads(write_verdict_json(tmp_path / "v.json", suite, result, data).read_text(encoding="utf-8"))
