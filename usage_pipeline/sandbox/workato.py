"""Simulated Workato Embedded "Get usage (v2)": POST /api/v2/managed_users/statistics/usage.

The one rule: usage is a pure function of workspace, recipe and 15-minute UTC slot, so any
window, interval, grouping and admin time zone gives consistent numbers: buckets are aligned
in the admin zone and returned with that zone's offsets, windows before a workspace started
are `"data": null`, deleted recipes count only in unfiltered queries (API_CONTRACTS.md §3.4),
and a repeated identical query moves counts between neighbouring buckets (the vendor
re-allocates jobs on re-pulls) while keeping the window's totals.

The response shape is DESIGN.md's inferred one; the vendor's real schema is not public.
Timestamps are formatted here independently of the pipeline's client, on purpose: the tests
then check two implementations against each other.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from usage_pipeline.sandbox.server import SandboxRequest, SandboxResponse, SandboxServer, vendor_error

PATH = "/api/v2/managed_users/statistics/usage"
SLOT = timedelta(minutes=15)
INTERVALS = ("none", "year", "month", "week", "day", "hour")
MINIMAL_FIELDS = {"from", "to", "interval", "workspace_ids", "external_ids"}
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?$")


@dataclass(frozen=True)
class Recipe:
    recipe_id: int
    name: str
    folder_id: int
    folder_name: str
    deleted_at: datetime | None = None   # usage stops then, and it leaves filtered/grouped answers
    weight: int = 1                      # jobs per slot scale


@dataclass(frozen=True)
class Workspace:
    workspace_id: int
    external_id: str
    name: str
    started_at: datetime                 # no usage (and no entry) before this
    recipes: tuple[Recipe, ...]


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


DEFAULT_WORKSPACES = (
    Workspace(3127, "acme-prod", "Acme", _utc(2025, 1, 1, 8), (
        Recipe(41001, "Sync invoices", 501, "Finance", weight=3),
        Recipe(41002, "Nightly export", 502, "Ops", weight=2),
        Recipe(41003, "Legacy import", 502, "Ops", deleted_at=_utc(2026, 10, 15, 12), weight=2),
        Recipe(41004, "[TEST] Webhook", 503, "Sandbox"),
    )),
    Workspace(3128, "globex-eu", "Globex EU", _utc(2026, 8, 3, 0), (
        Recipe(42001, "Lead routing", 601, "Sales", weight=2),
        Recipe(42002, "Churn alert", 601, "Sales", deleted_at=_utc(2026, 11, 5, 0)),
    )),
    Workspace(3129, "initech", "Initech", _utc(2026, 11, 10, 17, 30), (
        Recipe(43001, "TPS reports", 701, "Reports", weight=4),
    )),
)


@dataclass
class WorkatoSandbox:
    """The simulated tenant: admin time zone, workspaces, and how often each query was asked."""

    timezone: str = "America/Los_Angeles"
    workspaces: dict[int, Workspace] = field(default_factory=lambda: {w.workspace_id: w for w in DEFAULT_WORKSPACES})
    max_ids: int = 100
    move_on_repull: bool = True
    asked: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def by_external_id(self) -> dict[str, Workspace]:
        return {w.external_id: w for w in self.workspaces.values()}


_STATES: weakref.WeakKeyDictionary[SandboxServer, WorkatoSandbox] = weakref.WeakKeyDictionary()


def state(server: SandboxServer) -> WorkatoSandbox:
    """The Workato tenant simulated by `server` (tests change its zone or workspaces)."""
    return _STATES[server]


def register(server: SandboxServer) -> None:
    tenant = _STATES.setdefault(server, WorkatoSandbox())
    server.route("POST", re.escape(PATH), vendor="workato", auth="bearer",
                 handler=lambda request: usage(tenant, request))


def env(server: SandboxServer) -> dict[str, str]:
    tenant = state(server)
    return {"WORKATO_WORKSPACE_IDS": ",".join(str(i) for i in sorted(tenant.workspaces)),
            "WORKATO_TIMEZONE": tenant.timezone}


# ---------- the endpoint


class _BadRequest(Exception):
    pass


def usage(tenant: WorkatoSandbox, request: SandboxRequest) -> SandboxResponse:
    try:
        query = _read_query(tenant, request.json)
    except _BadRequest as error:
        return vendor_error("workato", 400, str(error))
    start, end, interval, workspaces, group_by, filtered = query
    key = (tuple(w.workspace_id for w in workspaces), start, end, interval, group_by, filtered)
    with tenant._lock:
        generation = tenant.asked[key]
        tenant.asked[key] += 1
    tz = ZoneInfo(tenant.timezone)
    # buckets that have not begun yet are left out; the one holding "now" is partial
    edges = [(low, high) for low, high in bucket_edges(start, end, interval, tz) if low < request.now]
    entries = []
    for workspace in workspaces:
        if workspace.started_at >= end:
            continue  # not there yet: no entry at all
        hide_deleted = filtered or group_by == "recipe"
        recipes = [r for r in workspace.recipes
                   if not (hide_deleted and r.deleted_at is not None and r.deleted_at <= request.now)]
        groups = [(r,) for r in recipes] if group_by == "recipe" else [tuple(recipes)]
        for group in groups:
            buckets = [_bucket(workspace, group, low, high, request.now, tz) for low, high in edges]
            if tenant.move_on_repull and generation:
                _move(buckets, shift=generation + workspace.workspace_id % 3)
            entries.append(_entry(workspace, group if group_by == "recipe" else None, buckets, tz))
    return SandboxResponse(200, {"data": entries or None})


def _read_query(tenant: WorkatoSandbox, body: Any) -> tuple:
    if not isinstance(body, dict):
        raise _BadRequest("Bad request: expected a JSON body")
    tz = ZoneInfo(tenant.timezone)
    start, end = _time(body.get("from"), "from", tz), _time(body.get("to"), "to", tz)
    if end <= start:
        raise _BadRequest("Bad request: 'to' must be after 'from'")
    interval = body.get("interval", "none")
    if interval not in INTERVALS:
        raise _BadRequest(f"Bad request: interval must be one of {', '.join(INTERVALS)}")
    has_ids, has_external = body.get("workspace_ids") is not None, body.get("external_ids") is not None
    if has_ids == has_external:
        raise _BadRequest("Bad request: provide workspace_ids or external_ids")
    ids = _ids(body.get("workspace_ids") if has_ids else body.get("external_ids"))
    if len(ids) > tenant.max_ids:
        raise _BadRequest(f"Bad request: at most {tenant.max_ids} ids per request")
    if has_ids:
        known = tenant.workspaces
        workspaces = [known[int(i)] for i in ids if i.isdigit() and int(i) in known]
    else:
        known_external = tenant.by_external_id()
        workspaces = [known_external[i] for i in ids if i in known_external]
    group_by = body.get("group_by", "workspace")
    if group_by not in ("workspace", "recipe"):
        raise _BadRequest("Bad request: group_by must be recipe or workspace")
    filtered = bool(set(body) - MINIMAL_FIELDS)  # any other field hides deleted recipes
    return start, end, interval, workspaces, group_by, filtered


def _time(value: Any, name: str, tz: ZoneInfo) -> datetime:
    if not isinstance(value, str) or not _TIME.match(value):
        raise _BadRequest(f"Bad request: '{name}' must be YYYY-MM-DDTHH:mm:ss.SSSZ or with an offset")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:  # read in the admin's zone, as the vendor says it does
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def _ids(value: Any) -> list[str]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and value:
        return [str(item) for item in value]
    raise _BadRequest("Bad request: ids must be a list or a comma-separated string")


# ---------- buckets in the admin zone


def bucket_edges(start: datetime, end: datetime, interval: str, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """Buckets covering [start, end), cut where the admin zone's hour/day/week/month/year turns."""
    if end <= start:
        return []
    if interval == "none":
        return [(start, end)]
    cuts = [start]
    at = _ceil_slot(start + timedelta(microseconds=1))
    previous = _label(start, interval, tz)
    while at < end:
        label = _label(at, interval, tz)
        if label != previous:
            cuts.append(at)
            previous = label
        at += SLOT
    cuts.append(end)
    return list(zip(cuts, cuts[1:]))


