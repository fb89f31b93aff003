"""Models build, swap, merge and test the same way on DuckDB and a real PostgreSQL (rung 6).

Proves, on both engines: the table swap is atomic (a failing build leaves the old table and no
temporary table; views built on it survive a rebuild), an incremental run equals a full
rebuild on the same data and touches only the new keys (with a composite key and with a
single-column one, which PostgreSQL matches through `any(array(...))`), the unit-test helper
returns a model's exact rows (the portable-SQL constructs included), and runtime errors name
the model. On PostgreSQL a rebuilt table is analyzed and an incremental model's unique_key and
loaded_at are indexed, so the merge's delete is an index lookup; DuckDB gets no index.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from model_fixtures import QUOTA_SCHEMA, USAGE_SCHEMA, at, model_tree, quota_row, usage_row, write_staging

from usage_pipeline.errors import ModelError
from usage_pipeline.models import load_project, run_models, run_tests, unit_test
from usage_pipeline.warehouse import Tx, Warehouse

BATCH_1 = [
    # loaded long before the others: outside new_rows()' 1-hour lookback from then on
    usage_row("s0", "c", "tasks", 1, None, observed=datetime(2025, 12, 31, 10, tzinfo=UTC),
              loaded=datetime(2025, 12, 31, tzinfo=UTC), partition="t0"),
    usage_row("s1", "a", "cloud_units", 50, 90, observed=at(1, 10), loaded=at(1), partition="t1"),
    usage_row("s1", "a", "tasks", 5, None, observed=at(1, 10), loaded=at(1), partition="t1"),
    usage_row("s2", "b", "cloud_units", 120, 150, observed=at(1, 11), loaded=at(1), partition="t1"),
]
QUOTA = [
    quota_row("q1", "a", "cloud_units", 100, observed=at(1, 10), loaded=at(1)),
    quota_row("q1", "a", "tasks", None, observed=at(1, 10), loaded=at(1)),
    quota_row("q2", "b", "cloud_units", 100, observed=at(1, 11), loaded=at(1)),
]
# a day later: a new tick for a (t2), and a re-pull of a's t1 that no longer reports tasks
BATCH_2_NEW_TICK = [usage_row("s3", "a", "cloud_units", 70, 95, observed=at(2, 10), loaded=at(2), partition="t2")]
BATCH_2_REPULL = [usage_row("s4", "a", "cloud_units", 55, 90, observed=at(1, 10, 30), loaded=at(2), partition="t1")]


# the per-tick facts' shape (marts/thousandeyes): one key column, every row of a touched tick re-read
FCT_TICKS = """{{ config(materialized='incremental', unique_key=['partition_key']) }}

with

touched as (

    select distinct partition_key
    from {{ source('staging', 'stg_demo__usage') }}
    {% if is_incremental() %} where {{ new_rows() }} {% endif %}

),

usage as (

    select * from {{ source('staging', 'stg_demo__usage') }}
    where {{ partition_in('touched') }}

),

final as (

    select snapshot_id, account_id, unit, used, observed_at, loaded_at, partition_key
    from usage

)

