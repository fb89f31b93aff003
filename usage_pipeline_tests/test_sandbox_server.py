"""The sandbox framework (rung 3): a real loopback server with auth, faults, rate limits and a request log.

Every test talks HTTP to a real `SandboxServer` on 127.0.0.1 with tiny routes of its own, so it
proves the framework whether or not the vendor modules exist yet. The last section runs the
real `http.Session` against it: surviving what can be survived, failing clearly on the rest.
"""

from __future__ import annotations

import json
import sys
import time
import types
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest

from usage_pipeline import errors
from usage_pipeline.http import RateLimiter, RetryPolicy, Session
from usage_pipeline.sandbox import (
    DEFAULT_NOW,
    DEFAULT_TOKENS,
    VENDORS,
    SandboxRequest,
    SandboxResponse,
    SandboxServer,
    server as server_module,
)
# usage_pipeline_tests/fakes.py: pytest puts the tests folder on sys.path
from fakes import EdgeRandom, FakeClock

WEB = httpx.Client(timeout=10)  # one client for the module: building one costs ~30 ms (TLS context)
ITEMS = r"/sandbox-test/(?P<vendor>\w+)/items(?:/(?P<account>[\w-]+))?"


def items(request: SandboxRequest) -> dict:
    """A small JSON payload with nesting, so payload faults have something to bite."""
    return {"account": request.groups["account"], "vendor": request.groups["vendor"], "now": request.now.isoformat(),
            "data": [{"id": 1, "attributes": {"name": "a", "limit": 10}}, {"id": 2, "attributes": {"name": "b", "limit": 20}}]}


def echo(request: SandboxRequest) -> SandboxResponse:
    return SandboxResponse(200, {"json": request.json, "query": request.query})


@pytest.fixture
def server():
    sandbox = SandboxServer()
    for vendor in VENDORS:
        sandbox.route("GET", ITEMS.replace(r"(?P<vendor>\w+)", f"(?P<vendor>{vendor})"), vendor=vendor, handler=items)
    sandbox.route("POST", r"/sandbox-test/workato/query", vendor="workato", handler=echo)
    sandbox.route("GET", r"/sandbox-test/thousandeyes/basic", vendor="thousandeyes", auth="basic", handler=echo)
    sandbox.route("GET", r"/sandbox-test/open", vendor="workato", auth=None, handler=lambda r: "pong")
    with sandbox:
        yield sandbox


def get(server: SandboxServer, path: str, vendor: str = "workato", *, token: str | None = None, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or DEFAULT_TOKENS[vendor]}"}
    return WEB.get(server.base_url + path, headers=headers, **kw)


# --- lifecycle, clock, routing -------------------------------------------------------------------

def test_sandbox_serves_on_a_free_loopback_port_until_stopped():
    sandbox = SandboxServer().start()
    sandbox.route("GET", "/x", vendor="workato", auth=None, handler=lambda r: {"ok": True})
    base_url = sandbox.base_url
    assert base_url.startswith("http://127.0.0.1:") and not base_url.endswith(":0")
    assert WEB.get(base_url + "/x").json() == {"ok": True}
    sandbox.stop()
    with pytest.raises(httpx.ConnectError):
        WEB.get(base_url + "/x")
    with pytest.raises(RuntimeError, match="not started"):
        sandbox.base_url  # noqa: B018


def test_sandbox_clock_is_fixed_until_moved(server):
    assert server.clock.now() == DEFAULT_NOW == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert get(server, "/sandbox-test/workato/items/a").json()["now"] == "2026-11-20T10:00:00+00:00"
    server.clock.advance(timedelta(days=1, hours=2))
    assert get(server, "/sandbox-test/workato/items/a").json()["now"] == "2026-11-21T12:00:00+00:00"
    server.clock.set(datetime(2027, 1, 1, 9, 0, tzinfo=UTC))
    assert server.clock.now() == datetime(2027, 1, 1, 9, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="aware datetime"):
        server.clock.set(datetime(2027, 1, 1))


