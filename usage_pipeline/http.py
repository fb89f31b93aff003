"""The one HTTP layer: every vendor call goes through a `Session` here.

The rule: a response comes back exactly as received (bytes, status, safe headers) or as an
error naming vendor, account and a redacted URL; never with a token in it. Timeouts, retries
with jitter, `Retry-After` and vendor rate-limit hints, the per-token limiter, pagination,
redaction and the wait accounting live here and nowhere else.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import math
import random
import re
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx

from usage_pipeline import __version__, errors, timeutil

log = logging.getLogger(__name__)

USER_AGENT = f"usage-pipeline/{__version__}"
ACCEPT = "application/json, application/vnd.api+json, application/hal+json, application/problem+json, */*;q=0.5"
# HCP's explorer "times out after 60 s" (API_CONTRACTS.md §2.4): read a little longer than that
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=75.0, write=30.0, pool=10.0)
# (requests per second, burst) per token: API_CONTRACTS.md §0 and §5
DEFAULT_LIMITS: dict[str, tuple[float, float]] = {
    # 1 request/s per token (API_CONTRACTS.md §1.3); 0.95 leaves room for the server's arrival
    # jitter (±20 ms), which at exactly 1.000 s spacing drew a 429 every other call (make bench)
    "terraform_enterprise": (0.95, 1),
    "hcp_terraform": (30.0, 10),  # 30/s per user; adapted from X-RateLimit-Limit
    "thousandeyes": (240 / 60, 4),  # 240/min per organization (fixed window), shared with its other tools
    "workato": (1000 / 60, 10),  # 1,000/min for all usage endpoints
}
FALLBACK_LIMIT = (10.0, 10)
TOKEN_VARIABLES = {"thousandeyes": "THOUSANDEYES_TOKEN", "hcp_terraform": "TFC_TOKEN",
                   "terraform_enterprise": "TFE_SYSTEM_API_TOKEN", "workato": "WORKATO_TOKEN"}
AUTH_HINTS = {"terraform_enterprise": "System API tokens expire after 30 days by default; "
                                      "make a new one with `tfectl admin api-token generate`"}
_SAFE_HEADER = re.compile(r"content-type|content-length|date|etag|last-modified|retry-after|x-request-id"
                          r"|x-ratelimit-.*|x-organization-rate-limit-.*|tfp-api-version|x-tfe-version", re.I)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# --- secrets ------------------------------------------------------------------------------

_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()
_SENSITIVE_PARAM = re.compile(
    r"(?i)([?&;][^=&#\s]*(?:token|key|secret|passw|signature|auth|credential)[^=&#\s]*=)[^&#\s\"'<>]*")
_USERINFO = re.compile(r"(//[^/@\s:]+:)[^/@\s]+@")
_AUTH_VALUE = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]{16,}=*")


def register_secret(value: str) -> None:
    """Remember a secret, so `redact` masks it (and its URL-encoded form) everywhere."""
    global _secrets
    if value:
        with _secrets_lock:
            found = {*_secrets, value, quote(value, safe="")}
            _secrets = tuple(sorted(found, key=len, reverse=True))


def redact(text: str) -> str:
    """Mask registered secrets, token-like query values, URL passwords and auth header values."""
    for secret in _secrets:
        text = text.replace(secret, "***")
    text = _SENSITIVE_PARAM.sub(r"\1***", text)
    text = _USERINFO.sub(r"\1***@", text)
    return _AUTH_VALUE.sub(r"\1\2***", text)


def redact_url(url: str | httpx.URL) -> str:
    """A URL safe to show: secrets and query values named like token/key/secret masked."""
    return redact(str(url))


class SecretRedactingFilter(logging.Filter):
    """The last line of defence: masks secrets in every record (message, args, traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report, not ours
            return True
        if (clean := redact(message)) != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_LOG_FILTER = SecretRedactingFilter()


def install_log_redaction(*logger_names: str) -> SecretRedactingFilter:
    """Attach the redacting filter to these loggers (default: root, dagster, httpx) and their handlers."""
    for name in logger_names or ("", "dagster", "httpx", "httpcore", "usage_pipeline"):
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            if _LOG_FILTER not in target.filters:
                target.addFilter(_LOG_FILTER)
    return _LOG_FILTER


# --- time, retry policy, limiter -------------------------------------------------------------

class Clock(Protocol):
    """Where the HTTP layer reads time and sleeps; tests pass a fake one."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def now_utc(self) -> datetime: ...


def _is_certificate_error(error: BaseException) -> bool:
    """True when a TLS handshake failed on certificate verification (anywhere in the cause chain)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def now_utc(self) -> datetime:
        return datetime.now(UTC)  # real time: what servers' Retry-After dates and reset epochs refer to


SYSTEM_CLOCK: Clock = SystemClock()


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long 429, 5xx and transport errors are retried."""

    max_attempts: int = 5
    budget_s: float = 120.0  # the whole call, every wait included
    base_delay_s: float = 1.0  # the backoff unit and the least any retry waits (no retry storm)
    max_delay_s: float = 30.0  # caps our backoff; a server's hint is capped by the budget instead
    jitter: Literal["full", "decorrelated"] = "full"
    hint_jitter_s: float = 0.5  # spread on top of a server hint, so clients do not wake together

    def delay_s(self, attempt: int, *, hint_s: float | None, previous_s: float, rng: random.Random) -> float:
        """Seconds to wait before retry number `attempt`: the server's hint, else jittered backoff."""
        if hint_s is not None:
            return max(hint_s, self.base_delay_s) + rng.uniform(0, self.hint_jitter_s)
        if self.jitter == "decorrelated":  # AWS "decorrelated jitter"
            return min(self.max_delay_s, rng.uniform(self.base_delay_s, max(self.base_delay_s, 3 * previous_s)))
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))  # "full jitter", floored
        return rng.uniform(self.base_delay_s, max(self.base_delay_s, ceiling))


