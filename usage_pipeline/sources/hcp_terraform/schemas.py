"""The staging contract of HCP Terraform: one Arrow schema per `staging.stg_hcp_terraform__*` table.

The parser's rows are typed against these (a wrong type fails at load, naming the table);
`warehouse.ensure_table` creates the tables from them, plus the staging key columns
(`account_id`, `partition_key`, `loaded_at`) that `sources.base` adds. Timestamps are UTC,
units and limits BIGINT.
"""

from __future__ import annotations

import pyarrow as pa

from usage_pipeline.sources.hcp_terraform import constants as c

_TS = pa.timestamp("us", tz="UTC")
_COMMON = [
    ("snapshot_id", pa.string()),
    ("observed_at", _TS),
    ("organization_name", pa.string()),
    ("organization_external_id", pa.string()),
]

ORGANIZATIONS_SCHEMA = pa.schema([
    *_COMMON,
    ("email", pa.string()),
    ("created_at", _TS),
    ("plan_identifier", pa.string()),
    ("plan_is_trial", pa.bool_()),
    ("plan_is_enterprise", pa.bool_()),
    ("plan_expired", pa.bool_()),
    ("plan_expires_at", _TS),
])

SUBSCRIPTIONS_SCHEMA = pa.schema([
    *_COMMON,
    ("http_status", pa.int32()),
    ("has_subscription", pa.bool_()),
    ("subscription_id", pa.string()),
    ("is_active", pa.bool_()),
    ("start_at", _TS),
    ("end_at", _TS),
    ("contract_start_at", _TS),
    ("runs_ceiling", pa.int64()),
    ("agents_ceiling", pa.int64()),
    ("contract_user_limit", pa.int64()),
    ("contract_apply_limit", pa.int64()),
    ("contract_managed_resources_limit", pa.int64()),
    ("free_managed_resources_monthly_limit", pa.int64()),
    ("free_apply_monthly_limit", pa.int64()),
    ("free_apply_monthly_limit_remaining", pa.int64()),
    ("managed_resources_limit", pa.int64()),
    ("is_public_free_tier", pa.bool_()),
    ("is_self_serve_trial", pa.bool_()),
    ("feature_set_id", pa.string()),
    ("feature_set_included", pa.bool_()),
    ("feature_set_identifier", pa.string()),
    ("feature_set_name", pa.string()),
    ("feature_set_description", pa.string()),
    ("feature_set_plan", pa.string()),
    ("feature_set_cost_cents", pa.int64()),
    ("feature_set_default_agents_ceiling", pa.int64()),
    ("feature_set_default_runs_ceiling", pa.int64()),
    ("feature_set_is_current", pa.bool_()),
    ("feature_set_is_free_tier", pa.bool_()),
    ("feature_set_is_managed_resource_plan", pa.bool_()),
    ("feature_set_uses_hcp_rum_billing", pa.bool_()),
    ("error_detail", pa.string()),
])

ENTITLEMENTS_SCHEMA = pa.schema([
    *_COMMON,
    ("value_source", pa.string()),
    ("source_id", pa.string()),
    ("entitlement_key", pa.string()),
    ("value_type", pa.string()),
    ("enabled", pa.bool_()),
    ("limit_value", pa.int64()),
    ("is_unlimited", pa.bool_()),
])

WORKSPACES_SCHEMA = pa.schema([
    *_COMMON,
    ("workspace_id", pa.string()),
    ("workspace_external_id", pa.string()),
    ("workspace_name", pa.string()),
    ("project_id", pa.string()),
    ("project_name", pa.string()),
    ("current_rum_count", pa.int64()),
    ("is_drifted", pa.bool_()),
    ("resources_drifted", pa.int64()),
    ("resources_undrifted", pa.int64()),
    ("current_run_status", pa.string()),
    ("current_run_applied_at", _TS),
    ("workspace_created_at", _TS),
    ("workspace_updated_at", _TS),
    ("terraform_version", pa.string()),
    ("page_number", pa.int32()),
])

FETCHES_SCHEMA = pa.schema([
    *_COMMON,
    ("endpoint", pa.string()),
    ("http_status", pa.int32()),
    ("page_number", pa.int32()),
    ("row_count", pa.int32()),
    ("error_detail", pa.string()),
])

STAGING_SCHEMAS: dict[str, pa.Schema] = {
    c.STG_ORGANIZATIONS: ORGANIZATIONS_SCHEMA,
    c.STG_SUBSCRIPTIONS: SUBSCRIPTIONS_SCHEMA,
    c.STG_ENTITLEMENTS: ENTITLEMENTS_SCHEMA,
    c.STG_WORKSPACES: WORKSPACES_SCHEMA,
    c.STG_FETCHES: FETCHES_SCHEMA,
}
