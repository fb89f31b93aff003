"""Parse Workato "Get usage (v2)" responses into `staging.stg_workato__usage` rows.

The response schema is not public (API_CONTRACTS.md §3.7; DESIGN.md "Workato's response
schema is not public"): the parser reads the inferred shape

    {"data": [{"workspace_id", "external_id", "workspace_name", "recipe_id", "recipe_name",
               "folder_id", "folder_name",
               "intervals": [{"from", "to", "task_count", "recipe_count", "active_recipe_count",
                              "successful_job_count", "failed_job_count"}]}]}

and every vendor field name goes through FIELD_ALIASES, the one place to edit when a real
payload disagrees (then `usage-pipeline replay` re-reads every landed response). `"data":
null` means no usage: zero rows, not an error. A field nobody maps is kept in raw and reported
once. Times arrive in the Embedded admin's zone and leave as UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pyarrow as pa

from usage_pipeline.errors import PayloadError
from usage_pipeline.sources.base import Parsed
from usage_pipeline.sources.workato import constants
from usage_pipeline.sources.workato.windows import Window, billing_period, parse_admin_time, zone

# ---------- the one alias table: our name -> the vendor spellings we accept, first match wins

FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    # response envelope
    "data": ("data",),
    # one entry per workspace (× recipe with group_by=recipe)
    "workspace_id": ("workspace_id", "managed_user_id", "customer_id"),
    "external_id": ("external_id",),
    "workspace_name": ("workspace_name", "name"),
    "recipe_id": ("recipe_id",),
    "recipe_name": ("recipe_name",),
    "folder_id": ("folder_id",),
    "folder_name": ("folder_name",),
    "intervals": ("intervals", "usage", "metrics"),
    # one bucket of an entry
    "interval_start": ("from", "start", "interval_start"),
    "interval_end": ("to", "end", "interval_end"),
    "tasks": ("task_count", "tasks", "task_usage"),
    "recipe_count": ("recipe_count", "recipes"),
    "active_recipe_count": ("active_recipe_count", "active_recipes"),
    "successful_jobs": ("successful_job_count", "successful_jobs"),
    "failed_jobs": ("failed_job_count", "failed_jobs"),
}
ENVELOPE_FIELDS = ("data",)
ENTRY_FIELDS = ("workspace_id", "external_id", "workspace_name", "recipe_id", "recipe_name", "folder_id",
                "folder_name", "intervals")
INTERVAL_FIELDS = ("interval_start", "interval_end", "tasks", "recipe_count", "active_recipe_count",
                   "successful_jobs", "failed_jobs")
# Required: what the vendor documents as the content ("task usage, ... counts of successful
# and failed jobs", §3.7) plus the keys of the grain. Recipe counts are optional: a per-recipe
# entry may well not carry them.
ENTRY_LEVEL_COUNTS = ("recipe_count", "active_recipe_count")
REQUIRED = frozenset({"workspace_id", "interval_start", "interval_end", "tasks", "successful_jobs", "failed_jobs"})

USAGE_SCHEMA = pa.schema([
    ("snapshot_id", pa.string()),
    ("observed_at", pa.timestamp("us", tz="UTC")),
    ("grouping", pa.string()),                       # workspace | recipe
    ("interval_unit", pa.string()),                  # the `interval` requested (hour)
    ("timezone", pa.string()),                       # the admin zone the window was asked in
    ("window_start", pa.timestamp("us", tz="UTC")),  # the requested window, UTC
    ("window_end", pa.timestamp("us", tz="UTC")),
    ("workspace_id", pa.int64()),
    ("external_id", pa.string()),
    ("workspace_name", pa.string()),
    ("recipe_id", pa.int64()),
    ("recipe_name", pa.string()),
    ("folder_id", pa.int64()),
    ("folder_name", pa.string()),
    ("interval_start", pa.timestamp("us", tz="UTC")),
    ("interval_end", pa.timestamp("us", tz="UTC")),
    ("interval_start_local", pa.string()),           # the vendor's own `from` text, for audits
    ("tasks", pa.int64()),
    ("successful_jobs", pa.int64()),
    ("failed_jobs", pa.int64()),
    ("recipe_count", pa.int64()),
    ("active_recipe_count", pa.int64()),
    ("period_start", pa.timestamp("us", tz="UTC")),  # billing period holding the bucket, UTC
    ("period_end", pa.timestamp("us", tz="UTC")),
    ("period_label", pa.string()),                   # the period in the admin zone: YYYY-MM
])
REQUESTS_SCHEMA = pa.schema([
    ("snapshot_id", pa.string()),
    ("observed_at", pa.timestamp("us", tz="UTC")),
    ("grouping", pa.string()),
    ("interval_unit", pa.string()),
    ("timezone", pa.string()),
    ("window_start", pa.timestamp("us", tz="UTC")),
    ("window_end", pa.timestamp("us", tz="UTC")),
    ("id_kind", pa.string()),                        # workspace_ids | external_ids
    ("requested_ids", pa.string()),                  # comma-separated, as sent
    ("entries", pa.int64()),                         # entries in `data` (0 for null)
    ("usage_rows", pa.int64()),
    ("is_data_null", pa.bool_()),
    ("period_start", pa.timestamp("us", tz="UTC")),  # billing period holding the window, UTC
    ("period_end", pa.timestamp("us", tz="UTC")),
    ("period_label", pa.string()),
])
TABLES = {constants.STAGING_USAGE: USAGE_SCHEMA, constants.STAGING_REQUESTS: REQUESTS_SCHEMA}
_LAST_MILLISECOND = 999_000


class SnapshotLike(Protocol):
    """What the parser needs of a landed snapshot (landing.Snapshot has it)."""

    snapshot_id: str
    account_id: str
    fetched_at: datetime
    request: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PullContext:
    """How one response was asked for: stored with the snapshot so replay can parse it."""

    timezone: str
    window: Window
    grouping: str
    interval: str
    id_kind: str
    ids: tuple[str, ...]

    @classmethod
    def from_request(cls, request: Mapping[str, Any], *, account: str, snapshot_id: str) -> PullContext:
        def need(name: str) -> Any:
            if request.get(name) in (None, ""):
                raise PayloadError(constants.KEY, account, f"snapshot {snapshot_id}: its request record has no "
                                   f"{name!r}; cannot tell how the window was asked (re-pull the partition)")
            return request[name]

        timezone = need("timezone")
        try:
            zone(timezone)
            window = Window(_iso_utc(need("window_start")), _iso_utc(need("window_end")))
        except (ValueError, KeyError) as error:
            raise PayloadError(constants.KEY, account, f"snapshot {snapshot_id}: bad request record "
                               f"({error})") from None
        grouping = need("grouping")
        if grouping not in constants.GROUPINGS:
            raise PayloadError(constants.KEY, account, f"snapshot {snapshot_id}: unknown grouping {grouping!r}")
        return cls(timezone=timezone, window=window, grouping=grouping, interval=str(need("interval")),
                   id_kind=str(request.get("id_kind") or "workspace_ids"),
                   ids=tuple(str(item) for item in request.get("ids") or ()))


def parse_batch(account_id: str, pulls: Sequence[tuple[SnapshotLike, Any]]) -> Parsed:
    """Parse every response of one window's batch; a bucket twice in one batch is a PayloadError."""
    usage: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []
    warnings: list[str] = []
    seen: dict[tuple, str] = {}
    for snapshot, payload in pulls:
        context = PullContext.from_request(snapshot.request, account=account_id, snapshot_id=snapshot.snapshot_id)
        parsed = parse_usage(payload, snapshot_id=snapshot.snapshot_id, observed_at=snapshot.fetched_at,
                             context=context, account_id=account_id)
        for row in parsed.tables[constants.STAGING_USAGE]:
            key = (row["grouping"], row["workspace_id"], row["recipe_id"], row["interval_start"])
            if key in seen:
                raise PayloadError(constants.KEY, str(row["workspace_id"]), f"the same bucket "
                                   f"({_describe_key(key)}) comes twice, in snapshots {seen[key]} and "
                                   f"{snapshot.snapshot_id}; refusing to add them up")
            seen[key] = snapshot.snapshot_id
        usage += parsed.tables[constants.STAGING_USAGE]
        requests += parsed.tables[constants.STAGING_REQUESTS]
        warnings += [warning for warning in parsed.warnings if warning not in warnings]
    return Parsed(tables={constants.STAGING_USAGE: usage, constants.STAGING_REQUESTS: requests},
                  warnings=tuple(warnings))


