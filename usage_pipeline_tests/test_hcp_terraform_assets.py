"""HCP Terraform end to end (rungs 3-6): `dg.materialize` of the real raw and staging assets against
the loopback sandbox over several simulated days, then the SQL models, on DuckDB and PostgreSQL.

Proves: one batch per organization per tick, discovery over two pages, a free organization's
404 landed as "no subscription" (not a failure), one failing organization named while the
others land (and shown later as a gap), the plan change visible in one query, growing
entitlement keys and RUM counts, a rename kept on the external-id, HCP rows in the shared
fct_quota / fct_units_used, past ticks refused, a re-run replacing its own rows, `replay`
re-deriving the same intervals from raw alone, and the token in no landed file or table.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from conftest import ENGINES, make_warehouse

from usage_pipeline import models, settings, timeutil
from usage_pipeline.landing import LandingStore
from usage_pipeline.sandbox import SandboxServer
from usage_pipeline.sources import all_sources
from usage_pipeline.sources import hcp_terraform as source
from usage_pipeline.sources.hcp_terraform import assets
from usage_pipeline.sources.hcp_terraform import constants as c
from usage_pipeline.sources.hcp_terraform.client import HcpTerraformClient

TOKEN_CANARY = "hcp-e2e-canary-token-9f3c1a7b5d"
FIRST_TICK = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)  # pulls partition 2026-11-20
TICKS = 4  # 2026-11-20 .. 2026-11-23: the plan change (11-22), the rename (11-23) and new keys (11-21, 11-24)
FAILING_DAY = 2  # globex answers 400 on this tick only
MODELS = ["fct_subscription_entitlements", "fct_hcp_subscriptions", "dim_hcp_organizations", "fct_quota", "fct_units_used"]
FACT_COLUMNS = ("organization_external_id", "value_source", "entitlement_key", "valid_from", "valid_to", "last_seen_at",
                "ended_by", "enabled", "limit_value", "is_unlimited", "subscription_id", "feature_set_id", "snapshot_id")


def materialize(client: HcpTerraformClient, warehouse, landing: LandingStore, partition_key: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets.ASSETS, partition_key=partition_key, raise_on_error=False,
                          resources={"hcp_terraform": client, "warehouse": warehouse, "landing": landing})


def build_models(warehouse) -> list[models.ModelResult]:
    for each in all_sources():  # the shared facts read every vendor's staging tables
        each.ensure_staging(warehouse)
    return models.run_models(warehouse, select=[f"+{name}" for name in MODELS])


def fact(warehouse) -> set[tuple]:
    return set(warehouse.query(f"select {', '.join(FACT_COLUMNS)} from marts.fct_subscription_entitlements"))


@pytest.fixture(scope="module", params=ENGINES)
def pipeline(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Four simulated days against the sandbox, globex failing on one of them, then every model."""
    root = tmp_path_factory.mktemp("hcp_e2e")
    warehouse = make_warehouse(request.param, root, request)
    landing = LandingStore(root=str(root / "landing"))
    results = {}
    with SandboxServer(now=FIRST_TICK, tokens={"hcp_terraform": TOKEN_CANARY}) as server, timeutil.use_clock(server.clock):
        client = HcpTerraformClient(base_url=server.base_url, token=TOKEN_CANARY, page_size=2)
        for day in range(TICKS):
            if day:
                server.clock.advance(timedelta(days=1))
            if day == FAILING_DAY:
                server.faults.add("hcp_terraform", "always_fail", match="globex", status=400)
            key = source.tick_partition_keys()[0]
            results[key] = materialize(client, warehouse, landing, key)
            server.faults.clear()
        rerun = materialize(client, warehouse, landing, key)  # the latest tick once more
        refused = materialize(client, warehouse, landing, "2026-11-01")
    model_results = build_models(warehouse)
    return {"warehouse": warehouse, "landing": landing, "root": root, "results": results, "rerun": rerun,
            "refused": refused, "models": model_results, "fact": fact(warehouse)}


def partition(day: int) -> str:
    return (FIRST_TICK - timedelta(days=1) + timedelta(days=day)).date().isoformat()


# ---------- pulling and staging


def test_every_tick_lands_one_batch_per_organization_and_discovery(pipeline):
    warehouse = pipeline["warehouse"]
    assert all(result.success for result in pipeline["results"].values())
    batches = warehouse.query("select account_id, status from raw.api_batches where vendor = %s and partition_key = %s",
                              ["hcp_terraform", partition(0)])
    assert sorted(batches) == [(c.DISCOVERY_ACCOUNT, "complete"), ("acme-corp", "complete"), ("globex", "complete"),
                               ("initech-free", "complete"), ("umbrella-labs", "complete")]
    endpoints = warehouse.query("select endpoint, status, count(*) from raw.api_snapshots where partition_key = %s "
                                "and account_id = %s group by endpoint, status order by endpoint",
                                [partition(0), "globex"])
    # page[size]=2: five globex workspaces come on three explorer pages
    assert endpoints == [("entitlement_set", 200, 1), ("explorer_workspaces", 200, 3), ("organization", 200, 1),
                         ("subscription", 200, 1)]
    discovery = warehouse.query("select count(*) from raw.api_snapshots where partition_key = %s and endpoint = %s",
                                [partition(0), c.EP_ORGANIZATIONS])
    assert discovery == [(2,)]  # four organizations, two pages


