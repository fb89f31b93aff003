"""Simulated HCP Terraform API v2: organizations, subscription, entitlement set, explorer.

The one rule: every answer is a pure function of the sandbox clock, so a test (or the demo)
that advances the clock day by day sees the same history every time: four organizations
over two pages at page[size]=2, one free organization with no subscription (404), one that
changes plan at PLAN_CHANGE_AT, one that is renamed at RENAME_AT (same external-id),
entitlement keys that appear at fixed dates, and resources under management that grow each
day. Documents follow the docs samples in ../shared/api_samples/hcp_terraform (JSON:API,
kebab-case except `current_rum_count`); API_CONTRACTS.md §2.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from usage_pipeline.sandbox.server import SandboxRequest, SandboxResponse, SandboxServer, vendor_error

API = "/api/v2"
MEDIA_TYPE = "application/vnd.api+json"
RATE_LIMIT = 30  # X-RateLimit-Limit: requests per second per user (§2.4)
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


RUM_BASE_DATE = date(2026, 11, 1)  # resources under management grow by `per_day` from here
PLAN_CHANGE_AT = _utc(2026, 11, 22)  # acme-corp moves from Standard to Plus
RENAME_AT = _utc(2026, 11, 23)  # umbrella-labs becomes umbrella-corp
# Entitlement keys the product adds over time (§2.5: go-tfe v1 knows these, the docs sample not)
NEW_ENTITLEMENT_KEYS = (
    (_utc(2026, 11, 21), {"waypoint-actions": True, "waypoint-templates-and-addons": False}),
    (_utc(2026, 11, 24), {"infragraph": False}),
)


@dataclass(frozen=True)
class Plan:
    """A feature set: id (key), identifier (not unique!), name, cost in cents, flags and limits."""

    id: str
    identifier: str
    name: str
    cost_cents: int
    is_free_tier: bool
    runs_ceiling: int
    agents_ceiling: int
    flags: dict[str, bool]
    limits: dict[str, int | None]  # None = unlimited


_LIMIT_KEYS = ("policy-limit", "policy-mandatory-enforcement-limit", "policy-set-limit", "run-task-limit",
               "run-task-mandatory-enforcement-limit", "run-task-workspace-limit", "user-limit",
               "versioned-policy-set-limit")
_FLAG_KEYS = ("assessments", "audit-logging", "cost-estimation", "global-run-tasks", "module-tests-generation",
              "no-code-modules", "policy-enforcement", "private-networking", "private-policy-agents",
              "private-run-tasks", "private-vcs", "run-tasks", "self-serve-billing", "sentinel", "sso", "teams")


def _plan(id_: str, identifier: str, name: str, cost: int, free: bool, runs: int, agents: int,
          on: set[str], limits: dict[str, int | None]) -> Plan:
    return Plan(id_, identifier, name, cost, free, runs, agents, {key: key in on for key in _FLAG_KEYS},
                {key: limits.get(key) for key in _LIMIT_KEYS})


PLANS = {
    "free": _plan("fs-GN3kSR1GqWNfcFaW", "free_standard", "Free", 0, True, 1, 1,
                  {"cost-estimation", "policy-enforcement", "private-networking", "run-tasks", "self-serve-billing",
                   "sentinel", "sso"},
                  {"policy-limit": 5, "policy-mandatory-enforcement-limit": 1, "policy-set-limit": 1,
                   "run-task-limit": 1, "run-task-mandatory-enforcement-limit": 1, "run-task-workspace-limit": 10,
                   "user-limit": 5, "versioned-policy-set-limit": 0}),
    # two different feature sets share identifier "standard" (§2.5): rows key on the id
    "standard": _plan("fs-f3xYUkkXwY8ZGP9g", "standard", "Standard", 0, False, 10, 10,
                      {"cost-estimation", "policy-enforcement", "private-networking", "run-tasks",
                       "self-serve-billing", "sentinel", "sso"}, {"user-limit": 25}),
    "standard_teams": _plan("fs-JhVd6dwBSZ3THzHV", "standard", "Standard", 0, False, 10, 10,
                            {"assessments", "audit-logging", "cost-estimation", "global-run-tasks",
                             "module-tests-generation", "no-code-modules", "policy-enforcement", "private-networking",
                             "run-tasks", "self-serve-billing", "sentinel", "sso", "teams"}, {}),
    "plus": _plan("fs-Pq8RpLuS2kVn4TmY", "plus", "Plus", 7000, False, 25, 25, set(_FLAG_KEYS) - {"self-serve-billing"}, {}),
}


@dataclass(frozen=True)
class Subscription:
    id: str
    plan: str
    start_at: datetime
    contract_user_limit: int | None = None
    contract_managed_resources_limit: int | None = None
    free_managed_resources_limit: int | None = None
    is_public_free_tier: bool = False


@dataclass(frozen=True)
class Organization:
    """One organization; `names` and `subscriptions` are (since, value) steps over the clock."""

    external_id: str
    names: tuple[tuple[datetime, str], ...]
    created_at: datetime
    subscriptions: tuple[tuple[datetime, Subscription | None], ...]
    workspaces: tuple[tuple[str, str, int, int], ...]  # name, project, resources at RUM_BASE_DATE, per day

    def name(self, now: datetime) -> str:
        return _at(self.names, now)

    def subscription(self, now: datetime) -> Subscription | None:
        return _at(self.subscriptions, now)


_EPOCH = _utc(2000, 1, 1)
_ACME_STANDARD = Subscription("sub-AcmeStd8Kp2LwQx", "standard", _utc(2024, 2, 1))
_ACME_PLUS = Subscription("sub-AcmePlus5Rt7ZmVb", "plus", PLAN_CHANGE_AT, contract_user_limit=100,
                          contract_managed_resources_limit=3000)
_GLOBEX = Subscription("sub-GlobexTeam4Hn6Jm", "standard_teams", _utc(2023, 6, 1), contract_user_limit=50,
                       contract_managed_resources_limit=5000)
_UMBRELLA = Subscription("sub-UmbrellaFree9Qw", "free", _utc(2025, 3, 3), free_managed_resources_limit=500,
                         is_public_free_tier=True)
DEFAULT_ORGANIZATIONS = (
    Organization(
        "org-AcmeCorp2pX7vQ9Lm", ((_EPOCH, "acme-corp"),), _utc(2023, 4, 25, 17, 9, 14),
        ((_EPOCH, _ACME_STANDARD), (PLAN_CHANGE_AT, _ACME_PLUS)),
        (("payments-service", "Default Project", 120, 5), ("api-service", "web", 300, 3),
         ("network-core", "platform", 410, 0)),
    ),
    Organization(
        "org-GlobexQw3Er5Ty7Ui", ((_EPOCH, "globex"),), _utc(2022, 1, 4, 18, 57, 16),
        ((_EPOCH, _GLOBEX),),
        tuple((f"globex-ws-{i}", "Default Project", 200 + 10 * i, i) for i in range(1, 6)),
    ),
    Organization(  # free, without a subscription: GET /subscription answers 404
        "org-InitechZx1Cv3Bn5M", ((_EPOCH, "initech-free"),), _utc(2024, 9, 12, 8),
        ((_EPOCH, None),),
        (("tps-reports", "Default Project", 12, 1),),
    ),
    Organization(  # renamed at RENAME_AT; the external-id stays
        "org-UmbrellaAs2Df4Gh6", ((_EPOCH, "umbrella-labs"), (RENAME_AT, "umbrella-corp")), _utc(2025, 3, 3, 9, 30),
        ((_EPOCH, _UMBRELLA),),
        (("labs-sandbox", "Default Project", 40, 2), ("labs-vpc", "network", 60, 0)),
    ),
)


@dataclass
class HcpTerraformSandbox:
    """The simulated account: what the token sees, and how many times each path was asked."""

    organizations: list[Organization] = field(default_factory=lambda: list(DEFAULT_ORGANIZATIONS))

    def find(self, name: str, now: datetime) -> Organization | None:
        return next((org for org in self.organizations if org.name(now) == name), None)


_STATES: weakref.WeakKeyDictionary[SandboxServer, HcpTerraformSandbox] = weakref.WeakKeyDictionary()


def state(server: SandboxServer) -> HcpTerraformSandbox:
    """The account simulated by `server` (tests add or remove organizations)."""
    return _STATES[server]


def register(server: SandboxServer) -> None:
    account = _STATES.setdefault(server, HcpTerraformSandbox())
    org = r"(?P<org>[A-Za-z0-9_-]+)"
    routes = (
        (rf"{API}/organizations", organizations),
        (rf"{API}/organizations/{org}", organization),
        (rf"{API}/organizations/{org}/subscription", subscription),
        (rf"{API}/organizations/{org}/entitlement-set", entitlement_set),
        (rf"{API}/organizations/{org}/explorer", explorer),
    )
    for pattern, handler in routes:
        server.route("GET", pattern, vendor="hcp_terraform", auth="bearer",
                     handler=lambda request, handler=handler: _answer(handler(account, request)))


def _answer(result: SandboxResponse | dict[str, Any]) -> SandboxResponse:
    response = result if isinstance(result, SandboxResponse) else SandboxResponse(200, result)
    headers = {"Content-Type": MEDIA_TYPE, "X-RateLimit-Limit": str(RATE_LIMIT), **response.headers}
    return SandboxResponse(response.status, response.body, headers)


def _not_found() -> SandboxResponse:
    # 404 covers not found, not permitted and not entitled alike (§2.2)
    return vendor_error("hcp_terraform", 404)


# ---------- handlers


def organizations(account: HcpTerraformSandbox, request: SandboxRequest) -> SandboxResponse | dict[str, Any]:
    """GET /organizations: paginated with page params; without both, everything and no meta (§2.3)."""
    items = [organization_resource(org, request.now) for org in account.organizations]
    return _page(items, request, f"{API}/organizations")


def organization(account: HcpTerraformSandbox, request: SandboxRequest) -> SandboxResponse | dict[str, Any]:
    org = account.find(request.groups["org"], request.now)
    return _not_found() if org is None else {"data": organization_resource(org, request.now)}


def subscription(account: HcpTerraformSandbox, request: SandboxRequest) -> SandboxResponse | dict[str, Any]:
    org = account.find(request.groups["org"], request.now)
    current = org.subscription(request.now) if org else None
    if org is None or current is None:
        return _not_found()
    return subscription_document(current, org.name(request.now), request.now)


def entitlement_set(account: HcpTerraformSandbox, request: SandboxRequest) -> SandboxResponse | dict[str, Any]:
    org = account.find(request.groups["org"], request.now)
    if org is None:
        return _not_found()
    return entitlement_set_document(org.external_id, entitlements(org, request.now))


def explorer(account: HcpTerraformSandbox, request: SandboxRequest) -> SandboxResponse | dict[str, Any]:
    org = account.find(request.groups["org"], request.now)
    if org is None:
        return _not_found()
    if request.arg("type") != "workspaces":
        return vendor_error("hcp_terraform", 400, "the sandbox explorer answers type=workspaces only")
    name = org.name(request.now)
    rows = [workspace_resource(org, name, index, request.now) for index in range(len(org.workspaces))]
    return _page(rows, request, f"{API}/organizations/{name}/explorer", always=True, extra={"type": "workspaces"})


# ---------- documents (also what the tests build their crafted sequences from)


def organization_resource(org: Organization, now: datetime) -> dict[str, Any]:
    name = org.name(now)
    current = org.subscription(now)
    return {
        "id": name,
        "type": "organizations",
        "attributes": {
            "external-id": org.external_id, "created-at": _iso(org.created_at), "email": f"billing@{name}.example.com",
            "name": name, "plan-expired": False, "plan-expires-at": None, "plan-is-trial": False,
            "plan-is-enterprise": False, "plan-identifier": PLANS[current.plan].identifier if current else "free",
            "cost-estimation-enabled": True, "two-factor-conformant": False, "assessments-enforced": False,
            "default-execution-mode": "remote", "user-tokens-enabled": True,
            "permissions": {"can-manage-subscription": True, "can-update": True},
        },
        "relationships": {
            "entitlement-set": {"data": {"id": org.external_id, "type": "entitlement-sets"},
                                "links": {"related": f"{API}/organizations/{name}/entitlement-set"}},
            "subscription": {"links": {"related": f"{API}/organizations/{name}/subscription"}},
        },
        "links": {"self": f"{API}/organizations/{name}"},
    }


def subscription_document(sub: Subscription, org_name: str, now: datetime) -> dict[str, Any]:
    """The docs' "Show Subscription For Organization" shape: the feature set in `included`."""
    plan = PLANS[sub.plan]
    attributes: dict[str, Any] = {
        "end-at": None, "is-active": True, "start-at": _iso(sub.start_at), "runs-ceiling": plan.runs_ceiling,
        "contract-start-at": _iso(sub.start_at) if sub.contract_user_limit else None,
        "contract-user-limit": sub.contract_user_limit, "contract-apply-limit": None,
        "contract-managed-resources-limit": sub.contract_managed_resources_limit,
        "free-resource-under-management-monthly-limit": sub.free_managed_resources_limit,
        "agents-ceiling": plan.agents_ceiling, "is-public-free-tier": sub.is_public_free_tier,
        "is-self-serve-trial": False,
        **{key: None for key in _LIMIT_KEYS if key != "user-limit"},
    }
    return {
        "data": {
            "id": sub.id, "type": "subscriptions", "attributes": attributes,
            "relationships": {
                "organization": {"data": {"id": org_name, "type": "organizations"}},
                "billing-account": {"data": None},
                "feature-set": {"data": {"id": plan.id, "type": "feature-sets"}},
            },
            "links": {"self": f"{API}/subscriptions/{sub.id}"},
        },
        "included": [feature_set_resource(plan)],
    }


