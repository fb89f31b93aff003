"""Workato Embedded "Get usage (v2)": paths, data centres, limits and the pipeline's fixed choices.

Facts come from ../shared/API_CONTRACTS.md §3 (marked [DOC]/[INF]/[UNK] there); the choices
that are ours (finality, partitions start, chunk size) are named here once and explained in
the source README.
"""

from __future__ import annotations

from datetime import timedelta

KEY = "workato"
ENDPOINT = "usage"
# POST despite the page title "Get usage (v2)" (API_CONTRACTS.md §3.1)
USAGE_PATH = "/api/v2/managed_users/statistics/usage"

# Data-centre base URLs (API_CONTRACTS.md §3.1: docs.workato.com/oem/oem-api.html and the
# workato-platform-cli spec). WORKATO_BASE_URL picks one; US is the default.
DATA_CENTRES: dict[str, str] = {
    "US": "https://www.workato.com",
    "EU": "https://app.eu.workato.com",
    "JP": "https://app.jp.workato.com",
    "SG": "https://app.sg.workato.com",
    "AU": "https://app.au.workato.com",
    "IL": "https://app.il.workato.com",          # spec only
    "TRIAL": "https://app.trial.workato.com",    # developer sandbox / trial, spec only
}
DEFAULT_BASE_URL = DATA_CENTRES["US"]

# "All Usage endpoints: 1,000 requests per minute" (API_CONTRACTS.md §3.5); the limiter itself
# lives in http.DEFAULT_LIMITS["workato"].
REQUESTS_PER_MINUTE = 1000
# The maximum number of ids per request is [UNK] (W1). The vendor recommends one request for
# all workspaces; we split only past this many ids, a guess small enough to stay under any
# plausible body or query-length limit.
MAX_IDS_PER_REQUEST = 100

INTERVALS = ("none", "year", "month", "week", "day", "hour")
GROUP_BYS = ("workspace", "recipe")
# Each daily window is pulled twice: once with the documented minimal body (the only query
# whose totals include deleted recipes, §3.4) and once with group_by=recipe.
PULL_INTERVAL = "hour"
GROUPINGS = ("workspace", "recipe")   # "workspace" = the minimal body, no group_by sent

# Every Workato pull of one day window lands in one batch under this account label: the
# request covers all configured workspaces at once (the vendor's advice), so the batch is the
# set, not one workspace. Rows carry their own workspace_id, which is DESIGN's account_id.
BATCH_ACCOUNT = "all_workspaces"

# Daily partitions in the admin zone. The vendor's maximum lookback is [UNK]; older windows
# simply come back as `data: null`.
PARTITIONS_START = "2023-01-01"
# A window is re-pulled on every tick until it is final: FINAL_AFTER after it closed. Workato
# re-allocates jobs to buckets "depending on ... the most recent retry" (§3.4), and a job
# started before midnight can finish (and retry) after it; two days covers automatic retries
# and a working day of manual reruns. Each tick therefore re-pulls today, yesterday and the day
# before.
FINAL_AFTER = timedelta(hours=48)

# Billing period of `tasks` in int_workato__units_used: the calendar month in the admin zone
# (Workato bills Embedded task usage monthly; the contract's anchor day is not in any API).
BILLING_ANCHOR_DAY = 1
UNIT_TASKS = "tasks"

STAGING_USAGE = "staging.stg_workato__usage"
STAGING_REQUESTS = "staging.stg_workato__requests"
RAW_ASSET_KEY = ["raw", "workato__usage"]
STAGING_ASSET_KEY = ["staging", "stg_workato__usage"]
