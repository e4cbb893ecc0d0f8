"""Takes the README's screenshots of the web explorer: a real server, headless Chromium, one walk
through, then live mode on Chromium's fake camera.

Run: python scripts/explorer_screenshot.py   (needs Debian's chromium and `pip install playwright`)
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

import convscope as cs
from convscope.web.app import create_app
from convscope.web.explorer import Explorer

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
OUTPUT, LIVE = IMAGES / "explorer.png", IMAGES / "explorer-live.png"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def main() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(Explorer(cs.load_model(device="cpu"))), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True).new_page()
        page.set_default_timeout(300_000)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("#predictions li")
        page.fill("#layer-filter", "_blocks.")
        page.click("#layers li[data-layer='_blocks.6._swish@1']")
        page.click("#tiles .tile >> nth=0")
        page.click("#visualize")
        page.wait_for_function("document.getElementById('visual-caption').textContent === 'optimized image'")
        page.click("form[data-tab='attribution'] button[type='submit']")
        page.wait_for_function("document.querySelector('#panel-attribution .state').dataset.state === 'done'")
        page.click("#tabs button[data-tab='attack']")
        page.click("form[data-tab='attack'] button[type='submit']")
        page.wait_for_function("document.querySelector('#panel-attack .state').dataset.state === 'done'")
        page.click("#history li button >> nth=1")  # the attribution beside the attack
        page.wait_for_function("document.querySelector('#panel-attack .frame').naturalWidth > 0")
        page.screenshot(path=str(OUTPUT), clip={"x": 0, "y": 0, "width": 1280, "height": 1450}, full_page=True)
        page.click("#live")
        page.wait_for_function("Number(document.getElementById('live-rate').dataset.frames) >= 10")
        page.screenshot(path=str(LIVE), clip={"x": 0, "y": 0, "width": 1280, "height": 820})
        print(page.inner_text("#live-rate"))
        browser.close()
    server.should_exit = True
    thread.join()
    print(f"wrote {OUTPUT} and {LIVE}")


if __name__ == "__main__":
    main()
