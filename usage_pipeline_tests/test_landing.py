"""Raw landing (rung 3, real files and both warehouses): byte-exact, hashed, append-only, no secrets."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from usage_pipeline.errors import PayloadError, SourceError
from usage_pipeline.landing import complete_batches_by_partition, latest_batches
from usage_pipeline.http import CallStats, Fetched

CANARY = "canary-secret-9c2d"


def fetched(body: bytes, *, account: str = "acme", at: datetime | None = None) -> Fetched:
    return Fetched(
        vendor="hcp_terraform", account_id=account, endpoint="subscription", method="GET",
        url="https://app.terraform.io/api/v2/organizations/acme/subscription",
        request={"method": "GET", "path": "/api/v2/organizations/acme/subscription", "params": {}},
        status=200, headers={"content-type": "application/json"}, body=body,
        fetched_at=at or datetime(2026, 11, 20, 10, 0, tzinfo=UTC), stats=CallStats(requests=1, retries=0, wait_s=0.0),
    )


@pytest.mark.parametrize("body", [
    b'{"data": {"id": "sub-1", "n": 12345678901234567890}}',  # big int: bytes kept, never re-serialized
    b"<html><body>502 Bad Gateway</body></html>",             # not JSON: stored anyway
    b"\xff\xfe\x00 binary \x00",                              # not even UTF-8
    b"",                                                      # empty body
])
def test_land_round_trips_bytes_exactly_with_sha256(warehouse, landing, body):
    with landing.batch(warehouse, vendor="hcp_terraform", account_id="acme", partition_key="2026-11-20") as batch:
        snapshot = batch.land(fetched(body))
    assert landing.read_bytes(snapshot) == body
    assert snapshot.sha256 == hashlib.sha256(body).hexdigest()
    assert snapshot.bytes == len(body)
    path = Path(landing.root) / snapshot.landing_path
    assert path.parts[-4:-1] == ("hcp_terraform", "acme", "2026-11-20")
    assert gzip.decompress(path.read_bytes()) == body
    row = warehouse.query("select sha256, bytes, landing_path, status, vendor, account_id from raw.api_snapshots")
    assert row == [(snapshot.sha256, len(body), snapshot.landing_path, 200, "hcp_terraform", "acme")]


def test_land_is_append_only_and_never_overwrites(warehouse, landing):
    with landing.batch(warehouse, vendor="hcp_terraform", account_id="acme", partition_key="p") as batch:
        first = batch.land(fetched(b'{"v": 1}'))
        second = batch.land(fetched(b'{"v": 2}'))
    assert first.snapshot_id != second.snapshot_id
    assert landing.read_bytes(first) == b'{"v": 1}'
    with pytest.raises(FileExistsError):
        import os
        target = Path(landing.root) / first.landing_path
        os.link(target, target)  # the same primitive land() relies on refuses an existing name
    assert warehouse.query("select count(*) from raw.api_snapshots")[0][0] == 2


def test_request_column_holds_no_secret(warehouse, landing):
    with landing.batch(warehouse, vendor="hcp_terraform", account_id="acme", partition_key="p") as batch:
        batch.land(fetched(b"{}"))
    (request,) = warehouse.query("select request from raw.api_snapshots")[0]
    assert json.loads(request)["path"] == "/api/v2/organizations/acme/subscription"
    assert "authorization" not in request.lower()


def test_failed_batch_keeps_landed_responses_and_records_the_cause(warehouse, landing):
    with pytest.raises(SourceError):
        with landing.batch(warehouse, vendor="hcp_terraform", account_id="acme", partition_key="p") as batch:
            batch.land(fetched(b'{"page": 1}'))
            raise SourceError("hcp_terraform", "acme", "page 2 answered 500 after 5 retries")
    assert warehouse.query("select count(*) from raw.api_snapshots")[0][0] == 1
    status, error, count = warehouse.query("select status, error, snapshot_count from raw.api_batches")[0]
    assert (status, count) == ("failed", 1)
    assert "acme" in error and "page 2 answered 500" in error
    assert latest_batches(warehouse, "hcp_terraform", "p") == {}  # staging never reads a failed batch
    assert complete_batches_by_partition(warehouse, "hcp_terraform") == {}


def test_latest_batches_picks_the_latest_complete_batch_per_account(warehouse, landing):
    for account, body in [("acme", b'{"n": 1}'), ("acme", b'{"n": 2}'), ("globex", b'{"n": 3}')]:
        with landing.batch(warehouse, vendor="hcp_terraform", account_id=account, partition_key="p") as batch:
            batch.land(fetched(body, account=account))
    batches = latest_batches(warehouse, "hcp_terraform", "p")
    assert sorted(batches) == ["acme", "globex"]
    assert [landing.read_json(s) for s in batches["acme"]] == [{"n": 2}]
    assert list(complete_batches_by_partition(warehouse, "hcp_terraform")) == ["p"]


def test_read_json_of_a_non_json_body_names_vendor_account_and_snapshot(warehouse, landing):
    with landing.batch(warehouse, vendor="hcp_terraform", account_id="acme", partition_key="p") as batch:
        snapshot = batch.land(fetched(b"<html>maintenance</html>"))
    with pytest.raises(PayloadError) as caught:
        landing.read_json(snapshot)
    message = str(caught.value)
    assert "hcp_terraform" in message and "acme" in message and snapshot.snapshot_id in message
    assert "<html>maintenance" in message
