"""`make bench` / `usage-pipeline bench`: our load path side by side with the alternatives.

The one rule: every figure is a ratio measured in one run on one machine. Each method runs in
a fresh process (so peak RSS is its own), the order rotates on each repetition and the median
is reported, and every method's rows are digested and compared with ours, so a fast method
that loads different rows cannot look good. Absolute numbers move with the machine; the
ratios are what the targets are about (issue 12). Results: a table on stdout and JSON under
`bench/results/<timestamp>.json`.

Layout: bench_data.py (deterministic raw snapshots), bench_methods.py (one measurement per
process), bench_scenarios.py with bench_replay.py and bench_extras.py (replay, incremental
marts, the TFE limiter, other sources, Dagster's cost), pgserver.py (a throwaway PostgreSQL).
Every "ours" figure is the pipeline's own code as shipped: nothing here is a prototype.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from usage_pipeline import bench_data
from usage_pipeline.settings import PROJECT_ROOT

DEFAULT_SIZES = (10_000, 1_000_000)
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
DUCKDB_METHODS = ("ours", "duckdb_read_json", "duckdb_json_transform", "pandas", "dlt")
POSTGRES_METHODS = ("pg_ours", "pg_raw_copy", "pg_ours_stage")
CEILINGS = ("duckdb_read_json", "duckdb_json_transform")   # DuckDB reading the raw files itself
PG_FLOOR = "pg_raw_copy"
LABELS = {
    "ours": "ours: stage() (Arrow JSON + threads)",
    "duckdb_read_json": "DuckDB read_json (native)",
    "duckdb_json_transform": "DuckDB json_transform (native)",
    "pandas": "pandas.json_normalize + insert",
    "dlt": "dlt (defaults)",
    "pg_ours": "ours: Tx.load_arrow (COPY, queued writer)",
    "pg_raw_copy": "raw COPY of pre-rendered CSV",
    "pg_ours_stage": "ours: whole stage (parse + COPY)",
}
WORKER_TIMEOUT_S = 900
LOADED_AT = "2027-01-01T00:00:00+00:00"


def main(sizes: Sequence[int] | None = None, repeat: int = 3, *, scenarios: bool = True, with_postgres: bool = True,
         out_dir: Path | None = None, methods: Sequence[str] | None = None,
         log: Callable[[str], None] | None = None) -> int:
    """Run the benchmark; print the table; write the JSON. 0 when every method ran and agreed."""
    started = time.monotonic()
    log = log or (lambda message: print(f"{message}  (+{time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True))
    sizes = list(sizes or DEFAULT_SIZES)
    repeat = max(1, int(repeat))
    results: dict[str, Any] = {"started_at": _now(), "machine": machine(), "config": {
        "sizes": sizes, "repeat": repeat, "seed": bench_data.SEED, "tests_per_file": bench_data.TESTS_PER_FILE,
        "gzip_level": bench_data.GZIP_LEVEL}, "loads": [], "targets": [], "scenarios": {}}
    with tempfile.TemporaryDirectory(prefix="usage_bench_") as temporary:
        tmp = Path(temporary)
        postgres = _start_postgres(results, log) if with_postgres else None
        try:
            for size in sizes:
                results["loads"].extend(run_size(size, repeat, tmp / f"te_{size}", postgres=postgres,
                                                 only=methods, log=log))
            if scenarios:
                from usage_pipeline import bench_scenarios

                results["scenarios"] = bench_scenarios.run_all(tmp / "scenarios", postgres=postgres, log=log)
        finally:
            if postgres is not None:
                postgres.stop()
    results["machine"]["load_average_end"] = _load_average()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["targets"] = targets(results)
    path = write_results(results, out_dir or Path(os.environ.get("USAGE_BENCH_RESULTS_DIR", RESULTS_DIR)))
    print(render(results))
    print(f"\nresults: {path}")
    failed = [row for row in results["loads"] if row.get("error") and not row.get("skipped")]
    disagree = [row for row in results["loads"] if row.get("same_rows_as_ours") is False and row["method"] != "pandas"]
    return 1 if failed or disagree else 0


# ---------- one size: generate, prepare templates, measure every method `repeat` times


def run_size(size: int, repeat: int, root: Path, *, postgres: Any = None, only: Sequence[str] | None = None,
             log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Median figures per method for `size` ThousandEyes test rows."""
    root.mkdir(parents=True, exist_ok=True)
    log(f"[bench] generating {size:,} ThousandEyes test rows …")
    dataset = bench_data.write_thousandeyes(root / "landing", size)
    template = prepare_duckdb_template(root / "template.duckdb", dataset)
    methods = [m for m in DUCKDB_METHODS if not only or m in only]
    pg_methods = [m for m in POSTGRES_METHODS if postgres is not None and (not only or m in only)]
    spec = {"landing_root": str(dataset.root), "partitions": dataset.partitions, "loaded_at": LOADED_AT,
            "max_object_bytes": max(1 << 24, 2 * max(s.bytes for s in dataset.snapshots)),
            "files": [s.landing_path for s in dataset.snapshots], "dlt_dir": str(root / "dlt")}
    pg_template = None
    if pg_methods:
        pg_template = prepare_postgres_inputs(root, dataset, template, postgres, spec, log)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in [*methods, *pg_methods]}
    order = [*methods, *pg_methods]
    for repetition in range(repeat):
        shift = repetition % len(order)
        for name in order[shift:] + order[:shift]:  # rotated: no method always runs first or on a warm cache
            log(f"[bench] {size:,} rows · run {repetition + 1}/{repeat} · {name}")
            runs[name].append(run_method(name, spec, root=root, template=template, postgres=postgres,
                                         pg_template=pg_template, repetition=repetition))
            if runs[name][-1].get("skipped"):
                order = [m for m in order if m != name] or order
    if pg_template:
        postgres.drop_database(pg_template)
    return summarize(size, dataset, runs)


