"""The proposed fast ThousandEyes staging path: measured here, to be moved into shared code.

Two changes, each exact by construction: the same rows and the same warnings as the reference
path, or the reference path itself.

1. `parse_usage_v7_arrow(body, …) -> Parsed | None` (for `sources/thousandeyes/parse.py`):
   pyarrow's C++ JSON reader, with an explicit schema that is *strict* (a string where a number
   belongs, a float, a bool, an int beyond 64 bits, a duplicate key, a lone surrogate or a
   second document all fail the read), builds the tests table as Arrow columns. The guards
   below reject what the strict read accepts but the reference parser treats differently
   (a missing required field, an empty or padded id, a repeated test, a field it does not know
   in a test). Whatever is rejected returns None, and the caller runs `parse_usage_v7` on the
   payload, so errors and warnings keep their exact reference wording. The small rest of the
   payload (quota, org numbers, agents) always goes through the reference parser.
2. Accounts of a tick parsed on a small thread pool (`stage_thousandeyes`, for
   `sources/thousandeyes/assets.py`): zlib and pyarrow release the GIL, so two accounts parse
   at once on two cores; and `to_arrow` (for `sources/base.py`) accepts an Arrow table as well
   as row dicts, and repeats the key columns with `pa.repeat` instead of Python lists.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from usage_pipeline import timeutil
from usage_pipeline.errors import PayloadError, SourceError, UsagePipelineError
from usage_pipeline.landing import LandingStore, Snapshot, latest_batches
from usage_pipeline.sources import base
from usage_pipeline.sources.base import Parsed, StageReport
from usage_pipeline.sources.thousandeyes import constants
from usage_pipeline.sources.thousandeyes.parse import SCHEMAS, TESTS_SCHEMA, account_group_ids, api_version_of, parse_usage, parse_usage_v7
from usage_pipeline.warehouse import Warehouse

_S, _I = pa.string(), pa.int64()
TEST_ITEM = pa.struct([("aid", _S), ("accountGroupName", _S), ("testId", _S), ("testName", _S), ("testType", _S),
                       ("cloudUnitsUsed", _I), ("cloudUnitsProjected", _I)])
_AGENT_UNIT_ITEM = pa.struct([("aid", _S), ("accountGroupName", _S), ("agentId", _S), ("vagentId", _S),
                              ("agentName", _S), ("enterpriseUnitsUsed", _I), ("enterpriseUnitsProjected", _I)])
_COUNT_FIELDS = {array: count for array, count in constants.AGENT_CLASSES.values()}
_QUOTA_NUMBERS = ("cloudUnitsIncluded", "endpointAgentsIncluded", "endpointAgentsEssentialsIncluded",
                  "endpointAgentsEmbeddedIncluded", "enterpriseAgentsIncluded", "deviceAgentsIncluded")
_USAGE_NUMBERS = ("cloudUnitsUsed", "cloudUnitsProjected", "cloudUnitsNextBillingPeriod", "enterpriseUnitsUsed",
                  "enterpriseUnitsProjected", "enterpriseUnitsNextBillingPeriod", "connectedDevicesUnitsUsed",
                  "connectedDevicesUnitsProjected", "connectedDevicesUnitsNextBillingPeriod", "endpointAgentsUsed",
                  "endpointAgentsEssentialsUsed", "endpointAgentsEmbeddedUsed", "enterpriseAgentsUsed")
# Every field the reference parser reads, typed as it accepts them when they arrive in v7's own
# types (ids as strings, numbers as integers). `_links` and `allocations.allocations` are not
# declared: the reference only checks their names, and `infer` keeps whatever they hold.
EXPLICIT_SCHEMA = pa.schema([("usage", pa.struct([
    ("quota", pa.struct([("monthStart", _S), ("monthEnd", _S), *((name, _I) for name in _QUOTA_NUMBERS)])),
    ("allocations", pa.struct([("used", _I), ("projected", _I)])),
    *((name, _I) for name in _USAGE_NUMBERS),
    ("tests", pa.list_(TEST_ITEM)),
    ("enterpriseAgentUnits", pa.list_(_AGENT_UNIT_ITEM)),
    *((array, pa.list_(pa.struct([("aid", _S), ("accountGroupName", _S), (count, _I),
                                  *([("endpointAgentsEssentialsUsed", _I)] if array == "endpointAgentsEmbedded" else [])])))
      for array, count in _COUNT_FIELDS.items()),
]))])
# Characters `str.strip()` removes (the reference strips ids): a padded id takes the reference path.
_PY_SPACE = "".join(f"\\x{{{code:x}}}" for code in range(sys.maxunicode + 1) if chr(code).isspace())
_PADDED = f"^[{_PY_SPACE}]|[{_PY_SPACE}]$"


def parse_usage_v7_arrow(body: bytes, *, snapshot_id: str, observed_at: datetime, account_id: str,
                         org_id: str | None = None) -> Parsed | None:
    """Parse a v7 usage body with the tests as Arrow columns; None when only the reference parser can say."""
    try:
        table = pa_json.read_json(
            pa.BufferReader(body),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=max(len(body) + 1, 1 << 16)),
            # a compact body reads 2-3x faster without the multi-line mode; a pretty one needs it
            parse_options=pa_json.ParseOptions(explicit_schema=EXPLICIT_SCHEMA, unexpected_field_behavior="infer",
                                               newlines_in_values=b"\n" in body.strip()),
        )
    except (pa.ArrowException, UnicodeError, ValueError):
        return None
    if table.num_rows != 1:
        return None
    usage = table.column("usage").combine_chunks()
    if usage.null_count or usage.type.field("tests").type != pa.list_(TEST_ITEM):
        return None  # no usage object, or a test field the reference would name in a warning
    fields = dict(zip((field.name for field in usage.type), usage.flatten()))
    tests_list = fields.pop("tests")
    has_tests = tests_list.is_valid()[0].as_py()
    tests = tests_list.flatten()
    if tests.null_count:
        return None
    columns = dict(zip((field.name for field in tests.type), tests.flatten()))
    if not _tests_are_plain(columns, len(tests)):
        return None
    rest = {name: table.column(name)[0].as_py() for name in table.column_names if name != "usage"}
    rest["usage"] = {name: array[0].as_py() for name, array in fields.items()}
    rest["usage"]["tests"] = [] if has_tests else None
    parsed = parse_usage_v7(rest, snapshot_id=snapshot_id, observed_at=observed_at, account_id=account_id, org_id=org_id)
    count = len(tests)
    tests_table = pa.table({
        "snapshot_id": pa.repeat(pa.scalar(snapshot_id, _S), count),
        "observed_at": pa.repeat(pa.scalar(observed_at, TESTS_SCHEMA.field("observed_at").type), count),
        "aid": columns["aid"], "account_group_name": columns["accountGroupName"], "test_id": columns["testId"],
        "test_name": columns["testName"], "test_type": columns["testType"],
        "cloud_units_used": columns["cloudUnitsUsed"], "cloud_units_projected": columns["cloudUnitsProjected"],
    }, schema=TESTS_SCHEMA)
    return Parsed(tables={**parsed.tables, constants.STG_TESTS: tests_table}, warnings=parsed.warnings)


def _tests_are_plain(columns: Mapping[str, pa.Array], count: int) -> bool:
    """True when every test row means the same to the reference parser as it reads here."""
    if columns["cloudUnitsUsed"].null_count:
        return False  # required: the reference names the first missing one
    for name in ("aid", "testId"):
        ids = columns[name]
        if ids.null_count or pc.any(pc.equal(ids, "")).as_py() or pc.any(pc.match_substring_regex(ids, _PADDED)).as_py():
            return False  # missing, empty (= missing) or padded (stripped) ids
    if count > 1:
        # a separator inside an id can only merge two distinct pairs: that declines, never accepts
        pairs = pc.binary_join_element_wise(columns["aid"], columns["testId"], "\x1f")
        if pc.count_distinct(pairs).as_py() != count:
            return False  # a repeated test: the reference keeps every row and warns
    return True


# ---------- staging: accounts parsed in parallel, Arrow tables loaded as they are


# Below this size the reference parser wins: the Arrow reader and its guards cost ~1-3 ms per call.
FAST_PATH_MIN_BYTES = 256 * 1024


def parse_snapshot(landing: LandingStore, account: str, snapshot: Snapshot) -> tuple[Parsed, frozenset[str]]:
    """Fast path first, the reference parser when it declines; also the account group ids (organizations)."""
    body = landing.read_bytes(snapshot)
    org_id = snapshot.request.get("org_id")
    if api_version_of(snapshot.request) == 7 and len(body) >= FAST_PATH_MIN_BYTES:
        parsed = parse_usage_v7_arrow(body, snapshot_id=snapshot.snapshot_id, observed_at=snapshot.fetched_at,
                                      account_id=account, org_id=org_id)
        if parsed is not None:
            return parsed, _groups(parsed)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        payload = landing.read_json(snapshot)  # raises the store's PayloadError, naming the snapshot
    parsed = parse_usage(payload, api_version=api_version_of(snapshot.request), snapshot_id=snapshot.snapshot_id,
                         observed_at=snapshot.fetched_at, account_id=account, org_id=org_id)
    return parsed, account_group_ids(payload)


def _groups(parsed: Parsed) -> frozenset[str]:
    """`account_group_ids(payload)` from parsed rows: every row's aid was checked non-empty and unpadded."""
    tests = parsed.tables[constants.STG_TESTS]
    groups = set(pc.unique(tests.column("aid")).to_pylist()) if len(tests) else set()
    for table in (constants.STG_AGENT_UNITS, constants.STG_AGENT_COUNTS):
        groups.update(row["aid"] for row in parsed.tables[table])
    return frozenset(groups)


