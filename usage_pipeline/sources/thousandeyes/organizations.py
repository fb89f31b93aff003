"""Which configured account groups are the same ThousandEyes organization: count each org once.

`aid` only picks the *organization* context: every aid of one organization answers with the
same organization-wide usage (API_CONTRACTS.md §4.4 trap 8). Two rules, both pure:

1. Before pulling (v7, when the token may read `/v7/quotas`): aids are grouped by the
   quotas' `orgId`, and only the first configured aid of each organization is pulled.
2. Always, when staging (no network, so `replay` decides the same way): accounts whose
   payloads share an account group id (their own aid included), or that carry the same
   recorded `org_id`, are one organization; only the first account (sorted by id) of each
   is staged. An account group belongs to exactly one organization, so a shared id proves
   it; payload numbers are not compared, because an hourly projection update between two
   requests would make one organization look like two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from usage_pipeline.sources.thousandeyes import constants


@dataclass(frozen=True)
class PlannedAccount:
    """One organization context to pull: the aid to send, its org and the aids it stands for."""

    account_id: str                      # the aid sent (or `default`: no aid)
    org_id: str | None = None            # from /v7/quotas, when known
    covers: tuple[str, ...] = ()         # every configured aid of that organization (itself included)

    def record(self) -> dict[str, Any]:
        """What the landed request records about the organization (replay reads it back)."""
        return {"org_id": self.org_id, "covers_aids": list(self.covers)} if self.org_id else {}


def org_of_aids(quotas: Any) -> dict[str, str]:
    """aid → orgId from a `/v7/quotas` body; entries without ids are ignored (the body is optional help)."""
    mapping: dict[str, str] = {}
    entries = quotas.get("quotas") if isinstance(quotas, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        org = entry.get("organizationQuota")
        org_id = org.get("orgId") if isinstance(org, dict) else None
        if org_id is None or isinstance(org_id, bool) or str(org_id).strip() == "":
            continue
        groups = entry.get("accountGroupQuotas")
        for group in groups if isinstance(groups, list) else ():
            aid = group.get("aid") if isinstance(group, dict) else None
            if aid is not None and not isinstance(aid, bool) and str(aid).strip():
                mapping.setdefault(str(aid).strip(), str(org_id).strip())
    return mapping


def plan_accounts(configured: Sequence[str], org_of: Mapping[str, str] | None = None) -> list[PlannedAccount]:
    """The organization contexts to pull: one per organization when `org_of` knows it, else one per aid."""
    if not configured:
        return [PlannedAccount(constants.DEFAULT_ACCOUNT)]
    org_of = org_of or {}
    plans: dict[str, PlannedAccount] = {}
    for aid in dict.fromkeys(configured):  # configured order, duplicates dropped
        org_id = org_of.get(aid)
        group_key = f"org:{org_id}" if org_id else f"aid:{aid}"
        if group_key in plans:
            first = plans[group_key]
            plans[group_key] = PlannedAccount(first.account_id, first.org_id, (*first.covers, aid))
        else:
            plans[group_key] = PlannedAccount(aid, org_id, (aid,))
    return list(plans.values())


@dataclass
class _Organizations:
    """Union-find over accounts."""

    parent: dict[str, str] = field(default_factory=dict)

    def find(self, account: str) -> str:
        while self.parent[account] != account:
            self.parent[account] = self.parent[self.parent[account]]
            account = self.parent[account]
        return account

    def join(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            low, high = sorted((root_a, root_b))
            self.parent[high] = low


def duplicate_accounts(identities: Mapping[str, tuple[str | None, Iterable[str]]]) -> dict[str, str]:
    """account → the account it duplicates, for every account that is not its organization's first.

    `identities` maps account → (recorded org_id or None, account group ids in its payload).
    """
    orgs = _Organizations({account: account for account in identities})
    owner_of_group: dict[str, str] = {}
    owner_of_org: dict[str, str] = {}
    for account in sorted(identities):
        org_id, groups = identities[account]
        own = {account} if account != constants.DEFAULT_ACCOUNT else set()
        for group in {*groups, *own}:
            if group in owner_of_group:
                orgs.join(account, owner_of_group[group])
            else:
                owner_of_group[group] = account
        if org_id:
            if org_id in owner_of_org:
                orgs.join(account, owner_of_org[org_id])
            else:
                owner_of_org[org_id] = account
    return {account: orgs.find(account) for account in identities if orgs.find(account) != account}
