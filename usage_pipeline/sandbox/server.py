"""The sandbox framework: a real HTTP server on loopback that answers like the vendor APIs.

The one rule: the sandbox speaks real HTTP the way the vendors do (paths, auth, error bodies,
rate limits, faults), so the code under test is the code that runs in production; only the
base URL differs. Each vendor module (`sandbox/<vendor>.py`) plugs its routes and data in
through `register(server)`; this module owns what they share: routing, auth, the controllable
clock, fault injection, server-side rate limits and the request log.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import importlib
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import EllipsisType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from usage_pipeline.http import SYSTEM_CLOCK, Clock, RateLimiter

log = logging.getLogger(__name__)

VENDORS = ("thousandeyes", "hcp_terraform", "terraform_enterprise", "workato")
VENDOR_MODULES = tuple(f"usage_pipeline.sandbox.{vendor}" for vendor in VENDORS)
DEFAULT_NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # fixed, so sandbox data is reproducible
DEFAULT_TOKENS = {vendor: f"sandbox-{vendor.replace('_', '-')}-token" for vendor in VENDORS}
DEFAULT_EMAIL = "sandbox@example.com"  # the user half of HTTP basic (ThousandEyes v6)
DEFAULT_RATE_LIMITS = {"terraform_enterprise": (1.0, 1)}  # 1 request/s per token: API_CONTRACTS.md §1.3
FAULT_KINDS = ("status", "rate_limit", "slow", "drop", "html", "malformed_json", "extra_field",
               "missing_field", "always_fail")
AuthKind = Literal["bearer", "basic", "bearer_or_basic"] | None
HTML_ERROR_PAGE = (b"<!DOCTYPE html>\n<html><head><title>503 Service Temporarily Unavailable</title></head>\n"
                   b"<body><h1>Service Temporarily Unavailable</h1><p>Down for maintenance.</p></body></html>\n")
_WORKATO_MESSAGES = {400: "Bad request", 401: "Unauthorized", 404: "Not found", 500: "Server error"}


class SandboxClock:
    """The sandbox's "now" (UTC). It stands still until a test or the CLI moves it."""

    def __init__(self, now: datetime) -> None:
        self._lock = threading.Lock()
        self._now = _utc(now)

    def now(self) -> datetime:
        return self._now

    def set(self, now: datetime) -> None:
        with self._lock:
            self._now = _utc(now)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"the sandbox clock needs an aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class SandboxRequest:
    """What a route handler sees: no Authorization header, only what the vendor would act on."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any  # the parsed body; None when there is none or it is not JSON
    body: bytes
    groups: dict[str, str]  # named groups of the route's path regex
    vendor: str
    now: datetime  # the sandbox clock's now
    server: SandboxServer = field(repr=False)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default


@dataclass(frozen=True)
class SandboxResponse:
    """A handler's answer: bytes or str are sent as they are, anything else as JSON."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, dict[str, str]]:
        """The bytes on the wire and the headers, with a Content-Type that fits the body."""
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            body, content_type = self.body, "application/octet-stream"
        elif isinstance(self.body, str):
            body, content_type = self.body.encode(), "text/plain; charset=utf-8"
        else:
            body, content_type = json.dumps(self.body).encode(), "application/json"
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = content_type
        return body, headers


Handler = Callable[[SandboxRequest], "SandboxResponse | Any"]


@dataclass(frozen=True)
class Route:
    """One endpoint: method, full-path regex, owning vendor, auth scheme, handler."""

    method: str
    pattern: re.Pattern[str]
    vendor: str
    auth: AuthKind
    handler: Handler


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it. Credentials are never kept: only whether they passed."""

    method: str
    path: str
    query: dict[str, list[str]]
    json_body: Any
    vendor: str | None
    status: int | None  # None: the connection was dropped
    at: datetime  # real UTC time
    authorized: bool
    fault: str | None
    user_agent: str | None


def vendor_error(vendor: str | None, status: int, detail: str | None = None) -> SandboxResponse:
    """An error body in the vendor's own shape (API_CONTRACTS.md §1.4, §2.6, §3.6, §4.2)."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    if vendor in ("hcp_terraform", "terraform_enterprise"):
        error = {"status": str(status), "title": title.lower(), **({"detail": detail} if detail else {})}
        return SandboxResponse(status, {"errors": [error]}, {"Content-Type": "application/vnd.api+json"})
    if vendor == "thousandeyes":
        if status == 401:
            return SandboxResponse(401, {"error": "invalid_token", "error_description": detail or "Invalid access token"})
        problem = {"type": "about:blank", "title": title, "status": status, **({"detail": detail} if detail else {})}
        return SandboxResponse(status, problem, {"Content-Type": "application/problem+json"})
    body: dict[str, Any] = {"message": detail or _WORKATO_MESSAGES.get(status, title)}
    if status >= 500:
        body["id"] = str(uuid.uuid4())
    return SandboxResponse(status, body)


