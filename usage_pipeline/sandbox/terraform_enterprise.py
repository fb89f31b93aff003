"""Simulated TFE System API: `GET /api/v1/usage/bundle` and `GET /api/v1/ping` (bearer, 1 request/s per token).

The installation takes one snapshot a day, shortly after midnight UTC, and the bundle holds a
rolling window of the latest snapshots up to the server clock, so consecutive pulls overlap.
Everything is derived from the clock and fixed dates, so a snapshot served today and again
next week is byte-identical: same `id`, same values, same checksum. On purpose, like the real
thing or its documented quirks (API_CONTRACTS.md §1):

- timestamps with nine fractional digits and offsets other than Z (`-08:00`, `+05:30`, …);
- checksums as bare JSON integers, some above 2^63 (unsigned 64-bit);
- a licence change on LICENCE_CHANGE_DAY (the `license_id` of later snapshots differs);
- a TFE upgrade on UPGRADE_DAY after which an undocumented metric key appears;
- `cpu_architecture` carrying the inner key `using_tfe_explorer` (the v202507-1 reference's bug).

Tests change the window, the opt-out days or the dates through `settings(server)`.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from usage_pipeline.sandbox.server import SandboxRequest, SandboxResponse, SandboxServer
from usage_pipeline.sources.terraform_enterprise import constants

KEY = constants.KEY
SNAPSHOT_TIME = time(0, 0, 4, 386332, tzinfo=UTC)  # + 246 ns: the docs sample's time of day
INSTALLED_DAY = date(2026, 9, 1)
LICENCE_CHANGE_DAY = date(2026, 11, 18)  # snapshots from this day on carry the new licence
UPGRADE_DAY = date(2026, 11, 16)  # v202505-1 → v202507-1; the undocumented metric appears
LICENCE_BEFORE = "b855d11a-2b6e-4b0c-8e3f-2a3e5d6b7f9c"
LICENCE_AFTER = "4e1c6f0a-7d2b-4a51-9c3e-0f8d2b6a1c77"
UNKNOWN_METRIC = "stacks_deployment_count"  # not in the data reference: must still be loaded
# the same instant, written in different zones: RFC 3339 allows any offset (Vault shows -08:00)
OFFSETS = (timedelta(0), timedelta(hours=-8), timedelta(hours=5, minutes=30), None, timedelta(hours=-3, minutes=-30))
UNSIGNED_64 = 1 << 64
_ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass
class TfeSandboxSettings:
    """What a test may change on one server."""

    window_days: int = 7
    installed_day: date = INSTALLED_DAY
    licence_change_day: date = LICENCE_CHANGE_DAY
    upgrade_day: date = UPGRADE_DAY
    opted_out_days: set[date] = field(default_factory=set)  # product_usage_reporting_opt_in = 0, all zeros


_SETTINGS: weakref.WeakKeyDictionary[SandboxServer, TfeSandboxSettings] = weakref.WeakKeyDictionary()


def settings(server: SandboxServer) -> TfeSandboxSettings:
    """The TFE simulation settings of `server` (made on first use)."""
    return _SETTINGS.setdefault(server, TfeSandboxSettings())


def register(server: SandboxServer) -> None:
    """Add the System API routes; its 1 request/s per token limit is enforced by the framework."""
    server.rate_limits.setdefault(KEY, (constants.REQUESTS_PER_S, 1))
    settings(server)
    server.route("GET", r"/api/v1/usage/bundle", vendor=KEY, auth="bearer", handler=_bundle)
    server.route("GET", r"/api/v1/ping", vendor=KEY, auth="bearer", handler=_ping)


def _ping(request: SandboxRequest) -> SandboxResponse:
    return SandboxResponse(200, json.dumps(constants.PING_ANSWER).encode(), {"Content-Type": "application/json"})


def _bundle(request: SandboxRequest) -> SandboxResponse:
    body = bundle(request.now, settings(request.server))
    return SandboxResponse(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


# ---------- the data


def bundle(now: datetime, config: TfeSandboxSettings) -> dict[str, Any]:
    """The bundle served at `now`: the latest `window_days` daily snapshots taken by then."""
    days = snapshot_days(now, config)
    snapshots = [snapshot(day, config) for day in days]
    digest = hashlib.sha256(json.dumps(snapshots, sort_keys=True).encode() + now.isoformat().encode()).digest()
    return {
        "version": "2",
        "mode": "automatic",
        "timestamp": rfc3339_nanos(now, nanos=now.microsecond * 1000 + 464, offset=None),
        "signature": hashlib.sha256(b"signature" + digest).hexdigest()[:38],
        "checksum": int.from_bytes(digest[:8]) | (1 << 63),  # always above 2^63: exact text or nothing
        "snapshots": snapshots,
    }


def snapshot_days(now: datetime, config: TfeSandboxSettings) -> list[date]:
    """Days whose snapshot exists at `now`, oldest first, at most `window_days` of them."""
    latest = now.astimezone(UTC).date()
    if datetime.combine(latest, SNAPSHOT_TIME) > now:
        latest -= timedelta(days=1)
    first = max(config.installed_day, latest - timedelta(days=config.window_days - 1))
    return [first + timedelta(days=n) for n in range((latest - first).days + 1)]


def snapshot(day: date, config: TfeSandboxSettings) -> dict[str, Any]:
    """The snapshot TFE takes on `day`: the same every time it is served."""
    age = (day - config.installed_day).days
    taken = datetime.combine(day, SNAPSHOT_TIME)
    upgraded = day >= config.upgrade_day
    opted_out = day in config.opted_out_days
    metrics = {key: _entry(key, 0 if opted_out and key not in constants.OPT_IN_FLAGS else value)
               for key, value in _metric_values(age, upgraded).items()}
    metrics[constants.USAGE_OPT_IN] = _entry(constants.USAGE_OPT_IN, 0 if opted_out else 1)
    if "cpu_architecture" in metrics:  # the v202507-1 reference's copy/paste bug, kept
        metrics["cpu_architecture"]["key"] = "using_tfe_explorer"
    body = {
        "snapshot_version": 2,
        "id": ulid(taken, f"{day}"),
        "timestamp": rfc3339_nanos(taken, nanos=386332246 + (age % 7) * 100, offset=OFFSETS[age % len(OFFSETS)]),
        "schema_version": "2.2.0" if upgraded else "2.0.1",
        "product": "terraform",
        "process_id": ulid(datetime.combine(config.installed_day, time(tzinfo=UTC)), "process"),
        "metrics": metrics,
        "product_version": "v202507-1" if upgraded else "v202505-1",
        "license_id": LICENCE_AFTER if day >= config.licence_change_day else LICENCE_BEFORE,
        "metadata": {},
    }
    checksum = int.from_bytes(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()[:8])
    # even days above 2^63, odd days below: both sides of the signed BIGINT edge, every week
    body["checksum"] = checksum | (1 << 63) if day.toordinal() % 2 == 0 else checksum & ~(1 << 63)
    return body


def _metric_values(age: int, upgraded: bool) -> dict[str, int]:
    """Every documented metric, with counts that grow with the installation's age."""
    values = {key: 0 for key in constants.METRICS}
    values.update({
        "billable_rum_count": 1200 + 15 * age, "user_count": 40 + age // 7, "active_agents_count": 3 + age % 3,
        "workspacecount": 80 + age, "org_count": 3, "org_admin_count": 5, "project_count": 12, "teams_count": 9,
        "varsets_count": 4, "private_modules_count": 17, "daily_runs": 60 + age % 11, "daily_api_runs": 20,
        "daily_cli_runs": 10, "daily_vcs_runs": 30 + age % 11, "github_vcs_present": 1, "aws_provider_present": 1,
        "billable_rum_count_workspace_max": 90, "billable_rum_count_workspace_avg": 15,
        "billable_rum_count_workspace_median": 11, "billable_rum_count_workspace_80th_percentile": 24,
        "billable_rum_count_workspace_min": 1, "billable_rum_opt_in": 1, "run_concurrency": 10,
        "installation_reporting_environment_type": 1, "cpu_architecture": 1,
    })
    if upgraded:
        values[UNKNOWN_METRIC] = 2 + age % 5
    else:  # introduced in v202507-1
        del values["using_tfe_explorer"], values["cpu_architecture"]
    return values


def _entry(key: str, value: int) -> dict[str, Any]:
    return {"key": key, "value": value, "mode": "write"}


def rfc3339_nanos(moment: datetime, *, nanos: int, offset: timedelta | None) -> str:
    """`moment` (to the second) plus `nanos`, written with nine fractional digits in `offset` (None: `Z`)."""
    zone = timezone(offset or timedelta(0))
    local = moment.astimezone(zone)
    suffix = "Z" if offset is None else local.strftime("%z")
    if suffix != "Z":
        suffix = f"{suffix[:3]}:{suffix[3:]}"
    return f"{local:%Y-%m-%dT%H:%M:%S}.{nanos % 1_000_000_000:09d}{suffix}"


def ulid(moment: datetime, seed: str) -> str:
    """A deterministic ULID-shaped id (48-bit milliseconds + 80 bits from `seed`), like TFE's."""
    milliseconds = int(moment.timestamp() * 1000)
    number = (milliseconds << 80) | int.from_bytes(hashlib.sha256(seed.encode()).digest()[:10])
    return "".join(_ULID_ALPHABET[(number >> shift) & 31] for shift in range(125, -1, -5))