def parse_usage(payload: object, *, snapshot_id: str, observed_at: datetime, context: PullContext,
                account_id: str = constants.BATCH_ACCOUNT) -> Parsed:
    """Return one row per workspace (× recipe) × bucket, plus one row describing the request.

    `{"data": null}` (or an empty list) means no usage in the window: zero usage rows.
    """
    where = _Where(account_id, snapshot_id)
    if not isinstance(payload, dict):
        raise where.error(f"expected a JSON object with a 'data' key, got {type(payload).__name__}")
    warnings = _Warnings()
    envelope = _Fields(payload, ENVELOPE_FIELDS, where, "the response")
    warnings.unknown("response", envelope.unknown)
    if not envelope.has("data"):
        raise where.error(f"the response has no 'data' key (vendor names tried: {_names('data')}); "
                          f"keys present: {sorted(payload)[:10]}")
    data = envelope.get("data")
    if data is not None and not isinstance(data, list):
        raise where.error(f"'data' is {type(data).__name__}, expected a list or null")
    rows: list[dict[str, Any]] = []
    for position, entry in enumerate(data or []):
        rows += _entry_rows(entry, position, context, where, warnings, snapshot_id, observed_at)
    request_row = {
        "snapshot_id": snapshot_id, "observed_at": observed_at.astimezone(UTC), "grouping": context.grouping,
        "interval_unit": context.interval, "timezone": context.timezone, "window_start": context.window.start,
        "window_end": context.window.end, "id_kind": context.id_kind, "requested_ids": ",".join(context.ids),
        "entries": len(data or []), "usage_rows": len(rows), "is_data_null": data is None,
        **_period_columns(context.window.start, context.timezone),
    }
    return Parsed(tables={constants.STAGING_USAGE: rows, constants.STAGING_REQUESTS: [request_row]},
                  warnings=warnings.all())


