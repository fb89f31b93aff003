"""ThousandEyes usage API: paths, the expand list, unit names and staging table names.

Facts cited here come from ../shared/API_CONTRACTS.md §4 (v6 and v7 usage contracts).
"""

from __future__ import annotations

KEY = "thousandeyes"
ENDPOINT = "usage"  # the logical endpoint name of every landed usage response (v6 and v7)

V7_USAGE_PATH = "/v7/usage"
V7_QUOTAS_PATH = "/v7/quotas"
V6_USAGE_PATH = "/v6/usage.json"
DEFAULT_ACCOUNT = "default"  # no `aid`: the token's default organization context

# Without `expand` v7 leaves out every breakdown array (API_CONTRACTS.md §4.2 "expand trap").
EXPAND = (
    "test",
    "enterprise-agent",
    "enterprise-agent-unit",
    "endpoint-agent",
    "endpoint-agent-essential",
    "endpoint-agent-embedded",
)

# 240 requests/min per organization by default; the headers say what a tenant really has.
RATE_LIMIT_PER_MINUTE = 240
RATE_LIMIT_HEADERS = (
    "x-organization-rate-limit-limit",
    "x-organization-rate-limit-remaining",
    "x-organization-rate-limit-reset",  # Unix epoch seconds (UTC) of the next window
)

# Projections are recomputed hourly (§4.4 trap 6): pulling more often only repeats them.
CADENCE = "hourly"
PARTITIONS_START = "2024-01-01-00:00"

STG_USAGE = "staging.stg_thousandeyes__usage"
STG_TESTS = "staging.stg_thousandeyes__tests"
STG_AGENT_UNITS = "staging.stg_thousandeyes__agent_units"
STG_AGENT_COUNTS = "staging.stg_thousandeyes__agent_counts"
STAGING_TABLES = (STG_USAGE, STG_TESTS, STG_AGENT_UNITS, STG_AGENT_COUNTS)

# agent class → (payload array, per-group count field, org-level count field)
AGENT_CLASSES = {
    "endpoint": ("endpointAgents", "endpointAgentsUsed"),
    "endpoint_essentials": ("endpointAgentsEssentials", "endpointAgentsEssentialsUsed"),
    "endpoint_embedded": ("endpointAgentsEmbedded", "endpointAgentsEmbeddedUsed"),
    "enterprise": ("enterpriseAgents", "enterpriseAgentsUsed"),
}

# Units as DESIGN.md spells them; the unit each quota and usage column feeds.
UNITS = (
    "cloud_units",
    "enterprise_units",
    "endpoint_agents",
    "endpoint_agents_essentials",
    "endpoint_agents_embedded",
    "enterprise_agents",
)

# v6 `YYYY-mm-dd HH:MM:SS <ABBR>`: the doc says "shown in UTC" yet its example carries `PDT`.
# A stray abbreviation is honoured with this fixed offset (hours east of UTC); any other
# abbreviation is refused rather than guessed (API_CONTRACTS.md §4.4 trap 7).
ZONE_ABBREVIATIONS = {
    "UTC": 0, "GMT": 0, "Z": 0,
    "PST": -8, "PDT": -7,
    "MST": -7, "MDT": -6,
    "CST": -6, "CDT": -5,
    "EST": -5, "EDT": -4,
    "AKST": -9, "AKDT": -8,
    "HST": -10,
    "CET": 1, "CEST": 2,
}
