"""The simulated Workato usage endpoint (rung 3, real HTTP on loopback): numbers that depend on
window, interval, grouping and admin zone; `data: null`; deleted recipes; re-pull re-allocation."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from usage_pipeline.sandbox import SandboxServer
from usage_pipeline.sandbox import workato as sandbox_workato

PATH = "/api/v2/managed_users/statistics/usage"


@pytest.fixture
def server():
    with SandboxServer() as running:
        yield running


def post(server: SandboxServer, body: dict, *, token: str | None = None) -> httpx.Response:
    token = server.tokens["workato"] if token is None else token
    return httpx.post(server.base_url + PATH, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def ask(server: SandboxServer, **body) -> list[dict] | None:
    response = post(server, {"interval": "hour", "workspace_ids": [3127, 3128, 3129], **body})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def tasks(entries: list[dict] | None, workspace_id: int | None = None) -> int:
    return sum(b["task_count"] for e in entries or [] if workspace_id in (None, e["workspace_id"])
               for b in e["intervals"])


LA_NOV_1 = {"from": "2026-11-01T00:00:00.000-07:00", "to": "2026-11-02T00:00:00.000-08:00"}


def test_env_points_the_pipeline_at_the_simulated_tenant(server):
    env = server.env()
    assert env["WORKATO_WORKSPACE_IDS"] == "3127,3128,3129"
    assert env["WORKATO_TIMEZONE"] == "America/Los_Angeles"
    sandbox_workato.state(server).timezone = "Asia/Kolkata"
    assert server.env()["WORKATO_TIMEZONE"] == "Asia/Kolkata"


def test_hour_buckets_follow_the_admin_zone_across_fall_back(server):
    (acme, *_), = [ask(server, **LA_NOV_1)]
    starts = [b["from"] for b in acme["intervals"]]
    assert len(starts) == 25
    assert starts[:3] == ["2026-11-01T00:00:00.000-07:00", "2026-11-01T01:00:00.000-07:00",
                          "2026-11-01T01:00:00.000-08:00"]
    assert acme["intervals"][-1]["to"] == "2026-11-02T00:00:00.000-08:00"


def test_spring_forward_day_has_23_hour_buckets(server):
    data = ask(server, **{"from": "2026-03-08T00:00:00.000-08:00", "to": "2026-03-09T00:00:00.000-07:00"})
    (acme,) = data  # only Acme existed in March
    assert len(acme["intervals"]) == 23
    assert "2026-03-08T02:00" not in " ".join(b["from"] for b in acme["intervals"])


def test_buckets_align_to_a_half_hour_zone(server):
    sandbox_workato.state(server).timezone = "Asia/Kolkata"
    data = ask(server, **{"from": "2026-10-01T00:00:00.000+05:30", "to": "2026-10-02T00:00:00.000+05:30"})
    intervals = data[0]["intervals"]
    assert len(intervals) == 24
    assert all(b["from"].endswith(":00:00.000+05:30") for b in intervals)
    # the same UTC window read from Los Angeles' zone gives LA-aligned buckets instead
    sandbox_workato.state(server).timezone = "America/Los_Angeles"
    same_window = ask(server, **{"from": "2026-09-30T18:30:00.000Z", "to": "2026-10-01T18:30:00.000Z"})
    assert same_window[0]["intervals"][0]["to"] == "2026-09-30T12:00:00.000-07:00"  # a half bucket first
    assert tasks(same_window, 3127) == tasks(data, 3127)


# Oct 1 (a Thursday) to Nov 3 local, across the Nov 1 fall-back: 33 days, 793 hours,
# weeks from Monday (Oct 1-4, 5, 12, 19, 26, Nov 2), two months
@pytest.mark.parametrize("interval, buckets", [("none", 1), ("hour", 793), ("day", 33), ("week", 6), ("month", 2),
                                               ("year", 1)])
def test_every_interval_adds_up_to_the_same_window_total(server, interval, buckets):
    window = {"from": "2026-10-01T00:00:00.000-07:00", "to": "2026-11-03T00:00:00.000-08:00"}
    reference = tasks(ask(server, **window, interval="none"), 3127)
    data = ask(server, **window, interval=interval)
    acme = next(e for e in data if e["workspace_id"] == 3127)
    assert len(acme["intervals"]) == buckets
    assert tasks([acme]) == reference > 0


def test_data_is_null_before_any_workspace_started(server):
    assert ask(server, **{"from": "2024-06-01T00:00:00.000-07:00", "to": "2024-06-02T00:00:00.000-07:00"}) is None


def test_a_workspace_appears_from_its_start_day(server):
    before = ask(server, **{"from": "2026-11-09T00:00:00.000-08:00", "to": "2026-11-10T00:00:00.000-08:00"})
    start_day = ask(server, **{"from": "2026-11-10T00:00:00.000-08:00", "to": "2026-11-11T00:00:00.000-08:00"})
    assert 3129 not in {e["workspace_id"] for e in before}
    initech = next(e for e in start_day if e["workspace_id"] == 3129)
    # started 09:30 PST: nothing before, usage after
    assert sum(b["task_count"] for b in initech["intervals"][:9]) == 0
    assert sum(b["task_count"] for b in initech["intervals"][10:]) > 0


def test_deleted_recipes_count_only_in_unfiltered_queries(server):
    # Acme's "Legacy import" was deleted on Oct 15: its earlier usage is in the totals only
    window = {"from": "2026-10-01T00:00:00.000-07:00", "to": "2026-10-02T00:00:00.000-07:00"}
    total = tasks(ask(server, **window), 3127)
    per_recipe = ask(server, **window, group_by="recipe")
    filtered = ask(server, **window, recipe_name_pattern="Sync")  # any extra field hides them too
    acme_recipes = {e["recipe_id"] for e in per_recipe if e["workspace_id"] == 3127}
    assert acme_recipes == {41001, 41002, 41004}
    assert 0 < tasks(per_recipe, 3127) < total
    assert tasks(filtered, 3127) == tasks(per_recipe, 3127)
    # after the deletion the two agree
    later = {"from": "2026-10-20T00:00:00.000-07:00", "to": "2026-10-21T00:00:00.000-07:00"}
    assert tasks(ask(server, **later), 3127) == tasks(ask(server, **later, group_by="recipe"), 3127)


def test_a_repeated_query_moves_counts_between_buckets_but_keeps_the_total(server):
    first, second = ask(server, **LA_NOV_1), ask(server, **LA_NOV_1)
    assert tasks(first) == tasks(second)
    assert [b["task_count"] for b in first[0]["intervals"]] != [b["task_count"] for b in second[0]["intervals"]]


def test_an_open_window_answers_only_the_buckets_that_began(server):
    # the sandbox clock says 2026-11-20 10:00 UTC = 02:00 PST
    data = ask(server, **{"from": "2026-11-20T00:00:00.000-08:00", "to": "2026-11-21T00:00:00.000-08:00"})
    assert [b["from"][11:16] for b in data[0]["intervals"]] == ["00:00", "01:00"]
    server.clock.set(datetime(2026, 11, 20, 20, 0, tzinfo=UTC))
    later = ask(server, **{"from": "2026-11-20T00:00:00.000-08:00", "to": "2026-11-21T00:00:00.000-08:00"})
    assert len(later[0]["intervals"]) == 12


def test_external_ids_select_the_same_workspaces(server):
    by_id = post(server, {**LA_NOV_1, "interval": "day", "workspace_ids": [3128]}).json()["data"]
    by_external = post(server, {**LA_NOV_1, "interval": "day", "external_ids": ["globex-eu"]}).json()["data"]
    assert tasks(by_id) == tasks(by_external) > 0


@pytest.mark.parametrize("body, message", [
    ({"to": "2026-11-02T00:00:00.000Z", "workspace_ids": [3127]}, "'from'"),
    ({**LA_NOV_1, "workspace_ids": [3127], "external_ids": ["acme-prod"]}, "workspace_ids or external_ids"),
    ({**LA_NOV_1}, "workspace_ids or external_ids"),
    ({**LA_NOV_1, "workspace_ids": [3127], "interval": "minute"}, "interval"),
    ({**LA_NOV_1, "workspace_ids": [3127], "group_by": "folder"}, "group_by"),
    ({"from": "2026-11-02T00:00:00.000Z", "to": "2026-11-01T00:00:00.000Z", "workspace_ids": [3127]}, "after"),
    ({**LA_NOV_1, "workspace_ids": list(range(101))}, "at most 100"),
])
def test_bad_queries_get_a_400_with_a_message_body(server, body, message):
    response = post(server, body)
    assert response.status_code == 400
    assert set(response.json()) == {"message"} and message in response.json()["message"]


def test_a_wrong_token_gets_the_vendor_401_body(server):
    response = post(server, {**LA_NOV_1, "workspace_ids": [3127]}, token="not-the-token")
    assert (response.status_code, response.json()) == (401, {"message": "Unauthorized"})
