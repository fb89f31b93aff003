"""YAML data tests (dbt's generic tests): parse them, write their SQL, run them.

The one rule: a test is a query returning the rows that break it; zero rows is a pass. The
query is written once, in SQL both engines accept (identifiers quoted from validated names,
values bound as parameters); only the user's `where:`/`expression:` fragments are transpiled.

    not_null                                      (column)     rows where the column is null
    unique                                        (column)     values that occur more than once
    unique: {column_names: [...]}                 (model)      key combinations seen more than once
    dbt_utils.unique_combination_of_columns: {combination_of_columns: [...]}   (same, dbt_utils spelling)
    accepted_values: {values: [...]}              (column)     rows with a value outside the list
    relationships: {to: ref('m'), field: f}       (column)     rows whose value is missing in m.f
    expression_is_true: {expression: "..."}       (model: the predicate; column: `<col> <expression>`)

Each may carry `config: {severity: warn|error, where: "..."}` and a `name:`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from collections.abc import Sequence
from typing import Any

import sqlglot
from sqlglot.errors import SqlglotError

from usage_pipeline.errors import ModelError

TEST_KINDS = ("not_null", "unique", "unique_combination", "accepted_values", "relationships", "expression_is_true")
SEVERITIES = ("warn", "error")
SAMPLE_ROWS = 5
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_SPELLINGS = {
    "not_null": "not_null",
    "unique": "unique",
    "accepted_values": "accepted_values",
    "relationships": "relationships",
    "expression_is_true": "expression_is_true",
    "dbt_utils.expression_is_true": "expression_is_true",
    "unique_combination_of_columns": "unique_combination",
    "dbt_utils.unique_combination_of_columns": "unique_combination",
}
_ARGUMENTS = {
    "not_null": set(),
    "unique": {"column_names"},
    "accepted_values": {"values", "quote"},
    "relationships": {"to", "field"},
    "expression_is_true": {"expression"},
    "unique_combination": {"combination_of_columns"},
}
_CONFIG_KEYS = {"severity", "where", "enabled", "tags", "meta"}
_OPERATOR_WORDS = {">=": " gte ", "<=": " lte ", "<>": " ne ", "!=": " ne ", ">": " gt ", "<": " lt ", "=": " eq "}


@dataclass(frozen=True)
class TestSpec:
    """One YAML test of one model, ready to become an asset check."""

    __test__ = False  # not a pytest class, despite the name

    name: str
    kind: str
    model: str
    file: str
    columns: tuple[str, ...] = ()
    values: tuple[Any, ...] = ()
    to: str | None = None
    field: str | None = None
    expression: str | None = None
    severity: str = "error"
    where: str | None = None
    parent: str | None = None  # relationships: the quoted relation `to:` resolves to
    parent_key: tuple[str, ...] | None = None

    @property
    def description(self) -> str:
        """What the check asserts, in words, for the Dagster UI."""
        columns = ", ".join(self.columns)
        text = {
            "not_null": f"{columns} is never null",
            "unique": f"{columns} is unique",
            "unique_combination": f"({columns}) is unique",
            "accepted_values": f"{columns} is one of: {', '.join(map(str, self.values))}",
            "relationships": f"every {columns} exists in {self.to}.{self.field}",
            "expression_is_true": f"every row satisfies: {' '.join(filter(None, [columns, self.expression]))}",
        }[self.kind]
        suffix = f" (rows where {self.where})" if self.where else ""
        return f"{text}{suffix}. Severity {self.severity}; from {self.file}."


@dataclass(frozen=True)
class TestResult:
    """The outcome of one test: a pass, or how many rows fail and a few of them."""

    __test__ = False

    model: str
    name: str
    kind: str
    passed: bool
    severity: str
    failing_rows: int
    sample: tuple[dict[str, Any], ...]
    sql: str
    params: tuple[Any, ...] = ()
    error: str | None = None

    def sample_markdown(self) -> str:
        """The failing sample as a markdown table (values as text)."""
        if not self.sample:
            return ""
        names = list(self.sample[0])
        lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
        for row in self.sample:
            lines.append("| " + " | ".join(str(row[n]).replace("|", "\\|") for n in names) + " |")
        return "\n".join(lines)

    def sample_json(self) -> list[dict[str, Any]]:
        return json.loads(json.dumps(list(self.sample), default=str))


# ---------- parsing


def parse_tests(entries: Any, *, column: str | None, file: str, model: str) -> list[TestSpec]:
    """Turn a `data_tests:`/`tests:` list (model or column level) into specs."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ModelError(f"{file}: tests of model {model!r} must be a list")
    specs = []
    for entry in entries:
        spec = _parse_test(entry, column=column, file=file, model=model)
        if spec is not None:
            specs.append(spec)
    return specs


