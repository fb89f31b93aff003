"""Test doubles for the HTTP layer: a fake clock, edge-of-range randomness, a scripted transport.

They live here, not in production modules (STYLE.md §9.5); `http.Clock` is the protocol they follow.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

SANDBOX_EPOCH = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # the sandbox's default "now" too


class FakeClock:
    """A clock that moves only when told to or when something sleeps on it: tests never sleep."""

    def __init__(self, start: datetime = SANDBOX_EPOCH, *, advance_on_sleep: bool = True) -> None:
        self._start = start
        self._advance_on_sleep = advance_on_sleep
        self._elapsed = 0.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return 1_000.0 + self._elapsed

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if self._advance_on_sleep:
                self._elapsed += max(0.0, seconds)

    def now_utc(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._elapsed += seconds

    @property
    def slept_s(self) -> float:
        return sum(s for s in self.sleeps if s > 0)


class EdgeRandom(random.Random):
    """Always picks one end of a range, so a test can pin a jitter bound."""

    def __init__(self, edge: str = "low") -> None:
        super().__init__(0)
        self.edge = edge

    def uniform(self, a: float, b: float) -> float:
        return a if self.edge == "low" else b


Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class ScriptedTransport(httpx.MockTransport):
    """Answers requests from a script, in order, and keeps every request it saw."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        super().__init__(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.steps:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if callable(step) and not isinstance(step, httpx.Response):
            return step(request)
        return step
