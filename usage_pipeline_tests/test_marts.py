"""marts.mart_usage_vs_quota, dim_accounts, dim_units and focus_saas_usage on crafted inputs,
row for row, on DuckDB and PostgreSQL (rung 6), and the Dagster wiring of usage_pipeline.marts
(rung 4).

Each account in the crafted facts is one case: over, at risk by share, by the vendor's
projection and by forecast, ok, unlimited, without quota, falling usage, period rollover, and
a forecast date that must come out exact.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from usage_pipeline import marts, models, settings
from usage_pipeline.warehouse import Warehouse

MODELS_DIR = Path(os.environ.get("USAGE_MODELS_DIR") or models.DEFAULT_MODELS_DIR)
TS = pa.timestamp("us", tz="UTC")
UNITS_USED = pa.schema([
    ("snapshot_id", pa.string()), ("vendor", pa.string()), ("account_id", pa.string()), ("unit", pa.string()),
    ("period_start", TS), ("period_end", TS), ("used", pa.int64()), ("projected", pa.int64()),
    ("next_period_projected", pa.int64()), ("observed_at", TS), ("loaded_at", TS), ("partition_key", pa.string()),
])
QUOTA = pa.schema([
    ("snapshot_id", pa.string()), ("vendor", pa.string()), ("account_id", pa.string()), ("unit", pa.string()),
    ("period_start", TS), ("period_end", TS), ("included", pa.int64()),
    ("observed_at", TS), ("loaded_at", TS), ("partition_key", pa.string()),
])
NOV = ("2026-11-01 00:00", "2026-12-01 00:00")
OCT = ("2026-10-01 00:00", "2026-11-01 00:00")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def used_row(account: str, observed: str, used: int, *, period: tuple[str, str] = NOV, unit: str = "cloud_units",
             projected: int | None = None, vendor: str = "thousandeyes", snapshot: str | None = None) -> dict:
    return {
        "snapshot_id": snapshot or f"s-{observed}", "vendor": vendor, "account_id": account, "unit": unit,
        "period_start": at(period[0]), "period_end": at(period[1]), "used": used, "projected": projected,
        "next_period_projected": None, "observed_at": at(observed), "loaded_at": at(observed), "partition_key": observed,
    }


def quota_row(account: str, observed: str, included: int | None, *, period: tuple[str, str] = NOV,
              unit: str = "cloud_units", vendor: str = "thousandeyes") -> dict:
    return {
        "snapshot_id": f"s-{observed}", "vendor": vendor, "account_id": account, "unit": unit,
        "period_start": at(period[0]), "period_end": at(period[1]), "included": included,
        "observed_at": at(observed), "loaded_at": at(observed), "partition_key": observed,
    }


UNITS = [
    # over: 1,200 of 1,000; the quota ran out on the first (only) day seen
    used_row("over", "2026-11-20 10:00", 1200),
    # at risk by share: 85 % and flat, so no forecast date
    used_row("share", "2026-11-19 10:00", 850), used_row("share", "2026-11-20 10:00", 850),
    # at risk by the vendor's projection only (50 % used, 110 % projected), usage flat
    used_row("projected", "2026-11-19 10:00", 500, projected=1100), used_row("projected", "2026-11-20 10:00", 500, projected=1100),
    # forecast exact: 100 -> 300 in 2 days = 100/day; 700 left -> 7 days -> 2026-11-19 00:00 exactly
    used_row("burn", "2026-11-10 00:00", 100), used_row("burn", "2026-11-12 00:00", 300),
    # ok: 1/day leaves 890 for 10 days, far past the period end: no forecast date
    used_row("calm", "2026-11-10 00:00", 100), used_row("calm", "2026-11-20 00:00", 110),
    # falling usage (a gauge): no exhaustion date
    used_row("falling", "2026-11-10 00:00", 60), used_row("falling", "2026-11-11 00:00", 50),
    # unlimited plan: ok whatever the usage
    used_row("unlimited", "2026-11-20 10:00", 5000),
    # an included quantity of 0 (a unit not bought): unused is fine, any use is over
    used_row("zero", "2026-11-20 10:00", 0, unit="endpoint_agents_embedded"),
    used_row("zero", "2026-11-20 10:00", 3, unit="endpoint_agents_essentials"),
    # usage without any quota row
    used_row("noquota", "2026-11-20 10:00", 7, vendor="workato", unit="tasks"),
    # rollover: two snapshots on 10-31 (the later wins), the old period's last value on 11-01
    # morning, then the new period the same afternoon
    used_row("roll", "2026-10-31 08:00", 650, period=OCT), used_row("roll", "2026-10-31 10:00", 700, period=OCT),
    used_row("roll", "2026-11-01 06:00", 720, period=OCT), used_row("roll", "2026-11-01 12:00", 10),
]
QUOTAS = [
    quota_row("over", "2026-11-20 10:00", 1000),
    quota_row("share", "2026-11-19 10:00", 1000),
    quota_row("projected", "2026-11-19 10:00", 1000),
    quota_row("burn", "2026-11-10 00:00", 1000),  # carried forward to 11-12: no pull that day
    quota_row("calm", "2026-11-10 00:00", 1000),
    quota_row("falling", "2026-11-10 00:00", 100),
    quota_row("unlimited", "2026-11-20 10:00", None),
    quota_row("zero", "2026-11-20 10:00", 0, unit="endpoint_agents_embedded"),
    quota_row("zero", "2026-11-20 10:00", 0, unit="endpoint_agents_essentials"),
    quota_row("roll", "2026-10-31 10:00", 1000, period=OCT),
    quota_row("roll", "2026-11-01 12:00", 2000),  # the new period's plan doubles
]
COLUMNS = ("account_id", "usage_date", "period_start", "used", "included", "share_used", "burn_rate_per_day",
           "status", "forecast_exhausted_date", "has_quota", "is_unlimited", "is_period_final", "is_latest", "snapshot_id")


def mart_rows(warehouse: Warehouse, *, vars: dict | None = None) -> dict[tuple[str, date, datetime], tuple]:
    table = models.unit_test(
        warehouse, "mart_usage_vs_quota", models_dir=MODELS_DIR, vars=vars,
        given={"fct_units_used": pa.Table.from_pylist(UNITS, UNITS_USED), "fct_quota": pa.Table.from_pylist(QUOTAS, QUOTA)},
    )
    rows = {}
    for row in table.to_pylist():
        values = tuple(row[c] for c in COLUMNS)
        rows[(row["account_id"], row["unit"], row["usage_date"], row["period_start"])] = tuple(
            round(v, 6) if isinstance(v, float) else v for v in values
        )
    return rows


def expected(account, day, period, used, included, share, rate, status, runs_out, has_quota, unlimited, final, latest, snapshot,
             unit="cloud_units"):
    key = (account, unit, date.fromisoformat(day), at(period[0]))
    return key, (account, date.fromisoformat(day), at(period[0]), used, included, share, rate, status,
                 date.fromisoformat(runs_out) if runs_out else None, has_quota, unlimited, final, latest, snapshot)


EXPECTED = dict([
    expected("over", "2026-11-20", NOV, 1200, 1000, 1.2, None, "over", "2026-11-20", True, False, False, True, "s-2026-11-20 10:00"),
    expected("share", "2026-11-19", NOV, 850, 1000, 0.85, None, "at_risk", None, True, False, False, False, "s-2026-11-19 10:00"),
    expected("share", "2026-11-20", NOV, 850, 1000, 0.85, None, "at_risk", None, True, False, False, True, "s-2026-11-20 10:00"),
    expected("projected", "2026-11-19", NOV, 500, 1000, 0.5, None, "at_risk", None, True, False, False, False, "s-2026-11-19 10:00"),
    expected("projected", "2026-11-20", NOV, 500, 1000, 0.5, None, "at_risk", None, True, False, False, True, "s-2026-11-20 10:00"),
    expected("burn", "2026-11-10", NOV, 100, 1000, 0.1, None, "ok", None, True, False, False, False, "s-2026-11-10 00:00"),
    expected("burn", "2026-11-12", NOV, 300, 1000, 0.3, 100.0, "at_risk", "2026-11-19", True, False, False, True, "s-2026-11-12 00:00"),
    expected("calm", "2026-11-10", NOV, 100, 1000, 0.1, None, "ok", None, True, False, False, False, "s-2026-11-10 00:00"),
    expected("calm", "2026-11-20", NOV, 110, 1000, 0.11, 1.0, "ok", None, True, False, False, True, "s-2026-11-20 00:00"),
    expected("falling", "2026-11-10", NOV, 60, 100, 0.6, None, "ok", None, True, False, False, False, "s-2026-11-10 00:00"),
    expected("falling", "2026-11-11", NOV, 50, 100, 0.5, None, "ok", None, True, False, False, True, "s-2026-11-11 00:00"),
    expected("unlimited", "2026-11-20", NOV, 5000, None, None, None, "ok", None, True, True, False, True, "s-2026-11-20 10:00"),
    expected("zero", "2026-11-20", NOV, 0, 0, None, None, "ok", None, True, False, False, True, "s-2026-11-20 10:00",
             unit="endpoint_agents_embedded"),
    expected("zero", "2026-11-20", NOV, 3, 0, None, None, "over", None, True, False, False, True, "s-2026-11-20 10:00",
             unit="endpoint_agents_essentials"),
    expected("noquota", "2026-11-20", NOV, 7, None, None, None, "no_quota", None, False, False, False, True, "s-2026-11-20 10:00",
             unit="tasks"),
    # 10-31: the day's last snapshot (10:00, 700), not the 08:00 one; 50/2h = 600/day burns the
    # remaining 300 in 12 h, on 10-31 itself
    expected("roll", "2026-10-31", OCT, 700, 1000, 0.7, 600.0, "at_risk", "2026-10-31", True, False, False, False, "s-2026-10-31 10:00"),
    # 11-01 has two rows: October's final value (70/22h burn) and November's first
    expected("roll", "2026-11-01", OCT, 720, 1000, 0.72, 76.363636, "ok", None, True, False, True, False, "s-2026-11-01 06:00"),
    expected("roll", "2026-11-01", NOV, 10, 2000, 0.005, None, "ok", None, True, False, False, True, "s-2026-11-01 12:00"),
])


def test_mart_usage_vs_quota_gives_exact_rows_for_every_case(warehouse: Warehouse) -> None:
    rows = mart_rows(warehouse)
    assert set(rows) == set(EXPECTED)
    for key, row in EXPECTED.items():
        assert rows[key] == row, key


def test_mart_usage_vs_quota_forecast_lands_exactly_on_midnight(warehouse: Warehouse) -> None:
    # 700 left at 100/day from 11-12 00:00 is 11-19 00:00 sharp: a float error of one
    # microsecond below midnight would give 11-18
    rows = mart_rows(warehouse)
    assert rows[("burn", "cloud_units", date(2026, 11, 12), at(NOV[0]))][COLUMNS.index("forecast_exhausted_date")] == date(2026, 11, 19)


def test_mart_usage_vs_quota_at_risk_share_is_a_var(warehouse: Warehouse) -> None:
    # 85 % is at risk at the default 0.8 and ok at 0.9
    rows = mart_rows(warehouse, vars={"at_risk_share": 0.9})
    assert rows[("share", "cloud_units", date(2026, 11, 20), at(NOV[0]))][COLUMNS.index("status")] == "ok"
    assert rows[("over", "cloud_units", date(2026, 11, 20), at(NOV[0]))][COLUMNS.index("status")] == "over"


def test_dim_units_lists_every_unit_of_the_design_once(warehouse: Warehouse) -> None:
    table = models.unit_test(warehouse, "dim_units", given={}, models_dir=MODELS_DIR)
    units = table.column("unit").to_pylist()
    assert sorted(units) == sorted([
        "cloud_units", "enterprise_units", "endpoint_agents", "endpoint_agents_essentials", "endpoint_agents_embedded",
        "enterprise_agents", "managed_resources", "runs", "agents", "users", "tasks", "jobs",
    ])
    assert all(table.column("description").to_pylist()) and set(table.column("kind").to_pylist()) == {"consumption", "capacity"}


def test_dim_accounts_names_accounts_from_vendor_facts(warehouse: Warehouse) -> None:
    facts = vendor_name_facts()
    table = models.unit_test(
        warehouse, "dim_accounts", models_dir=MODELS_DIR,
        given={
            "fct_units_used": pa.Table.from_pylist(
                [used_row("1234", "2026-11-19 10:00", 5), used_row("1234", "2026-11-20 10:00", 6, unit="enterprise_units"),
                 used_row("acme", "2026-11-20 10:00", 42, vendor="hcp_terraform", unit="managed_resources"),
                 used_row("3127", "2026-11-20 10:00", 9, vendor="workato", unit="tasks"),
                 used_row("lic-1", "2026-11-20 10:00", 3, vendor="terraform_enterprise", unit="managed_resources")],
                UNITS_USED),
            "fct_quota": pa.Table.from_pylist([quota_row("1234", "2026-11-18 10:00", 100)], QUOTA),
            **facts,
        },
    )
    rows = {(r["vendor"], r["account_id"]): r for r in table.to_pylist()}
    assert set(rows) == {("thousandeyes", "1234"), ("hcp_terraform", "acme"), ("workato", "3127"), ("terraform_enterprise", "lic-1")}
    te = rows[("thousandeyes", "1234")]
    assert (te["account_name"], te["external_id"], te["unit_count"]) == ("Acme Monitoring", "org-te-1", 2)
    assert (te["first_seen_at"], te["last_seen_at"]) == (at("2026-11-18 10:00"), at("2026-11-20 10:00"))
    # renamed HCP organization: the current name, the stable external id
    assert (rows[("hcp_terraform", "acme")]["account_name"], rows[("hcp_terraform", "acme")]["external_id"]) == ("acme-renamed", "org-Bzyc2")
    assert (rows[("workato", "3127")]["account_name"], rows[("workato", "3127")]["external_id"]) == ("Acme", "acme-prod")
    # TFE names nothing: the license id stands in
    assert (rows[("terraform_enterprise", "lic-1")]["account_name"], rows[("terraform_enterprise", "lic-1")]["external_id"]) == ("lic-1", None)


def vendor_name_facts() -> dict[str, pa.Table]:
    """The vendor facts dim_accounts reads names from, with only the columns it reads."""
    return {
        "fct_test_usage": pa.Table.from_pylist([
            {"account_id": "1234", "aid": "1234", "account_group_name": "Old name", "org_id": "org-te-1", "observed_at": at("2026-11-19 10:00")},
            {"account_id": "1234", "aid": "1234", "account_group_name": "Acme Monitoring", "org_id": "org-te-1", "observed_at": at("2026-11-20 10:00")},
            # another account group seen from the same context names nothing here
            {"account_id": "1234", "aid": "999", "account_group_name": "Other group", "org_id": "org-te-1", "observed_at": at("2026-11-21 10:00")},
        ], pa.schema([("account_id", pa.string()), ("aid", pa.string()), ("account_group_name", pa.string()),
                      ("org_id", pa.string()), ("observed_at", TS)])),
        "fct_hcp_subscriptions": pa.Table.from_pylist([
            {"account_id": "acme", "organization_name": "acme-renamed", "organization_external_id": "org-Bzyc2", "observed_at": at("2026-11-20 01:00")},
        ], pa.schema([("account_id", pa.string()), ("organization_name", pa.string()),
                      ("organization_external_id", pa.string()), ("observed_at", TS)])),
        "fct_workato_usage": pa.Table.from_pylist([
            {"grouping": "workspace", "account_id": "3127", "workspace_name": "Acme", "external_id": "acme-prod", "observed_at": at("2026-11-20 00:00")},
            {"grouping": "recipe", "account_id": "3127", "workspace_name": "Recipe row", "external_id": "x", "observed_at": at("2026-11-21 00:00")},
        ], pa.schema([("grouping", pa.string()), ("account_id", pa.string()), ("workspace_name", pa.string()),
                      ("external_id", pa.string()), ("observed_at", TS)])),
    }


def test_focus_saas_usage_gives_one_charge_per_billing_period(warehouse: Warehouse) -> None:
    mart = models.unit_test(
        warehouse, "mart_usage_vs_quota", models_dir=MODELS_DIR,
        given={"fct_units_used": pa.Table.from_pylist(UNITS, UNITS_USED), "fct_quota": pa.Table.from_pylist(QUOTAS, QUOTA)},
    )
    units = models.unit_test(warehouse, "dim_units", given={}, models_dir=MODELS_DIR)
    # PostgreSQL rows come back untyped where a column is all null: give those a type again
    mart = pa.table({name: mart.column(name).cast(pa.float64() if name.startswith("share") else pa.int64())
                     if pa.types.is_null(mart.column(name).type) else mart.column(name) for name in mart.column_names})
    accounts = pa.Table.from_pylist(
        [{"vendor": "thousandeyes", "account_id": "roll", "account_name": "Rolling Inc"}],
        pa.schema([("vendor", pa.string()), ("account_id", pa.string()), ("account_name", pa.string())]),
    )
    table = models.unit_test(warehouse, "focus_saas_usage", models_dir=MODELS_DIR,
                             given={"mart_usage_vs_quota": mart, "dim_units": units, "dim_accounts": accounts})
    roll = sorted((r for r in table.to_pylist() if r["billing_account_id"] == "roll"), key=lambda r: r["charge_period_start"])
    assert [(r["charge_period_start"], r["charge_period_end"], r["consumed_quantity"], r["x_is_charge_period_final"]) for r in roll] == [
        # October is final: the whole billing period, closed at its last value
        (at(OCT[0]), at(OCT[1]), 720.0, True),
        # November to date: up to the latest observation
        (at(NOV[0]), at("2026-11-01 12:00"), 10.0, False),
    ]
    first = roll[0]
    assert (first["provider_name"], first["service_name"], first["billing_account_name"], first["consumed_unit"], first["sku_id"],
            first["charge_category"], first["charge_frequency"]) == (
        "Cisco", "ThousandEyes", "Rolling Inc", "Cloud Units", "thousandeyes:cloud_units", "Usage", "Usage-Based")
    assert len(table) == len({(r["x_vendor"], r["billing_account_id"], r["x_unit"], r["billing_period_start"]) for r in table.to_pylist()})


# ---------- Dagster wiring (rung 4)


def fake_settings(tmp_path: Path, **env: str) -> settings.Settings:
    return settings.load({
        "USAGE_WAREHOUSE_URL": f"duckdb:///{tmp_path / 'w.duckdb'}",
        "USAGE_MODELS_DIR": str(MODELS_DIR),
        **env,
    })


def test_marts_definitions_wire_job_schedule_checks_sensor_and_report(tmp_path: Path) -> None:
    config = fake_settings(tmp_path, USAGE_ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook")
    defs = dg.Definitions.merge(
        models.build_definitions(config.models_dir),
        marts.definitions(config),
        dg.Definitions(resources={"warehouse": Warehouse(url=config.warehouse_url)}),
    )
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    project = models.load_project(config.models_dir)
    job = defs.resolve_job_def("marts_job")
    executable = set(job.asset_layer.selected_asset_keys)
    model_keys = {dg.AssetKey(list(model.asset_key)) for model in project.models.values()}
    assert model_keys | {marts.REPORT_KEY} == executable
    schedule = defs.resolve_schedule_def("marts_schedule")
    assert (schedule.cron_schedule, schedule.job_name, schedule.execution_timezone) == ("15 * * * *", "marts_job", "UTC")
    checks = {key.name for key in graph.asset_check_keys if key.asset_key == dg.AssetKey(["marts", "mart_usage_vs_quota"])}
    assert {"no_account_over_quota", "no_account_at_risk"} <= checks
    report = graph.get(marts.REPORT_KEY)
    assert dg.AssetKey(["marts", "mart_usage_vs_quota"]) in report.parent_keys
    sensor = defs.resolve_sensor_def("usage_status_webhook_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_marts_definitions_keep_the_sensor_stopped_without_a_webhook(tmp_path: Path) -> None:
    (sensor,) = marts.definitions(fake_settings(tmp_path)).sensors
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED


@pytest.mark.parametrize("name", ["mart_usage_vs_quota", "dim_accounts", "dim_units", "focus_saas_usage"])
def test_marts_models_are_documented_with_their_grain(name: str) -> None:
    model = models.load_project(MODELS_DIR).model(name)
    assert model.description.rstrip(".").split(". ")[-1].startswith("One row per"), model.description
    assert model.output_columns is not None
    documented = {column.name for column in model.columns if column.description}
    assert documented == set(model.output_columns)
    assert model.tests


# Regression: an open-ended period (an HCP subscription with no end-at) marked every account
# with any growth at_risk, whatever how far away the forecast date was.
@pytest.mark.parametrize("growth_per_day, status", [(10, "ok"), (100, "at_risk")])
def test_mart_usage_vs_quota_open_ended_period_is_at_risk_only_within_the_horizon(warehouse: Warehouse,
                                                                                growth_per_day, status) -> None:
    def row(observed: str, used: int) -> dict:
        return {**used_row("open", observed, used, vendor="hcp_terraform", unit="managed_resources"), "period_end": None}
    units = [row("2026-11-10 00:00", 1000), row("2026-11-20 00:00", 1000 + 10 * growth_per_day)]
    quota = [{**quota_row("open", "2026-11-20 00:00", 5000, vendor="hcp_terraform", unit="managed_resources"),
              "period_end": None}]
    table = models.unit_test(warehouse, "mart_usage_vs_quota", models_dir=MODELS_DIR, given={
        "fct_units_used": pa.Table.from_pylist(units, UNITS_USED), "fct_quota": pa.Table.from_pylist(quota, QUOTA)})
    latest = [r for r in table.to_pylist() if r["is_latest"]]
    assert len(latest) == 1 and latest[0]["forecast_exhausted_date"] is not None  # a date is always shown
    # 10/day leaves 3,900 for 390 days (past 30); 100/day leaves 3,000 for 30 days (within)
    assert latest[0]["status"] == status