def stage_thousandeyes(warehouse: Warehouse, landing: LandingStore, partition_key: str, *,
                       workers: int | None = None) -> StageReport:
    """`thousandeyes.assets.stage` with the fast parser and accounts read on a thread pool."""
    from usage_pipeline.sources.thousandeyes.organizations import duplicate_accounts

    batches = latest_batches(warehouse, constants.KEY, partition_key)

    def read(item: tuple[str, list[Snapshot]]) -> tuple[str, Any]:
        account, snapshots = item
        usage = [snapshot for snapshot in snapshots if snapshot.endpoint == constants.ENDPOINT]
        try:
            if not usage:
                raise PayloadError(constants.KEY, account, "the latest complete batch holds no usage response")
            parsed, groups = parse_snapshot(landing, account, usage[-1])
            return account, (parsed, usage[-1].request.get("org_id"), groups)
        except UsagePipelineError as error:
            return account, error

    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        reads = dict(pool.map(read, batches.items()))
    duplicates = duplicate_accounts({account: (value[1], value[2]) for account, value in reads.items()
                                     if not isinstance(value, UsagePipelineError)})

    def parse(account: str, snapshots: list[Snapshot]) -> Parsed:
        value = reads.get(account)
        if value is None:
            _, value = read((account, snapshots))
        if isinstance(value, UsagePipelineError):
            raise value
        if account in duplicates:
            return Parsed(tables={}, warnings=(
                f"{constants.KEY} [account {account}]: the same organization as account {duplicates[account]} "
                "(they share account groups or an org id); not staged, so its usage is not counted twice",))
        return value[0]

    return stage_partition(vendor=constants.KEY, partition_key=partition_key, warehouse=warehouse, landing=landing,
                           tables=SCHEMAS, parse=parse)