def feature_set_resource(plan: Plan) -> dict[str, Any]:
    return {
        "id": plan.id, "type": "feature-sets",
        "attributes": {
            "cost": plan.cost_cents, "default-agents-ceiling": plan.agents_ceiling,
            "default-runs-ceiling": plan.runs_ceiling, "description": f"The {plan.name} plan",
            "identifier": plan.identifier, "is-current": True, "is-free-tier": plan.is_free_tier,
            "name": plan.name, "plan": None, **plan.flags, **plan.limits,
        },
    }


def entitlements(org: Organization, now: datetime) -> dict[str, bool | int | None]:
    """The organization's effective entitlements: its plan's, the contract's user limit, new keys."""
    current = org.subscription(now)
    plan = PLANS[current.plan if current else "free"]
    values: dict[str, bool | int | None] = {
        "agents": plan.agents_ceiling > 1, "configuration-designer": True, "operations": True,
        "private-module-registry": True, "state-storage": True, "usage-reporting": not plan.is_free_tier,
        "vcs-integrations": True, **plan.flags, **plan.limits,
    }
    if current and current.contract_user_limit is not None:
        values["user-limit"] = current.contract_user_limit
    for since, keys in NEW_ENTITLEMENT_KEYS:
        if now >= since:
            values.update(keys)
    return dict(sorted(values.items()))


