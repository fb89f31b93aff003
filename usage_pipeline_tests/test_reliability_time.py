"""Time discipline under real runs (rung 5, both engines): a ThousandEyes billing-period rollover
(the 5th, 08:00Z), Workato day windows on both DST days of America/Los_Angeles, a pipeline clock
minutes ahead of or behind the vendor's, and a server's HTTP-date Retry-After read by a host
whose clock is off.

Proves: every hourly tick lands in the period the vendor reported at that moment (the hour after
the rollover starts from zero in the new period), even when our clock disagrees with the
vendor's by minutes (the tick is ours, the period is theirs); a DST day window is 23 or 25
hours of buckets, from local midnight to local midnight in UTC, in its local month; and the
marts equal a clean replay after all of it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from reliability_support import Harness, all_logs, figures  # noqa: F401 (fixtures)

from usage_pipeline import http, soak
from usage_pipeline.errors import RetryBudgetExceeded
from usage_pipeline.sandbox import SandboxServer
from usage_pipeline.sources import workato


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# (sandbox time, pipeline clock skew, partition our tick pulls, the period the vendor answers with);
# all in the past: Dagster checks partition keys against the real clock
TE_TICKS = [
    # the last hour of the Aug 5 → Sep 5 period
    (utc(2026, 9, 5, 7, 30), timedelta(0), "2026-09-05-06:00", (utc(2026, 8, 5, 8), utc(2026, 9, 5, 8))),
    # 30 minutes into the new period: zero hours used so far
    (utc(2026, 9, 5, 8, 30), timedelta(0), "2026-09-05-07:00", (utc(2026, 9, 5, 8), utc(2026, 10, 5, 8))),
    (utc(2026, 9, 5, 9, 10), timedelta(0), "2026-09-05-08:00", (utc(2026, 9, 5, 8), utc(2026, 10, 5, 8))),
    # our clock 3 minutes behind the vendor's, across the next rollover: our tick, their period
    (utc(2026, 10, 5, 8, 1), timedelta(minutes=-3), "2026-10-05-06:00", (utc(2026, 10, 5, 8), utc(2026, 11, 5, 8))),
    # our clock 3 minutes ahead, just before the following one: still the old period
    (utc(2026, 11, 5, 7, 59), timedelta(minutes=3), "2026-11-05-07:00", (utc(2026, 10, 5, 8), utc(2026, 11, 5, 8))),
]


def test_thousandeyes_ticks_across_rollovers_keep_the_vendors_period_even_with_a_skewed_clock(
        warehouse, tmp_path, monkeypatch, request, all_logs, figures):
    pipeline = Harness(warehouse=warehouse, tmp_path=tmp_path, monkeypatch=monkeypatch, request=request)
    try:
        for at, skew, _key, _period in TE_TICKS:
            assert pipeline.at(at).run(only=["thousandeyes"], skew=skew).ok
        pipeline.build_models()
        rows = warehouse.query(
            "select partition_key, period_start, period_end, used, observed_at from marts.fct_units_used "
            "where vendor = 'thousandeyes' and account_id = '1234' and unit = 'cloud_units' order by partition_key")
        facts = {key: (start, end, used, observed) for key, start, end, used, observed in rows}
        assert sorted(facts) == [key for _, _, key, _ in TE_TICKS]
        for at, skew, key, period in TE_TICKS:
            start, end, used, observed = facts[key]
            assert (start, end) == period, key
            assert observed == at + skew  # observed on our clock: the partition and observed_at agree
        assert facts["2026-09-05-07:00"][2] == 0 < facts["2026-09-05-08:00"][2] < facts["2026-09-05-06:00"][2]
        verdict = pipeline.verify(caplog=all_logs)
        figures.add(verdict)
        verdict.assert_clean()
    finally:
        pipeline.close()


# admin-zone day → (hours, first bucket start, last bucket end, local month start) in America/Los_Angeles
DST_DAYS = {
    "2026-03-07": (24, utc(2026, 3, 7, 8), utc(2026, 3, 8, 8), utc(2026, 3, 1, 8)),
    "2026-03-08": (23, utc(2026, 3, 8, 8), utc(2026, 3, 9, 7), utc(2026, 3, 1, 8)),  # 02:00 → 03:00
    "2026-10-31": (24, utc(2026, 10, 31, 7), utc(2026, 11, 1, 7), utc(2026, 10, 1, 7)),
    "2026-11-01": (25, utc(2026, 11, 1, 7), utc(2026, 11, 2, 8), utc(2026, 11, 1, 7)),  # 01:00 twice
}


def test_workato_windows_on_both_dst_days_are_23_and_25_hours_from_local_midnight(
        warehouse, tmp_path, monkeypatch, request, all_logs, figures):
    pipeline = Harness(warehouse=warehouse, tmp_path=tmp_path, monkeypatch=monkeypatch, request=request)
    try:
        assert pipeline.backfill("workato", date(2026, 3, 7), date(2026, 3, 8)).ok
        assert pipeline.backfill("workato", date(2026, 10, 31), date(2026, 11, 1)).ok
        pipeline.build_models()
        rows = warehouse.query(
            "select partition_key, count(*), min(interval_start), max(interval_end), min(period_start), "
            "max(period_start) from marts.fct_workato_usage where grouping = 'workspace' and workspace_id = 3127 "
            "group by partition_key order by partition_key")
        assert {key: tuple(values) for key, *values in rows} == \
            {key: (hours, first, last, month, month) for key, (hours, first, last, month) in DST_DAYS.items()}
        # a tick on the fall-back day pulls the local days that are not final, by local date
        assert workato.tick_partition_keys(utc(2026, 11, 1, 12), timezone="America/Los_Angeles") == \
            ["2026-10-30", "2026-10-31", "2026-11-01"]
        verdict = pipeline.verify(caplog=all_logs)
        figures.add(verdict)
        verdict.assert_clean()
    finally:
        pipeline.close()


class SkewedHostClock(soak.VirtualClock):
    """A host whose clock is `skew` off the servers' (compressed time, as in the suite)."""

    def __init__(self, skew: timedelta) -> None:
        super().__init__()
        self.skew = skew

    def now_utc(self) -> datetime:
        return super().now_utc() + self.skew