def stage_partition(*, vendor: str, partition_key: str, warehouse: Warehouse, landing: LandingStore,
                    tables: Mapping[str, pa.Schema], parse: Any) -> StageReport:
    """`base.stage_partition`, with `to_arrow` below (the only difference)."""
    base.ensure_staging_tables(warehouse, tables)
    report = StageReport(vendor, partition_key, rows={table: 0 for table in tables})
    for account, snapshots in latest_batches(warehouse, vendor, partition_key).items():
        try:
            parsed = parse(account, snapshots)
        except UsagePipelineError as error:
            report.failures[account] = base._cause(error)
            base.log.error("%s", base._as_source_error(error, vendor, account))
            continue
        base._report_warnings(parsed.warnings, report, base.log)
        loaded_at = timeutil.utcnow()
        with warehouse.transaction() as tx:
            for table, schema in tables.items():
                tx.lock(table, partition_key, account)
                tx.delete_where(table, {"partition_key": partition_key, "account_id": account})
                rows = to_arrow(parsed.tables.get(table, []), schema, account_id=account,
                                partition_key=partition_key, loaded_at=loaded_at)
                report.rows[table] += load_arrow(tx, table, rows)
        report.accounts += 1
        report.snapshot_ids.extend(snapshot.snapshot_id for snapshot in snapshots)
    if report.failures and not report.accounts:
        raise SourceError(vendor, ", ".join(report.failures), "no account could be parsed: " + base._summary(report.failures))
    return report


