"""The optimization objectives against hand-computed values."""

import pytest
import torch

from convscope.core.objectives import INPUT, diversity, feature_match, gram, gram_match, l2, layer_norm, total_variation


def test_layer_norm_is_mean_square():
    a = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]]]])
    assert layer_norm("x")({"x": a}).item() == pytest.approx((1 + 4 + 9 + 0) / 4)


def test_gram_equals_loop():
    a = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    expected = torch.zeros(2, 3, 3)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                expected[b, i, j] = (a[b, i] * a[b, j]).sum() / 20
    assert torch.allclose(gram(a), expected, atol=1e-6)
    assert gram_match("x", gram(a))({"x": a}).abs().max() == 0
    assert gram_match("x", gram(a))({"x": 2 * a})[0] == pytest.approx(-9.0)  # |4G - G|^2 / |G|^2


def test_feature_match_is_relative_distance():
    target = torch.tensor([[3.0, 4.0]])
    assert feature_match("x", target)({"x": torch.tensor([[3.0, 4.0]])}).item() == 0
    assert feature_match("x", target)({"x": torch.tensor([[0.0, 0.0]])}).item() == pytest.approx(-1.0)


def test_total_variation_by_hand():
    x = torch.tensor([[[[0.0, 1.0, 1.0], [0.0, 1.0, 1.0], [2.0, 2.0, 2.0]]]])
    # differences at the 4 top-left pixels: (dx, dy) = (1,0), (0,0), (1,2), (0,1)
    expected = (1 + 0 + 5 + 1) / 4
    assert -total_variation()({INPUT: x}).item() == pytest.approx(expected, rel=1e-5)
    assert -total_variation(beta=1)({INPUT: x}).item() == pytest.approx((1 + 0 + 5**0.5 + 1) / 4, rel=1e-4)


def test_l2_with_per_channel_center():
    x = torch.stack([torch.full((2, 2), v) for v in (0.1, 0.2, 0.3)])[None]
    assert l2(center=(0.1, 0.2, 0.3))({INPUT: x}).item() == pytest.approx(0, abs=1e-12)
    assert l2(center=0.0)({INPUT: x}).item() == pytest.approx(-(0.01 + 0.04 + 0.09) / 3)


def test_diversity_is_minus_one_for_copies_and_higher_for_different():
    a = torch.rand(1, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    same = diversity("x")({"x": a.expand(3, -1, -1, -1)})
    assert torch.allclose(same, torch.full((3,), -1.0), atol=1e-6)
    other = torch.rand(1, 4, 3, 3, generator=torch.Generator().manual_seed(2)) ** 4
    assert (diversity("x")({"x": torch.cat([a, other])}) > -1 + 1e-3).all()


def test_a_combination_of_per_example_objectives_selects_each_examples_part():
    import torch

    from convscope.core.objectives import OUTPUT, class_logit
    classes = torch.tensor([1, 3])
    combined = 2 * class_logit(classes) - class_logit(0) + 0.5
    logits = torch.arange(12.0).view(2, 6)
    alone = combined.example(1)({OUTPUT: logits[1:].expand(4, -1)})  # four copies of example 1
    torch.testing.assert_close(alone, (2 * logits[1, 3] - logits[1, 0] + 0.5).expand(4))
    torch.testing.assert_close(combined({OUTPUT: logits}), 2 * logits[[0, 1], [1, 3]] - logits[:, 0] + 0.5)


def test_direction_against_loops():
    from convscope.core.objectives import direction

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 4, 5, generator=generator)
    vector = torch.tensor([1.0, -2.0, 0.5])
    expected = torch.zeros(2)
    cos_expected = torch.zeros(2)
    for b in range(2):
        for y in range(4):
            for x in range(5):
                dot = float((a[b, :, y, x] * vector).sum())
                cosine = dot / float(a[b, :, y, x].norm() * vector.norm())
                expected[b] += dot / 20
                cos_expected[b] += dot * max(cosine, 0.1) / 20
    assert torch.allclose(direction("x", vector)({"x": a}), expected, atol=1e-5)
    assert torch.allclose(direction("x", vector, cossim_power=1)({"x": a}), cos_expected, atol=1e-5)
    per_example = torch.stack([vector, -vector])
    assert torch.allclose(direction("x", per_example)({"x": a}), expected * torch.tensor([1.0, -1.0]), atol=1e-5)
    maps = a[:1]  # a direction per position: the example itself scores its mean squared norm
    assert direction("x", maps)({"x": a})[0] == pytest.approx(float(a[0].pow(2).sum(0).mean()), rel=1e-5)


def test_diversity_compares_only_within_groups():
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(5, 3, 4, 4, generator=generator)
    groups = torch.tensor([-1, 0, 0, 1, 1])
    scores = diversity("x", groups)({"x": a})
    flat = torch.nn.functional.normalize(gram(a).flatten(1), dim=1)
    assert scores[0] == 0
    assert scores[1] == pytest.approx(-float(flat[1] @ flat[2]), rel=1e-5)
    assert scores[4] == pytest.approx(-float(flat[3] @ flat[4]), rel=1e-5)
    changed = a.clone()
    changed[3:] = torch.randn(2, 3, 4, 4, generator=generator)
    assert torch.equal(diversity("x", groups)({"x": changed})[:3], scores[:3])
    assert torch.allclose(diversity("x")({"x": a}), diversity("x", torch.zeros(5))({"x": a}))