def test_sandbox_clock_starts_where_asked():
    start = datetime(2026, 3, 8, 1, 30, tzinfo=UTC)
    assert SandboxServer(now=start).clock.now() == start


def test_sandbox_passes_path_groups_query_and_json_to_handlers(server):
    response = WEB.post(server.base_url + "/sandbox-test/workato/query?interval=hour&id=1&id=2",
                          json={"from": "2026-11-01"}, headers={"Authorization": f"Bearer {DEFAULT_TOKENS['workato']}"})
    assert response.json() == {"json": {"from": "2026-11-01"}, "query": {"interval": ["hour"], "id": ["1", "2"]}}
    assert get(server, "/sandbox-test/hcp_terraform/items/acme", "hcp_terraform").json()["account"] == "acme"


def test_sandbox_answers_404_for_unknown_paths(server):
    response = get(server, "/nowhere")
    assert response.status_code == 404 and "no sandbox route" in response.json()["message"]


# --- auth ------------------------------------------------------------------------------------

@pytest.mark.parametrize("vendor, status, body", [
    ("hcp_terraform", 401, {"errors": [{"status": "401", "title": "unauthorized"}]}),
    # the TFE System API documents only 403 for a rejected token (API_CONTRACTS.md §1.4)
    ("terraform_enterprise", 403, {"errors": [{"status": "403", "title": "forbidden"}]}),
    ("workato", 401, {"message": "Unauthorized"}),
    ("thousandeyes", 401, {"error": "invalid_token", "error_description": "Invalid access token"}),
])
def test_sandbox_rejects_bad_tokens_in_the_vendor_style(server, vendor, status, body):
    path = f"/sandbox-test/{vendor}/items/a"
    for response in (WEB.get(server.base_url + path), get(server, path, vendor, token="wrong-token"),
                     get(server, path, vendor, token=DEFAULT_TOKENS["workato" if vendor != "workato" else "hcp_terraform"])):
        assert (response.status_code, response.json()) == (status, body)
    assert get(server, path, vendor).status_code == 200
    assert [r.authorized for r in server.requests_for(vendor)] == [False, False, False, True]


def test_sandbox_checks_basic_auth_email_and_token(server):
    url = server.base_url + "/sandbox-test/thousandeyes/basic"
    token = DEFAULT_TOKENS["thousandeyes"]
    assert WEB.get(url, auth=(server.emails["thousandeyes"], token)).status_code == 200
    assert WEB.get(url, auth=("someone@else.test", token)).status_code == 401
    assert WEB.get(url, auth=(server.emails["thousandeyes"], "wrong")).status_code == 401
    assert WEB.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401  # basic-only route
    assert WEB.get(url, headers={"Authorization": "Basic not-base64!"}).status_code == 401


def test_sandbox_uses_the_tokens_it_is_given():
    token = f"canary-{uuid.uuid4().hex}"
    with SandboxServer(tokens={"workato": token}) as sandbox:
        sandbox.route("GET", "/x", vendor="workato", handler=lambda r: {})
        assert get(sandbox, "/x", token=token).status_code == 200
        assert get(sandbox, "/x", token=DEFAULT_TOKENS["workato"]).status_code == 401
        assert sandbox.env()["WORKATO_TOKEN"] == token
        assert token not in repr(sandbox.requests)


# --- request log -------------------------------------------------------------------------------

