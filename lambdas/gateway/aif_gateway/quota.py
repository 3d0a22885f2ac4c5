"""Budgets and limits that hold across gateway instances: reserve before the model call, settle after.

Before a request reaches a model, the gateway *reserves* its worst case against the feature's shared
gate (one per feature and month, in the quota store every instance uses):

* the monthly budget: the worst-case cost (estimated input tokens x the route's highest input price +
  ``max_tokens`` x its highest output price);
* requests per minute: one request;
* tokens per minute: estimated input + ``max_tokens``;
* the concurrency cap: one slot.

The reservation is one atomic conditional update (DynamoDB ``ADD`` with a condition, no transaction; a
SQLite ``BEGIN IMMEDIATE`` locally): it is admitted only when every limit still holds *with* it, so N
requests in flight cannot all pass against the same remaining budget. When the request ends (answer,
error, timeout, disconnect) the reservation is *settled*: the difference between the reserved and the
real cost and tokens is given back and the slot freed. Settlements are applied off the request path:
folded into this instance's next reservation for the feature, or flushed by a background thread.

Overspend bound (docs/gateway.md): every admission keeps ``committed <= budget``, where committed is
settled cost + reserved cost of requests not yet settled. A request can only exceed its reservation by
``e`` (input under-estimate x input price, plus failed fallback attempts). So the month's spend is at
most ``budget + C x e`` where ``C`` is the number of requests in flight (or not yet settled) when the
last request was admitted, at most the concurrency cap. ``overspend_bound`` computes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, Protocol, get_args

from . import contract
from .access import BackgroundRefresher
from .config import Route
from .errors import BudgetExhausted, GatewayError, RateLimited
from .records import ApiKeyRecord, minute_of, month_of, next_month_start

log = logging.getLogger("aif_gateway")

Limit = Literal["budget", "requests_per_minute", "tokens_per_minute", "concurrency"]

# The OpenAI-shaped error code of each limit's 429 (docs/gateway.md, "What each 429 means").
LIMIT_CODES: dict[Limit, str] = {limit: contract.LIMIT_CODES[limit] for limit in get_args(Limit)}
# Output tokens reserved when neither the request (max_tokens) nor the catalog bounds the answer.
DEFAULT_RESERVED_OUTPUT_TOKENS = 4096
# A slot counted in flight whose feature admitted nothing for this long is a leak (an instance that
# crashed mid-request): the cap resets it. Longer than any request may last (route total, 10 min).
DEFAULT_SLOT_EXPIRY_S = 15 * 60.0


@dataclass(frozen=True)
class Claim:
    """What one request asks of its feature's gate."""

    team: str
    feature: str
    month: str  # "YYYY-MM"
    minute: str  # "YYYY-MM-DDTHH:MM"
    now_s: float  # epoch seconds (slot expiry)
    cost_usd: float
    tokens: int


@dataclass(frozen=True)
class Limits:
    """A feature's limits (from its key record)."""

    monthly_budget_usd: float
    requests_per_minute: int
    tokens_per_minute: int
    max_concurrency: int
    slot_expiry_s: float = DEFAULT_SLOT_EXPIRY_S

    @classmethod
    def of(cls, key: ApiKeyRecord) -> Limits:
        return cls(key.monthly_budget_usd, key.rate_limit_rpm, key.tokens_per_minute, key.max_concurrency)


@dataclass
class Carry:
    """Settlements an instance has not yet applied to a gate: deltas added with its next update."""

    committed_usd: float = 0.0  # real minus reserved cost (usually negative: a release)
    spent_usd: float = 0.0  # real cost of settled requests (the gate's running spend)
    minute: str = ""  # the minute ``tokens`` belongs to; a past minute's correction is dropped
    tokens: int = 0  # real minus reserved tokens in ``minute``
    slots: int = 0  # freed slots (negative)
    requests: int = 0  # settled requests

    def empty(self) -> bool:
        return not (self.committed_usd or self.spent_usd or self.tokens or self.slots or self.requests)

    def merge(self, other: Carry) -> None:
        self.committed_usd += other.committed_usd
        self.spent_usd += other.spent_usd
        self.slots += other.slots
        self.requests += other.requests
        if other.minute == self.minute or not self.minute:
            self.minute, self.tokens = other.minute or self.minute, self.tokens + other.tokens
        elif other.minute > self.minute:  # keep the newer minute's correction only
            self.minute, self.tokens = other.minute, other.tokens

    def tokens_for(self, minute: str) -> int:
        return self.tokens if self.minute == minute else 0


@dataclass(frozen=True)
class GateState:
    """A gate as stored (what tests, benchmarks and the CLI read)."""

    committed_usd: float = 0.0
    spent_usd: float = 0.0
    minute: str = ""
    minute_requests: int = 0
    minute_tokens: int = 0
    in_flight: int = 0
    settled_requests: int = 0
    admitted_at: float = 0.0