def load_arrow(tx: Any, table: str, rows: pa.Table) -> int:
    """`Tx.load_arrow` as proposed: unchanged on DuckDB, `copy_arrow_postgres` on PostgreSQL."""
    if tx.dialect == "postgres":
        return copy_arrow_postgres(tx._con, table, rows)  # the proposal replaces Tx.load_arrow's COPY branch
    return tx.load_arrow(table, rows)


def to_arrow(rows: list[dict[str, Any]] | pa.Table, schema: pa.Schema, *, account_id: str, partition_key: str,
             loaded_at: datetime) -> pa.Table:
    """`base.to_arrow` accepting an Arrow table too (cast to the contract: a wrong type fails here)."""
    table = rows.select(schema.names).cast(schema) if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=schema)
    count = table.num_rows
    key = base.STAGING_KEY_COLUMNS
    return (table.append_column(key[0], pa.repeat(pa.scalar(account_id, key[0].type), count))
            .append_column(key[1], pa.repeat(pa.scalar(partition_key, key[1].type), count))
            .append_column(key[2], pa.repeat(pa.scalar(loaded_at, key[2].type), count)))


def reference_rows(parsed: Parsed) -> dict[str, list[dict[str, Any]]]:
    """Every table of a Parsed as row dicts (Arrow tables converted): to compare two parses exactly."""
    return {table: rows.to_pylist() if isinstance(rows, pa.Table) else list(rows) for table, rows in parsed.tables.items()}


def same_parse(left: Parsed, right: Parsed) -> bool:
    """Rows (values and Python types) and warnings identical."""
    def canon(parsed: Parsed) -> str:
        return json.dumps({"tables": reference_rows(parsed), "warnings": list(parsed.warnings)}, sort_keys=True,
                          default=lambda value: f"{type(value).__name__}:{value.isoformat() if isinstance(value, datetime) else value}")
    return canon(left) == canon(right)


# ---------- replay: many ticks per transaction, one connection


