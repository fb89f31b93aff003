"""Replay at scale: a year of hourly ticks for 5 organizations, two ways, each in a fresh process.

- ours: `replay.replay_staging(thousandeyes.STAGING, …)`, what `usage-pipeline replay` runs
  (one index query, chunks of ticks per transaction, chunks parsed in worker processes);
- the ceiling: DuckDB reading the same files and writing the same four staging tables itself.
Both write identical rows, and the same rows `thousandeyes.stage()` writes tick by tick
(usage_pipeline_tests/test_bench.py); only the time differs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from usage_pipeline import bench_data
from usage_pipeline.bench_methods import TESTS_TABLE, _TEST_STRUCT, landed_files, method, native_duckdb, step

HISTORY = {"orgs": 5, "hours": 24 * 365, "tests_per_org": 20}


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
    for name, method_name in (("native", "duckdb_replay_native"), ("ours", "replay_ours")):
        target = root / ("year.duckdb" if name == "ours" else f"{name}.duckdb")  # ours: the incremental scenario's year
        shutil.copyfile(template, target)
        results[name] = step(worker, {**spec, "method": method_name, "warehouse_url": f"duckdb:///{target}"},
                             log, f"replay · {name}")
        if name != "ours":
            target.unlink()
    native, ours = results["native"], results["ours"]
    if ours["tables"] != native["tables"] or ours.get("digest") != native.get("digest"):
        raise RuntimeError(f"replay wrote {ours['tables']} rows (digest {ours.get('digest')}), "
                           f"DuckDB native {native['tables']} (digest {native.get('digest')})")
    return {
        "dataset": dataset.describe(), "native": native, "ours": ours, "same_rows": True,
        "ours_over_native": round(ours["wall_s"] / native["wall_s"], 2),
        "note": ("native = DuckDB read_json_objects + json_transform writing the same four ThousandEyes staging "
                 "tables (identical rows, without the parser's checks); ours = replay.replay_staging("
                 "thousandeyes.STAGING, …), what `usage-pipeline replay` runs for each source."),
    }


@method("replay_ours")
def replay_ours(spec: dict[str, Any]) -> Any:
    """`usage-pipeline replay`'s staging step: `replay.replay_staging(thousandeyes.STAGING, …)`."""
    from usage_pipeline.landing import LandingStore
    from usage_pipeline.replay import replay_staging
    from usage_pipeline.sources import source_module
    from usage_pipeline.warehouse import Warehouse

    staging = source_module("thousandeyes").STAGING
    warehouse, landing = Warehouse(url=spec["warehouse_url"]), LandingStore(root=spec["landing_root"])
    warehouse.bootstrap()

    def work() -> dict[str, Any]:
        reports = replay_staging(staging, warehouse, landing)
        tables = {table: sum(report.rows[table] for report in reports) for table in staging.tables}
        failed = sum(len(report.failures) for report in reports)
        return {"rows": tables[TESTS_TABLE], "tables": tables, "partitions": len(reports), "failed_accounts": failed}
    return work


# ---------- the ceiling


@method("duckdb_replay_native")
def duckdb_replay_native(spec: dict[str, Any]) -> Any:
    """DuckDB reads every raw file itself and writes all four ThousandEyes staging tables (replay's ceiling).

    Same columns as the parser's; not its checks (no type or required-field errors, no
    warnings, no organization rule, no #n suffix for a repeated agent): a ceiling, not a parser.
    """
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
        with native_duckdb(path) as connection:
            text = json.dumps(shape).replace("'", "''")
            connection.execute(
                f"create temp table docs as select s.snapshot_id, s.fetched_at as observed_at, s.account_id, "
                f"s.partition_key, ?::timestamptz as loaded_at, json_transform(j.json, '{text}').usage as u "
                f"from read_json_objects(?, filename=true, maximum_object_size={int(spec['max_object_bytes'])}) j "
                f"join raw.api_snapshots s on ? || s.landing_path = j.filename", [spec["loaded_at"], landed_files(connection, root), root])
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
            return {"rows": tables[TESTS_TABLE], "tables": tables}
    return work
