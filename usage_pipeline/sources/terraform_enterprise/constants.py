"""Terraform Enterprise System API: paths, the metric catalogue and the staging table shapes.

The catalogue is the "Terraform Enterprise usage data reference" (API_CONTRACTS.md §1.6; the
raw reference files in `api_samples/tfe_system/product_data_reference.*.raw.txt`): 56 keys in
1.2.x (schema 2.2.0), 58 in v202507-1. The vendor says its contents "are subject to change", so
it only *describes* keys: a key missing from it is still loaded as rows and reported once.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pyarrow as pa

KEY = "terraform_enterprise"
ENDPOINT = "usage_bundle"
BUNDLE_PATH = "/api/v1/usage/bundle"
PING_PATH = "/api/v1/ping"
PING_ANSWER = "pong"
TOKEN_VARIABLE = "TFE_SYSTEM_API_TOKEN"
# 1 request/s per token, token bucket since TFE 1.1.0 (API_CONTRACTS.md §1.3)
REQUESTS_PER_S = 1.0
AUTH_HINT = (
    "System API token rejected or expired (tokens expire after 30 days by default): "
    "make a new one with `tfectl admin api-token generate` and set TFE_SYSTEM_API_TOKEN"
)
PARTITIONS_START = "2025-05-01"  # the System API bundle endpoint first shipped in TFE v202505-1

BUNDLES_TABLE = "staging.stg_terraform_enterprise__bundles"
SNAPSHOTS_TABLE = "staging.stg_terraform_enterprise__snapshots"
METRICS_TABLE = "staging.stg_terraform_enterprise__metrics"

# Very old payloads (payload_version 1) prefix keys with the product: `terraform.workspacecount`.
LEGACY_KEY_PREFIX = "terraform."

# Fields the contract documents; anything else is kept in raw and reported once.
BUNDLE_FIELDS_V2 = frozenset({"version", "mode", "timestamp", "signature", "checksum", "snapshots"})
SNAPSHOT_FIELDS_V2 = frozenset({
    "snapshot_version", "id", "timestamp", "schema_version", "product", "process_id", "metrics",
    "product_version", "license_id", "checksum", "metadata",
})
REPORT_FIELDS_V1 = frozenset({
    "payload_version", "license_id", "product", "product_version", "export_timestamp", "snapshots", "metadata",
})
SNAPSHOT_FIELDS_V1 = frozenset({
    "snapshot_version", "snapshot_id", "process_id", "timestamp", "schema_version", "service", "metrics",
})
METRIC_FIELDS = frozenset({"key", "value", "mode", "kind"})


@dataclass(frozen=True)
class Metric:
    """One documented metric: what it counts and, if it is a billable quantity, its unit."""

    description: str
    kind: str  # count | flag | enum | statistic | setting
    unit: str | None = None  # DESIGN.md unit spelling, for marts.fct_units_used


_C, _F, _E, _S = "count", "flag", "enum", "statistic"

METRICS: dict[str, Metric] = {
    # ---------- billing / resources under management
    "billable_rum_count": Metric("Count of all billable resources under management (RUM) on the installation", _C,
                                 unit="managed_resources"),
    "billable_rum_count_workspace_80th_percentile": Metric("80th percentile of billable RUM per workspace", _S),
    "billable_rum_count_workspace_avg": Metric("Mean billable RUM per workspace", _S),
    "billable_rum_count_workspace_max": Metric("Maximum billable RUM of one workspace", _S),
    "billable_rum_count_workspace_median": Metric("Median billable RUM per workspace", _S),
    "billable_rum_count_workspace_min": Metric("Lowest billable RUM of one workspace", _S),
    "billable_rum_opt_in": Metric("1 if billable RUM reporting is enabled, 0 otherwise", _F),
    "servicenow_catalog_billable_rum_count": Metric("Count of billable RUM on ServiceNow workspaces", _C),
    # ---------- counts
    "workspacecount": Metric("Count of all workspaces on the installation", _C),
    "org_count": Metric("Count of organizations configured on the installation", _C),
    "org_admin_count": Metric("Count of admin users across all organizations", _C),
    "project_count": Metric("Count of projects configured on the installation", _C),
    "teams_count": Metric("Count of teams configured on the installation", _C),
    "user_count": Metric("Count of users configured on the installation", _C, unit="users"),
    "varsets_count": Metric("Count of variable sets configured on the installation", _C),
    "private_modules_count": Metric("Count of private modules in the private registry", _C),
    "run_tasks_count": Metric("Count of run tasks configured across all workspaces", _C),
    "active_agents_count": Metric("Count of all remote active agents", _C, unit="agents"),
    "servicenow_catalog_workspace_count": Metric("Count of workspaces provisioned through the ServiceNow integration", _C),
    "servicenow_catalog_run_count": Metric("Count of Terraform runs initiated from ServiceNow", _C),
    # ---------- daily runs (a flow whose window the reference does not state: not mapped to `runs`)
    "daily_runs": Metric("Count of all Terraform runs, daily", _C),
    "daily_api_runs": Metric("Count of API-driven Terraform runs, daily", _C),
    "daily_cli_runs": Metric("Count of CLI-driven Terraform runs, daily", _C),
    "daily_vcs_runs": Metric("Count of VCS-driven Terraform runs, daily", _C),
    # ---------- VCS providers and workspaces by source
    "ado_vcs_present": Metric("1 if Azure DevOps is configured as a VCS provider, 0 otherwise", _F),
    "bitbucket_vcs_present": Metric("1 if Bitbucket is configured as a VCS provider, 0 otherwise", _F),
    "github_vcs_present": Metric("1 if GitHub is configured as a VCS provider, 0 otherwise", _F),
    "gitlab_vcs_present": Metric("1 if GitLab is configured as a VCS provider, 0 otherwise", _F),
    "workspace_count_azure_devops": Metric("Workspaces connected to Azure DevOps", _C),
    "workspace_count_bitbucket": Metric("Workspaces connected to Bitbucket", _C),
    "workspace_count_github": Metric("Workspaces connected to GitHub", _C),
    "workspace_count_gitlab": Metric("Workspaces connected to GitLab", _C),
    "workspaces_api_driven_runs": Metric("Workspaces using API-driven runs", _C),
    "workspaces_cli_driven_runs": Metric("Workspaces using CLI-driven runs", _C),
    # ---------- features used in the last 90 days
    "continuous_validation_used_last_90_days": Metric("1 if continuous validation ran in the last 90 days", _F),
    "drift_detection_used_last_90_days": Metric("1 if drift detection ran in the last 90 days", _F),
    "run_tasks_used_last_90_days": Metric("1 if run tasks were used in the last 90 days", _F),
    "run_triggers_used_last_90_days": Metric("1 if run triggers were used in the last 90 days", _F),
    "sentinel_used_last_90_days": Metric("1 if Sentinel ran in the last 90 days", _F),
    # ---------- workspaces using features
    "workspaces_count_continuous_validation": Metric("Workspaces configured with continuous validation", _C),
    "workspaces_count_drift_detection": Metric("Workspaces with drift detected", _C),
    "workspaces_count_no_code_modules": Metric("Workspaces using no-code modules", _C),
    "workspaces_count_notifications_enabled": Metric("Workspaces with notifications enabled", _C),
    "workspaces_count_opa_policy_sets": Metric("Workspaces using OPA policy sets", _C),
    "workspaces_count_sentinel_policy_sets": Metric("Workspaces using Sentinel policy sets", _C),
    "workspaces_count_run_tasks": Metric("Workspaces with run tasks", _C),
    # ---------- cloud providers in use
    "aws_provider_present": Metric("1 if the AWS provider is in use on the installation", _F),
    "azure_provider_present": Metric("1 if the Azure provider is in use on the installation", _F),
    "gcp_provider_present": Metric("1 if the GCP provider is in use on the installation", _F),
    # ---------- installation and configuration
    "deployment_option": Metric("The deployment option configured on this installation", _E),
    "operational_mode": Metric("The operational mode configured on this installation", _E),
    "installation_reporting_environment_type": Metric("Environment type: 0 not set, 1 prod, 2 non-prod", _E),
    "run_concurrency": Metric("Run concurrency configured for the installation", "setting"),
    "using_admin_api": Metric("1 if the Admin API was used, 0 otherwise", _F),
    "using_iam_auth_s3": Metric("1 if IAM auth for S3 is configured, 0 otherwise", _F),
    "product_usage_reporting_opt_in": Metric("1 if product usage reporting is opted in, 0 otherwise", _F),
    "using_tfe_explorer": Metric("1 if Explorer is enabled (v202507-1 and later)", _F),
    "cpu_architecture": Metric("CPU architecture: 0 other, 1 amd64, 2 arm64 (v202507-1 and later)", _E),
}

# Opting out makes reports carry fields "set to 0" (API_CONTRACTS.md §1.9.7): a zero under an
# opt-out means "not reported", not "no usage". The flags themselves are always meaningful.
USAGE_OPT_IN = "product_usage_reporting_opt_in"
BILLABLE_RUM_OPT_IN = "billable_rum_opt_in"
OPT_IN_FLAGS = (USAGE_OPT_IN, BILLABLE_RUM_OPT_IN)
BILLABLE_RUM_METRICS = frozenset({
    "billable_rum_count", "billable_rum_count_workspace_80th_percentile", "billable_rum_count_workspace_avg",
    "billable_rum_count_workspace_max", "billable_rum_count_workspace_median", "billable_rum_count_workspace_min",
    "servicenow_catalog_billable_rum_count",
})
NOT_REPORTED_REASONS = ("usage_reporting_opted_out", "billable_rum_opted_out")

UNITS = {key: metric.unit for key, metric in METRICS.items() if metric.unit}


# ---------- staging table shapes (rows come from parse.py; base adds account_id, partition_key, loaded_at)

_UTC_US = pa.timestamp("us", tz="UTC")
# Metric values are documented as integers, but averages may be fractional: exact decimals,
# 29 integer digits and 9 fractional ones, the same NUMERIC(38,9) on DuckDB and PostgreSQL.
VALUE_TYPE = pa.decimal128(38, 9)
VALUE_QUANTUM = Decimal("1e-9")
VALUE_LIMIT = Decimal("1e29")

BUNDLE_SCHEMA = pa.schema([
    ("snapshot_id", pa.string()),           # the landed raw snapshot (raw.api_snapshots)
    ("observed_at", _UTC_US),               # when the bundle was fetched
    ("format_version", pa.string()),        # "2" (API bundle) or "1" (older license report file)
    ("bundle_mode", pa.string()),           # bundle-level mode, e.g. "automatic" (not the metric mode)
    ("exported_at", _UTC_US),               # bundle timestamp in UTC, truncated to microseconds
    ("exported_at_raw", pa.string()),       # the timestamp exactly as sent (nanoseconds, offset)
    ("signature", pa.string()),             # opaque, kept verbatim: not verifiable (§1.7)
    ("checksum", pa.string()),              # exact decimal text: may exceed signed 64-bit
    ("snapshot_count", pa.int32()),
])
SNAPSHOT_SCHEMA = pa.schema([
    ("snapshot_id", pa.string()),
    ("observed_at", _UTC_US),
    ("tfe_snapshot_id", pa.string()),       # TFE's own snapshot `id` (v1: `snapshot_id`): the dedup key
    ("bundle_position", pa.int32()),        # 0-based position in the bundle's `snapshots` list
    ("snapshot_version", pa.int32()),
    ("schema_version", pa.string()),
    ("product", pa.string()),               # v1: `service`
    ("product_version", pa.string()),
    ("license_id", pa.string()),            # the account in the marts; changes when the licence does
    ("process_id", pa.string()),
    ("snapshot_at", _UTC_US),               # snapshot timestamp in UTC, truncated to microseconds
    ("snapshot_at_raw", pa.string()),       # exactly as sent
    ("checksum", pa.string()),              # exact decimal text
    ("metadata_json", pa.string()),         # the snapshot's `metadata` object as sorted JSON text
    ("product_usage_reporting_opt_in", pa.bool_()),  # null when the snapshot does not say
    ("billable_rum_opt_in", pa.bool_()),
    ("metric_count", pa.int32()),
])
METRIC_SCHEMA = pa.schema([
    ("snapshot_id", pa.string()),
    ("observed_at", _UTC_US),
    ("tfe_snapshot_id", pa.string()),
    ("metric_key", pa.string()),            # the map key, verbatim
    ("metric_name", pa.string()),           # the map key without v1's legacy `terraform.` prefix
    ("inner_key", pa.string()),             # the entry's own `key`, informational
    ("value", VALUE_TYPE),                  # null when the value is not a number (see value_text)
    ("value_text", pa.string()),            # the JSON value as sent
    ("metric_mode", pa.string()),           # metric-level mode, e.g. "write" (not the bundle mode)
    ("metric_kind", pa.string()),           # v1 only: counter | feature | sum | mean
    ("is_known_metric", pa.bool_()),        # in constants.METRICS
    ("unit", pa.string()),                  # DESIGN unit for billable quantities, else null
    ("is_reported", pa.bool_()),            # false: a zero that only means "opted out"
    ("not_reported_reason", pa.string()),   # usage_reporting_opted_out | billable_rum_opted_out
])
SCHEMAS: dict[str, pa.Schema] = {
    BUNDLES_TABLE: BUNDLE_SCHEMA,
    SNAPSHOTS_TABLE: SNAPSHOT_SCHEMA,
    METRICS_TABLE: METRIC_SCHEMA,
}
