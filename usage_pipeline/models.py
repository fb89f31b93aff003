"""dbt_like_models/ → Dagster assets with asset checks, and the same builds outside Dagster.

The one rule: every write is one `warehouse.transaction()` under a lock on its target, so a
reader sees the old relation or the new one, never half of one. A table is built under a
temporary name and renamed into place in the transaction that drops the old one; an
incremental model deletes the keys its new rows carry and inserts them, in one transaction.
On PostgreSQL an incremental build costs O(new rows), not O(history): the rebuilt table is
ANALYZEd and an incremental model gets indexes on its unique_key and high-water mark (the
renamed table has neither), the merge's new rows are ANALYZEd, and nothing counts the whole
table afterwards.

Loading and validating the tree lives in `model_project.py`; YAML tests in `model_tests.py`.
This module is what the rest of the package calls:

    build_definitions(models_dir, *, vars, dialect) -> dg.Definitions   one asset per model, checks attached
    load_project(models_dir, *, vars) -> Project                        parsed models, graph, order
    run_models(warehouse, *, select, full_refresh, vars) -> [ModelResult]   dependency order, no Dagster
    run_tests(warehouse, model) -> [TestResult]
    unit_test(warehouse, model_name, *, given) -> pa.Table               a model on tiny inputs
"""

import secrets
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
from pydantic import Field

from usage_pipeline.errors import ModelError, UsagePipelineError
from usage_pipeline.model_project import NAME, Model, Project, Relation, to_dialect
from usage_pipeline.model_project import load_project as _load_project
from usage_pipeline.model_tests import TestResult, TestSpec, failing_rows_sql, run_test
from usage_pipeline.settings import PROJECT_ROOT
from usage_pipeline.warehouse import Tx, Warehouse, sql_type

__all__ = [
    "DEFAULT_MODELS_DIR", "Model", "ModelResult", "ModelRunConfig", "Project", "TestResult", "TestSpec",
    "build_definitions", "build_model", "load_project", "run_models", "run_tests", "unit_test",
]

DEFAULT_MODELS_DIR = PROJECT_ROOT / "dbt_like_models"


@dataclass(frozen=True)
class ModelResult:
    """What one model build did: how, how many rows, with which SQL, and its tests.

    `row_count` is the relation's total after a view, table or full build, and None after an
    incremental one, which reports what it changed instead (`rows_inserted`, `rows_deleted`).
    An exact total would mean counting the whole history on PostgreSQL (no zone maps), the
    very cost an incremental build exists to avoid; "previous total + inserted - deleted"
    would need the previous total from Dagster's event log, which is wrong as soon as the
    table is written outside Dagster (`usage-pipeline replay`, a full refresh from the CLI).
    """

    model: str
    relation: str
    materialized: str
    mode: str  # view | table | incremental | full_rebuild
    row_count: int | None
    columns: tuple[tuple[str, str], ...]
    sql: str
    seconds: float
    rows_inserted: int | None = None
    rows_deleted: int | None = None
    tests: tuple[TestResult, ...] = ()


def load_project(models_dir: Path | None = None, *, vars: Mapping[str, Any] | None = None) -> Project:
    """Parse and validate the model tree (default `dbt_like_models/`); ModelError names the file."""
    return _load_project(models_dir or DEFAULT_MODELS_DIR, vars=vars)


# ---------- building one model


