"""Crash safety (rung 5, both engines): a run SIGKILLed at a chosen point of its load, in a real
subprocess against the loopback sandbox, loses nothing it had committed and leaves no partial
partition; the next run completes the work.

Two kill points, chosen by patching `Tx.load_arrow` in the subprocess only:
- `staging`: inside the staging transaction of a Workato day, after its DELETE ran (the hook sees
  the partition empty in the transaction) and before the rows are inserted and committed. The
  previous rows of every day must be exactly as before; the next run replaces them whole.
- `raw_index`: after the first response's gzip file is written, before its raw.api_snapshots row
  is committed. The file stays unindexed (ignored by staging and replay), no batch is recorded,
  and the next run lands the window again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from reliability_support import Harness, all_logs, figures  # noqa: F401 (fixtures)

from usage_pipeline import soak

CHILD = r"""
import json, os, signal, sys
from datetime import datetime
from usage_pipeline import operations, settings, timeutil
from usage_pipeline.warehouse import Tx

point, marker = os.environ["CRASH_AT"], os.environ["CRASH_MARKER"]
original = Tx.load_arrow

def load_arrow(self, table, rows):
    if point == "staging" and table.startswith("staging.stg_workato__"):
        key = rows.column("partition_key")[0].as_py()
        left = self.execute(f"select count(*) from {table} where partition_key = %s", [key])[0][0]
        with open(marker, "w") as out:  # what the transaction saw just before the kill
            json.dump({"table": table, "partition_key": key, "rows_left_in_transaction": left,
                       "rows_to_insert": rows.num_rows}, out)
        os.kill(os.getpid(), signal.SIGKILL)
    if point == "raw_index" and table == "raw.api_snapshots":
        with open(marker, "w") as out:
            json.dump({"table": table, "landing_path": rows.column("landing_path")[0].as_py()}, out)
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, table, rows)

Tx.load_arrow = load_arrow

class Pinned:
    def now(self):
        return datetime.fromisoformat(os.environ["CRASH_NOW"])

with timeutil.use_clock(Pinned()):
    operations.run(settings.load(), only=["workato"], with_models=False)
sys.exit(3)  # never reached: the hook kills the process first
"""


def run_killed_child(pipeline: Harness, point: str) -> dict:
    marker = pipeline.tmp_path / f"crash-{point}.json"
    env = {**os.environ, **pipeline.env, "CRASH_AT": point, "CRASH_MARKER": str(marker),
           "CRASH_NOW": pipeline.server.clock.now().isoformat()}
    env.pop("DAGSTER_HOME", None)
    child = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=pipeline.tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, f"the child was not killed at {point}: {child.returncode}\n{child.stderr[-3000:]}"
    pipeline.texts.append((f"output of the run killed at {point}", child.stdout + child.stderr))  # for the canary
    return json.loads(marker.read_text())


def readable_everywhere(pipeline: Harness) -> None:
    """The file (or database) opens and every relation reads: nothing is corrupted."""
    with soak.reading(pipeline.warehouse) as db:
        for schema in ("raw", "staging", "intermediate", "marts"):
            for relation in db.relations(schema):
                db.execute(f"select count(*) from {relation}")


def test_a_run_killed_inside_its_staging_transaction_leaves_the_previous_rows_whole(
        warehouse, tmp_path, monkeypatch, request, all_logs, figures):
    pipeline = Harness(warehouse=warehouse, tmp_path=tmp_path, monkeypatch=monkeypatch, request=request)
    try:
        assert pipeline.run(only=["workato"]).ok
        before = soak.fingerprint(warehouse, ("staging",))
        days = sorted(pipeline.staged_partitions("workato"))
        pipeline.server.clock.advance(timedelta(minutes=40))  # the same three day windows, re-pulled

        seen = run_killed_child(pipeline, "staging")

        assert seen["rows_left_in_transaction"] == 0 and seen["rows_to_insert"] > 0, seen  # killed after the DELETE
        readable_everywhere(pipeline)
        assert soak.fingerprint(warehouse, ("staging",)) == before  # every previous row, no partial day
        assert soak.mixed_pulls(warehouse) == []
        complete = [b[2] for b in pipeline.batches("workato") if b[3] == "complete"]
        assert sorted(complete) == sorted([*days, seen["partition_key"]])  # its pull had landed before staging
        landing = soak.check_landing(warehouse, pipeline.landing_dir)
        assert landing.problems == [] and landing.orphans == []

        pipeline.server.clock.advance(timedelta(minutes=5))
        assert pipeline.run(only=["workato"]).ok  # the next run completes it
        assert soak.fingerprint(warehouse, ("staging",)) != before
        pipeline.build_models()
        verdict = pipeline.verify(caplog=all_logs)
        figures.add(verdict)
        verdict.assert_clean()
    finally:
        pipeline.close()


def test_a_run_killed_between_writing_a_raw_file_and_indexing_it_loses_no_committed_data(
        warehouse, tmp_path, monkeypatch, request, all_logs, figures):
    pipeline = Harness(warehouse=warehouse, tmp_path=tmp_path, monkeypatch=monkeypatch, request=request)
    try:
        assert pipeline.run(only=["workato"]).ok
        before_staging, batches_before = soak.fingerprint(warehouse, ("staging",)), pipeline.batches()
        pipeline.server.clock.advance(timedelta(minutes=40))

        seen = run_killed_child(pipeline, "raw_index")

        readable_everywhere(pipeline)
        landing = soak.check_landing(warehouse, pipeline.landing_dir)
        assert landing.problems == [] and landing.orphans == [seen["landing_path"]]  # written, never indexed
        assert pipeline.batches() == batches_before  # no batch row: the pull never happened, as far as raw says
        assert soak.fingerprint(warehouse, ("staging",)) == before_staging

        pipeline.server.clock.advance(timedelta(minutes=5))
        assert pipeline.run(only=["workato"]).ok
        pipeline.build_models()
        verdict = pipeline.verify(caplog=all_logs, allow_orphans=frozenset({seen["landing_path"]}))
        figures.add(verdict)
        verdict.assert_clean()  # the killed run's one answer is the one known, unindexed file
    finally:
        pipeline.close()


@pytest.fixture(autouse=True)
def _no_stray_dagster_home(monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