def entitlement_set_document(external_id: str, values: dict[str, bool | int | None]) -> dict[str, Any]:
    return {"data": {"id": external_id, "type": "entitlement-sets", "attributes": values,
                     "links": {"self": f"{API}/entitlement-sets/{external_id}"}}}


def resources_under_management(org: Organization, index: int, now: datetime) -> int:
    _name, _project, base, per_day = org.workspaces[index]
    return base + per_day * max(0, (now.date() - RUM_BASE_DATE).days)


def workspace_resource(org: Organization, org_name: str, index: int, now: datetime) -> dict[str, Any]:
    name, project, _base, _per_day = org.workspaces[index]
    suffix = f"{org.external_id[4:12]}{index:04d}"
    return {
        "id": f"ws-{suffix}", "type": "visibility-workspace",
        "attributes": {
            "all-checks-succeeded": True, "current_rum_count": resources_under_management(org, index, now),
            "checks-errored": 0, "checks-failed": 0, "checks-passed": 0, "checks-unknown": 0,
            "current-run-applied-at": None, "current-run-external-id": f"run-{suffix}",
            "current-run-status": "applied", "drifted": False, "external-id": f"ws-{suffix}", "module-count": 0,
            "modules": None, "organization-name": org_name, "project-external-id": f"prj-{suffix}",
            "project-name": project, "provider-count": 1, "providers": "hashicorp/aws", "resources-drifted": 0,
            "resources-undrifted": 0, "state-version-terraform-version": "1.9.8", "tags": "",
            "vcs-repo-identifier": None, "workspace-created-at": _iso(org.created_at, offset=True),
            "workspace-name": name, "workspace-terraform-version": "1.9.8",
            "workspace-updated-at": _iso(org.created_at, offset=True),
        },
    }


