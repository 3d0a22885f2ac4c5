"""PII detectors: each kind's positives and look-alikes, the checksums, overlap resolution, properties
on arbitrary text, Comprehend wiring, and precision/recall floors on the labelled set."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from aif_connector import pii
from aif_connector.pii import Finding, detect, detect_comprehend, resolve
from botocore.stub import Stubber
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import pii_detectors  # noqa: E402


def found(text: str, kind: str) -> list[str]:
    return [f.text for f in detect(text, kinds=[kind])]


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("EMAIL", "write to jane.doe+news@mail.example.org.", ["jane.doe+news@mail.example.org"]),
        ("EMAIL", '{"email": "A.B@EXAMPLE.COM"}', ["A.B@EXAMPLE.COM"]),
        ("PHONE", "call +44 20 7946 0958 today", ["+44 20 7946 0958"]),
        ("PHONE", "Tel: (415) 555-2671", ["(415) 555-2671"]),
        ("PHONE", "mobile 06 12 34 56 78", ["06 12 34 56 78"]),
        ("PHONE", "phone 4155552671", ["4155552671"]),
        ("CREDIT_CARD", "card 4111 1111 1111 1111 exp 12/27", ["4111 1111 1111 1111"]),
        ("CREDIT_CARD", "amex 3782-822463-10005", ["3782-822463-10005"]),
        ("IBAN", "IBAN DE89 3704 0044 0532 0130 00 EUR", ["DE89 3704 0044 0532 0130 00"]),
        ("IBAN", "to GB82WEST12345698765432.", ["GB82WEST12345698765432"]),
        (
            "IP_ADDRESS",
            "from 203.0.113.42 and 2001:db8::8a2e:370:7334",
            ["203.0.113.42", "2001:db8::8a2e:370:7334"],
        ),
        ("US_SSN", "SSN 219-09-9998", ["219-09-9998"]),
        ("US_SSN", "ssn: 219099998", ["219099998"]),
        ("UK_NINO", "NI AB 12 34 56 C", ["AB 12 34 56 C"]),
        ("DE_TAX_ID", "Steuer-ID 86095742719", ["86095742719"]),
        ("FR_NIR", "NIR 1 84 12 76 451 089 46", ["1 84 12 76 451 089 46"]),
        ("ES_DNI", "DNI 12345678Z, NIE X1234567L", ["12345678Z", "X1234567L"]),
        ("PERSON_NAME", "Name: Alice Johnson\nDear Mr. O'Brien,", ["Alice Johnson", "O'Brien"]),
        ("PERSON_NAME", "Kind regards,\nJürgen Müller", ["Jürgen Müller"]),
    ],
)
def test_detector_finds(kind: str, text: str, expected: list[str]) -> None:
    assert found(text, kind) == expected


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("EMAIL", "not an address: a@b, x@@example.com, john..doe@example.com"),
        ("PHONE", "Order #555-123-4567 shipped on 2024-01-15"),
        ("PHONE", "dates 15.01.2024 and 01/15/2024, SKU 555-0199-22, part no. 4711-0815"),
        ("PHONE", "serial 1234567890 (no phone word)"),
        ("PHONE", "555-023-4567 has an exchange starting with 0"),
        ("CREDIT_CARD", "4111 1111 1111 1112 fails Luhn"),
        ("CREDIT_CARD", "0000 0000 0000 0000 passes Luhn but no issuer starts with 0"),
        ("CREDIT_CARD", "4111-1111 1111-1111 mixes separators"),
        ("IBAN", "DE88 3704 0044 0532 0130 00 has a bad checksum; XX12 3456 7890 no country"),
        ("IBAN", "DE89 3704 0044 0532 0130 has the wrong length"),
        ("IP_ADDRESS", "999.1.1.1 256.1.1.1 1.2.3 01.2.3.4 and version 1.2.3.4, v10.0.0.1"),
        ("IP_ADDRESS", "12:30:45 and 00:1A:2B:3C:4D:5E are not IPv6"),
        ("US_SSN", "000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000 078-05-1120"),
        ("US_SSN", "123456780 without a word saying SSN"),
        ("UK_NINO", "BG123456A GB123456A QQ123456C AB123456E"),
        ("DE_TAX_ID", "Steuer-ID 86095742718 (check digit) and 12345678903 (repetition rule)"),
        ("FR_NIR", "NIR 1 84 12 76 451 089 47"),
        ("ES_DNI", "DNI 12345678A"),
        ("PERSON_NAME", "Dear Customer, Dear Sir or Madam, Name: N/A"),
    ],
)
def test_detector_rejects_look_alikes(kind: str, text: str) -> None:
    assert found(text, kind) == []


def test_checksums() -> None:
    assert pii.luhn_ok("4111111111111111") and not pii.luhn_ok("4111111111111112")
    assert pii.iban_ok("GB82WEST12345698765432") and not pii.iban_ok("GB82WEST12345698765433")
    assert not pii.iban_ok("GB82WEST123456987654")  # length table
    assert pii.de_tax_id_ok("86095742719") and not pii.de_tax_id_ok("06095742719")
    assert pii.fr_nir_ok("184127645108946") and not pii.fr_nir_ok("184127645108947")
    assert pii.es_dni_ok("12345678Z") and pii.es_dni_ok("X1234567L") and not pii.es_dni_ok("Y1234567L")
    assert pii.us_ssn_ok("219099998") and not pii.us_ssn_ok("666123456")


def test_fr_nir_corsica_uses_substituted_department() -> None:
    corsica = "18402" + "2A" + "123456"  # department 2A counts as 19 in the key
    key = 97 - int("18402" + "19" + "123456") % 97
    assert pii.fr_nir_ok(f"{corsica}{key:02d}")
    assert not pii.fr_nir_ok(f"{corsica}{(key + 1) % 97:02d}")
    spaced = f"1 84 02 2A 123 456 {key:02d}"
    assert found(f"NIR {spaced}", "FR_NIR") == [spaced]


def test_name_found_by_context_is_found_again_elsewhere() -> None:
    text = "Dear Priya,\nwe met Priya yesterday."
    assert [(f.text, f.start) for f in detect(text)] == [("Priya", 5), ("Priya", 19)]


def test_kinds_filter_and_unknown_kind() -> None:
    text = "a@example.com 203.0.113.9"
    assert [f.kind for f in detect(text, kinds={"IP_ADDRESS"})] == ["IP_ADDRESS"]
    with pytest.raises(ValueError, match="unknown PII kinds"):
        detect(text, kinds=["PASSPORT"])
    assert detect("") == []


def test_resolve_keeps_the_more_confident_then_longer_span() -> None:
    a = Finding("PHONE", 0, 10, "x" * 10, 0.7)
    b = Finding("DE_TAX_ID", 0, 11, "x" * 11, 0.95)
    c = Finding("EMAIL", 20, 25, "x" * 5, 0.5)
    d = Finding("EMAIL", 20, 27, "x" * 7, 0.5)
    assert resolve([a, b, c, d]) == [b, d]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_detect_never_raises_and_findings_are_well_formed(text: str) -> None:
    findings = detect(text)
    previous_end = 0
    for f in findings:
        assert 0 <= f.start < f.end <= len(text)
        assert text[f.start : f.end] == f.text
        assert f.start >= previous_end  # sorted and non-overlapping
        assert 0.0 < f.confidence <= 1.0
        previous_end = f.end


_PIIISH = st.sampled_from(
    [
        "a@example.com", "+44 20 7946 0958", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00",
        "10.0.0.1", "::1", "219-09-9998", "AB123456C", "Dear Mr. Smith", "Name: Ann Lee", "12345678Z",
        "1 84 12 76 451 089 46", "86095742719", " ", "-", ".", ":", "0", "9", "@", "\n",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PIIISH, st.text(max_size=8)), max_size=12).map("".join))
def test_detect_on_pii_fragments_glued_together(text: str) -> None:
    findings = detect(text)
    assert findings == resolve(findings)
    assert all(text[f.start : f.end] == f.text for f in findings)


def test_pathological_input_is_linear_enough() -> None:
    import time

    for text in ("a" * 200_000 + "@", "1" * 200_000, "1." * 100_000, ":" * 100_000, "Dear " * 40_000):
        start = time.perf_counter()
        detect(text)
        assert time.perf_counter() - start < 5.0


# ---------------------------------------------------------------------------------------- Comprehend


def _entity(kind: str, begin: int, end: int, score: float = 0.99) -> dict[str, Any]:
    return {"Type": kind, "BeginOffset": begin, "EndOffset": end, "Score": score}


def test_comprehend_packs_texts_into_one_request_and_maps_offsets_back() -> None:
    client = boto3.client(
        "comprehend", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    texts = ["Call Ann at 555-0100", "", "mail bob@example.com"]
    joined = "Call Ann at 555-0100\n\nmail bob@example.com"
    second = joined.index("bob")
    with Stubber(client) as stub:
        stub.add_response(
            "detect_pii_entities",
            {
                "Entities": [
                    _entity("NAME", 5, 8),
                    _entity("PHONE", 12, 20, 0.3),  # below min_score
                    _entity("EMAIL", second, second + 15),
                    _entity("BANK_ROUTING", second, second + 3, 0.9),
                ]
            },
            {"Text": joined, "LanguageCode": "en"},
        )
        result = detect_comprehend(texts, client=client)
        stub.assert_no_pending_responses()
    assert [(f.kind, f.text) for f in result[0]] == [("PERSON_NAME", "Ann")]
    assert result[1] == []
    assert [(f.kind, f.text) for f in result[2]] == [("EMAIL", "bob@example.com")]


def test_comprehend_splits_batches_at_the_size_limit() -> None:
    calls: list[str] = []

    class Client:
        def detect_pii_entities(self, Text: str, LanguageCode: str) -> dict[str, Any]:
            calls.append(Text)
            return {"Entities": []}

    texts = ["word " * 30, "word " * 30, "x" * 500]
    detect_comprehend(texts, client=Client(), max_bytes=200)
    assert all(len(c.encode()) <= 200 for c in calls)
    assert "".join(c.replace("\n\n", "") for c in calls).replace(" ", "") == "".join(texts).replace(" ", "")


@mock_aws
def test_comprehend_wiring_against_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("comprehend", region_name="us-east-1")
    # moto answers a fixed set of entities whatever the text: this checks the call and the mapping only.
    text = "x" * 200
    (result,) = detect_comprehend([text], client=client, min_score=0.0)
    assert result and all(isinstance(f, Finding) and 0 <= f.start < f.end <= len(text) for f in result)


# ------------------------------------------------------------------------------------- labelled set


def test_labelled_set_is_consistent() -> None:
    records = pii_detectors.load_labelled()
    assert len(records) >= 150
    assert sum(1 for r in records if not r["spans"]) >= 40  # tricky negatives
    assert len({r["id"] for r in records}) == len(records)
    for r in records:
        for s in r["spans"]:
            assert 0 <= s["start"] < s["end"] <= len(r["text"]) and s["kind"] in pii.ALL_KINDS
            assert r["text"][s["start"] : s["end"]].strip() == r["text"][s["start"] : s["end"]]


def test_scoring_counts_overlaps_once() -> None:
    gold = [("EMAIL", 0, 10), ("EMAIL", 20, 30)]
    assert pii_detectors.match(gold, [("EMAIL", 2, 8), ("EMAIL", 0, 10), ("PHONE", 20, 30)]) == (1, 2, 1)
    assert pii_detectors.match(gold, [("EMAIL", 2, 8)], exact=True) == (0, 1, 2)


def test_precision_and_recall_floors_on_the_labelled_set() -> None:
    records = pii_detectors.load_labelled()
    predictions = pii_detectors.our_predictions(records)
    structured = pii_detectors.score(records, predictions, kinds=pii.STRUCTURED_KINDS)
    every = pii_detectors.score(records, predictions)
    assert structured["ALL"]["recall"] >= 0.95, structured
    assert structured["ALL"]["precision"] >= 0.9, structured
    assert every["ALL"]["precision"] >= 0.9, every
    for kind in pii.STRUCTURED_KINDS:
        assert structured[kind]["recall"] >= 0.8, (kind, structured[kind])


def test_free_text_names_floor_on_the_labelled_set() -> None:
    """Names without a cue word (tag ``freetext``: 9 languages, capitalised non-names as negatives)."""
    records = [r for r in pii_detectors.load_labelled() if "freetext" in r["tags"]]
    assert len({r["note"].rsplit("(", 1)[-1] for r in records if r["spans"]}) >= 9  # languages
    names = pii_detectors.score(records, pii_detectors.our_predictions(records), kinds=["PERSON_NAME"])["ALL"]
    assert names["recall"] >= 0.8 and names["precision"] >= 0.9, names


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("Yesterday Maria Garcia called", ["Maria Garcia"]),  # the name inside a capitalised phrase
        ("Ik heb Sanne de Vries gebeld", ["Sanne de Vries"]),  # particles
        ("Volgens Pieter van den Berg is het klaar", ["Pieter van den Berg"]),
        ("Forward to Michael O'Connor today", ["Michael O'Connor"]),
        ("Chen Wei will review it", ["Chen Wei"]),  # surname first
        ("Victoria Station is closed", []),  # place word after a given name
        ("The Grace Period ends soon", []),
        ("Take the Jordan Valley road with Anna", []),  # a given name alone is not enough
        ("Sarah de la", []),  # particles without a surname
    ],
)
def test_free_text_names(text: str, names: list[str]) -> None:
    from aif_connector.names import free_text_names

    assert [text[s:e] for s, e, _ in free_text_names(text)] == names


def test_comprehend_mode_scores_the_union_the_connector_masks() -> None:
    # Two free-text records: our detector misses "Ingrid" (not in its given-name list), Comprehend finds
    # it; Comprehend also answers a name where there is none (a false positive the union keeps).
    records = [
        {"id": "a", "text": "Ingrid Olsen called about the refund.", "tags": ["freetext"], "spans": []},
        {"id": "b", "text": "Shipment Delayed again, see ticket.", "tags": ["freetext"], "spans": []},
    ]
    records[0]["spans"] = [{"kind": "PERSON_NAME", "start": 0, "end": 12}]
    client = boto3.client("comprehend", region_name="us-east-1")
    stubber = Stubber(client)
    joined = records[0]["text"] + "\n\n" + records[1]["text"]
    offset = len(records[0]["text"]) + 2
    stubber.add_response(
        "detect_pii_entities",
        {
            "Entities": [
                {"Score": 0.99, "Type": "NAME", "BeginOffset": 0, "EndOffset": 12},
                {"Score": 0.7, "Type": "NAME", "BeginOffset": offset, "EndOffset": offset + 8},
            ]
        },
        {"Text": joined, "LanguageCode": "en"},
    )
    with stubber:
        result = pii_detectors.comprehend_scores(records, [[], []], client)
    stubber.assert_no_pending_responses()
    person = result["union"]["PERSON_NAME"]
    assert (person["tp"], person["fp"], person["fn"]) == (1, 1, 0)
    assert result["comprehend_names"]["precision"] == 0.5 and result["freetext_names"]["recall"] == 1.0
    lines = "\n".join(pii_detectors._comprehend_lines(result))
    assert "| person names, union | 50.0% | 100.0% |" in lines
    assert "not measured" in "\n".join(pii_detectors._comprehend_lines(None))
