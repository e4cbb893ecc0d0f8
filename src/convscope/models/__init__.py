"""Where networks come from: the registry, the default model, files and other libraries."""

from convscope.models.labels import Labels as Labels
from convscope.models.labels import imagenet_labels as imagenet_labels
from convscope.models.model import Model as Model
from convscope.models.model import as_model as as_model
from convscope.models.registry import DEFAULT_MODEL as DEFAULT_MODEL
from convscope.models.registry import list_models as list_models
from convscope.models.registry import load_model as load_model
from convscope.models.registry import register_model as register_model
from convscope.models.registry import resolve_device as resolve_device

__all__ = ["DEFAULT_MODEL", "Labels", "Model", "as_model", "imagenet_labels", "list_models", "load_model",
           "register_model", "resolve_device"]
