"""Every example query in sql/queries/ runs unchanged on DuckDB and PostgreSQL against the demo
warehouse, returns rows and the columns a BI user is promised (rung 6).

A new query file needs its expected columns here; a query that loses a column, returns
nothing on the demo or uses one engine's dialect fails.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from test_marts_demo import build_demo_warehouse

from usage_pipeline import timeutil
from usage_pipeline.settings import PROJECT_ROOT
from usage_pipeline.warehouse import Warehouse

QUERIES = PROJECT_ROOT / "sql" / "queries"
EXPECTED_COLUMNS = {
    "accounts_at_risk.sql": [
        "status", "vendor", "account_id", "account_name", "unit", "used", "included", "percent_used", "projected",
        "burn_rate_per_day", "forecast_exhausted_date", "period_end", "observed_at",
    ],
    "burn_down_per_account.sql": [
        "vendor", "account_id", "unit", "usage_date", "used", "included", "remaining", "ideal_remaining", "share_used",
        "burn_rate_per_day", "forecast_exhausted_date", "status", "period_start", "period_end",
    ],
    "entitlement_changes_last_90_days.sql": [
        "changed_at", "organization_name", "organization_external_id", "value_source", "entitlement_key",
        "value_before", "value_after", "feature_set_name",
    ],
    "tfe_resources_under_management_over_time.sql": [
        "license_id", "installation", "snapshot_date", "resources_under_management", "snapshot_at", "product_version",
    ],
    "top_tests_by_cloud_units_this_period.sql": [
        "aid", "account_group_name", "test_id", "test_name", "test_type", "cloud_units_used", "cloud_units_projected",
        "percent_of_account", "period_start", "period_end", "observed_at",
    ],
    "workato_tasks_per_workspace_per_month.sql": [
        "workspace_id", "workspace_name", "external_id", "month", "period_start", "tasks", "successful_jobs",
        "failed_jobs", "first_interval_start", "last_interval_end",
    ],
}


def query_files() -> list[Path]:
    return sorted(QUERIES.glob("*.sql"))


def run_query(warehouse: Warehouse, path: Path) -> tuple[list[str], list[tuple]]:
    with warehouse.connect(write=False) as connection:
        if warehouse.dialect == "duckdb":
            cursor = connection.execute(path.read_text())
            return [column[0] for column in cursor.description], cursor.fetchall()
        with connection.cursor() as cursor:
            cursor.execute(path.read_text())
            return [column.name for column in cursor.description], cursor.fetchall()


@pytest.fixture(scope="module")
def demo_warehouses(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Warehouse]:
    """One demo warehouse per engine, shared by every query of this module (they only read)."""
    from conftest import make_warehouse

    built = {}
    for engine in ("duckdb", "postgres"):
        warehouse = make_warehouse(engine, tmp_path_factory.mktemp(engine), request)
        build_demo_warehouse(warehouse, now=timeutil.utcnow())
        built[engine] = warehouse
    return built


def test_queries_each_have_expected_columns_and_a_leading_question() -> None:
    assert sorted(path.name for path in query_files()) == sorted(EXPECTED_COLUMNS)
    for path in query_files():
        first = path.read_text().lstrip().splitlines()[0]
        assert first.startswith("-- ") and first.rstrip().endswith("?"), f"{path.name}: start with a '-- question?' comment"


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
@pytest.mark.parametrize("name", sorted(EXPECTED_COLUMNS))
def test_queries_run_on_both_engines_and_return_rows(demo_warehouses: dict[str, Warehouse], engine: str, name: str) -> None:
    columns, rows = run_query(demo_warehouses[engine], QUERIES / name)
    assert columns == EXPECTED_COLUMNS[name]
    assert rows, f"{name} returned no rows on the demo warehouse ({engine})"


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_queries_answer_with_the_demo_numbers(demo_warehouses: dict[str, Warehouse], engine: str) -> None:
    warehouse = demo_warehouses[engine]
    today = timeutil.utcnow().date()

    _, at_risk = run_query(warehouse, QUERIES / "accounts_at_risk.sql")
    assert [(r[0], r[1], r[2], r[3], r[5], r[6], float(r[7])) for r in at_risk] == [
        ("over", "thousandeyes", "5678", "5678", 2200, 2000, 110.0),
        ("at_risk", "thousandeyes", "1234", "Acme Monitoring", 8000, 10000, 80.0),
    ]

    _, tests = run_query(warehouse, QUERIES / "top_tests_by_cloud_units_this_period.sql")
    assert [(r[2], r[5], float(r[7])) for r in tests] == [("101", 5000, 62.5), ("102", 2000, 25.0), ("103", 1000, 12.5)]

    _, changes = run_query(warehouse, QUERIES / "entitlement_changes_last_90_days.sql")
    assert [(r[4], r[5], r[6]) for r in changes] == [("stacks", "(absent)", "on"), ("sso", "off", "on"), ("user-limit", "10", "25")]

    _, tfe = run_query(warehouse, QUERIES / "tfe_resources_under_management_over_time.sql")
    assert (len(tfe), tfe[-1][3]) == (20, 595)  # the day's last snapshot (09:00), not the 02:00 one

    _, burn = run_query(warehouse, QUERIES / "burn_down_per_account.sql")
    acme = [r for r in burn if r[1] == "1234" and r[2] == "cloud_units"]
    assert (len(acme), acme[-1][6], acme[-1][10]) == (20, 2000, today + timedelta(days=5))

    _, workato = run_query(warehouse, QUERIES / "workato_tasks_per_workspace_per_month.sql")
    # 40 days always span two calendar months
    assert (sum(r[5] for r in workato), len(workato) >= 2, {r[1] for r in workato}) == (40_000, True, {"Acme"})
