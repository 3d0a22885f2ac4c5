"""The integration test cases still synthesize to their committed snapshots (offline, no AWS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integ.snapshots import cases, differences, snapshot_dir, synthesize


@pytest.mark.synth
@pytest.mark.parametrize("case", cases(), ids=lambda c: c.stem)
def test_snapshot_matches(case: Path, tmp_path: Path) -> None:
    assert snapshot_dir(case).is_dir(), f"no snapshot for {case.name}: run `make integ-snapshots`"
    diff = differences(case, synthesize(case, tmp_path))
    assert diff == "", (
        f"{case.name} changed; if intended run `make integ-snapshots` and commit:\n{diff[:6000]}"
    )


def test_every_case_has_assertions() -> None:
    found = cases()
    assert {c.stem for c in found} == {
        "integ_alarms",
        "integ_assistant",
        "integ_audit_trail",
        "integ_connector",
        "integ_gateway",
    }
    for case in found:
        text = case.read_text()
        assert "IntegTest(" in text and ".expect(" in text, case.name
