"""HCP Terraform parsers (rung 1, pure): every payload in api_samples/hcp_terraform, with exact values.

Proves the contract rules of API_CONTRACTS.md §2.5-2.7: `external-id` kept, `null` limits stay
NULL and mean unlimited (never 0), `cost` in cents, feature sets keyed on `id` (the identifier
repeats), entitlement sets as key/value rows with new keys accepted, `current_rum_count` read
in snake_case among kebab-case attributes, 404 subscriptions recorded as "none", and error
bodies read leniently.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from usage_pipeline.errors import PayloadError
from usage_pipeline.sources.hcp_terraform import constants as c
from usage_pipeline.sources.hcp_terraform.parse import (
    Organization,
    Response,
    error_detail,
    parse_batch,
    parse_entitlement_set,
    parse_organization,
    parse_organization_names,
    parse_subscription,
    parse_workspaces,
)
from usage_pipeline.sources.hcp_terraform.schemas import STAGING_SCHEMAS

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hcp_terraform"
# ../shared/api_samples, or the byte copy under fixtures/ in a clone elsewhere
_SHARED = Path(__file__).resolve().parents[2] / "shared" / "api_samples" / "hcp_terraform"
SAMPLES = _SHARED if _SHARED.is_dir() else FIXTURES
AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
ORG = Organization("hashicorp", "org-WV6DfwfxxXvLfvfs")


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def response(endpoint: str, payload: object, *, status: int = 200, snapshot_id: str | None = None,
             page: int | None = None) -> Response:
    return Response(snapshot_id or f"snap-{endpoint}-{page or 0}", endpoint, status, AT, payload, page)


def by_key(rows: list[dict], source: str) -> dict[str, dict]:
    return {row["entitlement_key"]: row for row in rows if row["value_source"] == source}


# ---------- organizations


def test_parse_organization_show_keeps_external_id_and_plan_flags():
    row, warnings = parse_organization("hashicorp", response(c.EP_ORGANIZATION, sample("organization_show.docs_sample.json")))
    assert row == {
        "snapshot_id": "snap-organization-0", "observed_at": AT,
        "organization_name": "hashicorp", "organization_external_id": "org-WV6DfwfxxXvLfvfs",
        "email": "user@example.com", "created_at": datetime(2020, 3, 26, 22, 13, 38, 456000, tzinfo=UTC),
        "plan_identifier": None,  # the show sample has no plan-identifier (the list sample does)
        "plan_is_trial": False, "plan_is_enterprise": False, "plan_expired": False, "plan_expires_at": None,
    }
    assert warnings == []


def test_parse_organization_names_reads_every_list_entry():
    assert parse_organization_names(sample("organizations_list.docs_sample.json")) == ["hashicorp", "hashicorp-two"]


@pytest.mark.parametrize("index, name, external_id, plan", [
    (0, "hashicorp", "org-Hysjx5eUviuKVCJY", "developer"),
    (1, "hashicorp-two", "org-iJ5tr4WgB4WpA1hD", "free"),
])
def test_parse_organization_reads_list_entries_with_plan_identifier(index, name, external_id, plan):
    entry = sample("organizations_list.docs_sample.json")["data"][index]
    row, _ = parse_organization(name, response(c.EP_ORGANIZATION, {"data": entry}))
    assert (row["organization_name"], row["organization_external_id"], row["plan_identifier"]) == (name, external_id, plan)


def test_parse_organization_without_external_id_is_refused_naming_the_account():
    payload = sample("organization_show.docs_sample.json")
    del payload["data"]["attributes"]["external-id"]
    with pytest.raises(PayloadError, match=r"hcp_terraform \[account hashicorp\].*external-id"):
        parse_organization("hashicorp", response(c.EP_ORGANIZATION, payload))


@pytest.mark.parametrize("payload", [
    # an HTML page that happened to parse as a JSON string
    "<html>maintenance</html>",
    # a list where one object belongs
    {"data": []},
    # attributes missing
    {"data": {"id": "hashicorp", "type": "organizations"}},
    # the wrong resource type
    {"data": {"id": "x", "type": "workspaces", "attributes": {"external-id": "org-x"}}},
])
def test_parse_organization_refuses_documents_of_the_wrong_shape(payload):
    with pytest.raises(PayloadError, match="hashicorp"):
        parse_organization("hashicorp", response(c.EP_ORGANIZATION, payload))


def test_parse_organization_names_refuses_a_list_without_data():
    with pytest.raises(PayloadError, match="organizations"):
        parse_organization_names({"errors": ["not authorized"]})


# ---------- subscription and its included feature set


def test_parse_subscription_reads_the_docs_sample_exactly():
    row, entitlements, warnings = parse_subscription(
        "hashicorp", response(c.EP_SUBSCRIPTION, sample("subscription_for_org.docs_sample.json")), ORG)
    assert warnings == []
    assert {k: row[k] for k in (
        "http_status", "has_subscription", "subscription_id", "is_active", "start_at", "end_at", "contract_start_at",
        "runs_ceiling", "agents_ceiling", "contract_user_limit", "contract_apply_limit", "managed_resources_limit",
        "is_public_free_tier", "is_self_serve_trial", "feature_set_id", "feature_set_included", "feature_set_identifier",
        "feature_set_name", "feature_set_plan", "feature_set_cost_cents", "feature_set_is_free_tier", "error_detail",
    )} == {
        "http_status": 200, "has_subscription": True, "subscription_id": "sub-kyjptCZYXQ6amEVu", "is_active": True,
        "start_at": datetime(2021, 1, 20, 7, 3, 53, 492000, tzinfo=UTC), "end_at": None, "contract_start_at": None,
        "runs_ceiling": 1, "agents_ceiling": 0, "contract_user_limit": None, "contract_apply_limit": None,
        "managed_resources_limit": None, "is_public_free_tier": True, "is_self_serve_trial": False,
        "feature_set_id": "fs-EvCGYfpx9CVRzteA", "feature_set_included": True, "feature_set_identifier": "free",
        "feature_set_name": "Free", "feature_set_plan": None, "feature_set_cost_cents": 0,
        "feature_set_is_free_tier": True, "error_detail": None,
    }
    subscription = by_key(entitlements, "subscription")
    # only limits the subscription sets become rows; its nulls mean "no override", not unlimited
    assert {k: v["limit_value"] for k, v in subscription.items()} == {"runs-ceiling": 1, "agents-ceiling": 0}
    assert {v["source_id"] for v in subscription.values()} == {"sub-kyjptCZYXQ6amEVu"}
    feature_set = by_key(entitlements, "feature_set")
    assert len(feature_set) == 22  # 14 booleans + 8 limits; text, cost and descriptive flags are columns
    user_limit = feature_set["user-limit"]
    assert (user_limit["value_type"], user_limit["limit_value"], user_limit["is_unlimited"], user_limit["enabled"]) == (
        "limit", 5, False, None)
    assert (feature_set["policy-limit"]["limit_value"], feature_set["policy-limit"]["is_unlimited"]) == (None, True)
    assert (feature_set["sso"]["value_type"], feature_set["sso"]["enabled"]) == ("boolean", False)
    assert (feature_set["self-serve-billing"]["enabled"], feature_set["self-serve-billing"]["source_id"]) == (True, "fs-EvCGYfpx9CVRzteA")
    assert not {"identifier", "name", "cost", "is-current", "is-free-tier", "description", "plan"} & set(feature_set)


def test_parse_subscription_reads_the_seed_doc_example_with_its_float_limit():
    """The brief's seed page: `user-limit` printed as 5.0, plus `comparison-description`."""
    document = json.loads((FIXTURES / "subscription_for_org.seed_doc_example.json").read_text())
    row, entitlements, warnings = parse_subscription("hashicorp", response(c.EP_SUBSCRIPTION, document), ORG)
    assert warnings == []
    assert (row["subscription_id"], row["feature_set_id"], row["feature_set_name"], row["runs_ceiling"],
            row["agents_ceiling"]) == ("sub-kyjptCZYXQ6amEVu", "fs-EvCGYfpx9CVRzteA", "Free", 1, 0)
    feature_set = by_key(entitlements, "feature_set")
    assert sorted(feature_set) == ["audit-logging", "cost-estimation", "private-networking", "self-serve-billing",
                                   "sentinel", "sso", "teams", "user-limit"]
    assert (feature_set["user-limit"]["limit_value"], feature_set["self-serve-billing"]["enabled"]) == (5, True)


