"""ThousandEyes end to end (rungs 3-6): sandbox → `dg.materialize` → staging → models → checks,
on DuckDB and on a real PostgreSQL.

Proves: four hourly ticks across a rollover fill the five facts with exactly the sandbox's
numbers (row counts and sums worked out by hand below); each organization is counted once,
through /v7/quotas or, without it, by shared account groups; a re-pulled tick leaves one
snapshot; replay rebuilds the same marts; v6 lands the same numbers as v7; a past tick is
refused; HTML, malformed JSON, a missing field and a wrong type each give their message and
leave the raw body landed while the other organization still loads; and every reconciliation
check passes on sandbox data and fails, naming the organization and the numbers, when the data
is wrong.

Sandbox arithmetic (usage_pipeline/sandbox/thousandeyes.py): Acme tests accrue 9,000 + 4,500 +
1,200 units/h (+2,000/h for test 1161 from 2026-11-20 08:00), its agents 300 + 150 + 75 units/h;
Globex tests 2,500 + 700 units/h. Periods start on the 5th 08:00Z.
"""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from usage_pipeline import definitions, models, settings, timeutil
from usage_pipeline.errors import BackfillRefused
from usage_pipeline.landing import LandingStore, complete_batches_by_partition
from usage_pipeline.sandbox import SandboxClock, SandboxServer
from usage_pipeline.sandbox import thousandeyes as te_sandbox
from usage_pipeline.sources import ensure_all_staging, thousandeyes
from usage_pipeline.sources.base import refuse_past_tick
from usage_pipeline.sources.thousandeyes import ThousandEyesClient, assets, checks, constants
from usage_pipeline.warehouse import Warehouse

TICKS = [
    datetime(2026, 11, 5, 7, 30, tzinfo=UTC),   # last hour of the Oct 5 → Nov 5 period (743 h in)
    datetime(2026, 11, 5, 9, 10, tzinfo=UTC),   # rollover: 1 h into Nov 5 → Dec 5
    datetime(2026, 11, 20, 10, 0, tzinfo=UTC),  # 362 h; test 1161 is 2 h old, no projection yet
    datetime(2026, 11, 20, 15, 0, tzinfo=UTC),  # 367 h; test 1161 now has its projection
]
KEYS = ["2026-11-05-06:00", "2026-11-05-08:00", "2026-11-20-09:00", "2026-11-20-14:00"]
# org cloudUnitsUsed per tick: Acme 14,700 × h (+ 2,000 × hours of test 1161); Globex 3,200 × h
ACME_CLOUD = [10_922_100, 14_700, 5_325_400, 5_408_900]
GLOBEX_CLOUD = [2_377_600, 3_200, 1_158_400, 1_174_400]
ACME_ENTERPRISE = [390_075, 525, 190_050, 192_675]          # 525 × h
TE_MODELS = ["group:thousandeyes", "fct_test_usage", "fct_agent_usage", "fct_agent_counts"]
SHARED_MODELS = ["+fct_quota", "+fct_units_used"]
TE_MODEL_KEYS = [dg.AssetKey(key) for key in (
    ["intermediate", "int_thousandeyes__usage"], ["intermediate", "int_thousandeyes__quota"],
    ["intermediate", "int_thousandeyes__units_used"], ["marts", "fct_test_usage"], ["marts", "fct_agent_usage"],
    ["marts", "fct_agent_counts"])]


@pytest.fixture
def server():
    with SandboxServer() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def instance():
    with dg.DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