def build_model(warehouse: Warehouse, project: Project, model: Model, *, full_refresh: bool = False) -> ModelResult:
    """Materialize `model` as its config says; a failure leaves the previous relation untouched.

    Everything happens in one transaction under the model's lock, including the look at
    what exists (which decides between an incremental merge and a rebuild), so two runs of
    one model queue up instead of both deciding on a stale picture.
    """
    started = time.monotonic()
    relation = model.relation
    materialized = model.config.materialized
    counts: tuple[int | None, int | None] = (None, None)
    row_count: int | None = None
    try:
        with warehouse.transaction() as tx:
            tx.lock(relation.dotted)
            _ensure_schema(tx, relation.schema)
            existing = _relation_kind(tx, relation)
            if materialized == "incremental":
                mode = "incremental" if existing == "table" and not full_refresh else "full_rebuild"
            else:
                mode = materialized
            rendered = project.render(model, is_incremental=mode == "incremental", target=tx.dialect)
            sql = to_dialect(rendered, tx.dialect, file=model.file, columns_of=_columns_of(tx))
            if mode == "view":
                _replace(tx, relation, [f"create view {relation} as\n{sql}"])
            elif mode == "incremental":
                columns = _columns(tx, relation)
                _ensure_indexes(tx, model, columns)  # a table built before they existed gets them once
                counts = _merge_increment(tx, model, sql, columns)
            else:
                tmp = Relation(relation.schema, f"{relation.name}__tmp_{secrets.token_hex(4)}")
                tx.execute(f"create table {tmp} as\n{sql}")
                _replace(tx, relation, [f'alter table {tmp} rename to "{relation.name}"'])
            # read in the same transaction: the numbers describe exactly what was committed
            if mode != "incremental":
                columns = _columns(tx, relation)
                if mode != "view":
                    _ensure_indexes(tx, model, columns)
                    if tx.dialect == "postgres":  # a renamed table has no statistics until autovacuum gets to it
                        tx.execute(f"analyze {relation}")
                row_count = int(tx.execute(f"select count(*) from {relation}")[0][0])
    except UsagePipelineError:
        raise
    except Exception as error:  # re-raised with the model's file, never swallowed
        reason = _first_line(error)
        raise ModelError(f"{model.file}: building {relation.dotted} on {warehouse.dialect} failed: {reason}") from error
    return ModelResult(
        model=model.name,
        relation=relation.dotted,
        materialized=materialized,
        mode=mode,
        row_count=row_count,
        columns=tuple(columns),
        sql=sql,
        seconds=round(time.monotonic() - started, 3),
        rows_inserted=counts[0],
        rows_deleted=counts[1],
    )


def _merge_increment(tx: Tx, model: Model, sql: str, target: Sequence[tuple[str, str]]) -> tuple[int, int]:
    """Delete the rows of `target` (its columns) whose unique_key the new rows carry, insert the new rows.

    On PostgreSQL this reads O(new rows) of the target, never its history: the new rows are
    ANALYZEd (a fresh table has no statistics, and the planner's guess of 200 distinct keys
    made it hash-join the whole target), and a single-column key is matched with
    `= any(array(select distinct ...))`, which the planner answers from the key's index (see
    `_ensure_indexes`). The delete counts what it removes (`returning`), so nothing scans
    the target twice. DuckDB reads the same `in (select distinct ...)` through its zone maps.
    """
    relation = model.relation
    new = Relation(relation.schema, f"{relation.name}__new_{secrets.token_hex(4)}")
    tx.execute(f"create table {new} as\n{sql}")
    if tx.dialect == "postgres":
        tx.execute(f"analyze {new}")
    target_columns, new_columns = [c for c, _ in target], [c for c, _ in _columns(tx, new)]
    if set(target_columns) != set(new_columns):
        added, removed = sorted(set(new_columns) - set(target_columns)), sorted(set(target_columns) - set(new_columns))
        raise ModelError(
            f"{model.file}: the columns of {relation.dotted} changed (added {added}, removed {removed}): "
            "run with full_refresh=True to rebuild it"
        )
    keys = ", ".join(_q(column) for column in model.config.unique_key)
    null_keys = " or ".join(f"{_q(column)} is null" for column in model.config.unique_key)
    nulls = tx.execute(f"select count(*) from {new} where {null_keys}")[0][0]
    if nulls:
        raise ModelError(f"{model.file}: {nulls} new row(s) have a null unique_key ({keys}): a key must never be null")
    if len(model.config.unique_key) == 1 and tx.dialect == "postgres":
        matching = f"{keys} = any(array(select distinct {keys} from {new}))"
    else:
        matching = f"({keys}) in (select distinct {keys} from {new})"
    deleted = tx.execute(f"with gone as (delete from {relation} where {matching} returning 1) select count(*) from gone")
    columns = ", ".join(_q(column) for column in target_columns)
    tx.execute(f"insert into {relation} ({columns}) select {columns} from {new}")
    inserted = tx.execute(f"select count(*) from {new}")[0][0]
    tx.execute(f"drop table {new}")
    return int(inserted), int(deleted[0][0])


