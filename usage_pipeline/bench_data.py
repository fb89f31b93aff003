"""Deterministic synthetic raw snapshots for the benchmark, laid out exactly like the landing store.

The one rule: same seed, same bytes. Every payload is built from a `random.Random` seeded from
(seed, vendor, account, partition), serialised with fixed separators and gzip'd with `mtime=0`
(as `LandingStore.land` does, at level 6 instead of 9: the same format and the same
decompression cost, written three times faster), so two runs hash to the same sha256 and a
figure can be reproduced on another machine. Nothing here touches the network or the real
landing folder.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from usage_pipeline.landing import BATCH_SCHEMA, SNAPSHOT_SCHEMA, Snapshot

SEED = 20261101
GZIP_LEVEL = 6
TESTS_PER_FILE = 50_000      # a very large organization context; bigger tick sizes add accounts
FIRST_TICK = datetime(2026, 1, 1, tzinfo=UTC)
HISTORY_START = datetime(2025, 1, 1, tzinfo=UTC)   # a finished year: every tick is in the past
TEST_TYPES = ("agent-to-server", "agent-to-agent", "http-server", "page-load", "web-transactions",
              "dns-server", "dns-trace", "dnssec", "sip-server", "voice", "ftp-server", "bgp", "api")
_NAMES = ("Zürich office ↔ AWS eu-central-1", 'Checkout "fast path"', "São Paulo DNS", "C:\\share probe",
          "東京 API health", "Payments, EU", "Edge / CDN")
_EXPAND = "test,enterprise-agent,enterprise-agent-unit,endpoint-agent,endpoint-agent-essential,endpoint-agent-embedded"


@dataclass
class Dataset:
    """Landed files of one vendor plus the raw index rows that point at them."""

    vendor: str
    root: Path                                   # the landing root
    snapshots: list[Snapshot] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)
    expected_rows: int = 0                       # rows of the measured staging table
    json_bytes: int = 0                          # uncompressed payload bytes (what MB/s is counted in)
    gzip_bytes: int = 0

    @property
    def sha256(self) -> str:
        """One digest over every file's sha256, in landing order: the dataset's identity."""
        digest = hashlib.sha256()
        for snapshot in self.snapshots:
            digest.update(f"{snapshot.landing_path}:{snapshot.sha256}\n".encode())
        return digest.hexdigest()

    def files(self) -> list[Path]:
        return [self.root / snapshot.landing_path for snapshot in self.snapshots]

    def describe(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "files": len(self.snapshots), "partitions": len(self.partitions),
                "rows": self.expected_rows, "json_bytes": self.json_bytes, "gzip_bytes": self.gzip_bytes,
                "sha256": self.sha256}


# ---------- writing files like the landing store


def partition_key(at: datetime) -> str:
    """Dagster's hourly partition key of the tick starting at `at`."""
    return f"{at:%Y-%m-%d-%H:%M}"


def land(dataset: Dataset, *, account_id: str, partition: str, fetched_at: datetime, endpoint: str,
         request: dict[str, Any], body: bytes, seed: int, part: str = "") -> Snapshot:
    """Write one body as the landing store would and describe it (ids derived from the seed).

    Every response of one (account, partition) belongs to one batch, as one pull lands them.
    """
    token = hashlib.sha256(f"{seed}:{dataset.vendor}:{account_id}:{partition}:{endpoint}:{part}".encode()).hexdigest()
    batch = hashlib.sha256(f"{seed}:{dataset.vendor}:{account_id}:{partition}".encode()).hexdigest()
    snapshot_id = f"{fetched_at:%Y%m%dT%H%M%S%f}Z-{token[:12]}"
    relative = Path(dataset.vendor, account_id, f"{fetched_at:%Y-%m-%d}", f"{snapshot_id}.json.gz")
    compressed = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
    target = dataset.root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(compressed)
    snapshot = Snapshot(
        snapshot_id=snapshot_id, batch_id=f"b-{batch[:16]}", vendor=dataset.vendor, endpoint=endpoint,
        account_id=account_id, partition_key=partition, request=request, status=200, fetched_at=fetched_at,
        sha256=hashlib.sha256(body).hexdigest(), bytes=len(body), landing_path=relative.as_posix(),
    )
    dataset.snapshots.append(snapshot)
    dataset.json_bytes += len(body)
    dataset.gzip_bytes += len(compressed)
    if partition not in dataset.partitions:
        dataset.partitions.append(partition)
    return snapshot