class Pipeline:
    """One configured ThousandEyes source on a sandbox, a warehouse and a landing store."""

    def __init__(self, server: SandboxServer, warehouse: Warehouse, landing: LandingStore, instance, **env: str) -> None:
        self.server, self.warehouse, self.landing, self.instance = server, warehouse, landing, instance
        self.config = settings.load({**server.env(), "USAGE_WAREHOUSE_URL": warehouse.url, **env})
        self.client = ThousandEyesClient.from_settings(
            self.config, token=self.config.thousandeyes.token.get_secret_value())

    def tick(self, when: datetime, *, partition_key: str | None = None) -> dg.ExecuteInProcessResult:
        self.server.clock.set(when)
        with timeutil.use_clock(self.server.clock):
            key = partition_key or thousandeyes.tick_partition_keys(when)[0]
            return dg.materialize(assets.ASSETS, partition_key=key, instance=self.instance, raise_on_error=False,
                                  resources={"thousandeyes": self.client, "warehouse": self.warehouse,
                                             "landing": self.landing})

    def build(self, *, full_refresh: bool = False, shared: bool = False, tests: bool = False) -> list[models.ModelResult]:
        """Build the ThousandEyes models (`shared`: also fct_quota/fct_units_used, which union every
        vendor); `tests`: run their YAML tests too and insist they pass."""
        results = models.run_models(self.warehouse, select=TE_MODELS + (SHARED_MODELS if shared else []),
                                    full_refresh=full_refresh, tests=tests,
                                    prepare=ensure_all_staging if shared else None)  # the shared facts read every vendor
        failed = [(r.model, t.name, t.failing_rows) for r in results for t in r.tests if not t.passed]
        assert failed == [], failed
        return results

    def one(self, sql: str, params=None):
        return self.warehouse.query(sql, params)[0]


@pytest.fixture
def pipeline(server, warehouse, landing, instance) -> Pipeline:
    return Pipeline(server, warehouse, landing, instance)


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, tuple[bool, str | None]]:
    return {e.check_name: (e.passed, e.description) for e in result.get_asset_check_evaluations()}


def reconciliations(warehouse: Warehouse) -> dict[str, checks.Outcome]:
    return {"tests": checks.reconcile_test_units(warehouse), "agents": checks.reconcile_agent_units(warehouse),
            "projected": checks.projected_not_below_used(warehouse), "monotonic": checks.used_never_decreases(warehouse),
            "quota": checks.quota_for_every_used_unit(warehouse)}


# ---------- the happy path, exactly


