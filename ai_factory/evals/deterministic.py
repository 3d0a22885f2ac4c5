"""The deterministic assertions of the evaluation harness: text, JSON, JSON Schema, latency and cost.

Standard library only, and only ``model`` from this package: ``ai-factory eval`` and the canary Lambda
(which ships this module and ``model`` in its asset) check outputs with the same code.

JSON Schema support is a dependency-free subset (see ``SCHEMA_KEYWORDS``): the suite loader rejects
schemas that use anything else, so a schema is never silently half-checked.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from .model import Assertion, AssertionResult, CaseOutput

REASON_TEXT_LIMIT = 80  # characters of expected/actual text quoted in a reason


def _result(assertion: Assertion, passed: bool, score: float | None, reason: str) -> AssertionResult:
    return AssertionResult(
        type=assertion.type, passed=passed, score=score, reason=reason, hard_fail=assertion.hard_fail
    )


def _short(text: str, limit: int = REASON_TEXT_LIMIT) -> str:
    """``repr`` of the text, cut to ``limit`` characters so reasons stay readable."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _equals(a: Assertion, out: CaseOutput) -> AssertionResult:
    # Surrounding whitespace is noise (models add trailing newlines); everything else must match.
    expected, actual = str(a.value).strip(), out.text.strip()
    if actual == expected:
        return _result(a, True, None, f"output equals {_short(expected)}")
    return _result(a, False, None, f"output {_short(actual)} does not equal {_short(expected)}")


def _contains(a: Assertion, out: CaseOutput) -> AssertionResult:
    needle = str(a.value)
    at = out.text.find(needle)
    if at >= 0:
        return _result(a, True, None, f"output contains {_short(needle)} (at character {at})")
    return _result(a, False, None, f"output does not contain {_short(needle)}")


def _icontains(a: Assertion, out: CaseOutput) -> AssertionResult:
    needle = str(a.value)
    if needle.casefold() in out.text.casefold():
        return _result(a, True, None, f"output contains {_short(needle)} (ignoring case)")
    return _result(a, False, None, f"output does not contain {_short(needle)} (ignoring case)")


def _not_contains(a: Assertion, out: CaseOutput) -> AssertionResult:
    needle = str(a.value)
    at = out.text.find(needle)
    if at < 0:
        return _result(a, True, None, f"output does not contain {_short(needle)}")
    return _result(a, False, None, f"output contains {_short(needle)} (at character {at})")


def _regex(a: Assertion, out: CaseOutput) -> AssertionResult:
    match = re.search(str(a.value), out.text)
    if match:
        return _result(
            a, True, None, f"output matches /{a.value}/: {_short(match.group(0))} at {match.start()}"
        )
    return _result(a, False, None, f"output does not match /{a.value}/")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(text: str) -> tuple[Any, str | None]:
    try:
        # Python's json accepts NaN and Infinity; JSON (and the apps parsing this output) do not.
        return json.loads(text, parse_constant=_reject_constant), None
    except ValueError as exc:
        return None, str(exc)


def _is_json(a: Assertion, out: CaseOutput) -> AssertionResult:
    value, error = _parse_json(out.text)
    if error is None:
        return _result(a, True, None, f"output is valid JSON ({_json_kind(value)})")
    return _result(a, False, None, f"output is not valid JSON: {error}")


def _json_schema(a: Assertion, out: CaseOutput) -> AssertionResult:
    value, error = _parse_json(out.text)
    if error is not None:
        return _result(a, False, None, f"output is not valid JSON: {error}")
    errors = schema_errors(value, a.value)
    if not errors:
        return _result(a, True, None, "output is JSON that matches the schema")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return _result(a, False, None, "output does not match the schema: " + "; ".join(errors[:3]) + more)


def _latency(a: Assertion, out: CaseOutput) -> AssertionResult:
    limit = float(a.threshold if a.threshold is not None else math.inf)
    ok = out.latency_ms <= limit
    return _result(a, ok, None, f"latency {out.latency_ms:.0f} ms {'<=' if ok else '>'} limit {limit:g} ms")


def _cost(a: Assertion, out: CaseOutput) -> AssertionResult:
    limit = float(a.threshold if a.threshold is not None else math.inf)
    ok = out.cost_usd <= limit
    return _result(a, ok, None, f"cost ${out.cost_usd:.6f} {'<=' if ok else '>'} limit ${limit:g}")


# --- JSON Schema (subset) -----------------------------------------------------------------------------

