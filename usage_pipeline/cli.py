"""`usage-pipeline`: demo, run, replay, backfill, sandbox, doctor, report, bench, soak.

Arguments and printing live here; what each command does lives in `operations.py`.
Exit status: 0 when everything worked, 1 when a source, account or model failed (after the
others ran), 2 for a bad configuration or a refused request.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from usage_pipeline import settings, timeutil
from usage_pipeline.errors import BackfillRefused, ConfigError, UsagePipelineError

DEMO_DAYS = 7
DEMO_END = datetime(2026, 11, 25, 10, tzinfo=UTC)
DEMO_WORKATO_DAYS = 30


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if not args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import warnings

    import dagster as dg

    from usage_pipeline import http

    warnings.filterwarnings("ignore", category=dg.BetaWarning)  # Dagster's own notes on beta APIs we rely on
    http.install_log_redaction()
    try:
        return args.handler(args)
    except (ConfigError, BackfillRefused) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except UsagePipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usage-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="fill data/warehouse.duckdb from the built-in sandbox and print a summary")
    demo.add_argument("--days", type=int, default=DEMO_DAYS, help="simulated days of observation history")
    demo.set_defaults(handler=cmd_demo)

    run = commands.add_parser("run", help="one tick of every configured source and everything downstream")
    run.add_argument("--source", action="append", dest="sources", metavar="NAME")
    run.set_defaults(handler=cmd_run)

    replay = commands.add_parser("replay", help="rebuild staging and marts from raw alone (no network)")
    replay.add_argument("--source", action="append", dest="sources", metavar="NAME")
    replay.set_defaults(handler=cmd_replay)

    backfill = commands.add_parser("backfill", help="backfill a windowed source (workato) over daily windows")
    backfill.add_argument("source")
    backfill.add_argument("--start", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    backfill.add_argument("--end", required=True, type=date.fromisoformat, help="YYYY-MM-DD (inclusive)")
    backfill.set_defaults(handler=cmd_backfill)

    sandbox = commands.add_parser("sandbox", help="serve the simulated vendor APIs on loopback")
    sandbox.add_argument("--port", type=int, default=8765)
    sandbox.add_argument("--fault", action="append", default=[], metavar="SPEC",
                         help="e.g. thousandeyes:/v7/usage:rate_limit:retry_after=2:times=3")
    sandbox.set_defaults(handler=cmd_sandbox)

    doctor = commands.add_parser("doctor", help="check configuration, warehouse and credentials")
    doctor.set_defaults(handler=cmd_doctor)

    report = commands.add_parser("report", help="write the self-contained offline HTML report")
    report.add_argument("--out", type=Path, default=Path("data/report.html"))
    report.set_defaults(handler=cmd_report)

    bench = commands.add_parser("bench", help="side-by-side load benchmark (results under bench/results/)")
    bench.add_argument("--sizes", default=None, help="comma-separated test-row counts, e.g. 10000,1000000")
    bench.add_argument("--repeat", type=int, default=3)
    bench.set_defaults(handler=cmd_bench)

    soak = commands.add_parser("soak", help="N simulated days of hourly ticks with random faults, on loopback")
    soak.add_argument("--days", type=int, default=30)
    soak.add_argument("--seed", type=int, default=7)
    soak.set_defaults(handler=cmd_soak)
    return parser


# ---------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from usage_pipeline import operations

    config = settings.load()
    if not config.enabled():
        print("No source is configured: " + "; ".join(f"{k} disabled ({v})" for k, v in config.disabled.items()))
        return 2
    summary = operations.run(config, only=args.sources)
    _print_summary(summary)
    return 0 if summary.ok else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from usage_pipeline import operations

    config = settings.load()
    started = time.monotonic()

    def progress(source: str, index: int, total: int, key: str) -> None:
        if index == total or index % max(1, total // 20) == 0:
            print(f"  {source}: {index}/{total} partitions re-staged (last {key})", flush=True)

    summary = operations.replay(config, only=args.sources, progress=progress)
    for source, rows in summary.rows.items():
        print(f"{source}: {rows} staging rows rebuilt from raw")
    for source, partitions in summary.unparsable.items():
        print(f"{source}: {len(partitions)} partition(s) whose latest raw response cannot be parsed "
              "(an account with an earlier response that parses has that one staged, as the live run did; "
              "one with none has no rows there):")
        for partition, causes in list(partitions.items())[:10]:
            for account, cause in causes.items():
                print(f"  {partition} [account {account}]: {cause}")
    print(f"marts rebuilt from staging in {time.monotonic() - started:.1f} s (no network used)")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from usage_pipeline import operations

    config = settings.load()
    days = (args.end - args.start).days + 1
    print(f"backfilling {args.source}: {days} daily windows {args.start} … {args.end} in one run", flush=True)
    summary = operations.backfill(config, args.source, args.start, args.end)
    _print_summary(summary)
    return 0 if summary.ok else 1


def cmd_sandbox(args: argparse.Namespace) -> int:
    from usage_pipeline.sandbox import SandboxServer

    server = SandboxServer(port=args.port)
    for spec in args.fault:
        server.faults.add_spec(spec)
    server.start()
    print(f"Sandbox serving the four vendor APIs on {server.base_url} (Ctrl-C to stop). Point the pipeline at it:\n")
    for name, value in server.env().items():
        print(f"export {name}={value}")
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


def cmd_doctor(args: argparse.Namespace) -> int:
    from usage_pipeline import operations
    from usage_pipeline.sources import source_module

    problems = 0
    try:
        config = settings.load()
    except ConfigError as error:
        print(f"configuration: NOT OK: {error}")
        return 2
    print("configuration: ok")
    warehouse = operations.warehouse_of(config)
    try:
        warehouse.bootstrap()
        warehouse.query("select 1")
        print(f"warehouse: ok ({warehouse.display_url()})")
    except UsagePipelineError as error:
        problems += 1
        print(f"warehouse: NOT OK: {error}")
    print(f"landing folder: {config.landing_dir.resolve()}")
    for key in settings.SOURCE_KEYS:
        if key in config.disabled:
            print(f"{key}: disabled ({config.disabled[key]})")
            continue
        try:
            print(f"{key}: ok: {source_module(key).check_credentials(config)}")
        except UsagePipelineError as error:
            problems += 1
            print(f"{key}: NOT OK: {error}")
    return 0 if problems == 0 else 1


def cmd_report(args: argparse.Namespace) -> int:
    from usage_pipeline import report
    from usage_pipeline.warehouse import Warehouse

    config = settings.load()
    path = report.write_report(Warehouse(url=config.warehouse_url, read_only=True), args.out)
    print(f"report written to {Path(path).resolve()} (self-contained, opens offline)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from usage_pipeline import bench

    sizes = [int(size) for size in args.sizes.split(",")] if args.sizes else None
    return bench.main(sizes=sizes, repeat=args.repeat)


def cmd_soak(args: argparse.Namespace) -> int:
    from usage_pipeline import soak

    return soak.main(days=args.days, seed=args.seed)


def cmd_demo(args: argparse.Namespace) -> int:
    """Sandbox → simulated history of ticks → marts → summary, all in this process."""
    from usage_pipeline import definitions, operations
    from usage_pipeline.sandbox import SandboxServer

    started = time.monotonic()
    os.environ.setdefault("USAGE_WAREHOUSE_URL", "duckdb:///data/warehouse.duckdb")
    os.environ.setdefault("USAGE_LANDING_DIR", "data/landing")
    with SandboxServer() as server:
        os.environ.update(server.env())
        config = settings.load()
        defs, dagster_instance = definitions.build(config), operations.instance()
        # end the simulated history on the last full day before today, so the demo shows the
        # sandbox's mid-month events (a plan change, a rename, new entitlements, quotas at risk)
        end = min(DEMO_END, (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0))
        server.clock.set(end)
        print(f"sandbox on {server.base_url}; simulating {args.days} days of ticks up to {end:%Y-%m-%d %H:%M} UTC", flush=True)
        failures = 0
        observation = [key for key in config.enabled() if key != "workato"]
        for tick in operations.simulate_days(args.days, end=end):
            server.clock.set(tick)
            with timeutil.use_clock(server.clock):
                summary = operations.run(config, only=observation, with_models=False, defs=defs,
                                         dagster_instance=dagster_instance)
            failures += sum(not outcome.ok for outcome in summary.sources)
        server.clock.set(end)
        with timeutil.use_clock(server.clock):
            if "workato" in config.enabled():
                last = (end - timedelta(days=1)).date()
                operations.backfill(config, "workato", last - timedelta(days=DEMO_WORKATO_DAYS - 1), last,
                                    with_models=False, defs=defs, dagster_instance=dagster_instance)
            summary = operations.run(config, defs=defs, dagster_instance=dagster_instance)
    _print_summary(summary)
    _print_demo_summary(config, time.monotonic() - started)
    return 0 if summary.ok and failures == 0 else 1


# ---------- printing


def _print_summary(summary) -> None:
    for outcome in summary.sources:
        state = "ok" if outcome.ok else "FAILED"
        print(f"{outcome.source}: {state} ({outcome.snapshots} snapshots landed; partitions {', '.join(outcome.partitions)})")
        for problem in outcome.problems:
            print(f"  - {problem}")
    print(f"models: {'ok' if summary.models_ok else 'FAILED'}")
    for problem in summary.model_problems:
        print(f"  - {problem}")


def _print_demo_summary(config: settings.Settings, seconds: float) -> None:
    from usage_pipeline.warehouse import Warehouse

    warehouse = Warehouse(url=config.warehouse_url, read_only=True)
    rows = warehouse.query(
        "select table_schema, table_name from information_schema.tables "
        "where table_schema in ('raw', 'staging', 'marts') order by 1, 2"
    )
    print(f"\nDemo finished in {seconds:.0f} s. Warehouse: {warehouse.duckdb_path.resolve()}")
    for schema, table in rows:
        count = warehouse.query(f"select count(*) from {schema}.{table}")[0][0]
        print(f"  {schema}.{table:<40} {count:>8} rows")
    print(f"Raw snapshots (gzip JSON): {config.landing_dir.resolve()}")
    print("Next: `make ui` opens the Dagster UI at http://127.0.0.1:3000 · "
          "`.venv/bin/usage-pipeline report` writes data/report.html · "
          "`duckdb -readonly data/warehouse.duckdb` or example SQL in sql/queries/")


if __name__ == "__main__":
    sys.exit(main())
