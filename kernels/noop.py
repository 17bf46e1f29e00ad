"""Kernels that do (almost) nothing, to measure what launching a kernel costs.

* ``triton_noop``: a one-program Triton kernel whose whole body is a single 4-byte store of a marker value.
  An empty body could not be checked at all; one store is below anything a launch (microseconds) can show,
  and it lets a check prove the kernel really ran (the marker is poisoned first).
* ``torch_tiny``: a tiny PyTorch elementwise op (``out = x + 1`` on a few hundred elements): the cost of an
  eager PyTorch op, dispatcher and launch included, with no work to speak of.

Pure functions: no timing, no I/O. The no-op has no configuration to tune, so CUDA and CPU tensors (the
latter only under the Triton interpreter) launch it the same way: one program, one warp on GPU.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

TINY_ELEMENTS = 257  # odd and small: an op with nothing to do but exist


@triton.jit
def _noop_kernel(marker, value):
    tl.store(marker, value)


def triton_noop(marker: torch.Tensor, value: int) -> torch.Tensor:
    """Launch the no-op kernel once: it writes ``value`` into ``marker[0]`` (an int32 tensor)."""
    if marker.dtype != torch.int32 or marker.numel() < 1:
        raise ValueError("marker must be an int32 tensor with at least one element")
    _noop_kernel[(1,)](marker, int(value), num_warps=1)
    return marker


def torch_tiny(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """One eager PyTorch op on a tiny tensor: ``out = x + 1``."""
    return torch.add(x, 1.0, out=out)


def torch_tiny_reference(x: torch.Tensor) -> torch.Tensor:
    return x.double() + 1.0