def prepare_duckdb_template(path: Path, dataset: bench_data.Dataset) -> Path:
    """A bootstrapped DuckDB warehouse with the raw index and empty staging tables, copied for every run."""
    from usage_pipeline.sources import source_module
    from usage_pipeline.warehouse import Warehouse

    warehouse = Warehouse(url=f"duckdb:///{path}")
    bench_data.index(warehouse, dataset)
    source_module(dataset.vendor).ensure_staging(warehouse)
    return path


def prepare_postgres_inputs(root: Path, dataset: bench_data.Dataset, template: Path, postgres: Any,
                            spec: dict[str, Any], log: Callable[[str], None]) -> str:
    """Stage once (untimed) to get our exact rows as Parquet and as the CSV COPY receives; a PG template db."""
    from usage_pipeline.sources import source_module
    from usage_pipeline.warehouse import Warehouse

    log("[bench] preparing PostgreSQL inputs (our rows as Parquet and CSV) …")
    staged = root / "prepare.duckdb"
    shutil.copyfile(template, staged)
    prepared = _worker({**spec, "method": "ours", "warehouse_url": f"duckdb:///{staged}", "digest": False})
    if prepared.get("error"):
        raise RuntimeError(f"could not stage the benchmark rows: {prepared['error']}")
    exported = _worker({"method": "export", "warehouse_url": f"duckdb:///{staged}", "parquet": str(root / "rows.parquet"),
                        "csv": str(root / "rows.csv")})
    if exported.get("error"):
        raise RuntimeError(f"could not export the benchmark rows: {exported['error']}")
    staged.unlink()
    spec.update(parquet=str(root / "rows.parquet"), csv=str(root / "rows.csv"))
    name = f"tmpl_{os.getpid()}_{dataset.expected_rows}"
    url = postgres.create_database(name=name)
    warehouse = Warehouse(url=url)
    bench_data.index(warehouse, dataset)
    source_module(dataset.vendor).ensure_staging(warehouse)
    return name


