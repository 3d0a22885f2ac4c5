"""The feature gates of ``aif_gateway.quota`` in the usage table, shared by every gateway instance.

One item per feature and month: ``GATE#{team}#{feature}`` / ``MONTH#{YYYY-MM}`` with ``committed_usd``
(settled cost + reservations not yet settled), ``spent_usd``, ``in_flight``, ``admitted_at`` (epoch s of
the last admission), ``settled_requests`` and the current minute's ``minute``/``minute_requests``/
``minute_tokens``. A reservation is one ``UpdateItem``: atomic ``ADD``s under a condition that every
limit still holds with the claim (DynamoDB conditions cannot add, so each bound is computed here as
``limit - claim`` and compared). No transaction, so concurrent requests of one feature never conflict;
they serialise on the item, which takes about a thousand writes a second.

A condition that fails returns the item as it was (``ReturnValuesOnConditionCheckFailure``), which says
why: a new minute (the request opens it with a ``SET``; once a minute per feature, the only second write
in steady state), a slot leak (reset, then retry) or the limit that refuses (429).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aif_gateway.dynamo_store import (
    _aws_errors,
    _error_code,
    _n,
    _s,
    _to_float,
    _to_int,
    gate_key,
    make_client,
)
from aif_gateway.quota import Carry, Claim, GateState, Limits, QuotaExceeded, refusal, slots_leaked
from aif_gateway.records import StoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

_ATTEMPTS = 6  # races on the minute roll-over or a slot reset, then StoreError
_ADDS = "committed_usd :c, spent_usd :sp, in_flight :s, settled_requests :sr"


def gate_from_item(item: dict[str, Any] | None) -> GateState:
    if not item:
        return GateState()
    return GateState(
        committed_usd=_to_float(item.get("committed_usd")),
        spent_usd=_to_float(item.get("spent_usd")),
        minute=item.get("minute", {}).get("S", ""),
        minute_requests=_to_int(item.get("minute_requests")),
        minute_tokens=_to_int(item.get("minute_tokens")),
        in_flight=_to_int(item.get("in_flight")),
        settled_requests=_to_int(item.get("settled_requests")),
        admitted_at=_to_float(item.get("admitted_at")),
    )


class DynamoQuotaStore:
    """Gates in the usage table (``aif_gateway.quota.QuotaStore``)."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client
        self._minutes: dict[tuple[str, str, str], str] = {}  # the minute each gate was last seen in

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = make_client()
        return self._client

    def reserve(self, claim: Claim, limits: Limits, carry: Carry) -> None:
        gate = (claim.team, claim.feature, claim.month)
        # Refused even by an empty gate: decided here, because a missing item passes the conditions.
        alone = refusal(GateState(), claim, limits, carry)
        if alone is not None:
            raise QuotaExceeded(alone, GateState())
        new_minute = self._minutes.get(gate) != claim.minute
        for _ in range(_ATTEMPTS):
            old = self._try_reserve(claim, limits, carry, new_minute)
            if old is None:
                self._minutes[gate] = claim.minute
                return
            self._minutes[gate] = old.minute
            if old.minute != claim.minute:
                if old.minute > claim.minute:  # another instance's clock is ahead: count in its minute
                    claim = Claim(**{**claim.__dict__, "minute": old.minute})
                new_minute = old.minute < claim.minute
                if new_minute:
                    opened = GateState(**{**old.__dict__, "minute": ""})  # the minute counts start over
                    limit = refusal(opened, claim, limits, carry)
                    if limit == "concurrency" and slots_leaked(old, claim, limits):
                        self._reset_slots(claim, old)
                    elif limit is not None:
                        raise QuotaExceeded(limit, old)
                continue
            new_minute = False
            limit = refusal(old, claim, limits, carry)
            if limit == "concurrency" and slots_leaked(old, claim, limits):
                self._reset_slots(claim, old)
                continue
            if limit is not None:
                raise QuotaExceeded(limit, old)
            # The item changed between the write and the answer (another request): try again.
        raise StoreError(f"gate {gate} in {self.table_name} stayed contended after {_ATTEMPTS} attempts")

    def _try_reserve(self, claim: Claim, limits: Limits, carry: Carry, new_minute: bool) -> GateState | None:
        """One conditional update; None when admitted, else the item as it was."""
        values: dict[str, AttributeValueTypeDef] = {
            ":c": _n(round(claim.cost_usd + carry.committed_usd, 10)),
            ":sp": _n(round(carry.spent_usd, 10)),
            ":s": _n(1 + carry.slots),
            ":sr": _n(carry.requests),
            ":m": _s(claim.minute),
            ":now": _n(claim.now_s),
            ":cmax": _n(round(limits.monthly_budget_usd - claim.cost_usd - carry.committed_usd, 10)),
            ":smax": _n(limits.max_concurrency - 1 - carry.slots),
        }
        budget_ok = "(attribute_not_exists(committed_usd) OR committed_usd <= :cmax)"
        slots_ok = "(attribute_not_exists(in_flight) OR in_flight <= :smax)"
        if new_minute:
            values[":one"] = _n(1)
            values[":t"] = _n(claim.tokens)
            opened = "#minute = :m, minute_requests = :one, minute_tokens = :t, admitted_at = :now"
            update = f"ADD {_ADDS} SET {opened}"
            condition = f"(attribute_not_exists(#minute) OR #minute < :m) AND {budget_ok} AND {slots_ok}"
        else:
            tokens = claim.tokens + carry.tokens_for(claim.minute)
            values[":one"] = _n(1)
            values[":t"] = _n(tokens)
            values[":rmax"] = _n(limits.requests_per_minute - 1)
            values[":tmax"] = _n(limits.tokens_per_minute - tokens)
            update = f"ADD {_ADDS}, minute_requests :one, minute_tokens :t SET admitted_at = :now"
            condition = (
                f"#minute = :m AND {budget_ok} AND {slots_ok} AND minute_requests <= :rmax "
                "AND minute_tokens <= :tmax"
            )
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=gate_key(claim.team, claim.feature, claim.month),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#minute": "minute"},
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except _aws_errors() as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return gate_from_item(getattr(exc, "response", {}).get("Item"))
            raise StoreError(f"reserving on gate {claim.team}/{claim.feature} failed: {exc}") from exc
        return None

    def _reset_slots(self, claim: Claim, old: GateState) -> None:
        """Forget leaked slots, unless a request was admitted meanwhile (then the leak test is redone)."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=gate_key(claim.team, claim.feature, claim.month),
                UpdateExpression="SET in_flight = :zero",
                ConditionExpression="admitted_at = :seen",
                ExpressionAttributeValues={":zero": _n(0), ":seen": _n(old.admitted_at)},
            )
        except _aws_errors() as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise StoreError(f"resetting slots of {claim.team}/{claim.feature} failed: {exc}") from exc

    def apply(self, team: str, feature: str, month: str, carry: Carry) -> None:
        """Add settlements; the token correction only while its minute is still the gate's minute."""
        values: dict[str, AttributeValueTypeDef] = {
            ":c": _n(round(carry.committed_usd, 10)),
            ":sp": _n(round(carry.spent_usd, 10)),
            ":s": _n(carry.slots),
            ":sr": _n(carry.requests),
        }
        kwargs: dict[str, Any] = {}
        update = f"ADD {_ADDS}"
        if carry.tokens and carry.minute:
            values[":t"], values[":m"] = _n(carry.tokens), _s(carry.minute)
            kwargs = {
                "ConditionExpression": "#minute = :m",
                "ExpressionAttributeNames": {"#minute": "minute"},
            }
            update += ", minute_tokens :t"
        key = gate_key(team, feature, month)
        try:
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key=key,
                    UpdateExpression=update,
                    ExpressionAttributeValues=values,
                    **kwargs,
                )
            except _aws_errors() as exc:
                if not kwargs or _error_code(exc) != "ConditionalCheckFailedException":
                    raise
                for name in (":t", ":m"):
                    values.pop(name)
                self.client.update_item(
                    TableName=self.table_name,
                    Key=key,
                    UpdateExpression=f"ADD {_ADDS}",
                    ExpressionAttributeValues=values,
                )
        except _aws_errors() as exc:
            raise StoreError(f"settling on gate {team}/{feature} failed: {exc}") from exc

    def state(self, team: str, feature: str, month: str) -> GateState:
        try:
            resp = self.client.get_item(
                TableName=self.table_name, Key=gate_key(team, feature, month), ConsistentRead=True
            )
        except _aws_errors() as exc:
            raise StoreError(f"reading gate {team}/{feature} failed: {exc}") from exc
        return gate_from_item(resp.get("Item"))
