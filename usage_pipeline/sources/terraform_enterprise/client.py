"""The TFE System API client resource: bearer token, private CA, 1 request/s per token.

The one rule: TLS verification is never switched off. A private CA is trusted by pointing
TFE_CA_BUNDLE at its PEM file (passed to httpx as `verify`); there is no "insecure" knob.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field, PrivateAttr

from usage_pipeline import http
from usage_pipeline.errors import AuthError, ConfigError, PayloadError
from usage_pipeline.settings import Settings
from usage_pipeline.sources.terraform_enterprise import constants


class TerraformEnterpriseClient(dg.ConfigurableResource):
    """Fetch the usage bundle of one Terraform Enterprise installation. The token never leaves `http`."""

    url: str = Field(description="TFE_SYSTEM_API_URL: the System API base URL, e.g. https://tfe.example.com:8443")
    token: str = Field(repr=False, description="TFE_SYSTEM_API_TOKEN (from `tfectl admin api-token generate`)")
    ca_bundle: str | None = Field(
        default=None, description="TFE_CA_BUNDLE: PEM file of the private CA that signed the TFE certificate"
    )
    _session: http.Session | None = PrivateAttr(default=None)
    _clock: http.Clock | None = PrivateAttr(default=None)
    _transport: Any = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, config: Settings) -> TerraformEnterpriseClient:
        """The resource as Definitions hold it: the token as an EnvVar, so the UI shows its name only."""
        tfe = config.terraform_enterprise
        if tfe is None:
            raise ConfigError(f"terraform_enterprise is not configured: "
                              f"{config.disabled.get(constants.KEY, 'TFE_SYSTEM_API_TOKEN unset')}")
        return cls(url=tfe.url, token=dg.EnvVar(constants.TOKEN_VARIABLE), ca_bundle=tfe.ca_bundle)

    @property
    def installation(self) -> str:
        """The raw-layer account: the installation's host name (its licences are the marts' accounts)."""
        return (urlsplit(self.url).hostname or self.url).lower()

    def with_clock(self, clock: http.Clock, *, transport: Any = None) -> TerraformEnterpriseClient:
        """This client on another clock (tests, the sandbox); the limiter is the clock's own per token."""
        self._clock, self._transport = clock, transport
        self.close()
        return self

    def session(self) -> http.Session:
        """The HTTP session, made on first use (inside Dagster and out, e.g. `doctor`)."""
        if self._session is None:
            options: dict[str, Any] = {}
            if self._clock is not None:
                options["clock"] = self._clock
            if self._transport is not None:
                options["transport"] = self._transport
            # a CA bundle path becomes httpx `verify`; without one the system trust store is used
            self._session = http.Session.bearer(
                constants.KEY, self.url, self.token, token_variable=constants.TOKEN_VARIABLE,
                verify=self.ca_bundle or True, **options,
            )
        return self._session

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def fetch_bundle(self) -> http.Fetched:
        """GET /api/v1/usage/bundle: every usage snapshot the installation still holds, as received."""
        return self._get(constants.BUNDLE_PATH, constants.ENDPOINT)

    def ping(self) -> str:
        """GET /api/v1/ping (authenticated): "pong" when the URL, the certificate and the token are good."""
        fetched = self._get(constants.PING_PATH, "ping")
        answer = fetched.json()
        if answer != constants.PING_ANSWER:
            raise PayloadError(constants.KEY, self.installation,
                               f"ping: expected \"pong\" from {fetched.url}, got {http.preview(fetched.body)}")
        return answer

    def _get(self, path: str, endpoint: str) -> http.Fetched:
        try:
            return self.session().get(path, endpoint=endpoint, account_id=self.installation)
        except AuthError as error:
            # API_CONTRACTS.md §1.2: an expired token turns every tick into an auth failure
            raise AuthError(
                constants.KEY, self.installation,
                f"{endpoint}: {constants.AUTH_HINT} (HTTP {error.status} from GET {error.url})",
                status=error.status, url=error.url,
            ) from None

    def stats(self) -> http.CallStats:
        return self._session.stats if self._session is not None else http.CallStats()
