"""Loading models: the default, the digits CNN, files, other libraries, devices, labels."""

import sys
import types

import pytest
import torch
from torch import nn

import convscope as cs
from convscope.models import imagenet_labels
from convscope.models.digits import digits_dataset, split


def test_default_model_sees_a_cat_and_an_espresso(lite0):
    cat = cs.classify(lite0, cs.sample_image("cat", size=224), top=1)[0][0]
    coffee = cs.classify(lite0, cs.sample_image("coffee", size=224), top=1)[0][0]
    assert 281 <= cat.index <= 285
    assert coffee.index == 967 and coffee.label == "espresso"


def test_default_model_is_ready_to_use(lite0):
    assert lite0.input_size == (224, 224) and len(lite0.labels) == 1000
    assert not lite0.net.training and lite0.device.type == "cpu"


def test_digits_cnn_is_accurate_on_held_out_digits(digits):
    images, labels = digits_dataset()
    _, test = split(len(images))
    predictions = cs.probabilities(digits, images[test]).argmax(1)
    assert (predictions == labels[test]).float().mean() >= 0.95


def test_weights_file_with_inferred_and_named_architecture(tmp_path, digits):
    changed = {k: v + 0.01 for k, v in digits.net.state_dict().items()}
    path = tmp_path / "tuned.pt"
    torch.save({"state_dict": changed}, path)
    x = torch.rand(3, 1, 8, 8)
    inferred = cs.load_model(str(path), device="cpu")
    named = cs.load_model(f"digits_cnn={path}", device="cpu")
    assert inferred.name == "digits_cnn"
    torch.testing.assert_close(inferred(x), named(x))
    assert not torch.allclose(inferred(x), digits(x))


def test_bad_weights_files_are_refused(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(cs.ConvscopeError, match="not a weights-only PyTorch"):
        cs.load_model(str(text))
    wrong = tmp_path / "wrong.pt"
    torch.save({"features.0.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(cs.ConvscopeError, match="do not fit"):
        cs.load_model(f"digits_cnn={wrong}")
    with pytest.raises(cs.ConvscopeError, match="no registered architecture"):
        cs.load_model(str(wrong))


def test_pickled_code_is_not_loaded(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), path)  # a whole module: needs unpickling code, refused
    with pytest.raises(cs.ConvscopeError, match="weights-only"):
        cs.load_model(f"digits_cnn={path}")


def test_unknown_model_and_device():
    with pytest.raises(cs.ConvscopeError, match="unknown model 'efficientnet_lite'.*efficientnet_lite0"):
        cs.load_model("efficientnet_lite")
    with pytest.raises(cs.ConvscopeError, match="unknown device 'gpu7'"):
        cs.load_model("digits_cnn", device="gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(cs.ConvscopeError, match="CUDA is not available"):
            cs.load_model("digits_cnn", device="cuda")


def test_torchvision_names_go_through_torchvision(monkeypatch, tmp_path):
    """torchvision has no CPU build here, so a stand-in module checks our side of the contract."""
    built = {}

    def get_model(name, weights=None):
        built["weights"] = weights
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1000))

    fake = types.ModuleType("torchvision.models")
    fake.list_models = lambda: ["tiny"]
    fake.get_model = get_model
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.models", fake)
    model = cs.load_model("torchvision:tiny", device="cpu")
    assert built["weights"] == "DEFAULT" and model.labels is imagenet_labels()
    assert model.mean == (0.485, 0.456, 0.406)
    path = tmp_path / "tiny.pth"
    state = {k: torch.ones_like(v) for k, v in model.net.state_dict().items()}
    torch.save(state, path)
    model = cs.load_model(f"torchvision:tiny={path}", device="cpu")
    assert built["weights"] is None and torch.equal(model.net[0].weight, torch.ones(4, 3, 3, 3))
    with pytest.raises(cs.ConvscopeError, match="unknown torchvision model 'tinny'.*tiny"):
        cs.load_model("torchvision:tinny")


def test_missing_optional_library_is_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(cs.ConvscopeError, match="optional package 'timm'"):
        cs.load_model("timm:resnet50")


def test_any_module_is_accepted():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    model = cs.load_model(net, device="cpu")
    assert model.net is net and model.channels == 1


def test_class_lookup_by_index_name_synonym_and_suggestion():
    labels = imagenet_labels()
    assert labels.index(967) == labels.index("967") == labels.index("Espresso") == 967
    assert labels.index("tabby cat") == 281 and labels.name(281) == "tabby"
    with pytest.raises(cs.ConvscopeError, match=r"did you mean: .*espresso \(967\)"):
        labels.index("expresso")
    with pytest.raises(cs.ConvscopeError, match="out of range"):
        labels.index(1000)


def test_architectures_without_weights_are_built_random_and_labelled_untrained():
    pytest.importorskip("timm")  # torchvision and timm import here through tests/conftest.py's setup
    first = cs.load_model("timm:convnext_atto=random", device="cpu")
    again = cs.load_model("torchvision:resnet18=random", device="cpu")
    assert "untrained" in first.name and "untrained" in again.name
    assert first.input_size == (224, 224) and len(first.labels) == 1000
    same = cs.load_model("timm:convnext_atto=random", device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(first.net.parameters(), same.net.parameters()))  # seeded
    with pytest.raises(cs.ConvscopeError, match="comes with its own weights"):
        cs.load_model("digits_cnn=random")
