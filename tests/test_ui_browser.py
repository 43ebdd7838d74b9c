"""`ledgerlab ui` in a real browser: headless Chromium (Debian's chromium + chromium-driver) through Selenium.

One module fixture serves a folder of two projects with the real CLI (`ledgerlab ui --port 0`): `evil`, the
realistic campaign of test_cli_campaign plus a hypothesis whose rationale and diff hold markup, and `live`, a
real `ledgerlab run marketing` that writes while the pages are open. Every page is loaded and checked, one
page is watched until it shows the campaign's progress, and each page's screenshot is saved under the test's
tmp dir (and into $LEDGERLAB_UI_SCREENSHOTS when set: how docs/img/ui-*.png are made).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from host_processes import Runner, until
from test_cli_campaign import build_project
from test_ui import CAMPAIGN, EVIL, evil_events

pytest.importorskip("starlette", reason="the dashboard's `ui` extra is not installed: pip install -e '.[ui]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

import ledgerlab  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no chromium/chromedriver: apt-get install chromium chromium-driver (what .ci/run does)")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The dashboard's URL over `evil` and a running marketing campaign in `live`; both stopped afterwards."""
    root = tmp_path_factory.mktemp("ui-browser")
    build_project(root / "evil", evil_events())
    campaign = Runner(root / "live", "run", "marketing", "--max-hypotheses", "400",
                      "--option", "visitors_per_run=1000000")
    server = None
    try:
        until("the live campaign's first hypothesis", lambda: _hypotheses(root / "live"), campaign.proc)
        server = Runner(root, "ui", "--port", "0")
        url = until("the dashboard's URL", lambda: re.search(r"http://127\.0\.0\.1:\d+/", server.output), server.proc)
        live_id = ledgerlab.open(root / "live").campaigns()[0].campaign_id
        yield {"url": url.group(0).rstrip("/"), "live": f"/p/live/c/{live_id}", "evil": f"/p/evil/c/{CAMPAIGN}",
               "campaign": campaign, "live_id": live_id}
    finally:
        for proc in (server, campaign):
            if proc is not None and proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGINT)
        for proc in (server, campaign):
            if proc is not None:
                proc.wait()


def _hypotheses(folder: Path) -> int:
    try:
        return sum(c.hypotheses or 0 for c in ledgerlab.open(folder).campaigns())
    except Exception:  # no ledger yet, or its views not made yet
        return 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100",
                "--disable-gpu"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def load(browser: Any, served: dict[str, Any], path: str) -> None:
    browser.get(served["url"] + path)
    until(f"{path} loaded", lambda: browser.execute_script("return document.readyState") == "complete")


