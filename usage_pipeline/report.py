"""The offline HTML report: usage against the plan, burn-down charts, accounts at risk and
recent entitlement changes, in one file.

The one rule: the file is self-contained. CSS is inline, charts are SVG drawn here, and there
is no script, font, image or link that reaches the network, so it opens anywhere, offline.
It reads the warehouse read-only, so it can run while the pipeline writes.
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from usage_pipeline import timeutil
from usage_pipeline.warehouse import Warehouse

MART = "marts.mart_usage_vs_quota"
ACCOUNTS = "marts.dim_accounts"
ENTITLEMENTS = "marts.fct_subscription_entitlements"
ENTITLEMENT_WINDOW = timedelta(days=90)
MAX_CHARTS = 24
STATUS_ORDER = {"over": 0, "at_risk": 1, "ok": 2, "no_quota": 3}
STATUS_LABEL = {"over": "over", "at_risk": "at risk", "ok": "ok", "no_quota": "no quota"}
VENDOR_LABEL = {
    "thousandeyes": "ThousandEyes",
    "hcp_terraform": "HCP Terraform",
    "terraform_enterprise": "Terraform Enterprise",
    "workato": "Workato",
}


@dataclass(frozen=True)
class UnitState:
    """The latest row of one vendor × account × unit in the mart."""

    vendor: str
    account_id: str
    account_name: str
    unit: str
    period_start: datetime | None
    period_end: datetime | None
    used: int | None
    projected: int | None
    included: int | None
    share_used: float | None
    status: str
    forecast_exhausted_date: date | None
    burn_rate_per_day: float | None
    is_unlimited: bool
    observed_at: datetime


@dataclass(frozen=True)
class EntitlementChange:
    changed_at: datetime
    organization: str
    value_source: str
    entitlement_key: str
    before: str
    after: str


# ---------- reading


def read_states(warehouse: Warehouse, *, with_names: bool = True) -> list[UnitState]:
    """Every vendor × account × unit at its latest observation, worst status first."""
    name, join = "m.account_id", ""
    if with_names:
        name = "coalesce(a.account_name, m.account_id)"
        join = f"left join {ACCOUNTS} as a on a.vendor = m.vendor and a.account_id = m.account_id"
    rows = warehouse.query(
        f"""
        select m.vendor, m.account_id, {name}, m.unit,
               m.period_start, m.period_end, m.used, m.projected, m.included, m.share_used,
               m.status, m.forecast_exhausted_date, m.burn_rate_per_day, m.is_unlimited, m.observed_at
        from {MART} as m
        {join}
        where m.is_latest
        """
    )
    states = [UnitState(*row) for row in rows]
    return sorted(states, key=lambda s: (STATUS_ORDER.get(s.status, 9), -(s.share_used or 0), s.vendor, s.account_id,
                                         s.unit))


def read_series(warehouse: Warehouse, state: UnitState) -> list[tuple[datetime, int]]:
    """(observed_at, used) of each day of the state's current billing period, oldest first."""
    period_clause = "period_start is null" if state.period_start is None else "period_start = %s"
    params: list[Any] = [state.vendor, state.account_id, state.unit]
    if state.period_start is not None:
        params.append(state.period_start)
    rows = warehouse.query(
        f"select observed_at, used from {MART} where vendor = %s and account_id = %s and unit = %s "
        f"and {period_clause} and used is not null order by observed_at",
        params,
    )
    return [(_utc(at), int(used)) for at, used in rows]


def read_entitlement_changes(warehouse: Warehouse, *, since: datetime) -> list[EntitlementChange]:
    """Entitlement values that changed, appeared or went away since `since`, newest first."""
    rows = warehouse.query(
        f"""
        select organization_external_id, organization_name, value_source, entitlement_key,
               valid_from, valid_to, ended_by, value_type, enabled, limit_value, is_unlimited
        from {ENTITLEMENTS}
        order by organization_external_id, value_source, entitlement_key, valid_from
        """
    )
    first_seen: dict[tuple[str, str], datetime] = {}
    for org_id, _name, source, _key, valid_from, *_rest in rows:
        first_seen[(org_id, source)] = min(first_seen.get((org_id, source), _utc(valid_from)), _utc(valid_from))
    changes: list[EntitlementChange] = []
    previous: dict[tuple[str, str, str], str] = {}  # value of the key's previous interval
    for org_id, org_name, source, key, valid_from, valid_to, ended_by, value_type, enabled, limit, unlimited in rows:
        value, ident = _entitlement_value(value_type, enabled, limit, unlimited), (org_id, source, key)
        valid_from = _utc(valid_from)
        # a key first seen after its organization was: added by a plan change, not just newly observed
        before = previous.get(ident, "absent" if valid_from > first_seen[(org_id, source)] else None)
        if before is not None and before != value and valid_from >= since:
            changes.append(EntitlementChange(valid_from, org_name, source, key, before, value))
        if ended_by == "removed" and valid_to is not None and _utc(valid_to) >= since:
            changes.append(EntitlementChange(_utc(valid_to), org_name, source, key, value, "absent"))
        previous[ident] = "absent" if ended_by == "removed" else value
    return sorted(changes, key=lambda c: (c.changed_at, c.organization, c.entitlement_key), reverse=True)


