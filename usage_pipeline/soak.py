"""`usage-pipeline soak`: N simulated days of hourly ticks with random faults, then proof that
nothing was lost, nothing duplicated and no secret leaked.

The one rule: the soak and the reliability tests judge a warehouse with the same checks, defined
once here. A run "loses nothing" when every landed response is indexed in `raw.api_snapshots`
with a file whose sha256 matches; it "duplicates nothing" when no staging partition mixes two
pulls, no fact repeats a grain key, and the marts equal a clean replay of the same raw data into
a fresh warehouse (row for row, `loaded_at` aside).

Time is compressed, never faked: the sandbox serves on loopback (real HTTP), the pipeline reads
the sandbox's simulated clock, and every wait of the HTTP layer (retry backoff, Retry-After,
rate limiter) runs on a `VirtualClock` that advances instead of sleeping. Only a `slow` answer
costs real time (a short client timeout bounds it).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from usage_pipeline import http, timeutil
from usage_pipeline.warehouse import Warehouse

log = logging.getLogger("usage_pipeline.soak")

SOURCE_KEYS = ("thousandeyes", "hcp_terraform", "terraform_enterprise", "workato")
RAW_TABLES = ("raw.api_snapshots", "raw.api_batches")
# columns that say when a row was written, not what it holds: never part of a fingerprint
VOLATILE_COLUMNS = frozenset({"loaded_at", "recorded_at"})


# ---------- compressed time for the HTTP layer


class VirtualClock:
    """An `http.Clock` whose sleeps advance a virtual offset instead of blocking.

    `monotonic()` is the real monotonic time plus every second "slept", so budgets, limiters
    and backoff see time pass exactly as in production; `now_utc()` is the pipeline clock
    (the sandbox's, under `timeutil.use_clock`). Thread-safe; it records every wait.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()
        self.waits: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return time.monotonic() + self._offset

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._offset += seconds
                self.waits.append(seconds)

    def now_utc(self) -> datetime:
        return timeutil.utcnow()

    @property
    def waited_s(self) -> float:
        with self._lock:
            return sum(self.waits)


@contextmanager
def compressed_http(clock: VirtualClock, *, timeout_s: float | None = None) -> Iterator[VirtualClock]:
    """Every `http.Session` made inside runs its waits on `clock` (and reads with `timeout_s`).

    No client resource takes a clock, retry policy or timeout through its configuration, so
    this wraps `http.Session.__init__` for the duration: the session, its retries, its limiter
    and its error handling are the production code; only where it sleeps changes. A limiter
    made on the real clock (HCP's shared per-user one) is swapped for one on `clock`.
    """
    original = http.Session.__init__

    def init(self: http.Session, vendor: str, base_url: str, **kw: Any) -> None:
        if kw.get("clock") is None or isinstance(kw["clock"], http.SystemClock):
            kw["clock"] = clock
        limiter = kw.get("limiter")
        if limiter is not None and isinstance(getattr(limiter, "_clock", None), http.SystemClock):
            kw["limiter"] = http.limiter_for(f"{vendor}:soak", limiter.rate_per_s, limiter.burst, clock=clock)
        if timeout_s is not None:
            kw["timeout"] = httpx.Timeout(timeout_s)
        original(self, vendor, base_url, **kw)

    http.Session.__init__ = init  # type: ignore[method-assign]
    try:
        yield clock
    finally:
        http.Session.__init__ = original  # type: ignore[method-assign]
