"""ThousandEyes reconciliation checks: the vendor's totals against its own breakdowns, over the marts.

The rules checked, for every snapshot of each organization's current billing period (so the
cost is bounded by one period, never by history):

    test_units_reconcile_with_org_total     Σ fct_test_usage.cloud_units_used = cloudUnitsUsed
    agent_units_reconcile_with_org_total    Σ fct_agent_usage.enterprise_units_used = enterpriseUnitsUsed
    projected_not_below_used                projected ≥ used, where both are present
    used_never_decreases_within_period      per unit, used never falls between two snapshots of a period
    quota_row_for_every_used_unit           every unit with usage > 0 has a quota row (enterprise_units, and
                                            enterprise_agents outside legacy billing, have none to have)

Tolerance of the two sums: one unit per listed test or agent. Each per-test and per-agent
figure is a whole number of units the vendor rounded on its side, so their sum may drift from
the organization's own total by less than one unit per entry; anything more means an entry is
missing (ours or the vendor's). A failing check names the organization and the numbers.
The SQL is plain SQL both engines run as written; values are bound parameters.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import dagster as dg

from usage_pipeline.warehouse import Warehouse

USAGE = dg.AssetKey(["intermediate", "int_thousandeyes__usage"])
QUOTA = dg.AssetKey(["intermediate", "int_thousandeyes__quota"])
UNITS_USED = dg.AssetKey(["intermediate", "int_thousandeyes__units_used"])
TEST_USAGE = dg.AssetKey(["marts", "fct_test_usage"])
AGENT_USAGE = dg.AssetKey(["marts", "fct_agent_usage"])
SHOWN = 5  # failures spelled out in a description; all of them are in the metadata

# the snapshots of each organization context's latest billing period
_CURRENT = """
current_period as (
    select account_id, max(period_start) as period_start
    from intermediate.int_thousandeyes__usage
    group by account_id
),
current_usage as (
    select usage.*
    from intermediate.int_thousandeyes__usage as usage
    inner join current_period
        on current_period.account_id = usage.account_id
        and current_period.period_start = usage.period_start
)"""

_SUM_SQL = """
with {current},
parts as (
    select snapshot_id, sum({part_column}) as part_sum, count(*) as part_count
    from {part_table}
    where snapshot_id in (select snapshot_id from current_usage)
    group by snapshot_id
)
select
    current_usage.account_id,
    current_usage.org_id,
    current_usage.snapshot_id,
    current_usage.observed_at,
    current_usage.{total_column} as org_total,
    cast(coalesce(parts.part_sum, 0) as bigint) as part_sum,
    cast(coalesce(parts.part_count, 0) as bigint) as part_count
from current_usage
left join parts on parts.snapshot_id = current_usage.snapshot_id
where current_usage.{flag_column}
    and current_usage.{total_column} is not null
    and abs(current_usage.{total_column} - coalesce(parts.part_sum, 0)) > coalesce(parts.part_count, 0)
order by current_usage.account_id, current_usage.observed_at, current_usage.snapshot_id
"""

_PROJECTED_SQL = f"""
with {_CURRENT}
select units.account_id, current_usage.org_id, units.snapshot_id, units.observed_at, units.unit,
       units.used, units.projected
from intermediate.int_thousandeyes__units_used as units
inner join current_usage on current_usage.snapshot_id = units.snapshot_id
where units.projected is not null and units.projected < units.used
order by units.account_id, units.observed_at, units.unit
"""

_MONOTONIC_SQL = f"""
with {_CURRENT},
series as (
    select
        units.account_id,
        current_usage.org_id,
        units.snapshot_id,
        units.observed_at,
        units.unit,
        units.used,
        lag(units.used) over (
            partition by units.account_id, units.unit, units.period_start
            order by units.observed_at, units.snapshot_id
        ) as previous_used,
        lag(units.observed_at) over (
            partition by units.account_id, units.unit, units.period_start
            order by units.observed_at, units.snapshot_id
        ) as previous_observed_at
    from intermediate.int_thousandeyes__units_used as units
    inner join current_usage on current_usage.snapshot_id = units.snapshot_id
)
select account_id, org_id, snapshot_id, observed_at, unit, used, previous_used, previous_observed_at
from series
where used < previous_used
order by account_id, observed_at, unit
"""

# No quota to expect (API_CONTRACTS.md §4.1): enterprise_units (metered billing publishes no included
# quantity) and enterprise_agents outside legacy billing (enterpriseAgentsIncluded = 0 there).
_QUOTA_SQL = f"""
with {_CURRENT}
select units.account_id, current_usage.org_id, units.snapshot_id, units.observed_at, units.unit, units.used
from intermediate.int_thousandeyes__units_used as units
inner join current_usage on current_usage.snapshot_id = units.snapshot_id
where units.used > 0
    and units.unit <> 'enterprise_units'
    and not (units.unit = 'enterprise_agents' and current_usage.enterprise_agents_included = 0)
    and not exists (
        select 1 from intermediate.int_thousandeyes__quota as quota
        where quota.snapshot_id = units.snapshot_id and quota.unit = units.unit
    )
