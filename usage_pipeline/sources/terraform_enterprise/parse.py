"""Parse Terraform Enterprise usage bundles into staging rows: pure, bytes or payload in, rows out.

One landed bundle gives three tables (API_CONTRACTS.md §1.5):
- `stg_terraform_enterprise__bundles`: one row per landed bundle (bundle-level mode, signature, checksum);
- `stg_terraform_enterprise__snapshots`: one row per landed bundle × TFE snapshot;
- `stg_terraform_enterprise__metrics`: one row per landed bundle × TFE snapshot × metric.

The rules that matter: a metric row is keyed by the metric's **map key** (the inner `key` is
informational and wrong in the vendor's own v202507-1 reference); unknown keys are rows too,
reported once; checksums are exact text (they exceed 2^63); TFE's nanosecond RFC 3339 times
are stored in UTC truncated to microseconds, with the original string kept beside them; the
TFE snapshot `id` is required because it is the key that deduplicates snapshots across pulls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from usage_pipeline.errors import PayloadError
from usage_pipeline.http import preview
from usage_pipeline.sources.base import Parsed
from usage_pipeline.sources.terraform_enterprise import constants as c
from usage_pipeline.sources.terraform_enterprise.constants import VALUE_LIMIT, VALUE_QUANTUM
from usage_pipeline.timeutil import parse_iso_utc

# ---------- bytes → JSON


def decode_bundle(body: bytes, *, account_id: str, snapshot_id: str, landing_path: str | None = None) -> Any:
    """The landed body as JSON, numbers exact (integers as int, fractions as Decimal, never float).

    An empty body, an HTML page or malformed/truncated JSON is a PayloadError naming the
    account, the raw snapshot and where its file is kept.
    """
    where = _where(snapshot_id)
    kept = f"; the raw file is kept at {landing_path}" if landing_path else ""
    text = body.lstrip()
    if not text:
        raise PayloadError(c.KEY, account_id, f"{where} has an empty body, not a usage bundle{kept}")
    if text[:1] == b"<":
        raise PayloadError(
            c.KEY, account_id,
            f"{where} is an HTML page, not a JSON usage bundle (a proxy or login page in front of the "
            f"System API port?); first bytes {preview(body)}{kept}",
        )
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise PayloadError(c.KEY, account_id, f"{where} is not UTF-8 text; first bytes {preview(body)}{kept}") from None
    except json.JSONDecodeError as error:
        # cut off mid-way: the parser hit the end, or a string that never closes
        ends_early = error.pos >= len(body.decode("utf-8", "replace").rstrip()) or error.msg.startswith("Unterminated")
        why = "it ends before the JSON is complete (truncated response?)" if ends_early else (
            f"{error.msg} at line {error.lineno} column {error.colno}")
        raise PayloadError(
            c.KEY, account_id, f"{where} is not valid JSON: {why}; first bytes {preview(body)}{kept}"
        ) from None
    except ValueError as error:
        raise PayloadError(c.KEY, account_id, f"{where} is not valid JSON: {error}{kept}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# ---------- payload → rows


def parse_usage_bundle(payload: Any, *, snapshot_id: str, account_id: str, observed_at: datetime,
                       landing_path: str | None = None) -> Parsed:
    """Rows of one landed bundle: version 2 (the API), or the older payload_version 1 file."""
    context = _Context(account_id, snapshot_id, observed_at, landing_path)
    if not isinstance(payload, dict):
        raise context.error(f"expected a JSON object (the usage bundle), got {_json_type(payload)}")
    if "payload_version" in payload and "version" not in payload:
        return parse_license_report_v1(payload, snapshot_id=snapshot_id, account_id=account_id,
                                       observed_at=observed_at, landing_path=landing_path)
    return parse_bundle_v2(payload, snapshot_id=snapshot_id, account_id=account_id, observed_at=observed_at,
                           landing_path=landing_path)


def parse_bundle_v2(payload: Mapping[str, Any], *, snapshot_id: str, account_id: str, observed_at: datetime,
                    landing_path: str | None = None) -> Parsed:
    """Rows of a bundle "version 2" (`GET /api/v1/usage/bundle`, TFE v202505-1 and later)."""
    context = _Context(account_id, snapshot_id, observed_at, landing_path)
    version = _text(payload.get("version"))
    if version != "2":
        context.warn(f"bundle version {version!r} is not the documented '2'; read with the version 2 layout")
    context.unknown_fields("bundle", payload, c.BUNDLE_FIELDS_V2)
    exported_at, exported_raw = context.time(payload, "timestamp", "the bundle", required=False)
    entries = context.snapshot_list(payload)
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise context.error(f"bundle snapshot #{position} is {_json_type(entry)}, not an object")
        context.unknown_fields("snapshot", entry, c.SNAPSHOT_FIELDS_V2)
        tfe_id = context.snapshot_id_of(entry, "id", position)
        snapshot_at, snapshot_raw = context.time(entry, "timestamp", f"snapshot {tfe_id}", required=True)
        context.add_snapshot(
            tfe_id, position, entry.get("metrics"),
            snapshot_version=_integer(entry.get("snapshot_version")),
            schema_version=_text(entry.get("schema_version")),
            product=_text(entry.get("product")),
            product_version=_text(entry.get("product_version")),
            license_id=context.required_text(entry, "license_id", f"snapshot {tfe_id}"),
            process_id=_text(entry.get("process_id")),
            snapshot_at=snapshot_at, snapshot_at_raw=snapshot_raw,
            checksum=context.checksum(entry.get("checksum"), "snapshot"),
            metadata_json=_json_text(entry.get("metadata")),
        )
    context.bundles.append({
        "snapshot_id": snapshot_id, "observed_at": observed_at, "format_version": version,
        "bundle_mode": _text(payload.get("mode")), "exported_at": exported_at, "exported_at_raw": exported_raw,
        "signature": _text(payload.get("signature")),
        "checksum": context.checksum(payload.get("checksum"), "bundle"),
        "snapshot_count": len(entries),
    })
    return context.parsed()


def parse_license_report_v1(payload: Mapping[str, Any], *, snapshot_id: str, account_id: str,
                            observed_at: datetime, landing_path: str | None = None) -> Parsed:
    """Rows of the older `payload_version: "1"` license report (files from `tfectl admin usage-report`).

    Licence, product and version sit at the top level there; snapshots use `snapshot_id` and
    `service`, and metrics carry a `kind`. There is no signature or checksum.
    """
    context = _Context(account_id, snapshot_id, observed_at, landing_path)
    version = _text(payload.get("payload_version"))
    if version != "1":
        context.warn(f"license report payload_version {version!r} is not the documented '1'; read as version 1")
    context.unknown_fields("license report", payload, c.REPORT_FIELDS_V1)
    license_id = context.required_text(payload, "license_id", "the license report")
    exported_at, exported_raw = context.time(payload, "export_timestamp", "the license report", required=False)
    entries = context.snapshot_list(payload)
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise context.error(f"report snapshot #{position} is {_json_type(entry)}, not an object")
        context.unknown_fields("v1 snapshot", entry, c.SNAPSHOT_FIELDS_V1)
        tfe_id = context.snapshot_id_of(entry, "snapshot_id", position)
        snapshot_at, snapshot_raw = context.time(entry, "timestamp", f"snapshot {tfe_id}", required=True)
        context.add_snapshot(
            tfe_id, position, entry.get("metrics"),
            snapshot_version=_integer(entry.get("snapshot_version")),
            schema_version=_text(entry.get("schema_version")),
            product=_text(entry.get("service")) or _text(payload.get("product")),
            product_version=_text(payload.get("product_version")),
            license_id=license_id,
            process_id=_text(entry.get("process_id")),
            snapshot_at=snapshot_at, snapshot_at_raw=snapshot_raw,
            checksum=None,
            metadata_json=_json_text(payload.get("metadata")),
        )
    context.bundles.append({
        "snapshot_id": snapshot_id, "observed_at": observed_at, "format_version": version,
        "bundle_mode": None, "exported_at": exported_at, "exported_at_raw": exported_raw,
        "signature": None, "checksum": None, "snapshot_count": len(entries),
    })
    return context.parsed()


def metric_name(map_key: str) -> str:
    """The catalogue name of a map key: v1's legacy `terraform.` prefix removed."""
    return map_key.removeprefix(c.LEGACY_KEY_PREFIX)