def test_sandbox_records_every_request_without_credentials(server):
    WEB.post(server.base_url + "/sandbox-test/workato/query?interval=day", json={"workspace_ids": [3127]},
               headers={"Authorization": f"Bearer {DEFAULT_TOKENS['workato']}", "User-Agent": "usage-pipeline/test"})
    get(server, "/sandbox-test/hcp_terraform/items/acme?page%5Bnumber%5D=2", "hcp_terraform")
    WEB.get(server.base_url + "/sandbox-test/hcp_terraform/items/acme")
    first, second, third = server.requests
    assert (first.method, first.path, first.query, first.json_body, first.vendor, first.status, first.user_agent) == (
        "POST", "/sandbox-test/workato/query", {"interval": ["day"]}, {"workspace_ids": [3127]}, "workato", 200,
        "usage-pipeline/test")
    assert second.query == {"page[number]": ["2"]} and second.authorized and not third.authorized
    assert first.at <= second.at <= third.at <= datetime.now(UTC)
    assert server.requests_for("hcp_terraform") == [second, third]
    assert server.requests_for(path_prefix="/sandbox-test/workato") == [first]
    assert server.requests_for("workato", path_prefix="/sandbox-test/hcp") == []
    recorded = repr(server.requests)
    assert all(token not in recorded for token in DEFAULT_TOKENS.values())


# --- faults ------------------------------------------------------------------------------------

def test_status_fault_answers_in_vendor_style_then_counts_down(server):
    server.faults.add("hcp_terraform", "status", times=2, status=503)
    path = "/sandbox-test/hcp_terraform/items/acme"
    answers = [get(server, path, "hcp_terraform") for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].json() == {"errors": [{"status": "503", "title": "service unavailable"}]}
    assert [r.fault for r in server.requests] == ["status", "status", None]
    assert len(server.faults) == 0


@pytest.mark.parametrize("vendor, body", [
    ("workato", {"message": "Server error"}),
    ("thousandeyes", {"type": "about:blank", "title": "Internal Server Error", "status": 500}),
])
def test_status_fault_bodies_follow_each_vendor(server, vendor, body):
    server.faults.add(vendor, "status")
    answer = get(server, f"/sandbox-test/{vendor}/items/a", vendor).json()
    answer.pop("id", None)  # Workato adds a fresh error id to a 500
    assert answer == body


@pytest.mark.parametrize("retry_after, header", [
    (2, "2"),
    (0, "0"),
    ("Fri, 20 Nov 2026 10:00:05 GMT", "Fri, 20 Nov 2026 10:00:05 GMT"),
    (None, None),
])
def test_rate_limit_fault_sends_each_retry_after_form(server, retry_after, header):
    server.faults.add("workato:/sandbox-test/workato/*", "rate_limit", retry_after=retry_after)
    response = get(server, "/sandbox-test/workato/items/a")
    assert response.status_code == 429 and response.headers.get("Retry-After") == header
    assert response.json() == {"message": "Too Many Requests"}


def test_rate_limit_fault_can_send_a_date_relative_to_real_now(server):
    server.faults.add("workato", "rate_limit", retry_after="date+30")
    when = parsedate_to_datetime(get(server, "/sandbox-test/workato/items/a").headers["Retry-After"])
    assert 25 <= (when - datetime.now(UTC)).total_seconds() <= 31


def test_rate_limit_fault_sends_vendor_reset_headers(server):
    server.faults.add("hcp_terraform", "rate_limit", reset_s=2.5)
    server.faults.add("thousandeyes", "rate_limit", reset_s=10)
    hcp = get(server, "/sandbox-test/hcp_terraform/items/a", "hcp_terraform")
    assert hcp.headers["X-RateLimit-Reset"] == "2.5" and hcp.headers["X-RateLimit-Limit"] == "30"
    assert hcp.json()["errors"][0]["status"] == 429  # an integer, as HCP documents it
    te = get(server, "/sandbox-test/thousandeyes/items/a", "thousandeyes")
    assert 8 <= int(te.headers["X-Organization-Rate-Limit-Reset"]) - time.time() <= 11
    assert te.json()["detail"] == "Exhausted rate limit for the organization"