def test_four_ticks_fill_the_five_facts_with_the_sandbox_numbers(pipeline):
    for when, key in zip(TICKS, KEYS):
        result = pipeline.tick(when)
        assert result.success, key
        assert checks_of(result) == {"all_accounts_pulled": (True, "every account succeeded"),
                                     "all_accounts_parsed": (True, "every account succeeded")}
    results = pipeline.build(shared=True, tests=True)
    assert sum(len(result.tests) for result in results if "thousandeyes" in result.model or "fct_" in result.model) > 60
    one = pipeline.one
    # /v7/quotas told us 1234 and 1235 are one organization: pulled once, as account 1234
    assert pipeline.warehouse.query(
        "select account_id, org_id, count(*) from intermediate.int_thousandeyes__usage group by 1, 2 order by 1") == [
        ("1234", "1001", 4), ("2001", "2002", 4)]
    assert [r[0] for r in pipeline.warehouse.query(
        "select partition_key from intermediate.int_thousandeyes__usage where account_id = '1234' order by 1")] == KEYS
    # fct_test_usage: Acme 3 + 3 + 4 + 4 tests, Globex 2 per tick
    assert one("select count(*), sum(cloud_units_used) from marts.fct_test_usage") == (
        22, sum(ACME_CLOUD) + sum(GLOBEX_CLOUD))
    assert one("select count(*) from marts.fct_test_usage where cloud_units_projected is null") == (1,)
    assert one("select test_id, cloud_units_used, partition_key from marts.fct_test_usage "
               "where cloud_units_projected is null") == ("1161", 4_000, "2026-11-20-09:00")
    assert one("select cloud_units_projected from marts.fct_test_usage where test_id = '1161' "
               "and partition_key = '2026-11-20-14:00'") == (720_000,)
    assert pipeline.warehouse.query(
        "select partition_key, sum(cloud_units_used) from marts.fct_test_usage where account_id = '1234' "
        "group by 1 order by 1") == list(zip(KEYS, ACME_CLOUD))
    # fct_agent_usage: Acme's 3 agents per tick, one without agentId; Globex has no metered units
    assert one("select count(*), sum(enterprise_units_used) from marts.fct_agent_usage") == (12, sum(ACME_ENTERPRISE))
    assert one("select count(*), min(agent_key) from marts.fct_agent_usage where agent_id is null") == (
        4, "name:acme-cloud-connector")
    assert one("select count(*) from marts.fct_agent_usage where vagent_id is not null") == (0,)
    # fct_agent_counts: (2 Acme groups + 1 Globex group) × 4 classes × 4 ticks
    assert one("select count(*), sum(agents_used) from marts.fct_agent_counts") == (48, 4 * (52 + 5 + 1 + 6 + 25 + 9))
    assert one("select agents_used from marts.fct_agent_counts where aid = '1235' and agent_class = 'endpoint_embedded' "
               "and partition_key = '2026-11-20-09:00'") == (0,)  # a zero stays a zero
    # the shared facts: 5 quota units and 6 used units per organization and tick
    # Acme is on metered billing (enterpriseAgentsIncluded 0): no enterprise_agents quota row
    assert one("select count(*) from marts.fct_quota where vendor = 'thousandeyes'") == (4 * (4 + 5),)
    assert one("select count(*) from marts.fct_units_used where vendor = 'thousandeyes'") == (48,)
    assert one("select included from marts.fct_quota where account_id = '1234' and unit = 'cloud_units' "
               "and partition_key = '2026-11-20-09:00'") == (4_320_000_000,)
    assert pipeline.warehouse.query(
        "select account_id, included from marts.fct_quota where unit = 'enterprise_agents' "
        "and partition_key = '2026-11-20-09:00'") == [("2001", 25)]
    assert one("select enterprise_agents_included from intermediate.int_thousandeyes__usage where account_id = '1234' "
               "and partition_key = '2026-11-20-09:00'") == (0,)  # the vendor's 0 is kept
    assert pipeline.warehouse.query(
        "select used, projected, next_period_projected from marts.fct_units_used where account_id = '1234' "
        "and unit = 'cloud_units' order by partition_key") == [
        (10_922_100, 10_936_800, 10_584_000), (14_700, 14_700 * 720, 14_700 * 744),  # 1161 not created yet
       
        (5_325_400, 10_588_000, 12_424_800), (5_408_900, 10_584_000 + 720_000, 12_424_800)]
    assert pipeline.warehouse.query(
        "select used, projected from marts.fct_units_used where account_id = '1234' and unit = 'enterprise_units' "
        "order by partition_key") == [(390_075, 390_600), (525, 378_000), (190_050, 378_000), (192_675, 378_000)]
    assert one("select count(*) from marts.fct_units_used where unit = 'enterprise_units' and account_id = '2001' "
               "and used = 0 and projected = 0") == (4,)
    # the customer's own period, in UTC, on every fact
    assert pipeline.warehouse.query(
        "select distinct period_start, period_end from marts.fct_test_usage order by 1") == [
        (datetime(2026, 10, 5, 8, tzinfo=UTC), datetime(2026, 11, 5, 8, tzinfo=UTC)),
        (datetime(2026, 11, 5, 8, tzinfo=UTC), datetime(2026, 12, 5, 8, tzinfo=UTC))]
    assert one("select min(observed_at), max(observed_at) from marts.fct_agent_counts") == (TICKS[0], TICKS[-1])
    # every fact row traces back to a landed snapshot
    for table in ("marts.fct_test_usage", "marts.fct_agent_usage", "marts.fct_agent_counts", "marts.fct_quota"):
        assert one(f"select count(*) from {table} where snapshot_id not in "
                   "(select snapshot_id from raw.api_snapshots)") == (0,), table
    assert {name: outcome.passed for name, outcome in reconciliations(pipeline.warehouse).items()} == dict.fromkeys(
        ["tests", "agents", "projected", "monotonic", "quota"], True)


def test_checks_run_in_dagster_and_pass_on_sandbox_data(pipeline):
    for when in TICKS[2:]:
        assert pipeline.tick(when).success
    models.run_models(pipeline.warehouse, select=TE_MODELS + SHARED_MODELS, tests=False, prepare=ensure_all_staging)
    model_defs = models.build_definitions()
    result = dg.materialize([*model_defs.assets, *checks.build_checks()], selection=TE_MODEL_KEYS,
                            resources={"warehouse": pipeline.warehouse}, instance=pipeline.instance)
    evaluations = checks_of(result)
    ours = {"test_units_reconcile_with_org_total", "agent_units_reconcile_with_org_total", "projected_not_below_used",
            "used_never_decreases_within_period", "quota_row_for_every_used_unit"}
    assert ours <= set(evaluations)
    assert [name for name, (passed, _) in evaluations.items() if not passed] == []
    assert evaluations["test_units_reconcile_with_org_total"][1] == (
        "Σ per-test cloud units equals cloudUnitsUsed (± 1 unit per entry) in every snapshot of the current periods")


