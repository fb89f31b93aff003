"""What every source shares: honest partitions, per-account isolation, and the staging load.

The one rule: one failing account never stops the others. `pull_accounts` lands each
account's responses in its own batch and reports failures by name; `Staging.stage` parses
each account's latest complete batch (falling back to its latest one that parses, so rows
always come from the latest successful snapshot) and replaces exactly that account's rows of
the partition in one transaction. `replay.py` runs the same `Staging` over every partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pyarrow as pa

from usage_pipeline import timeutil
from usage_pipeline.errors import BackfillRefused, SourceError, UsagePipelineError
from usage_pipeline.landing import BatchWriter, LandingStore, Snapshot, complete_batches, latest_batch_id
from usage_pipeline.warehouse import Warehouse

log = logging.getLogger("usage_pipeline.sources")
STAGING_KEY_COLUMNS = (
    pa.field("account_id", pa.string()),
    pa.field("partition_key", pa.string()),
    pa.field("loaded_at", pa.timestamp("us", tz="UTC")),
)
# partition replace deletes by (partition_key, account_id); incremental models read by loaded_at
STAGING_INDEXES = (("partition_key", "account_id"), ("loaded_at",))
PULL_CHECK = "all_accounts_pulled"
STAGE_CHECK = "all_accounts_parsed"
_reported_warnings: set[str] = set()


# ---------- partitions


def tick_partitions(cadence: str, start: str) -> dg.TimeWindowPartitionsDefinition:
    """Observation ticks: hourly or daily windows; only the latest closed one can be pulled."""
    if cadence == "hourly":
        return dg.HourlyPartitionsDefinition(start_date=start)
    if cadence == "daily":
        return dg.DailyPartitionsDefinition(start_date=start)
    raise ValueError(f"unknown cadence {cadence!r}")


def latest_tick_key(partitions_def: dg.TimeWindowPartitionsDefinition, now: datetime | None = None) -> str:
    """The partition key of the latest closed tick: what a scheduled run at `now` pulls."""
    now = now or timeutil.utcnow()
    with dg.partition_loading_context(effective_dt=now):
        key = partitions_def.get_last_partition_key()
    if key is None:
        raise BackfillRefused("pipeline", None, f"no closed tick yet at {now:%Y-%m-%d %H:%M} UTC")
    return key


def refuse_past_tick(vendor: str, partitions_def: dg.TimeWindowPartitionsDefinition, partition_key: str) -> None:
    """Refuse any tick but the latest closed one: the vendor keeps no history to fetch it from."""
    latest = latest_tick_key(partitions_def)
    if partition_key != latest:
        raise BackfillRefused(
            vendor, None,
            f"partition {partition_key} is not the current observation tick ({latest}): {vendor} keeps no "
            "history for past ticks, so it cannot be backfilled; nothing was fetched. "
            "To rebuild staging and marts from what was already landed, use `usage-pipeline replay`.",
        )


# ---------- pulling


@dataclass
class PullReport:
    """What one tick of one source fetched and landed, account by account."""

    vendor: str
    partition_key: str
    landed: dict[str, list[Snapshot]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    wait_s: float = 0.0

    def metadata(self) -> dict[str, Any]:
        snapshots = [snapshot for batch in self.landed.values() for snapshot in batch]
        return {
            "accounts_landed": len(self.landed),
            "accounts_failed": len(self.failures),
            "snapshots": len(snapshots),
            "bytes": sum(snapshot.bytes for snapshot in snapshots),
            "requests": self.requests,
            "retries": self.retries,
            "rate_limit_wait_s": round(self.wait_s, 3),
            "snapshot_ids": dg.MetadataValue.json([snapshot.snapshot_id for snapshot in snapshots][:50]),
        }

    def check_result(self, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
        return _isolation_check(PULL_CHECK, asset_key, self.vendor, self.failures, len(self.landed))


def pull_accounts(
    *,
    vendor: str,
    accounts: Iterable[str],
    partition_key: str,
    landing: LandingStore,
    warehouse: Warehouse,
    pull: Callable[[str, BatchWriter], Any],
    session_stats: Callable[[], Any] | None = None,
    logger: logging.Logger | None = None,
) -> PullReport:
    """Pull every account into its own batch; a failure is logged by name and the rest go on.

    Raises only when every account failed (then nothing new can reach staging).
    """
    logger = logger or log
    report = PullReport(vendor, partition_key)
    accounts = list(accounts)
    for account in accounts:
        try:
            with landing.batch(warehouse, vendor=vendor, account_id=account, partition_key=partition_key) as batch:
                pull(account, batch)
            report.landed[account] = batch.batch.snapshots
        except UsagePipelineError as error:
            report.failures[account] = _cause(error)
            logger.error("%s", _as_source_error(error, vendor, account))
    if session_stats is not None:
        stats = session_stats()
        report.requests, report.retries, report.wait_s = stats.requests, stats.retries, stats.wait_s
    if accounts and not report.landed:
        raise SourceError(vendor, ", ".join(report.failures), "every account failed: " + _summary(report.failures))
    return report


# ---------- staging


@dataclass(frozen=True)
class Parsed:
    """A parser's output: rows per staging table, plus warnings (e.g. unknown fields) to report once."""

    tables: Mapping[str, list[dict[str, Any]] | pa.Table]  # row dicts, or Arrow columns (to_arrow checks their types)
    warnings: tuple[str, ...] = ()
    is_account: bool = True  # False for bookkeeping batches (e.g. HCP organization discovery)


