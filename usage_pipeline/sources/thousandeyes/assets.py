"""ThousandEyes raw and staging assets: hourly observation ticks, one snapshot per organization.

The one rule: a partition is an observation tick. The vendor only answers "the current billing
period, now", so only the latest closed tick can be pulled; a past tick is refused (nothing is
faked) and `replay` rebuilds staging from what was landed. Projections change hourly, so the
tick is hourly.
"""

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg

from usage_pipeline.errors import PayloadError, UsagePipelineError
from usage_pipeline.landing import BatchWriter, LandingStore, Snapshot
from usage_pipeline.sources.base import (
    PULL_CHECK,
    STAGE_CHECK,
    Parsed,
    PullReport,
    StageReport,
    Staging,
    latest_tick_key,
    pull_accounts,
    refuse_past_tick,
    tick_partitions,
)
from usage_pipeline.sources.thousandeyes import constants
from usage_pipeline.sources.thousandeyes.client import ThousandEyesClient
from usage_pipeline.sources.thousandeyes.fastparse import FAST_PATH_MIN_BYTES
from usage_pipeline.sources.thousandeyes.organizations import PlannedAccount, duplicate_accounts
from usage_pipeline.sources.thousandeyes.parse import SCHEMAS, api_version_of, group_ids, parse_usage
from usage_pipeline.warehouse import Warehouse

RAW_KEY = dg.AssetKey(["raw", "thousandeyes__usage"])
STAGING_KEYS = {table: dg.AssetKey(table.split(".")) for table in constants.STAGING_TABLES}
USAGE_KEY = STAGING_KEYS[constants.STG_USAGE]
partitions_def = tick_partitions(constants.CADENCE, constants.PARTITIONS_START)
log = logging.getLogger("usage_pipeline.sources.thousandeyes")
# accounts of a tick parse on a few threads: zlib and pyarrow's JSON reader release the GIL
PARSE_WORKERS = min(4, os.cpu_count() or 1)


def tick_partition_keys(now: datetime) -> list[str]:
    """The one tick a scheduled run at `now` pulls: the latest closed hour."""
    return [latest_tick_key(partitions_def, now)]


# ---------- pulling


def pull(*, client: ThousandEyesClient, landing: LandingStore, warehouse: Warehouse, partition_key: str,
         logger: Any = None) -> tuple[PullReport, list[PlannedAccount]]:
    """Land one usage snapshot per organization context; a failing one is named and the rest land."""
    quotas = client.fetch_quotas()
    plans = client.plan(quotas)
    by_account = {plan.account_id: plan for plan in plans}
    first = plans[0].account_id

    def pull_one(account: str, batch: BatchWriter) -> None:
        if quotas is not None and account == first:  # the lookup that chose the accounts: kept as audit
            batch.land(dataclasses.replace(quotas, account_id=account))
        fetched = client.fetch_usage(by_account[account])
        batch.land(fetched)
        # an HTML page or broken JSON fails the batch here, after landing: raw keeps the body and
        # staging keeps this tick's last good rows; anything subtler is the parser's to judge
        fetched.json()

    report = pull_accounts(vendor=constants.KEY, accounts=list(by_account), partition_key=partition_key,
                           landing=landing, warehouse=warehouse, pull=pull_one, session_stats=client.stats,
                           logger=logger)
    return report, plans


# ---------- staging


@dataclass
class _Read:
    """One account's parsed batch, or why it could not be parsed."""

    snapshot_ids: list[str]
    parsed: Parsed | None = None
    error: UsagePipelineError | None = None
    org_id: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)


def _read_batch(landing: LandingStore, account: str, snapshots: list[Snapshot]) -> _Read:
    read = _Read([snapshot.snapshot_id for snapshot in snapshots])
    usage = [snapshot for snapshot in snapshots if snapshot.endpoint == constants.ENDPOINT]
    try:
        if not usage:
            raise PayloadError(constants.KEY, account, "the latest complete batch holds no usage response")
        snapshot = usage[-1]
        read.org_id = snapshot.request.get("org_id")
        read.parsed = read_usage(landing, account, snapshot)
        read.groups = group_ids(read.parsed)
    except UsagePipelineError as error:
        read.error = error
    return read


