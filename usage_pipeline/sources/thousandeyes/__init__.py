"""ThousandEyes usage: an hourly state snapshot per organization (see README.md here).

Registry names (usage_pipeline/sources/__init__.py): KEY, BACKFILLABLE, partitions_def,
definitions, tick_partition_keys, STAGING, stage, ensure_staging, check_credentials.
"""

from __future__ import annotations

import dagster as dg

from usage_pipeline.landing import LandingStore
from usage_pipeline.settings import Settings
from usage_pipeline.sources.base import StageReport
from usage_pipeline.sources.thousandeyes import assets, checks, constants
from usage_pipeline.sources.thousandeyes.client import ThousandEyesClient
from usage_pipeline.warehouse import Warehouse

KEY = constants.KEY
BACKFILLABLE = False  # the vendor answers for "now" only: past ticks are refused
partitions_def = assets.partitions_def
tick_partition_keys = assets.tick_partition_keys

__all__ = ["BACKFILLABLE", "KEY", "STAGING", "ThousandEyesClient", "check_credentials", "definitions",
           "ensure_staging", "partitions_def", "stage", "tick_partition_keys"]

STAGING = assets.STAGING  # tables and parser: what `replay` runs in bulk


def definitions(config: Settings) -> dg.Definitions:
    """Raw + staging assets, the reconciliation checks, the hourly job and schedule, the `thousandeyes` resource."""
    job, schedule = assets.build_job_and_schedule()
    return dg.Definitions(
        assets=assets.ASSETS, asset_checks=checks.build_checks(), jobs=[job], schedules=[schedule],
        resources={"thousandeyes": ThousandEyesClient.from_settings(config)},
    )


def stage(warehouse: Warehouse, landing: LandingStore, partition_key: str) -> StageReport:
    """Parse one tick's raw snapshots into staging (no network): what `replay` calls."""
    return assets.stage(warehouse, landing, partition_key)


def ensure_staging(warehouse: Warehouse) -> None:
    assets.ensure_staging(warehouse)


def check_credentials(config: Settings) -> str:
    """One cheap authenticated call, described in plain words (`usage-pipeline doctor`)."""
    token = config.thousandeyes.token.get_secret_value() if config.thousandeyes is not None else ""
    client = ThousandEyesClient.from_settings(config, token=token)
    try:
        return client.check_credentials()
    finally:
        client.close()