def _label(at: datetime, interval: str, tz: ZoneInfo) -> tuple:
    local = at.astimezone(tz)
    if interval == "hour":  # the offset too: the repeated 01:00 hour of a fall-back day is a new bucket
        return local.date(), local.hour, local.utcoffset()
    if interval == "day":
        return (local.date(),)
    if interval == "week":  # weeks start on Monday here; the vendor's choice is [UNK]
        return (local.date() - timedelta(days=local.weekday()),)
    if interval == "month":
        return local.year, local.month
    return (local.year,)


def _ceil_slot(at: datetime) -> datetime:
    floor = _floor_slot(at)
    return floor if floor == at else floor + SLOT


def format_time(at: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond // 1000:03d}{offset[:3]}:{offset[3:]}"


# ---------- numbers


@dataclass
class _Bucket:
    start: datetime
    end: datetime
    tasks: int = 0
    successful: int = 0
    failed: int = 0
    recipes: int = 0
    active: int = 0


def _bucket(workspace: Workspace, recipes: tuple[Recipe, ...], low: datetime, high: datetime, now: datetime,
            tz: ZoneInfo) -> _Bucket:
    bucket = _Bucket(low, high)
    for recipe in recipes:
        if recipe.deleted_at is not None and recipe.deleted_at <= low:
            continue
        bucket.recipes += 1
        jobs = 0
        slot = _floor_slot(max(low, workspace.started_at))
        stop = min(high, now, recipe.deleted_at or high)
        while slot < stop:
            tasks, successful, failed = slot_usage(workspace.workspace_id, recipe, slot)
            bucket.tasks, bucket.successful, bucket.failed = (bucket.tasks + tasks, bucket.successful + successful,
                                                              bucket.failed + failed)
            jobs += successful + failed
            slot += SLOT
        bucket.active += jobs > 0
    return bucket


def _floor_slot(at: datetime) -> datetime:
    seconds = int(SLOT.total_seconds())
    return datetime.fromtimestamp(int(at.timestamp()) // seconds * seconds, UTC)


def slot_usage(workspace_id: int, recipe: Recipe, slot: datetime) -> tuple[int, int, int]:
    """(tasks, successful jobs, failed jobs) of one recipe in one 15-minute UTC slot: deterministic."""
    index = int(slot.timestamp()) // int(SLOT.total_seconds())
    h = _mix(workspace_id * 1_000_003 + recipe.recipe_id * 7_919 + index)
    hour = slot.hour
    busy = 3 if 13 <= hour <= 23 else 1  # more traffic in (roughly) American and European office hours
    if h % 5 == 0:
        return 0, 0, 0
    successful = (h >> 8) % (busy * recipe.weight + 1)
    failed = 1 if (h >> 16) % 23 == 0 else 0
    tasks = successful * (1 + (h >> 20) % 6) + failed * ((h >> 28) % 3)
    return tasks, successful, failed


def _mix(value: int) -> int:
    """SplitMix64: a fast, well-spread integer hash (no Python hash() randomization)."""
    z = (value + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def _move(buckets: list[_Bucket], *, shift: int) -> None:
    """Re-allocate: move some tasks and a job from each even bucket to the next, totals unchanged."""
    for left, right in zip(buckets[0::2], buckets[1::2]):
        moved = min(left.tasks, shift)
        left.tasks, right.tasks = left.tasks - moved, right.tasks + moved
        if left.successful:
            left.successful, right.successful = left.successful - 1, right.successful + 1


def _entry(workspace: Workspace, group: tuple[Recipe, ...] | None, buckets: list[_Bucket],
           tz: ZoneInfo) -> dict[str, Any]:
    recipe = group[0] if group else None
    return {
        "workspace_id": workspace.workspace_id, "external_id": workspace.external_id,
        "workspace_name": workspace.name,
        "recipe_id": recipe.recipe_id if recipe else None, "recipe_name": recipe.name if recipe else None,
        "folder_id": recipe.folder_id if recipe else None, "folder_name": recipe.folder_name if recipe else None,
        "intervals": [
            {"from": format_time(b.start, tz), "to": format_time(b.end, tz), "task_count": b.tasks,
             "recipe_count": b.recipes, "active_recipe_count": b.active,
             "successful_job_count": b.successful, "failed_job_count": b.failed}
            for b in buckets
        ],
    }
