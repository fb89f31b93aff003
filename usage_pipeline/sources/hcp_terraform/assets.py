"""HCP Terraform's raw and staging assets: one daily observation tick, one batch per organization.

The one rule: the API answers only "what is true now", so a partition is an observation tick
and only the latest closed one can be pulled (a past tick is refused: nothing is faked).
Each organization's responses (organization, subscription, entitlement set, every explorer
page) land as one batch, so one failing organization is named and the others still land;
staging replaces exactly that organization's rows of the tick, in one transaction.
"""

from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from usage_pipeline.errors import NotFoundError, PayloadError
from usage_pipeline.landing import BatchWriter, LandingStore, Snapshot
from usage_pipeline.sources.base import (
    PULL_CHECK,
    STAGE_CHECK,
    Parsed,
    PullReport,
    Staging,
    StageReport,
    latest_tick_key,
    pull_accounts,
    refuse_past_tick,
    tick_partitions,
)
from usage_pipeline.sources.hcp_terraform import constants as c
from usage_pipeline.sources.hcp_terraform.client import HcpTerraformClient
from usage_pipeline.sources.hcp_terraform.parse import Response, parse_batch, parse_organization_names
from usage_pipeline.sources.hcp_terraform.schemas import STAGING_SCHEMAS
from usage_pipeline.warehouse import Warehouse

partitions_def = tick_partitions(c.CADENCE, c.PARTITIONS_START)
RAW_KEY = dg.AssetKey(["raw", f"{c.KEY}__organizations"])
STAGING_KEYS = {table: dg.AssetKey(table.split(".")) for table in c.STAGING_TABLES}
CHECKED_STAGING_KEY = STAGING_KEYS[c.STG_ORGANIZATIONS]
STAGING_DESCRIPTIONS = {
    c.STG_ORGANIZATIONS: "One row per organization per tick (GET /organizations/:org); external-id survives renames.",
    c.STG_SUBSCRIPTIONS: "One row per organization per tick (GET /subscription + included feature set); "
                         "http_status 404 = no subscription or not visible.",
    c.STG_ENTITLEMENTS: "Entitlements as key/value rows from the subscription, its feature set and the entitlement "
                        "set; null limit = unlimited. One row per snapshot × value source × key.",
    c.STG_WORKSPACES: "One row per workspace per tick from the explorer (current_rum_count = resources under management).",
    c.STG_FETCHES: "One row per landed response of an organization's batch (endpoint, page, HTTP status).",
}


# ---------- pulling


def discover(client: HcpTerraformClient, landing: LandingStore, warehouse: Warehouse, partition_key: str) -> list[str]:
    """TFC_ORGANIZATIONS, or every organization the token sees: its list pages land as their own batch."""
    if client.organizations:
        return list(client.organizations)
    names: list[str] = []
    with landing.batch(warehouse, vendor=c.KEY, account_id=c.DISCOVERY_ACCOUNT, partition_key=partition_key) as batch:
        for page in client.fetch_organization_pages():
            batch.land(page)  # landed before its names (or its next page) are read
            names.extend(name for name in parse_organization_names(page.json()) if name not in names)
    return names


def pull_organization(client: HcpTerraformClient, org: str, batch: BatchWriter, logger: Any) -> None:
    """Land one organization's responses; a 404 on /subscription or /entitlement-set is landed as unknown."""
    batch.land(client.fetch_organization(org=org))
    batch.land(client.fetch_subscription(org=org))
    batch.land(client.fetch_entitlement_set(org=org))
    pages = 0
    try:
        for page in client.fetch_workspaces(org=org):
            batch.land(page)
            pages += 1
    except NotFoundError:
        if pages:  # a later page vanishing would undercount resources: fail this organization
            raise
        # the explorer needs read-all-workspaces (API_CONTRACTS.md §2.5): no usage this tick, the rest stands
        logger.warning("%s [account %s]: explorer not visible to this token (404); no resources-under-management "
                       "count this tick", c.KEY, org)


def pull(client: HcpTerraformClient, landing: LandingStore, warehouse: Warehouse, partition_key: str,
         logger: Any) -> PullReport:
    """Discover, then pull every organization into its own batch; failures are named, the others land."""
    organizations = discover(client, landing, warehouse, partition_key)
    return pull_accounts(
        vendor=c.KEY, accounts=organizations, partition_key=partition_key, landing=landing, warehouse=warehouse,
        pull=lambda org, batch: pull_organization(client, org, batch, logger),
        session_stats=lambda: client.stats, logger=logger,
    )


# ---------- staging


