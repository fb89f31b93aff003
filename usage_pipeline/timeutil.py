"""Time: the pipeline's clock and explicit per-vendor time parsers, always to UTC.

The clock is swappable (`use_clock`) so the demo, the soak and the tests can run "tomorrow's
tick" against the sandbox without waiting for tomorrow; production uses the system clock.
Vendor parsers live beside each source (`sources/<vendor>/parse.py`); the shared ones are here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol


class WallClock(Protocol):
    def now(self) -> datetime: ...


class _SystemWallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


_clock: WallClock = _SystemWallClock()


def utcnow() -> datetime:
    """The pipeline's current time (UTC, aware)."""
    return _clock.now()


@contextmanager
def use_clock(clock: WallClock) -> Iterator[WallClock]:
    """Run the pipeline on another clock (e.g. the sandbox's), restoring the old one after."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield clock
    finally:
        _clock = previous


_NANOS = re.compile(r"(\.\d{6})\d+")


def parse_iso_utc(value: str) -> datetime:
    """ISO 8601 / RFC 3339 with `Z` or any offset, nanoseconds truncated to microseconds → UTC.

    Python keeps microseconds; the 7th-9th fractional digits are dropped (truncation, not rounding).
    """
    text = _NANOS.sub(r"\1", value.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no offset; refusing to guess its zone")
    return parsed.astimezone(UTC)


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def floor_day(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


ONE_HOUR = timedelta(hours=1)
ONE_DAY = timedelta(days=1)