def test_slow_fault_outlasts_a_short_client_timeout(server):
    server.faults.add("/sandbox-test/workato/items/*", "slow", delay_s=0.5)
    with pytest.raises(httpx.ReadTimeout):
        get(server, "/sandbox-test/workato/items/a", timeout=0.05)
    assert get(server, "/sandbox-test/workato/items/a", timeout=5).status_code == 200
    assert [r.fault for r in server.requests] == ["slow", None]


def test_drop_fault_closes_the_connection_without_an_answer(server):
    server.faults.add("workato", "drop")
    with pytest.raises(httpx.RemoteProtocolError):
        get(server, "/sandbox-test/workato/items/a")
    assert server.requests[0].status is None and server.requests[0].fault == "drop"
    assert get(server, "/sandbox-test/workato/items/a").status_code == 200


def test_html_fault_answers_200_with_an_error_page(server):
    server.faults.add("workato", "html")
    response = get(server, "/sandbox-test/workato/items/a")
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/html"
    assert response.text.startswith("<!DOCTYPE html>")


def test_malformed_json_fault_truncates_the_real_payload(server):
    server.faults.add("workato", "malformed_json")
    response = get(server, "/sandbox-test/workato/items/a")
    assert response.status_code == 200 and response.text.startswith('{"account": "a"')
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_extra_field_fault_adds_an_unknown_field_at_top_or_in_first_items(server):
    server.faults.add("workato", "extra_field", field="brand_new", value=42)
    server.faults.add("workato", "extra_field", field="item_new", where="items")
    top = get(server, "/sandbox-test/workato/items/a").json()
    in_items = get(server, "/sandbox-test/workato/items/a").json()
    assert top["brand_new"] == 42 and "brand_new" not in top["data"][0]
    assert in_items["data"][0]["item_new"] == "unexpected" and "item_new" not in in_items["data"][1]
    assert "item_new" not in get(server, "/sandbox-test/workato/items/a").json()["data"][0]  # the data is untouched


def test_missing_field_fault_removes_a_dotted_path_from_every_item(server):
    server.faults.add("workato", "missing_field", field="data.attributes.limit")
    data = get(server, "/sandbox-test/workato/items/a").json()["data"]
    assert data == [{"id": 1, "attributes": {"name": "a"}}, {"id": 2, "attributes": {"name": "b"}}]
    assert get(server, "/sandbox-test/workato/items/a").json()["data"][0]["attributes"]["limit"] == 10


def test_payload_faults_on_a_non_json_answer_truncate_or_leave_it(server):
    server.faults.add("/sandbox-test/open", "extra_field")
    server.faults.add("/sandbox-test/open", "malformed_json")
    assert WEB.get(server.base_url + "/sandbox-test/open").text == "pong"
    assert WEB.get(server.base_url + "/sandbox-test/open").text == "po"


def test_always_fail_hits_one_tenant_forever_and_spares_the_others(server):
    server.faults.add("hcp_terraform", "always_fail", match="acme-broken")
    statuses = [get(server, f"/sandbox-test/hcp_terraform/items/{org}", "hcp_terraform").status_code
                for org in ("acme-broken", "acme", "acme-broken", "acme-broken", "globex")]
    assert statuses == [500, 200, 500, 500, 200]
    assert len(server.faults) == 1


def test_faults_match_values_in_query_and_json_body(server):
    server.faults.add("workato", "always_fail", match=3127, status=502)
    post = lambda body, q="": WEB.post(server.base_url + "/sandbox-test/workato/query" + q, json=body,  # noqa: E731
                                         headers={"Authorization": f"Bearer {DEFAULT_TOKENS['workato']}"})
    assert post({"workspace_ids": [3127]}).status_code == 502
    assert post({"workspace_ids": [4000]}).status_code == 200
    assert post(None, "?workspace_ids=4000,3127").status_code == 502