class QuotaExceeded(Exception):
    """A limit refused the reservation (nothing was applied); ``state`` is the gate as it was."""

    def __init__(self, limit: Limit, state: GateState) -> None:
        super().__init__(limit)
        self.limit = limit
        self.state = state


class QuotaStore(Protocol):
    """Where the gates live, shared by every gateway instance (DynamoDB, SQLite, memory)."""

    def reserve(self, claim: Claim, limits: Limits, carry: Carry) -> None:
        """Atomically add ``claim`` and ``carry`` to the gate when every limit holds with them.

        Raises QuotaExceeded (nothing applied) naming the limit, or StoreError."""
        ...

    def apply(self, team: str, feature: str, month: str, carry: Carry) -> None:
        """Add settlements unconditionally (an atomic ADD). Raises StoreError."""
        ...

    def state(self, team: str, feature: str, month: str) -> GateState: ...


def refusal(state: GateState, claim: Claim, limits: Limits, carry: Carry) -> Limit | None:
    """Which limit the claim breaks on the gate ``state`` (None: it fits). One definition for every store."""
    same_minute = state.minute == claim.minute
    if state.committed_usd + carry.committed_usd + claim.cost_usd > limits.monthly_budget_usd + 1e-12:
        return "budget"
    if state.in_flight + carry.slots + 1 > limits.max_concurrency:
        return "concurrency"
    requests = state.minute_requests if same_minute else 0
    if requests + 1 > limits.requests_per_minute:
        return "requests_per_minute"
    tokens = (state.minute_tokens + carry.tokens_for(claim.minute)) if same_minute else 0
    if tokens + claim.tokens > limits.tokens_per_minute:
        return "tokens_per_minute"
    return None


def slots_leaked(state: GateState, claim: Claim, limits: Limits) -> bool:
    """True when slots are counted in flight but nothing was admitted for longer than any request lasts."""
    return state.in_flight > 0 and claim.now_s - state.admitted_at > limits.slot_expiry_s


def admitted(state: GateState, claim: Claim, limits: Limits, carry: Carry) -> GateState:
    """The gate after admitting ``claim`` with ``carry``; raises QuotaExceeded when a limit refuses.
    The one admission rule of the stores that hold a gate in one place (memory, SQLite); the DynamoDB
    store expresses the same rule as condition expressions."""
    if slots_leaked(state, claim, limits) and refusal(state, claim, limits, carry) == "concurrency":
        state = replace(state, in_flight=0)
    limit = refusal(state, claim, limits, carry)
    if limit is not None:
        raise QuotaExceeded(limit, state)
    same = state.minute == claim.minute
    return GateState(
        committed_usd=state.committed_usd + carry.committed_usd + claim.cost_usd,
        spent_usd=state.spent_usd + carry.spent_usd,
        minute=claim.minute,
        minute_requests=(state.minute_requests if same else 0) + 1,
        minute_tokens=(state.minute_tokens + carry.tokens_for(claim.minute) if same else 0) + claim.tokens,
        in_flight=max(0, state.in_flight + carry.slots) + 1,
        settled_requests=state.settled_requests + carry.requests,
        admitted_at=claim.now_s,
    )


def applied(state: GateState, carry: Carry) -> GateState:
    """The gate after adding settlements (a past minute's token correction is dropped)."""
    return replace(
        state,
        committed_usd=state.committed_usd + carry.committed_usd,
        spent_usd=state.spent_usd + carry.spent_usd,
        minute_tokens=state.minute_tokens + carry.tokens_for(state.minute),
        in_flight=max(0, state.in_flight + carry.slots),
        settled_requests=state.settled_requests + carry.requests,
    )


@dataclass(frozen=True)
class Estimate:
    """A request's worst case: what is reserved."""

    cost_usd: float
    tokens: int
    input_tokens: int
    output_tokens: int


def worst_case(route: Route, input_tokens: int, max_tokens: int | None) -> Estimate:
    """Input estimate x the route's highest input-side price + max output x its highest output price.

    Without ``max_tokens`` the answer is bounded by the largest catalog output limit of the route's
    targets, or ``DEFAULT_RESERVED_OUTPUT_TOKENS`` when the catalog knows none."""
    if max_tokens is None:
        limits = [t.capabilities.max_output_tokens for t in route.targets if t.capabilities.max_output_tokens]
        max_tokens = max(limits) if limits else DEFAULT_RESERVED_OUTPUT_TOKENS
    in_price = max(
        (max(t.prices.input, t.prices.cache_write, t.prices.cache_read) for t in route.targets), default=0.0
    )
    out_price = max((t.prices.output for t in route.targets), default=0.0)
    cost = (input_tokens * in_price + max_tokens * out_price) / 1_000_000
    return Estimate(cost, input_tokens + max_tokens, input_tokens, max_tokens)


def overspend_bound(in_flight: int, excess_per_request_usd: float) -> float:
    """The most a feature's month can exceed its budget: ``C x e`` (module docstring)."""
    return max(0, in_flight) * max(0.0, excess_per_request_usd)


