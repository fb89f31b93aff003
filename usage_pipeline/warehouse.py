"""The one warehouse resource: DuckDB (embedded default) or PostgreSQL, chosen by URL.

The rules it enforces: writes happen in one transaction (`transaction()`), loads are bulk
(Arrow scans into DuckDB, `COPY` into PostgreSQL, never row by row), a partition replace is
delete + insert in one transaction under a lock, and DuckDB has one writer at a time with
short-lived connections: a file held by another process is waited for, then reported plainly.
"""

from __future__ import annotations

import io
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.csv as pa_csv
from pydantic import Field, PrivateAttr

from usage_pipeline.errors import WarehouseBusyError, WarehouseError
from usage_pipeline.settings import PROJECT_ROOT

BOOTSTRAP_DIR = PROJECT_ROOT / "sql" / "bootstrap"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
_COPY_BATCH_ROWS = 100_000


def check_identifier(name: str) -> str:
    """Allow only plain lower-case `schema.table` / column names into SQL text."""
    if not _IDENTIFIER.match(name):
        raise WarehouseError(f"refusing unsafe SQL identifier {name!r}")
    return name


def quote_column(name: str) -> str:
    """A checked column name, quoted so reserved words (e.g. `at`) are fine on both engines."""
    return f'"{check_identifier(name)}"'


def sql_type(arrow_type: pa.DataType, dialect: str) -> str:
    """Map an Arrow type to the column type both engines understand."""
    if pa.types.is_int64(arrow_type) or pa.types.is_uint32(arrow_type):
        return "BIGINT"
    if pa.types.is_integer(arrow_type):
        return "INTEGER"
    if pa.types.is_floating(arrow_type):
        return "DOUBLE PRECISION" if dialect == "postgres" else "DOUBLE"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_decimal(arrow_type):
        return f"NUMERIC({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "TEXT" if dialect == "postgres" else "VARCHAR"
    raise WarehouseError(f"no warehouse column type for Arrow type {arrow_type}")


class Tx:
    """One open write transaction. Values are always bound parameters (`%s`)."""

    def __init__(self, connection: Any, dialect: str) -> None:
        self._con = connection
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        if self.dialect == "duckdb":
            result = self._con.execute(*_duckdb_args(sql, params))
            return result.fetchall() if result.description else []
        with self._con.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def lock(self, *names: str) -> None:
        """Serialize writers of the same target (PostgreSQL advisory lock held until commit)."""
        self.lock_all([names])

    def lock_all(self, targets: Sequence[Sequence[str]]) -> None:
        """`lock` for many targets in one round trip, in a stable order (no deadlock between two callers)."""
        if self.dialect == "postgres" and targets:
            keys = sorted({"|".join(names) for names in targets})
            self.execute("select count(pg_advisory_xact_lock(hashtextextended(key, 0))) "
                         "from unnest(%s::text[]) as key", [keys])

    def delete_where(self, table: str, where: Mapping[str, Any]) -> int:
        clause, params = _where_clause(where)
        rows = self.execute(f"delete from {check_identifier(table)} where {clause} returning 1", params)
        return len(rows)

    def load_arrow(self, table: str, rows: pa.Table) -> int:
        """Bulk insert an Arrow table: an Arrow scan on DuckDB, `COPY … FROM STDIN` on PostgreSQL."""
        if rows.num_rows == 0:
            return 0
        columns = ", ".join(quote_column(name) for name in rows.column_names)
        if self.dialect == "duckdb":
            view = f"_arrow_{uuid.uuid4().hex}"
            self._con.register(view, rows)
            try:
                self._con.execute(f"insert into {check_identifier(table)} ({columns}) select {columns} from {view}")
            finally:
                self._con.unregister(view)
            return rows.num_rows
        from psycopg.copy import QueuedLibpqWriter

        # pyarrow spends ~90% of CSV rendering on zoned timestamps (~1.4 s per million); a load
        # has few distinct ones, so render each once (same text, COPY reads it identically)
        rendered = pa.table([_timestamps_as_text(column) if pa.types.is_timestamp(column.type) else column
                             for column in rows.columns], names=rows.column_names)
        copy_sql = f"copy {check_identifier(table)} ({columns}) from stdin (format csv)"
        options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
        # the queued writer sends from a thread while pyarrow (GIL released) renders the next batch
        with self._con.cursor() as cursor, cursor.copy(copy_sql, writer=QueuedLibpqWriter(cursor)) as copy:
            for batch in rendered.to_batches(max_chunksize=_COPY_BATCH_ROWS):
                buffer = io.BytesIO()
                pa_csv.write_csv(batch, buffer, options)
                copy.write(buffer.getvalue())
        return rows.num_rows


