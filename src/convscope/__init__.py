"""convscope: see inside convolutional networks.

>>> import convscope as cs
>>> model = cs.load_model()                              # EfficientNet-Lite0, ImageNet
>>> x = cs.load_image("cat.jpg", size=model.input_size)  # (1, 3, 224, 224) in [0, 1]
>>> cs.classify(model, x)[0][0].label
>>> cs.filters(model).grid()                             # first-layer kernels
>>> cs.activations(model, x, "_blocks.4").grid()         # a layer's maps, strongest first
>>> cs.saliency(model, x, method="gradcam").picture()    # what the top class looks at
"""

from convscope.attribute.saliency import saliency as saliency
from convscope.core.hooks import Probe as Probe
from convscope.core.hooks import capture as capture
from convscope.core.hooks import frozen as frozen
from convscope.core.images import load_image as load_image
from convscope.core.render import Picture as Picture
from convscope.core.summary import LayerInfo as LayerInfo
from convscope.core.summary import list_layers as list_layers
from convscope.errors import ConvscopeError as ConvscopeError
from convscope.inspect.activations import activations as activations
from convscope.inspect.filters import filters as filters
from convscope.inspect.predictions import classify as classify
from convscope.inspect.predictions import probabilities as probabilities
from convscope.models import Model as Model
from convscope.models import list_models as list_models
from convscope.models import load_model as load_model
from convscope.samples import sample_image as sample_image

__version__ = "0.1.0"
__all__ = ["ConvscopeError", "LayerInfo", "Model", "Picture", "Probe", "activations", "capture", "classify",
           "filters", "frozen", "list_layers", "list_models", "load_image", "load_model", "probabilities",
           "saliency", "sample_image"]
