"""Fallback routing over a route's ordered targets, with a circuit breaker per target.

A breaker is per execution environment (each Lambda instance learns on its own, within a few calls):
after ``threshold`` consecutive provider-side failures (throttling, 5xx, timeouts: ``retryable``
errors) a target is skipped for ``cooldown_s``; then one probe request is let through (half-open) and
its outcome closes or re-opens the breaker. A probe that ends any other way (the request was invalid, a
bug raised) releases the half-open slot without a verdict, so the next request probes again.

A throttled target gets one short retry with jitter before the chain moves on; when every target that
was called was throttled the client gets a 429 with ``Retry-After`` (its SDK backs off), not a 503.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from . import contract
from .config import ModelTarget, Route
from .errors import AllTargetsFailed, InvalidRequest
from .metering import cost_usd
from .provider_types import ProviderError, TokenUsage

T = TypeVar("T")
NO_USAGE = TokenUsage()

RETRY_AFTER_S = 5
THROTTLING_KINDS = frozenset({"ThrottlingException", "TooManyRequestsException"})
THROTTLE_RETRY_S = (0.05, 0.25)  # jittered pause before the one retry of a throttled target
# Bedrock's ValidationException messages when the prompt (plus max tokens) does not fit the model.
_CONTEXT_OVERFLOW = re.compile(
    r"too long|too many (input )?tokens|context (length|window)|exceeds? the (model's )?(maximum|context)",
    re.IGNORECASE,
)


class CircuitBreaker:
    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        with self._lock:
            state = self.state
            if state == "closed":
                return True
            if state == "half_open" and not self._probing:
                self._probing = True  # exactly one probe while half-open
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._probing = 0, None, False

    def release(self) -> None:
        """End a call that says nothing about the target's health: a half-open probe slot is freed."""
        with self._lock:
            self._probing = False

    def record_failure(self) -> bool:
        """Returns True when this failure opened (or re-opened) the breaker."""
        with self._lock:
            self._failures += 1
            was_probe, self._probing = self._probing, False
            if was_probe or self._failures >= self.threshold:
                self._opened_at = self._clock()
                return True
            return False


# Failures after the model started processing the request, so Bedrock may have billed its input: a
# timeout, or the model's own timeout or stream error. Throttling, validation and access errors are
# refused before any inference and bill nothing.
BILLED_FAILURE_KINDS = frozenset({"Timeout", "ModelTimeoutException", "ModelStreamErrorException"})


@dataclass
class RouteOutcome(Generic[T]):
    result: T
    target: ModelTarget
    attempts: int
    failures: list[str] = field(default_factory=list)  # "<target>: <reason>" for each target passed over
    breaker_opened: list[str] = field(default_factory=list)
    failed_usage: TokenUsage = NO_USAGE  # tokens failed calls were billed for (metered too)
    failed_cost_usd: float = 0.0
    estimated_failures: int = 0  # failed attempts whose usage is the gateway's estimate

    @property
    def fell_back(self) -> bool:
        return self.attempts > 1 or bool(self.failures)


class RouteFailed(AllTargetsFailed):
    def __init__(
        self,
        message: str,
        attempts: int,
        failures: list[str],
        breaker_opened: list[str],
        *,
        throttled: bool = False,
        failed_usage: TokenUsage = NO_USAGE,
        failed_cost_usd: float = 0.0,
        estimated_failures: int = 0,
    ) -> None:
        super().__init__(message, headers={"Retry-After": str(RETRY_AFTER_S)})
        self.estimated_failures = estimated_failures
        self.attempts = attempts
        self.failures = failures
        self.breaker_opened = breaker_opened
        self.failed_usage = failed_usage
        self.failed_cost_usd = failed_cost_usd
        if throttled:  # every target called was throttled: a rate limit the client should back off from
            self.status, self.type, self.code = 429, "rate_limit_error", contract.RATE_LIMIT_EXCEEDED_CODE


def _add(a: TokenUsage, b: TokenUsage) -> TokenUsage:
    return TokenUsage(
        a.input + b.input, a.output + b.output, a.cache_read + b.cache_read, a.cache_write + b.cache_write
    )


def client_error(exc: ProviderError) -> InvalidRequest:
    """The 400 for a request the model refused as invalid; a prompt too long for the model is
    ``context_length_exceeded`` (the code OpenAI clients and agent frameworks look for to trim history)."""
    if _CONTEXT_OVERFLOW.search(exc.message):
        return InvalidRequest(
            f"The conversation is too long for the model: {exc.message}",
            param="messages",
            code="context_length_exceeded",
        )
    return InvalidRequest(f"The model rejected the request: {exc.message}", code="model_validation_error")


