"""End to end in real headless Chromium (Debian's package), driven by Playwright."""

import os
import time
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.inspect.predictions import classify
from convscope.samples import sample_image
from tests.conftest import hooks_left
from tests.web.conftest import Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: The flags that keep Chromium from reaching out to the network (refused here anyway).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if CHROMIUM is None and os.environ.get("CONVSCOPE_REQUIRE_BROWSER"):
    raise RuntimeError("Chromium is required (CONVSCOPE_REQUIRE_BROWSER is set): apt-get install chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture(scope="module")
def page(lite0):
    from playwright.sync_api import sync_playwright

    with Server(lite0) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS + FAKE_CAMERA)
        context = browser.new_context(viewport={"width": 1366, "height": 900}, bypass_csp=True)
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(url + "/")
        page.wait_for_selector("#predictions li")  # the first sample is open
        yield page
        browser.close()


def state_of(tab: str) -> str:
    return f"document.querySelector('#panel-{tab} .state')?.dataset.state"


def test_upload_predict_layer_channel_dream_cancel_and_screenshot(page, lite0, tmp_path):
    photo = tmp_path / "coffee.jpg"
    Image.fromarray((sample_image("coffee")[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(photo)
    page.set_input_files("#upload", str(photo))
    expected = classify(lite0, sample_image("coffee", size=224))[0][0].label
    page.wait_for_function(f"document.querySelector('#predictions li')?.textContent.startsWith({expected!r})")
    assert page.locator("#sample option:checked").inner_text().startswith("your image (coffee.jpg)")
    assert page.is_visible("#crop") and "framed centre" in page.inner_text("#crop-note")

    hint = page.inner_text("#answers-hint")  # the top 5's total, and that the model knows only its classes
    assert hint.startswith("Together ") and "1000 classes" in hint

    page.click("#layers li[data-layer='_blocks.4']")
    page.wait_for_selector("#tiles .tile")
    page.click("#tiles .tile >> nth=0")  # the first tile: the strongest channel
    page.wait_for_function("document.getElementById('channel-map').naturalWidth === 224")
    strongest = page.evaluate("fetch(document.getElementById('activations').src.replace('.png', ''))"
                              ".then(r => r.json()).then(l => l.channels[0])")
    assert page.inner_text("#channel-name") == f"{strongest} of _blocks.4"
    assert page.inner_text("#tiles .tile >> nth=0") == str(strongest)  # tiles carry their channel numbers
    assert "Channels 1–40 of 40" in page.inner_text("#grid-caption")

    page.click("#tabs [data-tab='dream']")  # the form follows the selection, in full
    assert page.input_value("form[data-tab='dream'] input[name='layer']") == "_blocks.4"
    assert page.input_value("form[data-tab='dream'] input[name='channel']") == str(strongest)
    page.fill("form[data-tab='dream'] input[name='steps']", "4")
    page.fill("form[data-tab='dream'] input[name='size']", "128")
    page.click("form[data-tab='dream'] button[type='submit']")
    page.wait_for_function("Number(document.querySelector('#panel-dream .frames').dataset.frames) >= 2")
    page.wait_for_function(state_of("dream") + " === 'done'")
    assert page.inner_text("#panel-dream .caption").startswith(f"DeepDream of _blocks.4 (channel {strongest},")
    assert page.get_attribute("#panel-dream .png", "download").startswith(f"dream-_blocks.4-{strongest}-")

    page.fill("form[data-tab='dream'] input[name='steps']", "50")
    page.fill("form[data-tab='dream'] input[name='octaves']", "6")
    page.fill("form[data-tab='dream'] input[name='size']", "512")
    page.click("form[data-tab='dream'] button[type='submit']")
    page.wait_for_function(state_of("dream") + " === 'running'")
    page.click("#panel-dream .cancel")
    page.wait_for_function(state_of("dream") + " === 'cancelled'", timeout=30_000)

    shot = tmp_path / "explorer.png"
    page.screenshot(path=str(shot), full_page=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert pixels.shape[0] > 600 and pixels.std() > 30  # not blank: text, images, panels
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 500  # photos and maps, not flat colors
    assert not page.is_visible(".error")


def test_results_are_captioned_per_tab_downloadable_and_kept_in_history(page):
    page.click("#tabs [data-tab='attack']")
    page.select_option("form[data-tab='attack'] select[name='method']", "fgsm")
    page.fill("form[data-tab='attack'] input[name='eps']", "8")
    page.click("form[data-tab='attack'] button[type='submit']")
    page.wait_for_function(state_of("attack") + " === 'done'")
    caption = page.inner_text("#panel-attack .caption")
    assert caption.split(":")[0] in ("fooled", "not fooled") and "fgsm" in caption and "8/255" in caption
    array = page.evaluate("fetch(document.querySelector('#panel-attack .npy').href).then(r => r.arrayBuffer())"
                          ".then(b => Array.from(new Uint8Array(b.slice(0, 6))))")
    assert bytes(array) == b"\x93NUMPY"
    assert page.evaluate("fetch(document.querySelector('#panel-attack .png').href).then(r => r.headers.get("
                         "'content-type'))") == "image/png"

    page.click("#tabs [data-tab='attribution']")
    assert not page.is_visible("#panel-attack .result")  # each tab shows its own result
    page.select_option("#attribution-method", "gradcam")
    assert "Grad-CAM" in page.inner_text("#method-help")
    page.click("form[data-tab='attribution'] button[type='submit']")
    page.wait_for_function(state_of("attribution") + " === 'done'")
    caption = page.inner_text("#panel-attribution .caption")
    assert caption.startswith("gradcam at _") and " of " in caption and "probability" in caption
    assert page.locator("#history li").count() >= 2
    packed = page.evaluate("fetch(document.getElementById('download-all').href).then(r => r.arrayBuffer())"
                           ".then(b => Array.from(new Uint8Array(b.slice(0, 2))))")
    assert bytes(packed) == b"PK"  # a ZIP of the history
    page.click("#history li button >> nth=1")  # the attack, compared beside the Grad-CAM
    assert page.is_visible("#panel-attribution .compare")
    assert page.inner_text("#panel-attribution .compare figcaption").startswith("attack:")


def test_errors_are_shown_beside_the_control_that_caused_them(page):
    page.click("#tabs [data-tab='invert']")
    page.fill("form[data-tab='invert'] input[name='layer']", "no.such.layer")
    page.click("form[data-tab='invert'] button[type='submit']")
    error = page.locator("#panel-invert .error")
    error.wait_for(state="visible")
    assert "unknown layer 'no.such.layer'" in error.inner_text() and error.is_visible()
    assert error.bounding_box()["y"] > page.locator("form[data-tab='invert']").bounding_box()["y"]
    page.fill("form[data-tab='invert'] input[name='layer']", "_blocks.8")

    page.set_input_files("#upload", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    page.locator("#image-error").wait_for(state="visible")
    assert "not an image" in page.inner_text("#image-error")


def test_keyboard_reaches_layers_tiles_and_tabs(page):
    page.click("#layers li[data-layer='_blocks.4']")
    page.wait_for_selector("#tiles .tile")
    page.focus("#layers li[data-layer='_blocks.4']")
    page.keyboard.press("ArrowDown")
    below = page.evaluate("document.activeElement.dataset.layer")
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.getElementById('tiles').dataset.layer === {below!r}")

    page.focus("#tiles .tile >> nth=0")
    columns = page.evaluate("fetch(document.getElementById('activations').src.replace('.png', ''))"
                            ".then(r => r.json()).then(l => l.columns)")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    focused = page.evaluate("[...document.querySelectorAll('#tiles .tile')].indexOf(document.activeElement)")
    assert focused == 1 + columns
    channel = page.evaluate("document.activeElement.dataset.channel")
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.getElementById('channel-name').textContent.startsWith('{channel} of')")

    page.focus("#tabs [aria-selected='true']")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.getAttribute('aria-selected')") == "true"
    assert page.is_visible(f"#panel-{page.evaluate('document.activeElement.dataset.tab')}")


def test_a_refused_job_leaves_no_progress_bar_and_nothing_to_cancel(page):
    """A 400 used to leave an animated bar and a Cancel button that sent DELETE /api/jobs/undefined."""
    deletes = []
    page.on("request", lambda request: deletes.append(request.url) if request.method == "DELETE" else None)
    page.click("#tabs [data-tab='dream']")
    page.fill("form[data-tab='dream'] input[name='layer']", "_blocks.99")
    page.click("form[data-tab='dream'] button[type='submit']")
    error = page.locator("#panel-dream .error")
    error.wait_for(state="visible")
    assert "unknown layer '_blocks.99'" in error.inner_text()
    assert not page.is_visible("#panel-dream .status") and not page.is_visible("#panel-dream .cancel")
    assert page.evaluate("document.querySelector('#panel-dream .result').dataset.job") is None
    assert not deletes
    page.fill("form[data-tab='dream'] input[name='layer']", "")

    posts = []  # an out-of-range field is named on the page, before anything is sent
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    page.fill("form[data-tab='dream'] input[name='steps']", "500")
    page.click("form[data-tab='dream'] button[type='submit']")
    page.wait_for_function("document.querySelector('#panel-dream .error').textContent.startsWith('Steps:')")
    assert "50" in page.inner_text("#panel-dream .error") and not posts
    page.fill("form[data-tab='dream'] input[name='steps']", "4")


def test_the_first_layer_is_reached_by_keyboard_alone(page):
    """Every layer had tabindex -1, and ArrowDown in the filter did nothing."""
    page.fill("#layer-filter", "")
    page.focus("#layer-filter")
    page.keyboard.press("Tab")
    first = page.evaluate("document.querySelector('#layers li').dataset.layer")
    selected = page.evaluate("document.querySelector('#layers li.selected')?.dataset.layer")
    assert page.evaluate("document.activeElement.dataset.layer") == (selected or first)

    page.focus("#layer-filter")
    page.keyboard.type("_blocks.2.")
    page.keyboard.press("ArrowDown")
    reached = page.evaluate("document.activeElement.dataset.layer")
    assert reached.startswith("_blocks.2.")
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.getElementById('tiles').dataset.layer === {reached!r}")
    assert page.get_attribute(f"#layers li[data-layer='{reached}']", "aria-selected") == "true"
    page.fill("#layer-filter", "")


@pytest.mark.parametrize("width", [800, 390])
def test_the_page_reflows_at_narrow_widths(page, width):
    """At 800 px the activations panel and the Explain button were cut off at the right edge: no
    control may stick out of the window or out of its own panel."""
    page.set_viewport_size({"width": width, "height": 900})
    try:
        page.wait_for_function(f"window.innerWidth === {width}")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        outside = page.evaluate(f"""[...document.querySelectorAll('button, input, select, a, img, h2, label')]
            .filter((e) => e.offsetParent !== null && !e.closest('#tiles, #marks, #history'))  // history: a scrolled strip
            .map((e) => [e.id || e.textContent.trim().slice(0, 30) || e.tagName, e.getBoundingClientRect(), e])
            .map(([name, box, e]) => [name, box, e.closest('section, header').getBoundingClientRect()])
            .filter(([, box, panel]) => box.width > 0 && (box.left < Math.max(0, panel.left) - 0.5 ||
                                                          box.right > Math.min({width}, panel.right) + 0.5))
            .map(([name, box]) => `${{name}}: ${{Math.round(box.left)}}..${{Math.round(box.right)}}`)""")
        assert not outside, outside
    finally:
        page.set_viewport_size({"width": 1366, "height": 900})


def test_the_layer_list_is_a_tree_of_blocks_with_pass_through_layers_hidden(page):
    page.fill("#layer-filter", "")
    shown = page.locator("#layers li[role=treeitem]:visible")
    assert shown.count() < 40 < page.locator("#layers li[role=treeitem]").count()  # of 197 flat entries
    assert page.locator("#layers li.pass:visible").count() == 0
    block = "#layers > li[data-block='_blocks.3']"
    assert page.get_attribute(block, "aria-expanded") == "false" and not page.is_visible(f"{block} ul li:not(.pass)")
    page.focus(block)
    page.keyboard.press("ArrowRight")
    assert page.get_attribute(block, "aria-expanded") == "true" and page.is_visible(f"{block} ul li:not(.pass) >> nth=0")
    page.keyboard.press("ArrowRight")  # into the block
    inside = page.evaluate("document.activeElement.dataset.layer")
    assert inside.startswith("_blocks.3.")
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.getElementById('tiles').dataset.layer === {inside!r}")
    page.keyboard.press("ArrowLeft")  # back out to the block
    assert page.evaluate("document.activeElement.dataset.block") == "_blocks.3"
    page.check("#show-pass")
    assert page.locator("#layers li.pass:visible").count() > 0
    page.uncheck("#show-pass")
    assert "second call" in page.inner_text("#layer-panel")  # @1 is explained


@pytest.mark.parametrize("width", [1366, 390])
def test_every_tab_at_two_widths_screenshots_and_accessibility(page, width, tmp_path):
    """Screenshots for a person to look at (in $CONVSCOPE_SCREENSHOTS when set), and axe-core at
    both widths."""
    from axe_playwright_python import sync_playwright as axe

    folder = Path(os.environ.get("CONVSCOPE_SCREENSHOTS", tmp_path))
    page.set_viewport_size({"width": width, "height": 900})
    try:
        for tab in ("attribution", "dream", "style", "invert", "attack"):
            page.click(f"#tabs [data-tab='{tab}']")
            shot = folder / f"explorer-{width}-{tab}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert Image.open(shot).size[0] == width
        results = axe.Axe().run(page)
        serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert not serious, [(v["id"], v["help"], [n["target"] for n in v["nodes"][:3]]) for v in serious]
    finally:
        page.set_viewport_size({"width": 1366, "height": 900})


def test_no_serious_accessibility_violations(page):
    from axe_playwright_python import sync_playwright as axe

    results = axe.Axe().run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not serious, [(v["id"], v["help"], [n["target"] for n in v["nodes"][:3]]) for v in serious]


def test_live_mode_follows_the_fake_camera(page):
    page.click("#layers li[data-layer='_blocks.4']")
    page.wait_for_selector("#tiles .tile")
    page.click("#live")
    page.wait_for_function("Number(document.getElementById('live-rate').dataset.frames) >= 6", timeout=60_000)
    grid = page.get_attribute("#activations", "src")
    page.wait_for_function(f"document.getElementById('activations').src !== {grid!r}")
    assert grid.startswith("data:image/png")  # the grid follows the camera
    rate = float(page.inner_text("#live-rate").split()[1])
    print(f"\nlive mode: {rate} frames per second")
    assert rate > 0 and page.locator("#predictions li").count() == 5
    page.click("#live")
    assert page.get_attribute("#live", "aria-pressed") == "false"
    wait_until_answered()


def wait_until_answered(seconds: float = 30.0) -> None:
    """Wait for the frame still in flight after Stop: its request holds probe hooks until answered."""
    deadline = time.monotonic() + seconds
    while hooks_left() and time.monotonic() < deadline:
        time.sleep(0.05)