class SessionWarehouse(Warehouse):
    """`Warehouse` holding one connection for a whole job (replay, backfill), as proposed for warehouse.py.

    Every `transaction()` and `query()` reuses it: DuckDB stops opening the file and
    checkpointing ~10 times per tick, which is what replay spends its time on today.
    """

    def connect(self, *, write: bool) -> Any:  # type: ignore[override]
        from contextlib import contextmanager

        @contextmanager
        def held() -> Any:
            if getattr(self, "_held", None) is None:
                with Warehouse.connect(self, write=True) as connection:
                    if self.dialect == "postgres":
                        # reads must not leave a transaction open: `transaction()` would become a
                        # savepoint inside it and every write would be rolled back at close
                        connection.autocommit = True
                    object.__setattr__(self, "_held", connection)
                    try:
                        yield connection
                    finally:
                        object.__setattr__(self, "_held", None)
                return
            yield self._held
        return held()

    def session(self) -> Any:
        """`with warehouse.session():` keeps the connection for everything inside."""
        return self.connect(write=True)


_LATEST_EVERY_PARTITION = """
with ranked as (
    select batch_id, row_number() over (partition by partition_key, account_id
                                        order by finished_at desc, batch_id desc) as position
    from raw.api_batches
    where vendor = %s and status = 'complete'
)
select s.snapshot_id, s.batch_id, s.vendor, s.endpoint, s.account_id, s.partition_key, s.request, s.status,
       s.fetched_at, s.sha256, s.bytes, s.landing_path
from raw.api_snapshots s
join ranked r on r.batch_id = s.batch_id and r.position = 1
order by s.partition_key, s.account_id, s.fetched_at, s.snapshot_id
"""


def replay_thousandeyes(warehouse: Warehouse, landing: LandingStore, *, chunk: int = 24 * 7,
                        workers: int | None = None) -> dict[str, int]:
    """Re-stage every ThousandEyes tick from raw: one index query, `chunk` ticks per transaction.

    The rows are those `stage()` writes tick by tick (same parsers, same organization rule, an
    account that fails keeps its old rows); only the transaction boundary moves from one
    account × tick to a group of whole ticks, which an offline rebuild can afford. Chunks are
    parsed in worker processes (the reference parser holds the GIL), each returning its four
    staging tables as Arrow, while this process loads the previous chunk.
    """
    from concurrent.futures import ProcessPoolExecutor
    from datetime import UTC

    base.ensure_staging_tables(warehouse, SCHEMAS)
    by_partition: dict[str, list[tuple[str, str, list[Snapshot]]]] = {}
    grouped: dict[tuple[str, str], list[Snapshot]] = {}
    for row in warehouse.query(_LATEST_EVERY_PARTITION, [constants.KEY]):
        values = dict(zip(("snapshot_id", "batch_id", "vendor", "endpoint", "account_id", "partition_key", "request",
                           "status", "fetched_at", "sha256", "bytes", "landing_path"), row))
        values["request"] = json.loads(values["request"])
        values["fetched_at"] = values["fetched_at"].astimezone(UTC)
        snapshot = Snapshot(**values)
        grouped.setdefault((snapshot.partition_key, snapshot.account_id), []).append(snapshot)
    for (key, account), snapshots in grouped.items():
        by_partition.setdefault(key, []).append((key, account, snapshots))
    keys = list(by_partition)
    jobs = [(landing.root, [item for key in keys[start:start + chunk] for item in by_partition[key]], timeutil.utcnow())
            for start in range(0, len(keys), chunk)]
    totals = {table: 0 for table in SCHEMAS} | {"failed_accounts": 0}
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for tables, staged, failed in pool.map(_replay_chunk, jobs):
            totals["failed_accounts"] += failed
            if not staged:
                continue
            with warehouse.transaction() as tx:
                # the (tick, account) pairs being replaced, as a table: one join instead of 1,000 bound pairs
                tx.execute("create temp table if not exists replay_pairs (partition_key varchar, account_id varchar)")
                tx.execute("delete from replay_pairs")
                tx.load_arrow("replay_pairs", pa.table({"partition_key": [k for k, _ in staged],
                                                        "account_id": [a for _, a in staged]}))
                for table in SCHEMAS:
                    tx.lock(table, "replay")
                    tx.execute(f"delete from {table} where (partition_key, account_id) in "
                               "(select partition_key, account_id from replay_pairs)")
                    if tables[table].num_rows:
                        totals[table] += load_arrow(tx, table, tables[table])
    return totals


