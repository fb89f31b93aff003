"""HCP Terraform validity intervals (rung 5/6): crafted snapshot sequences through the real parser,
staging and SQL models, on DuckDB and on a real PostgreSQL.

Proves the interval rules stated in dbt_like_models/marts/hcp_terraform/_models.yml: a change
opens a new interval at the first snapshot that saw it; a revert and a value that disappears
and comes back get new intervals; a missed tick (failed pull, or a 404 that means unknown)
never extends an interval past the last snapshot that saw it; history follows the
external-id across a rename; plan changes, quota and usage come out of the same snapshots.
Every model's YAML tests run too and must pass.

All scenarios are built once per engine, one organization (external id) per scenario, over the
same five daily ticks (0..LAST), so each test reads its own organization's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from conftest import ENGINES, make_warehouse

from usage_pipeline import models
from usage_pipeline.sources.base import to_arrow
from usage_pipeline.sources.hcp_terraform import constants as c
from usage_pipeline.sources.hcp_terraform.assets import ensure_staging
from usage_pipeline.sources.hcp_terraform.parse import Response, parse_batch
from usage_pipeline.sources.hcp_terraform.schemas import STAGING_SCHEMAS

START = date(2026, 11, 1)
MODELS = ["fct_subscription_entitlements", "fct_hcp_subscriptions", "dim_hcp_organizations",
          "int_hcp_terraform__quota", "int_hcp_terraform__units_used"]
STANDARD = ("sub-1", "fs-standard", "Standard")
PLUS = ("sub-2", "fs-plus", "Plus")


def partition(day: int) -> str:
    return (START + timedelta(days=day)).isoformat()


def seen_at(day: int) -> datetime:
    """A daily tick for partition `day` runs the next morning."""
    return datetime.combine(START + timedelta(days=day + 1), time(10), tzinfo=UTC)


@dataclass
class Tick:
    """What one organization's batch answered at one tick (a failed tick simply has no Tick)."""

    day: int
    name: str = "acme"
    external_id: str = "org-acme"
    subscription: tuple[str, str, str] | None = STANDARD  # None: GET /subscription answered 404
    features: dict[str, Any] = field(default_factory=dict)  # the included feature set's attributes
    limits: dict[str, Any] = field(default_factory=dict)  # attributes set on the subscription itself
    entitlements: dict[str, Any] | None = field(default_factory=dict)  # None: /entitlement-set answered 404
    workspaces: list[int] | None = None  # current_rum_count per workspace; None: no explorer page


def documents(tick: Tick) -> list[Response]:
    at, prefix = seen_at(tick.day), f"{partition(tick.day)}-{tick.name}"
    docs = [Response(f"{prefix}-1", c.EP_ORGANIZATION, 200, at, {"data": {
        "id": tick.name, "type": "organizations", "attributes": {"external-id": tick.external_id, "name": tick.name}}})]
    if tick.subscription is None:
        docs.append(Response(f"{prefix}-2", c.EP_SUBSCRIPTION, 404, at, {"errors": [{"status": "404", "title": "not found"}]}))
    else:
        sub_id, fs_id, fs_name = tick.subscription
        docs.append(Response(f"{prefix}-2", c.EP_SUBSCRIPTION, 200, at, {
            "data": {"id": sub_id, "type": "subscriptions",
                     "attributes": {"is-active": True, "start-at": "2026-01-01T00:00:00Z", "end-at": None, **tick.limits},
                     "relationships": {"feature-set": {"data": {"id": fs_id, "type": "feature-sets"}}}},
            "included": [{"id": fs_id, "type": "feature-sets",
                          "attributes": {"name": fs_name, "identifier": "standard", "cost": 0, **tick.features}}]}))
    if tick.entitlements is None:
        docs.append(Response(f"{prefix}-3", c.EP_ENTITLEMENT_SET, 404, at, {"errors": ["not found"]}))
    else:
        docs.append(Response(f"{prefix}-3", c.EP_ENTITLEMENT_SET, 200, at, {
            "data": {"id": tick.external_id, "type": "entitlement-sets", "attributes": tick.entitlements}}))
    if tick.workspaces is not None:
        docs.append(Response(f"{prefix}-4", c.EP_EXPLORER_WORKSPACES, 200, at, {"data": [
            {"id": f"ws-{tick.name}-{i}", "type": "visibility-workspace", "attributes": {"current_rum_count": rum}}
            for i, rum in enumerate(tick.workspaces)]}, 1))
    return docs


