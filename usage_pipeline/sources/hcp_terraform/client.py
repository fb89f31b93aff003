"""The HCP Terraform client resource: bearer token, discovery, one `fetch_*` per endpoint.

The one rule: every call goes through one `http.Session` whose limiter is shared by every
HCP call of the process, because the 30 requests/s limit is per *user*, not per token
(API_CONTRACTS.md §2.4); the session adapts it from `X-RateLimit-Limit`. Retries, waits and
redaction are `http`'s; this module knows only paths and which statuses are answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import dagster as dg
from pydantic import Field, PrivateAttr

from usage_pipeline import http, timeutil
from usage_pipeline.sources.hcp_terraform import constants as c
from usage_pipeline.sources.hcp_terraform.parse import parse_organization_names


class PipelineClock(http.SystemClock):
    """Real waits, but `fetched_at` on the pipeline clock, so a sandbox day is stamped as that day."""

    def now_utc(self) -> datetime:
        return timeutil.utcnow()


PIPELINE_CLOCK = PipelineClock()  # one instance: the shared limiter is keyed by (name, clock)


class HcpTerraformClient(dg.ConfigurableResource):
    """Fetch HCP Terraform organizations, subscriptions, entitlement sets and explorer rows."""

    base_url: str = Field(default="https://app.terraform.io", description="TFC_BASE_URL")
    token: str = Field(repr=False, description="TFC_TOKEN")
    organizations: list[str] = Field(
        default_factory=list, description="TFC_ORGANIZATIONS (empty: every organization the token sees)"
    )
    page_size: int = Field(default=c.PAGE_SIZE, ge=1, le=c.PAGE_SIZE, description="page[size] sent on every list")
    _session: http.Session | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._session = self.session()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def session(self, **kwargs: object) -> http.Session:
        """A session on the process-wide per-user limiter (kwargs: http.Session options, for tests)."""
        clock = kwargs.setdefault("clock", PIPELINE_CLOCK)
        limiter = kwargs.pop("limiter", None) or http.limiter_for(
            c.LIMITER_KEY, c.RATE_LIMIT_PER_S, c.RATE_LIMIT_BURST, clock=clock  # type: ignore[arg-type]
        )
        return http.Session.bearer(c.KEY, self.base_url, self.token, token_variable="TFC_TOKEN",
                                   limiter=limiter, **kwargs)  # type: ignore[arg-type]

    @property
    def api(self) -> http.Session:
        if self._session is None:  # used outside Dagster (doctor, tests)
            self._session = self.session()
        return self._session

    @property
    def stats(self) -> http.CallStats:
        return self.api.stats

    # ---------- discovery

    def fetch_organization_pages(self) -> Iterator[http.Fetched]:
        """Every page of `GET /organizations`, always with page[size] and page[number] (§2.3)."""
        yield from self.api.paginate_jsonapi(
            c.ORGANIZATIONS_PATH, endpoint=c.EP_ORGANIZATIONS, account_id=c.DISCOVERY_ACCOUNT, page_size=self.page_size
        )

    def organization_names(self, pages: Iterator[http.Fetched] | None = None) -> list[str]:
        """TFC_ORGANIZATIONS, or the names on the discovery pages (fetched here when not given)."""
        if self.organizations:
            return list(self.organizations)
        names: list[str] = []
        for page in pages if pages is not None else self.fetch_organization_pages():
            names.extend(name for name in parse_organization_names(page.json()) if name not in names)
        return names

    # ---------- per organization

    def fetch_organization(self, *, org: str) -> http.Fetched:
        """`GET /organizations/:org`; a 404 fails this organization (not visible to the token)."""
        return self.api.get(c.ORGANIZATION_PATH.format(org=org), endpoint=c.EP_ORGANIZATION, account_id=org)

    def fetch_subscription(self, *, org: str) -> http.Fetched:
        """`GET /organizations/:org/subscription`; a 404 is an answer: no subscription, or not visible."""
        return self.api.get(c.SUBSCRIPTION_PATH.format(org=org), endpoint=c.EP_SUBSCRIPTION, account_id=org,
                             accept_status=(200, 404))

    def fetch_entitlement_set(self, *, org: str) -> http.Fetched:
        """`GET /organizations/:org/entitlement-set`; a 404 (not visible) is landed as unknown."""
        return self.api.get(c.ENTITLEMENT_SET_PATH.format(org=org), endpoint=c.EP_ENTITLEMENT_SET, account_id=org,
                             accept_status=(200, 404))

    def fetch_workspaces(self, *, org: str) -> Iterator[http.Fetched]:
        """Every page of `GET /organizations/:org/explorer?type=workspaces`."""
        yield from self.api.paginate_jsonapi(
            c.EXPLORER_PATH.format(org=org), endpoint=c.EP_EXPLORER_WORKSPACES, account_id=org,
            params=c.EXPLORER_WORKSPACES_PARAMS, page_size=self.page_size,
        )

    def check_credentials(self) -> str:
        """One cheap authenticated call, described in plain words (doctor)."""
        fetched = self.api.get(c.ORGANIZATIONS_PATH, endpoint=c.EP_ORGANIZATIONS, account_id=c.DISCOVERY_ACCOUNT,
                                params={"page[number]": 1, "page[size]": 1})
        total = (((fetched.json() or {}).get("meta") or {}).get("pagination") or {}).get("total-count")
        seen = f"sees {total} organization(s)" if isinstance(total, int) else "is accepted"
        return f"TFC_TOKEN {seen} at {self.base_url}"
