"""End to end in real headless Chromium (Debian's package), driven by Playwright."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from convscope.inspect.predictions import classify
from convscope.samples import sample_image
from tests.web.conftest import Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: The flags that keep Chromium from reaching out to the network (refused here anyway).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if CHROMIUM is None and os.environ.get("CONVSCOPE_REQUIRE_BROWSER"):
    raise RuntimeError("Chromium is required (CONVSCOPE_REQUIRE_BROWSER is set): apt-get install chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def page(lite0):
    from playwright.sync_api import sync_playwright

    with Server(lite0) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 1300, "height": 1000}, bypass_csp=True)
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(url + "/")
        yield page
        browser.close()


def test_upload_predict_layer_channel_dream_cancel_and_screenshot(page, lite0, tmp_path):
    page.wait_for_selector("#predictions li")  # the first sample is open
    photo = tmp_path / "coffee.jpg"
    Image.fromarray((sample_image("coffee")[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(photo)
    page.set_input_files("#upload", str(photo))
    expected = classify(lite0, sample_image("coffee", size=224))[0][0].label
    page.wait_for_function(f"document.querySelector('#predictions li')?.textContent.startsWith({expected!r})")

    page.click("#layers li[data-layer='_blocks.4']")
    page.wait_for_function("document.getElementById('activations').naturalWidth > 0")
    box = page.locator("#activations").bounding_box()
    page.mouse.click(box["x"] + 10, box["y"] + 10)  # the first tile: the strongest channel
    page.wait_for_function("document.getElementById('channel-map').naturalWidth === 224")
    strongest = page.evaluate("fetch(document.getElementById('activations').src.replace('.png', ''))"
                              ".then(r => r.json()).then(l => l.channels[0])")
    assert page.inner_text("#channel-name") == f"{strongest} of _blocks.4"

    page.click("#tabs button[data-tab='dream']")
    page.fill("form[data-tab='dream'] input[name='steps']", "4")
    page.fill("form[data-tab='dream'] input[name='size']", "128")
    page.click("form[data-tab='dream'] button[type='submit']")
    page.wait_for_function("Number(document.getElementById('job-frames').dataset.frames) >= 2")
    page.wait_for_function("document.getElementById('job-state').dataset.state === 'done'")
    page.wait_for_function("document.getElementById('job-frame').complete && "
                           "document.getElementById('job-frame').naturalWidth > 0")

    page.fill("form[data-tab='dream'] input[name='steps']", "50")
    page.fill("form[data-tab='dream'] input[name='octaves']", "6")
    page.fill("form[data-tab='dream'] input[name='size']", "512")
    page.click("form[data-tab='dream'] button[type='submit']")
    page.wait_for_function("document.getElementById('job-state').dataset.state === 'running'")
    page.click("#cancel")
    page.wait_for_function("document.getElementById('job-state').dataset.state === 'cancelled'", timeout=30_000)

    shot = tmp_path / "explorer.png"
    page.screenshot(path=str(shot), full_page=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert pixels.shape[0] > 600 and pixels.std() > 30  # not blank: text, images, panels
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 500  # photos and maps, not flat colors
    assert page.inner_text("#error") == ""
