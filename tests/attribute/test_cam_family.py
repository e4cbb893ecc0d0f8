"""The CAM family against pytorch-grad-cam 1.5.7 (a test dependency, installed --no-deps) and by hand."""

import numpy as np
import pytest
import torch
from torch import nn

import convscope as cs
from convscope.attribute.cam import class_activation_map
from convscope.core.objectives import class_logit
from tests.conftest import assert_unchanged, snapshot

grad_cam_library = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

REFERENCES = {"gradcam": "GradCAM", "hirescam": "HiResCAM", "xgradcam": "XGradCAM", "layercam": "LayerCAM",
              "scorecam": "ScoreCAM", "ablationcam": "AblationCAM", "gradcam++": "GradCAMPlusPlus"}


def spatial_head_net() -> nn.Sequential:
    """Conv features at the input's resolution and a linear head over every position, so that the
    gradient differs from place to place (a global pool would make several CAMs coincide)."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(5 * 8 * 8, 4)).eval()


def scaled(cam: torch.Tensor) -> np.ndarray:
    """pytorch-grad-cam's presentation: each map minus its minimum, divided by 1e-7 plus its maximum,
    once per layer and once more after averaging the layers (the 1e-7 shows on small maps)."""
    cam = cam.detach().double().numpy()
    for _ in range(2):
        cam = cam - cam.min(axis=(1, 2), keepdims=True)
        cam = cam / (1e-7 + cam.max(axis=(1, 2), keepdims=True))
    return cam


@pytest.mark.parametrize("method", list(REFERENCES))
def test_equals_pytorch_grad_cam(method):
    net = spatial_head_net()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    before = snapshot(net)
    ours = class_activation_map(net, x, class_logit(2), "3", method=method)
    assert_unchanged(before, net)
    with getattr(grad_cam_library, REFERENCES[method])(model=net, target_layers=[net[3]]) as reference:
        theirs = reference(input_tensor=x, targets=[ClassifierOutputTarget(2)] * 2)
    np.testing.assert_allclose(scaled(ours), theirs, atol=1e-4)


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_fused_layers_equal_pytorch_grad_cam_with_two_target_layers(method):
    net = spatial_head_net()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    ours = cs.saliency(net, x, 1, method=method, layer="1,3").raw
    with getattr(grad_cam_library, REFERENCES[method])(model=net, target_layers=[net[1], net[3]]) as reference:
        theirs = reference(input_tensor=x, targets=[ClassifierOutputTarget(1)] * 2)
    np.testing.assert_allclose(scaled(ours), theirs, atol=5e-4)  # they rescale the mean again; 1e-7 per layer shows
    assert not np.allclose(scaled(ours), scaled(class_activation_map(net, x, class_logit(1), "3", method=method)),
                           atol=1e-2)


def principal_by_hand(values: np.ndarray) -> np.ndarray:
    """Centred positions projected on the first right singular vector, ``(h, w)`` (sign as SVD gives it)."""
    rows = values.reshape(values.shape[0], -1).T
    rows = rows - rows.mean(0)
    return (rows @ np.linalg.svd(rows)[2][0]).reshape(values.shape[1:])


def test_eigen_cam_is_the_first_principal_component_with_the_sign_of_the_activations():
    """pytorch-grad-cam keeps the SVD's arbitrary sign (its maps are often inverted); ours points where
    the activations are large. Both equal the hand-computed projection up to that sign."""
    net = spatial_head_net()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    acts = net[:4](x).detach().double().numpy()
    ours = class_activation_map(net, x, class_logit(0), "3", method="eigencam").double().numpy()
    with grad_cam_library.EigenCAM(model=net, target_layers=[net[3]]) as reference:
        theirs = reference(input_tensor=x, targets=None)
    for image, mine, reference_map in zip(acts, ours, theirs):
        projection = principal_by_hand(image)
        sign = np.sign(np.corrcoef(projection.ravel(), image.sum(0).ravel())[0, 1])
        np.testing.assert_allclose(mine, np.maximum(sign * projection, 0), rtol=1e-4, atol=1e-6)
        candidates = [scaled(torch.from_numpy(np.maximum(s * projection, 0))[None])[0] for s in (1, -1)]
        assert min(np.abs(reference_map - c).max() for c in candidates) < 1e-4


def test_perturbation_cams_use_each_images_own_class():
    """A batch with a different class per image: Score-CAM's and Ablation-CAM's copies are evaluated
    for their own image's class (each image alone gives the same map)."""
    net = spatial_head_net()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    classes = torch.tensor([1, 3])
    for method in ("scorecam", "ablationcam"):
        together = class_activation_map(net, x, class_logit(classes), "3", method=method)
        alone = torch.cat([class_activation_map(net, x[i:i + 1], class_logit(int(c)), "3", method=method)
                           for i, c in enumerate(classes)])
        torch.testing.assert_close(together, alone)
