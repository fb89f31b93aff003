"""Environment variables (and `.env`) → typed, validated settings.

The one rule: configuration is read when definitions load, never at import time, and a
half-made configuration fails here with a message that names the variable to set. Secret
values are kept as `SecretStr`, so no repr or error ever shows them.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr

from usage_pipeline.errors import ConfigError

log = logging.getLogger("usage_pipeline.settings")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SOURCE_KEYS = ("thousandeyes", "hcp_terraform", "terraform_enterprise", "workato")
LOOPBACK_HOSTS = {"localhost"}
_announced_disabled: set[str] = set()


@dataclass(frozen=True)
class ThousandEyesSettings:
    base_url: str
    token: SecretStr
    api_version: int
    email: str | None
    account_group_ids: tuple[str, ...]


@dataclass(frozen=True)
class HcpTerraformSettings:
    base_url: str
    token: SecretStr
    organizations: tuple[str, ...]


@dataclass(frozen=True)
class TerraformEnterpriseSettings:
    url: str
    token: SecretStr
    ca_bundle: str | None


@dataclass(frozen=True)
class WorkatoSettings:
    base_url: str
    token: SecretStr
    workspace_ids: tuple[int, ...]
    external_ids: tuple[str, ...]
    timezone: str


@dataclass(frozen=True)
class Settings:
    warehouse_url: str
    landing_dir: Path
    models_dir: Path
    at_risk_share: float
    alert_webhook_url: str | None
    thousandeyes: ThousandEyesSettings | None = None
    hcp_terraform: HcpTerraformSettings | None = None
    terraform_enterprise: TerraformEnterpriseSettings | None = None
    workato: WorkatoSettings | None = None
    disabled: Mapping[str, str] = field(default_factory=dict)

    def enabled(self) -> tuple[str, ...]:
        """Source keys whose configuration is complete, in the fixed registry order."""
        return tuple(key for key in SOURCE_KEYS if getattr(self, key) is not None)


def load(env: Mapping[str, str] | None = None, *, dotenv_path: Path | None = None) -> Settings:
    """Read settings from `env` (default: os.environ plus `.env`), validating every value."""
    if env is None:
        _load_dotenv(dotenv_path or Path.cwd() / ".env")
        env = os.environ
    reader = _Env(env)
    disabled: dict[str, str] = {}
    settings = Settings(
        warehouse_url=_warehouse_url(reader.get("USAGE_WAREHOUSE_URL", "duckdb:///data/warehouse.duckdb")),
        landing_dir=Path(reader.get("USAGE_LANDING_DIR", "data/landing")),
        models_dir=Path(reader.get("USAGE_MODELS_DIR", str(PROJECT_ROOT / "dbt_like_models"))),
        at_risk_share=_share(reader.get("USAGE_AT_RISK_SHARE", "0.8")),
        alert_webhook_url=_optional_url(reader, "USAGE_ALERT_WEBHOOK_URL"),
        thousandeyes=_thousandeyes(reader, disabled),
        hcp_terraform=_hcp_terraform(reader, disabled),
        terraform_enterprise=_terraform_enterprise(reader, disabled),
        workato=_workato(reader, disabled),
        disabled=disabled,
    )
    for key, reason in disabled.items():
        if key not in _announced_disabled:
            _announced_disabled.add(key)
            log.info("%s disabled: %s", key, reason)
    return settings


def _load_dotenv(path: Path) -> None:
    """Read `.env` without overriding variables already set in the environment."""
    if path.is_file():
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


class _Env:
    """Read stripped values; an empty string counts as unset."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self._env.get(name, "")
        value = value.strip() if isinstance(value, str) else ""
        return value or default

    def list(self, name: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in (self.get(name) or "").split(",") if item.strip())


def _token(reader: _Env, key: str, variable: str, disabled: dict[str, str]) -> SecretStr | None:
    value = reader.get(variable)
    if value is None:
        disabled[key] = f"{variable} unset"
        return None
    return SecretStr(value)


def _thousandeyes(reader: _Env, disabled: dict[str, str]) -> ThousandEyesSettings | None:
    token = _token(reader, "thousandeyes", "THOUSANDEYES_TOKEN", disabled)
    if token is None:
        return None
    version = reader.get("THOUSANDEYES_API_VERSION", "7")
    if version not in {"6", "7"}:
        raise ConfigError(f"THOUSANDEYES_API_VERSION must be 7 (current API) or 6 (legacy), got {version!r}")
    return ThousandEyesSettings(
        base_url=_base_url(reader, "THOUSANDEYES_BASE_URL", "https://api.thousandeyes.com"),
        token=token,
        api_version=int(version),
        email=reader.get("THOUSANDEYES_EMAIL"),
        account_group_ids=reader.list("THOUSANDEYES_ACCOUNT_GROUP_IDS"),
    )