# ---------- one entry


def _entry_rows(entry: object, position: int, context: PullContext, where: _Where, warnings: _Warnings,
                snapshot_id: str, observed_at: datetime) -> list[dict[str, Any]]:
    path = f"data[{position}]"
    if not isinstance(entry, dict):
        raise where.error(f"{path} is {type(entry).__name__}, expected an object")
    fields = _Fields(entry, ENTRY_FIELDS + INTERVAL_FIELDS, where, path)
    entry_level = set(_all_names(ENTRY_FIELDS + ENTRY_LEVEL_COUNTS))
    workspace_id = fields.integer("workspace_id")
    where = where.for_workspace(workspace_id)
    recipe_id = fields.integer("recipe_id")
    if context.grouping == "recipe" and recipe_id is None:
        raise where.error(f"{path}: grouped by recipe but the entry has no recipe id "
                          f"(vendor names tried: {_names('recipe_id')})")
    if context.grouping == "workspace" and recipe_id is not None:
        warnings.add(f"{constants.KEY}: a workspace-total response carries recipe ids; they are ignored "
                     "(rows are per workspace)")
        recipe_id = None
    base = {
        "snapshot_id": snapshot_id, "observed_at": observed_at.astimezone(UTC), "grouping": context.grouping,
        "interval_unit": context.interval, "timezone": context.timezone, "window_start": context.window.start,
        "window_end": context.window.end, "workspace_id": workspace_id,
        "external_id": fields.text("external_id"), "workspace_name": fields.text("workspace_name"),
        "recipe_id": recipe_id,
        "recipe_name": fields.text("recipe_name") if context.grouping == "recipe" else None,
        "folder_id": fields.integer("folder_id") if context.grouping == "recipe" else None,
        "folder_name": fields.text("folder_name") if context.grouping == "recipe" else None,
    }
    if fields.has("intervals"):
        buckets = fields.get("intervals")
        if buckets is None:
            buckets = []
        if not isinstance(buckets, list):
            raise where.error(f"{path}: 'intervals' is {type(buckets).__name__}, expected a list")
        warnings.unknown("entry", {key for key in entry if key not in entry_level})
    elif fields.has("interval_start"):
        # a flat shape (the entry is its own single bucket): accepted without an alias edit
        buckets = [entry]
        warnings.unknown("entry", fields.unknown)
    else:
        raise where.error(f"{path}: no buckets: neither 'intervals' (vendor names tried: {_names('intervals')}) "
                          f"nor a 'from' on the entry")
    rows = []
    for index, bucket in enumerate(buckets):
        row = _bucket_row(bucket, f"{path}.intervals[{index}]", context, where, warnings, fields)
        if row is not None:
            rows.append({**base, **row})
    return rows


