"""Tour section: adversarial examples (FGSM, targeted PGD, Carlini-Wagner, DeepFool), fooling
images from noise and as patterns, and the linear explanation on the digits."""

from __future__ import annotations

from convscope.optimize.adversarial import attack
from convscope.optimize.fooling import fool
from convscope.optimize.linear_demo import linear_demo
from convscope.samples import sample_image
from convscope.tour.optimize_shots import _classes
from convscope.tour.runner import Shot, TourContext

SECTION = "Adversarial examples"


def adversarial_shots(context: TourContext) -> list[Shot]:
    model, full = context.model, context.full
    cat = sample_image("cat", size=model.input_size)
    coffee = sample_image("coffee", size=model.input_size)
    classes = _classes(model)
    searches = 5 if full else 2
    runs = [("FGSM, 2/255 (cat)", cat, dict(method="fgsm", eps=2 / 255)),
            (f"Targeted PGD, 8/255: cat to {classes[0]}", cat,
             dict(method="pgd", eps=8 / 255, alpha=1 / 255, steps=20, target=classes[0])),
            (f"Carlini-Wagner L2: cat to {classes[1]}", cat,
             dict(method="cw", target=classes[1], steps=100 if full else 40, searches=searches)),
            ("DeepFool (coffee)", coffee, dict(method="deepfool", steps=20, candidates=4))]
    shots = [Shot(SECTION, title, lambda x=x, options=options: attack(model, x, **options).picture(model))
             for title, x, options in runs]
    shots.append(Shot(SECTION, "Fooling images from noise", lambda: fool(model, classes).picture()))
    shots.append(Shot(SECTION, "Fooling images as patterns", lambda: fool(model, classes, pattern=True).picture()))
    shots.append(Shot(SECTION, "The linear explanation (digits)", lambda: linear_demo().picture()))
    return shots