def _replay_chunk(job: tuple[str, list[tuple[str, str, list[Snapshot]]], datetime]) -> tuple[dict[str, pa.Table], list, int]:
    """Parse one chunk of (tick, account) batches; its staging tables as Arrow, the pairs staged, failures."""
    from usage_pipeline.sources.thousandeyes.organizations import duplicate_accounts

    root, items, loaded_at = job
    landing = LandingStore(root=root)
    reads: dict[str, dict[str, Any]] = {}
    for key, account, snapshots in items:
        usage = [snapshot for snapshot in snapshots if snapshot.endpoint == constants.ENDPOINT]
        try:
            if not usage:
                raise PayloadError(constants.KEY, account, "the latest complete batch holds no usage response")
            parsed, groups = parse_snapshot(landing, account, usage[-1])
            reads.setdefault(key, {})[account] = (parsed, usage[-1].request.get("org_id"), groups)
        except UsagePipelineError as error:
            reads.setdefault(key, {})[account] = error
    dicts: dict[str, list[dict[str, Any]]] = {table: [] for table in SCHEMAS}
    arrows: dict[str, list[pa.Table]] = {table: [] for table in SCHEMAS}
    staged: list[tuple[str, str]] = []
    failed = 0
    for key, accounts in reads.items():
        good = {a: v for a, v in accounts.items() if not isinstance(v, UsagePipelineError)}
        failed += len(accounts) - len(good)
        duplicates = duplicate_accounts({a: (v[1], v[2]) for a, v in good.items()})
        for account, (parsed, _, _) in good.items():
            staged.append((key, account))
            if account in duplicates:
                continue  # one organization counted once: its rows of the tick are emptied
            keys_of_rows = {"account_id": account, "partition_key": key, "loaded_at": loaded_at}
            for table, schema in SCHEMAS.items():
                rows = parsed.tables.get(table, [])
                if isinstance(rows, pa.Table):
                    arrows[table].append(to_arrow(rows, schema, **keys_of_rows))
                else:
                    dicts[table].extend({**row, **keys_of_rows} for row in rows)
    # one typed table per chunk, in few large chunks: DuckDB scans a thousand tiny ones slowly
    tables = {table: pa.concat_tables([*arrows[table], pa.Table.from_pylist(dicts[table], schema=base.staging_schema(schema))])
              .combine_chunks() for table, schema in SCHEMAS.items()}
    return tables, staged, failed


# ---------- PostgreSQL: render the next CSV batch while the previous one is on the wire


def copy_arrow_postgres(connection: Any, table: str, rows: pa.Table, *, batch_rows: int = 100_000) -> int:
    """`Tx.load_arrow` on PostgreSQL with psycopg's queued writer, as proposed for warehouse.py.

    Two changes. Timestamp columns are rendered once per distinct value: pyarrow's CSV writer
    spends ~1.4 s per million timestamps with a zone, ~90% of the rendering, and a staging load
    has a handful of distinct observed_at/loaded_at values (the text is the same; it is merely
    quoted, which COPY's CSV reads identically). And psycopg's `QueuedLibpqWriter` sends from a
    background thread while pyarrow (which releases the GIL) renders the next batch, so client
    and server no longer take turns when a second core is free.
    """
    import io

    import pyarrow.csv as pa_csv
    from psycopg.copy import QueuedLibpqWriter

    from usage_pipeline.warehouse import check_identifier, quote_column

    if rows.num_rows == 0:
        return 0
    rows = pa.table([_timestamps_as_text(column) if pa.types.is_timestamp(column.type) else column
                     for column in rows.columns], names=rows.column_names)
    columns = ", ".join(quote_column(name) for name in rows.column_names)
    options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
    with connection.cursor() as cursor:
        copy_sql = f"copy {check_identifier(table)} ({columns}) from stdin (format csv)"
        with cursor.copy(copy_sql, writer=QueuedLibpqWriter(cursor)) as copy:
            for batch in rows.to_batches(max_chunksize=batch_rows):
                buffer = io.BytesIO()
                pa_csv.write_csv(batch, buffer, options)
                copy.write(buffer.getvalue())
    return rows.num_rows


