"""The doctor's probes: short HBM, bf16 matmul and pinned host↔device measurements (GPU only). Each checks its
result before it times anything, and returns its numbers in a dict (``passed`` and ``detail`` say how the check
went)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

MATMUL_N = 8192  # the matmul probe's M = N = K
SUM_TOL = 1e-5  # the HBM probe's fp32 sum vs the float64 sum, relative to sum |x|

ProbeFn = Callable[[Any, bool], dict[str, Any]]


def probe_hbm(target: Any, quick: bool) -> dict[str, Any]:
    """torch copy_ and sum over a working set ≥ 16× L2 (≥ 1 GiB): bytes = read + written (copy 2N, read N)."""
    import torch

    from kernels import hbm as hbm_kernels

    from .. import checks
    from ..benchmarks.hbm import bytes_moved
    from ..timing import time_fn

    ws = max(1 << 30, 16 * int(target.cache_bytes or 0))
    if not quick:
        ws = max(ws, 2 << 30)
    if target.memory_bytes:
        ws = min(ws, int(target.memory_bytes) // 4)
    n = ws // 4 // 2  # fp32 elements of each copy array; the whole buffer is read
    dev = target.torch_device
    gen = checks.generator(dev, 9)
    buf = checks.random_tensor(2 * n, torch.float32, dev, gen, scale=0.5).add_(1.0)
    src, dst = buf[:n], buf[n:]
    # correct before fast: copy into a poisoned output, compare exactly; the sum against the float64 sum
    checks.poison(dst)
    hbm_kernels.torch_copy(src, dst)
    if not torch.equal(dst, src):
        return {"passed": False, "detail": "copy_ output differs from its input"}
    total = checks.compare_sum(float(hbm_kernels.torch_read(buf)), buf, SUM_TOL)
    if not total.passed:
        return {"passed": False, "detail": total.detail}
    min_t = 0.2 if quick else 0.6
    t_copy = time_fn(lambda: hbm_kernels.torch_copy(src, dst), target, min_time_s=min_t)
    t_read = time_fn(lambda: hbm_kernels.torch_read(buf), target, min_time_s=min_t)
    return {"passed": True, "copy_Bps": bytes_moved("copy", n, 4) / t_copy.median_s,
            "read_Bps": bytes_moved("read", 2 * n, 4) / t_read.median_s, "working_set_bytes": 2 * n * 4,
            "copy_spread": t_copy.spread, "read_spread": t_read.spread}


def probe_matmul(target: Any, quick: bool) -> dict[str, Any]:
    """torch.mm bf16 8192³ on random normal data, long enough to reach the power limit: FLOPs = 2·M·N·K.
    A and B (128 MiB each) are larger than any L2, so nothing is flushed."""
    import torch

    from .. import checks
    from ..timing import time_fn

    n = MATMUL_N
    dev = target.torch_device
    gen = checks.generator(dev, 11)
    a = checks.random_tensor((n, n), torch.bfloat16, dev, gen)
    b = checks.random_tensor((n, n), torch.bfloat16, dev, gen)
    c = checks.poison(torch.empty((n, n), dtype=torch.bfloat16, device=dev))
    torch.mm(a, b, out=c)
    rows = torch.randperm(n, generator=checks.generator("cpu", 12))[:32].to(dev)
    ref = a[rows].double() @ b.double()  # 32 rows in float64: every output column checked, cheaply
    chk = checks.compare(c[rows], ref, checks.tolerance("bfloat16"), "float64 rows of A @ B")
    del ref
    if not chk.passed:
        return {"passed": False, "detail": chk.detail}
    t = time_fn(lambda: torch.mm(a, b, out=c), target, min_time_s=0.4 if quick else 1.5)
    return {"passed": True, "flops": 2 * n ** 3 / t.median_s, "shape": f"{n}³", "spread": t.spread,
            "rel_err": chk.rel_err}


def probe_pcie(target: Any, quick: bool) -> dict[str, Any]:
    """Pinned host↔device copies of 256 MiB (128 in --quick), each direction alone: bytes = the buffer's
    size, counted once (what crosses the link, nvbandwidth's convention)."""
    import torch

    from .. import checks
    from ..timing import time_fn

    nbytes = (128 if quick else 256) * 2**20
    n = nbytes // 4
    host = checks.random_tensor(n, torch.float32, "cpu", checks.generator("cpu", 13)).pin_memory()
    back = torch.empty(n, dtype=torch.float32).pin_memory()
    devbuf = checks.poison(torch.empty(n, dtype=torch.float32, device=target.torch_device))
    devbuf.copy_(host, non_blocking=True)
    checks.poison(back)
    back.copy_(devbuf, non_blocking=True)
    target.synchronize()
    if not torch.equal(back, host):
        return {"passed": False, "detail": "data came back from the GPU changed"}
    min_t = 0.2 if quick else 0.5
    t_h2d = time_fn(lambda: devbuf.copy_(host, non_blocking=True), target, min_time_s=min_t)
    t_d2h = time_fn(lambda: back.copy_(devbuf, non_blocking=True), target, min_time_s=min_t)
    return {"passed": True, "h2d_Bps": nbytes / t_h2d.median_s, "d2h_Bps": nbytes / t_d2h.median_s,
            "size_bytes": nbytes}


PROBES: dict[str, ProbeFn] = {"hbm": probe_hbm, "matmul": probe_matmul, "pcie": probe_pcie}