def _parse_test(entry: Any, *, column: str | None, file: str, model: str) -> TestSpec | None:
    where_at = f"{file}: model {model!r}" + (f", column {column!r}" if column else "")
    if isinstance(entry, str):
        spelling, args = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        spelling, args = next(iter(entry.items()))
        args = dict(args or {})
    else:
        raise ModelError(f"{where_at}: a test is a name or a one-key mapping, got {entry!r}")
    if spelling not in _SPELLINGS:
        raise ModelError(f"{where_at}: unknown test type {spelling!r}: use one of {', '.join(sorted(_SPELLINGS))}")
    kind = _SPELLINGS[spelling]
    if "arguments" in args:  # dbt 1.10 nests test arguments under `arguments:`
        args = {**args.pop("arguments"), **args}
    config = args.pop("config", None) or {}
    name = args.pop("name", None)
    column = args.pop("column_name", column)
    if set(config) - _CONFIG_KEYS:
        raise ModelError(f"{where_at}: test {spelling} has unknown config {sorted(set(config) - _CONFIG_KEYS)}")
    for key in ("severity", "where"):
        if key in args:
            raise ModelError(f"{where_at}: test {spelling}: put `{key}` under `config:`")
    if config.get("enabled") is False:
        return None
    if kind == "unique" and "column_names" in args:
        kind = "unique_combination"
        args["combination_of_columns"] = args.pop("column_names")
    unknown = set(args) - _ARGUMENTS[kind]
    if unknown:
        raise ModelError(f"{where_at}: test {spelling} has unknown argument(s) {sorted(unknown)}")
    severity = str(config.get("severity", "error")).lower()
    if severity not in SEVERITIES:
        raise ModelError(f"{where_at}: test {spelling}: severity must be warn or error, got {severity!r}")
    fields = _build_spec(kind, spelling, args, column=column, where_at=where_at)
    where = _optional_text(config.get("where"))
    spec = TestSpec(name="", model=model, file=file, severity=severity, where=where, **fields)
    if name is not None and not re.match(r"^[A-Za-z0-9_]+$", str(name)):
        raise ModelError(f"{where_at}: test name {name!r} may use only letters, digits and _")
    spec = replace(spec, name=str(name) if name else _default_name(spec))
    for fragment in (spec.where, _expression_sql(spec)):
        if fragment:
            fragment_sql(fragment, "postgres", where=f"{where_at}: test {spec.name}")
    return spec


def _build_spec(kind: str, spelling: str, args: dict, *, column: str | None, where_at: str) -> dict[str, Any]:
    if kind == "unique_combination":
        columns = args.get("combination_of_columns")
        if not isinstance(columns, list) or not columns:
            raise ModelError(f"{where_at}: test {spelling} needs a non-empty column list")
        return {"kind": kind, "columns": _checked_columns(columns, where_at)}
    if kind == "expression_is_true":
        expression = _optional_text(args.get("expression"))
        if not expression:
            raise ModelError(f"{where_at}: test {spelling} needs `expression:`")
        columns = _checked_columns([column] if column else [], where_at)
        return {"kind": kind, "columns": columns, "expression": expression}
    if column is None:
        raise ModelError(f"{where_at}: test {spelling} belongs under a column (or give column_name:)")
    spec: dict[str, Any] = {"kind": kind, "columns": _checked_columns([column], where_at)}
    if kind == "accepted_values":
        values = args.get("values")
        if not isinstance(values, list) or not values:
            raise ModelError(f"{where_at}: accepted_values needs a non-empty `values:` list")
        # dbt quotes values unless quote: false, so YAML `1` still matches a text column
        spec["values"] = tuple(values if args.get("quote") is False else [str(v) for v in values])
    if kind == "relationships":
        if not isinstance(args.get("to"), str) or not isinstance(args.get("field"), str):
            raise ModelError(f"{where_at}: relationships needs `to: ref('model')` and `field: column`")
        spec["to"], spec["field"] = args["to"], _checked_columns([args["field"]], where_at)[0]
    return spec


def _checked_columns(columns: list[Any], where_at: str) -> tuple[str, ...]:
    for column in columns:
        if not isinstance(column, str) or not _NAME.match(column):
            raise ModelError(f"{where_at}: {column!r} is not a plain snake_case column name")
    return tuple(columns)


def _optional_text(value: Any) -> str | None:
    return str(value).strip() if value is not None and str(value).strip() else None


def _default_name(spec: TestSpec) -> str:
    """dbt-like check names: `not_null_unit`, `unique_snapshot_id_unit`, `expression_is_true_used_gte_0`."""
    kind = "unique" if spec.kind == "unique_combination" else spec.kind
    parts = [kind, *spec.columns]
    if spec.kind == "relationships":
        parent = re.findall(r"['\"]([a-z0-9_]+)['\"]", spec.to or "")
        parts.append("_" + (parent[-1] if parent else "parent"))
    if spec.expression:
        text = spec.expression
        for operator, word in _OPERATOR_WORDS.items():
            text = text.replace(operator, word)
        parts.append(text)
    return re.sub(r"[^a-z0-9]+", "_", "_".join(parts).lower()).strip("_")[:80]


