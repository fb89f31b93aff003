"""The scale path (rung 4, real PostgreSQL): `dagster.yaml.example` as shipped puts Dagster's
runs, event log, schedule storage and concurrency pools in PostgreSQL, and a materialization
run under it is stored there, where any other process or machine can read it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import psycopg
import pytest
from sqlalchemy.engine import make_url

from usage_pipeline.settings import PROJECT_ROOT

EXAMPLE = PROJECT_ROOT / "dagster.yaml.example"
K8S_EXAMPLE = PROJECT_ROOT / "deploy" / "dagster.k8s.yaml"


@dg.asset(key=["staging", "stg_scale_path_probe"], pool="warehouse_writer")
def scale_path_probe() -> dg.MaterializeResult:
    """A stand-in staging asset: what matters is where Dagster records its run."""
    return dg.MaterializeResult(metadata={"dagster/row_count": 3})


@pytest.fixture
def postgres_instance(postgres_server, tmp_path, monkeypatch):
    """A DAGSTER_HOME whose dagster.yaml is the shipped example, pointed at a fresh database."""
    url = make_url(postgres_server.create_database())
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(EXAMPLE.read_text())
    for name, value in {"DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": url.host, "DAGSTER_PG_PORT": str(url.port),
                        "DAGSTER_PG_USERNAME": url.username, "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": url.database}.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.get() as instance:
        yield instance, f"host={url.host} port={url.port} user={url.username} dbname={url.database}"


def test_dagster_postgres_storage_keeps_runs_events_and_schedules_in_postgres(postgres_instance):
    instance, conninfo = postgres_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"

    result = dg.materialize([scale_path_probe], instance=instance)

    assert result.success
    with psycopg.connect(conninfo) as connection:
        runs = connection.execute("select run_id, status from runs").fetchall()
        materializations = connection.execute(
            "select run_id, asset_key from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'").fetchall()
        schedule_tables = connection.execute(
            "select count(*) from information_schema.tables where table_name in ('jobs', 'job_ticks')").fetchone()[0]
    assert runs == [(result.run_id, "SUCCESS")]
    assert materializations == [(result.run_id, '["staging", "stg_scale_path_probe"]')]
    assert schedule_tables == 2
    # and read back through Dagster, as the webserver on another machine would
    event = instance.get_latest_materialization_event(dg.AssetKey(["staging", "stg_scale_path_probe"]))
    assert event is not None and event.run_id == result.run_id


def test_dagster_postgres_storage_holds_pool_limits_for_writer_and_vendor_apis(postgres_instance):
    instance, conninfo = postgres_instance
    # unset pools default to 1: warehouse_writer and every <vendor>_api
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    instance.event_log_storage.set_concurrency_slots("warehouse_writer", 1)
    instance.event_log_storage.set_concurrency_slots("workato_api", 2)

    with psycopg.connect(conninfo) as connection:
        limits = dict(connection.execute('select concurrency_key, "limit" from concurrency_limits').fetchall())
    assert limits == {"warehouse_writer": 1, "workato_api": 2}


def test_kubernetes_example_shares_the_storage_and_pool_settings():
    import yaml

    base, k8s = yaml.safe_load(EXAMPLE.read_text()), yaml.safe_load(K8S_EXAMPLE.read_text())
    assert k8s["storage"]["postgres"]["postgres_db"].keys() >= base["storage"]["postgres"]["postgres_db"].keys()
    assert k8s["concurrency"] == base["concurrency"]
    assert k8s["run_launcher"]["class"] == "K8sRunLauncher"
    assert Path(k8s["run_launcher"]["config"]["volume_mounts"][0]["mountPath"]).as_posix() == "/data/landing"