def run_method(name: str, spec: dict[str, Any], *, root: Path, template: Path, postgres: Any,
               pg_template: str | None, repetition: int) -> dict[str, Any]:
    """One fresh-process measurement on a fresh copy of the warehouse."""
    run_spec = {**spec, "method": name}
    database = None
    if name.startswith("pg_"):
        url = postgres.create_database(template=pg_template)
        database = url.rsplit("/", 1)[1]
        run_spec["warehouse_url"] = url
    else:
        copy = root / f"run_{repetition}_{name}.duckdb"
        shutil.copyfile(template, copy)
        run_spec["warehouse_url"] = f"duckdb:///{copy}"
        run_spec["dlt_path"] = str(root / f"run_{repetition}_{name}_dlt.duckdb")
    try:
        result = _worker(run_spec)
    finally:
        if database:
            postgres.drop_database(database)
        else:
            for leftover in root.glob(f"run_{repetition}_{name}*"):
                shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
    return result


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        # the spec goes on stdin: a year of partition keys does not fit an argument list
        completed = subprocess.run([sys.executable, "-m", "usage_pipeline.bench_methods", "-"], input=json.dumps(spec),
                                   capture_output=True, text=True,
                                   timeout=WORKER_TIMEOUT_S, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired:
        return {"method": spec["method"], "error": f"timed out after {WORKER_TIMEOUT_S} s"}
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"method": spec["method"], "error": f"worker exited {completed.returncode}: {completed.stderr.strip()[-500:]}"}
    return json.loads(lines[-1])


# ---------- figures


