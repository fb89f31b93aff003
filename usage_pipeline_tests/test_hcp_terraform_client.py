"""HCP Terraform client and sandbox (rungs 2-3): the real `HcpTerraformClient` over real HTTP to the
loopback sandbox.

Proves: discovery always sends page[size]/page[number] and follows meta.pagination.next-page
over several pages (the sandbox, like the API, returns an unpaginated list without them);
explorer pages are all fetched; a 404 on /subscription is an answer, a 404 on the
organization an error naming it; 429s are retried on X-RateLimit-Reset; one limiter per
process (the limit is per user, not per token) adapted from X-RateLimit-Limit; the token
stays out of reprs and request records. The sandbox's simulated history (plan change,
rename, growing keys and RUM counts) is pinned here too, since the end-to-end tests rely on it.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import httpx
import pytest
from fakes import FakeClock

from usage_pipeline import errors, settings
from usage_pipeline.http import RetryPolicy
from usage_pipeline.sandbox import SandboxServer
from usage_pipeline.sandbox import hcp_terraform as sandbox_hcp
from usage_pipeline.sources import hcp_terraform as source
from usage_pipeline.sources.hcp_terraform import constants as c
from usage_pipeline.sources.hcp_terraform.assets import pull_organization
from usage_pipeline.sources.hcp_terraform.client import HcpTerraformClient

TOKEN_CANARY = "hcp-canary-token-4b1d9e7f0a2c"


@pytest.fixture
def server():
    with SandboxServer(tokens={"hcp_terraform": TOKEN_CANARY}) as sandbox:
        yield sandbox


def client(server: SandboxServer, **options) -> HcpTerraformClient:
    return HcpTerraformClient(base_url=server.base_url, token=server.tokens["hcp_terraform"], **options)


def get(server: SandboxServer, path: str, **params) -> httpx.Response:
    return httpx.get(server.base_url + path, params=params, headers={"Authorization": f"Bearer {TOKEN_CANARY}"})


def page_params(server: SandboxServer, path: str) -> list[tuple[str | None, str | None]]:
    return [(r.query.get("page[number]", [None])[0], r.query.get("page[size]", [None])[0])
            for r in server.requests_for("hcp_terraform", path) if r.path == path]


# ---------- pagination


def test_discovery_sends_page_params_on_every_request_and_follows_next_page(server):
    hcp = client(server, page_size=2)
    pages = list(hcp.fetch_organization_pages())
    assert [page.status for page in pages] == [200, 200]
    assert page_params(server, "/api/v2/organizations") == [("1", "2"), ("2", "2")]
    assert hcp.organization_names(iter(pages)) == ["acme-corp", "globex", "initech-free", "umbrella-labs"]
    assert {page.account_id for page in pages} == {c.DISCOVERY_ACCOUNT}


def test_discovery_uses_the_largest_page_by_default(server):
    assert client(server).organization_names() == ["acme-corp", "globex", "initech-free", "umbrella-labs"]
    assert page_params(server, "/api/v2/organizations") == [("1", "100")]


def test_configured_organizations_skip_discovery(server):
    assert client(server, organizations=["globex"]).organization_names() == ["globex"]
    assert server.requests_for("hcp_terraform") == []


def test_explorer_pages_are_all_fetched_with_type_workspaces(server):
    pages = list(client(server, page_size=2).fetch_workspaces(org="globex"))
    rows = [row for page in pages for row in page.json()["data"]]
    assert [len(page.json()["data"]) for page in pages] == [2, 2, 1]
    assert len({row["id"] for row in rows}) == 5
    requests = server.requests_for("hcp_terraform", "/api/v2/organizations/globex/explorer")
    assert [(r.query["type"], r.query["page[number]"]) for r in requests] == [(["workspaces"], ["1"]), (["workspaces"], ["2"]),
                                                                              (["workspaces"], ["3"])]
    assert [page.request["params"]["page[number]"] for page in pages] == ["1", "2", "3"]


# ---------- 404 and 429


def test_a_subscription_404_is_returned_as_an_answer(server):
    fetched = client(server).fetch_subscription(org="initech-free")
    assert (fetched.status, fetched.endpoint, fetched.account_id) == (404, c.EP_SUBSCRIPTION, "initech-free")
    assert fetched.json()["errors"][0]["status"] == "404"


def test_an_entitlement_set_404_is_returned_as_an_answer(server):
    # not permitted or not entitled: unknown, landed as such
    server.faults.add("hcp_terraform:/api/v2/organizations/acme-corp/entitlement-set", "status", status=404)
    assert client(server).fetch_entitlement_set(org="acme-corp").status == 404


def test_an_unknown_organization_is_a_not_found_error_naming_it(server):
    with pytest.raises(errors.NotFoundError, match=r"hcp_terraform \[account nobody\]: organization: HTTP 404"):
        client(server).fetch_organization(org="nobody")


def test_a_429_is_retried_after_x_ratelimit_reset(server):
    server.faults.add("hcp_terraform:/api/v2/organizations/*/subscription", "rate_limit", times=2, reset_s=2.5)
    clock = FakeClock()
    hcp = client(server)
    hcp._session = hcp.session(clock=clock, limiter=None)
    fetched = hcp.fetch_subscription(org="acme-corp")
    assert (fetched.status, fetched.stats.requests, fetched.stats.retries) == (200, 3, 2)
    backoffs = [s for s in clock.sleeps if s >= 1]
    assert len(backoffs) == 2 and all(2.5 <= s <= 3.0 for s in backoffs)  # the reset hint, plus jitter
    assert [r.status for r in server.requests_for("hcp_terraform")] == [429, 429, 200]


def test_429s_past_the_retry_budget_fail_naming_the_organization(server):
    server.faults.add("hcp_terraform:/api/v2/organizations/globex/subscription", "rate_limit", times=None, reset_s=1)
    hcp = client(server)
    hcp._session = hcp.session(clock=FakeClock(), policy=RetryPolicy(max_attempts=3))
    with pytest.raises(errors.RetryBudgetExceeded, match=r"\[account globex\].*after 3 attempts.*HTTP 429.*rate limit"):
        hcp.fetch_subscription(org="globex")


def test_the_sandbox_rate_limit_answers_429_with_a_reset_and_the_client_gets_through(server):
    server.rate_limits["hcp_terraform"] = (20.0, 2)  # the server's per-user bucket, real time
    hcp = client(server, page_size=1)
    hcp._session = hcp.session(policy=RetryPolicy(base_delay_s=0.05, max_attempts=10), limiter=None)
    pages = list(hcp.fetch_workspaces(org="globex"))
    assert len(pages) == 5
    statuses = [r.status for r in server.requests_for("hcp_terraform")]
    assert statuses.count(200) == 5
    assert 429 in statuses and hcp.stats.retries == statuses.count(429)


class Landed:
    """Stands in for a landing batch: keeps what would have been landed, in order."""

    def __init__(self) -> None:
        self.fetched: list = []

    def land(self, fetched) -> None:
        self.fetched.append(fetched)


def test_an_explorer_404_skips_usage_for_the_tick_and_keeps_the_rest(server, caplog):
    # the explorer needs read-all-workspaces: a token without it gets 404 (unknown), not a failure
    server.faults.add("hcp_terraform:/api/v2/organizations/acme-corp/explorer", "status", status=404)
    batch = Landed()
    pull_organization(client(server), "acme-corp", batch, logging.getLogger("test"))
    assert [(f.endpoint, f.status) for f in batch.fetched] == [
        (c.EP_ORGANIZATION, 200), (c.EP_SUBSCRIPTION, 200), (c.EP_ENTITLEMENT_SET, 200)]
    assert "explorer not visible to this token" in caplog.text


def test_an_explorer_page_vanishing_mid_way_fails_the_organization(server):
    # a missing later page would undercount resources under management
    server.faults.add("hcp_terraform:/api/v2/organizations/globex/explorer", "status", status=404, match="2")  # page 2
    batch = Landed()
    with pytest.raises(errors.NotFoundError, match=r"\[account globex\]: explorer_workspaces"):
        pull_organization(client(server, page_size=3), "globex", batch, logging.getLogger("test"))
    assert [(f.endpoint, f.request["params"].get("page[number]")) for f in batch.fetched][-1] == (
        c.EP_EXPLORER_WORKSPACES, "1")


# ---------- the per-user limiter


def test_the_limiter_is_shared_by_every_token_and_adapts_to_x_ratelimit_limit(server):
    first, second = client(server), HcpTerraformClient(base_url=server.base_url, token="another-token-of-the-same-user")
    assert first.api.limiter is second.api.limiter
    first.fetch_organization(org="acme-corp")
    # go-tfe: 0.66 x X-RateLimit-Limit per second, burst 0.33 x (API_CONTRACTS.md §2.4)
    assert (first.api.limiter.rate_per_s, first.api.limiter.burst) == (pytest.approx(19.8), 9)


def test_the_token_is_in_no_repr_and_no_request_record(server):
    hcp = client(server)
    fetched = hcp.fetch_subscription(org="acme-corp")
    for text in (repr(hcp), repr(hcp.api), repr(fetched), json.dumps(fetched.request), json.dumps(fetched.headers)):
        assert TOKEN_CANARY not in text


def test_check_credentials_says_how_many_organizations_the_token_sees(server):
    assert client(server).check_credentials() == f"TFC_TOKEN sees 4 organization(s) at {server.base_url}"


def test_doctor_checks_the_configured_token_in_plain_words(server):
    config = settings.load({**server.env(), "USAGE_WAREHOUSE_URL": "duckdb:///unused.duckdb"})
    assert source.check_credentials(config) == f"TFC_TOKEN sees 4 organization(s) at {server.base_url}"


def test_a_wrong_token_is_an_auth_error_naming_the_variable(server):
    hcp = HcpTerraformClient(base_url=server.base_url, token="not-the-right-token")
    with pytest.raises(errors.AuthError, match="set TFC_TOKEN"):
        hcp.fetch_organization(org="acme-corp")


# ---------- the sandbox's simulated account


def test_sandbox_without_page_params_returns_everything_without_metadata(server):
    body = get(server, "/api/v2/organizations").json()
    assert set(body) == {"data"} and len(body["data"]) == 4


def test_sandbox_pages_organizations_like_the_api(server):
    first, second = (get(server, "/api/v2/organizations", **{"page[number]": n, "page[size]": 2}).json() for n in (1, 2))
    assert [o["id"] for o in first["data"]] == ["acme-corp", "globex"]
    assert first["meta"]["pagination"] == {"current-page": 1, "page-size": 2, "prev-page": None, "next-page": 2,
                                           "total-pages": 2, "total-count": 4}
    assert (second["meta"]["pagination"]["next-page"], second["links"]["next"]) == (None, None)


def test_sandbox_answers_carry_the_rate_limit_header(server):
    assert get(server, "/api/v2/organizations/acme-corp").headers["x-ratelimit-limit"] == "30"
    assert get(server, "/api/v2/organizations/initech-free/subscription").headers["x-ratelimit-limit"] == "30"


def test_sandbox_acme_changes_plan_at_the_fixed_date(server):
    server.clock.set(sandbox_hcp.PLAN_CHANGE_AT - timedelta(seconds=1))
    before = get(server, "/api/v2/organizations/acme-corp/subscription").json()
    server.clock.set(sandbox_hcp.PLAN_CHANGE_AT)
    after = get(server, "/api/v2/organizations/acme-corp/subscription").json()
    assert [(d["data"]["id"], d["included"][0]["attributes"]["name"], d["included"][0]["attributes"]["teams"])
            for d in (before, after)] == [("sub-AcmeStd8Kp2LwQx", "Standard", False), ("sub-AcmePlus5Rt7ZmVb", "Plus", True)]
    assert after["data"]["attributes"]["contract-managed-resources-limit"] == 3000


def test_sandbox_free_organization_has_no_subscription_but_an_entitlement_set(server):
    assert get(server, "/api/v2/organizations/initech-free/subscription").status_code == 404
    attributes = get(server, "/api/v2/organizations/initech-free/entitlement-set").json()["data"]["attributes"]
    assert (attributes["user-limit"], attributes["teams"]) == (5, False)


def test_sandbox_entitlement_keys_grow_over_time(server):
    def keys() -> set[str]:
        return set(get(server, "/api/v2/organizations/globex/entitlement-set").json()["data"]["attributes"])

    server.clock.set(sandbox_hcp._utc(2026, 11, 20, 10))
    early = keys()
    server.clock.set(sandbox_hcp._utc(2026, 11, 24, 10))
    assert keys() - early == {"waypoint-actions", "waypoint-templates-and-addons", "infragraph"}


def test_sandbox_resources_under_management_grow_each_day(server):
    def total() -> int:
        rows = get(server, "/api/v2/organizations/acme-corp/explorer", type="workspaces").json()["data"]
        return sum(row["attributes"]["current_rum_count"] for row in rows)

    today = total()
    server.clock.advance(timedelta(days=1))
    assert total() == today + 8  # +5 and +3 per day on two of its three workspaces


def test_sandbox_rename_keeps_the_external_id(server):
    server.clock.set(sandbox_hcp.RENAME_AT)
    listed = {o["id"]: o["attributes"]["external-id"] for o in get(server, "/api/v2/organizations").json()["data"]}
    assert listed["umbrella-corp"] == "org-UmbrellaAs2Df4Gh6" and "umbrella-labs" not in listed
    assert get(server, "/api/v2/organizations/umbrella-labs").status_code == 404


def test_sandbox_explorer_answers_type_workspaces_only(server):
    assert get(server, "/api/v2/organizations/globex/explorer", type="modules").status_code == 400