def test_faults_target_vendor_path_glob_or_both(server):
    server.faults.add("thousandeyes", "status", times=None, status=500)
    server.faults.add("/sandbox-test/workato/query", "status", times=None, status=503)
    assert get(server, "/sandbox-test/workato/items/a").status_code == 200
    assert get(server, "/sandbox-test/thousandeyes/items/a", "thousandeyes").status_code == 500
    assert WEB.post(server.base_url + "/sandbox-test/workato/query", json={},
                      headers={"Authorization": f"Bearer {DEFAULT_TOKENS['workato']}"}).status_code == 503


@pytest.mark.parametrize("spec, vendor, path_glob, kind, remaining, params", [
    ("thousandeyes:/v7/usage:rate_limit:retry_after=2:times=3", "thousandeyes", "/v7/usage", "rate_limit", 3,
     {"retry_after": 2}),
    ("hcp_terraform:status:status=502", "hcp_terraform", None, "status", 1, {"status": 502}),
    ("/api/v1/*:slow:delay_s=0.5:times=none", None, "/api/v1/*", "slow", None, {"delay_s": 0.5}),
    ("workato:always_fail:match=3127", "workato", None, "always_fail", None, {"match": 3127}),
    ("drop", None, None, "drop", 1, {}),
    ("workato:missing_field:field=data.intervals", "workato", None, "missing_field", 1, {"field": "data.intervals"}),
])
def test_parse_spec_reads_cli_fault_strings(spec, vendor, path_glob, kind, remaining, params):
    fault = SandboxServer().faults.parse_spec(spec)
    assert (fault.vendor, fault.path_glob, fault.kind, fault.remaining, fault.params) == (
        vendor, path_glob, kind, remaining, params)


@pytest.mark.parametrize("spec, message", [
    ("workato:/x:explode", "names no fault kind"),
    ("workato:status:502", "expected key=value"),
    ("workato:missing_field", "needs field="),
    ("workato:always_fail", "needs match="),
])
def test_parse_spec_rejects_bad_strings_clearly(spec, message):
    with pytest.raises(ValueError, match=message):
        SandboxServer().faults.parse_spec(spec)


def test_a_parsed_fault_fires_on_the_wire(server):
    server.faults.parse_spec("workato:/sandbox-test/workato/items/*:status:status=502:times=2")
    assert [get(server, "/sandbox-test/workato/items/a").status_code for _ in range(3)] == [502, 502, 200]


def test_a_failing_handler_is_a_500_not_a_dead_server(server, caplog):
    server.route("GET", "/sandbox-test/boom", vendor="workato", handler=lambda r: 1 / 0)
    assert get(server, "/sandbox-test/boom").status_code == 500
    assert "ZeroDivisionError" in caplog.text
    assert get(server, "/sandbox-test/workato/items/a").status_code == 200


# --- server-side rate limits ---------------------------------------------------------------------

def test_sandbox_holds_tfe_to_one_request_per_second_per_token(server):
    server.rate_clock = clock = FakeClock()
    path = "/sandbox-test/terraform_enterprise/items/lic"
    first, second = get(server, path, "terraform_enterprise"), get(server, path, "terraform_enterprise")
    assert (first.status_code, second.status_code) == (200, 429)
    assert second.json() == {"errors": [{"status": "429", "title": "too many requests"}]}
    clock.advance(1.0)
    assert get(server, path, "terraform_enterprise").status_code == 200
    # other vendors are not limited unless configured
    assert {get(server, "/sandbox-test/workato/items/a").status_code for _ in range(5)} == {200}


def test_sandbox_rate_limits_are_configurable_per_vendor(server):
    server.rate_clock = FakeClock()
    server.rate_limits["workato"] = (1.0, 2)
    del server.rate_limits["terraform_enterprise"]
    assert [get(server, "/sandbox-test/workato/items/a").status_code for _ in range(3)] == [200, 200, 429]
    tfe = [get(server, "/sandbox-test/terraform_enterprise/items/l", "terraform_enterprise") for _ in range(3)]
    assert {r.status_code for r in tfe} == {200}


