"""Probes a real ``convscope serve`` process the way issue 28 did and prints what each got.

Run: python scripts/explorer_probes.py   (starts the server on a free port of 127.0.0.1, stops it after)
Each row: the probe, the answer (status, time, reply size) and the server's peak memory growth.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
from PIL import Image


def main() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "convscope", "serve", "--port", str(port), "--device", "cpu"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url)
        client = httpx.Client(base_url=url, timeout=300)
        cat = client.post("/api/images/sample/cat").json()["id"]
        print("| probe | answer | time | reply bytes | peak memory growth |\n|---|---|---|---|---|")
        for name, run in _probes(client, url, cat).items():
            before = _peak(server.pid)
            began = time.perf_counter()
            answer, size = run()
            print(f"| {name} | {answer} | {time.perf_counter() - began:.2f} s | {size} | "
                  f"+{_peak(server.pid) - before:.0f} MiB |", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _probes(client: httpx.Client, url: str, cat: str) -> dict:
    def post(path, **options):
        reply = client.post(path, **options)
        return reply.status_code, len(reply.content)

    def palettes():
        bomb = io.BytesIO()
        Image.new("P", (6324, 6324), 3).save(bomb, format="PNG", optimize=True)
        replies = []
        threads = [threading.Thread(target=lambda: replies.append(client.post("/api/images", content=bomb.getvalue())))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return ", ".join(str(reply.status_code) for reply in replies), sum(len(r.content) for r in replies)

    def thin():
        image = io.BytesIO()
        Image.new("RGB", (8000, 1), (200, 30, 30)).save(image, format="PNG")
        return post("/api/images", content=image.getvalue())

    def foreign_host():
        reply = httpx.get(url + "/api/model", headers={"Host": "evil.com@127.0.0.1"})
        headers = "with" if "content-security-policy" in reply.headers else "without"
        return f"{reply.status_code} {headers} the security headers", len(reply.content)

    def job_progress(body):
        job = client.post(f"/api/jobs/{body.pop('kind')}", json={"image": cat, **body}).json()
        seen = 0.0
        while (status := client.get(f"/api/jobs/{job['id']}").json())["state"] in ("queued", "running"):
            seen = max(seen, status["progress"])
            if seen > 0.2 and body.get("method") == "integrated-gradients":
                asked = time.perf_counter()
                client.delete(f"/api/jobs/{job['id']}")
                while client.get(f"/api/jobs/{job['id']}").json()["state"] == "running":
                    time.sleep(0.02)
                return f"progress seen {seen:.2f}, cancelled in {time.perf_counter() - asked:.2f} s", 0
            time.sleep(0.05)
        return f"{status['state']}, progress seen up to {seen:.2f} before the end", 0

    return {
        "200 MB JSON body to /api/jobs/dream": lambda: post("/api/jobs/dream", content=b"{" + b" " * 200_000_000,
                                                             headers={"Content-Type": "application/json"}),
        "10,000-character layer name": lambda: post("/api/jobs/dream", json={"image": cat, "layer": "x" * 10_000}),
        "four 6324x6324 palette PNGs at once": palettes,
        "8000x1 image": thin,
        '"steps": true': lambda: post("/api/jobs/dream", json={"image": cat, "layer": "_blocks.9", "steps": True}),
        "HEAD /": lambda: (httpx.head(url + "/").status_code, 0),
        "Host: evil.com@127.0.0.1": foreign_host,
        "Integrated Gradients, then Cancel": lambda: job_progress({"kind": "attribution",
                                                                    "method": "integrated-gradients"}),
        "DeepFool": lambda: job_progress({"kind": "attack", "method": "deepfool", "steps": 100}),
    }


def _wait(url: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(url + "/api/model", timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.2)


def _peak(pid: int) -> float:
    status = open(f"/proc/{pid}/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


if __name__ == "__main__":
    main()
