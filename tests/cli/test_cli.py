"""The command line, run in-process through its real entry point."""

import importlib.util
import json
import re
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

import convscope as cs
from convscope.cli.app import open_model
from convscope.attribute import occlusion as occlusion_module
from convscope.cli import main
from convscope.core.images import load_image


def run(capsys, monkeypatch, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["convscope", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exit:
        code = exit.code or 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def cat_file(tmp_path):
    from skimage import data
    path = tmp_path / "cat.jpg"
    Image.fromarray(data.chelsea()).save(path)
    return path


def test_classify_json(capsys, monkeypatch, cat_file):
    code, out, _ = run(capsys, monkeypatch, "classify", cat_file, "--top", "3", "--json", "--device", "cpu")
    assert code == 0
    result = json.loads(out)
    assert result[0]["image"] == str(cat_file)
    top = result[0]["predictions"]
    assert len(top) == 3 and 281 <= top[0]["index"] <= 285
    assert set(top[0]) == {"index", "label", "probability"}


def test_filters_and_activations_write_pictures(capsys, monkeypatch, tmp_path, cat_file):
    assert run(capsys, monkeypatch, "filters", "-o", tmp_path / "f.png")[0] == 0
    assert np.asarray(Image.open(tmp_path / "f.png")).std() > 10  # not a blank picture
    code, out, _ = run(capsys, monkeypatch, "activations", cat_file, "--layer", "_blocks.3._swish",
                       "--channel", "4", "-o", tmp_path / "a.png")
    assert code == 0 and "channel 4" in out
    assert Image.open(tmp_path / "a.png").size == (224, 224)


def test_layers_lists_receptive_fields(capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, "layers", "--model", "digits_cnn")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("features.2 "))
    assert "32x8x8" in row and "5x5" in row and "4,640" in row  # two 3x3 convs: 5 pixels


def bad_files(tmp_path, cat_file):
    jpeg = cat_file.read_bytes()
    (tmp_path / "corrupt.jpg").write_bytes(jpeg[:2000])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("just some text\n")
    Image.new("1", (30000, 30000)).save(tmp_path / "huge.png")
    return {
        "corrupt jpeg": (["classify", tmp_path / "corrupt.jpg"], "corrupt or truncated"),
        "empty file": (["classify", tmp_path / "empty.png"], "empty"),
        "text named png": (["classify", tmp_path / "text.png"], "not a readable image"),
        "30000x30000 png": (["classify", tmp_path / "huge.png"], "too large"),
        "missing file": (["classify", tmp_path / "nope.jpg"], "no such file"),
        "unknown layer": (["activations", cat_file, "--layer", "_blocks.3._swsh"], "closest: _blocks.3._swish"),
        "unknown model": (["classify", cat_file, "--model", "resnet9000"], "unknown model 'resnet9000'"),
        "unknown device": (["classify", cat_file, "--device", "tpu"], "unknown device 'tpu'"),
        "channel out of range": (["visualize", "--layer", "_blocks.3", "--channel", "40", "--steps", "2"],
                                 "index 40 is out of range; accepted: 0..39"),
        "style optimizer": (["style", cat_file, "tissue", "--optimizer", "sgd"], "optimizer 'sgd'; valid: lbfgs, adam"),
    }


@pytest.mark.parametrize("case", ["corrupt jpeg", "empty file", "text named png", "30000x30000 png",
                                  "missing file", "unknown layer", "unknown model", "unknown device",
                                  "channel out of range", "style optimizer"])
def test_bad_input_is_one_line_with_status_2_and_no_file(capsys, monkeypatch, tmp_path, cat_file, case):
    args, message = bad_files(tmp_path, cat_file)[case]
    output = tmp_path / "out.png"
    if args[0] in ("activations", "visualize", "style"):
        args = [*args, "-o", output]
    code, _, err = run(capsys, monkeypatch, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("convscope: error:") and message in err
    assert "Traceback" not in err
    assert not output.exists() and not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob("tmp*.png"))


def test_bad_output_path_is_refused_before_work(capsys, monkeypatch, tmp_path):
    code, _, err = run(capsys, monkeypatch, "filters", "-o", tmp_path / "missing" / "f.png")
    assert code == 2 and "no such folder" in err
    code, _, err = run(capsys, monkeypatch, "filters", "-o", tmp_path / "f.jpg")
    assert code == 2 and ".png" in err


def test_tour_writes_a_gallery(capsys, monkeypatch, tmp_path):
    code, _, _ = run(capsys, monkeypatch, "tour", "-o", tmp_path / "tour", "--model", "digits_cnn")
    assert code == 0
    page = (tmp_path / "tour" / "index.html").read_text()
    pictures = sorted(p.name for p in (tmp_path / "tour").glob("*.png"))
    assert pictures and all(name in page for name in pictures)
    assert "http" not in page  # offline: no external assets
    links = re.findall(r'href="([^"]+)"', page)
    assert "microscope/index.html" in links and all((tmp_path / "tour" / link).is_file() for link in links)


@pytest.mark.parametrize("method", ["gradient", "guided", "gradcam++", "integrated-gradients"])
def test_saliency_writes_picture_and_raw_map(capsys, monkeypatch, tmp_path, method):
    from skimage import data
    path = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(path)
    args = ["saliency", path, "--method", method, "--target", "Espresso", "-o", tmp_path / "s.png",
            "--save-array", tmp_path / "s.npy"]
    code, out, _ = run(capsys, monkeypatch, *args)
    assert code == 0 and "espresso (967)" in out
    raw = np.load(tmp_path / "s.npy")
    assert raw.shape == (224, 224) and raw.dtype == np.float32 and raw.max() > 0


def test_occlusion_saves_grid_and_map(capsys, monkeypatch, tmp_path, cat_file):
    args = ["occlusion", cat_file, "--patch", "56", "--stride", "56", "-o", tmp_path / "o.png",
            "--save-array", tmp_path / "o.npz"]
    assert run(capsys, monkeypatch, *args)[0] == 0
    saved = np.load(tmp_path / "o.npz")
    assert saved["probabilities"].shape == (4, 4) and saved["map"].shape == (224, 224)
    # the map is the mean drop of the patches covering a pixel: here exactly one patch each
    assert np.isclose(saved["map"][0, 0], saved["baseline"][0] - saved["probabilities"][0, 0], atol=1e-6)


def test_warnings_are_one_line(capsys, monkeypatch, tmp_path, cat_file):
    """The slow-kernel warning (made to fire on any CPU: whether it should is tested against the profiler
    in the occlusion tests) is one line, and the command still succeeds."""
    monkeypatch.setattr(occlusion_module, "fast_on_cpu", lambda precision: precision == "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, _, err = run(capsys, monkeypatch, "occlusion", cat_file, "--patch", "56", "--stride", "56", "--mode",
                           "fast", "--precision", "bfloat16", "-o", tmp_path / "o.png")
    warned = [line for line in err.splitlines() if "warn" in line]
    assert code == 0 and (tmp_path / "o.png").exists()
    assert warned == ["convscope: warning: this CPU has no oneDNN bfloat16 convolutions: occlusion in bfloat16 runs "
                      "on slow reference kernels, many times slower than float32; precision is meant for GPUs"]


def test_segment_writes_a_binary_mask(capsys, monkeypatch, tmp_path, cat_file):
    pytest.importorskip("cv2")
    assert run(capsys, monkeypatch, "segment", cat_file, "-o", tmp_path / "m.png")[0] == 0
    mask = np.asarray(Image.open(tmp_path / "m.png"))
    assert set(np.unique(mask)) <= {0, 255} and 0 < (mask == 255).mean() < 1


@pytest.mark.parametrize("args,message", [
    (["saliency", "--method", "gradcam+++"], "unknown method 'gradcam+++'; closest: gradcam++"),
    (["saliency", "--target", "expresso"], "did you mean: espresso (967)"),
    (["saliency", "--neuron", "3"], "expected Y,X"),
    (["occlusion", "--fill", "pink"], "unknown fill 'pink'"),
    (["occlusion", "--patch", "500"], "at most the image side"),
    (["occlusion", "--mode", "fast", "--precision", "fp8"], "unknown precision 'fp8'"),
])
def test_attribution_mistakes_are_one_line(capsys, monkeypatch, tmp_path, cat_file, args, message):
    output = tmp_path / "out.png"
    code, _, err = run(capsys, monkeypatch, args[0], cat_file, *args[1:], "-o", output)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not output.exists()


def test_visualize_writes_the_optimized_image_and_a_figure(capsys, monkeypatch, tmp_path):
    out, figure = tmp_path / "v.png", tmp_path / "fig.png"
    code, text, _ = run(capsys, monkeypatch, "visualize", "--layer", "_blocks.4", "--channel", "2", "--steps", "3",
                        "--size", "64", "-o", out, "--figure", figure, "--device", "cpu")
    assert code == 0 and "_blocks.4 channel 2" in text
    assert Image.open(out).size == (64, 64)
    assert Image.open(figure).size[1] > 64


def test_visualize_needs_one_target(capsys, monkeypatch, tmp_path):
    out = tmp_path / "v.png"
    code, _, err = run(capsys, monkeypatch, "visualize", "--target", "goldfish", "--layer", "_blocks.4",
                       "--channel", "1", "-o", out)
    assert code == 2 and "either --target" in err and not out.exists()
    code, _, err = run(capsys, monkeypatch, "visualize", "--target", "goldfsh", "--steps", "1", "-o", out)
    assert code == 2 and "goldfish" in err and not out.exists()


def test_invert(capsys, monkeypatch, tmp_path, cat_file):
    out = tmp_path / "inv.png"
    code, text, _ = run(capsys, monkeypatch, "invert", cat_file, "--layer", "_blocks.1", "--steps", "3", "-o", out)
    assert code == 0 and "inverted from _blocks.1" in text
    assert Image.open(out).size == (224, 224)


def test_zero_steps_is_a_one_line_error(capsys, monkeypatch, tmp_path, cat_file):
    out = tmp_path / "inv.png"
    code, _, err = run(capsys, monkeypatch, "invert", cat_file, "--layer", "_blocks.1", "--steps", "0", "-o", out)
    assert code == 2 and "steps must be 1 or more" in err and not out.exists()


@pytest.mark.parametrize("args", [["visualize", "--layer", "_blocks.4", "--channel", "9999", "--steps", "1"],
                                  ["visualize", "--layer", "_blocks.4", "--channel", "1", "--neuron", "500,1"],
                                  ["visualize", "--target", "goldfish", "--size", "100000"]])
def test_out_of_range_units_and_sizes_are_one_line_errors(capsys, monkeypatch, tmp_path, args):
    out = tmp_path / "v.png"
    code, _, err = run(capsys, monkeypatch, *args, "-o", out)
    assert code == 2 and ("out of range; accepted: 0.." in err or "pixels a side" in err) and not out.exists()


def test_saliency_channel_out_of_range_is_a_one_line_error(capsys, monkeypatch, tmp_path, cat_file):
    out = tmp_path / "s.png"
    code, _, err = run(capsys, monkeypatch, "saliency", cat_file, "--layer", "_blocks.4", "--channel", "9999",
                       "-o", out)
    assert code == 2 and "channel or class index 9999 is out of range; accepted: 0..39" in err and not out.exists()


def test_dream_keeps_the_image_size(capsys, monkeypatch, tmp_path):
    photo, out = tmp_path / "small.png", tmp_path / "dream.png"
    Image.fromarray((np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)).save(photo)
    code, text, _ = run(capsys, monkeypatch, "dream", photo, "--layer", "_blocks.3", "--octaves", "2", "--steps", "2",
                        "-o", out, "--device", "cpu")
    assert code == 0 and "dream" in text
    assert Image.open(out).size == (70, 50)
    code, _, err = run(capsys, monkeypatch, "dream", photo, "--layer", "_blocks.99", "-o", tmp_path / "x.png")
    assert code == 2 and "_blocks.3" in err and not (tmp_path / "x.png").exists()  # valid names listed


def test_style_with_a_built_in_style(capsys, monkeypatch, tmp_path, cat_file):
    out = tmp_path / "styled.png"
    code, text, _ = run(capsys, monkeypatch, "style", cat_file, "stained-glass", "--size", "64", "--steps", "3",
                        "-o", out, "--device", "cpu")
    assert code == 0 and "(43, 64) px" in text
    assert Image.open(out).size == (64, 43)
    code, _, err = run(capsys, monkeypatch, "style", cat_file, "stained-glas", "-o", tmp_path / "x.png")
    assert code == 2 and "stained-glass" in err and not (tmp_path / "x.png").exists()


def test_style_train_then_apply(capsys, monkeypatch, tmp_path, cat_file):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.open(cat_file).save(folder / "cat.png")
    net, out = tmp_path / "net.pt", tmp_path / "fast.png"
    code, text, _ = run(capsys, monkeypatch, "style-train", "brushstrokes", "--images", folder, "--steps", "2",
                        "--size", "48", "--batch", "2", "-o", net, "--device", "cpu")
    assert code == 0 and "1 photos" in text
    code, _, _ = run(capsys, monkeypatch, "style-apply", net, cat_file, "-o", out, "--device", "cpu")
    assert code == 0 and Image.open(out).size == Image.open(cat_file).size
    code, _, err = run(capsys, monkeypatch, "style-apply", cat_file, cat_file, "-o", tmp_path / "x.png")
    assert code == 2 and "not a style network" in err and not (tmp_path / "x.png").exists()
    code, _, err = run(capsys, monkeypatch, "style-train", "brushstrokes", "-o", tmp_path / "net.png")
    assert code == 2 and ".pt" in err


def test_attack_json_and_the_saved_adversarial_still_fools(capsys, monkeypatch, tmp_path, cat_file):
    out, adversarial = tmp_path / "report.png", tmp_path / "adv.png"
    code, text, _ = run(capsys, monkeypatch, "attack", cat_file, "--method", "pgd", "--eps", "2/255", "-o", out,
                        "--save-adversarial", adversarial, "--json", "--device", "cpu")
    assert code == 0
    report = json.loads(text)
    assert report["success"] and report["linf_255"] <= 2 and set(report) >= {"original", "adversarial", "l2"}
    assert Image.open(out).size[0] > 3 * 224
    from convscope import load_model
    from convscope.core.images import load_image
    model = load_model(device="cpu")
    import torch
    with torch.no_grad():
        assert model(load_image(adversarial)).argmax(-1).item() == report["adversarial"][0]["index"]
    code, _, err = run(capsys, monkeypatch, "attack", cat_file, "--eps", "two", "-o", tmp_path / "x.png")
    assert code == 2 and "2/255" in err and not (tmp_path / "x.png").exists()
    code, _, err = run(capsys, monkeypatch, "attack", cat_file, "--method", "cw", "-o", tmp_path / "x.png")
    assert code == 2 and "target" in err and not (tmp_path / "x.png").exists()


def test_fool_and_linear_demo(capsys, monkeypatch, tmp_path):
    out = tmp_path / "fool.png"
    code, text, _ = run(capsys, monkeypatch, "fool", "--target", "7", "--model", "digits_cnn", "-o", out)
    assert code == 0 and "7 " in text
    assert Image.open(out).size == (8, 8)
    code, text, _ = run(capsys, monkeypatch, "linear-demo", "-o", tmp_path / "linear.png")
    assert code == 0 and "accuracy" in text


@pytest.fixture()
def photo_folder(tmp_path):
    """Class subfolders of crops of two photos, plus a corrupt file."""
    from skimage import data
    for name, photo in (("cat", data.chelsea()), ("cup", data.coffee())):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(6):
            crop = photo[i * 15:i * 15 + 200, i * 30:i * 30 + 200]
            Image.fromarray(crop).save(tmp_path / "images" / name / f"{i}.jpg")
    (tmp_path / "images" / "cup" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return tmp_path / "images"


def test_embed_a_folder_reports_the_corrupt_file(capsys, monkeypatch, tmp_path, photo_folder):
    code, out, err = run(capsys, monkeypatch, "embed", photo_folder, "-o", tmp_path / "run", "--method", "umap")
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["images"] == 12 and report["dimensions"] == 1280 and report["layer"] == "_dropout"
    assert [item["name"] for item in report["unreadable"]] == [str(photo_folder / "cup" / "broken.jpg")]
    assert 0 <= report["knn10_accuracy_2d"] <= 1 and "1 unreadable image(s) skipped" in out
    assert np.load(tmp_path / "run" / "embedding-umap.npy").shape == (12, 2)
    grid = np.asarray(Image.open(tmp_path / "run" / "grid.png"))
    assert grid.shape == (4 * 33 + 1, 4 * 33 + 1, 3) and grid.std() > 10


def test_top_activations_of_two_layers_write_a_folder_each(capsys, monkeypatch, tmp_path):
    code, out, err = run(capsys, monkeypatch, "top-activations", "digits:64", "--model", "digits_cnn", "-o",
                         tmp_path / "top", "--layer", "features.1", "--layer", "features.3", "--channels", "0-1")
    assert code == 0, err
    for layer in ("features.1", "features.3"):
        index = json.loads((tmp_path / "top" / layer / "index.json").read_text())
        assert index["layer"] == layer and index["channels"] == [0, 1]
        assert (tmp_path / "top" / layer / "channels" / "0001.png").is_file()


def test_top_activations_of_a_folder(capsys, monkeypatch, tmp_path, photo_folder):
    code, out, err = run(capsys, monkeypatch, "top-activations", photo_folder, "-o", tmp_path / "top",
                         "--layer", "_blocks.2", "--channels", "1,3-4", "--k", "3")
    assert code == 0, err
    index = json.loads((tmp_path / "top" / "index.json").read_text())
    assert index["channels"] == [1, 3, 4] and index["k"] == 3 and len(index["failures"]) == 1
    assert sorted(p.name for p in (tmp_path / "top" / "channels").iterdir()) == ["0001.png", "0003.png", "0004.png"]
    assert all(name.startswith(str(photo_folder)) for name in index["images"].values())


@pytest.mark.parametrize("args, message", [
    (["embed", "nowhere", "-o", "x"], "no such folder or file"),
    (["embed", "digits", "-o", "x", "--method", "pca"], "unknown embedding method 'pca'"),
    (["atlas", "digits", "-o", "x", "--model", "digits_cnn", "--layer", "features.3", "--method", "pca"],
     "unknown embedding method 'pca'"),
    (["atlas", "digits", "-o", "x", "--model", "digits_cnn", "--layer", "classifier"], "needs (C, h, w) maps"),
    (["embed", "digits", "-o", "x", "--model", "digits_cnn", "--layer", "featurs"], "unknown layer 'featurs'"),
    (["top-activations", "digits", "-o", "x", "--model", "digits_cnn", "--layer", "features.3", "--channels", "a"],
     "expected all, or numbers"),
])
def test_dataset_command_mistakes_are_one_line(capsys, monkeypatch, tmp_path, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, monkeypatch, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_a_missing_umap_is_refused_before_the_pass(capsys, monkeypatch, tmp_path):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "umap" else
                        find_spec(name, *rest))
    code, _, err = run(capsys, monkeypatch, "atlas", "digits:20", "-o", tmp_path / "x", "--model", "digits_cnn",
                       "--layer", "features.3")
    assert code == 2 and err.strip() == "convscope: error: --method umap needs umap-learn: pip install 'convscope[umap]'"
    assert not (tmp_path / "x").exists()


def test_a_run_folder_of_other_settings_is_refused(capsys, monkeypatch, tmp_path):
    args = ["top-activations", "digits:50", "--model", "digits_cnn", "--layer", "features.3", "-o", tmp_path / "r"]
    assert run(capsys, monkeypatch, *args)[0] == 0
    code, _, err = run(capsys, monkeypatch, *args[:-2], "--k", "4", "-o", tmp_path / "r")
    assert code == 2 and "holds a different run (k: 9 there, 4 now)" in err


def test_serve_refuses_a_folder_without_an_index(capsys, monkeypatch, tmp_path):
    code, _, err = run(capsys, monkeypatch, "serve", "--index", tmp_path)
    assert code == 2 and "no index.json there" in err and len(err.strip().splitlines()) == 1


def test_blocks_writes_the_picture_and_consistent_arrays(capsys, monkeypatch, tmp_path):
    Image.fromarray((load_digits().images[3] * 16).astype(np.uint8)).save(tmp_path / "three.png")
    code, out, err = run(capsys, monkeypatch, "blocks", tmp_path / "three.png", "--model", "digits_cnn", "--layer",
                         "features.3", "--groups", "3", "--steps", "16", "-o", tmp_path / "b.png", "--save-array",
                         tmp_path / "b.npz")
    assert code == 0, err
    arrays = np.load(tmp_path / "b.npz")
    assert arrays["maps"].shape == (3, 8, 8) and arrays["directions"].shape == (3, 32)
    assert arrays["spatial"].shape == (8, 8) and arrays["channels"].shape == (32,)
    # completeness, against the logit change of zeroing the layer with a plain forward hook
    model = cs.load_model("digits_cnn", device="cpu")
    x = load_image(tmp_path / "three.png", size=model.input_size)
    with torch.no_grad():
        logits = model(model.to_channels(x))[0]
        handle = dict(model.net.named_modules())["features.3"].register_forward_hook(lambda m, i, out: out * 0)
        try:
            zeroed = model(model.to_channels(x))[0]
        finally:
            handle.remove()
    top = int(logits.argmax())
    change = float(logits[top] - zeroed[top])
    assert abs(arrays["channels"].sum() - change) <= 0.05 * abs(change), (arrays["channels"].sum(), change)
    assert np.isclose(arrays["spatial"].sum(), arrays["channels"].sum(), rtol=1e-4)
    assert "3 neuron groups" in out and "channels that carry it most" in out
    assert Image.open(tmp_path / "b.png").size[0] > Image.open(tmp_path / "b.png").size[1]


def test_atlas_bins_every_vector_and_refuses_an_unknown_class(capsys, monkeypatch, tmp_path):
    args = ["atlas", "digits:60", "-o", tmp_path / "atlas", "--model", "digits_cnn", "--layer", "features.3",
            "--per-image", "2", "--side", "3", "--min-count", "1", "--method", "tsne", "--size", "16", "--steps", "4"]
    code, out, err = run(capsys, monkeypatch, *args)
    assert code == 0, err
    arrays = np.load(tmp_path / "atlas" / "atlas.npz")
    assert arrays["points"].shape == (120, 2) and arrays["counts"].sum() == 120  # every vector lies in a drawn cell
    assert arrays["directions"].shape == (len(arrays["cells"]), 32) and (arrays["cells"] < 3).all()
    assert "atlas.png" in out and (tmp_path / "atlas" / "atlas.png").exists()
    code, _, err = run(capsys, monkeypatch, *args, "--class", "12")
    assert code != 0 and err.strip().count("\n") == 0 and "12" in err


def test_the_target_grammar_is_in_the_help_and_a_bad_target_gets_one_line(capsys, monkeypatch, cat_file, tmp_path):
    code, out, _ = run(capsys, monkeypatch, "saliency", "--help")
    assert code == 0 and "region:CLASS[~OTHER][@MASK.png]" in out.replace("\n", "").replace("│", "").replace(" ", "")
    code, _, err = run(capsys, monkeypatch, "saliency", cat_file, "--target", "region:tabby", "-o", tmp_path / "s.png")
    assert code == 2 and "a region target needs a segmentation output" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.png").exists()


def test_your_own_model_by_its_factory_explains_a_region(capsys, monkeypatch, cat_file, tmp_path):
    """--model package.module:factory (the tests' small segmenter, returning torchvision's dict)."""
    factory = "tests.attribute.test_tasks:_Segmenter"
    code, out, err = run(capsys, monkeypatch, "saliency", cat_file, "--model", factory, "--target", "region:~0",
                         "-o", tmp_path / "s.png")
    assert code == 0, err
    assert (tmp_path / "s.png").is_file() and "rather than class 0" in out
    code, _, err = run(capsys, monkeypatch, "saliency", cat_file, "--model", "tests.attribute.test_tasks:nothing",
                       "-o", tmp_path / "t.png")
    assert code == 2 and "has no callable nothing" in err and len(err.strip().splitlines()) == 1


def test_task_and_model_output_flags_override_what_the_model_finds(capsys, monkeypatch, cat_file, tmp_path):
    """--model-output picks another tensor of the network's dict; --task multi-label reads sigmoids."""
    factory = "tests.attribute.test_tasks:_Segmenter"
    code, out, err = run(capsys, monkeypatch, "saliency", cat_file, "--model", factory, "--model-output", "aux",
                         "--target", "region:1", "-o", tmp_path / "s.png")
    assert code == 0, err
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():  # aux is the coarse map, at half the input's size
        assert open_model(factory, "cpu", reads="aux")(x).shape == (1, 4, 16, 16)
        assert open_model(factory, "cpu", reads="out")(x).shape == open_model(factory, "cpu")(x).shape == (1, 4, 32, 32)
        with pytest.raises(cs.ConvscopeError, match="keys out, aux"):
            open_model(factory, "cpu", reads="0")(x)  # an index is for a tuple or list
    code, _, err = run(capsys, monkeypatch, "saliency", cat_file, "--model", factory, "--model-output", "logits",
                       "-o", tmp_path / "u.png")
    assert code == 2 and "logits" in err and "aux" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, monkeypatch, "classify", cat_file, "--model", "digits_cnn", "--task", "multilabel")
    assert code == 2 and "multi-label" in err and len(err.strip().splitlines()) == 1
    code, out, err = run(capsys, monkeypatch, "classify", cat_file, "-m", "digits_cnn", "--task", "multi-label",
                         "--json", "--top", "10")
    assert code == 0, err
    shown = {p["index"]: p["probability"] for p in json.loads(out)[0]["predictions"]}
    model = cs.load_model("digits_cnn")
    with torch.no_grad():
        expected = model(cs.load_image(cat_file, size=model.input_size)).sigmoid()[0]
    for index, probability in shown.items():
        assert probability == pytest.approx(float(expected[index]), abs=1e-5)


def test_a_detector_lists_its_boxes_and_explains_one(capsys, monkeypatch, cat_file, tmp_path):
    factory = "tests.attribute.test_detection:cell_detector"
    code, out, err = run(capsys, monkeypatch, "detect", cat_file, "--model", factory, "--picture", tmp_path / "b.png")
    assert code == 0, err
    listed = re.findall(r"box:(\d+) +([0-9.]+)", out)
    assert listed and [int(k) for k, _ in listed] == list(range(len(listed)))
    assert [float(s) for _, s in listed] == sorted((float(s) for _, s in listed), reverse=True)
    assert (tmp_path / "b.png").is_file()
    code, out, err = run(capsys, monkeypatch, "saliency", cat_file, "--model", factory, "--target", "box:1",
                         "-o", tmp_path / "s.png")
    assert code == 0 and "score of box 1" in out and (tmp_path / "s.png").is_file(), err
    code, _, err = run(capsys, monkeypatch, "saliency", cat_file, "--model", factory, "--target", "box:99",
                       "-o", tmp_path / "t.png")
    assert code == 2 and "not a box 99" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t.png").exists()
