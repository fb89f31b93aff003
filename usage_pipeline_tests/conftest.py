"""Shared fixtures: a real throwaway PostgreSQL server, fresh warehouses on both engines,
a landing store in a temp folder, and the loopback sandbox.

PostgreSQL is never mocked and never skipped: if the server cannot start, every test that
needs it fails with a message that says why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from usage_pipeline.landing import LandingStore
from usage_pipeline.pgserver import ThrowawayPostgres
from usage_pipeline.warehouse import Warehouse

ENGINES = ["duckdb", "postgres"]
SHARED_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "api_samples"
LOCAL_SAMPLES = Path(__file__).resolve().parent / "fixtures" / "api_samples"


def samples_dir() -> Path:
    """The vendor payloads of ../shared/api_samples (or the copy under fixtures/, for a clone elsewhere)."""
    return SHARED_SAMPLES if SHARED_SAMPLES.is_dir() else LOCAL_SAMPLES


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres()
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