# ---------- incremental marts on PostgreSQL: let the planner use the indexes


def _timestamps_as_text(column: pa.ChunkedArray) -> pa.Array:
    """The CSV text of a timestamp column, formatted once per distinct value (nulls stay null)."""
    encoded = column.combine_chunks().dictionary_encode()
    return encoded.dictionary.cast(pa.string()).take(encoded.indices)


def merge_increment(tx: Any, model: Any, sql: str) -> tuple[int, int]:
    """`models._merge_increment` as proposed: same rows, but O(new rows) on PostgreSQL.

    Three changes: the new rows are ANALYZEd (a fresh table has no statistics, so PostgreSQL
    guessed 200 distinct keys and scanned the whole mart); a single-column unique_key is matched
    with `= any(array(...))`, which the planner answers with the key's index; and the delete
    counts what it removes (`returning`) instead of a separate count over the mart.
    """
    import secrets

    from usage_pipeline import models
    from usage_pipeline.errors import ModelError
    from usage_pipeline.model_project import Relation

    relation = model.relation
    new = Relation(relation.schema, f"{relation.name}__new_{secrets.token_hex(4)}")
    tx.execute(f"create table {new} as\n{sql}")
    if tx.dialect == "postgres":
        tx.execute(f"analyze {new}")
    target_columns = [c for c, _ in models._columns(tx, relation)]
    if set(target_columns) != {c for c, _ in models._columns(tx, new)}:
        raise ModelError(f"{model.file}: the columns of {relation.dotted} changed: run with full_refresh=True")
    keys = ", ".join(models._q(column) for column in model.config.unique_key)
    null_keys = " or ".join(f"{models._q(column)} is null" for column in model.config.unique_key)
    if tx.execute(f"select count(*) from {new} where {null_keys}")[0][0]:
        raise ModelError(f"{model.file}: new rows have a null unique_key ({keys})")
    if len(model.config.unique_key) == 1 and tx.dialect == "postgres":
        matching = f"{keys} = any(array(select distinct {keys} from {new}))"
    else:
        matching = f"({keys}) in (select distinct {keys} from {new})"
    deleted = tx.execute(f"with gone as (delete from {relation} where {matching} returning 1) select count(*) from gone")[0][0]
    columns = ", ".join(models._q(column) for column in target_columns)
    tx.execute(f"insert into {relation} ({columns}) select {columns} from {new}")
    inserted = tx.execute(f"select count(*) from {new}")[0][0]
    tx.execute(f"drop table {new}")
    return int(inserted), int(deleted)


def incremental_model_dir(target: Path) -> Path | None:
    """A copy of dbt_like_models/ whose fct_test_usage reads staging through the index when incremental.

    The proposed template change: on an incremental run, `partition_key = any(array(select …
    from touched))` (the planner uses the staging index); a full build keeps the hash join (an
    8,760-element array probed per row would be quadratic). None when the file no longer has
    the line this edits (the model changed: measure it as it is).
    """
    import shutil as _shutil

    from usage_pipeline.models import DEFAULT_MODELS_DIR

    _shutil.copytree(DEFAULT_MODELS_DIR, target)
    path = target / "marts" / "thousandeyes" / "fct_test_usage.sql"
    text = path.read_text()
    line = "where partition_key in (select partition_key from touched)"
    if text.count(line) != 2:
        return None
    proposed = ("{% if is_incremental() %} where partition_key = any(array(select partition_key from touched)) "
                "{% else %} " + line + " {% endif %}")
    path.write_text(text.replace(line, proposed))
    return target
