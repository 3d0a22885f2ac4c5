"""The fast offline detector finds exactly what the detector before the rewrite found (issue #17).

``pii_reference`` is the pre-rewrite code, frozen. Same findings means same kind, span, text and
confidence, in the same order, for every text: the labelled set, the two benchmarks' generated corpora,
and generated text built from the pieces every detector and every pre-filter keys on (cue words in odd
case, the characters that match ASCII letters case-insensitively, digits and separators, colons).
"""

from __future__ import annotations

import os
import random
import re
import sys
from pathlib import Path

import pii_reference
import pytest
from aif_connector import pii
from aif_connector.names import free_text_names
from hypothesis import example, given, settings
from hypothesis import strategies as st

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

_ENV = dict(os.environ)
import connector_throughput  # noqa: E402  (sets fake AWS credentials on import: restored below)
import pii_detectors  # noqa: E402

os.environ.clear()
os.environ.update(_ENV)

Spans = list[tuple[str, int, int, str, float]]


def _spans(findings: list[pii.Finding] | list[pii_reference.Finding]) -> Spans:
    return [(f.kind, f.start, f.end, f.text, f.confidence) for f in findings]


def _assert_same(text: str) -> None:
    assert _spans(pii.detect(text)) == _spans(pii_reference.detect(text)), text
    assert list(free_text_names(text)) == list(pii_reference.free_text_names(text)), text


def test_same_findings_on_the_labelled_set() -> None:
    records = pii_detectors.load_labelled()
    for record in records:
        _assert_same(record["text"])
    # Also each kind alone (the connector's pii_kinds filter).
    for kind in sorted(pii.ALL_KINDS):
        for record in records:
            got = _spans(pii.detect(record["text"], kinds=[kind]))
            assert got == _spans(pii_reference.detect(record["text"], kinds=[kind])), (kind, record["id"])


def test_same_findings_on_the_benchmark_corpora() -> None:
    for text in pii_detectors.corpus(3000, seed=11):
        _assert_same(text)
    for ticket in connector_throughput.tickets(3000, seed=11):
        for value in ticket.values():
            if isinstance(value, str):
                _assert_same(value)
        _assert_same(str(ticket))


# Pieces that trigger every detector, every cue word (in several cases), and the look-alikes.
_PIECES = [
    # structured values and their look-alikes
    "a@example.com", "x.y+z@mail.example.org", "+44 20 7946 0958", "(415) 555-2671", "415-555-2671",
    "06 12 34 56 78", "06.12.34.56.78", "0151/23456789", "4155552671", "0049 30 1234567",
    "4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005", "3782-822463-10005",
    "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "10.0.0.1", "999.1.1.1", "::1",
    "2001:db8::8a2e:370:7334", "::ffff:192.0.2.1", "fe80::abcd", "12:30:45", "00:1A:2B:3C:4D:5E",
    "219-09-9998", "219 09 9998", "219099998", "AB123456C", "AB 12 34 56 C", "86095742719",
    "86 095 742 719", "1 84 12 76 451 089 46", "184127645108946", "12345678Z", "X1234567L",
    "2024-01-15", "15.01.2024", "v1.2.3.4", "version 1.2.3.4", "order #555-123-4567", "SKU 555-0199-22",
    # cue words (the case-insensitive ones in odd case) and names
    "Name: ", "NAME=", "name : ", "full_name: ", "Full Name=", "fullname:", "first name: ", "Last_Name: ",
    "Surname: ", "customer: ", "CONTACT: ", "patient=", "Employee: ", "account holder: ", "cardholder: ",
    "Card Holder: ", "recipient: ", "attn: ", "Attention: ", '"name": "', "'name'='",
    "Dear ", "Hi ", "Hello ", "Dear Mr. ", "Hello Dr ", "Mr. ", "Mrs ", "Ms. ", "Miss ", "Mx ", "Dr. ",
    "Prof. ", "Herr ", "Frau ", "Mme ", "Mlle ", "Sr. ", "Sra ", "Regards, ", "regards,\n", "Signed by ",
    "SINCERELY ", "Best, ", "best ", "Cheers\n", "Thanks, ", "thank you ", "Yours truly, ", "Kind Regards,\n",
    "Alice Johnson", "Maria Garcia", "Jürgen Müller", "O'Brien", "Sanne de Vries", "Pieter van den Berg",
    "Chen Wei", "Victoria Station", "Grace", "The Grace Period", "Priya", "Michael O\u2019Connor", "Ann",
    "Customer", "Team", "Sir", "Smith", "Lee", "A. ", "Zoë Martin",
    # characters that match ASCII letters case-insensitively but are not ASCII (dotted/dotless i,
    # long s, Kelvin sign), and other letters around word boundaries
    "\u0130", "\u0131", "\u017f", "\u212a", "na\u017fme", "\u017furname: ", "F\u0130RST NAME: ",
    "\u212aind regards, ", "É", "ß", "é", "_", "-", ".", ",", ":", "=", "/", "(", ")", "+", "#", "'", '"',
    "@", " ", "  ", "\t", "\n",
    "0", "1", "7", "9", "00", "123", "2A", "X", "Z", "AB", "de", "van", "Station",
]  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=6)), max_size=16).map("".join))
@example("Name: Contact: Bob Stone")
@example("last name: Maria Garcia and name: Ann Lee")
@example("\u0130 name: Ann Lee, F\u0130RST NAME: Bo Li")
@example("Kind regards, kind regards,\nMaria Garcia")
@example("Dear Dear Mr. Smith")
@example("::abc and ab:cd:ef, 1:2:3:4:5:6:7:8")
@example("x" * 63 + "@example.com " + "y" * 64 + "@example.com " + "z" * 65 + "@example.com")
@example("_ab@x.com é.cd@x.com ef..g@x.com h@@x.com i@j@k.com -l@m.com n.@o.com p@q-.com")
@example("NIR 1 84 02 2A 123 456 78, 184022B12345678 and 2 84 02 2A 123 456 17")
@example("xkind regards, Bob Lee; XMr. Smith; cardholder: Ann Lee, attention=Bo Li")
@example("call 06 12 34 56 78 or 12 34 56 78 90, DNI 1234567Z, no 3 digits: 1.2.3.4 12-34")
def test_same_findings_on_generated_text(text: str) -> None:
    _assert_same(text)


def test_same_findings_on_random_long_texts() -> None:
    rnd = random.Random(17)
    for _ in range(400):
        text = "".join(rnd.choice(_PIECES) + rnd.choice(["", " ", "  ", ", ", "\n", ": "]) for _ in range(60))
        _assert_same(text)


@pytest.mark.parametrize("text", ["", "x", "1", "@", ":", "::", "\u0130", "Dear", "Name:"])
def test_same_findings_on_tiny_texts(text: str) -> None:
    _assert_same(text)


def test_caseless_folding_matches_the_regex_engine() -> None:
    """The cue-word pre-filter looks for lower-case literals in ``_caseless(text)``: it must keep the
    length (offsets are shared) and turn every character that a case-insensitive pattern matches to an
    ASCII letter into that letter, or it would skip a position the pattern matches."""
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    folded = pii._caseless(everything)
    assert len(folded) == len(everything)
    matched = [m.start() for m in re.finditer("(?i)[a-z]", everything)]
    assert len(matched) > 52  # the ASCII letters and the few others (Kelvin sign, long s, dotted I ...)
    for i in matched:
        assert "a" <= folded[i] <= "z" and re.fullmatch("(?i)" + folded[i], everything[i]), hex(
            ord(everything[i])
        )
