"""Parse HCP Terraform JSON:API documents into `staging.stg_hcp_terraform__*` rows.

Pure: payloads in, row dicts out, no I/O. The rules that matter (API_CONTRACTS.md §2.5-2.7):
a `null` limit means unlimited and stays NULL (never 0); the feature-set `identifier` is not
unique, so rows key on its `id`; attribute sets grow, so new entitlement keys are accepted as
rows and other new attributes are kept in raw and reported once; a 404 on `/subscription`
means "no subscription, or not visible": recorded, never an error; error bodies are read
leniently (`status` as an integer, entries as plain strings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from usage_pipeline.errors import PayloadError
from usage_pipeline.sources.base import Parsed
from usage_pipeline.sources.hcp_terraform import constants as c
from usage_pipeline.sources.hcp_terraform.schemas import SUBSCRIPTIONS_SCHEMA
from usage_pipeline.timeutil import parse_iso_utc

Row = dict[str, Any]


@dataclass(frozen=True)
class Response:
    """One landed response of an organization's batch, as the parser needs it."""

    snapshot_id: str
    endpoint: str
    status: int
    fetched_at: datetime
    payload: Any
    page_number: int | None = None


@dataclass(frozen=True)
class Organization:
    """Who a batch is about: the name (which a rename changes) and the stable external id."""

    name: str
    external_id: str


class _Context:
    """Where rows come from (account, snapshot) and the warnings a document raised."""

    def __init__(self, account: str, response: Response, organization: Organization | None) -> None:
        self.account, self.response, self.organization = account, response, organization
        self.warnings: list[str] = []

    def fail(self, what: str) -> PayloadError:
        return PayloadError(c.KEY, self.account, f"{self.response.endpoint} snapshot {self.response.snapshot_id}: {what}")

    def warn(self, what: str) -> None:
        self.warnings.append(f"{c.KEY}: {self.response.endpoint}: {what} (the raw snapshot keeps it)")

    def base_row(self) -> Row:
        org = self.organization
        return {
            "snapshot_id": self.response.snapshot_id,
            "observed_at": self.response.fetched_at,
            "organization_name": org.name if org else None,
            "organization_external_id": org.external_id if org else None,
        }


# ---------- a whole organization batch


def parse_batch(account: str, responses: Sequence[Response]) -> Parsed:
    """Return every staging row of one organization's batch (all its endpoints and pages).

    The organization document names the batch (its `external-id` goes on every row); a batch
    without one is refused. The discovery batch parses to no rows.
    """
    if account == c.DISCOVERY_ACCOUNT:
        return Parsed(tables={})
    organization_responses = [r for r in responses if r.endpoint == c.EP_ORGANIZATION]
    if len(organization_responses) != 1:
        raise PayloadError(c.KEY, account, f"expected one organization document in the batch, found {len(organization_responses)}")
    org_row, org_warnings = parse_organization(account, organization_responses[0])
    organization = Organization(org_row["organization_name"], org_row["organization_external_id"])
    tables: dict[str, list[Row]] = {table: [] for table in c.STAGING_TABLES}
    warnings = list(org_warnings)
    tables[c.STG_ORGANIZATIONS].append(org_row)
    for response in responses:
        tables[c.STG_FETCHES].append(_fetch_row(account, response, organization))
        if response.endpoint == c.EP_SUBSCRIPTION:
            subscription, entitlements, found = parse_subscription(account, response, organization)
            tables[c.STG_SUBSCRIPTIONS].append(subscription)
            tables[c.STG_ENTITLEMENTS].extend(entitlements)
            warnings += found
        elif response.endpoint == c.EP_ENTITLEMENT_SET:
            entitlements, found = parse_entitlement_set(account, response, organization)
            tables[c.STG_ENTITLEMENTS].extend(entitlements)
            warnings += found
        elif response.endpoint == c.EP_EXPLORER_WORKSPACES:
            tables[c.STG_WORKSPACES].extend(parse_workspaces(account, response, organization))
        elif response.endpoint != c.EP_ORGANIZATION:
            warnings.append(f"{c.KEY}: unknown endpoint {response.endpoint!r} in the batch of {account}; kept in raw")
    _drop_repeated_workspaces(tables[c.STG_WORKSPACES], warnings, account)
    return Parsed(tables=tables, warnings=tuple(dict.fromkeys(warnings)))


