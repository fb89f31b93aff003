"""Terraform Enterprise System API usage bundles: an observation source (see README.md here).

Registry names (usage_pipeline/sources/__init__.py): the bundle is pulled once per daily tick,
past ticks are refused (TFE serves only the snapshots it holds now), and `replay` re-stages
every landed bundle without a token.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from usage_pipeline.errors import ConfigError
from usage_pipeline.landing import LandingStore
from usage_pipeline.settings import Settings
from usage_pipeline.sources.base import StageReport
from usage_pipeline.sources.terraform_enterprise import assets, constants
from usage_pipeline.sources.terraform_enterprise.client import TerraformEnterpriseClient
from usage_pipeline.warehouse import Warehouse

KEY = constants.KEY
BACKFILLABLE = False
partitions_def = assets.terraform_enterprise_daily_partitions

__all__ = ["BACKFILLABLE", "KEY", "TerraformEnterpriseClient", "check_credentials", "definitions", "ensure_staging",
           "partitions_def", "STAGING", "stage", "tick_partition_keys"]

STAGING = assets.STAGING  # tables and parser: what `replay` runs in bulk


def definitions(config: Settings) -> dg.Definitions:
    """Raw + staging assets with their checks, the daily job and schedule, and the `terraform_enterprise` resource."""
    job = assets.build_job()
    return dg.Definitions(
        assets=[assets.raw_terraform_enterprise_usage_bundle, assets.stg_terraform_enterprise_usage_bundle],
        jobs=[job], schedules=[assets.build_schedule(job)],
        resources={KEY: TerraformEnterpriseClient.from_settings(config)},
    )


def tick_partition_keys(now: datetime) -> list[str]:
    """The partition a tick at `now` pulls: the latest closed day."""
    return assets.tick_partition_keys(now)


def stage(warehouse: Warehouse, landing: LandingStore, partition_key: str) -> StageReport:
    """Parse raw → staging for one tick (no network)."""
    return assets.stage(warehouse, landing, partition_key)


def ensure_staging(warehouse: Warehouse) -> None:
    assets.ensure_staging(warehouse)


def check_credentials(config: Settings) -> str:
    """One authenticated GET /api/v1/ping, in plain words (for `usage-pipeline doctor`)."""
    tfe = config.terraform_enterprise
    if tfe is None:
        raise ConfigError(f"{KEY} is not configured: {config.disabled.get(KEY, 'TFE_SYSTEM_API_TOKEN unset')}")
    client = TerraformEnterpriseClient(url=tfe.url, token=tfe.token.get_secret_value(), ca_bundle=tfe.ca_bundle)
    try:
        client.ping()
    finally:
        client.close()
    trust = f"certificate checked against TFE_CA_BUNDLE {tfe.ca_bundle}" if tfe.ca_bundle else "system trust store"
    return f"System API at {tfe.url} answered pong to the token ({trust})"
