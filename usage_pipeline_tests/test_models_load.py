"""The model tree is parsed, rendered and validated at definition load (rung 1: pure, no warehouse).

Proves: discovery (layers, groups, vendor `_sources.yml` merged), Jinja rendering (ref, source,
config, is_incremental, this, var, macros), dependency order, DuckDB -> PostgreSQL
transpilation, and that every kind of broken tree fails at load with a ModelError naming the
file and what was wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlglot
from model_fixtures import model_tree

from usage_pipeline.errors import ModelError
from usage_pipeline.model_project import to_dialect
from usage_pipeline.models import DEFAULT_MODELS_DIR, load_project


@pytest.fixture
def basic(tmp_path: Path) -> Path:
    return model_tree("basic", tmp_path)


def test_load_project_discovers_models_groups_and_order(basic: Path) -> None:
    project = load_project(basic)
    assert project.order == ("int_demo__quota", "int_demo__units_used", "fct_quota", "fct_units_used", "mart_usage_vs_quota")
    groups = {name: model.group for name, model in project.models.items()}
    # staging/intermediate group by vendor subfolder; marts form one group
    assert groups == {
        "int_demo__quota": "demo", "int_demo__units_used": "demo",
        "fct_quota": "marts", "fct_units_used": "marts", "mart_usage_vs_quota": "marts",
    }
    mart = project.models["mart_usage_vs_quota"]
    assert mart.refs == ("fct_quota", "fct_units_used")
    assert mart.asset_key == ("marts", "mart_usage_vs_quota")
    assert project.models["int_demo__quota"].sources == (("staging", "stg_demo__quota"),)
    assert project.models["fct_units_used"].config.unique_key == ("account_id", "partition_key")
    assert project.models["int_demo__quota"].config.materialized == "view"  # dbt's default


def test_sources_from_every_sources_yml_are_merged(basic: Path) -> None:
    project = load_project(basic)
    # one from the root file, one from staging/demo/_sources.yml
    assert set(project.sources) == {("staging", "stg_demo__usage"), ("staging", "stg_demo__quota")}
    assert project.sources[("staging", "stg_demo__quota")].asset_key == ("staging", "stg_demo__quota")
    assert project.sources[("staging", "stg_demo__quota")].file == "staging/demo/_sources.yml"


def test_render_resolves_ref_source_this_macros_and_incremental_branch(basic: Path) -> None:
    project = load_project(basic)
    fct = project.models["fct_units_used"]
    full, incremental = project.render(fct), project.render(fct, is_incremental=True)
    assert 'from "intermediate"."int_demo__units_used"' in full
    assert "where" not in full.split("final as")[0]
    # the project macro new_rows() reads the high-water mark from {{ this }}
    assert re.search(r'loaded_at > \(\s*select coalesce\(max\(loaded_at\).*from "marts"\."fct_units_used"', incremental, re.S)
    assert 'from "staging"."stg_demo__quota"' in project.render(project.models["int_demo__quota"])
    mart = project.render(project.models["mart_usage_vs_quota"])
    assert "round(used / nullif(included, 0), 4)" in mart  # the fixture's own macro
    assert "included * 0.8" in mart  # var() default


@pytest.mark.parametrize("model", ["fct_test_usage", "fct_agent_usage", "fct_agent_counts"])
@pytest.mark.parametrize("target, is_incremental, expected", [
    # PostgreSQL's planner answers any(array(...)) from the staging index on partition_key
    ("postgres", True, "partition_key=any(array(selectpartition_keyfromtouched))"),
    # a full build keeps the hash join: an array of every tick probed per row would be quadratic
    ("postgres", False, "partition_keyin(selectpartition_keyfromtouched)"),
    # DuckDB skips old row groups with its zone maps either way
    ("duckdb", True, "partition_keyin(selectpartition_keyfromtouched)"),
    ("duckdb", False, "partition_keyin(selectpartition_keyfromtouched)"),
])
def test_per_tick_facts_read_touched_ticks_through_the_index_only_incrementally_on_postgres(
        model: str, target: str, is_incremental: bool, expected: str) -> None:
    project = load_project(DEFAULT_MODELS_DIR)
    fact = project.model(model)
    sql = to_dialect(project.render(fact, is_incremental=is_incremental, target=target), target, file=fact.file)
    squeezed = re.sub(r"\s+", "", sql.lower())
    assert squeezed.count(expected) == 2  # the usage rows and the model's own staging table
    assert squeezed.count("fromtouched") == 2


def test_var_overrides_the_default(basic: Path) -> None:
    project = load_project(basic, vars={"at_risk_share": 0.95})
    assert "included * 0.95" in project.render(project.models["mart_usage_vs_quota"])


def test_select_follows_the_graph(basic: Path) -> None:
    project = load_project(basic)
    assert project.select(["fct_quota"]) == ["fct_quota"]
    assert project.select(["+fct_quota"]) == ["int_demo__quota", "fct_quota"]
    assert project.select(["int_demo__units_used+"]) == ["int_demo__units_used", "fct_units_used", "mart_usage_vs_quota"]
    assert project.select(["group:demo"]) == ["int_demo__quota", "int_demo__units_used"]
    assert project.select(["layer:marts"]) == ["fct_quota", "fct_units_used", "mart_usage_vs_quota"]
    with pytest.raises(ModelError, match="no model named 'fct_qouta'.*did you mean 'fct_quota'"):
        project.select(["fct_qouta"])


def test_tests_become_specs_with_dbt_names_and_severity(basic: Path) -> None:
    project = load_project(basic)
    tests = {t.name: t for t in project.models["fct_units_used"].tests}
    assert set(tests) == {"unique_account_id_partition_key_unit", "not_null_snapshot_id", "accepted_values_unit",
                          "expression_is_true_used_gte_0"}
    assert tests["expression_is_true_used_gte_0"].where == "used is not null"
    relationship = next(t for t in project.models["mart_usage_vs_quota"].tests if t.kind == "relationships")
    assert relationship.parent == '"marts"."fct_units_used"'
    assert relationship.parent_key == ("marts", "fct_units_used")


@pytest.mark.parametrize("sql, expected", [
    # QUALIFY has no PostgreSQL spelling: sqlglot moves it into a subquery
    ("select a from t qualify row_number() over (partition by a order by b) = 1", "WHERE _w = 1"),
    # DuckDB `/` is float division; PostgreSQL would divide integers
    ("select a / b as r from t", "CAST(a AS DOUBLE PRECISION) / b"),
    ("select a::bigint as a from t", "CAST(a AS BIGINT)"),
    ("select ts + interval 1 day as d from t", "ts + INTERVAL '1 DAY'"),
    ("select date_diff('day', a, b) as d from t", "CAST(b AS DATE) - CAST(a AS DATE)"),
    ("select count(*) filter (where a > 1) as n from t", "COUNT(*) FILTER(WHERE a > 1)"),
    # fixed here, not in models: sqlglot 30 writes DATE_FROM_PARTS, unknown to PostgreSQL
    ("select make_date(2026, 1, 31) as d", "MAKE_DATE(2026, 1, 31)"),
    # PostgreSQL rounds to n digits only numerics
    ("select round(a / b, 2) as r from t", "CAST(ROUND(CAST(CAST(a AS DOUBLE PRECISION) / b AS DECIMAL), 2) AS DOUBLE PRECISION)"),
    # sqlglot would write `INTERVAL DAY` and lose n
    ("select d + interval (n) day as d from t", "d + ( n ) * INTERVAL '1 DAY'"),
])
def test_to_dialect_writes_postgres(sql: str, expected: str) -> None:
    written = " ".join(to_dialect(sql, "postgres", file="x.sql").split())
    assert expected in written
    assert to_dialect(sql, "duckdb", file="x.sql") == sql  # DuckDB runs the model as written


def test_to_dialect_expands_star_before_moving_qualify() -> None:
    # Regression: `select *` + qualify leaked sqlglot's `_w` helper column into PostgreSQL output.
    sql = 'select * from "marts"."f" qualify row_number() over (partition by a order by b) = 1'
    written = to_dialect(sql, "postgres", file="x.sql", columns_of=lambda schema, table: [("a", ""), ("b", "")])
    outer = sqlglot.parse_one(written, read="postgres")
    assert outer.named_selects == ["a", "b"]
    with pytest.raises(ModelError, match="x.sql: `select \\*` with `qualify`.*list the columns"):
        to_dialect(sql, "postgres", file="x.sql", columns_of=lambda schema, table: [])


LOAD_ERRORS = [
    # a ref() to a model that does not exist, with the closest name
    ("marts/fct_quota.sql", "select * from {{ ref('int_demo__qouta') }}",
     r"marts/fct_quota.sql:1: ref\('int_demo__qouta'\) names no model \(did you mean 'int_demo__quota'\?\)"),
    # a cycle names its path
    ("intermediate/demo/int_demo__quota.sql", "select * from {{ ref('fct_quota') }}",
     r"ref\(\) cycle: (fct_quota -> int_demo__quota -> fct_quota|int_demo__quota -> fct_quota -> int_demo__quota)"),
    # YAML that does not parse: file and line
    ("marts/_models.yml", "models:\n  - name: fct_quota\n   description: [unclosed\n",
     r"marts/_models.yml:3: YAML does not parse"),
    # a test on a column the model does not have
    ("marts/_models.yml", "models:\n  - name: fct_quota\n    data_tests:\n      - unique: {column_names: [account_id, nope]}\n",
     r"marts/_models.yml: test unique_account_id_nope on model 'fct_quota' names column 'nope'"),
    # a documented column the SQL does not select
    ("marts/_models.yml", "models:\n  - name: fct_quota\n    columns:\n      - name: acount_id\n        data_tests: [not_null]\n",
     r"marts/_models.yml: documents column 'acount_id', which marts/fct_quota.sql does not select"),
    ("marts/_models.yml", "models:\n  - name: fct_quota\n    columns:\n      - name: unit\n        data_tests: [not_nul]\n",
     r"marts/_models.yml: model 'fct_quota', column 'unit': unknown test type 'not_nul'"),
    ("marts/fct_quota.sql", "{{ config(materialized='ephemeral') }} select 1 as a",
     r"marts/fct_quota.sql: unknown materialization 'ephemeral': use one of view, table, incremental"),
    ("marts/fct_quota.sql", "{{ config(materialized='incremental') }} select 1 as a",
     r"marts/fct_quota.sql: an incremental model needs unique_key"),
    ("marts/fct_quota.sql", "{{ config(materialised='table') }} select 1 as a",
     r"marts/fct_quota.sql: unknown config key\(s\) \['materialised'\]"),
    ("marts/fct_quota.sql", "select * from {{ source('staging', 'stg_demo__nope') }}",
     r"marts/fct_quota.sql:1: source\('staging', 'stg_demo__nope'\) is not declared in any _sources.yml"),
    ("marts/fct_quota.sql", "select 1 as a; select 2 as b", r"marts/fct_quota.sql: a model is exactly one SELECT; found SELECT, SELECT"),
    ("marts/fct_quota.sql", "create table x as select 1 as a", r"marts/fct_quota.sql: a model is exactly one SELECT; found CREATE"),
    ("marts/fct_quota.sql", "select from where", r"marts/fct_quota.sql: sqlglot cannot parse the rendered SQL"),
    ("marts/fct_quota.sql", "select\n1 as a {% if %}", r"marts/fct_quota.sql:2: Jinja syntax error"),
    ("marts/fct_quota.sql", "select\n{{ nope }} as a", r"marts/fct_quota.sql:2: 'nope' is undefined"),
    ("marts/fct_quota.sql", "select {{ var('threshold') }} as a", r"marts/fct_quota.sql:1: var\('threshold'\) is not set and has no default"),
    # DuckDB-only constructs sqlglot would pass to PostgreSQL unchanged: refused, naming the construct
    ("marts/fct_quota.sql", "select arg_max(used, observed_at) as u from {{ ref('int_demo__units_used') }}",
     r"marts/fct_quota.sql: cannot run on PostgreSQL: arg_max\(\)/max_by\(\)"),
    ("marts/fct_quota.sql", "select * exclude (vendor) from {{ ref('int_demo__quota') }}",
     r"marts/fct_quota.sql: cannot run on PostgreSQL: select \* exclude"),
    ("marts/fct_quota.sql", "select unit, count(*) as n from {{ ref('int_demo__quota') }} group by all",
     r"marts/fct_quota.sql: cannot run on PostgreSQL: group by all"),
    ("marts/fct_quota.sql", "select included::hugeint as i from {{ ref('int_demo__quota') }}",
     r"marts/fct_quota.sql: cannot run on PostgreSQL: type INT128"),
    # what sqlglot itself reports as unsupported
    ("marts/fct_quota.sql", "select any_value(unit) as u from {{ ref('int_demo__quota') }}",
     r"marts/fct_quota.sql: sqlglot cannot write this for PostgreSQL: .*IGNORE NULLS"),
    ("reports/x.sql", "select 1 as a", r"reports/x.sql: models live under staging/, intermediate/, marts/"),
    ("marts/int_demo__quota.sql", "select 1 as a", r"marts/int_demo__quota.sql: model name 'int_demo__quota' is also used by"),
    ("marts/Fct_Bad.sql", "select 1 as a", r"marts/Fct_Bad.sql: model name 'Fct_Bad' must be lower-case snake_case"),
    ("marts/extra.yml", "models:\n  - name: fct_qota\n", r"marts/extra.yml: describes model 'fct_qota', which has no .sql file \(did you mean 'fct_quota'\?\)"),
    ("marts/extra.yml", "models:\n  - name: fct_quota\n", r"marts/extra.yml: model 'fct_quota' is already described in marts/_models.yml"),
    ("marts/extra.yml", "sources:\n  - name: staging\n    tables:\n      - name: stg_demo__usage\n",
     r"marts/extra.yml: source table staging.stg_demo__usage is also declared in _sources.yml"),
    ("marts/_models.yml", "models:\n  - name: fct_quota\n    columns:\n      - name: unit\n        data_tests:\n"
     "          - accepted_values: {values: [a], severity: warn}\n",
     r"test accepted_values: put `severity` under `config:`"),
    ("marts/_models.yml", "models:\n  - name: fct_quota\n    columns:\n      - name: unit\n        data_tests:\n"
     "          - accepted_values: {values: [a], config: {severity: fatal}}\n",
     r"severity must be warn or error, got 'fatal'"),
    ("marts/_models.yml", "models:\n  - name: fct_quota\n    columns:\n      - name: unit\n        data_tests:\n"
     "          - relationships: {to: \"ref('dim_nope')\", field: unit}\n",
     r"marts/_models.yml: test relationships_unit_dim_nope on model 'fct_quota': .*no model named 'dim_nope'"),
    ("marts/_models.yml", "models:\n  - name: fct_quota\n    columns:\n      - name: unit\n        data_tests:\n"
     "          - relationships: {to: \"ref('int_demo__quota')\", field: nope}\n",
     r"field 'nope' is not a column of intermediate.int_demo__quota"),
    ("marts/_models.yml", "models:\n  - name: fct_quota\n    columns:\n      - name: unit\n        data_tests:\n"
     "          - not_null\n          - not_null: {config: {where: \"unit <> 'x'\"}}\n",
     r"two tests on model 'fct_quota' are named 'not_null_unit': give one a `name:`"),
    ("marts/_models.yml", "models:\n  - name: fct_quota\n    columns:\n      - name: unit\n        data_tests:\n"
     "          - not_null: {config: {where: \"unit <> \"}}\n",
     r"test not_null_unit: `unit <>` is not a SQL predicate"),
    ("macros/more.sql", "{% macro ref(x) %}{% endmacro %}", r"macros/more.sql: macro 'ref' would hide the built-in ref\(\)"),
]


@pytest.mark.parametrize("path, content, message", LOAD_ERRORS, ids=[m[:40] for _, _, m in LOAD_ERRORS])
def test_broken_tree_fails_at_load_naming_file(basic: Path, path: str, content: str, message: str) -> None:
    target = basic / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    with pytest.raises(ModelError, match=message):
        load_project(basic)


def test_unknown_materialization_in_yaml_config_fails(basic: Path) -> None:
    # dbt lets YAML configure a model; config() in the SQL wins, so use a model without one
    models_yml = basic / "intermediate" / "demo" / "_models.yml"
    models_yml.write_text(models_yml.read_text().replace(
        "  - name: int_demo__quota\n", "  - name: int_demo__quota\n    config: {materialized: snapshot}\n"))
    with pytest.raises(ModelError, match="int_demo__quota.sql: unknown materialization 'snapshot'"):
        load_project(basic)


def test_missing_models_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="models directory does not exist"):
        load_project(tmp_path / "nowhere")


def test_the_project_models_load() -> None:
    """The real dbt_like_models/ tree loads: its refs, sources, YAML tests and SQL are valid."""
    project = load_project(DEFAULT_MODELS_DIR)
    assert all(model.layer in {"staging", "intermediate", "marts"} for model in project.models.values())
