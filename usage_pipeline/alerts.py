"""Alerts on marts.mart_usage_vs_quota: asset checks (warn when at risk, error when over) and
a sensor that posts one JSON message to USAGE_ALERT_WEBHOOK_URL per status change.

The one rule: a change is announced once. The sensor keeps the last status it announced for
each vendor × account × unit in its cursor (JSON) and advances it only for messages the
webhook accepted, so a failed post is retried on the next tick and a delivered one never is.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import httpx

from usage_pipeline.errors import WarehouseError
from usage_pipeline.warehouse import Warehouse

MART_KEY = dg.AssetKey(["marts", "mart_usage_vs_quota"])
MART = "marts.mart_usage_vs_quota"
WEBHOOK_TIMEOUT_S = 10.0
# statuses worth a message the first time an account × unit is seen (nothing to compare with)
ALARMING = ("at_risk", "over")


@dataclass(frozen=True)
class CurrentStatus:
    """The latest mart row of one vendor × account × unit."""

    vendor: str
    account_id: str
    unit: str
    status: str
    used: int | None
    included: int | None
    share_used: float | None
    forecast_exhausted_date: date | None
    usage_date: date
    observed_at: datetime

    @property
    def key(self) -> str:
        return f"{self.vendor}/{self.account_id}/{self.unit}"

    def summary(self) -> str:
        """`thousandeyes/1234 cloud_units: 1,200 of 1,000 (120.0%)`: names and numbers."""
        share = f" ({self.share_used * 100:.1f}%)" if self.share_used is not None else ""
        included = "unlimited" if self.included is None else f"{self.included:,}"
        used = "?" if self.used is None else f"{self.used:,}"
        runs_out = f", quota runs out {self.forecast_exhausted_date:%Y-%m-%d}" if self.forecast_exhausted_date else ""
        return f"{self.key}: {used} of {included}{share}{runs_out}"


def current_statuses(warehouse: Warehouse, *, statuses: Iterable[str] | None = None) -> list[CurrentStatus]:
    """Every vendor × account × unit at its latest observation (optionally only some statuses)."""
    wanted = list(statuses or [])
    where = f" and status in ({', '.join(['%s'] * len(wanted))})" if wanted else ""
    rows = warehouse.query(
        "select vendor, account_id, unit, status, used, included, share_used, forecast_exhausted_date, "
        f"usage_date, observed_at from {MART} where is_latest{where} order by vendor, account_id, unit",
        wanted,
    )
    return [CurrentStatus(*row) for row in rows]


# ---------- asset checks


def _status_check_result(warehouse: Warehouse, *, status: str, severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    found = current_statuses(warehouse, statuses=[status])
    lines = [item.summary() for item in found]
    label = status.replace("_", " ")
    description = (
        f"no account is {label}" if not found else f"{len(found)} account × unit {label}: " + "; ".join(lines[:10])
        + (f"; and {len(lines) - 10} more" if len(lines) > 10 else "")
    )
    return dg.AssetCheckResult(
        passed=not found,
        severity=severity,
        description=description,
        metadata={
            "count": len(found),
            "accounts": dg.MetadataValue.json([_json_ready(asdict(item)) for item in found]),
        },
    )


@dg.asset_check(
    asset=MART_KEY,
    name="no_account_over_quota",
    description="Error when any vendor × account × unit has used more than its plan includes (latest value).",
)
def no_account_over_quota(warehouse: Warehouse) -> dg.AssetCheckResult:
    return _status_check_result(warehouse, status="over", severity=dg.AssetCheckSeverity.ERROR)


@dg.asset_check(
    asset=MART_KEY,
    name="no_account_at_risk",
    description=(
        "Warn when any vendor × account × unit is at risk: past the at-risk share of its plan, "
        "or projected or forecast to run out before the billing period ends (latest value)."
    ),
)
def no_account_at_risk(warehouse: Warehouse) -> dg.AssetCheckResult:
    return _status_check_result(warehouse, status="at_risk", severity=dg.AssetCheckSeverity.WARN)


# ---------- the status-change sensor


@dataclass(frozen=True)
class StatusChange:
    previous: str | None
    current: CurrentStatus

    def message(self) -> dict[str, Any]:
        """The JSON body posted: a `text` line (Slack/Teams-style webhooks show it) and the fields."""
        item = self.current
        was = f" (was {self.previous.replace('_', ' ')})" if self.previous else ""
        label = item.status.replace("_", " ")
        text = f"[usage_pipeline] {item.vendor} account {item.account_id} {item.unit} is now {label}{was}: {item.summary()}"
        return {
            "text": text,
            "event": "usage_status_changed",
            "previous_status": self.previous,
            **_json_ready(asdict(item)),
        }


def status_changes(current: Iterable[CurrentStatus], announced: Mapping[str, str]) -> list[StatusChange]:
    """What to announce: statuses that differ from the last announced one.

    An account × unit seen for the first time is announced only when it is already at risk or
    over; otherwise its status is recorded silently as the baseline.
    """
    changes = []
    for item in current:
        previous = announced.get(item.key)
        if previous is None and item.status not in ALARMING:
            continue
        if previous != item.status:
            changes.append(StatusChange(previous, item))
    return changes


def post_message(url: str, message: Mapping[str, Any], *, timeout_s: float = WEBHOOK_TIMEOUT_S) -> None:
    """POST one JSON message; raise httpx.HTTPError on a transport error or a non-2xx answer."""
    response = httpx.post(url, json=dict(message), timeout=timeout_s)
    response.raise_for_status()


def build_status_sensor(
    *, warehouse_url: str, webhook_url: str | None, minimum_interval_seconds: int = 300
) -> dg.SensorDefinition:
    """The sensor that posts status changes; stopped by default when no webhook is configured."""

    @dg.sensor(
        name="usage_status_webhook_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if webhook_url else dg.DefaultSensorStatus.STOPPED,
        description=(
            "Posts one JSON message to USAGE_ALERT_WEBHOOK_URL when a vendor × account × unit changes "
            "status in marts.mart_usage_vs_quota (ok, at_risk, over, no_quota); once per change."
        ),
    )
    def usage_status_webhook_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        if not webhook_url:
            return dg.SkipReason("USAGE_ALERT_WEBHOOK_URL is unset: no status alerts are sent")
        reader = Warehouse(url=warehouse_url, read_only=True)
        try:
            if not reader.table_exists(MART):
                return dg.SkipReason(f"{MART} is not built yet")
            current = current_statuses(reader)
        except WarehouseError as error:
            return dg.SkipReason(f"warehouse not readable yet: {error}")
        announced: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        changes = status_changes(current, announced)
        changing = {change.current.key for change in changes}
        # first sightings that need no message become the baseline; a failed post keeps the
        # previous entry, so the change is posted again on the next tick
        state = announced | {
            item.key: item.status for item in current if item.key not in announced and item.key not in changing
        }
        sent, failed = 0, []
        for change in changes:
            try:
                post_message(webhook_url, change.message())
            except httpx.HTTPError as error:
                failed.append(f"{change.current.key} ({type(error).__name__})")
                continue
            state[change.current.key] = change.current.status
            sent += 1
        # the webhook URL is a secret (Slack-style tokens in the path): messages name the host only
        host = urlsplit(webhook_url).hostname
        if failed:
            context.log.error(f"webhook at {host} failed for {len(failed)} change(s), retried next tick: {', '.join(failed)}")
        summary = f"{sent} status change(s) posted to {host}" + (f"; {len(failed)} failed, retried next tick" if failed else "")
        return dg.SensorResult(skip_reason=summary, cursor=json.dumps(state, sort_keys=True))

    return usage_status_webhook_sensor


def _json_ready(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, (date, datetime)) else value for key, value in values.items()}
