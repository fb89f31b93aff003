"""Adopted (issue 12): the fast ThousandEyes path now lives in `sources/thousandeyes/fastparse.py`,
`thousandeyes.assets.stage` and `base.to_arrow`. Only bench_replay.py still imports these two
names from here; delete this module once it imports them from there.
"""

from __future__ import annotations

from usage_pipeline.landing import LandingStore, Snapshot
from usage_pipeline.sources.base import Parsed, to_arrow
from usage_pipeline.sources.thousandeyes.assets import read_usage
from usage_pipeline.sources.thousandeyes.parse import group_ids

__all__ = ["parse_snapshot", "to_arrow"]


def parse_snapshot(landing: LandingStore, account: str, snapshot: Snapshot) -> tuple[Parsed, frozenset[str]]:
    """One landed usage response parsed as staging does, with its account group ids."""
    parsed = read_usage(landing, account, snapshot)
    return parsed, group_ids(parsed)
