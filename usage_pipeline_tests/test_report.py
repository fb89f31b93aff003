"""The offline HTML report: one self-contained file (no URL, no script, no external reference)
that shows the warehouse's numbers, opened read-only (rungs 1 and 6, both engines).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from test_marts_demo import build_demo_warehouse

from usage_pipeline import report, timeutil
from usage_pipeline.warehouse import Warehouse

EXTERNAL = re.compile(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|\bsrc\s*=|<script|<link|<iframe|@import|url\(", re.I)


def test_report_is_self_contained_and_shows_the_warehouse_numbers(warehouse: Warehouse) -> None:
    now = timeutil.utcnow()
    build_demo_warehouse(warehouse, now=now)
    text = report.render_report(warehouse, now=now)

    assert EXTERNAL.findall(text) == []
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text
    # every latest number of the mart is in the page, formatted as shown
    latest = warehouse.query("select account_id, unit, used, included from marts.mart_usage_vs_quota where is_latest")
    assert len(latest) == 6
    for account, unit, used, included in latest:
        assert f"{used:,}" in text, (account, unit)
        if included is not None:
            assert f"{included:,}" in text
    assert "unlimited" in text and "no quota" in text
    # accounts at risk: the over one first, then the at-risk one with the date its quota runs out
    at_risk = text.split('id="at-risk"')[1].split("</section>")[0]
    assert at_risk.index("5678") < at_risk.index("Acme Monitoring")
    assert "2,200" in at_risk and "110.0%" in at_risk and "80.0%" in at_risk
    assert f"{timeutil.floor_day(now) + timedelta(days=5):%Y-%m-%d}" in at_risk
    # one burn-down per limited quota, each with the forecast line where usage grows
    burndown = text.split('id="burndown"')[1].split("</section>")[0]
    assert burndown.count("<svg") == 3 and burndown.count('class="forecast"') == 2
    # entitlement changes of the last 90 days only (the 150-day-old one is left out)
    entitlements = text.split('id="entitlements"')[1].split("</section>")[0]
    assert [row for row in re.findall(r"<td>([a-z-]+)</td><td>feature_set</td><td>([^<]*)</td><td>([^<]*)</td>", entitlements)] == [
        ("stacks", "absent", "on"), ("sso", "off", "on"), ("user-limit", "10", "25"),
    ]


def test_report_skips_entitlements_gracefully_when_the_table_is_absent(warehouse: Warehouse) -> None:
    now = timeutil.utcnow()
    build_demo_warehouse(warehouse, now=now)
    with warehouse.transaction() as tx:
        tx.execute("drop table marts.fct_subscription_entitlements")
    text = report.render_report(warehouse, now=now)
    assert "Skipped: the warehouse has no marts.fct_subscription_entitlements" in text
    assert "Accounts at risk" in text


def test_report_renders_a_note_on_an_empty_warehouse(duckdb_warehouse: Warehouse) -> None:
    text = report.render_report(duckdb_warehouse, now=datetime(2026, 11, 20, tzinfo=UTC))
    assert "has not been built" in text and EXTERNAL.findall(text) == []


def test_report_reads_duckdb_read_only_while_another_reader_holds_the_file(duckdb_warehouse: Warehouse, tmp_path: Path) -> None:
    now = timeutil.utcnow()
    build_demo_warehouse(duckdb_warehouse, now=now)
    # DuckDB refuses a read-write connection to a file this process already has open read-only:
    # the report only works here because it opens the file read-only too
    holder = duckdb.connect(str(duckdb_warehouse.duckdb_path), read_only=True)
    try:
        path = report.write_report(duckdb_warehouse, tmp_path / "out" / "report.html", now=now)
    finally:
        holder.close()
    assert path.read_text(encoding="utf-8").count("<svg") == 3
    assert not list(path.parent.glob(".*.tmp"))


def test_report_refuses_a_missing_duckdb_file_plainly(tmp_path: Path) -> None:
    from usage_pipeline.errors import WarehouseError

    with pytest.raises(WarehouseError, match="does not exist yet"):
        report.render_report(Warehouse(url=f"duckdb:///{tmp_path / 'none.duckdb'}"), now=timeutil.utcnow())


def test_report_asset_writes_the_file_named_in_its_run_config(duckdb_warehouse: Warehouse, tmp_path: Path) -> None:
    import dagster as dg

    from usage_pipeline import marts

    build_demo_warehouse(duckdb_warehouse, now=timeutil.utcnow())
    out = tmp_path / "reports" / "usage.html"
    result = dg.materialize(
        [marts.build_report_asset(with_entitlements=True)],
        resources={"warehouse": duckdb_warehouse},
        run_config={"ops": {"reports__usage_report": {"config": {"out_path": str(out)}}}},
        selection=[marts.REPORT_KEY],
    )
    assert result.success
    metadata = result.asset_materializations_for_node("reports__usage_report")[0].metadata
    assert metadata["accounts_at_risk_or_over"].value == 2
    assert metadata["path"].value == str(out.resolve())
    assert "Accounts at risk" in out.read_text(encoding="utf-8")


def test_report_asset_defaults_to_a_file_beside_the_duckdb_warehouse(duckdb_warehouse: Warehouse) -> None:
    import dagster as dg

    from usage_pipeline import marts

    build_demo_warehouse(duckdb_warehouse, now=timeutil.utcnow())
    result = dg.materialize([marts.build_report_asset(with_entitlements=True)], resources={"warehouse": duckdb_warehouse})
    assert result.success
    assert (duckdb_warehouse.duckdb_path.parent / "report.html").is_file()
    assert marts.report_path(marts.ReportConfig(), Warehouse(url="postgresql+psycopg://u@h/db")) == Path("data/report.html")
