"""Staging reads the latest *successful* snapshot (rung 3, both warehouses, real files).

A vendor that answers 200 with an HTML page or broken JSON lands a complete batch that cannot be
parsed. Staging then reports that account's failure by name and stages its latest older batch
that parses, so the live warehouse and a replay from raw choose the same rows; a partition with
nothing parsable is reported by replay, which goes on to the next one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from usage_pipeline.errors import PayloadError, SourceError
from usage_pipeline.landing import complete_batches
from usage_pipeline.replay import replay_staging
from usage_pipeline.sources.base import Parsed, Staging
from test_landing import fetched

TABLE = "staging.stg_fallback__values"
SCHEMA = pa.schema([pa.field("snapshot_id", pa.string()), pa.field("n", pa.int64())])


def land(warehouse, landing, body: bytes, *, account: str = "acme", partition: str = "p", minute: int = 0):
    with landing.batch(warehouse, vendor="hcp_terraform", account_id=account, partition_key=partition) as batch:
        return batch.land(fetched(body, account=account, at=datetime(2026, 11, 20, 10, tzinfo=UTC) + timedelta(minutes=minute)))


def parser(landing, _batches):
    def parse(account, snapshots):
        (snapshot,) = snapshots
        payload = landing.read_json(snapshot)  # raises PayloadError on an HTML page or broken JSON
        if "n" not in payload:
            raise PayloadError("hcp_terraform", account, f"snapshot {snapshot.snapshot_id} has no field n")
        return Parsed(tables={TABLE: [{"snapshot_id": snapshot.snapshot_id, "n": payload["n"]}]})
    return parse


STAGING = Staging("hcp_terraform", {TABLE: SCHEMA}, parser)  # module-level: replay's workers can run it


def stage(warehouse, landing, partition: str = "p"):
    return STAGING.stage(warehouse, landing, partition, logger=logging.getLogger("test"))


def staged(warehouse, partition: str = "p") -> dict[str, int]:
    rows = warehouse.query(f"select account_id, n from {TABLE} where partition_key = %s", [partition])
    return dict(rows)


def test_complete_batches_are_listed_latest_first_per_account(warehouse, landing):
    first, second = land(warehouse, landing, b'{"n": 1}', minute=0), land(warehouse, landing, b'{"n": 2}', minute=5)
    other = land(warehouse, landing, b'{"n": 3}', account="globex", minute=1)
    batches = complete_batches(warehouse, "hcp_terraform", "p")
    assert [[s.snapshot_id for s in batch] for batch in batches["acme"]] == [[second.snapshot_id], [first.snapshot_id]]
    assert [[s.snapshot_id for s in batch] for batch in batches["globex"]] == [[other.snapshot_id]]


@pytest.mark.parametrize("bad_body", [b"<!DOCTYPE html><html>503</html>", b'{"n": 4', b'{"m": 4}'],
                         ids=["html_page", "malformed_json", "missing_field"])
def test_an_unparsable_latest_pull_reports_the_account_and_stages_its_latest_good_one(warehouse, landing, bad_body):
    land(warehouse, landing, b'{"n": 1}', minute=0)
    good = land(warehouse, landing, b'{"n": 2}', minute=5)
    land(warehouse, landing, b'{"n": 30}', account="globex", minute=1)
    assert stage(warehouse, landing).failures == {}
    assert staged(warehouse) == {"acme": 2, "globex": 30}

    land(warehouse, landing, bad_body, minute=10)  # a 200 that is not what we expect
    report = stage(warehouse, landing)
    assert list(report.failures) == ["acme"]  # the check fails and names the account
    assert staged(warehouse) == {"acme": 2, "globex": 30}  # the latest good pull, not an older one
    assert any(good.snapshot_id in warning and "could not be parsed" in warning for warning in report.warnings)
    assert report.accounts == 2


def test_a_replay_from_raw_alone_picks_the_same_batch_as_the_live_run(warehouse, landing, tmp_path):
    land(warehouse, landing, b'{"n": 1}', minute=0)
    land(warehouse, landing, b'{"n": 2}', minute=5)
    land(warehouse, landing, b"<html>maintenance</html>", minute=10)
    live = stage(warehouse, landing)
    assert staged(warehouse) == {"acme": 2} and list(live.failures) == ["acme"]
    with warehouse.transaction() as tx:
        tx.execute(f"delete from {TABLE}")  # what a replay into a fresh warehouse starts from
    stage(warehouse, landing)
    assert staged(warehouse) == {"acme": 2}


@pytest.mark.parametrize("workers", [1, 2], ids=["in_process", "worker_processes"])
def test_replay_reports_a_partition_with_nothing_parsable_and_goes_on(warehouse, landing, workers, monkeypatch):
    from usage_pipeline import replay

    monkeypatch.setattr(replay, "MAX_CHUNK_TICKS", 1)  # one partition per chunk: several chunks, several workers
    land(warehouse, landing, b"<html>maintenance</html>", partition="p1")
    land(warehouse, landing, b'{"n": 7}', partition="p2")
    land(warehouse, landing, b'{"n": 8}', partition="p3")
    land(warehouse, landing, b'{"n": 9}', account="globex", partition="p3")
    progress = []
    reports = replay_staging(STAGING, warehouse, landing, workers=workers,
                             progress=lambda done, total, key: progress.append((done, total, key)))
    assert [report.partition_key for report in reports] == ["p1", "p2", "p3"]
    assert "acme" in reports[0].failures and "maintenance" in reports[0].failures["acme"]
    assert [report.accounts for report in reports] == [0, 1, 2]
    assert [report.rows[TABLE] for report in reports] == [0, 1, 2]
    assert staged(warehouse, "p1") == {} and staged(warehouse, "p2") == {"acme": 7}
    assert staged(warehouse, "p3") == {"acme": 8, "globex": 9}
    assert progress[-1] == (3, 3, "p3")


def test_replay_in_place_replaces_rows_and_keeps_those_of_an_account_it_cannot_parse(warehouse, landing):
    land(warehouse, landing, b'{"n": 1}', partition="p1")
    land(warehouse, landing, b'{"n": 5}', account="globex", partition="p1")
    stage(warehouse, landing, "p1")
    with warehouse.transaction() as tx:  # rows a replay must replace (acme) or leave alone (initech: no raw)
        tx.execute(f"update {TABLE} set n = 100 where account_id = 'acme'")
        tx.execute(f"insert into {TABLE} (snapshot_id, n, account_id, partition_key) values ('x', 3, 'initech', 'p1')")
    replay_staging(STAGING, warehouse, landing)
    assert staged(warehouse, "p1") == {"acme": 1, "globex": 5, "initech": 3}
    assert warehouse.query(f"select count(*) from {TABLE}")[0][0] == 3  # nothing doubled


def test_the_live_run_of_a_partition_with_nothing_parsable_fails_with_the_cause(warehouse, landing):
    land(warehouse, landing, b'{"n": 4', partition="p1")
    with pytest.raises(SourceError) as caught:
        stage(warehouse, landing, "p1")
    assert "hcp_terraform [account acme]" in str(caught.value) and "no account could be parsed" in str(caught.value)


def test_replay_never_writes_an_older_pull_over_one_staged_while_it_ran(warehouse, landing, monkeypatch):
    """A live run pulls and stages a partition after replay read the raw index: replay leaves it."""
    from usage_pipeline import replay

    land(warehouse, landing, b'{"n": 1}', partition="p1")
    land(warehouse, landing, b'{"n": 5}', account="globex", partition="p1")
    stage(warehouse, landing, "p1")
    parse_chunk = replay._parse_chunk

    def racing(*job):
        parsed = parse_chunk(*job)  # rows of the batches the index showed: acme n=1, globex n=5
        land(warehouse, landing, b'{"n": 2}', partition="p1", minute=5)  # a live run pulls acme again...
        stage(warehouse, landing, "p1")                                  # ...and stages it
        return parsed

    monkeypatch.setattr(replay, "_parse_chunk", racing)
    replay_staging(STAGING, warehouse, landing, workers=1)
    assert staged(warehouse, "p1") == {"acme": 2, "globex": 5}
    assert warehouse.query(f"select count(*) from {TABLE}")[0][0] == 2


def test_a_stage_never_writes_a_pull_older_than_one_landed_while_it_parsed(warehouse, landing, monkeypatch):
    land(warehouse, landing, b'{"n": 1}', partition="p1")
    real_parser = STAGING.parser

    def racing_parser(store, batches):
        parse = real_parser(store, batches)
        land(warehouse, landing, b'{"n": 2}', partition="p1", minute=5)  # landed, staged by its own run later
        return parse

    racing = Staging(STAGING.vendor, STAGING.tables, racing_parser)
    report = racing.stage(warehouse, landing, "p1")
    assert staged(warehouse, "p1") == {} and report.rows[TABLE] == 0  # n=1 was not written over the newer pull
    stage(warehouse, landing, "p1")
    assert staged(warehouse, "p1") == {"acme": 2}
