"""Your own network from the command line: ``--model package.module:factory[=weights.pth]``.

Named the way ``uvicorn`` names an app: the module is imported (the current folder first on the
path), and ``factory`` is called with no arguments; it returns an ``nn.Module`` or a
:class:`~convscope.models.Model` (with its input size, normalization, labels, output and task).
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

from torch import nn

from convscope.errors import ConvscopeError, shorten
from convscope.models.model import Model, as_model

#: ``package.module:attribute`` (no file suffix, no prefix of a built-in source).
PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_factory(name: str) -> bool:
    return bool(PATTERN.match(name)) and not name.startswith(("torchvision:", "timm:"))


def build_from_factory(name: str) -> Model:
    """Imports ``module`` and calls ``module.factory()``.

    Raises:
        ConvscopeError: the module or attribute is missing, the call fails, or it returns no network.
    """
    module_name, _, attribute = name.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConvscopeError(f"--model {shorten(name)}: cannot import {module_name} ({shorten(str(error))})") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ConvscopeError(f"--model {shorten(name)}: {module_name} has no callable {attribute}")
    try:
        made = factory()
    except Exception as error:  # the user's code
        raise ConvscopeError(f"--model {shorten(name)}: {attribute}() raised {type(error).__name__}: "
                             f"{shorten(str(error))}") from None
    if not isinstance(made, (nn.Module, Model)):
        raise ConvscopeError(f"--model {shorten(name)}: {attribute}() returned a {type(made).__name__}; "
                             f"accepted: a torch.nn.Module or a convscope Model")
    model = as_model(made)
    if not isinstance(made, Model):
        model.name = attribute
    return model
