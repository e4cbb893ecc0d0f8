"""The explorer on a detector, in real headless Chromium: its boxes drawn over the image and listed,
each a click away from being explained."""

import io
import os

import numpy as np
import pytest
from PIL import Image

import convscope as cs
from convscope.data.scenes import scene
from convscope.inspect.detections import detect
from tests.web.conftest import Server
from tests.web.test_browser import CHROMIUM, FLAGS, state_of

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


def test_a_detectors_boxes_are_drawn_listed_and_explained_on_click():
    from playwright.sync_api import sync_playwright

    detector = cs.load_model("shapes_detector", device="cpu")
    shapes = scene(200_100)  # a scene of neither the training nor the tests' held-out seeds
    found = detect(detector, shapes.image)[0]
    assert len(found) >= 2
    data = io.BytesIO()
    Image.fromarray((shapes.image[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(data, "PNG")
    with Server(detector) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_context(viewport={"width": 1366, "height": 900}, bypass_csp=True).new_page()
        page.set_default_timeout(120_000)
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('answers-hint').textContent !== 'Click one to explain it.'"
                               " || document.querySelector('#predictions li')")  # the first sample's answers
        page.set_input_files("#upload", files=[{"name": "shapes.png", "mimeType": "image/png", "buffer": data.getvalue()}])
        page.wait_for_function(f"document.querySelectorAll('#marks .mark').length === {len(found)} && "
                               f"document.querySelector('#predictions button')?.textContent.includes({found[0].label!r})")
        assert page.inner_text("#answers-title") == "Boxes" and page.inner_text("#target-name") == "Target"
        listed = page.locator("#predictions button").all_inner_texts()
        assert listed == [f"box {k}: {d.label} {d.score:.2f}" for k, d in enumerate(found)]

        frame = page.locator("#marks").bounding_box()
        for k, d in enumerate(found):  # each box where the detector put it, in the model's 224 px view
            box = page.locator("#marks .mark").nth(k).bounding_box()
            drawn = [(box["x"] - frame["x"]) / frame["width"], (box["y"] - frame["y"]) / frame["height"],
                     (box["x"] + box["width"] - frame["x"]) / frame["width"],
                     (box["y"] + box["height"] - frame["y"]) / frame["height"]]
            assert np.allclose(drawn, np.array(d.box) / 224, atol=0.02), (k, drawn, d.box)

        page.click("#tabs [data-tab='dream']")
        page.locator("#marks .mark").nth(1).click()
        assert page.input_value("#attribution-class") == "box:1"
        assert page.get_attribute("#tab-attribution", "aria-selected") == "true"
        assert "chosen" in page.get_attribute("#predictions li:nth-child(2) button", "class")
        page.select_option("#attribution-method", "gradcam")
        page.click("form[data-tab='attribution'] button[type='submit']")
        page.wait_for_function(state_of("attribution") + " === 'done'")
        assert f"box 1 ({found[1].label} {found[1].score:.2f})" in page.inner_text("#panel-attribution .caption")
        if os.environ.get("CONVSCOPE_SCREENSHOTS"):  # for a person to look at
            page.screenshot(path=os.path.join(os.environ["CONVSCOPE_SCREENSHOTS"], "detector.png"), full_page=True)

        page.fill("#attribution-class", "box:40")
        page.click("form[data-tab='attribution'] button[type='submit']")
        page.locator("#panel-attribution .error").wait_for(state="visible")
        assert f"has {len(found)} boxes" in page.inner_text("#panel-attribution .error")
        browser.close()
