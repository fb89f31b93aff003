"""Workato Embedded usage: the one windowed, backfillable source (see README.md here).

Registry names (usage_pipeline/sources/__init__.py). The admin time zone (WORKATO_TIMEZONE)
shapes the partitions, so `partitions_def` and `tick_partition_keys` read it from the settings
when they are used, never at import.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dagster as dg

from usage_pipeline import settings as settings_module
from usage_pipeline import timeutil
from usage_pipeline.landing import LandingStore
from usage_pipeline.settings import Settings
from usage_pipeline.sources.base import StageReport
from usage_pipeline.sources.workato import assets, constants
from usage_pipeline.sources.workato.client import WorkatoClient
from usage_pipeline.warehouse import Warehouse

KEY = constants.KEY
BACKFILLABLE = True
DEFAULT_TIMEZONE = "UTC"  # only for key arithmetic when Workato is not configured

__all__ = ["BACKFILLABLE", "KEY", "WorkatoClient", "check_credentials", "definitions", "ensure_staging",
           "partitions_def", "partitions_for", "STAGING", "stage", "tick_partition_keys"]

STAGING = assets.STAGING  # tables and parser: what `replay` runs in bulk

partitions_for = assets.partitions_for


def _timezone(config: Settings | None = None) -> str:
    config = config or settings_module.load()
    return config.workato.timezone if config.workato is not None else DEFAULT_TIMEZONE


def __getattr__(name: str) -> Any:
    # `partitions_def` depends on WORKATO_TIMEZONE: resolved when asked for, not at import
    if name == "partitions_def":
        return assets.partitions_for(_timezone())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def definitions(config: Settings) -> dg.Definitions:
    """Raw + staging assets, their checks, the hourly job and schedule, and the `workato` resource."""
    timezone = _timezone(config)
    built = assets.build_assets(timezone)
    job = dg.define_asset_job("workato_job", selection=dg.AssetSelection.assets(*built),
                              partitions_def=assets.partitions_for(timezone))
    return dg.Definitions(
        assets=built, jobs=[job], schedules=[assets.build_schedule(timezone, job)],
        resources={"workato": WorkatoClient.from_settings(config)},
    )


def tick_partition_keys(now: datetime, *, timezone: str | None = None) -> list[str]:
    """Day windows a tick at `now` pulls: each that has started and is not final (see README)."""
    return assets.tick_partition_keys(now, timezone or _timezone())


def stage(warehouse: Warehouse, landing: LandingStore, partition_key: str) -> StageReport:
    return assets.stage(warehouse, landing, partition_key)


def ensure_staging(warehouse: Warehouse) -> None:
    assets.ensure_staging(warehouse)


def check_credentials(config: Settings) -> str:
    """One cheap authenticated POST (the last hour, one workspace), described in plain words."""
    token = config.workato.token.get_secret_value() if config.workato is not None else ""
    client = WorkatoClient.from_settings(config, token=token)
    try:
        return client.check_credentials(timeutil.utcnow())
    finally:
        client.close()
