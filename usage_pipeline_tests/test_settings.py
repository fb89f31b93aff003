"""Configuration (rung 1, pure): each bad configuration gives its own message; secrets never show."""

from __future__ import annotations

import logging

import pytest

from usage_pipeline import settings
from usage_pipeline.errors import ConfigError

CANARY = "canary-token-5b1f0e"


def test_load_with_nothing_set_disables_every_source_and_keeps_defaults():
    config = settings.load({})
    assert config.enabled() == ()
    assert config.disabled == {
        "thousandeyes": "THOUSANDEYES_TOKEN unset",
        "hcp_terraform": "TFC_TOKEN unset",
        "terraform_enterprise": "TFE_SYSTEM_API_TOKEN unset",
        "workato": "WORKATO_TOKEN unset",
    }
    assert config.warehouse_url == "duckdb:///data/warehouse.duckdb"
    assert str(config.landing_dir) == "data/landing"


def test_load_full_configuration_types_every_value():
    config = settings.load({
        "THOUSANDEYES_TOKEN": CANARY, "THOUSANDEYES_ACCOUNT_GROUP_IDS": "1234, 5678",
        "TFC_TOKEN": CANARY, "TFC_ORGANIZATIONS": "acme,globex",
        "TFE_SYSTEM_API_TOKEN": CANARY, "TFE_SYSTEM_API_URL": "https://tfe.example.com:8443/",
        "WORKATO_TOKEN": CANARY, "WORKATO_WORKSPACE_IDS": "3127,3128", "WORKATO_TIMEZONE": "Europe/Berlin",
    })
    assert config.enabled() == ("thousandeyes", "hcp_terraform", "terraform_enterprise", "workato")
    assert config.thousandeyes.account_group_ids == ("1234", "5678")
    assert config.thousandeyes.api_version == 7
    assert config.thousandeyes.base_url == "https://api.thousandeyes.com"
    assert config.hcp_terraform.organizations == ("acme", "globex")
    assert config.terraform_enterprise.url == "https://tfe.example.com:8443"
    assert config.workato.workspace_ids == (3127, 3128)
    assert CANARY not in repr(config)


@pytest.mark.parametrize("env, message", [
    # a TFE token without the System API address: half-made
    ({"TFE_SYSTEM_API_TOKEN": CANARY}, "TFE_SYSTEM_API_URL is required"),
    # Workato needs to know which workspaces to ask for
    ({"WORKATO_TOKEN": CANARY, "WORKATO_TIMEZONE": "UTC"}, "WORKATO_WORKSPACE_IDS or WORKATO_EXTERNAL_IDS is required"),
    # ...and the admin workspace's zone, which the API reads and answers in
    ({"WORKATO_TOKEN": CANARY, "WORKATO_WORKSPACE_IDS": "1"}, "WORKATO_TIMEZONE is required"),
    ({"WORKATO_TOKEN": CANARY, "WORKATO_WORKSPACE_IDS": "1", "WORKATO_TIMEZONE": "Mars/Olympus"}, "not an IANA time zone"),
    ({"WORKATO_TOKEN": CANARY, "WORKATO_WORKSPACE_IDS": "12a", "WORKATO_TIMEZONE": "UTC"}, "not a number: '12a'"),
    ({"WORKATO_TOKEN": CANARY, "WORKATO_WORKSPACE_IDS": "1", "WORKATO_EXTERNAL_IDS": "x", "WORKATO_TIMEZONE": "UTC"}, "not both"),
    ({"THOUSANDEYES_TOKEN": CANARY, "THOUSANDEYES_API_VERSION": "5"}, "THOUSANDEYES_API_VERSION must be 7"),
    ({"USAGE_WAREHOUSE_URL": "mysql://db/x"}, "USAGE_WAREHOUSE_URL must be duckdb"),
    ({"USAGE_AT_RISK_SHARE": "1.5"}, "USAGE_AT_RISK_SHARE must be between 0 and 1"),
    ({"TFE_SYSTEM_API_TOKEN": CANARY, "TFE_SYSTEM_API_URL": "https://tfe:8443", "TFE_CA_BUNDLE": "/nonexistent/ca.pem"}, "TFE_CA_BUNDLE"),
    ({"TFC_TOKEN": CANARY, "TFC_BASE_URL": "ftp://app.terraform.io"}, "TFC_BASE_URL must be an http(s) URL"),
])
def test_load_bad_configuration_names_the_variable(env, message):
    with pytest.raises(ConfigError) as caught:
        settings.load(env)
    assert message in str(caught.value)
    assert CANARY not in str(caught.value)


@pytest.mark.parametrize("url", ["http://api.thousandeyes.com", "http://10.0.0.5:8080", "http://sandbox.internal"])
def test_load_refuses_plain_http_to_a_non_loopback_host(url):
    with pytest.raises(ConfigError, match="unencrypted"):
        settings.load({"THOUSANDEYES_TOKEN": CANARY, "THOUSANDEYES_BASE_URL": url})


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765", "http://localhost:1", "http://[::1]:9000", "http://127.9.9.9"])
def test_load_accepts_plain_http_on_loopback(url):
    assert settings.load({"THOUSANDEYES_TOKEN": CANARY, "THOUSANDEYES_BASE_URL": url}).thousandeyes.base_url == url


def test_load_refuses_credentials_in_a_url_without_echoing_them():
    with pytest.raises(ConfigError) as caught:
        settings.load({"TFC_TOKEN": CANARY, "TFC_BASE_URL": f"https://user:{CANARY}@app.terraform.io"})
    assert CANARY not in str(caught.value)


def test_load_announces_a_disabled_source_once(caplog):
    settings._announced_disabled.clear()
    with caplog.at_level(logging.INFO, logger="usage_pipeline.settings"):
        settings.load({})
        settings.load({})
    messages = [record.getMessage() for record in caplog.records if "workato disabled" in record.getMessage()]
    assert messages == ["workato disabled: WORKATO_TOKEN unset"]


def test_load_reads_dotenv_without_overriding_the_environment(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("TFC_TOKEN=from-dotenv\nTFC_ORGANIZATIONS=from-dotenv-org\n")
    monkeypatch.setenv("TFC_ORGANIZATIONS", "from-env-org")
    monkeypatch.delenv("TFC_TOKEN", raising=False)
    config = settings.load(dotenv_path=tmp_path / ".env")
    assert config.hcp_terraform.token.get_secret_value() == "from-dotenv"
    assert config.hcp_terraform.organizations == ("from-env-org",)