select * from final
"""


def rows(warehouse: Warehouse, relation: str, order_by: str) -> list[tuple]:
    return warehouse.query(f"select * from {relation} order by {order_by}")


def relation_names(warehouse: Warehouse, schema: str) -> set[str]:
    return {r[0] for r in warehouse.query("select table_name from information_schema.tables where table_schema = %s", [schema])}


def indexes(warehouse: Warehouse, table: str) -> dict[str, str]:
    """Index name -> definition of marts.<table>."""
    if warehouse.dialect == "postgres":
        found = warehouse.query("select indexname, indexdef from pg_indexes where schemaname = 'marts' and tablename = %s", [table])
    else:
        found = warehouse.query("select index_name, sql from duckdb_indexes() where schema_name = 'marts' and table_name = %s",
                                [table])
    return dict(found)


def analyzed_columns(warehouse: Warehouse, table: str) -> int:
    """Columns of marts.<table> with planner statistics (only ANALYZE writes them; autovacuum skips tiny tables)."""
    return warehouse.query("select count(*) from pg_stats where schemaname = 'marts' and tablename = %s", [table])[0][0]


def restage_batch_2(warehouse: Warehouse) -> None:
    """A day later: a's t1 re-pulled (no tasks any more) and a new tick t2, staged as the source assets do."""
    write_staging(warehouse, "stg_demo__usage", BATCH_2_REPULL, USAGE_SCHEMA, where={"account_id": "a", "partition_key": "t1"})
    write_staging(warehouse, "stg_demo__usage", BATCH_2_NEW_TICK, USAGE_SCHEMA, where={"partition_key": "t2"})


@pytest.fixture
def basic(tmp_path: Path, warehouse: Warehouse) -> Path:
    """The basic tree with batch 1 in staging."""
    write_staging(warehouse, "stg_demo__usage", BATCH_1, USAGE_SCHEMA)
    write_staging(warehouse, "stg_demo__quota", QUOTA, QUOTA_SCHEMA)
    return model_tree("basic", tmp_path)


def test_run_models_builds_every_model_in_order_and_tests_pass(warehouse: Warehouse, basic: Path) -> None:
    results = run_models(warehouse, models_dir=basic)
    assert [r.model for r in results] == list(load_project(basic).order)
    modes = {r.model: r.mode for r in results}
    assert modes == {"int_demo__quota": "view", "int_demo__units_used": "view", "fct_quota": "table",
                     "fct_units_used": "full_rebuild", "mart_usage_vs_quota": "table"}
    assert {r.model: r.row_count for r in results}["fct_units_used"] == 4
    failing = [(t.model, t.name, t.failing_rows) for r in results for t in r.tests if not t.passed]
    assert failing == []
    assert sum(len(r.tests) for r in results) == 9
    assert relation_names(warehouse, "intermediate") == {"int_demo__quota", "int_demo__units_used"}
    kinds = dict(warehouse.query("select table_name, table_type from information_schema.tables where table_schema = 'intermediate'"))
    assert set(kinds.values()) == {"VIEW"}


def test_incremental_run_equals_full_rebuild(warehouse: Warehouse, basic: Path) -> None:
    run_models(warehouse, models_dir=basic)
    # staging replaces a (vendor, partition, account) as a whole, as the source assets do
    restage_batch_2(warehouse)

    incremental = {r.model: r for r in run_models(warehouse, models_dir=basic, select=["fct_units_used+"])}
    fct = incremental["fct_units_used"]
    assert fct.mode == "incremental"
    # read: the re-pull and the new tick, plus b's row inside the lookback (re-reading it is harmless);
    # never c's day-old row. Deleted: a's old t1 rows (cloud + tasks) and b's t1 row.
    assert (fct.rows_inserted, fct.rows_deleted) == (3, 3)
    # what changed, not a total: counting the whole table is what incremental builds avoid
    assert fct.row_count is None and incremental["mart_usage_vs_quota"].row_count == 4
    after_incremental = rows(warehouse, "marts.fct_units_used", "snapshot_id, unit")
    mart_incremental = rows(warehouse, "marts.mart_usage_vs_quota", "day, account_id, unit")

    rebuilt = {r.model: r for r in run_models(warehouse, models_dir=basic, full_refresh=True)}
    assert rebuilt["fct_units_used"].mode == "full_rebuild"
    assert rows(warehouse, "marts.fct_units_used", "snapshot_id, unit") == after_incremental
    assert rows(warehouse, "marts.mart_usage_vs_quota", "day, account_id, unit") == mart_incremental
    assert [(r[0], r[2], r[3], r[6]) for r in after_incremental] == [
        ("s0", "c", "tasks", 1), ("s2", "b", "cloud_units", 120), ("s3", "a", "cloud_units", 70),
        ("s4", "a", "cloud_units", 55),
    ]


