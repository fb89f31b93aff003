"""Rebuild a source's staging tables from raw alone, in bulk (what `usage-pipeline replay` runs).

The rows are exactly those the live runs staged tick by tick: the same `Staging.parse_partition`
picks and parses each account's latest batch that parses. Only the work is arranged for a
rebuild of months of ticks: one index query for every partition instead of one per tick; a
chunk of partitions per transaction instead of one per account; chunks parsed in worker
processes (the parsers hold the GIL) while this process loads the previous one, over one
warehouse connection. Memory stays bounded: a chunk holds at most `MAX_CHUNK_TICKS` partitions,
`MAX_CHUNK_PAIRS` (partition, account) pairs and about `MAX_CHUNK_BYTES` of raw responses, and at
most one chunk per worker is in flight.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from usage_pipeline.landing import LandingStore, Snapshot, complete_batches_by_partition
from usage_pipeline.sources.base import STAGING_KEY_COLUMNS, StageReport, Staging, log_stage_report, to_arrow
from usage_pipeline.warehouse import Tx, Warehouse

log = logging.getLogger("usage_pipeline.replay")
MAX_CHUNK_TICKS = 24 * 7        # a week of hourly ticks per transaction
# (partition, account) pairs per chunk: PostgreSQL takes an advisory lock per pair and table in
# its shared lock table (~6,400 slots by default); DuckDB takes none, and fewer commits pay off
MAX_CHUNK_PAIRS = {"postgres": 250, "duckdb": 1000}
MAX_CHUNK_BYTES = 64 << 20      # of raw response bodies (a large tenant's tick can be 10 MB)
PAIRS_TABLE = "replay_pairs"    # a temporary table: the (partition, account) pairs a chunk replaces

Batches = Mapping[str, list[list[Snapshot]]]
Rows = list[dict[str, Any]] | pa.Table  # one account's parsed rows of one table


@dataclass
class ParsedChunk:
    """One chunk's outcome: a report per partition, the pairs to replace and their rows per table."""

    reports: list[StageReport]
    pairs: list[tuple[str, str]]
    tables: dict[str, pa.Table]


def replay_staging(staging: Staging, warehouse: Warehouse, landing: LandingStore, *,
                   progress: Callable[[int, int, str], None] | None = None,
                   workers: int | None = None) -> list[StageReport]:
    """Re-stage every partition of one source that has raw data; a report per partition, in order.

    A partition none of whose responses parses gets a report with its failures and no rows;
    the replay goes on (raw is append-only: stopping would make every later replay fail too).
    """
    staging.ensure(warehouse)
    by_partition = complete_batches_by_partition(warehouse, staging.vendor)
    chunks = list(_chunks(by_partition, MAX_CHUNK_PAIRS[warehouse.dialect]))
    total, done, reports = len(by_partition), 0, []
    jobs = ((staging, landing.root, [(key, by_partition[key]) for key in chunk]) for chunk in chunks)
    expected = {(key, account): batches[0][0].batch_id  # the latest complete batch, as the index shows it now
                for key, accounts in by_partition.items() for account, batches in accounts.items()}
    with warehouse.session(), _checkpoints_deferred(warehouse), _executor(len(chunks), workers) as (pool, width):
        for parsed in _in_order(pool, jobs, in_flight=width):
            for report in parsed.reports:
                log_stage_report(report, log)
            _load(staging, warehouse, parsed, expected)
            reports.extend(parsed.reports)
            done += len(parsed.reports)
            if progress:
                progress(done, total, parsed.reports[-1].partition_key)
    return reports


