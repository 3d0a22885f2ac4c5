"""Reading one raw file into records: decoding, JSON lines / CSV parsing and validation against the dataset.

Nothing is dropped silently. Every input record ends up either in ``ParsedFile.records`` (valid, typed) or
in ``ParsedFile.rejects`` with a precise reason and its raw text; a file that cannot be read at all
(wrong encoding, binary, empty, unknown format, CSV header that does not match the table) gets a
``file_error`` and goes to quarantine whole.

Pure functions over bytes: no AWS calls, stdlib only (the Lambda has no third-party packages).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from aif_connector.glue_types import SCALAR_TYPES, GlueType, GlueTypeError, convert, json_type, parse_type

# Scalar Glue column types (``glue_types`` also reads varchar/char/decimal, ``array<…>`` and ``struct<…>``).
COLUMN_TYPES = SCALAR_TYPES
MASKING_MODES = ("redact", "hash", "tokenize")
FORMATS = ("jsonl", "csv")
# File suffix -> format; ``.json`` files are read as JSON lines (one object per line).
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
DEFAULT_MAX_LINE_BYTES = 1_048_576


class SpecError(ValueError):
    """The connector's dataset configuration is invalid (a deployment bug, not a data problem)."""


@dataclass(frozen=True)
class Column:
    """One column of the curated table.

    :param pii: the whole value is personal data (e.g. a name column): masked even when no detector
        finds anything in it.
    :param masking: masking mode for this column (``redact``, ``hash``, ``tokenize``), or ``"none"`` to
        keep it as is (no detection). Default: the dataset's mode.
    """

    name: str
    type: str = "string"
    required: bool = False
    pii: bool = False
    masking: str | None = None

    @cached_property
    def glue_type(self) -> GlueType:
        """The parsed type (raises ``GlueTypeError`` for a type the connector cannot read)."""
        return parse_type(self.type)

    @property
    def base_type(self) -> str:
        """The type values are checked as: ``varchar(10)`` -> ``string``, ``decimal(9,2)`` -> ``double``,
        ``array<…>`` -> ``array``, ``struct<…>`` -> ``struct``."""
        return self.glue_type.kind

    @property
    def has_text(self) -> bool:
        """Whether the column holds strings anywhere (a string column, or string leaves when nested)."""
        return self.glue_type.has_text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "pii": self.pii,
            "masking": self.masking,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Column:
        column = cls(
            name=str(raw["name"]),
            type=str(raw.get("type", "string")),
            required=bool(raw.get("required", False)),
            pii=bool(raw.get("pii", False)),
            masking=raw.get("masking"),
        )
        try:
            column.glue_type  # noqa: B018 - parsed (and cached) here so a bad type fails at load time
        except GlueTypeError as exc:
            raise SpecError(f"column {column.name!r}: {exc}") from exc
        if column.masking is not None and column.masking not in (*MASKING_MODES, "none"):
            raise SpecError(f"column {column.name!r}: masking {column.masking!r} is not a masking mode")
        if column.pii and column.masking == "none":
            raise SpecError(f"column {column.name!r}: a pii column cannot have masking 'none'")
        return column


