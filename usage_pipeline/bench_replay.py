"""Replay at scale: a year of hourly ticks for 5 organizations, three ways, in fresh processes.

- today: `thousandeyes.stage()` tick by tick (what `usage-pipeline replay` runs), sampled;
- proposed (`replay_thousandeyes`, for `operations.replay`/`sources/base.py`): one index query,
  a week of ticks per transaction, chunks parsed in worker processes, one connection;
- the ceiling: DuckDB reading the same files and writing the same four staging tables itself.
The three write identical rows (usage_pipeline_tests/test_bench.py); only the time differs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from usage_pipeline import bench_data, timeutil
from usage_pipeline.bench_fastpath import parse_snapshot, to_arrow
from usage_pipeline.bench_methods import TESTS_TABLE, _TEST_STRUCT, method, step
from usage_pipeline.bench_warehouse import load_arrow
from usage_pipeline.errors import PayloadError, UsagePipelineError
from usage_pipeline.landing import LandingStore, Snapshot
from usage_pipeline.sources import base
from usage_pipeline.sources.thousandeyes import constants
from usage_pipeline.sources.thousandeyes.parse import SCHEMAS
from usage_pipeline.warehouse import Warehouse

HISTORY = {"orgs": 5, "hours": 24 * 365, "tests_per_org": 20}
CURRENT_REPLAY_BUDGET_S = 45.0   # today's tick-by-tick replay is sampled, then extrapolated


# ---------- replay: a year of hourly ticks for 5 organizations


def replay(root: Path, worker: Callable[[dict[str, Any]], dict[str, Any]], log: Callable[[str], None]) -> dict[str, Any]:
    log(f"[bench] scenario: replay · generating {HISTORY['hours']:,} hourly ticks × {HISTORY['orgs']} organizations …")
    root.mkdir(parents=True, exist_ok=True)
    dataset = bench_data.write_thousandeyes_history(root / "landing", **HISTORY)
    from usage_pipeline.bench import prepare_duckdb_template

    template = prepare_duckdb_template(root / "template.duckdb", dataset)
    spec = {"landing_root": str(dataset.root), "partitions": dataset.partitions, "loaded_at": "2027-01-01T00:00:00+00:00",
            "max_object_bytes": 1 << 24}
    results = {}
    for name, method_name in (("native", "duckdb_replay_native"), ("proposed", "replay_bulk"),
                              ("current", "replay_current")):
        target = root / ("year.duckdb" if name == "proposed" else f"{name}.duckdb")
        shutil.copyfile(template, target)
        results[name] = step(worker, {**spec, "method": method_name, "warehouse_url": f"duckdb:///{target}",
                                      "budget_s": CURRENT_REPLAY_BUDGET_S}, log, f"replay · {name}")
        if name != "proposed":
            target.unlink()
    current = results["current"]
    current["extrapolated_s"] = round(current["wall_s"] / current["partitions_done"] * current["partitions_total"], 1)
    native_s, proposed_s = results["native"]["wall_s"], results["proposed"]["wall_s"]
    return {
        "dataset": dataset.describe(), "native": results["native"], "proposed": results["proposed"], "current": current,
        "proposed_over_native": round(proposed_s / native_s, 2),
        "current_over_native": round(current["extrapolated_s"] / native_s, 1),
        "note": ("native = DuckDB read_json_objects + json_transform writing the same four ThousandEyes staging "
                 "tables (identical rows, without the parser's checks); proposed = bench_replay.replay_thousandeyes; "
                 "current = thousandeyes.stage() tick by tick (what `usage-pipeline replay` runs today), sampled for "
                 f"{CURRENT_REPLAY_BUDGET_S:.0f} s and extrapolated linearly."),
    }


@method("replay_bulk")
def replay_bulk(spec: dict[str, Any]) -> Any:
    """The proposed replay (`replay_thousandeyes` below): one connection, a week of ticks per transaction."""
    from usage_pipeline.bench_warehouse import SessionWarehouse
    from usage_pipeline.landing import LandingStore

    warehouse, landing = SessionWarehouse(url=spec["warehouse_url"]), LandingStore(root=spec["landing_root"])
    warehouse.bootstrap()

    def work() -> dict[str, Any]:
        with warehouse.session():
            totals = replay_thousandeyes(warehouse, landing)
        return {"rows": totals[TESTS_TABLE], "tables": totals}
    return work


@method("replay_current")
def replay_current(spec: dict[str, Any]) -> Any:
    """Today's replay loop (`replay_source` → `thousandeyes.stage` per tick) until the time budget is spent."""
    from usage_pipeline.landing import LandingStore
    from usage_pipeline.sources import source_module
    from usage_pipeline.warehouse import Warehouse

    source = source_module("thousandeyes")
    warehouse, landing = Warehouse(url=spec["warehouse_url"]), LandingStore(root=spec["landing_root"])
    warehouse.bootstrap()

    def work() -> dict[str, Any]:
        started, rows, done = time.perf_counter(), 0, 0
        for key in spec["partitions"]:
            rows += source.stage(warehouse, landing, key).rows[TESTS_TABLE]
            done += 1
            if time.perf_counter() - started > spec["budget_s"]:
                break
        return {"rows": rows, "partitions_done": done, "partitions_total": len(spec["partitions"])}
    return work


