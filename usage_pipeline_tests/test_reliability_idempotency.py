"""Idempotency, proven (rung 5, both engines): the same partitions run twice leave the rows of one
run, and `replay` twice gives identical marts, equal to the ones the runs built.

A second tick 30 minutes after the first pulls the same ThousandEyes hour, HCP and TFE day and
Workato day windows again. Afterwards every staging row of every (partition, account) comes from
that account's latest pull, each staging table has as many rows as after the first run, and the
marts have as many rows too (incremental facts replaced, not appended). `replay` in place, twice,
reproduces the marts checksum for checksum (every relation of `marts`, `loaded_at` aside).
"""

from __future__ import annotations

from datetime import timedelta

from reliability_support import Harness, all_logs, figures  # noqa: F401 (fixtures)

from usage_pipeline import operations, soak
from usage_pipeline.sandbox.server import DEFAULT_NOW


def counts(fingerprint: dict[str, tuple[int, str]]) -> dict[str, int]:
    return {relation: rows for relation, (rows, _) in fingerprint.items()}


def test_a_partition_run_twice_keeps_one_runs_rows_and_replay_twice_is_identical(
        warehouse, tmp_path, monkeypatch, request, all_logs, figures):
    pipeline = Harness(warehouse=warehouse, tmp_path=tmp_path, monkeypatch=monkeypatch, request=request)
    try:
        # 10:05 and 10:35 UTC: the same closed hour, and Workato's open day has the same buckets begun
        pipeline.at(DEFAULT_NOW + timedelta(minutes=5))
        assert pipeline.run().ok
        pipeline.build_models()
        first = soak.fingerprint(warehouse, ("staging", "marts"))
        first_batches, first_pulls = {b[:3] for b in pipeline.batches()}, len(pipeline.batches())

        pipeline.server.clock.advance(timedelta(minutes=30))
        assert pipeline.run().ok
        pipeline.build_models()
        second = soak.fingerprint(warehouse, ("staging", "marts"))

        assert {b[:3] for b in pipeline.batches()} == first_batches  # the same partitions and accounts again
        assert counts(second) == counts(first)  # no row added by running again
        assert soak.mixed_pulls(warehouse) == []
        assert len(pipeline.batches()) == 2 * first_pulls  # raw keeps both runs' pulls (audit trail)
        stale = []
        with soak.reading(warehouse) as db:
            for table in db.relations("staging"):
                stale += db.execute(
                    f"select '{table}', count(*) from {table} t join raw.api_snapshots s on s.snapshot_id = t.snapshot_id "
                    "where s.batch_id not in (select batch_id from (select batch_id, row_number() over "
                    "(partition by vendor, account_id, partition_key order by finished_at desc, batch_id desc) as n "
                    "from raw.api_batches where status = 'complete') ranked where n = 1) having count(*) > 0")
        assert stale == []  # every staged row is its account's latest pull

        verdict = pipeline.verify(caplog=all_logs)  # the live marts against a clean replay elsewhere
        figures.add(verdict)

        operations.replay(pipeline.config)  # in place, twice: checksum for checksum
        replayed = soak.fingerprint(warehouse, ("marts",))
        operations.replay(pipeline.config)
        assert soak.fingerprint(warehouse, ("marts",)) == replayed

        verdict.assert_clean()
    finally:
        pipeline.close()
