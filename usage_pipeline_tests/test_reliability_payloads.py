"""Fault injection, the kinds that fail one account (rung 5, both engines): an HTML page, malformed
JSON, a missing required field, and one account whose every request fails, each scripted on all
four sources at once (on one account of each) against the loopback sandbox.

Each scenario first lands a clean tick, then re-pulls the same ticks and day windows under the
fault. Proves, for each: the failure is reported by source, account and cause (in the run summary,
and in raw.api_batches.error when the pull itself failed); the other accounts, days and sources
land; the failed account keeps the rows of its previous good pull, and no partition mixes two
pulls; every response fetched is in raw.api_snapshots with its file and sha256 (the bad body too);
staging and marts equal a clean `replay` of the same raw data into a fresh warehouse; no canary
token appears anywhere.
"""

from __future__ import annotations

import pytest
from reliability_support import FAILING, Scenario, all_logs, figures, run_scenario, scenario_harness  # noqa: F401


@pytest.mark.parametrize("scenario", FAILING, ids=lambda s: s.name)
def test_a_bad_answer_fails_only_its_account_and_keeps_its_previous_rows(
        scenario: Scenario, scenario_harness, all_logs, figures):
    run_scenario(scenario_harness, scenario, caplog=all_logs, figures=figures)