# ---------- the proposal


_LATEST_EVERY_PARTITION = """
with ranked as (
    select batch_id, row_number() over (partition by partition_key, account_id
                                        order by finished_at desc, batch_id desc) as position
    from raw.api_batches
    where vendor = %s and status = 'complete'
)
select s.snapshot_id, s.batch_id, s.vendor, s.endpoint, s.account_id, s.partition_key, s.request, s.status,
       s.fetched_at, s.sha256, s.bytes, s.landing_path
from raw.api_snapshots s
join ranked r on r.batch_id = s.batch_id and r.position = 1
order by s.partition_key, s.account_id, s.fetched_at, s.snapshot_id
"""


def replay_thousandeyes(warehouse: Warehouse, landing: LandingStore, *, chunk: int = 24 * 7,
                        workers: int | None = None) -> dict[str, int]:
    """Re-stage every ThousandEyes tick from raw: one index query, `chunk` ticks per transaction.

    The rows are those `stage()` writes tick by tick (same parsers, same organization rule, an
    account that fails keeps its old rows); only the transaction boundary moves from one
    account × tick to a group of whole ticks, which an offline rebuild can afford. Chunks are
    parsed in worker processes (the reference parser holds the GIL), each returning its four
    staging tables as Arrow, while this process loads the previous chunk.
    """
    from concurrent.futures import ProcessPoolExecutor
    from datetime import UTC

    base.ensure_staging_tables(warehouse, SCHEMAS)
    by_partition: dict[str, list[tuple[str, str, list[Snapshot]]]] = {}
    grouped: dict[tuple[str, str], list[Snapshot]] = {}
    for row in warehouse.query(_LATEST_EVERY_PARTITION, [constants.KEY]):
        values = dict(zip(("snapshot_id", "batch_id", "vendor", "endpoint", "account_id", "partition_key", "request",
                           "status", "fetched_at", "sha256", "bytes", "landing_path"), row))
        values["request"] = json.loads(values["request"])
        values["fetched_at"] = values["fetched_at"].astimezone(UTC)
        snapshot = Snapshot(**values)
        grouped.setdefault((snapshot.partition_key, snapshot.account_id), []).append(snapshot)
    for (key, account), snapshots in grouped.items():
        by_partition.setdefault(key, []).append((key, account, snapshots))
    keys = list(by_partition)
    jobs = [(landing.root, [item for key in keys[start:start + chunk] for item in by_partition[key]], timeutil.utcnow())
            for start in range(0, len(keys), chunk)]
    totals = {table: 0 for table in SCHEMAS} | {"failed_accounts": 0}
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for tables, staged, failed in pool.map(_replay_chunk, jobs):
            totals["failed_accounts"] += failed
            if not staged:
                continue
            with warehouse.transaction() as tx:
                # the (tick, account) pairs being replaced, as a table: one join instead of 1,000 bound pairs
                tx.execute("create temp table if not exists replay_pairs (partition_key varchar, account_id varchar)")
                tx.execute("delete from replay_pairs")
                tx.load_arrow("replay_pairs", pa.table({"partition_key": [k for k, _ in staged],
                                                        "account_id": [a for _, a in staged]}))
                for table in SCHEMAS:
                    tx.lock(table, "replay")
                    tx.execute(f"delete from {table} where (partition_key, account_id) in "
                               "(select partition_key, account_id from replay_pairs)")
                    if tables[table].num_rows:
                        totals[table] += load_arrow(tx, table, tables[table])
    return totals


