"""The canary's assertion types: the cheap, deterministic subset of the eval harness's assertions.

Each assertion is a dict ``{"type", "value"}`` as written into ``canary_suites.json`` at synth time.
"""

from __future__ import annotations

import re
from typing import Any

SUPPORTED = ("equals", "contains", "icontains", "not-contains", "regex", "latency_ms")


def check(assertion: dict[str, Any], text: str, latency_ms: float) -> tuple[bool, str]:
    """Whether ``text`` (answered in ``latency_ms``) satisfies ``assertion``, and why not."""
    kind, value = assertion.get("type"), assertion.get("value")
    if kind == "equals":
        return text.strip() == str(value).strip(), f"expected exactly {str(value)[:80]!r}"
    if kind == "contains":
        return str(value) in text, f"missing {str(value)[:80]!r}"
    if kind == "icontains":
        return str(value).lower() in text.lower(), f"missing {str(value)[:80]!r} (any case)"
    if kind == "not-contains":
        return str(value) not in text, f"must not contain {str(value)[:80]!r}"
    if kind == "regex":
        return re.search(str(value), text) is not None, f"no match for /{str(value)[:80]}/"
    if kind == "latency_ms":
        limit = float(value) if isinstance(value, int | float | str) else 0.0
        return latency_ms <= limit, f"took {latency_ms:.0f} ms, limit {limit:.0f} ms"
    return False, f"unsupported assertion type {kind!r}"
