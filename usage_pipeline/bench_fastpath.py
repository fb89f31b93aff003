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

The warehouse-side proposals are in bench_warehouse.py, the bulk replay in bench_replay.py.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
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
from usage_pipeline.bench_warehouse import load_arrow
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
