"""The soak, small (rung 5): `soak.main(days=2)` (48 hourly ThousandEyes ticks, two daily ticks of
HCP, TFE and Workato, random faults from a seeded RNG, against the loopback sandbox, on DuckDB)
ends with its report of zeros: nothing lost, nothing duplicated, nothing a clean replay does not
reproduce, no secret anywhere, exit status 0. `make soak` runs the same for 30 days.
"""

from __future__ import annotations

import re

from reliability_support import figures  # noqa: F401 (fixture)

from usage_pipeline import soak


def test_a_two_day_soak_ends_with_zero_lost_duplicated_and_leaked(figures):
    lines: list[str] = []
    status = soak.main(days=2, seed=7, print_line=lines.append)
    report = "\n".join(lines)
    assert status == 0, report
    assert re.search(r"lost: 0 +duplicated: 0 +differing from replay: 0 +secret hits: 0", report), report
    faults = int(re.search(r"faults injected: (\d+) answers", report).group(1))
    assert faults > 0 and "result: OK" in report  # it did inject faults, and survived them
    figures.scenarios += 1
    figures.total.faults_injected += faults
    figures.total.runs += sum(int(n) for n in re.findall(r"(\d+) (?:ThousandEyes hourly ticks|Dagster runs)", report))
    figures.total.retries += int(re.search(r"retries: (\d+)", report).group(1))
    figures.total.waited_s += float(re.search(r"\(([\d.]+) s of compressed time\)", report).group(1))
    figures.total.snapshots_checked += int(re.search(r"checked: (\d+) snapshots", report).group(1))
    figures.total.rows_checked += int(re.search(r"(\d+) staging and mart rows", report).group(1))
