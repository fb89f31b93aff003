"""HCP Terraform: organizations, subscriptions, feature sets, entitlement sets and resources under
management, observed once a day; history is built as validity intervals (see README.md here).

Registry names (usage_pipeline/sources/__init__.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dagster as dg

from usage_pipeline.errors import ConfigError
from usage_pipeline.landing import LandingStore
from usage_pipeline.settings import Settings
from usage_pipeline.sources.base import StageReport
from usage_pipeline.sources.hcp_terraform import assets, constants
from usage_pipeline.sources.hcp_terraform.client import HcpTerraformClient
from usage_pipeline.warehouse import Warehouse

KEY = constants.KEY
BACKFILLABLE = False
partitions_def = assets.partitions_def

__all__ = ["BACKFILLABLE", "KEY", "HcpTerraformClient", "check_credentials", "client_from_settings", "definitions",
           "ensure_staging", "partitions_def", "STAGING", "stage", "tick_partition_keys"]

STAGING = assets.STAGING  # tables and parser: what `replay` runs in bulk


def client_from_settings(config: Settings, *, token: Any = None) -> HcpTerraformClient:
    """The resource; the token is `dg.EnvVar("TFC_TOKEN")` so the UI shows the name, never the value."""
    hcp = config.hcp_terraform
    if hcp is None:
        raise ConfigError(f"hcp_terraform is not configured: {config.disabled.get(KEY, 'TFC_TOKEN unset')}")
    return HcpTerraformClient(base_url=hcp.base_url, token=token if token is not None else dg.EnvVar("TFC_TOKEN"),
                              organizations=list(hcp.organizations))


def definitions(config: Settings) -> dg.Definitions:
    """Raw + staging assets with their checks, the daily job and schedule, and the `hcp_terraform` resource."""
    return dg.Definitions(assets=assets.ASSETS, jobs=[assets.job], schedules=[assets.schedule],
                          resources={KEY: client_from_settings(config)})


def tick_partition_keys(now: datetime | None = None) -> list[str]:
    """The partition a tick at `now` pulls: the latest closed day (an observation tick)."""
    return assets.tick_partition_keys(now)


def stage(warehouse: Warehouse, landing: LandingStore, partition_key: str) -> StageReport:
    """Parse raw → staging for one tick, no network (what `replay` calls)."""
    return assets.stage(warehouse, landing, partition_key)


def ensure_staging(warehouse: Warehouse) -> None:
    assets.ensure_staging(warehouse)


def check_credentials(config: Settings) -> str:
    """One cheap authenticated call (the first organization-list entry), in plain words."""
    hcp = config.hcp_terraform
    if hcp is None:
        return f"disabled ({config.disabled.get(KEY, 'TFC_TOKEN unset')})"
    client = client_from_settings(config, token=hcp.token.get_secret_value())
    try:
        return client.check_credentials()
    finally:
        client.api.close()
