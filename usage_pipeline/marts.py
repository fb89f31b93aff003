"""The cross-vendor layer in Dagster: the marts job and its hourly schedule, the alerts on
marts.mart_usage_vs_quota, and the HTML report as an asset.

The one rule: the model assets themselves come from `models.build_definitions`; this module
only selects them (every SQL model asset, by kind) and adds what sits on top of them.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field

from usage_pipeline import alerts, report, settings
from usage_pipeline.warehouse import Warehouse

REPORT_KEY = dg.AssetKey(["reports", "usage_report"])
ACCOUNTS_KEY = dg.AssetKey(["marts", "dim_accounts"])
ENTITLEMENTS_KEY = dg.AssetKey(["marts", "fct_subscription_entitlements"])
DEFAULT_REPORT_PATH = "data/report.html"


class ReportConfig(dg.Config):
    """Run configuration of the report asset (Launchpad)."""

    out_path: str = Field(
        default="",
        description="Where to write the HTML file; empty: report.html beside the DuckDB warehouse file "
        "(data/report.html by default), or data/report.html for PostgreSQL.",
    )


def report_path(config: ReportConfig, warehouse: Warehouse) -> Path:
    """The configured path, else beside the DuckDB file, so a test warehouse never writes into data/."""
    if config.out_path:
        return Path(config.out_path)
    if warehouse.dialect == "duckdb":
        return warehouse.duckdb_path.parent / "report.html"
    return Path(DEFAULT_REPORT_PATH)


def build_report_asset(*, with_entitlements: bool) -> dg.AssetsDefinition:
    """The report asset; it depends on the entitlement history only where that model exists."""
    deps = [alerts.MART_KEY, ACCOUNTS_KEY] + ([ENTITLEMENTS_KEY] if with_entitlements else [])

    @dg.asset(
        key=REPORT_KEY,
        deps=deps,
        group_name="reports",
        kinds={"html"},
        owners=["team:platform"],
        description=(
            "The self-contained offline HTML report (usage against the plan per vendor and account, "
            "burn-down with forecast, accounts at risk, entitlement changes of the last 90 days). "
            "Written beside the DuckDB warehouse (data/report.html by default) unless the run config says otherwise."
        ),
    )
    def usage_report(context: dg.AssetExecutionContext, config: ReportConfig, warehouse: Warehouse) -> dg.MaterializeResult:
        path = report.write_report(warehouse, report_path(config, warehouse))
        risky = alerts.current_statuses(report.read_only(warehouse), statuses=["at_risk", "over"])
        context.log.info(f"report written to {path.resolve()}")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(path.resolve())),
                "bytes": path.stat().st_size,
                "accounts_at_risk_or_over": len(risky),
            }
        )

    return usage_report


def definitions(config: settings.Settings) -> dg.Definitions:
    """Marts job (every SQL model asset and the report), its schedule, alerts and the report asset."""
    marts_job = dg.define_asset_job(
        "marts_job",
        selection=dg.AssetSelection.kind("sql") | dg.AssetSelection.assets(REPORT_KEY),
        description="Every SQL model (staging, intermediate, marts), their checks and the HTML report, in dependency order.",
    )
    marts_schedule = dg.ScheduleDefinition(
        name="marts_schedule",
        job=marts_job,
        cron_schedule="15 * * * *",  # after the hourly pulls of :00 have landed
        execution_timezone="UTC",
        description="Rebuild the models, run their checks and refresh the report, hourly at :15.",
    )
    with_entitlements = any(Path(config.models_dir).rglob("fct_subscription_entitlements.sql"))
    return dg.Definitions(
        assets=[build_report_asset(with_entitlements=with_entitlements)],
        asset_checks=[alerts.no_account_over_quota, alerts.no_account_at_risk],
        jobs=[marts_job],
        schedules=[marts_schedule],
        sensors=[alerts.build_status_sensor(warehouse_url=config.warehouse_url, webhook_url=config.alert_webhook_url)],
    )