def _number(value: str | None) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return max(0.0, number) if math.isfinite(number) else None


def wait_hint_s(headers: Mapping[str, str], now: datetime) -> float | None:
    """The server's own wait: Retry-After (seconds or HTTP date), else HCP's or ThousandEyes' reset.

    Absolute times (an HTTP date, an epoch) are measured against the response's own `Date`
    header when it has one, so a skewed local clock neither shortens nor stretches the wait.
    """
    server_now = _http_date(headers.get("date"))
    if server_now is not None:
        now = server_now
    if (value := headers.get("retry-after")) is not None:
        if (seconds := _number(value)) is not None:
            return seconds
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return max(0.0, (when.replace(tzinfo=when.tzinfo or UTC) - now).total_seconds())
    # HCP Terraform: seconds to wait, a float (go-tfe rateLimitBackoff; API_CONTRACTS.md §2.4)
    if (seconds := _number(headers.get("x-ratelimit-reset"))) is not None:
        return seconds
    # ThousandEyes: Unix epoch seconds at which the window resets (API_CONTRACTS.md §4.2)
    if (epoch := _number(headers.get("x-organization-rate-limit-reset"))) is not None:
        return max(0.0, epoch - now.timestamp())
    return None


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class RateLimiter:
    """A token bucket: `rate_per_s` requests per second, bursts up to `burst`; thread-safe."""

    def __init__(self, rate_per_s: float, burst: float = 1, *, clock: Clock = SYSTEM_CLOCK) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a rate limiter needs rate_per_s > 0 and burst >= 1")
        self.rate_per_s, self.burst, self._clock = rate_per_s, burst, clock
        self._tokens, self._at = float(burst), clock.monotonic()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RateLimiter(rate_per_s={self.rate_per_s:g}, burst={self.burst:g})"

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now

    def acquire(self) -> float:
        """Take one token, sleeping until it is due; return the seconds waited."""
        with self._lock:
            self._refill()
            self._tokens -= 1  # a reservation: later callers queue up behind this one
            wait = -self._tokens / self.rate_per_s if self._tokens < -1e-9 else 0.0
        if wait:
            self._clock.sleep(wait)
        return wait

    def try_acquire(self) -> bool:
        """Take one token if one is there now, without waiting (the sandbox's server side)."""
        with self._lock:
            self._refill()
            if self._tokens < 1 - 1e-9:
                return False
            self._tokens -= 1
            return True

    def update(self, rate_per_s: float, burst: float) -> None:
        """Change the rate, e.g. when the vendor advertises its limit."""
        with self._lock:
            self._refill()
            self.rate_per_s, self.burst = rate_per_s, burst
            self._tokens = min(self._tokens, burst)