@pytest.mark.parametrize("skew", [timedelta(minutes=-5), timedelta(minutes=5)], ids=["host_behind", "host_ahead"])
def test_an_http_date_retry_after_is_read_against_the_servers_clock_not_ours(skew):
    """A 1-second Retry-After written as an HTTP date is a 1-second wait, whatever our clock says.

    Reading the date against our own clock turns 5 minutes of skew into a 5-minute wait (beyond
    the 120 s budget: the call gives up) or into no wait at all. The response's Date header is
    the server's "now" to measure it from.
    """
    clock = SkewedHostClock(skew)
    with SandboxServer() as server:
        server.rate_clock = clock
        server.faults.add("terraform_enterprise:/api/v1/usage/bundle", "rate_limit", times=1, retry_after="date+1")
        session = http.Session.bearer("terraform_enterprise", server.base_url, server.tokens["terraform_enterprise"],
                                      clock=clock, limiter=clock.limiter("tfe", 1.0, 1))
        try:
            fetched = session.get("/api/v1/usage/bundle", endpoint="usage_bundle", account_id="tfe")
        except RetryBudgetExceeded as error:
            pytest.fail(f"a 1 s Retry-After with our clock {skew} off became: {error}")
        finally:
            session.close()
    assert fetched.status == 200 and fetched.stats.retries == 1
    backoff = [wait for wait in clock.waits if wait >= 0.9]  # the limiter's own waits are shorter
    assert len(backoff) == 1 and backoff[0] <= 2.5, clock.waits  # about 1 s, plus jitter