def test_incremental_run_with_a_single_column_key_equals_full_rebuild(warehouse: Warehouse, basic: Path) -> None:
    # on PostgreSQL both the model's filter and the merge's delete take the `= any(array(...))` form
    (basic / "marts" / "fct_ticks.sql").write_text(FCT_TICKS)
    first = run_models(warehouse, models_dir=basic, select=["fct_ticks"])[0]
    assert (first.mode, first.row_count) == ("full_rebuild", 4)
    restage_batch_2(warehouse)

    increment = run_models(warehouse, models_dir=basic, select=["fct_ticks"])[0]
    # touched: t1 (a re-pulled; b re-read whole, so replacing the tick keeps it) and t2; never t0
    assert (increment.mode, increment.rows_inserted, increment.rows_deleted) == ("incremental", 3, 3)
    filter_ = {"postgres": "partition_key=any(array(selectpartition_keyfromtouched))",
               "duckdb": "partition_keyin(selectpartition_keyfromtouched)"}[warehouse.dialect]
    assert filter_ in re.sub(r"\s+", "", increment.sql.lower())
    after_incremental = rows(warehouse, "marts.fct_ticks", "snapshot_id, unit")
    assert [(r[0], r[1], r[2], r[6]) for r in after_incremental] == [
        ("s0", "c", "tasks", "t0"), ("s2", "b", "cloud_units", "t1"), ("s3", "a", "cloud_units", "t2"),
        ("s4", "a", "cloud_units", "t1"),
    ]
    rebuilt = run_models(warehouse, models_dir=basic, select=["fct_ticks"], full_refresh=True)[0]
    assert rebuilt.mode == "full_rebuild"
    assert rows(warehouse, "marts.fct_ticks", "snapshot_id, unit") == after_incremental


def test_rebuild_indexes_what_an_increment_reads_and_analyzes_on_postgres(warehouse: Warehouse, basic: Path) -> None:
    """The renamed table has neither statistics nor indexes: an increment would scan the whole mart."""
    run_models(warehouse, models_dir=basic, select=["+fct_units_used", "+fct_quota"], tests=False)
    if warehouse.dialect == "duckdb":  # zone maps; an index would only slow the merge down
        assert indexes(warehouse, "fct_units_used") == {}
        return
    assert indexes(warehouse, "fct_units_used") == {
        # the merge's delete looks the new keys up here
        "fct_units_used__unique_key":
            "CREATE INDEX fct_units_used__unique_key ON marts.fct_units_used USING btree (account_id, partition_key)",
        # new_rows()' high-water mark: max(loaded_at) of the mart itself
        "fct_units_used__loaded_at": "CREATE INDEX fct_units_used__loaded_at ON marts.fct_units_used USING btree (loaded_at)",
    }
    assert indexes(warehouse, "fct_quota") == {}  # a table model is never merged into
    assert analyzed_columns(warehouse, "fct_units_used") == 11
    assert analyzed_columns(warehouse, "fct_quota") == 10
    # a mart built before the indexes existed gets them on its next incremental build
    with warehouse.transaction() as tx:
        tx.execute("drop index marts.fct_units_used__unique_key")
        tx.execute("drop index marts.fct_units_used__loaded_at")
    assert run_models(warehouse, models_dir=basic, select=["fct_units_used"], tests=False)[0].mode == "incremental"
    assert set(indexes(warehouse, "fct_units_used")) == {"fct_units_used__unique_key", "fct_units_used__loaded_at"}


