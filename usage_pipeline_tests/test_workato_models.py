"""Workato SQL models on DuckDB and PostgreSQL (rungs 3 and 6): the cumulative tasks per billing
period, the per-recipe reconciliation checks (warn on deleted recipes, error above the total),
and the end-to-end 90-day single-run backfill: exactly 90 days of UTC hours per workspace."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from usage_pipeline import models, settings, timeutil
from usage_pipeline.landing import LandingStore
from usage_pipeline.sandbox import SandboxServer
from usage_pipeline.sources import all_sources, workato
from usage_pipeline.sources.base import staging_schema
from usage_pipeline.sources.workato.parse import REQUESTS_SCHEMA, USAGE_SCHEMA
from usage_pipeline.sources.workato.windows import billing_period, day_window
from usage_pipeline.warehouse import Warehouse

MODELS = Path(__file__).resolve().parents[1] / "dbt_like_models"
ZONE = "America/Los_Angeles"
LOADED = datetime(2026, 11, 20, 10, tzinfo=UTC)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """Only the Workato models (and the shared sources file and macros): independent of other vendors."""
    root = tmp_path / "models"
    root.mkdir()
    shutil.copy(MODELS / "_sources.yml", root / "_sources.yml")
    shutil.copytree(MODELS / "macros", root / "macros")
    for layer in ("staging", "intermediate", "marts"):
        shutil.copytree(MODELS / layer / "workato", root / layer / "workato")
    return root


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---------- staging rows written by hand (the parser's own schema)


def usage_row(day: str, grouping: str, workspace_id: int, tasks: int, *, recipe_id: int | None = None,
              hour: int = 0, snapshot: str | None = None) -> dict:
    window = day_window(day, ZONE)
    start = window.start + timedelta(hours=hour)
    period = billing_period(start, ZONE)
    return {
        "snapshot_id": snapshot or f"{day}-{grouping}", "observed_at": LOADED, "grouping": grouping,
        "interval_unit": "hour", "timezone": ZONE, "window_start": window.start, "window_end": window.end,
        "workspace_id": workspace_id, "external_id": f"ext-{workspace_id}", "workspace_name": f"W{workspace_id}",
        "recipe_id": recipe_id, "recipe_name": None, "folder_id": None, "folder_name": None,
        "interval_start": start, "interval_end": start + timedelta(hours=1), "interval_start_local": "",
        "tasks": tasks, "successful_jobs": 1, "failed_jobs": 0, "recipe_count": 1, "active_recipe_count": 1,
        "period_start": period.start, "period_end": period.end, "period_label": day[:7],
        "account_id": "all_workspaces", "partition_key": day, "loaded_at": LOADED,
    }


def request_row(day: str, grouping: str) -> dict:
    window = day_window(day, ZONE)
    period = billing_period(window.start, ZONE)
    return {
        "snapshot_id": f"{day}-{grouping}", "observed_at": LOADED, "grouping": grouping, "interval_unit": "hour",
        "timezone": ZONE, "window_start": window.start, "window_end": window.end, "id_kind": "workspace_ids",
        "requested_ids": "1", "entries": 1, "usage_rows": 1, "is_data_null": False,
        "period_start": period.start, "period_end": period.end, "period_label": day[:7],
        "account_id": "all_workspaces", "partition_key": day, "loaded_at": LOADED,
    }


def write_staging(warehouse: Warehouse, usage: list[dict], requests: list[dict]) -> None:
    workato.ensure_staging(warehouse)
    warehouse.load_arrow("staging.stg_workato__usage", pa.Table.from_pylist(usage, schema=staging_schema(USAGE_SCHEMA)))
    warehouse.load_arrow("staging.stg_workato__requests",
                         pa.Table.from_pylist(requests, schema=staging_schema(REQUESTS_SCHEMA)))


def build(warehouse: Warehouse, models_dir: Path) -> dict[str, models.ModelResult]:
    return {result.model: result for result in models.run_models(warehouse, models_dir=models_dir)}


def checks_of(result: models.ModelResult) -> dict[str, models.TestResult]:
    return {test.name: test for test in result.tests}


# ---------- units used: cumulative per admin-zone month


def test_units_used_is_tasks_so_far_in_the_admin_month(warehouse, models_dir):
    usage = [usage_row("2026-10-30", "workspace", 1, 10), usage_row("2026-10-31", "workspace", 1, 5),
             usage_row("2026-11-01", "workspace", 1, 7), usage_row("2026-11-02", "workspace", 1, 1),
             usage_row("2026-11-01", "workspace", 2, 100)]
    write_staging(warehouse, usage, [request_row(d, "workspace") for d in ("2026-10-30", "2026-10-31",
                                                                              "2026-11-01", "2026-11-02")])
    results = build(warehouse, models_dir)
    assert all(t.passed for t in results["int_workato__units_used"].tests)
    rows = warehouse.query("select account_id, partition_key, used, period_start, observed_at, vendor, unit "
                           "from intermediate.int_workato__units_used order by 1, 2")
    assert [(a, k, u) for a, k, u, *_ in rows] == [
        ("1", "2026-10-30", 10), ("1", "2026-10-31", 15),   # October adds up
        ("1", "2026-11-01", 7), ("1", "2026-11-02", 8),     # November starts over
        ("2", "2026-11-01", 100)]
    assert as_utc(rows[2][3]) == utc(2026, 11, 1, 7)        # local midnight (PDT) of Nov 1
    # observed_at: the window's end, the instant the cumulative figure holds at
    assert as_utc(rows[0][4]) == day_window("2026-10-30", ZONE).end
    assert {(r[5], r[6]) for r in rows} == {("workato", "tasks")}


def test_units_used_carries_the_latest_load_forward_so_later_days_are_reselected(warehouse, models_dir):
    early, late = usage_row("2026-11-01", "workspace", 1, 3), usage_row("2026-11-02", "workspace", 1, 4)
    early["loaded_at"] = LOADED + timedelta(hours=5)  # Nov 1 re-pulled after Nov 2 was loaded
    write_staging(warehouse, [early, late], [])
    build(warehouse, models_dir)
    rows = warehouse.query("select partition_key, loaded_at from intermediate.int_workato__units_used order by 1")
    assert [as_utc(r[1]) for r in rows] == [LOADED + timedelta(hours=5)] * 2


def test_quota_side_is_empty_with_the_shared_columns(warehouse, models_dir):
    write_staging(warehouse, [], [])
    build(warehouse, models_dir)
    assert warehouse.query("select count(*) from intermediate.int_workato__quota") == [(0,)]
    assert [c for c, _ in warehouse.columns("intermediate.int_workato__quota")] == [
        "snapshot_id", "vendor", "account_id", "unit", "period_start", "period_end", "included",
        "observed_at", "loaded_at", "partition_key"]
    assert [c for c, _ in warehouse.columns("intermediate.int_workato__units_used")] == [
        "snapshot_id", "vendor", "account_id", "unit", "period_start", "period_end", "used", "projected",
        "next_period_projected", "observed_at", "loaded_at", "partition_key"]


# ---------- Σ per recipe against the workspace total


def reconciliation_case(warehouse: Warehouse, models_dir: Path, recipe_tasks: list[int], total: int):
    usage = [usage_row("2026-11-01", "workspace", 1, total)]
    usage += [usage_row("2026-11-01", "recipe", 1, t, recipe_id=100 + i) for i, t in enumerate(recipe_tasks)]
    usage += [usage_row("2026-11-02", "workspace", 1, 50)]  # a day without a per-recipe pull: not compared
    requests = [request_row("2026-11-01", "workspace"), request_row("2026-11-01", "recipe"),
                request_row("2026-11-02", "workspace")]
    write_staging(warehouse, usage, requests)
    result = build(warehouse, models_dir)["int_workato__recipe_reconciliation"]
    rows = warehouse.query("select partition_key, total_tasks, recipe_tasks, deleted_recipe_tasks "
                           "from intermediate.int_workato__recipe_reconciliation")
    return checks_of(result), rows


def test_recipes_adding_up_to_the_total_pass_both_checks(warehouse, models_dir):
    tests, rows = reconciliation_case(warehouse, models_dir, [30, 12], 42)
    assert rows == [("2026-11-01", 42, 42, 0)]
    assert tests["per_recipe_tasks_not_above_total"].passed and tests["no_deleted_recipe_tasks"].passed


def test_a_per_recipe_shortfall_is_deleted_recipe_tasks_and_only_a_warning(warehouse, models_dir):
    tests, rows = reconciliation_case(warehouse, models_dir, [30, 2], 42)
    assert rows == [("2026-11-01", 42, 32, 10)]
    assert tests["per_recipe_tasks_not_above_total"].passed
    warning = tests["no_deleted_recipe_tasks"]
    assert not warning.passed and warning.severity == "warn" and warning.failing_rows == 1


def test_per_recipe_above_the_total_is_an_error(warehouse, models_dir):
    tests, _ = reconciliation_case(warehouse, models_dir, [30, 20], 42)
    error = tests["per_recipe_tasks_not_above_total"]
    assert not error.passed and error.severity == "error"


def test_the_monthly_view_adds_days_and_reports_the_deleted_recipe_gap(warehouse, models_dir):
    reconciliation_case(warehouse, models_dir, [30, 2], 42)
    (row,) = warehouse.query(
        "select period_label, tasks, recipe_tasks, deleted_recipe_tasks, days_in_period, days_pulled, "
        "days_reconciled from marts.mart_workato_monthly_usage")
    assert row == ("2026-11", 92, 32, 10, 30, 2, 1)


# ---------- end to end: a 90-day single-run backfill against the sandbox


@pytest.fixture
def sandbox_env(monkeypatch) -> Iterator[tuple[SandboxServer, settings.Settings]]:
    with SandboxServer() as server:
        env = server.env()
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield server, settings.load(env)


def backfill(server: SandboxServer, config: settings.Settings, warehouse: Warehouse, landing: LandingStore,
             start: str, end: str) -> dg.ExecuteInProcessResult:
    defs = workato.definitions(config)
    with timeutil.use_clock(server.clock):
        return dg.materialize(
            list(defs.assets), resources={**defs.resources, "warehouse": warehouse, "landing": landing},
            tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def test_a_90_day_backfill_gives_exactly_90_days_of_utc_hours_per_workspace(warehouse, landing, models_dir,
                                                                            sandbox_env):
    server, config = sandbox_env
    # Aug 15 .. Nov 12 in Los Angeles: 90 admin-zone days, one of them (Nov 1) 25 hours long
    result = backfill(server, config, warehouse, landing, "2026-08-15", "2026-11-12")
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    results = build(warehouse, models_dir)

    failed = {(r.model, t.name): t.severity for r in results.values() for t in r.tests if not t.passed}
    # the one expected failure: recipes deleted since (Oct 15, Nov 5) are missing from per-recipe pulls
    assert failed == {("int_workato__recipe_reconciliation", "no_deleted_recipe_tasks"): "warn"}

    for workspace_id in (3127, 3128):
        hours = warehouse.query(
            "select interval_start, interval_end, partition_key from marts.fct_workato_usage "
            "where grouping = 'workspace' and workspace_id = %s order by interval_start", [workspace_id])
        assert len(hours) == 90 * 24 + 1
        assert len({key for _, _, key in hours}) == 90
        assert as_utc(hours[0][0]) == utc(2026, 8, 15, 7) and as_utc(hours[-1][1]) == utc(2026, 11, 13, 8)
        assert all(as_utc(end) == as_utc(nxt) for (_, end, _), (nxt, _, _) in zip(hours, hours[1:]))
        assert all(as_utc(end) - as_utc(start) == timedelta(hours=1) for start, end, _ in hours)
    # Initech started on Nov 10: its three days only
    assert warehouse.query("select count(distinct partition_key) from marts.fct_workato_usage "
                           "where workspace_id = 3129") == [(3,)]

    monthly = warehouse.query("select period_label, days_pulled, days_in_period, tasks from "
                              "marts.mart_workato_monthly_usage where workspace_id = 3127 order by 1")
    assert [(label, pulled, days) for label, pulled, days, _ in monthly] == [
        ("2026-08", 17, 31), ("2026-09", 30, 30), ("2026-10", 31, 31), ("2026-11", 12, 30)]
    # the last day of each month carries the month's total in units used
    last = dict(warehouse.query(
        "select period_start, max(used) from intermediate.int_workato__units_used where account_id = '3127' "
        "group by 1"))
    totals = dict(warehouse.query("select period_start, tasks from marts.mart_workato_monthly_usage "
                                  "where workspace_id = 3127"))
    assert last == totals
    deleted = dict(warehouse.query(
        "select period_label, sum(deleted_recipe_tasks) from intermediate.int_workato__recipe_reconciliation "
        "where workspace_id = 3127 group by 1"))
    assert deleted["2026-09"] > 0 and deleted["2026-11"] == 0  # Legacy import was deleted on Oct 15

    # re-running part of the range is idempotent: same buckets, none twice
    before = warehouse.query("select count(*), count(distinct partition_key) from marts.fct_workato_usage")
    assert backfill(server, config, warehouse, landing, "2026-10-31", "2026-11-02").success
    assert warehouse.query("select count(*), count(distinct partition_key) from marts.fct_workato_usage") == before
    duplicates = warehouse.query(
        "select count(*) from (select grouping, workspace_id, recipe_id, interval_start from marts.fct_workato_usage "
        "group by 1, 2, 3, 4 having count(*) > 1) as d")
    assert duplicates == [(0,)]


def test_workato_tasks_reach_the_shared_facts_with_no_quota(warehouse, landing, sandbox_env):
    # the whole model tree: int_workato__units_used and int_workato__quota feed the cross-vendor facts
    server, config = sandbox_env
    assert backfill(server, config, warehouse, landing, "2026-10-30", "2026-11-02").success
    for source in all_sources():  # the other vendors' staging tables, empty
        source.ensure_staging(warehouse)
    models.run_models(warehouse, vars={"at_risk_share": 0.8})
    used = warehouse.query(
        "select partition_key, used, period_start from marts.fct_units_used "
        "where vendor = 'workato' and account_id = '3127' and unit = 'tasks' order by partition_key")
    mine = warehouse.query(
        "select partition_key, used, period_start from intermediate.int_workato__units_used "
        "where account_id = '3127' order by partition_key")
    assert [row[0] for row in used] == ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"]
    assert used == mine
    assert warehouse.query("select count(*) from marts.fct_quota where vendor = 'workato'") == [(0,)]
    statuses = warehouse.query("select distinct status from marts.mart_usage_vs_quota where vendor = 'workato'")
    assert statuses == [("no_quota",)]
