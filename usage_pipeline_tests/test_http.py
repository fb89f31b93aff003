"""The HTTP layer (rung 2): retries, waits, limiter, pagination, payload errors and redaction.

Every test talks to `httpx.MockTransport` and a `FakeClock`: nothing touches the network and
nothing sleeps for real. Each wait the layer takes is asserted through the clock.
"""

from __future__ import annotations

import io
import logging
import random
import threading
import uuid
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest

from usage_pipeline import __version__, errors, http
from usage_pipeline.http import CallStats, RateLimiter, RetryPolicy, Session
# usage_pipeline_tests/fakes.py: pytest puts the tests folder on sys.path
from fakes import EdgeRandom, FakeClock, ScriptedTransport

BASE = "https://api.vendor.test"


@pytest.fixture
def token() -> str:
    """A unique canary token: any test that finds it in an output has found a leak."""
    return f"canary-{uuid.uuid4().hex}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def session(transport: httpx.MockTransport, clock: FakeClock, token: str, *, vendor: str = "workato",
            limited: bool = False, **kw) -> Session:
    """A bearer session on the mock transport; the limiter is out of the way unless `limited`."""
    if not limited:
        kw.setdefault("limiter", RateLimiter(1e6, 1e6, clock=clock))
    kw.setdefault("rng", EdgeRandom("low"))
    return Session.bearer(vendor, BASE, token, clock=clock, transport=transport, **kw)


def ok(payload: object = None, **kw) -> httpx.Response:
    return httpx.Response(200, json={"ok": True} if payload is None else payload, **kw)


def jsonapi_error(status: int, title: str = "error") -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"status": str(status), "title": title}]})


# --- retries and waits -------------------------------------------------------------------------

@pytest.mark.parametrize("headers, expected_wait_s", [
    # Retry-After in seconds is honoured as given
    ({"Retry-After": "3"}, 3.0),
    # fractional seconds are accepted too
    ({"Retry-After": "2.5"}, 2.5),
    # Retry-After: 0 still backs off the base delay: no retry storm
    ({"Retry-After": "0"}, 1.0),
    # a negative value is treated like 0
    ({"Retry-After": "-4"}, 1.0),
    # an unreadable Retry-After falls back to our own backoff (attempt 1: the base delay)
    ({"Retry-After": "soon"}, 1.0),
    # HCP Terraform: X-RateLimit-Reset is a float number of seconds to wait
    ({"X-RateLimit-Reset": "4.25"}, 4.25),
    # Retry-After wins over a vendor hint when both are present
    ({"Retry-After": "6", "X-RateLimit-Reset": "2"}, 6.0),
    # server hints are not capped by max_delay_s (30): the budget decides instead
    ({"Retry-After": "45"}, 45.0),
])
def test_session_waits_what_the_server_asks_on_429(clock, token, headers, expected_wait_s):
    transport = ScriptedTransport(httpx.Response(429, headers=headers), ok())
    fetched = session(transport, clock, token).get("/usage", endpoint="usage", account_id="acme")
    assert fetched.status == 200
    assert clock.sleeps == [expected_wait_s]
    assert fetched.stats == CallStats(requests=2, retries=1, wait_s=expected_wait_s)


def test_session_reads_retry_after_as_http_date(clock, token):
    when = format_datetime(clock.now_utc() + timedelta(seconds=7), usegmt=True)
    transport = ScriptedTransport(httpx.Response(429, headers={"Retry-After": when}), ok())
    session(transport, clock, token).get("/usage", endpoint="usage", account_id="acme")
    assert clock.sleeps == [7.0]


def test_session_backs_off_the_base_delay_on_a_past_retry_after_date(clock, token):
    when = format_datetime(clock.now_utc() - timedelta(hours=1), usegmt=True)
    transport = ScriptedTransport(httpx.Response(429, headers={"Retry-After": when}), ok())
    session(transport, clock, token).get("/usage", endpoint="usage", account_id="acme")
    assert clock.sleeps == [1.0]