def parse_chunk(job: tuple[Staging, str, list[tuple[str, Batches]]]) -> ParsedChunk:
    """Parse a chunk of partitions (in a worker process): reports, replaced pairs, rows per table.

    The cyclic garbage collector is paused meanwhile: parsing makes millions of small dicts and
    no cycles, and its passes over them cost ~10% of a replay.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_chunk(*job)
    finally:
        if gc_was_enabled:
            gc.enable()


def _parse_chunk(staging: Staging, root: str, items: list[tuple[str, Batches]]) -> ParsedChunk:
    landing, loaded_at = LandingStore(root=root), datetime.now(UTC)
    reports, pairs = [], []
    pieces: dict[str, list[tuple[str, str, Rows]]] = {table: [] for table in staging.tables}
    for partition_key, batches in items:
        report, chosen = staging.parse_partition(landing, partition_key, batches)
        for account, parsed in chosen.items():
            pairs.append((partition_key, account))
            for table in staging.tables:
                rows = parsed.tables.get(table, [])
                count = rows.num_rows if isinstance(rows, pa.Table) else len(rows)
                report.rows[table] += count
                if count:
                    pieces[table].append((account, partition_key, rows))
        reports.append(report)
    tables = {table: _rows_of_many(staging.tables[table], parts, loaded_at) for table, parts in pieces.items() if parts}
    return ParsedChunk(reports, pairs, tables)


def _rows_of_many(schema: pa.Schema, pieces: list[tuple[str, str, Rows]], loaded_at: datetime) -> pa.Table:
    """`Staging.rows_of` for a whole chunk of (account, partition) pieces of one table: the same rows, in order.

    `to_arrow` per piece costs ~0.1 ms however few its rows (a small table, three key columns
    from Python scalars); a year of hourly ticks has ~175,000 pieces, so that fixed cost was
    most of a replay's parsing. Here each run of dict pieces is typed by one `to_arrow` and its
    key columns are set from per-row arrays; Arrow pieces (the fast path) keep one each. The
    result is one table of few large chunks: DuckDB scans a thousand tiny ones slowly.
    """
    key_positions = {field.name: len(schema) + position for position, field in enumerate(STAGING_KEY_COLUMNS)}
    segments: list[pa.Table] = []
    run: list[tuple[str, str, Rows]] = []

    def flush() -> None:
        if not run:
            return
        rows = [row for _, _, part in run for row in part]
        table = to_arrow(rows, schema, account_id="", partition_key="", loaded_at=loaded_at)
        for name, values in (("account_id", [account for account, _, part in run for _ in part]),
                             ("partition_key", [key for _, key, part in run for _ in part])):
            field = table.schema.field(name)
            table = table.set_column(key_positions[name], field, pa.array(values, field.type))
        segments.append(table)
        run.clear()

    for account, partition_key, rows in pieces:
        if isinstance(rows, pa.Table):
            flush()
            segments.append(to_arrow(rows, schema, account_id=account, partition_key=partition_key, loaded_at=loaded_at))
        else:
            run.append((account, partition_key, rows))
    flush()
    return pa.concat_tables(segments).combine_chunks()


@contextmanager
def _checkpoints_deferred(warehouse: Warehouse) -> Iterator[None]:
    """DuckDB: checkpoint once when the session's connection closes, not every 16 MB of WAL.

    Each chunk's commit otherwise crosses DuckDB's default WAL threshold and rewrites the
    tables' blocks (~20% of a replay); the WAL keeps every commit durable meanwhile. The
    setting is the database's, so it is reset afterwards for any other connection to it.
    """
    if warehouse.dialect != "duckdb":
        yield
        return
    with warehouse.connect(write=True) as connection:  # the session's held connection
        connection.execute("set checkpoint_threshold = '1GB'")
        try:
            yield
        finally:
            connection.execute("reset checkpoint_threshold")


def _load(staging: Staging, warehouse: Warehouse, parsed: ParsedChunk, expected: Mapping[tuple[str, str], str]) -> None:
    """Replace the chunk's (partition, account) pairs in every staging table, in one transaction.

    Under the live writers' locks, a pair whose latest complete batch is no longer the one the
    index showed (`expected`: a live run pulled it again meanwhile, PostgreSQL) is left to that
    run's own staging: replay never writes an older pull over a newer one.
    """
    if not parsed.pairs:
        return
    with warehouse.transaction() as tx:
        tx.execute(f"create temporary table if not exists {PAIRS_TABLE} (partition_key varchar, account_id varchar)")
        tx.execute(f"delete from {PAIRS_TABLE}")
        tx.load_arrow(PAIRS_TABLE, pa.table({"partition_key": [key for key, _ in parsed.pairs],
                                             "account_id": [account for _, account in parsed.pairs]}))
        tx.lock_all([(table, key, account) for table in staging.tables for key, account in parsed.pairs])
        stale = {pair for pair, batch_id in _latest_batch_ids(tx, staging.vendor).items() if batch_id != expected[pair]}
        if stale:
            log.warning("%s: %d (partition, account) pair(s) were pulled again during the replay; left to that "
                        "run's staging: %s", staging.vendor, len(stale), sorted(stale)[:5])
            tx.execute(f"delete from {PAIRS_TABLE} where " + " or ".join(
                ["(partition_key = %s and account_id = %s)"] * len(stale)), [v for pair in sorted(stale) for v in pair])
        for table in staging.tables:
            tx.execute(f"delete from {table} where (partition_key, account_id) in "
                       f"(select partition_key, account_id from {PAIRS_TABLE})")
            rows = parsed.tables.get(table)
            if rows is not None and stale:
                rows = rows.filter(pc.invert(pc.is_in(_pair_keys(rows), value_set=pa.array(
                    [f"{key}\x1f{account}" for key, account in stale]))))
            if rows is not None:
                tx.load_arrow(table, rows)


def _latest_batch_ids(tx: Tx, vendor: str) -> dict[tuple[str, str], str]:
    """The latest complete batch of each pair in the pairs table, read now (inside the load's transaction)."""
    rows = tx.execute(
        f"""
        select partition_key, account_id, batch_id from (
            select b.partition_key, b.account_id, b.batch_id,
                   row_number() over (partition by b.partition_key, b.account_id
                                      order by b.finished_at desc, b.batch_id desc) as position
            from raw.api_batches b
            join {PAIRS_TABLE} p on p.partition_key = b.partition_key and p.account_id = b.account_id
            where b.vendor = %s and b.status = 'complete'
        ) latest
        where position = 1
        """, [vendor])
    return {(key, account): batch_id for key, account, batch_id in rows}


def _pair_keys(rows: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(rows["partition_key"], rows["account_id"], "\x1f")


def _chunks(by_partition: Mapping[str, Batches], max_pairs: int) -> Iterator[list[str]]:
    """Partition keys in order, grouped under the chunk limits (a partition is never split)."""
    chunk, pairs, size = [], 0, 0
    for key, accounts in by_partition.items():
        key_pairs = len(accounts)
        key_bytes = sum(snapshot.bytes for batches in accounts.values() for snapshot in batches[0])
        if chunk and (len(chunk) >= MAX_CHUNK_TICKS or pairs + key_pairs > max_pairs
                      or size + key_bytes > MAX_CHUNK_BYTES):
            yield chunk
            chunk, pairs, size = [], 0, 0
        chunk.append(key)
        pairs, size = pairs + key_pairs, size + key_bytes
    if chunk:
        yield chunk


class _InProcess(Executor):
    """An executor that runs each job in this process, at submit (small replays, one core)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 (re-raised by future.result())
            future.set_exception(error)
        return future


@contextmanager
def _executor(chunks: int, workers: int | None) -> Iterator[tuple[Executor, int]]:
    """Worker processes (and how many) when there is more than one chunk and one core; else in process."""
    workers = min(workers or min(4, os.cpu_count() or 1), chunks)
    if workers <= 1:
        yield _InProcess(), 1
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)  # fork: no re-import per worker
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield pool, workers


def _in_order(pool: Executor, jobs: Iterator, *, in_flight: int) -> Iterator[ParsedChunk]:
    """Results in submission order with at most `in_flight` + 1 jobs submitted: bounded memory."""
    pending: deque[Future] = deque()
    for job in jobs:
        pending.append(pool.submit(parse_chunk, job))
        if len(pending) > in_flight:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