@dataclass(frozen=True)
class DatasetSpec:
    """What the connector knows about its dataset (staged as ``connector_config.json`` next to the code)."""

    name: str
    database: str
    table: str
    columns: tuple[Column, ...]
    masking: str = "hash"
    pii_kinds: tuple[str, ...] | None = None  # None: every kind the detectors know
    partition_key: str = "dt"
    classification: str = "internal"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES

    def __post_init__(self) -> None:
        if not self.columns:
            raise SpecError(f"dataset {self.name!r}: columns: at least one column is required")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise SpecError(f"dataset {self.name!r}: columns: a column name is used twice")
        if self.partition_key in names:
            raise SpecError(f"dataset {self.name!r}: partition key {self.partition_key!r} is also a column")
        if self.masking not in MASKING_MODES:
            raise SpecError(f"dataset {self.name!r}: masking {self.masking!r} is not one of {MASKING_MODES}")
        if self.max_line_bytes < 1:
            raise SpecError(f"dataset {self.name!r}: max_line_bytes must be positive")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column_masking(self) -> dict[str, str]:
        """The effective masking mode of every column holding text, nested or not (``none``: not masked)."""
        return {c.name: c.masking or self.masking for c in self.columns if c.has_text}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "database": self.database,
            "table": self.table,
            "columns": [c.to_dict() for c in self.columns],
            "masking": self.masking,
            "pii_kinds": list(self.pii_kinds) if self.pii_kinds is not None else None,
            "partition_key": self.partition_key,
            "classification": self.classification,
            "max_line_bytes": self.max_line_bytes,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DatasetSpec:
        try:
            kinds = raw.get("pii_kinds")
            return cls(
                name=str(raw["name"]),
                database=str(raw["database"]),
                table=str(raw["table"]),
                columns=tuple(Column.from_dict(c) for c in raw["columns"]),
                masking=str(raw.get("masking", "hash")),
                pii_kinds=tuple(kinds) if kinds is not None else None,
                partition_key=str(raw.get("partition_key", "dt")),
                classification=str(raw.get("classification", "internal")),
                max_line_bytes=int(raw.get("max_line_bytes", DEFAULT_MAX_LINE_BYTES)),
            )
        except (KeyError, TypeError) as exc:
            raise SpecError(f"invalid dataset configuration: {exc!r}") from exc


@dataclass(frozen=True)
class Reject:
    """A record that failed: where it was, why, and its raw text (nothing is lost)."""

    line: int  # 1-based line of the record's first line in the file
    reason: str
    raw: str


@dataclass
class ParsedFile:
    """The outcome of reading one file."""

    format: str | None
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (line, record)
    rejects: list[Reject] = field(default_factory=list)
    file_error: str | None = None  # set: the whole file goes to quarantine with this reason

    @property
    def records_in(self) -> int:
        return len(self.records) + len(self.rejects)


def detect_format(key: str) -> str | None:
    """The file format from the object key's suffix (``.gz`` is not supported), or None."""
    lower = key.lower()
    for suffix, fmt in SUFFIX_FORMATS.items():
        if lower.endswith(suffix):
            return fmt
    return None


def decode(data: bytes) -> tuple[str | None, str | None]:
    """``(text, None)`` for UTF-8 (a BOM is dropped), else ``(None, reason)``."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, "the file is UTF-16 encoded (byte-order mark); only UTF-8 is accepted"
    if data.startswith(b"\x1f\x8b"):
        return None, "the file is gzip-compressed; upload it uncompressed"
    if b"\x00" in data[:8192]:
        return None, "the file is binary (NUL bytes), not UTF-8 text"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, (
            f"the file is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}) "
            f"cannot be decoded ({exc.reason}); re-export the file as UTF-8"
        )
    return text.removeprefix("\ufeff"), None


def parse_file(data: bytes, key: str, spec: DatasetSpec) -> ParsedFile:
    """Read one raw object: format by suffix, UTF-8 only, each record validated against ``spec``."""
    fmt = detect_format(key)
    if fmt is None:
        suffixes = ", ".join(SUFFIX_FORMATS)
        return ParsedFile(
            None, file_error=f"unsupported file type {key.rsplit('/', 1)[-1]!r}: use {suffixes}"
        )
    if not data.strip():
        return ParsedFile(fmt, file_error="the file is empty" if not data else "the file has only whitespace")
    text, reason = decode(data)
    if text is None:
        return ParsedFile(fmt, file_error=reason)
    if fmt == "jsonl":
        return _parse_jsonl(text, spec)
    return _parse_csv(text, spec)


def _lines(text: str) -> list[str]:
    """Physical lines split on \\n, \\r\\n or \\r only, the way the csv module reads them (``str.splitlines``
    would also split on U+2028 and friends, which are valid inside JSON strings)."""
    return [line.rstrip("\r\n") for line in io.StringIO(text, newline="").readlines()]


def _too_long(raw: str, spec: DatasetSpec) -> str | None:
    size = len(raw.encode("utf-8"))
    if size > spec.max_line_bytes:
        return f"the record is {size} bytes, over the limit of {spec.max_line_bytes} bytes"
    return None


def _parse_jsonl(text: str, spec: DatasetSpec) -> ParsedFile:
    parsed = ParsedFile("jsonl")
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue  # a blank line is not a record
        too_long = _too_long(line, spec)
        if too_long:
            parsed.rejects.append(Reject(number, too_long, line))
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            reason = f"invalid JSON at column {exc.colno}: {exc.msg}"
            parsed.rejects.append(Reject(number, reason, line))
            continue
        if not isinstance(value, dict):
            reason = f"expected a JSON object, got {json_type(value)}"
            parsed.rejects.append(Reject(number, reason, line))
            continue
        record, problem = validate(value, spec)
        if problem:
            parsed.rejects.append(Reject(number, problem, line))
        else:
            parsed.records.append((number, record))
    return parsed


def _csv_rows(text: str) -> Iterator[tuple[int, int, list[str] | None, str | None]]:
    """``(first_line, last_line, fields | None, error | None)`` per CSV row (quoted newlines allowed)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, max(reader.line_num, start), None, str(exc)
            start = reader.line_num + 1
            continue
        yield start, reader.line_num, row, None
        start = reader.line_num + 1


