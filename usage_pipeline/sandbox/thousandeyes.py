"""Simulated ThousandEyes usage API: GET /v7/usage, GET /v7/quotas, GET /v6/usage.json.

The one rule: every number is a pure function of the sandbox clock, so a tick at any simulated
time gets the answer a real tenant would give then. Two organizations (Acme with two account
groups, Globex with one); each billing period runs from the 5th 08:00Z to the next 5th; units
accrue per whole hour and reset at rollover; a test created mid-period has no
`cloudUnitsProjected` for its first hours; one enterprise agent has no `agentId`; quotas pass
2^31. Both aids of Acme answer with the same organization-wide payload (API_CONTRACTS.md §4.4).

The org totals equal the sums of their breakdowns exactly, so the pipeline's reconciliation
checks pass on sandbox data; a test can break that on purpose with `state(server).skew_cloud_units`.
Payload shapes follow the SDK fixtures in ../shared/api_samples/thousandeyes/; ids are strings
in v7 and integers in v6, and v6 times are `YYYY-mm-dd HH:MM:SS` in UTC without a zone.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from usage_pipeline.sandbox.server import SandboxRequest, SandboxResponse, SandboxServer, vendor_error

VENDOR = "thousandeyes"
RATE_LIMIT_PER_MINUTE = 240  # per organization, fixed window of one minute (API_CONTRACTS.md §4.2)
PROJECTION_DELAY = timedelta(hours=6)  # "new tests have no cloudUnitsProjected until projection is calculated"
EXPANSIONS = {
    "test": "tests",
    "enterprise-agent": "enterpriseAgents",
    "enterprise-agent-unit": "enterpriseAgentUnits",
    "endpoint-agent": "endpointAgents",
    "endpoint-agent-essential": "endpointAgentsEssentials",
    "endpoint-agent-embedded": "endpointAgentsEmbedded",
}
AGENT_CLASSES = {  # class → (array, count field)
    "endpoint": ("endpointAgents", "endpointAgentsUsed"),
    "endpoint_essentials": ("endpointAgentsEssentials", "endpointAgentsEssentialsUsed"),
    "endpoint_embedded": ("endpointAgentsEmbedded", "endpointAgentsEmbeddedUsed"),
    "enterprise": ("enterpriseAgents", "enterpriseAgentsUsed"),
}


@dataclass(frozen=True)
class MonitoredTest:
    aid: str
    test_id: str
    name: str
    test_type: str
    units_per_hour: int
    created_at: datetime | None = None  # None: older than any period the sandbox shows


@dataclass(frozen=True)
class Agent:
    aid: str
    agent_id: str | None  # None: the v7 spec's "agentId may be omitted when not available"
    name: str
    units_per_hour: int


@dataclass(frozen=True)
class Organization:
    org_id: str
    groups: dict[str, str]  # aid → account group name, first = the organization's own default
    quota: dict[str, int]  # UsageQuota *Included fields
    tests: tuple[MonitoredTest, ...]
    agents: tuple[Agent, ...]
    agent_counts: dict[tuple[str, str], int]  # (aid, agent class) → agents used
    quota_allocations: dict[str, int]  # /v7/quotas: aid → account group quota; org value = sum


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


NEW_TEST_CREATED_AT = _utc(2026, 11, 20, 8)  # two hours before the sandbox's default "now"

DEFAULT_ORGANIZATIONS = (
    Organization(
        org_id="1001",
        groups={"1234": "Acme Production", "1235": "Acme Staging"},
        quota={"cloudUnitsIncluded": 4_320_000_000, "endpointAgentsIncluded": 200, "endpointAgentsEssentialsIncluded": 10,
               "endpointAgentsEmbeddedIncluded": 10, "enterpriseAgentsIncluded": 0, "deviceAgentsIncluded": 100},
        tests=(
            MonitoredTest("1234", "1158", "https://app.acme.example", "Web - Page Load", 9_000),
            MonitoredTest("1234", "1159", "https://api.acme.example/health", "Web - HTTP Server", 4_500),
            MonitoredTest("1235", "1160", "acme.example DNS", "DNS Server", 1_200),
            MonitoredTest("1235", "1161", "https://checkout.acme.example", "Web - Transaction", 2_000,
                 created_at=NEW_TEST_CREATED_AT),
        ),
        agents=(
            Agent("1234", "121404", "acme-dc1-appliance", 300),
            Agent("1234", None, "acme-cloud-connector", 150),
            Agent("1235", "121405", "acme-staging-vm", 75),
        ),
        agent_counts={("1234", "endpoint"): 40, ("1235", "endpoint"): 12,
                      ("1234", "endpoint_essentials"): 3, ("1235", "endpoint_essentials"): 2,
                      ("1234", "endpoint_embedded"): 1, ("1235", "endpoint_embedded"): 0,
                      ("1234", "enterprise"): 4, ("1235", "enterprise"): 2},
        quota_allocations={"1234": 3_000_000_000, "1235": 1_320_000_000},
    ),
    Organization(
        org_id="2002",
        groups={"2001": "Globex NetOps"},
        # legacy billing: enterprise agents are counted against an included number; no metered units.
        # A small cloud-unit plan: this organization burns toward its quota within the period,
        # so the demo shows an account at risk (85 % used on the 25th, projected over before the 5th).
        quota={"cloudUnitsIncluded": 1_800_000, "endpointAgentsIncluded": 50, "endpointAgentsEssentialsIncluded": 0,
               "endpointAgentsEmbeddedIncluded": 0, "enterpriseAgentsIncluded": 25, "deviceAgentsIncluded": 0},
        tests=(
            MonitoredTest("2001", "2201", "globex.example BGP", "BGP", 2_500),
            MonitoredTest("2001", "2202", "Globex voice", "Voice - RTP Stream", 700),
        ),
        agents=(),
        agent_counts={("2001", "endpoint"): 25, ("2001", "endpoint_essentials"): 0,
                      ("2001", "endpoint_embedded"): 0, ("2001", "enterprise"): 9},
        quota_allocations={"2001": 3_000_000_000},
    ),
)


@dataclass
class ThousandEyesSandbox:
    """The simulated tenant: its organizations, the token's default context, the rate-limit windows."""

    organizations: tuple[Organization, ...] = DEFAULT_ORGANIZATIONS
    default_org_id: str = "1001"
    skew_cloud_units: int = 0  # added to org cloudUnitsUsed only: breaks reconciliation on purpose
    rate_limit: int = RATE_LIMIT_PER_MINUTE
    _windows: dict[str, tuple[float, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def org_of(self, aid: str | None) -> Organization | None:
        for org in self.organizations:
            if (aid is None and org.org_id == self.default_org_id) or (aid is not None and aid in org.groups):
                return org
        return None

    def take(self, org_id: str) -> tuple[bool, dict[str, str]]:
        """Count one request against the organization's window (real time); the headers to send."""
        now = time.time()
        with self._lock:
            start, count = self._windows.get(org_id, (now, 0))
            if now >= start + 60:  # the window rolls over one minute after its first request
                start, count = now, 0
            count += 1
            self._windows[org_id] = (start, count)
        headers = {
            "X-Organization-Rate-Limit-Limit": str(self.rate_limit),
            "X-Organization-Rate-Limit-Remaining": str(max(0, self.rate_limit - count)),
            "X-Organization-Rate-Limit-Reset": str(int(start + 60)),  # Unix epoch seconds, UTC
        }
        return count <= self.rate_limit, headers


_STATES: weakref.WeakKeyDictionary[SandboxServer, ThousandEyesSandbox] = weakref.WeakKeyDictionary()


def state(server: SandboxServer) -> ThousandEyesSandbox:
    """The ThousandEyes tenant simulated by `server` (tests change it)."""
    return _STATES[server]


def register(server: SandboxServer) -> None:
    tenant = _STATES.setdefault(server, ThousandEyesSandbox())
    server.route("GET", r"/v7/usage", vendor=VENDOR, auth="bearer", handler=lambda r: usage_v7(tenant, r))
    server.route("GET", r"/v7/quotas", vendor=VENDOR, auth="bearer", handler=lambda r: quotas_v7(tenant, r))
    # v6 takes basic `email:token` or the OAuth bearer token (API_CONTRACTS.md §4.1)
    server.route("GET", r"/v6/usage(\.json)?", vendor=VENDOR, auth="bearer_or_basic", handler=lambda r: usage_v6(tenant, r))


def env(server: SandboxServer) -> dict[str, str]:
    """Every account group of the sandbox: two of them are one organization, deduplicated by the pipeline."""
    tenant = state(server)
    return {"THOUSANDEYES_ACCOUNT_GROUP_IDS": ",".join(aid for org in tenant.organizations for aid in org.groups)}


# ---------- time


def billing_period(now: datetime) -> tuple[datetime, datetime]:
    """The customer's billing period holding `now`: the 5th 08:00Z to the next 5th 08:00Z."""
    anchor = now.astimezone(UTC).replace(day=5, hour=8, minute=0, second=0, microsecond=0)
    start = anchor if now >= anchor else _add_month(anchor, -1)
    return start, _add_month(start, 1)


def _add_month(moment: datetime, months: int) -> datetime:
    month = moment.month - 1 + months
    return moment.replace(year=moment.year + month // 12, month=month % 12 + 1)


def _hours(start: datetime, end: datetime) -> int:
    return max(0, int((end - start) // timedelta(hours=1)))


# ---------- the numbers


def usage_details(tenant: ThousandEyesSandbox, org: Organization, now: datetime) -> dict[str, Any]:
    """The organization's UsageDetails at `now`, fully expanded, with v7 string ids."""
    start, end = billing_period(now)
    next_end = _add_month(end, 1)
    tests, cloud_used, cloud_projected, cloud_next = [], 0, 0, 0
    for test in org.tests:
        if test.created_at is not None and test.created_at > now:
            continue
        since = max(start, test.created_at or start)
        used = test.units_per_hour * _hours(since, now)
        entry: dict[str, Any] = {"aid": test.aid, "testId": test.test_id, "accountGroupName": org.groups[test.aid],
                                 "testName": test.name, "testType": test.test_type, "cloudUnitsUsed": used}
        if test.created_at is None or now >= test.created_at + PROJECTION_DELAY:
            entry["cloudUnitsProjected"] = test.units_per_hour * _hours(since, end)
        tests.append(entry)
        cloud_used += used
        cloud_projected += entry.get("cloudUnitsProjected", used)
        cloud_next += test.units_per_hour * _hours(end, next_end)
    agents, enterprise_used, enterprise_projected = [], 0, 0
    for agent in org.agents:
        used, projected = agent.units_per_hour * _hours(start, now), agent.units_per_hour * _hours(start, end)
        entry = {"aid": agent.aid, "accountGroupName": org.groups[agent.aid], "agentName": agent.name,
                 "enterpriseUnitsUsed": used, "enterpriseUnitsProjected": projected}
        if agent.agent_id is not None:
            entry["agentId"] = agent.agent_id
        agents.append(entry)
        enterprise_used, enterprise_projected = enterprise_used + used, enterprise_projected + projected
    details: dict[str, Any] = {
        "quota": {"monthStart": start, "monthEnd": end, **org.quota},
        "cloudUnitsUsed": cloud_used + tenant.skew_cloud_units,
        "cloudUnitsProjected": cloud_projected + tenant.skew_cloud_units,
        "cloudUnitsNextBillingPeriod": cloud_next,
        "enterpriseUnitsUsed": enterprise_used,
        "enterpriseUnitsProjected": enterprise_projected,
        "enterpriseUnitsNextBillingPeriod": sum(a.units_per_hour for a in org.agents) * _hours(end, next_end),
        "connectedDevicesUnitsUsed": 0,
        "connectedDevicesUnitsProjected": 0,
        "connectedDevicesUnitsNextBillingPeriod": 0,
        "tests": tests,
        "enterpriseAgentUnits": agents,
    }
    for agent_class, (array, count_field) in AGENT_CLASSES.items():
        entries = [{"aid": aid, "accountGroupName": name, count_field: org.agent_counts.get((aid, agent_class), 0)}
                   for aid, name in org.groups.items()]
        details[array] = entries
        details[count_field] = sum(entry[count_field] for entry in entries)
    return details


# ---------- the endpoints


def usage_v7(tenant: ThousandEyesSandbox, request: SandboxRequest) -> SandboxResponse:
    org, problem = _context(tenant, request)
    if problem is not None:
        return problem
    expand = [item.strip() for item in (request.arg("expand") or "").split(",") if item.strip()]
    unknown = [item for item in expand if item not in EXPANSIONS]
    if unknown:
        return _bad_request(f"Unknown expand value(s): {', '.join(unknown)}")
    allowed, headers = tenant.take(org.org_id)
    if not allowed:
        return _rate_limited(headers)
    details = usage_details(tenant, org, request.now)
    details["quota"] = {**details["quota"], "monthStart": _iso(details["quota"]["monthStart"]),
                        "monthEnd": _iso(details["quota"]["monthEnd"])}
    for option, array in EXPANSIONS.items():  # "By default, no expansion takes place"
        if option not in expand:
            del details[array]
    query = "&".join(f"{k}={v[0]}" for k, v in request.query.items())
    body = {"usage": details, "_links": {"self": {"href": f"{request.server.base_url}/v7/usage" + (f"?{query}" if query else "")}}}
    return SandboxResponse(200, body, {"Content-Type": "application/hal+json", **headers})


def usage_v6(tenant: ThousandEyesSandbox, request: SandboxRequest) -> SandboxResponse:
    org, problem = _context(tenant, request)
    if problem is not None:
        return problem
    allowed, headers = tenant.take(org.org_id)
    if not allowed:
        return _rate_limited(headers)
    details = usage_details(tenant, org, request.now)
    details["quota"] = {**details["quota"], "monthStart": _v6_time(details["quota"]["monthStart"]),
                        "monthEnd": _v6_time(details["quota"]["monthEnd"])}
    for name in ("connectedDevicesUnitsUsed", "connectedDevicesUnitsProjected", "connectedDevicesUnitsNextBillingPeriod"):
        del details[name]  # v7 additions
    for array in EXPANSIONS.values():  # v6 always sends every breakdown, with integer ids
        for entry in details[array]:
            for key in ("aid", "testId", "agentId"):
                if key in entry:
                    entry[key] = int(entry[key])
    return SandboxResponse(200, {"usage": details}, {"Content-Type": "application/json;charset=UTF-8", **headers})


def quotas_v7(tenant: ThousandEyesSandbox, request: SandboxRequest) -> SandboxResponse:
    allowed, headers = tenant.take(tenant.default_org_id)
    if not allowed:
        return _rate_limited(headers)
    quotas = [{"organizationQuota": {"orgId": org.org_id, "value": sum(org.quota_allocations.values())},
               "accountGroupQuotas": [{"aid": aid, "value": value} for aid, value in org.quota_allocations.items()]}
              for org in tenant.organizations]
    body = {"quotas": quotas, "_links": {"self": {"href": f"{request.server.base_url}/v7/quotas"}}}
    return SandboxResponse(200, body, {"Content-Type": "application/hal+json", **headers})


def _context(tenant: ThousandEyesSandbox, request: SandboxRequest) -> tuple[Any, SandboxResponse | None]:
    aid = request.arg("aid")
    org = tenant.org_of(aid)
    if org is None:  # "If an invalid account group ID is specified … HTTP/400"
        return None, _bad_request(f"Invalid account group ID: {aid}")
    return org, None


def _bad_request(detail: str) -> SandboxResponse:
    return vendor_error(VENDOR, 400, detail)


def _rate_limited(headers: dict[str, str]) -> SandboxResponse:
    error = vendor_error(VENDOR, 429, "Exhausted rate limit for the organization")
    return SandboxResponse(429, error.body, {**error.headers, **headers})


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _v6_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
