"""The comparison's HTML report as a person sees it: opened from disk in headless Chromium, offline."""

import shutil

import pytest

from ftassets.artifacts import ArtifactStore

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian chromium and chromium-driver: bash scripts/install_test_tools.sh",
    ),
]


def test_the_html_report_opens_offline_and_shows_its_figures(world, tmp_path, chromium):
    report = ArtifactStore(world["home"]).path("comparison", "classification") / "report.html"
    chromium.get(report.as_uri())
    images = chromium.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    headings = chromium.execute_script("return Array.from(document.querySelectorAll('h1, h2')).map(h => h.textContent)")
    chromium.save_screenshot(str(tmp_path / "report.png"))
    assert [alt for alt, *_ in images] == ["accuracy by row", "quality against cost", "latency"]
    assert all(complete and width > 100 and height > 100 for _, complete, width, height in images), images
    assert (
        headings[0].startswith("classification: base against fine-tuned")
        and "Worst examples of each fine-tuned model" in headings
    )