def test_session_waits_until_thousandeyes_epoch_reset(clock, token):
    reset = int(clock.now_utc().timestamp()) + 12
    transport = ScriptedTransport(httpx.Response(429, headers={"X-Organization-Rate-Limit-Reset": str(reset)}), ok())
    session(transport, clock, token, vendor="thousandeyes").get("/v7/usage", endpoint="usage", account_id="default")
    assert clock.sleeps == [12.0]


def test_session_adds_hint_jitter_within_its_bound(clock, token):
    transport = ScriptedTransport(httpx.Response(429, headers={"Retry-After": "3"}), ok())
    session(transport, clock, token, rng=EdgeRandom("high")).get("/usage", endpoint="usage", account_id="acme")
    assert clock.sleeps == [3.0 + RetryPolicy().hint_jitter_s]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_session_retries_429_and_5xx(clock, token, status):
    transport = ScriptedTransport(jsonapi_error(status), ok())
    fetched = session(transport, clock, token).get("/usage", endpoint="usage", account_id="acme")
    assert fetched.status == 200 and len(transport.requests) == 2
    assert fetched.stats.retries == 1


@pytest.mark.parametrize("exc", [
    httpx.ConnectError("connection refused"),
    httpx.ConnectTimeout("connect timed out"),
    httpx.ReadTimeout("read timed out"),
    httpx.ReadError("connection reset by peer"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
])
def test_session_retries_transport_errors(clock, token, exc):
    transport = ScriptedTransport(exc, ok())
    fetched = session(transport, clock, token).get("/usage", endpoint="usage", account_id="acme")
    assert fetched.status == 200 and fetched.stats.retries == 1 and clock.sleeps == [1.0]


@pytest.mark.parametrize("status, error_type", [
    (400, errors.HttpError),
    (401, errors.AuthError),
    (403, errors.AuthError),
    (404, errors.NotFoundError),
    (422, errors.HttpError),
    (301, errors.HttpError),  # ThousandEyes answers an unknown API version with a redirect
])
def test_session_never_retries_client_errors(clock, token, status, error_type):
    transport = ScriptedTransport(jsonapi_error(status), ok())
    s = session(transport, clock, token)
    with pytest.raises(error_type) as raised:
        s.get("/usage", endpoint="usage", account_id="acme")
    assert type(raised.value) is error_type
    assert raised.value.status == status and len(transport.requests) == 1 and clock.sleeps == []
    assert s.stats == CallStats(requests=1, retries=0, wait_s=0.0)


def test_session_reports_a_redirect_without_following_it(clock, token):
    transport = ScriptedTransport(httpx.Response(301, headers={"Location": f"https://elsewhere.test/v8?access_token={token}"}))
    with pytest.raises(errors.HttpError, match=r"HTTP 301 .*redirected to https://elsewhere.test/v8\?access_token=\*\*\*"):
        session(transport, clock, token).get("/v6/usage.json", endpoint="usage", account_id="-")
    assert len(transport.requests) == 1


def test_session_returns_a_404_listed_in_accept_status(clock, token):
    transport = ScriptedTransport(jsonapi_error(404, "not found"))
    fetched = session(transport, clock, token).get("/org/x", endpoint="org", account_id="x", accept_status=(200, 404))
    assert fetched.status == 404


def test_session_returns_any_2xx(clock, token):
    transport = ScriptedTransport(httpx.Response(204))
    assert session(transport, clock, token).get("/ping", endpoint="ping", account_id="-").status == 204


def test_session_gives_up_after_max_attempts(clock, token):
    transport = ScriptedTransport(*[jsonapi_error(503, "unavailable")] * 4)
    s = session(transport, clock, token, policy=RetryPolicy(max_attempts=4))
    with pytest.raises(errors.RetryBudgetExceeded) as raised:
        s.get("/usage", endpoint="usage", account_id="acme")
    message = str(raised.value)
    assert message.startswith("workato [account acme]: usage: gave up on GET https://api.vendor.test/usage")
    assert "after 4 attempts" in message and "HTTP 503: unavailable" in message
    assert raised.value.status == 503
    assert len(transport.requests) == 4 and len(clock.sleeps) == 3
    assert s.stats == CallStats(requests=4, retries=3, wait_s=sum(clock.sleeps))


def test_session_gives_up_when_the_next_wait_passes_the_budget(clock, token):
    transport = ScriptedTransport(*[jsonapi_error(500)] * 3)
    policy = RetryPolicy(budget_s=10, base_delay_s=4, max_attempts=10)
    with pytest.raises(errors.RetryBudgetExceeded, match="would pass the 10 s budget"):
        session(transport, clock, token, policy=policy).get("/usage", endpoint="usage", account_id="acme")
    assert clock.sleeps == [4.0, 4.0] and len(transport.requests) == 3


def test_session_does_not_wait_for_a_retry_after_beyond_the_budget(clock, token):
    transport = ScriptedTransport(httpx.Response(429, headers={"Retry-After": "3600"}))
    with pytest.raises(errors.RetryBudgetExceeded, match=r"next wait \(3600.0 s\)"):
        session(transport, clock, token).get("/usage", endpoint="usage", account_id="acme")
    assert clock.sleeps == []


def test_session_raises_transport_error_without_the_token(clock, token):
    leaky = httpx.ConnectError(f"cannot reach https://api.vendor.test/?access_token={token}")
    transport = ScriptedTransport(*[leaky] * 3)
    with pytest.raises(errors.TransportError) as raised:
        session(transport, clock, token, policy=RetryPolicy(max_attempts=3)).get(
            "/usage", endpoint="usage", account_id="acme")
    assert "ConnectError" in str(raised.value) and "access_token=***" in str(raised.value)
    assert token not in str(raised.value) and token not in repr(raised.value)
    assert raised.value.__cause__ is None and raised.value.__context__ is None  # no httpx exception chained


# --- jitter --------------------------------------------------------------------------------------

@pytest.mark.parametrize("attempt, low, high", [(1, 1.0, 1.0), (2, 1.0, 2.0), (3, 1.0, 4.0), (5, 1.0, 16.0), (9, 1.0, 30.0)])
def test_retry_policy_full_jitter_stays_between_base_and_capped_exponential(attempt, low, high):
    policy = RetryPolicy(base_delay_s=1, max_delay_s=30)
    assert policy.delay_s(attempt, hint_s=None, previous_s=1, rng=EdgeRandom("low")) == low
    assert policy.delay_s(attempt, hint_s=None, previous_s=1, rng=EdgeRandom("high")) == high
    rng = random.Random(attempt)
    assert all(low <= policy.delay_s(attempt, hint_s=None, previous_s=1, rng=rng) <= high for _ in range(500))


def test_retry_policy_decorrelated_jitter_stays_between_base_and_three_times_previous():
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=20, jitter="decorrelated")
    rng, previous = random.Random(7), 0.5
    for attempt in range(1, 200):
        delay = policy.delay_s(attempt, hint_s=None, previous_s=previous, rng=rng)
        assert 0.5 <= delay <= min(20, 3 * previous)
        previous = delay
    assert policy.delay_s(3, hint_s=None, previous_s=100, rng=EdgeRandom("high")) == 20