_limiters: dict[tuple[str, Clock], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_key(vendor: str, token: str) -> str:
    """Name a token's limiter without the token: vendor plus the first 12 hex of its sha256."""
    return f"{vendor}:{hashlib.sha256(token.encode()).hexdigest()[:12]}"


def limiter_for(key: str, rate_per_s: float, burst: float = 1, *, clock: Clock = SYSTEM_CLOCK) -> RateLimiter:
    """The one limiter of `key` (made on first use), so every Session on one token shares it."""
    with _limiters_lock:
        if (key, clock) not in _limiters:
            _limiters[key, clock] = RateLimiter(rate_per_s, burst, clock=clock)
        return _limiters[key, clock]


# --- responses -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CallStats:
    """Requests sent, retries made and seconds waited (limiter and backoff), for asset metadata."""

    requests: int = 0
    retries: int = 0
    wait_s: float = 0.0

    def __add__(self, other: CallStats) -> CallStats:
        return CallStats(self.requests + other.requests, self.retries + other.retries, self.wait_s + other.wait_s)

    def __str__(self) -> str:
        return f"{self.requests} requests, {self.retries} retries, {self.wait_s:.1f} s waited"


def preview(body: bytes, limit: int = 80) -> str:
    """The first bytes of a body as one printable, redacted line: safe for an error message."""
    text = body[:limit].decode("utf-8", "replace")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return repr(redact(text) + ("…" if len(body) > limit else ""))


def error_message(body: bytes, limit: int = 200) -> str:
    """What the vendor said in an error body, read leniently (JSON:API, Workato, ThousandEyes)."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"body {preview(body)}" if body.strip() else "empty body"
    parts: list[str] = []
    entries = data.get("errors") if isinstance(data, dict) else data
    for entry in entries[:3] if isinstance(entries, list) else ():
        if isinstance(entry, dict):  # JSON:API (status may be int or str), TE validation errors
            parts.append(" ".join(str(entry[k]) for k in ("title", "detail", "message") if entry.get(k)))
        elif isinstance(entry, str):  # some TFE endpoints and TE's generic shape: plain strings
            parts.append(entry)
    if isinstance(data, dict):  # TE problem+json / OAuth {error, error_description}, Workato {message, id}
        parts += [f"{k} {data[k]}" if k == "id" else str(data[k])
                  for k in ("title", "detail", "error", "error_description", "message", "id")
                  if isinstance(data.get(k), str | int) and not isinstance(data.get(k), bool)]
    elif isinstance(data, str):
        parts.append(data)
    text = redact(" ".join("; ".join(p for p in parts if p).split())) or "no message"
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Fetched:
    """One HTTP response exactly as received: the landing layer stores it before anything parses it."""

    vendor: str
    account_id: str
    endpoint: str
    method: str
    url: str  # redacted
    request: dict[str, Any]  # method, path, params, json, **record: never headers or tokens
    status: int
    headers: dict[str, str]  # the safe subset: content type, dates, rate-limit headers
    body: bytes = dc_field(repr=False)
    fetched_at: datetime = dc_field(default_factory=lambda: datetime.now(UTC))
    stats: CallStats = CallStats()

    def json(self) -> Any:
        """The parsed body; an HTML page or malformed JSON is a PayloadError naming what came."""
        try:
            return json.loads(self.body)
        except ValueError:
            content_type = self.headers.get("content-type", "")
            html = "html" in content_type or self.body.lstrip()[:1] == b"<"
            what = "an HTML page" if html else "malformed JSON"
            raise errors.PayloadError(
                self.vendor, self.account_id,
                f"{self.endpoint}: expected JSON from {self.method} {self.url} (HTTP {self.status}, "
                f"{content_type or 'no content type'}) but got {what}; first bytes: {preview(self.body)}",
            ) from None

    def metadata(self) -> dict[str, Any]:
        """Asset metadata: where it came from and what it cost."""
        return {"url": self.url, "status": self.status, "requests": self.stats.requests,
                "retries": self.stats.retries, "rate_limit_wait_s": round(self.stats.wait_s, 3),
                "bytes": len(self.body)}


# --- the session -----------------------------------------------------------------------------

class _BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


def _dig(doc: Any, *keys: str) -> Any:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


class Session:
    """One vendor base URL and token: timeouts, limiter, retries, pagination, errors without secrets."""

    def __init__(self, vendor: str, base_url: str, *, auth: httpx.Auth, token: str,
                 token_variable: str | None = None, auth_hint: str | None = None,
                 limiter: RateLimiter | None = None, policy: RetryPolicy = RetryPolicy(),
                 clock: Clock = SYSTEM_CLOCK, transport: httpx.BaseTransport | None = None,
                 verify: bool | str | ssl.SSLContext = True, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                 headers: Mapping[str, str] | None = None, rng: random.Random | None = None) -> None:
        self.vendor = vendor
        self.token_variable = token_variable or TOKEN_VARIABLES.get(vendor, f"{vendor.upper()}_TOKEN")
        if not token:
            raise errors.ConfigError(f"{vendor}: {self.token_variable} is empty")
        register_secret(token)
        self._base = httpx.URL(base_url)
        if self._base.scheme not in ("http", "https") or (
                self._base.scheme == "http" and self._base.host not in _LOOPBACK):
            raise errors.ConfigError(f"{vendor}: base URL {redact_url(base_url)} must be https:// "
                                     "(plain http:// only on loopback)")
        self._auth_hint = AUTH_HINTS.get(vendor, "") if auth_hint is None else auth_hint
        rate, burst = DEFAULT_LIMITS.get(vendor, FALLBACK_LIMIT)
        self.limiter = limiter or limiter_for(limiter_key(vendor, token), rate, burst, clock=clock)
        self._policy, self._clock, self._rng = policy, clock, rng or random.Random()
        if isinstance(verify, str):  # a CA bundle path, e.g. TFE_CA_BUNDLE
            verify = ssl.create_default_context(cafile=verify)
        self._client = httpx.Client(base_url=base_url, auth=auth, timeout=timeout, transport=transport,
                                    verify=verify, follow_redirects=False,
                                    headers={"User-Agent": USER_AGENT, "Accept": ACCEPT, **(headers or {})})
        self.stats = CallStats()
        self._lock = threading.Lock()

    @classmethod
    def bearer(cls, vendor: str, base_url: str, token: str, *, token_variable: str | None = None,
               **kw: Any) -> Session:
        """A session sending `Authorization: Bearer <token>`."""
        return cls(vendor, base_url, auth=_BearerAuth(token), token=token, token_variable=token_variable, **kw)

    @classmethod
    def basic(cls, vendor: str, base_url: str, user: str, token: str, *, token_variable: str | None = None,
              **kw: Any) -> Session:
        """A session sending HTTP basic `user:token` (ThousandEyes v6)."""
        if token:
            register_secret(base64.b64encode(f"{user}:{token}".encode()).decode())
        return cls(vendor, base_url, auth=httpx.BasicAuth(user, token), token=token,
                   token_variable=token_variable, **kw)

    def __repr__(self) -> str:
        return f"Session(vendor={self.vendor!r}, base_url={redact_url(self._base)!r}, {self.limiter!r})"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def get(self, path_or_url: str, *, endpoint: str, account_id: str, params: Mapping[str, Any] | None = None,
            accept_status: tuple[int, ...] = (200,), record: Mapping[str, Any] | None = None) -> Fetched:
        """GET one response; any 2xx (or a status in `accept_status`) comes back as a Fetched."""
        return self._call("GET", path_or_url, endpoint, account_id, params, None, accept_status, record)

    def post_json(self, path: str, *, endpoint: str, account_id: str, json: Any,
                  record: Mapping[str, Any] | None = None, accept_status: tuple[int, ...] = (200,)) -> Fetched:
        """POST a JSON query. Retried like a GET: only read-only queries (Workato usage) use it."""
        return self._call("POST", path, endpoint, account_id, None, json, accept_status, record)

    def paginate_jsonapi(self, path: str, *, endpoint: str, account_id: str, params: Mapping[str, Any] | None = None,
                         page_size: int = 100, record: Mapping[str, Any] | None = None,
                         accept_status: tuple[int, ...] = (200,)) -> Iterator[Fetched]:
        """Yield each page of a JSON:API list, following meta.pagination.next-page, else links.next.

        The page params are always sent: without them HCP returns some lists whole and without
        pagination metadata (API_CONTRACTS.md §2.3). An accepted non-200 page (e.g. an HCP 404)
        is yielded, so it can be landed, and ends the list.
        """
        target, number, seen = path, 1, set()
        while True:
            query = {**(params or {}), "page[number]": number, "page[size]": page_size} if target == path else None
            url = str(self._client.build_request("GET", target, params=query).url)
            if url in seen:
                log.warning("%s [account %s]: %s: pagination loops back to %s; stopping",
                            self.vendor, account_id, endpoint, redact_url(url))
                return
            seen.add(url)
            fetched = self.get(target, endpoint=endpoint, account_id=account_id, params=query, record=record,
                               accept_status=accept_status)
            yield fetched  # landed by the caller before this page is parsed for the next link
            if fetched.status != 200:
                return
            doc = fetched.json()
            next_page, next_link = _dig(doc, "meta", "pagination", "next-page"), _dig(doc, "links", "next")
            if next_page is None and isinstance(next_link, str) and next_link:
                next_page = httpx.URL(next_link).params.get("page[number]")
                if next_page is None:
                    target = next_link  # a next link without a page number: follow it as it is
                    continue
            if next_page is None:
                return
            try:
                target, number = path, int(next_page)
            except (TypeError, ValueError):
                raise errors.PayloadError(self.vendor, account_id, f"{endpoint}: next page "
                                          f"{preview(str(next_page).encode())} is not a number") from None

    def paginate_cursor(self, path: str, *, endpoint: str, account_id: str, params: Mapping[str, Any] | None = None,
                        record: Mapping[str, Any] | None = None) -> Iterator[Fetched]:
        """Yield each page of a HAL list via `_links.next.href`, until it is missing or its cursor repeats."""
        target, query, seen = path, params, set()
        while True:
            fetched = self.get(target, endpoint=endpoint, account_id=account_id, params=query, record=record)
            yield fetched
            href = _dig(fetched.json(), "_links", "next", "href")
            if not isinstance(href, str) or not href:
                return
            cursor = httpx.URL(href).params.get("cursor") or href
            if cursor in seen:  # what the ThousandEyes SDK's PaginationIterable does too
                log.warning("%s [account %s]: %s: cursor repeats; stopping", self.vendor, account_id, endpoint)
                return
            seen.add(cursor)
            target, query = href, None

    # -- one call, with its retries ----------------------------------------------------------

    def _call(self, method: str, target: str, endpoint: str, account_id: str, params: Mapping[str, Any] | None,
              json_body: Any, accept_status: tuple[int, ...], record: Mapping[str, Any] | None) -> Fetched:
        request = self._build(method, target, endpoint, account_id, params, json_body)
        url, policy, clock = redact_url(request.url), self._policy, self._clock
        started, requests, retries, waited, delay = clock.monotonic(), 0, 0, 0.0, policy.base_delay_s
        try:
            while True:
                waited += self.limiter.acquire()
                requests += 1
                status, hint = None, None
                try:
                    response = self._client.send(request)
                except httpx.TransportError as exc:  # timeouts, refused, reset, dropped: retried
                    if _is_certificate_error(exc):  # retrying cannot fix trust: say what can
                        raise errors.TransportError(
                            self.vendor, account_id,
                            f"{endpoint}: {method} {url}: the server's TLS certificate is not trusted "
                            f"({redact(str(exc))[:200]}); if it comes from a private CA, point "
                            "TFE_CA_BUNDLE (or SSL_CERT_FILE) at that CA's PEM file. Verification is never switched off.",
                        ) from None
                    problem = f"{type(exc).__name__}: {redact(str(exc)) or 'no detail'}"
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    raise errors.TransportError(self.vendor, account_id, f"{endpoint}: {method} {url}: "
                                                f"{type(exc).__name__}: {redact(str(exc))}") from None
                else:
                    self._adapt_limiter(response.headers)
                    status = response.status_code
                    if 200 <= status < 300 or status in accept_status:
                        stats = CallStats(requests, retries, waited)
                        return self._fetched(request, response, endpoint, account_id, url, json_body, record, stats)
                    if status != 429 and status < 500:
                        raise self._status_error(response, endpoint, account_id, method, url)
                    problem = f"HTTP {status}: {error_message(response.content)}"
                    hint = wait_hint_s(response.headers, clock.now_utc())
                delay = policy.delay_s(requests, hint_s=hint, previous_s=delay, rng=self._rng)
                elapsed = clock.monotonic() - started
                if requests >= policy.max_attempts or elapsed + delay > policy.budget_s:
                    over_budget = delay if elapsed + delay > policy.budget_s else None
                    raise self._gave_up(endpoint, account_id, method, url, requests, elapsed, problem, status,
                                        over_budget)
                log.warning("%s [account %s]: %s: %s on %s %s; retry %d in %.1f s", self.vendor, account_id,
                            endpoint, problem, method, url, requests, delay)
                clock.sleep(delay)
                waited, retries = waited + delay, retries + 1
        finally:
            with self._lock:
                self.stats += CallStats(requests, retries, waited)

    def _build(self, method: str, target: str, endpoint: str, account_id: str,
               params: Mapping[str, Any] | None, json_body: Any) -> httpx.Request:
        try:
            request = self._client.build_request(method, target, params=params, json=json_body)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise errors.ConfigError(redact(f"{self.vendor} [account {account_id}]: {endpoint}: bad URL: {exc}"))
        base = self._base
        if (request.url.scheme, request.url.host, request.url.port) != (base.scheme, base.host, base.port):
            # a vendor link to another host must never receive our token
            raise errors.PayloadError(self.vendor, account_id, f"{endpoint}: refusing to follow "
                                      f"{redact_url(request.url)}: not on {redact_url(base)}")
        return request

    def _adapt_limiter(self, headers: httpx.Headers) -> None:
        # go-tfe: 0.66 x X-RateLimit-Limit per second, burst 0.33 x (API_CONTRACTS.md §2.4)
        limit = _number(headers.get("x-ratelimit-limit"))
        if limit and limit >= 2:
            rate, burst = 0.66 * limit, max(1, int(0.33 * limit))
            if (rate, burst) != (self.limiter.rate_per_s, self.limiter.burst):
                self.limiter.update(rate, burst)

    def _observed_at(self) -> datetime:
        """When the response was observed: the pipeline clock (the sandbox's in demo, soak and
        tests), unless a test gave this session its own clock."""
        return timeutil.utcnow() if self._clock is SYSTEM_CLOCK else self._clock.now_utc()

    def _fetched(self, request: httpx.Request, response: httpx.Response, endpoint: str, account_id: str,
                 url: str, json_body: Any, record: Mapping[str, Any] | None, stats: CallStats) -> Fetched:
        params = {k: (v[0] if len(v) == 1 else v) for k in request.url.params
                  if (v := request.url.params.get_list(k))}
        safe_params = {k: "***" if _SENSITIVE_PARAM.search(f"?{k}=x") else v for k, v in params.items()}
        return Fetched(
            vendor=self.vendor, account_id=account_id, endpoint=endpoint, method=request.method, url=url,
            request={"method": request.method, "path": request.url.path, "params": safe_params,
                     "json": json_body, **(record or {})},
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items() if _SAFE_HEADER.fullmatch(k)},
            body=response.content, fetched_at=self._observed_at(), stats=stats)

    def _status_error(self, response: httpx.Response, endpoint: str, account_id: str, method: str,
                      url: str) -> errors.HttpError:
        status, said, where = response.status_code, error_message(response.content), f"{method} {url}"
        if 300 <= status < 400:  # never followed: a redirect may lead the token elsewhere
            said = f"redirected to {redact_url(response.headers.get('location', 'nowhere'))}"
        if status in (401, 403):
            why = " (or not allowed to use this endpoint)" if status == 403 else ""
            hint = f" ({self._auth_hint})" if self._auth_hint else ""
            return errors.AuthError(self.vendor, account_id, f"{endpoint}: token rejected or expired{why}: "
                                    f"set {self.token_variable}{hint}. HTTP {status} from {where}: {said}",
                                    status=status, url=url)
        if status == 404:  # HCP answers 404 for "not permitted" and "not entitled" too: unknown, not gone
            return errors.NotFoundError(self.vendor, account_id, f"{endpoint}: HTTP 404 from {where}: not found "
                                        f"or not visible to this token: {said}", status=status, url=url)
        return errors.HttpError(self.vendor, account_id, f"{endpoint}: HTTP {status} from {where}: {said}",
                                status=status, url=url)

    def _gave_up(self, endpoint: str, account_id: str, method: str, url: str, attempts: int, elapsed: float,
                 problem: str, status: int | None, over_budget_delay: float | None) -> errors.SourceError:
        message = (f"{endpoint}: gave up on {method} {url} after {attempts} attempts in {elapsed:.1f} s; "
                   f"last: {problem}")
        if over_budget_delay is not None:
            message += f"; the next wait ({over_budget_delay:.1f} s) would pass the {self._policy.budget_s:g} s budget"
        if status is None:
            return errors.TransportError(self.vendor, account_id, message)
        return errors.RetryBudgetExceeded(self.vendor, account_id, message, status=status, url=url)