def not_reported_reason(name: str, value: Decimal | None, *, usage_opt_in: bool | None,
                        billable_rum_opt_in: bool | None) -> str | None:
    """Why a value is not a real observation: a zero under an opt-out ("set to 0", §1.9.7)."""
    if name in c.OPT_IN_FLAGS or value is None or value != 0:
        return None
    if usage_opt_in is False:
        return "usage_reporting_opted_out"
    if billable_rum_opt_in is False and name in c.BILLABLE_RUM_METRICS:
        return "billable_rum_opted_out"
    return None


# ---------- the parse context: rows, warnings and errors of one landed bundle


@dataclass
class _Context:
    account_id: str
    snapshot_id: str
    observed_at: datetime
    landing_path: str | None
    bundles: list[dict[str, Any]] = field(default_factory=list)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    warnings: dict[str, None] = field(default_factory=dict)  # ordered set

    def error(self, message: str) -> PayloadError:
        kept = f"; the raw file is kept at {self.landing_path}" if self.landing_path else ""
        return PayloadError(c.KEY, self.account_id, f"{_where(self.snapshot_id)}: {message}{kept}")

    def warn(self, message: str) -> None:
        # no account or raw id in the text: the same quirk is reported once, not once per pull
        self.warnings[f"{c.KEY}: {message}"] = None

    def parsed(self) -> Parsed:
        metric_rows = [row for rows in self.metrics.values() for row in rows]
        return Parsed(
            tables={c.BUNDLES_TABLE: self.bundles, c.SNAPSHOTS_TABLE: list(self.snapshots.values()),
                    c.METRICS_TABLE: metric_rows},
            warnings=tuple(self.warnings),
        )

    def unknown_fields(self, what: str, entry: Mapping[str, Any], known: frozenset[str]) -> None:
        for name in entry:
            if name not in known:
                self.warn(f"unknown {what} field {name!r}: kept in the raw file, not loaded")

    def snapshot_list(self, payload: Mapping[str, Any]) -> list[Any]:
        entries = payload.get("snapshots")
        if not isinstance(entries, list):
            raise self.error(f"field 'snapshots' is {_json_type(entries)}, expected a list of snapshots")
        return entries

    def snapshot_id_of(self, entry: Mapping[str, Any], name: str, position: int) -> str:
        value = entry.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
        at = entry.get("timestamp")
        described = f"bundle snapshot #{position}" + (f" (timestamp {at})" if isinstance(at, str) else "")
        raise self.error(
            f"{described} has no {name!r} field ({'missing' if value is None else _json_type(value)}): it is "
            "the key that deduplicates snapshots across pulls, so this bundle is not loaded"
        )

    def required_text(self, entry: Mapping[str, Any], name: str, what: str) -> str:
        value = _text(entry.get(name))
        if not value:
            raise self.error(f"{what} has no {name!r} field (the account key of the marts)")
        return value

    def time(self, entry: Mapping[str, Any], name: str, what: str, *, required: bool) -> tuple[datetime | None, str | None]:
        value = entry.get(name)
        if value is None and not required:
            return None, None
        if not isinstance(value, str):
            raise self.error(f"{what} field {name!r} is {_json_type(value)}, expected an RFC 3339 time")
        try:
            return parse_tfe_time(value), value
        except ValueError:
            if not required:
                self.warn(f"{what} field {name!r} is not an RFC 3339 time with an offset; left empty")
                return None, value
            raise self.error(f"{what} field {name!r} = {value[:60]!r} is not an RFC 3339 time with an offset") from None

    def checksum(self, value: Any, level: str) -> str | None:
        text = checksum_text(value)
        if value is not None and not (isinstance(value, (int, str)) and not isinstance(value, bool)):
            self.warn(f"a {level} checksum is {_json_type(value)}, not an integer or string; kept as text")
        return text

    def add_snapshot(self, tfe_id: str, position: int, metrics: Any, **fields: Any) -> None:
        if not isinstance(metrics, dict):
            raise self.error(f"snapshot {tfe_id}: field 'metrics' is {_json_type(metrics)}, expected an object")
        if tfe_id in self.snapshots:
            self.warn(f"a bundle lists snapshot {tfe_id} twice; the later entry is kept")
        usage_opt_in = _flag(metrics, c.USAGE_OPT_IN)
        billable_opt_in = _flag(metrics, c.BILLABLE_RUM_OPT_IN)
        self.snapshots.pop(tfe_id, None)  # a re-listed id moves to its later position
        self.snapshots[tfe_id] = {
            "snapshot_id": self.snapshot_id, "observed_at": self.observed_at, "tfe_snapshot_id": tfe_id,
            "bundle_position": position, **fields,
            "product_usage_reporting_opt_in": usage_opt_in, "billable_rum_opt_in": billable_opt_in,
            "metric_count": len(metrics),
        }
        self.metrics[tfe_id] = [
            self.metric_row(tfe_id, key, entry, usage_opt_in=usage_opt_in, billable_opt_in=billable_opt_in)
            for key, entry in metrics.items()
        ]

    def metric_row(self, tfe_id: str, key: str, entry: Any, *, usage_opt_in: bool | None,
                   billable_opt_in: bool | None) -> dict[str, Any]:
        if not isinstance(entry, dict):
            raise self.error(f"snapshot {tfe_id}: metric {key!r} is {_json_type(entry)}, expected an object "
                             "with key, value and mode")
        self.unknown_fields("metric", entry, c.METRIC_FIELDS)
        name = metric_name(key)
        known = name in c.METRICS
        if not known:
            self.warn(f"unknown metric key {key!r}: loaded as rows; describe it in constants.METRICS once documented")
        inner = entry.get("key")
        if inner is not None and inner != key:
            self.warn(f"metric {key!r} carries the inner key {inner!r}; rows are keyed by the map key {key!r}")
        value, value_text = self.value(key, entry)
        reason = not_reported_reason(name, value, usage_opt_in=usage_opt_in, billable_rum_opt_in=billable_opt_in)
        return {
            "snapshot_id": self.snapshot_id, "observed_at": self.observed_at, "tfe_snapshot_id": tfe_id,
            "metric_key": key, "metric_name": name, "inner_key": _text(inner), "value": value,
            "value_text": value_text, "metric_mode": _text(entry.get("mode")), "metric_kind": _text(entry.get("kind")),
            "is_known_metric": known, "unit": c.METRICS[name].unit if known else None,
            "is_reported": reason is None, "not_reported_reason": reason,
        }

    def value(self, key: str, entry: Mapping[str, Any]) -> tuple[Decimal | None, str | None]:
        if "value" not in entry:
            self.warn(f"metric {key!r} has no value; loaded with an empty value")
            return None, None
        raw = entry["value"]
        text = _scalar_text(raw)
        if isinstance(raw, bool) or not isinstance(raw, (int, Decimal)):
            self.warn(f"metric {key!r} has a {_json_type(raw)} value, not a number; kept in value_text only")
            return None, text
        number = Decimal(raw)
        if abs(number) >= VALUE_LIMIT:
            self.warn(f"metric {key!r} has a value beyond 29 digits; kept in value_text only")
            return None, text
        if number != number.quantize(VALUE_QUANTUM, rounding=ROUND_HALF_EVEN):
            self.warn(f"metric {key!r} has more than 9 decimal places; value rounded, value_text exact")
        return number.quantize(VALUE_QUANTUM, rounding=ROUND_HALF_EVEN), text


# ---------- value helpers


def parse_tfe_time(value: str) -> datetime:
    """An RFC 3339 time with nanoseconds and any offset → aware UTC datetime.

    Python datetimes hold microseconds: digits 7-9 of the fraction are truncated, not rounded
    (`…04.386332246Z` → `…04.386332`). The original string is stored beside it.
    """
    return parse_iso_utc(value)


def checksum_text(value: Any) -> str | None:
    """A checksum as exact text: integers in full (unsigned 64-bit values exceed BIGINT), strings verbatim."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return _scalar_text(value)


def _flag(metrics: Mapping[str, Any], name: str) -> bool | None:
    entry = metrics.get(name)
    value = entry.get("value") if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or value not in (0, 1):
        return None
    return value == 1


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return _json_text(value)


def _scalar_text(value: Any) -> str | None:
    """A value as text without loss: numbers in their exact decimal form, strings verbatim."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    return _text(value)


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**31 else None


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=_decimal_text)


def _decimal_text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _where(snapshot_id: str) -> str:
    return f"raw snapshot {snapshot_id} ({c.ENDPOINT})"
