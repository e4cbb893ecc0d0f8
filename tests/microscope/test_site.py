"""The microscope site: every unit has a page, every link resolves, and a killed run or a run
split over two processes gives the same site, byte for byte, as one uninterrupted run."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from convscope.errors import ConvscopeError
from convscope.microscope import build_microscope

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
ARGS = ["microscope", "--layers", "_blocks.0,_blocks.1", "--dataset", "photos:8", "--k", "4", "--size", "32",
        "--steps", "2", "--diverse", "1", "--chunk", "8", "--model", "efficientnet_lite0", "--device", "cpu"]
CHANNELS = {"_blocks.0": 16, "_blocks.1": 24}


def convscope(*args: str, torchrun: bool = False, **options) -> subprocess.Popen:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if torchrun else []
    return subprocess.Popen([sys.executable, *launcher, "-m", "convscope", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **options)


def finished(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()[-2000:]


def site_files(folder: Path) -> dict[str, bytes]:
    """Every file of the site but the work folder, by relative path."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and ".work" not in path.parts}


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("microscope") / "whole"
    finished(convscope(*ARGS, "-o", str(folder)))
    return folder


def test_every_unit_has_a_page_and_every_link_resolves(whole):
    pages = list(whole.rglob("*.html"))
    for layer, count in CHANNELS.items():
        for channel in range(count):
            assert (whole / "layers" / layer / f"{channel:04d}.html").is_file()
            for view in ("positive", "negative", "diverse-1", "dream", "top", "bottom"):
                assert (whole / "layers" / layer / f"{channel:04d}" / f"{view}.png").is_file()
        assert (whole / "layers" / layer / "atlas.png").is_file()
    assert len(pages) == 1 + 2 * len(CHANNELS) + sum(CHANNELS.values())  # root, layer and atlas pages, units
    seen = 0
    for page in pages:
        for link in re.findall(r'(?:href|src)="([^"]+)"', page.read_text()):
            target = (page.parent / unquote(link.split("#")[0])).resolve()
            assert target.exists(), f"{page.relative_to(whole)} links to {link}, which is missing"
            seen += 1
    assert seen > 10 * len(pages)
    unit = (whole / "layers" / "_blocks.1" / "0005.html").read_text()
    assert "0004.html" in unit and "0006.html" in unit and "top patches of photos:8" in unit


def test_pages_say_what_they_show(whole):
    """Every unit on the index (24 of _blocks.1's 24), pictures shown at a whole multiple of their
    size (32 px at 192, unblurred), the activations under the patches, what photos:8 means."""
    index = (whole / "index.html").read_text()
    assert index.count('alt="unit ') == sum(CHANNELS.values())
    assert "8 random crops of the 4 bundled photos" in index and "back to the explorer" in index
    unit = (whole / "layers" / "_blocks.1" / "0005.html").read_text()
    assert 'class="crisp" style="width: 192px"' in unit
    for name in ("top", "bottom"):
        order = "highest" if name == "top" else "lowest"
        caption = rf"<figcaption[^>]*>{name} patches of photos:8; activations, {order} first: ([^<]+)</"
        listed = re.search(caption, unit).group(1)
        values = [float(v) for v in listed.split(", ")]
        assert len(values) == 4 and values == sorted(values, reverse=(name == "top")), values


def test_a_killed_run_resumes_to_the_identical_site(whole, tmp_path):
    folder = tmp_path / "killed"
    killed = convscope(*ARGS, "-o", str(folder))
    first_chunk = folder / ".work" / "units" / "_blocks.0" / "chunks" / "000000.npz"
    deadline = time.monotonic() + 300
    while not first_chunk.exists() and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert first_chunk.exists() and not (folder / "index.html").exists()
    finished(convscope(*ARGS, "-o", str(folder)))
    assert site_files(folder) == site_files(whole)


def test_two_processes_build_the_same_site_as_one(whole, tmp_path):
    folder = tmp_path / "two"
    finished(convscope(*ARGS, "-o", str(folder), torchrun=True))
    assert site_files(folder) == site_files(whole)


def test_other_settings_in_the_same_folder_are_refused(whole, lite0):
    with pytest.raises(ConvscopeError, match="holds a different run"):
        build_microscope(lite0, ["_blocks.0"], whole, progress=False)


def test_layers_without_maps_are_refused(lite0, tmp_path):
    with pytest.raises(ConvscopeError, match="unknown layer"):
        build_microscope(lite0, ["_blocks.99"], tmp_path, progress=False)
    with pytest.raises(ConvscopeError, match=r"needs \(C, h, w\) maps"):
        build_microscope(lite0, ["_fc"], tmp_path, progress=False)
