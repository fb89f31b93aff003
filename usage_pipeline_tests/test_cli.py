"""The CLI as a user runs it (rung 5): run, replay without tokens or network, refused backfills,
doctor on a good and a broken configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from usage_pipeline import cli, settings, timeutil
from usage_pipeline.sandbox import SandboxServer
from usage_pipeline.warehouse import Warehouse

TOKEN_VARIABLES = ("THOUSANDEYES_TOKEN", "TFC_TOKEN", "TFE_SYSTEM_API_TOKEN", "WORKATO_TOKEN")
MARTS = ("fct_quota", "fct_units_used", "fct_test_usage", "fct_tfe_usage_metrics", "fct_workato_usage",
         "fct_subscription_entitlements")


@pytest.fixture
def sandbox_env(monkeypatch, tmp_path: Path):
    """A running sandbox and the environment pointing every source at it; warehouse in tmp."""
    for name in (*TOKEN_VARIABLES, "USAGE_WAREHOUSE_URL", "USAGE_LANDING_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout
    with SandboxServer() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("USAGE_WAREHOUSE_URL", f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
        monkeypatch.setenv("USAGE_LANDING_DIR", str(tmp_path / "landing"))
        yield server


def mart_fingerprint(url: str) -> dict[str, tuple]:
    warehouse = Warehouse(url=url, read_only=True)
    fingerprint = {}
    for table in MARTS:
        columns = [name for name, _ in warehouse.columns(f"marts.{table}") if name != "loaded_at"]
        column_list = ", ".join(f'"{name}"' for name in columns)
        rows = warehouse.query(f"select {column_list} from marts.{table} order by {column_list}")
        fingerprint[table] = (len(rows), hash(tuple(rows)))
    return fingerprint


def test_run_fills_every_source_and_replay_rebuilds_identical_marts_without_tokens(sandbox_env, monkeypatch, capsys):
    with timeutil.use_clock(sandbox_env.clock):
        assert cli.main(["run"]) == 0
    output = capsys.readouterr().out
    for source in settings.SOURCE_KEYS:
        assert f"{source}: ok" in output
    url = settings.load().warehouse_url
    before = mart_fingerprint(url)
    assert all(count > 0 for count, _ in before.values()), before

    sandbox_env.stop()  # no network from here on
    for name in TOKEN_VARIABLES:
        monkeypatch.delenv(name)
    warehouse = Warehouse(url=url)
    relations = warehouse.query("select table_name, table_type from information_schema.tables where table_schema = 'marts'")
    with warehouse.transaction() as tx:
        for name, kind in relations:
            tx.execute(f"drop {'view' if kind == 'VIEW' else 'table'} if exists marts.{name} cascade")
    assert cli.main(["replay"]) == 0
    assert "no network used" in capsys.readouterr().out
    assert mart_fingerprint(url) == before


@pytest.mark.parametrize("source", ["thousandeyes", "hcp_terraform", "terraform_enterprise"])
def test_backfill_of_an_observation_source_is_refused_with_the_reason(sandbox_env, capsys, source):
    assert cli.main(["backfill", source, "--start", "2026-10-01", "--end", "2026-10-05"]) == 2
    error = capsys.readouterr().err
    assert f"{source}" in error and "keeps no history" in error and "replay" in error
    assert sandbox_env.requests_for(vendor=source) == []  # nothing was fetched


def test_doctor_reports_every_part_ok_on_a_good_configuration(sandbox_env, capsys):
    assert cli.main(["doctor"]) == 0
    output = capsys.readouterr().out
    assert "configuration: ok" in output and "warehouse: ok" in output
    for source in settings.SOURCE_KEYS:
        assert f"{source}: ok" in output


def test_doctor_names_the_broken_part_and_the_variable_to_fix(sandbox_env, monkeypatch, capsys):
    monkeypatch.setenv("TFE_SYSTEM_API_TOKEN", "expired-token-value")
    monkeypatch.delenv("WORKATO_TOKEN")
    assert cli.main(["doctor"]) == 1
    output = capsys.readouterr().out
    assert "terraform_enterprise: NOT OK" in output and "TFE_SYSTEM_API_TOKEN" in output
    assert "expired-token-value" not in output
    assert "workato: disabled (WORKATO_TOKEN unset)" in output
    assert "thousandeyes: ok" in output


def test_doctor_on_a_half_made_configuration_names_the_variable(sandbox_env, monkeypatch, capsys):
    monkeypatch.delenv("TFE_SYSTEM_API_URL")
    assert cli.main(["doctor"]) == 2
    assert "TFE_SYSTEM_API_URL is required" in capsys.readouterr().out


def test_run_with_nothing_configured_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    for name in TOKEN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["run"]) == 2
    assert "No source is configured" in capsys.readouterr().out


def test_replay_lists_a_response_it_cannot_parse_and_rebuilds_the_same_marts(sandbox_env, monkeypatch, capsys):
    """A TFE bundle without snapshot ids lands as a complete pull; the run fails its check by name
    and keeps the earlier bundle's rows; replay says so and rebuilds identical marts."""
    from datetime import timedelta

    with timeutil.use_clock(sandbox_env.clock):
        assert cli.main(["run"]) == 0
        sandbox_env.clock.advance(timedelta(minutes=30))  # the same daily TFE tick, pulled again
        sandbox_env.faults.add("terraform_enterprise:/api/v1/usage/bundle", "missing_field", field="snapshots.id")
        assert cli.main(["run", "--source", "terraform_enterprise"]) == 1
    ran = capsys.readouterr().out
    assert "terraform_enterprise [account 127.0.0.1]" in ran and "has no 'id' field" in ran
    url = settings.load().warehouse_url
    before = mart_fingerprint(url)
    assert before["fct_tfe_usage_metrics"][0] > 0  # the earlier bundle's rows stayed

    sandbox_env.stop()
    assert cli.main(["replay"]) == 0
    replayed = capsys.readouterr().out
    assert "terraform_enterprise: 1 partition(s) whose latest raw response cannot be parsed" in replayed
    assert "[account 127.0.0.1]" in replayed and "has no 'id' field" in replayed
    assert mart_fingerprint(url) == before
