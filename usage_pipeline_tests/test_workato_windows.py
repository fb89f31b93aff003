"""Workato admin-zone time (rung 1, pure): day windows on DST days and half-hour zones, the
`from`/`to` format, billing periods, and which windows a tick re-pulls (the finality rule)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from usage_pipeline.sources.workato import assets, constants
from usage_pipeline.sources.workato.windows import (
    Window,
    billing_period,
    day_window,
    format_admin_time,
    is_final,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("day, zone, start, hours", [
    # ordinary day: PST is UTC-8
    ("2026-01-15", "America/Los_Angeles", utc(2026, 1, 15, 8), 24),
    # spring forward in Los Angeles: 02:00 never happens, a 23-hour day
    ("2026-03-08", "America/Los_Angeles", utc(2026, 3, 8, 8), 23),
    # fall back in Los Angeles: 01:00 happens twice, a 25-hour day starting at PDT midnight
    ("2026-11-01", "America/Los_Angeles", utc(2026, 11, 1, 7), 25),
    # Berlin springs forward at 02:00 CET on the last Sunday of March: 23 hours
    ("2026-03-29", "Europe/Berlin", utc(2026, 3, 28, 23), 23),
    # Berlin falls back at 03:00 CEST on the last Sunday of October: 25 hours
    ("2026-10-25", "Europe/Berlin", utc(2026, 10, 24, 22), 25),
    # half-hour zone, no DST: the day starts at 18:30 UTC the evening before
    ("2026-03-08", "Asia/Kolkata", datetime(2026, 3, 7, 18, 30, tzinfo=UTC), 24),
    # quarter-hour zone: the grid is not even half-hourly
    ("2026-06-01", "Asia/Kathmandu", datetime(2026, 5, 31, 18, 15, tzinfo=UTC), 24),
])
def test_day_window_is_the_admin_zone_day_in_utc(day, zone, start, hours):
    window = day_window(day, zone)
    assert window.start == start
    assert window.end - window.start == timedelta(hours=hours)
    assert window.hours == hours


@pytest.mark.parametrize("day, zone", [
    ("2026-03-08", "America/Los_Angeles"), ("2026-11-01", "America/Los_Angeles"),
    ("2026-03-29", "Europe/Berlin"), ("2026-10-25", "Europe/Berlin"), ("2026-03-08", "Asia/Kolkata"),
    # Santiago changes clocks at midnight: the day starts at 01:00 local when midnight is skipped
    ("2026-09-06", "America/Santiago"), ("2026-04-05", "America/Santiago"),
])
def test_day_window_matches_the_dagster_partition_window(day, zone):
    window = assets.window_for(assets.partitions_for(zone), day)
    assert window == day_window(day, zone)


def test_dagster_window_wall_clock_difference_is_not_the_duration():
    # Why every duration here is measured in UTC: same-zone subtraction says 24 h on a 25-hour day.
    dagster_window = assets.partitions_for("America/Los_Angeles").time_window_for_partition_key("2026-11-01")
    assert dagster_window.end - dagster_window.start == timedelta(hours=24)
    assert assets.window_for(assets.partitions_for("America/Los_Angeles"), "2026-11-01").hours == 25


@pytest.mark.parametrize("at, zone, text", [
    (utc(2026, 11, 1, 7), "America/Los_Angeles", "2026-11-01T00:00:00.000-07:00"),
    # the repeated 01:00: the second one carries the PST offset
    (utc(2026, 11, 1, 9), "America/Los_Angeles", "2026-11-01T01:00:00.000-08:00"),
    (utc(2026, 3, 8, 10), "America/Los_Angeles", "2026-03-08T03:00:00.000-07:00"),
    (datetime(2026, 3, 7, 18, 30, tzinfo=UTC), "Asia/Kolkata", "2026-03-08T00:00:00.000+05:30"),
    (datetime(2026, 3, 7, 18, 30, 0, 123456, tzinfo=UTC), "Asia/Kolkata", "2026-03-08T00:00:00.123+05:30"),
    (utc(2026, 10, 24, 22), "Europe/Berlin", "2026-10-25T00:00:00.000+02:00"),
    (utc(2026, 6, 1), "UTC", "2026-06-01T00:00:00.000+00:00"),
])
def test_format_admin_time_gives_local_time_with_explicit_offset(at, zone, text):
    assert format_admin_time(at, zone) == text


def test_format_admin_time_refuses_naive_datetimes():
    with pytest.raises(ValueError, match="naive"):
        format_admin_time(datetime(2026, 1, 1), "UTC")


@pytest.mark.parametrize("at, zone, start, end", [
    # 23:30 PDT on Oct 31 is still October in the admin zone, though November in UTC
    (utc(2026, 11, 1, 6, 30), "America/Los_Angeles", utc(2026, 10, 1, 7), utc(2026, 11, 1, 7)),
    # November in LA: starts in PDT, ends in PST
    (utc(2026, 11, 1, 7), "America/Los_Angeles", utc(2026, 11, 1, 7), utc(2026, 12, 1, 8)),
    (utc(2026, 12, 31, 23), "Europe/Berlin", utc(2026, 12, 31, 23), utc(2027, 1, 31, 23)),
    (datetime(2026, 2, 28, 18, 29, tzinfo=UTC), "Asia/Kolkata",
     datetime(2026, 1, 31, 18, 30, tzinfo=UTC), datetime(2026, 2, 28, 18, 30, tzinfo=UTC)),
])
def test_billing_period_is_the_calendar_month_in_the_admin_zone(at, zone, start, end):
    assert billing_period(at, zone) == Window(start, end)


def test_billing_period_follows_another_anchor_day():
    period = billing_period(utc(2026, 11, 3, 12), "UTC", anchor_day=15)
    assert (period.start, period.end) == (utc(2026, 10, 15), utc(2026, 11, 15))
    with pytest.raises(ValueError, match="1..28"):
        billing_period(utc(2026, 11, 3), "UTC", anchor_day=31)


def test_a_window_is_final_48_hours_after_it_closes():
    window = day_window("2026-11-18", "UTC")
    assert not is_final(window, utc(2026, 11, 20, 23, 59))
    assert is_final(window, utc(2026, 11, 21))
    assert constants.FINAL_AFTER == timedelta(hours=48)


@pytest.mark.parametrize("now, zone, keys", [
    # 02:00 PST on Nov 20: today (open), yesterday, the day before (closed 26 h ago)
    (utc(2026, 11, 20, 10), "America/Los_Angeles", ["2026-11-18", "2026-11-19", "2026-11-20"]),
    # the same instant is already Nov 20 afternoon in Kolkata
    (utc(2026, 11, 20, 10), "Asia/Kolkata", ["2026-11-18", "2026-11-19", "2026-11-20"]),
    # 23:30 UTC on Nov 20 is Nov 21 00:30 in Berlin: Nov 18 closed 48.5 h ago and is final
    (utc(2026, 11, 20, 23, 30), "Europe/Berlin", ["2026-11-19", "2026-11-20", "2026-11-21"]),
    # 48 real hours, not two calendar days: at 23:30 PST on Nov 2, after the 25-hour Nov 1,
    # Oct 31 (closed at 00:00 PDT Nov 1) is 48.5 h closed, so final an hour before local midnight
    (utc(2026, 11, 3, 7, 30), "America/Los_Angeles", ["2026-11-01", "2026-11-02"]),
    (utc(2026, 11, 3, 6, 30), "America/Los_Angeles", ["2026-10-31", "2026-11-01", "2026-11-02"]),
    # before the first partition there is nothing to pull
    (utc(2022, 6, 1), "UTC", []),
])
def test_tick_partition_keys_returns_every_window_that_is_not_final(now, zone, keys):
    assert assets.tick_partition_keys(now, zone) == keys


def test_tick_partition_keys_are_partitions_dagster_accepts():
    partitions = assets.partitions_for("America/Los_Angeles")
    now = utc(2026, 11, 20, 10)
    with dg.instance_for_test():
        existing = set(partitions.get_partition_keys(current_time=now))
    assert set(assets.tick_partition_keys(now, "America/Los_Angeles")) <= existing
    # end_offset=1: today's still-open window is a partition, tomorrow's is not
    assert "2026-11-20" in existing and "2026-11-21" not in existing


def test_partitions_start_and_zone():
    partitions = assets.partitions_for("Europe/Berlin")
    assert partitions.timezone == "Europe/Berlin"
    assert partitions.start.date() == date.fromisoformat(constants.PARTITIONS_START)
    with pytest.raises(Exception):
        assets.partitions_for("Mars/Olympus_Mons")
