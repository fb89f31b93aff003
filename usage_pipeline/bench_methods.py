"""One benchmark measurement in a fresh process: `python -m usage_pipeline.bench_methods - < spec.json`.

The one rule: only the work is timed. Imports, copying the warehouse template and reading
pre-rendered inputs happen before the clock starts; the row digest (proof that every method
loaded the same rows) after it stops. The process prints one JSON line: rows, wall and CPU
seconds, peak RSS (VmHWM: the whole process, interpreter and imports included) and the RSS
before the work started.
"""

from __future__ import annotations

import gzip
import json
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

TESTS_TABLE = "staging.stg_thousandeyes__tests"
TEST_COLUMNS = ("snapshot_id", "observed_at", "aid", "account_group_name", "test_id", "test_name", "test_type",
                "cloud_units_used", "cloud_units_projected", "account_id", "partition_key", "loaded_at")
# The v7 test object as DuckDB should read it: the same types the parser produces.
_TEST_STRUCT = {"aid": "VARCHAR", "accountGroupName": "VARCHAR", "testId": "VARCHAR", "testName": "VARCHAR",
                "testType": "VARCHAR", "cloudUnitsUsed": "BIGINT", "cloudUnitsProjected": "BIGINT"}
_SELECT_TEST = ("s.snapshot_id, s.fetched_at, t.aid, t.accountGroupName, t.testId, t.testName, t.testType, "
                "t.cloudUnitsUsed, t.cloudUnitsProjected, s.account_id, s.partition_key, ?::timestamptz")
METHODS: dict[str, Callable[[dict[str, Any]], int]] = {}


def method(name: str) -> Callable[[Callable[[dict[str, Any]], int]], Callable[[dict[str, Any]], int]]:
    def register(function: Callable[[dict[str, Any]], int]) -> Callable[[dict[str, Any]], int]:
        METHODS[name] = function
        return function
    return register


# ---------- ThousandEyes on DuckDB


@method("ours")
def ours(spec: dict[str, Any]) -> Any:
    """The pipeline's own path: `<source>.stage()` per partition (for ThousandEyes: the fast v7 reader,
    accounts on a thread pool, Arrow tables → Tx.load_arrow on one warehouse connection per stage call)."""
    from usage_pipeline.landing import LandingStore
    from usage_pipeline.sources import source_module
    from usage_pipeline.warehouse import Warehouse

    source = source_module(spec.get("vendor", "thousandeyes"))
    warehouse, landing = Warehouse(url=spec["warehouse_url"]), LandingStore(root=spec["landing_root"])
    warehouse.bootstrap()

    def work() -> int:
        rows = 0
        for key in spec["partitions"]:
            report = source.stage(warehouse, landing, key)
            rows += report.rows.get(spec.get("table", TESTS_TABLE), 0)
        return rows
    return work


@contextmanager
def native_duckdb(path: str) -> Iterator[Any]:
    """DuckDB opened directly (no pipeline code), in UTC, in one transaction committed at the end."""
    import duckdb

    connection = duckdb.connect(path)
    try:
        connection.execute("set TimeZone = 'UTC'")
        connection.begin()
        yield connection
        connection.commit()
    finally:
        connection.close()


def landed_files(connection: Any, root: str) -> list[str]:
    """Full paths of the ThousandEyes raw files indexed in `raw.api_snapshots`, in landing order."""
    return [root + relative for (relative,) in connection.execute(
        "select landing_path from raw.api_snapshots where vendor = 'thousandeyes' order by landing_path").fetchall()]


def _duckdb_native(spec: dict[str, Any], reader: str) -> Any:
    from usage_pipeline.warehouse import Warehouse

    path = str(Warehouse(url=spec["warehouse_url"]).duckdb_path)
    root = spec["landing_root"].rstrip("/") + "/"

    def work() -> int:
        with native_duckdb(path) as connection:
            connection.execute(
                f"insert into {TESTS_TABLE} ({', '.join(TEST_COLUMNS)}) select {_SELECT_TEST} "
                f"from ({reader}) j join raw.api_snapshots s on ? || s.landing_path = j.filename",
                [spec["loaded_at"], landed_files(connection, root), root],
            )
            return int(connection.execute(f"select count(*) from {TESTS_TABLE}").fetchone()[0])
    return work


@method("duckdb_read_json")
def duckdb_read_json(spec: dict[str, Any]) -> Any:
    """DuckDB reads the gzip files itself: `read_json` with the exact column types."""
    struct = ", ".join(f"{name} {kind}" for name, kind in _TEST_STRUCT.items())
    columns = "{usage: 'STRUCT(tests STRUCT(" + struct + ")[])'}"
    reader = (f"select filename, unnest(usage.tests) as t from read_json(?, columns={columns}, filename=true, "
              f"format='auto', maximum_object_size={int(spec['max_object_bytes'])})")
    return _duckdb_native(spec, reader)