def read_usage(landing: LandingStore, account: str, snapshot: Snapshot) -> Parsed:
    """Parse one landed usage response (a large v7 body through the fast reader: see `parse_usage`)."""
    body = landing.read_bytes(snapshot)
    try:
        return parse_usage(body, api_version=api_version_of(snapshot.request), snapshot_id=snapshot.snapshot_id,
                           observed_at=snapshot.fetched_at, account_id=account, org_id=snapshot.request.get("org_id"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        landing.read_json(snapshot)  # raises the store's PayloadError: it names the snapshot and keeps the raw path
        raise


def _latest_parsable(landing: LandingStore, account: str, batches: list[list[Snapshot]]) -> _Read:
    """The read of the account's latest batch that parses (or the latest's error when none does)."""
    reads = (_read_batch(landing, account, snapshots) for snapshots in batches)
    first = next(reads)
    return first if first.error is None else next((read for read in reads if read.error is None), first)


def parser(landing: LandingStore,
           batches: Mapping[str, list[list[Snapshot]]]) -> Callable[[str, list[Snapshot]], Parsed]:
    """Read every account's latest batch that parses, then parse each batch from those reads.

    Accounts found to be one organization (organizations.py) are staged once: the others'
    rows of the tick are emptied, with a warning, so no usage is counted twice. Each account is
    judged by the batch staging will load: its latest one that parses (see `Staging.parse_partition`).
    Large bodies of several accounts are read on PARSE_WORKERS threads.
    """
    def read(account: str) -> _Read:
        return _latest_parsable(landing, account, batches[account])

    latest_bytes = sum(snapshot.bytes for account_batches in batches.values() for snapshot in account_batches[0])
    if len(batches) > 1 and latest_bytes >= FAST_PATH_MIN_BYTES:
        with ThreadPoolExecutor(max_workers=PARSE_WORKERS) as pool:
            reads = dict(zip(batches, pool.map(read, batches)))
    else:  # small bodies parse in Python, under the GIL: a pool (~0.5 ms) would only slow a replay
        reads = {account: read(account) for account in batches}
    duplicates = duplicate_accounts({account: (read.org_id, read.groups) for account, read in reads.items()
                                     if read.parsed is not None})

    def parse(account: str, snapshots: list[Snapshot]) -> Parsed:
        read = reads.get(account)
        if read is None or read.snapshot_ids != [snapshot.snapshot_id for snapshot in snapshots]:
            read = _read_batch(landing, account, snapshots)  # not the batch the read chose (the latest failed)
        if read.error is not None:
            raise read.error
        assert read.parsed is not None
        if account in duplicates:
            return Parsed(tables={}, warnings=(
                f"{constants.KEY} [account {account}]: the same organization as account {duplicates[account]} "
                "(they share account groups or an org id); not staged, so its usage is not counted twice",))
        return read.parsed

    return parse


STAGING = Staging(constants.KEY, SCHEMAS, parser)


def stage(warehouse: Warehouse, landing: LandingStore, partition_key: str) -> StageReport:
    """Parse each organization context's latest batch of the tick that parses and replace its staging rows."""
    return STAGING.stage(warehouse, landing, partition_key)


def ensure_staging(warehouse: Warehouse) -> None:
    """Create the staging tables if missing, so the models can build before the first pull."""
    STAGING.ensure(warehouse)


# ---------- the assets


@dg.asset(
    key=RAW_KEY, group_name=constants.KEY, kinds={"thousandeyes"}, partitions_def=partitions_def,
    pool="thousandeyes_api",
    check_specs=[dg.AssetCheckSpec(PULL_CHECK, asset=RAW_KEY,
                                   description="every organization context was pulled and landed")],
)
def raw_thousandeyes_usage(context: dg.AssetExecutionContext, thousandeyes: ThousandEyesClient, landing: LandingStore,
                           warehouse: Warehouse) -> dg.MaterializeResult:
    """Land GET /v7/usage?expand=… (or /v6/usage.json) once per ThousandEyes organization for this hourly tick.

    Partition = observation tick: only the latest closed hour can be pulled (the vendor keeps no history).
    """
    refuse_past_tick(constants.KEY, partitions_def, context.partition_key)
    report, plans = pull(client=thousandeyes, landing=landing, warehouse=warehouse,
                         partition_key=context.partition_key, logger=context.log)
    organizations = {plan.account_id: {"org_id": plan.org_id, "covers_aids": list(plan.covers)} for plan in plans}
    return dg.MaterializeResult(
        metadata={**report.metadata(), "api_version": thousandeyes.api_version,
                  "organizations": dg.MetadataValue.json(organizations)},
        check_results=[report.check_result(RAW_KEY)],
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(USAGE_KEY, deps=[RAW_KEY], description="ThousandEyes organization-level usage, quota and billing "
                     "period (UTC). One row per organization context × tick."),
        dg.AssetSpec(STAGING_KEYS[constants.STG_TESTS], deps=[RAW_KEY],
                     description="Cloud units per ThousandEyes test. One row per snapshot × test."),
        dg.AssetSpec(STAGING_KEYS[constants.STG_AGENT_UNITS], deps=[RAW_KEY],
                     description="Enterprise units per ThousandEyes enterprise agent. One row per snapshot × agent."),
        dg.AssetSpec(STAGING_KEYS[constants.STG_AGENT_COUNTS], deps=[RAW_KEY],
                     description="Agents used per account group and class. One row per snapshot × account group × class."),
    ],
    name="stg_thousandeyes_usage", group_name=constants.KEY, partitions_def=partitions_def, pool="warehouse_writer",
    check_specs=[dg.AssetCheckSpec(STAGE_CHECK, asset=USAGE_KEY,
                                   description="every organization context with raw data was parsed and loaded")],
)
def stg_thousandeyes_usage(context: dg.AssetExecutionContext, landing: LandingStore, warehouse: Warehouse):
    """Parse the tick's latest complete batch per organization and replace its staging rows in one transaction."""
    report = stage(warehouse, landing, context.partition_key)
    common = {"snapshot_ids": dg.MetadataValue.json(report.snapshot_ids[:50]), "accounts_loaded": report.accounts,
              "accounts_failed": len(report.failures)}
    for table, key in STAGING_KEYS.items():
        metadata = {"dagster/row_count": report.rows.get(table, 0), "dagster/table_name": table, **common}
        if key == USAGE_KEY:
            metadata["warnings"] = dg.MetadataValue.json(report.warnings[:20])
            yield dg.MaterializeResult(asset_key=key, metadata=metadata, check_results=[report.check_result(USAGE_KEY)])
        else:
            yield dg.MaterializeResult(asset_key=key, metadata=metadata)


ASSETS = [raw_thousandeyes_usage, stg_thousandeyes_usage]


def build_job_and_schedule() -> tuple[Any, dg.ScheduleDefinition]:
    """The hourly tick: at :05 past each hour, the hour that just closed."""
    job = dg.define_asset_job("thousandeyes_job", selection=dg.AssetSelection.assets(*ASSETS),
                              partitions_def=partitions_def)
    schedule = dg.build_schedule_from_partitioned_job(job, name="thousandeyes_hourly_schedule", minute_of_hour=5)
    return job, schedule
