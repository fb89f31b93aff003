"""The TFE usage-bundle parser, on every vendor sample and on crafted edge cases (rung 1: pure).

Proves: rows keyed by the metric map key, unknown keys kept and reported once, nanosecond
times with any offset stored in UTC (truncated to microseconds, original kept), checksums
exact as text above 2^63, bundle and metric `mode` apart, opted-out zeros flagged, and bad
bodies or missing snapshot ids rejected with messages naming account and raw snapshot.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from usage_pipeline.errors import PayloadError
from usage_pipeline.sources.base import to_arrow
from usage_pipeline.sources.terraform_enterprise import constants
from usage_pipeline.sources.terraform_enterprise.parse import (
    checksum_text,
    decode_bundle,
    parse_tfe_time,
    parse_usage_bundle,
)
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "terraform_enterprise"
# ../shared/api_samples, or the copy under fixtures/ in a clone elsewhere (conftest.samples_dir)
_SHARED = Path(__file__).resolve().parents[2] / "shared" / "api_samples" / "tfe_system"
SAMPLES = _SHARED if _SHARED.is_dir() else FIXTURES.parent / "api_samples" / "tfe_system"
ACCOUNT = "tfe.example.com"
OBSERVED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
BUNDLES, SNAPSHOTS, METRICS = constants.BUNDLES_TABLE, constants.SNAPSHOTS_TABLE, constants.METRICS_TABLE


def parse_file(path: Path, snapshot_id: str = "20261120T100000000000Z-raw1"):
    payload = decode_bundle(path.read_bytes(), account_id=ACCOUNT, snapshot_id=snapshot_id)
    return parse_usage_bundle(payload, snapshot_id=snapshot_id, account_id=ACCOUNT, observed_at=OBSERVED)


def parse_payload(payload, snapshot_id: str = "raw-1"):
    body = json.dumps(payload).encode()
    return parse_usage_bundle(decode_bundle(body, account_id=ACCOUNT, snapshot_id=snapshot_id),
                              snapshot_id=snapshot_id, account_id=ACCOUNT, observed_at=OBSERVED)


def docs_sample() -> dict:
    return json.loads((SAMPLES / "usage_bundle.docs_sample.json").read_text())


def metrics_by_key(parsed) -> dict[str, dict]:
    return {row["metric_key"]: row for row in parsed.tables[METRICS]}


# ---------- the vendor samples


def test_parse_usage_bundle_docs_sample_gives_exact_values():
    parsed = parse_file(SAMPLES / "usage_bundle.docs_sample.json")
    [bundle] = parsed.tables[BUNDLES]
    [snapshot] = parsed.tables[SNAPSHOTS]
    [metric] = parsed.tables[METRICS]
    assert bundle == {
        "snapshot_id": "20261120T100000000000Z-raw1", "observed_at": OBSERVED, "format_version": "2",
        "bundle_mode": "automatic",
        "exported_at": datetime(2025, 6, 5, 19, 54, 16, 16366, tzinfo=UTC),  # .016366464: 464 ns truncated
        "exported_at_raw": "2025-06-05T19:54:16.016366464Z",
        "signature": "fdd077fa855d11aa855d11a855d11aa855d11a",
        "checksum": "5193303679122559012", "snapshot_count": 1,
    }
    assert snapshot["tfe_snapshot_id"] == "0001XXXXXXGXXXRMXXXXXXXXXXXX"
    assert snapshot["snapshot_at"] == datetime(2025, 4, 10, 0, 0, 4, 386332, tzinfo=UTC)
    assert snapshot["snapshot_at_raw"] == "2025-04-10T00:00:04.386332246Z"
    assert snapshot["checksum"] == "5193303679122559012"
    assert (snapshot["license_id"], snapshot["product"], snapshot["product_version"], snapshot["schema_version"]) == (
        "b855d11a-2b6e-4b0c-8e3f-2a3e5d6b7f9c", "terraform", "v202504-1", "2.0.0")
    assert snapshot["metadata_json"] == "{}"
    # the sample carries no opt-in flags: unknown, not "opted out"
    assert snapshot["product_usage_reporting_opt_in"] is None and snapshot["billable_rum_opt_in"] is None
    assert (metric["metric_key"], metric["value"], metric["value_text"], metric["metric_mode"]) == (
        "workspacecount", Decimal(0), "0", "write")
    assert metric["is_reported"] is True and metric["is_known_metric"] is True
    assert bundle["bundle_mode"] != metric["metric_mode"]  # two levels, two meanings
    assert parsed.warnings == ()


def test_parse_usage_bundle_all_metrics_sample_keys_rows_by_map_key():
    parsed = parse_file(SAMPLES / "usage_bundle.derived_all_metrics_v202507-1.json")
    rows = metrics_by_key(parsed)
    assert len(rows) == 58 == parsed.tables[SNAPSHOTS][0]["metric_count"]
    assert all(row["is_known_metric"] for row in rows.values())
    # the reference's copy/paste bug: inner key says using_tfe_explorer, the map key wins
    assert rows["cpu_architecture"]["inner_key"] == "using_tfe_explorer"
    assert (rows["cpu_architecture"]["value"], rows["using_tfe_explorer"]["value"]) == (Decimal(1), Decimal(0))
    assert parsed.warnings == (
        "terraform_enterprise: metric 'cpu_architecture' carries the inner key 'using_tfe_explorer'; "
        "rows are keyed by the map key 'cpu_architecture'",
    )
    assert {key: row["unit"] for key, row in rows.items() if row["unit"]} == {
        "billable_rum_count": "managed_resources", "user_count": "users", "active_agents_count": "agents"}
    snapshot = parsed.tables[SNAPSHOTS][0]
    assert snapshot["product_usage_reporting_opt_in"] is True and snapshot["billable_rum_opt_in"] is True
    assert all(row["is_reported"] for row in rows.values())


def test_parse_usage_bundle_reads_the_v1_license_report():
    parsed = parse_file(SAMPLES / "license_report_v1.docs_sample.json")
    [bundle], [snapshot], [metric] = parsed.tables[BUNDLES], parsed.tables[SNAPSHOTS], parsed.tables[METRICS]
    assert (bundle["format_version"], bundle["bundle_mode"], bundle["signature"], bundle["checksum"]) == ("1", None, None, None)
    assert bundle["exported_at"] == datetime(2023, 5, 24, 10, 11, 12, tzinfo=UTC)
    assert snapshot["tfe_snapshot_id"] == "01GW2Y117Z2BZ7MGS9YQXPF2A4"
    assert snapshot["license_id"] == "934b62bd-7e7b-7872-7341-9683ecd9acb4"  # top level in v1
    assert (snapshot["product"], snapshot["product_version"]) == ("terraform", "v202305-01")  # `service` in v1
    assert snapshot["snapshot_at"] == datetime(2023, 5, 23, 20, 33, 32, 927000, tzinfo=UTC)
    assert json.loads(snapshot["metadata_json"])["terraform"]["sf_opportunity_id"] == "ix0z0kj5f7egd64bo1"
    assert metric["metric_key"] == "terraform.workspacecount"  # the map key, verbatim
    assert metric["metric_name"] == "workspacecount" and metric["is_known_metric"] is True
    assert (metric["value"], metric["metric_kind"], metric["metric_mode"]) == (Decimal(20), "counter", "write")


@pytest.mark.parametrize("name", [
    "usage_bundle.docs_sample.json",
    "usage_bundle.derived_all_metrics_v202507-1.json",
    "license_report_v1.docs_sample.json",
])
def test_parse_usage_bundle_rows_fit_the_staging_schemas(name):
    parsed = parse_file(SAMPLES / name)
    for table, schema in constants.SCHEMAS.items():
        arrow = to_arrow(parsed.tables[table], schema, account_id=ACCOUNT, partition_key="2026-11-19", loaded_at=OBSERVED)
        assert arrow.num_rows == len(parsed.tables[table]) > 0


def test_metric_catalogue_covers_every_key_of_the_vendor_references():
    keys: set[str] = set()
    for path in SAMPLES.glob("product_data_reference.*.raw.txt"):
        metrics_part = path.read_text().split('"metrics"', 1)[1].split('"metadata"', 1)[0]
        keys |= set(re.findall(r'"([a-z0-9_]+)"\s*:\s*\{', metrics_part))
    assert len(keys) == 58
    assert keys == set(constants.METRICS)


def test_parse_ping_sample_is_not_a_bundle():
    body = (SAMPLES / "ping.docs_sample.json").read_bytes()
    with pytest.raises(PayloadError, match="expected a JSON object"):
        parse_usage_bundle(decode_bundle(body, account_id=ACCOUNT, snapshot_id="raw-p"), snapshot_id="raw-p",
                           account_id=ACCOUNT, observed_at=OBSERVED)


# ---------- time and checksums


@pytest.mark.parametrize("raw, expected", [
    # the docs sample: nine digits, Z; digits 7-9 are dropped
    ("2025-04-10T00:00:04.386332246Z", datetime(2025, 4, 10, 0, 0, 4, 386332, tzinfo=UTC)),
    # truncation, not rounding: .999999999 stays in the same second
    ("2026-11-14T23:59:59.999999999Z", datetime(2026, 11, 14, 23, 59, 59, 999999, tzinfo=UTC)),
    # a negative offset crosses midnight into the next UTC day (Vault sample style)
    ("2026-11-13T16:00:04.386332846-08:00", datetime(2026, 11, 14, 0, 0, 4, 386332, tzinfo=UTC)),
    # a half-hour offset
    ("2026-11-14T05:30:04.386332446+05:30", datetime(2026, 11, 14, 0, 0, 4, 386332, tzinfo=UTC)),
    ("2026-11-13T20:30:04.386332646-03:30", datetime(2026, 11, 14, 0, 0, 4, 386332, tzinfo=UTC)),
    # RFC 3339 allows lower-case t/z and fewer digits
    ("2023-05-23t20:33:32.927z", datetime(2023, 5, 23, 20, 33, 32, 927000, tzinfo=UTC)),
    ("2026-11-14T00:00:04+00:00", datetime(2026, 11, 14, 0, 0, 4, tzinfo=UTC)),
])
def test_parse_tfe_time_returns_utc_truncated_to_microseconds(raw, expected):
    parsed = parse_tfe_time(raw)
    assert parsed == expected and parsed.tzinfo == UTC


def test_snapshot_time_keeps_the_original_string_beside_utc():
    bundle = docs_sample()
    bundle["snapshots"][0]["timestamp"] = "2026-11-13T16:00:04.386332846-08:00"
    [snapshot] = parse_payload(bundle).tables[SNAPSHOTS]
    assert snapshot["snapshot_at"] == datetime(2026, 11, 14, 0, 0, 4, 386332, tzinfo=UTC)
    assert snapshot["snapshot_at_raw"] == "2026-11-13T16:00:04.386332846-08:00"


def test_snapshot_time_without_offset_is_refused():
    bundle = docs_sample()
    bundle["snapshots"][0]["timestamp"] = "2026-11-14T00:00:04.386332246"
    with pytest.raises(PayloadError, match="'timestamp' = '2026-11-14T00:00:04.386332246' is not an RFC 3339 time"):
        parse_payload(bundle)


@pytest.mark.parametrize("value, expected", [
    (5193303679122559012, "5193303679122559012"),      # the docs sample, under 2^63
    (2**63, "9223372036854775808"),                    # one past signed BIGINT
    (2**64 - 1, "18446744073709551615"),               # the largest unsigned 64-bit value
    ("${SHA}", "${SHA}"),                              # the reference page's string form, verbatim
    (None, None),
])
def test_checksum_text_is_exact(value, expected):
    assert checksum_text(value) == expected


def test_checksums_above_2_to_63_survive_bytes_to_row_exactly():
    body = (b'{"version":"2","mode":"automatic","timestamp":"2026-11-20T10:00:00.000000464Z","signature":"ab",'
            b'"checksum":18446744073709551615,"snapshots":[{"snapshot_version":2,"id":"01S","timestamp":'
            b'"2026-11-20T00:00:04.386332246Z","license_id":"L1","checksum":9223372036854775809,"metrics":{}}]}')
    payload = decode_bundle(body, account_id=ACCOUNT, snapshot_id="raw-1")
    assert type(payload["checksum"]) is int  # never float: float would round to 1.8446744073709552e19
    parsed = parse_usage_bundle(payload, snapshot_id="raw-1", account_id=ACCOUNT, observed_at=OBSERVED)
    assert parsed.tables[BUNDLES][0]["checksum"] == "18446744073709551615"
    assert parsed.tables[SNAPSHOTS][0]["checksum"] == "9223372036854775809"


def test_float_checksum_is_kept_as_text_and_reported():
    bundle = docs_sample()
    bundle["checksum"] = 1.5
    parsed = parse_payload(bundle)
    assert parsed.tables[BUNDLES][0]["checksum"] == "1.5"
    assert any("checksum is a number, not an integer" in warning for warning in parsed.warnings)


# ---------- metrics: values, unknown keys, opt-outs


def test_fractional_and_huge_values_are_exact_or_kept_as_text():
    bundle = docs_sample()
    metrics = bundle["snapshots"][0]["metrics"]
    body = json.dumps(bundle).encode()
    body = body.replace(b'"value": 0', b'"value": 12.345678901234567891')  # more digits than a double holds
    payload = decode_bundle(body, account_id=ACCOUNT, snapshot_id="raw-1")
    assert metrics  # the sample has one metric: workspacecount
    [row] = parse_usage_bundle(payload, snapshot_id="raw-1", account_id=ACCOUNT, observed_at=OBSERVED).tables[METRICS]
    assert row["value_text"] == "12.345678901234567891"
    assert row["value"] == Decimal("12.345678901")  # NUMERIC(38,9), rounded half-even; the text stays exact
    huge = json.dumps(bundle).replace('"value": 0', '"value": 1e40').encode()
    parsed = parse_usage_bundle(decode_bundle(huge, account_id=ACCOUNT, snapshot_id="r"), snapshot_id="r",
                                account_id=ACCOUNT, observed_at=OBSERVED)
    [row] = parsed.tables[METRICS]
    assert row["value"] is None and row["value_text"] == "1E+40"
    assert any("beyond 29 digits" in warning for warning in parsed.warnings)


def test_non_numeric_value_is_kept_in_value_text_only():
    bundle = docs_sample()
    bundle["snapshots"][0]["metrics"]["workspacecount"]["value"] = "n/a"
    [row] = parse_payload(bundle).tables[METRICS]
    assert (row["value"], row["value_text"]) == (None, "n/a")


def test_unknown_metric_key_becomes_rows_and_is_reported_once():
    bundle = docs_sample()
    second = copy.deepcopy(bundle["snapshots"][0])
    second["id"] = "0001SECONDSNAPSHOTXXXXXXXXXX"
    bundle["snapshots"].append(second)
    for snapshot in bundle["snapshots"]:
        snapshot["metrics"]["stacks_deployment_count"] = {"key": "stacks_deployment_count", "value": 7, "mode": "write"}
    parsed = parse_payload(bundle)
    unknown = [row for row in parsed.tables[METRICS] if row["metric_key"] == "stacks_deployment_count"]
    assert len(unknown) == 2 and all(not row["is_known_metric"] and row["value"] == 7 for row in unknown)
    assert [w for w in parsed.warnings if "stacks_deployment_count" in w] == [
        "terraform_enterprise: unknown metric key 'stacks_deployment_count': loaded as rows; "
        "describe it in constants.METRICS once documented"]


def test_unknown_fields_are_reported_and_an_unknown_version_still_parses():
    bundle = docs_sample()
    bundle["version"] = "3"
    bundle["region"] = "eu"
    bundle["snapshots"][0]["cluster_id"] = "c-1"
    parsed = parse_payload(bundle)
    assert len(parsed.tables[METRICS]) == 1
    assert parsed.tables[BUNDLES][0]["format_version"] == "3"
    assert set(parsed.warnings) == {
        "terraform_enterprise: bundle version '3' is not the documented '2'; read with the version 2 layout",
        "terraform_enterprise: unknown bundle field 'region': kept in the raw file, not loaded",
        "terraform_enterprise: unknown snapshot field 'cluster_id': kept in the raw file, not loaded",
    }


def _opted(usage: int | None, billable: int | None) -> dict:
    bundle = docs_sample()
    metrics = bundle["snapshots"][0]["metrics"]
    for key, value in {"billable_rum_count": 0, "user_count": 0, "active_agents_count": 4}.items():
        metrics[key] = {"key": key, "value": value, "mode": "write"}
    if usage is not None:
        metrics["product_usage_reporting_opt_in"] = {"key": "product_usage_reporting_opt_in", "value": usage, "mode": "write"}
    if billable is not None:
        metrics["billable_rum_opt_in"] = {"key": "billable_rum_opt_in", "value": billable, "mode": "write"}
    return bundle


@pytest.mark.parametrize("usage, billable, expected", [
    # opted in: every zero is a real zero
    (1, 1, {"billable_rum_count": None, "user_count": None, "workspacecount": None}),
    # product usage reporting off: zeros mean "not reported"; a non-zero value is still a value
    (0, 1, {"billable_rum_count": "usage_reporting_opted_out", "user_count": "usage_reporting_opted_out",
            "workspacecount": "usage_reporting_opted_out", "active_agents_count": None}),
    # billable RUM reporting off: only the RUM metrics' zeros are not reported
    (1, 0, {"billable_rum_count": "billable_rum_opted_out", "user_count": None, "workspacecount": None}),
    # no flags at all (older snapshots): nothing to distrust
    (None, None, {"billable_rum_count": None, "user_count": None}),
])
def test_zeros_under_an_opt_out_are_flagged_not_reported(usage, billable, expected):
    parsed = parse_payload(_opted(usage, billable))
    rows = metrics_by_key(parsed)
    for key, reason in expected.items():
        assert rows[key]["not_reported_reason"] == reason, key
        assert rows[key]["is_reported"] is (reason is None), key
    for flag in constants.OPT_IN_FLAGS:  # the flags themselves are always real values
        if flag in rows:
            assert rows[flag]["is_reported"] is True
    snapshot = parsed.tables[SNAPSHOTS][0]
    assert snapshot["product_usage_reporting_opt_in"] is (None if usage is None else usage == 1)
    assert snapshot["billable_rum_opt_in"] is (None if billable is None else billable == 1)


def test_opted_out_fixture_flags_every_zero():
    parsed = parse_file(FIXTURES / "bundle_opted_out.json")
    rows = metrics_by_key(parsed)
    assert rows["product_usage_reporting_opt_in"]["value"] == 0
    not_reported = {key for key, row in rows.items() if not row["is_reported"]}
    assert not_reported == {"billable_rum_count", "user_count", "active_agents_count", "workspacecount"}


# ---------- bad input


def test_missing_snapshot_id_names_field_account_and_snapshot():
    bundle = docs_sample()
    second = copy.deepcopy(bundle["snapshots"][0])
    del second["id"]
    second["timestamp"] = "2025-04-11T00:00:04.386332246Z"
    bundle["snapshots"].append(second)
    with pytest.raises(PayloadError) as caught:
        parse_payload(bundle, snapshot_id="20261120T100000Z-abc")
    message = str(caught.value)
    assert message.startswith("terraform_enterprise [account tfe.example.com]: raw snapshot 20261120T100000Z-abc")
    assert "bundle snapshot #1 (timestamp 2025-04-11T00:00:04.386332246Z) has no 'id' field (missing)" in message
    assert "deduplicates snapshots across pulls" in message


@pytest.mark.parametrize("value", ["", "   ", 17, None])
def test_blank_or_non_string_snapshot_id_is_refused(value):
    bundle = docs_sample()
    bundle["snapshots"][0]["id"] = value
    with pytest.raises(PayloadError, match="bundle snapshot #0 .*has no 'id' field"):
        parse_payload(bundle)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b["snapshots"][0].pop("license_id"), "has no 'license_id' field"),
    (lambda b: b["snapshots"][0].pop("timestamp"), "field 'timestamp' is null, expected an RFC 3339 time"),
    (lambda b: b["snapshots"][0].update(metrics=[1, 2]), "field 'metrics' is a list, expected an object"),
    (lambda b: b["snapshots"][0]["metrics"].update(workspacecount=3), "metric 'workspacecount' is a number, expected an object"),
    (lambda b: b.update(snapshots={"a": 1}), "field 'snapshots' is an object, expected a list"),
])
def test_wrong_shapes_are_payload_errors_naming_the_problem(mutate, message):
    bundle = docs_sample()
    mutate(bundle)
    with pytest.raises(PayloadError, match=re.escape(message)):
        parse_payload(bundle)


def test_duplicate_snapshot_in_one_bundle_is_loaded_once():
    bundle = docs_sample()
    later = copy.deepcopy(bundle["snapshots"][0])
    later["metrics"]["workspacecount"]["value"] = 5
    bundle["snapshots"].append(later)
    parsed = parse_payload(bundle)
    assert len(parsed.tables[SNAPSHOTS]) == 1 and len(parsed.tables[METRICS]) == 1
    assert parsed.tables[METRICS][0]["value"] == 5  # the later entry is kept
    assert any("lists snapshot 0001XXXXXXGXXXRMXXXXXXXXXXXX twice" in w for w in parsed.warnings)


@pytest.mark.parametrize("body, message", [
    # a response cut off mid-way: inside a string, and between tokens
    (b'{"version":"2","snapshots":[{"id":"01', "ends before the JSON is complete (truncated response?)"),
    (b'{"version":"2","snapshots":[{"id":"01X"}', "ends before the JSON is complete (truncated response?)"),
    # a proxy or login page in front of port 8443
    (b"<!DOCTYPE html><html><body>Service Unavailable</body></html>", "is an HTML page, not a JSON usage bundle"),
    (b"   ", "has an empty body"),
    (b'{"checksum": NaN}', "is not valid JSON: NaN is not a JSON number"),
    (b'{"a": 1,, "b": 2}', "is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 9"),
])
def test_decode_bundle_names_what_came_instead_of_json(body, message):
    with pytest.raises(PayloadError) as caught:
        decode_bundle(body, account_id=ACCOUNT, snapshot_id="raw-9", landing_path="terraform_enterprise/x/raw-9.json.gz")
    text = str(caught.value)
    assert text.startswith("terraform_enterprise [account tfe.example.com]: raw snapshot raw-9 (usage_bundle)")
    assert message in text
    assert text.endswith("the raw file is kept at terraform_enterprise/x/raw-9.json.gz")
