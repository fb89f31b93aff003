"""Two runs at once (rung 5, both engines).

Two real processes against the loopback sandbox: a "holder" run pauses inside its first staging
transaction (after its DELETE, before its insert) until the test releases it; a "waiter" run of
the same partitions starts meanwhile.
- PostgreSQL: the waiter blocks (on the staging table's index DDL or the partition's advisory
  lock, whichever it reaches first) and gets the partition only after the holder committed; the
  rows left are one pull's, the latest (no DELETE ran on rows it could not see: nothing doubled).
- DuckDB: the waiter process waits for the file (one writer at a time) and then completes; a
  third writer with a short busy timeout fails with the plain WarehouseBusyError message naming
  the holder's PID; the file reads whole afterwards.
Every promise of the suite is then checked (landing, grains, replay equality, canaries).

And the advisory lock itself, on PostgreSQL with two threads whose tables already exist (so
nothing but the lock orders them): with it, a day staged twice at once holds one copy; without
it (the control), the second writer's DELETE cannot see the first's new rows and the day doubles.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from reliability_support import Harness, all_logs, figures  # noqa: F401 (fixtures)

from usage_pipeline import soak
from usage_pipeline.errors import WarehouseBusyError
from usage_pipeline.warehouse import Warehouse

CHILD = r"""
import json, os, sys, time
from contextlib import contextmanager
from datetime import datetime
from usage_pipeline import operations, settings, timeutil
from usage_pipeline.warehouse import Tx, Warehouse

role, folder = os.environ["ROLE"], os.environ["COORD"]
log = open(os.path.join(folder, f"events-{role}.jsonl"), "a", buffering=1)
state = {}

def event(name, **fields):
    log.write(json.dumps({"role": role, "event": name, "t": time.time(), "pid": os.getpid(), **fields}) + "\n")

def touch(name):
    open(os.path.join(folder, name), "w").close()

def wait_for(name, timeout=180):
    deadline = time.time() + timeout
    while not os.path.exists(os.path.join(folder, name)):
        if time.time() > deadline:
            sys.exit(f"{role}: nobody wrote {name}")
        time.sleep(0.05)

if role == "holder":
    load_arrow, transaction = Tx.load_arrow, Warehouse.transaction

    def held_load_arrow(self, table, rows):
        if table.startswith("staging.stg_workato__") and "held" not in state:
            state["held"] = state["holding"] = True
            event("holding", table=table, partition=rows.column("partition_key")[0].as_py())
            touch("holding")
            wait_for("release")
        return load_arrow(self, table, rows)

    @contextmanager
    def noted_transaction(self):
        with transaction(self) as tx:
            yield tx
        if state.pop("holding", False):
            event("committed")

    Tx.load_arrow, Warehouse.transaction = held_load_arrow, noted_transaction
elif os.environ["USAGE_WAREHOUSE_URL"].startswith("postgresql"):
    ensure_table, lock_all = Warehouse.ensure_table, Tx.lock_all

    def noted_ensure_table(self, table, schema, **kw):  # its first touch of the partition's tables
        if table.startswith("staging.stg_workato__") and "waiting" not in state:
            state["waiting"] = True
            event("waiting", table=table)
            touch("waiting")
        return ensure_table(self, table, schema, **kw)

    def noted_lock_all(self, targets):
        lock_all(self, targets)
        names = list(targets[0]) if targets else []
        if names and names[0].startswith("staging.stg_workato__") and "acquired" not in state:
            state["acquired"] = True
            event("acquired", lock=names)

    Warehouse.ensure_table, Tx.lock_all = noted_ensure_table, noted_lock_all
else:  # DuckDB: the file itself is the lock
    connect = Warehouse._duckdb_connect

    def noted_connect(self, *, read_only):
        if "waited" in state:
            return connect(self, read_only=read_only)
        state["waited"] = True
        event("waiting")
        touch("waiting")
        connection = connect(self, read_only=read_only)
        event("acquired")
        return connection

    Warehouse._duckdb_connect = noted_connect

class Pinned:
    def now(self):
        return datetime.fromisoformat(os.environ["PINNED_NOW"])

with timeutil.use_clock(Pinned()):
    summary = operations.run(settings.load(), only=["workato"], with_models=False)
