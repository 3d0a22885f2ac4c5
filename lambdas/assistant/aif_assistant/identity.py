"""Who is asking: the verified user's claims, and the clearance their groups grant.

API Gateway's Cognito User Pools authorizer verifies the ID token (signature, issuer, audience, expiry)
before the backend runs and hands the token's claims over in ``requestContext.authorizer.claims``; the
local sign-in stub puts its claims in the same place, so this module has one input in both modes.

A user's clearance is the highest clearance of the groups they are in (``clearance_groups`` maps a
Cognito group, or a federated IdP group mapped onto one, to ``public`` .. ``restricted``). A user in no
mapped group has no clearance and is refused (403): access is granted by group membership, never by
default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aif_gateway.contract import CLEARANCE_LEVELS
from aif_gateway.errors import Forbidden, Unauthorized

GROUPS_CLAIM = "cognito:groups"
# Federated users: the IdP's group claim, mapped onto this custom attribute by the identity provider's
# attribute mapping (``GovernedAssistant``), arrives in the ID token beside Cognito's own groups.
FEDERATED_GROUPS_CLAIM = "custom:groups"
GROUP_PATTERN = re.compile(r"^[\w\s+=,.@-]{1,128}$")


class NoClearance(Forbidden):
    """403: the user is signed in but in no group that grants a clearance."""

    code = "no_clearance"


@dataclass(frozen=True)
class User:
    """A signed-in user as the backend sees them."""

    subject: str
    name: str
    groups: tuple[str, ...]
    clearance: str


def parse_groups(raw: Any) -> tuple[str, ...]:
    """The groups claim in any of the shapes it arrives in: a JSON list (the token itself), or the string
    API Gateway's REST authorizer flattens it to (``"a,b"`` or ``"[a b]"``)."""
    if raw is None:
        return ()
    if isinstance(raw, list | tuple):
        items = [str(g) for g in raw]
    else:
        items = re.split(r"[,\s]+", str(raw).strip().strip("[]"))
    return tuple(sorted({g.strip() for g in items if g.strip()}))


def clearance_for(groups: tuple[str, ...], clearance_groups: dict[str, str]) -> str | None:
    """The highest clearance any of ``groups`` grants; None when none of them is mapped."""
    levels = [CLEARANCE_LEVELS.index(clearance_groups[g]) for g in groups if g in clearance_groups]
    return CLEARANCE_LEVELS[max(levels)] if levels else None


def user_from_event(event: dict[str, Any], clearance_groups: dict[str, str]) -> User:
    """The user the edge verified; 401 without verified claims, 403 without a clearance."""
    context = event.get("requestContext") or {}
    authorizer = context.get("authorizer") or {}
    claims = authorizer.get("claims") if isinstance(authorizer, dict) else None
    if not isinstance(claims, dict) or not claims.get("sub"):
        raise Unauthorized("Sign in first: this request carries no verified identity.", code="not_signed_in")
    groups = tuple(
        sorted(
            set(parse_groups(claims.get(GROUPS_CLAIM)))
            | set(parse_groups(claims.get(FEDERATED_GROUPS_CLAIM)))
        )
    )
    clearance = clearance_for(groups, clearance_groups)
    name = str(claims.get("email") or claims.get("cognito:username") or claims["sub"])
    if clearance is None:
        mapped = ", ".join(sorted(clearance_groups)) or "none configured"
        raise NoClearance(
            f"User {name} is in no group that grants access to the assistant (groups: "
            f"{', '.join(groups) or 'none'}; groups with access: {mapped}). Ask your administrator.",
        )
    return User(str(claims["sub"]), name, groups, clearance)
