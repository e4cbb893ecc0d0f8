"""Jobs run in worker processes: a native crash fails the job in one line and the server goes on."""

from __future__ import annotations

import os
import time
from functools import partial

import pytest
import torch

from convscope.core.render import picture
from convscope.web.jobs import FINISHED, JobQueue


def _sum_of_logits(steps: int):
    """A recipe: ``steps`` forward passes, a report after each, the last logits' sum as the caption."""
    def run(model, job):
        for step in range(steps):
            logits = model(torch.full((1, model.channels, *model.input_size), 0.5))
            job.report((step + 1) / steps)
        job.keep(logits)
        return picture(torch.zeros(3, 4, 4), f"sum {float(logits.sum()):.4f}", pid=os.getpid())
    return run


def _crash():
    """A recipe whose job ends its process the way a heap corruption does (SIGABRT)."""
    def run(model, job):
        job.report(0.5)
        os.abort()
    return run


def _wait(queue: JobQueue, job, seconds: float = 120):
    ends = time.monotonic() + seconds
    while job.state not in FINISHED:
        assert time.monotonic() < ends, f"job still {job.state}"
        time.sleep(0.05)
    return job


@pytest.fixture(scope="module")
def queue(digits):
    jobs = JobQueue(digits, workers=1, capacity=4, seconds=60)
    yield jobs
    jobs.close()


def test_a_job_runs_in_another_process_on_its_own_copy_of_the_model(queue, digits):
    job = _wait(queue, queue.submit("sum", partial(_sum_of_logits, 3)))
    assert job.state == "done", job.message
    with torch.no_grad():
        expected = float(digits(torch.full((1, digits.channels, *digits.input_size), 0.5)).sum())
    assert job.caption == f"sum {expected:.4f}"
    assert job.numbers["pid"] != os.getpid() and job.progress == 1.0 and job.array is not None


def test_a_crash_fails_its_job_in_one_line_and_the_next_job_runs(queue):
    crashed = _wait(queue, queue.submit("crash", _crash))
    assert crashed.state == "failed" and "SIGABRT" in crashed.message and "\n" not in crashed.message
    assert crashed.progress == 0.5  # what it reported before it died
    after = _wait(queue, queue.submit("sum", partial(_sum_of_logits, 1)))
    assert after.state == "done", after.message


def test_a_cancel_stops_the_job_at_its_next_forward_pass(queue):
    job = queue.submit("long", partial(_sum_of_logits, 10**7))
    while job.progress == 0:
        time.sleep(0.05)
    queue.cancel(job.id)
    assert _wait(queue, job, 30).state == "cancelled" and job.message == "cancelled"
    assert _wait(queue, queue.submit("sum", partial(_sum_of_logits, 1))).state == "done"


def test_a_model_that_cannot_be_sent_runs_its_jobs_in_threads(digits):
    import copy
    model = copy.deepcopy(digits)
    model.net.scale = lambda x: x  # a lambda: copied by reference, but not picklable
    jobs = JobQueue(model, workers=1)
    try:
        job = _wait(jobs, jobs.submit("sum", partial(_sum_of_logits, 1)))
        assert job.state == "done" and job.numbers["pid"] == os.getpid()
    finally:
        jobs.close()


def test_a_cancel_while_the_worker_starts_is_answered_at_once_and_the_start_serves_the_next_job(digits):
    jobs = JobQueue(digits, workers=1)
    try:
        job = jobs.submit("sum", partial(_sum_of_logits, 1))
        while job.message != "starting a worker process":  # the child imports torch: seconds
            time.sleep(0.01)
        asked = time.monotonic()
        jobs.cancel(job.id)
        assert _wait(jobs, job, 30).state == "cancelled" and time.monotonic() - asked < 0.5
        assert _wait(jobs, jobs.submit("sum", partial(_sum_of_logits, 1))).state == "done"
    finally:
        jobs.close()
