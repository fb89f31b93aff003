"""Parse ThousandEyes usage responses (v7 and v6) into one staging contract.

    staging.stg_thousandeyes__usage         one row per snapshot: period, quota, org-level numbers
    staging.stg_thousandeyes__tests         one row per snapshot × test
    staging.stg_thousandeyes__agent_units   one row per snapshot × enterprise agent
    staging.stg_thousandeyes__agent_counts  one row per snapshot × account group × agent class

The rules, for both versions (API_CONTRACTS.md §4.3/§4.4): ids are text (v6 sends integers, v7
strings); every time is UTC; an absent number is NULL, never 0, and a zero stays 0; units are
int64 (quotas exceed 2^31); every test and agent in the payload becomes a row (nothing is
merged away); an unknown field is kept in raw and reported once as a warning; a missing
required field or a wrong type fails naming the field, the account and the snapshot.

Pure: payload in, rows out, no I/O. Handed the raw body, `parse_usage` lets fastparse.py read a
large v7 one (the same rows from pyarrow's JSON reader, or it declines and these parsers run).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from usage_pipeline.errors import PayloadError
from usage_pipeline.sources.base import Parsed
from usage_pipeline.sources.thousandeyes import constants
from usage_pipeline.timeutil import parse_iso_utc

# ---------- the staging contract (account_id, partition_key, loaded_at are added by base)

_TS = pa.timestamp("us", tz="UTC")
_LINEAGE = [pa.field("snapshot_id", pa.string(), nullable=False), pa.field("observed_at", _TS, nullable=False)]

USAGE_SCHEMA = pa.schema([
    *_LINEAGE,
    pa.field("api_version", pa.string()),             # 'v7' | 'v6'
    pa.field("org_id", pa.string()),                  # from /v7/quotas when the token may read it
    pa.field("period_start", _TS),
    pa.field("period_end", _TS),
    pa.field("period_zone_basis", pa.string()),       # iso_offset | implied_utc | abbreviation
    pa.field("period_zone_abbreviation", pa.string()),  # e.g. 'PDT' when basis = abbreviation
    pa.field("cloud_units_included", pa.int64()),
    pa.field("endpoint_agents_included", pa.int64()),
    pa.field("endpoint_agents_essentials_included", pa.int64()),
    pa.field("endpoint_agents_embedded_included", pa.int64()),
    pa.field("enterprise_agents_included", pa.int64()),
    pa.field("device_agents_included", pa.int64()),
    pa.field("cloud_units_used", pa.int64()),
    pa.field("cloud_units_projected", pa.int64()),
    pa.field("cloud_units_next_period_projected", pa.int64()),
    pa.field("enterprise_units_used", pa.int64()),
    pa.field("enterprise_units_projected", pa.int64()),
    pa.field("enterprise_units_next_period_projected", pa.int64()),
    pa.field("connected_devices_units_used", pa.int64()),
    pa.field("connected_devices_units_projected", pa.int64()),
    pa.field("connected_devices_units_next_period_projected", pa.int64()),
    pa.field("endpoint_agents_used", pa.int64()),
    pa.field("endpoint_agents_essentials_used", pa.int64()),
    pa.field("endpoint_agents_embedded_used", pa.int64()),
    pa.field("enterprise_agents_used", pa.int64()),
    pa.field("allocations_used", pa.int64()),
    pa.field("allocations_projected", pa.int64()),
    pa.field("has_test_breakdown", pa.bool_()),        # false: `tests` absent (v7 without expand)
    pa.field("has_agent_unit_breakdown", pa.bool_()),  # false: `enterpriseAgentUnits` absent
])
TESTS_SCHEMA = pa.schema([
    *_LINEAGE,
    pa.field("aid", pa.string()),
    pa.field("account_group_name", pa.string()),
    pa.field("test_id", pa.string()),
    pa.field("test_name", pa.string()),
    pa.field("test_type", pa.string()),
    pa.field("cloud_units_used", pa.int64()),
    pa.field("cloud_units_projected", pa.int64()),    # NULL: a new test, projection not yet computed
])
AGENT_UNITS_SCHEMA = pa.schema([
    *_LINEAGE,
    pa.field("aid", pa.string()),
    pa.field("account_group_name", pa.string()),
    pa.field("agent_key", pa.string()),               # coalesce(vagent_id, agent_id, 'name:' || agent_name)
    pa.field("agent_id", pa.string()),
    pa.field("vagent_id", pa.string()),
    pa.field("agent_name", pa.string()),
    pa.field("enterprise_units_used", pa.int64()),
    pa.field("enterprise_units_projected", pa.int64()),
])
AGENT_COUNTS_SCHEMA = pa.schema([
    *_LINEAGE,
    pa.field("aid", pa.string()),
    pa.field("account_group_name", pa.string()),
    pa.field("agent_class", pa.string()),             # endpoint | endpoint_essentials | endpoint_embedded | enterprise
    pa.field("agents_used", pa.int64()),
])
SCHEMAS: Mapping[str, pa.Schema] = {
    constants.STG_USAGE: USAGE_SCHEMA,
    constants.STG_TESTS: TESTS_SCHEMA,
    constants.STG_AGENT_UNITS: AGENT_UNITS_SCHEMA,
    constants.STG_AGENT_COUNTS: AGENT_COUNTS_SCHEMA,
}

# ---------- the fields we know (everything else is reported once and kept in raw)

_QUOTA_FIELDS = {
    "cloudUnitsIncluded": "cloud_units_included",
    "endpointAgentsIncluded": "endpoint_agents_included",
    "endpointAgentsEssentialsIncluded": "endpoint_agents_essentials_included",
    "endpointAgentsEmbeddedIncluded": "endpoint_agents_embedded_included",
    "enterpriseAgentsIncluded": "enterprise_agents_included",
    "deviceAgentsIncluded": "device_agents_included",
}
_USAGE_NUMBERS = {
    "cloudUnitsUsed": "cloud_units_used",
    "cloudUnitsProjected": "cloud_units_projected",
    "cloudUnitsNextBillingPeriod": "cloud_units_next_period_projected",
    "enterpriseUnitsUsed": "enterprise_units_used",
    "enterpriseUnitsProjected": "enterprise_units_projected",
    "enterpriseUnitsNextBillingPeriod": "enterprise_units_next_period_projected",
    "connectedDevicesUnitsUsed": "connected_devices_units_used",
    "connectedDevicesUnitsProjected": "connected_devices_units_projected",
    "connectedDevicesUnitsNextBillingPeriod": "connected_devices_units_next_period_projected",
    "endpointAgentsUsed": "endpoint_agents_used",
    "endpointAgentsEssentialsUsed": "endpoint_agents_essentials_used",
    "endpointAgentsEmbeddedUsed": "endpoint_agents_embedded_used",
    "enterpriseAgentsUsed": "enterprise_agents_used",
}
_ARRAYS = {"tests", "enterpriseAgentUnits", *(array for array, _ in constants.AGENT_CLASSES.values())}
KNOWN_FIELDS: dict[str, frozenset[str]] = {
    "": frozenset({"usage", "_links"}),
    "usage": frozenset({"quota", "allocations", *_USAGE_NUMBERS, *_ARRAYS}),
    "usage.quota": frozenset({"monthStart", "monthEnd", *_QUOTA_FIELDS}),
    "usage.allocations": frozenset({"used", "projected", "allocations"}),
    "usage.tests[]": frozenset({"aid", "accountGroupName", "testId", "testName", "testType",
                                "cloudUnitsUsed", "cloudUnitsProjected"}),
    "usage.enterpriseAgentUnits[]": frozenset({"aid", "accountGroupName", "agentId", "vagentId", "agentName",
                                               "enterpriseUnitsUsed", "enterpriseUnitsProjected"}),
    **{f"usage.{array}[]": frozenset({"aid", "accountGroupName", count}) for array, count in constants.AGENT_CLASSES.values()},
}
# The v6 doc's endpointAgentsEmbedded example spells its count `endpointAgentsEssentialsUsed`
# (API_CONTRACTS.md §4.1, open question E1): accepted there, with a warning.
_EMBEDDED_ALIAS = "endpointAgentsEssentialsUsed"
KNOWN_FIELDS["usage.endpointAgentsEmbedded[]"] |= {_EMBEDDED_ALIAS}

# ---------- time

_V6_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\s+([A-Za-z]{1,5}))?$")


@dataclass(frozen=True, slots=True)
class PeriodTime:
    """A parsed period bound: the UTC instant and how its zone was decided."""

    at: datetime
    basis: str                 # iso_offset | implied_utc | abbreviation
    abbreviation: str | None


def read_te_v6_time(raw: str) -> PeriodTime:
    """Read a v6 `YYYY-mm-dd HH:MM:SS[ ABBR]` time as UTC, saying how the zone was decided.

    No suffix: UTC, as the doc text says ("dateTime values are shown in UTC"). A suffix from
    ZONE_ABBREVIATIONS is honoured with its fixed offset (PDT = UTC-7), because a value that
    names a zone means that zone; any other suffix is refused rather than guessed.
    """
    match = _V6_TIME.match(raw.strip())
    if match is None:
        raise ValueError(f"{raw!r} is not YYYY-mm-dd HH:MM:SS with an optional zone abbreviation")
    local = datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}")
    abbreviation = match.group(3)
    if abbreviation is None:
        return PeriodTime(local.replace(tzinfo=UTC), "implied_utc", None)
    offset = constants.ZONE_ABBREVIATIONS.get(abbreviation.upper())
    if offset is None:
        known = ", ".join(constants.ZONE_ABBREVIATIONS)
        raise ValueError(f"{raw!r} carries the zone abbreviation {abbreviation!r}, which is not one of {known}")
    at = local.replace(tzinfo=timezone(timedelta(hours=offset))).astimezone(UTC)
    return PeriodTime(at, "abbreviation", abbreviation.upper())


def parse_te_v6_time(raw: str) -> datetime:
    """A v6 period time as an aware UTC datetime (see read_te_v6_time for the zone rule)."""
    return read_te_v6_time(raw).at


def read_te_v7_time(raw: str) -> PeriodTime:
    """A v7 ISO 8601 time with `Z` (or any explicit offset) as UTC; no offset is refused."""
    return PeriodTime(parse_iso_utc(raw), "iso_offset", None)


# ---------- parsing


class _Reader:
    """Typed field access that fails naming the field, the account and the snapshot."""

    def __init__(self, *, version: str, account_id: str, snapshot_id: str) -> None:
        self.version, self.account_id, self.snapshot_id = version, account_id, snapshot_id
        self.unknown: dict[str, None] = {}
        self.notes: dict[str, None] = {}

    def error(self, message: str) -> PayloadError:
        return PayloadError(constants.KEY, self.account_id,
                            f"snapshot {self.snapshot_id}: usage ({self.version}): {message}")

    def missing(self, path: str) -> PayloadError:
        return self.error(f"missing required field {path}")

    def wrong_type(self, path: str, expected: str, value: Any) -> PayloadError:
        return self.error(f"field {path} has the wrong type: expected {expected}, got {_json_type(value)}")

    def object(self, parent: Mapping[str, Any], key: str, path: str, *, required: bool) -> Mapping[str, Any] | None:
        if key not in parent or parent[key] is None:
            if required:
                raise self.missing(path)
            return None
        value = parent[key]
        if not isinstance(value, dict):
            raise self.wrong_type(path, "an object", value)
        return value

    def array(self, parent: Mapping[str, Any], key: str, path: str) -> list[Mapping[str, Any]] | None:
        """An expanded breakdown array; None when absent (v7 without `expand`)."""
        if key not in parent or parent[key] is None:
            return None
        value = parent[key]
        if not isinstance(value, list):
            raise self.wrong_type(path, "an array", value)
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.wrong_type(f"{path}[{index}]", "an object", item)
        return value

    def integer(self, parent: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> int | None:
        if key not in parent or parent[key] is None:
            if required:
                raise self.missing(path)
            return None
        value = parent[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.wrong_type(path, "an integer", value)
        if isinstance(value, float):
            if not value.is_integer():
                raise self.wrong_type(path, "an integer", value)
            value = int(value)
        if not -(2**63) <= value < 2**63:
            raise self.error(f"field {path} = {value} does not fit a 64-bit integer")
        return value

    def identifier(self, parent: Mapping[str, Any], key: str, path: str, *, required: bool) -> str | None:
        """An id as text: v6 sends integers, v7 strings; both mean the same id."""
        if key not in parent or parent[key] is None or parent[key] == "":
            if required:
                raise self.missing(path)
            return None
        value = parent[key]
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self.wrong_type(path, "an id (string or integer)", value)
        return str(value).strip()

    def text(self, parent: Mapping[str, Any], key: str, path: str) -> str | None:
        if key not in parent or parent[key] is None:
            return None
        value = parent[key]
        if not isinstance(value, str):
            raise self.wrong_type(path, "a string", value)
        return value

    def period_time(self, quota: Mapping[str, Any], key: str) -> PeriodTime:
        path = f"usage.quota.{key}"
        if key not in quota or quota[key] is None:
            raise self.missing(path)
        raw = quota[key]
        if not isinstance(raw, str):
            raise self.wrong_type(path, "a date-time string", raw)
        try:
            return read_te_v7_time(raw) if self.version == "v7" else read_te_v6_time(raw)
        except ValueError as error:
            expected = "ISO 8601 with Z" if self.version == "v7" else "YYYY-mm-dd HH:MM:SS[ ABBR]"
            raise self.error(f"field {path} is not a {expected} time: {error}") from None

    def note_unknown(self, obj: Mapping[str, Any], known_key: str) -> None:
        for name in obj:
            if name not in KNOWN_FIELDS[known_key]:
                self.unknown[f"{known_key}.{name}" if known_key else name] = None


def parse_usage_v7(payload: Any, *, snapshot_id: str, observed_at: datetime, account_id: str,
                   org_id: str | None = None) -> Parsed:
    """Parse a `GET /v7/usage?expand=…` body: string ids, ISO `Z` times, arrays only when expanded."""
    return _parse(payload, _Reader(version="v7", account_id=account_id, snapshot_id=snapshot_id),
                  snapshot_id=snapshot_id, observed_at=observed_at, org_id=org_id)


def parse_usage_v6(payload: Any, *, snapshot_id: str, observed_at: datetime, account_id: str,
                   org_id: str | None = None) -> Parsed:
    """Parse a `GET /v6/usage.json` body: integer ids, `YYYY-mm-dd HH:MM:SS[ PDT]` times."""
    return _parse(payload, _Reader(version="v6", account_id=account_id, snapshot_id=snapshot_id),
                  snapshot_id=snapshot_id, observed_at=observed_at, org_id=org_id)


def parse_usage(payload: Any, *, api_version: int, snapshot_id: str, observed_at: datetime, account_id: str,
                org_id: str | None = None) -> Parsed:
    """Parse a usage body with the parser of its API version (6 or 7).

    `payload` is the decoded JSON, or the body as received (bytes): a v7 body of
    `fastparse.FAST_PATH_MIN_BYTES` or more is then read by the Arrow reader (fastparse.py: the
    same rows, or it declines), and any other is decoded here; json's error for a body that is not
    JSON propagates, for the caller to name the snapshot's file.
    """
    parser = {7: parse_usage_v7, 6: parse_usage_v6}.get(api_version)
    if parser is None:
        raise PayloadError(constants.KEY, account_id, f"snapshot {snapshot_id}: unknown usage API version {api_version!r}")
    if isinstance(payload, bytes):
        if api_version == 7:
            from usage_pipeline.sources.thousandeyes import fastparse  # imported here: it builds on this module

            if len(payload) >= fastparse.FAST_PATH_MIN_BYTES:
                parsed = fastparse.parse_usage_v7_arrow(payload, snapshot_id=snapshot_id, observed_at=observed_at,
                                                        account_id=account_id, org_id=org_id)
                if parsed is not None:
                    return parsed
        payload = json.loads(payload)
    return parser(payload, snapshot_id=snapshot_id, observed_at=observed_at, account_id=account_id, org_id=org_id)


def api_version_of(request: Mapping[str, Any]) -> int:
    """The API version a landed usage request used: its path says (`/v6/usage.json` or `/v7/usage`)."""
    return 6 if str(request.get("path", "")).startswith("/v6/") else 7


def account_group_ids(payload: Any) -> frozenset[str]:
    """Every account group id a usage payload mentions: an organization's identity.

    An account group belongs to exactly one organization, so two payloads that share one
    belong to the same organization. Empty when no breakdown was expanded.
    """
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return frozenset()
    found: set[str] = set()
    for array in _ARRAYS:
        items = usage.get(array)
        for item in items if isinstance(items, list) else ():
            aid = item.get("aid") if isinstance(item, dict) else None
            if isinstance(aid, int | str) and not isinstance(aid, bool) and str(aid).strip():
                found.add(str(aid).strip())
    return frozenset(found)


def group_ids(parsed: Parsed) -> frozenset[str]:
    """Every account group id a parsed usage names: `account_group_ids` of its payload, read from the rows."""
    found: set[str] = set()
    for table in (constants.STG_TESTS, constants.STG_AGENT_UNITS, constants.STG_AGENT_COUNTS):
        rows = parsed.tables.get(table, [])
        found.update(pc.unique(rows.column("aid")).to_pylist() if isinstance(rows, pa.Table) else (row["aid"] for row in rows))
    found.discard("")  # a blank aid (stripped to nothing) names no group
    return frozenset(found)


def _parse(payload: Any, read: _Reader, *, snapshot_id: str, observed_at: datetime, org_id: str | None) -> Parsed:
    if not isinstance(payload, dict):
        raise read.wrong_type("(body)", "a JSON object with a 'usage' object", payload)
    read.note_unknown(payload, "")
    usage = read.object(payload, "usage", "usage", required=True)
    assert usage is not None
    read.note_unknown(usage, "usage")
    lineage = {"snapshot_id": snapshot_id, "observed_at": observed_at}
    tests = read.array(usage, "tests", "usage.tests")
    agent_units = read.array(usage, "enterpriseAgentUnits", "usage.enterpriseAgentUnits")
    tables = {
        constants.STG_USAGE: [_usage_row(usage, read, lineage, org_id=org_id, has_tests=tests is not None,
                                         has_agent_units=agent_units is not None)],
        constants.STG_TESTS: [_test_row(item, index, read, lineage) for index, item in enumerate(tests or [])],
        constants.STG_AGENT_UNITS: _agent_unit_rows(agent_units or [], read, lineage),
        constants.STG_AGENT_COUNTS: _agent_count_rows(usage, read, lineage),
    }
    _note_duplicate_tests(tables[constants.STG_TESTS], read)
    warnings = [f"{constants.KEY} [account {read.account_id}]: {note}" for note in read.notes]
    if read.unknown:
        warnings.append(
            f"{constants.KEY} [account {read.account_id}]: usage ({read.version}) has fields this parser does not "
            f"know; they are kept in raw and not staged: {', '.join(sorted(read.unknown))}"
        )
    return Parsed(tables=tables, warnings=tuple(warnings))


def _usage_row(usage: Mapping[str, Any], read: _Reader, lineage: dict[str, Any], *, org_id: str | None,
               has_tests: bool, has_agent_units: bool) -> dict[str, Any]:
    quota = read.object(usage, "quota", "usage.quota", required=True)
    assert quota is not None
    read.note_unknown(quota, "usage.quota")
    start, end = read.period_time(quota, "monthStart"), read.period_time(quota, "monthEnd")
    if start.basis != end.basis or start.abbreviation != end.abbreviation:
        read.notes[f"usage.quota monthStart and monthEnd name different zones "
                   f"({start.abbreviation or start.basis} vs {end.abbreviation or end.basis}); each honoured as written"] = None
    allocations = read.object(usage, "allocations", "usage.allocations", required=False) or {}
    if allocations:
        read.note_unknown(allocations, "usage.allocations")
    row: dict[str, Any] = {
        **lineage,
        "api_version": read.version,
        "org_id": org_id,
        "period_start": start.at,
        "period_end": end.at,
        "period_zone_basis": start.basis,
        "period_zone_abbreviation": start.abbreviation or end.abbreviation,
        "allocations_used": read.integer(allocations, "used", "usage.allocations.used"),
        "allocations_projected": read.integer(allocations, "projected", "usage.allocations.projected"),
        "has_test_breakdown": has_tests,
        "has_agent_unit_breakdown": has_agent_units,
    }
    for field, column in _QUOTA_FIELDS.items():
        row[column] = read.integer(quota, field, f"usage.quota.{field}")
    for field, column in _USAGE_NUMBERS.items():
        row[column] = read.integer(usage, field, f"usage.{field}")
    return row


def _test_row(item: Mapping[str, Any], index: int, read: _Reader, lineage: dict[str, Any]) -> dict[str, Any]:
    path = f"usage.tests[{index}]"
    read.note_unknown(item, "usage.tests[]")
    return {
        **lineage,
        "aid": read.identifier(item, "aid", f"{path}.aid", required=True),
        "account_group_name": read.text(item, "accountGroupName", f"{path}.accountGroupName"),
        "test_id": read.identifier(item, "testId", f"{path}.testId", required=True),
        "test_name": read.text(item, "testName", f"{path}.testName"),
        "test_type": read.text(item, "testType", f"{path}.testType"),
        "cloud_units_used": read.integer(item, "cloudUnitsUsed", f"{path}.cloudUnitsUsed", required=True),
        # absent on new tests "until projection is calculated": NULL, never 0
        "cloud_units_projected": read.integer(item, "cloudUnitsProjected", f"{path}.cloudUnitsProjected"),
    }


def _agent_unit_rows(items: list[Mapping[str, Any]], read: _Reader, lineage: dict[str, Any]) -> list[dict[str, Any]]:
    rows, seen = [], set()
    for index, item in enumerate(items):
        path = f"usage.enterpriseAgentUnits[{index}]"
        read.note_unknown(item, "usage.enterpriseAgentUnits[]")
        aid = read.identifier(item, "aid", f"{path}.aid", required=True)
        agent_id = read.identifier(item, "agentId", f"{path}.agentId", required=False)
        vagent_id = read.identifier(item, "vagentId", f"{path}.vagentId", required=False)
        agent_name = read.text(item, "agentName", f"{path}.agentName")
        # Before 2025-10 two rows could share agentId and differ by vagentId; since then
        # vagentId is gone and agentId "may be omitted" (API_CONTRACTS.md §4.4 trap 1).
        if vagent_id is not None:
            key = vagent_id
        elif agent_id is not None:
            key = agent_id
        elif agent_name is not None:
            key = f"name:{agent_name}"
        else:
            raise read.missing(f"{path}.agentId (or vagentId or agentName: none identifies the agent)")
        unique_key, copy = key, 1
        while (aid, unique_key) in seen:  # never merge two entries: suffix the repeat and say so
            copy += 1
            unique_key = f"{key}#{copy}"
        if copy > 1:
            read.notes[f"usage.enterpriseAgentUnits lists agent {key} of account group {aid} more than once; "
                       "the repeats are kept as separate rows with a #n suffix on agent_key"] = None
        seen.add((aid, unique_key))
        rows.append({
            **lineage,
            "aid": aid,
            "account_group_name": read.text(item, "accountGroupName", f"{path}.accountGroupName"),
            "agent_key": unique_key,
            "agent_id": agent_id,
            "vagent_id": vagent_id,
            "agent_name": agent_name,
            "enterprise_units_used": read.integer(item, "enterpriseUnitsUsed", f"{path}.enterpriseUnitsUsed",
                                                  required=True),
            "enterprise_units_projected": read.integer(item, "enterpriseUnitsProjected",
                                                       f"{path}.enterpriseUnitsProjected"),
        })
    return rows


def _agent_count_rows(usage: Mapping[str, Any], read: _Reader, lineage: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for agent_class, (array, count_field) in constants.AGENT_CLASSES.items():
        items = read.array(usage, array, f"usage.{array}")
        for index, item in enumerate(items or []):
            path = f"usage.{array}[{index}]"
            field = count_field
            if array == "endpointAgentsEmbedded" and count_field not in item and _EMBEDDED_ALIAS in item:
                field = _EMBEDDED_ALIAS
                read.notes[f"usage.endpointAgentsEmbedded entries count with {_EMBEDDED_ALIAS} instead of "
                           f"{count_field} (the v6 doc's own spelling); read as embedded agents"] = None
            read.note_unknown(item, f"usage.{array}[]")
            rows.append({
                **lineage,
                "aid": read.identifier(item, "aid", f"{path}.aid", required=True),
                "account_group_name": read.text(item, "accountGroupName", f"{path}.accountGroupName"),
                "agent_class": agent_class,
                "agents_used": read.integer(item, field, f"{path}.{count_field}", required=True),
            })
    return rows


def _note_duplicate_tests(rows: Iterable[Mapping[str, Any]], read: _Reader) -> None:
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = (row["aid"], row["test_id"])
        if key in seen:
            read.notes[f"usage.tests lists test {key[1]} of account group {key[0]} more than once; every entry is "
                       "kept (the unique test on fct_test_usage will flag it)"] = None
        seen.add(key)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
