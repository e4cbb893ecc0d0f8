"""Load: 50 concurrent classify requests while two long jobs run, on a real server process.

Every answer must be right; the light requests' latency (50 client threads sharing one
connection pool, on the same machine as the server) and the server's memory before and after
are printed (run with ``-s`` to see them) and written to ``load.json`` in the test's folder.
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from convscope.core.images import fit
from convscope.inspect.predictions import classify
from convscope.samples import sample_image
from tests.web.conftest import rss_mib


def test_fifty_classify_requests_while_two_long_jobs_run(serve, lite0, tmp_path):
    url, pid = serve
    client = httpx.Client(base_url=url, timeout=120)
    cat = client.post("/api/images/sample/cat").json()["id"]
    expected = classify(lite0, fit(sample_image("cat"), 224), top=3)[0]
    client.get(f"/api/images/{cat}/predictions")  # warm up
    before = rss_mib(pid)

    long_jobs = [client.post("/api/jobs/dream", json={"image": cat, "layer": "_blocks.9", "octaves": 6, "steps": 50,
                                                      "size": 512}).json(),
                 client.post("/api/jobs/style", json={"image": cat, "size": 384, "steps": 400}).json()]
    while any(client.get(f"/api/jobs/{job['id']}").json()["state"] != "running" for job in long_jobs):
        time.sleep(0.1)

    pool_client = httpx.Client(base_url=url, timeout=120, limits=httpx.Limits(max_connections=64))

    def ask(_):
        started = time.perf_counter()
        reply = pool_client.get(f"/api/images/{cat}/predictions?top=3")
        return time.perf_counter() - started, reply.status_code, reply.json()

    started = time.perf_counter()
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(ask, range(50)))
    wall = time.perf_counter() - started
    still_running = [client.get(f"/api/jobs/{job['id']}").json()["state"] for job in long_jobs]
    after = rss_mib(pid)
    for job in long_jobs:
        client.delete(f"/api/jobs/{job['id']}")

    assert all(status == 200 for _, status, _ in answers)
    for _, _, predictions in answers:
        assert [p["index"] for p in predictions] == [p.index for p in expected]
        assert predictions[0]["probability"] == pytest.approx(expected[0].probability, abs=1e-4)
    assert still_running == ["running", "running"], "the long jobs should outlast the light requests"
    latency = np.array([seconds for seconds, _, _ in answers])
    figures = {"requests": 50, "wall_s": round(wall, 2), "latency_p50_s": round(float(np.median(latency)), 3),
               "latency_p95_s": round(float(np.percentile(latency, 95)), 3), "latency_max_s": round(latency.max(), 3),
               "rss_before_mib": round(before), "rss_after_mib": round(after)}
    (tmp_path / "load.json").write_text(json.dumps(figures, indent=1))
    print("\nload test:", json.dumps(figures))
    assert after - before < 1024, f"the server grew by {after - before:.0f} MiB"
