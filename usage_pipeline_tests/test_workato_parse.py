"""Workato usage parser (rung 1, pure): the inferred shape through FIELD_ALIASES, admin-zone
times to UTC on DST days and half-hour zones, `data: null`, unknown and missing fields."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from usage_pipeline.errors import PayloadError
from usage_pipeline.sources.workato.parse import (
    FIELD_ALIASES,
    USAGE_SCHEMA,
    REQUESTS_SCHEMA,
    PullContext,
    parse_batch,
    parse_usage,
)
from usage_pipeline.sources.workato.windows import day_window

FIXTURES = Path(__file__).parent / "fixtures" / "workato"
OBSERVED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
USAGE, REQUESTS = "staging.stg_workato__usage", "staging.stg_workato__requests"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def context(day: str = "2026-11-01", zone: str = "America/Los_Angeles", grouping: str = "workspace") -> PullContext:
    return PullContext(timezone=zone, window=day_window(day, zone), grouping=grouping, interval="hour",
                       id_kind="workspace_ids", ids=("3127",))


def run(payload: Any, ctx: PullContext | None = None, snapshot_id: str = "snap-1"):
    return parse_usage(payload, snapshot_id=snapshot_id, observed_at=OBSERVED, context=ctx or context())


def bucket(start: str, end: str, **numbers: Any) -> dict[str, Any]:
    counts = {"task_count": 10, "successful_job_count": 3, "failed_job_count": 1, "recipe_count": 2,
              "active_recipe_count": 1}
    return {"from": start, "to": end, **counts, **numbers}


def entry(*buckets: dict, **fields: Any) -> dict[str, Any]:
    return {"workspace_id": 3127, "external_id": "acme-prod", "workspace_name": "Acme", "recipe_id": None,
            "recipe_name": None, "folder_id": None, "folder_name": None, "intervals": list(buckets), **fields}


def hourly(day: str, zone: str) -> list[dict[str, Any]]:
    """Hour buckets of an admin-zone day, formatted by the standard library (not by our code)."""
    tz = ZoneInfo(zone)
    window = day_window(day, zone)
    out, at = [], window.start
    while at < window.end:
        nxt = at + timedelta(hours=1)
        out.append(bucket(at.astimezone(tz).isoformat(timespec="milliseconds"),
                          nxt.astimezone(tz).isoformat(timespec="milliseconds"), task_count=int(at.timestamp()) % 97))
        at = nxt
    return out


# ---------- the inferred shape


def test_design_sample_parses_to_one_utc_row():
    # DESIGN.md's sample; Pacific/Pitcairn is UTC-8 all year, so -08:00 is that zone's own offset
    parsed = run(fixture("usage_inferred.json"), context(zone="Pacific/Pitcairn"))
    (row,) = parsed.tables[USAGE]
    assert row["interval_start"] == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert row["interval_end"] == datetime(2026, 11, 1, 9, tzinfo=UTC)
    assert row["interval_start_local"] == "2026-11-01T00:00:00.000-08:00"
    assert (row["workspace_id"], row["external_id"], row["workspace_name"]) == (3127, "acme-prod", "Acme")
    assert (row["tasks"], row["successful_jobs"], row["failed_jobs"]) == (1200, 310, 4)
    assert (row["recipe_count"], row["active_recipe_count"]) == (14, 9)
    assert row["recipe_id"] is None and row["grouping"] == "workspace" and row["snapshot_id"] == "snap-1"
    assert parsed.warnings == ()
    pa.Table.from_pylist(parsed.tables[USAGE], schema=USAGE_SCHEMA)  # the staging types hold
    pa.Table.from_pylist(parsed.tables[REQUESTS], schema=REQUESTS_SCHEMA)


def test_offsets_that_disagree_with_workato_timezone_are_kept_and_reported():
    # At 08:00 UTC on Nov 1, Los Angeles is still on PDT (-07:00): the sample's -08:00 is not LA's
    parsed = run(fixture("usage_inferred.json"), context(zone="America/Los_Angeles"))
    assert parsed.tables[USAGE][0]["interval_start"] == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert any("-08:00" in w and "-07:00" in w and "WORKATO_TIMEZONE" in w for w in parsed.warnings)


@pytest.mark.parametrize("payload, entries, is_null", [
    ({"data": None}, 0, True),  # the vendor's "no usage"
    ({"data": []}, 0, False),
])
def test_no_usage_is_zero_rows_and_still_one_request_row(payload, entries, is_null):
    parsed = run(payload)
    assert parsed.tables[USAGE] == []
    (request,) = parsed.tables[REQUESTS]
    assert (request["entries"], request["usage_rows"], request["is_data_null"]) == (entries, 0, is_null)
    assert request["window_start"] == datetime(2026, 11, 1, 7, tzinfo=UTC)
    assert request["period_label"] == "2026-11"


# ---------- time zones


@pytest.mark.parametrize("day, zone, hours, first_start", [
    ("2026-03-08", "America/Los_Angeles", 23, datetime(2026, 3, 8, 8, tzinfo=UTC)),
    ("2026-11-01", "America/Los_Angeles", 25, datetime(2026, 11, 1, 7, tzinfo=UTC)),
    ("2026-03-29", "Europe/Berlin", 23, datetime(2026, 3, 28, 23, tzinfo=UTC)),
    ("2026-10-25", "Europe/Berlin", 25, datetime(2026, 10, 24, 22, tzinfo=UTC)),
    ("2026-03-08", "Asia/Kolkata", 24, datetime(2026, 3, 7, 18, 30, tzinfo=UTC)),
])
def test_dst_and_half_hour_days_give_contiguous_utc_hours(day, zone, hours, first_start):
    parsed = run({"data": [entry(*hourly(day, zone))]}, context(day, zone))
    rows = parsed.tables[USAGE]
    starts = [row["interval_start"] for row in rows]
    assert len(rows) == len(set(starts)) == hours
    assert starts[0] == first_start
    assert all(row["interval_end"] - row["interval_start"] == timedelta(hours=1) for row in rows)
    assert all(a["interval_end"] == b["interval_start"] for a, b in zip(rows, rows[1:]))
    assert rows[-1]["interval_end"] == day_window(day, zone).end
    assert parsed.warnings == ()


def test_repeated_fall_back_hour_becomes_two_utc_hours():
    # 01:00-02:00 happens twice on Nov 1 in Los Angeles; the offsets tell them apart
    payload = {"data": [entry(
        bucket("2026-11-01T01:00:00.000-07:00", "2026-11-01T01:00:00.000-08:00", task_count=5),
        bucket("2026-11-01T01:00:00.000-08:00", "2026-11-01T02:00:00.000-08:00", task_count=7),
    )]}
    rows = run(payload).tables[USAGE]
    assert [(r["interval_start"].hour, r["interval_end"].hour, r["tasks"]) for r in rows] == [(8, 9, 5), (9, 10, 7)]


def test_half_hour_zone_buckets_start_at_half_past_utc():
    payload = {"data": [entry(bucket("2026-03-08T09:00:00.000+05:30", "2026-03-08T10:00:00.000+05:30"))]}
    (row,) = run(payload, context("2026-03-08", "Asia/Kolkata")).tables[USAGE]
    assert row["interval_start"] == datetime(2026, 3, 8, 3, 30, tzinfo=UTC)


def test_zulu_times_are_accepted_without_an_offset_warning():
    payload = {"data": [entry(bucket("2026-11-01T08:00:00.000Z", "2026-11-01T09:00:00.000Z"))]}
    parsed = run(payload)
    assert parsed.tables[USAGE][0]["interval_start"] == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert parsed.warnings == ()


def test_an_inclusive_last_millisecond_end_is_the_next_bucket_start():
    payload = {"data": [entry(bucket("2026-11-01T00:00:00.000-07:00", "2026-11-01T00:59:59.999-07:00"))]}
    (row,) = run(payload).tables[USAGE]
    assert row["interval_end"] == datetime(2026, 11, 1, 8, tzinfo=UTC)


def test_times_without_offset_are_read_in_the_admin_zone_once_unambiguous():
    payload = {"data": [entry(bucket("2026-11-02T00:00:00.000", "2026-11-02T01:00:00.000"))]}
    parsed = run(payload, context("2026-11-02"))
    assert parsed.tables[USAGE][0]["interval_start"] == datetime(2026, 11, 2, 8, tzinfo=UTC)
    assert any("without an offset" in w for w in parsed.warnings)


@pytest.mark.parametrize("start, end, why", [
    ("2026-11-01T01:00:00.000", "2026-11-01T02:00:00.000", "occurs twice"),        # fall-back hour
])
def test_ambiguous_local_times_without_offset_are_refused(start, end, why):
    with pytest.raises(PayloadError, match=why):
        run({"data": [entry(bucket(start, end))]})


def test_skipped_local_times_without_offset_are_refused():
    payload = {"data": [entry(bucket("2026-03-08T02:30:00.000", "2026-03-08T03:00:00.000"))]}
    with pytest.raises(PayloadError, match="does not exist"):
        run(payload, context("2026-03-08"))


def test_buckets_outside_the_window_are_dropped_and_reported():
    payload = {"data": [entry(
        bucket("2026-11-01T23:00:00.000-08:00", "2026-11-02T00:00:00.000-08:00"),
        bucket("2026-11-02T00:00:00.000-08:00", "2026-11-02T01:00:00.000-08:00"),  # the next day's
    )]}
    parsed = run(payload)
    assert len(parsed.tables[USAGE]) == 1
    assert any("outside the requested window" in w for w in parsed.warnings)


def test_period_columns_follow_the_admin_month():
    # 23:00 PDT Oct 31 is Nov 1 06:00 UTC: October in the admin zone
    payload = {"data": [entry(bucket("2026-10-31T23:00:00.000-07:00", "2026-11-01T00:00:00.000-07:00"))]}
    (row,) = run(payload, context("2026-10-31")).tables[USAGE]
    assert row["period_label"] == "2026-10"
    assert (row["period_start"], row["period_end"]) == (datetime(2026, 10, 1, 7, tzinfo=UTC),
                                                        datetime(2026, 11, 1, 7, tzinfo=UTC))


# ---------- the alias table


def test_renamed_field_fails_then_parses_after_one_alias_change(monkeypatch):
    renamed = fixture("usage_renamed_task_field.json")
    with pytest.raises(PayloadError, match="'tasks' is missing"):
        run(renamed, context(zone="Pacific/Pitcairn"))
    monkeypatch.setitem(FIELD_ALIASES, "tasks", (*FIELD_ALIASES["tasks"], "tasks_consumed"))
    renamed_rows = run(renamed, context(zone="Pacific/Pitcairn")).tables[USAGE]
    original_rows = run(fixture("usage_inferred.json"), context(zone="Pacific/Pitcairn")).tables[USAGE]
    assert renamed_rows == original_rows


def test_every_vendor_spelling_in_the_alias_table_is_read():
    sample = fixture("usage_inferred.json")["data"][0]
    spelled = {"customer_id": 3127, "name": "Acme", "metrics": [{
        "start": "2026-11-01T00:00:00.000-08:00", "end": "2026-11-01T01:00:00.000-08:00", "task_usage": 1200,
        "recipes": 14, "active_recipes": 9, "successful_jobs": 310, "failed_jobs": 4}]}
    ctx = context(zone="Pacific/Pitcairn")
    a, b = run({"data": [sample]}, ctx).tables[USAGE][0], run({"data": [spelled]}, ctx).tables[USAGE][0]
    assert {k: a[k] for k in ("workspace_id", "workspace_name", "interval_start", "tasks", "recipe_count",
                              "active_recipe_count", "successful_jobs", "failed_jobs")} == \
           {k: b[k] for k in ("workspace_id", "workspace_name", "interval_start", "tasks", "recipe_count",
                              "active_recipe_count", "successful_jobs", "failed_jobs")}


def test_unknown_fields_are_reported_in_one_warning_that_repeats_identically():
    payload = {"data": [entry(bucket("2026-11-01T00:00:00.000-07:00", "2026-11-01T01:00:00.000-07:00",
                                     cost_cents=3), region="us"),
                        entry(bucket("2026-11-01T00:00:00.000-07:00", "2026-11-01T01:00:00.000-07:00",
                                     cost_cents=4), workspace_id=3128, region="eu")],
               "next_page": None}
    first = run(payload, snapshot_id="snap-1")
    second = run(payload, snapshot_id="snap-2")
    (warning,) = [w for w in first.warnings if "FIELD_ALIASES" in w]
    assert "response.next_page" in warning and "entry.region" in warning and "interval.cost_cents" in warning
    assert first.warnings == second.warnings  # same text: base reports it once per process
    assert len(first.tables[USAGE]) == 2


def test_a_flat_entry_with_its_own_from_and_to_is_one_bucket():
    flat = {"workspace_id": 3127, "from": "2026-11-01T00:00:00.000-07:00", "to": "2026-11-01T01:00:00.000-07:00",
            "task_count": 9, "successful_job_count": 2, "failed_job_count": 0}
    (row,) = run({"data": [flat]}).tables[USAGE]
    assert (row["tasks"], row["interval_start"]) == (9, datetime(2026, 11, 1, 7, tzinfo=UTC))


def test_entry_level_recipe_counts_serve_every_bucket():
    payload = {"data": [entry({"from": "2026-11-01T00:00:00.000-07:00", "to": "2026-11-01T01:00:00.000-07:00",
                               "task_count": 1, "successful_job_count": 1, "failed_job_count": 0},
                              recipe_count=6, active_recipe_count=2)]}
    (row,) = run(payload).tables[USAGE]
    assert (row["recipe_count"], row["active_recipe_count"]) == (6, 2)


# ---------- bad input, named


@pytest.mark.parametrize("remove, field, account", [
    (("intervals", 0, "task_count"), "tasks", "3127"),
    (("intervals", 0, "failed_job_count"), "failed_jobs", "3127"),
    (("intervals", 0, "from"), "interval_start", "3127"),
    (("workspace_id",), "workspace_id", "all_workspaces"),  # no workspace yet: the batch is named
])
def test_missing_required_field_names_field_account_and_snapshot(remove, field, account):
    payload = fixture("usage_inferred.json")
    target = payload["data"][0]
    for key in remove[:-1]:
        target = target[key]
    del target[remove[-1]]
    with pytest.raises(PayloadError) as caught:
        run(payload, context(zone="Pacific/Pitcairn"), snapshot_id="20261120T100000Z-abc")
    error = caught.value
    assert error.vendor == "workato" and error.account == account
    assert f"required field {field!r} is missing" in str(error)
    assert "20261120T100000Z-abc" in str(error)


@pytest.mark.parametrize("value, ok", [
    ("1200", True),     # digits as text: read as a number
    (1200.0, True),     # an integral float
    ("12a", False),
    (True, False),      # a boolean is not a count
    (-1, False),        # counts are never negative
    (12.5, False),
    ({"n": 1}, False),
])
def test_counts_must_be_whole_non_negative_numbers(value, ok):
    payload = fixture("usage_inferred.json")
    payload["data"][0]["intervals"][0]["task_count"] = value
    if ok:
        assert run(payload, context(zone="Pacific/Pitcairn")).tables[USAGE][0]["tasks"] == 1200
    else:
        with pytest.raises(PayloadError, match="task_count"):
            run(payload, context(zone="Pacific/Pitcairn"))


@pytest.mark.parametrize("payload, message", [
    ([], "expected a JSON object"),
    ({"result": []}, "no 'data' key"),
    ({"data": {"workspace_id": 1}}, "'data' is dict"),
    ({"data": ["x"]}, r"data\[0\] is str"),
    ({"data": [{"workspace_id": 3127}]}, "no buckets"),
    ({"data": [entry(bucket("yesterday", "today"))]}, "not an ISO 8601 timestamp"),
    ({"data": [entry(bucket("2026-11-01T01:00:00.000-07:00", "2026-11-01T00:00:00.000-07:00"))]}, "before it starts"),
])
def test_malformed_payloads_fail_with_a_clear_message(payload, message):
    with pytest.raises(PayloadError, match=message):
        run(payload)


def test_recipe_grouping_needs_a_recipe_id():
    with pytest.raises(PayloadError, match="no recipe id"):
        run({"data": [entry(*hourly("2026-11-01", "America/Los_Angeles")[:1])]}, context(grouping="recipe"))


# ---------- a batch: several responses of one window


@dataclass
class FakeSnapshot:
    snapshot_id: str
    request: dict[str, Any]
    account_id: str = "all_workspaces"
    fetched_at: datetime = OBSERVED
    extra: dict = field(default_factory=dict)


def record(grouping: str, day: str = "2026-11-01", zone: str = "America/Los_Angeles") -> dict[str, Any]:
    window = day_window(day, zone)
    return {"timezone": zone, "window_start": window.start.isoformat(), "window_end": window.end.isoformat(),
            "grouping": grouping, "interval": "hour", "id_kind": "workspace_ids", "ids": ["3127"]}


def test_parse_batch_reads_both_groupings_with_the_zone_each_was_asked_in():
    hours = hourly("2026-11-01", "America/Los_Angeles")
    recipe_entry = entry(*hours, recipe_id=41001, recipe_name="Sync invoices", folder_id=501, folder_name="Finance")
    parsed = parse_batch("all_workspaces", [
        (FakeSnapshot("s-total", record("workspace")), {"data": [entry(*hours)]}),
        (FakeSnapshot("s-recipe", record("recipe")), {"data": [recipe_entry]}),
    ])
    rows = parsed.tables[USAGE]
    assert {(r["grouping"], r["snapshot_id"]) for r in rows} == {("workspace", "s-total"), ("recipe", "s-recipe")}
    assert len(rows) == 50
    assert {r["recipe_id"] for r in rows if r["grouping"] == "recipe"} == {41001}
    assert len(parsed.tables[REQUESTS]) == 2


def test_parse_batch_refuses_the_same_bucket_twice():
    hours = hourly("2026-11-01", "America/Los_Angeles")[:2]
    with pytest.raises(PayloadError, match="comes twice"):
        parse_batch("all_workspaces", [
            (FakeSnapshot("s-1", record("workspace")), {"data": [entry(*hours)]}),
            (FakeSnapshot("s-2", record("workspace")), {"data": [entry(*hours)]}),
        ])


def test_a_snapshot_without_its_zone_cannot_be_parsed():
    request = record("workspace")
    del request["timezone"]
    with pytest.raises(PayloadError, match="no 'timezone'") as caught:
        parse_batch("all_workspaces", [(FakeSnapshot("s-old", request), {"data": None})])
    assert "s-old" in str(caught.value)
