"""Codes, 2-D embeddings and top activating patches, against brute force."""

import itertools

import numpy as np
import pytest
import torch

import convscope as cs
from convscope.core.hooks import capture
from convscope.core.layout import channels_last
from convscope.data.datasets import Digits, open_dataset
from convscope.errors import ConvscopeError
from convscope.inspect.codes import extract_codes, penultimate_layer
from convscope.inspect.embedding import embed_2d, grid_cells, grid_picture, knn_accuracy
from convscope.inspect.fields import gradient_support, receptive_field
from convscope.inspect.top_patches import load_top_activations, merge_top, top_activations, top_activations_of
from tests.conftest import assert_unchanged, snapshot


def test_penultimate_layer_is_what_the_classifier_reads(digits, lite0):
    assert penultimate_layer(digits) == "features"
    assert penultimate_layer(lite0) == "_dropout"
    with pytest.raises(ConvscopeError, match="no final linear layer"):
        penultimate_layer(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))


def test_codes_equal_the_classifier_input_and_cluster_in_2d(digits, tmp_path):
    before = snapshot(digits.net)
    codes = extract_codes(digits, "digits", tmp_path, progress=False)
    assert_unchanged(before, digits.net)
    dataset = Digits()
    x = torch.stack([dataset.read(i) for i in range(len(dataset))])
    with torch.no_grad():
        expected = digits.net.features(digits.normalize(x))
    np.testing.assert_allclose(codes.codes, expected.numpy(), atol=1e-5)
    assert codes.indices.tolist() == list(range(1797))
    assert codes.labels.tolist() == [dataset.label(i) for i in range(1797)]
    points = embed_2d(codes.codes, "tsne")
    accuracy = knn_accuracy(points, codes.labels)
    assert accuracy >= 0.9, accuracy
    assert knn_accuracy(np.random.default_rng(0).normal(size=points.shape), codes.labels) < 0.3  # no clusters