@method("duckdb_json_transform")
def duckdb_json_transform(spec: dict[str, Any]) -> Any:
    """DuckDB reads the gzip files itself: `read_json_objects` + `json_transform` to the exact types."""
    shape = json.dumps({"usage": {"tests": [_TEST_STRUCT]}}).replace("'", "''")
    reader = (f"select filename, unnest(json_transform(json, '{shape}').usage.tests) as t "
              f"from read_json_objects(?, filename=true, maximum_object_size={int(spec['max_object_bytes'])})")
    return _duckdb_native(spec, reader)


@method("pandas")
def pandas_json_normalize(spec: dict[str, Any]) -> Any:
    """What a hand-written pandas loader does: json.loads, `pd.json_normalize`, nullable casts, DuckDB insert."""
    import duckdb
    import pandas as pd

    from usage_pipeline.warehouse import Warehouse

    path = str(Warehouse(url=spec["warehouse_url"]).duckdb_path)
    renames = {"aid": "aid", "accountGroupName": "account_group_name", "testId": "test_id", "testName": "test_name",
               "testType": "test_type", "cloudUnitsUsed": "cloud_units_used", "cloudUnitsProjected": "cloud_units_projected"}

    def work() -> int:
        connection = duckdb.connect(path)
        rows = 0
        try:
            connection.execute("set TimeZone = 'UTC'")
            snapshots = connection.execute("select snapshot_id, fetched_at, account_id, partition_key, landing_path "
                                           "from raw.api_snapshots where vendor = 'thousandeyes'").fetchall()
            for snapshot_id, fetched_at, account_id, partition, relative in snapshots:
                payload = json.loads(gzip.decompress((Path(spec["landing_root"]) / relative).read_bytes()))
                frame = pd.json_normalize(payload["usage"]["tests"]).reindex(columns=list(renames)).rename(columns=renames)
                for column in ("cloud_units_used", "cloud_units_projected"):
                    frame[column] = frame[column].astype("Int64")  # NaN → NULL, not 0 (exact below 2^53 only)
                frame.insert(0, "snapshot_id", snapshot_id)
                frame.insert(1, "observed_at", pd.Timestamp(fetched_at))
                frame["account_id"], frame["partition_key"] = account_id, partition
                frame["loaded_at"] = pd.Timestamp(spec["loaded_at"])
                connection.register("frame", frame)
                connection.execute(f"insert into {TESTS_TABLE} ({', '.join(TEST_COLUMNS)}) "
                                   f"select {', '.join(TEST_COLUMNS)} from frame")
                connection.unregister("frame")
                rows += len(frame)
        finally:
            connection.close()
        return rows
    return work


@method("dlt")
def dlt_default(spec: dict[str, Any]) -> Any:
    """dlt with default settings (Python dicts in, its own normaliser, DuckDB destination)."""
    import dlt

    def tests() -> Any:
        for relative in spec["files"]:
            payload = json.loads(gzip.decompress((Path(spec["landing_root"]) / relative).read_bytes()))
            yield from payload["usage"]["tests"]

    def work() -> int:
        pipeline = dlt.pipeline(pipeline_name="usage_bench", destination=dlt.destinations.duckdb(spec["dlt_path"]),
                                dataset_name="staging_dlt", pipelines_dir=spec["dlt_dir"])
        info = pipeline.run(tests(), table_name="tests")
        info.raise_on_failed_jobs()
        with pipeline.sql_client() as client:
            return int(client.execute_sql("select count(*) from tests")[0][0])
    return work


# ---------- PostgreSQL


@method("pg_ours")
def pg_ours(spec: dict[str, Any]) -> Any:
    """`Tx.load_arrow` of the staging rows, already parsed: CSV rendered by pyarrow (timestamps once per
    distinct value) and sent by psycopg's queued writer while the next batch renders (`COPY … FROM STDIN`)."""
    import pyarrow.parquet as pq

    from usage_pipeline.warehouse import Warehouse

    rows = pq.read_table(spec["parquet"])
    warehouse = Warehouse(url=spec["warehouse_url"])
    warehouse.bootstrap()

    def work() -> int:
        with warehouse.transaction() as tx:
            return tx.load_arrow(TESTS_TABLE, rows)
    return work


@method("pg_raw_copy")
def pg_raw_copy(spec: dict[str, Any]) -> Any:
    """The floor: psycopg `COPY … FROM STDIN (format csv)` of the same rows pre-rendered as CSV."""
    import psycopg
    from sqlalchemy.engine import make_url

    from usage_pipeline.warehouse import quote_column

    body = Path(spec["csv"]).read_bytes()
    columns = ", ".join(quote_column(name) for name in TEST_COLUMNS)
    conninfo = make_url(spec["warehouse_url"]).set(drivername="postgresql").render_as_string(hide_password=False)

    def work() -> int:
        with psycopg.connect(conninfo, options="-c timezone=UTC") as connection:
            with connection.cursor() as cursor, cursor.copy(f"copy {TESTS_TABLE} ({columns}) from stdin (format csv)") as copy:
                view = memoryview(body)
                for start in range(0, len(body), 1 << 20):
                    copy.write(view[start:start + (1 << 20)])
            connection.commit()
            return int(connection.execute(f"select count(*) from {TESTS_TABLE}").fetchone()[0])
    return work