class Router:
    def __init__(
        self,
        threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._threshold, self._cooldown_s, self._clock = threshold, cooldown_s, clock
        self.sleep = sleep
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def breaker(self, target: ModelTarget) -> CircuitBreaker:
        breaker = self._breakers.get(target.name)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.setdefault(
                    target.name, CircuitBreaker(self._threshold, self._cooldown_s, self._clock)
                )
        return breaker

    def call(
        self,
        route: Route,
        fn: Callable[[ModelTarget], T],
        latest_start: float | None = None,
        unfit: Callable[[ModelTarget], str | None] | None = None,
        estimate_input: Callable[[], int] | None = None,
    ) -> RouteOutcome[T]:
        """Try each target in order until one answers.

        ``unfit(target)`` names why a target cannot serve this request (a capability it lacks); such
        targets are passed over without a call, and when none is fit the request is a 400. A client-fault
        error (the request is invalid for the model) from the first target called is the client's 400;
        from a fallback after the targets before it failed for availability, it only means that fallback
        cannot serve, and the chain moves on (the client's request was fine for its primary model). No
        target is started after ``latest_start`` (a clock value), so the chain ends within its deadline.
        An attempt that failed after the model started working (``BILLED_FAILURE_KINDS``) without
        reporting usage is metered with ``estimate_input()`` input tokens, counted as estimated.
        """
        failures: list[str] = []
        opened: list[str] = []
        unfit_reasons: list[str] = []
        attempts = 0
        throttled_only = True
        billed, billed_cost, estimated = TokenUsage(), 0.0, 0
        for target in route.targets:
            reason = unfit(target) if unfit is not None else None
            if reason is not None:
                unfit_reasons.append(f"{target.name}: {reason}")
                continue
            if latest_start is not None and attempts and self._clock() > latest_start:
                failures.append(f"{target.name}: not tried, request deadline")
                continue
            breaker = self.breaker(target)
            if not breaker.allow():
                failures.append(f"{target.name}: circuit open")
                continue
            retried = False
            while True:
                attempts += 1
                try:
                    result = fn(target)
                except ProviderError as exc:
                    usage = exc.usage
                    if usage is None and exc.kind in BILLED_FAILURE_KINDS and estimate_input is not None:
                        usage, estimated = TokenUsage(input=estimate_input()), estimated + 1
                    if usage is not None:
                        billed = _add(billed, usage)
                        billed_cost += cost_usd(usage, target.prices)
                    if exc.kind in THROTTLING_KINDS and not retried and self._may_start(latest_start):
                        retried = True
                        self.sleep(random.uniform(*THROTTLE_RETRY_S))
                        continue
                    if exc.client_fault:
                        breaker.release()  # says nothing about the target's health
                        if not failures:  # no target before it failed: the request is at fault
                            raise client_error(exc) from exc
                        failures.append(f"{target.name}: cannot serve this request ({exc.message[:120]})")
                        throttled_only = False
                        break
                    if exc.retryable:
                        if breaker.record_failure():
                            opened.append(target.name)
                    else:
                        breaker.release()  # configuration or access problem: not the provider's health
                    throttled_only = throttled_only and exc.kind in THROTTLING_KINDS
                    failures.append(f"{target.name}: {exc.kind}")
                    break
                except BaseException:
                    breaker.release()  # a bug or an interrupted call: never leave a probe slot taken
                    raise
                breaker.record_success()
                passed_over = failures + unfit_reasons  # recorded, and a served non-primary is a fallback
                return RouteOutcome(
                    result, target, attempts, passed_over, opened, billed, billed_cost, estimated
                )
        if unfit_reasons and attempts == 0 and not failures:
            raise InvalidRequest(
                f"No model behind '{route.alias}' can serve this request: {'; '.join(unfit_reasons)}.",
                code="unsupported_by_model",
            )
        failures.extend(unfit_reasons)
        raise RouteFailed(
            f"Every model for '{route.alias}' failed or is paused after repeated failures "
            f"({'; '.join(failures)}). Retry after {RETRY_AFTER_S} s.",
            attempts,
            failures,
            opened,
            throttled=attempts > 0 and throttled_only,
            failed_usage=billed,
            failed_cost_usd=billed_cost,
            estimated_failures=estimated,
        )

    def _may_start(self, latest_start: float | None) -> bool:
        return latest_start is None or self._clock() <= latest_start