def _replay_chunk(job: tuple[str, list[tuple[str, str, list[Snapshot]]], datetime]) -> tuple[dict[str, pa.Table], list, int]:
    """Parse one chunk of (tick, account) batches; its staging tables as Arrow, the pairs staged, failures."""
    from usage_pipeline.sources.thousandeyes.organizations import duplicate_accounts

    root, items, loaded_at = job
    landing = LandingStore(root=root)
    reads: dict[str, dict[str, Any]] = {}
    for key, account, snapshots in items:
        usage = [snapshot for snapshot in snapshots if snapshot.endpoint == constants.ENDPOINT]
        try:
            if not usage:
                raise PayloadError(constants.KEY, account, "the latest complete batch holds no usage response")
            parsed, groups = parse_snapshot(landing, account, usage[-1])
            reads.setdefault(key, {})[account] = (parsed, usage[-1].request.get("org_id"), groups)
        except UsagePipelineError as error:
            reads.setdefault(key, {})[account] = error
    dicts: dict[str, list[dict[str, Any]]] = {table: [] for table in SCHEMAS}
    owners: dict[str, tuple[list[str], list[str]]] = {table: ([], []) for table in SCHEMAS}  # account, tick per row
    arrows: dict[str, list[pa.Table]] = {table: [] for table in SCHEMAS}
    staged: list[tuple[str, str]] = []
    failed = 0
    for key, accounts in reads.items():
        good = {a: v for a, v in accounts.items() if not isinstance(v, UsagePipelineError)}
        failed += len(accounts) - len(good)
        duplicates = duplicate_accounts({a: (v[1], v[2]) for a, v in good.items()})
        for account, (parsed, _, _) in good.items():
            staged.append((key, account))
            if account in duplicates:
                continue  # one organization counted once: its rows of the tick are emptied
            keys_of_rows = {"account_id": account, "partition_key": key, "loaded_at": loaded_at}
            for table, schema in SCHEMAS.items():
                rows = parsed.tables.get(table, [])
                if isinstance(rows, pa.Table):
                    arrows[table].append(to_arrow(rows, schema, **keys_of_rows))
                else:
                    dicts[table].extend(rows)
                    owners[table][0].extend([account] * len(rows))
                    owners[table][1].extend([key] * len(rows))
    # one typed table per chunk, in few large chunks: DuckDB scans a thousand tiny ones slowly
    tables = {}
    for table, schema in SCHEMAS.items():
        accounts, ticks = owners[table]
        rows = pa.Table.from_pylist(dicts[table], schema=schema)
        key = base.STAGING_KEY_COLUMNS
        rows = (rows.append_column(key[0], pa.array(accounts, key[0].type)).append_column(key[1], pa.array(ticks, key[1].type))
                .append_column(key[2], pa.repeat(pa.scalar(loaded_at, key[2].type), rows.num_rows)))
        tables[table] = pa.concat_tables([*arrows[table], rows]).combine_chunks()
    return tables, staged, failed


# ---------- the ceiling


