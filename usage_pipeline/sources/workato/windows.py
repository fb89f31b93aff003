"""Admin-zone time for Workato: request timestamps, billing periods and the finality rule.

Pure functions. The one rule: Workato reads and answers in the Embedded admin workspace's
time zone (API_CONTRACTS.md §3.4), so every instant we send carries that zone's explicit
offset, and every instant we keep is UTC. Durations are always measured between UTC
instants: subtracting two aware datetimes of the same zone in Python measures wall-clock
time (a 23-hour DST day would look like 24 hours).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from usage_pipeline.sources.workato import constants


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open [start, end) window in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a Window needs aware datetimes")
        if self.end <= self.start:
            raise ValueError(f"empty window {self.start.isoformat()} .. {self.end.isoformat()}")
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        object.__setattr__(self, "end", self.end.astimezone(UTC))

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600


def day_window(day: date | str, timezone: str) -> Window:
    """The admin-zone calendar day as a UTC window: 23, 24 or 25 hours long."""
    if isinstance(day, str):
        day = date.fromisoformat(day)
    return Window(local_midnight(day, timezone), local_midnight(day + timedelta(days=1), timezone))


def local_midnight(day: date, timezone: str) -> datetime:
    """The first instant of `day` in the zone (where a DST jump skips midnight, the first that exists)."""
    tz = zone(timezone)
    naive = datetime(day.year, day.month, day.day)
    candidate = naive.replace(tzinfo=tz)
    # zoneinfo maps a skipped wall time with the pre-jump offset, landing after the gap; the
    # day then starts at the jump itself, which is the earliest instant whose local date is `day`.
    while True:
        earlier = candidate.astimezone(UTC) - timedelta(minutes=15)
        if earlier.astimezone(tz).date() != day:
            return candidate.astimezone(UTC)
        candidate = earlier.astimezone(tz)


def format_admin_time(at: datetime, timezone: str) -> str:
    """`YYYY-MM-DDTHH:mm:ss.SSS±HH:MM` in the admin zone: the form Workato's `from`/`to` take."""
    if at.tzinfo is None:
        raise ValueError("refusing to format a naive datetime: its zone would be a guess")
    local = at.astimezone(zone(timezone))
    return f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond // 1000:03d}{format_offset(local.utcoffset())}"


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|z|[+-]\d{2}:?\d{2})?$")


def parse_admin_time(text: str, timezone: str) -> tuple[datetime, str | None]:
    """An admin-zone timestamp → (UTC instant, a note worth reporting or None); ValueError says why not.

    An explicit offset wins (and a note says when it is not the zone's own at that instant); a
    bare local time is placed in the zone, unless a DST change makes it ambiguous or skipped.
    """
    value = text.strip()
    if not _ISO.match(value):
        raise ValueError(f"{value[:40]!r} is not an ISO 8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1] in "Zz" else value)
    except ValueError:
        raise ValueError(f"{value[:40]!r} is not a valid timestamp") from None
    tz = zone(timezone)
    if parsed.tzinfo is None:
        early, late = parsed.replace(tzinfo=tz, fold=0), parsed.replace(tzinfo=tz, fold=1)
        if early.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != parsed:
            raise ValueError(f"{value!r} has no offset and does not exist in {timezone} (DST change); cannot place it")
        if early.utcoffset() != late.utcoffset():
            raise ValueError(f"{value!r} has no offset and occurs twice in {timezone} (DST change); cannot place it")
        note = f"the vendor sends times without an offset; they are read in WORKATO_TIMEZONE {timezone}"
        return early.astimezone(UTC), note
    at = parsed.astimezone(UTC)
    expected = at.astimezone(tz).utcoffset()
    if parsed.utcoffset() != expected and value[-1] not in "Zz":
        return at, (f"the vendor's times carry offset {format_offset(parsed.utcoffset())} where WORKATO_TIMEZONE "
                    f"{timezone} has {format_offset(expected)}: the admin workspace's zone seems to differ from "
                    "WORKATO_TIMEZONE (UTC values stay right; day windows will not align)")
    return at, None


def format_offset(offset: timedelta | None) -> str:
    minutes = int((offset or timedelta()).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def billing_period(at: datetime, timezone: str, *, anchor_day: int = constants.BILLING_ANCHOR_DAY) -> Window:
    """The billing period holding instant `at`: from the anchor day of one admin-zone month to the next.

    Anchor day 1 (the default) is the calendar month in the admin zone.
    """
    if not 1 <= anchor_day <= 28:
        raise ValueError(f"billing anchor day must be 1..28 (every month has it), got {anchor_day}")
    local = at.astimezone(zone(timezone))
    year, month = local.year, local.month
    if local.day < anchor_day:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    start = date(year, month, anchor_day)
    end = date(year + month // 12, month % 12 + 1, anchor_day)
    return Window(local_midnight(start, timezone), local_midnight(end, timezone))


def is_final(window: Window, now: datetime, *, final_after: timedelta = constants.FINAL_AFTER) -> bool:
    """A window is final once `final_after` has passed since it closed; until then each tick re-pulls it."""
    return now >= window.end + final_after


def is_open_or_settling(window: Window, now: datetime, *, final_after: timedelta = constants.FINAL_AFTER) -> bool:
    """Started, and not yet final: the windows a tick at `now` re-pulls."""
    return window.start <= now and not is_final(window, now, final_after=final_after)