def test_the_free_organization_404_is_landed_and_is_not_a_failure(pipeline):
    warehouse = pipeline["warehouse"]
    assert warehouse.query("select status from raw.api_snapshots where account_id = %s and endpoint = %s "
                           "and partition_key = %s", ["initech-free", "subscription", partition(0)]) == [(404,)]
    checks = {(e.check_name, e.passed) for e in pipeline["results"][partition(0)].get_asset_check_evaluations()}
    assert checks == {("all_accounts_pulled", True), ("all_accounts_parsed", True)}


def test_one_failing_organization_is_named_and_the_others_land(pipeline):
    result = pipeline["results"][partition(FAILING_DAY)]
    assert result.success
    pulled = next(e for e in result.get_asset_check_evaluations() if e.check_name == "all_accounts_pulled")
    assert not pulled.passed
    assert "globex" in pulled.description and "HTTP 400" in pulled.description
    warehouse = pipeline["warehouse"]
    staged = warehouse.query("select account_id from staging.stg_hcp_terraform__organizations where partition_key = %s "
                             "order by account_id", [partition(FAILING_DAY)])
    assert staged == [("acme-corp",), ("initech-free",), ("umbrella-corp",)]
    assert warehouse.query("select status, error like %s from raw.api_batches where account_id = %s and partition_key = %s",
                           ["%globex%HTTP 400%", "globex", partition(FAILING_DAY)]) == [("failed", True)]


def test_a_rerun_of_a_tick_replaces_its_own_rows(pipeline):
    assert pipeline["rerun"].success
    warehouse = pipeline["warehouse"]
    last = partition(TICKS - 1)
    assert warehouse.query("select count(*) from raw.api_batches where partition_key = %s and account_id = %s",
                           [last, "acme-corp"]) == [(2,)]
    assert warehouse.query("select count(*) from staging.stg_hcp_terraform__subscriptions where partition_key = %s "
                           "and account_id = %s", [last, "acme-corp"]) == [(1,)]


def test_a_past_tick_is_refused_because_the_vendor_keeps_no_history(pipeline):
    result = pipeline["refused"]
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    text = str(failure.step_failure_data.error)
    assert "2026-11-01" in text and "keeps no history" in text


# ---------- the facts


def test_every_model_test_passes_on_the_sandbox_history(pipeline):
    failed = [(r.model, t.name, t.sample) for r in pipeline["models"] for t in r.tests if not t.passed]
    assert failed == []


def test_the_plan_change_is_visible_in_one_query(pipeline):
    changes = pipeline["warehouse"].query(
        "select organization_name, partition_key, previous_feature_set_name, feature_set_name, feature_set_id "
        "from marts.fct_hcp_subscriptions where is_plan_change")
    assert changes == [("acme-corp", "2026-11-21", "Standard", "Plus", "fs-Pq8RpLuS2kVn4TmY")]


def test_entitlement_intervals_follow_the_plan_change(pipeline):
    rows = pipeline["warehouse"].query(
        "select valid_from, valid_to, ended_by, enabled, feature_set_name from marts.fct_subscription_entitlements "
        "where organization_name = %s and value_source = %s and entitlement_key = %s order by valid_from",
        ["acme-corp", "entitlement_set", "teams"])
    assert rows == [(FIRST_TICK, FIRST_TICK + timedelta(days=1), "changed", False, "Standard"),
                    (FIRST_TICK + timedelta(days=1), None, None, True, "Plus")]


def test_a_key_that_appears_later_opens_its_interval_then(pipeline):
    rows = pipeline["warehouse"].query(
        "select organization_name, valid_from, valid_to from marts.fct_subscription_entitlements "
        "where entitlement_key = %s and value_source = %s", ["infragraph", "entitlement_set"])
    # the sandbox adds it at 2026-11-24 00:00: the fourth tick (2026-11-24 10:00) is the first to see it
    assert sorted(rows) == [(name, FIRST_TICK + timedelta(days=3), None)
                            for name in ("acme-corp", "globex", "initech-free", "umbrella-corp")]


