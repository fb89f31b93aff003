"""Tiny dbt-like model trees for the model runner tests, and helpers to use them.

`basic/`  a demo vendor: two staging sources (one declared per vendor folder), two views, an
          incremental fact, a table fact and a mart using every portable construct.
`checks/` one table with every YAML test type on it, and a dimension for `relationships`.

A test copies a tree into its tmp dir (with the project's real macros) and may edit the copy.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from usage_pipeline.warehouse import Warehouse

FIXTURES = Path(__file__).resolve().parent
PROJECT_MACROS = FIXTURES.parents[1] / "dbt_like_models" / "macros"


def model_tree(name: str, tmp_path: Path) -> Path:
    """Copy fixture tree `name` into `tmp_path/models`, with the project's macros added."""
    root = tmp_path / "models"
    shutil.copytree(FIXTURES / name, root)
    (root / "macros").mkdir(exist_ok=True)
    for macro in PROJECT_MACROS.glob("*.sql"):
        shutil.copy(macro, root / "macros" / macro.name)
    return root


def at(day: int, hour: int = 0, minute: int = 0, month: int = 1) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


USAGE_SCHEMA = pa.schema(
    [
        ("snapshot_id", pa.string()),
        ("account_id", pa.string()),
        ("unit", pa.string()),
        ("used", pa.int64()),
        ("projected", pa.int64()),
        ("period_start", pa.timestamp("us", tz="UTC")),
        ("period_end", pa.timestamp("us", tz="UTC")),
        ("observed_at", pa.timestamp("us", tz="UTC")),
        ("loaded_at", pa.timestamp("us", tz="UTC")),
        ("partition_key", pa.string()),
    ]
)
QUOTA_SCHEMA = pa.schema([*(f for f in USAGE_SCHEMA if f.name not in {"used", "projected"}), ("included", pa.int64())])


def usage_row(snapshot: str, account: str, unit: str, used: int | None, projected: int | None, *,
              observed: datetime, loaded: datetime, partition: str) -> dict:
    return {
        "snapshot_id": snapshot, "account_id": account, "unit": unit, "used": used, "projected": projected,
        "period_start": at(1), "period_end": at(1, month=2), "observed_at": observed, "loaded_at": loaded,
        "partition_key": partition,
    }


def quota_row(snapshot: str, account: str, unit: str, included: int | None, *, observed: datetime, loaded: datetime) -> dict:
    return {
        "snapshot_id": snapshot, "account_id": account, "unit": unit, "included": included,
        "period_start": at(1), "period_end": at(1, month=2), "observed_at": observed, "loaded_at": loaded,
        "partition_key": "t1",
    }


def write_staging(warehouse: Warehouse, table: str, rows: list[dict], schema: pa.Schema, *, where: dict | None = None) -> None:
    """Create `staging.<table>` if needed and replace the rows matching `where` (all when None), like a source asset."""
    arrow = pa.Table.from_pylist(rows, schema=schema)
    warehouse.ensure_table(f"staging.{table}", schema)
    with warehouse.transaction() as tx:
        if where:
            tx.delete_where(f"staging.{table}", where)
        else:
            tx.execute(f"delete from staging.{table}")
        tx.load_arrow(f"staging.{table}", arrow)
