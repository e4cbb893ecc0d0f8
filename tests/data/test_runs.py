"""Runs across processes (torchrun, gloo) and runs killed halfway give the single-process result."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.cli.test_cli import run

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _torchrun(*args: str) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "convscope", *args]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture()
def digits_args():
    return ["--model", "digits_cnn", "--device", "cpu", "--chunk", "128"]


def test_embed_under_torchrun_equals_one_process(capsys, monkeypatch, tmp_path, digits_args):
    code, out, err = run(capsys, monkeypatch, "embed", "digits", "-o", tmp_path / "one", *digits_args)
    assert code == 0, err
    _torchrun("embed", "digits", "-o", str(tmp_path / "two"), *digits_args)
    for name in ("indices", "labels"):
        assert np.array_equal(np.load(tmp_path / "one" / f"{name}.npy"), np.load(tmp_path / "two" / f"{name}.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "one" / "codes.npy"), np.load(tmp_path / "two" / "codes.npy"),
                               atol=1e-6)
    assert (tmp_path / "two" / "grid.png").is_file() and (tmp_path / "two" / "scatter.png").is_file()


def test_top_activations_under_torchrun_equal_one_process(capsys, monkeypatch, tmp_path, digits_args):
    args = ["digits", "--layer", "features.3", "--k", "5", *digits_args]
    code, _, err = run(capsys, monkeypatch, "top-activations", *args, "-o", tmp_path / "one")
    assert code == 0, err
    _torchrun("top-activations", *args, "-o", str(tmp_path / "two"))
    one, two = np.load(tmp_path / "one" / "top.npz"), np.load(tmp_path / "two" / "top.npz")
    for name in ("channels", "images", "units"):
        assert np.array_equal(one[name], two[name]), name
    np.testing.assert_allclose(one["values"], two["values"], atol=1e-6)


def test_a_run_killed_halfway_resumes_to_the_same_result_and_names_the_chunk_it_died_on(capsys, monkeypatch,
                                                                                        tmp_path):
    """SIGKILL stands for a native crash: the process ends at once, in the middle of a chunk."""
    args = ["top-activations", "digits:4000", "--layer", "features.3", "--model", "digits_cnn", "--device", "cpu",
            "--chunk", "100", "--batch-size", "1", "--workers", "0"]
    killed = subprocess.Popen([sys.executable, "-m", "convscope", *args, "-o", str(tmp_path / "killed")], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = tmp_path / "killed" / "chunks"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(chunks.glob("*.npz")) if chunks.exists() else []) < 8:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    finished = len(list(chunks.glob("*.npz")))
    assert 8 <= finished < 40, f"{finished} of 40 chunks were done when the run was killed"
    running = [int(marker.stem) for marker in chunks.glob("*.running")]
    code, _, err = run(capsys, monkeypatch, *args, "-o", tmp_path / "killed")
    assert code == 0, err
    assert running, "killed between the save of one chunk and the start of the next (a microsecond window)"
    assert f"died while computing chunk {running[0]} (the first: images {running[0] * 100}-" in err, err
    assert not list(chunks.glob("*.running"))
    code, _, err = run(capsys, monkeypatch, *args, "-o", tmp_path / "whole")
    assert code == 0, err
    resumed, whole = np.load(tmp_path / "killed" / "top.npz"), np.load(tmp_path / "whole" / "top.npz")
    for name in whole.files:
        assert np.array_equal(resumed[name], whole[name]), name
