"""What the CLI commands do, as plain functions: run a tick, replay, backfill, check, demo.

The one rule: everything runs in process (`dg.materialize`, tens of milliseconds per step)
and one failing source or account never stops the others; the caller gets a summary that
says, per source, what landed and what failed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg

from usage_pipeline import definitions, models, timeutil
from usage_pipeline.errors import BackfillRefused
from usage_pipeline.landing import LandingStore
from usage_pipeline.replay import replay_staging
from usage_pipeline.settings import Settings
from usage_pipeline.sources import all_sources, enabled_sources, ensure_all_staging, source_module
from usage_pipeline.warehouse import Warehouse

log = logging.getLogger("usage_pipeline")


@dataclass
class SourceOutcome:
    source: str
    partitions: list[str] = field(default_factory=list)
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    snapshots: int = 0


@dataclass
class RunSummary:
    sources: list[SourceOutcome] = field(default_factory=list)
    models_ok: bool = True
    model_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.models_ok and all(outcome.ok for outcome in self.sources)


LOCAL_DAGSTER_YAML = """\
# Local Dagster instance for `make demo` / `make ui` (SQLite under DAGSTER_HOME).
# For PostgreSQL run/event/schedule storage see dagster.yaml.example.
telemetry:
  enabled: false
"""


def instance() -> dg.DagsterInstance:
    """The Dagster instance of DAGSTER_HOME (runs show in `make ui`), else an ephemeral one."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    config = Path(home) / "dagster.yaml"
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(LOCAL_DAGSTER_YAML)
    return dg.DagsterInstance.get()


def resources(config: Settings) -> dict[str, Any]:
    return dict(definitions.build(config).resources)


def warehouse_of(config: Settings) -> Warehouse:
    return Warehouse(url=config.warehouse_url)


def landing_of(config: Settings) -> LandingStore:
    return LandingStore(root=str(config.landing_dir))


QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the CLI prints its own summary


def run(config: Settings, *, only: Iterable[str] | None = None, with_models: bool = True,
        dagster_instance: dg.DagsterInstance | None = None, defs: dg.Definitions | None = None) -> RunSummary:
    """One tick of every configured source (or `only`), then every model downstream."""
    dagster_instance = dagster_instance or instance()
    defs = defs or definitions.build(config)
    summary = RunSummary()
    for source in _selected(enabled_sources(config), only):
        keys = source.tick_partition_keys(timeutil.utcnow())
        outcome = SourceOutcome(source.KEY, partitions=keys)
        for key in keys:
            result = materialize_source(source, config, defs, partition_key=key, dagster_instance=dagster_instance)
            _collect(result, outcome)
        summary.sources.append(outcome)
    if with_models:
        run_model_assets(defs, summary, dagster_instance=dagster_instance)
    return summary


def materialize_source(source: ModuleType, config: Settings, defs: dg.Definitions, *, partition_key: str | None = None,
                       tags: dict[str, str] | None = None,
                       dagster_instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """Materialize a source's raw and staging assets for one partition (or a tagged range)."""
    source_defs = source.definitions(config)
    return dg.materialize(
        list(source_defs.assets or []) + list(source_defs.asset_checks or []),
        partition_key=partition_key,
        tags=tags,
        run_config=QUIET_LOGS,
        resources=dict(defs.resources),
        instance=dagster_instance or instance(),
        raise_on_error=False,
    )


def run_model_assets(defs: dg.Definitions, summary: RunSummary, *,
                     dagster_instance: dg.DagsterInstance | None = None) -> None:
    """Materialize every model asset (and the report) in dependency order, in one run."""
    job = defs.resolve_job_def("marts_job")
    result = job.execute_in_process(instance=dagster_instance or instance(), raise_on_error=False, run_config=QUIET_LOGS)
    if not result.success:
        summary.models_ok = False
        summary.model_problems.extend(_step_failures(result))
    summary.model_problems.extend(_failed_checks(result, severities={dg.AssetCheckSeverity.ERROR}))


@dataclass
class ReplaySummary:
    """What `replay` rebuilt: staging rows per source, and the partitions raw could not rebuild."""

    rows: dict[str, int] = field(default_factory=dict)
    # source -> partition -> account -> why its latest raw response could not be parsed
    unparsable: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)


