"""The Workato Embedded client resource: one POST per window, grouping and id chunk.

A thin resource over `http.Session` (timeouts, retries, the ≤ 1,000/min limiter and
redaction all live there). The one rule: the window goes out in the admin workspace's zone
with explicit offsets, and the request record kept with each snapshot says how it was asked
(zone, UTC window, grouping, interval, ids), never the token, so `replay` can parse it alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from usage_pipeline import http
from usage_pipeline.errors import ConfigError
from usage_pipeline.settings import Settings
from usage_pipeline.sources.workato import constants
from usage_pipeline.sources.workato.windows import Window, format_admin_time, zone


class WorkatoClient(dg.ConfigurableResource):
    """Fetch Workato Embedded usage (POST /api/v2/managed_users/statistics/usage). The token never leaves `http`."""

    base_url: str = Field(default=constants.DEFAULT_BASE_URL, description="WORKATO_BASE_URL (data centre)")
    token: str = Field(repr=False, description="WORKATO_TOKEN: bearer token of an API client")
    timezone: str = Field(description="WORKATO_TIMEZONE: the Embedded admin workspace's IANA time zone")
    workspace_ids: list[int] = Field(default_factory=list, description="WORKATO_WORKSPACE_IDS")
    external_ids: list[str] = Field(default_factory=list, description="WORKATO_EXTERNAL_IDS")
    max_ids_per_request: int = Field(default=constants.MAX_IDS_PER_REQUEST,
                                     description="split the id list into requests of at most this many ids")
    _session: http.Session | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, config: Settings, *, token: Any = None) -> WorkatoClient:
        """Build from settings; the token is `dg.EnvVar("WORKATO_TOKEN")` so the UI shows the name, never the value."""
        workato = config.workato
        if workato is None:
            raise ConfigError(f"workato is not configured: {config.disabled.get(constants.KEY, 'WORKATO_TOKEN unset')}")
        return cls(base_url=workato.base_url, token=token if token is not None else dg.EnvVar("WORKATO_TOKEN"),
                   timezone=workato.timezone, workspace_ids=list(workato.workspace_ids),
                   external_ids=list(workato.external_ids))

    # ---------- session

    def session(self) -> http.Session:
        if self._session is None:
            self._session = http.Session.bearer(constants.KEY, self.base_url, self.token,
                                                token_variable="WORKATO_TOKEN")
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def stats(self) -> http.CallStats:
        return self._session.stats if self._session is not None else http.CallStats()

    # ---------- requests

    @property
    def id_kind(self) -> str:
        return "workspace_ids" if self.workspace_ids else "external_ids"

    def id_chunks(self) -> list[list[int] | list[str]]:
        """All configured ids, in as few requests as the chunk size allows (the vendor's advice)."""
        ids: Sequence[int | str] = self.workspace_ids or self.external_ids
        if not ids:
            raise ConfigError("workato: WORKATO_WORKSPACE_IDS or WORKATO_EXTERNAL_IDS is required")
        size = max(1, self.max_ids_per_request)
        return [list(ids[start:start + size]) for start in range(0, len(ids), size)]

    def usage_body(self, window: Window, ids: Sequence[int | str], *, grouping: str,
                   interval: str = constants.PULL_INTERVAL) -> dict[str, Any]:
        """The JSON body. The workspace-total pull sends only the documented minimal fields: any other
        field (group_by included, we infer) drops deleted recipes from the totals (API_CONTRACTS.md §3.4).
        """
        if interval not in constants.INTERVALS:
            raise ValueError(f"interval must be one of {constants.INTERVALS}, got {interval!r}")
        body: dict[str, Any] = {
            "from": format_admin_time(window.start, self.timezone),
            "to": format_admin_time(window.end, self.timezone),
            "interval": interval,
            self.id_kind: list(ids),
        }
        if grouping == "recipe":
            body["group_by"] = "recipe"
        elif grouping != "workspace":
            raise ValueError(f"grouping must be one of {constants.GROUPINGS}, got {grouping!r}")
        return body

    def fetch_usage(self, window: Window, ids: Sequence[int | str], *, grouping: str,
                    interval: str = constants.PULL_INTERVAL,
                    account_id: str = constants.BATCH_ACCOUNT) -> http.Fetched:
        """POST one usage query for [window.start, window.end) and return the raw response."""
        zone(self.timezone)  # a bad zone name fails here, before any request
        body = self.usage_body(window, ids, grouping=grouping, interval=interval)
        record = {  # stored with the snapshot: replay needs the zone and window, never the token
            "timezone": self.timezone, "window_start": window.start.isoformat(), "window_end": window.end.isoformat(),
            "grouping": grouping, "group_by": body.get("group_by"), "interval": interval, "id_kind": self.id_kind,
            "ids": [str(i) for i in ids],
        }
        return self.session().post_json(constants.USAGE_PATH, endpoint=constants.ENDPOINT, account_id=account_id,
                                        json=body, record=record)

    def fetch_window(self, window: Window, *, groupings: Sequence[str] = constants.GROUPINGS,
                     interval: str = constants.PULL_INTERVAL) -> Iterator[http.Fetched]:
        """Every response one window needs: each grouping × id chunk, yielded as it arrives (to be landed)."""
        for grouping in groupings:
            for ids in self.id_chunks():
                yield self.fetch_usage(window, ids, grouping=grouping, interval=interval)

    def check_credentials(self, now: datetime | None = None) -> str:
        """One cheap authenticated call: the last hour, no buckets, the first id only."""
        end = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
        fetched = self.fetch_usage(Window(end - timedelta(hours=1), end), self.id_chunks()[0][:1], grouping="workspace",
                                   interval="none")
        payload = fetched.json()
        data = payload.get("data") if isinstance(payload, dict) else None
        entries = len(data) if isinstance(data, list) else 0
        ids = self.workspace_ids or self.external_ids
        return (f"token accepted by {self.base_url}; {len(ids)} {self.id_kind.replace('_', ' ')} configured, "
                f"admin time zone {self.timezone}; last hour: {entries} usage entr{'y' if entries == 1 else 'ies'}")