def _fetch_row(account: str, response: Response, organization: Organization) -> Row:
    context = _Context(account, response, organization)
    data = response.payload.get("data") if isinstance(response.payload, dict) else None
    count = len(data) if isinstance(data, list) else (1 if isinstance(data, dict) else 0)
    return {
        **context.base_row(),
        "endpoint": response.endpoint,
        "http_status": response.status,
        "page_number": response.page_number,
        "row_count": count if response.status == 200 else 0,
        "error_detail": None if response.status == 200 else error_detail(response.payload),
    }


def _drop_repeated_workspaces(rows: list[Row], warnings: list[str], account: str) -> None:
    """Explorer results are eventually consistent: a workspace seen on two pages counts once."""
    seen: set[str] = set()
    kept = []
    for row in rows:
        if row["workspace_id"] in seen:
            warnings.append(f"{c.KEY}: explorer_workspaces of {account} listed workspace {row['workspace_id']} twice; counted once")
            continue
        seen.add(row["workspace_id"])
        kept.append(row)
    rows[:] = kept


# ---------- documents


def parse_organization(account: str, response: Response) -> tuple[Row, list[str]]:
    """One row for `GET /organizations/:org`; `external-id` (survives renames) is required."""
    context = _Context(account, response, None)
    data = _data_object(context, "organizations")
    attributes = _attributes(context, data)
    name = data.get("id") or attributes.get("name")
    external_id = attributes.get("external-id")
    if not isinstance(name, str) or not name:
        raise context.fail("organization document has no `id` (the organization name)")
    if not isinstance(external_id, str) or not external_id:
        raise context.fail("organization document has no `attributes.external-id`, which keys its history across renames")
    context.organization = Organization(name, external_id)
    row = {
        **context.base_row(),
        "email": _text(context, attributes, "email"),
        "created_at": _timestamp(context, attributes, "created-at"),
        "plan_identifier": _text(context, attributes, "plan-identifier"),
        "plan_is_trial": _boolean(context, attributes, "plan-is-trial"),
        "plan_is_enterprise": _boolean(context, attributes, "plan-is-enterprise"),
        "plan_expired": _boolean(context, attributes, "plan-expired"),
        "plan_expires_at": _timestamp(context, attributes, "plan-expires-at"),
    }
    return row, context.warnings


def parse_subscription(account: str, response: Response, organization: Organization) -> tuple[Row, list[Row], list[str]]:
    """The subscription row plus its `subscription` and `feature_set` entitlement rows.

    A 404 is a normal answer (a free organization without a subscription, or a token that may
    not see it): one row with `has_subscription` false and no entitlement rows.
    """
    context = _Context(account, response, organization)
    row: Row = {name: None for name in SUBSCRIPTIONS_SCHEMA.names}
    row.update(context.base_row(), http_status=response.status, has_subscription=False)
    if response.status != 200:
        row["error_detail"] = error_detail(response.payload)
        return row, [], context.warnings
    data = _data_object(context, "subscriptions")
    subscription_id = data.get("id")
    if not isinstance(subscription_id, str) or not subscription_id:
        raise context.fail("subscription document has no `data.id`")
    attributes = _attributes(context, data)
    row.update(has_subscription=True, subscription_id=subscription_id)
    entitlements: list[Row] = []
    for key, value in attributes.items():
        if key in c.SUBSCRIPTION_COLUMNS:
            column, kind = c.SUBSCRIPTION_COLUMNS[key]
            row[column] = _typed(context, attributes, key, kind)
        if _is_limit_key(key):
            limit = _integer(context, key, value)
            if limit is not None and limit is not _INVALID:  # null on a subscription: no override
                entitlements.append(_entitlement(context, c.SOURCE_SUBSCRIPTION, subscription_id, key, c.VALUE_LIMIT, None, limit))
        elif key not in c.SUBSCRIPTION_COLUMNS and key not in c.SUBSCRIPTION_IGNORED:
            context.warn(f"unknown subscription attribute {key!r}")
    row["managed_resources_limit"] = next(
        (row[c.SUBSCRIPTION_COLUMNS[key][0]] for key in c.MANAGED_RESOURCES_LIMIT_KEYS
         if row[c.SUBSCRIPTION_COLUMNS[key][0]] is not None),
        None,
    )
    feature_set_id, feature_set = _included_feature_set(context, data)
    row["feature_set_id"] = feature_set_id
    row["feature_set_included"] = feature_set is not None
    if feature_set is not None:
        entitlements += _parse_feature_set(context, row, feature_set_id, feature_set)
    return row, entitlements, context.warnings