def test_session_full_jitter_sleeps_grow_within_bounds(clock, token):
    transport = ScriptedTransport(*[jsonapi_error(502)] * 5, ok())
    session(transport, clock, token, rng=EdgeRandom("high"), policy=RetryPolicy(max_attempts=6)).get(
        "/usage", endpoint="usage", account_id="acme")
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]


# --- authentication errors -----------------------------------------------------------------------

@pytest.mark.parametrize("status", [401, 403])
def test_auth_error_names_the_variable_and_hint_but_not_the_token(clock, token, status):
    transport = ScriptedTransport(httpx.Response(status, json={"errors": [{"status": status, "title": "unauthorized",
                                                                           "detail": f"bad token {token}"}]}))
    s = session(transport, clock, token, vendor="terraform_enterprise")
    with pytest.raises(errors.AuthError) as raised:
        s.get("/api/v1/usage/bundle", endpoint="usage_bundle", account_id="lic-1")
    message = str(raised.value)
    assert "token rejected or expired" in message and "set TFE_SYSTEM_API_TOKEN" in message
    assert "expire after 30 days by default" in message
    assert "unauthorized bad token ***" in message
    assert token not in message and token not in repr(raised.value) and token not in raised.value.url


def test_auth_error_uses_the_given_token_variable(clock, token):
    transport = ScriptedTransport(httpx.Response(401, json={"message": "Unauthorized"}))
    s = session(transport, clock, token, token_variable="MY_WORKATO_TOKEN")
    with pytest.raises(errors.AuthError, match="set MY_WORKATO_TOKEN. HTTP 401 .*: Unauthorized"):
        s.get("/usage", endpoint="usage", account_id="3127")


