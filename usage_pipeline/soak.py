"""`usage-pipeline soak`: N simulated days of hourly ticks with random faults, then proof that
nothing was lost, nothing duplicated and no secret leaked.

The one rule: the soak and the reliability tests judge a warehouse with the same checks, defined
once here. A run "loses nothing" when every landed response is indexed in `raw.api_snapshots`
with a file whose sha256 matches; it "duplicates nothing" when no staging partition mixes two
pulls, no fact repeats a grain key, and the marts equal a clean replay of the same raw data into
a fresh warehouse (row for row, `loaded_at` aside).

Time is compressed, never faked: the sandbox serves on loopback (real HTTP), the pipeline reads
the sandbox's simulated clock, and every wait of the HTTP layer (retry backoff, Retry-After,
rate limiter) runs on a `VirtualClock` that advances instead of sleeping. Only a `slow` answer
costs real time (a short client timeout bounds it).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import random
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from usage_pipeline import http, timeutil
from usage_pipeline.warehouse import Tx, Warehouse

log = logging.getLogger("usage_pipeline.soak")

SOURCE_KEYS = ("thousandeyes", "hcp_terraform", "terraform_enterprise", "workato")
RAW_TABLES = ("raw.api_snapshots", "raw.api_batches")
# columns that say when a row was written, not what it holds: never part of a fingerprint
VOLATILE_COLUMNS = frozenset({"loaded_at", "recorded_at"})


# ---------- compressed time for the HTTP layer


class VirtualClock:
    """Compressed real time: `sleep()` advances an offset instead of blocking.

    `monotonic()` and `now_utc()` are the real clock plus every second "slept", so retry budgets,
    backoff, limiters and server wait hints see time pass exactly as in production. Thread-safe;
    it records every wait.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.RLock()  # `limiter()` makes a RateLimiter, which reads `monotonic()`
        self._limiters: dict[str, http.RateLimiter] = {}
        self.waits: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return time.monotonic() + self._offset

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._offset += seconds
                self.waits.append(seconds)

    def now_utc(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + timedelta(seconds=self._offset)

    @property
    def waited_s(self) -> float:
        with self._lock:
            return sum(self.waits)

    def limiter(self, key: str, rate_per_s: float, burst: float) -> http.RateLimiter:
        """One limiter per key on this clock (as `http.limiter_for` keeps one per token)."""
        with self._lock:
            if key not in self._limiters:
                self._limiters[key] = http.RateLimiter(rate_per_s, burst, clock=self)
            return self._limiters[key]


@contextmanager
def compressed_http(clock: VirtualClock, *, timeout_s: float | None = None) -> Iterator[VirtualClock]:
    """Every wait of the HTTP layer made inside runs on `clock` (and reads time out after `timeout_s`).

    No client resource takes a clock, retry policy or timeout through its configuration, so this
    swaps, for the duration: the real clock's `sleep` and `monotonic` (its `now_utc` stays real,
    so server wait hints are read as in production, and `fetched_at` stays on the pipeline clock),
    every session's limiter for one on `clock`, and, when given, the read timeout. The session,
    its retries, limiter logic and errors are the production code; only where it waits changes.
    """
    system, original_init = http.SYSTEM_CLOCK, http.Session.__init__

    def init(self: http.Session, vendor: str, base_url: str, **kw: Any) -> None:
        if kw.get("clock") is None or isinstance(kw["clock"], http.SystemClock):
            kw["clock"] = system  # HCP's pipeline clock included: in production both read the same time
        given = kw.get("limiter")
        rate, burst = (given.rate_per_s, given.burst) if given is not None else \
            http.DEFAULT_LIMITS.get(vendor, http.FALLBACK_LIMIT)
        kw["limiter"] = clock.limiter(vendor, rate, burst)
        if timeout_s is not None:
            kw["timeout"] = httpx.Timeout(timeout_s)
        original_init(self, vendor, base_url, **kw)

    system.monotonic, system.sleep = clock.monotonic, clock.sleep  # type: ignore[method-assign]
    http.Session.__init__ = init  # type: ignore[method-assign]
    try:
        yield clock
    finally:
        http.Session.__init__ = original_init  # type: ignore[method-assign]
        del system.monotonic, system.sleep  # the class's real methods again


# ---------- the model project, parsed once per process


_projects: dict[tuple[str, str, float], Any] = {}


def cached_load_project(models_dir: Path | None = None, *, vars: Mapping[str, Any] | None = None) -> Any:
    """`models.load_project` memoized on (folder, vars, newest file time): parsing the tree costs
    over a second, and a soak or a test asks for it on every run. Install with `cached_models()`."""
    from usage_pipeline import models

    folder = Path(models_dir or models.DEFAULT_MODELS_DIR)
    newest = max((path.stat().st_mtime for path in folder.rglob("*") if path.is_file()), default=0.0)
    key = (str(folder.resolve()), json.dumps(dict(vars or {}), sort_keys=True, default=str), newest)
    if key not in _projects:
        _projects[key] = _ORIGINAL_LOAD_PROJECT(models_dir, vars=vars)
    return _projects[key]


@contextmanager
def cached_models() -> Iterator[None]:
    """Within: every `models.load_project` call (runs, replays, definitions) reuses one parse."""
    from usage_pipeline import models

    previous, models.load_project = models.load_project, cached_load_project
    try:
        yield
    finally:
        models.load_project = previous


def _original_load_project() -> Callable[..., Any]:
    from usage_pipeline import models

    return models.load_project


_ORIGINAL_LOAD_PROJECT = _original_load_project()


# ---------- reading a warehouse on one connection (DuckDB connections cost ~10 ms each)


class Reader:
    """One read connection and the few catalogue questions the checks ask."""

    def __init__(self, tx: Tx, dialect: str) -> None:
        self._tx, self.dialect = tx, dialect

    def execute(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        return self._tx.execute(sql, params)

    def relations(self, schema: str) -> list[str]:
        rows = self.execute("select table_name from information_schema.tables where table_schema = %s "
                            "order by table_name", [schema])
        return [f"{schema}.{name}" for (name,) in rows]

    def columns(self, relation: str) -> list[tuple[str, str]]:
        schema, name = relation.split(".")
        return [(row[0], row[1]) for row in self.execute(
            "select column_name, data_type from information_schema.columns where table_schema = %s "
            "and table_name = %s order by ordinal_position", [schema, name])]


@contextmanager
def reading(warehouse: Warehouse) -> Iterator[Reader]:
    with warehouse.connect(write=False) as connection:
        yield Reader(Tx(connection, warehouse.dialect), warehouse.dialect)


def relations(warehouse: Warehouse, schema: str) -> list[str]:
    with reading(warehouse) as db:
        return db.relations(schema)


# ---------- the invariants: nothing lost


@dataclass
class LandingCheck:
    """Every indexed response has its file with the recorded sha256 and size (`problems` lists those
    that do not); `orphans` are files no index row points at (only a crash between writing a file
    and indexing it leaves one: the file is ignored by staging and replay)."""

    snapshots: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


def check_landing(warehouse: Warehouse, landing_root: str | Path) -> LandingCheck:
    """Read back every file `raw.api_snapshots` points at; find files nobody points at."""
    root = Path(landing_root)
    result = LandingCheck()
    indexed: set[str] = set()
    rows = warehouse.query("select snapshot_id, landing_path, sha256, bytes from raw.api_snapshots order by snapshot_id")
    seen_ids: Counter[str] = Counter()
    for snapshot_id, landing_path, sha256, size in rows:
        result.snapshots += 1
        seen_ids[snapshot_id] += 1
        indexed.add(landing_path)
        path = root / landing_path
        if not path.is_file():
            result.problems.append(f"snapshot {snapshot_id}: landing file {landing_path} is missing")
            continue
        body = gzip.decompress(path.read_bytes())
        if hashlib.sha256(body).hexdigest() != sha256 or len(body) != size:
            result.problems.append(f"snapshot {snapshot_id}: {landing_path} does not match its recorded sha256/bytes")
    result.problems += [f"snapshot {sid} indexed {n} times" for sid, n in seen_ids.items() if n > 1]
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                continue
            result.files += 1
            relative = path.relative_to(root).as_posix()
            if relative not in indexed:
                result.orphans.append(relative)
    return result


def fetched_vs_landed(server: Any, warehouse: Warehouse) -> dict[str, tuple[int, int]]:
    """Per vendor: (200 answers the sandbox completed, 200 snapshots landed); equal when nothing was lost.

    A `slow` answer is left out: the client gave up on it before it came (a timeout, retried).
    """
    answered: Counter[str] = Counter(
        request.vendor for request in server.requests_for()
        if request.vendor and request.status == 200 and request.fault not in ("slow", "drop")
    )
    landed = dict(warehouse.query("select vendor, count(*) from raw.api_snapshots where status = 200 group by vendor"))
    return {vendor: (answered.get(vendor, 0), int(landed.get(vendor, 0))) for vendor in sorted(set(answered) | set(landed))}


# ---------- the invariants: nothing duplicated


def _normal(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(value, float):
        return round(value, 9)
    if hasattr(value, "normalize") and hasattr(value, "as_tuple"):  # Decimal
        return str(value.normalize())
    return value


def table_fingerprint(db: Reader, relation: str) -> tuple[int, str]:
    """(row count, sha256 of the sorted rows), columns in name order, `loaded_at` aside."""
    columns = sorted(name for name, _ in db.columns(relation) if name not in VOLATILE_COLUMNS)
    if not columns:
        return 0, ""
    rows = db.execute(f"select {', '.join(chr(34) + c + chr(34) for c in columns)} from {relation}")
    lines = sorted(json.dumps([_normal(value) for value in row], default=str) for row in rows)
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


def fingerprint(warehouse: Warehouse, schemas: Iterable[str] = ("marts",)) -> dict[str, tuple[int, str]]:
    """A checksum of every relation of `schemas`: equal fingerprints, equal contents."""
    with reading(warehouse) as db:
        return {relation: table_fingerprint(db, relation) for schema in schemas for relation in db.relations(schema)}


def fingerprint_diff(left: Mapping[str, tuple[int, str]], right: Mapping[str, tuple[int, str]]) -> list[str]:
    """What differs between two fingerprints, in words (empty: identical)."""
    problems = []
    for relation in sorted(set(left) | set(right)):
        a, b = left.get(relation), right.get(relation)
        if a != b:
            problems.append(f"{relation}: {a[0] if a else 'missing'} rows vs {b[0] if b else 'missing'} rows"
                            + (" (same count, different rows)" if a and b and a[0] == b[0] else ""))
    return problems


def differing_columns(left: Warehouse, right: Warehouse, relation: str) -> list[str]:
    """The columns of `relation` whose sorted values differ between two warehouses (for reports)."""
    def values(warehouse: Warehouse) -> dict[str, str]:
        with reading(warehouse) as db:
            names = [name for name, _ in db.columns(relation) if name not in VOLATILE_COLUMNS]
            found = {}
            for name in names:
                rows = db.execute(f'select "{name}" from {relation}')
                lines = sorted(json.dumps(_normal(row[0]), default=str) for row in rows)
                found[name] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
            return found

    a, b = values(left), values(right)
    return sorted(name for name in set(a) | set(b) if a.get(name) != b.get(name))


@lru_cache(maxsize=4)
def _grain_tests(models_dir: Path | None) -> tuple[tuple[str, Any], ...]:
    from usage_pipeline import models

    project = models.load_project(models_dir)
    return tuple((model.relation.dotted, test) for model in project.models.values() for test in model.tests
                 if test.kind in ("unique", "unique_combination"))


def duplicate_grain_keys(warehouse: Warehouse, *, models_dir: Path | None = None) -> dict[str, int]:
    """Per model with a declared grain (`unique` tests in _models.yml): how many keys repeat."""
    from usage_pipeline.model_tests import failing_rows_sql

    found: dict[str, int] = {}
    with reading(warehouse) as db:
        existing = {relation for schema in ("intermediate", "marts") for relation in db.relations(schema)}
        for relation, test in _grain_tests(models_dir):
            if relation not in existing:
                continue
            sql, params = failing_rows_sql(test, relation, warehouse.dialect)
            count = db.execute(f"select count(*) from ({sql}) as failing", params or None)[0][0]
            found[f"{relation} ({', '.join(test.columns)})"] = int(count)
    return found


def mixed_pulls(warehouse: Warehouse) -> list[str]:
    """Staging partitions whose rows come from more than one pull (batch) of one account: must be none."""
    problems = []
    with reading(warehouse) as db:
        for relation in db.relations("staging"):
            names = {name for name, _ in db.columns(relation)}
            if not {"snapshot_id", "partition_key", "account_id"} <= names:
                continue
            rows = db.execute(
                f"select s.partition_key, s.account_id, count(distinct r.batch_id) from {relation} s "
                "left join raw.api_snapshots r on r.snapshot_id = s.snapshot_id "
                "group by s.partition_key, s.account_id having count(distinct r.batch_id) <> 1")
            problems += [f"{relation} partition {key} account {account}: rows from {n} pulls"
                         for key, account, n in rows]
    return problems


def copy_raw(source: Warehouse, target: Warehouse) -> int:
    """Copy the raw index (snapshots and batches) into a fresh warehouse: what a replay starts from."""
    target.bootstrap()
    copied = 0
    for table in RAW_TABLES:
        columns = [name for name, _ in source.columns(table)]
        rows = source.query_arrow(f"select {', '.join(columns)} from {table}")
        copied += target.load_arrow(table, _typed(rows, table))
    return copied


def _typed(rows: Any, table: str) -> Any:
    from usage_pipeline.landing import BATCH_SCHEMA, SNAPSHOT_SCHEMA

    schema = SNAPSHOT_SCHEMA if table == "raw.api_snapshots" else BATCH_SCHEMA
    return rows.select(schema.names).cast(schema) if rows.num_rows else rows


def replay_into(config: Any, target_url: str) -> Warehouse:
    """`usage-pipeline replay` into a fresh warehouse from the same raw index and landing folder."""
    import dataclasses

    from usage_pipeline import operations

    source, target = Warehouse(url=config.warehouse_url), Warehouse(url=target_url)
    copy_raw(source, target)
    operations.replay(dataclasses.replace(config, warehouse_url=target_url))
    return target


# ---------- the invariant: no secret anywhere


def secret_forms(secrets: Mapping[str, str], *, emails: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each secret as it could leak: itself, URL-encoded, and as an HTTP basic credential."""
    import base64
    from urllib.parse import quote

    forms: dict[str, str] = {}
    for name, secret in secrets.items():
        forms[f"{name} token"] = secret
        forms[f"{name} token (url-encoded)"] = quote(secret, safe="")
        forms[f"{name} token (base64)"] = base64.b64encode(secret.encode()).decode()
        email = (emails or {}).get(name)
        if email:
            forms[f"{name} basic auth"] = base64.b64encode(f"{email}:{secret}".encode()).decode()
    return forms


def secret_hits_in_text(forms: Mapping[str, str], where: str, text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    return [f"{name} in {where}" for name, value in forms.items() if value.encode() in data]


def secret_hits_in_folder(forms: Mapping[str, str], folder: str | Path) -> tuple[int, list[str]]:
    """Scan every file under `folder` (gzip files decompressed): (files scanned, hits)."""
    hits, files = [], 0
    for path in sorted(Path(folder).rglob("*")) if Path(folder).is_dir() else []:
        if not path.is_file():
            continue
        files += 1
        data = path.read_bytes()
        if path.suffix == ".gz":
            try:
                data = gzip.decompress(data)
            except OSError:
                pass
        hits += secret_hits_in_text(forms, str(path), data)
    return files, hits


TEXT_TYPES = ("character varying", "varchar", "text", "json", "jsonb", "character")


def secret_hits_in_warehouse(forms: Mapping[str, str], warehouse: Warehouse) -> tuple[int, list[str]]:
    """Search every text column of every table and view for every form: (columns scanned, hits)."""
    hits, scanned = [], 0
    values = list(forms.items())
    with reading(warehouse) as db:
        rows = db.execute(
            "select table_schema, table_name, column_name, data_type from information_schema.columns "
            "where table_schema in ('raw', 'staging', 'intermediate', 'marts') order by 1, 2, ordinal_position")
        by_table: dict[str, list[str]] = {}
        for schema, table, column, data_type in rows:
            kind = str(data_type).lower()
            if kind in TEXT_TYPES or kind.startswith(("varchar", "character")):
                by_table.setdefault(f"{schema}.{table}", []).append(column)
        for relation, columns in by_table.items():
            scanned += len(columns)
            checks = ", ".join(f"sum(case when strpos(\"{column}\", %s) > 0 then 1 else 0 end)"
                               for column in columns for _ in values)
            counts = db.execute(f"select {checks} from {relation}", [v for _ in columns for _, v in values])[0]
            pairs = [(column, name) for column in columns for name, _ in values]
            hits += [f"{name} in {relation}.{column} ({int(n)} rows)" for (column, name), n in zip(pairs, counts) if n]
    return scanned, hits


class SuiteFigures(UserWarning):
    """The reliability suite's figures, shown in pytest's warnings summary (xdist keeps no stdout)."""


# ---------- the soak


SOAK_END = datetime(2026, 11, 24, tzinfo=UTC)  # fixed (reproducible), in the past (Dagster checks partition keys
# against the real clock); the 30 days before it hold a DST change (Nov 1, Workato's Los Angeles), a
# ThousandEyes rollover (Nov 5), a TFE upgrade and licence change, an HCP plan change and a rename
DAILY_SOURCES = ("hcp_terraform", "terraform_enterprise", "workato")
TICK_FAULT_RATE = 0.15  # chance that a source's tick gets a fault
CLIENT_TIMEOUT_S = 1.0
SLOW_S = 1.5


@dataclass(frozen=True)
class FaultKind:
    name: str
    kind: str
    params: Mapping[str, Any]
    fails_account: bool = False  # retried away if False; one account (or day) fails if True


FAULT_MENU: tuple[tuple[FaultKind, int], ...] = (  # (fault, weight)
    (FaultKind("429 Retry-After seconds", "rate_limit", {"retry_after": 1}), 3),
    (FaultKind("429 Retry-After HTTP date", "rate_limit", {"retry_after": "date+1"}), 2),
    (FaultKind("429 Retry-After 0", "rate_limit", {"retry_after": 0}), 2),
    (FaultKind("5xx burst", "status", {"status": 503}), 4),
    (FaultKind("timeout", "slow", {"delay_s": SLOW_S}), 1),
    (FaultKind("dropped connection", "drop", {}), 2),
    (FaultKind("unknown new field", "extra_field", {"field": "soak_new_field", "where": "items"}), 2),
    (FaultKind("HTML page", "html", {}, fails_account=True), 1),
    (FaultKind("malformed JSON", "malformed_json", {}, fails_account=True), 1),
    (FaultKind("missing required field", "missing_field", {}, fails_account=True), 1),
    (FaultKind("one failing account", "always_fail", {"status": 500}, fails_account=True), 1),
)
TARGETS = {
    "thousandeyes": "thousandeyes:/v7/usage",
    "hcp_terraform": "hcp_terraform:/api/v2/organizations/*",
    "terraform_enterprise": "terraform_enterprise:/api/v1/usage/bundle",
    "workato": "workato:/api/v2/managed_users/statistics/usage",
}
REQUIRED_FIELDS = {"thousandeyes": "usage.quota", "hcp_terraform": "data.attributes.external-id",
                   "terraform_enterprise": "snapshots.id", "workato": "data"}
# `match` values: an aid, an organization, TFE's one installation (every bundle call); Workato: a day's `from`
FAILING_ACCOUNTS = {"thousandeyes": "2001", "hcp_terraform": "globex", "terraform_enterprise": "bundle"}


@dataclass(kw_only=True)
class Findings:
    """What the checks counted, and the evidence of any broken promise: the soak's and the test suite's.

    The promises hold when the four lists are empty.
    """

    retries: int = 0
    waited_s: float = 0.0
    snapshots_checked: int = 0
    rows_checked: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)  # same rows, other values than a clean replay
    secret_hits: list[str] = field(default_factory=list)

    def merge(self, other: Findings) -> None:
        """Add another run's counts and evidence to these (a test module's total over its scenarios)."""
        for name, value in vars(other).items():
            mine = getattr(self, name)
            setattr(self, name, mine + value if isinstance(mine, (int, float, list)) else mine)


@dataclass
class SoakReport(Findings):
    """What happened and what was proven; `ok` when every invariant holds."""

    days: int
    seed: int
    warehouse: str
    started: float = field(default_factory=time.monotonic)
    scripted: Counter = field(default_factory=Counter)
    direct_ticks: int = 0
    dagster_runs: int = 0
    model_builds: int = 0
    failures: list[str] = field(default_factory=list)  # (reported) source, account, cause
    requests: int = 0
    faults_fired: Counter = field(default_factory=Counter)
    waits: int = 0
    grains_checked: int = 0
    secret_places: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.differing or self.secret_hits)

    def lines(self) -> list[str]:
        fired = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults_fired.items())) or "none"
        lines = [
            f"soak: {self.days} simulated days to {SOAK_END:%Y-%m-%d}, seed {self.seed}, warehouse {self.warehouse}",
            f"  runs: {self.direct_ticks} ThousandEyes hourly ticks (pull + stage), {self.dagster_runs} Dagster "
            f"runs (daily HCP, TFE, Workato windows), {self.model_builds} model builds, 1 replay",
            f"  faults injected: {sum(self.faults_fired.values())} answers ({fired}); "
            f"{sum(self.scripted.values())} scripted",
            f"  requests: {self.requests}; retries: {self.retries}; waits: {self.waits} "
            f"({self.waited_s:.0f} s of compressed time)",
            f"  failures reported by source, account and cause: {len(self.failures)}",
            *[f"    - {failure}" for failure in self.failures[:8]],
            *([f"    - … {len(self.failures) - 8} more"] if len(self.failures) > 8 else []),
            f"  checked: {self.snapshots_checked} snapshots (file and sha256), {self.rows_checked} staging and mart "
            f"rows against a clean replay, {self.grains_checked} grain keys, {self.secret_places} places for secrets",
            f"  lost: {len(self.lost)}   duplicated: {len(self.duplicated)}   differing from replay: "
            f"{len(self.differing)}   secret hits: {len(self.secret_hits)}",
            *[f"    ! {problem}" for problem in (self.lost + self.duplicated + self.differing + self.secret_hits)[:20]],
            f"  result: {'OK' if self.ok else 'FAILED'} in {time.monotonic() - self.started:.0f} s",
        ]
        return lines


class _Capture(logging.Handler):
    """Every log record of the soak, searched for secrets as it passes (nothing printed)."""

    def __init__(self, forms: Mapping[str, str]) -> None:
        super().__init__(logging.DEBUG)
        self.forms, self.hits, self.records = forms, [], 0
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        try:
            text = self.format(record) + repr(record.args)
        except Exception:  # noqa: BLE001 (a record that cannot be formatted is searched as its parts)
            text = f"{record.msg!r} {record.args!r}"
        self.hits += secret_hits_in_text(self.forms, f"log record of {record.name}", text)


@contextmanager
def _captured_logs(forms: Mapping[str, str]) -> Iterator[_Capture]:
    """Route every logger to the capture for the soak's duration (the console shows only the report)."""
    capture = _Capture(forms)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    quiet = [logging.getLogger(name) for name in ("dagster", "httpx", "httpcore")]
    saved_quiet = [(logger, list(logger.handlers), logger.propagate, logger.level) for logger in quiet]
    root.handlers, root.level = [capture], logging.INFO
    for logger in quiet:
        logger.handlers, logger.propagate = [capture], False
        if logger.name != "dagster":
            logger.setLevel(logging.INFO)
    try:
        yield capture
    finally:
        root.handlers, root.level = saved[0], saved[1]
        for logger, handlers, propagate, level in saved_quiet:
            logger.handlers, logger.propagate, logger.level = handlers, propagate, level


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the soak (client resources read tokens as dg.EnvVar), then restore."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _script_fault(server: Any, rng: random.Random, source: str, moment: datetime, config: Any,
                  report: SoakReport) -> None:
    """Maybe (TICK_FAULT_RATE) script one random fault on `source` for its next tick."""
    if rng.random() >= TICK_FAULT_RATE:
        return
    kinds, weights = zip(*FAULT_MENU)
    fault = rng.choices(kinds, weights=weights)[0]
    params = dict(fault.params)
    times = None if fault.kind in ("always_fail", "extra_field") else rng.randint(1, 3 if fault.kind == "status" else 1)
    if fault.kind == "missing_field":
        params["field"] = REQUIRED_FIELDS[source]
    if fault.kind == "always_fail":
        params["match"] = FAILING_ACCOUNTS.get(source) or _oldest_window_start(moment, config)
    report.scripted[fault.name] += 1
    server.faults.add(TARGETS[source], fault.kind, times, **params)


def _oldest_window_start(moment: datetime, config: Any) -> str:
    """The `from` of the oldest Workato day a tick at `moment` pulls: in that day's requests only."""
    from usage_pipeline.sources import workato
    from usage_pipeline.sources.workato.windows import day_window, format_admin_time

    timezone = config.workato.timezone
    oldest = workato.tick_partition_keys(moment, timezone=timezone)[0]
    return format_admin_time(day_window(oldest, timezone).start, timezone)


def _short(text: str, limit: int = 220) -> str:
    """A failure in one line: URLs as their path (the host is the sandbox's, the query is noise)."""
    text = re.sub(r"https?://[^/\s]+", "", str(text))
    text = re.sub(r"\?[^\s;,)]*", "", text)
    return " ".join(text.split())[:limit]


def _pull_thousandeyes(client: Any, warehouse: Warehouse, landing: Any, key: str, report: SoakReport) -> None:
    """One hourly ThousandEyes tick through its pull and stage functions (no Dagster: 720 of them)."""
    from usage_pipeline.errors import UsagePipelineError
    from usage_pipeline.sources.thousandeyes import assets

    try:
        pulled, _plans = assets.pull(client=client, landing=landing, warehouse=warehouse, partition_key=key)
        report.failures += [f"thousandeyes {key} account {a}: {_short(cause)}" for a, cause in pulled.failures.items()]
    except UsagePipelineError as error:
        report.failures.append(f"thousandeyes {key}: {_short(error)}")
    try:
        staged = assets.stage(warehouse, landing, key)
        report.failures += [f"thousandeyes {key} account {a} (staging): {_short(cause)}"
                            for a, cause in staged.failures.items()]
    except UsagePipelineError as error:
        report.failures.append(f"thousandeyes {key} (staging): {_short(error)}")
    report.direct_ticks += 1


def _replay_target(url: str, folder: Path) -> tuple[str, Callable[[], None]]:
    """A fresh warehouse next to `url` for the clean replay: a DuckDB file, or a new PostgreSQL database."""
    if url.startswith("duckdb:"):
        return f"duckdb:///{folder / 'replay.duckdb'}", lambda: None
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = f"{parsed.database}_soak_replay_{uuid.uuid4().hex[:8]}"
    admin = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'create database "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'drop database if exists "{name}" with (force)')

    return parsed.set(database=name).render_as_string(hide_password=False), drop


def main(days: int = 30, seed: int = 7, *, warehouse_url: str | None = None,
         print_line: Callable[[str], None] | None = None) -> int:
    """Run the soak and print its report; 0 when nothing was lost or duplicated and no secret leaked."""
    import uuid

    import dagster as dg

    from usage_pipeline import definitions, models, operations, settings
    from usage_pipeline.landing import LandingStore
    from usage_pipeline.sandbox import SandboxServer
    from usage_pipeline.sandbox import thousandeyes as te_sandbox
    from usage_pipeline.sources import ensure_all_staging
    from usage_pipeline.sources.thousandeyes import ThousandEyesClient
    from usage_pipeline.sources.thousandeyes import assets as te_assets

    say = print_line or (lambda line: print(line, flush=True))
    if days < 1:
        raise ValueError("the soak needs at least one day")
    rng = random.Random(seed)
    start = SOAK_END - timedelta(days=days)
    tokens = {vendor: f"soak-canary-{vendor.replace('_', '-')}-{uuid.uuid4().hex}" for vendor in SOURCE_KEYS}
    with tempfile.TemporaryDirectory(prefix="usage-soak-") as folder_name:
        folder = Path(folder_name)
        url = warehouse_url or f"duckdb:///{folder / 'soak.duckdb'}"
        report = SoakReport(days, seed, Warehouse(url=url).display_url())
        clock = VirtualClock()
        server = SandboxServer(now=start, tokens=tokens).start()
        try:
            server.rate_clock = clock
            # the vendor's 240/min window is real time, while a day of ticks passes in seconds
            te_sandbox.state(server).rate_limit = 10**9
            env = {**server.env(), "USAGE_WAREHOUSE_URL": url, "USAGE_LANDING_DIR": str(folder / "landing"),
                   "THOUSANDEYES_API_VERSION": "7"}
            forms = secret_forms(tokens, emails={"thousandeyes": server.emails["thousandeyes"]})
            console = io.StringIO()  # what Dagster's console loggers write: searched, not shown
            with _environment(env), _captured_logs(forms) as capture, cached_models(), redirect_stderr(console), \
                    compressed_http(clock, timeout_s=CLIENT_TIMEOUT_S), timeutil.use_clock(server.clock), \
                    dg.DagsterInstance.ephemeral() as instance:
                config = settings.load(env)
                defs = definitions.build(config)
                warehouse, landing = Warehouse(url=url), LandingStore(root=str(config.landing_dir))
                warehouse.bootstrap()
                te_client = ThousandEyesClient.from_settings(config, token=tokens["thousandeyes"])
                say(f"soak: {days} days of hourly ticks from {start:%Y-%m-%d} on {report.warehouse} "
                    f"(sandbox {server.base_url}, seed {seed})")
                for hour in range(days * 24):
                    moment = start + timedelta(hours=hour, minutes=5)  # hourly, at :05 as the schedule runs
                    server.clock.set(moment)
                    _script_fault(server, rng, "thousandeyes", moment, config, report)
                    _pull_thousandeyes(te_client, warehouse, landing, te_assets.tick_partition_keys(moment)[0], report)
                    server.faults.clear()  # a fault lasts one tick
                    if moment.hour != 1:
                        continue
                    server.clock.set(moment + timedelta(minutes=5))  # the daily sources at 01:10
                    for source in DAILY_SOURCES:
                        _script_fault(server, rng, source, moment, config, report)
                    summary = operations.run(config, only=list(DAILY_SOURCES), with_models=False, defs=defs,
                                             dagster_instance=instance)
                    server.faults.clear()
                    report.dagster_runs += sum(len(outcome.partitions) for outcome in summary.sources)
                    report.failures += [f"{o.source}: {_short(p)}" for o in summary.sources for p in o.problems]
                    models.run_models(warehouse, tests=False, vars={"at_risk_share": config.at_risk_share},
                                      prepare=ensure_all_staging)  # the marts, once a simulated day
                    report.model_builds += 1
                    say(f"  day {(moment - start).days + 1}/{days} ({moment:%Y-%m-%d}): {len(server.requests)} "
                        f"requests, {sum(1 for r in server.requests if r.fault)} faulted answers, "
                        f"{len(report.failures)} failures reported")
                models.run_models(warehouse, tests=False, vars={"at_risk_share": config.at_risk_share},
                                  prepare=ensure_all_staging)
                report.model_builds += 1
                te_retries = te_client.stats().retries
                te_client.close()
                _judge(report, server, config, warehouse, folder, instance, forms)
                report.retries += te_retries
                report.secret_hits += capture.hits + secret_hits_in_text(forms, "console output", console.getvalue())
                report.secret_places += capture.records + 1
            report.waits, report.waited_s = len(clock.waits), clock.waited_s
        finally:
            server.stop()
    for line in report.lines():
        say(line)
    return 0 if report.ok else 1


def _judge(report: SoakReport, server: Any, config: Any, warehouse: Warehouse, folder: Path, instance: Any,
           forms: Mapping[str, str]) -> None:
    """Every invariant, on the soak's warehouse: nothing lost, nothing duplicated, no secret anywhere."""
    import dagster as dg

    from usage_pipeline.errors import UsagePipelineError

    requests = server.requests_for()
    report.requests = len(requests)
    report.faults_fired = Counter(request.fault for request in requests if request.fault)
    landing = check_landing(warehouse, config.landing_dir)
    report.snapshots_checked = landing.snapshots
    report.lost += landing.problems + [f"file {path} landed but not indexed" for path in landing.orphans]
    for vendor, (answered, landed) in fetched_vs_landed(server, warehouse).items():
        if answered != landed:
            report.lost.append(f"{vendor}: the sandbox completed {answered} answers, {landed} were landed")
    report.duplicated += mixed_pulls(warehouse)
    grains = duplicate_grain_keys(warehouse)
    report.grains_checked = len(grains)
    report.duplicated += [f"{name}: {n} repeated keys" for name, n in grains.items() if n]
    events = []
    for run in instance.get_runs():
        events += [repr(entry) for entry in instance.all_logs(run.run_id)]
    report.secret_hits += secret_hits_in_text(forms, "Dagster event logs", "\n".join(events))
    files, hits = secret_hits_in_folder(forms, config.landing_dir)
    columns, column_hits = secret_hits_in_warehouse(forms, warehouse)
    report.secret_hits += hits + column_hits
    report.secret_places += files + columns + len(events)
    retries = 0
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            metadata = entry.asset_materialization.metadata if entry.asset_materialization else {}
            if "retries" in metadata:
                retries += int(metadata["retries"].value)
    report.retries += retries
    target_url, drop = _replay_target(config.warehouse_url, folder)
    try:
        try:
            replayed = replay_into(config, target_url)
        except UsagePipelineError as error:  # raw that replay cannot rebuild: everything staged from it is lost
            report.lost.append(f"`replay` from raw failed: {_short(error, 400)}")
            return
        here, there = fingerprint(warehouse, ("staging", "marts")), fingerprint(replayed, ("staging", "marts"))
        report.rows_checked = sum(count for count, _ in here.values())
        for problem in fingerprint_diff(here, there):
            relation = problem.split(":")[0]
            if "same count" in problem:
                columns = differing_columns(warehouse, replayed, relation)
                report.differing.append(f"vs clean replay: {problem}; columns: {columns}")
            elif relation not in here or (relation in there and here[relation][0] < there[relation][0]):
                report.lost.append(f"vs clean replay (live rows vs replayed rows): {problem}")
            else:
                report.duplicated.append(f"vs clean replay (live rows vs replayed rows): {problem}")
    finally:
        drop()
