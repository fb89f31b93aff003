"""Shared helpers of the reliability suite (test_reliability*.py, test_canary.py, test_crash_safety.py,
test_concurrency.py): a sandbox-backed pipeline on a chosen engine, the fault table, and the one
verdict every scenario must pass (nothing lost, nothing duplicated, no secret anywhere).

The invariants themselves live in `usage_pipeline.soak`, so `make soak` and `make test` judge a
warehouse the same way. HTTP waits run on a virtual clock (`soak.compressed_http`): a scenario
with ten retries costs no real time.
"""

from __future__ import annotations

import logging
import re
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from usage_pipeline import definitions, models, operations, settings, soak, timeutil
from usage_pipeline.sandbox import SandboxServer
from usage_pipeline.sources import ensure_all_staging
from usage_pipeline.warehouse import Warehouse

SOURCES = soak.SOURCE_KEYS
TOKEN_VARIABLES = ("THOUSANDEYES_TOKEN", "TFC_TOKEN", "TFE_SYSTEM_API_TOKEN", "WORKATO_TOKEN")
LOGGERS = ("", "dagster", "usage_pipeline", "httpx", "httpcore")

# Where a fault hits each source: the per-account endpoints, not discovery (whose failure is the
# whole source's, by design: without the organization list there are no accounts to isolate).
TARGETS = {
    "thousandeyes": "thousandeyes:/v7/usage",
    "hcp_terraform": "hcp_terraform:/api/v2/organizations/*",
    "terraform_enterprise": "terraform_enterprise:/api/v1/usage/bundle",
    "workato": "workato:/api/v2/managed_users/statistics/usage",
}
# One account (tenant) of each source, as it appears in its requests (`match`) and in raw.api_batches.
# TFE has one installation: failing it fails the source, and the other sources must still land.
FAILING_ACCOUNT = {
    "thousandeyes": ("2001", "2001"),  # Globex's aid (query `aid=2001`)
    "hcp_terraform": ("globex", "globex"),  # path segment of every per-organization call
    "terraform_enterprise": (None, "127.0.0.1"),
    # one admin-zone day: its `from` (the day before's `to` is the same string, and that day is not pulled)
    "workato": ("2026-11-18T00:00:00.000-08:00", "2026-11-18"),
}
# A field each parser needs; removing it must fail that account's parse, naming the field.
REQUIRED_FIELD = {
    "thousandeyes": ("usage.quota", "quota"),
    "hcp_terraform": ("data.attributes.external-id", "external-id"),
    "terraform_enterprise": ("snapshots.id", "id"),
    "workato": ("data", "data"),
}


# ---------- figures (printed once per test module in the warnings summary: xdist swallows stdout)


@dataclass
class Figures:
    """What a module's scenarios did and proved, added up; one line in pytest's summary."""

    module: str
    scenarios: int = 0
    total: Verdict = field(default_factory=lambda: Verdict())

    def add(self, verdict: Verdict) -> None:
        self.scenarios += 1
        self.total.merge(verdict)

    def line(self) -> str:
        t = self.total
        return (f"{self.module}: {self.scenarios} scenarios, faults injected {t.faults_injected}, "
                f"runs {t.runs}, retries {t.retries}, virtual waits {t.waited_s:.1f} s, "
                f"snapshots checked {t.snapshots_checked}, rows checked {t.rows_checked}, "
                f"{len(t.lost)} lost, {len(t.duplicated)} duplicated, "
                + (f"{len(t.differing)} differing from a clean replay, " if t.differing else "")
                + f"{len(t.secret_hits)} secret hits")


@pytest.fixture(scope="module")
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """The module's figures, reported at its end (as a `SuiteFigures` line of the warnings summary)."""
    collected = Figures(Path(str(request.fspath)).stem)
    yield collected
    if collected.scenarios:
        warnings.warn(soak.SuiteFigures(collected.line()), stacklevel=1)


# ---------- the verdict


@dataclass(kw_only=True)
class Verdict(soak.Findings):
    """Everything a scenario proved (the soak's findings, plus faults and runs), with the evidence for any failure."""

    faults_injected: int = 0
    runs: int = 0

    def assert_clean(self) -> None:
        assert self.lost == [], f"rows or responses lost: {self.lost}"
        assert self.duplicated == [], f"rows duplicated: {self.duplicated}"
        assert self.differing == [], f"rows a clean replay does not reproduce: {self.differing}"
        assert self.secret_hits == [], f"secrets leaked: {self.secret_hits}"


