"""An explorer on the default model, served in-process (API tests) or by a real server (browser)."""

import os
import socket
import subprocess
import sys
import threading
import time

import httpx

import pytest
import uvicorn
from fastapi.testclient import TestClient

from convscope.web.app import create_app
from convscope.web.explorer import Explorer, Settings


def client_for(model, **options) -> TestClient:
    """A test client of a fresh explorer (``options``: Settings fields, or ``index``)."""
    index = options.pop("index", None)
    explorer = Explorer(model, index=index, settings=Settings(**options))
    return TestClient(create_app(explorer), base_url="http://127.0.0.1:8000")


@pytest.fixture(scope="module")
def client(lite0):
    with client_for(lite0) as client:
        yield client


@pytest.fixture(scope="module")
def cat_id(client):
    return client.post("/api/images/sample/cat").json()["id"]


def wait_for(client, job: dict, states=("done", "failed", "cancelled"), seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while (status := client.get(f"/api/jobs/{job['id']}").json())["state"] not in states:
        assert time.monotonic() < deadline, f"job still {status['state']} after {seconds} s"
        time.sleep(0.05)
    return status


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_mib(pid: int, field: str) -> float:
    """A process's ``VmRSS`` (now) or ``VmHWM`` (its peak so far) from /proc, in MiB."""
    status = open(f"/proc/{pid}/status").read()
    return int(status.split(f"{field}:")[1].split()[0]) / 1024


def rss_mib(pid: int) -> float:
    return memory_mib(pid, "VmRSS")


@pytest.fixture()
def serve():
    """A real ``convscope serve`` process on the default model: ``(url, pid)``."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "convscope", "serve", "--port", str(port), "--device", "cpu"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(url + "/api/model", timeout=2)
            break
        except httpx.TransportError:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
    yield url, process.pid
    process.terminate()
    process.wait(timeout=30)


class Server:
    """uvicorn serving an explorer on a free port of 127.0.0.1, in a thread (``options``: Settings fields,
    or ``microscope``: a site folder)."""

    def __init__(self, model, **options) -> None:
        self.port = free_port()
        microscope = options.pop("microscope", None)
        app = create_app(Explorer(model, microscope=microscope, settings=Settings(**options)))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
