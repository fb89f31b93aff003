"""Workato raw and staging assets against the sandbox (rungs 3-5, both engines): daily admin-zone
windows, single-run backfills of N days, re-pulls that replace, failures named per day,
replay from raw, and a canary token that reaches no file, table or log."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from usage_pipeline import settings, timeutil
from usage_pipeline.landing import LandingStore, latest_batches
from usage_pipeline.sandbox import SandboxServer
from usage_pipeline.sandbox import workato as sandbox_workato
from usage_pipeline.sources import workato
from usage_pipeline.sources.workato import assets
from usage_pipeline.warehouse import Warehouse

CANARY = "canary-workato-token-5e8d1b"
RAW, USAGE, REQUESTS = (dg.AssetKey(["raw", "workato__usage"]), dg.AssetKey(["staging", "stg_workato__usage"]),
                        dg.AssetKey(["staging", "stg_workato__requests"]))


@dataclass
class Pipeline:
    server: SandboxServer
    warehouse: Warehouse
    landing: LandingStore
    config: settings.Settings

    def materialize(self, first: str, last: str | None = None, *, config: settings.Settings | None = None
                    ) -> dg.ExecuteInProcessResult:
        """One run: one partition, or the range [first, last] as a single-run backfill."""
        defs = workato.definitions(config or self.config)
        resources = {**defs.resources, "warehouse": self.warehouse, "landing": self.landing}
        key = {"partition_key": first} if last is None else {"tags": {
            "dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}}
        with timeutil.use_clock(self.server.clock):
            return dg.materialize(list(defs.assets), resources=resources, raise_on_error=False,
                                  instance=dg.DagsterInstance.ephemeral(), **key)

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        return self.warehouse.query(sql, params)


@pytest.fixture
def pipeline(warehouse: Warehouse, landing: LandingStore, monkeypatch) -> Iterator[Pipeline]:
    with SandboxServer(tokens={"workato": CANARY}) as server:
        env = server.env()
        for name, value in env.items():
            monkeypatch.setenv(name, value)  # the resource reads dg.EnvVar("WORKATO_TOKEN") at run time
        yield Pipeline(server, warehouse, landing, settings.load(env))


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def hours_of(pipeline: Pipeline, workspace_id: int, grouping: str = "workspace") -> list[tuple[datetime, datetime]]:
    return [(a, b) for a, b in pipeline.rows(
        "select interval_start, interval_end from staging.stg_workato__usage "
        "where grouping = %s and workspace_id = %s order by interval_start", [grouping, workspace_id])]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---------- one window, a range, a re-pull


def test_one_day_lands_both_pulls_and_stages_every_admin_zone_hour(pipeline):
    result = pipeline.materialize("2026-11-01")
    assert result.success
    assert all(evaluation.passed for evaluation in checks(result).values())
    hours = hours_of(pipeline, 3127)
    assert len(hours) == 25  # Nov 1 in Los Angeles: fall back
    assert (as_utc(hours[0][0]), as_utc(hours[-1][1])) == (utc(2026, 11, 1, 7), utc(2026, 11, 2, 8))
    assert pipeline.rows("select grouping, count(*) from staging.stg_workato__requests group by 1 order by 1") == \
        [("recipe", 1), ("workspace", 1)]
    batches = pipeline.rows("select count(*), min(status) from raw.api_batches where vendor = 'workato'")
    assert batches == [(1, "complete")]
    assert pipeline.rows("select distinct account_id, partition_key from staging.stg_workato__usage") == \
        [("all_workspaces", "2026-11-01")]


def test_a_backfill_of_n_days_is_one_run_with_exactly_n_day_windows(pipeline):
    result = pipeline.materialize("2026-10-30", "2026-11-03")  # 5 days, one of them 25 hours long
    assert result.success
    raw_events = [e for e in result.get_asset_materialization_events() if e.asset_key == RAW]
    assert sorted(e.partition for e in raw_events) == ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02",
                                                       "2026-11-03"]
    starts = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
    assert sorted(starts) == ["raw__workato__usage", "stg_workato_usage"]  # one step each for all five days
    keys = [row[0] for row in pipeline.rows("select distinct partition_key from staging.stg_workato__usage order by 1")]
    assert keys == ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02", "2026-11-03"]
    for workspace_id in (3127, 3128):
        hours = hours_of(pipeline, workspace_id)
        assert len(hours) == 5 * 24 + 1
        assert all(end == nxt for (_, end), (nxt, _) in zip(hours, hours[1:]))  # contiguous, no overlap
        assert (as_utc(hours[0][0]), as_utc(hours[-1][1])) == (utc(2026, 10, 30, 7), utc(2026, 11, 4, 8))
    complete = "select count(*) from raw.api_batches where vendor = 'workato' and status = 'complete'"
    assert pipeline.rows(complete) == [(5,)]


def test_rerunning_a_window_replaces_it_with_the_new_numbers(pipeline):
    pipeline.materialize("2026-11-01")
    first = pipeline.rows("select grouping, workspace_id, recipe_id, interval_start, tasks "
                          "from staging.stg_workato__usage order by 1, 2, 3, 4")
    result = pipeline.materialize("2026-11-01")  # the sandbox re-allocates tasks between buckets
    assert result.success
    second = pipeline.rows("select grouping, workspace_id, recipe_id, interval_start, tasks "
                           "from staging.stg_workato__usage order by 1, 2, 3, 4")
    assert [row[:4] for row in second] == [row[:4] for row in first]  # same buckets, none twice
    assert second != first  # new numbers
    assert sum(row[4] for row in second) == sum(row[4] for row in first)
    # the new numbers are exactly those of the latest landed responses
    (batch,) = latest_batches(pipeline.warehouse, "workato", "2026-11-01").values()
    landed = {}
    for snapshot in batch:
        for entry in pipeline.landing.read_json(snapshot)["data"] or []:
            for bucket in entry["intervals"]:
                key = (snapshot.request["grouping"], entry["workspace_id"], entry["recipe_id"], bucket["from"])
                landed[key] = bucket["task_count"]
    staged = {(g, w, r, local): t for g, w, r, local, t in pipeline.rows(
        "select grouping, workspace_id, recipe_id, interval_start_local, tasks from staging.stg_workato__usage")}
    assert staged == landed
    assert pipeline.rows("select count(*) from raw.api_snapshots where vendor = 'workato'") == [(4,)]  # audit trail
    assert pipeline.rows("select count(distinct snapshot_id) from staging.stg_workato__usage") == [(2,)]


def test_a_repull_answering_data_null_empties_the_window(pipeline):
    pipeline.materialize("2026-11-01")
    sandbox_workato.state(pipeline.server).workspaces.clear()
    result = pipeline.materialize("2026-11-01")
    assert result.success
    assert pipeline.rows("select count(*) from staging.stg_workato__usage") == [(0,)]
    assert pipeline.rows("select grouping, is_data_null from staging.stg_workato__requests order by 1") == \
        [("recipe", True), ("workspace", True)]


def test_a_tick_pulls_every_window_that_is_not_final(pipeline):
    keys = workato.tick_partition_keys(pipeline.server.clock.now(), timezone=pipeline.config.workato.timezone)
    assert keys == ["2026-11-18", "2026-11-19", "2026-11-20"]
    for key in keys:
        assert pipeline.materialize(key).success
    staged = dict(pipeline.rows("select partition_key, count(*) from staging.stg_workato__usage "
                                "where grouping = 'workspace' and workspace_id = 3127 group by 1"))
    # today is open: 02:00 PST in the sandbox, so two hours so far
    assert staged == {"2026-11-18": 24, "2026-11-19": 24, "2026-11-20": 2}
    pipeline.server.clock.advance(timedelta(hours=5))
    assert pipeline.materialize("2026-11-20").success
    assert pipeline.rows("select count(*) from staging.stg_workato__usage where partition_key = '2026-11-20' "
                         "and grouping = 'workspace' and workspace_id = 3127") == [(7,)]


# ---------- failures, named per day


def test_a_failing_day_is_named_and_the_other_days_land(pipeline):
    # 400 is never retried; `match` picks the one request whose `from` is Oct 30's midnight
    pipeline.server.faults.add("workato", "always_fail", match="2026-10-30T00:00:00.000-07:00", status=400)
    result = pipeline.materialize("2026-10-30", "2026-11-01")
    assert result.success  # the run goes on; the check says what failed
    pulled = checks(result)["all_accounts_pulled"]
    assert not pulled.passed and "2026-10-30" in pulled.description and "HTTP 400" in pulled.description
    assert pulled.severity == dg.AssetCheckSeverity.ERROR
    assert [r[0] for r in pipeline.rows("select distinct partition_key from staging.stg_workato__usage order by 1")] \
        == ["2026-10-31", "2026-11-01"]
    assert pipeline.rows("select status from raw.api_batches where partition_key = '2026-10-30'") == [("failed",)]


def test_every_day_failing_fails_the_run_without_showing_the_token(pipeline, monkeypatch, caplog):
    monkeypatch.setenv("WORKATO_TOKEN", "not-the-sandbox-token-12345")
    with caplog.at_level(logging.INFO):
        result = pipeline.materialize("2026-11-01", "2026-11-02")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.message + str(failure.step_failure_data.error.cause)
    assert "every window failed" in message and "WORKATO_TOKEN" in message
    assert "not-the-sandbox-token-12345" not in message + caplog.text
    assert CANARY not in message + caplog.text


def test_a_malformed_response_keeps_raw_and_fails_only_its_day(pipeline):
    pipeline.server.faults.add("workato", "malformed_json", match="2026-10-31T00:00:00.000-07:00", times=1)
    result = pipeline.materialize("2026-10-31", "2026-11-01")
    parsed = checks(result)["all_accounts_parsed"]
    assert not parsed.passed and "2026-10-31" in parsed.description and "not valid JSON" in parsed.description
    assert [r[0] for r in pipeline.rows("select distinct partition_key from staging.stg_workato__usage")] == \
        ["2026-11-01"]
    (path,) = [r[0] for r in pipeline.rows(
        "select landing_path from raw.api_snapshots where partition_key = '2026-10-31' order by fetched_at limit 1")]
    assert (Path(pipeline.landing.root) / path).is_file()


def test_an_unknown_field_loads_around_and_is_reported(pipeline):
    pipeline.server.faults.add("workato", "extra_field", times=None, field="billing_tier", value="gold", where="items")
    result = pipeline.materialize("2026-11-01")
    assert result.success and checks(result)["all_accounts_parsed"].passed
    staged = next(e for e in result.get_asset_materialization_events() if e.asset_key == USAGE)
    warnings = staged.step_materialization_data.materialization.metadata["warnings"].value
    assert any("billing_tier" in w and "FIELD_ALIASES" in w for w in warnings)
    assert pipeline.rows("select count(*) from staging.stg_workato__usage where grouping = 'workspace' "
                         "and workspace_id = 3127") == [(25,)]


# ---------- raw first: replay, secrets


def test_staging_rebuilds_from_raw_alone(pipeline):
    pipeline.materialize("2026-11-01")
    query = ("select grouping, workspace_id, recipe_id, interval_start, tasks, successful_jobs, failed_jobs, "
             "snapshot_id from staging.stg_workato__usage order by 1, 2, 3, 4")
    before = pipeline.rows(query)
    with pipeline.warehouse.transaction() as tx:
        tx.execute("delete from staging.stg_workato__usage")
    pipeline.server.stop()  # no network
    report = workato.stage(pipeline.warehouse, pipeline.landing, "2026-11-01")
    assert report.failures == {} and pipeline.rows(query) == before


def test_the_token_reaches_no_file_table_or_log(pipeline, caplog):
    with caplog.at_level(logging.DEBUG):
        pipeline.materialize("2026-11-01")
        pipeline.server.faults.add("workato", "always_fail", match="2026-11-02T00:00:00.000-08:00", status=403)
        pipeline.materialize("2026-11-02")
    files = [gzip.decompress(p.read_bytes()) for p in Path(pipeline.landing.root).rglob("*.gz")]
    assert files and not any(CANARY.encode() in body for body in files)
    tables = ("raw.api_snapshots", "raw.api_batches", "staging.stg_workato__usage", "staging.stg_workato__requests")
    for table in tables:
        dump = " ".join(map(str, pipeline.rows(f"select * from {table}")))
        assert CANARY not in dump
    assert "403" in " ".join(map(str, pipeline.rows("select error from raw.api_batches where status = 'failed'")))
    assert CANARY not in caplog.text


# ---------- definitions


def full_definitions(pipeline: Pipeline, config: settings.Settings | None = None) -> dg.Definitions:
    """Workato's definitions plus the shared resources the code location adds."""
    return dg.Definitions.merge(workato.definitions(config or pipeline.config), dg.Definitions(
        resources={"warehouse": pipeline.warehouse, "landing": pipeline.landing}))