def shot(browser: Any, tmp_path: Path, name: str) -> None:
    """A full-page screenshot under tmp_path (and $LEDGERLAB_UI_SCREENSHOTS/ui-NAME.png when set)."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(max(height, 800), 3000))
    browser.save_screenshot(str(tmp_path / f"ui-{name}.png"))
    assert (tmp_path / f"ui-{name}.png").stat().st_size > 10_000
    if os.environ.get("LEDGERLAB_UI_SCREENSHOTS"):
        shutil.copy(tmp_path / f"ui-{name}.png", Path(os.environ["LEDGERLAB_UI_SCREENSHOTS"]) / f"ui-{name}.png")
    browser.set_window_size(1400, 1100)


def console_errors(browser: Any) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def chart_points(browser: Any, chart: str = "chart") -> int:
    """Points drawn in `chart`; 0 while the page has not rendered that chart yet (a loaded machine is slow to)."""
    return int(browser.execute_script(
        f"const c = document.getElementById('{chart}'); return Number((c && c.dataset.drawn) || 0)"))


def test_index_lists_both_campaigns(browser: Any, served: dict[str, Any], tmp_path: Path) -> None:
    load(browser, served, "/")
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a.campaign-link")]
    assert sorted(link.split("/p/")[1] for link in links) == sorted(
        [served["evil"][3:], served["live"][3:]])
    assert console_errors(browser) == []
    shot(browser, tmp_path, "campaigns")


def test_campaign_page_updates_while_the_campaign_runs(browser: Any, served: dict[str, Any], tmp_path: Path) -> None:
    load(browser, served, served["live"])
    until("the chart drawn", lambda: chart_points(browser) > 0)
    # Read in one script call: the live page replaces the element, and a found one can go stale before .text.
    shown = lambda: int(browser.execute_script(  # noqa: E731
        "const e = document.getElementById('n-hypotheses'); return e ? e.textContent.trim() : '0'") or 0)
    first, points = shown(), chart_points(browser)
    # The campaign goes on writing: the page follows through its live twin, without a reload.
    until("more hypotheses shown", lambda: shown() > first, served["campaign"].proc)
    until("more runs charted", lambda: chart_points(browser) > points, served["campaign"].proc)
    assert int(browser.execute_script("return Number(document.body.dataset.updates || 0)")) >= 1
    assert "ok" in browser.find_element(By.ID, "live-state").get_attribute("class")
    assert browser.find_elements(By.CSS_SELECTOR, "#budgets progress")  # max_hypotheses 400: a share of it
    assert console_errors(browser) == []
    shot(browser, tmp_path, "campaign")


# slow: browser interactions. Fast: test_index_lists_both_campaigns and the live campaign page.
@pytest.mark.slow
def test_chart_hover_and_click_open_the_hypothesis(browser: Any, served: dict[str, Any]) -> None:
    load(browser, served, served["evil"])
    until("the chart drawn", lambda: chart_points(browser) > 0)
    # The first trace whose points belong to hypotheses (the incumbent's replicates have none).
    k = browser.execute_script("return document.getElementById('chart').data.findIndex("
                               "t => t.customdata && t.customdata.some(c => c[0] !== null))")
    point = browser.find_elements(By.CSS_SELECTOR, "#chart .scatterlayer .trace")[k].find_element(
        By.CSS_SELECTOR, "path.point")
    ActionChains(browser).move_to_element(point).perform()
    hover = until("a hover label", lambda: browser.find_elements(By.CSS_SELECTOR, "#chart .hoverlayer .hovertext"))
    assert re.search(r"#\d+ ", hover[0].text), hover[0].text
    ActionChains(browser).move_to_element(point).click().perform()
    until("the hypothesis page", lambda: re.search(r"/h/\d+$", browser.current_url))
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Hypothesis #")


# slow: browser interactions. Fast: tests/test_ui.py's test_campaign_page checks the page's hypotheses,
# and the index and the live campaign page load here.
@pytest.mark.slow
def test_hypotheses_table_sorts_and_filters(browser: Any, served: dict[str, Any]) -> None:
    load(browser, served, served["evil"])
    numbers = lambda: [int(td.text.lstrip("#")) for td in browser.find_elements(  # noqa: E731
        By.CSS_SELECTOR, "#hypotheses-body tr:not([hidden]) td:first-child")]
    assert numbers() == [6, 5, 4, 3, 2, 1]
    header = browser.find_element(By.CSS_SELECTOR, "#hypotheses th[data-key='0']")
    header.click()
    assert numbers() == [1, 2, 3, 4, 5, 6]
    header.click()
    assert numbers() == [6, 5, 4, 3, 2, 1]
    browser.find_element(By.ID, "filter").send_keys("learning")
    assert numbers() == [1]
    browser.find_element(By.ID, "filter").clear()
    browser.execute_script("document.getElementById('filter').dispatchEvent(new Event('input', {bubbles: true}))")
    Select(browser.find_element(By.ID, "status-filter")).select_by_value("accepted")
    assert numbers() == [4, 1] and "2 of 6 shown" in browser.find_element(By.ID, "shown").text


def test_markup_from_the_ledger_renders_as_text(browser: Any, served: dict[str, Any], tmp_path: Path) -> None:
    load(browser, served, served["evil"] + "/h/6")
    assert browser.find_element(By.ID, "rationale").text == EVIL
    assert "</pre><script>window.__xss = 3</script>" in browser.find_element(By.ID, "diff").text
    assert browser.execute_script("return window.__xss === undefined")
    load(browser, served, served["evil"])
    assert EVIL in browser.find_element(By.ID, "hypotheses-body").text
    assert browser.execute_script("return window.__xss === undefined")
    load(browser, served, served["evil"] + "/h/1")
    assert "confirmed" in browser.find_element(By.ID, "verdict").text
    assert browser.find_elements(By.CSS_SELECTOR, "#diff .add") and browser.find_elements(By.CSS_SELECTOR, "#diff .del")
    assert console_errors(browser) == []
    shot(browser, tmp_path, "hypothesis")


def test_compare_side_by_side(browser: Any, served: dict[str, Any], tmp_path: Path) -> None:
    load(browser, served, "/")
    Select(browser.find_element(By.ID, "compare-a")).select_by_value(served["evil"][3:].replace("/c/", "/"))
    Select(browser.find_element(By.ID, "compare-b")).select_by_value(served["live"][3:].replace("/c/", "/"))
    browser.find_element(By.CSS_SELECTOR, "#compare-form button").click()
    until("both charts drawn", lambda: chart_points(browser, "chart-0") > 0 and chart_points(browser, "chart-1") > 0)
    assert served["live_id"] in browser.find_element(By.ID, "side-1").text or served["live_id"] in browser.page_source
    assert "2 accepted" in browser.find_element(By.ID, "side-0").text
    assert console_errors(browser) == []
    shot(browser, tmp_path, "compare")
