"""The explorer's bounds, probed against a real ``convscope serve`` process (127.0.0.1 only).

Each test is one probe of the issue that found the holes: huge and slow bodies, long strings,
images that decode to far more than they weigh, degenerate shapes, and the job queue. Peak
server memory is read from /proc (VmHWM) and asserted against a budget.
"""

import io
import json
import socket
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from convscope.core.images import fit, load_image
from convscope.inspect.predictions import classify
from convscope.web.jobs import GRACE
from tests.web.conftest import Server, client_for, memory_mib, wait_for

#: Peak memory the server may add while answering the probes of one test.
BUDGET_MIB = 700


def raw_request(url: str, head: str, body: bytes = b"", *, pause: float = 0.0) -> tuple[int, dict, bytes]:
    """Sends ``head`` and ``body`` over a plain socket (waiting ``pause`` s before the body) and
    returns the status, headers and body of the reply."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(head.encode() + b"\r\n\r\n")
        time.sleep(pause)
        sender = threading.Thread(target=_send, args=(connection, body))
        sender.start()
        reply = b""
        try:  # read while sending: the server may answer, and close, before it has read the body
            while chunk := connection.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
        sender.join()
    header, _, content = reply.partition(b"\r\n\r\n")
    lines = header.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, content


def _send(connection: socket.socket, body: bytes) -> None:
    try:
        for start in range(0, len(body), 16384):
            connection.sendall(body[start:start + 16384])
    except OSError:
        pass  # the server answered and closed before reading it all: what a limit should do


def palette_png(width: int, height: int) -> bytes:
    """A palette PNG of flat colour: a few KB on disk, ``width * height`` pixels decoded."""
    buffer = io.BytesIO()
    Image.new("P", (width, height), 3).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def claiming(png: bytes, width: int, height: int) -> bytes:
    """``png`` with its header (IHDR, CRC fixed) claiming ``width x height`` pixels."""
    fields = width.to_bytes(4, "big") + height.to_bytes(4, "big") + png[24:29]
    chunk = b"IHDR" + fields
    return png[:12] + chunk + zlib.crc32(chunk).to_bytes(4, "big") + png[33:]


def photo_bytes(size: tuple[int, int], kind: str = "PNG") -> bytes:
    generator = np.random.default_rng(0)
    pixels = (generator.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=kind)
    return buffer.getvalue()


def test_huge_json_bodies_are_refused_before_they_are_read(serve):
    url, pid = serve
    start = memory_mib(pid, "VmHWM")
    began = time.perf_counter()
    status, _, reply = raw_request(url, "POST /api/jobs/dream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                        "Content-Type: application/json\r\nContent-Length: 200000000",
                                   b"{" + b" " * 2**20)
    assert status == 413 and len(reply) < 300 and b"64 KiB" in reply
    # without a declared length: refused as soon as 64 KiB have arrived
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in [b"x" * 2**16] * 16) + b"0\r\n\r\n"
    status, _, reply = raw_request(url, "POST /api/jobs/dream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                        "Content-Type: application/json\r\nTransfer-Encoding: chunked", chunked)
    assert status == 413 and len(reply) < 300
    assert time.perf_counter() - began < 10
    assert memory_mib(pid, "VmHWM") - start < 50


def test_long_strings_are_refused_and_never_echoed(serve):
    url, _ = serve
    client = httpx.Client(base_url=url, timeout=60)
    cat = client.post("/api/images/sample/cat").json()["id"]
    long = "x" * 20_000
    for body in ({"image": cat, "layer": long}, {"image": long, "layer": "_blocks.9"},
                 {"image": cat, "layer": "_blocks.9", long[:5000]: 1}):
        reply = client.post("/api/jobs/dream", json=body)
        assert reply.status_code == 422 and len(reply.text) < 400, reply.text[:400]
    for path in (f"/api/images/{cat}/activations?layer={long[:8000]}", f"/api/images/{long[:8000]}/predictions",
                 f"/api/jobs/{long[:8000]}"):
        reply = client.get(path)
        assert reply.status_code in (404, 422) and len(reply.text) < 400, (path[:40], reply.text[:400])
    reply = client.post("/api/jobs/attribution", json={"image": cat, "target": "9" * 150})
    assert reply.status_code == 400 and len(reply.text) < 400
    reply = client.post("/api/jobs/dream", json={"image": cat, "layer": "_blocks.9", "steps": True})
    assert reply.status_code == 422 and "steps" in reply.json()["detail"]


def test_small_files_that_decode_huge_stay_within_the_memory_budget(serve):
    url, pid = serve
    client = httpx.Client(base_url=url, timeout=300)
    bomb = palette_png(6324, 6324)  # just under 40 megapixels, a few KB
    assert len(bomb) < 200_000
    client.post("/api/images", content=palette_png(64, 64))  # warm up the upload path
    start = memory_mib(pid, "VmHWM")
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: client.post("/api/images", content=bomb), range(4)))
    grown = memory_mib(pid, "VmHWM") - start
    assert all(reply.status_code == 201 for reply in replies), replies[0].text
    assert max(replies[0].json()["width"], replies[0].json()["height"]) <= 1024
    print(f"\nfour 6324x6324 palette PNGs at once: peak +{grown:.0f} MiB")
    assert grown < BUDGET_MIB, f"the server's peak grew by {grown:.0f} MiB"
    # more pixels than Pillow decodes safely: too large (413), not "corrupt"
    reply = client.post("/api/images", content=claiming(palette_png(8, 8), 20000, 20000))
    assert reply.status_code == 413 and "megapixels" in reply.json()["detail"]


def test_degenerate_shapes_are_refused_and_long_ones_work(serve):
    url, _ = serve
    client = httpx.Client(base_url=url, timeout=300)
    for size in ((8000, 1), (1, 300), (4, 4), (4200, 200)):
        reply = client.post("/api/images", content=photo_bytes(size))
        assert reply.status_code == 400 and "at most 20 times" in reply.json()["detail"], (size, reply.text)
    wide = client.post("/api/images", content=photo_bytes((2000, 100))).json()["id"]
    assert client.get(f"/api/images/{wide}/predictions").status_code == 200
    for kind, body in (("dream", {"layer": "_blocks.9", "steps": 2, "octaves": 3, "size": 384}),
                       ("style", {"steps": 2, "size": 384})):
        job = client.post(f"/api/jobs/{kind}", json={"image": wide, **body}).json()
        status = wait_for(client, job)
        assert status["state"] == "done", status


def test_web_predictions_equal_the_command_line_for_the_same_file(serve, lite0, tmp_path):
    url, _ = serve
    client = httpx.Client(base_url=url, timeout=60)
    data = photo_bytes((900, 640), "JPEG")
    key = client.post("/api/images", content=data).json()["id"]
    web = client.get(f"/api/images/{key}/predictions?top=3").json()
    expected = classify(lite0, fit(load_image(data), lite0.input_size), top=3)[0]
    assert [p["index"] for p in web] == [p.index for p in expected]
    assert [p["probability"] for p in web] == pytest.approx([p.probability for p in expected], abs=1e-5)


def test_protocol_details(serve):
    url, _ = serve
    assert httpx.head(url + "/").status_code == 200
    for host in ("evil.com@127.0.0.1", "127.0.0.1/evil", "evil.com"):
        reply = httpx.get(url + "/api/model", headers={"Host": host})
        assert reply.status_code == 403, host
        assert reply.headers["x-content-type-options"] == "nosniff" and "frame-ancestors" in \
            reply.headers["content-security-policy"]
    reply = httpx.get(url + "/api/model", headers={"Origin": "http://evil.com@127.0.0.1"})
    assert reply.status_code == 403


def test_a_slow_body_is_cut_off(lite0):
    with Server(lite0, body_seconds=1.0) as url:
        began = time.perf_counter()
        status, headers, reply = raw_request(url, "POST /api/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                  "Content-Length: 1000", b"x" * 10, pause=0.1)
        assert status == 408 and json.loads(reply)["detail"].startswith("the request body did not arrive")
        assert time.perf_counter() - began < 5 and headers["x-content-type-options"] == "nosniff"


def test_a_cancelled_queued_job_frees_its_place(lite0):
    with client_for(lite0, workers=1, queue=1) as small:
        image = small.post("/api/images/sample/cat").json()["id"]
        body = {"image": image, "layer": "_blocks.9", "octaves": 6, "steps": 50, "size": 512}
        first = small.post("/api/jobs/dream", json=body).json()
        wait_for(small, first, states=("running",))
        second = small.post("/api/jobs/dream", json=body).json()
        assert small.delete(f"/api/jobs/{second['id']}").json()["state"] == "cancelled"
        third = small.post("/api/jobs/dream", json=body)
        assert third.status_code == 202
        for job in (first, third.json()):
            small.delete(f"/api/jobs/{job['id']}")


@pytest.mark.parametrize("kind, body, cancel", [
    ("attribution", {"method": "integrated-gradients"}, True),
    ("attribution", {"method": "kernel-shap"}, True),  # no progress callback: stopped by the forward-pass watch
    ("attack", {"method": "deepfool", "steps": 100}, False),  # fools in a few steps: progress seen before done
])
def test_long_jobs_report_progress_and_stop_when_cancelled(client, cat_id, kind, body, cancel):
    job = client.post(f"/api/jobs/{kind}", json={"image": cat_id, **body}).json()
    deadline = time.monotonic() + 60
    while (status := client.get(f"/api/jobs/{job['id']}").json())["state"] != "running" or status["message"]:
        assert status["state"] in ("queued", "running") and time.monotonic() < deadline, status
        time.sleep(0.02)  # until a worker process is up and computing
    if body["method"] == "kernel-shap":
        time.sleep(0.5)   # inside its forward passes
    else:
        deadline = time.monotonic() + 60
        while (status := client.get(f"/api/jobs/{job['id']}").json())["progress"] == 0:
            assert status["state"] == "running" and time.monotonic() < deadline, status
            time.sleep(0.02)
        assert 0 < status["progress"] < 1
    if not cancel:
        assert wait_for(client, job)["state"] == "done"
        return
    asked = time.monotonic()
    client.delete(f"/api/jobs/{job['id']}")
    status = wait_for(client, job, seconds=30)
    assert status["state"] == "cancelled" and time.monotonic() - asked < GRACE  # stopped, not killed