def test_parse_subscription_404_is_no_subscription_not_an_error():
    body = {"errors": [{"status": "404", "title": "not found"}]}
    row, entitlements, warnings = parse_subscription("hashicorp", response(c.EP_SUBSCRIPTION, body, status=404), ORG)
    assert (row["http_status"], row["has_subscription"], row["subscription_id"], row["error_detail"]) == (
        404, False, None, "404 not found")
    assert entitlements == [] and warnings == []


@pytest.mark.parametrize("sample_name", ["feature_sets_list.docs_sample.json", "organization_feature_sets.docs_sample.json"])
def test_parse_feature_set_keys_on_id_when_the_identifier_repeats(sample_name):
    """The list samples carry two feature sets with identifier "standard": each keeps its own id."""
    payload = sample("subscription_for_org.docs_sample.json")
    parsed = []
    for item in sample(sample_name)["data"]:
        document = copy.deepcopy(payload)
        document["data"]["relationships"]["feature-set"]["data"]["id"] = item["id"]
        document["included"] = [item]
        row, entitlements, warnings = parse_subscription("hashicorp", response(c.EP_SUBSCRIPTION, document), ORG)
        parsed.append((row["feature_set_id"], row["feature_set_identifier"], row["feature_set_name"]))
        assert warnings == []
        # concurrency-override is not in the spec: a new boolean, accepted as an entitlement row
        assert "concurrency-override" in by_key(entitlements, "feature_set")
    assert parsed == [("fs-GN3kSR1GqWNfcFaW", "free_standard", "Free"), ("fs-f3xYUkkXwY8ZGP9g", "standard", "Standard"),
                      ("fs-JhVd6dwBSZ3THzHV", "standard", "Standard")]


