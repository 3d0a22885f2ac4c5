"""Glue type strings parsed into trees, and JSON values checked against them at every depth
(property tests: every value generated for a type is accepted unchanged; a value broken at any depth is
refused with the path of the break)."""

from __future__ import annotations

from typing import Any

import pytest
from aif_connector.glue_types import GlueType, GlueTypeError, convert, parse_type
from aif_connector.records import Column, SpecError
from hypothesis import given
from hypothesis import strategies as st


def test_parse_nested_types() -> None:
    t = parse_type("array<struct<name:string,tags:array<varchar(20)>,score:decimal(9,2)>>")
    assert t.kind == "array" and t.element is not None and t.element.kind == "struct"
    assert [(n, f.kind) for n, f in t.element.fields] == [
        ("name", "string"),
        ("tags", "array"),
        ("score", "double"),
    ]
    assert list(t.text_paths("reviewers")) == ["reviewers[].name", "reviewers[].tags[]"]
    assert parse_type("struct< a : int , b : string >").has_text
    assert not parse_type("array<struct<a:int,b:array<date>>>").has_text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("map<string,string>", "map<…> is not supported"),
        ("array<strin>", "unknown type 'strin'"),
        ("array<string", "expected '>'"),
        ("struct<a:int,a:string>", "struct field 'a' is declared twice"),
        ("struct<:int>", "expected a struct field name"),
        ("string extra", "unexpected text after the type"),
        ("array<" * 40 + "string" + ">" * 40, "nested deeper than 32 levels"),
    ],
)
def test_bad_types_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(GlueTypeError, match=message.replace("(", r"\(")):
        parse_type(text)


def test_column_refuses_a_bad_type_at_load_time() -> None:
    with pytest.raises(SpecError, match="column 'm': type 'map<string,int>': map"):
        Column.from_dict({"name": "m", "type": "map<string,int>"})


# ----------------------------------------------------------------------------------- properties

_SCALARS = {
    "string": st.text(max_size=8),
    "bigint": st.integers(-(2**63), 2**63 - 1),
    "int": st.integers(-(2**31), 2**31 - 1),
    "double": st.floats(allow_nan=False, allow_infinity=False),
    "boolean": st.booleans(),
}
_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)


def _types() -> st.SearchStrategy[str]:
    scalar = st.sampled_from(sorted(_SCALARS))

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        arrays = inner.map(lambda t: f"array<{t}>")
        structs = st.lists(st.tuples(_NAMES, inner), min_size=1, max_size=3, unique_by=lambda f: f[0]).map(
            lambda fs: "struct<" + ",".join(f"{n}:{t}" for n, t in fs) + ">"
        )
        return arrays | structs

    return st.recursive(scalar, extend, max_leaves=6)


def _values(t: GlueType) -> st.SearchStrategy[Any]:
    if t.kind == "array":
        assert t.element is not None
        return st.lists(st.none() | _values(t.element), max_size=3)
    if t.kind == "struct":
        return st.fixed_dictionaries({}, optional={n: st.none() | _values(f) for n, f in t.fields})
    return _SCALARS[t.kind]


@st.composite
def _typed_value(draw: st.DrawFn) -> tuple[GlueType, Any]:
    t = parse_type(draw(_types()))
    return t, draw(_values(t))


def _normalised(t: GlueType, value: Any) -> Any:
    """What the connector writes: struct fields all present, doubles as floats."""
    if value is None:
        return None
    if t.kind == "array":
        return [_normalised(t.element, v) for v in value]  # type: ignore[arg-type]
    if t.kind == "struct":
        return {n: _normalised(f, value.get(n)) for n, f in t.fields}
    return float(value) if t.kind == "double" else value


@given(_typed_value())
def test_every_value_of_a_type_is_accepted(typed: tuple[GlueType, Any]) -> None:
    t, value = typed
    converted, problem = convert(value, t, path="c")
    assert problem is None
    assert converted == _normalised(t, value)


def _break(t: GlueType, value: Any, path: str) -> tuple[Any, str] | None:
    """``value`` with one leaf replaced by something of the wrong shape, and that leaf's path."""
    if t.kind == "array" and value:
        for i, item in enumerate(value):
            if item is not None:
                broken = _break(t.element, item, f"{path}[{i}]")  # type: ignore[arg-type]
                if broken:
                    return [*value[:i], broken[0], *value[i + 1 :]], broken[1]
        return None
    if t.kind == "struct":
        for n, f in t.fields:
            if value.get(n) is not None:
                broken = _break(f, value[n], f"{path}.{n}")
                if broken:
                    return {**value, n: broken[0]}, broken[1]
        return None
    if t.kind in ("array", "struct"):
        return None
    return ({"oops": 1} if t.kind != "struct" else "oops"), path


@given(_typed_value())
def test_a_value_broken_at_any_depth_is_refused_with_its_path(typed: tuple[GlueType, Any]) -> None:
    t, value = typed
    broken = _break(t, value, "c")
    if broken is None:
        return
    bad, path = broken
    converted, problem = convert(bad, t, path="c")
    assert converted is None
    assert problem is not None and problem.startswith(f"{path!r}: expected ")