@dataclass
class StageReport:
    vendor: str
    partition_key: str
    rows: dict[str, int] = field(default_factory=dict)
    snapshot_ids: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    accounts: int = 0
    warnings: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            "dagster/row_count": sum(self.rows.values()),
            "rows_by_table": dg.MetadataValue.json(self.rows),
            "accounts_loaded": self.accounts,
            "accounts_failed": len(self.failures),
            "snapshot_ids": dg.MetadataValue.json(self.snapshot_ids[:50]),
            "warnings": dg.MetadataValue.json(self.warnings[:20]),
        }

    def check_result(self, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
        return _isolation_check(STAGE_CHECK, asset_key, self.vendor, self.failures, self.accounts)


def staging_schema(schema: pa.Schema) -> pa.Schema:
    """A parser's row schema plus the columns every staging table has (account, partition, load time)."""
    return pa.schema([*schema, *STAGING_KEY_COLUMNS])


def ensure_staging_tables(warehouse: Warehouse, tables: Mapping[str, pa.Schema]) -> None:
    for table, schema in tables.items():
        warehouse.ensure_table(table, staging_schema(schema), indexes=STAGING_INDEXES)


Parse = Callable[[str, list[Snapshot]], Parsed]
# (landing, every account's complete batches of one partition, latest first) -> the parse to apply
ParserFactory = Callable[[LandingStore, Mapping[str, list[list[Snapshot]]]], Parse]


@dataclass(frozen=True)
class Staging:
    """How one source turns raw batches into staging rows: its tables and its parser.

    `parser` sees every account of the partition before any is parsed, so a source that judges
    accounts together (ThousandEyes counts an organization once) can. It is a module-level
    function, so a replay can run it in worker processes.
    """

    vendor: str
    tables: Mapping[str, pa.Schema]
    parser: ParserFactory

    def ensure(self, warehouse: Warehouse) -> None:
        ensure_staging_tables(warehouse, self.tables)

    def parse_partition(self, landing: LandingStore, partition_key: str,
                        batches: Mapping[str, list[list[Snapshot]]]) -> tuple[StageReport, dict[str, Parsed]]:
        """Pick and parse each account's batch (no warehouse): the report, and the rows to stage by account.

        The latest complete batch is parsed; when it cannot be (an HTML page or malformed JSON
        answered with 200), its failure is reported by account and cause and the account's latest
        older batch that parses is used instead: rows always come from the latest *successful*
        snapshot, live and in replay alike. An account with no parsable batch is left out.
        """
        report = StageReport(self.vendor, partition_key, rows={table: 0 for table in self.tables})
        parse, chosen = self.parser(landing, batches), {}
        for account, account_batches in batches.items():
            for position, snapshots in enumerate(account_batches):
                try:
                    parsed = parse(account, snapshots)
                except UsagePipelineError as error:
                    if position == 0:
                        report.failures[account] = _cause(error)
                    continue
                if position:
                    report.warnings.append(
                        f"{self.vendor} [account {account}]: the latest pull of {partition_key} could not be parsed; "
                        f"staged its latest pull that parses instead (snapshot {snapshots[0].snapshot_id}, "
                        f"{position} pull(s) older)")
                report.warnings.extend(parsed.warnings)
                report.accounts += parsed.is_account
                report.snapshot_ids.extend(snapshot.snapshot_id for snapshot in snapshots)
                chosen[account] = parsed
                break
        return report, chosen

    def rows_of(self, account: str, partition_key: str, parsed: Parsed, loaded_at: datetime) -> dict[str, pa.Table]:
        """The typed staging rows of one account's parsed batch, per table."""
        return {table: to_arrow(parsed.tables.get(table, []), schema, account_id=account,
                                partition_key=partition_key, loaded_at=loaded_at)
                for table, schema in self.tables.items()}

    def stage(self, warehouse: Warehouse, landing: LandingStore, partition_key: str, *,
              logger: logging.Logger | None = None) -> StageReport:
        """Parse each account's latest batch that parses and replace its rows of this partition.

        All staging tables of one account change in one transaction, under the partition's
        lock; a failing account is reported by name and the others still load. Raises only
        when no account could be parsed (nothing of this partition can change).
        """
        self.ensure(warehouse)
        batches = complete_batches(warehouse, self.vendor, partition_key)
        report, chosen = self.parse_partition(landing, partition_key, batches)  # no connection held meanwhile
        log_stage_report(report, logger or log)
        with warehouse.session():  # one connection for the writes (DuckDB opens its file once)
            for account, parsed in chosen.items():
                loaded_at = datetime.now(UTC)  # a system fact (when rows were written), never the simulated clock
                with warehouse.transaction() as tx:
                    tx.lock_all([(table, partition_key, account) for table in self.tables])
                    if latest_batch_id(tx, self.vendor, partition_key, account) != batches[account][0][0].batch_id:
                        log.info("%s [account %s]: %s was pulled again while it was parsed; left to that pull's "
                                 "staging", self.vendor, account, partition_key)
                        continue
                    for table, rows in self.rows_of(account, partition_key, parsed, loaded_at).items():
                        tx.delete_where(table, {"partition_key": partition_key, "account_id": account})
                        report.rows[table] += tx.load_arrow(table, rows)
        if report.failures and not report.accounts:
            raise SourceError(self.vendor, ", ".join(report.failures),
                              "no account could be parsed: " + _summary(report.failures))
        return report


def log_stage_report(report: StageReport, logger: logging.Logger) -> None:
    """Each failure once as an error naming source and account; each distinct warning once per process."""
    for account, cause in report.failures.items():
        logger.error("%s [account %s]: %s", report.vendor, account, cause)
    for warning in report.warnings:
        if warning not in _reported_warnings:
            _reported_warnings.add(warning)
            logger.warning("%s", warning)


def to_arrow(rows: list[dict[str, Any]] | pa.Table, schema: pa.Schema, *, account_id: str, partition_key: str,
             loaded_at: datetime) -> pa.Table:
    """Typed Arrow table of parser rows (dicts, or an Arrow table) plus the staging key columns; a wrong type fails here.

    An Arrow table must carry every column of `schema` with exactly its type (nothing is cast:
    a string of digits is no more an integer here than in a dict); extra columns are dropped.
    """
    if isinstance(rows, pa.Table):
        wrong = [f"{field.name}: {rows.schema.field(field.name).type if field.name in rows.schema.names else 'missing'}"
                 f" (expected {field.type})" for field in schema
                 if field.name not in rows.schema.names or rows.schema.field(field.name).type != field.type]
        if wrong:
            raise pa.ArrowTypeError("rows do not match the staging schema: " + "; ".join(wrong))
        table = pa.Table.from_arrays([rows.column(name) for name in schema.names], schema=schema)
    else:
        table = pa.Table.from_pylist(rows, schema=schema)
    for column, value in zip(STAGING_KEY_COLUMNS, (account_id, partition_key, loaded_at)):
        table = table.append_column(column, pa.repeat(pa.scalar(value, column.type), table.num_rows))
    return table


def isolation_check_specs(asset_key: dg.AssetKey, name: str, description: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset_key, description=description)]


def _isolation_check(name: str, asset_key: dg.AssetKey, vendor: str, failures: Mapping[str, str],
                     succeeded: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=asset_key,
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "accounts_ok": succeeded,
            "accounts_failed": len(failures),
            "failures": dg.MetadataValue.json(dict(failures)),
        },
        description=("every account succeeded" if not failures else
                     "; ".join(f"{vendor} [account {account}]: {cause}" for account, cause in failures.items())),
    )


def _cause(error: UsagePipelineError) -> str:
    return error.detail if isinstance(error, SourceError) else str(error)


def _as_source_error(error: UsagePipelineError, vendor: str, account: str) -> str:
    return str(error) if isinstance(error, SourceError) else f"{vendor} [account {account}]: {error}"


def _summary(failures: Mapping[str, str]) -> str:
    return "; ".join(f"{account}: {cause}" for account, cause in failures.items())


ONE_TICK = {"hourly": timedelta(hours=1), "daily": timedelta(days=1)}
