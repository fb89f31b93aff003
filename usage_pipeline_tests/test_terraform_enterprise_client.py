"""The TFE System API client against the sandbox and a private-CA HTTPS server (rung 2-3).

Proves: the client-side limiter keeps a burst under the server's own 1 request/s per token
enforcement (zero 429s, measured on one injected clock shared by client and server, and a
control run without the limiter that does get 429s); 401/403 say the System API token was
rejected or expired without leaking it; `ping` is authenticated; TLS verification is on and
TFE_CA_BUNDLE makes a private CA trusted.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from usage_pipeline import http, settings, timeutil
from usage_pipeline.errors import AuthError, PayloadError, RetryBudgetExceeded, TransportError
from usage_pipeline.sandbox import SandboxServer
from usage_pipeline.sources import terraform_enterprise
from usage_pipeline.sources.terraform_enterprise import TerraformEnterpriseClient, constants


class SharedClock:
    """One fake clock for the client's limiter and the server's bucket: sleeping advances it."""

    def __init__(self) -> None:
        self._elapsed = 0.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return 5_000.0 + self._elapsed

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._elapsed += max(0.0, seconds)

    def now_utc(self) -> datetime:
        return datetime(2026, 11, 20, 10, tzinfo=UTC) + timedelta(seconds=self._elapsed)


@pytest.fixture
def server():
    with SandboxServer() as sandbox:
        yield sandbox


def tfe_statuses(server: SandboxServer) -> list[int | None]:
    return [request.status for request in server.requests_for(constants.KEY)]


def client_for(server: SandboxServer, *, token: str | None = None) -> TerraformEnterpriseClient:
    return TerraformEnterpriseClient(url=server.base_url, token=token or server.tokens[constants.KEY])


def test_client_limiter_keeps_a_burst_under_the_sandbox_enforcement(server):
    clock = SharedClock()
    server.rate_clock = clock  # the server's bucket reads the same (fake) time
    client = client_for(server).with_clock(clock)
    for _ in range(4):
        client.fetch_bundle()
        client.ping()
    assert tfe_statuses(server) == [200] * 8  # zero 429s
    assert client.stats().retries == 0
    # 8 calls at 0.95/s with a burst of 1: the limiter waited 7 × 1/0.95 s, one spacing per call after the first
    spacing = 1 / http.DEFAULT_LIMITS["terraform_enterprise"][0]
    assert spacing >= 1.0  # never faster than the vendor's 1 request/s
    assert sum(clock.sleeps) == pytest.approx(7 * spacing)
    assert all(wait == pytest.approx(spacing) for wait in clock.sleeps)


def test_sandbox_answers_429_to_a_burst_without_the_limiter(server):
    # the control: the same burst with a permissive limiter does hit the server's 1 request/s
    clock = SharedClock()
    server.rate_clock = clock
    session = http.Session.bearer(constants.KEY, server.base_url, server.tokens[constants.KEY], clock=clock,
                                  limiter=http.RateLimiter(1000, 1000, clock=clock),
                                  policy=http.RetryPolicy(max_attempts=1))
    session.get(constants.BUNDLE_PATH, endpoint="usage_bundle", account_id="127.0.0.1")
    with pytest.raises(RetryBudgetExceeded, match="HTTP 429"):
        session.get(constants.BUNDLE_PATH, endpoint="usage_bundle", account_id="127.0.0.1")
    assert tfe_statuses(server) == [200, 429]


def test_rejected_token_is_explained_without_leaking_it(server):
    canary = "canary-tfe-token-7f3a9c1e5b"
    client = client_for(server, token=canary).with_clock(SharedClock())
    with pytest.raises(AuthError) as caught:
        client.fetch_bundle()
    message = str(caught.value)
    assert "System API token rejected or expired (tokens expire after 30 days by default)" in message
    assert "TFE_SYSTEM_API_TOKEN" in message and "HTTP 403" in message
    assert message.startswith("terraform_enterprise [account 127.0.0.1]: usage_bundle:")
    assert canary not in message and canary not in repr(client)
    assert tfe_statuses(server) == [403]  # never retried


def test_ping_answers_pong_and_needs_the_token(server):
    assert client_for(server).with_clock(SharedClock()).ping() == "pong"
    with pytest.raises(AuthError, match="System API token rejected or expired"):
        client_for(server, token="wrong-token-0123456789").with_clock(SharedClock()).ping()


def test_ping_that_is_not_pong_is_a_payload_error():
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"status": "ok"}))
    client = TerraformEnterpriseClient(url="https://tfe.example.com:8443", token="t" * 24)
    with pytest.raises(PayloadError, match='ping: expected "pong"'):
        client.with_clock(SharedClock(), transport=transport).ping()


def test_installation_is_the_host_of_the_system_api_url():
    client = TerraformEnterpriseClient(url="https://TFE.Example.com:8443", token="t" * 24)
    assert client.installation == "tfe.example.com"


def test_fetched_at_follows_the_pipeline_clock(server):
    server.clock.set(datetime(2026, 11, 18, 7, 30, tzinfo=UTC))
    with timeutil.use_clock(server.clock):
        fetched = client_for(server).fetch_bundle()
    assert fetched.fetched_at == datetime(2026, 11, 18, 7, 30, tzinfo=UTC)


def test_check_credentials_pings_in_plain_words(server):
    config = settings.load({"TFE_SYSTEM_API_URL": server.base_url,
                            "TFE_SYSTEM_API_TOKEN": server.tokens[constants.KEY]})
    answer = terraform_enterprise.check_credentials(config)
    assert answer == f"System API at {server.base_url} answered pong to the token (system trust store)"
    assert [request.path for request in server.requests_for(constants.KEY)] == [constants.PING_PATH]


# ---------- TLS: verification always on; a private CA through TFE_CA_BUNDLE


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def private_ca_server(tmp_path: Path):
    """An HTTPS System API stand-in whose certificate a private CA signed (for 127.0.0.1)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=usage-pipeline test CA", cwd=tmp_path)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tfe.key", "-out", "tfe.csr", "-subj", "/CN=127.0.0.1",
             cwd=tmp_path)
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "tfe.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tfe.pem",
             "-days", "2", "-extfile", "san.ext", cwd=tmp_path)

    class Pong(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            ok = self.headers.get("Authorization") == "Bearer private-ca-token-0123456789"
            body = json.dumps("pong" if ok else {"errors": [{"status": "403"}]}).encode()
            self.send_response(200 if ok else 403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Pong)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tfe.pem", tmp_path / "tfe.key")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}", tmp_path / "ca.pem"
    httpd.shutdown()
    httpd.server_close()


def test_private_ca_is_trusted_only_through_tfe_ca_bundle(private_ca_server):
    url, ca_pem = private_ca_server
    token = "private-ca-token-0123456789"
    untrusted = TerraformEnterpriseClient(url=url, token=token).with_clock(SharedClock())
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusted.ping()  # the system trust store does not know the private CA: refused, never ignored
    trusted = TerraformEnterpriseClient(url=url, token=token, ca_bundle=str(ca_pem)).with_clock(SharedClock())
    assert trusted.ping() == "pong"
    config = settings.load({"TFE_SYSTEM_API_URL": url, "TFE_SYSTEM_API_TOKEN": token, "TFE_CA_BUNDLE": str(ca_pem)})
    assert terraform_enterprise.check_credentials(config).endswith(f"(certificate checked against TFE_CA_BUNDLE {ca_pem})")