def index_tables(dataset: Dataset) -> tuple[pa.Table, pa.Table]:
    """raw.api_snapshots and raw.api_batches rows for the dataset, every batch complete."""
    recorded_at = datetime(2027, 1, 1, tzinfo=UTC)
    snapshots, batches = [], {}
    for snapshot in dataset.snapshots:
        snapshots.append({
            "snapshot_id": snapshot.snapshot_id, "batch_id": snapshot.batch_id, "vendor": snapshot.vendor,
            "endpoint": snapshot.endpoint, "account_id": snapshot.account_id, "partition_key": snapshot.partition_key,
            "request": json.dumps(snapshot.request, sort_keys=True), "status": snapshot.status,
            "fetched_at": snapshot.fetched_at, "sha256": snapshot.sha256, "bytes": snapshot.bytes,
            "landing_path": snapshot.landing_path, "recorded_at": recorded_at,
        })
        batch = batches.setdefault(snapshot.batch_id, {
            "batch_id": snapshot.batch_id, "vendor": snapshot.vendor, "account_id": snapshot.account_id,
            "partition_key": snapshot.partition_key, "status": "complete", "error": None, "snapshot_count": 0,
            "started_at": snapshot.fetched_at, "finished_at": snapshot.fetched_at})
        batch["snapshot_count"] += 1
        batch["finished_at"] = max(batch["finished_at"], snapshot.fetched_at + timedelta(seconds=1))
    return (pa.Table.from_pylist(snapshots, schema=SNAPSHOT_SCHEMA),
            pa.Table.from_pylist(list(batches.values()), schema=BATCH_SCHEMA))


def index(warehouse: Any, dataset: Dataset) -> None:
    """Bootstrap `warehouse` and record the dataset's snapshots and complete batches in it."""
    warehouse.bootstrap()
    snapshots, batches = index_tables(dataset)
    with warehouse.transaction() as tx:
        tx.load_arrow("raw.api_snapshots", snapshots)
        tx.load_arrow("raw.api_batches", batches)


# ---------- ThousandEyes v7 usage


