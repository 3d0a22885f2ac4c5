"""Construct IDs derived from names: ``support-bot`` -> ``SupportBot``."""

from __future__ import annotations

import re


def camel(name: str) -> str:
    """``name`` in CamelCase, every run of characters other than letters and digits a word boundary."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)