# The column an incremental model's high-water mark is read from: `new_rows()` (macros/incremental.sql)
# takes `max(loaded_at)` of the model's own table, so every incremental model carries it.
HIGH_WATER_MARK = "loaded_at"


def _indexes(model: Model, columns: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Name -> columns of the indexes an incremental build reads; none for other materializations.

    The merge's delete looks the new keys up in the unique_key; `new_rows()` reads
    `max(loaded_at)` of the table itself, one index probe instead of a scan of its history.
    Names are stable (`<table>__unique_key`, `<table>__loaded_at`, within PostgreSQL's 63 bytes).
    """
    if model.config.materialized != "incremental" or not model.config.unique_key:
        return {}
    wanted = {"unique_key": model.config.unique_key}
    if HIGH_WATER_MARK in columns and model.config.unique_key != (HIGH_WATER_MARK,):
        wanted[HIGH_WATER_MARK] = (HIGH_WATER_MARK,)
    name = model.relation.name
    return {f"{name[: 61 - len(suffix)]}__{suffix}": index for suffix, index in wanted.items()}


def _ensure_indexes(tx: Tx, model: Model, columns: Sequence[tuple[str, str]]) -> None:
    """On PostgreSQL, create the indexes an incremental build reads (`_indexes`) that are missing.

    A full build renames a fresh table into place, which has no index (the old table's went
    with it, so the stable names are free again). DuckDB needs none: zone maps skip old row
    groups, and an ART index would only slow the merge's delete and insert down.
    """
    wanted = _indexes(model, [name for name, _type in columns])
    if tx.dialect != "postgres" or not wanted:
        return
    relation = model.relation
    # looked up first: `create index if not exists` would still take a share lock on the table
    existing = {row[0] for row in tx.execute(
        "select indexname from pg_indexes where schemaname = %s and tablename = %s", [relation.schema, relation.name])}
    for name, index_columns in wanted.items():
        if name not in existing:
            tx.execute(f"create index if not exists {_q(name)} on {relation} ({', '.join(_q(c) for c in index_columns)})")


# Views that depend on a relation (recursively, deepest last), with PostgreSQL's own quoting.
_PG_DEPENDENT_VIEWS = """
with recursive dependents(oid, depth) as (
    select rewrite.ev_class, 1
    from pg_depend as dep join pg_rewrite as rewrite on dep.objid = rewrite.oid
    where dep.refobjid = %s::regclass and rewrite.ev_class <> %s::regclass
    union
    select rewrite.ev_class, dependents.depth + 1
    from dependents
    join pg_depend as dep on dep.refobjid = dependents.oid
    join pg_rewrite as rewrite on dep.objid = rewrite.oid
    where rewrite.ev_class <> dependents.oid
)
select quote_ident(ns.nspname) || '.' || quote_ident(cls.relname), cls.relkind, pg_get_viewdef(cls.oid), max(depth)
from dependents
join pg_class as cls on cls.oid = dependents.oid
join pg_namespace as ns on ns.oid = cls.relnamespace
group by ns.nspname, cls.relname, cls.relkind, cls.oid
order by max(depth), 1
"""


def _replace(tx: Tx, relation: Relation, create: Sequence[str]) -> None:
    """Drop `relation` (table or view) and run `create`, keeping the views built on it.

    PostgreSQL binds views to the relation itself: dropping it needs CASCADE, which would
    drop every view downstream. Their definitions are read first and re-created after, in the
    same transaction, so BI views and view models survive a rebuild (or the rebuild fails).
    DuckDB binds views by name at query time: nothing to keep.
    """
    existing = _relation_kind(tx, relation)
    dependents: list[tuple] = []
    if existing is not None and tx.dialect == "postgres":
        dependents = tx.execute(_PG_DEPENDENT_VIEWS, [str(relation), str(relation)])
    if existing is not None:
        cascade = " cascade" if dependents else ""
        tx.execute(f"drop {'view' if existing == 'view' else 'table'} {relation}{cascade}")
    for statement in create:
        tx.execute(statement)
    for name, kind, definition, _depth in dependents:
        view = "materialized view" if kind == "m" else "view"
        tx.execute(f"create {view} {name} as\n{definition.strip().rstrip(';')}")


def _relation_kind(tx: Tx, relation: Relation) -> str | None:
    rows = tx.execute(
        "select table_type from information_schema.tables where table_schema = %s and table_name = %s",
        [relation.schema, relation.name],
    )
    return None if not rows else ("view" if rows[0][0] == "VIEW" else "table")


def _columns(tx: Tx, relation: Relation) -> list[tuple[str, str]]:
    """(name, type) of each column of `relation`, in order; empty when it does not exist."""
    rows = tx.execute(
        "select column_name, data_type from information_schema.columns where table_schema = %s and table_name = %s "
        "order by ordinal_position",
        [relation.schema, relation.name],
    )
    return [(row[0], row[1]) for row in rows]


def _columns_of(tx: Tx) -> Callable[[str, str], list[tuple[str, str]]]:
    """Columns of `schema.table` as the open transaction sees them (for sqlglot's star expansion)."""

    def columns_of(schema: str, table: str) -> list[tuple[str, str]]:
        return _columns(tx, Relation(schema, table))

    return columns_of


def _ensure_schema(tx: Tx, schema: str) -> None:
    """Create a layer's schema on first use; the lock is taken only then, so builds stay parallel."""
    if tx.execute("select count(*) from information_schema.schemata where schema_name = %s", [schema])[0][0]:
        return
    tx.lock("schema", schema)
    tx.execute(f"create schema if not exists {_q(schema)}")


def _q(name: str) -> str:
    """Quote a validated name; anything else is refused (identifiers never come from data)."""
    if not NAME.match(name):
        raise ModelError(f"refusing unsafe SQL identifier {name!r}")
    return f'"{name}"'


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ---------- outside Dagster


def run_models(
    warehouse: Warehouse,
    *,
    select: list[str] | None = None,
    full_refresh: bool = False,
    vars: Mapping[str, Any] | None = None,
    models_dir: Path | None = None,
    tests: bool = True,
    prepare: Callable[[Warehouse], None] | None = None,
) -> list[ModelResult]:
    """Build the selected models (default: all) in dependency order, each followed by its tests.

    Stops at the first model that fails to build (ModelError); failing tests are reported in
    the results, as Dagster reports failing checks, and never stop the run.
    """
    project = load_project(models_dir, vars=vars)
    if prepare is not None:
        prepare(warehouse)
    results = []
    for name in project.select(select):
        model = project.models[name]
        result = build_model(warehouse, project, model, full_refresh=full_refresh)
        if tests:
            result = replace(result, tests=tuple(run_tests(warehouse, model)))
        results.append(result)
    return results


def run_tests(
    warehouse: Warehouse,
    model: Model | str,
    *,
    names: Sequence[str] | None = None,
    models_dir: Path | None = None,
    vars: Mapping[str, Any] | None = None,
) -> list[TestResult]:
    """Run `model`'s YAML tests (or those in `names`) against its relation, on one read connection.

    A test whose query fails on the server becomes a failed result carrying the error (the
    other tests still run, on a fresh connection), so one bad `where:` hides no other check.
    """
    if isinstance(model, str):
        model = load_project(models_dir, vars=vars).model(model)
    relation = model.relation
    pending = [test for test in model.tests if names is None or test.name in names]
    results: list[TestResult] = []
    while True:
        with warehouse.connect(write=False) as connection:
            reader = Tx(connection, warehouse.dialect)
            columns = [name for name, _type in _columns(reader, relation)]
            if not columns:
                raise ModelError(f"{model.file}: {relation.dotted} does not exist yet: build the model before testing it")
            while pending:
                test = pending.pop(0)
                try:
                    results.append(run_test(reader, test, str(relation), columns=columns))
                except Exception as error:  # reported as this check's failure, with the server's words
                    sql, params = failing_rows_sql(test, str(relation), warehouse.dialect)
                    message = f"the test query failed on {warehouse.dialect}: {_first_line(error)}"
                    results.append(TestResult(test.model, test.name, test.kind, False, test.severity, 0, (), sql,
                                              tuple(params), error=message))
                    break  # PostgreSQL aborts the transaction: continue on a new connection
        if not pending:
            return results


def unit_test(
    warehouse: Warehouse,
    model_name: str,
    *,
    given: Mapping[str, pa.Table | list[dict[str, Any]]],
    models_dir: Path | None = None,
    vars: Mapping[str, Any] | None = None,
    is_incremental: bool = False,
) -> pa.Table:
    """Run one model on small input tables and return its output rows.

    `given` maps each input to rows: a ref by model name (`"int_quota"`), a source as
    `"source.table"` (`"staging.stg_workato__usage"`), and `"this"` (the model's own table) when
    `is_incremental=True`. Inputs live in a scratch schema dropped afterwards; the model's
    real tables are never read or written. Every input the model reads must be given, and only
    those (a typo would otherwise test nothing).
    """
    project = load_project(models_dir, vars=vars)
    model = project.model(model_name)
    needed = set(model.refs) | {f"{source}.{table}" for source, table in model.sources}
    if is_incremental:
        needed.add("this")
    if set(given) != needed:
        raise ModelError(
            f"{model.file}: unit test inputs must be exactly {sorted(needed)}; "
            f"missing {sorted(needed - set(given))}, unknown {sorted(set(given) - needed)}"
        )
    tables = {key: rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows) for key, rows in given.items()}
    for key, table in tables.items():
        if table.num_columns == 0:
            raise ModelError(f"{model.file}: unit test input {key!r} has no columns: give a pa.Table with a schema")
    scratch = f"unit_test_{secrets.token_hex(5)}"
    relations = {key: Relation(scratch, key.replace(".", "__")) for key in tables}
    try:
        with warehouse.transaction() as tx:
            tx.execute(f"create schema {_q(scratch)}")
            for key, table in tables.items():
                columns = ", ".join(f"{_q(f.name)} {sql_type(f.type, warehouse.dialect)}" for f in table.schema)
                tx.execute(f"create table {relations[key]} ({columns})")
                tx.load_arrow(relations[key].dotted, table)
            rendered = project.render(
                model, is_incremental=is_incremental, target=warehouse.dialect, relations=relations
            )
            sql = to_dialect(rendered, warehouse.dialect, file=model.file, columns_of=_columns_of(tx))
        return warehouse.query_arrow(sql)
    finally:
        with warehouse.transaction() as tx:
            tx.execute(f"drop schema if exists {_q(scratch)} cascade")


# ---------- Dagster


class ModelRunConfig(dg.Config):
    """Run configuration of a model asset (Launchpad)."""

    full_refresh: bool = Field(
        default=False, description="Rebuild incremental models from scratch (gives the same rows; reads all history)."
    )


def build_definitions(
    models_dir: Path | None = None, *, vars: Mapping[str, Any] | None = None, dialect: str = "duckdb",
    prepare: Callable[[Warehouse], None] | None = None,
) -> dg.Definitions:
    """One asset per model (key [layer, name]) with its YAML tests as asset checks.

    `dialect` only labels the assets (kinds); the SQL is written for the warehouse each run
    gets. The `warehouse` resource comes from the code location's Definitions. `prepare` runs
    before a model that reads a source (e.g. to create the staging tables of disabled sources).
    """
    project = load_project(models_dir, vars=vars)
    assets = [model_asset(project, project.models[name], dialect=dialect, prepare=prepare) for name in project.order]
    return dg.Definitions(assets=assets)


def model_asset(project: Project, model: Model, *, dialect: str = "duckdb",
                prepare: Callable[[Warehouse], None] | None = None) -> dg.AssetsDefinition:
    """The Dagster asset of one model; its checks run right after each materialization."""
    key = dg.AssetKey(list(model.asset_key))
    tests = {test.name: test for test in model.tests}
    spec = dg.AssetSpec(
        key=key,
        deps=[dg.AssetKey(list(upstream)) for upstream in project.upstream_keys(model)],
        description=model.description or f"SQL model {model.file}.",
        group_name=model.group,
        kinds={"sql", dialect},
        metadata=_definition_metadata(project, model),
    )
    check_specs = [
        dg.AssetCheckSpec(
            name=test.name,
            asset=key,
            description=test.description,
            # an error-severity failure stops downstream models, as `dbt build` does
            blocking=test.severity == "error",
            additional_deps=[dg.AssetKey(list(test.parent_key))] if test.parent_key else None,
        )
        for test in model.tests
    ]

    @dg.multi_asset(
        name=f"{model.layer}__{model.name}",
        specs=[spec],
        check_specs=check_specs,
        can_subset=True,  # the checks can run alone, without rebuilding the model
        pool="warehouse_writer",
    )
    def _model_asset(
        context: dg.AssetExecutionContext, config: ModelRunConfig, warehouse: Warehouse
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        if key in context.selected_asset_keys:
            if prepare is not None and model.sources:
                prepare(warehouse)
            result = build_model(warehouse, project, model, full_refresh=config.full_refresh)
            rows = (f"{result.row_count} rows" if result.row_count is not None
                    else f"{result.rows_inserted} rows inserted, {result.rows_deleted} deleted")
            context.log.info(f"{result.relation}: {result.mode}, {rows} in {result.seconds} s")
            yield dg.MaterializeResult(asset_key=key, metadata=_materialization_metadata(model, result))
        selected = [check.name for check in context.selected_asset_check_keys if check.name in tests]
        if selected:
            for outcome in run_tests(warehouse, model, names=selected):
                yield _check_result(key, outcome)

    return _model_asset


def _code_reference(path: Path) -> dg.CodeReferencesMetadataValue:
    """"Open in editor" links in the UI; the classes are beta in Dagster 1.13, so their warning is muted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.CodeReferencesMetadataValue(code_references=[dg.LocalFileCodeReference(file_path=str(path), line_number=1)])


def _definition_metadata(project: Project, model: Model) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/table_name": model.relation.dotted,
        "dagster/code_references": _code_reference(model.path),
        "rendered_sql": dg.MetadataValue.md(f"```sql\n{project.render(model)}\n```"),
        "materialized": model.config.materialized,
    }
    if model.columns:
        metadata["dagster/column_schema"] = _table_schema(model, [(c.name, c.data_type or "") for c in model.columns])
    if model.config.unique_key:
        metadata["unique_key"] = ", ".join(model.config.unique_key)
    return metadata


def _materialization_metadata(model: Model, result: ModelResult) -> dict[str, Any]:
    """`dagster/row_count` (the table's total) after a rebuild; what changed after an incremental build.

    Dagster reads `dagster/row_count` as the table's row count, so it is never an estimate:
    an incremental build reports `rows_inserted`/`rows_deleted` and leaves the total out
    (see ModelResult: counting it would read the whole history on PostgreSQL).
    """
    metadata: dict[str, Any] = {
        "dagster/column_schema": _table_schema(model, result.columns),
        "dagster/table_name": result.relation,
        "rendered_sql": dg.MetadataValue.md(f"```sql\n{result.sql}\n```"),
        "mode": result.mode,
        "duration_s": result.seconds,
    }
    if result.row_count is not None:
        metadata["dagster/row_count"] = result.row_count
    if result.rows_inserted is not None:
        metadata["rows_inserted"] = result.rows_inserted
        metadata["rows_deleted"] = result.rows_deleted
    return metadata


def _table_schema(model: Model, columns: Sequence[tuple[str, str]]) -> dg.TableSchema:
    descriptions = {column.name: column.description for column in model.columns}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=name, type=(data_type or "unknown").lower(), description=descriptions.get(name) or None)
            for name, data_type in columns
        ]
    )


def _check_result(key: dg.AssetKey, outcome: TestResult) -> dg.AssetCheckResult:
    """A check result that says what to look at: how many rows fail, a few of them, the SQL."""
    metadata: dict[str, Any] = {
        "failing_rows": outcome.failing_rows,
        "sql": dg.MetadataValue.md(
            f"```sql\n{outcome.sql}\n```" + (f"\n\nparameters: `{list(outcome.params)}`" if outcome.params else "")
        ),
    }
    if outcome.sample:
        metadata["failing_sample"] = dg.MetadataValue.md(outcome.sample_markdown())
        metadata["failing_sample_json"] = dg.MetadataValue.json(outcome.sample_json())
    if outcome.error:
        metadata["error"] = outcome.error
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.WARN if outcome.severity == "warn" else dg.AssetCheckSeverity.ERROR,
        description=outcome.error,
        metadata=metadata,
    )
