"""The HTML report and the Dagster UI in a real browser: Debian's headless Chromium driven by
Playwright for Python. Saves screenshots under a temp folder, or under USAGE_SCREENSHOTS_DIR
when set: `USAGE_SCREENSHOTS_DIR=docs/screenshots` refreshes the ones the README shows (a test
run never rewrites tracked files by itself).

Chromium missing is a failure that says how to install it, never a skip. The demo data is
the test warehouse of test_marts_demo.py unless USAGE_BROWSER_WAREHOUSE_URL points at another
one (e.g. `duckdb:///data/warehouse.duckdb` after `make demo`); DAGSTER_HOME likewise comes
from USAGE_BROWSER_DAGSTER_HOME when set, so the asset graph can show real materializations.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_marts_demo import build_demo_warehouse

from usage_pipeline import report, timeutil
from usage_pipeline.settings import PROJECT_ROOT
from usage_pipeline.warehouse import Warehouse

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("USAGE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1440, "height": 900}
WEBSERVER_START_S = 180


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's package (`make browser-deps`, i.e. "
            "`apt-get install -y chromium`) or set USAGE_CHROMIUM; the browser tests never skip",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: USAGE_SCREENSHOTS_DIR (e.g. docs/screenshots), or a temp folder."""
    folder = Path(os.environ.get("USAGE_SCREENSHOTS_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The warehouse to show: USAGE_BROWSER_WAREHOUSE_URL, or a fresh DuckDB demo warehouse."""
    if os.environ.get("USAGE_BROWSER_WAREHOUSE_URL"):
        return os.environ["USAGE_BROWSER_WAREHOUSE_URL"]
    warehouse = Warehouse(url=f"duckdb:///{tmp_path_factory.mktemp('browser') / 'demo.duckdb'}")
    warehouse.bootstrap()
    build_demo_warehouse(warehouse, now=timeutil.utcnow())
    return warehouse.url


def test_browser_opens_the_report_offline_and_saves_a_screenshot(browser, demo_url: str, tmp_path: Path,
                                                                  screenshots: Path) -> None:
    path = report.write_report(Warehouse(url=demo_url, read_only=True), tmp_path / "report.html")
    page = browser.new_page(viewport=VIEWPORT)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("networkidle")
    # the page itself is the only thing loaded: no CDN, font, image or script
    assert requests == [path.as_uri()]
    assert page.locator("#at-risk tbody tr").count() >= 1
    assert page.locator("#burndown svg").count() >= 1
    assert page.locator("#burndown svg polyline.actual").first.is_visible()
    page.screenshot(path=str(screenshots / "report.png"), full_page=True)
    page.close()
    assert (screenshots / "report.png").stat().st_size > 10_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def dagster_ui(demo_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dagster-webserver` on workspace.yaml against the demo warehouse, on a free loopback port."""
    port = _free_port()
    home = os.environ.get("USAGE_BROWSER_DAGSTER_HOME") or str(tmp_path_factory.mktemp("dagster_home"))
    log_path = Path(home) / "webserver.log"
    webserver = shutil.which("dagster-webserver", path=str(Path(sys.executable).parent)) or "dagster-webserver"
    env = {**os.environ, "DAGSTER_HOME": home, "USAGE_WAREHOUSE_URL": demo_url}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [webserver, "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WEBSERVER_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"dagster-webserver exited with {process.returncode}:\n{log_path.read_text()[-3000:]}", pytrace=False)
            try:
                if httpx.get(f"{base}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dagster-webserver did not answer within {WEBSERVER_START_S} s:\n{log_path.read_text()[-3000:]}", pytrace=False)
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and the code server it started
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _open(browser, url: str):
    """A page at `url`, past the first-visit "join the community" dialog if the UI shows it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    page.wait_for_load_state("networkidle")
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.click(timeout=5_000)
        skip.wait_for(state="hidden", timeout=10_000)
    except PlaywrightTimeout:
        pass  # not shown: Skip is remembered by the instance once clicked
    return page


def test_browser_shows_the_dagster_asset_graph_and_saves_screenshots(browser, dagster_ui: str, screenshots: Path) -> None:
    page = _open(browser, f"{dagster_ui}/asset-groups")
    for group in ("marts", "reports"):
        page.locator("svg").get_by_text(group, exact=True).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1_000)  # let the graph layout settle
    page.screenshot(path=str(screenshots / "asset_graph.png"))
    page.close()

    page = _open(browser, f"{dagster_ui}/locations/usage_pipeline/asset-groups/marts/lineage")
    page.get_by_text("dim_accounts", exact=True).first.wait_for(timeout=60_000)
    page.get_by_text("focus_saas_usage", exact=True).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1_000)
    page.screenshot(path=str(screenshots / "asset_graph_marts.png"))
    page.close()

    page = _open(browser, f"{dagster_ui}/assets/marts/mart_usage_vs_quota?view=checks")
    for check in ("no_account_over_quota", "no_account_at_risk", "accepted_values_status"):
        page.get_by_text(check).first.wait_for(timeout=60_000)
    page.screenshot(path=str(screenshots / "mart_checks.png"))
    page.close()

    page = _open(browser, f"{dagster_ui}/automation")
    for name in ("marts_schedule", "usage_status_webhook_sensor"):
        page.get_by_text(name).first.wait_for(timeout=60_000)
    page.close()

    for name in ("asset_graph.png", "asset_graph_marts.png", "mart_checks.png"):
        assert (screenshots / name).stat().st_size > 10_000, name