@pytest.mark.parametrize("body, expected", [
    # JSON:API with a string status
    (b'{"errors":[{"status":"404","title":"not found","detail":"org missing"}]}', "not found org missing"),
    # HCP's 429: status is an int
    (b'{"errors":[{"detail":"You have exceeded the API\'s rate limit.","status":429,"title":"Too many requests"}]}',
     "Too many requests You have exceeded the API's rate limit."),
    # some TFE endpoints: errors are plain strings
    (b'{"errors":["first problem","second problem"]}', "first problem; second problem"),
    # Workato
    (b'{"message":"Server error","id":"3f2a"}', "Server error; id 3f2a"),
    # ThousandEyes problem+json
    (b'{"type":"about:blank","title":"Forbidden","status":403,"detail":"missing permission"}',
     "Forbidden; missing permission"),
    # ThousandEyes OAuth style
    (b'{"error":"invalid_token","error_description":"Access token expired"}', "invalid_token; Access token expired"),
    # ThousandEyes generic
    (b'{"timestamp":1679677853573,"httpStatus":"PRECONDITION_FAILED","errors":["too many integrations"]}',
     "too many integrations"),
    # a JSON string
    (b'"pong"', "pong"),
    # not JSON at all: a short sanitized preview
    (b"<html>\n<h1>502 Bad Gateway</h1></html>", "body '<html> <h1>502 Bad Gateway</h1></html>'"),
    (b"", "empty body"),
    (b"{}", "no message"),
])
def test_error_message_reads_every_vendor_shape(body, expected):
    assert http.error_message(body) == expected


def test_error_message_is_short_and_redacted(token):
    http.register_secret(token)
    body = ('{"errors":[{"title":"x","detail":"' + "y" * 5000 + token + '"}]}').encode()
    message = http.error_message(body)
    assert len(message) <= 200 and message.endswith("…") and token not in message
    assert token not in http.error_message(f'{{"message": "token {token} is bad"}}'.encode())


# --- the limiter ---------------------------------------------------------------------------------

def test_rate_limiter_spaces_requests_at_its_rate(clock):
    limiter = RateLimiter(1.0, 1, clock=clock)
    assert [limiter.acquire() for _ in range(5)] == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert clock.slept_s == 4.0


def test_rate_limiter_allows_its_burst_then_its_rate(clock):
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.acquire() for _ in range(6)] == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5]


def test_rate_limiter_holds_its_rate_under_a_burst(clock):
    rate, burst = 4.0, 5
    limiter, start, granted_at = RateLimiter(rate, burst, clock=clock), clock.monotonic(), []
    for _ in range(100):
        limiter.acquire()
        granted_at.append(clock.monotonic() - start)
    for count, at in enumerate(granted_at, start=1):
        assert count <= burst + rate * at + 1e-9
    assert granted_at[-1] == pytest.approx((100 - burst) / rate)