event("done", ok=summary.ok, problems=[p for o in summary.sources for p in o.problems])
sys.exit(0 if summary.ok else 1)
"""


def start(pipeline: Harness, role: str, folder: Path) -> subprocess.Popen:
    env = {**os.environ, **pipeline.env, "ROLE": role, "COORD": str(folder),
           "PINNED_NOW": pipeline.server.clock.now().isoformat()}
    env.pop("DAGSTER_HOME", None)
    return subprocess.Popen([sys.executable, "-c", CHILD], env=env, cwd=pipeline.tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(path: Path, *children: subprocess.Popen, warehouse: Warehouse, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for child in children:
            if child.poll() is not None:
                pytest.fail(f"a child ended before {path.name}: {child.returncode}\n{child.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            activity = warehouse.query("select pid, state, wait_event_type, wait_event, left(query, 200) "
                                       "from pg_stat_activity where datname = current_database()") \
                if warehouse.dialect == "postgres" else "n/a"
            pytest.fail(f"nobody wrote {path.name}; database activity: {activity}")
        time.sleep(0.05)


def events(folder: Path) -> dict[str, dict]:
    found = {}
    for path in folder.glob("events-*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            found[f"{record['role']}.{record['event']}"] = record
    return found


def test_two_runs_at_once_take_turns_and_leave_one_pulls_rows(
        warehouse, tmp_path, monkeypatch, request, all_logs, figures):
    pipeline = Harness(warehouse=warehouse, tmp_path=tmp_path, monkeypatch=monkeypatch, request=request)
    folder = tmp_path / "coordination"
    folder.mkdir()
    children: list[subprocess.Popen] = []
    try:
        assert pipeline.run(only=["workato"]).ok
        pipeline.server.clock.advance(timedelta(minutes=40))  # both runs re-pull the same three days

        children.append(holder := start(pipeline, "holder", folder))
        wait_for(folder / "holding", holder, warehouse=warehouse)
        children.append(waiter := start(pipeline, "waiter", folder))
        wait_for(folder / "waiting", holder, waiter, warehouse=warehouse)

        if warehouse.dialect == "duckdb":  # a third writer that will not wait long is told plainly
            with pytest.raises(WarehouseBusyError) as busy:
                Warehouse(url=warehouse.url, busy_timeout_s=0.3).query("select 1")
            message = str(busy.value)
            assert f"PID {holder.pid}" in message and "one writing process at a time" in message
            assert "PostgreSQL" in message
        time.sleep(1.0)  # the waiter is blocked (PostgreSQL: on the lock; DuckDB: retrying the file)
        (folder / "release").touch()
        outputs = [child.communicate(timeout=300)[0] for child in children]
        assert [child.returncode for child in children] == [0, 0], outputs
        pipeline.texts += [("output of a concurrent run", output) for output in outputs]  # for the canary

        seen = events(folder)
        assert seen["waiter.acquired"]["t"] >= seen["holder.committed"]["t"], seen  # one after the other
        assert seen["waiter.acquired"]["t"] - seen["waiter.waiting"]["t"] >= 0.5, seen  # it really waited

        assert soak.mixed_pulls(warehouse) == []
        with soak.reading(warehouse) as db:  # every staged row is its day's latest complete pull
            stale = db.execute(
                "select count(*) from staging.stg_workato__usage t join raw.api_snapshots s "
                "on s.snapshot_id = t.snapshot_id where s.batch_id not in (select batch_id from (select batch_id, "
                "row_number() over (partition by partition_key order by finished_at desc, batch_id desc) as n "
                "from raw.api_batches where vendor = 'workato' and status = 'complete') ranked where n = 1)")
        assert stale == [(0,)]
        assert len([b for b in pipeline.batches("workato") if b[3] == "complete"]) == 9  # 3 runs × 3 days, all kept

        # the children's requests are the sandbox's too: every answer they fetched is landed
        pipeline.build_models()
        verdict = pipeline.verify(caplog=all_logs)
        figures.add(verdict)
        verdict.assert_clean()
    finally:
        (folder / "release").touch()
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        pipeline.close()


@pytest.mark.parametrize("with_lock", [True, False], ids=["advisory_lock", "without_it"])
def test_two_writers_of_one_postgresql_partition_serialize_on_the_advisory_lock(
        with_lock, postgres_server, tmp_path, monkeypatch, request):
    """Two threads stage one Workato day at once, the first pausing after its DELETE. With the
    advisory lock the second waits and the day holds one pull's rows; without it (the control)
    the second's DELETE cannot see the first's new rows and the day ends up doubled."""
    import threading

    from usage_pipeline.sources import workato
    from usage_pipeline.warehouse import Tx

    warehouse = Warehouse(url=postgres_server.create_database())
    warehouse.bootstrap()
    pipeline = Harness(warehouse=warehouse, tmp_path=tmp_path, monkeypatch=monkeypatch, request=request)
    try:
        assert pipeline.run(only=["workato"]).ok
        day = sorted(pipeline.staged_partitions("workato"))[0]
        table = "staging.stg_workato__usage"
        rows = warehouse.query(f"select count(*) from {table} where partition_key = %s", [day])[0][0]
        writers = [Warehouse(url=warehouse.url), Warehouse(url=warehouse.url)]
        for writer in writers:
            workato.ensure_staging(writer)  # the tables exist: no DDL, so the lock is all that orders them
        holding, release, times = threading.Event(), threading.Event(), {}
        load_arrow, lock_all = Tx.load_arrow, Tx.lock_all

        def paused_load_arrow(self, name, data):
            if threading.current_thread().name == "first" and name == table and not holding.is_set():
                holding.set()
                assert release.wait(60)
            return load_arrow(self, name, data)

        def timed_lock(self, targets):
            if with_lock:
                lock_all(self, targets)
            times.setdefault(threading.current_thread().name, time.monotonic())

        monkeypatch.setattr(Tx, "load_arrow", paused_load_arrow)
        monkeypatch.setattr(Tx, "lock_all", timed_lock)
        errors = []

        def stage(writer: Warehouse) -> None:
            try:
                workato.stage(writer, pipeline.landing_store(), day)
            except Exception as error:  # noqa: BLE001 (reported by the main thread)
                errors.append(error)

        first = threading.Thread(target=stage, args=(writers[0],), name="first")
        second = threading.Thread(target=stage, args=(writers[1],), name="second")
        first.start()
        assert holding.wait(60)
        second.start()
        time.sleep(0.5)  # the second writer reaches its lock (or, without it, its DELETE)
        committed_at = time.monotonic()
        release.set()
        first.join(60)
        second.join(60)
        assert errors == []
        after = warehouse.query(f"select count(*) from {table} where partition_key = %s", [day])[0][0]
        if with_lock:
            assert times["second"] >= committed_at  # it got the partition only after the first released it
            assert after == rows and soak.mixed_pulls(warehouse) == []
        else:
            assert after == 2 * rows  # the control: what the lock prevents
    finally:
        pipeline.close()
