"""Warehouse (rung 3, both engines, real PostgreSQL): bulk loads, atomic partition replace,
DuckDB's single-writer rule with a clear message."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from usage_pipeline.errors import WarehouseBusyError, WarehouseError
from usage_pipeline.warehouse import Warehouse

SCHEMA = pa.schema([
    ("id", pa.int64()), ("partition_key", pa.string()), ("name", pa.string()),
    ("amount", pa.int64()), ("at", pa.timestamp("us", tz="UTC")), ("flag", pa.bool_()),
])


def rows(count: int, partition_key: str, start: int = 0) -> pa.Table:
    at = datetime(2026, 11, 20, tzinfo=UTC)
    return pa.table({
        "id": pa.array(range(start, start + count), pa.int64()),
        "partition_key": pa.array([partition_key] * count),
        "name": pa.array([None if i % 7 == 0 else ("" if i % 11 == 0 else f"n,\"{i}\"") for i in range(count)]),
        "amount": pa.array([4_320_000_000 + i for i in range(count)], pa.int64()),  # above 2^31
        "at": pa.array([at] * count, pa.timestamp("us", tz="UTC")),
        "flag": pa.array([i % 2 == 0 for i in range(count)]),
    }, schema=SCHEMA)


def test_bulk_load_of_100k_rows_is_exact(warehouse):
    warehouse.ensure_table("staging.t", SCHEMA)
    loaded = warehouse.load_arrow("staging.t", rows(100_000, "p1"))
    assert loaded == 100_000
    count, total, nulls, empties, quoted = warehouse.query(
        "select count(*), sum(amount), count(*) filter (where name is null), "
        "count(*) filter (where name = ''), max(name) from staging.t"
    )[0]
    assert count == 100_000
    assert total == sum(4_320_000_000 + i for i in range(100_000))
    assert nulls == len([i for i in range(100_000) if i % 7 == 0])
    assert empties == len([i for i in range(100_000) if i % 11 == 0 and i % 7 != 0])  # '' stays '', not NULL
    assert quoted == 'n,"99999"'


def test_replace_rows_touches_only_its_partition(warehouse):
    warehouse.ensure_table("staging.t", SCHEMA)
    warehouse.load_arrow("staging.t", rows(10, "p1"))
    warehouse.load_arrow("staging.t", rows(5, "p2", start=100))
    warehouse.replace_rows("staging.t", rows(3, "p1", start=50), where={"partition_key": "p1"})
    assert warehouse.query("select partition_key, count(*), min(id) from staging.t group by 1 order by 1") == [
        ("p1", 3, 50), ("p2", 5, 100),
    ]


def test_partition_replace_is_atomic_when_the_insert_fails(warehouse):
    warehouse.ensure_table("staging.t", SCHEMA)
    warehouse.load_arrow("staging.t", rows(10, "p1"))
    bad = pa.table({"id": [1], "partition_key": ["p1"], "no_such_column": [1]})
    with pytest.raises(Exception):
        warehouse.replace_rows("staging.t", bad, where={"partition_key": "p1"})
    assert warehouse.query("select count(*) from staging.t where partition_key = %s", ["p1"]) == [(10,)]


def test_transaction_rolls_back_everything_on_error(warehouse):
    warehouse.ensure_table("staging.t", SCHEMA)
    with pytest.raises(RuntimeError):
        with warehouse.transaction() as tx:
            tx.load_arrow("staging.t", rows(5, "p1"))
            raise RuntimeError("crash in the middle of a load")
    assert warehouse.query("select count(*) from staging.t") == [(0,)]


def test_unsafe_identifier_is_refused(warehouse):
    with pytest.raises(WarehouseError, match="unsafe SQL identifier"):
        warehouse.replace_rows("staging.t; drop table raw.api_snapshots", rows(1, "p"), where={"partition_key": "p"})


def test_bootstrap_is_idempotent_and_creates_the_layers(warehouse):
    warehouse.bootstrap()
    warehouse.bootstrap()
    schemas = {row[0] for row in warehouse.query("select schema_name from information_schema.schemata")}
    assert {"raw", "staging", "intermediate", "marts"} <= schemas
    assert warehouse.table_exists("raw.api_snapshots") and warehouse.table_exists("raw.api_batches")


def _hold_duckdb_lock(path, seconds: float) -> subprocess.Popen:
    script = textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(path)!r})
        con.execute("create table if not exists held (x int)")
        print("locked", flush=True)
        time.sleep({seconds})
        con.close()
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_duckdb_second_writer_gets_a_clear_message(tmp_path):
    path = tmp_path / "busy.duckdb"
    holder = _hold_duckdb_lock(path, 30)
    try:
        warehouse = Warehouse(url=f"duckdb:///{path}", busy_timeout_s=0.5)
        with pytest.raises(WarehouseBusyError) as caught:
            warehouse.bootstrap()
        message = str(caught.value)
        assert str(path) in message and "another process" in message and "PID" in message
        assert "PostgreSQL" in message  # says what to do at scale
    finally:
        holder.kill()
        holder.wait()


def test_duckdb_second_writer_waits_for_a_short_lock_and_the_file_stays_sound(tmp_path):
    path = tmp_path / "busy.duckdb"
    holder = _hold_duckdb_lock(path, 1.0)
    try:
        warehouse = Warehouse(url=f"duckdb:///{path}", busy_timeout_s=30)
        warehouse.ensure_table("staging.t", SCHEMA)
        warehouse.load_arrow("staging.t", rows(100, "p"))
    finally:
        holder.wait(timeout=30)
    reader = Warehouse(url=f"duckdb:///{path}", read_only=True)
    assert reader.query("select count(*) from staging.t") == [(100,)]
    assert reader.query("select count(*) from held") == [(0,)]  # the other writer's work is intact too


def test_postgres_unreachable_gives_a_clear_message():
    warehouse = Warehouse(url="postgresql+psycopg://nobody:secretpw@127.0.0.1:1/none")
    with pytest.raises(WarehouseError) as caught:
        warehouse.query("select 1")
    assert "cannot connect to PostgreSQL" in str(caught.value)
    assert "secretpw" not in str(caught.value)


def test_read_only_duckdb_on_a_missing_file_says_what_to_run(tmp_path):
    with pytest.raises(WarehouseError, match="make demo"):
        Warehouse(url=f"duckdb:///{tmp_path / 'none.duckdb'}", read_only=True).query("select 1")