def test_parse_feature_set_keeps_zero_and_null_apart():
    """organization_feature_sets: the Free plan's versioned-policy-set-limit is 0 (none), user-limit null (unlimited)."""
    item = sample("organization_feature_sets.docs_sample.json")["data"][0]
    document = sample("subscription_for_org.docs_sample.json")
    document["data"]["relationships"]["feature-set"]["data"]["id"] = item["id"]
    document["included"] = [item]
    _, entitlements, _ = parse_subscription("hashicorp", response(c.EP_SUBSCRIPTION, document), ORG)
    feature_set = by_key(entitlements, "feature_set")
    assert (feature_set["versioned-policy-set-limit"]["limit_value"], feature_set["versioned-policy-set-limit"]["is_unlimited"]) == (0, False)
    assert (feature_set["user-limit"]["limit_value"], feature_set["user-limit"]["is_unlimited"]) == (None, True)
    assert (feature_set["policy-limit"]["limit_value"], feature_set["run-task-workspace-limit"]["limit_value"]) == (5, 10)


def test_parse_subscription_reads_a_whole_float_limit_as_an_integer():
    # the seed docs print "user-limit": 5.0
    document = sample("subscription_for_org.docs_sample.json")
    document["included"][0]["attributes"]["user-limit"] = 5.0
    _, entitlements, _ = parse_subscription("hashicorp", response(c.EP_SUBSCRIPTION, document), ORG)
    assert by_key(entitlements, "feature_set")["user-limit"]["limit_value"] == 5


