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

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from usage_pipeline.landing import LandingStore, Snapshot, complete_batches_by_partition
from usage_pipeline.sources.base import StageReport, Staging, log_stage_report
from usage_pipeline.warehouse import Warehouse

log = logging.getLogger("usage_pipeline.replay")
MAX_CHUNK_TICKS = 24 * 7        # a week of hourly ticks per transaction
MAX_CHUNK_PAIRS = 500           # PostgreSQL takes one advisory lock per pair and table
MAX_CHUNK_BYTES = 64 << 20      # of raw response bodies (a large tenant's tick can be 10 MB)
PAIRS_TABLE = "replay_pairs"    # a temporary table: the (partition, account) pairs a chunk replaces

Batches = Mapping[str, list[list[Snapshot]]]


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
    chunks = list(_chunks(by_partition))
    total, done, reports = len(by_partition), 0, []
    jobs = ((staging, landing.root, [(key, by_partition[key]) for key in chunk]) for chunk in chunks)
    with warehouse.session(), _executor(len(chunks), workers) as (pool, width):
        for parsed in _in_order(pool, jobs, in_flight=width):
            for report in parsed.reports:
                log_stage_report(report, log)
            _load(staging, warehouse, parsed)
            reports.extend(parsed.reports)
            done += len(parsed.reports)
            if progress:
                progress(done, total, parsed.reports[-1].partition_key)
    return reports


def parse_chunk(job: tuple[Staging, str, list[tuple[str, Batches]]]) -> ParsedChunk:
    """Parse a chunk of partitions (in a worker process): reports, replaced pairs, rows per table."""
    staging, root, items = job
    landing, loaded_at = LandingStore(root=root), datetime.now(UTC)
    reports, pairs, pieces = [], [], {table: [] for table in staging.tables}
    for partition_key, batches in items:
        report, chosen = staging.parse_partition(landing, partition_key, batches)
        for account, parsed in chosen.items():
            pairs.append((partition_key, account))
            for table, rows in staging.rows_of(account, partition_key, parsed, loaded_at).items():
                report.rows[table] += rows.num_rows
                if rows.num_rows:
                    pieces[table].append(rows)
        reports.append(report)
    # one table of few large chunks per staging table: DuckDB scans a thousand tiny ones slowly
    tables = {table: pa.concat_tables(parts).combine_chunks() for table, parts in pieces.items() if parts}
    return ParsedChunk(reports, pairs, tables)


def _load(staging: Staging, warehouse: Warehouse, parsed: ParsedChunk) -> None:
    """Replace the chunk's (partition, account) pairs in every staging table, in one transaction."""
    if not parsed.pairs:
        return
    with warehouse.transaction() as tx:
        tx.execute(f"create temporary table if not exists {PAIRS_TABLE} (partition_key varchar, account_id varchar)")
        tx.execute(f"delete from {PAIRS_TABLE}")
        tx.load_arrow(PAIRS_TABLE, pa.table({"partition_key": [key for key, _ in parsed.pairs],
                                             "account_id": [account for _, account in parsed.pairs]}))
        for table in staging.tables:
            for partition_key, account in parsed.pairs:  # the live writers' locks (PostgreSQL; no-op on DuckDB)
                tx.lock(table, partition_key, account)
            tx.execute(f"delete from {table} where (partition_key, account_id) in "
                       f"(select partition_key, account_id from {PAIRS_TABLE})")
            if table in parsed.tables:
                tx.load_arrow(table, parsed.tables[table])


def _chunks(by_partition: Mapping[str, Batches]) -> Iterator[list[str]]:
    """Partition keys in order, grouped under the chunk limits (a partition is never split)."""
    chunk, pairs, size = [], 0, 0
    for key, accounts in by_partition.items():
        key_pairs = len(accounts)
        key_bytes = sum(snapshot.bytes for batches in accounts.values() for snapshot in batches[0])
        if chunk and (len(chunk) >= MAX_CHUNK_TICKS or pairs + key_pairs > MAX_CHUNK_PAIRS
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
