"""convscope's tracers run eagerly and must not pull in torch.compile's machinery (seconds to import)."""

import subprocess
import sys

TRACE_THEN_CONTROL = """
import sys, torch
from torch.utils._python_dispatch import TorchDispatchMode
import convscope as cs
from convscope.core.incremental import IncrementalInference

net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
x = torch.rand(1, 3, 16, 16)
out = IncrementalInference(net, x)(torch.tensor([2]), torch.tensor([3]), torch.zeros(1, 3, 4, 4))
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
