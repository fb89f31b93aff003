"""Definitions (rung 4): the one code location loads from workspace.yaml and pyproject, pins its
asset keys, checks, jobs and schedules, and fails at load on a half-made configuration."""

from __future__ import annotations

import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml

from usage_pipeline import definitions, settings
from usage_pipeline.errors import ConfigError
from usage_pipeline.sandbox import SandboxServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def full_defs(tmp_path_factory) -> dg.Definitions:
    with SandboxServer() as server:
        env = {**server.env(), "USAGE_WAREHOUSE_URL": f"duckdb:///{tmp_path_factory.mktemp('d') / 'w.duckdb'}"}
        return definitions.build(settings.load(env))


def keys(defs: dg.Definitions) -> set[str]:
    return {key.to_user_string() for key in defs.resolve_all_asset_keys()}


def test_definitions_are_loadable_and_valid(full_defs):
    dg.Definitions.validate_loadable(full_defs)


def test_every_source_and_shared_fact_is_an_asset(full_defs):
    expected = {
        "raw/thousandeyes__usage", "raw/hcp_terraform__organizations", "raw/terraform_enterprise__usage_bundle",
        "raw/workato__usage", "staging/stg_thousandeyes__tests", "staging/stg_hcp_terraform__entitlements",
        "staging/stg_terraform_enterprise__metrics", "staging/stg_workato__usage",
        "marts/fct_quota", "marts/fct_units_used", "marts/fct_test_usage", "marts/fct_agent_usage",
        "marts/fct_agent_counts", "marts/fct_subscription_entitlements", "marts/fct_tfe_usage_metrics",
        "marts/fct_workato_usage", "marts/mart_usage_vs_quota", "marts/dim_accounts", "marts/dim_units",
        "marts/focus_saas_usage", "reports/usage_report",
    }
    assert expected <= keys(full_defs)


def test_model_lineage_runs_from_staging_to_the_shared_facts(full_defs):
    graph = full_defs.resolve_asset_graph()
    upstream = {key.to_user_string() for key in graph.get(dg.AssetKey(["marts", "fct_quota"])).parent_keys}
    assert upstream == {f"intermediate/int_{vendor}__quota" for vendor in settings.SOURCE_KEYS}
    mart_parents = {key.to_user_string() for key in graph.get(dg.AssetKey(["marts", "mart_usage_vs_quota"])).parent_keys}
    assert {"marts/fct_quota", "marts/fct_units_used"} <= mart_parents


def test_jobs_schedules_sensor_and_isolation_checks_are_pinned(full_defs):
    assert {job.name for job in full_defs.jobs} >= {
        "thousandeyes_job", "hcp_terraform_job", "terraform_enterprise_job", "workato_job", "marts_job"}
    schedules = {schedule.name: schedule.cron_schedule for schedule in full_defs.schedules}
    assert set(schedules) >= {"thousandeyes_hourly_schedule", "hcp_terraform_daily_schedule",
                              "terraform_enterprise_daily_schedule", "workato_hourly_schedule", "marts_schedule"}
    assert {sensor.name for sensor in full_defs.sensors} == {"usage_status_webhook_sensor"}
    check_keys = {(key.asset_key.to_user_string(), key.name) for key in full_defs.resolve_asset_graph().asset_check_keys}
    for raw in ("raw/thousandeyes__usage", "raw/hcp_terraform__organizations",
                "raw/terraform_enterprise__usage_bundle", "raw/workato__usage"):
        assert (raw, "all_accounts_pulled") in check_keys


def test_definitions_with_no_source_configured_still_load_the_models(tmp_path):
    defs = definitions.build(settings.load({"USAGE_WAREHOUSE_URL": f"duckdb:///{tmp_path / 'w.duckdb'}"}))
    dg.Definitions.validate_loadable(defs)
    assert "marts/fct_quota" in keys(defs)
    assert not any(key.startswith("raw/") for key in keys(defs))


def test_a_half_made_configuration_fails_at_load_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORKATO_TOKEN", "x")
    monkeypatch.delenv("WORKATO_WORKSPACE_IDS", raising=False)
    monkeypatch.delenv("WORKATO_EXTERNAL_IDS", raising=False)
    with pytest.raises(ConfigError, match="WORKATO_WORKSPACE_IDS or WORKATO_EXTERNAL_IDS"):
        definitions.defs()


def test_workspace_yaml_and_pyproject_point_at_the_same_module():
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module = workspace["load_from"][0]["python_module"]["module_name"]
    assert module == pyproject["tool"]["dagster"]["module_name"] == "usage_pipeline.definitions"
    assert pyproject["tool"]["dg"]["project"]["code_location_target_module"] == module


def test_no_resource_repr_shows_a_token(tmp_path):
    canary = "canary-definitions-7f3a"
    with SandboxServer(tokens={vendor: canary for vendor in settings.SOURCE_KEYS}) as server:
        env = {**server.env(), "USAGE_WAREHOUSE_URL": f"duckdb:///{tmp_path / 'w.duckdb'}"}
        defs = definitions.build(settings.load(env))
    for name, resource in defs.resources.items():
        assert canary not in repr(resource), name
        assert canary not in str(resource), name