def summarize(size: int, dataset: bench_data.Dataset, runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Median wall/CPU per method, max peak RSS, rows/s, MB/s, ratios, and whether its rows equal ours."""
    rows: list[dict[str, Any]] = []
    for name, results in runs.items():
        good = [r for r in results if "error" not in r]
        row: dict[str, Any] = {"size": size, "method": name, "label": LABELS.get(name, name),
                               "engine": "postgres" if name.startswith("pg_") else "duckdb", "runs": results,
                               "dataset": dataset.describe()}
        if not good:
            errors = [r["error"] for r in results if "error" in r]
            row.update(error=errors[0] if errors else "did not run", skipped=any(r.get("skipped") for r in results))
            rows.append(row)
            continue
        wall = statistics.median(r["wall_s"] for r in good)
        cpu = statistics.median(r["cpu_s"] for r in good)
        loaded = good[0]["rows"]
        row.update(rows=loaded, wall_s=round(wall, 3), cpu_s=round(cpu, 3),
                   rows_per_s=round(loaded / wall) if wall else None,
                   mb_per_s=round(dataset.json_bytes / 1e6 / wall, 1) if wall else None,
                   rows_per_cpu_s=round(loaded / cpu) if cpu else None,
                   peak_rss_mb=max(r["peak_rss_mb"] for r in good),
                   baseline_rss_mb=statistics.median(r["baseline_rss_mb"] for r in good),
                   wall_spread_s=[round(min(r["wall_s"] for r in good), 3), round(max(r["wall_s"] for r in good), 3)],
                   digest=good[0].get("digest"))
        if loaded != dataset.expected_rows:
            row["error"] = f"loaded {loaded} rows, expected {dataset.expected_rows}"
        rows.append(row)
    _ratios(rows)
    return rows


def _ratios(rows: list[dict[str, Any]]) -> None:
    by_method = {row["method"]: row for row in rows}
    ceiling = max((by_method[m] for m in CEILINGS if by_method.get(m, {}).get("rows_per_s")),
                  key=lambda row: row["rows_per_s"], default=None)
    floor = by_method.get(PG_FLOOR) if by_method.get(PG_FLOOR, {}).get("rows_per_s") else None
    ours_digest = by_method.get("ours", {}).get("digest")
    for row in rows:
        if not row.get("rows_per_s"):
            continue
        reference = floor if row["engine"] == "postgres" else ceiling
        if reference:
            row["ratio_to"] = reference["method"]
            row["ratio"] = round(row["rows_per_s"] / reference["rows_per_s"], 3)
            row["cpu_ratio"] = round(reference["cpu_s"] / row["cpu_s"], 3) if row["cpu_s"] and row["engine"] == "duckdb" else None
        if ours_digest and row.get("digest"):
            row["same_rows_as_ours"] = row["digest"] == ours_digest


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured figure and whether it is met."""
    out: list[dict[str, Any]] = []
    for row in results["loads"]:
        if row["method"] == "ours" and row.get("ratio") is not None:
            out.append({"target": f"DuckDB load ≥ 50% of native ({row['size']:,} rows)",
                        "measured": row["ratio"], "met": row["ratio"] >= 0.5})
        if row["method"] == "pg_ours" and row.get("ratio") is not None:
            out.append({"target": f"PostgreSQL load ≥ 90% of raw COPY ({row['size']:,} rows)",
                        "measured": row["ratio"], "met": row["ratio"] >= 0.9})
        if row["method"] == "ours" and row.get("peak_rss_mb") is not None:
            out.append({"target": f"peak RSS stated ({row['size']:,} rows, DuckDB)",
                        "measured": f"{row['peak_rss_mb']:.0f} MB (process before the work: {row['baseline_rss_mb']:.0f} MB)",
                        "met": None})
    out.extend(results.get("scenarios", {}).get("targets", []))
    return out


# ---------- output


def render(results: dict[str, Any]) -> str:
    """The table people read: one line per size × method, then the targets."""
    header = f"{'rows':>9}  {'engine':<8} {'method':<44} {'rows/s':>10} {'MB/s':>7} {'wall s':>8} {'CPU s':>7} " \
             f"{'peak RSS':>9} {'ratio':>7}  same rows"
    lines = [f"usage_pipeline benchmark · {results['machine']['cpus']} CPUs · load average "
             f"{results['machine']['load_average_start']} → {results['machine'].get('load_average_end')} · "
             f"median of {results['config']['repeat']} · ratio = rows/s ÷ the best DuckDB-native rows/s "
             f"(DuckDB) or ÷ raw COPY (PostgreSQL)", header, "-" * len(header)]
    for row in results["loads"]:
        if row.get("error"):
            lines.append(f"{row['size']:>9,}  {row['engine']:<8} {row['label']:<44} {row['error'][:60]}")
            continue
        same = {True: "yes", False: "NO", None: "-"}[row.get("same_rows_as_ours")]
        ratio = f"{row['ratio']:.2f}" if row.get("ratio") is not None else "-"
        lines.append(f"{row['size']:>9,}  {row['engine']:<8} {row['label']:<44} {row['rows_per_s']:>10,} "
                     f"{row['mb_per_s']:>7.1f} {row['wall_s']:>8.2f} {row['cpu_s']:>7.2f} {row['peak_rss_mb']:>7.0f}MB "
                     f"{ratio:>7}  {same}")
    scenarios = results.get("scenarios") or {}
    for name, scenario in scenarios.items():
        if name != "targets" and isinstance(scenario, dict) and scenario.get("summary"):
            lines.append(f"\n{name}: {scenario['summary']}")
    if results["targets"]:
        lines.append("\ntargets")
        for target in results["targets"]:
            mark = {True: "met", False: "NOT MET", None: "stated"}[target["met"]]
            lines.append(f"  [{mark:>7}] {target['target']}: {target['measured']}")
    return "\n".join(lines)


def write_results(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


def machine() -> dict[str, Any]:
    import duckdb
    import pandas
    import psycopg
    import pyarrow

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "duckdb": duckdb.__version__, "pyarrow": pyarrow.__version__, "pandas": pandas.__version__,
            "psycopg": psycopg.__version__, "load_average_start": _load_average()}


def _load_average() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def _start_postgres(results: dict[str, Any], log: Callable[[str], None]) -> Any:
    from usage_pipeline.pgserver import ThrowawayPostgres

    server = ThrowawayPostgres()
    try:
        server.start()
    except Exception as error:  # the DuckDB side still runs; the JSON says why PostgreSQL did not
        log(f"[bench] PostgreSQL not started: {error}")
        results["machine"]["postgres"] = f"not available: {error}"
        server.stop()
        return None
    results["machine"]["postgres"] = server.version()
    return server


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