def _entitlement_value(value_type: str, enabled: bool | None, limit: int | None, unlimited: bool) -> str:
    if value_type == "boolean":
        return "on" if enabled else "off"
    return "unlimited" if unlimited or limit is None else f"{int(limit):,}"


# ---------- rendering


def render_report(warehouse: Warehouse, *, now: datetime) -> str:
    """Return the whole report as one self-contained HTML document."""
    reader = read_only(warehouse)
    if not reader.table_exists(MART):
        return _page(_header([], now=now, source=reader.display_url()) + _note(
            "No usage yet: marts.mart_usage_vs_quota has not been built. Run `make demo` or `usage-pipeline run`."))
    states = read_states(reader, with_names=reader.table_exists(ACCOUNTS))
    charted = _chartable(states)[:MAX_CHARTS]
    series = {(s.vendor, s.account_id, s.unit): read_series(reader, s) for s in charted}
    since = now - ENTITLEMENT_WINDOW
    entitlements = read_entitlement_changes(reader, since=since) if reader.table_exists(ENTITLEMENTS) else None
    return _page("\n".join([
        _header(states, now=now, source=reader.display_url()),
        _at_risk_section(states),
        _usage_section(states),
        _burndown_section(charted, series),
        _entitlement_section(entitlements, since=since),
    ]))


def write_report(warehouse: Warehouse, out_path: str | Path, *, now: datetime | None = None) -> Path:
    """Render the report and write it to `out_path` (folders created); return the path."""
    path = Path(out_path)
    text = render_report(warehouse, now=now or timeutil.utcnow())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # a browser reloading the file never sees half of it
    return path


def read_only(warehouse: Warehouse) -> Warehouse:
    if warehouse.read_only:
        return warehouse
    return Warehouse(url=warehouse.url, read_only=True, busy_timeout_s=warehouse.busy_timeout_s)


def _chartable(states: list[UnitState]) -> list[UnitState]:
    return [s for s in states if s.included is not None and s.included > 0 and s.used is not None]


def _header(states: list[UnitState], *, now: datetime, source: str) -> str:
    counts = defaultdict(int)
    for state in states:
        counts[state.status] += 1
    latest = max((s.observed_at for s in states), default=None)
    cards = "".join(
        f'<div class="card {status}"><b>{counts[status]}</b><span>{STATUS_LABEL[status]}</span></div>'
        for status in ("over", "at_risk", "ok", "no_quota")
    )
    data_as_of = _fmt_time(latest) if latest else "no data"
    return (
        "<header><h1>SaaS usage and entitlements</h1>"
        f"<p>Generated {_fmt_time(now)} · data as of {data_as_of} · warehouse <code>{_e(source)}</code></p>"
        f'<div class="cards">{cards}</div></header>'
    )