# ---------- SQL


def _q(name: str) -> str:
    if not _NAME.match(name):
        raise ModelError(f"refusing unsafe column name {name!r}")
    return f'"{name}"'


def _expression_sql(spec: TestSpec) -> str | None:
    if spec.kind != "expression_is_true":
        return None
    return f"{_q(spec.columns[0])} {spec.expression}" if spec.columns else str(spec.expression)


def fragment_sql(text: str, dialect: str, *, where: str) -> str:
    """A user's SQL predicate (`where:`, `expression:`), proven to parse and written for `dialect`."""
    try:
        tree = sqlglot.parse_one(text, read="duckdb")
        return text if dialect == "duckdb" else tree.sql(dialect="postgres")
    except SqlglotError as error:
        reason = str(error).splitlines()[0]
        raise ModelError(f"{where}: `{text}` is not a SQL predicate sqlglot can read: {reason}") from None


def failing_rows_sql(test: TestSpec, relation: str, dialect: str) -> tuple[str, list[Any]]:
    """The query returning `test`'s failing rows in `relation`, with its bound parameters.

    Identifiers come from validated names; `%s` placeholders carry the values; the user's
    fragments are transpiled for `dialect` (and `%` escaped, as psycopg expects).
    """
    where = f"\n    where {_fragment(test.where, dialect, test)}" if test.where else ""
    model = f"(\n    select * from {relation}{where}\n) as model"
    columns = ", ".join(_q(c) for c in test.columns)
    params: list[Any] = []
    if test.kind == "not_null":
        sql = f"select * from {model}\nwhere {_q(test.columns[0])} is null"
    elif test.kind == "unique":
        column = _q(test.columns[0])
        sql = (
            f"select {column}, count(*) as n_records from {model}\n"
            f"where {column} is not null\ngroup by {column}\nhaving count(*) > 1"
        )
    elif test.kind == "unique_combination":
        sql = f"select {columns}, count(*) as n_records from {model}\ngroup by {columns}\nhaving count(*) > 1"
    elif test.kind == "accepted_values":
        placeholders = ", ".join(["%s"] * len(test.values))
        sql = f"select * from {model}\nwhere {_q(test.columns[0])} not in ({placeholders})"
        params = list(test.values)
    elif test.kind == "relationships":
        column, field = _q(test.columns[0]), _q(str(test.field))
        sql = (
            f"select * from {model}\nwhere model.{column} is not null\n"
            f"  and not exists (select 1 from {test.parent} as parent where parent.{field} = model.{column})"
        )
    else:
        sql = f"select * from {model}\nwhere not ({_fragment(_expression_sql(test), dialect, test)})"
    return sql, params


def _fragment(text: str | None, dialect: str, test: TestSpec) -> str:
    sql = fragment_sql(str(text), dialect, where=f"{test.file}: test {test.name}")
    return sql.replace("%", "%%")  # psycopg-style SQL: a literal % is written %%


def run_test(reader: Any, test: TestSpec, relation: str, *, columns: Sequence[str]) -> TestResult:
    """Run one test on an open connection (`warehouse.Tx`): the failing count and a sample, in one query.

    `columns` are the relation's actual columns: a test on a column the model no longer
    selects fails with that reason instead of an SQL error.
    """
    sql, params = failing_rows_sql(test, relation, reader.dialect)
    missing = [column for column in test.columns if column not in columns]
    if missing:
        return TestResult(
            test.model, test.name, test.kind, False, test.severity, 0, (), sql, tuple(params),
            error=f"column(s) {', '.join(missing)} not in {relation}: the model no longer selects them",
        )
    # count(*) over () is computed before the limit: the total comes with the sample
    probe = f"select failing.*, count(*) over () as failing_total from (\n{sql}\n) as failing\nlimit {SAMPLE_ROWS}"
    rows = reader.execute(probe, params)
    names = _result_columns(test, columns)
    sample = tuple(dict(zip(names, row[:-1])) for row in rows)
    failing = int(rows[0][-1]) if rows else 0
    return TestResult(
        test.model, test.name, test.kind, failing == 0, test.severity, failing, sample, sql, tuple(params)
    )


def _result_columns(test: TestSpec, columns: Sequence[str]) -> list[str]:
    """The column names of `failing_rows_sql`'s result (the reader returns bare tuples)."""
    if test.kind in ("unique", "unique_combination"):
        return [*test.columns, "n_records"]
    return list(columns)
