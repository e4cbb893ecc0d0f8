"""The base of convscope's aten-level tracers (receptive fields, incremental inference)."""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode


class EagerTracer(TorchDispatchMode):
    """A dispatch mode that only ever sees eager code.

    PyTorch wraps every ``__torch_dispatch__`` so that torch.compile skips it, which imports
    ``torch._dynamo`` on the first traced op: 1.2-1.5 s once per process, a third of a one-off
    occlusion map on a 2-core CPU. convscope's tracers record plain forward passes, so they opt out.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False
