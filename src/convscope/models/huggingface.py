"""Hugging Face ``transformers`` image models by name: ``hf:ORG/NAME`` from the hub (into its own
cache, when online; offline, a cached copy or a one-line refusal), or ``hf:FOLDER`` saved with
``save_pretrained``. The class comes from the model's config (``architectures``), the input size,
mean and standard deviation from its preprocessor config, the class names from ``id2label``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from convscope.errors import ConvscopeError
from convscope.models.labels import Labels
from convscope.models.model import Model

PREFIX = "hf:"


def build(spec: str, random: bool = False) -> Model:
    """The model ``hf:NAME`` names (``random``: its architecture with random weights, seeded)."""
    transformers = _transformers()
    name = spec.removeprefix(PREFIX)
    local = Path(name).is_dir()
    try:
        config = transformers.AutoConfig.from_pretrained(name, local_files_only=local)
    except Exception as error:  # offline and not cached, a wrong name, a folder without config.json
        raise ConvscopeError(f"{spec}: no config found ({str(error).splitlines()[0][:100]}); online, hf:ORG/NAME "
                             "downloads it into the Hugging Face cache; offline, give a folder saved with "
                             "save_pretrained, hf:FOLDER") from None
    architecture = getattr(transformers, (config.architectures or ["AutoModelForImageClassification"])[0], None)
    if architecture is None:
        raise ConvscopeError(f"{spec}: transformers has no class {config.architectures[0]!r}; update transformers")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = architecture(config) if random else architecture.from_pretrained(
            name, local_files_only=local, use_kernels=False)  # hub kernels would be downloads of code
    mean, std, size = _preprocessing(name, config, local)
    names = [config.id2label[i] for i in sorted(config.id2label)] if getattr(config, "id2label", None) else []
    labels = Labels(tuple(names), tuple((n.lower(),) for n in names)) if names else None
    return Model(net.eval(), f"{spec} (random weights, untrained)" if random else spec, size, mean, std, labels)


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ConvscopeError("hf:NAME models need the optional package 'transformers' (pip install "
                             "transformers)") from None
    return transformers


def _preprocessing(name: str, config, local: bool) -> tuple[tuple, tuple, tuple[int, int]]:
    """Mean, standard deviation and input size: the preprocessor config's, else ImageNet's and the
    config's ``image_size`` (224 when it has none)."""
    from convscope.models.external import IMAGENET_MEAN, IMAGENET_STD  # here: external imports the registry

    settings = {}
    try:
        from transformers.utils import cached_file

        found = cached_file(name, "preprocessor_config.json", local_files_only=local,
                            _raise_exceptions_for_missing_entries=False)
        settings = json.loads(Path(found).read_text()) if found else {}
    except (OSError, ValueError):  # no preprocessor config, or not cached offline: the defaults below
        settings = {}
    side = getattr(config, "image_size", 224)
    size = settings.get("size") or {}
    if isinstance(size, dict) and "height" in size:
        side = (size["height"], size["width"])
    elif isinstance(size, dict) and "shortest_edge" in size:
        side = size["shortest_edge"]
    side = tuple(side) if isinstance(side, (list, tuple)) else (int(side), int(side))
    return (tuple(settings.get("image_mean", IMAGENET_MEAN)), tuple(settings.get("image_std", IMAGENET_STD)),
            side)
