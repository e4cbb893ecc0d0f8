"""The methods x metrics runner, its report, the dataset path (resumable, chunk-independent) and the
command line."""

import json

import numpy as np
import pytest
import torch

from convscope.evaluate.dataset import evaluate_dataset
from convscope.evaluate.metrics import METRICS
from convscope.evaluate.runner import evaluate, method_explainer
from tests.cli.test_cli import run
from tests.evaluate.test_map_metrics import small_net, sobel


def test_report_table_ranks_each_metric_in_its_better_direction(tmp_path):
    net, x = small_net(), torch.rand(3, 3, 12, 12)
    report = evaluate(net, x, {"gradient": method_explainer("gradient"), "sobel": sobel},
                      ["deletion", "insertion", "sparseness", "random-logit"])
    table = report.table()
    for metric in report.metrics:
        high = METRICS[metric].better == "higher"
        best = max(table, key=lambda m: table[m][metric]) if high else min(table, key=lambda m: table[m][metric])
        assert report.ranking(metric)[0] == best
        for method in report.methods:
            assert table[method][metric] == pytest.approx(float(report.values[metric][method].mean()))
    assert float(report.values["random-logit"]["sobel"].mean()) == pytest.approx(1.0)
    written = report.save(tmp_path)
    assert {path.name for path in written} == {"report.json", "table.md", "maps.png", "curves.png"}
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["metrics"]["deletion"]["better"] == "lower" and len(saved["per_image"]["insertion"]["sobel"]) == 3
    assert "| sobel |" in (tmp_path / "table.md").read_text()


def test_dataset_run_equals_one_batch_and_resumes_to_the_same_report(digits, tmp_path):
    from convscope.data.datasets import open_dataset
    from convscope.data.loader import fitted_image
    dataset = open_dataset("digits:6")
    whole = evaluate_dataset(digits, dataset, tmp_path / "a", ["gradient"], ["deletion", "sparseness"], chunk_size=4,
                             progress=False)
    x = torch.stack([fitted_image(dataset, i, digits.input_size, 1) for i in range(6)])
    direct = evaluate(digits, x, ["gradient"], ["deletion", "sparseness"])
    for metric in ("deletion", "sparseness"):
        torch.testing.assert_close(whole.values[metric]["gradient"], direct.values[metric]["gradient"])
    (tmp_path / "a" / "chunks" / "000001.npz").unlink()  # as if stopped after the first chunk
    resumed = evaluate_dataset(digits, dataset, tmp_path / "a", ["gradient"], ["deletion", "sparseness"],
                               chunk_size=4, progress=False)
    np.testing.assert_array_equal(resumed.values["deletion"]["gradient"], whole.values["deletion"]["gradient"])
    assert len(resumed.classes) == 6


def test_cli_evaluates_an_image_and_refuses_unknown_metrics_in_one_line(capsys, monkeypatch, tmp_path):
    from skimage import data
    from PIL import Image
    image = tmp_path / "rocket.png"
    Image.fromarray(data.rocket()).resize((64, 48)).save(image)
    code, out, err = run(capsys, monkeypatch, "evaluate", str(image), "-o", str(tmp_path / "out"), "-m", "digits_cnn",
                         "--methods", "gradient,gradcam", "--metrics", "deletion,sparseness")
    assert code == 0, err
    assert "| gradcam |" in out and (tmp_path / "out" / "curves.png").exists()
    code, out, err = run(capsys, monkeypatch, "evaluate", str(image), "-o", str(tmp_path / "bad"),
                         "--metrics", "deletion,accuracy")
    assert code == 2 and err.count("\n") == 1 and "accuracy" in err and "insertion" in err
    assert not (tmp_path / "bad").exists()