def test_definitions_pin_keys_checks_partitions_and_backfill_policy(pipeline):
    defs = full_definitions(pipeline)
    graph = defs.resolve_asset_graph()
    assert set(graph.get_all_asset_keys()) == {RAW, USAGE, REQUESTS}
    raw = defs.resolve_assets_def(RAW)
    assert raw.backfill_policy == dg.BackfillPolicy.single_run()
    assert raw.partitions_def == dg.DailyPartitionsDefinition(start_date="2023-01-01", timezone="America/Los_Angeles",
                                                               end_offset=1)
    assert defs.resolve_assets_def(USAGE).backfill_policy == dg.BackfillPolicy.single_run()
    assert {key.name for key in raw.check_keys} == {"all_accounts_pulled"}
    assert {key.name for key in defs.resolve_assets_def(USAGE).check_keys} == {"all_accounts_parsed"}
    assert defs.resolve_job_def("workato_job").partitions_def == raw.partitions_def
    assert workato.BACKFILLABLE is True and workato.KEY == "workato"
    dg.Definitions.validate_loadable(defs)


def test_partitions_def_follows_workato_timezone(pipeline, monkeypatch):
    monkeypatch.setenv("WORKATO_TIMEZONE", "Asia/Kolkata")
    assert workato.partitions_def.timezone == "Asia/Kolkata"
    # 10:00 UTC Nov 20 is 15:30 in Kolkata; the registry call reads the zone from the settings
    assert workato.tick_partition_keys(utc(2026, 11, 20, 10)) == ["2026-11-18", "2026-11-19", "2026-11-20"]
    assert workato.tick_partition_keys(utc(2026, 11, 20, 19)) == ["2026-11-19", "2026-11-20", "2026-11-21"]
    config = settings.load({**pipeline.server.env(), "WORKATO_TIMEZONE": "Asia/Kolkata"})
    window = assets.window_for(full_definitions(pipeline, config).resolve_assets_def(RAW).partitions_def, "2026-03-08")
    assert window.start == datetime(2026, 3, 7, 18, 30, tzinfo=UTC)


def test_the_hourly_schedule_asks_for_each_window_that_is_not_final(pipeline):
    defs = full_definitions(pipeline)
    schedule = defs.resolve_schedule_def("workato_hourly_schedule")
    with dg.instance_for_test() as instance, dg.build_schedule_context(
            instance=instance, scheduled_execution_time=utc(2026, 11, 20, 10, 20),
            repository_def=defs.get_repository_def()) as context:
        requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert [request.partition_key for request in requests] == ["2026-11-18", "2026-11-19", "2026-11-20"]
