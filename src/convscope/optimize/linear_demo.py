"""The linear explanation of adversarial examples (Goodfellow, Shlens, Szegedy 2015).

A linear score ``w . x`` changes by ``eps * |w|_1`` when every pixel moves by ``eps`` in the
direction of ``sign(w)``: many tiny changes add up, and more so the more pixels there are. So a
plain softmax regression is fooled just like a deep network, and its adversarial perturbation is
visibly its weight template. This module trains that regression on scikit-learn's digits and
measures accuracy against ``eps`` for it and for the bundled digits CNN, with the same FGSM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from convscope.core.render import Picture, figure_picture
from convscope.models.digits import DIGITS_MEAN, DIGITS_STD, digits_dataset, split
from convscope.models.labels import Labels
from convscope.models.model import Model
from convscope.models.registry import load_model
from convscope.optimize.adversarial import fgsm

EPSILONS = tuple(k / 255 for k in (0, 4, 8, 12, 16, 24, 32, 48, 64))


def softmax_regression(images: torch.Tensor, labels: torch.Tensor, *, weight_decay: float = 1e-3) -> Model:
    """A linear classifier ``(B, 1, 8, 8) -> (B, 10)`` fitted by L-BFGS on cross-entropy."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(images[0].numel(), 10))
    model = Model(net, "softmax regression", tuple(images.shape[-2:]), DIGITS_MEAN, DIGITS_STD,
                  Labels.numbered(10), channels=1)
    optimizer = torch.optim.LBFGS(net.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels) + weight_decay * net[1].weight.pow(2).sum()
        loss.backward()
        return loss
    optimizer.step(closure)
    return model.to("cpu")


@dataclass
class LinearDemo:
    """Accuracy under FGSM for the linear model and the CNN, and the linear perturbation.

    Attributes:
        epsilons: the budgets; linear, cnn: test accuracy at each; example: ``(1, 8, 8)`` a test
        digit; perturbation: ``(1, 8, 8)`` its FGSM change on the linear model; template:
        ``(1, 8, 8)`` the linear weights of the digit's class.
    """

    epsilons: list[float]
    linear: list[float]
    cnn: list[float]
    example: torch.Tensor
    perturbation: torch.Tensor
    template: torch.Tensor

    def picture(self) -> Picture:
        """Accuracy against eps for both models, and digit | perturbation | weight template."""
        import matplotlib.pyplot as plt

        figure = plt.figure(figsize=(9, 3.2))
        axes = figure.add_subplot(1, 2, 1)
        axes.plot([255 * e for e in self.epsilons], self.linear, "o-", label="softmax regression")
        axes.plot([255 * e for e in self.epsilons], self.cnn, "s-", label="digits CNN")
        axes.set(xlabel="eps (x 1/255)", ylabel="test accuracy under FGSM", ylim=(0, 1))
        axes.legend()
        for k, (title, tile) in enumerate((("digit", self.example), ("FGSM change (linear)", self.perturbation),
                                           ("its class's weights", self.template))):
            ax = figure.add_subplot(1, 6, 4 + k)
            ax.imshow(tile[0].numpy(), cmap="gray" if k == 0 else "RdBu_r")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        figure.tight_layout()
        return figure_picture(figure, "FGSM on a linear model and on the digits CNN: accuracy "
                              + ", ".join(f"{255 * e:.0f}/255: {a:.2f} vs {c:.2f}"
                                          for e, a, c in zip(self.epsilons, self.linear, self.cnn)))


def linear_demo(epsilons: Sequence[float] = EPSILONS) -> LinearDemo:
    """Trains the softmax regression and runs FGSM at each eps on the test digits."""
    images, labels = digits_dataset()
    train, test = split(len(images))
    linear = softmax_regression(images[train], labels[train])
    cnn = load_model("digits_cnn", device="cpu")
    accuracy = {name: [_accuracy(model, images[test], labels[test], eps) for eps in epsilons]
                for name, model in (("linear", linear), ("cnn", cnn))}
    example = images[test][:1]
    change = fgsm(linear, example, eps=0.1).perturbation[0]
    template = linear.net[1].weight[int(labels[test][0])].detach().view(1, 8, 8)
    return LinearDemo(list(epsilons), accuracy["linear"], accuracy["cnn"], example[0], change, template)


def _accuracy(model: Model, images: torch.Tensor, labels: torch.Tensor, eps: float) -> float:
    adversarial = fgsm(model, images, eps=eps).adversarial if eps > 0 else images
    with torch.no_grad():
        return float((model(adversarial).argmax(-1) == labels).float().mean())