@method("duckdb_replay_native")
def duckdb_replay_native(spec: dict[str, Any]) -> Any:
    """DuckDB reads every raw file itself and writes all four ThousandEyes staging tables (replay's ceiling).

    Same columns as the parser's; not its checks (no type or required-field errors, no
    warnings, no organization rule, no #n suffix for a repeated agent): a ceiling, not a parser.
    """
    import duckdb

    from usage_pipeline.sources.thousandeyes import constants
    from usage_pipeline.sources.thousandeyes.parse import _QUOTA_FIELDS, _USAGE_NUMBERS
    from usage_pipeline.warehouse import Warehouse

    path = str(Warehouse(url=spec["warehouse_url"]).duckdb_path)
    root = spec["landing_root"].rstrip("/") + "/"
    agent = {"aid": "VARCHAR", "accountGroupName": "VARCHAR", "agentId": "VARCHAR", "vagentId": "VARCHAR",
             "agentName": "VARCHAR", "enterpriseUnitsUsed": "BIGINT", "enterpriseUnitsProjected": "BIGINT"}
    shape = {"usage": {
        "quota": {"monthStart": "VARCHAR", "monthEnd": "VARCHAR", **{name: "BIGINT" for name in _QUOTA_FIELDS}},
        "allocations": {"used": "BIGINT", "projected": "BIGINT"}, **{name: "BIGINT" for name in _USAGE_NUMBERS},
        "tests": [_TEST_STRUCT], "enterpriseAgentUnits": [agent],
        **{array: [{"aid": "VARCHAR", "accountGroupName": "VARCHAR", count: "BIGINT"}]
           for array, count in constants.AGENT_CLASSES.values()}}}
    usage_columns = [f"u.quota.{name} as {column}" for name, column in _QUOTA_FIELDS.items()]
    usage_columns += [f"u.{name} as {column}" for name, column in _USAGE_NUMBERS.items()]
    counts = " union all ".join(
        f"select snapshot_id, observed_at, account_id, partition_key, loaded_at, '{agent_class}' as agent_class, "
        f"e.aid, e.accountGroupName as account_group_name, e.{count} as agents_used "
        f"from (select *, unnest(u.{array}) as e from docs)"
        for agent_class, (array, count) in constants.AGENT_CLASSES.items())
    lineage = "snapshot_id, observed_at"
    keys = "account_id, partition_key, loaded_at"

    def work() -> dict[str, Any]:
        connection = duckdb.connect(path)
        try:
            connection.execute("set TimeZone = 'UTC'")
            connection.begin()
            files = [root + relative for (relative,) in connection.execute(
                "select landing_path from raw.api_snapshots where vendor = 'thousandeyes' order by landing_path").fetchall()]
            text = json.dumps(shape).replace("'", "''")
            connection.execute(
                f"create temp table docs as select s.snapshot_id, s.fetched_at as observed_at, s.account_id, "
                f"s.partition_key, ?::timestamptz as loaded_at, json_transform(j.json, '{text}').usage as u "
                f"from read_json_objects(?, filename=true, maximum_object_size={int(spec['max_object_bytes'])}) j "
                f"join raw.api_snapshots s on ? || s.landing_path = j.filename", [spec["loaded_at"], files, root])
            connection.execute(
                f"insert into staging.stg_thousandeyes__usage by name select {lineage}, {keys}, 'v7' as api_version, "
                "cast(u.quota.monthStart as timestamptz) as period_start, cast(u.quota.monthEnd as timestamptz) as period_end, "
                "'iso_offset' as period_zone_basis, u.allocations.used as allocations_used, "
                "u.allocations.projected as allocations_projected, u.tests is not null as has_test_breakdown, "
                f"u.enterpriseAgentUnits is not null as has_agent_unit_breakdown, {', '.join(usage_columns)} from docs")
            connection.execute(
                f"insert into {TESTS_TABLE} by name select {lineage}, {keys}, t.aid, t.accountGroupName as account_group_name, "
                "t.testId as test_id, t.testName as test_name, t.testType as test_type, t.cloudUnitsUsed as cloud_units_used, "
                "t.cloudUnitsProjected as cloud_units_projected from (select *, unnest(u.tests) as t from docs)")
            connection.execute(
                f"insert into staging.stg_thousandeyes__agent_units by name select {lineage}, {keys}, a.aid, "
                "a.accountGroupName as account_group_name, coalesce(a.vagentId, a.agentId, 'name:' || a.agentName) as agent_key, "
                "a.agentId as agent_id, a.vagentId as vagent_id, a.agentName as agent_name, "
                "a.enterpriseUnitsUsed as enterprise_units_used, a.enterpriseUnitsProjected as enterprise_units_projected "
                "from (select *, unnest(u.enterpriseAgentUnits) as a from docs)")
            connection.execute(f"insert into staging.stg_thousandeyes__agent_counts by name {counts}")
            tables = {table: int(connection.execute(f"select count(*) from {table}").fetchone()[0])
                      for table in constants.STAGING_TABLES}
            connection.commit()
            return {"rows": tables[TESTS_TABLE], "tables": tables}
        finally:
            connection.close()
    return work