def test_the_marts_job_of_the_code_location_runs_our_checks(server, warehouse):
    config = settings.load({**server.env(), "USAGE_WAREHOUSE_URL": warehouse.url})
    defs = definitions.build(config)
    marts_job, tick_job = defs.resolve_job_def("marts_job"), defs.resolve_job_def("thousandeyes_job")
    assert {"marts__fct_test_usage_test_units_reconcile_with_org_total",
            "marts__fct_agent_usage_agent_units_reconcile_with_org_total",
            "intermediate__int_thousandeyes__units_used_projected_not_below_used",
            "intermediate__int_thousandeyes__units_used_used_never_decreases_within_period",
            "intermediate__int_thousandeyes__quota_quota_row_for_every_used_unit"} <= set(marts_job.graph.node_dict)
    assert sorted(tick_job.graph.node_dict) == ["raw__thousandeyes__usage", "stg_thousandeyes_usage"]
    assert defs.resolve_schedule_def("thousandeyes_hourly_schedule").cron_schedule == "5 * * * *"


# ---------- organizations


def test_without_quotas_one_organization_is_staged_once_with_a_warning(pipeline):
    pipeline.server.faults.add("thousandeyes:/v7/quotas", "status", None, status=403)
    result = pipeline.tick(TICKS[2])
    assert result.success
    landed = pipeline.warehouse.query("select account_id, count(*) from raw.api_snapshots where vendor = 'thousandeyes' "
                                      "group by 1 order by 1")
    assert landed == [("1234", 1), ("1235", 1), ("2001", 1)]  # raw keeps every fetch
    stage_md = next(e for e in result.get_asset_materialization_events()
                    if e.asset_key == assets.USAGE_KEY).step_materialization_data.materialization.metadata
    assert any("account 1235]: the same organization as account 1234" in w for w in stage_md["warnings"].value)
    assert pipeline.warehouse.query("select account_id, org_id from staging.stg_thousandeyes__usage order by 1") == [
        ("1234", None), ("2001", None)]
    pipeline.build()
    assert pipeline.one("select count(*), sum(cloud_units_used) from marts.fct_test_usage") == (
        6, ACME_CLOUD[2] + GLOBEX_CLOUD[2])


def test_without_account_groups_the_default_context_is_account_default(pipeline, server, warehouse, landing, instance):
    default = Pipeline(server, warehouse, landing, instance, THOUSANDEYES_ACCOUNT_GROUP_IDS="")
    assert default.tick(TICKS[2]).success
    default.build()
    assert default.warehouse.query("select distinct account_id from marts.fct_test_usage") == [("default",)]
    assert default.one("select sum(cloud_units_used) from marts.fct_test_usage") == (ACME_CLOUD[2],)
    assert [r.query for r in server.requests_for("thousandeyes")] == [{"expand": [",".join(constants.EXPAND)]}]


# ---------- house rules


def test_rerunning_a_tick_leaves_one_snapshot_per_organization_and_hour(pipeline):
    assert pipeline.tick(TICKS[2]).success
    pipeline.build(shared=True)
    first = pipeline.warehouse.query("select distinct snapshot_id from marts.fct_test_usage")
    assert pipeline.tick(datetime(2026, 11, 20, 10, 40, tzinfo=UTC), partition_key=KEYS[2]).success
    results = pipeline.build(shared=True)
    assert {r.model: r.mode for r in results}["fct_test_usage"] == "incremental"
    assert pipeline.one("select count(*), count(distinct snapshot_id), sum(cloud_units_used) from marts.fct_test_usage") == (
        6, 2, ACME_CLOUD[2] + GLOBEX_CLOUD[2])
    latest = pipeline.warehouse.query("select distinct snapshot_id from marts.fct_test_usage")
    assert not set(first) & set(latest)  # the later pull replaced the earlier one
    assert pipeline.one("select count(*) from raw.api_snapshots where endpoint = 'usage'") == (4,)  # raw keeps both
    assert pipeline.one("select count(*) from marts.fct_units_used where vendor = 'thousandeyes'") == (12,)


