"""`ai-factory feedback export`: the worst-rated exchanges become draft eval cases, PII masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ai_factory.evals.feedback_cases import ExchangeError, draft_cases, load_exchanges, redact
from ai_factory.evals.suite import load_suite
from ai_factory.local.sqlite_store import SqliteLedger
from aif_gateway.records import FeedbackRecord
from tests.unit.test_feedback import NOW, _seed_feedback, run_cli

EXCHANGES = [
    {
        "request_id": "req-1",
        "input": "Summarize: Jordan (jordan.reyes@example.com) paid with 4111 1111 1111 1111, order 48213.",
        "output": "Jordan (jordan.reyes@example.com) paid for order 99999 with card 4111 1111 1111 1111.",
    },
    {"request_id": "req-3", "input": "Classify: my parcel is late", "output": "label: billing"},
    {"request_id": "req-0", "input": "fine", "output": "fine"},
]


def exchanges_file(tmp_path: Path) -> Path:
    path = tmp_path / "exchanges.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in EXCHANGES) + "\n", encoding="utf-8")
    return path


def test_export_writes_a_loadable_draft_suite_without_pii(tmp_path: Path) -> None:
    _seed_feedback(SqliteLedger(tmp_path / "local.db"))
    out = tmp_path / "evals" / "draft.yaml"
    out.parent.mkdir()
    code, text = run_cli(
        "feedback", "export", "--worst", "5", "--month", "2026-11", "--state-dir", str(tmp_path),
        "--exchanges", str(exchanges_file(tmp_path)), "--out", str(out),
    )  # fmt: skip
    assert code == 0, text
    assert "2 draft case(s) written" in text
    written = out.read_text(encoding="utf-8")
    for secret in ("jordan.reyes@example.com", "4111 1111 1111 1111"):
        assert secret not in written
    assert "[EMAIL]" in written and "[CREDIT_CARD]" in written
    suite = load_suite(out)  # the draft is a valid suite as it is
    assert [c.id for c in suite.cases] == ["feedback-req-1", "feedback-req-3"]  # score 0.0 only, oldest first
    first = suite.cases[0]
    assert "order 48213" in first.vars["input"]
    assert first.assertions[0].type == "llm-judge" and "made up an order number" in first.assertions[0].value
    assert "rated 0" in first.description and "order 99999" in first.description  # the bad answer, masked


def test_worst_limits_and_missing_exchanges_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [
        FeedbackRecord(f"r{i}", "t", "f", "2026-11", score, NOW, "k", comment="bad")
        for i, score in enumerate([0.0, 0.25, 0.5, 1.0, 0.1])
    ]
    exchanges = {f"r{i}": {"request_id": f"r{i}", "input": f"q{i}"} for i in (0, 1, 2, 3)}
    cases, missing = draft_cases(records, exchanges, worst=2)
    assert [c.request_id for c in cases] == ["r0", "r1"]  # 0.0 then 0.25; r4 (0.1) has no exchange
    assert missing == ["r4"]
    cases, _ = draft_cases(records, exchanges, worst=10)
    assert [c.request_id for c in cases] == ["r0", "r1"]  # 0.5 and above are not negative


def test_redact_uses_the_connector_detector() -> None:
    assert redact("call +1 202 555 0143 or mail a@example.com") == "call [PHONE] or mail [EMAIL]"
    assert redact("") == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"exchanges.jsonl:1: not JSON"),
        ('{"input": "x"}', r":1: needs string fields request_id"),
    ],
)
def test_bad_exchange_files_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "exchanges.jsonl"
    path.write_text(content + "\n", encoding="utf-8")
    with pytest.raises(ExchangeError, match=message):
        load_exchanges(path)


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["feedback", "export"], 2, "--exchanges is required"),
        (["feedback", "export", "--worst", "0", "--exchanges", "x"], 2, "--worst must be at least 1"),
        (["feedback", "--exchanges", "x"], 2, "only with `ai-factory feedback export`"),
    ],
)
def test_export_usage_errors(
    argv: list[str], code: int, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(*argv, "--state-dir", str(tmp_path))[0] == code
    assert message in capsys.readouterr().err
