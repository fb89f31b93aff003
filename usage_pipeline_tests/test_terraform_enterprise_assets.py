"""TFE raw and staging assets end to end against the sandbox, on DuckDB and PostgreSQL (rung 3-5).

Proves: `dg.materialize` of the daily tick under the sandbox clock, repeated on several
simulated days, lands every bundle and leaves exactly one row per TFE snapshot × metric in
the mart, with no 429 from the server; past ticks are refused without a request; an HTML
page, a truncated body or a snapshot without `id` fails with its own message while the raw
body stays landed byte for byte (and the last good staging rows stay); the definitions load.
"""

from __future__ import annotations

import gzip
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from usage_pipeline import definitions, models, settings, timeutil
from usage_pipeline.landing import LandingStore
from usage_pipeline.sandbox import SandboxServer
from usage_pipeline.sandbox.server import HTML_ERROR_PAGE
from usage_pipeline.sources import terraform_enterprise
from usage_pipeline.sources.terraform_enterprise import TerraformEnterpriseClient, constants
from usage_pipeline.sources.terraform_enterprise.assets import (
    RAW_KEY,
    raw_terraform_enterprise_usage_bundle,
    stg_terraform_enterprise_usage_bundle,
)
from usage_pipeline.warehouse import Warehouse

TFE_MODELS = ["fct_tfe_usage_metrics", "int_terraform_enterprise__units_used", "int_terraform_enterprise__quota"]
ASSETS = [raw_terraform_enterprise_usage_bundle, stg_terraform_enterprise_usage_bundle]


@pytest.fixture
def server():
    with SandboxServer() as sandbox:
        yield sandbox


def tick(server: SandboxServer, warehouse: Warehouse, landing: LandingStore, *,
         partition_key: str | None = None, token: str | None = None) -> dg.ExecuteInProcessResult:
    """One scheduled tick at the sandbox's now: raw + staging for the latest closed day."""
    with timeutil.use_clock(server.clock):
        key = partition_key or terraform_enterprise.tick_partition_keys(timeutil.utcnow())[0]
        return dg.materialize(
            ASSETS, partition_key=key, raise_on_error=False, instance=dg.DagsterInstance.ephemeral(),
            resources={"terraform_enterprise": TerraformEnterpriseClient(url=server.base_url,
                                                                          token=token or server.tokens[constants.KEY]),
                       "landing": landing, "warehouse": warehouse},
        )


