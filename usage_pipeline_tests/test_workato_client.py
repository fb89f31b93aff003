"""WorkatoClient against the sandbox (rung 3): the body Workato gets (admin-zone offsets, id
chunks, group_by only on the per-recipe pull), the request record replay needs, and no token
anywhere but the Authorization header."""

from __future__ import annotations

import json

import pytest

from usage_pipeline import settings
from usage_pipeline.errors import AuthError, ConfigError, HttpError
from usage_pipeline.sandbox import SandboxServer
from usage_pipeline.sandbox import workato as sandbox_workato
from usage_pipeline.sources import workato
from usage_pipeline.sources.workato import constants
from usage_pipeline.sources.workato.client import WorkatoClient
from usage_pipeline.sources.workato.windows import day_window

CANARY = "canary-workato-7f3a9c1e55"
PATH = constants.USAGE_PATH


@pytest.fixture
def server():
    with SandboxServer(tokens={"workato": CANARY}) as running:
        yield running


def client_for(server: SandboxServer, **overrides) -> WorkatoClient:
    fields = {"base_url": server.base_url, "token": CANARY, "timezone": "America/Los_Angeles",
              "workspace_ids": [3127, 3128, 3129], **overrides}
    return WorkatoClient(**fields)


def bodies(server: SandboxServer) -> list[dict]:
    return [r.json_body for r in server.requests_for("workato", PATH)]


def test_a_window_is_one_total_and_one_per_recipe_request_with_admin_zone_offsets(server):
    client = client_for(server)
    fetched = list(client.fetch_window(day_window("2026-11-01", "America/Los_Angeles")))
    assert [f.status for f in fetched] == [200, 200]
    total, per_recipe = bodies(server)
    # exactly the documented minimal fields: anything more would drop deleted recipes
    assert total == {"from": "2026-11-01T00:00:00.000-07:00", "to": "2026-11-02T00:00:00.000-08:00",
                     "interval": "hour", "workspace_ids": [3127, 3128, 3129]}
    assert per_recipe == {**total, "group_by": "recipe"}


@pytest.mark.parametrize("zone, start, end", [
    ("Europe/Berlin", "2026-10-25T00:00:00.000+02:00", "2026-10-26T00:00:00.000+01:00"),
    ("Asia/Kolkata", "2026-10-25T00:00:00.000+05:30", "2026-10-26T00:00:00.000+05:30"),
])
def test_the_window_goes_out_in_the_configured_zone(server, zone, start, end):
    sandbox_workato.state(server).timezone = zone
    client = client_for(server, timezone=zone)
    client.fetch_usage(day_window("2026-10-25", zone), [3127], grouping="workspace")
    (body,) = bodies(server)
    assert (body["from"], body["to"]) == (start, end)


def test_a_long_id_list_is_split_into_chunks(server):
    client = client_for(server, max_ids_per_request=2)
    fetched = list(client.fetch_window(day_window("2026-11-01", "America/Los_Angeles")))
    assert len(fetched) == 4
    assert [b["workspace_ids"] for b in bodies(server)] == [[3127, 3128], [3129], [3127, 3128], [3129]]
    assert [f.request["ids"] for f in fetched] == [["3127", "3128"], ["3129"], ["3127", "3128"], ["3129"]]


def test_external_ids_are_sent_when_configured(server):
    client = client_for(server, workspace_ids=[], external_ids=["acme-prod", "globex-eu"])
    fetched = client.fetch_usage(day_window("2026-11-01", "America/Los_Angeles"), client.id_chunks()[0],
                                 grouping="workspace")
    assert bodies(server)[0]["external_ids"] == ["acme-prod", "globex-eu"]
    assert {e["workspace_id"] for e in fetched.json()["data"]} == {3127, 3128}
    assert fetched.request["id_kind"] == "external_ids"


def test_the_request_record_lets_replay_parse_and_holds_no_secret(server):
    window = day_window("2026-03-08", "America/Los_Angeles")
    fetched = client_for(server).fetch_usage(window, [3127], grouping="recipe")
    record = fetched.request
    assert record["timezone"] == "America/Los_Angeles"
    assert (record["window_start"], record["window_end"]) == ("2026-03-08T08:00:00+00:00", "2026-03-09T07:00:00+00:00")
    assert (record["grouping"], record["group_by"], record["interval"]) == ("recipe", "recipe", "hour")
    assert record["json"]["group_by"] == "recipe" and record["method"] == "POST" and record["path"] == PATH
    everything = json.dumps(record) + fetched.url + repr(fetched) + json.dumps(fetched.headers)
    assert CANARY not in everything


def test_the_token_is_not_in_the_resource_repr(server):
    client = client_for(server)
    client.fetch_usage(day_window("2026-11-01", "America/Los_Angeles"), [3127], grouping="workspace")
    assert CANARY not in repr(client) and CANARY not in repr(client.session())


def test_a_rejected_token_names_the_variable_and_not_the_token(server):
    client = client_for(server, token="wrong-token-but-long-enough")
    with pytest.raises(AuthError) as caught:
        client.fetch_usage(day_window("2026-11-01", "America/Los_Angeles"), [3127], grouping="workspace")
    assert "WORKATO_TOKEN" in str(caught.value) and "wrong-token-but-long-enough" not in str(caught.value)
    assert caught.value.vendor == "workato"


def test_a_vendor_400_is_not_retried_and_carries_its_message(server):
    sandbox_workato.state(server).max_ids = 2
    with pytest.raises(HttpError, match="at most 2 ids") as caught:
        client_for(server).fetch_usage(day_window("2026-11-01", "America/Los_Angeles"), [3127, 3128, 3129],
                                       grouping="workspace")
    assert caught.value.status == 400
    assert len(bodies(server)) == 1


def test_bad_arguments_fail_before_any_request(server):
    client = client_for(server)
    window = day_window("2026-11-01", "America/Los_Angeles")
    with pytest.raises(ValueError, match="interval"):
        client.fetch_usage(window, [3127], grouping="workspace", interval="minute")
    with pytest.raises(ValueError, match="grouping"):
        client.fetch_usage(window, [3127], grouping="folder")
    with pytest.raises(ConfigError):
        client_for(server, workspace_ids=[]).id_chunks()
    assert bodies(server) == []


def test_from_settings_reads_the_token_from_the_environment_variable(server, monkeypatch):
    env = server.env()
    monkeypatch.setenv("WORKATO_TOKEN", CANARY)
    config = settings.load(env)
    client = WorkatoClient.from_settings(config)
    assert client.workspace_ids == [3127, 3128, 3129] and client.timezone == "America/Los_Angeles"
    assert client.base_url == server.base_url


def test_check_credentials_says_what_it_saw_in_plain_words(server):
    config = settings.load(server.env())
    message = workato.check_credentials(config)
    assert message.startswith(f"token accepted by {server.base_url}")
    assert "3 workspace ids configured" in message and "America/Los_Angeles" in message
    assert CANARY not in message
    (body,) = bodies(server)
    assert body["interval"] == "none" and body["workspace_ids"] == [3127]


def test_the_session_limits_to_1000_requests_a_minute(server):
    # API_CONTRACTS.md §3.5: "All Usage endpoints: 1,000 requests per minute"
    limiter = client_for(server).session().limiter
    assert limiter.rate_per_s == pytest.approx(constants.REQUESTS_PER_MINUTE / 60)
