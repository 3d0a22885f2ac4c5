"""Glue (Hive) column types as a tree: parsing ``array<struct<name:string,tags:array<string>>>`` and
checking JSON values against it, with reasons that name the nested path (``author.tags[2]``).

Knowledge data is rarely flat: articles carry ``array<string>`` tags, tickets a ``struct`` of their
requester, chats an ``array<struct<role:string,text:string>>``. The connector validates every level and
masks PII in every string leaf, so nesting never becomes a way around validation or masking.

``map<…>`` is refused: its keys are free data (they can hold an e-mail address) and masking a key can
make two keys collide; model such data as ``array<struct<key:string,value:…>>``.

Stdlib only (the connector Lambda has no third-party packages).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

# Scalar Glue types the connector validates and writes (Hive names, as in the table's schema).
SCALAR_TYPES = (
    "string", "tinyint", "smallint", "int", "bigint", "double", "float", "boolean", "date", "timestamp"
)  # fmt: skip
# Parameterised Glue types validated as their base type: varchar(n)/char(n) as string, decimal as double.
_PARAMETERISED = re.compile(r"(varchar|char)\(\d+\)|decimal\(\d{1,2}(,\d{1,2})?\)")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_DEPTH = 32  # deeper nesting is a configuration mistake, and keeps recursion far from Python's limit
_INT_RANGES = {
    "tinyint": (-(2**7), 2**7 - 1),
    "smallint": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


class GlueTypeError(ValueError):
    """A column type the connector cannot read (syntax error, unknown or unsupported type)."""


@dataclass(frozen=True)
class GlueType:
    """One node of a column type: a scalar (``kind`` = its base type), an ``array`` (``element``) or a
    ``struct`` (``fields``, in declaration order)."""

    kind: str
    text: str
    element: GlueType | None = None
    fields: tuple[tuple[str, GlueType], ...] = ()

    @property
    def is_complex(self) -> bool:
        return self.kind in ("array", "struct")

    @property
    def has_text(self) -> bool:
        """Whether any leaf is a string (what the PII detectors scan and masking rewrites)."""
        if self.kind == "string":
            return True
        if self.element is not None:
            return self.element.has_text
        return any(t.has_text for _, t in self.fields)

    def text_paths(self, prefix: str = "") -> Iterator[str]:
        """The paths of the string leaves (``author.name``, ``tags[]``), for docs and lineage."""
        if self.kind == "string":
            yield prefix
        elif self.element is not None:
            yield from self.element.text_paths(f"{prefix}[]")
        for name, t in self.fields:
            yield from t.text_paths(f"{prefix}.{name}" if prefix else name)


def parse_type(text: str) -> GlueType:
    """The tree of a Glue type string; raises ``GlueTypeError`` naming the position and the problem."""
    if not isinstance(text, str):
        raise GlueTypeError(f"a column type must be a string, not {type(text).__name__}")
    parser = _Parser(text)
    result = parser.type(0)
    parser.skip_space()
    if parser.pos != len(text):
        raise parser.error("unexpected text after the type")
    return result


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, why: str) -> GlueTypeError:
        return GlueTypeError(f"type {self.text!r}: {why} at position {self.pos}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def expect(self, char: str) -> None:
        self.skip_space()
        if not self.text.startswith(char, self.pos):
            raise self.error(f"expected {char!r}")
        self.pos += 1

    def type(self, depth: int) -> GlueType:
        if depth > MAX_DEPTH:
            raise self.error(f"nested deeper than {MAX_DEPTH} levels")
        self.skip_space()
        start = self.pos
        param = _PARAMETERISED.match(self.text, self.pos)
        if param:
            self.pos = param.end()
            base = "string" if param.group(1) else "double"
            return GlueType(base, param.group(0))
        word = _IDENT.match(self.text, self.pos)
        if not word:
            raise self.error("expected a type name")
        name = word.group(0).lower()
        self.pos = word.end()
        if name == "array":
            self.expect("<")
            element = self.type(depth + 1)
            self.expect(">")
            return GlueType("array", self.text[start : self.pos], element=element)
        if name == "struct":
            self.expect("<")
            fields: list[tuple[str, GlueType]] = []
            while True:
                self.skip_space()
                field = _IDENT.match(self.text, self.pos)
                if not field:
                    raise self.error("expected a struct field name")
                if field.group(0) in (f for f, _ in fields):
                    raise self.error(f"struct field {field.group(0)!r} is declared twice")
                self.pos = field.end()
                self.expect(":")
                fields.append((field.group(0), self.type(depth + 1)))
                self.skip_space()
                if self.text.startswith(",", self.pos):
                    self.pos += 1
                    continue
                self.expect(">")
                return GlueType("struct", self.text[start : self.pos], fields=tuple(fields))
        if name == "map":
            raise GlueTypeError(
                f"type {self.text!r}: map<…> is not supported by the connector (its keys are data that "
                "cannot be masked safely); use array<struct<key:string,value:…>>"
            )
        if name in SCALAR_TYPES:
            return GlueType(name, name)
        self.pos = start
        raise self.error(
            f"unknown type {name!r} (use {', '.join(SCALAR_TYPES)}, varchar(n), char(n), decimal(p,s), "
            "array<…> or struct<name:type,…>)"
        )


# ------------------------------------------------------------------------------------- validation


def convert(
    value: Any, gtype: GlueType, *, from_text: bool = False, path: str = ""
) -> tuple[Any, str | None]:
    """``value`` typed for ``gtype``, or ``(None, reason)``; the reason starts with the nested path
    (``'author.tags[2]': expected a string, got a number 5``) when the problem is below the top level.

    ``from_text``: the value is a CSV cell; scalars are converted from text and a complex value must be
    the JSON text of the array or object. ``None`` inside a complex value is a missing value (allowed:
    Glue's nested fields are nullable).
    """
    if gtype.is_complex and from_text:
        if not isinstance(value, str):
            return None, _at(path, f"expected JSON text, got {json_type(value)}")
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            return None, _at(path, f"invalid JSON in the cell at column {exc.colno}: {exc.msg}")
    if gtype.kind == "array":
        assert gtype.element is not None
        if not isinstance(value, list):
            return None, _at(path, f"expected an array, got {json_type(value)} {show(value)}")
        out_list: list[Any] = []
        for index, item in enumerate(value):
            if item is None:
                out_list.append(None)
                continue
            converted, problem = convert(item, gtype.element, path=f"{path}[{index}]")
            if problem:
                return None, problem
            out_list.append(converted)
        return out_list, None
    if gtype.kind == "struct":
        if not isinstance(value, dict):
            return None, _at(path, f"expected an object, got {json_type(value)} {show(value)}")
        declared = dict(gtype.fields)
        unknown = [k for k in value if k not in declared]
        if unknown:
            names = ", ".join(repr(k) for k in unknown)
            return None, _at(path, f"unexpected field(s) not in the struct: {names}")
        out: dict[str, Any] = {}
        for name, ftype in gtype.fields:
            raw = value.get(name)
            sub = f"{path}.{name}" if path else name
            if raw is None:
                out[name] = None
                continue
            converted, problem = convert(raw, ftype, path=sub)
            if problem:
                return None, problem
            out[name] = converted
        return out, None
    converted, problem = _scalar(value, gtype.kind, from_text)
    return converted, _at(path, problem) if problem else None


def _at(path: str, problem: str) -> str:
    return f"{path!r}: {problem}" if path else problem


def _scalar(value: Any, kind: str, from_text: bool) -> tuple[Any, str | None]:
    shown = show(value)
    if kind == "string":
        if isinstance(value, str):
            return value, None
        return None, f"expected a string, got {json_type(value)} {shown}"
    if kind in _INT_RANGES:
        if isinstance(value, str) and from_text:
            try:
                value = int(value.strip())
            except ValueError:
                return None, f"expected an integer, got {shown}"
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"expected an integer, got {json_type(value)} {shown}"
        low, high = _INT_RANGES[kind]
        if not low <= value <= high:
            return None, f"{value} is out of range for {kind}"
        return value, None
    if kind in ("double", "float"):
        if isinstance(value, str) and from_text:
            try:
                value = float(value.strip())
            except ValueError:
                return None, f"expected a number, got {shown}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"expected a number, got {json_type(value)} {shown}"
        if not math.isfinite(value):
            return None, f"expected a finite number, got {shown}"
        return float(value), None
    if kind == "boolean":
        if isinstance(value, str) and from_text:
            lowered = value.strip().lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE, None
            return None, f"expected a boolean, got {shown}"
        if isinstance(value, bool):
            return value, None
        return None, f"expected a boolean, got {json_type(value)} {shown}"
    if not isinstance(value, str):
        return None, f"expected an ISO-8601 {kind} string, got {json_type(value)} {shown}"
    try:
        if kind == "date":
            date.fromisoformat(value.strip())
        else:
            datetime.fromisoformat(value.strip())
    except ValueError:
        return None, f"expected an ISO-8601 {kind}, got {shown}"
    return value.strip(), None


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def show(value: Any, limit: int = 40) -> str:
    # Reasons name the offending value briefly; the full raw record is kept next to the reason.
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