@method("pg_ours_stage")
def pg_ours_stage(spec: dict[str, Any]) -> Any:
    """The pipeline's whole staging path on PostgreSQL: parse + COPY (`thousandeyes.stage`)."""
    return ours(spec)


def step(worker: Callable[[dict[str, Any]], dict[str, Any]], spec: dict[str, Any], log: Callable[[str], None],
         what: str) -> dict[str, Any]:
    """Run one scenario measurement through `worker` (bench._worker: a fresh process); its error raised."""
    log(f"[bench] scenario: {what}")
    result = worker(spec)
    if result.get("error"):
        raise RuntimeError(result["error"])
    return result


# ---------- the row digest: the same multiset of rows, whatever the engine


def digest(warehouse_url: str, table: str = TESTS_TABLE) -> str:
    """`count:sum of 60-bit md5 prefixes` over every row but loaded_at: order-free and engine-free."""
    from usage_pipeline.warehouse import Warehouse

    warehouse = Warehouse(url=warehouse_url, read_only=True)
    if warehouse.dialect == "duckdb":
        observed, text, prefix = "epoch_us(observed_at)", "varchar", "('0x' || substr(md5(line), 1, 15))::bigint"
    else:
        observed, text = "(extract(epoch from observed_at) * 1000000)::bigint", "text"
        prefix = "('x' || substr(md5(line), 1, 15))::bit(60)::bigint"
    parts = ["snapshot_id", f"cast({observed} as {text})", "aid", "account_group_name", "test_id", "test_name",
             "test_type", f"cast(cloud_units_used as {text})", f"cast(cloud_units_projected as {text})",
             "account_id", "partition_key"]
    line = " || '|' || ".join(f"coalesce({part}, '<null>')" for part in parts)
    count, total = warehouse.query(
        f"select count(*), cast(coalesce(sum({prefix}), 0) as {text}) from (select {line} as line from {table}) rows")[0]
    return f"{count}:{total}"


# ---------- inputs for the PostgreSQL comparison


def export(spec: dict[str, Any]) -> dict[str, Any]:
    """Our staged rows as Parquet (what `pg_ours` loads) and as the exact CSV `Tx.load_arrow` renders."""
    import duckdb
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from usage_pipeline.warehouse import Warehouse

    connection = duckdb.connect(str(Warehouse(url=spec["warehouse_url"]).duckdb_path), read_only=True)
    try:
        connection.execute("set TimeZone = 'UTC'")
        result = connection.execute(f"select {', '.join(TEST_COLUMNS)} from {TESTS_TABLE} order by account_id, test_id")
        # DuckDB 2.0 renamed fetch_arrow_table() to to_arrow_table()
        rows = result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.fetch_arrow_table()
    finally:
        connection.close()
    pq.write_table(rows, spec["parquet"])
    pa_csv.write_csv(rows, spec["csv"], pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    return {"method": "export", "rows": rows.num_rows}


# ---------- the process


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Prepare (untimed), run the work (timed), digest (untimed); the result as a dict."""
    if spec["method"] not in METHODS:
        import usage_pipeline.bench_scenarios  # noqa: F401 (registers the scenario methods)
    work = METHODS[spec["method"]](spec)
    baseline = rss_mb("VmRSS")
    started_wall, started_cpu = time.perf_counter(), cpu_s()
    outcome = work()
    wall, cpu = time.perf_counter() - started_wall, cpu_s() - started_cpu
    peak = rss_mb("VmHWM")
    details = outcome if isinstance(outcome, dict) else {"rows": outcome}  # scenarios report more than rows
    result = {"method": spec["method"], **details, "wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
              "peak_rss_mb": peak, "baseline_rss_mb": baseline}
    if spec.get("digest", True) and spec.get("warehouse_url"):
        result["digest"] = digest(spec["warehouse_url"], spec.get("table", TESTS_TABLE))
    return result


def main(argv: list[str]) -> int:
    import logging

    logging.basicConfig(level=logging.ERROR)
    spec = json.loads(sys.stdin.read() if not argv or argv[0] == "-" else argv[0])
    try:
        result = export(spec) if spec["method"] == "export" else measure(spec)
    except ModuleNotFoundError as error:
        result = {"method": spec["method"], "error": f"not installed: {error.name}", "skipped": True}
    except Exception as error:  # reported in the results, never hidden
        result = {"method": spec["method"], "error": f"{type(error).__name__}: {str(error).strip()[:500]}"}
    print(json.dumps(result, default=lambda value: value.isoformat() if isinstance(value, datetime) else str(value)))
    return 0 if "error" not in result or result.get("skipped") else 1


if __name__ == "__main__":
    # run the imported module's main: one METHODS registry, shared with bench_scenarios' methods
    from usage_pipeline import bench_methods

    sys.exit(bench_methods.main(sys.argv[1:]))
