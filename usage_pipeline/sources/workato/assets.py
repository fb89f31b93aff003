"""Workato's raw and staging assets: daily admin-zone windows, backfillable in one run.

The one rule: a partition is one admin-zone calendar day (23, 24 or 25 hours); a run may
cover a range of days (`BackfillPolicy.single_run()`), and each day is pulled as its own
batch and staged as its own replacement, so a re-pulled window replaces exactly that window's
rows, in one transaction.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import dagster as dg

from usage_pipeline import timeutil
from usage_pipeline.errors import SourceError, UsagePipelineError
from usage_pipeline.landing import LandingStore, Snapshot
from usage_pipeline.sources.base import (
    PULL_CHECK,
    STAGE_CHECK,
    Parsed,
    Staging,
    StageReport,
    pull_accounts,
)
from usage_pipeline.sources.workato import constants
from usage_pipeline.sources.workato.client import WorkatoClient
from usage_pipeline.sources.workato.parse import TABLES, parse_batch
from usage_pipeline.sources.workato.windows import Window, is_open_or_settling, zone
from usage_pipeline.warehouse import Warehouse

RAW_KEY = dg.AssetKey(constants.RAW_ASSET_KEY)
USAGE_KEY = dg.AssetKey(["staging", "stg_workato__usage"])
REQUESTS_KEY = dg.AssetKey(["staging", "stg_workato__requests"])


# ---------- partitions and windows


@lru_cache(maxsize=16)
def partitions_for(timezone: str) -> dg.DailyPartitionsDefinition:
    """Daily partitions in the admin zone; `end_offset=1` makes today's (still open) window a partition."""
    zone(timezone)
    return dg.DailyPartitionsDefinition(start_date=constants.PARTITIONS_START, timezone=timezone, end_offset=1,
                                        fmt="%Y-%m-%d")


def window_for(partitions_def: dg.DailyPartitionsDefinition, partition_key: str) -> Window:
    """The partition's admin-zone day as a UTC window (Dagster's window, measured in UTC)."""
    window = partitions_def.time_window_for_partition_key(partition_key)
    return Window(window.start, window.end)


def tick_partition_keys(now: datetime, timezone: str) -> list[str]:
    """The windows a tick at `now` pulls: every day that has started and is not final, oldest first.

    Final = constants.FINAL_AFTER after the window closed (48 h): today, yesterday and the day
    before are re-pulled on each tick; older days only by an explicit backfill.
    """
    today = now.astimezone(zone(timezone)).date()
    start = date.fromisoformat(constants.PARTITIONS_START)
    keys = []
    day = today
    while day >= start:
        window = window_for(partitions_for(timezone), day.isoformat())
        if not is_open_or_settling(window, now):
            if window.end <= now:
                break
        else:
            keys.append(day.isoformat())
        day -= timedelta(days=1)
    return sorted(keys)


# ---------- pulling


@dataclass
class RangePull:
    """What one run pulled, day by day."""

    landed: dict[str, list[Snapshot]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def metadata(self, client: WorkatoClient) -> dict[str, Any]:
        snapshots = [snapshot for day in self.landed.values() for snapshot in day]
        stats = client.stats()
        return {
            "days_pulled": len(self.landed),
            "days_failed": len(self.failures),
            "first_day": min(self.landed, default=""),
            "last_day": max(self.landed, default=""),
            "snapshots": len(snapshots),
            "bytes": sum(snapshot.bytes for snapshot in snapshots),
            "requests": stats.requests,
            "retries": stats.retries,
            "rate_limit_wait_s": round(stats.wait_s, 3),
            "timezone": client.timezone,
            "snapshot_ids": dg.MetadataValue.json([snapshot.snapshot_id for snapshot in snapshots][:50]),
        }


def pull_days(*, partition_keys: list[str], partitions_def: dg.DailyPartitionsDefinition, workato: WorkatoClient,
              landing: LandingStore, warehouse: Warehouse, log: Any) -> RangePull:
    """Land each day's responses as one batch; a failing day is named and the other days still land."""
    result = RangePull()
    for key in partition_keys:
        window = window_for(partitions_def, key)
        try:
            report = pull_accounts(
                vendor=constants.KEY, accounts=[constants.BATCH_ACCOUNT], partition_key=key, landing=landing,
                warehouse=warehouse, logger=log,
                pull=lambda _account, batch, window=window: [batch.land(f) for f in workato.fetch_window(window)],
            )
            result.landed[key] = report.landed[constants.BATCH_ACCOUNT]
        except SourceError as error:
            result.failures[key] = error.detail
    if partition_keys and not result.landed:
        raise SourceError(constants.KEY, constants.BATCH_ACCOUNT,
                          "every window failed: " + "; ".join(f"{k}: {v}" for k, v in result.failures.items())[:2000])
    return result


def parser(landing: LandingStore, _batches: Any) -> Callable[[str, list[Snapshot]], Parsed]:
    """One request covers every workspace of a day: each batch parsed on its own."""
    return lambda account, snapshots: parse_batch(account, [(s, landing.read_json(s)) for s in snapshots])


STAGING = Staging(constants.KEY, TABLES, parser)


def stage(warehouse: Warehouse, landing: LandingStore, partition_key: str) -> StageReport:
    """Parse the day's latest batch that parses and replace its staging rows in one transaction (no network)."""
    return STAGING.stage(warehouse, landing, partition_key)


def ensure_staging(warehouse: Warehouse) -> None:
    """Create the staging tables if missing, so the models can build before the first pull."""
    STAGING.ensure(warehouse)


def _check(name: str, key: dg.AssetKey, failures: dict[str, str], ok: int, what: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name, asset_key=key, passed=not failures, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"days_ok": ok, "days_failed": len(failures), "failures": dg.MetadataValue.json(failures)},
        description=f"every day {what}" if not failures else
        "failed days: " + "; ".join(f"{day}: {cause}" for day, cause in failures.items())[:1000],
    )


