"""Alerts on marts.mart_usage_vs_quota: the at-risk / over asset checks name accounts and
numbers, and the webhook sensor posts exactly one message per status change to a real HTTP
receiver on loopback, retrying only what was not delivered (rungs 1 and 5, both engines).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pyarrow as pa
import pytest
from test_marts_demo import MODELS_DIR, build_demo_warehouse, shared_facts

from usage_pipeline import alerts, models, timeutil
from usage_pipeline.warehouse import Warehouse


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every POST and answers `status`."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's spelling)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append({"status": receiver.status, "content_type": self.headers.get("Content-Type"),
                                       "json": json.loads(body)})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/usage"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def delivered(self) -> list[dict]:
        return [post["json"] for post in self.posts if post["status"] < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def tick(sensor: dg.SensorDefinition, cursor: str | None) -> tuple[str | None, str | None]:
    """One sensor evaluation, as the daemon runs it: (new cursor, skip message)."""
    result = sensor.evaluate_tick(dg.build_sensor_context(cursor=cursor))
    return result.cursor, result.skip_message


def add_usage(warehouse: Warehouse, *, account: str, unit: str, used: int, observed: datetime,
              period: tuple[datetime, datetime] | None = None, included: int | None = None) -> None:
    """A later snapshot for one account × unit (and its quota), then the mart rebuilt from the facts."""
    template_used, template_quota = shared_facts(timeutil.utcnow())
    base = next(row for row in template_used if row["account_id"] == account and row["unit"] == unit)
    start, end = period or (base["period_start"], base["period_end"])
    row = {**base, "snapshot_id": f"later-{observed:%Y%m%d%H%M}", "used": used, "observed_at": observed,
           "loaded_at": observed, "period_start": start, "period_end": end}
    with warehouse.transaction() as tx:
        columns = [name for name, _ in warehouse.columns("marts.fct_units_used")]
        tx.load_arrow("marts.fct_units_used", _table(warehouse, "marts.fct_units_used", [row], columns))
        if included is not None:
            quota = {key: row[key] for key in row if key not in ("used", "projected", "next_period_projected")} | {"included": included}
            quota_columns = [name for name, _ in warehouse.columns("marts.fct_quota")]
            tx.load_arrow("marts.fct_quota", _table(warehouse, "marts.fct_quota", [quota], quota_columns))
    models.run_models(warehouse, select=["mart_usage_vs_quota"], models_dir=MODELS_DIR, tests=False)


def _table(warehouse: Warehouse, table: str, rows: list[dict], columns: list[str]) -> pa.Table:
    return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]).select(columns)


# ---------- the pure decision


def change_of(status: str, key: str = "k") -> alerts.CurrentStatus:
    now = timeutil.utcnow()
    return alerts.CurrentStatus("thousandeyes", key, "cloud_units", status, 1, 2, 0.5, None, now.date(), now)


@pytest.mark.parametrize("announced, status, posts", [
    # first sighting, healthy: recorded silently as the baseline
    ({}, "ok", False),
    ({}, "no_quota", False),
    # first sighting, already in trouble: worth a message even without a previous status
    ({}, "at_risk", True),
    ({}, "over", True),
    # unchanged: never again
    ({"thousandeyes/k/cloud_units": "over"}, "over", False),
    # every real change, recoveries included
    ({"thousandeyes/k/cloud_units": "at_risk"}, "over", True),
    ({"thousandeyes/k/cloud_units": "over"}, "ok", True),
])
def test_alerts_status_changes_decide_what_to_post(announced: dict, status: str, posts: bool) -> None:
    assert bool(alerts.status_changes([change_of(status)], announced)) is posts


# ---------- asset checks


def test_alerts_checks_name_accounts_and_numbers(warehouse: Warehouse) -> None:
    build_demo_warehouse(warehouse, now=timeutil.utcnow())
    over = alerts.no_account_over_quota(warehouse=warehouse)
    risk = alerts.no_account_at_risk(warehouse=warehouse)
    assert (over.passed, over.severity, over.metadata["count"].value) == (False, dg.AssetCheckSeverity.ERROR, 1)
    assert "thousandeyes/5678/cloud_units: 2,200 of 2,000 (110.0%)" in over.description
    assert (risk.passed, risk.severity, risk.metadata["count"].value) == (False, dg.AssetCheckSeverity.WARN, 1)
    assert "thousandeyes/1234/cloud_units: 8,000 of 10,000 (80.0%)" in risk.description
    assert "quota runs out" in risk.description


def test_alerts_checks_pass_when_every_account_is_within_its_plan(warehouse: Warehouse) -> None:
    build_demo_warehouse(warehouse, now=timeutil.utcnow())
    with warehouse.transaction() as tx:  # the two troubled accounts leave the picture
        tx.execute("delete from marts.fct_units_used where account_id in ('1234', '5678') and unit = 'cloud_units'")
    models.run_models(warehouse, select=["mart_usage_vs_quota"], models_dir=MODELS_DIR, tests=False)
    assert alerts.no_account_over_quota(warehouse=warehouse).passed
    assert alerts.no_account_at_risk(warehouse=warehouse).passed


# ---------- the sensor against a loopback receiver


def test_alerts_sensor_posts_once_per_status_change(warehouse: Warehouse, receiver: Receiver) -> None:
    now = timeutil.utcnow()
    build_demo_warehouse(warehouse, now=now)
    sensor = alerts.build_status_sensor(warehouse_url=warehouse.url, webhook_url=receiver.url)

    # first tick: the two accounts already in trouble, nothing about the healthy ones
    cursor, message = tick(sensor, None)
    assert sorted((p["account_id"], p["unit"], p["previous_status"], p["status"]) for p in receiver.delivered()) == [
        ("1234", "cloud_units", None, "at_risk"), ("5678", "cloud_units", None, "over"),
    ]
    assert message.startswith("2 status change(s) posted to 127.0.0.1")
    assert len(json.loads(cursor)) == 6

    # nothing changed: the next ticks post nothing
    cursor, _ = tick(sensor, cursor)
    cursor, _ = tick(sensor, cursor)
    assert len(receiver.posts) == 2

    # enterprise units go over: exactly one message, with the numbers
    add_usage(warehouse, account="1234", unit="enterprise_units", used=6_000, observed=now + timedelta(hours=1))
    cursor, _ = tick(sensor, cursor)
    cursor, _ = tick(sensor, cursor)
    assert len(receiver.posts) == 3
    last = receiver.posts[-1]
    assert last["content_type"] == "application/json"
    assert {k: last["json"][k] for k in ("vendor", "account_id", "unit", "previous_status", "status", "used", "included")} == {
        "vendor": "thousandeyes", "account_id": "1234", "unit": "enterprise_units", "previous_status": "ok",
        "status": "over", "used": 6000, "included": 5000,
    }
    assert "1234" in last["json"]["text"] and "6,000 of 5,000" in last["json"]["text"]


def test_alerts_sensor_retries_a_failed_post_until_it_is_delivered_once(warehouse: Warehouse, receiver: Receiver) -> None:
    now = timeutil.utcnow()
    build_demo_warehouse(warehouse, now=now)
    sensor = alerts.build_status_sensor(warehouse_url=warehouse.url, webhook_url=receiver.url)
    cursor, _ = tick(sensor, None)
    delivered_before = len(receiver.delivered())

    # 5678 starts a new billing period with a fresh quota: over -> ok, but the webhook is down
    old_end = shared_facts(now)[0][0]["period_end"]
    add_usage(warehouse, account="5678", unit="cloud_units", used=10, observed=old_end + timedelta(hours=1),
              period=(old_end, old_end + timedelta(days=30)), included=2_000)
    receiver.status = 500
    cursor, message = tick(sensor, cursor)
    assert "1 failed, retried next tick" in message
    assert json.loads(cursor)["thousandeyes/5678/cloud_units"] == "over"  # not advanced

    receiver.status = 200
    cursor, _ = tick(sensor, cursor)
    cursor, _ = tick(sensor, cursor)
    recovered = receiver.delivered()[delivered_before:]
    assert [(p["account_id"], p["previous_status"], p["status"]) for p in recovered] == [("5678", "over", "ok")]
    assert len(receiver.posts) == delivered_before + 2  # one failed attempt, one delivery
    assert "/hooks/usage" not in message  # the webhook path can hold a secret: only the host is named


def test_alerts_sensor_skips_without_webhook_or_mart(tmp_path, receiver: Receiver) -> None:
    url = f"duckdb:///{tmp_path / 'empty.duckdb'}"
    Warehouse(url=url).bootstrap()
    assert "USAGE_ALERT_WEBHOOK_URL is unset" in tick(alerts.build_status_sensor(warehouse_url=url, webhook_url=None), None)[1]
    assert "not built yet" in tick(alerts.build_status_sensor(warehouse_url=url, webhook_url=receiver.url), None)[1]
    assert receiver.posts == []
