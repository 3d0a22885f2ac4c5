"""The benchmark harness itself: the load client's percentiles and one short run against the stub
server, and the marked-section writer every benchmark script shares."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import doc_sections  # noqa: E402
import http_load  # noqa: E402
import stub_server  # noqa: E402


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 1.0), (50, 5.5), (90, 9.1), (99, 9.91), (100, 10.0)],
)
def test_percentile_interpolates_between_closest_ranks(q: float, expected: float) -> None:
    # numpy.percentile(range(1, 11), q) with its default (linear) method gives the same values.
    assert http_load.percentile([float(x) for x in range(1, 11)], q) == pytest.approx(expected)


def test_percentile_of_one_value_and_bad_input() -> None:
    assert http_load.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        http_load.percentile([], 50)
    with pytest.raises(ValueError):
        http_load.percentile([1.0], 101)


@pytest.fixture
def stub_port() -> Iterator[int]:
    server = stub_server.serve(0)
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("stream", [False, True])
def test_run_level_against_the_stub_counts_every_request(stub_port: int, stream: bool) -> None:
    result = http_load.run_level(
        host="127.0.0.1",
        port=stub_port,
        path="/v1/chat/completions",
        headers={"Authorization": "Bearer test"},
        bodies=http_load.chat_bodies("echo", stream=stream),
        concurrency=4,
        requests=200,
        warmup=20,
        max_seconds=10,
    )
    assert result.requests == 200
    assert result.errors == 0 and result.warmup_errors == 0 and result.error_samples == []
    assert result.connections_opened == 0  # keep-alive held: no reconnects in the measured phase
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
    assert result.rps > 0


def test_run_level_refuses_a_non_loopback_target() -> None:
    with pytest.raises(ValueError, match="loopback"):
        http_load.run_level(
            host="192.0.2.1",
            port=80,
            path="/",
            headers={},
            bodies=[b"{}"],
            concurrency=1,
            requests=1,
            warmup=0,
        )


def test_write_section_replaces_only_its_own_block(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        "# Benchmarks\n\nintro\n\n<!-- a -->\nold a\n<!-- /a -->\n\n<!-- b -->\nkeep b\n<!-- /b -->\n"
    )
    doc_sections.write_section("a", "new a", doc)
    doc_sections.write_section("c", "## C\nbody c\n", doc)
    text = doc.read_text()
    assert doc_sections.sections(text) == {
        "a": "<!-- a -->\nnew a\n<!-- /a -->",
        "b": "<!-- b -->\nkeep b\n<!-- /b -->",
        "c": "<!-- c -->\n## C\nbody c\n<!-- /c -->",
    }
    assert text.startswith("# Benchmarks\n\nintro\n\n") and text.endswith("<!-- /c -->\n")
