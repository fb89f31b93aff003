"""The exception hierarchy of usage_pipeline, drawn once here.

    UsagePipelineError                 every error we raise on purpose
    ├── ConfigError                    bad or half-made configuration (names the variable)
    ├── WarehouseError                 the warehouse cannot be reached or written
    │   └── WarehouseBusyError         another process holds the DuckDB file
    ├── SourceError                    something went wrong for one source and account
    │   ├── HttpError                  the vendor answered with an error status
    │   │   ├── AuthError              401/403: token rejected or expired (names the variable)
    │   │   ├── NotFoundError          404 (for HCP Terraform: "unknown", never "deleted")
    │   │   └── RetryBudgetExceeded    retries on 429/5xx/transport errors used up the budget
    │   ├── TransportError             timeouts and dropped connections after retries
    │   ├── PayloadError               the body is not what the contract says (HTML, bad JSON,
    │   │                              missing field, wrong type)
    │   └── BackfillRefused            a past observation tick of a vendor that keeps no history
    └── ModelError                     a dbt-like model or its YAML is wrong (names the file)

Every message names the source (vendor), the account and what was wrong. No message ever
contains a token, a query string or a whole payload: only redacted URLs and the first bytes
of a body.
"""

from __future__ import annotations


class UsagePipelineError(Exception):
    """Base of every error raised on purpose by usage_pipeline."""


class ConfigError(UsagePipelineError):
    """The configuration is bad or half-made; the message names the variable."""


class WarehouseError(UsagePipelineError):
    """The warehouse cannot be reached, bootstrapped or written."""


class WarehouseBusyError(WarehouseError):
    """Another process holds the DuckDB file for writing."""


class ModelError(UsagePipelineError):
    """A dbt-like model, its YAML or its tests are wrong; the message names the file."""


class SourceError(UsagePipelineError):
    """A failure tied to one source (vendor) and one account."""

    def __init__(self, vendor: str, account: str | None, message: str) -> None:
        self.vendor = vendor
        self.account = account or "-"
        self.detail = message
        super().__init__(f"{vendor} [account {self.account}]: {message}")

    def __reduce__(self) -> tuple:
        """Pickled whole (replay parses in worker processes): the class, its arguments, its fields."""
        return (_restore, (type(self), self.args, self.__dict__))


class HttpError(SourceError):
    """The vendor answered with an error status that is not retried (or no longer)."""

    def __init__(self, vendor: str, account: str | None, message: str, *, status: int, url: str) -> None:
        self.status = status
        self.url = url
        super().__init__(vendor, account, message)


class AuthError(HttpError):
    """401/403: the token was rejected or has expired."""


class NotFoundError(HttpError):
    """404. For HCP Terraform this means unknown: not found, not permitted or not entitled."""


class RetryBudgetExceeded(HttpError):
    """Retries on 429/5xx ran out of attempts or of the total time budget."""


class TransportError(SourceError):
    """Timeouts and dropped connections that survived every retry."""


class PayloadError(SourceError):
    """The response body does not match the vendor contract."""


class BackfillRefused(SourceError):
    """A past observation tick was requested from a vendor that keeps no history."""


def _restore(cls: type, args: tuple, fields: dict) -> Exception:
    """Rebuild a SourceError (or subclass) from its message and fields, without calling __init__."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(fields)
    return error
