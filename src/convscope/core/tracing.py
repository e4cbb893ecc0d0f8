"""The base of convscope's aten-level tracers (receptive fields, incremental inference)."""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode


class EagerTracer(TorchDispatchMode):
    """A dispatch mode whose ``__torch_dispatch__`` is plain Python, not shielded from torch.compile.

    PyTorch wraps every ``__torch_dispatch__`` so that torch.compile skips it, and that wrapper
    imports ``torch._dynamo`` on the first traced op: 1.2-1.5 s once per process (a one-off
    ``convscope occlusion`` took 6.5 s with it, 5.0 s without). convscope's tracers only record
    the ops they see, so they opt out; a torch.compile'd model is still traced op by op.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False


def arg(args: tuple, index: int, default):
    """A recorded op's positional argument ``index``, or ``default`` where the call left it out."""
    return args[index] if len(args) > index else default
