"""convscope's tracers must not pull in torch.compile's machinery (seconds to import), yet still trace
a compiled model."""

import subprocess
import sys

import torch

import convscope as cs
from convscope.core.incremental import IncrementalInference

TRACE_THEN_CONTROL = """
import sys, torch
from torch.utils._python_dispatch import TorchDispatchMode
import convscope as cs
from convscope.core.incremental import IncrementalInference

net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
x = torch.rand(1, 3, 16, 16)
IncrementalInference(net, x)(torch.tensor([2]), torch.tensor([3]), torch.zeros(1, 3, 4, 4))
cs.list_layers(net, size=(16, 16))
print("torch._dynamo" in sys.modules)

class Plain(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))

with Plain():
    net(x)
print("torch._dynamo" in sys.modules)
"""


def test_tracers_do_not_import_dynamo():
    result = subprocess.run([sys.executable, "-c", TRACE_THEN_CONTROL], capture_output=True, text=True, check=True)
    ours, plain = result.stdout.split()
    assert ours == "False"
    assert plain == "True"  # the control: an ordinary dispatch mode does import it


def test_compiled_model_is_traced_exactly():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 2, 3, stride=2, padding=1)).eval()
    compiled = torch.compile(net, backend="eager")
    x = torch.rand(1, 3, 16, 16)
    occluded = x.clone()
    occluded[:, :, 2:6, 3:7] = 0.5
    with torch.no_grad():
        engine = IncrementalInference(compiled, x)
        replayed = engine(torch.tensor([2]), torch.tensor([3]), torch.full((1, 3, 4, 4), 0.5))
        assert torch.allclose(replayed, net(occluded), atol=1e-6)
    sizes = [info.receptive_field.size for info in cs.list_layers(compiled, size=(16, 16))]
    assert sizes == [(3, 3), (3, 3), (5, 5), (5, 5)]  # conv 3x3, its ReLU, a 3x3 conv over that (3 + 2), the whole