def test_parse_subscription_contract_limits_set_the_managed_resources_limit():
    document = sample("subscription_for_org.docs_sample.json")
    attributes = document["data"]["attributes"]
    attributes.update({"contract-managed-resources-limit": 5000, "free-resource-under-management-monthly-limit": 500,
                       "contract-user-limit": 50, "rum-alert-threshold": 80, "brand-new-attribute": "x"})
    row, entitlements, warnings = parse_subscription("hashicorp", response(c.EP_SUBSCRIPTION, document), ORG)
    assert (row["managed_resources_limit"], row["contract_managed_resources_limit"],
            row["free_managed_resources_monthly_limit"], row["contract_user_limit"]) == (5000, 5000, 500, 50)
    subscription = by_key(entitlements, "subscription")
    assert subscription["contract-user-limit"]["limit_value"] == 50
    assert "rum-alert-threshold" not in subscription
    # an unknown attribute is reported once and kept in raw, never fatal
    assert warnings == ["hcp_terraform: subscription: unknown subscription attribute 'brand-new-attribute' (the raw snapshot keeps it)"]


def test_parse_subscription_free_tier_limit_applies_without_a_contract():
    document = sample("subscription_for_org.docs_sample.json")
    document["data"]["attributes"]["free-resource-under-management-monthly-limit"] = 500
    row, _, _ = parse_subscription("hashicorp", response(c.EP_SUBSCRIPTION, document), ORG)
    assert row["managed_resources_limit"] == 500


def test_parse_subscription_without_its_feature_set_in_included_warns():
    document = sample("subscription_for_org.docs_sample.json")
    document["included"] = []
    row, entitlements, warnings = parse_subscription("hashicorp", response(c.EP_SUBSCRIPTION, document), ORG)
    assert (row["feature_set_id"], row["feature_set_included"]) == ("fs-EvCGYfpx9CVRzteA", False)
    assert by_key(entitlements, "feature_set") == {}
    assert warnings == ["hcp_terraform: subscription: feature set fs-EvCGYfpx9CVRzteA is not in `included` (the raw snapshot keeps it)"]


def test_parse_subscription_with_a_wrong_boolean_type_names_the_field():
    document = sample("subscription_for_org.docs_sample.json")
    document["data"]["attributes"]["is-active"] = "yes"
    with pytest.raises(PayloadError, match="'is-active'"):
        parse_subscription("hashicorp", response(c.EP_SUBSCRIPTION, document), ORG)


# ---------- entitlement set


def test_parse_entitlement_set_loads_every_attribute_as_a_key_value_row():
    rows, warnings = parse_entitlement_set("hashicorp", response(c.EP_ENTITLEMENT_SET, sample("entitlement_set.docs_sample.json")),
                                           Organization("hashicorp", "org-Bzyc2JuegvVLAibn"))
    assert warnings == []
    values = by_key(rows, "entitlement_set")
    assert len(values) == 28
    assert {k for k, v in values.items() if v["value_type"] == "limit"} == {
        "policy-limit", "policy-mandatory-enforcement-limit", "policy-set-limit", "run-task-limit",
        "run-task-mandatory-enforcement-limit", "run-task-workspace-limit", "user-limit", "versioned-policy-set-limit"}
    assert {k: (v["limit_value"], v["is_unlimited"]) for k, v in values.items() if v["value_type"] == "limit"} == {
        "policy-limit": (5, False), "policy-mandatory-enforcement-limit": (None, True), "policy-set-limit": (1, False),
        "run-task-limit": (1, False), "run-task-mandatory-enforcement-limit": (1, False),
        "run-task-workspace-limit": (10, False), "user-limit": (5, False), "versioned-policy-set-limit": (None, True)}
    assert {k for k, v in values.items() if v["value_type"] == "boolean" and v["enabled"]} == {
        "configuration-designer", "operations", "private-module-registry", "private-run-tasks", "self-serve-billing",
        "state-storage", "vcs-integrations"}
    assert {v["source_id"] for v in values.values()} == {"org-Bzyc2JuegvVLAibn"}