class Warehouse(dg.ConfigurableResource):
    """DuckDB or PostgreSQL warehouse (USAGE_WAREHOUSE_URL): transactions, bulk loads, queries."""

    url: str = Field(default="duckdb:///data/warehouse.duckdb", description="USAGE_WAREHOUSE_URL")
    read_only: bool = Field(default=False, description="open DuckDB read-only (reports, BI)")
    busy_timeout_s: float = Field(default=30.0, description="how long to wait for a DuckDB file held by another process")
    _bootstrapped: bool = PrivateAttr(default=False)
    _ensured_tables: set = PrivateAttr(default_factory=set)
    _held: threading.local = PrivateAttr(default_factory=threading.local)

    # ---------- identity

    @property
    def dialect(self) -> str:
        return "duckdb" if self.url.startswith("duckdb:") else "postgres"

    @property
    def duckdb_path(self) -> Path:
        return Path(self.url.removeprefix("duckdb:///"))

    def display_url(self) -> str:
        """The URL without a password, for messages and metadata."""
        if self.dialect == "duckdb":
            return self.url
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    # ---------- connections

    @contextmanager
    def session(self) -> Iterator[None]:
        """Hold one connection for everything inside (this thread): a replay or a stage call
        stops opening the DuckDB file and checkpointing for every transaction and query."""
        if getattr(self._held, "connection", None) is not None:
            yield  # already in a session: the outer one owns the connection
            return
        with self.connect(write=True) as connection:
            if self.dialect == "postgres":
                # reads must not leave a transaction open, or `transaction()` would become a
                # savepoint inside it and every write would roll back when the session closes
                connection.autocommit = True
            self._held.connection = connection
            try:
                yield
            finally:
                self._held.connection = None

    @contextmanager
    def connect(self, *, write: bool) -> Iterator[Any]:
        """A short-lived connection (or the session's); DuckDB waits a bounded time for another process's lock."""
        held = getattr(self._held, "connection", None)
        if held is not None:
            yield held
            return
        if self.dialect == "postgres":
            import psycopg

            try:
                connection = psycopg.connect(_psycopg_conninfo(self.url), options="-c timezone=UTC")
            except psycopg.OperationalError as error:
                raise WarehouseError(f"cannot connect to PostgreSQL at {self.display_url()}: {_first_line(error)}") from None
            try:
                yield connection
            finally:
                connection.close()
            return
        connection = self._duckdb_connect(read_only=self.read_only and not write)
        try:
            yield connection
        finally:
            connection.close()

    def _duckdb_connect(self, *, read_only: bool) -> Any:
        import duckdb

        path = self.duckdb_path
        if read_only and not path.exists():
            raise WarehouseError(f"DuckDB file {path} does not exist yet: run `usage-pipeline run` or `make demo` first")
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline, delay = time.monotonic() + self.busy_timeout_s, 0.05
        while True:
            try:
                connection = duckdb.connect(str(path), read_only=read_only)
                connection.execute("set TimeZone = 'UTC'")
                return connection
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise WarehouseError(f"cannot open DuckDB file {path}: {_first_line(error)}") from None
                if time.monotonic() >= deadline:
                    raise WarehouseBusyError(
                        f"DuckDB file {path} is held by another process ({_lock_holder(error)}) and stayed "
                        f"busy for {self.busy_timeout_s:.0f} s. DuckDB allows one writing process at a time: "
                        "wait for the other run (or `dagster dev`) to finish, or stop it, then retry. "
                        "For many concurrent writers, point USAGE_WAREHOUSE_URL at PostgreSQL."
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One write transaction: everything inside commits together or not at all."""
        self._ensure_bootstrapped()
        with self.connect(write=True) as connection:
            if self.dialect == "postgres":
                with connection.transaction():
                    yield Tx(connection, "postgres")
                return
            connection.begin()
            try:
                yield Tx(connection, "duckdb")
            except BaseException:
                connection.rollback()
                raise
            connection.commit()

    # ---------- reads

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        with self.connect(write=False) as connection:
            return Tx(connection, self.dialect).execute(sql, params)

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        with self.connect(write=False) as connection:
            if self.dialect == "duckdb":
                text, *values = _duckdb_args(sql, params)
                return connection.sql(text, params=values[0] if values else None).to_arrow_table()
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                names = [column.name for column in cursor.description]
                return pa.Table.from_pylist([dict(zip(names, row)) for row in cursor.fetchall()])

    def table_exists(self, table: str) -> bool:
        schema, name = check_identifier(table).split(".")
        rows = self.query(
            "select count(*) from information_schema.tables where table_schema = %s and table_name = %s", [schema, name]
        )
        return rows[0][0] > 0

    def columns(self, table: str) -> list[tuple[str, str]]:
        """(name, type) of each column of `table`, in order."""
        schema, name = check_identifier(table).split(".")
        return [
            (row[0], row[1])
            for row in self.query(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = %s and table_name = %s order by ordinal_position",
                [schema, name],
            )
        ]

    # ---------- writes

    def bootstrap(self) -> None:
        """Create schemas and raw tables (sql/bootstrap/*.sql, idempotent, in file order)."""
        if self.read_only:
            return
        with self.connect(write=True) as connection:
            tx = Tx(connection, self.dialect)
            if self.dialect == "postgres":
                tx.execute("select pg_advisory_lock(hashtextextended('usage_pipeline.bootstrap', 0))")
            for path in sorted(BOOTSTRAP_DIR.glob("*.sql")):
                for statement in _statements(path.read_text()):
                    tx.execute(statement)
            if self.dialect == "postgres":
                connection.commit()
                tx.execute("select pg_advisory_unlock(hashtextextended('usage_pipeline.bootstrap', 0))")
                connection.commit()
        self._bootstrapped = True

    def _ensure_bootstrapped(self) -> None:
        if not self._bootstrapped:
            self.bootstrap()

    def ensure_table(self, table: str, schema: pa.Schema, *, indexes: Sequence[Sequence[str]] = ()) -> None:
        """Create `table` from an Arrow schema (and its indexes) if it does not exist.

        Indexes matter on PostgreSQL (partition replace and incremental reads stay cheap as
        history grows); DuckDB's zone maps already skip old row groups, so it gets none.
        """
        check_identifier(table)
        if (table, schema) in self._ensured_tables:
            return  # one DDL round trip per table and resource instance, not one per load
        columns = ", ".join(f"{quote_column(f.name)} {sql_type(f.type, self.dialect)}" for f in schema)
        with self.transaction() as tx:
            tx.lock("ddl", table)
            tx.execute(f"create table if not exists {table} ({columns})")
            if self.dialect == "postgres":
                for index_columns in indexes:
                    name = f"{table.split('.')[1]}__{'_'.join(index_columns)}"[:63]
                    column_list = ", ".join(quote_column(column) for column in index_columns)
                    tx.execute(f"create index if not exists {check_identifier(name)} on {table} ({column_list})")
        self._ensured_tables.add((table, schema))

    def replace_rows(self, table: str, rows: pa.Table, *, where: Mapping[str, Any]) -> int:
        """Delete the rows matching `where` and insert `rows`, atomically and under a lock."""
        with self.transaction() as tx:
            tx.lock(table, *(f"{key}={value}" for key, value in sorted(where.items())))
            tx.delete_where(table, where)
            return tx.load_arrow(table, rows)

    def load_arrow(self, table: str, rows: pa.Table) -> int:
        """Append `rows` to `table` in one transaction."""
        with self.transaction() as tx:
            return tx.load_arrow(table, rows)


def _timestamps_as_text(column: pa.ChunkedArray) -> pa.Array:
    """The CSV text of a timestamp column, formatted once per distinct value (nulls stay null)."""
    encoded = column.combine_chunks().dictionary_encode()
    return encoded.dictionary.cast(pa.string()).take(encoded.indices)


def _where_clause(where: Mapping[str, Any]) -> tuple[str, list[Any]]:
    if not where:
        raise WarehouseError("refusing a delete without a condition")
    parts, params = [], []
    for name, value in where.items():
        column = quote_column(name)
        if isinstance(value, (list, tuple, set, frozenset)):
            values = list(value)
            if not values:
                parts.append("false")
                continue
            parts.append(f"{column} in ({', '.join(['%s'] * len(values))})")
            params.extend(values)
        elif value is None:
            parts.append(f"{column} is null")
        else:
            parts.append(f"{column} = %s")
            params.append(value)
    return " and ".join(parts), params


_PSYCOPG_PLACEHOLDER = re.compile(r"%%|%s")


def _duckdb_args(sql: str, params: Sequence[Any] | None) -> tuple:
    """Our SQL uses psycopg's `%s` (and `%%` for a literal `%`) when it has parameters; DuckDB wants `?`."""
    if params is None:
        return (sql,)
    return _PSYCOPG_PLACEHOLDER.sub(lambda match: "%" if match.group() == "%%" else "?", sql), list(params)


def _statements(text: str) -> list[str]:
    """Split a bootstrap file on `;` at line ends (bootstrap DDL has no procedural bodies)."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in re.split(r";\s*$", "\n".join(lines), flags=re.M) if part.strip()]


def _psycopg_conninfo(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _lock_holder(error: BaseException) -> str:
    match = re.search(r"PID (\d+)", str(error))
    return f"PID {match.group(1)}" if match else "unknown process"