def test_replay_rebuilds_the_same_marts_from_raw_alone(pipeline):
    for when in TICKS:
        assert pipeline.tick(when).success
    pipeline.build()
    columns = "snapshot_id, account_id, aid, test_id, period_start, cloud_units_used, cloud_units_projected, observed_at"
    before = pipeline.warehouse.query(f"select {columns} from marts.fct_test_usage order by 1, 3, 4")
    with pipeline.warehouse.transaction() as tx:
        for table in constants.STAGING_TABLES:
            tx.execute(f"delete from {table}")
    pipeline.server.stop()  # no network from here on
    for key in complete_batches_by_partition(pipeline.warehouse, constants.KEY):
        thousandeyes.stage(pipeline.warehouse, pipeline.landing, key)
    pipeline.build(full_refresh=True)
    assert pipeline.warehouse.query(f"select {columns} from marts.fct_test_usage order by 1, 3, 4") == before
    assert len(before) == 22


def test_a_past_tick_is_refused_saying_the_vendor_keeps_no_history(pipeline):
    result = pipeline.tick(TICKS[2], partition_key="2026-11-19-09:00")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.cause.message if failure.step_failure_data.error.cause else \
        failure.step_failure_data.error.message
    assert "partition 2026-11-19-09:00 is not the current observation tick (2026-11-20-09:00)" in message
    assert "thousandeyes keeps no history for past ticks" in message
    assert pipeline.server.requests_for("thousandeyes") == []  # nothing was fetched
    assert not thousandeyes.BACKFILLABLE


def test_only_the_latest_closed_hour_is_a_tick():
    with timeutil.use_clock(SandboxClock(datetime(2026, 11, 20, 10, 30, tzinfo=UTC))):
        refuse_past_tick(constants.KEY, thousandeyes.partitions_def, "2026-11-20-09:00")  # the current tick: fine
        with pytest.raises(BackfillRefused, match="thousandeyes keeps no history for past ticks"):
            refuse_past_tick(constants.KEY, thousandeyes.partitions_def, "2026-11-20-08:00")
    assert thousandeyes.tick_partition_keys(datetime(2026, 11, 20, 10, 30, tzinfo=UTC)) == ["2026-11-20-09:00"]


def test_v6_lands_the_same_numbers_as_v7(pipeline, server, warehouse, landing, instance):
    v6 = Pipeline(server, warehouse, landing, instance, THOUSANDEYES_API_VERSION="6")
    assert v6.tick(TICKS[2]).success
    v6.build()
    assert v6.one("select count(*), sum(cloud_units_used) from marts.fct_test_usage") == (
        6, ACME_CLOUD[2] + GLOBEX_CLOUD[2])
    assert v6.warehouse.query("select distinct api_version, period_zone_basis, period_start "
                              "from intermediate.int_thousandeyes__usage") == [
        ("v6", "implied_utc", datetime(2026, 11, 5, 8, tzinfo=UTC))]
    # v6 has no /quotas: all three aids pulled, 1235 deduplicated by its shared account groups
    assert v6.warehouse.query("select distinct account_id from marts.fct_test_usage order by 1") == [("1234",), ("2001",)]
    assert v6.one("select test_id from marts.fct_test_usage where aid = '2001' order by test_id") == ("2201",)
    assert [r.path for r in server.requests_for("thousandeyes")] == ["/v6/usage.json"] * 3


# ---------- bad payloads and failing accounts


def raw_kept(pipeline: Pipeline, account: str) -> bytes:
    """The landed body of `account`'s usage response, checked against its index row."""
    path, sha256 = pipeline.one("select landing_path, sha256 from raw.api_snapshots where account_id = %s "
                                "and endpoint = 'usage'", [account])
    body = gzip.decompress((Path(pipeline.landing.root) / path).read_bytes())
    assert hashlib.sha256(body).hexdigest() == sha256
    return body