def test_parse_entitlement_set_accepts_new_keys_and_skips_values_it_cannot_type():
    payload = sample("entitlement_set.docs_sample.json")
    payload["data"]["attributes"].update({"infragraph": True, "stacks-limit": 3, "groups": ["eu"]})
    rows, warnings = parse_entitlement_set("hashicorp", response(c.EP_ENTITLEMENT_SET, payload),
                                           Organization("hashicorp", "org-Bzyc2JuegvVLAibn"))
    values = by_key(rows, "entitlement_set")
    assert (values["infragraph"]["enabled"], values["stacks-limit"]["limit_value"]) == (True, 3)
    assert "groups" not in values
    assert warnings == ["hcp_terraform: entitlement_set: attribute 'groups' has a value of type list that is not a "
                        "whole number (the raw snapshot keeps it)"]


def test_parse_entitlement_set_404_gives_no_rows():
    rows, warnings = parse_entitlement_set("hashicorp", response(c.EP_ENTITLEMENT_SET, None, status=404), ORG)
    assert rows == [] and warnings == []


# ---------- explorer


def test_parse_workspaces_reads_current_rum_count_among_kebab_case_attributes():
    rows = parse_workspaces("acme-corp", response(c.EP_EXPLORER_WORKSPACES, sample("explorer_workspaces.docs_sample.json"), page=1),
                            Organization("acme-corp", "org-acme"))
    assert [{k: row[k] for k in ("workspace_id", "workspace_external_id", "workspace_name", "project_name",
                                  "current_rum_count", "is_drifted", "resources_drifted", "current_run_status",
                                  "current_run_applied_at", "workspace_created_at", "terraform_version", "page_number")}
            for row in rows] == [
        {"workspace_id": "ws-j2sAWeRxuo1b5HYf", "workspace_external_id": "ws-j2sAeWRxou1b5HYf",
         "workspace_name": "payments-service", "project_name": "Default Project", "current_rum_count": 0,
         "is_drifted": False, "resources_drifted": 0, "current_run_status": "planned_and_finished",
         "current_run_applied_at": None, "workspace_created_at": datetime(2023, 10, 17, 21, 56, 45, 570000, tzinfo=UTC),
         "terraform_version": "1.5.7", "page_number": 1},
        {"workspace_id": "ws-igUNVQSYXVRkhYuo", "workspace_external_id": "ws-igUVNQSYVXRkhYuo",
         "workspace_name": "api-service", "project_name": "web", "current_rum_count": 0, "is_drifted": True,
         "resources_drifted": 3, "current_run_status": "applied",
         "current_run_applied_at": datetime(2023, 8, 18, 16, 24, 59, tzinfo=UTC),
         "workspace_created_at": datetime(2023, 4, 25, 17, 9, 14, 960000, tzinfo=UTC),
         "terraform_version": "1.4.5", "page_number": 1},
    ]


def test_parse_workspaces_refuses_a_row_without_current_rum_count():
    payload = sample("explorer_workspaces.docs_sample.json")
    payload["data"][0]["attributes"]["current-rum-count"] = payload["data"][0]["attributes"].pop("current_rum_count")
    with pytest.raises(PayloadError, match="current_rum_count"):
        parse_workspaces("acme-corp", response(c.EP_EXPLORER_WORKSPACES, payload), Organization("acme-corp", "org-acme"))


# ---------- errors


@pytest.mark.parametrize("body, expected", [
    # the documented 429: status is an integer
    (sample("error_429.docs_sample.json"), "429 Too many requests You have exceeded the API's rate limit."),
    # JSON:API as the spec says: strings
    ({"errors": [{"status": "404", "title": "not found"}]}, "404 not found"),
    # some TFE endpoints: plain strings
    ({"errors": ["Forbidden", "token expired"]}, "Forbidden; token expired"),
    # not an error document at all
    (None, "no error detail"),
    ({"errors": []}, "no error detail"),
])
def test_error_detail_reads_error_bodies_leniently(body, expected):
    assert error_detail(body) == expected


# ---------- a whole batch


