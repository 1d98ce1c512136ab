"""The web console in a real browser (Debian's chromium driven by Playwright) against a real `keel serve`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.conftest import ROOT, Service, read_events, start_service, stop_service

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
RESULTS = ROOT / "test-results"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (make sysdeps installs it)"
)


@pytest.fixture(scope="module")
def console_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_service(tmp_path_factory.mktemp("console"), "--anomaly-window", "0")
    yield svc
    stop_service(svc)


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def test_a_refund_approved_in_the_console_completes_and_its_timeline_shows_the_approval(
    console_service: Service, page: Any
) -> None:
    from playwright.sync_api import expect

    key = console_service.key("acme")
    with console_service.client(key) as client:
        run_id = client.post("/v1/runs", json={"agent": "support", "task": "refund A-1004 249.00"}).json()["run_id"]
        edited_id = client.post("/v1/runs", json={"agent": "support", "task": "refund A-2 900.00"}).json()["run_id"]
        read_events(client, run_id, until="waiting")  # the refunds wait for a person
        read_events(client, edited_id, until="waiting")

    page.goto(console_service.url + "/")
    page.get_by_label("API key").fill("keel_wrong_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in-error")).to_contain_text("unknown or revoked")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text("tenant acme")
    expect(page.locator(f'tr[data-run="{run_id}"]')).to_contain_text("waiting")

    page.get_by_role("link", name="Approvals").click()
    card = page.locator(".approval").filter(has_text=run_id)
    expect(card).to_contain_text("refund_order")
    expect(card).to_contain_text("refunds need a person's approval")  # why approval is needed
    expect(card.locator('[data-field="arguments"]')).to_contain_text('"amount": "249.00"')
    card.get_by_label("note").fill("customer is gold tier")
    card.get_by_role("button", name="Approve").click()
    expect(card).to_have_count(0)

    other = page.locator(".approval").filter(has_text=edited_id)
    other.get_by_role("button", name="Edit").click()
    editor = other.get_by_label("edited arguments")
    editor.fill(editor.input_value().replace("900.00", "90.00"))
    other.get_by_label("note").fill("partial refund")
    other.get_by_role("button", name="Edit").click()
    expect(page.locator("#approvals-empty")).to_be_visible()
    with console_service.client(key) as client:
        read_events(client, edited_id, until="end")
        assert client.get(f"/v1/runs/{edited_id}").json()["output"] == "Refunded 90.00 on A-2."

    page.goto(f"{console_service.url}/#/runs/{run_id}")
    expect(page.locator('#run-summary [data-field="status"]')).to_have_text("done", timeout=30_000)
    expect(page.locator('#run-summary [data-field="output"]')).to_have_text("Refunded 249.00 on A-1004.")
    timeline = page.locator("#timeline")
    expect(timeline.locator('[data-kind="approval_requested"]')).to_contain_text("refunds need a person's approval")
    decided = timeline.locator('[data-kind="approval_decided"]')
    expect(decided).to_contain_text("approval approved")
    expect(decided).to_contain_text("customer is gold tier")
    expect(timeline.locator('[data-kind="tool_result"]')).to_contain_text("Refunded 249.00 on A-1004.")
    expect(timeline.locator('[data-kind="model_response"]')).to_have_count(2)

    RESULTS.mkdir(exist_ok=True)
    shot = RESULTS / "console-refund-approved.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    page.get_by_role("link", name="Charts").click()
    expect(page.locator('svg[data-chart="completion_rate"] polyline')).to_have_count(1)
    page.screenshot(path=str(RESULTS / "console-charts.png"), full_page=True)

    # an alert recorded by the anomaly detector (of any service process) shows in the console
    from keel.durable import Store, make_engine
    from keel.observe.anomaly import Alert, DatabaseAlerts

    engine = make_engine(console_service.db)
    alert = Alert("alr_e2e", "acme/support/error_rate/high", "acme", "support", "error_rate", "high", 0.4, 0.05, 9.1,
                  0.0, "support: error rate is high at 0.4 (norm 0.05)")  # fmt: skip
    assert DatabaseAlerts(Store(engine)).claim(alert)
    engine.dispose()
    page.get_by_role("link", name="Alerts").click()
    expect(page.locator('[data-alert="acme/support/error_rate/high"]')).to_contain_text("error rate is high at 0.4")


def test_the_console_is_served_locally_with_no_outside_assets(console_service: Service) -> None:
    index = (Path(__file__).resolve().parents[2] / "src/keel/server/console/index.html").read_text()
    assert "http://" not in index.replace("http://www.w3.org", "") and "https://" not in index
    with console_service.client(None) as client:
        assert client.get("/").status_code == 200
        script = client.get("/console/static/console.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]


def test_a_planned_run_s_timeline_starts_with_its_plan(console_service: Service, page: Any) -> None:
    from playwright.sync_api import expect

    key = console_service.key("acme")
    with console_service.client(key) as client:
        run_id = client.post("/v1/runs", json={"agent": "planner", "task": "add 20 and 22"}).json()["run_id"]
        read_events(client, run_id, until="end")
    page.goto(console_service.url + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text("tenant acme")
    page.goto(f"{console_service.url}/#/runs/{run_id}")
    plan = page.locator('#timeline [data-plan="1"]')
    expect(plan).to_contain_text("the sum")
    expect(plan.locator('[data-step-status="done"]')).to_have_text("[done] add the two numbers (add)")
    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS / "console-plan.png"), full_page=True)