def _included_feature_set(context: _Context, data: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any] | None]:
    """The feature set the subscription points at, found in `included[]` by its `id`."""
    related = (((data.get("relationships") or {}).get("feature-set") or {}).get("data") or {})
    feature_set_id = related.get("id") if isinstance(related, dict) else None
    included = context.response.payload.get("included")
    candidates = [item for item in included or [] if isinstance(item, dict) and item.get("type") == "feature-sets"] \
        if isinstance(included, list) else []
    for item in candidates:
        if feature_set_id is None or item.get("id") == feature_set_id:
            return item.get("id"), item
    if feature_set_id is not None:
        context.warn(f"feature set {feature_set_id} is not in `included`")
    return feature_set_id, None


def _parse_feature_set(context: _Context, row: Row, feature_set_id: str | None, item: Mapping[str, Any]) -> list[Row]:
    if not isinstance(feature_set_id, str) or not feature_set_id:
        raise context.fail("included feature set has no `id`")
    attributes = _attributes(context, item)
    rows: list[Row] = []
    for key, value in attributes.items():
        if key in c.FEATURE_SET_COLUMNS:
            column, kind = c.FEATURE_SET_COLUMNS[key]
            row[column] = _typed(context, attributes, key, kind)
        elif isinstance(value, bool):
            rows.append(_entitlement(context, c.SOURCE_FEATURE_SET, feature_set_id, key, c.VALUE_BOOLEAN, value, None))
        elif _is_limit_key(key):
            limit = _integer(context, key, value)
            if limit is not _INVALID:
                rows.append(_entitlement(context, c.SOURCE_FEATURE_SET, feature_set_id, key, c.VALUE_LIMIT, None, limit))
        elif key not in c.FEATURE_SET_IGNORED:
            context.warn(f"unknown feature-set attribute {key!r}")
    return rows


def parse_entitlement_set(account: str, response: Response, organization: Organization) -> tuple[list[Row], list[str]]:
    """One key/value row per attribute: booleans, integer limits, `null` = unlimited; new keys welcome.

    A 404 (not visible or not entitled) yields no rows: the fetch row records it.
    """
    context = _Context(account, response, organization)
    if response.status != 200:
        return [], context.warnings
    data = _data_object(context, "entitlement-sets")
    set_id = data.get("id")
    if not isinstance(set_id, str) or not set_id:
        raise context.fail("entitlement-set document has no `data.id`")
    if set_id != organization.external_id:
        context.warn(f"entitlement set id {set_id} differs from the organization external-id {organization.external_id}")
    rows = []
    for key, value in _attributes(context, data).items():
        if isinstance(value, bool):
            rows.append(_entitlement(context, c.SOURCE_ENTITLEMENT_SET, set_id, key, c.VALUE_BOOLEAN, value, None))
            continue
        limit = _integer(context, key, value)
        if limit is not _INVALID:
            rows.append(_entitlement(context, c.SOURCE_ENTITLEMENT_SET, set_id, key, c.VALUE_LIMIT, None, limit))
    return rows, context.warnings


def parse_workspaces(account: str, response: Response, organization: Organization) -> list[Row]:
    """One row per workspace of an explorer `type=workspaces` page.

    Attributes are kebab-case except `current_rum_count`, which stays snake_case (§2.5).
    """
    context = _Context(account, response, organization)
    if response.status != 200:
        return []
    payload = response.payload
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise context.fail("expected a JSON:API document whose `data` is a list of workspaces")
    rows = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise context.fail("a workspace entry has no `id`")
        attributes = _attributes(context, item)
        if "current_rum_count" not in attributes:
            raise context.fail(f"workspace {item['id']} has no `current_rum_count`")
        rum = _integer(context, "current_rum_count", attributes["current_rum_count"])
        if rum is _INVALID:
            raise context.fail(f"workspace {item['id']}: `current_rum_count` is not a whole number")
        rows.append({
            **context.base_row(),
            "workspace_id": item["id"],
            "workspace_external_id": _text(context, attributes, "external-id"),
            "workspace_name": _text(context, attributes, "workspace-name"),
            "project_id": _text(context, attributes, "project-external-id"),
            "project_name": _text(context, attributes, "project-name"),
            "current_rum_count": rum,
            "is_drifted": _boolean(context, attributes, "drifted"),
            "resources_drifted": _optional_integer(context, attributes, "resources-drifted"),
            "resources_undrifted": _optional_integer(context, attributes, "resources-undrifted"),
            "current_run_status": _text(context, attributes, "current-run-status"),
            "current_run_applied_at": _timestamp(context, attributes, "current-run-applied-at"),
            "workspace_created_at": _timestamp(context, attributes, "workspace-created-at"),
            "workspace_updated_at": _timestamp(context, attributes, "workspace-updated-at"),
            "terraform_version": _text(context, attributes, "workspace-terraform-version"),
            "page_number": response.page_number,
        })
    return rows


