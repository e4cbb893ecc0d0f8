"""Architectures from torchvision and timm, when those optional libraries are installed.

Weights come from a state-dict file the user gives, or else from the library's own cache
(``torchvision`` / ``timm`` download into it when online; offline, a cached copy is used).
"""

from __future__ import annotations

import importlib

import torch

from convscope.errors import ConvscopeError, unknown_choice
from convscope.models.labels import Labels, imagenet_labels
from convscope.models.model import Model
from convscope.models.registry import with_weights

PREFIXES = ("torchvision:", "timm:")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


#: The weights "file" that asks for the architecture alone, randomly initialized (seed 0).
RANDOM = "random"


def build(spec: str, state: dict[str, torch.Tensor] | str | None) -> Model:
    """Builds ``torchvision:NAME`` or ``timm:NAME``, with ``state``, the library's weights, or, for
    ``state`` :data:`RANDOM`, random ones (seeded; for receptive fields, layer tables and teaching:
    the model's name says it is untrained)."""
    library, _, name = spec.partition(":")
    module = _import(library)
    random = isinstance(state, str) and state == RANDOM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        build_one = _torchvision if library == "torchvision" else _timm
        net = build_one(module, name, {} if random else state)
    net = with_weights(net, None if random else state, spec)
    mean, std, size = _preprocessing(net)
    classes = _classes(net)
    labels = imagenet_labels() if classes == 1000 else (Labels.numbered(classes) if classes else None)
    return Model(net, f"{spec} (random weights, untrained)" if random else spec, size, mean, std, labels)


def _import(library: str):
    try:
        return importlib.import_module("torchvision.models" if library == "torchvision" else "timm")
    except ImportError:
        raise ConvscopeError(f"{library}: models need the optional package {library!r} "
                             f"(pip install 'convscope[{library}]')") from None
    except Exception as error:  # installed, but its compiled part does not load (e.g. a CUDA-only wheel)
        raise ConvscopeError(f"{library}: the package is installed but does not import here "
                             f"({str(error).splitlines()[0][:120]}); install the build of torchvision that "
                             f"matches this torch ({torch.__version__})") from None


def _torchvision(models, name: str, state):
    return _create("torchvision", name, models.list_models(),
                   lambda: models.get_model(name, weights=None if state is not None else "DEFAULT"))


def _timm(timm, name: str, state):
    return _create("timm", name, timm.list_models(), lambda: timm.create_model(name, pretrained=state is None))


def _create(library: str, name: str, names: list[str], create):
    """Checks the name, then builds; a download that fails offline becomes a one-line error."""
    if name not in names:
        raise unknown_choice(f"{library} model", name, names)
    try:
        return create()
    except Exception as e:
        raise ConvscopeError(f"{library}:{name}: its weights are not in the local cache and cannot be "
                             f"downloaded here ({str(e).splitlines()[0][:100]}); pass a weights file "
                             f"as {library}:{name}=FILE, or {library}:{name}={RANDOM} for the "
                             f"architecture with random weights") from None


def _preprocessing(net) -> tuple[tuple, tuple, tuple[int, int]]:
    """timm models carry their own preprocessing; torchvision ones use ImageNet's."""
    config = getattr(net, "pretrained_cfg", None) or {}
    mean = tuple(config.get("mean", IMAGENET_MEAN))
    std = tuple(config.get("std", IMAGENET_STD))
    size = tuple(config.get("input_size", (3, 224, 224))[1:])
    return mean, std, size


def _classes(net) -> int | None:
    if isinstance(getattr(net, "num_classes", None), int):
        return net.num_classes
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    return linears[-1].out_features if linears else None