def test_rate_limiter_queues_concurrent_callers():
    frozen = FakeClock(advance_on_sleep=False)  # every caller arrives at the same instant
    limiter, waits = RateLimiter(1.0, 1, clock=frozen), []
    threads = [threading.Thread(target=lambda: waits.append(limiter.acquire())) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_rate_limiter_try_acquire_refills_with_time(clock):
    limiter = RateLimiter(1.0, 1, clock=clock)
    assert limiter.try_acquire() and not limiter.try_acquire()
    clock.advance(1.0)
    assert limiter.try_acquire()


def test_limiter_for_shares_one_limiter_per_token(clock, token):
    key = http.limiter_key("terraform_enterprise", token)
    assert token not in key and len(key.split(":")[1]) == 12
    assert http.limiter_for(key, 1, 1, clock=clock) is http.limiter_for(key, 5, 5, clock=clock)
    first = Session.bearer("terraform_enterprise", BASE, token, clock=clock, transport=ScriptedTransport())
    second = Session.bearer("terraform_enterprise", BASE, token, clock=clock, transport=ScriptedTransport())
    other = Session.bearer("terraform_enterprise", BASE, token + "x", clock=clock, transport=ScriptedTransport())
    assert first.limiter is second.limiter and first.limiter is not other.limiter
    assert (first.limiter.rate_per_s, first.limiter.burst) == (1.0, 1)


@pytest.mark.parametrize("vendor, rate_per_s, burst", [
    # TFE: just under 1/s so the server's arrival jitter never sees two calls in one second
    ("terraform_enterprise", 0.95, 1), ("hcp_terraform", 30.0, 10), ("thousandeyes", 4.0, 4), ("workato", 1000 / 60, 10),
])
def test_session_default_limiter_follows_the_vendor_contract(clock, token, vendor, rate_per_s, burst):
    s = Session.bearer(vendor, BASE, token, clock=clock, transport=ScriptedTransport())
    assert (s.limiter.rate_per_s, s.limiter.burst) == (pytest.approx(rate_per_s), burst)


def test_session_records_limiter_waits(clock, token):
    transport = ScriptedTransport(ok(), ok(), ok())
    s = session(transport, clock, token, vendor="terraform_enterprise", limited=True)
    waits = [s.get("/api/v1/ping", endpoint="ping", account_id="-").stats.wait_s for _ in range(3)]
    spacing = 1 / 0.95  # one token per 1/0.95 s, burst 1
    assert waits == [0.0, pytest.approx(spacing), pytest.approx(spacing)]
    assert s.stats.requests == 3 and s.stats.retries == 0 and s.stats.wait_s == pytest.approx(2 * spacing)


def test_session_adapts_the_limiter_to_hcp_rate_limit_header(clock, token):
    transport = ScriptedTransport(ok(headers={"X-RateLimit-Limit": "30"}))
    s = session(transport, clock, token, vendor="hcp_terraform", limited=True)
    s.get("/api/v2/ping", endpoint="ping", account_id="-")
    assert (s.limiter.rate_per_s, s.limiter.burst) == (pytest.approx(19.8), 9)


# --- pagination ----------------------------------------------------------------------------------

def jsonapi_pages(total: int, *, with_meta: bool = True):
    def answer(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["page[number]"])
        next_number = number + 1 if number < total else None
        doc: dict = {"data": [{"id": f"org-{number}", "type": "organizations"}]}
        if with_meta:
            doc["meta"] = {"pagination": {"current-page": number, "next-page": next_number, "total-pages": total}}
        else:
            doc["links"] = {"next": f"{BASE}/api/v2/organizations?page%5Bnumber%5D={next_number}&page%5Bsize%5D=100"
                            if next_number else None}
        return httpx.Response(200, json=doc)
    return answer


@pytest.mark.parametrize("with_meta", [True, False])
def test_paginate_jsonapi_yields_every_page_with_page_params(clock, token, with_meta):
    transport = ScriptedTransport(*[jsonapi_pages(3, with_meta=with_meta)] * 3)
    pages = list(session(transport, clock, token, vendor="hcp_terraform").paginate_jsonapi(
        "/api/v2/organizations", endpoint="organizations", account_id="-", params={"q": "acme"}))
    assert [p.json()["data"][0]["id"] for p in pages] == ["org-1", "org-2", "org-3"]
    assert [dict(r.url.params) for r in transport.requests] == [
        {"q": "acme", "page[number]": str(n), "page[size]": "100"} for n in (1, 2, 3)]
    assert pages[1].request["params"] == {"q": "acme", "page[number]": "2", "page[size]": "100"}


def test_paginate_jsonapi_yields_a_page_before_asking_for_the_next(clock, token):
    transport = ScriptedTransport(*[jsonapi_pages(3)] * 3)
    pages = session(transport, clock, token).paginate_jsonapi("/orgs", endpoint="organizations", account_id="-")
    next(pages)
    assert len(transport.requests) == 1


def test_paginate_jsonapi_stops_when_next_page_loops(clock, token):
    looping = ok({"data": [], "meta": {"pagination": {"current-page": 1, "next-page": 1}}})
    transport = ScriptedTransport(looping)
    pages = list(session(transport, clock, token).paginate_jsonapi("/orgs", endpoint="organizations", account_id="-"))
    assert len(pages) == 1 and len(transport.requests) == 1


def test_paginate_jsonapi_lands_an_html_page_then_fails_on_it(clock, token):
    transport = ScriptedTransport(jsonapi_pages(3), httpx.Response(200, html="<html>maintenance</html>"))
    pages = session(transport, clock, token).paginate_jsonapi("/orgs", endpoint="organizations", account_id="-")
    next(pages)
    html_page = next(pages)
    assert html_page.body == b"<html>maintenance</html>"
    with pytest.raises(errors.PayloadError, match="HTML page"):
        next(pages)


def test_pagination_never_sends_the_token_to_another_host(clock, token):
    transport = ScriptedTransport(ok({"data": [], "links": {"next": "https://evil.test/steal"}}))
    pages = session(transport, clock, token).paginate_jsonapi("/orgs", endpoint="organizations", account_id="-")
    next(pages)
    with pytest.raises(errors.PayloadError, match="refusing to follow https://evil.test/steal"):
        next(pages)
    assert len(transport.requests) == 1


def cursor_pages(links: dict[str | None, str | None]):
    def answer(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        following = links[cursor]
        doc = {"breakdowns": [{"cursor": cursor}], "_links": {"self": {"href": str(request.url)}}}
        if following:
            doc["_links"]["next"] = {"href": f"{BASE}/v7/usage/units/tests?aid=1&cursor={following}"}
        return httpx.Response(200, json=doc)
    return answer


def test_paginate_cursor_follows_next_links_until_missing(clock, token):
    transport = ScriptedTransport(*[cursor_pages({None: "c1", "c1": "c2", "c2": None})] * 3)
    pages = list(session(transport, clock, token, vendor="thousandeyes").paginate_cursor(
        "/v7/usage/units/tests", endpoint="units_tests", account_id="1", params={"aid": "1"}))
    assert [p.json()["breakdowns"][0]["cursor"] for p in pages] == [None, "c1", "c2"]
    assert [r.url.params.get("cursor") for r in transport.requests] == [None, "c1", "c2"]


def test_paginate_cursor_stops_when_the_cursor_repeats(clock, token):
    transport = ScriptedTransport(*[cursor_pages({None: "c1", "c1": "c1"})] * 2)
    pages = list(session(transport, clock, token).paginate_cursor("/v7/usage/units/tests", endpoint="u",
                                                                  account_id="1"))
    assert len(pages) == 2 and len(transport.requests) == 2


# --- payloads and what a Fetched carries ---------------------------------------------------------

@pytest.mark.parametrize("body, content_type, what, first_bytes", [
    (b"<!DOCTYPE html>\n<html><body>Bad gateway</body></html>", "text/html", "an HTML page",
     "'<!DOCTYPE html> <html><body>Bad gateway</body></html>'"),
    (b'{"usage": {"quota": ', "application/json", "malformed JSON", "'{\"usage\": {\"quota\":'"),
    (b"\x00\x01binary\xff", "application/octet-stream", "malformed JSON", "'binary\ufffd'"),
])
def test_fetched_json_names_vendor_account_url_and_first_bytes(clock, token, body, content_type, what, first_bytes):
    transport = ScriptedTransport(httpx.Response(200, content=body, headers={"Content-Type": content_type}))
    fetched = session(transport, clock, token, vendor="thousandeyes").get(
        "/v7/usage", endpoint="usage", account_id="1234", params={"aid": "1234", "access_token": token})
    assert fetched.body == body  # returned byte-exact, so it is landed before anything parses it
    with pytest.raises(errors.PayloadError) as raised:
        fetched.json()
    message = str(raised.value)
    assert message.startswith("thousandeyes [account 1234]: usage: expected JSON from GET ")
    assert "https://api.vendor.test/v7/usage?aid=1234&access_token=***" in message
    assert what in message and f"first bytes: {first_bytes}" in message
    assert token not in message


def test_fetched_json_preview_is_short_and_redacted(clock, token):
    body = f"<html>{token}{'x' * 500}</html>".encode()
    fetched = session(ScriptedTransport(httpx.Response(200, content=body)), clock, token).get(
        "/u", endpoint="u", account_id="a")
    with pytest.raises(errors.PayloadError) as raised:
        fetched.json()
    assert token not in str(raised.value) and "***" in str(raised.value) and "x" * 100 not in str(raised.value)


def test_fetched_carries_request_and_safe_headers_but_no_secrets(clock, token):
    response = ok(headers={"X-RateLimit-Limit": "30", "Set-Cookie": "session=abc", "X-Secret-Thing": "s"})
    transport = ScriptedTransport(response)
    fetched = session(transport, clock, token).post_json(
        "/api/v2/managed_users/statistics/usage", endpoint="usage", account_id="3127",
        json={"from": "2026-11-01T00:00:00-08:00"}, record={"timezone": "America/Los_Angeles"})
    assert fetched.request == {"method": "POST", "path": "/api/v2/managed_users/statistics/usage", "params": {},
                               "json": {"from": "2026-11-01T00:00:00-08:00"}, "timezone": "America/Los_Angeles"}
    assert fetched.headers == {"content-type": "application/json", "content-length": "11", "x-ratelimit-limit": "30"}
    assert fetched.fetched_at == clock.now_utc()
    assert fetched.metadata() == {"url": f"{BASE}/api/v2/managed_users/statistics/usage", "status": 200,
                                  "requests": 1, "retries": 0, "rate_limit_wait_s": 0.0, "bytes": 11}
    assert transport.requests[0].read() == b'{"from":"2026-11-01T00:00:00-08:00"}'
    assert token not in repr(fetched) and "body=" not in repr(fetched)


def test_session_sends_user_agent_auth_and_explicit_timeouts(clock, token):
    transport = ScriptedTransport(ok())
    session(transport, clock, token).get("/usage", endpoint="usage", account_id="acme")
    sent = transport.requests[0]
    assert sent.headers["User-Agent"] == f"usage-pipeline/{__version__}"
    assert sent.headers["Authorization"] == f"Bearer {token}"
    assert sent.extensions["timeout"] == {"connect": 10.0, "read": 75.0, "write": 30.0, "pool": 10.0}


def test_session_basic_auth_registers_the_encoded_form(clock, token):
    transport = ScriptedTransport(ok())
    s = Session.basic("thousandeyes", BASE, "ops@example.com", token, clock=clock, transport=transport)
    s.get("/v6/usage.json", endpoint="usage", account_id="-")
    encoded = transport.requests[0].headers["Authorization"].removeprefix("Basic ")
    assert http.redact(f"header was {encoded}") == "header was ***"
    assert token not in repr(s) and encoded not in repr(s)


def test_session_retries_a_post_query_with_the_same_body(clock, token):
    transport = ScriptedTransport(httpx.Response(503), ok())
    fetched = session(transport, clock, token).post_json("/q", endpoint="usage", account_id="1", json={"a": 1})
    assert fetched.stats.retries == 1
    assert [r.read() for r in transport.requests] == [b'{"a":1}', b'{"a":1}']


def test_session_stats_add_up_over_calls_including_failures(clock, token):
    transport = ScriptedTransport(httpx.Response(500), ok(), httpx.Response(404))
    s = session(transport, clock, token)
    s.get("/a", endpoint="a", account_id="1")
    with pytest.raises(errors.NotFoundError):
        s.get("/b", endpoint="b", account_id="1")
    assert s.stats == CallStats(requests=3, retries=1, wait_s=1.0)
    assert str(s.stats) == "3 requests, 1 retries, 1.0 s waited"


@pytest.mark.parametrize("base_url, ok_", [
    ("http://127.0.0.1:8080", True), ("http://localhost:1", True), ("http://[::1]:1", True),
    ("https://tfe.example.com:8443", True), ("http://tfe.example.com", False), ("ftp://x.test", False),
])
def test_session_accepts_plain_http_only_on_loopback(clock, token, base_url, ok_):
    make = lambda: Session.bearer("terraform_enterprise", base_url, token, clock=clock, transport=ScriptedTransport())  # noqa: E731
    if ok_:
        make()
    else:
        with pytest.raises(errors.ConfigError, match="plain http:// only on loopback"):
            make()


def test_session_refuses_an_empty_token_naming_the_variable(clock):
    with pytest.raises(errors.ConfigError, match="TFC_TOKEN is empty"):
        Session.bearer("hcp_terraform", BASE, "", clock=clock)


def test_session_and_limiter_reprs_hide_the_token(clock, token):
    s = session(ScriptedTransport(), clock, token, limited=True)
    assert token not in repr(s) and token not in repr(s.limiter) and token not in repr(s.__dict__)


# --- redaction -----------------------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("https://h.test/v7/usage?aid=1&access_token=abc&expand=test", "https://h.test/v7/usage?aid=1&access_token=***&expand=test"),
    ("https://h.test/x?api_key=k1&page%5Bnumber%5D=2", "https://h.test/x?api_key=***&page%5Bnumber%5D=2"),
    ("https://h.test/x?X-Amz-Signature=deadbeef&client_secret=s", "https://h.test/x?X-Amz-Signature=***&client_secret=***"),
    ("https://h.test/x?password=p#frag", "https://h.test/x?password=***#frag"),
    ("https://user:hunter2@h.test/x", "https://user:***@h.test/x"),
    ("https://h.test/v7/usage/units/tests?cursor=abc", "https://h.test/v7/usage/units/tests?cursor=abc"),
])
def test_redact_url_masks_secret_params_and_passwords(url, expected):
    assert http.redact_url(url) == expected