def replay(config: Settings, *, only: Iterable[str] | None = None,
           progress: Callable[[str, int, int, str], None] | None = None) -> ReplaySummary:
    """Rebuild staging and marts from raw alone: no network, no token needed.

    Each account's rows come from its latest raw response that parses (what the live run
    staged); raw responses that cannot be parsed are listed in the summary and the replay goes on.
    """
    warehouse, landing = warehouse_of(config), landing_of(config)
    warehouse.bootstrap()
    summary = ReplaySummary()
    for source in _selected(all_sources(), only):
        reports = replay_staging(
            source.STAGING, warehouse, landing,
            progress=(lambda i, n, key, name=source.KEY: progress(name, i, n, key)) if progress else None,
        )
        summary.rows[source.KEY] = sum(sum(report.rows.values()) for report in reports)
        failed = {report.partition_key: dict(report.failures) for report in reports if report.failures}
        if failed:
            summary.unparsable[source.KEY] = failed
    models.run_models(warehouse, full_refresh=True, vars={"at_risk_share": config.at_risk_share},
                      prepare=ensure_all_staging)
    return summary


def backfill(config: Settings, source_key: str, start: date, end: date, *, with_models: bool = True,
             dagster_instance: dg.DagsterInstance | None = None, defs: dg.Definitions | None = None) -> RunSummary:
    """Backfill a windowed source over [start, end] as one run; observation sources refuse."""
    source = source_module(source_key)
    if not source.BACKFILLABLE:
        raise BackfillRefused(
            source_key, None,
            f"{source_key} keeps no history: its API only answers 'how much, right now', so past ticks "
            "cannot be fetched and nothing is faked. Only workato is backfillable. To rebuild staging "
            "and marts from what was already landed, run `usage-pipeline replay`.",
        )
    if end < start:
        raise BackfillRefused(source_key, None, f"--end {end} is before --start {start}")
    if source_key not in config.enabled():
        raise BackfillRefused(source_key, None, f"{source_key} is not configured: {config.disabled.get(source_key, '')}")
    dagster_instance = dagster_instance or instance()
    defs = defs or definitions.build(config)
    result = materialize_source(
        source, config, defs, dagster_instance=dagster_instance,
        tags={"dagster/asset_partition_range_start": start.isoformat(), "dagster/asset_partition_range_end": end.isoformat()},
    )
    outcome = SourceOutcome(source_key, partitions=[start.isoformat(), end.isoformat()])
    _collect(result, outcome)
    summary = RunSummary(sources=[outcome])
    if with_models:
        run_model_assets(defs, summary, dagster_instance=dagster_instance)
    return summary


def _selected(sources: list[ModuleType], only: Iterable[str] | None) -> list[ModuleType]:
    if not only:
        return sources
    wanted = set(only)
    for key in wanted:
        source_module(key)  # unknown names fail with the list of known ones
    return [source for source in sources if source.KEY in wanted]


def _collect(result: dg.ExecuteInProcessResult, outcome: SourceOutcome) -> None:
    if not result.success:
        outcome.ok = False
        outcome.problems.extend(_step_failures(result))
    failed_checks = _failed_checks(result, severities={dg.AssetCheckSeverity.ERROR})
    if failed_checks:
        outcome.ok = False
        outcome.problems.extend(failed_checks)
    counted = set()  # a range run repeats one asset's metadata once per partition
    for event in result.get_asset_materialization_events():
        metadata = event.step_materialization_data.materialization.metadata
        snapshots, ids = metadata.get("snapshots"), metadata.get("snapshot_ids")
        identity = (event.step_key, repr(ids.value if ids is not None else None))
        if snapshots is not None and identity not in counted:
            counted.add(identity)
            outcome.snapshots += int(snapshots.value)


def _step_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    problems = []
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            message = error.message.strip() if error else "failed"
            cause = error.cause.message.strip() if error and error.cause else ""
            problems.append(f"{event.step_key}: {cause or message}".splitlines()[0][:500])
    return problems


def _failed_checks(result: dg.ExecuteInProcessResult, *, severities: set) -> list[str]:
    problems = []
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.severity in severities:
            description = evaluation.description or ""
            problems.append(f"{evaluation.asset_key.to_user_string()} check {evaluation.check_name} failed: {description}"[:500])
    return problems


def simulate_days(days: int, *, end: datetime, step: timedelta = timedelta(days=1)) -> list[datetime]:
    """Tick times for a simulated history ending at `end` (the demo and soak use it)."""
    return [end - step * offset for offset in range(days - 1, -1, -1)]