def parse_organization_names(payload: Any) -> list[str]:
    """Organization names on one page of `GET /organizations` (discovery)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise PayloadError(c.KEY, c.DISCOVERY_ACCOUNT, "organizations: expected a JSON:API document whose `data` is a list")
    names = []
    for item in data:
        name = item.get("id") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise PayloadError(c.KEY, c.DISCOVERY_ACCOUNT, "organizations: an entry has no `id` (the organization name)")
        names.append(name)
    return names


def error_detail(payload: Any) -> str:
    """What a JSON:API error body says, read leniently: `status` int or str, entries dicts or strings."""
    entries = payload.get("errors") if isinstance(payload, dict) else None
    if not isinstance(entries, list) or not entries:
        return "no error detail"
    parts = []
    for entry in entries:
        if isinstance(entry, str):
            parts.append(entry)
        elif isinstance(entry, dict):
            words = [str(entry[key]) for key in ("status", "title", "detail") if entry.get(key) not in (None, "")]
            parts.append(" ".join(words))
    return "; ".join(part for part in parts if part)[:500] or "no error detail"


# ---------- values


_INVALID: Any = type("_Invalid", (), {"__repr__": lambda self: "<invalid>"})()


def _is_limit_key(key: str) -> bool:
    return key.endswith(c.LIMIT_SUFFIXES) and key not in c.NOT_A_LIMIT


def _entitlement(context: _Context, source: str, source_id: str, key: str, value_type: str,
                 enabled: bool | None, limit: int | None) -> Row:
    return {
        **context.base_row(),
        "value_source": source,
        "source_id": source_id,
        "entitlement_key": key,
        "value_type": value_type,
        "enabled": enabled,
        "limit_value": limit,
        "is_unlimited": value_type == c.VALUE_LIMIT and limit is None,
    }


def _integer(context: _Context, key: str, value: Any) -> Any:
    """A whole number (`5` or `5.0`), None for null; anything else warns and returns _INVALID."""
    if value is None:
        return None
    if isinstance(value, bool):
        context.warn(f"attribute {key!r} is a boolean where a number was expected")
        return _INVALID
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    context.warn(f"attribute {key!r} has a value of type {type(value).__name__} that is not a whole number")
    return _INVALID


def _optional_integer(context: _Context, attributes: Mapping[str, Any], key: str) -> int | None:
    value = _integer(context, key, attributes.get(key))
    return None if value is _INVALID else value


def _typed(context: _Context, attributes: Mapping[str, Any], key: str, kind: str) -> Any:
    """A column value of the declared kind: integer, boolean, text or timestamp."""
    if kind == "integer":
        return _optional_integer(context, attributes, key)
    if kind == "boolean":
        return _boolean(context, attributes, key)
    if kind == "timestamp":
        return _timestamp(context, attributes, key)
    return _text(context, attributes, key)


def _boolean(context: _Context, attributes: Mapping[str, Any], key: str) -> bool | None:
    value = attributes.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise context.fail(f"attribute {key!r} should be true or false, got {type(value).__name__}")


def _text(context: _Context, attributes: Mapping[str, Any], key: str) -> str | None:
    value = attributes.get(key)
    if value is None or isinstance(value, str):
        return value
    raise context.fail(f"attribute {key!r} should be text, got {type(value).__name__}")


def _timestamp(context: _Context, attributes: Mapping[str, Any], key: str) -> datetime | None:
    value = attributes.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise context.fail(f"attribute {key!r} should be an ISO 8601 timestamp, got {type(value).__name__}")
    try:
        return parse_iso_utc(value)
    except ValueError:
        raise context.fail(f"attribute {key!r} is not an ISO 8601 timestamp with a zone: {value[:40]!r}") from None


def _data_object(context: _Context, expected_type: str) -> Mapping[str, Any]:
    payload = context.response.payload
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise context.fail(f"expected a JSON:API document whose `data` is one {expected_type} object")
    if data.get("type") not in (None, expected_type):
        raise context.fail(f"expected `data.type` {expected_type!r}, got {data.get('type')!r}")
    return data


def _attributes(context: _Context, item: Mapping[str, Any]) -> Mapping[str, Any]:
    attributes = item.get("attributes")
    if not isinstance(attributes, dict):
        raise context.fail("a JSON:API resource has no `attributes` object")
    return attributes