def load(warehouse, ticks: list[Tick]) -> list[models.ModelResult]:
    """Stage each tick as the staging asset would (one batch per organization and tick), then build the models."""
    ensure_staging(warehouse)
    for tick in ticks:
        parsed = parse_batch(tick.name, documents(tick))
        with warehouse.transaction() as tx:
            for table, schema in STAGING_SCHEMAS.items():
                tx.load_arrow(table, to_arrow(parsed.tables.get(table, []), schema, account_id=tick.name,
                                              partition_key=partition(tick.day), loaded_at=seen_at(tick.day)))
    return models.run_models(warehouse, select=[f"+{name}" for name in MODELS])


LAST = 4
DAYS = range(LAST + 1)


def scenario(org: str, days: range | list[int] = DAYS, **per_day: Any) -> list[Tick]:
    """One organization's ticks; each keyword is a value, or a function of the day."""
    return [Tick(day, name=org, external_id=f"org-{org}",
                 **{key: value(day) if callable(value) else value for key, value in per_day.items()})
            for day in days]


SCENARIOS: dict[str, list[Tick]] = {
    "change": scenario("change", entitlements=lambda d: {"sso": d >= 2}),
    "revert": scenario("revert", entitlements=lambda d: {"teams": d == 1}),
    "comeback": scenario("comeback", entitlements=lambda d: {"sso": True, **({} if d == 1 else {"infragraph": True})}),
    "newkey": scenario("newkey", entitlements=lambda d: {"sso": True, **({"waypoint-actions": True} if d >= 3 else {})}),
    "limits": scenario("limits", entitlements=lambda d: {"user-limit": None if d == 0 else 5, "policy-limit": 0}),
    # day 2's pull failed: nothing reached staging
    "failed": scenario("failed", [0, 1, 3, 4], entitlements={"sso": True}),
    "gapchange": scenario("gapchange", [0, 2, 3, 4], entitlements=lambda d: {"user-limit": 5 if d == 0 else 25}),
    # failing since day 3: not current any more
    "tail": scenario("tail", [0, 1, 2], entitlements={"sso": True}),
    "set404": scenario("set404", entitlements=lambda d: None if d == 1 else {"sso": True}),
    "sub404": scenario("sub404", subscription=lambda d: None if d == 1 else STANDARD, features={"teams": True}),
    "plan": scenario("plan", subscription=lambda d: PLUS if d >= 2 else STANDARD,
                     features=lambda d: {"teams": d >= 2, "sso": True}, entitlements=lambda d: {"teams": d >= 2, "sso": True}),
    "overrides": scenario("overrides", limits=lambda d: {"contract-user-limit": None if d == 0 else 50, "runs-ceiling": 1}),
    "rename": [Tick(day, name="rename" if day < 2 else "renamed", external_id="org-rename",
                    entitlements={"sso": day < 3}) for day in DAYS],
    "free": scenario("free", subscription=None, entitlements={"user-limit": 5}, workspaces=[3, 4]),
    "usage": scenario("usage", limits=lambda d: [
        {"contract-managed-resources-limit": 5000, "free-resource-under-management-monthly-limit": 500},
        {"free-resource-under-management-monthly-limit": 500}, {}, {}, {}][d],
        workspaces=lambda d: [[120, 300, 410], [], None, None, None][d]),
}


