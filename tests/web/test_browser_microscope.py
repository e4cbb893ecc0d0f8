"""The explorer links each channel to its page in a microscope site (``serve --microscope``)."""

import pytest

from convscope.microscope import build_microscope
from convscope.microscope.units import UnitSettings
from tests.web.conftest import Server
from tests.web.test_browser import CHROMIUM, FLAGS

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


def test_a_unit_page_opens_from_the_activation_grid(lite0, tmp_path):
    from playwright.sync_api import sync_playwright

    site = tmp_path / "site"
    build_microscope(lite0, ["_blocks.4"], site, settings=UnitSettings(size=32, steps=2, diverse=1, chunk=40),
                     progress=False)
    with Server(lite0, microscope=site) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
        page.set_default_timeout(120_000)
        page.goto(url + "/")
        page.wait_for_selector("#predictions li")
        page.click("#layers li[data-layer='_blocks.6']")
        page.wait_for_selector("#tiles[data-layer='_blocks.6'] .tile")
        page.click("#tiles .tile >> nth=0")
        page.wait_for_function("document.getElementById('channel-name').textContent.endsWith('_blocks.6')")
        assert not page.is_visible("#unit-page")  # no pages for this layer
        page.click("#layers li[data-layer='_blocks.4']")
        page.wait_for_selector("#tiles[data-layer='_blocks.4'] .tile")
        channel = page.get_attribute("#tiles .tile >> nth=0", "data-channel")
        page.click("#tiles .tile >> nth=0")
        page.locator("#unit-page").wait_for(state="visible")
        page.click("#unit-page")
        page.wait_for_load_state()
        assert page.title().startswith(f"_blocks.4 unit {channel}:")
        assert page.evaluate("[...document.images].every(image => image.complete && image.naturalWidth > 0)")
        browser.close()