order by units.account_id, units.observed_at, units.unit
"""


@dataclass(frozen=True)
class Outcome:
    """A check's verdict: the failing rows and the sentence that names them."""

    passed: bool
    description: str
    failures: tuple[dict[str, Any], ...]

    def result(self, severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            passed=self.passed, severity=severity, description=self.description,
            metadata={"failing_snapshots": len(self.failures),
                      "failures": dg.MetadataValue.json([_jsonable(row) for row in self.failures[:50]])},
        )


def _rows(warehouse: Warehouse, sql: str, columns: Sequence[str]) -> tuple[dict[str, Any], ...]:
    return tuple(dict(zip(columns, row)) for row in warehouse.query(sql))


def _verdict(rows: tuple[dict[str, Any], ...], ok: str, describe: Callable[[dict[str, Any]], str], what: str) -> Outcome:
    if not rows:
        return Outcome(True, ok, ())
    shown = "; ".join(describe(row) for row in rows[:SHOWN])
    more = f"; and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
    return Outcome(False, f"{len(rows)} {what}: {shown}{more}", rows)


def _org(row: dict[str, Any]) -> str:
    org = f" (org {row['org_id']})" if row.get("org_id") else ""
    return f"organization {row['account_id']}{org}"


def _at(row: dict[str, Any], key: str = "observed_at") -> str:
    value = row[key]
    return value.strftime("%Y-%m-%d %H:%M UTC") if isinstance(value, datetime) else str(value)


def _n(value: Any) -> str:
    return f"{int(value):,}"


def reconcile_sum(warehouse: Warehouse, *, part_table: str, part_column: str, total_column: str, flag_column: str,
                  part_name: str, total_name: str) -> Outcome:
    """Σ of a breakdown per snapshot against the organization's own total (± 1 unit per entry)."""
    sql = _SUM_SQL.format(current=_CURRENT, part_table=part_table, part_column=part_column,
                          total_column=total_column, flag_column=flag_column)
    rows = _rows(warehouse, sql, ["account_id", "org_id", "snapshot_id", "observed_at", "org_total", "part_sum", "part_count"])

    def describe(row: dict[str, Any]) -> str:
        diff = int(row["org_total"]) - int(row["part_sum"])
        return (f"{_org(row)} at {_at(row)}: Σ {part_name} {_n(row['part_sum'])} over {row['part_count']} entries vs "
                f"{total_name} {_n(row['org_total'])} (off by {diff:+,}; tolerance {row['part_count']}, "
                f"1 unit per entry; snapshot {row['snapshot_id']})")

    return _verdict(rows, f"Σ {part_name} equals {total_name} (± 1 unit per entry) in every snapshot of the current periods",
                    describe, f"snapshot(s) where Σ {part_name} ≠ {total_name}")


def reconcile_test_units(warehouse: Warehouse) -> Outcome:
    return reconcile_sum(warehouse, part_table="marts.fct_test_usage", part_column="cloud_units_used",
                         total_column="cloud_units_used", flag_column="has_test_breakdown",
                         part_name="per-test cloud units", total_name="cloudUnitsUsed")


def reconcile_agent_units(warehouse: Warehouse) -> Outcome:
    return reconcile_sum(warehouse, part_table="marts.fct_agent_usage", part_column="enterprise_units_used",
                         total_column="enterprise_units_used", flag_column="has_agent_unit_breakdown",
                         part_name="per-agent enterprise units", total_name="enterpriseUnitsUsed")