def _hcp_terraform(reader: _Env, disabled: dict[str, str]) -> HcpTerraformSettings | None:
    token = _token(reader, "hcp_terraform", "TFC_TOKEN", disabled)
    if token is None:
        return None
    return HcpTerraformSettings(
        base_url=_base_url(reader, "TFC_BASE_URL", "https://app.terraform.io"),
        token=token,
        organizations=reader.list("TFC_ORGANIZATIONS"),
    )


def _terraform_enterprise(reader: _Env, disabled: dict[str, str]) -> TerraformEnterpriseSettings | None:
    token = _token(reader, "terraform_enterprise", "TFE_SYSTEM_API_TOKEN", disabled)
    if token is None:
        return None
    if reader.get("TFE_SYSTEM_API_URL") is None:
        raise ConfigError(
            "TFE_SYSTEM_API_URL is required when TFE_SYSTEM_API_TOKEN is set "
            "(e.g. https://tfe.example.com:8443, the System API port)"
        )
    ca_bundle = reader.get("TFE_CA_BUNDLE")
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise ConfigError(f"TFE_CA_BUNDLE points at {ca_bundle!r}, which is not a readable file")
    return TerraformEnterpriseSettings(
        url=_base_url(reader, "TFE_SYSTEM_API_URL", None), token=token, ca_bundle=ca_bundle
    )


def _workato(reader: _Env, disabled: dict[str, str]) -> WorkatoSettings | None:
    token = _token(reader, "workato", "WORKATO_TOKEN", disabled)
    if token is None:
        return None
    workspace_ids, external_ids = reader.list("WORKATO_WORKSPACE_IDS"), reader.list("WORKATO_EXTERNAL_IDS")
    if not workspace_ids and not external_ids:
        raise ConfigError("WORKATO_WORKSPACE_IDS or WORKATO_EXTERNAL_IDS is required when WORKATO_TOKEN is set")
    if workspace_ids and external_ids:
        raise ConfigError("set WORKATO_WORKSPACE_IDS or WORKATO_EXTERNAL_IDS, not both (the API takes one of the two)")
    bad = [item for item in workspace_ids if not item.isdigit()]
    if bad:
        raise ConfigError(f"WORKATO_WORKSPACE_IDS must be numeric workspace ids; not a number: {bad[0]!r}")
    timezone = reader.get("WORKATO_TIMEZONE")
    if timezone is None:
        raise ConfigError(
            "WORKATO_TIMEZONE is required when WORKATO_TOKEN is set: the IANA time zone of the "
            "Embedded admin workspace (e.g. America/Los_Angeles); Workato reads and answers in it"
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"WORKATO_TIMEZONE {timezone!r} is not an IANA time zone name") from None
    return WorkatoSettings(
        base_url=_base_url(reader, "WORKATO_BASE_URL", "https://www.workato.com"),
        token=token,
        workspace_ids=tuple(int(item) for item in workspace_ids),
        external_ids=external_ids,
        timezone=timezone,
    )


def _base_url(reader: _Env, variable: str, default: str | None) -> str:
    return check_url(variable, reader.get(variable, default) or "").rstrip("/")


def _optional_url(reader: _Env, variable: str) -> str | None:
    value = reader.get(variable)
    return None if value is None else check_url(variable, value)


def check_url(variable: str, url: str) -> str:
    """Accept https anywhere and plain http only on loopback, where no token can be sniffed."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{variable} must be an http(s) URL with a host, got {_shown(url)!r}")
    if parts.username or parts.password:
        raise ConfigError(f"{variable} must not carry credentials in the URL; use the token variable")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"{variable} uses plain http:// to {parts.hostname}: tokens would cross the network "
            "unencrypted. Use https://, or http:// only for loopback (127.0.0.1, localhost, [::1])"
        )
    return url


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _shown(url: str) -> str:
    """The URL without query string or credentials, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url.split("?")[0][:80]


def _warehouse_url(url: str) -> str:
    if url.startswith("duckdb:///"):
        return url
    if url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        return url
    raise ConfigError(
        "USAGE_WAREHOUSE_URL must be duckdb:///path/to/file.duckdb or "
        f"postgresql+psycopg://user@host/db, got {_shown(url)!r}"
    )


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        raise ConfigError(f"USAGE_AT_RISK_SHARE must be a number between 0 and 1, got {value!r}") from None
    if not 0 < share <= 1:
        raise ConfigError(f"USAGE_AT_RISK_SHARE must be between 0 and 1 (e.g. 0.8), got {value!r}")
    return share