class _ViewNet(torch.nn.Module):
    """Two convs -> ``.view`` -> linear on 8x8 grey digits: it cannot take channels-last activations."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 4, 3)
        self.fc = torch.nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        y = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(y.view(y.size(0), -1))


def test_a_network_flattening_with_view_gets_its_codes(tmp_path):
    model = cs.Model(_ViewNet(), name="view-net", input_size=(8, 8), mean=(0.0,), std=(1.0,), channels=1)
    before = snapshot(model.net)
    codes = extract_codes(model, Digits(24), tmp_path, layer="fc", progress=False)  # read after the .view
    assert_unchanged(before, model.net)
    x = torch.stack([Digits(24).read(i) for i in range(24)])
    with torch.no_grad():
        expected = model.net(x)
    np.testing.assert_allclose(codes.codes, expected.numpy(), atol=1e-5)


def test_codes_of_any_layer_are_pooled(digits, tmp_path):
    codes = extract_codes(digits, Digits(40), tmp_path, layer="features.3", progress=False)
    x = torch.stack([Digits().read(i) for i in range(40)])
    with torch.no_grad():
        maps = capture(digits, digits.net, x, ["features.3"])["features.3"]
    np.testing.assert_allclose(codes.codes, maps.mean(dim=(2, 3)).numpy(), atol=1e-5)


def test_knn_accuracy_by_hand():
    points = np.array([[0.0], [1], [2], [10], [11], [12.5]])
    assert knn_accuracy(points, np.array([0, 0, 0, 1, 1, 1]), k=2) == 1.0
    assert knn_accuracy(points, np.array([0, 0, 1, 1, 1, 1]), k=1) == pytest.approx(5 / 6)  # point 1's neighbour is 0


def test_grid_cells_are_the_cheapest_assignment():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(4, 2))
    cells = grid_cells(points, side=2)
    assert len({tuple(c) for c in cells}) == 4
    scaled = (points - points.min(0)) / (points.max(0) - points.min(0))
    centers = {(r, c): np.array([(c + 0.5) / 2, (1 - r + 0.5) / 2]) for r in range(2) for c in range(2)}
    cost = lambda order: sum(((scaled[i] - centers[cell]) ** 2).sum() for i, cell in enumerate(order))  # noqa: E731
    best = min(itertools.permutations(centers), key=cost)
    assert cost([tuple(c) for c in cells]) == pytest.approx(cost(best))


def test_grid_picture_has_one_tile_per_cell():
    dataset = Digits()
    points = np.random.default_rng(0).normal(size=(10, 2))
    shown = grid_picture(dataset, list(range(10)), points, tile=8)
    assert shown.numbers["side"] == 4 and shown.array.shape == (4 * 9 + 1, 4 * 9 + 1, 3)


def test_unknown_method_and_too_few_points():
    with pytest.raises(ConvscopeError, match="closest: umap"):
        embed_2d(np.zeros((10, 2)), "uamp")
    with pytest.raises(ConvscopeError, match="too few"):
        embed_2d(np.zeros((3, 2)))


def test_merge_top_keeps_best_values_then_smallest_images():
    first = {"values": np.array([[5.0, 1.0]]), "images": np.array([[7, 3]]), "units": np.array([[0, 1]])}
    second = {"values": np.array([[5.0, -np.inf]]), "images": np.array([[2, -1]]), "units": np.array([[9, 0]])}
    merged = merge_top(first, second, 3)
    assert merged["images"].tolist() == [[2, 7, 3]] and merged["units"].tolist() == [[9, 0, 1]]


def _brute_force(model, dataset, layer, k):
    x = torch.stack([dataset.read(i) for i in range(len(dataset))])
    with torch.no_grad():
        maps = capture(model, model.net, x, [layer])[layer]
    values, units = maps.flatten(2).max(2)  # (N, C)
    order = torch.stack([torch.tensor(sorted(range(len(x)), key=lambda i: (-values[i, c].item(), i))[:k])
                         for c in range(values.shape[1])])
    return x, maps, values.T.gather(1, order), order, units.T.gather(1, order)


def test_top_k_equals_brute_force_and_patches_are_receptive_field_crops(digits, tmp_path):
    dataset = Digits(300)
    top = top_activations(digits, dataset, tmp_path, layer="features.5", k=4, chunk_size=64, batch_size=5,
                          progress=False)
    x, maps, values, images, units = _brute_force(digits, dataset, "features.5", 4)
    assert np.array_equal(top.images, images.numpy())
    np.testing.assert_allclose(top.values, values.numpy(), atol=1e-5)
    width = maps.shape[-1]
    assert np.array_equal(top.units[..., 0] * width + top.units[..., 1], units.numpy())
    field = receptive_field(digits, "features.5")
    for channel, rank in [(0, 0), (7, 3), (31, 1)]:
        y, x_ = (int(v) for v in top.units[channel, rank])
        top_, left, bottom, right = field.box(y, x_)
        box = (max(top_, 0), max(left, 0), min(bottom, 7), min(right, 7))  # clipped to the 8x8 image
        image = x[top.images[channel, rank]].expand(3, -1, -1)
        assert torch.equal(top.patch(dataset, channel, rank), image[:, box[0]:box[2] + 1, box[1]:box[3] + 1])
        assert top.box(channel, rank) == box
        assert gradient_support(digits, "features.5", (y, x_)) == box  # the analytic field is the true one


def test_top_k_of_chosen_channels_saves_an_index_the_explorer_reads(lite0, tmp_path):
    dataset = open_dataset("photos:12")
    before = snapshot(lite0.net)
    top = top_activations(lite0, dataset, tmp_path, layer="_blocks.3", channels=[5, 2], k=3, chunk_size=5,
                          progress=False)
    assert_unchanged(before, lite0.net)
    x, _, values, images, _ = _brute_force(lite0, _Fitted(dataset, 224), "_blocks.3", 3)
    assert top.channels.tolist() == [2, 5]
    assert np.array_equal(top.images, images[[2, 5]].numpy())
    np.testing.assert_allclose(top.values, values[[2, 5]].numpy(), rtol=1e-4, atol=1e-4)
    top.save(tmp_path, dataset, model="lite0")
    again = load_top_activations(tmp_path)
    assert np.array_equal(again.images, top.images) and again.field == top.field and again.layer == "_blocks.3"
    shown = top.picture(dataset, 5)
    assert shown.numbers["images"] == top.images[1].tolist() and shown.array.std() > 0.05
    assert (tmp_path / "channels" / "0005.png").is_file()


class _Fitted:
    """A dataset's images fitted to the model's input size, as the loader gives them."""

    def __init__(self, dataset, size):
        self.dataset, self.size = dataset, size

    def __len__(self):
        return len(self.dataset)

    def read(self, index):
        from convscope.core.images import fit
        return fit(self.dataset.read(index)[None], self.size)[0]


def test_top_activation_mistakes(digits, tmp_path):
    with pytest.raises(ConvscopeError, match="out of range"):
        top_activations(digits, "digits", tmp_path, layer="features.5", channels=[99], progress=False)
    with pytest.raises(ConvscopeError, match="unknown layer"):
        top_activations(digits, "digits", tmp_path, layer="featurs.5", progress=False)


def test_channels_last_leaves_the_model_exactly_as_it_was(lite0):
    before = snapshot(lite0.net)
    strides = {name: p.stride() for name, p in lite0.net.named_parameters()}
    with channels_last(lite0.net):
        assert lite0.net._conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert_unchanged(before, lite0.net)
    assert strides == {name: p.stride() for name, p in lite0.net.named_parameters()}


def test_several_layers_in_one_pass_equal_one_layer_at_a_time(digits, tmp_path):
    layers = ["features.1", "features.5", "features"]
    together = top_activations_of(digits, Digits(200), tmp_path / "all", layers=layers, k=3, progress=False)
    for layer in layers:
        alone = top_activations(digits, Digits(200), tmp_path / layer, layer=layer, k=3, progress=False)
        assert np.array_equal(together[layer].images, alone.images) and np.array_equal(together[layer].units,
                                                                                         alone.units)
        assert together[layer].field == alone.field
    assert together["features"].field.whole and together["features"].values.shape == (64, 3)