def too_many_requests(vendor: str | None, *, retry_after: Any = None, reset_s: float | None = None) -> SandboxResponse:
    """A 429 as the vendor sends it, with Retry-After (seconds, HTTP date or `date+N`) and reset headers."""
    if vendor == "hcp_terraform":  # the documented body: note the integer status
        response = SandboxResponse(429, {"errors": [{"detail": "You have exceeded the API's rate limit.",
                                                     "status": 429, "title": "Too many requests"}]},
                                   {"Content-Type": "application/vnd.api+json"})
    else:
        detail = "Exhausted rate limit for the organization" if vendor == "thousandeyes" else None
        response = vendor_error(vendor, 429, detail)
    headers = dict(response.headers)
    if retry_after is not None:
        text = str(retry_after)
        if text.startswith("date+"):  # an HTTP date N real seconds from now
            text = formatdate(time.time() + float(text.removeprefix("date+")), usegmt=True)
        headers["Retry-After"] = text
    if reset_s is not None and vendor == "hcp_terraform":  # seconds to wait (go-tfe)
        headers |= {"X-RateLimit-Limit": "30", "X-RateLimit-Reset": f"{float(reset_s):g}"}
    elif reset_s is not None and vendor == "thousandeyes":  # epoch seconds, real time
        headers |= {"X-Organization-Rate-Limit-Limit": "240", "X-Organization-Rate-Limit-Remaining": "0",
                    "X-Organization-Rate-Limit-Reset": str(int(time.time() + float(reset_s)))}
    return SandboxResponse(429, response.body, headers)


# --- faults ----------------------------------------------------------------------------------

@dataclass
class Fault:
    """One scripted misbehaviour: which requests it hits, what it does, how many more times.

    Mutable on purpose: `remaining` counts down as it fires (None: forever).
    """

    kind: str
    vendor: str | None = None
    path_glob: str | None = None
    remaining: int | None = 1
    params: dict[str, Any] = field(default_factory=dict)

    def matches(self, vendor: str, path: str, values: set[str]) -> bool:
        if self.vendor is not None and self.vendor != vendor:
            return False
        if self.path_glob is not None and not fnmatch.fnmatchcase(path, self.path_glob):
            return False
        return "match" not in self.params or str(self.params["match"]) in values