def responses(landing: LandingStore, snapshots: list[Snapshot]) -> Iterator[Response]:
    """The batch's landed bodies as parser input; an error body that is not JSON reads as None."""
    for snapshot in snapshots:
        try:
            payload = landing.read_json(snapshot)
        except PayloadError:
            if snapshot.status == 200:
                raise
            payload = None
        page = (snapshot.request.get("params") or {}).get("page[number]")
        yield Response(snapshot.snapshot_id, snapshot.endpoint, snapshot.status, snapshot.fetched_at, payload,
                       int(page) if page is not None else None)


def parser(landing: LandingStore, _batches: Any) -> Callable[[str, list[Snapshot]], Parsed]:
    """Organizations are parsed one by one: each batch on its own."""
    return lambda account, snapshots: parse_batch(account, list(responses(landing, snapshots)))


STAGING = Staging(c.KEY, STAGING_SCHEMAS, parser)


def stage(warehouse: Warehouse, landing: LandingStore, partition_key: str) -> StageReport:
    """Parse each organization's latest batch of the tick that parses and replace its rows (no network)."""
    return STAGING.stage(warehouse, landing, partition_key)


def ensure_staging(warehouse: Warehouse) -> None:
    """Create the staging tables if missing, so the models build before the first pull."""
    STAGING.ensure(warehouse)


def tick_partition_keys(now: Any = None) -> list[str]:
    """The one partition a tick at `now` pulls: the latest closed day."""
    return [latest_tick_key(partitions_def, now)]


# ---------- the assets


@dg.asset(
    key=RAW_KEY, group_name=c.KEY, kinds={"hcp_terraform"}, partitions_def=partitions_def, pool=f"{c.KEY}_api",
    check_specs=[dg.AssetCheckSpec(PULL_CHECK, asset=RAW_KEY,
                                   description="every HCP Terraform organization of the tick was pulled and landed")],
)
def raw_hcp_terraform_organizations(context: dg.AssetExecutionContext, hcp_terraform: HcpTerraformClient,
                                    landing: LandingStore, warehouse: Warehouse) -> dg.MaterializeResult:
    """Land, per organization, GET /organizations/:org, /subscription (+ feature set), /entitlement-set and
    every page of /explorer?type=workspaces as one batch; organizations come from TFC_ORGANIZATIONS or from
    GET /organizations. One partition = one daily observation tick; past ticks are refused.
    """
    refuse_past_tick(c.KEY, partitions_def, context.partition_key)
    report = pull(hcp_terraform, landing, warehouse, context.partition_key, context.log)
    metadata = {**report.metadata(), "organizations": dg.MetadataValue.json(sorted(report.landed))}
    return dg.MaterializeResult(metadata=metadata, check_results=[report.check_result(RAW_KEY)])


@dg.multi_asset(
    specs=[dg.AssetSpec(key, deps=[RAW_KEY], description=STAGING_DESCRIPTIONS[table])
           for table, key in STAGING_KEYS.items()],
    name="stg_hcp_terraform", group_name=c.KEY, partitions_def=partitions_def, pool="warehouse_writer",
    check_specs=[dg.AssetCheckSpec(STAGE_CHECK, asset=CHECKED_STAGING_KEY,
                                   description="every organization with raw data for the tick was parsed and loaded")],
)
def stg_hcp_terraform(context: dg.AssetExecutionContext, landing: LandingStore,
                      warehouse: Warehouse) -> Iterator[dg.MaterializeResult]:
    """Parse each organization's latest complete batch of the tick and replace its staging rows in one transaction."""
    report = stage(warehouse, landing, context.partition_key)
    common = {"snapshot_ids": dg.MetadataValue.json(report.snapshot_ids[:50]),
              "warnings": dg.MetadataValue.json(report.warnings[:20]), "accounts_failed": len(report.failures)}
    for table, key in STAGING_KEYS.items():
        metadata = {"dagster/row_count": report.rows.get(table, 0), "dagster/table_name": table, **common}
        checks = [report.check_result(key)] if key == CHECKED_STAGING_KEY else []
        yield dg.MaterializeResult(asset_key=key, metadata=metadata, check_results=checks)


ASSETS = [raw_hcp_terraform_organizations, stg_hcp_terraform]
job = dg.define_asset_job(f"{c.KEY}_job", selection=dg.AssetSelection.assets(*ASSETS), partitions_def=partitions_def)
# one run a day for the day that just closed; the vendor keeps no history, so a missed day stays a gap
schedule = dg.build_schedule_from_partitioned_job(job, name=f"{c.KEY}_daily_schedule", hour_of_day=0, minute_of_hour=30)
