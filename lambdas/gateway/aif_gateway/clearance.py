"""Data clearance at request time: which route targets may receive the calling feature's data.

A key carries its feature's clearance (the most sensitive classification the feature handles); every
target carries its catalog entry's ``max_classification`` (the most sensitive it may receive). A target
whose ceiling is below the clearance is **skipped**, like a target that lacks a capability: the rest of
the chain still serves, and the audit record names the skipped target and why. When no target of the
route may receive the data the request is refused with a 403 that names every target and its ceiling.
``ModelCatalog.clearance_violations`` is the synth-time form of the same rule (a feature's routes
against its clearance); this request-time check holds whatever was deployed, e.g. when the catalog
changed under a deployed key.

A key without a recorded clearance (created before keys carried one) is treated as ``restricted``, the
most sensitive level: it can only reach targets cleared for everything until its feature re-issues it.
"""

from __future__ import annotations

from collections.abc import Callable

from .config import CLASSIFICATIONS, ModelTarget, Route
from .errors import Forbidden
from .records import ApiKeyRecord

UNRECORDED_CLEARANCE = "restricted"


class ClearanceRefused(Forbidden):
    code = "classification_not_allowed"


def level(classification: str) -> int:
    """The rank of a classification; an unknown one ranks as the most sensitive (fail closed)."""
    try:
        return CLASSIFICATIONS.index(classification)
    except ValueError:
        return len(CLASSIFICATIONS)


def clearance_of(key: ApiKeyRecord) -> str:
    return key.clearance or UNRECORDED_CLEARANCE


def not_cleared(clearance: str, target: ModelTarget) -> str | None:
    """Why ``target`` may not receive data of ``clearance`` (None: it may)."""
    if level(clearance) <= level(target.max_classification):
        return None
    return f"may receive up to {target.max_classification} data, not {clearance}"


def cleared_targets(key: ApiKeyRecord, route: Route) -> Callable[[ModelTarget], str | None]:
    """The router's ``unfit`` check for the key's clearance; raises ``ClearanceRefused`` (403) when no
    target of ``route`` may receive the feature's data."""
    clearance = clearance_of(key)
    refused = [(t, reason) for t in route.targets if (reason := not_cleared(clearance, t)) is not None]
    if len(refused) == len(route.targets):
        names = "; ".join(
            f"{t.name} ({t.provider}) may receive up to {t.max_classification}" for t, _ in refused
        )
        raise ClearanceRefused(
            f"API key {key.key_id} ({key.team}/{key.feature}) has clearance '{clearance}': no model behind "
            f"'{route.alias}' may receive {clearance} data ({names}).",
            param="model",
        )
    return lambda target: not_cleared(clearance, target)