def failure_messages(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """Failed steps by step key, and failed asset checks as `<asset>:<check>`, with their messages."""
    messages = {}
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            messages[event.step_key] = " | ".join(filter(None, [error.message, error.cause.message if error.cause else ""]))
    for check in result.get_asset_check_evaluations():
        if not check.passed:
            messages[f"{check.asset_key.path[-1]}:{check.check_name}"] = (
                f"{check.description} | {check.metadata['failures'].value}")
    return messages


def count(warehouse: Warehouse, sql: str) -> int:
    return warehouse.query(sql)[0][0]


def raw_rows(warehouse: Warehouse) -> list[tuple]:
    return warehouse.query("select snapshot_id, partition_key, status, landing_path, bytes from raw.api_snapshots "
                           "where vendor = 'terraform_enterprise' order by fetched_at, snapshot_id")


def test_daily_ticks_end_to_end_keep_one_row_per_snapshot_and_metric(server, warehouse, landing):
    keys = []
    for _ in range(3):
        result = tick(server, warehouse, landing)
        assert result.success, failure_messages(result)
        keys.append(result.dagster_run.tags["dagster/partition"])
        results = models.run_models(warehouse, select=TFE_MODELS)
        assert all(test.passed for result in results for test in result.tests)
        server.clock.advance(timedelta(days=1))
    assert keys == ["2026-11-19", "2026-11-20", "2026-11-21"]
    assert [status for _, _, status, _, _ in raw_rows(warehouse)] == [200, 200, 200]
    assert [r.status for r in server.requests_for(constants.KEY)] == [200, 200, 200]  # no 429, no retry
    distinct = count(warehouse, "select count(*) from (select distinct tfe_snapshot_id, metric_key "
                                "from staging.stg_terraform_enterprise__metrics) as d")
    staged = count(warehouse, "select count(*) from staging.stg_terraform_enterprise__metrics")
    facts = count(warehouse, "select count(*) from marts.fct_tfe_usage_metrics")
    assert staged > 2 * distinct and facts == distinct
    assert count(warehouse, "select count(distinct tfe_snapshot_id) from marts.fct_tfe_usage_metrics") == 9  # 7 + 2
    # a checksum above 2^63 arrives exactly, as text
    big = warehouse.query("select snapshot_checksum from marts.fct_tfe_usage_metrics "
                          "where metric_key = 'workspacecount' and length(snapshot_checksum) = 20")
    assert big and all(int(value) >= 2**63 for (value,) in big)
    # checks of the raw and staging assets
    checks = {(e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {("terraform_enterprise__usage_bundle", "all_accounts_pulled"): True,
                      ("stg_terraform_enterprise__metrics", "all_accounts_parsed"): True}


def test_past_tick_is_refused_without_a_request(server, warehouse, landing):
    result = tick(server, warehouse, landing, partition_key="2026-11-01")
    assert not result.success
    [message] = failure_messages(result).values()
    assert "partition 2026-11-01 is not the current observation tick (2026-11-19)" in message
    assert "keeps no history for past ticks" in message
    assert server.requests_for(constants.KEY) == [] and raw_rows(warehouse) == []


@pytest.mark.parametrize("fault, params, failed_step, message", [
    # a proxy's maintenance page in front of the System API port
    ("html", {}, "raw__terraform_enterprise__usage_bundle", "is an HTML page, not a JSON usage bundle"),
    # the body cut off half-way
    ("malformed_json", {}, "raw__terraform_enterprise__usage_bundle",
     "is not valid JSON: it ends before the JSON is complete (truncated response?)"),
    # a snapshot without its dedup key: valid JSON, refused by the parser in staging, which then
    # stages the last good pull and fails its check (not the step) naming the account and cause
    ("missing_field", {"field": "snapshots.id"}, "stg_terraform_enterprise__metrics:all_accounts_parsed",
     "bundle snapshot #0 (timestamp 2026-11-13T20:30:04.386332646-03:30) has no 'id' field"),
])
def test_bad_bundle_fails_with_its_message_and_raw_stays_landed(server, warehouse, landing, fault, params,
                                                                 failed_step, message):
    good = tick(server, warehouse, landing)
    assert good.success
    staged_before = count(warehouse, "select count(*) from staging.stg_terraform_enterprise__metrics")
    server.clock.advance(timedelta(hours=1))  # the same tick, pulled again an hour later
    server.faults.add(f"{constants.KEY}:{constants.BUNDLE_PATH}", fault, **params)
    result = tick(server, warehouse, landing)
    failures = failure_messages(result)
    assert result.success == (":" in failed_step)  # a failed check is not a failed step
    assert list(failures) == [failed_step]
    assert message in failures[failed_step]
    assert "terraform_enterprise [account 127.0.0.1]" in failures[failed_step]
    # raw first, never lost: the bad body is landed byte for byte and indexed
    [_, (snapshot_id, partition_key, status, landing_path, size)] = raw_rows(warehouse)
    assert (partition_key, status) == ("2026-11-19", 200)
    body = gzip.decompress((Path(landing.root) / landing_path).read_bytes())
    assert len(body) == size and snapshot_id in failures[failed_step]
    if fault == "html":
        assert body == HTML_ERROR_PAGE
    # staging still holds the last good bundle's rows
    assert count(warehouse, "select count(*) from staging.stg_terraform_enterprise__metrics") == staged_before


def test_definitions_load_with_only_tfe_configured(server, tmp_path):
    config = settings.load({"TFE_SYSTEM_API_URL": server.base_url, "TFE_SYSTEM_API_TOKEN": server.tokens[constants.KEY],
                            "USAGE_WAREHOUSE_URL": f"duckdb:///{tmp_path / 'w.duckdb'}",
                            "USAGE_LANDING_DIR": str(tmp_path / "landing")})
    defs = definitions.build(config)
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert {"raw/terraform_enterprise__usage_bundle", "staging/stg_terraform_enterprise__bundles",
            "staging/stg_terraform_enterprise__snapshots", "staging/stg_terraform_enterprise__metrics",
            "marts/fct_tfe_usage_metrics", "intermediate/int_terraform_enterprise__units_used",
            "intermediate/int_terraform_enterprise__quota"} <= keys
    raw = defs.resolve_assets_def(RAW_KEY)
    assert raw.op.pool == "terraform_enterprise_api"
    assert defs.resolve_assets_def(dg.AssetKey(["staging", "stg_terraform_enterprise__metrics"])).op.pool == "warehouse_writer"
    assert defs.resolve_schedule_def("terraform_enterprise_daily_schedule").cron_schedule == "10 1 * * *"
    resource = defs.resources["terraform_enterprise"]
    assert server.tokens[constants.KEY] not in repr(resource)  # an EnvVar: the UI shows the name only
    metrics_model = defs.resolve_assets_def(dg.AssetKey(["marts", "fct_tfe_usage_metrics"]))
    assert {dep.to_user_string() for dep in metrics_model.asset_deps[metrics_model.key]} == {
        "staging/stg_terraform_enterprise__bundles", "staging/stg_terraform_enterprise__snapshots",
        "staging/stg_terraform_enterprise__metrics"}


def test_canary_token_never_reaches_raw_staging_logs_or_errors(warehouse, landing, caplog):
    canary = "canary-tfe-9f8e7d6c5b4a3210"
    with SandboxServer(tokens={constants.KEY: canary}) as server:
        ok = tick(server, warehouse, landing)
        server.tokens[constants.KEY] = "rotated-on-the-server-0000"  # ours is now rejected: the failure path
        server.clock.advance(timedelta(hours=1))
        failed = tick(server, warehouse, landing, token=canary)
    assert ok.success and not failed.success
    assert "System API token rejected or expired" in " ".join(failure_messages(failed).values())
    places = [caplog.text, " ".join(failure_messages(failed).values())]
    places += [repr(row) for row in warehouse.query("select * from raw.api_snapshots")]
    places += [repr(row) for row in warehouse.query("select * from raw.api_batches")]
    places += [repr(row) for row in warehouse.query("select * from staging.stg_terraform_enterprise__bundles")]
    places += [gzip.decompress(path.read_bytes()).decode() for path in Path(landing.root).rglob("*.json.gz")]
    assert len(places) > 6 and not [place for place in places if canary in place]