_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
_ANNOTATIONS = ("$schema", "$id", "$comment", "title", "description", "default", "examples")
SCHEMA_KEYWORDS = (
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    *_ANNOTATIONS,
)
_COUNT_KEYWORDS = ("minItems", "maxItems", "minLength", "maxLength")
_BOUND_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def schema_problems(schema: Any, path: str = "#") -> list[str]:
    """Why ``schema`` is not a valid schema in the supported subset (empty when it is)."""
    if isinstance(schema, bool):
        return []
    if not isinstance(schema, Mapping):
        return [f"{path}: a schema must be a mapping or true/false"]
    problems: list[str] = []
    for key, value in schema.items():
        where = f"{path}/{key}"
        if key not in SCHEMA_KEYWORDS:
            problems.append(f"{where}: keyword not supported (supported: {', '.join(SCHEMA_KEYWORDS[:20])})")
        elif key == "type":
            names = value if isinstance(value, list) else [value]
            if not names or not all(isinstance(n, str) and n in _TYPES for n in names):
                problems.append(f"{where}: must be one of {', '.join(_TYPES)} or a list of them")
        elif key == "properties":
            if not isinstance(value, Mapping):
                problems.append(f"{where}: must be a mapping of name: schema")
            else:
                for name, sub in value.items():
                    problems.extend(schema_problems(sub, f"{where}/{name}"))
        elif key == "required":
            if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
                problems.append(f"{where}: must be a list of property names")
        elif key in ("additionalProperties", "items", "not"):
            problems.extend(schema_problems(value, where))
        elif key in ("anyOf", "oneOf", "allOf"):
            if not isinstance(value, list) or not value:
                problems.append(f"{where}: must be a non-empty list of schemas")
            else:
                for index, sub in enumerate(value):
                    problems.extend(schema_problems(sub, f"{where}/{index}"))
        elif key == "enum":
            if not isinstance(value, list) or not value:
                problems.append(f"{where}: must be a non-empty list")
        elif key in _COUNT_KEYWORDS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{where}: must be an integer >= 0")
        elif key in _BOUND_KEYWORDS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{where}: must be a number")
        elif key == "pattern":
            try:
                re.compile(value) if isinstance(value, str) else None
            except re.error as exc:
                problems.append(f"{where}: bad regex: {exc}")
            if not isinstance(value, str):
                problems.append(f"{where}: must be a regex string")
    return problems


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_type(value: Any, name: str) -> bool:
    kind = _json_kind(value)
    if name == "number":
        return kind in ("integer", "number")
    if name == "integer":
        return kind == "integer" or (kind == "number" and float(value).is_integer())
    return kind == name


def _json_equal(a: Any, b: Any) -> bool:
    # JSON equality: 1 == 1.0, but true != 1 (Python's == says True == 1).
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def schema_errors(value: Any, schema: Any, path: str = "$") -> list[str]:
    """Why ``value`` does not match ``schema`` (a valid schema of the subset); empty when it does."""
    if schema is True:
        return []
    if schema is False:
        return [f"{path}: no value is allowed here"]
    errors: list[str] = []
    kind = _json_kind(value)
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, n) for n in names):
            return [f"{path}: expected {' or '.join(names)}, got {kind}"]
    if "enum" in schema and not any(_json_equal(value, option) for option in schema["enum"]):
        errors.append(f"{path}: {json.dumps(value)[:40]} is not one of the allowed values")
    if "const" in schema and not _json_equal(value, schema["const"]):
        errors.append(f"{path}: must equal {json.dumps(schema['const'])[:40]}")
    if kind == "object":
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}: missing required property {name!r}")
        for name, item in value.items():
            if name in properties:
                errors.extend(schema_errors(item, properties[name], f"{path}.{name}"))
            elif "additionalProperties" in schema:
                extra = schema["additionalProperties"]
                if extra is False:
                    errors.append(f"{path}: unexpected property {name!r}")
                else:
                    errors.extend(schema_errors(item, extra, f"{path}.{name}"))
    if kind == "array":
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{path}: needs at least {schema['minItems']} items, has {len(value)}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: allows at most {schema['maxItems']} items, has {len(value)}")
        if "items" in schema:
            for index, item in enumerate(value):
                errors.extend(schema_errors(item, schema["items"], f"{path}[{index}]"))
    if kind == "string":
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: does not match /{schema['pattern']}/")
    if kind in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} is less than the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} is more than the maximum {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{path}: {value} must be more than {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            errors.append(f"{path}: {value} must be less than {schema['exclusiveMaximum']}")
    for sub in schema.get("allOf", []):
        errors.extend(schema_errors(value, sub, path))
    if "anyOf" in schema and not any(not schema_errors(value, sub, path) for sub in schema["anyOf"]):
        errors.append(f"{path}: matches none of the anyOf schemas")
    if "oneOf" in schema:
        matches = sum(1 for sub in schema["oneOf"] if not schema_errors(value, sub, path))
        if matches != 1:
            errors.append(f"{path}: matches {matches} of the oneOf schemas (needs exactly 1)")
    if "not" in schema and not schema_errors(value, schema["not"], path):
        errors.append(f"{path}: matches a schema it must not match")
    return errors


DETERMINISTIC_CHECKS: dict[str, Callable[[Assertion, CaseOutput], AssertionResult]] = {
    "equals": _equals,
    "contains": _contains,
    "icontains": _icontains,
    "not-contains": _not_contains,
    "regex": _regex,
    "is-json": _is_json,
    "json-schema": _json_schema,
    "latency_ms": _latency,
    "cost_usd": _cost,
}
"""The assertion types that need no model: checked from the output alone."""


def check(assertion: Assertion, output: CaseOutput) -> AssertionResult:
    """Check ``output`` against a deterministic ``assertion``; never raises (a surprise is a failure)."""
    if output.error is not None:
        return _result(assertion, False, None, f"the call failed: {output.error}")
    checker = DETERMINISTIC_CHECKS.get(assertion.type)
    if checker is None:
        return _result(assertion, False, None, f"not a deterministic assertion type: {assertion.type!r}")
    try:
        return checker(assertion, output)
    except Exception as exc:
        return _result(assertion, False, None, f"could not evaluate: {type(exc).__name__}: {exc}")
