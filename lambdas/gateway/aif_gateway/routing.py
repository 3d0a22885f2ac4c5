"""Fallback routing over a route's ordered targets, with a circuit breaker per target.

A breaker is per execution environment (each Lambda instance learns on its own, within a few calls):
after ``threshold`` consecutive failures a target is skipped for ``cooldown_s``; then one probe
request is let through (half-open) and its outcome closes or re-opens the breaker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .config import ModelTarget, Route
from .errors import AllTargetsFailed, InvalidRequest
from .provider_types import ProviderError

T = TypeVar("T")

RETRY_AFTER_S = 5


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

    def record_failure(self) -> bool:
        """Returns True when this failure opened (or re-opened) the breaker."""
        with self._lock:
            self._failures += 1
            was_probe, self._probing = self._probing, False
            if was_probe or self._failures >= self.threshold:
                self._opened_at = self._clock()
                return True
            return False


@dataclass
class RouteOutcome(Generic[T]):
    result: T
    target: ModelTarget
    attempts: int
    failures: list[str] = field(default_factory=list)  # "<target>: <reason>" for each target passed over
    breaker_opened: list[str] = field(default_factory=list)

    @property
    def fell_back(self) -> bool:
        return self.attempts > 1 or bool(self.failures)


class RouteFailed(AllTargetsFailed):
    def __init__(self, message: str, attempts: int, failures: list[str], breaker_opened: list[str]) -> None:
        super().__init__(message, headers={"Retry-After": str(RETRY_AFTER_S)})
        self.attempts = attempts
        self.failures = failures
        self.breaker_opened = breaker_opened


class Router:
    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold, self._cooldown_s, self._clock = threshold, cooldown_s, clock
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
        self, route: Route, fn: Callable[[ModelTarget], T], latest_start: float | None = None
    ) -> RouteOutcome[T]:
        """Try each target in order until one answers. A client-fault error (the request is invalid for
        the model) stops at once with a 400; any other failure moves on to the next target. No target is
        started after ``latest_start`` (a clock value), so the chain ends within its deadline."""
        failures: list[str] = []
        opened: list[str] = []
        attempts = 0
        for target in route.targets:
            if latest_start is not None and attempts and self._clock() > latest_start:
                failures.append(f"{target.name}: not tried, request deadline")
                continue
            breaker = self.breaker(target)
            if not breaker.allow():
                failures.append(f"{target.name}: circuit open")
                continue
            attempts += 1
            try:
                result = fn(target)
            except ProviderError as exc:
                if exc.client_fault:
                    breaker.record_success()  # the model is healthy; the request is not
                    raise InvalidRequest(
                        f"The model rejected the request: {exc.message}", code="model_validation_error"
                    ) from exc
                if breaker.record_failure():
                    opened.append(target.name)
                failures.append(f"{target.name}: {exc.kind}")
                continue
            breaker.record_success()
            return RouteOutcome(result, target, attempts, failures, opened)
        raise RouteFailed(
            f"Every model for '{route.alias}' failed or is paused after repeated failures "
            f"({'; '.join(failures)}). Retry after {RETRY_AFTER_S} s.",
            attempts,
            failures,
            opened,
        )