# ---------- the assets


def build_assets(timezone: str) -> list[dg.AssetsDefinition]:
    """The raw and staging assets for an admin zone (the zone shapes the partitions)."""
    partitions_def = partitions_for(timezone)
    policy = dg.BackfillPolicy.single_run()

    @dg.asset(
        key=RAW_KEY, group_name=constants.KEY, kinds={"workato"}, partitions_def=partitions_def,
        backfill_policy=policy, pool="workato_api",
        check_specs=[dg.AssetCheckSpec(PULL_CHECK, asset=RAW_KEY,
                                       description="every day window of the run was pulled and landed")],
    )
    def raw_workato_usage(context: dg.AssetExecutionContext, workato: WorkatoClient, landing: LandingStore,
                          warehouse: Warehouse) -> dg.MaterializeResult:
        """Land Workato Embedded usage for each admin-zone day of the run: all workspaces in one POST
        (split past 100 ids), once as workspace totals and once grouped by recipe, hourly buckets.
        """
        pulled = pull_days(partition_keys=list(context.partition_keys), partitions_def=partitions_def, workato=workato,
                           landing=landing, warehouse=warehouse, log=context.log)
        return dg.MaterializeResult(metadata=pulled.metadata(workato), check_results=[
            _check(PULL_CHECK, RAW_KEY, pulled.failures, len(pulled.landed), "was pulled")])

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(USAGE_KEY, deps=[RAW_KEY], description="Workato usage, one row per workspace (× recipe) × "
                         "bucket × grouping of each day window's latest pull; times in UTC."),
            dg.AssetSpec(REQUESTS_KEY, deps=[RAW_KEY], description="One row per Workato usage response: the window, "
                         "zone, grouping and ids it asked for, and whether `data` was null."),
        ],
        name="stg_workato_usage", group_name=constants.KEY, partitions_def=partitions_def, backfill_policy=policy,
        pool="warehouse_writer",
        check_specs=[dg.AssetCheckSpec(STAGE_CHECK, asset=USAGE_KEY,
                                       description="every day window with raw data was parsed and loaded")],
    )
    def stg_workato_usage(context: dg.AssetExecutionContext, landing: LandingStore, warehouse: Warehouse):
        """Parse each day's latest complete batch and replace that day's staging rows in one transaction."""
        reports, failures = [], {}
        for key in context.partition_keys:
            try:
                report = stage(warehouse, landing, key)
            except UsagePipelineError as error:
                failures[key] = str(error)
                context.log.error(str(error))
                continue
            reports.append(report)
            failures.update({key: cause for cause in report.failures.values()})
        metadata = _stage_metadata(reports)
        yield dg.MaterializeResult(asset_key=USAGE_KEY, metadata=metadata["usage"], check_results=[
            _check(STAGE_CHECK, USAGE_KEY, failures, len(reports), "was parsed")])
        yield dg.MaterializeResult(asset_key=REQUESTS_KEY, metadata=metadata["requests"])

    return [raw_workato_usage, stg_workato_usage]


def _stage_metadata(reports: list[StageReport]) -> dict[str, dict[str, Any]]:
    usage = sum(report.rows.get(constants.STAGING_USAGE, 0) for report in reports)
    requests = sum(report.rows.get(constants.STAGING_REQUESTS, 0) for report in reports)
    warnings = list(dict.fromkeys(warning for report in reports for warning in report.warnings))
    common = {"days_staged": len(reports),
              "snapshot_ids": dg.MetadataValue.json([s for r in reports for s in r.snapshot_ids][:50])}
    return {
        "usage": {"dagster/row_count": usage, "dagster/table_name": constants.STAGING_USAGE,
                  "warnings": dg.MetadataValue.json(warnings[:20]), **common},
        "requests": {"dagster/row_count": requests, "dagster/table_name": constants.STAGING_REQUESTS, **common},
    }


def build_schedule(timezone: str, job: Any) -> dg.ScheduleDefinition:
    """Hourly: one run per window that is not final yet (today, yesterday, the day before)."""

    @dg.schedule(name="workato_hourly_schedule", cron_schedule="20 * * * *", job=job, execution_timezone="UTC")
    def workato_hourly_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        now = context.scheduled_execution_time or timeutil.utcnow()
        return [dg.RunRequest(run_key=f"{key}@{now:%Y%m%dT%H%M}", partition_key=key)
                for key in tick_partition_keys(now, timezone)]

    return workato_hourly_schedule
