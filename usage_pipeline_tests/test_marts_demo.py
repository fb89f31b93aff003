"""A small populated warehouse for the marts, alerts, report, query and browser tests, and
the proof that it stands for the real thing (rung 6, both engines).

`build_demo_warehouse(warehouse, now=…)` writes the vendor and shared fact tables with the
columns the real models output (names read from the model tree, so a renamed or dropped
column fails here), fills them with a few weeks of usage anchored at `now`, then builds the
cross-vendor models on top with the real SQL. Other test files import it (pytest puts the
tests folder on sys.path). The lead can swap it for `make demo` data later.

The story it tells, at `now`: ThousandEyes 1234 (Acme Monitoring) is at risk on cloud units
(80 %, runs out in 5 days), ThousandEyes 5678 (Beta Labs) is over (2,200 of 2,000), HCP
Terraform acme is unlimited, Workato 3127 and TFE lic-1 have no quota.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from usage_pipeline import models, timeutil
from usage_pipeline.warehouse import Warehouse, sql_type

MODELS_DIR = Path(os.environ.get("USAGE_MODELS_DIR") or models.DEFAULT_MODELS_DIR)
OUR_MODELS = ["dim_units", "dim_accounts", "mart_usage_vs_quota", "focus_saas_usage"]
FACT_MODELS = ["fct_units_used", "fct_quota", "fct_test_usage", "fct_hcp_subscriptions", "fct_workato_usage",
               "fct_tfe_usage_metrics", "fct_subscription_entitlements"]
DAYS = 20
TS = pa.timestamp("us", tz="UTC")
_INTEGERS = {"used", "projected", "next_period_projected", "included", "cloud_units_used", "cloud_units_projected",
             "tasks", "successful_jobs", "failed_jobs", "jobs", "recipe_count", "active_recipe_count", "limit_value",
             "snapshot_count", "workspace_id", "recipe_id", "folder_id", "http_status"}
_BOOLEANS = {"enabled", "starts_after_gap", "product_usage_reporting_opt_in", "billable_rum_opt_in", "is_current",
             "is_unlimited", "is_reported", "is_known_metric", "has_subscription", "is_plan_change", "is_active"}
_TIMESTAMPS = {"period_start", "period_end", "interval_start", "interval_end", "window_start", "window_end",
               "valid_from", "valid_to", "start_at", "end_at"}


def column_type(name: str) -> pa.DataType:
    """The Arrow type a demo column gets (names the demo does not fill default to text)."""
    if name in _INTEGERS:
        return pa.int64()
    if name in _BOOLEANS:
        return pa.bool_()
    if name in _TIMESTAMPS or (name.endswith("_at") and name != "snapshot_at_raw"):
        return TS
    if name == "value":
        return pa.decimal128(38, 9)
    return pa.string()


def write_fact(warehouse: Warehouse, project: models.Project, name: str, rows: list[dict[str, Any]]) -> None:
    """Create `marts.<name>` with the real model's columns and load `rows` (missing keys = null)."""
    model = project.model(name)
    columns = model.output_columns or tuple(column.name for column in model.columns)
    unknown = {key for row in rows for key in row} - set(columns)
    assert not unknown, f"the demo fills {sorted(unknown)}, which {model.file} does not output"
    schema = pa.schema([(column, column_type(column)) for column in columns])
    table = pa.Table.from_pylist([{column: row.get(column) for column in columns} for row in rows], schema)
    definition = ", ".join(f'"{f.name}" {sql_type(f.type, warehouse.dialect)}' for f in schema)
    with warehouse.transaction() as tx:
        tx.execute("create schema if not exists marts")
        tx.execute(f"drop table if exists marts.{name}")
        tx.execute(f"create table marts.{name} ({definition})")
        tx.load_arrow(f"marts.{name}", table)


