"""Raw snapshot store: every vendor response, byte-exact, before any parsing.

The one rule: append-only. A body is written once as
`<root>/<vendor>/<account>/<YYYY-MM-DD>/<snapshot_id>.json.gz` (gzip of the exact bytes, even
when they are not JSON) and indexed by one row in `raw.api_snapshots`; nothing is ever
rewritten. A pull of one account for one partition is a *batch* (`raw.api_batches`): staging
reads only complete batches, and a failed one keeps its reason and everything it landed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa
from pydantic import Field

from usage_pipeline.errors import PayloadError, UsagePipelineError

if TYPE_CHECKING:
    from usage_pipeline.http import Fetched
    from usage_pipeline.warehouse import Warehouse

_SAFE_PATH_PART = re.compile(r"[^A-Za-z0-9._@-]+")
SNAPSHOT_COLUMNS = (
    "snapshot_id", "batch_id", "vendor", "endpoint", "account_id", "partition_key", "request",
    "status", "fetched_at", "sha256", "bytes", "landing_path", "recorded_at",
)


@dataclass(frozen=True)
class Snapshot:
    """One landed response, as indexed in raw.api_snapshots."""

    snapshot_id: str
    batch_id: str
    vendor: str
    endpoint: str
    account_id: str
    partition_key: str
    request: dict[str, Any]
    status: int
    fetched_at: datetime
    sha256: str
    bytes: int
    landing_path: str

    def metadata(self) -> dict[str, Any]:
        return {"snapshot_id": self.snapshot_id, "landing_path": self.landing_path, "sha256": self.sha256, "bytes": self.bytes}


@dataclass
class Batch:
    """The responses of one pull of one account; recorded complete or failed on exit."""

    batch_id: str
    vendor: str
    account_id: str
    partition_key: str
    started_at: datetime
    snapshots: list[Snapshot] = field(default_factory=list)


class LandingStore(dg.ConfigurableResource):
    """Gzip files under USAGE_LANDING_DIR plus their index rows; append-only."""

    root: str = Field(default="data/landing", description="USAGE_LANDING_DIR")

    def land(self, fetched: Fetched, *, partition_key: str, batch_id: str) -> Snapshot:
        """Write the body of `fetched` once (never overwriting) and describe it."""
        snapshot_id = new_snapshot_id(fetched.fetched_at)
        relative = Path(
            _path_part(fetched.vendor), _path_part(fetched.account_id), fetched.fetched_at.strftime("%Y-%m-%d"),
            f"{snapshot_id}.json.gz",
        )
        target = Path(self.root) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(f".tmp-{uuid.uuid4().hex}")
        temporary.write_bytes(gzip.compress(fetched.body, mtime=0))
        try:
            os.link(temporary, target)  # fails if the name exists: append-only, never rewritten
        finally:
            temporary.unlink()
        return Snapshot(
            snapshot_id=snapshot_id, batch_id=batch_id, vendor=fetched.vendor, endpoint=fetched.endpoint,
            account_id=fetched.account_id, partition_key=partition_key, request=fetched.request,
            status=fetched.status, fetched_at=fetched.fetched_at, sha256=hashlib.sha256(fetched.body).hexdigest(),
            bytes=len(fetched.body), landing_path=relative.as_posix(),
        )

    def read_bytes(self, snapshot: Snapshot) -> bytes:
        """The exact body that was received."""
        return gzip.decompress((Path(self.root) / snapshot.landing_path).read_bytes())

    def read_json(self, snapshot: Snapshot) -> Any:
        """The body parsed as JSON; a body that is not JSON names source, account and snapshot."""
        body = self.read_bytes(snapshot)
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PayloadError(
                snapshot.vendor, snapshot.account_id,
                f"snapshot {snapshot.snapshot_id} ({snapshot.endpoint}) is not valid JSON ({error.__class__.__name__}); "
                f"body starts with {preview(body)!r}; the raw file is kept at {snapshot.landing_path}",
            ) from None

    @contextmanager
    def batch(self, warehouse: Warehouse, *, vendor: str, account_id: str, partition_key: str) -> Iterator[BatchWriter]:
        """Land the responses of one account's pull; record the batch complete, or failed with its cause."""
        writer = BatchWriter(self, warehouse, Batch(new_batch_id(), vendor, account_id, partition_key, _now()))
        try:
            yield writer
        except BaseException as error:
            writer.finish(error=error)
            raise
        writer.finish(error=None)


class BatchWriter:
    """Lands each response as it arrives, so a failure later in the pull loses nothing."""

    def __init__(self, store: LandingStore, warehouse: Warehouse, batch: Batch) -> None:
        self.store, self.warehouse, self.batch = store, warehouse, batch

    def land(self, fetched: Fetched) -> Snapshot:
        snapshot = self.store.land(fetched, partition_key=self.batch.partition_key, batch_id=self.batch.batch_id)
        record_snapshots(self.warehouse, [snapshot])
        self.batch.snapshots.append(snapshot)
        return snapshot

    def finish(self, *, error: BaseException | None) -> None:
        from usage_pipeline.http import redact

        message = None if error is None else redact(str(error) if isinstance(error, UsagePipelineError) else f"{type(error).__name__}: {error}")
        row = {
            "batch_id": self.batch.batch_id, "vendor": self.batch.vendor, "account_id": self.batch.account_id,
            "partition_key": self.batch.partition_key, "status": "failed" if error else "complete",
            "error": message[:2000] if message else None, "snapshot_count": len(self.batch.snapshots),
            "started_at": self.batch.started_at, "finished_at": _now(),
        }
        self.warehouse.load_arrow("raw.api_batches", pa.Table.from_pylist([row], schema=BATCH_SCHEMA))