@dataclass
class Reservation:
    """One admitted request's hold on its gate. ``settle`` is idempotent: call it on every exit path."""

    claim: Claim
    _gate: Gate
    settled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def settle(self, cost_usd: float, tokens: int) -> None:
        """Replace the reservation by the real cost and tokens and free the slot (first call only)."""
        with self._lock:
            if self.settled:
                return
            self.settled = True
        self._gate.settle(self, cost_usd, tokens)


class Gate:
    """This instance's side of the shared gates: reserves, settles and flushes pending settlements."""

    def __init__(
        self,
        store: QuotaStore,
        refresher: BackgroundRefresher | None = None,
        epoch: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._refresher = refresher or BackgroundRefresher()
        self._epoch = epoch
        self._pending: dict[tuple[str, str, str], Carry] = {}
        self._lock = threading.Lock()

    def reserve(self, key: ApiKeyRecord, now: datetime, estimate: Estimate) -> Reservation:
        """Admit the request or raise BudgetExhausted or RateLimited (429) naming the limit and when to retry.

        Raises StoreError when the store cannot be reached (the gateway answers 503)."""
        claim = Claim(
            key.team,
            key.feature,
            month_of(now),
            minute_of(now),
            self._epoch(),
            round(estimate.cost_usd, 10),
            estimate.tokens,
        )
        limits = Limits.of(key)
        gate_key = (claim.team, claim.feature, claim.month)
        carry = self._take(gate_key)
        try:
            self.store.reserve(claim, limits, carry)
        except QuotaExceeded as exc:
            self._put_back(gate_key, carry)
            raise _refused(exc.limit, key, now, estimate, limits) from None
        except BaseException:
            self._put_back(gate_key, carry)
            raise
        return Reservation(claim, self)

    def settle(self, reservation: Reservation, cost_usd: float, tokens: int) -> None:
        claim = reservation.claim
        carry = Carry(
            committed_usd=round(cost_usd - claim.cost_usd, 10),
            spent_usd=round(cost_usd, 10),
            minute=claim.minute,
            tokens=tokens - claim.tokens,
            slots=-1,
            requests=1,
        )
        gate_key = (claim.team, claim.feature, claim.month)
        self._put_back(gate_key, carry)
        self._refresher.submit(("gate", gate_key), lambda: self.flush(gate_key), again_if_running=True)

    def flush(self, gate_key: tuple[str, str, str] | None = None) -> None:
        """Apply pending settlements now (background thread; tests and shutdown call it directly)."""
        keys = [gate_key] if gate_key is not None else list(self._pending)
        for k in keys:
            carry = self._take(k)
            if carry.empty():
                continue
            try:
                self.store.apply(*k, carry)
            except BaseException:
                self._put_back(k, carry)  # the next reservation or flush carries it
                raise

    def pending(self) -> int:
        """Settlements not yet applied (slots still counted in flight by the store)."""
        with self._lock:
            return sum(-c.slots for c in self._pending.values())

    def _take(self, gate_key: tuple[str, str, str]) -> Carry:
        with self._lock:
            return self._pending.pop(gate_key, None) or Carry()

    def _put_back(self, gate_key: tuple[str, str, str], carry: Carry) -> None:
        if carry.empty():
            return
        with self._lock:
            current = self._pending.setdefault(gate_key, Carry())
            current.merge(carry)


def _refused(
    limit: Limit, key: ApiKeyRecord, now: datetime, estimate: Estimate, limits: Limits
) -> GatewayError:
    who = f"{key.team}/{key.feature}"
    if limit == "budget":
        reset = next_month_start(now)
        retry = int((reset - now).total_seconds())
        message = (
            f"The monthly budget of ${limits.monthly_budget_usd:,.2f} for {who} cannot cover this request's "
            f"worst case (${estimate.cost_usd:,.4f}: {estimate.input_tokens} input tokens estimated + "
            f"{estimate.output_tokens} max output tokens) on top of what is spent and reserved. Lower "
            f"max_tokens, or wait for the budget to reset on {reset:%Y-%m-%d} 00:00 UTC."
        )
    elif limit == "concurrency":
        retry = 1
        message = (
            f"{who} already has {limits.max_concurrency} requests in flight (its concurrency cap). "
            "Retry after 1 s."
        )
    else:
        retry = max(1, 60 - now.second)
        if limit == "requests_per_minute":
            message = (
                f"Rate limit of {limits.requests_per_minute} requests per minute for {who} reached. "
                f"Retry after {retry} s."
            )
        else:
            message = (
                f"Token limit of {limits.tokens_per_minute} tokens per minute for {who} reached (this "
                f"request reserves {estimate.tokens}: input estimate + max_tokens). Retry after {retry} s"
                " or lower max_tokens."
            )
    headers = {"Retry-After": str(retry), contract.LIMIT_HEADER: limit}
    if limit == "budget":
        return BudgetExhausted(message, headers=headers)
    return RateLimited(message, code=LIMIT_CODES[limit], headers=headers)