def shared_facts(now: datetime) -> tuple[list[dict], list[dict]]:
    """fct_units_used and fct_quota rows: one snapshot a day for DAYS days, the last one this hour."""
    last = timeutil.floor_hour(now)  # the latest snapshot is this hour's: data never from the future
    first = timeutil.floor_day(last - timedelta(days=DAYS - 1))
    period = (first, first + timedelta(days=30))
    used_rows, quota_rows = [], []
    plans = [
        # vendor, account, unit, included (None = unlimited, "none" = no quota row), used on day d
        ("thousandeyes", "1234", "cloud_units", 10_000, lambda d: 400 * (d + 1)),
        ("thousandeyes", "1234", "enterprise_units", 5_000, lambda d: 20 * (d + 1)),
        ("thousandeyes", "5678", "cloud_units", 2_000, lambda d: 110 * (d + 1)),
        ("hcp_terraform", "acme", "managed_resources", None, lambda d: 400 + d),
        ("workato", "3127", "tasks", "none", lambda d: 1_000 * (d + 1)),
        ("terraform_enterprise", "lic-1", "managed_resources", "none", lambda d: 500 + 5 * d),
    ]
    for day in range(DAYS):
        observed = last - timedelta(days=DAYS - 1 - day)
        for vendor, account, unit, included, used in plans:
            snapshot = f"{vendor}-{account}-{observed:%Y%m%d}"
            start, end = period if vendor != "terraform_enterprise" else (timeutil.floor_day(observed), timeutil.floor_day(observed) + timedelta(days=1))
            common = {"snapshot_id": snapshot, "vendor": vendor, "account_id": account, "unit": unit, "period_start": start,
                      "period_end": end, "observed_at": observed, "loaded_at": observed, "partition_key": f"{observed:%Y-%m-%d}"}
            used_rows.append({**common, "used": used(day)})
            if included != "none":
                quota_rows.append({**common, "included": included})
    return used_rows, quota_rows


def vendor_facts(now: datetime) -> dict[str, list[dict]]:
    """Rows for the vendor facts the queries, dim_accounts and the report read."""
    today, last = timeutil.floor_day(now), timeutil.floor_hour(now)
    first = today - timedelta(days=DAYS - 1)
    tests = [("101", "Web checkout", "HTTP Server", 5_000), ("102", "DNS acme.example", "DNS Server", 2_000),
             ("103", "VPN path", "Agent to Server", 1_000)]
    test_usage = [
        {"snapshot_id": f"te-{observed:%Y%m%d}", "account_id": "1234", "aid": "1234", "test_id": test_id, "org_id": "9001",
         "account_group_name": "Acme Monitoring", "test_name": name, "test_type": kind, "period_start": first,
         "period_end": first + timedelta(days=30), "cloud_units_used": units * days_in // DAYS,
         "cloud_units_projected": units * 30 // DAYS, "observed_at": observed, "loaded_at": observed,
         "partition_key": f"{observed:%Y-%m-%dT%H}"}
        for days_in, observed in ((DAYS - 1, last - timedelta(days=1)), (DAYS, last))
        for test_id, name, kind, units in tests
    ]
    hcp = [{"snapshot_id": "hcp-sub-1", "organization_external_id": "org-abc", "account_id": "acme", "organization_name": "acme",
            "observed_at": last, "http_status": 200, "has_subscription": True, "is_plan_change": False,
            "loaded_at": last, "partition_key": f"{today:%Y-%m-%d}"}]
    workato = []
    for day in range(40):
        start = today - timedelta(days=40 - day)  # 40 closed days, up to yesterday
        month = start.replace(day=1)
        workato.append({
            "grouping": "workspace", "workspace_id": 3127, "account_id": "3127", "external_id": "acme-prod",
            "workspace_name": "Acme", "interval_start": start, "interval_end": start + timedelta(days=1), "interval_unit": "day",
            "timezone": "UTC", "tasks": 1_000, "successful_jobs": 300, "failed_jobs": 4, "jobs": 304,
            "period_start": month, "period_end": (month + timedelta(days=32)).replace(day=1), "period_label": f"{month:%Y-%m}",
            "snapshot_id": f"wk-{start:%Y%m%d}", "observed_at": start + timedelta(days=1), "partition_key": f"{start:%Y-%m-%d}",
        })
    tfe = [
        {"tfe_snapshot_id": f"tfe-{day}", "metric_key": key, "account_id": "lic-1", "license_id": "lic-1",
         "installation": "tfe.example.com", "metric_name": key, "is_known_metric": True,
         "unit": "managed_resources" if key == "billable_rum_count" else None, "value": Decimal(value), "is_reported": True,
         "snapshot_at": first - timedelta(days=1) + timedelta(days=day, hours=hour), "product": "terraform-enterprise", "product_version": "v202507-1",
         "snapshot_id": f"tfe-bundle-{day}", "observed_at": first - timedelta(days=1) + timedelta(days=day, hours=10)}
        for day in range(DAYS)
        for hour, key, value in ((2, "billable_rum_count", 490 + 5 * day), (9, "billable_rum_count", 500 + 5 * day), (9, "user_count", 40))
    ]
    org_first_seen = today - timedelta(days=200)

    def interval(key: str, source: str, start: datetime, end: datetime | None, *, enabled=None, limit=None,
                 ended_by: str | None = None) -> dict:
        return {"organization_external_id": "org-abc", "organization_name": "acme", "value_source": source,
                "entitlement_key": key, "valid_from": start, "valid_to": end, "last_seen_at": end or today,
                "ended_by": ended_by if end else None, "is_current": end is None, "starts_after_gap": False,
                "value_type": "boolean" if enabled is not None else "limit", "enabled": enabled, "limit_value": limit,
                "is_unlimited": enabled is None and limit is None, "feature_set_id": "fs-standard",
                "feature_set_name": "Standard", "snapshot_id": f"hcp-{key}-{start:%Y%m%d}",
                "last_snapshot_id": f"hcp-{key}-last", "snapshot_count": 1}

    changed_sso, changed_users, old_change, added = (today - timedelta(days=10), today - timedelta(days=30),
                                                      today - timedelta(days=150), today - timedelta(days=5))
    entitlements = [
        interval("sso", "feature_set", org_first_seen, changed_sso, enabled=False, ended_by="changed"),
        interval("sso", "feature_set", changed_sso, None, enabled=True),
        interval("user-limit", "feature_set", org_first_seen, old_change, limit=5, ended_by="changed"),
        interval("user-limit", "feature_set", old_change, changed_users, limit=10, ended_by="changed"),
        interval("user-limit", "feature_set", changed_users, None, limit=25),
        interval("stacks", "feature_set", added, None, enabled=True),
        interval("teams", "feature_set", org_first_seen, None, enabled=True),
    ]
    return {"fct_test_usage": test_usage, "fct_hcp_subscriptions": hcp, "fct_workato_usage": workato,
            "fct_tfe_usage_metrics": tfe, "fct_subscription_entitlements": entitlements}


