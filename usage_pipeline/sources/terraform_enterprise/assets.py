"""Terraform Enterprise's raw and staging assets: the usage bundle on every daily tick.

The one rule: a tick lands the whole bundle as it came (the installation is the account),
even when the body turns out to be unusable; staging then turns the partition's latest
complete bundle into rows. Snapshots repeat from bundle to bundle; deduplication by TFE's
snapshot id happens in `marts.fct_tfe_usage_metrics`, never by dropping raw or staging rows.
"""

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from usage_pipeline.landing import BatchWriter, LandingStore, Snapshot
from usage_pipeline.sources import base
from usage_pipeline.sources.base import PULL_CHECK, STAGE_CHECK, Parsed, StageReport
from usage_pipeline.sources.terraform_enterprise import constants
from usage_pipeline.sources.terraform_enterprise.client import TerraformEnterpriseClient
from usage_pipeline.sources.terraform_enterprise.constants import SCHEMAS
from usage_pipeline.sources.terraform_enterprise.parse import decode_bundle, parse_usage_bundle
from usage_pipeline.warehouse import Warehouse

RAW_KEY = dg.AssetKey(["raw", f"{constants.KEY}__{constants.ENDPOINT}"])
STAGING_KEYS = {table: dg.AssetKey(table.split(".")) for table in SCHEMAS}
METRICS_KEY = STAGING_KEYS[constants.METRICS_TABLE]
STAGING_DESCRIPTIONS = {
    constants.BUNDLES_TABLE: "TFE usage bundles: one row per landed bundle (bundle mode, signature, exact checksum).",
    constants.SNAPSHOTS_TABLE: "TFE usage snapshots: one row per landed bundle × TFE snapshot (licence, UTC time, "
                               "opt-in flags); snapshots repeat across overlapping bundles.",
    constants.METRICS_TABLE: "TFE usage metrics: one row per landed bundle × TFE snapshot × metric, keyed by the "
                             "map key; unknown keys kept, opted-out zeros flagged.",
}

terraform_enterprise_daily_partitions = base.tick_partitions("daily", constants.PARTITIONS_START)


def tick_partition_keys(now: Any = None) -> list[str]:
    """The one partition a scheduled tick at `now` pulls: the latest closed day."""
    return [base.latest_tick_key(terraform_enterprise_daily_partitions, now)]


# ---------- pulling and staging


def land_bundle(client: TerraformEnterpriseClient, batch: BatchWriter) -> Snapshot:
    """Fetch and land the bundle, then refuse a body that is not JSON at all.

    An HTML page or truncated JSON is a transport failure: the body stays landed (and
    `raw.api_snapshots` says where) but the batch is recorded failed, so staging keeps the
    last good bundle. Anything subtler is the parser's to judge in staging, where a fixed
    parser plus `replay` can still recover it.
    """
    fetched = client.fetch_bundle()
    snapshot = batch.land(fetched)
    decode_bundle(fetched.body, account_id=snapshot.account_id, snapshot_id=snapshot.snapshot_id,
                  landing_path=snapshot.landing_path)
    return snapshot


def parse_batch(landing: LandingStore, account: str, snapshots: list[Snapshot]) -> Parsed:
    """Rows of every bundle landed in one batch (one per tick in practice)."""
    tables: dict[str, list[dict[str, Any]]] = {table: [] for table in SCHEMAS}
    warnings: dict[str, None] = {}
    for snapshot in snapshots:
        if snapshot.endpoint != constants.ENDPOINT:
            continue
        payload = decode_bundle(landing.read_bytes(snapshot), account_id=account, snapshot_id=snapshot.snapshot_id,
                                landing_path=snapshot.landing_path)
        parsed = parse_usage_bundle(payload, snapshot_id=snapshot.snapshot_id, account_id=account,
                                    observed_at=snapshot.fetched_at, landing_path=snapshot.landing_path)
        for table, rows in parsed.tables.items():
            tables[table].extend(rows)
        warnings.update(dict.fromkeys(parsed.warnings))
    return Parsed(tables=tables, warnings=tuple(warnings))


def parser(landing: LandingStore, _batches: Any) -> Callable[[str, list[Snapshot]], Parsed]:
    """One installation per configuration: each bundle parsed on its own."""
    return lambda account, snapshots: parse_batch(landing, account, snapshots)