def _parse_csv(text: str, spec: DatasetSpec) -> ParsedFile:
    parsed = ParsedFile("csv")
    lines = _lines(text)

    def raw(first: int, last: int) -> str:
        return "\n".join(lines[first - 1 : last])

    rows = _csv_rows(text)
    header: list[str] | None = None
    for first, _last, fields, error in rows:
        if fields is not None and not any(f.strip() for f in fields):
            continue  # blank line
        if error is not None or fields is None:
            return ParsedFile("csv", file_error=f"the CSV header (line {first}) cannot be read: {error}")
        header = [f.strip() for f in fields]
        break
    if header is None:
        return ParsedFile("csv", file_error="the CSV file has no header row")
    problem = _header_problem(header, spec)
    if problem:
        return ParsedFile("csv", file_error=f"the CSV header does not match the dataset: {problem}")

    for first, last, fields, error in rows:
        text_of_row = raw(first, last)
        if fields == []:
            continue  # an empty line is not a record; a row of spaces or bare commas is (and is checked)
        too_long = _too_long(text_of_row, spec)
        if too_long:
            parsed.rejects.append(Reject(first, too_long, text_of_row))
            continue
        if error is not None or fields is None:
            parsed.rejects.append(Reject(first, f"broken CSV row: {error}", text_of_row))
            continue
        if len(fields) != len(header):
            reason = f"the row has {len(fields)} fields, the header has {len(header)}"
            parsed.rejects.append(Reject(first, reason, text_of_row))
            continue
        # An empty CSV cell is a missing value.
        value = {name: (cell if cell != "" else None) for name, cell in zip(header, fields, strict=True)}
        record, problem = validate(value, spec, from_text=True)
        if problem:
            parsed.rejects.append(Reject(first, problem, text_of_row))
        else:
            parsed.records.append((first, record))
    return parsed


def _header_problem(header: Sequence[str], spec: DatasetSpec) -> str | None:
    problems = []
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        problems.append(f"duplicate columns {', '.join(duplicates)}")
    unknown = [h for h in header if h not in spec.column_names]
    if unknown:
        problems.append(f"unknown columns {', '.join(unknown)}")
    missing = [c.name for c in spec.columns if c.required and c.name not in header]
    if missing:
        problems.append(f"missing required columns {', '.join(missing)}")
    return "; ".join(problems) or None


def validate(
    value: Mapping[str, Any], spec: DatasetSpec, *, from_text: bool = False
) -> tuple[dict[str, Any], str | None]:
    """The record typed for the table's columns (missing optional columns -> None), or a reason.

    Undeclared fields are refused rather than dropped: they would reach the curated zone without a
    classification or masking decision. ``from_text``: values are CSV strings to convert.
    """
    unknown = [k for k in value if k not in spec.column_names]
    if unknown:
        return {}, f"unexpected field(s) not in the dataset: {', '.join(map(repr, unknown))}"
    out: dict[str, Any] = {}
    for column in spec.columns:
        raw = value.get(column.name)
        if raw is None:
            if column.required:
                return {}, f"field {column.name!r} is required"
            out[column.name] = None
            continue
        converted, problem = convert(raw, column.glue_type, from_text=from_text, path=column.name)
        if problem:
            return {}, f"field {problem}"
        out[column.name] = converted
    return out, None
