"""The comparison's HTML report as a person sees it: opened from disk in headless Chromium, offline."""

import shutil

import pytest

from ftassets.artifacts import ArtifactStore

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                                 reason="needs Debian chromium and chromium-driver: bash scripts/install_test_tools.sh")]


def test_the_html_report_opens_offline_and_shows_its_figures(world, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    report = ArtifactStore(world["home"]).path("comparison", "classification") / "report.html"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(report.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
        headings = driver.execute_script("return Array.from(document.querySelectorAll('h1, h2')).map(h => h.textContent)")
        driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    assert [alt for alt, *_ in images] == ["accuracy by row", "quality against cost", "latency"]
    assert all(complete and width > 100 and height > 100 for _, complete, width, height in images), images
    assert headings[0].startswith("classification: base against fine-tuned") and "Worst examples of each fine-tuned model" in headings
