"""The ThousandEyes client and its sandbox (rungs 2-3): real HTTP on loopback, no vendor account.

Proves: v7 bearer with `aid` and the full `expand` list, the token's default context without
`aid`, v6 basic `email:token` (and bearer), one pull per organization when /v7/quotas answers
and every aid when it does not, the reset-epoch wait on 429, 400 for an unknown aid named by
account, no token in any repr or landed request; and that the sandbox serves what the pipeline
relies on: a period from the 5th 08:00Z growing hourly and resetting at rollover, the same
payload for two aids of one organization, arrays only when expanded, a new test without a
projection, an agent without agentId, quotas above 2^31 and organization rate-limit headers.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from usage_pipeline import settings, timeutil
from usage_pipeline.errors import HttpError
from usage_pipeline.sandbox import SandboxServer
from usage_pipeline.sandbox import thousandeyes as te_sandbox
from usage_pipeline.sources import thousandeyes
from usage_pipeline.sources.thousandeyes import ThousandEyesClient
from usage_pipeline.sources.thousandeyes.organizations import PlannedAccount

EXPAND = "test,enterprise-agent,enterprise-agent-unit,endpoint-agent,endpoint-agent-essential,endpoint-agent-embedded"
ARRAYS = ("tests", "enterpriseAgentUnits", "endpointAgents", "endpointAgentsEssentials", "endpointAgentsEmbedded",
          "enterpriseAgents")
WEB = httpx.Client(timeout=10)


@pytest.fixture
def server():
    with SandboxServer() as sandbox:
        yield sandbox


def client_for(server: SandboxServer, **options) -> ThousandEyesClient:
    options.setdefault("account_group_ids", ["1234", "1235", "2001"])
    return ThousandEyesClient(base_url=server.base_url, token=server.tokens["thousandeyes"], **options)


def te_requests(server: SandboxServer) -> list:
    return server.requests_for("thousandeyes")


def get(server: SandboxServer, path: str, **params) -> httpx.Response:
    return WEB.get(server.base_url + path, params=params,
                   headers={"Authorization": f"Bearer {server.tokens['thousandeyes']}"})


def usage_at(server: SandboxServer, when: datetime, aid: str = "1234", expand: str = EXPAND) -> dict:
    server.clock.set(when)
    response = get(server, "/v7/usage", aid=aid, expand=expand)
    assert response.status_code == 200, response.text
    return response.json()["usage"]


# ---------- the client


def test_client_sends_v7_bearer_with_aid_and_the_full_expand_list(server):
    fetched = client_for(server).fetch_usage(PlannedAccount("1235"))
    [request] = te_requests(server)
    assert (request.path, request.authorized) == ("/v7/usage", True)
    assert request.query == {"aid": ["1235"], "expand": [EXPAND]}
    assert fetched.request == {"method": "GET", "path": "/v7/usage", "params": {"aid": "1235", "expand": EXPAND},
                               "json": None, "api_version": 7}
    assert fetched.account_id == "1235" and fetched.endpoint == "usage"
    assert all(array in fetched.json()["usage"] for array in ARRAYS)


def test_client_without_account_groups_asks_the_tokens_default_context(server):
    client = client_for(server, account_group_ids=[])
    assert client.fetch_quotas() is None  # nothing to deduplicate
    [plan] = client.plan(None)
    fetched = client.fetch_usage(plan)
    assert plan.account_id == fetched.account_id == "default"
    assert te_requests(server)[0].query == {"expand": [EXPAND]}
    assert fetched.json()["usage"]["tests"][0]["aid"] == "1234"  # the sandbox token's default: Acme


def test_client_v6_uses_basic_email_and_token(server):
    fetched = client_for(server, api_version=6, email=server.emails["thousandeyes"]).fetch_usage(PlannedAccount("2001"))
    [request] = te_requests(server)
    assert (request.path, request.query, request.authorized) == ("/v6/usage.json", {"aid": ["2001"]}, True)
    assert fetched.request["api_version"] == 6
    assert fetched.json()["usage"]["tests"][0]["testId"] == 2201  # v6: integer ids


def test_client_v6_without_email_sends_the_bearer_token(server):
    fetched = client_for(server, api_version=6).fetch_usage(PlannedAccount("2001"))
    assert fetched.status == 200 and te_requests(server)[0].authorized


def test_client_v6_basic_with_a_wrong_email_is_rejected_naming_the_variable(server):
    with pytest.raises(HttpError, match="set THOUSANDEYES_TOKEN") as caught:
        client_for(server, api_version=6, email="someone@else.example").fetch_usage(PlannedAccount("2001"))
    assert caught.value.status == 401 and server.tokens["thousandeyes"] not in str(caught.value)


def test_plan_pulls_each_organization_once_when_quotas_answer(server):
    client = client_for(server)
    plans = client.plan(client.fetch_quotas())
    assert [(p.account_id, p.org_id, p.covers) for p in plans] == [
        ("1234", "1001", ("1234", "1235")), ("2001", "2002", ("2001",))]
    assert client.fetch_usage(plans[0]).request["covers_aids"] == ["1234", "1235"]


def test_plan_pulls_every_aid_when_quotas_are_forbidden(server):
    server.faults.add("thousandeyes:/v7/quotas", "status", status=403)
    client = client_for(server)
    assert client.fetch_quotas() is None
    assert [(p.account_id, p.org_id) for p in client.plan(None)] == [("1234", None), ("1235", None), ("2001", None)]


def test_plan_on_v6_never_asks_for_quotas(server):
    client = client_for(server, api_version=6)
    assert client.fetch_quotas() is None and te_requests(server) == []


class RealTimeFakeClock:
    """Real `now` (the sandbox's reset epoch is real time), sleeps recorded instead of slept."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self._elapsed = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return 9_000.0 + self._elapsed

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._elapsed += max(0.0, seconds)

    def now_utc(self) -> datetime:
        return datetime.now(UTC)


def test_429_waits_until_the_organization_reset_epoch(server):
    # no Retry-After: the X-Organization-Rate-Limit-Reset epoch (now + 30 s) is the only hint
    server.faults.add("thousandeyes:/v7/usage", "rate_limit", reset_s=30)
    clock = RealTimeFakeClock()
    fetched = client_for(server).with_http(clock=clock).fetch_usage(PlannedAccount("1234"))
    assert fetched.status == 200 and fetched.stats.retries == 1
    assert 28.5 <= max(clock.sleeps) <= 31.5
    assert [r.status for r in te_requests(server)] == [429, 200]


def test_unknown_aid_is_a_400_naming_the_account(server):
    with pytest.raises(HttpError) as caught:
        client_for(server).fetch_usage(PlannedAccount("999"))
    message = str(caught.value)
    assert caught.value.status == 400
    assert message.startswith("thousandeyes [account 999]: usage: HTTP 400")
    assert "Invalid account group ID: 999" in message


def test_token_appears_in_no_repr_and_no_landed_request(server):
    client = client_for(server)
    fetched = client.fetch_usage(client.plan(client.fetch_quotas())[0])
    token = server.tokens["thousandeyes"]
    assert token not in repr(client) and token not in repr(client.session())
    assert token not in json.dumps(fetched.request) and token not in repr(fetched)
    assert token not in json.dumps(fetched.headers)


def test_fetched_at_follows_the_pipeline_clock(server):
    server.clock.set(datetime(2026, 11, 18, 7, 30, tzinfo=UTC))
    with timeutil.use_clock(server.clock):
        fetched = client_for(server).fetch_usage(PlannedAccount("1234"))
    assert fetched.fetched_at == datetime(2026, 11, 18, 7, 30, tzinfo=UTC)


def test_check_credentials_says_what_it_saw_in_plain_words(server):
    config = settings.load(server.env())
    said = thousandeyes.check_credentials(config)
    assert said == (f"v7 bearer token accepted by {server.base_url} for 1234, 1235, 2001; billing period "
                    "2026-11-05T08:00:00Z to 2026-12-05T08:00:00Z; organization rate limit 240/min")
    assert server.tokens["thousandeyes"] not in said


def test_client_from_settings_shows_the_token_variable_not_its_value(server):
    client = ThousandEyesClient.from_settings(settings.load(server.env()))
    assert "THOUSANDEYES_TOKEN" in repr(client.token) and server.tokens["thousandeyes"] not in repr(client)
    assert client.account_group_ids == ["1234", "1235", "2001"] and client.api_version == 7


# ---------- the sandbox


def test_sandbox_period_runs_from_the_5th_0800z_and_usage_grows_hourly():
    assert te_sandbox.billing_period(datetime(2026, 11, 20, 10, tzinfo=UTC)) == (
        datetime(2026, 11, 5, 8, tzinfo=UTC), datetime(2026, 12, 5, 8, tzinfo=UTC))
    assert te_sandbox.billing_period(datetime(2026, 11, 5, 7, 59, tzinfo=UTC)) == (
        datetime(2026, 10, 5, 8, tzinfo=UTC), datetime(2026, 11, 5, 8, tzinfo=UTC))
    assert te_sandbox.billing_period(datetime(2026, 12, 31, 23, tzinfo=UTC))[1] == datetime(2027, 1, 5, 8, tzinfo=UTC)


def test_sandbox_usage_grows_through_the_period_and_resets_at_rollover(server):
    before = usage_at(server, datetime(2026, 11, 5, 7, 30, tzinfo=UTC))   # 743 h into Oct 5 → Nov 5
    after = usage_at(server, datetime(2026, 11, 5, 9, 10, tzinfo=UTC))    # 1 h into Nov 5 → Dec 5
    later = usage_at(server, datetime(2026, 11, 20, 10, tzinfo=UTC))      # 362 h
    assert before["quota"]["monthStart"] == "2026-10-05T08:00:00Z"
    assert after["quota"]["monthStart"] == later["quota"]["monthStart"] == "2026-11-05T08:00:00Z"
    assert [before["cloudUnitsUsed"], after["cloudUnitsUsed"], later["cloudUnitsUsed"]] == [10_922_100, 14_700, 5_325_400]
    assert [before["enterpriseUnitsUsed"], after["enterpriseUnitsUsed"], later["enterpriseUnitsUsed"]] == [
        390_075, 525, 190_050]
    assert later["cloudUnitsProjected"] == 10_588_000 and later["cloudUnitsNextBillingPeriod"] == 12_424_800


def test_sandbox_totals_equal_their_breakdowns_unless_skewed(server):
    usage = usage_at(server, datetime(2026, 11, 20, 10, tzinfo=UTC))
    assert usage["cloudUnitsUsed"] == sum(test["cloudUnitsUsed"] for test in usage["tests"])
    assert usage["enterpriseUnitsUsed"] == sum(agent["enterpriseUnitsUsed"] for agent in usage["enterpriseAgentUnits"])
    assert usage["endpointAgentsUsed"] == sum(group["endpointAgentsUsed"] for group in usage["endpointAgents"]) == 52
    te_sandbox.state(server).skew_cloud_units = 100
    assert get(server, "/v7/usage", aid="1234").json()["usage"]["cloudUnitsUsed"] == usage["cloudUnitsUsed"] + 100


def test_sandbox_new_test_has_no_projection_until_it_is_calculated(server):
    at_10 = {t["testId"]: t for t in usage_at(server, datetime(2026, 11, 20, 10, tzinfo=UTC), aid="1235")["tests"]}
    at_15 = {t["testId"]: t for t in usage_at(server, datetime(2026, 11, 20, 15, tzinfo=UTC), aid="1235")["tests"]}
    at_7 = {t["testId"] for t in usage_at(server, datetime(2026, 11, 20, 7, tzinfo=UTC), aid="1235")["tests"]}
    assert "1161" not in at_7                                   # not created yet
    assert at_10["1161"] == {"aid": "1235", "testId": "1161", "accountGroupName": "Acme Staging",
                             "testName": "https://checkout.acme.example", "testType": "Web - Transaction",
                             "cloudUnitsUsed": 4_000}             # the key is absent, not null
    assert at_15["1161"]["cloudUnitsProjected"] == 720_000 and at_15["1161"]["cloudUnitsUsed"] == 14_000


def test_sandbox_lists_an_enterprise_agent_without_agent_id(server):
    agents = usage_at(server, datetime(2026, 11, 20, 10, tzinfo=UTC))["enterpriseAgentUnits"]
    assert [a.get("agentId") for a in agents] == ["121404", None, "121405"]
    assert "agentId" not in agents[1] and "vagentId" not in agents[1]


def test_sandbox_two_aids_of_one_organization_answer_the_same_usage(server):
    server.clock.set(datetime(2026, 11, 20, 10, tzinfo=UTC))
    first, second = (get(server, "/v7/usage", aid=aid, expand=EXPAND).json() for aid in ("1234", "1235"))
    assert first["usage"] == second["usage"]
    assert first["_links"] != second["_links"]
    assert get(server, "/v7/usage", aid="2001", expand=EXPAND).json()["usage"] != first["usage"]


def test_sandbox_honours_expand(server):
    bare = get(server, "/v7/usage", aid="1234").json()["usage"]
    tests_only = get(server, "/v7/usage", aid="1234", expand="test").json()["usage"]
    assert not any(array in bare for array in ARRAYS) and bare["cloudUnitsUsed"] == 5_325_400
    assert [array for array in ARRAYS if array in tests_only] == ["tests"]
    bad = get(server, "/v7/usage", aid="1234", expand="test,everything")
    assert bad.status_code == 400 and bad.json()["detail"] == "Unknown expand value(s): everything"


def test_sandbox_quotas_exceed_2_to_the_31(server):
    usage = usage_at(server, datetime(2026, 11, 20, 10, tzinfo=UTC), aid="1234")
    assert usage["quota"]["cloudUnitsIncluded"] == 4_320_000_000 > 2**31
    quotas = get(server, "/v7/quotas").json()["quotas"]
    assert quotas[0]["organizationQuota"] == {"orgId": "1001", "value": 4_320_000_000}
    assert [g["aid"] for g in quotas[0]["accountGroupQuotas"]] == ["1234", "1235"]


def test_sandbox_v6_answers_integer_ids_and_plain_utc_times(server):
    server.clock.set(datetime(2026, 11, 20, 10, tzinfo=UTC))
    response = WEB.get(server.base_url + "/v6/usage.json", params={"aid": "1234"},
                       auth=(server.emails["thousandeyes"], server.tokens["thousandeyes"]))
    usage = response.json()["usage"]
    assert usage["quota"]["monthStart"] == "2026-11-05 08:00:00"
    assert usage["tests"][0]["aid"] == 1234 and usage["enterpriseAgentUnits"][0]["agentId"] == 121404
    assert "connectedDevicesUnitsUsed" not in usage and all(array in usage for array in ARRAYS)


def test_sandbox_sends_organization_rate_limit_headers_and_429s_past_the_limit(server):
    te_sandbox.state(server).rate_limit = 2
    answers = [get(server, "/v7/usage", aid="1234") for _ in range(3)]
    other_org = get(server, "/v7/usage", aid="2001")
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["x-organization-rate-limit-remaining"] for a in answers] == ["1", "0", "0"]
    reset = int(answers[0].headers["x-organization-rate-limit-reset"])
    assert 0 < reset - datetime.now(UTC).timestamp() <= 60  # an epoch, about a minute ahead
    assert answers[2].json()["detail"] == "Exhausted rate limit for the organization"
    assert other_org.status_code == 200  # the limit is per organization


def test_sandbox_env_lists_every_account_group(server):
    env = server.env()
    assert env["THOUSANDEYES_ACCOUNT_GROUP_IDS"] == "1234,1235,2001"
    assert env["THOUSANDEYES_BASE_URL"] == server.base_url


def test_sandbox_unknown_aid_is_a_400(server):
    response = get(server, "/v7/usage", aid="4242")
    assert response.status_code == 400 and response.json()["detail"] == "Invalid account group ID: 4242"


def test_sandbox_clock_drives_the_answer_not_real_time(server):
    one = usage_at(server, datetime(2026, 11, 20, 10, tzinfo=UTC))
    two = usage_at(server, datetime(2026, 11, 20, 10, tzinfo=UTC) + timedelta(minutes=59))
    assert one == two  # whole hours only: nothing accrues within the hour