class SkewedClock:
    """The pipeline's clock `skew` away from another clock (the sandbox's): hosts disagree by minutes."""

    def __init__(self, clock: Any, skew: timedelta) -> None:
        self._clock, self.skew = clock, skew

    def now(self) -> datetime:
        return self._clock.now() + self.skew


# ---------- the pipeline under test


class Harness:
    """The sandbox, one warehouse and landing folder, the pipeline configured on them, one Dagster
    instance, and everything that was said (logs, summaries) kept for the canary."""

    def __init__(self, *, warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 request: pytest.FixtureRequest, now: datetime | None = None, timeout_s: float | None = None,
                 canary: bool = True, dagster_home: Path | None = None) -> None:
        self.warehouse, self.tmp_path, self.request, self.timeout_s = warehouse, tmp_path, request, timeout_s
        suffix = uuid.uuid4().hex
        self.tokens = {vendor: f"canary-{vendor.replace('_', '-')}-{suffix}" for vendor in SOURCES} if canary else None
        self.server = SandboxServer(now=now, tokens=self.tokens).start()
        self.clock = soak.VirtualClock()
        self.server.rate_clock = self.clock  # the server's 1 request/s (TFE) runs on the same compressed time
        for name in (*TOKEN_VARIABLES, "USAGE_WAREHOUSE_URL", "USAGE_LANDING_DIR"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.chdir(tmp_path)  # no stray .env; the report asset writes under tmp
        self.env = {**self.server.env(), "USAGE_WAREHOUSE_URL": warehouse.url,
                    "USAGE_LANDING_DIR": str(tmp_path / "landing")}
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)  # client resources read their token as dg.EnvVar
        self.dagster_home = dagster_home
        if dagster_home is not None:
            dagster_home.mkdir(parents=True, exist_ok=True)
            monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
            self.instance = operations.instance()  # SQLite run and event storage under DAGSTER_HOME
        else:
            monkeypatch.delenv("DAGSTER_HOME", raising=False)
            self.instance = dg.DagsterInstance.ephemeral()
        self.config = settings.load(self.env)
        monkeypatch.setattr(models, "load_project", soak.cached_load_project)  # parse the models once
        self.defs: dg.Definitions | None = None
        self.summaries: list[operations.RunSummary] = []
        self.texts: list[tuple[str, str]] = []  # (where, text) said by the pipeline: problems, exceptions

    def reconfigure(self, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
        """Change environment variables (e.g. THOUSANDEYES_API_VERSION=6) for the next runs."""
        self.env.update(env)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        self.config, self.defs = settings.load(self.env), None

    def landing_store(self) -> Any:
        return operations.landing_of(self.config)

    @property
    def landing_dir(self) -> Path:
        return Path(self.config.landing_dir)

    def close(self) -> None:
        self.server.stop()
        if self.dagster_home is not None:
            self.instance.dispose()

    # -- acting

    def at(self, moment: datetime) -> Harness:
        self.server.clock.set(moment)
        return self

    def run(self, *, only: list[str] | None = None, skew: timedelta = timedelta(0)) -> operations.RunSummary:
        """One tick of every source (or `only`), no models: `operations.run` as the CLI calls it.

        `skew`: the pipeline's clock runs that far ahead of (or, negative, behind) the sandbox's.
        """
        if self.defs is None:
            self.defs = definitions.build(self.config)  # as a code location: built once, reused by every run
        pipeline_clock = self.server.clock if not skew else SkewedClock(self.server.clock, skew)
        with soak.compressed_http(self.clock, timeout_s=self.timeout_s), timeutil.use_clock(pipeline_clock):
            summary = operations.run(self.config, only=only, with_models=False, dagster_instance=self.instance,
                                     defs=self.defs)
        self.summaries.append(summary)
        for outcome in summary.sources:
            self.texts += [(f"run summary of {outcome.source}", problem) for problem in outcome.problems]
        return summary

    def backfill(self, source: str, start: date, end: date) -> operations.RunSummary:
        """`usage-pipeline backfill` (one run over the day windows), no models."""
        if self.defs is None:
            self.defs = definitions.build(self.config)
        with soak.compressed_http(self.clock, timeout_s=self.timeout_s), timeutil.use_clock(self.server.clock):
            summary = operations.backfill(self.config, source, start, end, with_models=False, defs=self.defs,
                                          dagster_instance=self.instance)
        self.summaries.append(summary)
        return summary

    def build_models(self) -> list[models.ModelResult]:
        """Every model, incrementally, as the hourly marts job would (checks aside: they are other tests')."""
        return models.run_models(self.warehouse, tests=False, vars={"at_risk_share": self.config.at_risk_share},
                                 prepare=ensure_all_staging)

    def second_warehouse(self, name: str = "replay") -> Warehouse:
        """A fresh warehouse on the same engine (a new DuckDB file or a new PostgreSQL database)."""
        if self.warehouse.dialect == "duckdb":
            return Warehouse(url=f"duckdb:///{self.tmp_path / f'{name}-{uuid.uuid4().hex[:6]}.duckdb'}")
        return Warehouse(url=self.request.getfixturevalue("postgres_server").create_database())

    def replay_elsewhere(self) -> Warehouse:
        """`usage-pipeline replay` into a fresh warehouse from this raw index and landing folder."""
        return soak.replay_into(self.config, self.second_warehouse().url)

    # -- reading

    def batches(self, vendor: str | None = None) -> list[tuple[str, str, str, str, str | None]]:
        """(vendor, account, partition, status, error) of every pull, oldest first."""
        where, params = ("where vendor = %s", [vendor]) if vendor else ("", None)
        return [tuple(row) for row in self.warehouse.query(
            f"select vendor, account_id, partition_key, status, error from raw.api_batches {where} "
            "order by finished_at, batch_id", params)]

    def outcome(self, summary: operations.RunSummary, source: str) -> operations.SourceOutcome:
        return next(outcome for outcome in summary.sources if outcome.source == source)

    def staged_accounts(self, vendor: str) -> set[str]:
        return self._staged(vendor, "account_id")

    def staged_partitions(self, vendor: str) -> set[str]:
        return self._staged(vendor, "partition_key")

    def _staged(self, vendor: str, column: str) -> set[str]:
        found: set[str] = set()
        with soak.reading(self.warehouse) as db:
            for table in db.relations("staging"):
                if table.startswith(f"staging.stg_{vendor}__"):
                    found |= {row[0] for row in db.execute(f"select distinct {column} from {table}")}
        return found

    def retries(self) -> int:
        """HTTP retries, as the raw assets reported them in their materialization metadata."""
        total = 0
        for run in self.instance.get_runs():
            for entry in self.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
                metadata = entry.asset_materialization.metadata if entry.asset_materialization else {}
                if "retries" in metadata:
                    total += int(metadata["retries"].value)
        return total

    def event_log_text(self) -> str:
        """Every event of every Dagster run of this harness: messages, metadata, errors (repr)."""
        parts = []
        for run in self.instance.get_runs():
            parts += [repr(entry) for entry in self.instance.all_logs(run.run_id)]
        return "\n".join(parts)

    # -- judging

    def verify(self, *, caplog: pytest.LogCaptureFixture | None = None, replay: bool = True,
               allow_orphans: frozenset[str] = frozenset()) -> Verdict:
        """Nothing lost, nothing duplicated, no secret: the checks of `usage_pipeline.soak`, and the marts
        equal a clean replay of the same raw data into a fresh warehouse."""
        verdict = Verdict(runs=sum(len(s.sources) for s in self.summaries) + len(self.summaries),
                          waited_s=self.clock.waited_s)
        requests = self.server.requests_for()
        verdict.faults_injected = sum(request.fault is not None for request in requests)
        events = self.event_log_text()
        verdict.retries = self.retries()
        landing = soak.check_landing(self.warehouse, self.landing_dir)
        verdict.snapshots_checked = landing.snapshots
        verdict.lost += landing.problems
        verdict.lost += [f"file {path} was landed but is not indexed in raw.api_snapshots"
                         for path in landing.orphans if path not in allow_orphans]
        for vendor, (answered, landed) in soak.fetched_vs_landed(self.server, self.warehouse).items():
            landed += sum(path.startswith(f"{vendor}/") for path in allow_orphans)  # on disk, known unindexed
            if answered != landed:
                verdict.lost.append(f"{vendor}: the sandbox completed {answered} answers but {landed} were landed")
        verdict.duplicated += soak.mixed_pulls(self.warehouse)
        verdict.duplicated += [f"{name}: {n} repeated keys"
                               for name, n in soak.duplicate_grain_keys(self.warehouse).items() if n]
        if replay:
            replayed = self.replay_elsewhere()
            here = soak.fingerprint(self.warehouse, ("staging", "marts"))
            there = soak.fingerprint(replayed, ("staging", "marts"))
            verdict.rows_checked = sum(count for count, _ in here.values())
            for problem in soak.fingerprint_diff(here, there):
                relation = problem.split(":")[0]
                if relation in here and relation in there:
                    problem += f"; columns that differ: {soak.differing_columns(self.warehouse, replayed, relation)}"
                bucket = verdict.differing if "same count" in problem else \
                    verdict.lost if _fewer_here(problem) else verdict.duplicated
                bucket.append(f"vs clean replay: {problem}")
        verdict.secret_hits = self.secret_hits(caplog, events=events)
        return verdict

    def secret_forms(self) -> dict[str, str]:
        emails = {"thousandeyes": self.server.emails["thousandeyes"]}
        return soak.secret_forms(self.tokens or {}, emails=emails) if self.tokens else {}

    def secret_hits(self, caplog: pytest.LogCaptureFixture | None = None, *, events: str | None = None) -> list[str]:
        forms = self.secret_forms()
        if not forms:
            return []
        hits: list[str] = []
        texts = [*self.texts, ("Dagster event logs", self.event_log_text() if events is None else events)]
        if caplog is not None:
            texts.append(("captured logs", caplog.text))
            texts += [("log record args", repr(record.args)) for record in caplog.records if record.args]
        for where, text in texts:
            hits += soak.secret_hits_in_text(forms, where, text)
        hits += soak.secret_hits_in_folder(forms, self.landing_dir)[1]
        if self.dagster_home is not None:
            hits += soak.secret_hits_in_folder(forms, self.dagster_home)[1]
        hits += soak.secret_hits_in_warehouse(forms, self.warehouse)[1]
        return hits


def _fewer_here(problem: str) -> bool:
    """A fingerprint difference where this warehouse has fewer rows than the replay: rows lost."""
    match = re.search(r": (\d+|missing) rows vs (\d+|missing) rows", problem)
    if not match:
        return True
    here, there = (-1 if value == "missing" else int(value) for value in match.groups())
    return here <= there


@pytest.fixture
def scenario_harness(scenario: Scenario, warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     request: pytest.FixtureRequest) -> Iterator[Harness]:
    """A Harness for a test parametrized with `scenario` (its HTTP timeout too), closed afterwards."""
    pipeline = Harness(warehouse=warehouse, tmp_path=tmp_path, monkeypatch=monkeypatch, request=request,
                       timeout_s=scenario.timeout_s)
    yield pipeline
    pipeline.close()


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at DEBUG on every logger the pipeline writes to (Dagster's does not propagate to root)."""
    caplog.set_level(logging.DEBUG)
    attached = []
    for name in LOGGERS[1:]:
        logger = logging.getLogger(name)
        if not logger.propagate and caplog.handler not in logger.handlers:
            logger.addHandler(caplog.handler)
            attached.append(logger)
    try:
        yield caplog
    finally:
        for logger in attached:
            logger.removeHandler(caplog.handler)


def add_fault(server: SandboxServer, source: str, kind: str, **params: Any) -> None:
    """Script `kind` on `source`'s per-account endpoint."""
    server.faults.add(TARGETS[source], kind, **params)


# ---------- the fault table (test_reliability_faults.py and test_reliability_payloads.py)


@dataclass(frozen=True)
class Scenario:
    """Misbehaviour scripted on all four sources at once (each on its own endpoint or account).

    `steps` are (fault kind, parameters), fired in order on consecutive requests of each source.
    `recovers`: the HTTP layer retries it away and the tick succeeds. Otherwise one account per
    source fails (`failed_account`), named with a cause matching `cause`, and the rest lands.
    """

    name: str
    steps: tuple[tuple[str, Mapping[str, Any]], ...]
    recovers: bool = True
    cause: str = ""
    timeout_s: float | None = None

    @property
    def kinds(self) -> set[str]:
        return {kind for kind, _ in self.steps}

    def inject(self, server: SandboxServer) -> None:
        for source in SOURCES:
            for kind, step in self.steps:
                params = dict(step)
                if kind == "missing_field":
                    params["field"] = REQUIRED_FIELD[source][0]
                if kind == "always_fail":
                    params["match"] = FAILING_ACCOUNT[source][0] or "bundle"
                add_fault(server, source, kind, **params)

    def failed_account(self, source: str) -> str:
        """The account (Workato: the day) this scenario makes fail."""
        if "always_fail" in self.kinds:
            return FAILING_ACCOUNT[source][1]
        # a one-shot fault hits each source's first per-account request
        return {"thousandeyes": "1234", "hcp_terraform": "acme-corp", "terraform_enterprise": "127.0.0.1",
                "workato": "2026-11-18"}[source]

    def cause_for(self, source: str) -> str:
        if "missing_field" in self.kinds:
            return re.escape(REQUIRED_FIELD[source][1])
        return self.cause


ONCE: dict[str, Any] = {"times": 1}
RECOVERING = [
    # each Retry-After form in a row: seconds, an HTTP date, and 0 (which must still back off)
    Scenario("429_each_retry_after_form", (("rate_limit", {**ONCE, "retry_after": 1}),
                                           ("rate_limit", {**ONCE, "retry_after": "date+1"}),
                                           ("rate_limit", {**ONCE, "retry_after": 0}))),
    Scenario("5xx_burst", tuple(("status", {**ONCE, "status": status}) for status in (500, 502, 503))),
    # a read timeout (the answer comes after the client's timeout), then two dropped connections
    Scenario("timeout_and_dropped_connections", (("slow", {**ONCE, "delay_s": 1.5}), ("drop", {"times": 2})),
             timeout_s=0.5),
    Scenario("unknown_new_field", (("extra_field", {"times": None, "field": "sandbox_new_field", "where": "items"}),)),
]
FAILING = [
    Scenario("html_page", (("html", ONCE),), recovers=False, cause=r"(?i)html"),
    Scenario("malformed_json", (("malformed_json", ONCE),), recovers=False, cause=r"(?i)json"),
    Scenario("missing_required_field", (("missing_field", ONCE),), recovers=False),
    Scenario("one_failing_account", (("always_fail", {"status": 500}),), recovers=False, cause=r"HTTP 500|gave up"),
]


def run_scenario(harness: Harness, scenario: Scenario, *, caplog: pytest.LogCaptureFixture,
                 figures: Figures) -> None:
    """A tick of all four sources under `scenario`, then every promise checked.

    A failing scenario re-pulls partitions that already landed once (30 minutes later, the same
    ticks and day windows), so "the failure leaves the previous rows" is checked too.
    """
    from datetime import timedelta

    if not scenario.recovers:
        baseline = harness.run()
        assert baseline.ok, [o.problems for o in baseline.sources]
        harness.server.clock.advance(timedelta(minutes=30))
    before = {vendor: len(harness.batches(vendor)) for vendor in SOURCES}
    scenario.inject(harness.server)
    summary = harness.run()

    for source in SOURCES:
        outcome, batches = harness.outcome(summary, source), harness.batches(source)[before[source]:]
        faulted = [r for r in harness.server.requests_for(vendor=source) if r.fault is not None]
        assert faulted, f"{source}: the {scenario.name} fault never fired"
        if scenario.recovers:
            assert outcome.ok, f"{source} did not recover from {scenario.name}: {outcome.problems}"
            assert [b for b in batches if b[3] != "complete"] == [], batches
            continue
        account = scenario.failed_account(source)
        report = "\n".join(outcome.problems)
        assert not outcome.ok, f"{source}: {scenario.name} on {account} was not reported"
        assert account in report and re.search(scenario.cause_for(source), report), \
            f"{source}: the run summary does not name account {account} and the cause: {report}"
        for vendor, batch_account, _key, status, error in batches:
            if status == "failed":  # a pull-time failure: raw.api_batches says who and why
                assert f"{vendor} [account" in error and re.search(scenario.cause_for(source), error), error
        others = {b[1] for b in batches} - {account, "(discovery)"}
        landed = {b[1] for b in batches if b[3] == "complete"}
        if source == "workato":  # the batch account is all workspaces; the unit that fails is a day
            others, landed = {b[2] for b in batches} - {account}, {b[2] for b in batches if b[3] == "complete"}
            assert others and others <= landed and others <= harness.staged_partitions(source), batches
        else:
            assert others <= landed and others <= harness.staged_accounts(source), (others, batches)
        # the failed account keeps the rows of its previous good pull
        assert account in (harness.staged_partitions(source) if source == "workato" else harness.staged_accounts(source))

    harness.build_models()
    verdict = harness.verify(caplog=caplog)
    figures.add(verdict)
    verdict.assert_clean()
