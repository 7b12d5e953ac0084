"""The Dagster UI, in headless Chromium, after a demo: lineage, assets, checks, runs.

`dagster-webserver` serves the code location over the demo's Dagster instance; Playwright drives
Debian's chromium (never a browser of its own). Screenshots go to test-artifacts/ui/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from ct_pipeline.sandbox.server import free_port
from ct_pipeline_tests.ui.conftest import REPO, FinishedDemo, clean_environment

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
ARTIFACTS = REPO / "test-artifacts" / "ui"
STARTUP_SECONDS = 180
# The UI renders from GraphQL after the page loads; the first render can be slow on a busy box.
RENDER_MS = 60_000
_RAW_PHONE = re.compile(r"\+91[6-9]\d{9}\b")


def chromium_path() -> str | None:
    """Debian's chromium (or another Chromium build), if one is installed."""
    for candidate in (*CHROMIUM_PATHS, shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


# In CI (.ci/run installs chromium) a missing browser is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    chromium_path() is None and not os.environ.get("CI"),
    reason="no Chromium found (/usr/bin/chromium): apt-get install -y chromium (.ci/run does)",
)


@pytest.fixture(scope="module")
def webserver(finished_demo: FinishedDemo) -> Iterator[str]:
    """dagster-webserver on the code location and the demo's instance; yields its base URL."""
    port = free_port()
    log = (finished_demo.folder / "webserver.log").open("w")
    process = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "dagster-webserver"), "-w", "workspace.yaml"]
        + ["-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=clean_environment(
            DAGSTER_HOME=str(finished_demo.dagster_home),
            CT_WAREHOUSE_URL=finished_demo.warehouse_url,
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def page(webserver: str):
    """A headless Chromium page on the UI."""

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, base_url=webserver)
        page.set_default_timeout(RENDER_MS)
        yield page
        browser.close()


def test_the_lineage_shows_the_flow_stages(page):
    _open(page, "/asset-groups", "lineage")

    for group in ("zoho", "identity", "segments", "clevertap", "writeback"):
        page.get_by_text(group, exact=True).first.wait_for()


def test_a_group_graph_shows_its_assets_and_their_kinds(page):
    _open(page, "/locations/ct_pipeline/asset-groups/identity", "identity-group")

    for asset in ("contact_identities", "duplicate_profiles", "identity_review_queue"):
        page.get_by_text(asset, exact=True).first.wait_for()
    # Each node fills in its latest materialisation once the UI has fetched it.
    expect(page.get_by_text("Loading...", exact=True)).to_have_count(0, timeout=RENDER_MS)
    expect(page.get_by_text("Materialized", exact=False)).not_to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "identity-group.png"), full_page=True)
    page.get_by_text("SQLite", exact=True).first.wait_for()
    page.get_by_text("pandas", exact=True).first.wait_for()


def test_an_asset_page_explains_the_asset_its_columns_owner_and_kinds(page):
    _open(page, "/assets/identity_review_queue", "asset-identity_review_queue")

    page.get_by_text("Records that are not pushed to CleverTap", exact=False).first.wait_for()
    page.get_by_text("why the record is held back", exact=False).first.wait_for()
    page.get_by_text("data-engineering", exact=True).first.wait_for()
    page.get_by_text("Latest materialization", exact=True).first.wait_for()


def test_the_last_materialisation_carries_counts_and_coverage(page):
    _open(page, "/assets/contact_identities?view=events", "events-contact_identities")

    page.get_by_text("identity coverage", exact=True).first.wait_for()
    page.get_by_text("with identity", exact=True).first.wait_for()
    assert "Materialized in run" in page.inner_text("body")


def test_a_check_result_is_shown_with_its_description(page):
    _open(page, "/assets/contact_identities?view=checks", "checks-contact_identities")

    page.get_by_text("identity_coverage", exact=True).first.wait_for()
    page.get_by_text("Passed", exact=True).first.wait_for()
    description = "share of Contacts with a usable CleverTap identity"
    page.get_by_text(description, exact=False).first.wait_for()


def test_the_masked_profile_preview_shows_no_raw_phone_number(page):
    _open(page, "/assets/profile_attributes?view=events", "events-profile_attributes")

    page.get_by_text("preview (masked)", exact=True).first.wait_for()
    assert not _RAW_PHONE.search(page.inner_text("body"))


def test_the_runs_page_lists_both_demo_runs_as_succeeded(page):
    _open(page, "/runs", "runs")

    page.get_by_text("incremental_sync", exact=True).first.wait_for()
    page.get_by_text("nightly_full_sync", exact=True).first.wait_for()
    assert page.get_by_text("Success", exact=True).count() >= 2


def _open(page, path: str, name: str) -> None:
    """Go to `path`, dismiss the first-visit newsletter dialog, keep a screenshot."""
    page.goto(path)
    page.wait_for_load_state("networkidle")
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _wait_until_serving(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dagster-webserver exited with {process.returncode}")
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    raise AssertionError(f"dagster-webserver did not answer within {STARTUP_SECONDS} s")