def test_the_failed_tick_shows_as_a_gap_in_globex_history(pipeline):
    rows = pipeline["warehouse"].query(
        "select valid_from, valid_to, last_seen_at, ended_by, starts_after_gap from marts.fct_subscription_entitlements "
        "where organization_name = %s and value_source = %s and entitlement_key = %s order by valid_from",
        ["globex", "entitlement_set", "sso"])
    second_tick, after_gap = FIRST_TICK + timedelta(days=1), FIRST_TICK + timedelta(days=3)
    assert rows == [(FIRST_TICK, second_tick, second_tick, "gap", False), (after_gap, None, after_gap, None, True)]


def test_a_rename_keeps_one_history(pipeline):
    warehouse = pipeline["warehouse"]
    assert warehouse.query("select organization_name, names_seen from marts.dim_hcp_organizations "
                           "where organization_external_id = %s", ["org-UmbrellaAs2Df4Gh6"]) == [("umbrella-corp", 2)]
    rows = warehouse.query("select organization_name, valid_from, valid_to from marts.fct_subscription_entitlements "
                           "where organization_external_id = %s and entitlement_key = %s and value_source = %s",
                           ["org-UmbrellaAs2Df4Gh6", "sso", "feature_set"])
    assert rows == [("umbrella-corp", FIRST_TICK, None)]


def test_managed_resources_grow_against_their_limit_in_the_shared_facts(pipeline):
    warehouse = pipeline["warehouse"]
    used = warehouse.query("select partition_key, used from marts.fct_units_used where vendor = %s and account_id = %s "
                           "and unit = %s order by partition_key", ["hcp_terraform", "acme-corp", "managed_resources"])
    assert [row[1] for row in used] == [990, 998, 1006, 1014]
    quota = warehouse.query("select partition_key, included from marts.fct_quota where vendor = %s and account_id = %s "
                            "and unit = %s order by partition_key", ["hcp_terraform", "acme-corp", "managed_resources"])
    # Standard has no cap (unlimited, null); Plus comes with a 3,000 contract
    assert quota == [("2026-11-20", None), ("2026-11-21", 3000), ("2026-11-22", 3000), ("2026-11-23", 3000)]
    free = warehouse.query("select count(*) from marts.fct_quota where account_id = %s", ["initech-free"])
    assert free == [(0,)]


# ---------- house rules


def test_replay_rederives_the_same_intervals_from_raw_alone(pipeline):
    warehouse, landing = pipeline["warehouse"], pipeline["landing"]
    with warehouse.transaction() as tx:
        for table in c.STAGING_TABLES:
            tx.execute(f"delete from {table}")
        tx.execute("drop table if exists marts.fct_subscription_entitlements")
    for key in sorted({row[0] for row in warehouse.query(
            "select partition_key from raw.api_batches where vendor = %s", ["hcp_terraform"])}):
        source.stage(warehouse, landing, key)
    build_models(warehouse)
    assert fact(warehouse) == pipeline["fact"]


def test_the_token_is_in_no_landed_file_and_no_table(pipeline):
    files = list(Path(pipeline["landing"].root).rglob("*.gz"))
    assert files and all(TOKEN_CANARY.encode() not in gzip.decompress(path.read_bytes()) for path in files)
    warehouse = pipeline["warehouse"]
    rows = warehouse.query("select request from raw.api_snapshots") + warehouse.query("select coalesce(error, '') from raw.api_batches")
    assert rows and all(TOKEN_CANARY not in row[0] for row in rows)


# ---------- definitions


def test_definitions_load_with_the_source_keys_and_resource():
    env = {"TFC_TOKEN": "x" * 20, "TFC_ORGANIZATIONS": "acme-corp, globex", "USAGE_WAREHOUSE_URL": "duckdb:///tmp/x.duckdb"}
    config = settings.load(env)
    defs = source.definitions(config)
    keys = {key.to_user_string() for assets_def in defs.assets for key in assets_def.keys}
    assert keys == {"raw/hcp_terraform__organizations", *(f"staging/stg_hcp_terraform__{name}" for name in (
        "organizations", "subscriptions", "entitlements", "workspaces", "fetches"))}
    assert [job.name for job in defs.jobs] == ["hcp_terraform_job"]
    assert [schedule.name for schedule in defs.schedules] == ["hcp_terraform_daily_schedule"]
    resource = defs.resources["hcp_terraform"]
    assert (resource.organizations, resource.base_url) == (["acme-corp", "globex"], "https://app.terraform.io")
    assert "x" * 20 not in repr(resource)
    assert {spec.name for a in defs.assets for spec in a.check_specs} == {"all_accounts_pulled", "all_accounts_parsed"}
    assert (source.KEY, source.BACKFILLABLE) == ("hcp_terraform", False)
    dg.Definitions.validate_loadable(dg.Definitions.merge(defs, dg.Definitions(resources={
        "warehouse": dg.ResourceDefinition.none_resource(), "landing": dg.ResourceDefinition.none_resource()})))