def _at_risk_section(states: list[UnitState]) -> str:
    risky = [s for s in states if s.status in ("over", "at_risk")]
    if not risky:
        return '<section id="at-risk"><h2>Accounts at risk</h2><p class="note">No account is over its plan or at risk.</p></section>'
    rows = "".join(
        f"<tr><td>{_badge(s.status)}</td><td>{_e(VENDOR_LABEL.get(s.vendor, s.vendor))}</td><td>{_account(s)}</td>"
        f"<td>{_e(s.unit)}</td><td class=num>{_num(s.used)}</td><td class=num>{_num(s.included)}</td>"
        f"<td class=num>{_pct(s.share_used)}</td><td class=num>{_num(s.projected)}</td>"
        f"<td>{_fmt_date(s.forecast_exhausted_date)}</td><td>{_fmt_date(s.period_end)}</td></tr>"
        for s in risky
    )
    return (
        '<section id="at-risk"><h2>Accounts at risk</h2>'
        "<table><thead><tr><th>status</th><th>vendor</th><th>account</th><th>unit</th><th>used</th><th>included</th>"
        "<th>share</th><th>vendor projection</th><th>quota runs out</th><th>period ends</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _usage_section(states: list[UnitState]) -> str:
    by_vendor: dict[str, list[UnitState]] = defaultdict(list)
    for state in states:
        by_vendor[state.vendor].append(state)
    parts = ['<section id="usage"><h2>Usage against the plan</h2>']
    if not states:
        parts.append('<p class="note">No usage rows yet.</p>')
    for vendor in sorted(by_vendor):
        rows = "".join(
            f"<tr><td>{_account(s)}</td><td>{_e(s.unit)}</td><td class=num>{_num(s.used)}</td>"
            f"<td class=num>{_included(s)}</td><td>{_share_bar(s)}</td><td>{_badge(s.status)}</td>"
            f"<td>{_fmt_date(s.period_start)} – {_fmt_date(s.period_end)}</td><td>{_fmt_time(s.observed_at)}</td></tr>"
            for s in sorted(by_vendor[vendor], key=lambda s: (s.account_name, s.unit))
        )
        parts.append(
            f"<h3>{_e(VENDOR_LABEL.get(vendor, vendor))}</h3><table><thead><tr><th>account</th><th>unit</th>"
            "<th>used</th><th>included</th><th>share used</th><th>status</th><th>billing period</th><th>observed</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    parts.append("</section>")
    return "".join(parts)


def _burndown_section(states: list[UnitState], series: dict[tuple[str, str, str], list[tuple[datetime, int]]]) -> str:
    parts = [
        '<section id="burndown"><h2>Burn-down</h2><p class="note">Quota left in the current billing period '
        "(solid), the straight line to zero at period end (grey) and the forecast at the current burn rate "
        "(dashed) to the date the quota runs out.</p>"
    ]
    if not states:
        parts.append('<p class="note">No unit with a limited quota yet.</p>')
    parts.append('<div class="charts">')
    for state in states:
        points = series.get((state.vendor, state.account_id, state.unit), [])
        title = f"{VENDOR_LABEL.get(state.vendor, state.vendor)} · {state.account_name} · {state.unit}"
        parts.append(f'<figure>{burndown_svg(points, state)}<figcaption>{_e(title)} {_badge(state.status)}'
                     f"<br>runs out: {_fmt_date(state.forecast_exhausted_date) or 'not this period'}</figcaption></figure>")
    parts.append("</div></section>")
    return "".join(parts)


def _entitlement_section(changes: list[EntitlementChange] | None, *, since: datetime) -> str:
    head = f'<section id="entitlements"><h2>Entitlement changes since {_fmt_date(since)}</h2>'
    if changes is None:
        return head + ('<p class="note">Skipped: the warehouse has no marts.fct_subscription_entitlements '
                       "(HCP Terraform not configured, or its models not built yet).</p></section>")
    if not changes:
        return head + '<p class="note">No entitlement changed in the last 90 days.</p></section>'
    rows = "".join(
        f"<tr><td>{_fmt_time(c.changed_at)}</td><td>{_e(c.organization)}</td><td>{_e(c.entitlement_key)}</td>"
        f"<td>{_e(c.value_source)}</td><td>{_e(c.before)}</td><td>{_e(c.after)}</td></tr>"
        for c in changes
    )
    return head + (
        "<table><thead><tr><th>changed</th><th>organization</th><th>entitlement</th><th>from</th>"
        f"<th>before</th><th>after</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


# ---------- the burn-down chart (inline SVG)

_W, _H, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 420, 200, 56, 12, 12, 28


def burndown_svg(points: list[tuple[datetime, int]], state: UnitState) -> str:
    """Quota left over the billing period: actual, ideal and forecast lines, as inline SVG."""
    included = int(state.included or 0)
    if not points or included <= 0:
        return '<svg class="chart" viewBox="0 0 420 200" role="img"><text x="10" y="100">no data</text></svg>'
    start = _utc(state.period_start) if state.period_start else points[0][0]
    end = _utc(state.period_end) if state.period_end else points[-1][0] + timedelta(days=1)
    last_at, last_used = points[-1]
    forecast: list[tuple[datetime, float]] = []
    if state.burn_rate_per_day and state.burn_rate_per_day > 0 and last_used < included:
        days_left = (included - last_used) / state.burn_rate_per_day
        until = min(last_at + timedelta(days=days_left), end)
        left_then = included - last_used - state.burn_rate_per_day * (until - last_at).total_seconds() / 86400
        forecast = [(last_at, float(included - last_used)), (until, left_then)]
    remaining = [included - used for _, used in points]
    low = min(0, *remaining)
    span_s = max((end - start).total_seconds(), 1.0)

    def x(at: datetime) -> float:
        return _PAD_L + (_W - _PAD_L - _PAD_R) * min(max((at - start).total_seconds() / span_s, 0.0), 1.0)

    def y(value: float) -> float:
        return _PAD_T + (_H - _PAD_T - _PAD_B) * (included - value) / max(included - low, 1)

    actual = " ".join(f"{x(at):.1f},{y(included - used):.1f}" for at, used in points)
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="burn-down">',
        f'<line class="axis" x1="{_PAD_L}" y1="{y(0):.1f}" x2="{_W - _PAD_R}" y2="{y(0):.1f}"/>',
        f'<line class="axis" x1="{_PAD_L}" y1="{_PAD_T}" x2="{_PAD_L}" y2="{_H - _PAD_B}"/>',
        f'<line class="ideal" x1="{x(start):.1f}" y1="{y(included):.1f}" x2="{x(end):.1f}" y2="{y(0):.1f}"/>',
        f'<polyline class="actual" points="{actual}"/>',
        f'<circle class="actual" cx="{x(last_at):.1f}" cy="{y(included - last_used):.1f}" r="3"/>',
    ]
    if forecast:
        (x0, y0), (x1, y1) = [(x(at), y(value)) for at, value in forecast]
        parts.append(f'<line class="forecast" x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}"/>')
    parts += [
        f'<text x="{_PAD_L - 4}" y="{y(included) + 4:.1f}" text-anchor="end">{_short(included)}</text>',
        f'<text x="{_PAD_L - 4}" y="{y(0) + 4:.1f}" text-anchor="end">0</text>',
        f'<text x="{_PAD_L}" y="{_H - 8}">{_fmt_date(start)}</text>',
        f'<text x="{_W - _PAD_R}" y="{_H - 8}" text-anchor="end">{_fmt_date(end)}</text>',
        "</svg>",
    ]
    return "".join(parts)


# ---------- formatting

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header,section{max-width:1180px;margin:0 auto;padding:16px 24px}
header{background:#1d2433;color:#fff;max-width:none}header p{color:#c9cfdb;margin:4px 0 12px}
h1{margin:0;font-size:22px}h2{font-size:18px;border-bottom:1px solid #d8dce3;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
code{font-size:12px}.cards{display:flex;gap:12px}
.card{background:#fff;color:#1d2433;border-radius:6px;padding:8px 16px;min-width:90px;border-left:6px solid #8a94a6}
.card b{display:block;font-size:22px}.card.over{border-color:#c62828}.card.at_risk{border-color:#ef8f00}.card.ok{border-color:#2e7d32}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6e9ee}th{background:#eef0f4;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:9px;padding:0 8px;font-size:12px;color:#fff;background:#8a94a6}
.badge.over{background:#c62828}.badge.at_risk{background:#ef8f00}.badge.ok{background:#2e7d32}
.bar{display:inline-block;width:120px;height:10px;background:#e6e9ee;border-radius:5px;vertical-align:middle;margin-right:6px;overflow:hidden}
.bar i{display:block;height:100%;background:#2e7d32}.bar i.at_risk{background:#ef8f00}.bar i.over{background:#c62828}
.note{color:#5b6477}.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:16px}
figure{margin:0;background:#fff;padding:8px;border-radius:6px}figcaption{font-size:12px;color:#3b4456}
svg.chart{width:100%;height:auto}svg text{font-size:11px;fill:#5b6477}
.axis{stroke:#8a94a6;stroke-width:1}.ideal{stroke:#c3c8d2;stroke-width:1.5}
polyline.actual{fill:none;stroke:#1f5fbf;stroke-width:2}circle.actual{fill:#1f5fbf}
.forecast{stroke:#c62828;stroke-width:2;stroke-dasharray:6 4}
"""


def _page(body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>SaaS usage report</title><style>{_CSS}</style></head><body>{body}</body></html>\n"
    )


def _note(text: str) -> str:
    return f'<section><p class="note">{_e(text)}</p></section>'


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _badge(status: str) -> str:
    return f'<span class="badge {_e(status)}">{_e(STATUS_LABEL.get(status, status))}</span>'


def _account(state: UnitState) -> str:
    if state.account_name and state.account_name != state.account_id:
        return f"{_e(state.account_name)} <code>{_e(state.account_id)}</code>"
    return f"<code>{_e(state.account_id)}</code>"


def _included(state: UnitState) -> str:
    if state.is_unlimited:
        return "unlimited"
    return "no quota" if state.included is None else _num(state.included)


def _share_bar(state: UnitState) -> str:
    if state.share_used is None:
        return ""
    width = min(state.share_used, 1.0) * 100
    return f'<span class="bar"><i class="{_e(state.status)}" style="width:{width:.0f}%"></i></span>{_pct(state.share_used)}'


def _num(value: int | float | None) -> str:
    return "" if value is None else f"{int(value):,}"


def _short(value: int) -> str:
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return str(value)


def _pct(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.1f}%"


def _fmt_date(value: date | datetime | None) -> str:
    if value is None:
        return ""
    return (_utc(value) if isinstance(value, datetime) else value).strftime("%Y-%m-%d")


def _fmt_time(value: datetime | None) -> str:
    return "" if value is None else _utc(value).strftime("%Y-%m-%d %H:%M UTC")


def _utc(value: datetime | date) -> datetime:
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
