"""Fuzzing the untrusted inputs: the gateway's headers, methods, paths and bodies (huge, deep, unicode),
and the data connector's file parser. Properties: no 5xx, OpenAI-shaped errors, nothing internal in
an answer; every connector input record ends up either parsed or rejected with a reason.

test_gateway_errors.py already fuzzes chat/embedding body *fields* and malformed event shapes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import Harness, make_event
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
INTERNALS = ("Traceback", "/opt/python", "aif_gateway", "botocore", "arn:aws", 'File "')

any_text = st.text(alphabet=st.characters(codec=None), max_size=40)  # includes lone surrogates


def assert_clean(response: dict[str, Any], sent: str = "") -> dict[str, Any] | str:
    """``sent``: what the caller sent that the answer may quote (an unknown path is named in the 404)."""
    assert response["statusCode"] < 500, response
    body = response["body"]
    assert not any(marker in body for marker in INTERNALS if marker not in sent), body[:300]
    if response["headers"].get("Content-Type") == "application/json":
        parsed: dict[str, Any] = json.loads(body)
        if response["statusCode"] >= 400:
            assert set(parsed["error"]) == {"message", "type", "param", "code"}
        return parsed
    return body


@FUZZ
@given(headers=st.dictionaries(any_text, any_text | st.integers() | st.none(), max_size=6), auth=any_text)
def test_random_headers_and_authorization_values(
    harness: Harness, headers: dict[str, Any], auth: str
) -> None:
    for extra in ({}, {"Authorization": auth}, {"authorization": f"Bearer {auth}"}):
        response = harness.gateway.handle(make_event("GET", "/v1/models", None, {**headers, **extra}))
        out = assert_clean(response)
        assert isinstance(out, dict) and ("error" in out) == (response["statusCode"] != 200)


@FUZZ
@given(method=any_text, path=any_text)
@example(method="GET", path="aif_gateway.")  # a path that quotes an internals marker is echoed, not leaked
def test_random_methods_and_paths(harness: Harness, method: str, path: str) -> None:
    key = harness.add_key()
    for p in (path, f"/v1/{path}", f"/v1/models/{path}"):
        response = harness.gateway.handle(make_event(method, p, "{}", {"Authorization": f"Bearer {key}"}))
        assert_clean(response, sent=p + method)
        assert response["statusCode"] in (200, 400, 403, 404, 405), response


@pytest.mark.parametrize("depth", [50, 1_000, 100_000])
def test_deeply_nested_json_is_a_400(harness: Harness, depth: int) -> None:
    key = harness.add_key()
    nested = "[" * depth + "]" * depth
    for raw in (nested, '{"model":"echo","messages":[{"role":"user","content":' + nested + "}]}"):
        status, _, body = harness.call("POST", "/v1/chat/completions", key=key, raw=raw)
        assert status == 400, body


def test_huge_bodies_are_413_or_served_never_5xx(harness: Harness) -> None:
    key = harness.add_key(rate_limit_rpm=10**6)
    limit = harness.gateway.config.max_body_bytes
    just_under = json.dumps(
        {"model": "echo", "messages": [{"role": "user", "content": "é" * ((limit - 200) // 2)}]},
        ensure_ascii=False,
    )
    assert len(just_under.encode()) < limit
    assert harness.call("POST", "/v1/chat/completions", key=key, raw=just_under)[0] == 200
    for raw in ("x" * (limit + 1), "€" * (limit // 3 + 1), json.dumps({"model": "echo", "pad": "a" * limit})):
        status, _, body = harness.call("POST", "/v1/chat/completions", key=key, raw=raw)
        assert status == 413 and body["error"]["code"] == "request_too_large"
    many_messages = {"model": "echo", "messages": [{"role": "user", "content": "hi"}] * 20_000}
    status, _, _ = harness.call("POST", "/v1/chat/completions", key=key, raw=json.dumps(many_messages))
    assert status in (200, 400, 413)


@FUZZ
@given(content=any_text, name=any_text)
def test_unicode_everywhere_in_a_chat(harness: Harness, content: str, name: str) -> None:
    key = harness.add_key(rate_limit_rpm=10**9)
    body = {
        "model": "echo",
        "messages": [{"role": "system", "content": name}, {"role": "user", "content": content}],
    }
    raw = json.dumps(body)  # ensure_ascii: lone surrogates travel as \ud800 escapes, as API Gateway may send
    response = harness.gateway.handle(
        make_event("POST", "/v1/chat/completions", raw, {"Authorization": f"Bearer {key}"})
    )
    assert_clean(response)
    response = harness.gateway.handle(
        make_event("POST", f"/v1/chat/completions/{name}", raw, {"Authorization": f"Bearer {key}"})
    )
    assert_clean(response)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_base64_bodies(harness: Harness, data: bytes) -> None:
    import base64

    key = harness.add_key(rate_limit_rpm=10**9)
    event = make_event("POST", "/v1/chat/completions", None, {"Authorization": f"Bearer {key}"})
    event["body"], event["isBase64Encoded"] = base64.b64encode(data).decode(), True
    assert_clean(harness.gateway.handle(event))
    event["body"] = data.decode("latin-1")  # not base64 at all
    assert_clean(harness.gateway.handle(event))


# -- the data connector's parser ---------------------------------------------------------------------------

records = pytest.importorskip("aif_connector.records")

SPEC = records.DatasetSpec.from_dict(
    {
        "name": "tickets",
        "database": "db",
        "table": "tickets",
        "columns": [
            {"name": "id", "type": "bigint", "required": True},
            {"name": "text", "type": "string"},
            {"name": "score", "type": "double"},
            {"name": "opened", "type": "date"},
            {"name": "ok", "type": "boolean"},
        ],
        "max_line_bytes": 2_000,
    }
)
json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | any_text
row = st.dictionaries(
    st.sampled_from(["id", "text", "score", "opened", "ok", "extra", ""]), json_scalar, max_size=6
)


@FUZZ
@given(
    data=st.binary(max_size=2_000), key=st.sampled_from(["a.jsonl", "a.json", "a.csv", "a.txt", "a.csv.gz"])
)
def test_connector_parser_never_raises_on_random_bytes(data: bytes, key: str) -> None:
    parsed = records.parse_file(data, f"raw/{key}", SPEC)
    assert (parsed.file_error is None) or (not parsed.records and not parsed.rejects)
    for reject in parsed.rejects:
        assert reject.reason and reject.line >= 1


@FUZZ
@given(rows=st.lists(row | json_scalar, max_size=20), newline=st.sampled_from(["\n", "\r\n"]))
def test_connector_jsonl_accounts_for_every_line(rows: list[Any], newline: str) -> None:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    data = newline.join(lines).encode("utf-8", "surrogatepass")
    parsed = records.parse_file(data, "raw/x.jsonl", SPEC)
    if parsed.file_error is None:
        assert parsed.records_in == len([line for line in lines if line.strip()])
        assert all(r.reason for r in parsed.rejects)


@FUZZ
@given(cells=st.lists(st.lists(any_text, min_size=0, max_size=7), max_size=15))
@example(cells=[[" "]])  # found by this test: a whitespace-only row was dropped without a reject
@example(cells=[["", ""], ["\t"]])
def test_connector_csv_accounts_for_every_row(cells: list[list[str]]) -> None:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "text", "score", "opened", "ok"])
    writer.writerows(cells)
    parsed = records.parse_file(out.getvalue().encode("utf-8", "surrogatepass"), "raw/x.csv", SPEC)
    if parsed.file_error is None:
        assert parsed.records_in >= len([c for c in cells if any(c)])
        assert all(r.reason for r in parsed.rejects)


def test_connector_csv_whitespace_only_row_is_rejected_with_a_reason() -> None:
    data = b"id,text,score,opened,ok\n1,hi,0.5,2026-01-01,true\n \n\n2,yo,0.1,2026-01-02,false\n"
    parsed = records.parse_file(data, "raw/x.csv", SPEC)
    assert parsed.file_error is None
    assert [line for line, _ in parsed.records] == [2, 5]  # the truly empty line 4 is not a record
    assert [(r.line, r.reason) for r in parsed.rejects] == [(3, "the row has 1 fields, the header has 5")]