@pytest.fixture(scope="module", params=ENGINES)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Every scenario staged and every HCP Terraform model built (and YAML-tested), once per engine."""
    warehouse = make_warehouse(request.param, tmp_path_factory.mktemp("hcp_intervals"), request)
    results = load(warehouse, [tick for ticks in SCENARIOS.values() for tick in ticks])
    return warehouse, results


COLUMNS = ("valid_from", "valid_to", "last_seen_at", "ended_by", "starts_after_gap", "is_current", "enabled",
           "limit_value", "is_unlimited", "subscription_id", "feature_set_id", "organization_name")


def intervals(built, org: str, key: str, source: str = "entitlement_set") -> list[dict[str, Any]]:
    warehouse, _ = built
    rows = warehouse.query(
        f"select {', '.join(COLUMNS)} from marts.fct_subscription_entitlements "
        "where organization_external_id = %s and value_source = %s and entitlement_key = %s order by valid_from",
        [f"org-{org}", source, key],
    )
    return [dict(zip(COLUMNS, row)) for row in rows]


def spans(built, org: str, key: str, source: str = "entitlement_set") -> list[tuple]:
    """(valid_from day, valid_to day or None, ended_by, value) per interval: the shape most tests check."""
    def day(moment: datetime | None) -> int | None:
        return None if moment is None else (moment.astimezone(UTC).date() - START).days - 1

    return [(day(row["valid_from"]), day(row["valid_to"]), row["ended_by"],
             row["enabled"] if row["enabled"] is not None else row["limit_value"])
            for row in intervals(built, org, key, source)]


def test_every_hcp_terraform_model_test_passes_on_the_scenarios(built):
    _, results = built
    assert {result.model for result in results} >= set(MODELS)
    failed = [(result.model, test.name, test.sample) for result in results for test in result.tests if not test.passed]
    assert failed == []


# ---------- changes


def test_a_change_opens_a_new_interval_at_the_first_snapshot_that_saw_it(built):
    assert spans(built, "change", "sso") == [(0, 2, "changed", False), (2, None, None, True)]
    first, second = intervals(built, "change", "sso")
    assert (first["valid_from"], first["valid_to"], first["last_seen_at"]) == (seen_at(0), seen_at(2), seen_at(1))
    assert (second["valid_from"], second["last_seen_at"], second["is_current"]) == (seen_at(2), seen_at(LAST), True)


def test_a_revert_gets_its_own_interval(built):
    assert spans(built, "revert", "teams") == [(0, 1, "changed", False), (1, 2, "changed", True), (2, None, None, False)]


def test_a_value_that_disappears_and_comes_back_gets_a_new_interval(built):
    assert spans(built, "comeback", "infragraph") == [(0, 1, "removed", True), (2, None, None, True)]
    assert intervals(built, "comeback", "infragraph")[1]["starts_after_gap"] is False
    assert spans(built, "comeback", "sso") == [(0, None, None, True)]


def test_new_keys_open_intervals_when_they_first_appear(built):
    assert spans(built, "newkey", "waypoint-actions") == [(3, None, None, True)]


def test_null_limits_stay_unlimited_and_zero_stays_zero(built):
    first, second = intervals(built, "limits", "user-limit")
    assert (first["limit_value"], first["is_unlimited"], first["ended_by"]) == (None, True, "changed")
    assert (second["limit_value"], second["is_unlimited"]) == (5, False)
    assert [(row["limit_value"], row["is_unlimited"]) for row in intervals(built, "limits", "policy-limit")] == [(0, False)]


# ---------- gaps


def test_a_failed_tick_closes_the_interval_at_the_last_snapshot_that_saw_it(built):
    first, second = intervals(built, "failed", "sso")
    assert (first["valid_from"], first["valid_to"], first["last_seen_at"], first["ended_by"]) == (
        seen_at(0), seen_at(1), seen_at(1), "gap")
    assert (second["valid_from"], second["valid_to"], second["starts_after_gap"]) == (seen_at(3), None, True)


def test_a_change_behind_a_gap_is_not_dated_to_either_side(built):
    assert spans(built, "gapchange", "user-limit") == [(0, 0, "gap", 5), (2, None, None, 25)]


def test_an_organization_missing_from_the_latest_tick_is_not_current(built):
    rows = intervals(built, "tail", "sso")
    assert [(row["valid_to"], row["last_seen_at"], row["ended_by"], row["is_current"]) for row in rows] == [
        (seen_at(2), seen_at(2), "gap", False)]


def test_a_404_on_the_entitlement_set_is_a_gap_not_a_removal(built):
    assert spans(built, "set404", "sso") == [(0, 0, "gap", True), (2, None, None, True)]


def test_a_404_on_the_subscription_is_a_gap_for_the_plan(built):
    assert spans(built, "sub404", "teams", source="feature_set") == [(0, 0, "gap", True), (2, None, None, True)]


# ---------- plans and renames


def test_a_plan_change_splits_intervals_and_is_one_query_away(built):
    assert spans(built, "plan", "teams", source="feature_set") == [(0, 2, "changed", False), (2, None, None, True)]
    # the same value under another plan: a new interval, so every row names the plan it held under
    assert spans(built, "plan", "sso") == [(0, 2, "subscription_changed", True), (2, None, None, True)]
    assert [(row["subscription_id"], row["feature_set_id"]) for row in intervals(built, "plan", "sso")] == [
        ("sub-1", "fs-standard"), ("sub-2", "fs-plus")]
    warehouse, _ = built
    changes = warehouse.query(
        "select organization_name, partition_key, previous_feature_set_name, feature_set_name "
        "from marts.fct_hcp_subscriptions where is_plan_change order by partition_key")
    assert changes == [("plan", partition(2), "Standard", "Plus")]


def test_subscription_limits_are_overrides_only_when_set(built):
    assert spans(built, "overrides", "contract-user-limit", source="subscription") == [(1, None, None, 50)]
    assert spans(built, "overrides", "runs-ceiling", source="subscription") == [(0, None, None, 1)]


def test_a_rename_keeps_the_history_on_the_external_id(built):
    assert spans(built, "rename", "sso") == [(0, 3, "changed", True), (3, None, None, False)]
    assert {row["organization_name"] for row in intervals(built, "rename", "sso")} == {"renamed"}
    warehouse, _ = built
    assert warehouse.query("select organization_name, names_seen, ticks_observed from marts.dim_hcp_organizations "
                           "where organization_external_id = %s", ["org-rename"]) == [("renamed", 2, 5)]


def test_the_free_organization_without_a_subscription_has_entitlements_and_no_plan(built):
    assert spans(built, "free", "user-limit") == [(0, None, None, 5)]
    assert [(row["subscription_id"], row["feature_set_id"]) for row in intervals(built, "free", "user-limit")] == [(None, None)]
    warehouse, _ = built
    states = warehouse.query("select distinct subscription_state, http_status, is_plan_change "
                             "from marts.fct_hcp_subscriptions where account_id = %s", ["free"])
    assert states == [("none_or_not_visible", 404, False)]
    assert warehouse.query("select count(*) from intermediate.int_hcp_terraform__quota where account_id = %s", ["free"]) == [(0,)]
    assert warehouse.query("select used, period_start from intermediate.int_hcp_terraform__units_used "
                           "where account_id = %s order by partition_key", ["free"]) == [(7, None)] * 5


# ---------- quota and usage


def test_managed_resources_usage_sums_workspaces_against_the_contract_limit(built):
    warehouse, _ = built
    quota = warehouse.query("select partition_key, unit, included, period_start, period_end "
                            "from intermediate.int_hcp_terraform__quota where account_id = %s order by partition_key",
                            ["usage"])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert quota[:3] == [(partition(0), "managed_resources", 5000, start, None),  # the contract wins over the free tier
                         (partition(1), "managed_resources", 500, start, None),
                         (partition(2), "managed_resources", None, start, None)]  # no cap set: unlimited, not 0
    used = warehouse.query("select partition_key, used, projected from intermediate.int_hcp_terraform__units_used "
                           "where account_id = %s order by partition_key", ["usage"])
    # an explorer that listed no workspace says 0; a tick without an explorer answer says nothing
    assert used == [(partition(0), 830, None), (partition(1), 0, None)]
