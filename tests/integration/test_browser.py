"""Run the nightly deployment from the Prefect UI in a real browser (Debian's chromium).

The page is driven with Playwright's sync API against the server of ``conftest.py``:
Deployments → nightly → Run → Quick run, then the run's page until it shows Completed;
and Run → Custom run, with ``retrain`` and ``cluster`` set in the form.
Every request that is not for the local server (the UI's analytics) is blocked.
``make browser`` installs chromium; Playwright's own browser download is not used.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, RUN_DONE, Served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

CHROMIUM = Path(os.environ.get("MEDPIPE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where a copy of the screenshot lands (git-ignored).
SCREENSHOT_COPY = REPO / "bench-output" / "ui-quick-run.png"
UI_TIMEOUT_MS = 30_000
#: The state badge of a finished run.
FINAL_STATE = re.compile(r"^(Completed|Failed|Crashed|Cancelled)$")


@pytest.fixture
def page(served: Served) -> Iterator:
    """A chromium page that may talk to the local Prefect server and nothing else."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    base = served.server.url

    def only_local(route) -> None:  # noqa: ANN001
        url = route.request.url
        if url == base or url.startswith(base + "/"):
            route.continue_()
        else:
            route.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.set_default_timeout(UI_TIMEOUT_MS)
            context.route("**/*", only_local)
            yield context.new_page()
        finally:
            browser.close()


def test_quick_run_from_ui_completes(served: Served, page, tmp_path: Path) -> None:  # noqa: ANN001
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    server = served.server
    base = server.url
    ui = server.client.get(f"{base}/ui-settings").json()
    v2 = base + ui["v2_base_url"].rstrip("/")  # `/deployments` itself is the old V1 UI
    shot = tmp_path / "ui-quick-run.png"

    try:
        # the Deployments list → the nightly deployment, as a user would get there
        page.goto(f"{v2}/deployments")
        page.get_by_role("link", name="nightly", exact=True).first.click()
        dep_id = served.deployments["nightly"]["id"]
        page.wait_for_url(f"**/deployments/deployment/{dep_id}*")

        # Run → Quick run; the UI posts create_flow_run and we read the run it created.
        # A 503 is Prefect's "retry me" (SQLite busy on a loaded machine; its own client
        # retries it): the user clicks again, at most three times
        for _attempt in range(3):
            page.get_by_role("button", name="Run", exact=True).click()
            try:
                with page.expect_response(
                    lambda r: (
                        r.request.method == "POST"
                        and r.url.endswith(f"/deployments/{dep_id}/create_flow_run")
                    )
                ) as created:
                    page.get_by_role("menuitem", name="Quick run").click()
            except PlaywrightTimeout:
                if page.get_by_text("Run Deployment").count():
                    pytest.fail("Quick run opened the parameter form: a parameter has no default")
                raise
            if created.value.status != 503:
                break
            page.wait_for_timeout(2_000)
        assert created.value.ok, created.value.text()
        run = created.value.json()
        # Quick run created the run directly (no parameter form) with the deployment defaults
        expect(page.get_by_text("Run Deployment")).to_have_count(0)
        assert run["parameters"]["params"]["archive"] == str(served.archive)
        assert run["state"]["message"] == "Run from the Prefect UI with defaults"

        # the run's page, reloaded until it shows a final state (bounded)
        page.goto(f"{v2}/runs/flow-run/{run['id']}")
        badge = page.get_by_text(FINAL_STATE).first
        deadline = time.monotonic() + RUN_DONE
        while time.monotonic() < deadline:
            expect(page.get_by_text(run["name"]).first).to_be_visible()
            try:
                badge.wait_for(state="visible", timeout=10_000)
                break
            except PlaywrightTimeout:
                for s in served.services():
                    assert s.alive(), s.output()
                page.reload()
        final = badge.inner_text().strip() if badge.is_visible() else None
        state = server.get(f"/flow_runs/{run['id']}")
        assert final == "Completed", served.explain(state)
        assert state["state_type"] == "COMPLETED", served.explain(state)

        # the run's artifacts are listed in the UI too
        page.get_by_role("tab", name="Artifacts").click()
        expect(page.get_by_text("nightly-summary").first).to_be_visible()
    finally:
        page.screenshot(path=str(shot), full_page=True)
        SCREENSHOT_COPY.parent.mkdir(exist_ok=True)
        shutil.copy(shot, SCREENSHOT_COPY)
        print(f"screenshot: {shot} (copy: {SCREENSHOT_COPY})")


