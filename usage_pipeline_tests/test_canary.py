"""The secret canary (rung 5): four unique fake tokens, one per source, through success and
failure paths, and not one of them (nor its URL-encoded, base64 or HTTP-basic `email:token` form)
anywhere the pipeline writes or says something.

Paths, as consecutive ticks on one warehouse and one DAGSTER_HOME (SQLite storage, as `make ui`
uses): success (v7 bearer), an
HTTP 500 on every call, an HTML page, malformed JSON, timeouts, every token rejected (401/403),
`doctor` and every source's credentials check on rejected tokens, and ThousandEyes v6 with HTTP
basic auth. Searched: every log record at DEBUG on every logger (args and tracebacks included),
every exception's full traceback, every event of every Dagster run (messages, metadata,
errors), every file under the landing folder (decompressed) and under DAGSTER_HOME (SQLite run
and event storage), every text column of every warehouse table and view, the CLI's output and
the `repr` of the settings and of every resource. The PostgreSQL warehouse gets the same search
in every scenario of test_reliability_faults.py and test_reliability_payloads.py.
"""

from __future__ import annotations

import traceback
from datetime import timedelta

import pytest
from reliability_support import SOURCES, TARGETS, Harness, all_logs, figures  # noqa: F401 (fixtures)

from usage_pipeline import cli, soak
from usage_pipeline.errors import UsagePipelineError
from usage_pipeline.sources import source_module
from usage_pipeline.warehouse import Warehouse

FAILURES = [
    # (what, fault kind, parameters, what the run summary must say about each source)
    ("HTTP 500 on every call", "status", {"times": None, "status": 500}, r"HTTP 500|gave up"),
    ("an HTML page", "html", {"times": None}, r"(?i)html"),
    ("malformed JSON", "malformed_json", {"times": None}, r"(?i)json"),
    ("timeouts", "slow", {"times": None, "delay_s": 0.5}, r"(?i)timeout|gave up"),
]


def tick(pipeline: Harness) -> list:
    """One tick of the observation sources and one Workato day (one Dagster run each, to keep it short)."""
    summary = pipeline.run(only=["thousandeyes", "hcp_terraform", "terraform_enterprise"])
    today = pipeline.server.clock.now().date() - timedelta(days=1)  # a closed admin-zone day
    return [*summary.sources, *pipeline.backfill("workato", today, today).sources]


def test_no_token_reaches_a_log_error_event_file_or_table(tmp_path, monkeypatch, request, all_logs, figures, capsys):
    import re

    warehouse = Warehouse(url=f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    warehouse.bootstrap()
    pipeline = Harness(warehouse=warehouse, tmp_path=tmp_path, monkeypatch=monkeypatch, request=request,
                       dagster_home=tmp_path / "dagster_home", timeout_s=0.3)
    said: list[tuple[str, str]] = []
    try:
        assert all(outcome.ok for outcome in tick(pipeline)), "the success path"
        for what, kind, params, cause in FAILURES:
            pipeline.server.clock.advance(timedelta(hours=1))
            pipeline.server.faults.clear()
            for source in SOURCES:
                pipeline.server.faults.add(TARGETS[source], kind, **params)
            for outcome in tick(pipeline):
                assert not outcome.ok and re.search(cause, "\n".join(outcome.problems)), (what, outcome)
        pipeline.server.faults.clear()

        # every token rejected: the runs, `doctor`, and each source's credentials check
        pipeline.server.clock.advance(timedelta(hours=1))
        for vendor in SOURCES:
            pipeline.server.tokens[vendor] = f"something-else-{vendor}"
        assert all(not o.ok and re.search(r"token rejected|expired", "\n".join(o.problems)) for o in tick(pipeline))
        with soak.compressed_http(pipeline.clock):
            assert cli.main(["doctor"]) == 1
            for source in SOURCES:
                with pytest.raises(UsagePipelineError) as raised:
                    source_module(source).check_credentials(pipeline.config)
                said.append((f"{source} credentials error", "".join(traceback.format_exception(raised.value))
                             + repr(raised.value)))
        said.append(("doctor output", capsys.readouterr().out))
        pipeline.server.tokens.update(pipeline.tokens)

        # ThousandEyes v6: HTTP basic `email:token`
        pipeline.server.clock.advance(timedelta(hours=1))
        pipeline.reconfigure(monkeypatch, THOUSANDEYES_API_VERSION="6")
        assert pipeline.run(only=["thousandeyes"]).ok
        assert any(r.path.startswith("/v6/") and r.authorized for r in pipeline.server.requests_for("thousandeyes"))

        said.append(("repr of the settings", repr(pipeline.config)))
        said += [(f"repr of resource {key}", repr(resource)) for key, resource in pipeline.defs.resources.items()]
        pipeline.texts += said
        verdict = pipeline.verify(caplog=all_logs, replay=False)
        figures.add(verdict)
        forms = pipeline.secret_forms()
        assert len(forms) == 4 * 3 + 1  # each token plain, url-encoded, base64; ThousandEyes' basic credential
        assert verdict.secret_hits == [], verdict.secret_hits
        assert soak.secret_hits_in_folder(forms, pipeline.dagster_home)[0] > 0  # the run storage was searched
    finally:
        pipeline.close()