BATCH_SCHEMA = pa.schema([
    ("batch_id", pa.string()), ("vendor", pa.string()), ("account_id", pa.string()), ("partition_key", pa.string()),
    ("status", pa.string()), ("error", pa.string()), ("snapshot_count", pa.int32()),
    ("started_at", pa.timestamp("us", tz="UTC")), ("finished_at", pa.timestamp("us", tz="UTC")),
])
SNAPSHOT_SCHEMA = pa.schema([
    ("snapshot_id", pa.string()), ("batch_id", pa.string()), ("vendor", pa.string()), ("endpoint", pa.string()),
    ("account_id", pa.string()), ("partition_key", pa.string()), ("request", pa.string()), ("status", pa.int32()),
    ("fetched_at", pa.timestamp("us", tz="UTC")), ("sha256", pa.string()), ("bytes", pa.int64()),
    ("landing_path", pa.string()), ("recorded_at", pa.timestamp("us", tz="UTC")),
])


def record_snapshots(warehouse: Warehouse, snapshots: list[Snapshot]) -> None:
    """Index landed files in raw.api_snapshots (append-only)."""
    recorded_at = _now()
    rows = []
    for snapshot in snapshots:
        row = asdict(snapshot)
        row["request"] = json.dumps(snapshot.request, sort_keys=True, default=str)
        row["recorded_at"] = recorded_at
        rows.append(row)
    warehouse.load_arrow("raw.api_snapshots", pa.Table.from_pylist(rows, schema=SNAPSHOT_SCHEMA))


def complete_batches(warehouse: Warehouse, vendor: str, partition_key: str) -> dict[str, list[list[Snapshot]]]:
    """For each account, the snapshots of each complete batch of this partition, latest first.

    Latest = greatest (finished_at, batch_id): the tie-break of DESIGN's idempotency rule.
    Staging parses the latest and falls back to older ones only when it cannot be parsed, so the
    rows always come from the latest *successful* snapshot, live and in replay alike.
    """
    return complete_batches_by_partition(warehouse, vendor, partition_key).get(partition_key, {})


def complete_batches_by_partition(warehouse: Warehouse, vendor: str, partition_key: str | None = None
                                  ) -> dict[str, dict[str, list[list[Snapshot]]]]:
    """`complete_batches` of every partition of a vendor (or of one), in one query: what replay reads."""
    where, params = "vendor = %s and status = 'complete'", [vendor]
    if partition_key is not None:
        where, params = where + " and partition_key = %s", params + [partition_key]
    rows = warehouse.query(
        f"""
        with ranked as (
            select batch_id, row_number() over (partition by partition_key, account_id
                                                order by finished_at desc, batch_id desc) as position
            from raw.api_batches
            where {where}
        )
        select r.position, {', '.join('s.' + column for column in SNAPSHOT_COLUMNS[:-1])}
        from raw.api_snapshots s
        join ranked r on r.batch_id = s.batch_id
        order by s.partition_key, s.account_id, r.position, s.fetched_at, s.snapshot_id
        """,
        params,
    )
    batches: dict[str, dict[str, dict[int, list[Snapshot]]]] = {}
    for position, *row in rows:
        snapshot = _snapshot_from_row(tuple(row))
        batches.setdefault(snapshot.partition_key, {}).setdefault(snapshot.account_id, {}) \
            .setdefault(position, []).append(snapshot)
    return {key: {account: list(by_position.values()) for account, by_position in accounts.items()}
            for key, accounts in batches.items()}


def latest_batch_id(tx: Any, vendor: str, partition_key: str, account_id: str) -> str | None:
    """The id of the account's latest complete batch of the partition, read inside a writer's transaction."""
    rows = tx.execute("select batch_id from raw.api_batches where vendor = %s and partition_key = %s and "
                      "account_id = %s and status = 'complete' order by finished_at desc, batch_id desc limit 1",
                      [vendor, partition_key, account_id])
    return rows[0][0] if rows else None


def latest_batches(warehouse: Warehouse, vendor: str, partition_key: str) -> dict[str, list[Snapshot]]:
    """For each account, the snapshots of its latest complete batch of this partition."""
    return {account: batches[0] for account, batches in complete_batches(warehouse, vendor, partition_key).items()}


def _snapshot_from_row(row: tuple) -> Snapshot:
    values = dict(zip(SNAPSHOT_COLUMNS[:-1], row))
    values["request"] = json.loads(values["request"])
    fetched_at = values["fetched_at"]
    values["fetched_at"] = fetched_at.astimezone(UTC) if fetched_at.tzinfo else fetched_at.replace(tzinfo=UTC)
    return Snapshot(**values)


def new_snapshot_id(at: datetime) -> str:
    """Time-ordered unique id: sorts like fetched_at, so ties break deterministically."""
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:12]}"


def new_batch_id() -> str:
    return f"{_now():%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:12]}"


def preview(body: bytes, limit: int = 80) -> str:
    """The first bytes of a body, printable and redacted (like `http.preview`), for error messages."""
    from usage_pipeline.http import redact  # http imports this module's types: imported when used

    text = body[:limit].decode("utf-8", errors="replace")
    return redact(re.sub(r"\s+", " ", text))


def _path_part(value: str) -> str:
    return _SAFE_PATH_PART.sub("_", value) or "_"


def _now() -> datetime:
    return datetime.now(UTC)
