"""HCP Terraform API v2: paths, page sizes, endpoint names, staging tables and entitlement key rules.

Facts cited here come from ../shared/API_CONTRACTS.md §2 (HCP Terraform).
"""

from __future__ import annotations

KEY = "hcp_terraform"

# ---------- endpoints (paths are relative to TFC_BASE_URL)

API_PREFIX = "/api/v2"
ORGANIZATIONS_PATH = f"{API_PREFIX}/organizations"
ORGANIZATION_PATH = f"{API_PREFIX}/organizations/{{org}}"
SUBSCRIPTION_PATH = f"{API_PREFIX}/organizations/{{org}}/subscription"
ENTITLEMENT_SET_PATH = f"{API_PREFIX}/organizations/{{org}}/entitlement-set"
EXPLORER_PATH = f"{API_PREFIX}/organizations/{{org}}/explorer"
EXPLORER_WORKSPACES_PARAMS = {"type": "workspaces"}

# Logical endpoint names: raw.api_snapshots.endpoint and the staging `endpoint` column.
EP_ORGANIZATIONS = "organizations"  # discovery pages (landed under DISCOVERY_ACCOUNT)
EP_ORGANIZATION = "organization"
EP_SUBSCRIPTION = "subscription"
EP_ENTITLEMENT_SET = "entitlement_set"
EP_EXPLORER_WORKSPACES = "explorer_workspaces"
ORGANIZATION_ENDPOINTS = (EP_ORGANIZATION, EP_SUBSCRIPTION, EP_ENTITLEMENT_SET, EP_EXPLORER_WORKSPACES)

# Discovery is not an organization: its pages land in a batch of their own under this name,
# which no organization can have (organization names are letters, digits, `-` and `_`).
# Staging parses it to no rows.
DISCOVERY_ACCOUNT = "(discovery)"

# page[size] max is 100; always sent, because without page params `GET /organizations`
# returns everything with no pagination metadata (§2.3).
PAGE_SIZE = 100

# 30 requests/s per *user*, not per token (§2.4): every HCP call of this process shares one
# limiter, whatever token it carries. http.Session adapts it to 0.66 x X-RateLimit-Limit.
LIMITER_KEY = "hcp_terraform:per-user"
RATE_LIMIT_PER_S = 30.0
RATE_LIMIT_BURST = 10

# ---------- partitions

# The API answers "what is true now": one observation per organization per day.
CADENCE = "daily"
PARTITIONS_START = "2024-01-01"

# ---------- staging tables

STG_ORGANIZATIONS = "staging.stg_hcp_terraform__organizations"
STG_SUBSCRIPTIONS = "staging.stg_hcp_terraform__subscriptions"
STG_ENTITLEMENTS = "staging.stg_hcp_terraform__entitlements"
STG_WORKSPACES = "staging.stg_hcp_terraform__workspaces"
STG_FETCHES = "staging.stg_hcp_terraform__fetches"
STAGING_TABLES = (STG_ORGANIZATIONS, STG_SUBSCRIPTIONS, STG_ENTITLEMENTS, STG_WORKSPACES, STG_FETCHES)

# ---------- entitlement rows: where a value comes from

SOURCE_SUBSCRIPTION = "subscription"
SOURCE_FEATURE_SET = "feature_set"
SOURCE_ENTITLEMENT_SET = "entitlement_set"
VALUE_SOURCES = (SOURCE_SUBSCRIPTION, SOURCE_FEATURE_SET, SOURCE_ENTITLEMENT_SET)
VALUE_BOOLEAN = "boolean"
VALUE_LIMIT = "limit"

# Feature-set attributes that describe the plan rather than grant anything: kept as typed
# columns of the subscription row, not as entitlement rows (§2.5 "Feature set").
FEATURE_SET_COLUMNS = {
    "identifier": ("feature_set_identifier", "text"),  # NOT unique: key on the feature set `id` (§2.5)
    "name": ("feature_set_name", "text"),
    "description": ("feature_set_description", "text"),
    "plan": ("feature_set_plan", "text"),
    "cost": ("feature_set_cost_cents", "integer"),  # cents (§2.5)
    "default-agents-ceiling": ("feature_set_default_agents_ceiling", "integer"),
    "default-runs-ceiling": ("feature_set_default_runs_ceiling", "integer"),
    "is-current": ("feature_set_is_current", "boolean"),
    "is-free-tier": ("feature_set_is_free_tier", "boolean"),
    "is-managed-resource-plan": ("feature_set_is_managed_resource_plan", "boolean"),
    "uses-hcp-rum-billing-resource": ("feature_set_uses_hcp_rum_billing", "boolean"),
}
# Known descriptive feature-set text that is neither a column nor an entitlement (seed docs).
FEATURE_SET_IGNORED = frozenset({"comparison-description"})

# Subscription attributes kept as typed columns (all nullable). Its limits and ceilings also
# become `subscription` entitlement rows when set: null on a subscription means "no override".
SUBSCRIPTION_COLUMNS = {
    "is-active": ("is_active", "boolean"),
    "start-at": ("start_at", "timestamp"),
    "end-at": ("end_at", "timestamp"),
    "contract-start-at": ("contract_start_at", "timestamp"),
    "runs-ceiling": ("runs_ceiling", "integer"),
    "agents-ceiling": ("agents_ceiling", "integer"),
    "contract-user-limit": ("contract_user_limit", "integer"),
    "contract-apply-limit": ("contract_apply_limit", "integer"),
    "contract-managed-resources-limit": ("contract_managed_resources_limit", "integer"),
    "free-resource-under-management-monthly-limit": ("free_managed_resources_monthly_limit", "integer"),
    "free-apply-monthly-limit": ("free_apply_monthly_limit", "integer"),
    "free-apply-monthly-limit-remaining": ("free_apply_monthly_limit_remaining", "integer"),
    "is-public-free-tier": ("is_public_free_tier", "boolean"),
    "is-self-serve-trial": ("is_self_serve_trial", "boolean"),
}
# Known subscription attributes that are neither columns nor limits (spec-only extras).
SUBSCRIPTION_IGNORED = frozenset({
    "is-change-approved", "hcp-organization-id", "hcp-project-id", "free-apply-monthly-limit-starts-at",
    "rum-alert-threshold", "rum-threshold-alert-sent-at",
})
# A subscription (or feature set) number is an entitlement limit when its key ends like this.
LIMIT_SUFFIXES = ("-limit", "-ceiling")
NOT_A_LIMIT = frozenset({"free-apply-monthly-limit-remaining"})  # a countdown, not a ceiling

# The managed-resources limit: the contract's, else the free tier's monthly one (§2.5).
MANAGED_RESOURCES_LIMIT_KEYS = ("contract-managed-resources-limit", "free-resource-under-management-monthly-limit")
