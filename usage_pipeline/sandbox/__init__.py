"""Simulated vendor APIs on loopback: the demo's default backend and the test server.

`SandboxServer` (in `server.py`) is the framework; each `<vendor>.py` registers that vendor's
routes and data on it.
"""

from usage_pipeline.sandbox.server import (
    DEFAULT_NOW,
    DEFAULT_TOKENS,
    FAULT_KINDS,
    VENDOR_MODULES,
    VENDORS,
    Fault,
    Faults,
    RecordedRequest,
    Route,
    SandboxClock,
    SandboxRequest,
    SandboxResponse,
    SandboxServer,
    too_many_requests,
    vendor_error,
)

__all__ = [
    "DEFAULT_NOW", "DEFAULT_TOKENS", "FAULT_KINDS", "VENDORS", "VENDOR_MODULES", "Fault", "Faults",
    "RecordedRequest", "Route", "SandboxClock", "SandboxRequest", "SandboxResponse", "SandboxServer",
    "too_many_requests", "vendor_error",
]
