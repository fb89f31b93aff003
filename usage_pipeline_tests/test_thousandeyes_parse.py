"""ThousandEyes parsers (rung 1, pure): every vendor payload we hold, read to exact values.

Proves: v6 and v7 land in one staging contract (text ids, UTC times, int64 units, NULL for an
absent projection and 0 for a zero), both `vagentId` generations, the v6 zone-abbreviation
rule, unknown fields reported once, and bad payloads named by field, account and snapshot.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usage_pipeline import http
from usage_pipeline.errors import PayloadError
from usage_pipeline.sources.base import staging_schema
from usage_pipeline.sources.thousandeyes import constants
from usage_pipeline.sources.thousandeyes.organizations import duplicate_accounts, org_of_aids, plan_accounts
from usage_pipeline.sources.thousandeyes.parse import (
    SCHEMAS,
    account_group_ids,
    api_version_of,
    parse_te_v6_time,
    parse_usage,
    parse_usage_v6,
    parse_usage_v7,
    read_te_v6_time,
    read_te_v7_time,
)

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "api_samples" / "thousandeyes"
TE = SHARED if SHARED.is_dir() else HERE / "fixtures" / "api_samples" / "thousandeyes"  # conftest.samples_dir()
FIXTURES = HERE / "fixtures" / "thousandeyes"
OBSERVED = datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC)
V7_CURRENT = "v7_usage_expand_all.sdk_fixture.json"
V7_VAGENT = "v7_usage_expand_all.sdk_fixture_pre_2025-10_with_vagentId.json"
V6_ASSEMBLED = "v6_usage.assembled_from_metadata_doc_examples.json"


def load(name: str) -> Any:
    path = FIXTURES / name if (FIXTURES / name).exists() else TE / name
    return json.loads(path.read_text())


def v7(payload: Any, account: str = "1234") -> Any:
    return parse_usage_v7(payload, snapshot_id="snap-1", observed_at=OBSERVED, account_id=account)


def v6(payload: Any, account: str = "1234") -> Any:
    return parse_usage_v6(payload, snapshot_id="snap-1", observed_at=OBSERVED, account_id=account)


def without_lineage(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("snapshot_id", "observed_at")} for row in rows]


# ---------- v7, current generation (agentId only)

V7_ORG_NUMBERS = {
    "cloud_units_included": 4320000000,  # > 2^31: BIGINT
    "endpoint_agents_included": 200,
    "endpoint_agents_essentials_included": 10,
    "endpoint_agents_embedded_included": 10,
    "enterprise_agents_included": 25,
    "device_agents_included": 100,
    "cloud_units_used": 8500489,
    "cloud_units_projected": 20993812,
    "cloud_units_next_period_projected": 25123456,
    "enterprise_units_used": 79640902,
    "enterprise_units_projected": 108016317,
    "enterprise_units_next_period_projected": 0,  # a real zero, kept
    "connected_devices_units_used": 79640902,
    "connected_devices_units_projected": 108016317,
    "connected_devices_units_next_period_projected": 0,
    "endpoint_agents_used": 42,
    "endpoint_agents_essentials_used": 5,
    "endpoint_agents_embedded_used": 5,
    "enterprise_agents_used": 58,
    "allocations_used": 1000,
    "allocations_projected": 1000,
}
V7_TESTS = [
    {"aid": "1234", "account_group_name": "Documentation", "test_id": "1158", "test_name": "https://app.thousandeyes.com",
     "test_type": "Web-Page Load", "cloud_units_used": 14050, "cloud_units_projected": 340674},
    {"aid": "12345", "account_group_name": "Documentation", "test_id": "1159",
     "test_name": "https://support.thousandeyes.com", "test_type": "Web - HTTP Server", "cloud_units_used": 64390,
     "cloud_units_projected": 164457},
]
V7_COUNTS = [
    ("1234", "Support", "endpoint", 22), ("12345", "Documentation", "endpoint", 14),
    ("1234", "Support", "endpoint_essentials", 2), ("12345", "Documentation", "endpoint_essentials", 3),
    ("1234", "Support", "endpoint_embedded", 2), ("12345", "Documentation", "endpoint_embedded", 3),
    ("1234", "Support", "enterprise", 7), ("12345", "Documentation", "enterprise", 1),
]


def test_parse_usage_v7_reads_the_sdk_fixture_to_exact_values():
    parsed = v7(load(V7_CURRENT))
    [usage] = parsed.tables[constants.STG_USAGE]
    assert usage["snapshot_id"] == "snap-1" and usage["observed_at"] == OBSERVED
    assert usage["api_version"] == "v7" and usage["org_id"] is None
    assert usage["period_start"] == datetime(2020, 1, 5, 8, 0, tzinfo=UTC)
    assert usage["period_end"] == datetime(2020, 2, 5, 8, 0, tzinfo=UTC)
    assert (usage["period_zone_basis"], usage["period_zone_abbreviation"]) == ("iso_offset", None)
    assert {k: usage[k] for k in V7_ORG_NUMBERS} == V7_ORG_NUMBERS
    assert usage["has_test_breakdown"] is True and usage["has_agent_unit_breakdown"] is True
    assert without_lineage(parsed.tables[constants.STG_TESTS]) == V7_TESTS
    assert without_lineage(parsed.tables[constants.STG_AGENT_UNITS]) == [
        {"aid": "1234", "account_group_name": "Support", "agent_key": "123456", "agent_id": "123456", "vagent_id": None,
         "agent_name": "TEVA-test-agent", "enterprise_units_used": 599878, "enterprise_units_projected": 597808},
        {"aid": "315", "account_group_name": "Documentation", "agent_key": "789", "agent_id": "789", "vagent_id": None,
         "agent_name": "lab-physical-appliance-1", "enterprise_units_used": 597123,
         "enterprise_units_projected": 597808},
    ]
    counts = [(r["aid"], r["account_group_name"], r["agent_class"], r["agents_used"])
              for r in parsed.tables[constants.STG_AGENT_COUNTS]]
    assert counts == V7_COUNTS
    assert parsed.warnings == ()


def test_parse_usage_v7_keeps_two_agents_sharing_an_agent_id_apart_by_vagent_id():
    # the pre-2025-10 generation: both rows say agentId 121404 and differ only by vagentId
    parsed = v7(load(V7_VAGENT))
    agents = without_lineage(parsed.tables[constants.STG_AGENT_UNITS])
    assert [(a["aid"], a["agent_key"], a["agent_id"], a["vagent_id"], a["enterprise_units_used"]) for a in agents] == [
        ("1234", "123456", "121404", "123456", 599878),
        ("315", "789", "121404", "789", 597123),
    ]
    # everything else is the same payload as the current generation
    assert without_lineage(parsed.tables[constants.STG_TESTS]) == V7_TESTS
    assert parsed.warnings == ()


def test_parse_usage_v7_accepts_an_enterprise_agent_without_agent_id():
    payload = load(V7_CURRENT)
    del payload["usage"]["enterpriseAgentUnits"][0]["agentId"]
    agents = v7(payload).tables[constants.STG_AGENT_UNITS]
    assert (agents[0]["agent_id"], agents[0]["vagent_id"], agents[0]["agent_key"]) == (None, None, "name:TEVA-test-agent")
    assert agents[0]["enterprise_units_used"] == 599878


def test_parse_usage_v7_without_expand_has_no_breakdowns_and_says_so():
    payload = load(V7_CURRENT)
    for array in ("tests", "enterpriseAgentUnits", "endpointAgents", "endpointAgentsEssentials",
                  "endpointAgentsEmbedded", "enterpriseAgents"):
        del payload["usage"][array]
    parsed = v7(payload)
    [usage] = parsed.tables[constants.STG_USAGE]
    assert usage["has_test_breakdown"] is False and usage["has_agent_unit_breakdown"] is False
    assert usage["cloud_units_used"] == 8500489
    assert all(parsed.tables[t] == [] for t in (constants.STG_TESTS, constants.STG_AGENT_UNITS, constants.STG_AGENT_COUNTS))


def test_parse_usage_v7_absent_numbers_are_null_and_zeros_stay_zero():
    payload = load(V7_CURRENT)
    del payload["usage"]["cloudUnitsProjected"]
    del payload["usage"]["tests"][0]["cloudUnitsProjected"]
    payload["usage"]["tests"][1]["cloudUnitsUsed"] = 0
    payload["usage"]["quota"]["enterpriseAgentsIncluded"] = 0
    parsed = v7(payload)
    [usage] = parsed.tables[constants.STG_USAGE]
    tests = parsed.tables[constants.STG_TESTS]
    assert usage["cloud_units_projected"] is None
    assert usage["enterprise_agents_included"] == 0
    assert tests[0]["cloud_units_projected"] is None
    assert tests[1]["cloud_units_used"] == 0


# ---------- v6


def test_parse_usage_v6_reads_the_assembled_doc_payload_to_exact_values():
    parsed = v6(load(V6_ASSEMBLED))
    [usage] = parsed.tables[constants.STG_USAGE]
    # "2016-04-28 17:00:00 PDT" honoured as UTC-7: midnight UTC
    assert usage["period_start"] == usage["period_end"] == datetime(2016, 4, 29, 0, 0, tzinfo=UTC)
    assert (usage["period_zone_basis"], usage["period_zone_abbreviation"]) == ("abbreviation", "PDT")
    assert usage["api_version"] == "v6"
    assert usage["cloud_units_included"] == 4320000000
    assert (usage["endpoint_agents_included"], usage["enterprise_agents_included"]) == (200, 25)
    # fields this doc version does not list are NULL, never 0
    assert usage["endpoint_agents_essentials_included"] is None
    assert usage["endpoint_agents_embedded_used"] is None
    assert usage["connected_devices_units_used"] is None
    assert (usage["cloud_units_used"], usage["cloud_units_projected"], usage["enterprise_units_used"]) == (
        8500489, 8500489, 8500489)
    assert (usage["endpoint_agents_used"], usage["enterprise_agents_used"]) == (42, 8)
    assert usage["has_test_breakdown"] is True
    assert usage["has_agent_unit_breakdown"] is False  # no enterpriseAgentUnits in this doc version
    assert without_lineage(parsed.tables[constants.STG_TESTS]) == [
        {"aid": "1234", "account_group_name": "Support", "test_id": "26030", "test_name": "my test name",
         "test_type": "Web - HTTP Server", "cloud_units_used": 8500489, "cloud_units_projected": 253012},
        # the documented new test: no cloudUnitsProjected key at all → NULL; its 0 used stays 0
        {"aid": "1234", "account_group_name": "Support", "test_id": "26031",
         "test_name": "new test (projection not yet calculated)", "test_type": "Web - HTTP Server",
         "cloud_units_used": 0, "cloud_units_projected": None},
    ]
    assert [(r["aid"], r["agent_class"], r["agents_used"]) for r in parsed.tables[constants.STG_AGENT_COUNTS]] == [
        ("1234", "endpoint", 7), ("1234", "enterprise", 7)]
    assert parsed.warnings == ()


def test_parse_usage_v6_reads_the_seed_doc_example_with_integer_ids():
    parsed = v6(load("v6_usage.seed_doc_example.json"))
    [usage] = parsed.tables[constants.STG_USAGE]
    assert usage["period_start"] == datetime(2020, 1, 5, 8, 0, tzinfo=UTC)
    assert usage["period_end"] == datetime(2020, 2, 5, 8, 0, tzinfo=UTC)
    assert (usage["period_zone_basis"], usage["period_zone_abbreviation"]) == ("implied_utc", None)
    assert usage["enterprise_agents_included"] == 0  # "non-zero only on legacy billing": a real zero
    assert (usage["endpoint_agents_essentials_included"], usage["endpoint_agents_embedded_included"]) == (10, 11)
    assert (usage["endpoint_agents_essentials_used"], usage["endpoint_agents_embedded_used"]) == (5, 6)
    assert (usage["enterprise_units_used"], usage["enterprise_units_next_period_projected"]) == (79640902, 0)
    tests = parsed.tables[constants.STG_TESTS]
    assert [(t["aid"], t["test_id"], t["cloud_units_used"], t["cloud_units_projected"]) for t in tests] == [
        ("315", "1158", 140540, 340674), ("315", "1159", 64390, 164457)]
    agents = parsed.tables[constants.STG_AGENT_UNITS]
    assert [(a["aid"], a["agent_id"], a["vagent_id"], a["agent_key"], a["enterprise_units_used"]) for a in agents] == [
        ("7625", "121404", "123456", "123456", 599878), ("315", "121404", "789", "789", 597123)]
    counts = [(r["aid"], r["agent_class"], r["agents_used"]) for r in parsed.tables[constants.STG_AGENT_COUNTS]]
    assert counts == [
        ("7625", "endpoint", 22), ("315", "endpoint", 14),
        ("7625", "endpoint_essentials", 1), ("315", "endpoint_essentials", 4),
        ("7625", "endpoint_embedded", 1), ("315", "endpoint_embedded", 5),
        ("7625", "enterprise", 7), ("315", "enterprise", 1),
    ]
    assert parsed.warnings == ()


def test_parse_usage_v6_reads_the_docs_embedded_count_spelled_as_essentials_with_a_warning():
    # API_CONTRACTS.md §4.1 / E1: the doc's endpointAgentsEmbedded example says endpointAgentsEssentialsUsed
    payload = load("v6_usage.seed_doc_example.json")
    for entry in payload["usage"]["endpointAgentsEmbedded"]:
        entry["endpointAgentsEssentialsUsed"] = entry.pop("endpointAgentsEmbeddedUsed")
    parsed = v6(payload)
    embedded = [r["agents_used"] for r in parsed.tables[constants.STG_AGENT_COUNTS] if r["agent_class"] == "endpoint_embedded"]
    assert embedded == [1, 5]
    assert len(parsed.warnings) == 1 and "endpointAgentsEssentialsUsed" in parsed.warnings[0]


def test_parse_usage_dispatches_on_the_landed_request_path():
    assert api_version_of({"path": "/v6/usage.json"}) == 6
    assert api_version_of({"path": "/v7/usage"}) == 7
    parsed = parse_usage(load(V6_ASSEMBLED), api_version=6, snapshot_id="s", observed_at=OBSERVED, account_id="1234")
    assert parsed.tables[constants.STG_USAGE][0]["api_version"] == "v6"
    with pytest.raises(PayloadError, match="unknown usage API version 5"):
        parse_usage({}, api_version=5, snapshot_id="s", observed_at=OBSERVED, account_id="1234")


# ---------- time


@pytest.mark.parametrize("raw, expected, basis, abbreviation", [
    # the 2020 usage page: no zone, and the doc text says "dateTime values are shown in UTC"
    ("2020-01-05 08:00:00", datetime(2020, 1, 5, 8, 0, tzinfo=UTC), "implied_utc", None),
    # the metadata page's stray PDT: honoured as UTC-7
    ("2016-04-28 17:00:00 PDT", datetime(2016, 4, 29, 0, 0, tzinfo=UTC), "abbreviation", "PDT"),
    # local time with a stray standard-time abbreviation (STYLE.md §7)
    ("2026-03-08 01:30:00 PST", datetime(2026, 3, 8, 9, 30, tzinfo=UTC), "abbreviation", "PST"),
    # DST day: 03:30 exists only after the jump, and PDT says so
    ("2026-03-08 03:30:00 PDT", datetime(2026, 3, 8, 10, 30, tzinfo=UTC), "abbreviation", "PDT"),
    # an explicit UTC suffix is not ambiguous but still recorded as written
    ("2020-01-05 08:00:00 UTC", datetime(2020, 1, 5, 8, 0, tzinfo=UTC), "abbreviation", "UTC"),
    # lower case is the same zone
    ("2020-01-05 08:00:00 pdt", datetime(2020, 1, 5, 15, 0, tzinfo=UTC), "abbreviation", "PDT"),
])
def test_parse_te_v6_time_returns_utc(raw, expected, basis, abbreviation):
    assert parse_te_v6_time(raw) == expected
    read = read_te_v6_time(raw)
    assert (read.at, read.basis, read.abbreviation) == (expected, basis, abbreviation)
    assert read.at.tzinfo is UTC


@pytest.mark.parametrize("raw", [
    "2020-01-05 08:00:00 IST",    # ambiguous (India, Ireland, Israel): refused, never guessed
    "2020-01-05",                 # no time
    "05/01/2020 08:00:00",        # another format
    "2020-01-05 08:00:00 +0100",  # an offset is not an abbreviation
])
def test_parse_te_v6_time_refuses_what_it_cannot_read(raw):
    with pytest.raises(ValueError):
        read_te_v6_time(raw)


@pytest.mark.parametrize("raw, expected", [
    ("2020-01-05T08:00:00Z", datetime(2020, 1, 5, 8, 0, tzinfo=UTC)),
    ("2020-01-05T09:00:00+01:00", datetime(2020, 1, 5, 8, 0, tzinfo=UTC)),
    ("2020-01-05T08:00:00.123456789Z", datetime(2020, 1, 5, 8, 0, 0, 123456, tzinfo=UTC)),
])
def test_read_te_v7_time_returns_utc(raw, expected):
    assert read_te_v7_time(raw).at == expected


def test_parse_usage_v7_refuses_a_period_without_offset_naming_the_field():
    payload = load(V7_CURRENT)
    payload["usage"]["quota"]["monthStart"] = "2020-01-05T08:00:00"
    with pytest.raises(PayloadError, match=r"usage.quota.monthStart is not a ISO 8601 with Z time"):
        v7(payload)


def test_parse_usage_v6_refuses_an_unknown_zone_naming_field_account_and_snapshot():
    payload = load(V6_ASSEMBLED)
    payload["usage"]["quota"]["monthEnd"] = "2016-04-28 17:00:00 IST"
    with pytest.raises(PayloadError) as caught:
        v6(payload, account="7625")
    message = str(caught.value)
    assert "thousandeyes [account 7625]" in message and "snapshot snap-1" in message
    assert "usage.quota.monthEnd" in message and "'IST'" in message


# ---------- bad payloads


@pytest.mark.parametrize("mutate, field", [
    (lambda p: p.pop("usage"), "missing required field usage"),
    (lambda p: p["usage"].pop("quota"), "missing required field usage.quota"),
    (lambda p: p["usage"]["quota"].pop("monthStart"), "missing required field usage.quota.monthStart"),
    (lambda p: p["usage"]["tests"][1].pop("testId"), r"missing required field usage.tests\[1\].testId"),
    (lambda p: p["usage"]["tests"][0].pop("cloudUnitsUsed"), r"missing required field usage.tests\[0\].cloudUnitsUsed"),
    (lambda p: p["usage"]["enterpriseAgentUnits"][1].pop("aid"), r"usage.enterpriseAgentUnits\[1\].aid"),
    (lambda p: p["usage"]["endpointAgents"][0].pop("endpointAgentsUsed"), r"usage.endpointAgents\[0\].endpointAgentsUsed"),
    (lambda p: [p["usage"]["enterpriseAgentUnits"][0].pop(k) for k in ("agentId", "agentName")],
     r"usage.enterpriseAgentUnits\[0\].agentId \(or vagentId or agentName"),
])
def test_parse_usage_v7_missing_required_field_names_field_account_and_snapshot(mutate, field):
    payload = load(V7_CURRENT)
    mutate(payload)
    with pytest.raises(PayloadError, match=field) as caught:
        v7(payload, account="12345")
    assert str(caught.value).startswith("thousandeyes [account 12345]: snapshot snap-1: usage (v7): ")


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p["usage"].__setitem__("cloudUnitsUsed", "8500489"),
     "field usage.cloudUnitsUsed has the wrong type: expected an integer, got string"),
    (lambda p: p["usage"]["quota"].__setitem__("cloudUnitsIncluded", 4.32e9 + 0.5),
     "field usage.quota.cloudUnitsIncluded has the wrong type: expected an integer, got number"),
    (lambda p: p["usage"]["tests"][0].__setitem__("cloudUnitsProjected", True),
     r"usage.tests\[0\].cloudUnitsProjected has the wrong type: expected an integer, got boolean"),
    (lambda p: p["usage"].__setitem__("tests", {"testId": "1"}),
     "field usage.tests has the wrong type: expected an array, got object"),
    (lambda p: p["usage"]["tests"].__setitem__(0, "1158"),
     r"field usage.tests\[0\] has the wrong type: expected an object, got string"),
    (lambda p: p["usage"]["tests"][0].__setitem__("testId", {"id": 1}),
     r"usage.tests\[0\].testId has the wrong type: expected an id \(string or integer\), got object"),
    (lambda p: p["usage"]["quota"].__setitem__("monthEnd", 1580889600),
     "usage.quota.monthEnd has the wrong type: expected a date-time string, got number"),
    (lambda p: p["usage"].__setitem__("quota", []),
     "field usage.quota has the wrong type: expected an object, got array"),
    # past BIGINT: refused rather than wrapped
    (lambda p: p["usage"].__setitem__("cloudUnitsUsed", 2**63),
     "field usage.cloudUnitsUsed = 9223372036854775808 does not fit a 64-bit integer"),
])
def test_parse_usage_v7_wrong_type_names_the_field(mutate, message):
    payload = load(V7_CURRENT)
    mutate(payload)
    with pytest.raises(PayloadError, match=message):
        v7(payload)


@pytest.mark.parametrize("body", [[], "pong", None, 42])
def test_parse_usage_refuses_a_body_that_is_not_an_object(body):
    with pytest.raises(PayloadError, match=r"\(body\) has the wrong type: expected a JSON object with a 'usage' object"):
        v7(body)


def test_parse_usage_v7_on_the_docs_error_body_says_usage_is_missing():
    # a 200 carrying the generic error shape must not pass as an empty organization
    with pytest.raises(PayloadError, match="missing required field usage"):
        v7(load("v7_error_generic.docs_sample.json"))


def test_parse_usage_accepts_integral_floats_and_ids_of_either_type():
    payload = load(V7_CURRENT)
    payload["usage"]["cloudUnitsUsed"] = 8500489.0
    payload["usage"]["tests"][0]["testId"] = 1158  # a v6-style integer in a v7 body: same id
    parsed = v7(payload)
    assert parsed.tables[constants.STG_USAGE][0]["cloud_units_used"] == 8500489
    assert parsed.tables[constants.STG_TESTS][0]["test_id"] == "1158"


# ---------- unknown fields: kept in raw, reported once


def test_parse_usage_v7_reports_unknown_fields_once_in_one_warning():
    # real unknowns: the /usage/units/tests breakdown entries carry enterprise units and isInstantTest-like extras
    payload = load(V7_CURRENT)
    payload["usage"]["tests"] = load("v7_usage_units_tests.sdk_fixture.json")["breakdowns"]
    payload["usage"]["brandNewUnitsUsed"] = 7
    payload["usage"]["quota"]["brandNewIncluded"] = 1
    parsed = v7(payload)
    assert len(parsed.warnings) == 1
    warning = parsed.warnings[0]
    assert warning.startswith("thousandeyes [account 1234]: usage (v7) has fields this parser does not know")
    assert warning.endswith("usage.brandNewUnitsUsed, usage.quota.brandNewIncluded, usage.tests[].enterpriseUnitsProjected, "
                            "usage.tests[].enterpriseUnitsUsed")
    assert "snap-1" not in warning  # the same text every snapshot, so base reports it once
    tests = parsed.tables[constants.STG_TESTS]
    assert [(t["test_id"], t["cloud_units_used"], t["cloud_units_projected"]) for t in tests] == [
        ("1158", 10000, 12000), ("1221", 12000, 13000)]


def test_parse_usage_v7_reads_the_units_endpoint_agent_breakdowns_like_usage_entries():
    # /v7/usage/units/enterprise-agents entries share the enterpriseAgentUnits shape, in both generations
    for name, expected in [
        ("v7_usage_units_enterprise_agents.sdk_fixture.json", [("123456", "123456", None), ("789", "789", None)]),
        ("v7_usage_units_enterprise_agents.sdk_fixture_pre_2025-10_with_vagentId.json",
         [("123456", "121404", "123456"), ("789", "121404", "789")]),
    ]:
        payload = load(V7_CURRENT)
        payload["usage"]["enterpriseAgentUnits"] = load(name)["breakdowns"]
        agents = v7(payload).tables[constants.STG_AGENT_UNITS]
        assert [(a["agent_key"], a["agent_id"], a["vagent_id"]) for a in agents] == expected, name


def test_parse_usage_v7_keeps_a_repeated_agent_as_its_own_row():
    payload = load(V7_CURRENT)
    twin = copy.deepcopy(payload["usage"]["enterpriseAgentUnits"][0])
    payload["usage"]["enterpriseAgentUnits"].append(twin)
    parsed = v7(payload)
    keys = [(a["aid"], a["agent_key"]) for a in parsed.tables[constants.STG_AGENT_UNITS]]
    assert keys == [("1234", "123456"), ("315", "789"), ("1234", "123456#2")]
    assert any("more than once" in w for w in parsed.warnings)


# ---------- the staging contract


@pytest.mark.parametrize("name, parser", [(V7_CURRENT, v7), (V7_VAGENT, v7), (V6_ASSEMBLED, v6),
                                          ("v6_usage.seed_doc_example.json", v6)])
def test_parsed_rows_fit_the_staging_schemas_with_bigint_units(name, parser):
    parsed = parser(load(name))
    for table, schema in SCHEMAS.items():
        arrow = pa.Table.from_pylist(parsed.tables[table], schema=schema)
        assert arrow.num_rows == len(parsed.tables[table])
        for field in staging_schema(schema):
            if field.name.endswith(("_used", "_projected", "_included")):
                assert field.type == pa.int64(), (table, field.name)
    quota = pa.Table.from_pylist(parsed.tables[constants.STG_USAGE], schema=SCHEMAS[constants.STG_USAGE])
    assert quota.column("cloud_units_included").to_pylist() == [4320000000]


# ---------- organizations


def test_org_of_aids_reads_the_quotas_fixture():
    assert org_of_aids(load("v7_quotas.sdk_fixture.json")) == {"1234": "10", "12345": "10"}
    assert org_of_aids({"error": "forbidden"}) == {}


def test_plan_accounts_pulls_one_aid_per_organization():
    plans = plan_accounts(["1234", "999", "12345", "1234"], {"1234": "10", "12345": "10"})
    assert [(p.account_id, p.org_id, p.covers) for p in plans] == [("1234", "10", ("1234", "12345")), ("999", None, ("999",))]
    assert plans[0].record() == {"org_id": "10", "covers_aids": ["1234", "12345"]}
    assert plan_accounts([]) == [plan_accounts([])[0]] and plan_accounts([])[0].account_id == "default"


def test_duplicate_accounts_joins_accounts_sharing_an_account_group_or_org():
    identities = {
        "1234": (None, account_group_ids(load(V7_CURRENT))),   # mentions 1234, 12345, 315
        "12345": (None, account_group_ids(load(V7_VAGENT))),   # the same organization
        "7625": ("77", {"7625"}),
        "8000": ("77", set()),                                   # same recorded org as 7625
        "9000": (None, set()),                                   # nothing in common: its own org
    }
    assert duplicate_accounts(identities) == {"12345": "1234", "8000": "7625"}
    assert account_group_ids(load(V7_CURRENT)) == {"1234", "12345", "315"}


def test_te_reset_header_is_read_as_an_epoch_by_the_http_layer():
    # v6 doc headers: reset 1579284000 (18:00:00Z) seen at Date 17:59:14Z → wait 46 s
    headers = {k.lower(): v for k, v in load("v6_usage.response_headers.docs_sample.json").items() if isinstance(v, str)}
    assert http.wait_hint_s(headers, datetime(2020, 1, 17, 17, 59, 14, tzinfo=UTC)) == pytest.approx(46.0)


# ---------- property: parsing never loses a test or an agent

ids = st.integers(min_value=1, max_value=10**12)
names = st.text(min_size=1, max_size=12)
units = st.integers(min_value=0, max_value=2**40)  # beyond 2^31; 25 of them still sum within int64


@st.composite
def usage_payloads(draw: st.DrawFn) -> tuple[dict, bool]:
    as_v6 = draw(st.booleans())
    ident = (lambda v: v) if as_v6 else str
    test_ids = draw(st.lists(ids, unique=True, max_size=25))
    tests = []
    for test_id in test_ids:
        test = {"aid": ident(draw(ids)), "testId": ident(test_id), "testName": draw(names), "testType": "Web - HTTP Server",
                "cloudUnitsUsed": draw(units)}
        if draw(st.booleans()):
            test["cloudUnitsProjected"] = draw(units)
        tests.append(test)
    agents = []
    for _ in range(draw(st.integers(0, 25))):
        agent = {"aid": ident(draw(st.integers(1, 3))), "agentName": draw(names), "enterpriseUnitsUsed": draw(units)}
        if draw(st.booleans()):
            agent["agentId"] = ident(draw(st.integers(1, 5)))  # often repeated: agents must still not merge
        if draw(st.booleans()):
            agent["vagentId"] = ident(draw(st.integers(1, 5)))
        agents.append(agent)
    counts = {array: [{"aid": ident(draw(ids)), field: draw(units)} for _ in range(draw(st.integers(0, 4)))]
              for array, field in constants.AGENT_CLASSES.values()}
    start = "2026-11-05 08:00:00" if as_v6 else "2026-11-05T08:00:00Z"
    end = "2026-12-05 08:00:00" if as_v6 else "2026-12-05T08:00:00Z"
    usage = {"quota": {"monthStart": start, "monthEnd": end, "cloudUnitsIncluded": draw(units)},
             "cloudUnitsUsed": sum(t["cloudUnitsUsed"] for t in tests), "tests": tests,
             "enterpriseAgentUnits": agents, **counts}
    return {"usage": usage}, as_v6


@settings(max_examples=150, deadline=None)
@given(usage_payloads())
def test_parsing_never_loses_a_test_or_an_agent(case):
    payload, as_v6 = case
    parsed = (v6 if as_v6 else v7)(payload)
    usage = payload["usage"]
    tests, agents = parsed.tables[constants.STG_TESTS], parsed.tables[constants.STG_AGENT_UNITS]
    assert sorted((t["aid"], t["test_id"], t["cloud_units_used"]) for t in tests) == sorted(
        (str(t["aid"]), str(t["testId"]), t["cloudUnitsUsed"]) for t in usage["tests"])
    assert sum(t["cloud_units_used"] for t in tests) == parsed.tables[constants.STG_USAGE][0]["cloud_units_used"]
    assert [t["cloud_units_projected"] for t in tests] == [t.get("cloudUnitsProjected") for t in usage["tests"]]
    assert len(agents) == len(usage["enterpriseAgentUnits"])
    assert sorted(a["enterprise_units_used"] for a in agents) == sorted(a["enterpriseUnitsUsed"] for a in usage["enterpriseAgentUnits"])
    assert len({(a["aid"], a["agent_key"]) for a in agents}) == len(agents)  # the grain stays unique
    expected_counts = sum(len(usage[array]) for array, _ in constants.AGENT_CLASSES.values())
    assert len(parsed.tables[constants.STG_AGENT_COUNTS]) == expected_counts
    for table, schema in SCHEMAS.items():
        pa.Table.from_pylist(parsed.tables[table], schema=schema)  # every value fits its column