def _bucket_row(bucket: object, path: str, context: PullContext, where: _Where, warnings: _Warnings,
                entry_fields: _Fields) -> dict[str, Any] | None:
    if not isinstance(bucket, dict):
        raise where.error(f"{path} is {type(bucket).__name__}, expected an object")
    fields = _Fields(bucket, INTERVAL_FIELDS, where, path)
    if bucket is not entry_fields.source:
        warnings.unknown("interval", fields.unknown)
    start_text = fields.text("interval_start")
    start = _admin_time(start_text, "interval_start", path, context.timezone, where, warnings)
    end = _admin_time(fields.text("interval_end"), "interval_end", path, context.timezone, where,
                      warnings)
    if end.microsecond == _LAST_MILLISECOND:
        end += timedelta(milliseconds=1)  # an inclusive "…:59.999" end is the next bucket's start
    if end <= start:
        raise where.error(f"{path}: bucket ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    window = context.window
    if start >= window.end or end <= window.start:
        warnings.add(f"{constants.KEY}: the vendor returned buckets outside the requested window; they are "
                     "dropped (the neighbouring window's pull owns them)")
        return None
    if start < window.start or end > window.end:
        warnings.add(f"{constants.KEY}: buckets straddle the requested window's edges (is WORKATO_TIMEZONE the "
                     "admin workspace's zone?); kept as the vendor gave them")
    return {
        "interval_start": start, "interval_end": end, "interval_start_local": start_text,
        "tasks": fields.integer("tasks", minimum=0),
        "successful_jobs": fields.integer("successful_jobs", minimum=0),
        "failed_jobs": fields.integer("failed_jobs", minimum=0),
        # recipe counts describe the workspace, not a flow: an entry-level value serves every bucket
        "recipe_count": _first(fields, entry_fields, "recipe_count"),
        "active_recipe_count": _first(fields, entry_fields, "active_recipe_count"),
        **_period_columns(start, context.timezone),
    }


# ---------- time


def _period_columns(at: datetime, timezone: str) -> dict[str, Any]:
    """The billing period holding `at` (calendar month in the admin zone by default), UTC plus a label."""
    period = billing_period(at, timezone)
    local_start = period.start.astimezone(zone(timezone))
    label = f"{local_start:%Y-%m}" if constants.BILLING_ANCHOR_DAY == 1 else f"{local_start:%Y-%m-%d}"
    return {"period_start": period.start, "period_end": period.end, "period_label": label}


def _admin_time(text: str, name: str, path: str, timezone: str, where: _Where, warnings: _Warnings) -> datetime:
    try:
        at, note = parse_admin_time(text, timezone)
    except ValueError as error:
        raise where.error(f"{path}: {name} {error}") from None
    if note:
        warnings.add(f"{constants.KEY}: {note}")
    return at


def _iso_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value)
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no offset")
    return parsed.astimezone(UTC)


