"""Hugging Face models by name (hf:FOLDER saved with save_pretrained, hf:ORG/NAME from the hub
when online), and compiled programs refused in one line."""

import pytest
import torch

import convscope as cs
from convscope.errors import ConvscopeError
from tests.cli.test_cli import run


@pytest.fixture(scope="module")
def saved_vit(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("hf") / "tiny-vit"
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=64, num_labels=2,
                                    id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1})
    torch.manual_seed(0)
    net = transformers.ViTForImageClassification(config).eval()
    net.save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3],
                                   image_std=[0.2, 0.25, 0.3]).save_pretrained(folder)
    return folder, net


def test_a_saved_folder_loads_with_its_preprocessing_and_labels(saved_vit):
    folder, net = saved_vit
    model = cs.load_model(f"hf:{folder}", device="cpu")
    assert model.input_size == (32, 32) and model.labels.names == ("cat", "dog")
    assert model.mean == pytest.approx((0.5, 0.4, 0.3)) and model.std == pytest.approx((0.2, 0.25, 0.3))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    normalized = (x - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(pixel_values=normalized).logits)  # it normalizes as told
    assert cs.classify(model, x)[0][0].label in ("cat", "dog")


def test_a_hub_name_offline_is_refused_in_one_line(monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConvscopeError, match="hf:FOLDER") as error:
        cs.load_model("hf:some-org/no-such-model-here", device="cpu")
    assert "\n" not in str(error.value)


def test_compiled_programs_are_refused_in_one_line(capsys, monkeypatch, tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    torch.jit.script(net).save(str(tmp_path / "scripted.pt"))
    torch.export.save(torch.export.export(net, (torch.rand(1, 3, 16, 16),)), str(tmp_path / "exported.pt2"))
    for name, kind in (("scripted.pt", "TorchScript archive"), ("exported.pt2", "torch.export program")):
        code, out, err = run(capsys, monkeypatch, "layers", "--model", str(tmp_path / name))
        assert code != 0 and kind in err and "package.module:factory" in err and len(err.strip().splitlines()) == 1
