"""The benchmark (rungs 1 and 3, DuckDB and real PostgreSQL): its data is reproducible, the
methods it compares load exactly the same rows as our path, the proposed fast parser is the
reference parser's twin, and the results JSON carries the fields the README quotes. No
timing is asserted: machines are noisy; the figures are the benchmark's job, not the suite's."""

from __future__ import annotations

import copy
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from usage_pipeline import bench, bench_data, bench_methods
from usage_pipeline.bench_fastpath import parse_usage_v7_arrow, same_parse
from usage_pipeline.sources.thousandeyes.parse import parse_usage_v7
from usage_pipeline.warehouse import Warehouse

from conftest import samples_dir

OBSERVED = datetime(2026, 1, 1, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """1,200 tests over 3 organization contexts, indexed in a template DuckDB warehouse."""
    root = tmp_path_factory.mktemp("bench")
    dataset = bench_data.write_thousandeyes(root / "landing", 1200, tests_per_file=500)
    template = bench.prepare_duckdb_template(root / "template.duckdb", dataset)
    return dataset, template, root


def run(method: str, dataset, url: str) -> dict:
    spec = {"method": method, "warehouse_url": url, "landing_root": str(dataset.root), "partitions": dataset.partitions,
            "loaded_at": bench.LOADED_AT, "max_object_bytes": 1 << 24}
    return bench_methods.measure(spec)


def copy_of(template: Path, tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.duckdb"
    shutil.copyfile(template, path)
    return f"duckdb:///{path}"


def staged_rows(url: str) -> list[tuple]:
    columns = ", ".join(c for c in bench_methods.TEST_COLUMNS if c != "loaded_at")
    return sorted(Warehouse(url=url, read_only=True).query(f"select {columns} from {bench_methods.TESTS_TABLE}"))


# ---------- the data


def test_bench_generator_same_seed_gives_same_bytes(tmp_path):
    first = bench_data.write_thousandeyes(tmp_path / "a", 1200, tests_per_file=500)
    second = bench_data.write_thousandeyes(tmp_path / "b", 1200, tests_per_file=500)
    other = bench_data.write_thousandeyes(tmp_path / "c", 1200, tests_per_file=500, seed=bench_data.SEED + 1)

    assert first.sha256 == second.sha256 != other.sha256
    assert [f.read_bytes() for f in first.files()] == [f.read_bytes() for f in second.files()]
    assert (first.expected_rows, len(first.snapshots), first.partitions) == (1200, 3, ["2026-01-01-00:00"])


def test_bench_generator_payloads_exercise_the_contract_edges():
    body = json.loads(bench_data.thousandeyes_payload(seed=1, org=1, n_tests=2000, month_start=OBSERVED.replace(hour=0)))
    tests = body["usage"]["tests"]
    assert any("cloudUnitsProjected" not in t for t in tests)          # absent → NULL, never 0
    assert any(t.get("cloudUnitsProjected") == 0 for t in tests)        # a real zero stays 0
    assert any(t.get("cloudUnitsProjected", 0) > 2**31 for t in tests)  # BIGINT
    assert any('"' in t["testName"] or "\\" in t["testName"] for t in tests)
    assert all(isinstance(t["testId"], str) for t in tests)             # v7: ids are strings


# ---------- exactness: every method loads our rows


@pytest.mark.parametrize("method", ["ours_fast", "duckdb_read_json", "duckdb_json_transform", "pandas"])
def test_bench_method_loads_exactly_our_rows(small, tmp_path, method):
    dataset, template, _ = small
    ours_url, other_url = copy_of(template, tmp_path, "ours"), copy_of(template, tmp_path, method)

    ours, other = run("ours", dataset, ours_url), run(method, dataset, other_url)

    assert ours["rows"] == other["rows"] == dataset.expected_rows
    assert staged_rows(other_url) == staged_rows(ours_url)
    assert other["digest"] == ours["digest"]


def test_bench_digest_is_the_same_on_postgres(small, tmp_path, postgres_server):
    dataset, template, _ = small
    duckdb_url, pg_url = copy_of(template, tmp_path, "ours"), postgres_server.create_database()
    warehouse = Warehouse(url=pg_url)
    bench_data.index(warehouse, dataset)

    proposed_url = postgres_server.create_database()
    bench_data.index(Warehouse(url=proposed_url), dataset)

    on_duckdb, on_postgres = run("ours", dataset, duckdb_url), run("pg_ours_stage", dataset, pg_url)
    proposed = run("pg_ours_fast_stage", dataset, proposed_url)  # timestamps pre-rendered, queued COPY

    assert on_postgres["rows"] == proposed["rows"] == dataset.expected_rows
    assert on_postgres["digest"] == proposed["digest"] == on_duckdb["digest"]


def test_bench_replay_paths_write_identical_staging(tmp_path):
    """Today's tick-by-tick replay, the proposed bulk replay and DuckDB's native ceiling: same four tables."""
    from usage_pipeline.bench_replay import duckdb_replay_native, replay_thousandeyes
    from usage_pipeline.bench_warehouse import SessionWarehouse
    from usage_pipeline.landing import LandingStore
    from usage_pipeline.sources import source_module
    from usage_pipeline.sources.thousandeyes.parse import SCHEMAS

    dataset = bench_data.write_thousandeyes_history(tmp_path / "landing", orgs=3, hours=6, tests_per_org=7)
    template = bench.prepare_duckdb_template(tmp_path / "template.duckdb", dataset)
    current, proposed, native = (copy_of(template, tmp_path, name) for name in ("current", "proposed", "native"))
    landing = LandingStore(root=str(dataset.root))
    for key in dataset.partitions:
        source_module("thousandeyes").stage(Warehouse(url=current), landing, key)
    bulk = SessionWarehouse(url=proposed)
    with bulk.session():
        replay_thousandeyes(bulk, landing, chunk=4, workers=1)
    duckdb_replay_native({"warehouse_url": native, "landing_root": str(dataset.root),
                                        "loaded_at": bench.LOADED_AT, "max_object_bytes": 1 << 24})()

    for table, schema in SCHEMAS.items():
        columns = ", ".join(f'"{name}"' for name in [*schema.names, "account_id", "partition_key"])
        rows = [sorted(Warehouse(url=url, read_only=True).query(f"select {columns} from {table}"), key=repr)
                for url in (current, proposed, native)]
        assert rows[0] and rows[0] == rows[1] == rows[2], table


# ---------- the proposed fast parser: the reference parser's twin, or it steps aside


def edge_cases() -> list[tuple[str, bytes]]:
    fixture = json.loads((samples_dir() / "thousandeyes" / "v7_usage_expand_all.sdk_fixture.json").read_text())

    def variant(change) -> bytes:
        payload = copy.deepcopy(fixture)
        change(payload)
        return json.dumps(payload).encode()

    def tests(payload):
        return payload["usage"]["tests"]

    return [
        # the SDK fixture, pretty-printed as published
        ("sdk_fixture", (samples_dir() / "thousandeyes" / "v7_usage_expand_all.sdk_fixture.json").read_bytes()),
        ("pre_2025_10_vagent", (samples_dir() / "thousandeyes" /
                                "v7_usage_expand_all.sdk_fixture_pre_2025-10_with_vagentId.json").read_bytes()),
        # a new test without projection: NULL, never 0
        ("projection_absent", variant(lambda p: tests(p)[0].pop("cloudUnitsProjected"))),
        ("projection_null", variant(lambda p: tests(p)[0].update(cloudUnitsProjected=None))),
        # v6-style integer ids inside a v7 body: the reference turns them into text
        ("integer_ids", variant(lambda p: tests(p)[0].update(aid=1234, testId=1158))),
        # padded and empty ids: the reference strips, and "" means missing
        ("padded_id", variant(lambda p: tests(p)[0].update(testId=" 1158\u2028"))),
        ("empty_id", variant(lambda p: tests(p)[0].update(testId=""))),
        ("missing_used", variant(lambda p: tests(p)[0].pop("cloudUnitsUsed"))),
        # numbers: an integral float is accepted, a fraction and a bool are not, 2^63 does not fit
        ("integral_float", variant(lambda p: tests(p)[0].update(cloudUnitsUsed=14050.0))),
        ("fraction", variant(lambda p: tests(p)[0].update(cloudUnitsUsed=1.5))),
        ("bool_number", variant(lambda p: tests(p)[0].update(cloudUnitsUsed=True))),
        ("beyond_int64", variant(lambda p: tests(p)[0].update(cloudUnitsProjected=2**63))),
        ("name_not_text", variant(lambda p: tests(p)[0].update(testName=42))),
        # a repeated test is kept and warned about; an unknown field is warned about
        ("repeated_test", variant(lambda p: tests(p).append(dict(tests(p)[0])))),
        ("unknown_test_field", variant(lambda p: tests(p)[0].update(newField=1))),
        ("unknown_usage_field", variant(lambda p: p["usage"].update(newBreakdown=[{"a": 1}]))),
        # without expand: no breakdown at all, and an empty one
        ("no_tests", variant(lambda p: p["usage"].pop("tests"))),
        ("empty_tests", variant(lambda p: p["usage"].update(tests=[]))),
        ("item_not_object", variant(lambda p: tests(p).append(7))),
        ("missing_quota", variant(lambda p: p["usage"].pop("quota"))),
        ("usage_null", b'{"usage": null}'),
        ("not_an_object", b"[1, 2]"),
    ]


@pytest.mark.parametrize("name, body", edge_cases(), ids=[name for name, _ in edge_cases()])
def test_parse_usage_v7_arrow_matches_the_reference_or_declines(name, body):
    try:
        reference = parse_usage_v7(json.loads(body), snapshot_id="s1", observed_at=OBSERVED, account_id="1234")
    except Exception as error:  # the fast path must then decline (or fail the same way)
        reference = error
    try:
        fast = parse_usage_v7_arrow(body, snapshot_id="s1", observed_at=OBSERVED, account_id="1234")
    except Exception as error:
        fast = error

    if isinstance(reference, Exception):
        assert fast is None or (type(fast) is type(reference) and str(fast) == str(reference))
    elif fast is not None:
        assert same_parse(reference, fast)


def _mutate(rng, payload) -> None:
    """One random edit of the kind real payloads drift into: a field removed, nulled, retyped or padded."""
    usage = payload["usage"]
    candidates = [usage, *(usage[name] for name in ("quota",) if isinstance(usage.get(name), dict))]
    for array in ("tests", "enterpriseAgentUnits"):
        items = usage.get(array)
        if isinstance(items, list) and items and isinstance(items[0], dict):
            candidates.append(rng.choice([item for item in items if isinstance(item, dict)]))
    target = rng.choice(candidates)
    if not target:
        return
    key = rng.choice(sorted(target))
    edits = [
        lambda: target.pop(key),
        lambda: target.__setitem__(key, None),
        lambda: target.__setitem__(key, str(target[key])) if isinstance(target[key], int) else None,
        lambda: target.__setitem__(key, int(target[key])) if isinstance(target[key], str) and target[key].isdigit() else None,
        lambda: target.__setitem__(key, float(target[key])) if isinstance(target[key], int) else None,
        lambda: target.__setitem__(key, f" {target[key]}") if isinstance(target[key], str) else None,
        lambda: target.__setitem__(key, True),
        lambda: target.__setitem__("surprise", 1),
        lambda: usage["tests"].append(dict(usage["tests"][0])) if isinstance(usage.get("tests"), list) and usage["tests"]
        and isinstance(usage["tests"][0], dict) else None,
    ]
    rng.choice(edits)()


@pytest.mark.parametrize("seed", range(60))
def test_parse_usage_v7_arrow_stays_the_reference_twin_under_random_edits(seed):
    import random

    rng = random.Random(seed)
    payload = json.loads(bench_data.thousandeyes_payload(seed=seed, org=1, n_tests=30, month_start=OBSERVED.replace(hour=0)))
    for _ in range(rng.randint(1, 3)):
        _mutate(rng, payload)
    body = json.dumps(payload, ensure_ascii=bool(seed % 2)).encode()
    test_parse_usage_v7_arrow_matches_the_reference_or_declines("random", body)


def test_parse_usage_v7_arrow_takes_the_fast_path_on_ordinary_payloads():
    body = bench_data.thousandeyes_payload(seed=3, org=2, n_tests=3000, month_start=OBSERVED.replace(hour=0))
    reference = parse_usage_v7(json.loads(body), snapshot_id="s1", observed_at=OBSERVED, account_id="1")

    fast = parse_usage_v7_arrow(body, snapshot_id="s1", observed_at=OBSERVED, account_id="1")

    assert fast is not None and same_parse(reference, fast)


# ---------- the results file


def test_bench_results_json_has_the_fields_the_readme_quotes(tmp_path):
    code = bench.main([800], repeat=2, scenarios=False, with_postgres=False, out_dir=tmp_path,
                      methods=["ours", "duckdb_json_transform"], log=lambda message: None)

    [path] = tmp_path.glob("*.json")
    results = json.loads(path.read_text())
    assert code == 0
    assert set(results) >= {"started_at", "machine", "config", "loads", "targets", "scenarios", "elapsed_s"}
    assert set(results["machine"]) >= {"cpus", "python", "duckdb", "pyarrow", "load_average_start", "load_average_end"}
    rows = {row["method"]: row for row in results["loads"]}
    assert set(rows) == {"ours", "duckdb_json_transform"}
    for row in rows.values():
        assert set(row) >= {"size", "engine", "rows", "wall_s", "cpu_s", "rows_per_s", "mb_per_s", "peak_rss_mb",
                            "baseline_rss_mb", "ratio", "ratio_to", "digest", "runs", "dataset"}
        assert len(row["runs"]) == 2 and row["rows"] == 800
    assert rows["ours"]["ratio_to"] == "duckdb_json_transform" and rows["ours"]["same_rows_as_ours"] is True
    assert any(t["target"].startswith("DuckDB load ≥ 50% of native") for t in results["targets"])
