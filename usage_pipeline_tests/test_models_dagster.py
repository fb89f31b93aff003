"""Models as Dagster assets with asset checks (rungs 3-4; materializations on both engines).

Proves: one asset per model keyed [layer, name] with deps exactly from ref()/source(), vendor
and marts groups, kinds, docs and column descriptions as metadata; the YAML tests are checks on
the model's asset that run right after each materialization with severity, failing count,
sample and SQL; a failing error check stops downstream models; the definitions validate.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from model_fixtures import QUOTA_SCHEMA, USAGE_SCHEMA, model_tree, write_staging
from test_models import BATCH_1, QUOTA
from test_models_checks import ACCOUNTS_SCHEMA, BAD, GOOD, load

from usage_pipeline.models import build_definitions, load_project
from usage_pipeline.warehouse import Warehouse


def key(*parts: str) -> dg.AssetKey:
    return dg.AssetKey(list(parts))


@pytest.fixture
def basic(tmp_path: Path) -> Path:
    return model_tree("basic", tmp_path)


def specs_by_key(defs: dg.Definitions) -> dict[dg.AssetKey, dg.AssetSpec]:
    return {spec.key: spec for assets_def in defs.assets for spec in assets_def.specs}


def test_asset_graph_deps_match_refs_and_sources(basic: Path) -> None:
    specs = specs_by_key(build_definitions(basic))
    deps = {k.to_user_string(): sorted(d.asset_key.to_user_string() for d in spec.deps) for k, spec in specs.items()}
    assert deps == {
        "intermediate/int_demo__quota": ["staging/stg_demo__quota"],
        "intermediate/int_demo__units_used": ["staging/stg_demo__usage"],
        "marts/fct_quota": ["intermediate/int_demo__quota"],
        "marts/fct_units_used": ["intermediate/int_demo__units_used"],
        "marts/mart_usage_vs_quota": ["marts/fct_quota", "marts/fct_units_used"],
    }
    # the same graph load_project computed, so the UI and run_models agree
    project = load_project(basic)
    for model in project.models.values():
        assert sorted(d.asset_key for d in specs[key(*model.asset_key)].deps) == sorted(key(*k) for k in project.upstream_keys(model))


def test_assets_carry_groups_kinds_docs_and_columns(basic: Path) -> None:
    specs = specs_by_key(build_definitions(basic, dialect="postgres"))
    assert {k.to_user_string(): s.group_name for k, s in specs.items()} == {
        "intermediate/int_demo__quota": "demo", "intermediate/int_demo__units_used": "demo",
        "marts/fct_quota": "marts", "marts/fct_units_used": "marts", "marts/mart_usage_vs_quota": "marts",
    }
    mart = specs[key("marts", "mart_usage_vs_quota")]
    assert mart.kinds == {"sql", "postgres"}
    assert mart.description == "Usage against quota per day. One row per day x account x unit."
    assert mart.metadata["dagster/table_name"] == "marts.mart_usage_vs_quota"
    assert "qualify row_number()" in mart.metadata["rendered_sql"].md_str
    columns = {c.name: c.description for c in mart.metadata["dagster/column_schema"].columns}
    assert columns == {"status": "ok, at_risk, over or no_quota.", "account_id": "The vendor's tenant."}
    assert not mart.partitions_def


def test_yaml_tests_are_checks_on_the_model_asset(basic: Path) -> None:
    defs = build_definitions(basic)
    checks = {(spec.asset_key.to_user_string(), spec.name): spec for a in defs.assets for spec in a.check_specs}
    assert set(checks) == {
        ("intermediate/int_demo__units_used", "not_null_snapshot_id"),
        ("marts/fct_quota", "not_null_account_id"),
        ("marts/fct_units_used", "unique_account_id_partition_key_unit"),
        ("marts/fct_units_used", "not_null_snapshot_id"),
        ("marts/fct_units_used", "accepted_values_unit"),
        ("marts/fct_units_used", "expression_is_true_used_gte_0"),
        ("marts/mart_usage_vs_quota", "unique_day_account_id_unit"),
        ("marts/mart_usage_vs_quota", "accepted_values_status"),
        ("marts/mart_usage_vs_quota", "relationships_account_id_fct_units_used"),
    }
    relationship = checks[("marts/mart_usage_vs_quota", "relationships_account_id_fct_units_used")]
    assert [d.asset_key for d in relationship.additional_deps] == [key("marts", "fct_units_used")]
    assert relationship.blocking  # severity error
    assert "every account_id exists in ref('fct_units_used').account_id" in relationship.description


def test_definitions_validate_loadable(basic: Path, tmp_path: Path) -> None:
    resources = dg.Definitions(resources={"warehouse": Warehouse(url=f"duckdb:///{tmp_path / 'w.duckdb'}")})
    dg.Definitions.validate_loadable(dg.Definitions.merge(build_definitions(basic), resources))


def test_materialize_builds_models_and_runs_their_checks(warehouse: Warehouse, basic: Path) -> None:
    write_staging(warehouse, "stg_demo__usage", BATCH_1, USAGE_SCHEMA)
    write_staging(warehouse, "stg_demo__quota", QUOTA, QUOTA_SCHEMA)
    defs = build_definitions(basic, dialect=warehouse.dialect)
    result = dg.materialize(list(defs.assets), resources={"warehouse": warehouse})
    assert result.success
    materialized = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
    fct = materialized[key("marts", "fct_units_used")]
    assert fct["dagster/row_count"].value == 4
    assert fct["mode"].text == "full_rebuild"
    types = {c.name: c.type for c in fct["dagster/column_schema"].schema.columns}
    assert types["used"] == "bigint" and types["snapshot_id"] in {"varchar", "text"}
    described = {c.name: c.description for c in fct["dagster/column_schema"].schema.columns}
    assert described["used"] == "Units used so far in the period."
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 9 and all(e.passed for e in evaluations)


def test_full_refresh_is_run_config(warehouse: Warehouse, basic: Path) -> None:
    write_staging(warehouse, "stg_demo__usage", BATCH_1, USAGE_SCHEMA)
    write_staging(warehouse, "stg_demo__quota", QUOTA, QUOTA_SCHEMA)
    assets = list(build_definitions(basic).assets)
    dg.materialize(assets, resources={"warehouse": warehouse})
    config = dg.RunConfig(ops={"marts__fct_units_used": {"config": {"full_refresh": True}}})
    again = dg.materialize(assets, resources={"warehouse": warehouse}, run_config=config, selection="marts/fct_units_used")
    modes = [e.materialization.metadata["mode"].text for e in again.get_asset_materialization_events()]
    assert modes == ["full_rebuild"]
    plain = dg.materialize(assets, resources={"warehouse": warehouse}, selection="marts/fct_units_used")
    [incremental] = [e.materialization.metadata for e in plain.get_asset_materialization_events()]
    assert incremental["mode"].text == "incremental"
    # what the run changed (the rows inside new_rows()' look-back replace themselves); no total,
    # which would cost a count of the whole history on PostgreSQL
    assert (incremental["rows_inserted"].value, incremental["rows_deleted"].value) == (3, 3)
    assert "dagster/row_count" not in incremental


def test_failing_checks_report_count_sample_sql_and_severity(warehouse: Warehouse, tmp_path: Path) -> None:
    load(warehouse, BAD)
    defs = build_definitions(model_tree("checks", tmp_path))
    result = dg.materialize(list(defs.assets), resources={"warehouse": warehouse}, raise_on_error=False)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    warn = evaluations["accepted_values_unit"]
    assert (warn.passed, warn.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert warn.metadata["failing_rows"].value == 1
    assert "| 5 | a | runs |" in warn.metadata["failing_sample"].md_str
    assert warn.metadata["failing_sample_json"].data[0]["unit"] == "runs"
    assert 'not in (%s, %s)' in warn.metadata["sql"].md_str and "['tasks', 'jobs']" in warn.metadata["sql"].md_str
    error = evaluations["unique_id"]
    assert (error.passed, error.severity, error.metadata["failing_rows"].value) == (False, dg.AssetCheckSeverity.ERROR, 2)


def test_a_failing_error_check_stops_downstream_models(warehouse: Warehouse, tmp_path: Path) -> None:
    load(warehouse, GOOD)
    root = model_tree("checks", tmp_path)
    (root / "marts" / "mart_downstream.sql").write_text("select count(*) as n from {{ ref('dim_account') }}")
    # a duplicated account: dim_account's unique test (severity error) fails
    write_staging(warehouse, "stg_check__accounts", [{"account_id": "a", "account_name": "x"}] * 2, ACCOUNTS_SCHEMA)
    result = dg.materialize(list(build_definitions(root).assets), resources={"warehouse": warehouse}, raise_on_error=False)
    assert not result.success
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {"unique_account_id", "relationships_account_id_dim_account"}
    built = {e.asset_key for e in result.get_asset_materialization_events()}
    assert key("marts", "dim_account") in built and key("marts", "mart_downstream") not in built


def test_checks_run_alone_without_rebuilding(warehouse: Warehouse, tmp_path: Path) -> None:
    load(warehouse, GOOD)
    assets = list(build_definitions(model_tree("checks", tmp_path)).assets)
    dg.materialize(assets, resources={"warehouse": warehouse})
    result = dg.materialize(assets, resources={"warehouse": warehouse}, selection=dg.AssetSelection.all_asset_checks())
    assert result.success
    assert result.get_asset_materialization_events() == []
    assert len(result.get_asset_check_evaluations()) == 11


def test_the_project_definitions_validate(tmp_path: Path) -> None:
    """The real dbt_like_models/ tree becomes loadable assets and checks (names, groups, deps)."""
    resources = dg.Definitions(resources={"warehouse": Warehouse(url=f"duckdb:///{tmp_path / 'w.duckdb'}")})
    defs = build_definitions(vars={"at_risk_share": 0.8})
    dg.Definitions.validate_loadable(dg.Definitions.merge(defs, resources))
    assert key("marts", "fct_quota") in specs_by_key(defs)
