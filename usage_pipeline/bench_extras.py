"""Benchmark scenarios that need no history: the TFE limiter on a real clock against the sandbox,
the other sources' staging at modest sizes, and what Dagster itself costs per materialization.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from usage_pipeline import bench_data
from usage_pipeline.bench_methods import method, step

TFE_SECONDS = 10.0
# The sandbox, like TFE since 1.1.0, enforces 1 request/s with a one-token bucket: a client
# spacing requests exactly 1.000 s apart meets ±20 ms of arrival jitter and gets 429s. That is
# why the shipped limit (http.DEFAULT_LIMITS) is 0.95/s; the scenario also runs the client at
# the server's nominal 1.0/s to show it.
NOMINAL_TFE_RATE = 1.0


# ---------- the TFE limiter against the sandbox, on a real clock


@method("tfe_limiter")
def tfe_limiter(spec: dict[str, Any]) -> Any:
    """Fetch the bundle back to back for `seconds`: the client's limiter must keep the server's 1/s."""
    from usage_pipeline import http
    from usage_pipeline.sandbox import SandboxServer
    from usage_pipeline.sources.terraform_enterprise.client import TerraformEnterpriseClient

    if spec.get("rate_per_s"):  # another http.DEFAULT_LIMITS entry, in this process only
        http.DEFAULT_LIMITS["terraform_enterprise"] = (spec["rate_per_s"], 1)
    server = SandboxServer().start()

    def work() -> dict[str, Any]:
        client = TerraformEnterpriseClient(url=server.base_url, token=server.tokens["terraform_enterprise"])
        try:
            started = time.monotonic()
            fetched = 0
            while time.monotonic() - started < spec["seconds"]:
                client.fetch_bundle()
                fetched += 1
            stats = client.stats()
        finally:
            client.close()
            server.stop()
        seen = [r for r in server.requests_for("terraform_enterprise")]
        ok = sorted(r.at for r in seen if r.status == 200)
        span = (ok[-1] - ok[0]).total_seconds() if len(ok) > 1 else 0.0
        return {"rows": fetched, "requests_seen": len(seen), "status_counts": dict(Counter(str(r.status) for r in seen)),
                "rate_per_s": round((len(ok) - 1) / span, 3) if span else None, "span_s": round(span, 2),
                "client_retries": stats.retries, "client_wait_s": round(stats.wait_s, 2)}
    return work


# ---------- the other sources' staging (modest sizes)


def other_sources(root: Path, worker: Callable[[dict[str, Any]], dict[str, Any]], log: Callable[[str], None]) -> dict[str, Any]:
    from usage_pipeline.bench import prepare_duckdb_template
    from usage_pipeline.sources.terraform_enterprise import constants as tfe
    from usage_pipeline.sources.workato import constants as workato

    out = {}
    for name, dataset, table in (
        ("terraform_enterprise", bench_data.write_terraform_enterprise(root / "tfe", days=60), tfe.METRICS_TABLE),
        ("workato", bench_data.write_workato(root / "workato", days=14, workspaces=10, recipes=5), workato.STAGING_USAGE),
    ):
        template = prepare_duckdb_template(root / f"{name}.duckdb", dataset)
        result = step(worker, {"method": "ours", "vendor": name, "table": table, "warehouse_url": f"duckdb:///{template}",
                               "landing_root": str(dataset.root), "partitions": dataset.partitions, "digest": False},
                      log, f"staging · {name}")
        out[name] = {**result, "dataset": dataset.describe(), "table": table,
                     "rows_per_s": round(result["rows"] / result["wall_s"]) if result["wall_s"] else None}
    return out


# ---------- Dagster: in-process materialization vs the CLI


_PROBE = '''
import dagster as dg

@dg.asset
def probe() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"dagster/row_count": 1})

defs = dg.Definitions(assets=[probe])
'''


@method("dagster_in_process")
def dagster_in_process(spec: dict[str, Any]) -> Any:
    """`dg.materialize` of a no-op asset, as `usage-pipeline run` does: the per-step cost of Dagster itself."""
    import dagster as dg

    @dg.asset
    def probe():  # no annotation: this module uses postponed annotations, which Dagster cannot resolve
        return dg.MaterializeResult(metadata={"dagster/row_count": 1})

    instance = dg.DagsterInstance.ephemeral()
    dg.materialize([probe], instance=instance)  # warm: first-call imports are start-up, not per step

    def work() -> dict[str, Any]:
        times = []
        for _ in range(spec["repeat"]):
            started = time.perf_counter()
            dg.materialize([probe], instance=instance)
            times.append(time.perf_counter() - started)
        return {"rows": spec["repeat"], "median_ms": round(statistics.median(times) * 1000, 1)}
    return work


def dagster_overhead(root: Path, worker: Callable[[dict[str, Any]], dict[str, Any]], log: Callable[[str], None]) -> dict[str, Any]:
    in_process = step(worker, {"method": "dagster_in_process", "repeat": 10}, log, "Dagster in-process materialization")
    root.mkdir(parents=True, exist_ok=True)
    (root / "probe_defs.py").write_text(_PROBE)
    home = Path(tempfile.mkdtemp(prefix="usage_bench_dagster_"))
    dagster = Path(sys.executable).with_name("dagster")
    try:
        started = time.perf_counter()
        completed = subprocess.run([str(dagster), "asset", "materialize", "-f", str(root / "probe_defs.py"), "--select", "probe"],
                                   capture_output=True, text=True, timeout=300, env={**os.environ, "DAGSTER_HOME": str(home)})
        cli_s = round(time.perf_counter() - started, 2)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {"in_process_ms": in_process["median_ms"], "cli_s": cli_s if completed.returncode == 0 else None,
            "cli_error": None if completed.returncode == 0 else completed.stderr.strip()[-300:]}