def test_sandbox_rate_limit_does_not_spend_on_rejected_tokens(server):
    server.rate_clock = FakeClock()
    path = "/sandbox-test/terraform_enterprise/items/lic"
    assert get(server, path, "terraform_enterprise", token="wrong").status_code == 403
    assert get(server, path, "terraform_enterprise").status_code == 200


# --- env and vendor modules ----------------------------------------------------------------------

def test_sandbox_env_points_every_source_at_the_sandbox(server):
    env = server.env()
    for name in ("THOUSANDEYES_BASE_URL", "TFC_BASE_URL", "TFE_SYSTEM_API_URL", "WORKATO_BASE_URL"):
        assert env[name] == server.base_url
    assert env["TFE_SYSTEM_API_TOKEN"] == DEFAULT_TOKENS["terraform_enterprise"]
    assert {env["THOUSANDEYES_TOKEN"], env["TFC_TOKEN"], env["WORKATO_TOKEN"]} == {
        DEFAULT_TOKENS["thousandeyes"], DEFAULT_TOKENS["hcp_terraform"], DEFAULT_TOKENS["workato"]}
    assert env["WORKATO_WORKSPACE_IDS"] and env["WORKATO_TIMEZONE"] and env["THOUSANDEYES_EMAIL"]


def test_sandbox_registers_present_vendor_modules_and_skips_missing_ones(monkeypatch):
    fake = types.ModuleType("usage_pipeline_tests_fake_vendor")
    fake.register = lambda server: server.route("GET", "/fake", vendor="workato", auth=None, handler=lambda r: {"fake": 1})
    fake.env = lambda server: {"WORKATO_WORKSPACE_IDS": "1,2", "FAKE_URL": server.base_url + "/fake"}
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setattr(server_module, "VENDOR_MODULES", (fake.__name__, "usage_pipeline_tests_no_such_vendor"))
    with SandboxServer() as sandbox:
        assert sandbox.vendor_modules == (fake.__name__,)
        assert WEB.get(sandbox.base_url + "/fake").json() == {"fake": 1}
        assert sandbox.env()["WORKATO_WORKSPACE_IDS"] == "1,2"
        assert sandbox.env()["FAKE_URL"] == sandbox.base_url + "/fake"