def thousandeyes_payload(*, seed: int, org: int, n_tests: int, month_start: datetime, groups: int = 8) -> bytes:
    """One `GET /v7/usage?expand=…` body of organization `org` with `n_tests` tests.

    Shaped like the SDK fixture (API_CONTRACTS.md §4.2): string ids, ISO `Z` times, quotas
    above 2^31, ~5% of tests without `cloudUnitsProjected` (new tests), some zeros, names with
    quotes, backslashes and non-ASCII text.
    """
    rng = random.Random(f"{seed}:thousandeyes:{org}:{n_tests}")
    groups = [(str(org * 1000 + g), f"Org {org} / group {g}") for g in range(groups)]
    tests = []
    for index in range(n_tests):
        aid, group_name = groups[rng.randrange(len(groups))]
        pick = rng.random()
        name = (f"https://svc-{rng.randrange(10**6)}.example.com/health" if pick < 0.7
                else f"{_NAMES[rng.randrange(len(_NAMES))]} #{index}")
        test: dict[str, Any] = {"aid": aid, "testId": str(org * 10_000_000 + index), "accountGroupName": group_name,
                                "testName": name, "testType": TEST_TYPES[rng.randrange(len(TEST_TYPES))],
                                "cloudUnitsUsed": 0 if rng.random() < 0.03 else rng.randrange(1, 2_000_000)}
        if rng.random() >= 0.05:  # "new tests have no cloudUnitsProjected until projection is calculated"
            test["cloudUnitsProjected"] = rng.choice((0, rng.randrange(1, 5_000_000), rng.randrange(2**31, 2**33)))
        tests.append(test)
    agents = []
    for index in range(max(4, min(200, n_tests // 250))):
        aid, group_name = groups[index % len(groups)]
        agent: dict[str, Any] = {"aid": aid, "accountGroupName": group_name, "agentName": f"te-agent-{org}-{index}",
                                 "enterpriseUnitsUsed": rng.randrange(0, 900_000),
                                 "enterpriseUnitsProjected": rng.randrange(0, 900_000)}
        if index % 10:  # since 2025-10 agentId "may be omitted" (API_CONTRACTS.md §4.4)
            agent["agentId"] = str(org * 100_000 + index)
        agents.append(agent)
    usage: dict[str, Any] = {
        "quota": {"monthStart": f"{month_start:%Y-%m-%dT%H:%M:%SZ}",
                  "monthEnd": f"{month_start.replace(month=month_start.month % 12 + 1):%Y-%m-%dT%H:%M:%SZ}",
                  "cloudUnitsIncluded": 4_320_000_000, "enterpriseAgentsIncluded": 25, "endpointAgentsIncluded": 200,
                  "endpointAgentsEssentialsIncluded": 10, "endpointAgentsEmbeddedIncluded": 10,
                  "deviceAgentsIncluded": 100},
        "cloudUnitsUsed": sum(test["cloudUnitsUsed"] for test in tests),
        "cloudUnitsProjected": sum(test.get("cloudUnitsProjected", 0) for test in tests),
        "cloudUnitsNextBillingPeriod": 25_123_456,
        "enterpriseUnitsUsed": sum(agent["enterpriseUnitsUsed"] for agent in agents),
        "enterpriseUnitsProjected": sum(agent["enterpriseUnitsProjected"] for agent in agents),
        "enterpriseUnitsNextBillingPeriod": 0,
        "endpointAgentsUsed": 42, "endpointAgentsEssentialsUsed": 5, "endpointAgentsEmbeddedUsed": 5,
        "enterpriseAgentsUsed": len(agents),
        "tests": tests,
        "enterpriseAgentUnits": agents,
    }
    for array, count in (("endpointAgents", "endpointAgentsUsed"), ("endpointAgentsEssentials", "endpointAgentsEssentialsUsed"),
                         ("endpointAgentsEmbedded", "endpointAgentsEmbeddedUsed"), ("enterpriseAgents", "enterpriseAgentsUsed")):
        usage[array] = [{"aid": aid, "accountGroupName": name, count: rng.randrange(0, 50)} for aid, name in groups]
    body = {"_links": {"self": {"href": "https://api.thousandeyes.com/v7/usage"}}, "usage": usage}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def thousandeyes_request(account_id: str) -> dict[str, Any]:
    """What the client records with a v7 usage snapshot (never headers or tokens)."""
    return {"method": "GET", "path": "/v7/usage", "params": {"aid": account_id, "expand": _EXPAND}}


def write_thousandeyes(root: Path, n_tests: int, *, seed: int = SEED, tests_per_file: int = TESTS_PER_FILE,
                       tick: datetime = FIRST_TICK) -> Dataset:
    """`n_tests` test rows in one hourly tick, spread over organization contexts of ≤ `tests_per_file` tests."""
    jobs = [(Path(root), seed, org, count, tick) for org, count in enumerate(_chunks(n_tests, tests_per_file), start=1)]
    if len(jobs) > 1:  # files are independent: build them on every core (same bytes either way)
        with ProcessPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
            parts = list(pool.map(_thousandeyes_file, jobs))
    else:
        parts = [_thousandeyes_file(job) for job in jobs]
    dataset = Dataset("thousandeyes", Path(root))
    for part in parts:
        dataset.snapshots += part.snapshots
        dataset.partitions += [key for key in part.partitions if key not in dataset.partitions]
        dataset.expected_rows += part.expected_rows
        dataset.json_bytes += part.json_bytes
        dataset.gzip_bytes += part.gzip_bytes
    return dataset


def _thousandeyes_file(job: tuple[Path, int, int, int, datetime]) -> Dataset:
    root, seed, org, count, tick = job
    part = Dataset("thousandeyes", root)
    account_id = str(900_000 + org)
    body = thousandeyes_payload(seed=seed, org=org, n_tests=count, month_start=tick.replace(day=1, hour=0))
    land(part, account_id=account_id, partition=partition_key(tick), endpoint="usage", request=thousandeyes_request(account_id),
         fetched_at=tick + timedelta(hours=1, minutes=2, seconds=org % 60), body=body, seed=seed)
    part.expected_rows = count
    return part


def write_thousandeyes_history(root: Path, *, orgs: int, hours: int, tests_per_org: int, seed: int = SEED,
                               start: datetime = HISTORY_START, first_hour: int = 0) -> Dataset:
    """`hours` hourly ticks × `orgs` organizations: what a year of scheduled pulls leaves in landing.

    Two account groups per organization keep the agent arrays small, so the tests dominate
    as they do in real tenants.
    """
    step = 24 * 7
    jobs = [(Path(root), seed, orgs, tests_per_org, start, low, min(low + step, first_hour + hours))
            for low in range(first_hour, first_hour + hours, step)]
    if len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            parts = list(pool.map(_history_hours, jobs))
    else:
        parts = [_history_hours(job) for job in jobs]
    dataset = Dataset("thousandeyes", Path(root))
    for part in parts:
        dataset.snapshots += part.snapshots
        dataset.partitions += part.partitions
        dataset.expected_rows += part.expected_rows
        dataset.json_bytes += part.json_bytes
        dataset.gzip_bytes += part.gzip_bytes
    return dataset


def _history_hours(job: tuple[Path, int, int, int, datetime, int, int]) -> Dataset:
    root, seed, orgs, tests_per_org, start, low, high = job
    part = Dataset("thousandeyes", root)
    for hour in range(low, high):
        tick = start + timedelta(hours=hour)
        for org in range(1, orgs + 1):
            account_id = str(900_000 + org)
            body = thousandeyes_payload(seed=seed + hour, org=org, n_tests=tests_per_org, groups=2,
                                        month_start=tick.replace(day=1, hour=0))
            land(part, account_id=account_id, partition=partition_key(tick), endpoint="usage",
                 request=thousandeyes_request(account_id), fetched_at=tick + timedelta(hours=1, minutes=2, seconds=org),
                 body=body, seed=seed)
            part.expected_rows += tests_per_org
    return part


# ---------- Terraform Enterprise bundles and Workato windows (modest sizes)


def write_terraform_enterprise(root: Path, *, days: int, window_days: int = 7, seed: int = SEED,
                               start: datetime = FIRST_TICK) -> Dataset:
    """One bundle per daily tick, each holding the last `window_days` daily snapshots (the sandbox's data)."""
    from usage_pipeline.sandbox.terraform_enterprise import TfeSandboxSettings, bundle

    config = TfeSandboxSettings(window_days=window_days, installed_day=(start - timedelta(days=window_days)).date(),
                                licence_change_day=(start + timedelta(days=days // 2)).date(),
                                upgrade_day=(start + timedelta(days=days // 3)).date())
    dataset = Dataset("terraform_enterprise", Path(root))
    for day in range(days):
        tick = start + timedelta(days=day)
        fetched_at = tick + timedelta(days=1, minutes=5)
        body = json.dumps(bundle(fetched_at, config), separators=(",", ":")).encode()
        land(dataset, account_id="tfe.example.com", partition=f"{tick:%Y-%m-%d}", endpoint="usage_bundle",
             request={"method": "GET", "path": "/api/v1/usage/bundle", "params": {}}, fetched_at=fetched_at,
             body=body, seed=seed)
        dataset.expected_rows += sum(len(item["metrics"]) for item in json.loads(body)["snapshots"])
    return dataset


def write_workato(root: Path, *, days: int, workspaces: int, recipes: int, seed: int = SEED,
                  timezone: str = "America/Los_Angeles", start: datetime = FIRST_TICK) -> Dataset:
    """Daily windows of hourly buckets in the admin zone, grouped by workspace and by recipe (DESIGN's shape)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(timezone)
    dataset = Dataset("workato", Path(root))
    ids = [str(3100 + w) for w in range(workspaces)]
    for day in range(days):
        local_start = (start + timedelta(days=day)).astimezone(zone).replace(hour=0, minute=0, second=0)
        window = (local_start.astimezone(UTC), (local_start + timedelta(days=1)).astimezone(UTC))  # wall-clock day: 23-25 h
        for grouping in ("workspace", "recipe"):
            rng = random.Random(f"{seed}:workato:{day}:{grouping}")
            body = json.dumps({"data": list(_workato_entries(rng, ids, recipes if grouping == "recipe" else 0,
                                                             window, zone))}, separators=(",", ":")).encode()
            record = {"method": "POST", "path": "/api/v2/managed_users/statistics/usage", "timezone": timezone,
                      "window_start": window[0].isoformat(), "window_end": window[1].isoformat(), "grouping": grouping,
                      "group_by": "recipe" if grouping == "recipe" else None, "interval": "hour",
                      "id_kind": "workspace_ids", "ids": ids}
            land(dataset, account_id="all_workspaces", partition=f"{local_start:%Y-%m-%d}", endpoint="usage",
                 request=record, fetched_at=window[1] + timedelta(hours=2), body=body, seed=seed, part=grouping)
            hours = int((window[1] - window[0]).total_seconds() // 3600)
            dataset.expected_rows += workspaces * max(recipes if grouping == "recipe" else 1, 1) * hours
    return dataset


def _workato_entries(rng: random.Random, ids: list[str], recipes: int, window: tuple[datetime, datetime],
                     zone: Any) -> Iterator[dict[str, Any]]:
    hours = int((window[1] - window[0]).total_seconds() // 3600)
    for workspace in ids:
        for recipe in range(recipes) if recipes else [None]:
            intervals = []
            for hour in range(hours):
                low = (window[0] + timedelta(hours=hour)).astimezone(zone)
                high = (window[0] + timedelta(hours=hour + 1)).astimezone(zone)
                intervals.append({"from": low.isoformat(timespec="milliseconds"), "to": high.isoformat(timespec="milliseconds"),
                                  "task_count": rng.randrange(0, 5000), "recipe_count": 14, "active_recipe_count": 9,
                                  "successful_job_count": rng.randrange(0, 400), "failed_job_count": rng.randrange(0, 9)})
            yield {"workspace_id": int(workspace), "external_id": f"ext-{workspace}", "workspace_name": f"Workspace {workspace}",
                   "recipe_id": None if recipe is None else int(workspace) * 100 + recipe,
                   "recipe_name": None if recipe is None else f"Recipe {recipe}",
                   "folder_id": None, "folder_name": None, "intervals": intervals}


def _chunks(total: int, size: int) -> Iterator[int]:
    while total > 0:
        yield min(size, total)
        total -= size