def test_increment_reads_the_mart_through_its_indexes_on_postgres(warehouse: Warehouse, basic: Path, monkeypatch) -> None:
    """EXPLAIN of the very statements an increment runs, in its transaction: index probes, never a scan of history."""
    # 2,000 ticks × 5 accounts, the last one loaded an hour after the others (inside the look-back)
    history = [usage_row(f"s{tick}", account, "cloud_units", tick, None, observed=at(1), loaded=at(1, tick // 1999),
                         partition=f"t{tick:04}") for tick in range(2000) for account in ("a", "b", "c", "d", "e")]
    write_staging(warehouse, "stg_demo__usage", history, USAGE_SCHEMA)
    (basic / "marts" / "fct_ticks.sql").write_text(FCT_TICKS)
    run_models(warehouse, models_dir=basic, select=["fct_ticks"], tests=False)
    write_staging(warehouse, "stg_demo__usage", [usage_row("s9", "a", "cloud_units", 9, None, observed=at(2), loaded=at(2),
                                                           partition="t2000")], USAGE_SCHEMA, where={"partition_key": "t2000"})
    plans: list[str] = []
    execute = Tx.execute

    def explaining(tx: Tx, sql: str, params=None):
        # the new rows' select (whose high-water mark reads the mart) and the merge's delete
        new_rows = re.match(r'create table "marts"\."fct_ticks__new_\w+" as\n', sql)
        if new_rows or sql.startswith("with gone as (delete from"):
            statement = sql[new_rows.end():] if new_rows else sql
            plans.append("\n".join(row[0] for row in execute(tx, f"explain {statement}", params)))
        return execute(tx, sql, params)

    monkeypatch.setattr(Tx, "execute", explaining)
    increment = run_models(warehouse, models_dir=basic, select=["fct_ticks"], tests=False)[0]
    # the new tick, and the last tick re-read through the look-back
    assert (increment.mode, increment.rows_inserted, increment.rows_deleted) == ("incremental", 6, 5)
    select, delete = plans
    if warehouse.dialect == "postgres":
        assert "fct_ticks__loaded_at" in select, select
        assert "fct_ticks__unique_key" in delete, delete
        for plan in plans:  # the new rows' table may be scanned, never the mart
            assert re.search(r"Seq Scan on fct_ticks\s", plan) is None, plan


def test_incremental_run_with_nothing_new_changes_nothing(warehouse: Warehouse, basic: Path) -> None:
    run_models(warehouse, models_dir=basic, select=["+fct_units_used"])
    before = rows(warehouse, "marts.fct_units_used", "snapshot_id, unit")
    # only the rows inside the lookback are read again (c's day-old row is not); they replace themselves
    again = run_models(warehouse, models_dir=basic, select=["fct_units_used"])[0]
    assert (again.mode, again.rows_inserted, again.rows_deleted) == ("incremental", 3, 3)
    assert rows(warehouse, "marts.fct_units_used", "snapshot_id, unit") == before


def test_failing_table_build_keeps_the_old_table_and_leaves_no_temporary(warehouse: Warehouse, basic: Path) -> None:
    run_models(warehouse, models_dir=basic, select=["+fct_quota"])
    before = rows(warehouse, "marts.fct_quota", "snapshot_id, unit")
    # valid at load (the source's columns are unknown there), fails on the server mid-build
    (basic / "marts" / "fct_quota.sql").write_text(
        "{{ config(materialized='table') }}\nselect account_id, no_such_column from {{ ref('int_demo__quota') }}"
    )
    with pytest.raises(ModelError, match=f"marts/fct_quota.sql: building marts.fct_quota on {warehouse.dialect} failed: .*no_such_column"):
        run_models(warehouse, models_dir=basic, select=["fct_quota"])
    assert rows(warehouse, "marts.fct_quota", "snapshot_id, unit") == before
    assert relation_names(warehouse, "marts") == {"fct_quota"}


def test_table_rebuild_keeps_views_built_on_it(warehouse: Warehouse, basic: Path) -> None:
    # PostgreSQL would refuse the drop (or CASCADE would delete the BI view); DuckDB rebinds by name
    run_models(warehouse, models_dir=basic, select=["+fct_quota"])
    with warehouse.transaction() as tx:
        tx.execute("create view marts.bi_quota as select account_id, included from marts.fct_quota")
        tx.execute("create view marts.bi_quota_total as select sum(included) as total from marts.bi_quota")
    write_staging(warehouse, "stg_demo__quota", [quota_row("q9", "z", "tasks", 7, observed=at(3), loaded=at(3))], QUOTA_SCHEMA)
    run_models(warehouse, models_dir=basic, select=["fct_quota"])
    assert warehouse.query("select account_id, included from marts.bi_quota") == [("z", 7)]
    assert warehouse.query("select total from marts.bi_quota_total")[0][0] == 7


def test_materialization_change_replaces_a_view_with_a_table(warehouse: Warehouse, basic: Path) -> None:
    run_models(warehouse, models_dir=basic, select=["int_demo__quota"])
    sql = basic / "intermediate" / "demo" / "int_demo__quota.sql"
    sql.write_text("{{ config(materialized='table') }}\n" + sql.read_text())
    run_models(warehouse, models_dir=basic, select=["int_demo__quota"])
    kind = warehouse.query("select table_type from information_schema.tables where table_name = 'int_demo__quota'")
    assert kind == [("BASE TABLE",)]


def test_incremental_refuses_changed_columns_until_full_refresh(warehouse: Warehouse, basic: Path) -> None:
    run_models(warehouse, models_dir=basic, select=["+fct_units_used"])
    sql = basic / "marts" / "fct_units_used.sql"
    sql.write_text(sql.read_text().replace("        partition_key\n    from usage", "        partition_key,\n        1 as extra\n    from usage"))
    with pytest.raises(ModelError, match=r"columns of marts.fct_units_used changed \(added \['extra'\].*full_refresh=True"):
        run_models(warehouse, models_dir=basic, select=["fct_units_used"])
    assert run_models(warehouse, models_dir=basic, select=["fct_units_used"], full_refresh=True)[0].mode == "full_rebuild"


def test_incremental_refuses_null_unique_key(warehouse: Warehouse, basic: Path) -> None:
    run_models(warehouse, models_dir=basic, select=["+fct_units_used"])
    write_staging(warehouse, "stg_demo__usage", [usage_row("s5", "c", "tasks", 1, 1, observed=at(3), loaded=at(3), partition=None)],
                  USAGE_SCHEMA, where={"account_id": "c"})
    with pytest.raises(ModelError, match=r"1 new row\(s\) have a null unique_key"):
        run_models(warehouse, models_dir=basic, select=["fct_units_used"])


def test_unit_test_returns_exact_mart_rows(warehouse: Warehouse, tmp_path: Path) -> None:
    """The portable constructs (qualify, date_trunc, intervals, casts, filter, date_diff...) agree on both engines."""
    root = model_tree("basic", tmp_path / "tree")
    units = [
        {**usage_row("s1", "a", "cloud_units", 50, 90, observed=at(1, 9), loaded=at(1), partition="t1"), "vendor": "demo"},
        # the later snapshot of the same day wins (qualify row_number() = 1)
        {**usage_row("s4", "a", "cloud_units", 55, 90, observed=at(1, 10), loaded=at(2), partition="t1"), "vendor": "demo"},
        {**usage_row("s3", "a", "cloud_units", 70, 95, observed=at(2, 10), loaded=at(2), partition="t2"), "vendor": "demo"},
        {**usage_row("s2", "b", "cloud_units", 120, 150, observed=at(1, 11), loaded=at(1), partition="t1"), "vendor": "demo"},
        {**usage_row("s1", "a", "tasks", 5, None, observed=at(1, 9), loaded=at(1), partition="t1"), "vendor": "demo"},
    ]
    quota = [{**row, "vendor": "demo"} for row in QUOTA]
    result = unit_test(warehouse, "mart_usage_vs_quota", given={"fct_units_used": units, "fct_quota": quota}, models_dir=root)
    got = sorted(result.to_pylist(), key=lambda r: (r["day"], r["account_id"], r["unit"]))
    assert [tuple(r.values()) for r in got] == [
        # day, account, unit, used, projected, included, share, change, days_with_usage, status, days_left, next_day
        (date(2026, 1, 1), "a", "cloud_units", 55, 90, 100, 0.55, None, 2, "at_risk", 31, date(2026, 1, 2)),
        (date(2026, 1, 1), "a", "tasks", 5, 5, None, None, None, 1, "no_quota", 31, date(2026, 1, 2)),
        (date(2026, 1, 1), "b", "cloud_units", 120, 150, 100, 1.2, None, 1, "over", 31, date(2026, 1, 2)),
        (date(2026, 1, 2), "a", "cloud_units", 70, 95, 100, 0.7, 15, 2, "at_risk", 30, date(2026, 1, 3)),
    ]
    # the threshold is a var: 0.99 turns the at_risk rows ok
    strict = unit_test(warehouse, "mart_usage_vs_quota", given={"fct_units_used": units, "fct_quota": quota},
                       models_dir=root, vars={"at_risk_share": 0.99})
    assert sorted(r["status"] for r in strict.to_pylist()) == ["no_quota", "ok", "ok", "over"]
    assert relation_names(warehouse, "marts") == set()  # the real tables were never written


def test_unit_test_of_an_incremental_branch_reads_this(warehouse: Warehouse, tmp_path: Path) -> None:
    root = model_tree("basic", tmp_path / "tree")
    new = {**usage_row("s9", "a", "tasks", 1, 1, observed=at(5), loaded=at(5), partition="t5"), "vendor": "demo"}
    old = {**usage_row("s0", "a", "tasks", 1, 1, observed=at(1), loaded=at(1), partition="t0"), "vendor": "demo"}
    this = pa.Table.from_pylist([{"loaded_at": at(4)}], schema=pa.schema([("loaded_at", pa.timestamp("us", tz="UTC"))]))
    result = unit_test(warehouse, "fct_units_used", given={"int_demo__units_used": [new, old], "this": this},
                       models_dir=root, is_incremental=True)
    assert [r["snapshot_id"] for r in result.to_pylist()] == ["s9"]


def test_unit_test_inputs_must_match_the_model(warehouse: Warehouse, tmp_path: Path) -> None:
    root = model_tree("basic", tmp_path / "tree")
    with pytest.raises(ModelError, match=r"inputs must be exactly \['fct_quota', 'fct_units_used'\]; missing \['fct_quota'\], unknown \['fct_qouta'\]"):
        unit_test(warehouse, "mart_usage_vs_quota", given={"fct_units_used": [{"a": 1}], "fct_qouta": [{"a": 1}]}, models_dir=root)
    with pytest.raises(ModelError, match="input 'staging.stg_demo__quota' has no columns"):
        unit_test(warehouse, "int_demo__quota", given={"staging.stg_demo__quota": []}, models_dir=root)


def test_run_tests_refuses_a_model_not_built_yet(warehouse: Warehouse, basic: Path) -> None:
    with pytest.raises(ModelError, match="marts.fct_quota does not exist yet"):
        run_tests(warehouse, "fct_quota", models_dir=basic)


def test_a_function_missing_on_the_engine_names_the_model(warehouse: Warehouse, basic: Path) -> None:
    sql = basic / "marts" / "fct_quota.sql"
    sql.write_text("{{ config(materialized='table') }}\nselect no_such_function(1) as account_id")
    with pytest.raises(ModelError, match=f"marts/fct_quota.sql: building marts.fct_quota on {warehouse.dialect} failed: .*no_such_function"):
        run_models(warehouse, models_dir=basic, select=["fct_quota"])
