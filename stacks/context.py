"""Reading the app's context (``cdk.json`` or ``-c key=value``) the same way in every stack."""

from __future__ import annotations

from constructs import Construct


def context_flag(scope: Construct, key: str, default: bool, *, given: bool | None = None) -> bool:
    """``given`` if not None, else the boolean context value ``key`` (``true``/``false``, any case),
    else ``default``. Anything else is refused with a message that names the key."""
    if given is not None:
        return given
    value = scope.node.try_get_context(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ValueError(f"Context '{key}' must be true or false, got {value!r}.")


def context_list(scope: Construct, key: str) -> list[str]:
    """The context value ``key`` as a list of strings: a JSON list (``cdk.json``) or a comma-separated
    string (``-c key=a,b``); empty when unset."""
    value = scope.node.try_get_context(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return [str(v) for v in value]
    raise ValueError(f"Context '{key}' must be a list of strings or a comma-separated string, got {value!r}.")