class Faults:
    """The faults scripted on one server, from tests (`add`) or the CLI (`parse_spec`)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[Fault]:
        with self._lock:
            return iter(list(self._faults))

    def __len__(self) -> int:
        return len(self._faults)

    def add(self, target: str, kind: str, times: int | None | EllipsisType = ..., **params: Any) -> Fault:
        """Script a fault on `target`: a vendor key, a path glob (`/api/v2/*`) or `vendor:glob`.

        `times` defaults to 1 (None: forever; `always_fail` defaults to forever). Parameters per
        kind: status (`status`), rate_limit (`retry_after`: seconds, HTTP date, `date+N`, or
        absent; `reset_s` for the vendor's reset headers), slow (`delay_s`), html (`status`),
        extra_field (`field`, `value`, `where`: top|items), missing_field (`field`: dotted path),
        always_fail (`match`, `status`). Any kind takes `match`: only requests carrying that
        value in their path, query or JSON body (one account or tenant).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if kind == "missing_field" and not params.get("field"):
            raise ValueError("a missing_field fault needs field=<dotted.path>")
        if kind == "always_fail" and "match" not in params:
            raise ValueError("an always_fail fault needs match=<account or tenant value>")
        if times is ...:
            times = None if kind == "always_fail" else 1
        vendor, path_glob = _split_target(target)
        fault = Fault(kind, vendor, path_glob, times, params)
        with self._lock:
            self._faults.append(fault)
        return fault

    def parse_spec(self, spec: str) -> Fault:
        """Add a fault from a CLI string `[vendor:][/path/glob:]kind[:key=value]…`.

        Example: `thousandeyes:/v7/usage:rate_limit:retry_after=2:times=3`; `times=none` is forever.
        """
        parts = spec.split(":")
        at = next((i for i, part in enumerate(parts) if part in FAULT_KINDS), None)
        if at is None:
            raise ValueError(f"fault spec {spec!r} names no fault kind; expected one of {', '.join(FAULT_KINDS)}")
        params: dict[str, Any] = {}
        for item in parts[at + 1:]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"fault spec {spec!r}: expected key=value, got {item!r}")
            params[key] = _coerce(value)
        times = params.pop("times", ...)
        return self.add(":".join(parts[:at]), parts[at], times, **params)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, vendor: str, path: str, values: set[str]) -> Fault | None:
        """The first fault matching this request, counted down (and dropped when used up)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(vendor, path, values):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None


def _split_target(target: str) -> tuple[str | None, str | None]:
    if target in ("", "*"):
        return None, None
    if ":" in target:
        vendor, path_glob = target.split(":", 1)
        return vendor or None, path_glob or None
    return (None, target) if target.startswith(("/", "*")) else (target, None)


def _coerce(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _request_values(path: str, query: dict[str, list[str]], body: Any) -> set[str]:
    """Every value a request carries (path segments, query values, JSON leaves): what `match` looks at."""
    values = {segment for segment in path.split("/") if segment}
    stack: list[Any] = [value for values_ in query.values() for value in values_] + [body]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif item is not None:
            values.add(str(item))
            values.update(str(item).split(","))
    return values


def _mutate_json(response: SandboxResponse, fault: Fault) -> SandboxResponse:
    """Apply a payload fault (malformed_json, extra_field, missing_field) to a handler's answer."""
    raw, headers = response.encode()
    try:
        payload = json.loads(raw)  # a fresh copy: the vendor module's data stays untouched
    except ValueError:
        payload = None
    if fault.kind == "malformed_json":
        return SandboxResponse(response.status, raw[: max(1, len(raw) // 2)], headers)
    if payload is None:  # not JSON to begin with: nothing to add or remove
        return response
    if fault.kind == "extra_field":
        name, value = fault.params.get("field", "sandbox_new_field"), fault.params.get("value", "unexpected")
        if fault.params.get("where", "top") == "items":
            targets = _first_items(payload)
        else:  # a top-level list's "top" is its first item
            targets = payload[:1] if isinstance(payload, list) else [payload]
        for target in targets:
            if isinstance(target, dict):
                target[name] = value
    else:
        _remove(payload, str(fault.params["field"]).split("."))
    return SandboxResponse(response.status, json.dumps(payload).encode(), headers)


def _first_items(node: Any) -> list[Any]:
    found: list[Any] = []
    if isinstance(node, list):
        found += node[:1]
        for item in node:
            found += _first_items(item)
    elif isinstance(node, dict):
        for item in node.values():
            found += _first_items(item)
    return found


def _remove(node: Any, keys: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _remove(item, keys)
    elif isinstance(node, dict) and keys[0] in node:
        if len(keys) == 1:
            del node[keys[0]]
        else:
            _remove(node[keys[0]], keys[1:])


# --- the server ------------------------------------------------------------------------------

class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the vendors; every answer has a Content-Length
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _HTTPServer

    def _serve(self) -> None:
        self.server.sandbox._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        if self.server.sandbox.verbose:
            super().log_message(format, *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive threads are closed by `close_connections`, not joined

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.sandbox.verbose:  # a client that hung up mid-answer (timeouts, drops) is routine
            super().handle_error(request, client_address)


class SandboxServer:
    """The simulated vendor APIs on 127.0.0.1: `start()` in a thread, or `serve_forever()`."""

    def __init__(self, *, now: datetime | None = None, tokens: Mapping[str, str] | None = None, port: int = 0,
                 emails: Mapping[str, str] | None = None, verbose: bool = False) -> None:
        self.clock = SandboxClock(now or DEFAULT_NOW)
        self.tokens = {**DEFAULT_TOKENS, **(tokens or {})}
        self.emails = {vendor: DEFAULT_EMAIL for vendor in VENDORS} | dict(emails or {})
        self.port, self.verbose = port, verbose
        self.faults = Faults()
        self.rate_limits: dict[str, tuple[float, float]] = dict(DEFAULT_RATE_LIMITS)
        self.rate_clock: Clock = SYSTEM_CLOCK  # real time: this is the server side
        self.requests: list[RecordedRequest] = []
        self._routes: list[Route] = []
        self._buckets: dict[tuple[Any, ...], RateLimiter] = {}
        self._env_hooks: list[Callable[[SandboxServer], Mapping[str, str]]] = []
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.vendor_modules = self._register_vendor_modules()

    def _register_vendor_modules(self) -> tuple[str, ...]:
        loaded = []
        for name in VENDOR_MODULES:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as error:
                if error.name != name:  # the module exists but something it imports is missing: loud
                    raise
                continue  # not written yet: the sandbox serves the vendors that exist
            module.register(self)
            if callable(hook := getattr(module, "env", None)):
                self._env_hooks.append(hook)
            loaded.append(name)
        return tuple(loaded)

    # -- lifecycle --

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _bind(self) -> _HTTPServer:
        if self._httpd is None:
            self._httpd = _HTTPServer(("127.0.0.1", self.port), self)
        return self._httpd

    def start(self) -> SandboxServer:
        """Serve in a background thread; returns at once."""
        if self._thread is None:
            httpd = self._bind()
            self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="usage-pipeline-sandbox", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the `usage-pipeline sandbox` command)."""
        try:
            self._bind().serve_forever(poll_interval=0.2)
        finally:
            self.stop()

    def stop(self) -> None:
        if self._httpd is None:
            return
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.close_connections()
        self._httpd.server_close()
        self._httpd, self._thread = None, None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the sandbox is not started: call start() or use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- what vendor modules and tests use --

    def route(self, method: str, path_regex: str, *, vendor: str, auth: AuthKind = "bearer",
              handler: Handler) -> Route:
        """Add an endpoint; `path_regex` must match the whole path and its named groups reach the handler."""
        if auth not in ("bearer", "basic", "bearer_or_basic", None):
            raise ValueError(f"unknown auth {auth!r}: bearer, basic, bearer_or_basic or None")
        route = Route(method.upper(), re.compile(path_regex), vendor, auth, handler)
        with self._lock:
            self._routes.append(route)
        return route

    def env(self) -> dict[str, str]:
        """The environment that points the pipeline at this sandbox (vendor modules may add to it)."""
        base = self.base_url
        env = {
            "THOUSANDEYES_BASE_URL": base, "THOUSANDEYES_TOKEN": self.tokens["thousandeyes"],
            "THOUSANDEYES_EMAIL": self.emails["thousandeyes"],
            "TFC_BASE_URL": base, "TFC_TOKEN": self.tokens["hcp_terraform"],
            "TFE_SYSTEM_API_URL": base, "TFE_SYSTEM_API_TOKEN": self.tokens["terraform_enterprise"],
            "WORKATO_BASE_URL": base, "WORKATO_TOKEN": self.tokens["workato"],
            "WORKATO_WORKSPACE_IDS": "3127", "WORKATO_TIMEZONE": "America/Los_Angeles",
        }
        for hook in self._env_hooks:
            env.update(hook(self))
        return env

    def requests_for(self, vendor: str | None = None, path_prefix: str | None = None) -> list[RecordedRequest]:
        """The recorded requests of one vendor and/or under one path prefix, oldest first."""
        with self._lock:
            return [r for r in self.requests if (vendor is None or r.vendor == vendor)
                    and (path_prefix is None or r.path.startswith(path_prefix))]

    # -- one request --

    def _serve(self, h: _RequestHandler) -> None:
        url = urlsplit(h.path)
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        query = parse_qs(url.query, keep_blank_values=True)
        try:
            body_json = json.loads(raw) if raw else None
        except ValueError:
            body_json = None
        route, groups = self._find_route(h.command, url.path)
        fault, delay_s, authorized = None, 0.0, False
        if route is None:
            response: SandboxResponse | None = vendor_error(None, 404, f"no sandbox route for {h.command} {url.path}")
        else:
            authorized, identity = self._authorize(route, h.headers.get("Authorization", ""))
            if not authorized:
                response = vendor_error(route.vendor, 403 if route.vendor == "terraform_enterprise" else 401)
            elif not self._within_rate_limit(route.vendor, identity):
                response = too_many_requests(route.vendor, reset_s=1 / self.rate_limits[route.vendor][0])
            else:
                headers = {k: v for k, v in h.headers.items() if k.lower() != "authorization"}
                request = SandboxRequest(h.command, url.path, query, headers, body_json, raw, groups,
                                         route.vendor, self.clock.now(), self)
                fault = self.faults.take(route.vendor, url.path, _request_values(url.path, query, body_json))
                response = self._respond(route, request, fault)
                delay_s = float(fault.params.get("delay_s", 1.0)) if fault and fault.kind == "slow" else 0.0
        with self._lock:
            self.requests.append(RecordedRequest(
                h.command, url.path, query, body_json, route.vendor if route else None,
                response.status if response else None, datetime.now(UTC), authorized,
                fault.kind if fault else None, h.headers.get("User-Agent")))
        time.sleep(delay_s)  # a slow answer: recorded first, so a client that gave up still sees it logged
        if response is None:  # drop: close the socket without a word
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        body, headers = response.encode()
        try:
            h.send_response(response.status)
            for name, value in headers.items():
                h.send_header(name, value)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            h.close_connection = True

    def _find_route(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        with self._lock:
            routes = list(self._routes)
        for route in routes:
            if route.method == method and (match := route.pattern.fullmatch(path)):
                return route, match.groupdict()
        return None, {}

    def _authorize(self, route: Route, header: str) -> tuple[bool, str | None]:
        """Check the vendor's token (bearer, or basic `email:token`); return (passed, token)."""
        if route.auth is None:
            return True, None
        scheme, _, credentials = header.partition(" ")
        expected = self.tokens.get(route.vendor, "")
        if scheme.lower() == "bearer" and route.auth in ("bearer", "bearer_or_basic"):
            return _same(credentials, expected), credentials
        if scheme.lower() == "basic" and route.auth in ("basic", "bearer_or_basic"):
            try:
                user, _, token = base64.b64decode(credentials, validate=True).decode().partition(":")
            except ValueError:
                return False, None
            return _same(user, self.emails.get(route.vendor, DEFAULT_EMAIL)) and _same(token, expected), token
        return False, None

    def _within_rate_limit(self, vendor: str, token: str | None) -> bool:
        if (limit := self.rate_limits.get(vendor)) is None:
            return True
        key = (vendor, hashlib.sha256((token or "").encode()).hexdigest()[:12], limit, self.rate_clock)
        with self._lock:
            bucket = self._buckets.setdefault(key, RateLimiter(*limit, clock=self.rate_clock))
        return bucket.try_acquire()

    def _respond(self, route: Route, request: SandboxRequest, fault: Fault | None) -> SandboxResponse | None:
        kind, params = (fault.kind, fault.params) if fault else (None, {})
        if kind in ("status", "always_fail"):
            return vendor_error(route.vendor, int(params.get("status", 500)))
        if kind == "rate_limit":
            return too_many_requests(route.vendor, retry_after=params.get("retry_after"), reset_s=params.get("reset_s"))
        if kind == "html":
            return SandboxResponse(int(params.get("status", 200)), HTML_ERROR_PAGE, {"Content-Type": "text/html"})
        if kind == "drop":
            return None
        try:
            answer = route.handler(request)
        except Exception:  # a bug in a vendor module: loud in the log, a 500 on the wire
            log.exception("sandbox handler for %s %s failed", request.method, request.path)
            return vendor_error(route.vendor, 500)
        response = answer if isinstance(answer, SandboxResponse) else SandboxResponse(200, answer)
        if kind in ("malformed_json", "extra_field", "missing_field"):
            return _mutate_json(response, fault)  # type: ignore[arg-type]
        return response


def _same(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