STAGING = base.Staging(constants.KEY, SCHEMAS, parser)


def stage(warehouse: Warehouse, landing: LandingStore, partition_key: str, *, logger: Any = None) -> StageReport:
    """Parse the partition's latest bundle that parses and replace its staging rows in one transaction."""
    return STAGING.stage(warehouse, landing, partition_key, logger=logger)


def ensure_staging(warehouse: Warehouse) -> None:
    """Create the staging tables if missing, so the models can build before the first pull."""
    STAGING.ensure(warehouse)


# ---------- the assets


def _column_schema(schema: Any) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(field.name, str(field.type))
                                   for field in base.staging_schema(schema)])


@dg.asset(
    key=RAW_KEY, group_name=constants.KEY, kinds={"terraform"}, partitions_def=terraform_enterprise_daily_partitions,
    pool=f"{constants.KEY}_api",
    check_specs=base.isolation_check_specs(RAW_KEY, PULL_CHECK, "the installation's usage bundle was fetched and landed"),
)
def raw_terraform_enterprise_usage_bundle(
    context: dg.AssetExecutionContext, terraform_enterprise: TerraformEnterpriseClient, landing: LandingStore,
    warehouse: Warehouse,
) -> dg.MaterializeResult:
    """Land the TFE System API usage bundle (GET /api/v1/usage/bundle) of the current daily tick.

    The bundle holds every snapshot the installation still keeps, so consecutive ticks overlap.
    A past tick is refused: TFE serves only what it holds now.
    """
    base.refuse_past_tick(constants.KEY, terraform_enterprise_daily_partitions, context.partition_key)
    report = base.pull_accounts(
        vendor=constants.KEY, accounts=[terraform_enterprise.installation], partition_key=context.partition_key,
        landing=landing, warehouse=warehouse, logger=context.log,
        pull=lambda _account, batch: land_bundle(terraform_enterprise, batch), session_stats=terraform_enterprise.stats,
    )
    return dg.MaterializeResult(metadata=report.metadata(), check_results=[report.check_result(RAW_KEY)])


@dg.multi_asset(
    specs=[
        dg.AssetSpec(key, deps=[RAW_KEY], description=STAGING_DESCRIPTIONS[table], kinds={"terraform"},
                     metadata={"dagster/table_name": table, "dagster/column_schema": _column_schema(SCHEMAS[table])})
        for table, key in STAGING_KEYS.items()
    ],
    name="stg_terraform_enterprise_usage_bundle", group_name=constants.KEY,
    partitions_def=terraform_enterprise_daily_partitions, pool="warehouse_writer",
    check_specs=base.isolation_check_specs(METRICS_KEY, STAGE_CHECK, "the partition's latest bundle was parsed and loaded"),
)
def stg_terraform_enterprise_usage_bundle(
    context: dg.AssetExecutionContext, landing: LandingStore, warehouse: Warehouse,
) -> Iterator[dg.MaterializeResult]:
    """Parse the tick's latest complete bundle into bundle, snapshot and metric rows (replacing the tick's rows)."""
    report = stage(warehouse, landing, context.partition_key, logger=context.log)
    for table, key in STAGING_KEYS.items():
        metadata = {**report.metadata(), "dagster/row_count": report.rows.get(table, 0)}
        checks = [report.check_result(METRICS_KEY)] if key == METRICS_KEY else []
        yield dg.MaterializeResult(asset_key=key, metadata=metadata, check_results=checks)


def build_job() -> Any:
    """The job a tick runs: raw then staging for one daily partition."""
    return dg.define_asset_job(
        f"{constants.KEY}_job", selection=dg.AssetSelection.assets(raw_terraform_enterprise_usage_bundle,
                                                                   stg_terraform_enterprise_usage_bundle),
        partitions_def=terraform_enterprise_daily_partitions,
    )


def build_schedule(job: Any) -> dg.ScheduleDefinition:
    """Daily at 01:10 UTC: TFE takes its snapshot around midnight UTC (product-report docs: daily)."""
    return dg.build_schedule_from_partitioned_job(job, name=f"{constants.KEY}_daily_schedule", hour_of_day=1,
                                                  minute_of_hour=10)
