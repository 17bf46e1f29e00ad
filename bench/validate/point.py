"""One point of the grid: build its cache, check the step against float64, then time it (a CUDA graph replay on
GPU, its kernels counted by the profiler)."""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .. import checks
from ..registry import RunContext
from ..timing import L2Flusher, Timing
from .check import REFERENCE_SCRATCH_BYTES, REFERENCE_VOCAB_ROWS, TOLERANCE, Reference, check_step, reference
from .profiling import profile_kernels
from .transformer import DecodeState, Transformer


@dataclass
class PointResult:
    status: str  # "ok" or "failed"
    reason: str = ""
    timing: Timing | None = None
    graphs: bool = False
    check_rel_err: float | None = None
    check_tol: float | None = None
    kernels: int | None = None  # GPU: kernels (and copies) one step launches, counted by the profiler
    kernel_times: dict[str, float] | None = None  # GPU: device time of those kernels by kind (KernelProfile)
    notes: list[str] = field(default_factory=list)


# Calls of the step's timing (the warm-up is call 0) before which ``sample`` re-measures the rates, and once more
# after the last: with the usual 1 + 5 calls, A W B A B B A B B A, so that the rates and the step see the same
# minutes of a shared machine rather than the rates only its edges.
SAMPLE_BEFORE_CALLS = (0, 2, 4)


def measure_point(ctx: RunContext, net: Transformer, batch: int, context: int, seed: int,
                  sample: Callable[[DecodeState], object] | None = None) -> PointResult:
    """Build the point's cache, check the step against float64, then time it (a CUDA graph replay on GPU).
    ``sample``: called with the point's state between the step's repetitions (SAMPLE_BEFORE_CALLS) and after the
    last, outside the timed calls (the CPU's interleaved re-measurement of the rates the prediction reads,
    bench/validate/rates.py)."""
    t = ctx.target
    on_gpu = t.is_cuda
    gen = checks.generator(t.torch_device, seed)
    st = net.new_state(batch, context, gen)
    if on_gpu:
        net.attention_setup(st, t.compute_units)
    tol = TOLERANCE[net.dtype_name]
    net.step(st, on_gpu)  # warm-up: JIT, autotune, allocator, BLAS handles
    net.poison_buffers(st)  # the buffers our own kernel writes: an element it skips cannot pass
    net.step(st, on_gpu)
    rows = torch.randperm(net.spec.vocab, generator=gen, device=t.torch_device)[:REFERENCE_VOCAB_ROWS]
    ref = reference(net, st, list(net.routes), rows, REFERENCE_SCRATCH_BYTES[t.backend])
    chk = check_step(st, ref, tol)
    if ref.problem:
        return PointResult("failed", reason=ref.problem, check_rel_err=chk.rel_err, check_tol=tol)
    if not chk.passed:
        return PointResult("failed", reason=f"check failed: {chk.detail}", check_rel_err=chk.rel_err, check_tol=tol)
    res = PointResult("ok", check_rel_err=chk.rel_err, check_tol=tol)
    fn: Callable[[], object] = lambda: net.step(st, on_gpu)  # noqa: E731
    if on_gpu:
        kp = profile_kernels(t, fn)
        if kp is None:
            res.notes.append("the profiler could not count the step's kernels: the overhead term uses the census")
        else:
            res.kernels, res.kernel_times = kp.count, kp.times()
        graph = capture_graph(net, st, ref, tol)
        if isinstance(graph, str):
            res.notes.append(f"CUDA graph not used ({graph}): eager steps timed")
        else:
            fn, res.graphs = graph.replay, True
    del ref
    before_each: Callable[[], object] | None = L2Flusher(t) if on_gpu else None
    if sample is not None:
        calls = itertools.count()

        def between() -> None:
            if next(calls) in SAMPLE_BEFORE_CALLS:
                sample(st)

        before_each = between
    res.timing = ctx.time(fn, before_each=before_each, warmup=1)  # warmed up above (check, capture)
    if sample is not None:
        sample(st)
    return res


def capture_graph(net: Transformer, st: DecodeState, ref: Reference, tol: float) -> torch.cuda.CUDAGraph | str:
    """Capture the step in a CUDA graph (warm-up on a side stream first, as torch requires) and check one replay
    against the reference. Returns the graph, or why not."""
    if not net.grouped and net.has_moe:
        return "the per-expert MoE loop reads the expert counts on the host"
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            net.step(st, True)
            net.step(st, True)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            net.step(st, True)
        # the graph's outputs are the tensors allocated during capture: st.out now holds them
        net.poison_buffers(st)
        out = st.out
        if out is None:
            return "the captured step left no outputs"
        for tensor in [out.logits, out.hidden, *out.parts.values()]:
            checks.poison(tensor)
        graph.replay()
        chk = check_step(st, ref, tol, "graph replay")
        if not chk.passed:
            return f"the replay failed its check: {chk.detail}"
    except Exception as e:  # a capture problem must not lose the eager number
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    return graph
