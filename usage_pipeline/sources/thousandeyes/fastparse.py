"""The fast v7 usage parser: the tests array read by pyarrow's C++ JSON reader (issue 12).

The one rule: the reference parser's exact rows and warnings, or nothing. `parse_usage_v7_arrow`
returns None whenever it cannot be sure `parse_usage_v7` would read the body the same way, and
`parse.parse_usage` then runs the reference parser on it, so every error and warning keeps its
wording. Only the tests array (the bulk of a body) becomes Arrow columns here; the small rest
(quota, organization numbers, agents) always goes through the reference parser.

Declined, by the strict read (an explicit schema): a string where a number belongs or the reverse
(integer ids), a float, a bool, an int beyond 64 bits, a duplicate key, a lone surrogate, a
second document, an unknown field in a test (it changes the tests' type). Declined, by the
guards: a body that is not UTF-8 or does not start with `{`, an invalid Arrow result, a missing
or null test, a missing used figure, an empty or padded id, a repeated test, and an embedded
agent count that only the v6 spelling carries. `usage_pipeline_tests/test_thousandeyes_fastparse.py`
holds the twin to the reference, by property.

Measured (bench/README.md): 0.16 → ~0.56 of DuckDB-native throughput at 1M test rows, half the
peak memory. Below FAST_PATH_MIN_BYTES the reference parser is faster (the reader and its guards
cost ~1-3 ms per call).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from usage_pipeline.sources.base import Parsed
from usage_pipeline.sources.thousandeyes import constants
from usage_pipeline.sources.thousandeyes.parse import (
    _EMBEDDED_ALIAS,
    _QUOTA_FIELDS,
    _USAGE_NUMBERS,
    TESTS_SCHEMA,
    parse_usage_v7,
)

FAST_PATH_MIN_BYTES = 256 * 1024

_S, _I = pa.string(), pa.int64()
TEST_ITEM = pa.struct([("aid", _S), ("accountGroupName", _S), ("testId", _S), ("testName", _S), ("testType", _S),
                       ("cloudUnitsUsed", _I), ("cloudUnitsProjected", _I)])
_AGENT_UNIT_ITEM = pa.struct([("aid", _S), ("accountGroupName", _S), ("agentId", _S), ("vagentId", _S),
                              ("agentName", _S), ("enterpriseUnitsUsed", _I), ("enterpriseUnitsProjected", _I)])
_EMBEDDED_ARRAY, _EMBEDDED_COUNT = constants.AGENT_CLASSES["endpoint_embedded"]


def _count_item(array: str, count: str) -> pa.StructType:
    alias = [(_EMBEDDED_ALIAS, _I)] if array == _EMBEDDED_ARRAY else []
    return pa.struct([("aid", _S), ("accountGroupName", _S), (count, _I), *alias])


# Every field the reference parser reads, typed as v7 sends them (ids as strings, numbers as
# integers). `_links` and `allocations.allocations` are not declared: the reference only checks
# their names, and `infer` keeps whatever they hold.
EXPLICIT_SCHEMA = pa.schema([("usage", pa.struct([
    ("quota", pa.struct([("monthStart", _S), ("monthEnd", _S), *((name, _I) for name in _QUOTA_FIELDS)])),
    ("allocations", pa.struct([("used", _I), ("projected", _I)])),
    *((name, _I) for name in _USAGE_NUMBERS),
    ("tests", pa.list_(TEST_ITEM)),
    ("enterpriseAgentUnits", pa.list_(_AGENT_UNIT_ITEM)),
    *((array, pa.list_(_count_item(array, count))) for array, count in constants.AGENT_CLASSES.values()),
]))])
# Characters `str.strip()` removes (the reference strips ids): a padded id takes the reference path.
_PY_SPACE = "".join(f"\\x{{{code:x}}}" for code in range(sys.maxunicode + 1) if chr(code).isspace())
_PADDED = f"^[{_PY_SPACE}]|[{_PY_SPACE}]$"


def parse_usage_v7_arrow(body: bytes, *, snapshot_id: str, observed_at: datetime, account_id: str,
                         org_id: str | None = None) -> Parsed | None:
    """Parse a v7 usage body with the tests as Arrow columns; None when only the reference parser can say."""
    table = _read(body)
    if table is None:
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
    if not _counts_are_plain(rest["usage"]):
        return None
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


def _read(body: bytes) -> pa.Table | None:
    """The body as one Arrow row under EXPLICIT_SCHEMA, or None when the strict read or its preconditions fail."""
    if body.lstrip(b" \t\n\r")[:1] != b"{":
        return None  # pyarrow (26) crashes on a body that starts with `null` (apache/arrow#47409)
    try:
        # the reader does not check UTF-8, where json.loads refuses the body (the reference's error)
        pa.Array.from_buffers(pa.large_string(), 1, [None, pa.array([0, len(body)], pa.int64()).buffers()[1],
                                                      pa.py_buffer(body)]).validate(full=True)
        table = pa_json.read_json(
            pa.BufferReader(body),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=max(len(body) + 1, 1 << 16)),
            # a compact body reads 2-3x faster without the multi-line mode; a pretty one needs it
            parse_options=pa_json.ParseOptions(explicit_schema=EXPLICIT_SCHEMA, unexpected_field_behavior="infer",
                                               newlines_in_values=b"\n" in body.strip()),
        )
        # a list starting with null is read into invalid offsets (apache/arrow#51305): never read those
        table.validate(full=True)
    except (pa.ArrowException, UnicodeError, ValueError):
        return None
    return table if table.num_rows == 1 else None


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


def _counts_are_plain(usage: Mapping[str, object]) -> bool:
    """False when an embedded agent carries only the v6 spelling of its count.

    The schema declares both spellings, so an absent count reads as null, and the reference
    reads the alias only when the count is *absent* (a null count is a missing field): which of
    the two it was is lost here.
    """
    items = usage.get(_EMBEDDED_ARRAY) or []
    return not any(isinstance(item, dict) and item.get(_EMBEDDED_COUNT) is None and item.get(_EMBEDDED_ALIAS) is not None
                   for item in items)
