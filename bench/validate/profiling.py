"""GPU: what one call launches, from the PyTorch profiler (CUPTI): the kernel count the overhead term uses and the
kernels' device time by kind (GEMMs, attention, other), a diagnostic beside the prediction."""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..target import Target

# Kernel names by kind: cuBLAS / cuBLASLt (gemv*, *gemm*, sm90_xmma*, nvjet*, splitKreduce), CUTLASS (grouped GEMM),
# and this project's decode-attention kernels (kernels/decode_attention.py). Everything else (norms, rotary,
# cache writes, routing, sampling, copies) is "other".
MATMUL_NAMES = ("gemm", "gemv", "xmma", "nvjet", "cutlass", "splitk", "matmul", "cublas")
ATTENTION_NAMES = ("_decode_stage",)


@dataclass
class KernelProfile:
    """What one call launched on the device: how many activities (kernels, copies, memsets; a captured graph
    replays the same ones) and their device time by kind."""

    count: int
    busy_s: float
    matmul_s: float
    attention_s: float

    def times(self) -> dict[str, float]:
        return {"kernels": self.busy_s, "matmul": self.matmul_s, "attention": self.attention_s,
                "other": max(0.0, self.busy_s - self.matmul_s - self.attention_s)}


def profile_kernels(target: Target, fn: Callable[[], object]) -> KernelProfile | None:
    """GPU: one call of ``fn`` under the PyTorch profiler. None when the profiler is unavailable (or on a CPU)."""
    if not target.is_cuda:
        return None
    # Kineto tears CUPTI down after each profiler run and sets it up again for the next; with CUDA graphs captured in
    # between, that re-initialisation has crashed processes (PyTorch's torch/profiler/profiler.py keeps CUPTI up
    # when it profiles graphs for the same reason). One set-up for the whole validation: also cheaper per point.
    os.environ.setdefault("TEARDOWN_CUPTI", "0")
    try:
        from torch.profiler import ProfilerActivity, profile

        target.synchronize()
        with warnings.catch_warnings():  # the profiler's notices are not the user's business here
            warnings.simplefilter("ignore")
            with profile(activities=[ProfilerActivity.CUDA]) as profiler:
                fn()
                target.synchronize()
        events = [e for e in profiler.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    except Exception:  # no CUPTI, a profiler already running, ...: the census stands in
        return None
    if not events:
        return None
    busy = mm = attn = 0.0
    for e in events:
        try:
            dt = max(0.0, float(e.time_range.elapsed_us())) * 1e-6
        except Exception:  # an event without a time range: counted, not timed
            dt = 0.0
        name = str(getattr(e, "name", "")).lower()
        busy += dt
        if any(k in name for k in ATTENTION_NAMES):
            attn += dt
        elif any(k in name for k in MATMUL_NAMES):
            mm += dt
    return KernelProfile(count=len(events), busy_s=busy, matmul_s=mm, attention_s=attn)


def count_kernels(target: Target, fn: Callable[[], object]) -> int | None:
    """GPU: device activities (kernels, copies, memsets) one call of ``fn`` launches; None without a profiler."""
    kp = profile_kernels(target, fn)
    return kp.count if kp is not None else None