def projected_not_below_used(warehouse: Warehouse) -> Outcome:
    rows = _rows(warehouse, _PROJECTED_SQL, ["account_id", "org_id", "snapshot_id", "observed_at", "unit", "used", "projected"])
    return _verdict(
        rows, "projected ≥ used for every unit with a projection in the current periods",
        lambda r: f"{_org(r)} at {_at(r)}: {r['unit']} projected {_n(r['projected'])} < used {_n(r['used'])}",
        "unit observation(s) with projected below used")


def used_never_decreases(warehouse: Warehouse) -> Outcome:
    rows = _rows(warehouse, _MONOTONIC_SQL, ["account_id", "org_id", "snapshot_id", "observed_at", "unit", "used",
                                            "previous_used", "previous_observed_at"])
    return _verdict(
        rows, "used never decreases within the current billing periods (resets only at rollover)",
        lambda r: (f"{_org(r)}: {r['unit']} fell from {_n(r['previous_used'])} at {_at(r, 'previous_observed_at')} "
                   f"to {_n(r['used'])} at {_at(r)} within one billing period"),
        "decrease(s) of used within a billing period")


def quota_for_every_used_unit(warehouse: Warehouse) -> Outcome:
    rows = _rows(warehouse, _QUOTA_SQL, ["account_id", "org_id", "snapshot_id", "observed_at", "unit", "used"])
    return _verdict(
        rows, "every unit with usage has a quota row (enterprise_units and, outside legacy billing, "
              "enterprise_agents have none to have)",
        lambda r: f"{_org(r)} at {_at(r)}: {r['unit']} used {_n(r['used'])} but no quota row (snapshot {r['snapshot_id']})",
        "unit observation(s) with usage and no quota")


def build_checks() -> list[dg.AssetChecksDefinition]:
    """The five reconciliation checks, attached to the ThousandEyes models they read."""
    error, warn = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN

    @dg.asset_check(asset=TEST_USAGE, name="test_units_reconcile_with_org_total", additional_deps=[USAGE],
                    description="Σ per-test cloud units equals the organization's cloudUnitsUsed (± 1 unit per test), "
                                "every snapshot of the current billing period.")
    def test_units_reconcile_with_org_total(warehouse: Warehouse) -> dg.AssetCheckResult:
        return reconcile_test_units(warehouse).result(error)

    @dg.asset_check(asset=AGENT_USAGE, name="agent_units_reconcile_with_org_total", additional_deps=[USAGE],
                    description="Σ per-agent enterprise units equals the organization's enterpriseUnitsUsed "
                                "(± 1 unit per agent), every snapshot of the current billing period.")
    def agent_units_reconcile_with_org_total(warehouse: Warehouse) -> dg.AssetCheckResult:
        return reconcile_agent_units(warehouse).result(error)

    @dg.asset_check(asset=UNITS_USED, name="projected_not_below_used", additional_deps=[USAGE],
                    description="The vendor's projection for the period is at least what is already used.")
    def projected_not_below_used_check(warehouse: Warehouse) -> dg.AssetCheckResult:
        return projected_not_below_used(warehouse).result(warn)

    @dg.asset_check(asset=UNITS_USED, name="used_never_decreases_within_period", additional_deps=[USAGE],
                    description="Per organization and unit, used never falls between two snapshots of one billing "
                                "period; it resets only when a new period starts.")
    def used_never_decreases_within_period(warehouse: Warehouse) -> dg.AssetCheckResult:
        return used_never_decreases(warehouse).result(error)

    @dg.asset_check(asset=QUOTA, name="quota_row_for_every_used_unit", additional_deps=[UNITS_USED, USAGE],
                    description="Every unit with usage above 0 has a quota row in the same snapshot (enterprise_units "
                                "excepted, and enterprise_agents outside legacy billing: neither has an included "
                                "quantity).")
    def quota_row_for_every_used_unit(warehouse: Warehouse) -> dg.AssetCheckResult:
        return quota_for_every_used_unit(warehouse).result(error)

    return [test_units_reconcile_with_org_total, agent_units_reconcile_with_org_total, projected_not_below_used_check,
            used_never_decreases_within_period, quota_row_for_every_used_unit]


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime) else int(value) if isinstance(value, Decimal) else value
            for key, value in row.items()}
