"""Shared fixtures: a real throwaway PostgreSQL server, fresh warehouses on both engines,
a landing store in a temp folder, and the loopback sandbox.

PostgreSQL is never mocked and never skipped: if the server cannot start, every test that
needs it fails with a message that says why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from usage_pipeline.landing import LandingStore
from usage_pipeline.warehouse import Warehouse

ENGINES = ["duckdb", "postgres"]
SHARED_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "api_samples"
LOCAL_SAMPLES = Path(__file__).resolve().parent / "fixtures" / "api_samples"


def samples_dir() -> Path:
    """The vendor payloads of ../shared/api_samples (or the copy under fixtures/, for a clone elsewhere)."""
    return SHARED_SAMPLES if SHARED_SAMPLES.is_dir() else LOCAL_SAMPLES


class PostgresServer:
    """A PostgreSQL cluster in a temp dir, started with initdb/pg_ctl (as `postgres` when root)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="usage_pg_"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        for binary in ("initdb", "pg_ctl"):
            if shutil.which(binary) is None:
                raise RuntimeError(
                    f"PostgreSQL binary {binary!r} not found on PATH: install PostgreSQL 15 "
                    "(Debian: apt-get install postgresql) — the suite needs a real server, it does not skip"
                )
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        result = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr.strip()[-800:]}")
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        result = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        if result.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {result.stderr.strip()[-400:]} {log[-800:]}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as con:
            con.execute(f"create database {name}")
        return self.url(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
    except Exception as error:  # a clear failure, never a skip
        pytest.fail(f"could not start the test PostgreSQL server: {error}", pytrace=False)
    yield server
    server.stop()


def make_warehouse(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Warehouse:
    if engine == "duckdb":
        warehouse = Warehouse(url=f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    else:
        server = request.getfixturevalue("postgres_server")
        warehouse = Warehouse(url=server.create_database())
    warehouse.bootstrap()
    return warehouse


@pytest.fixture(params=ENGINES)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    """A fresh, bootstrapped warehouse on each engine (a new DuckDB file / a new PG database)."""
    return make_warehouse(request.param, tmp_path, request)


@pytest.fixture
def duckdb_warehouse(tmp_path: Path, request: pytest.FixtureRequest) -> Warehouse:
    return make_warehouse("duckdb", tmp_path, request)


@pytest.fixture
def landing(tmp_path: Path) -> LandingStore:
    return LandingStore(root=str(tmp_path / "landing"))
