"""Attacks, fooling images and the linear demo: budgets, 8-bit survival, success rates, and
agreement with torchattacks (FGSM, PGD) and with a hand-computed gradient (linear model)."""

import pytest
import torch
from torch import nn

import convscope as cs
from convscope.core.images import load_image
from convscope.core.render import picture
from convscope.errors import ConvscopeError
from convscope.inspect.predictions import probabilities
from convscope.models.digits import digits_dataset
from convscope.optimize.adversarial import LEVELS, attack, fgsm, pgd, quantize
from convscope.optimize.fooling import fool
from convscope.optimize.linear_demo import linear_demo, softmax_regression
from tests.conftest import assert_unchanged, snapshot

PHOTOS = ("cat", "coffee", "astronaut", "rocket")


@pytest.fixture(scope="module")
def photos(lite0):
    return torch.cat([cs.sample_image(name, size=lite0.input_size) for name in PHOTOS])


def on_grid(x: torch.Tensor) -> bool:
    return bool(((x * LEVELS) - (x * LEVELS).round()).abs().max() < 1e-4)


class Normalized(nn.Module):
    """model.net with the model's normalization in front, as torchattacks expects."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_and_pgd_equal_torchattacks(digits, targeted):
    import torchattacks  # a test dependency: pip install --no-deps torchattacks (it needs no torchvision here)
    images, _ = digits_dataset()
    x = quantize(images[:16])
    with torch.no_grad():
        labels = digits(x).argmax(-1)
    goal = (labels + 3) % 10
    wrapped = Normalized(digits).eval()
    for ours, theirs in ((fgsm(digits, x, eps=8 / 255, target=goal if targeted else None),
                          torchattacks.FGSM(wrapped, eps=8 / 255)),
                         (pgd(digits, x, eps=8 / 255, alpha=2 / 255, steps=10, target=goal if targeted else None),
                          torchattacks.PGD(wrapped, eps=8 / 255, alpha=2 / 255, steps=10, random_start=False))):
        if targeted:
            theirs.set_mode_targeted_by_label(quiet=True)
        reference = theirs(x, goal if targeted else labels)
        assert torch.allclose(ours.adversarial, reference, atol=1e-6), (ours.adversarial - reference).abs().max()


@pytest.mark.parametrize("method,options", [("fgsm", dict(eps=3 / 255)), ("pgd", dict(eps=2 / 255)),
                                            ("pgd", dict(eps=0.011)), ("pgd", dict(eps=1.5, norm="l2")),
                                            ("pgd", dict(eps=4 / 255, random_start=True))])
def test_budget_range_and_grid(lite0, photos, method, options):
    before = snapshot(lite0.net)
    result = attack(lite0, photos[:2], method, **options)
    assert_unchanged(before, lite0.net)
    eps = options["eps"]
    assert (result.l2 <= eps + 1e-6).all() if options.get("norm") == "l2" else (result.linf <= eps + 1e-6).all()
    assert 0 <= result.adversarial.min() and result.adversarial.max() <= 1
    assert on_grid(result.adversarial) and on_grid(result.original)


def test_untargeted_pgd_at_2_of_255_fools_every_photo_even_after_saving(lite0, photos, tmp_path):
    result = pgd(lite0, photos, eps=2 / 255, steps=10)
    assert result.success.float().mean() >= 0.9, result.success
    for i in range(len(photos)):  # the saved 8-bit PNG, read back the normal way, still fools
        path = picture(result.adversarial[i]).save(tmp_path / f"adv{i}.png")
        with torch.no_grad():
            predicted = lite0(load_image(path)).argmax(-1).item()
        assert (predicted != result.labels[i].item()) == bool(result.success[i])


def test_targeted_pgd_reaches_random_classes(lite0, photos):
    goals = torch.randint(0, 1000, (5,), generator=torch.Generator().manual_seed(0))
    x = photos.repeat_interleave(len(goals), 0)
    target = goals.repeat(len(photos))
    result = pgd(lite0, x, eps=8 / 255, alpha=1 / 255, steps=20, target=target)
    assert result.success.float().mean() >= 0.9, result.success
    assert (result.linf <= 8 / 255 + 1e-6).all()


@pytest.mark.parametrize("method", ["cw", "lbfgs"])
def test_minimal_attacks_reach_the_target_with_a_small_change(lite0, photos, method):
    before = snapshot(lite0.net)
    result = attack(lite0, photos[:1], method, target="goldfish", steps=20 if method == "lbfgs" else 40,
                    searches=2)
    assert_unchanged(before, lite0.net)
    assert bool(result.success[0]) and result.labels[0] != result.target[0]
    assert result.linf[0] <= 24 / 255 and result.l2[0] < 3.0
    with torch.no_grad():
        assert lite0(result.adversarial).argmax(-1).item() == lite0.labels.index("goldfish")


def test_deepfool_crosses_the_nearest_boundary(lite0, photos):
    result = attack(lite0, photos[:2], "deepfool", steps=20, candidates=4)
    assert result.success.all()
    strong = pgd(lite0, photos[:2], eps=2 / 255, steps=10)
    assert (result.l2 < strong.l2).all()  # minimal: smaller than a budget-filling PGD change


def test_targeted_only_and_untargeted_only_methods_say_so(lite0, photos):
    with pytest.raises(ConvscopeError, match="targeted attack"):
        attack(lite0, photos[:1], "cw")
    with pytest.raises(ConvscopeError, match="untargeted"):
        attack(lite0, photos[:1], "deepfool", target="goldfish")
    for method, options in (("pgd", {"steps": 0}), ("cw", {"steps": 0, "target": 1}), ("deepfool", {"steps": 0})):
        with pytest.raises(ConvscopeError, match="steps >= 1"):
            attack(lite0, photos[:1], method, **options)
    with pytest.raises(ConvscopeError, match="closest: fgsm"):
        attack(lite0, photos[:1], "fgsn")


def test_fooling_images_reach_99_5_percent(lite0):
    goals = torch.randint(0, 1000, (5,), generator=torch.Generator().manual_seed(1)).tolist()
    before = snapshot(lite0.net)
    result = fool(lite0, goals)
    assert_unchanged(before, lite0.net)
    assert on_grid(result.images)
    with torch.no_grad():
        confidence = probabilities(lite0, result.images).gather(1, torch.tensor(goals)[:, None])[:, 0]
    assert (confidence >= 0.995).all(), confidence


def test_linear_fgsm_is_the_sign_of_the_hand_computed_gradient():
    images, labels = digits_dataset()
    model = softmax_regression(images[:500], labels[:500])
    x = quantize(images[500:510])
    weight, bias = model.net[1].weight.detach(), model.net[1].bias.detach()
    with torch.no_grad():
        predicted = model(x).argmax(-1)
    flat = model.normalize(x).flatten(1)
    p = (flat @ weight.T + bias).softmax(-1)
    grad = (p - nn.functional.one_hot(predicted, 10)) @ weight  # d CE / d (normalized x)
    expected = (x + 4 / 255 * grad.sign().view_as(x)).clamp(0, 1)
    assert torch.allclose(fgsm(model, x, eps=4 / 255).adversarial, quantize(expected), atol=1e-6)


def test_linear_demo_linear_model_falls_faster_than_clean_accuracy():
    demo = linear_demo(epsilons=(0.0, 16 / 255, 48 / 255))
    assert demo.linear[0] > 0.9 and demo.cnn[0] > 0.9
    assert demo.linear[2] < 0.5 * demo.linear[0]
    assert demo.perturbation.shape == demo.template.shape == (1, 8, 8)


def test_chunked_attacks_equal_one_batch(digits):
    images, _ = digits_dataset()
    x = images[:20]
    goal = torch.arange(20) % 10
    whole = pgd(digits, x, eps=8 / 255, steps=5, target=goal, chunk_size=64)
    chunked = pgd(digits, x, eps=8 / 255, steps=5, target=goal, chunk_size=8)
    assert torch.equal(whole.adversarial, chunked.adversarial)
    assert torch.equal(whole.labels, chunked.labels) and torch.equal(whole.target, chunked.target)
    assert torch.equal(whole.success, chunked.success)


def test_pgd_reports_each_step_and_the_last_frame_is_the_result(digits):
    x = digits_dataset()[0][:3]
    frames = []
    result = pgd(digits, x, eps=8 / 255, steps=4, callback=lambda step, images: frames.append((step, images)))
    assert [step for step, _ in frames] == [1, 2, 3, 4]
    assert torch.allclose(frames[-1][1], result.adversarial.cpu(), atol=1e-6)  # the result is the last step, rounded
    assert not torch.equal(frames[0][1], frames[-1][1])
