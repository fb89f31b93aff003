"""Every YAML test type passes on good rows and fails on bad rows with the right count (rung 6, both engines).

The `checks/` tree holds one table with each test type (both multi-column unique spellings,
column and model expressions, `where:` with a literal %, warn and error severities) and a
dimension for `relationships`.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from model_fixtures import model_tree, write_staging

from usage_pipeline.models import run_models
from usage_pipeline.warehouse import Warehouse

ROWS_SCHEMA = pa.schema([("id", pa.int64()), ("account_id", pa.string()), ("unit", pa.string()), ("used", pa.int64()),
                         ("day", pa.string())])
ACCOUNTS_SCHEMA = pa.schema([("account_id", pa.string()), ("account_name", pa.string())])
ACCOUNTS = [{"account_id": "a", "account_name": "Acme"}, {"account_id": "b", "account_name": "Beta"}]
GOOD = [
    (1, "a", "tasks", 10, "01-01"),
    (2, "a", "jobs", 5, "01-01"),
    (3, "b", "tasks", 0, "01-01"),
]
BAD = GOOD + [
    (4, "c", "tasks", -1, "01-01"),       # account c unknown; negative tasks
    (None, "a", "jobs", 3, "01-02"),      # null id
    (1, "b", "jobs", 2000, "01-02"),      # id 1 again; used >= 1000
    (5, "a", "runs", None, "01-03"),      # unit not accepted; null used but unit is not ta%
    (6, "b", "tasks", None, "01-04"),     # null used where unit like 'ta%'
    (7, "a", "tasks", 1, "01-01"),        # (a, tasks, 01-01) again
    (2, "b", "jobs", 1, "01-05"),         # id 2 again, and (2, jobs) again
]
# check -> (failing rows, severity): the count each test must report on BAD
EXPECTED_ON_BAD = {
    ("fct_checked", "not_null_id"): (1, "error"),
    ("fct_checked", "unique_id"): (2, "error"),                      # duplicated values: 1 and 2
    ("fct_checked", "relationships_account_id_dim_account"): (1, "error"),
    ("fct_checked", "accepted_values_unit"): (1, "warn"),
    ("fct_checked", "expression_is_true_used_gte_0"): (1, "error"),  # only where unit = 'tasks'
    ("fct_checked", "not_null_used"): (1, "error"),                  # only where unit like 'ta%'
    ("fct_checked", "unique_account_id_unit_day"): (1, "error"),
    ("fct_checked", "unique_id_unit"): (1, "warn"),
    ("fct_checked", "used_below_1000"): (1, "error"),
}


def load(warehouse: Warehouse, rows: list[tuple]) -> None:
    write_staging(warehouse, "stg_check__rows", [dict(zip(ROWS_SCHEMA.names, row)) for row in rows], ROWS_SCHEMA)
    write_staging(warehouse, "stg_check__accounts", ACCOUNTS, ACCOUNTS_SCHEMA)


def outcomes(warehouse: Warehouse, root: Path) -> dict:
    return {(t.model, t.name): t for result in run_models(warehouse, models_dir=root) for t in result.tests}


def test_every_test_passes_on_good_rows(warehouse: Warehouse, tmp_path: Path) -> None:
    load(warehouse, GOOD)
    results = outcomes(warehouse, model_tree("checks", tmp_path))
    assert set(results) == set(EXPECTED_ON_BAD) | {("dim_account", "not_null_account_id"), ("dim_account", "unique_account_id")}
    assert {key: (t.passed, t.failing_rows) for key, t in results.items() if not t.passed} == {}


def test_every_test_fails_on_bad_rows_with_its_count_and_severity(warehouse: Warehouse, tmp_path: Path) -> None:
    load(warehouse, BAD)
    results = outcomes(warehouse, model_tree("checks", tmp_path))
    failing = {key: (t.failing_rows, t.severity) for key, t in results.items() if not t.passed}
    assert failing == EXPECTED_ON_BAD
    duplicates = results[("fct_checked", "unique_id")]
    assert sorted((row["id"], row["n_records"]) for row in duplicates.sample) == [(1, 2), (2, 2)]
    orphan = results[("fct_checked", "relationships_account_id_dim_account")].sample
    assert [(row["id"], row["account_id"]) for row in orphan] == [(4, "c")]
    assert "| id | account_id | unit | used | day |" in results[("fct_checked", "not_null_id")].sample_markdown()


def test_sample_is_capped_at_five_rows_but_the_count_is_not(warehouse: Warehouse, tmp_path: Path) -> None:
    load(warehouse, [(None, "a", "tasks", 1, f"01-{day:02d}") for day in range(1, 9)])
    result = outcomes(warehouse, model_tree("checks", tmp_path))[("fct_checked", "not_null_id")]
    assert (result.failing_rows, len(result.sample)) == (8, 5)


def test_a_test_on_a_column_the_model_dropped_fails_at_run_time(warehouse: Warehouse, tmp_path: Path) -> None:
    # Loaded fine (the model selects via `*`, so its columns are unknown at load); fails when run.
    load(warehouse, GOOD)
    root = model_tree("checks", tmp_path)
    (root / "marts" / "fct_checked.sql").write_text(
        "{{ config(materialized='table') }}\nselect * from {{ source('staging', 'stg_check__rows') }}"
    )
    yml = root / "marts" / "_models.yml"
    yml.write_text(yml.read_text().replace("      - name: day\n", "      - name: day\n        data_tests: [not_null]\n"
                                           "      - name: gone\n        data_tests: [not_null]\n"))
    result = outcomes(warehouse, root)[("fct_checked", "not_null_gone")]
    assert (result.passed, result.error) == (False, 'column(s) gone not in "marts"."fct_checked": the model no longer selects them')


def test_a_test_query_failing_on_the_server_is_a_failed_check(warehouse: Warehouse, tmp_path: Path) -> None:
    load(warehouse, GOOD)
    root = model_tree("checks", tmp_path)
    yml = root / "marts" / "_models.yml"
    yml.write_text(yml.read_text().replace('{expression: "used < 1000", name: used_below_1000}',
                                           '{expression: "no_such_fn(used) < 1000", name: used_below_1000}'))
    results = outcomes(warehouse, root)
    broken = results[("fct_checked", "used_below_1000")]
    assert not broken.passed and broken.error.startswith(f"the test query failed on {warehouse.dialect}")
    assert "no_such_fn" in broken.error
    # the tests after it still ran (PostgreSQL: on a fresh connection)
    assert results[("fct_checked", "unique_id")].passed


@pytest.mark.parametrize("quote", [
    # dbt quotes accepted values by default: '1', '2' must still compare with an integer column
    None,
    "true",
    # quote: false binds them as numbers
    "false",
])
def test_accepted_values_on_an_integer_column(warehouse: Warehouse, tmp_path: Path, quote: str | None) -> None:
    load(warehouse, GOOD)
    root = model_tree("checks", tmp_path)
    yml = root / "marts" / "_models.yml"
    quote_arg = f", quote: {quote}" if quote else ""
    yml.write_text(yml.read_text().replace(
        "        description: Row key.\n        data_tests: [not_null, unique]\n",
        "        description: Row key.\n        data_tests:\n          - not_null\n          - unique\n"
        f"          - accepted_values: {{values: [1, 2]{quote_arg}, name: known_ids}}\n",
        1,
    ))
    result = outcomes(warehouse, root)[("fct_checked", "known_ids")]
    assert (result.failing_rows, [row["id"] for row in result.sample]) == (1, [3])