@pytest.mark.parametrize("kind, params, where, message", [
    ("html", {}, "all_accounts_pulled",
     "usage: expected JSON from GET http://127.0.0.1:{port}/v7/usage?aid=2001&expand="),
    ("malformed_json", {}, "all_accounts_pulled", "but got malformed JSON; first bytes: '{{\"usage\": {{\"quota\""),
    ("missing_field", {"field": "usage.quota.monthEnd"}, "all_accounts_parsed",
     "usage (v7): missing required field usage.quota.monthEnd"),
    ("extra_field", {"field": "usage", "value": "not an object"}, "all_accounts_parsed",
     "usage (v7): field usage has the wrong type: expected an object, got string"),
])
def test_a_bad_payload_gives_its_message_keeps_raw_and_spares_the_other_organization(pipeline, kind, params, where,
                                                                                        message):
    pipeline.server.faults.add("thousandeyes:/v7/usage", kind, match="2001", **params)
    result = pipeline.tick(TICKS[2])
    assert result.success  # one organization failing never stops the other
    passed, description = checks_of(result)[where]
    assert not passed
    assert description.startswith("thousandeyes [account 2001]: ")
    assert message.format(port=pipeline.server.base_url.rsplit(":", 1)[1]) in description
    if where == "all_accounts_parsed":
        snapshot_id = pipeline.one("select snapshot_id from raw.api_snapshots where account_id = '2001' "
                                   "and endpoint = 'usage'")[0]
        assert f"snapshot {snapshot_id}" in description
    body = raw_kept(pipeline, "2001")
    assert body.startswith(b"<!DOCTYPE html>") if kind == "html" else body.startswith(b"{")
    assert pipeline.warehouse.query("select account_id from staging.stg_thousandeyes__usage") == [("1234",)]
    pipeline.build()
    assert pipeline.one("select sum(cloud_units_used) from marts.fct_test_usage") == (ACME_CLOUD[2],)


def test_an_unknown_field_is_a_warning_and_the_rows_still_load(pipeline):
    pipeline.server.faults.add("thousandeyes:/v7/usage", "extra_field", match="2001", field="carbonUnitsUsed", value=7)
    result = pipeline.tick(TICKS[2])
    assert result.success and checks_of(result)["all_accounts_parsed"] == (True, "every account succeeded")
    stage_md = next(e for e in result.get_asset_materialization_events()
                    if e.asset_key == assets.USAGE_KEY).step_materialization_data.materialization.metadata
    assert stage_md["warnings"].value == [
        "thousandeyes [account 2001]: usage (v7) has fields this parser does not know; they are kept in raw and "
        "not staged: carbonUnitsUsed"]
    assert b'"carbonUnitsUsed": 7' in raw_kept(pipeline, "2001")
    pipeline.build()
    assert pipeline.one("select sum(cloud_units_used) from marts.fct_test_usage") == (ACME_CLOUD[2] + GLOBEX_CLOUD[2],)


def test_a_second_account_group_failing_does_not_stop_the_first(pipeline):
    pipeline.server.faults.add("thousandeyes:/v7/usage", "always_fail", match="2001", status=403)
    result = pipeline.tick(TICKS[2])
    assert result.success
    passed, description = checks_of(result)["all_accounts_pulled"]
    assert not passed and description.startswith("thousandeyes [account 2001]: usage: token rejected or expired")
    assert pipeline.server.tokens["thousandeyes"] not in description
    assert pipeline.one("select status, error like %s from raw.api_batches where account_id = '2001'",
                        ["%HTTP 403%"]) == ("failed", True)
    pipeline.build()
    assert pipeline.warehouse.query("select distinct account_id from marts.fct_test_usage") == [("1234",)]
    assert pipeline.one("select sum(cloud_units_used) from marts.fct_test_usage") == (ACME_CLOUD[2],)


def test_every_organization_failing_fails_the_step_naming_them(pipeline):
    pipeline.server.faults.add("thousandeyes:/v7/usage", "status", None, status=404)
    result = pipeline.tick(TICKS[2])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    text = str(failure.step_failure_data.error.to_string())
    assert "thousandeyes [account 1234, 2001]: every account failed" in text