# ---------- field access through the alias table


def _names(field: str) -> str:
    return ", ".join(FIELD_ALIASES.get(field, (field,)))


def _all_names(fields: Iterable[str]) -> list[str]:
    return [name for field in fields for name in FIELD_ALIASES.get(field, (field,))]


class _Fields:
    """One JSON object read through FIELD_ALIASES; remembers which keys nobody claimed."""

    def __init__(self, source: dict[str, Any], fields: Sequence[str], where: _Where, path: str) -> None:
        self.source, self._where, self._path = source, where, path
        self._found: dict[str, str] = {}
        claimed: set[str] = set()
        for field in fields:
            names = FIELD_ALIASES.get(field, (field,))
            claimed.update(names)
            for name in names:
                if name in source:
                    self._found[field] = name
                    break
        self.unknown = {key for key in source if key not in claimed}

    def has(self, field: str) -> bool:
        return field in self._found

    def get(self, field: str) -> Any:
        return self.source[self._found[field]] if field in self._found else None

    def _missing(self, field: str) -> PayloadError:
        return self._where.error(f"{self._path}: required field {field!r} is missing (vendor names tried: "
                                 f"{_names(field)}; edit FIELD_ALIASES in sources/workato/parse.py if it was renamed)")

    def integer(self, field: str, *, minimum: int | None = None) -> int | None:
        value = self.get(field)
        if value is None:
            if field in REQUIRED:
                raise self._missing(field)
            return None
        number: int | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            number = int(value.strip())
        if number is None:
            raise self._where.error(f"{self._path}: {field} ({self._found[field]}) is {_shown(value)}, "
                                    "expected an integer")
        if minimum is not None and number < minimum:
            raise self._where.error(f"{self._path}: {field} ({self._found[field]}) is {number}, expected >= {minimum}")
        return number

    def text(self, field: str) -> str | None:
        value = self.get(field)
        if value is None:
            if field in REQUIRED:
                raise self._missing(field)
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self._where.error(f"{self._path}: {field} ({self._found[field]}) is {_shown(value)}, expected text")
        return str(value)


def _first(bucket: _Fields, entry: _Fields, field: str) -> int | None:
    value = bucket.integer(field, minimum=0)
    return entry.integer(field, minimum=0) if value is None else value


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"


@dataclass(frozen=True, slots=True)
class _Where:
    """Who to name in an error: source, account (the workspace once known) and snapshot."""

    account: str
    snapshot_id: str

    def for_workspace(self, workspace_id: int | None) -> _Where:
        return _Where(str(workspace_id), self.snapshot_id) if workspace_id is not None else self

    def error(self, message: str) -> PayloadError:
        return PayloadError(constants.KEY, self.account, f"usage snapshot {self.snapshot_id}: {message}")


class _Warnings:
    """Warnings of one response, each said once; unknown fields grouped by level."""

    def __init__(self) -> None:
        self._items: list[str] = []
        self._unknown: dict[str, set[str]] = {}

    def add(self, message: str) -> None:
        if message not in self._items:
            self._items.append(message)

    def unknown(self, level: str, names: Iterable[str]) -> None:
        self._unknown.setdefault(level, set()).update(names)

    def all(self) -> tuple[str, ...]:
        found = [f"{level}.{name}" for level, names in self._unknown.items() for name in sorted(names)]
        unknown = ([f"{constants.KEY}: usage response fields not in FIELD_ALIASES: {', '.join(found)}; kept in "
                    "raw, not loaded (map them in sources/workato/parse.py, then `usage-pipeline replay`)"]
                   if found else [])
        return tuple(unknown + self._items)


def _describe_key(key: tuple) -> str:
    grouping, workspace_id, recipe_id, start = key
    recipe = f", recipe {recipe_id}" if recipe_id is not None else ""
    return f"{grouping} grouping, workspace {workspace_id}{recipe}, bucket starting {start.isoformat()}"