def test_parse_batch_types_every_row_with_its_staging_schema():
    parsed = parse_batch("hashicorp", [
        response(c.EP_ORGANIZATION, sample("organization_show.docs_sample.json")),
        response(c.EP_SUBSCRIPTION, sample("subscription_for_org.docs_sample.json")),
        response(c.EP_ENTITLEMENT_SET, sample("entitlement_set.docs_sample.json")),
        response(c.EP_EXPLORER_WORKSPACES, sample("explorer_workspaces.docs_sample.json"), page=1),
    ])
    counts = {table: len(rows) for table, rows in parsed.tables.items()}
    assert counts == {c.STG_ORGANIZATIONS: 1, c.STG_SUBSCRIPTIONS: 1, c.STG_ENTITLEMENTS: 2 + 22 + 28,
                      c.STG_WORKSPACES: 2, c.STG_FETCHES: 4}
    for table, rows in parsed.tables.items():
        assert pa.Table.from_pylist(rows, schema=STAGING_SCHEMAS[table]).num_rows == counts[table]
    # every row carries the organization's external id, whatever document it came from
    assert {row["organization_external_id"] for rows in parsed.tables.values() for row in rows} == {"org-WV6DfwfxxXvLfvfs"}
    # the docs samples come from different pages: the entitlement set id is another org's
    assert parsed.warnings == ("hcp_terraform: entitlement_set: entitlement set id org-Bzyc2JuegvVLAibn differs from the "
                               "organization external-id org-WV6DfwfxxXvLfvfs (the raw snapshot keeps it)",)


def test_parse_batch_counts_a_workspace_listed_on_two_pages_once():
    page = sample("explorer_workspaces.docs_sample.json")
    parsed = parse_batch("hashicorp", [
        response(c.EP_ORGANIZATION, sample("organization_show.docs_sample.json")),
        response(c.EP_EXPLORER_WORKSPACES, page, page=1),
        response(c.EP_EXPLORER_WORKSPACES, {"data": page["data"][1:]}, page=2, snapshot_id="snap-2"),
    ])
    assert [row["workspace_id"] for row in parsed.tables[c.STG_WORKSPACES]] == ["ws-j2sAWeRxuo1b5HYf", "ws-igUNVQSYXVRkhYuo"]
    assert [(row["page_number"], row["row_count"]) for row in parsed.tables[c.STG_FETCHES]] == [(None, 1), (1, 2), (2, 1)]
    assert any("listed workspace ws-igUNVQSYXVRkhYuo twice" in warning for warning in parsed.warnings)


def test_parse_batch_of_discovery_pages_has_no_rows():
    parsed = parse_batch(c.DISCOVERY_ACCOUNT, [response(c.EP_ORGANIZATIONS, sample("organizations_list.docs_sample.json"))])
    assert dict(parsed.tables) == {}


def test_parse_batch_without_the_organization_document_is_refused():
    with pytest.raises(PayloadError, match=r"\[account hashicorp\]: expected one organization document"):
        parse_batch("hashicorp", [response(c.EP_SUBSCRIPTION, sample("subscription_for_org.docs_sample.json"))])


# ---------- every sample is covered


COVERED = {
    "organizations_list.docs_sample.json", "organization_show.docs_sample.json", "entitlement_set.docs_sample.json",
    "subscription_for_org.docs_sample.json", "feature_sets_list.docs_sample.json",
    "organization_feature_sets.docs_sample.json", "explorer_workspaces.docs_sample.json", "error_429.docs_sample.json",
}
# invoices are for credit-card plans only and carry no usage or entitlement: this source does not pull them
NOT_PULLED = {"invoices_next.docs_sample.json", "invoices_list.docs_sample.raw.txt"}


def test_every_hcp_terraform_sample_is_parsed_here_or_named_as_not_pulled():
    assert {path.name for path in SAMPLES.iterdir()} == COVERED | NOT_PULLED


def test_the_fixture_copies_match_the_shared_samples():
    for name in COVERED | NOT_PULLED:
        assert (FIXTURES / name).read_bytes() == (SAMPLES / name).read_bytes(), name