def test_sandbox_does_not_hide_a_vendor_module_that_fails_to_import(monkeypatch, tmp_path):
    (tmp_path / "usage_pipeline_tests_broken_vendor.py").write_text("import a_dependency_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(server_module, "VENDOR_MODULES", ("usage_pipeline_tests_broken_vendor",))
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_not_installed"):
        SandboxServer()


def test_sandbox_is_quiet_unless_verbose(capfd):
    for verbose in (False, True):
        with SandboxServer(verbose=verbose) as sandbox:
            sandbox.faults.add("/dropped", "drop")
            sandbox.route("GET", "/dropped", vendor="workato", auth=None, handler=lambda r: {})
            WEB.get(sandbox.base_url + "/nowhere")
            with pytest.raises(httpx.RemoteProtocolError):
                WEB.get(sandbox.base_url + "/dropped")
        stderr = capfd.readouterr().err
        assert ('"GET /nowhere HTTP/1.1" 404' in stderr) is verbose


# --- the real Session against the sandbox ------------------------------------------------------

def sandbox_session(server: SandboxServer, clock: FakeClock, vendor: str = "workato", **kw) -> Session:
    kw.setdefault("rng", EdgeRandom("low"))
    return Session.bearer(vendor, server.base_url, kw.pop("token", DEFAULT_TOKENS[vendor]), clock=clock, **kw)


def test_session_survives_429_500_and_a_dropped_connection(server):
    server.faults.add("workato", "rate_limit", retry_after=2)
    server.faults.add("workato", "status", status=500)
    server.faults.add("workato", "drop")
    clock = FakeClock()
    fetched = sandbox_session(server, clock).get("/sandbox-test/workato/items/3127", endpoint="items", account_id="3127")
    assert fetched.json()["account"] == "3127"
    assert [r.status for r in server.requests] == [429, 500, None, 200]
    assert clock.sleeps == [2.0, 1.0, 1.0]
    assert (fetched.stats.requests, fetched.stats.retries, fetched.stats.wait_s) == (4, 3, 4.0)
    assert server.requests[-1].user_agent.startswith("usage-pipeline/")


def test_session_retries_past_a_slow_answer(server):
    server.faults.add("workato", "slow", delay_s=0.5)
    fetched = sandbox_session(server, FakeClock(), timeout=httpx.Timeout(0.1)).get(
        "/sandbox-test/workato/items/a", endpoint="items", account_id="a")
    assert fetched.status == 200 and fetched.stats.retries == 1


def test_session_lands_an_html_page_then_fails_clearly_on_it(server):
    server.faults.add("workato", "html")
    fetched = sandbox_session(server, FakeClock()).get("/sandbox-test/workato/items/acme", endpoint="items",
                                                       account_id="acme")
    assert fetched.status == 200 and fetched.body.startswith(b"<!DOCTYPE html>")
    with pytest.raises(errors.PayloadError) as raised:
        fetched.json()
    message = str(raised.value)
    assert message.startswith(f"workato [account acme]: items: expected JSON from GET {server.base_url}/sandbox-test/")
    assert "an HTML page" in message and "first bytes: '<!DOCTYPE html>" in message
    assert DEFAULT_TOKENS["workato"] not in message


def test_session_fails_clearly_when_one_tenant_always_fails(server):
    server.faults.add("workato", "always_fail", match="broken", status=503)
    session = sandbox_session(server, FakeClock(), policy=RetryPolicy(max_attempts=3))
    with pytest.raises(errors.RetryBudgetExceeded, match=r"workato \[account broken\]: items: gave up .* 3 attempts"):
        session.get("/sandbox-test/workato/items/broken", endpoint="items", account_id="broken")
    assert session.get("/sandbox-test/workato/items/fine", endpoint="items", account_id="fine").status == 200


def test_session_names_the_variable_when_the_sandbox_rejects_its_token(server):
    token = f"canary-{uuid.uuid4().hex}"
    session = sandbox_session(server, FakeClock(), "terraform_enterprise", token=token)
    with pytest.raises(errors.AuthError) as raised:
        session.get("/sandbox-test/terraform_enterprise/items/lic", endpoint="usage_bundle", account_id="lic")
    assert "set TFE_SYSTEM_API_TOKEN" in str(raised.value) and token not in str(raised.value)
    assert len(server.requests) == 1


def test_session_limiter_keeps_tfe_under_the_sandbox_limit(server):
    server.rate_clock = clock = FakeClock()  # one fake clock on both sides of the wire
    session = sandbox_session(server, clock, "terraform_enterprise")
    waits = [session.get("/sandbox-test/terraform_enterprise/items/lic", endpoint="usage_bundle",
                         account_id="lic").stats.wait_s for _ in range(3)]
    spacing = 1 / 0.95  # the client stays just under the server's 1 request/s
    assert waits == [0.0, pytest.approx(spacing), pytest.approx(spacing)]
    assert [r.status for r in server.requests] == [200, 200, 200]


def test_session_without_a_limiter_recovers_from_the_sandbox_429(server):
    server.rate_clock = clock = FakeClock()
    session = sandbox_session(server, clock, "terraform_enterprise", limiter=RateLimiter(1e6, 1e6, clock=clock))
    for _ in range(2):
        session.get("/sandbox-test/terraform_enterprise/items/lic", endpoint="usage_bundle", account_id="lic")
    assert [r.status for r in server.requests] == [200, 429, 200]
    assert session.stats.retries == 1 and clock.sleeps == [1.0]
