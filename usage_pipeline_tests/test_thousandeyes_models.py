"""ThousandEyes SQL models on tiny inputs (rung 1 for SQL), on DuckDB and PostgreSQL.

Proves: the quota model keeps a 0 and a value above 2^31 and gives no row for an absent field;
the units model carries projections for cloud and enterprise units only; and the incremental
branch of the per-tick facts re-reads every account of a touched tick (so replacing the tick
never drops an account that was not re-staged) and nothing of an untouched tick.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from usage_pipeline import models
from usage_pipeline.sources.base import staging_schema
from usage_pipeline.sources.thousandeyes.parse import TESTS_SCHEMA, USAGE_SCHEMA

TS = pa.timestamp("us", tz="UTC")
START, END = datetime(2026, 11, 5, 8, tzinfo=UTC), datetime(2026, 12, 5, 8, tzinfo=UTC)
SEEN = datetime(2026, 11, 20, 10, tzinfo=UTC)
LOADED = datetime(2026, 11, 20, 10, 1, tzinfo=UTC)
USAGE_COLUMNS = pa.schema([
    ("snapshot_id", pa.string()), ("account_id", pa.string()), ("org_id", pa.string()),
    ("period_start", TS), ("period_end", TS), ("period_zone_basis", pa.string()), ("period_zone_abbreviation", pa.string()),
    *[(f"{unit}_included", pa.int64()) for unit in ("cloud_units", "endpoint_agents", "endpoint_agents_essentials",
                                                     "endpoint_agents_embedded", "enterprise_agents")],
    *[(name, pa.int64()) for name in ("cloud_units_used", "cloud_units_projected", "cloud_units_next_period_projected",
                                      "enterprise_units_used", "enterprise_units_projected",
                                      "enterprise_units_next_period_projected", "endpoint_agents_used",
                                      "endpoint_agents_essentials_used", "endpoint_agents_embedded_used",
                                      "enterprise_agents_used")],
    ("has_test_breakdown", pa.bool_()), ("has_agent_unit_breakdown", pa.bool_()), ("api_version", pa.string()),
    ("observed_at", TS), ("loaded_at", TS), ("partition_key", pa.string()),
])


def usage_row(**values) -> dict:
    row = dict.fromkeys(USAGE_COLUMNS.names)
    row.update(snapshot_id="s1", account_id="1234", org_id="1001", period_start=START, period_end=END,
               period_zone_basis="iso_offset", has_test_breakdown=True, has_agent_unit_breakdown=True, api_version="v7",
               observed_at=SEEN, loaded_at=LOADED, partition_key="2026-11-20-09:00")
    row.update(values)
    return row


def test_int_quota_keeps_zeros_and_big_numbers_and_skips_absent_fields(warehouse):
    given = pa.Table.from_pylist([
        usage_row(cloud_units_included=4_320_000_000, endpoint_agents_included=200,
                  endpoint_agents_embedded_included=0, enterprise_agents_included=0),
        usage_row(snapshot_id="s2", account_id="2001", enterprise_agents_included=25),  # legacy billing
    ], USAGE_COLUMNS)
    table = models.unit_test(warehouse, "int_thousandeyes__quota", given={"int_thousandeyes__usage": given})
    rows = sorted((r["account_id"], r["unit"], r["included"], r["vendor"], r["period_start"]) for r in table.to_pylist())
    assert rows == [
        ("1234", "cloud_units", 4_320_000_000, "thousandeyes", START),
        ("1234", "endpoint_agents", 200, "thousandeyes", START),
        ("1234", "endpoint_agents_embedded", 0, "thousandeyes", START),  # a real zero: none included
        # enterpriseAgentsIncluded 0 = not legacy billing: no quota row, not "0 allowed"
        ("2001", "enterprise_agents", 25, "thousandeyes", START),
    ]


def test_int_units_used_projects_only_cloud_and_enterprise_units(warehouse):
    given = pa.Table.from_pylist([usage_row(
        cloud_units_used=5_325_400, cloud_units_projected=None, cloud_units_next_period_projected=12_424_800,
        enterprise_units_used=0, enterprise_units_projected=0, enterprise_units_next_period_projected=0,
        endpoint_agents_used=52, enterprise_agents_used=6)], USAGE_COLUMNS)
    table = models.unit_test(warehouse, "int_thousandeyes__units_used", given={"int_thousandeyes__usage": given})
    rows = sorted((r["unit"], r["used"], r["projected"], r["next_period_projected"]) for r in table.to_pylist())
    assert rows == [
        ("cloud_units", 5_325_400, None, 12_424_800),   # an absent projection stays null
        ("endpoint_agents", 52, None, None),
        ("enterprise_agents", 6, None, None),
        ("enterprise_units", 0, 0, 0),                   # zeros stay zeros
    ]
    assert set(table.column_names) == {"snapshot_id", "vendor", "account_id", "unit", "period_start", "period_end", "used",
                                       "projected", "next_period_projected", "observed_at", "loaded_at", "partition_key"}


def test_fct_test_usage_increment_rereads_every_account_of_a_touched_tick(warehouse):
    at = lambda hour, minute=0: datetime(2026, 11, 20, hour, minute, tzinfo=UTC)  # noqa: E731
    usage_schema, tests_schema = staging_schema(USAGE_SCHEMA), staging_schema(TESTS_SCHEMA)

    def usage(snapshot, account, partition, loaded):
        return {"snapshot_id": snapshot, "observed_at": SEEN, "api_version": "v7", "period_start": START, "period_end": END,
                "period_zone_basis": "iso_offset", "account_id": account, "partition_key": partition, "loaded_at": loaded}

    def test(snapshot, account, partition, loaded, test_id, used):
        return {"snapshot_id": snapshot, "observed_at": SEEN, "aid": account, "test_id": test_id, "cloud_units_used": used,
                "account_id": account, "partition_key": partition, "loaded_at": loaded}

    # the fact was last built from rows loaded at 09:01: the increment reads what was loaded after 08:01
    fact_schema = pa.schema([("snapshot_id", pa.string()), ("account_id", pa.string()), ("aid", pa.string()),
                             ("test_id", pa.string()), ("org_id", pa.string()), ("account_group_name", pa.string()),
                             ("test_name", pa.string()), ("test_type", pa.string()), ("period_start", TS),
                             ("period_end", TS), ("cloud_units_used", pa.int64()), ("cloud_units_projected", pa.int64()),
                             ("observed_at", TS), ("loaded_at", TS), ("partition_key", pa.string())])
    this = pa.Table.from_pylist([{"snapshot_id": "s9", "account_id": "1234", "aid": "1234", "test_id": "1",
                                  "org_id": None, "account_group_name": None, "test_name": None, "test_type": None,
                                  "period_start": START, "period_end": END, "cloud_units_used": 9,
                                  "cloud_units_projected": None, "observed_at": SEEN, "loaded_at": at(9, 1),
                                  "partition_key": "2026-11-20-08:00"}], fact_schema)
    staging_usage = pa.Table.from_pylist([
        usage("s0", "1234", "2026-11-20-07:00", at(7)),      # an old tick: untouched
        usage("s1", "1234", "2026-11-20-10:00", at(11, 1)),  # re-staged now
        usage("s2", "2001", "2026-11-20-10:00", at(7, 30)),  # same tick, loaded long ago (say its re-parse failed)
    ], usage_schema)
    staging_tests = pa.Table.from_pylist([
        test("s0", "1234", "2026-11-20-07:00", at(7), "1", 1),
        test("s1", "1234", "2026-11-20-10:00", at(11, 1), "1", 10),
        test("s2", "2001", "2026-11-20-10:00", at(7, 30), "2", 20),
    ], tests_schema)
    table = models.unit_test(warehouse, "fct_test_usage", is_incremental=True, given={
        "this": this, "staging.stg_thousandeyes__usage": staging_usage, "staging.stg_thousandeyes__tests": staging_tests})
    rows = sorted((r["snapshot_id"], r["account_id"], r["cloud_units_used"], r["partition_key"]) for r in table.to_pylist())
    # the whole touched tick, s2 included, so replacing the tick's rows never drops 2001
    assert rows == [("s1", "1234", 10, "2026-11-20-10:00"), ("s2", "2001", 20, "2026-11-20-10:00")]