def test_redact_masks_registered_secrets_and_their_encodings(token):
    http.register_secret(token + "/+")
    assert http.redact(f"a {token}/+ b") == "a *** b"
    assert http.redact(f"q={token}%2F%2B") == "q=***"
    assert http.redact("Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123") == "Authorization: Bearer ***"
    assert http.redact("a basic plan") == "a basic plan"


def test_secret_redacting_filter_cleans_messages_args_and_tracebacks(token):
    http.register_secret(token)
    stream, logger = io.StringIO(), logging.getLogger(f"test.redaction.{uuid.uuid4().hex}")
    handler = logging.StreamHandler(stream)
    handler.addFilter(http.SecretRedactingFilter())
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("token is %s", token)
    try:
        raise RuntimeError(f"boom with {token}")
    except RuntimeError:
        logger.exception("failed calling https://h.test/?token=%s", token)
    text = stream.getvalue()
    assert token not in text
    assert "token is ***" in text and "RuntimeError: boom with ***" in text and "?token=***" in text


def test_install_log_redaction_covers_loggers_and_handlers_once():
    name = f"test.install.{uuid.uuid4().hex}"
    logger, handler = logging.getLogger(name), logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    http.install_log_redaction(name)
    http.install_log_redaction(name)
    assert [type(f) for f in logger.filters] == [http.SecretRedactingFilter]
    assert [type(f) for f in handler.filters] == [http.SecretRedactingFilter]


def test_httpx_and_retry_logs_never_show_the_token(clock, token, caplog):
    http.install_log_redaction("httpx", "usage_pipeline")
    transport = ScriptedTransport(httpx.Response(503), ok())
    with caplog.at_level(logging.INFO):
        session(transport, clock, token).get("/usage", endpoint="usage", account_id="acme",
                                             params={"access_token": token})
    assert "retry 1 in 1.0 s" in caplog.text and "HTTP Request" in caplog.text
    assert "access_token=***" in caplog.text and token not in caplog.text
