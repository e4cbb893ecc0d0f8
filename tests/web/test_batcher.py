"""The batcher: every caller gets its own row, concurrent callers share runs, errors reach all."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from convscope.web.batcher import Batcher


def test_concurrent_calls_share_batches_and_get_their_own_rows():
    sizes = []

    def run(batch):
        sizes.append(len(batch))
        time.sleep(0.05)  # long enough for the others to pile up
        return batch * 10

    batcher = Batcher(run, limit=16)
    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(lambda i: batcher(torch.tensor([[float(i)]])), range(40)))
    assert [float(r) for r in results] == [10.0 * i for i in range(40)]
    assert sum(sizes) == 40 and len(sizes) < 40 and max(sizes) <= 16


def test_an_error_reaches_every_caller_of_its_batch_and_the_batcher_recovers():
    gate = threading.Event()

    def run(batch):
        gate.wait(1)
        if (batch < 0).any():
            raise ValueError("negative")
        return batch

    batcher = Batcher(run)
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(batcher, torch.tensor([[v]])) for v in (1.0, -1.0, 2.0)]
        time.sleep(0.1)
        gate.set()
        outcomes = []
        for future in futures:
            try:
                outcomes.append(float(future.result()))
            except ValueError:
                outcomes.append("error")
    assert "error" in outcomes
    assert float(batcher(torch.tensor([[5.0]]))) == 5.0