def build_demo_warehouse(warehouse: Warehouse, *, now: datetime, tests: bool = False) -> list[models.ModelResult]:
    """Write the demo facts and build the cross-vendor models on them; return the build results."""
    project = models.load_project(MODELS_DIR)
    used_rows, quota_rows = shared_facts(now)
    write_fact(warehouse, project, "fct_units_used", used_rows)
    write_fact(warehouse, project, "fct_quota", quota_rows)
    for name, rows in vendor_facts(now).items():
        write_fact(warehouse, project, name, rows)
    return models.run_models(warehouse, select=OUR_MODELS, models_dir=MODELS_DIR, tests=tests)


@pytest.fixture
def demo_warehouse(warehouse: Warehouse) -> Warehouse:
    build_demo_warehouse(warehouse, now=timeutil.utcnow())
    return warehouse


def test_demo_facts_cover_every_fact_model_the_marts_read() -> None:
    project = models.load_project(MODELS_DIR)
    read = {ref for name in OUR_MODELS for ref in project.model(name).refs} - set(OUR_MODELS)
    assert read <= set(FACT_MODELS), f"the demo does not write {sorted(read - set(FACT_MODELS))}"


def test_demo_marts_pass_every_yaml_test(warehouse: Warehouse) -> None:
    results = build_demo_warehouse(warehouse, now=timeutil.utcnow(), tests=True)
    assert [r.model for r in results] == [m for m in models.load_project(MODELS_DIR).order if m in OUR_MODELS]
    failing = [(r.model, t.name, t.failing_rows, t.error) for r in results for t in r.tests if not t.passed]
    assert failing == []
    assert all(r.row_count > 0 for r in results)


def test_demo_tells_its_story(warehouse: Warehouse) -> None:
    now = timeutil.utcnow()
    build_demo_warehouse(warehouse, now=now)
    rows = warehouse.query(
        "select vendor, account_id, unit, status, forecast_exhausted_date from marts.mart_usage_vs_quota "
        "where is_latest order by vendor, account_id, unit"
    )
    runs_out = timeutil.floor_day(now).date() + timedelta(days=5)
    assert rows == [
        ("hcp_terraform", "acme", "managed_resources", "ok", None),
        ("terraform_enterprise", "lic-1", "managed_resources", "no_quota", None),
        ("thousandeyes", "1234", "cloud_units", "at_risk", runs_out),
        ("thousandeyes", "1234", "enterprise_units", "ok", None),
        ("thousandeyes", "5678", "cloud_units", "over", timeutil.floor_day(now).date() - timedelta(days=1)),
        ("workato", "3127", "tasks", "no_quota", None),
    ]
