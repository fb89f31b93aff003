"""TFE models on DuckDB and PostgreSQL: deduplication by TFE's snapshot id across pulls (rung 5-6).

Proves, on both engines: several pulls of overlapping bundles on several simulated days
give exactly one row per TFE snapshot × metric, taken from the latest fetch, with exact
checksums and times; incremental builds, a full rebuild and a replay of an old pull agree;
the shared units-used rows carry one row per snapshot × unit, leave opted-out zeros out and
follow the licence change; TFE contributes no quota rows.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from usage_pipeline import http, models, timeutil
from usage_pipeline.landing import LandingStore
from usage_pipeline.sandbox import SandboxClock
from usage_pipeline.sandbox import terraform_enterprise as fake_tfe
from usage_pipeline.sources.base import to_arrow
from usage_pipeline.sources.terraform_enterprise import constants, stage
from usage_pipeline.sources.terraform_enterprise.parse import parse_usage_bundle
from usage_pipeline.warehouse import Warehouse

ACCOUNT = "tfe.example.com"
TFE_MODELS = ["fct_tfe_usage_metrics", "int_terraform_enterprise__units_used", "int_terraform_enterprise__quota"]
START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
OPTED_OUT_DAY = date(2026, 11, 21)


# ---------- helpers: land a bundle the way the raw asset does, then stage it


def land_and_stage(warehouse: Warehouse, landing: LandingStore, bundle: dict[str, Any], now: datetime) -> str:
    """Land `bundle` as fetched at `now` for the tick closed at `now`, and stage that tick."""
    fetched = http.Fetched(
        vendor=constants.KEY, account_id=ACCOUNT, endpoint=constants.ENDPOINT, method="GET",
        url=f"https://{ACCOUNT}:8443{constants.BUNDLE_PATH}",
        request={"method": "GET", "path": constants.BUNDLE_PATH, "params": {}, "json": None},
        status=200, headers={"content-type": "application/json"}, body=json.dumps(bundle).encode(), fetched_at=now,
    )
    partition_key = (now - timedelta(days=1)).date().isoformat()
    with landing.batch(warehouse, vendor=constants.KEY, account_id=ACCOUNT, partition_key=partition_key) as batch:
        batch.land(fetched)
    report = stage(warehouse, landing, partition_key)
    assert report.accounts == 1 and not report.failures
    return partition_key


def build(warehouse: Warehouse, *, full_refresh: bool = False, tests: bool = True) -> list[models.ModelResult]:
    """Build the TFE models; their YAML tests must all pass."""
    results = models.run_models(warehouse, select=TFE_MODELS, full_refresh=full_refresh, tests=tests)
    failing = [(result.model, test.name, test.sample) for result in results for test in result.tests if not test.passed]
    assert not failing, failing
    return results


def rows(warehouse: Warehouse, table: str, order: str, *, drop: tuple[str, ...] = ("loaded_at",)) -> list[dict]:
    names = [name for name, _type in warehouse.columns(table)]
    found = [dict(zip(names, row)) for row in warehouse.query(f"select * from {table} order by {order}")]
    return [{k: _utc(v) for k, v in row.items() if k not in drop} for row in found]


def _utc(value: Any) -> Any:
    # both engines hand back aware datetimes; compare them in UTC
    return value.astimezone(UTC) if isinstance(value, datetime) and value.tzinfo else value


class Pulls:
    """Five daily pulls of the simulated installation, with what each bundle held."""

    def __init__(self, warehouse: Warehouse, landing: LandingStore) -> None:
        self.warehouse, self.landing = warehouse, landing
        self.clock = SandboxClock(START)
        self.config = fake_tfe.TfeSandboxSettings(opted_out_days={OPTED_OUT_DAY})
        self.bundles: list[tuple[str, datetime, dict]] = []  # (partition_key, fetched_at, bundle)

    def pull(self) -> str:
        now = self.clock.now()
        bundle = fake_tfe.bundle(now, self.config)
        with timeutil.use_clock(self.clock):
            key = land_and_stage(self.warehouse, self.landing, bundle, now)
        self.bundles.append((key, now, bundle))
        return key

    def raw_snapshot_ids(self) -> dict[str, str]:
        """partition_key → raw snapshot_id of its bundle."""
        found = self.warehouse.query("select partition_key, snapshot_id from raw.api_snapshots")
        return dict(found)

    def expected(self) -> dict[str, dict[str, Any]]:
        """Per TFE snapshot id: its snapshot, the first and the last fetch that held it."""
        raw_ids = self.raw_snapshot_ids()
        seen: dict[str, dict[str, Any]] = {}
        for key, fetched_at, bundle in self.bundles:
            for snapshot in bundle["snapshots"]:
                entry = seen.setdefault(snapshot["id"], {"snapshot": snapshot, "first": fetched_at})
                entry.update(last=fetched_at, raw=raw_ids[key], partition_key=key)
        return seen


@pytest.fixture
def pulls(warehouse: Warehouse, landing: LandingStore) -> Pulls:
    return Pulls(warehouse, landing)


# ---------- deduplication across pulls, both engines


def test_overlapping_pulls_keep_one_row_per_snapshot_and_metric(pulls: Pulls, warehouse: Warehouse):
    for day in range(5):
        pulls.pull()
        build(warehouse, tests=day == 4)
        pulls.clock.advance(timedelta(days=1))
    expected = pulls.expected()
    staged = warehouse.query("select count(*) from staging.stg_terraform_enterprise__metrics")[0][0]
    wanted = sum(len(entry["snapshot"]["metrics"]) for entry in expected.values())
    assert len(expected) == 11  # a 7-day window, pulled on 5 days: 7 + 4 new snapshots
    assert staged == sum(len(s["metrics"]) for _, _, b in pulls.bundles for s in b["snapshots"]) > 3 * wanted
    facts = rows(warehouse, "marts.fct_tfe_usage_metrics", "tfe_snapshot_id, metric_key")
    assert len(facts) == wanted
    assert len({(row["tfe_snapshot_id"], row["metric_key"]) for row in facts}) == wanted
    for row in facts:
        entry = expected[row["tfe_snapshot_id"]]
        assert row["snapshot_id"] == entry["raw"], "the copy kept is the one from the latest fetch"
        assert row["partition_key"] == entry["partition_key"]
        assert row["observed_at"] == entry["last"] and row["first_observed_at"] == entry["first"]
        assert row["account_id"] == row["license_id"] == entry["snapshot"]["license_id"]
        assert row["snapshot_checksum"] == str(entry["snapshot"]["checksum"])
        assert row["snapshot_at_raw"] == entry["snapshot"]["timestamp"]
        metric = entry["snapshot"]["metrics"][row["metric_key"]]
        assert row["value"] == Decimal(metric["value"]) and row["mode"] == "write" and row["bundle_mode"] == "automatic"


def test_dedup_keeps_exact_checksums_and_times(pulls: Pulls, warehouse: Warehouse):
    for _ in range(2):
        pulls.pull()
        pulls.clock.advance(timedelta(days=1))
    build(warehouse)
    facts = {row["tfe_snapshot_id"]: row for row in rows(
        warehouse, "marts.fct_tfe_usage_metrics", "tfe_snapshot_id", drop=()) if row["metric_key"] == "workspacecount"}
    big = [s for s in pulls.expected().values() if s["snapshot"]["checksum"] >= 2**63]
    assert big, "the sandbox serves checksums above 2^63"
    for entry in big:
        assert facts[entry["snapshot"]["id"]]["snapshot_checksum"] == str(entry["snapshot"]["checksum"])
    # 2026-11-15's snapshot is written at -08:00 with nine digits: stored in UTC, truncated
    [row] = [r for r in facts.values() if r["snapshot_at_raw"] == "2026-11-15T16:00:04.386332846-08:00"]
    assert row["snapshot_at"] == datetime(2026, 11, 16, 0, 0, 4, 386332, tzinfo=UTC)


def test_incremental_full_rebuild_and_replay_agree(pulls: Pulls, warehouse: Warehouse):
    first_key = None
    for _ in range(4):
        key = pulls.pull()
        first_key = first_key or key
        build(warehouse, tests=False)
        pulls.clock.advance(timedelta(days=1))
    incremental = rows(warehouse, "marts.fct_tfe_usage_metrics", "tfe_snapshot_id, metric_key")
    units = rows(warehouse, "intermediate.int_terraform_enterprise__units_used", "snapshot_id, unit")
    # a run with nothing new changes nothing
    build(warehouse)
    assert rows(warehouse, "marts.fct_tfe_usage_metrics", "tfe_snapshot_id, metric_key") == incremental
    # replay an old pull: its rows are staged again (newer loaded_at, older observed_at)
    with timeutil.use_clock(pulls.clock):
        stage(warehouse, pulls.landing, first_key)
    results = build(warehouse)
    assert {r.model: r.mode for r in results}["fct_tfe_usage_metrics"] == "incremental"
    assert rows(warehouse, "marts.fct_tfe_usage_metrics", "tfe_snapshot_id, metric_key") == incremental
    # and a full rebuild from staging gives the same rows
    results = build(warehouse, full_refresh=True)
    assert {r.model: r.mode for r in results}["fct_tfe_usage_metrics"] == "full_rebuild"
    assert rows(warehouse, "marts.fct_tfe_usage_metrics", "tfe_snapshot_id, metric_key") == incremental
    assert rows(warehouse, "intermediate.int_terraform_enterprise__units_used", "snapshot_id, unit") == units


def test_units_used_follow_snapshots_licences_and_opt_outs(pulls: Pulls, warehouse: Warehouse):
    for day in range(3):
        pulls.pull()
        build(warehouse, tests=day == 2)
        pulls.clock.advance(timedelta(days=1))
    expected = pulls.expected()
    units = rows(warehouse, "intermediate.int_terraform_enterprise__units_used", "snapshot_id, unit")
    by_key = {(row["snapshot_id"], row["unit"]): row for row in units}
    metric_of = {"managed_resources": "billable_rum_count", "users": "user_count", "agents": "active_agents_count"}
    for tfe_id, entry in expected.items():
        snapshot = entry["snapshot"]
        taken = datetime.combine(date.fromisoformat(_day(snapshot)), fake_tfe.SNAPSHOT_TIME)
        for unit, metric in metric_of.items():
            if _day(snapshot) == OPTED_OUT_DAY.isoformat():
                assert (tfe_id, unit) not in by_key, "an opted-out zero is not a usage"
                continue
            row = by_key[(tfe_id, unit)]
            assert row["used"] == snapshot["metrics"][metric]["value"]
            assert row["account_id"] == snapshot["license_id"] and row["partition_key"] == tfe_id
            assert row["period_start"] == taken.replace(hour=0, minute=0, second=0, microsecond=0)
            assert row["period_end"] == row["period_start"] + timedelta(days=1)
            assert row["observed_at"] == taken  # TFE's measuring time, not the fetch
            assert row["vendor"] == "terraform_enterprise" and row["projected"] is None
    assert len(units) == 3 * (len(expected) - 1)
    assert {row["account_id"] for row in units} == {fake_tfe.LICENCE_BEFORE, fake_tfe.LICENCE_AFTER}
    facts = rows(warehouse, "marts.fct_tfe_usage_metrics", "tfe_snapshot_id, metric_key")
    opted = [row for row in facts if row["snapshot_at"].date() == OPTED_OUT_DAY]
    assert opted and {row["not_reported_reason"] for row in opted if row["value"] == 0 and
                      row["metric_key"] not in constants.OPT_IN_FLAGS} == {"usage_reporting_opted_out"}
    assert [r for r in facts if r["metric_key"] == fake_tfe.UNKNOWN_METRIC and not r["is_known_metric"]]


def _day(snapshot: dict) -> str:
    return str(timeutil.parse_iso_utc(snapshot["timestamp"]).date())


def test_tfe_contributes_no_quota_rows(pulls: Pulls, warehouse: Warehouse):
    pulls.pull()
    build(warehouse)
    assert warehouse.query("select count(*) from intermediate.int_terraform_enterprise__quota")[0][0] == 0
    columns = [name for name, _type in warehouse.columns("intermediate.int_terraform_enterprise__quota")]
    assert columns == ["snapshot_id", "vendor", "account_id", "unit", "period_start", "period_end", "included",
                       "observed_at", "loaded_at", "partition_key"]


# ---------- the model on tiny inputs (models.unit_test), both engines


def staged_tables(bundle: dict, *, raw_id: str, fetched_at: datetime, loaded_at: datetime,
                  partition_key: str) -> dict[str, pa.Table]:
    parsed = parse_usage_bundle(bundle, snapshot_id=raw_id, account_id=ACCOUNT, observed_at=fetched_at)
    return {table: to_arrow(parsed.tables[table], schema, account_id=ACCOUNT, partition_key=partition_key,
                            loaded_at=loaded_at) for table, schema in constants.SCHEMAS.items()}


def concat(*inputs: dict[str, pa.Table]) -> dict[str, pa.Table]:
    return {table: pa.concat_tables([given[table] for given in inputs]) for table in constants.SCHEMAS}


def one_snapshot_bundle(value: int) -> dict:
    bundle = fake_tfe.bundle(START, fake_tfe.TfeSandboxSettings(window_days=1))
    bundle["snapshots"][0]["metrics"] = {"user_count": {"key": "user_count", "value": value, "mode": "write"}}
    return bundle


def typed(table: pa.Table) -> pa.Table:
    """A model output as `this`: all-null columns (PostgreSQL rows carry no type) typed as staging has them."""
    booleans = {"product_usage_reporting_opt_in", "billable_rum_opt_in"}
    fields = [pa.field(f.name, (pa.bool_() if f.name in booleans else pa.string()) if pa.types.is_null(f.type) else f.type)
              for f in table.schema]
    return table.cast(pa.schema(fields))


def test_unit_fct_picks_the_latest_fetch_of_a_snapshot(warehouse: Warehouse):
    early, late = datetime(2026, 11, 20, 10, tzinfo=UTC), datetime(2026, 11, 21, 10, tzinfo=UTC)
    given = concat(
        staged_tables(one_snapshot_bundle(41), raw_id="20261121T100000Z-b", fetched_at=late, loaded_at=late,
                      partition_key="2026-11-20"),
        staged_tables(one_snapshot_bundle(40), raw_id="20261120T100000Z-a", fetched_at=early, loaded_at=early,
                      partition_key="2026-11-19"),
    )
    out = models.unit_test(warehouse, "fct_tfe_usage_metrics",
                           given={f"staging.{name.split('.')[1]}": table for name, table in given.items()}).to_pylist()
    assert len(out) == 1
    assert (out[0]["snapshot_id"], out[0]["value"], out[0]["observed_at"], out[0]["first_observed_at"]) == (
        "20261121T100000Z-b", Decimal(41), late, early)


def test_unit_fct_incremental_replay_never_displaces_a_later_fetch(warehouse: Warehouse):
    early, late, replayed = (datetime(2026, 11, d, 10, tzinfo=UTC) for d in (20, 21, 25))
    later = staged_tables(one_snapshot_bundle(41), raw_id="20261121T100000Z-b", fetched_at=late, loaded_at=late,
                          partition_key="2026-11-20")
    this = typed(models.unit_test(warehouse, "fct_tfe_usage_metrics",
                                  given={f"staging.{k.split('.')[1]}": v for k, v in later.items()}))
    # the old pull is re-staged (replay): newer loaded_at, older fetch
    old = staged_tables(one_snapshot_bundle(40), raw_id="20261120T100000Z-a", fetched_at=early, loaded_at=replayed,
                        partition_key="2026-11-19")
    out = models.unit_test(warehouse, "fct_tfe_usage_metrics", is_incremental=True,
                           given={"this": this, **{f"staging.{k.split('.')[1]}": v for k, v in old.items()}}).to_pylist()
    assert len(out) == 1
    assert (out[0]["snapshot_id"], out[0]["value"], out[0]["first_observed_at"], out[0]["loaded_at"]) == (
        "20261121T100000Z-b", Decimal(41), early, replayed)