# ---------- the checks fail, naming the organization and the numbers


def test_test_reconciliation_names_the_organization_and_the_numbers(pipeline):
    te_sandbox.state(pipeline.server).skew_cloud_units = 100
    assert pipeline.tick(TICKS[2]).success
    pipeline.build()
    outcome = checks.reconcile_test_units(pipeline.warehouse)
    assert not outcome.passed
    assert outcome.description.startswith(
        "2 snapshot(s) where Σ per-test cloud units ≠ cloudUnitsUsed: organization 1234 (org 1001) at "
        "2026-11-20 10:00 UTC: Σ per-test cloud units 5,325,400 over 4 entries vs cloudUnitsUsed 5,325,500 "
        "(off by +100; tolerance 4, 1 unit per entry; snapshot ")
    assert "organization 2001 (org 2002) at 2026-11-20 10:00 UTC: Σ per-test cloud units 1,158,400 over 2 entries " \
           "vs cloudUnitsUsed 1,158,500 (off by +100; tolerance 2" in outcome.description
    result = outcome.result(dg.AssetCheckSeverity.ERROR)
    assert result.metadata["failing_snapshots"].value == 2


def test_test_reconciliation_tolerates_one_unit_per_test(pipeline):
    te_sandbox.state(pipeline.server).skew_cloud_units = 2  # Globex lists 2 tests: 2 units is within its tolerance
    assert pipeline.tick(TICKS[2]).success
    pipeline.build()
    assert checks.reconcile_test_units(pipeline.warehouse).passed
    te_sandbox.state(pipeline.server).skew_cloud_units = 3
    assert pipeline.tick(datetime(2026, 11, 20, 11, tzinfo=UTC)).success
    pipeline.build()
    outcome = checks.reconcile_test_units(pipeline.warehouse)
    assert not outcome.passed and "organization 2001 (org 2002)" in outcome.description
    assert "organization 1234" not in outcome.description  # Acme lists 4 tests: 3 units is within its tolerance


def test_the_other_checks_fail_naming_the_organization_and_the_numbers(pipeline):
    assert pipeline.tick(TICKS[2]).success
    assert pipeline.tick(TICKS[3]).success
    with pipeline.warehouse.transaction() as tx:
        # corrupt staging the way a lost row or a mixed-up organization would
        tx.execute("update staging.stg_thousandeyes__usage set enterprise_units_used = enterprise_units_used + 5000, "
                   "cloud_units_projected = 1 where account_id = '1234' and partition_key = %s", [KEYS[3]])
        tx.execute("update staging.stg_thousandeyes__usage set cloud_units_used = 1000, cloud_units_projected = 2000000, "
                   "endpoint_agents_included = null where account_id = '2001' and partition_key = %s", [KEYS[3]])
        tx.execute("update staging.stg_thousandeyes__tests set cloud_units_used = 500 where account_id = '2001' "
                   "and partition_key = %s", [KEYS[3]])
    pipeline.build()
    found = reconciliations(pipeline.warehouse)
    assert not found["agents"].passed and found["agents"].description.startswith(
        "1 snapshot(s) where Σ per-agent enterprise units ≠ enterpriseUnitsUsed: organization 1234 (org 1001) at "
        "2026-11-20 15:00 UTC: Σ per-agent enterprise units 192,675 over 3 entries vs enterpriseUnitsUsed 197,675 "
        "(off by +5,000; tolerance 3")
    assert found["projected"].description == (
        "1 unit observation(s) with projected below used: organization 1234 (org 1001) at 2026-11-20 15:00 UTC: "
        "cloud_units projected 1 < used 5,408,900")
    assert found["monotonic"].description == (
        "1 decrease(s) of used within a billing period: organization 2001 (org 2002): cloud_units fell from "
        "1,158,400 at 2026-11-20 10:00 UTC to 1,000 at 2026-11-20 15:00 UTC within one billing period")
    assert found["quota"].description.startswith(
        "1 unit observation(s) with usage and no quota: organization 2001 (org 2002) at 2026-11-20 15:00 UTC: "
        "endpoint_agents used 25 but no quota row (snapshot ")
    assert found["tests"].passed  # 2 × 500 = 1,000: the corrupted totals still add up