# ---------- helpers


def _page(items: list[dict[str, Any]], request: SandboxRequest, path: str, *, always: bool = False,
          extra: dict[str, str] | None = None) -> SandboxResponse | dict[str, Any]:
    """JSON:API pagination: links + meta.pagination. `always`: paginate even without page params."""
    number_text, size_text = request.arg("page[number]"), request.arg("page[size]")
    if number_text is None and size_text is None and not always:
        return {"data": items}  # the documented trap: the whole list, no links, no meta
    try:
        number, size = int(number_text or 1), min(int(size_text or DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
    except ValueError:
        return vendor_error("hcp_terraform", 400, "page[number] and page[size] must be integers")
    if number < 1 or size < 1:
        return vendor_error("hcp_terraform", 400, "page[number] and page[size] must be positive")
    total_pages = max(1, math.ceil(len(items) / size))
    query = "".join(f"&{key}={value}" for key, value in (extra or {}).items())

    def link(page: int | None) -> str | None:
        return None if page is None else f"{path}?page%5Bnumber%5D={page}&page%5Bsize%5D={size}{query}"

    previous_page = number - 1 if number > 1 else None
    next_page = number + 1 if number < total_pages else None
    return {
        "data": items[(number - 1) * size: number * size],
        "links": {"self": link(number), "first": link(1), "prev": link(previous_page), "next": link(next_page),
                  "last": link(total_pages)},
        "meta": {"pagination": {"current-page": number, "page-size": size, "prev-page": previous_page,
                                "next-page": next_page, "total-pages": total_pages, "total-count": len(items)}},
    }


def _at(steps: tuple[tuple[datetime, Any], ...], now: datetime) -> Any:
    value = steps[0][1]
    for since, step in steps:
        if now >= since:
            value = step
    return value


def _iso(moment: datetime, *, offset: bool = False) -> str:
    """HCP's two spellings: `…456Z` (most endpoints) and `…+00:00` (explorer)."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text if offset else text.replace("+00:00", "Z")
