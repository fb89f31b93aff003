"""The ThousandEyes client resource: v7 bearer (default) or v6 basic, one request per organization.

A thin resource over `http.Session`: timeouts, retries, the 240/min limiter, the
`X-Organization-Rate-Limit-Reset` epoch hint and redaction all live there. The one rule: the
landed request says which organization context it asked for (`aid`, version, `expand`, the
`/v7/quotas` org id when known), never the token, so `replay` needs nothing else.
"""

from __future__ import annotations

import logging
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from usage_pipeline import http
from usage_pipeline.errors import ConfigError, HttpError, PayloadError, RetryBudgetExceeded, TransportError
from usage_pipeline.settings import Settings
from usage_pipeline.sources.thousandeyes import constants
from usage_pipeline.sources.thousandeyes.organizations import PlannedAccount, org_of_aids, plan_accounts

log = logging.getLogger("usage_pipeline.sources.thousandeyes")
TOKEN_VARIABLE = "THOUSANDEYES_TOKEN"


class ThousandEyesClient(dg.ConfigurableResource):
    """Fetch ThousandEyes usage per organization context. The token never leaves `http`."""

    base_url: str = Field(default="https://api.thousandeyes.com", description="THOUSANDEYES_BASE_URL")
    token: str = Field(repr=False, description="THOUSANDEYES_TOKEN: OAuth bearer token (v6: the basic auth token)")
    api_version: int = Field(default=7, description="THOUSANDEYES_API_VERSION: 7 (current) or 6 (end of life 2025-05-27)")
    email: str | None = Field(default=None, description="THOUSANDEYES_EMAIL: v6 basic auth user; unset = bearer")
    account_group_ids: list[str] = Field(
        default_factory=list,
        description="THOUSANDEYES_ACCOUNT_GROUP_IDS: aids whose organizations to pull; empty = the token's default",
    )
    _session: http.Session | None = PrivateAttr(default=None)
    _clock: http.Clock | None = PrivateAttr(default=None)
    _transport: Any = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, config: Settings, *, token: Any = None) -> ThousandEyesClient:
        """Build from settings; the token is `dg.EnvVar("THOUSANDEYES_TOKEN")` so the UI shows its name only."""
        te = config.thousandeyes
        if te is None:
            raise ConfigError(f"thousandeyes is not configured: {config.disabled.get(constants.KEY, 'THOUSANDEYES_TOKEN unset')}")
        return cls(base_url=te.base_url, token=token if token is not None else dg.EnvVar(TOKEN_VARIABLE),
                   api_version=te.api_version, email=te.email, account_group_ids=list(te.account_group_ids))

    # ---------- session

    def with_http(self, *, clock: http.Clock | None = None, transport: Any = None) -> ThousandEyesClient:
        """This client on another clock or transport (tests); the limiter is the clock's own per token."""
        self._clock, self._transport = clock, transport
        self.close()
        return self

    def session(self) -> http.Session:
        """The HTTP session, made on first use (inside Dagster and out, e.g. `doctor`)."""
        if self._session is None:
            if self.api_version not in (6, 7):
                raise ConfigError(f"THOUSANDEYES_API_VERSION must be 7 or 6, got {self.api_version!r}")
            options: dict[str, Any] = {"headers": {"Accept": "application/hal+json, application/json, application/problem+json"}}
            if self._clock is not None:
                options["clock"] = self._clock
            if self._transport is not None:
                options["transport"] = self._transport
            # one limiter per token at 240/min: an organization's limit is shared by every aid of it,
            # and a token that spans several organizations stays under each one's limit this way
            if self.api_version == 6 and self.email:
                self._session = http.Session.basic(constants.KEY, self.base_url, self.email, self.token,
                                                   token_variable=TOKEN_VARIABLE, **options)
            else:
                self._session = http.Session.bearer(constants.KEY, self.base_url, self.token,
                                                    token_variable=TOKEN_VARIABLE, **options)
        return self._session

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def stats(self) -> http.CallStats:
        return self._session.stats if self._session is not None else http.CallStats()

    # ---------- requests

    def fetch_quotas(self) -> http.Fetched | None:
        """GET /v7/quotas: orgId per aid, to pull each organization once. None when not available.

        It needs the "Edit organization and account group quotas" permission, which a usage
        reader often lacks; v6 has no such lookup. Without it, staging deduplicates instead.
        """
        if self.api_version != 7 or not self.account_group_ids:
            return None
        try:
            return self.session().get(constants.V7_QUOTAS_PATH, endpoint="quotas", account_id=constants.DEFAULT_ACCOUNT)
        except (HttpError, TransportError) as error:
            if isinstance(error, RetryBudgetExceeded | TransportError):  # the API is struggling: say so
                log.warning("%s; organizations are deduplicated from the usage payloads instead", error)
            else:
                log.info("%s [account -]: /v7/quotas not readable (HTTP %s): organizations are deduplicated from "
                         "the usage payloads instead", constants.KEY, error.status)
            return None

    def plan(self, quotas: http.Fetched | None) -> list[PlannedAccount]:
        """The organization contexts to pull this tick: one per organization when /v7/quotas told us."""
        org_of: dict[str, str] = {}
        if quotas is not None:
            try:
                org_of = org_of_aids(quotas.json())
            except PayloadError as error:
                log.warning("%s; organizations are deduplicated from the usage payloads instead", error)
        return plan_accounts(self.account_group_ids, org_of)

    def usage_request(self, plan: PlannedAccount) -> tuple[str, dict[str, str]]:
        """Path and query of the usage call for one organization context."""
        params: dict[str, str] = {}
        if plan.account_id != constants.DEFAULT_ACCOUNT:
            params["aid"] = plan.account_id
        if self.api_version == 6:
            return constants.V6_USAGE_PATH, params
        # without expand the breakdown arrays are absent (API_CONTRACTS.md §4.2)
        return constants.V7_USAGE_PATH, {**params, "expand": ",".join(constants.EXPAND)}

    def fetch_usage(self, plan: PlannedAccount) -> http.Fetched:
        """GET the usage of one organization context, as received (landed before anything parses it)."""
        path, params = self.usage_request(plan)
        return self.session().get(path, endpoint=constants.ENDPOINT, account_id=plan.account_id, params=params,
                                  record={"api_version": self.api_version, **plan.record()})

    def check_credentials(self) -> str:
        """One cheap authenticated call (the first organization's usage), described in plain words."""
        plan = self.plan(None)[0]
        fetched = self.fetch_usage(plan)
        usage = fetched.json().get("usage") if isinstance(fetched.json(), dict) else None
        quota = usage.get("quota") if isinstance(usage, dict) else None
        period = f"{quota.get('monthStart')} to {quota.get('monthEnd')}" if isinstance(quota, dict) else "no period"
        auth = "basic auth" if self.api_version == 6 and self.email else "bearer token"
        groups = ", ".join(self.account_group_ids) or "the token's default organization"
        limit = fetched.headers.get("x-organization-rate-limit-limit")
        return (f"v{self.api_version} {auth} accepted by {self.base_url} for {groups}; billing period {period}"
                + (f"; organization rate limit {limit}/min" if limit else ""))