#: Where a copy of the custom-run screenshot lands (git-ignored).
CUSTOM_SCREENSHOT_COPY = REPO / "bench-output" / "ui-custom-run.png"


def _wait_final(served: Served, page, run: dict) -> str | None:  # noqa: ANN001
    """Reload the run's page until it shows a final state (bounded); return the badge."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    badge = page.get_by_text(FINAL_STATE).first
    deadline = time.monotonic() + RUN_DONE
    while time.monotonic() < deadline:
        expect(page.get_by_text(run["name"]).first).to_be_visible()
        try:
            badge.wait_for(state="visible", timeout=10_000)
            break
        except PlaywrightTimeout:
            for s in served.services():
                assert s.alive(), s.output()
            page.reload()
    return badge.inner_text().strip() if badge.is_visible() else None


def test_custom_run_form_filled_in(served: Served, page, tmp_path: Path) -> None:  # noqa: ANN001
    """Custom run: the nightly form with retrain on and cluster local:1, submitted; the run
    completes with exactly those parameters (read back through the API)."""
    from playwright.sync_api import expect

    server = served.server
    base = server.url
    v2 = base + server.client.get(f"{base}/ui-settings").json()["v2_base_url"].rstrip("/")
    dep = served.deployments["nightly"]
    shot = tmp_path / "ui-custom-run.png"
    try:
        page.goto(f"{v2}/deployments")
        page.get_by_role("link", name="nightly", exact=True).first.click()
        page.wait_for_url(f"**/deployments/deployment/{dep['id']}*")
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Custom run").click()
        page.wait_for_url(f"**/deployments/deployment/{dep['id']}/run*")
        expect(page.get_by_text("Parameters", exact=True).first).to_be_visible()

        retrain = page.get_by_label(re.compile(r"^Retrain"))
        expect(retrain).to_be_visible()
        if retrain.get_attribute("aria-checked") != "true" and not retrain.is_checked():
            retrain.click()
        cluster = page.get_by_label(re.compile(r"^Cluster"))
        cluster.fill("local:1")
        with page.expect_response(
            lambda r: (
                r.request.method == "POST"
                and r.url.endswith(f"/deployments/{dep['id']}/create_flow_run")
            )
        ) as created:
            page.get_by_role("button", name="Submit", exact=True).click()
        assert created.value.ok, created.value.text()
        run = created.value.json()
        sent = run["parameters"]["params"]
        assert sent["retrain"] is True and sent["cluster"] == "local:1", sent
        assert sent["archive"] == str(served.archive)  # the rest of the form: the defaults

        page.goto(f"{v2}/runs/flow-run/{run['id']}")
        final = _wait_final(served, page, run)
        state = server.get(f"/flow_runs/{run['id']}")
        assert final == "Completed", served.explain(state)
        assert state["state_type"] == "COMPLETED", served.explain(state)
        # exactly those parameters, read back through the API (fields the form sent with
        # their defaults count as the defaults)
        from flows.nightly import NightlyParams

        expected = {**dep["parameters"]["params"], "retrain": True, "cluster": "local:1"}
        got = NightlyParams.model_validate(state["parameters"]["params"])
        assert got == NightlyParams.model_validate(expected), state["parameters"]
    finally:
        page.screenshot(path=str(shot), full_page=True)
        CUSTOM_SCREENSHOT_COPY.parent.mkdir(exist_ok=True)
        shutil.copy(shot, CUSTOM_SCREENSHOT_COPY)
        print(f"screenshot: {shot} (copy: {CUSTOM_SCREENSHOT_COPY})")
