"""Dense matmul FLOP/s per dtype: the compute ceiling of the roofline, and the efficiency by shape below it.

C = A @ B with A (M, K) row-major and B (K, N) the transpose of an nn.Linear weight, for fp32 (no TF32),
tf32, bf16, fp16 and fp8 e4m3, by the library (``torch.matmul``, ``torch._scaled_mm``) and the Triton
kernels of kernels/gemm.py. Families of points: ``square`` sizes, ``llm`` (every weight GEMM (N, K) of the
models of the run's ``models`` option, by default the ones ``rooflab validate`` runs, each swept over the
batch tokens M in one point: its weight is made once), ``mamf`` (the maximum-achievable-matmul search) and
``edge`` (odd shapes: the Triton kernel's masks, checked, never timed). Accounting: :func:`flop_count` and
:func:`bytes_moved`. L2 is flushed before every GPU repetition; on CPU small inputs are rotated. Peak per
dtype = the best median FLOP/s over every timed point of that dtype, with the shape and kernel that reached it.

How and why: docs/method.md ("gemm").
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from bench import checks, dtypes
from bench.measurement import Check, Measurement, TimingRecord, measured, not_measured, timed_records
from bench.registry import Benchmark, RunContext
from bench.timing import L2Flusher

# every matmul dtype rooflab measures, each by the library and by the Triton kernels
DTYPES = dtypes.MATMUL
CPU_DTYPES = ("float32", "bfloat16", "float16")  # what the CPU BLAS runs (no TF32, no fp8)
# M of the "llm" family (batch tokens of a decode step; tokens per expert of an expert GEMM), by sweep: every
# power of two, so the roofline model interpolates only between neighbouring measured M (a CPU BLAS's GEMV ->
# GEMM switch at M = 2 and its non-monotone small-M times sit between 1 and 8, docs/model.md)
LLM_M = {True: tuple(2**i for i in range(9)), False: tuple(2**i for i in range(14))}  # quick 1…256, full 1…8192
# CPU: the most FLOPs one llm call may take (quick, full). The quick value keeps every M a CPU validation reads
# (batch 16 at the largest LM head, 128256 x 4096: 16.8 GFLOP) and leaves out the larger M of the big shapes, which
# on 2 cores would take seconds per call; the CPU's quick run stays within 90 s (docs/method.md, "gemm")
CPU_MAX_CALL_FLOP = {True: 2**34, False: 2**38}
# CPU llm points: repetitions of a call (up to ~0.5 s at an LM head's larger M) after one warm-up call; the median of
# three is the point's time (docs/method.md, "gemm")
CPU_LLM_REPS = {"min_reps": 3, "warmup": 1}
CHECK_COLUMNS = 256  # llm points: output columns compared with the float64 reference (all must be written)
RANDOM_PERIOD = (1 << 22) + 1  # CPU: big operands tile a random block of this odd length (drawing GBs is slow)
# (M, N, K): odd M, N, K for the pointer kernel's masks; the last has K a multiple of 16 (TMA's 16-byte rows
# for every dtype, fp8 included), so on sm_90+ it checks the TMA variant's zero-filled edge tiles.
EDGE_SHAPES = ((67, 45, 93), (1, 70, 64), (33, 130, 17), (67, 45, 208))
# Fixed Triton configs for edge shapes on GPU: correctness of the masks without an autotune per odd shape.
EDGE_CONFIG = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 4, "num_warps": 4, "num_stages": 3}
EDGE_CONFIG_FP8 = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64, "GROUP_M": 4, "num_warps": 4, "num_stages": 3}
MAMF_H100_BEST = (6144, 17920, 2816)  # mamf-finder's best bf16 shape on H100: always part of the GPU search
FP32_EPS = 2.0**-23
MAX_ROTATION_SETS = 64

# Sizes per (device, sweep). GPU quick stays within ~2 minutes on an H100 including autotune.
_SQUARES = {
    ("cuda", True): (1024, 4096, 8192),
    ("cuda", False): (256, 512, 1024, 2048, 4096, 8192, 16384),
    ("cpu", True): (256, 1024, 2048),
    ("cpu", False): (256, 512, 1024, 2048, 4096),
}


def flop_count(M: int, N: int, K: int) -> int:
    """Floating-point operations of C = A @ B: each of the M·N outputs is a sum of K products, one multiply
    and one add per term, so 2·M·N·K."""
    return 2 * M * N * K


def bytes_moved(M: int, N: int, K: int, in_size: int, out_size: int) -> int:
    """The least bytes any kernel must move: A (M×K) and B (K×N) read once at the input size, C (M×N)
    written once at the output size (fp8: 1-byte inputs, a bf16 output). flop_count / bytes_moved is the
    shape's arithmetic intensity."""
    return (M * K + K * N) * in_size + M * N * out_size


def tolerance(dtype: str, K: int) -> float:
    """Allowed ‖C − ref‖ / ‖ref‖: the dtype's tolerance (bench.checks), widened for long sums.

    Every path accumulates in fp32; a sequential fp32 sum of K random terms has a relative error of about
    0.15·ε·√K (ε = 2^-23), which passes 1e-6 near K = 4096. The bound ½·ε·√K keeps a 3× margin over that,
    so a correct fp32 kernel with a long K still passes while any indexing error (O(1)) fails.
    """
    return max(checks.tolerance(dtype), 0.5 * FP32_EPS * math.sqrt(max(K, 1)))


def _cap(target) -> tuple[int, int]:
    return target.capability or (0, 0)


def torch_support(dtype: str, target) -> tuple[bool, str]:
    """Can the library path run ``dtype`` here? (False, reason) when not."""
    from kernels import gemm as kern

    if dtype == "float8_e4m3fn":
        ok, why = target.supports_fp8()
        return (ok, why) if not ok else kern.fp8_available()
    sm = "sm_" + "".join(map(str, _cap(target)))
    if dtype == "tf32":
        if not target.is_cuda:
            return False, "tf32 is a CUDA tensor-core mode (the CPU BLAS has none)"
        if _cap(target) < (8, 0):
            return False, f"tf32 needs compute capability >= 8.0 (this GPU is {sm})"
    if dtype == "bfloat16" and target.is_cuda and _cap(target) < (8, 0):
        return False, f"bfloat16 matmul needs compute capability >= 8.0 (this GPU is {sm})"
    return True, ""


def triton_support(dtype: str, target) -> tuple[bool, str]:
    if dtype == "float8_e4m3fn":
        if not target.is_cuda:
            return False, "the Triton fp8 kernel needs a CUDA GPU with TMA (sm_90+)"
        if _cap(target) < (9, 0):
            return False, "the Triton fp8 kernel uses TMA and fp8 wgmma: compute capability >= 9.0"
        return target.supports_fp8()
    if target.is_cuda and dtype in ("tf32", "bfloat16") and _cap(target) < (8, 0):
        return False, f"Triton {dtype} dot needs compute capability >= 8.0"
    return True, ""


def _library(dtype: str, on_gpu: bool) -> str:
    if not on_gpu:
        return "CPU BLAS (torch.matmul)"
    if dtype == "float8_e4m3fn":
        return "cuBLASLt (torch._scaled_mm, per-tensor scales, bf16 out)"
    if dtype == "tf32":
        return "cuBLAS TF32 (torch.matmul, allow_tf32)"
    return "cuBLAS (torch.matmul)"


def _flush_note(t) -> str:
    return f"L2 flushed before each rep (read {2 * t.cache_bytes / 2**20:.0f} MiB)"


def _footprint(M: int, N: int, K: int, dtype: str) -> int:
    """Device bytes a point needs: operands, output, and the float64 copies of the reference."""
    e = int(dtypes.bytes_per_element(dtype))
    return (M * K + K * N) * (e + 4 + 8) + M * N * (4 + 8 + 8)


def _llm_footprint(M: int, N: int, K: int, dtype: str) -> int:
    """Device bytes an llm point needs at its largest M: operands (and their fp32 draw), the output; its
    reference covers CHECK_COLUMNS columns only."""
    e = int(dtypes.bytes_per_element(dtype))
    return (M * K + K * N) * (e + 4) + M * N * 8


def model_shapes(specs: Sequence[Any]) -> dict[tuple[int, int], list[str]]:
    """(N, K) of every weight GEMM of the models (``ModelSpec.matmuls``, unsplit: one GPU), deduplicated, each with
    the GEMMs that have it, e.g. (6144, 4096) -> ["llama-3.1-8b qkv"]."""
    out: dict[tuple[int, int], list[str]] = {}
    for spec in specs:
        for mm in spec.matmuls():
            names = out.setdefault((int(mm.n), int(mm.k)), [])
            if f"{spec.name} {mm.name}" not in names:
                names.append(f"{spec.name} {mm.name}")
    return out


def llm_ms(target, quick: bool, N: int, K: int) -> list[int]:
    """The M an llm point of (N, K) sweeps: LLM_M, on the CPU up to CPU_MAX_CALL_FLOP per call."""
    ms = LLM_M[quick]
    if not target.is_cuda:
        ms = tuple(m for m in ms if flop_count(m, N, K) <= CPU_MAX_CALL_FLOP[quick]) or ms[:1]
    return list(ms)


def _point_ms(point: dict) -> list[int]:
    return [int(m) for m in str(point["Ms"]).split(",")] if "Ms" in point else [int(point["M"])]


def _random_operand(shape: tuple[int, int], dtype: torch.dtype, device: str, gen: torch.Generator,
                    scale: float) -> torch.Tensor:
    """Random normal values (never zeros); on the CPU an operand larger than RANDOM_PERIOD tiles one random block
    of that odd length (still random everywhere, and a shifted index cannot line up with it)."""
    n = shape[0] * shape[1]
    if device != "cpu" or n <= RANDOM_PERIOD:
        return checks.random_tensor(shape, dtype, device, gen, scale=scale)
    block = checks.random_tensor(RANDOM_PERIOD, dtype, device, gen, scale=scale)
    out = torch.empty(n, dtype=dtype, device=device)
    for lo in range(0, n, RANDOM_PERIOD):
        hi = min(n, lo + RANDOM_PERIOD)
        out[lo:hi] = block[: hi - lo]
    return out.view(shape)


def rotation_sets(target, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> tuple[list[tuple], str]:
    """Input sets to rotate through and the Measurement's cache note.

    GPU: one set, L2 flushed before each repetition. CPU: when a set is smaller than 2× the last-level cache,
    copies of it (distinct memory, same data, B kept column-major) are cycled so no repetition finds its inputs
    cached."""
    first = (a, b, out)
    if target.is_cuda:
        return [first], _flush_note(target)
    set_bytes = sum(x.numel() * x.element_size() for x in first)
    if set_bytes >= 2 * target.cache_bytes:
        return [first], f"inputs {set_bytes / target.cache_bytes:.1f}x LLC: not cached between reps"
    n = min(MAX_ROTATION_SETS, math.ceil(2 * target.cache_bytes / set_bytes))
    sets = [first] + [(a.clone(), b.t().clone().t(), torch.empty_like(out)) for _ in range(n - 1)]
    return sets, f"rotate {n} input sets ({n * set_bytes / target.cache_bytes:.1f}x LLC)"


class GemmBenchmark(Benchmark):
    name = "gemm"
    title = "Dense matmul FLOP/s (per dtype, shape sweep, maximum achievable)"

    # -- the sweep ------------------------------------------------------------------------------------
    def sweep(self, ctx: RunContext) -> list[dict]:
        t = ctx.target
        gpu, quick = t.is_cuda, ctx.quick
        squares = _SQUARES[(t.backend, quick)]
        pts: list[dict] = []

        def add(family, dtype, M, N, K, impls):
            if _footprint(M, N, K, dtype) > (t.memory_bytes or 1 << 62) // 2:
                return  # does not fit with its reference: left out (only on small devices)
            pts.append({"family": family, "dtype": dtype, "M": M, "N": N, "K": K, "impls": impls})

        torch_ok = {dt: torch_support(dt, t)[0] for dt in DTYPES}
        for dt in DTYPES:  # a dtype the device cannot run: one point, recorded as skipped with its reason
            if not torch_ok[dt]:
                both = dt in DTYPES and not triton_support(dt, t)[0]
                add("square", dt, squares[0], squares[0], squares[0], "torch,triton" if both else "torch")

        # Squares. Triton is timed on GPU only (on CPU the interpreter checks it on the edge shapes).
        tri_square = ("bfloat16", "float8_e4m3fn") if quick else DTYPES
        tri_ok = {dt: triton_support(dt, t)[0] for dt in DTYPES}
        for dt in DTYPES if gpu else CPU_DTYPES:
            if not torch_ok[dt]:
                continue
            sizes: Sequence[int] = squares
            if not gpu and dt != "float32":  # the CPU's 16-bit BLAS is slower: fewer, smaller sizes
                sizes = (1024,) if quick else [s for s in squares if s <= 2048]
            for s in sizes:
                add("square", dt, s, s, s, "torch,triton" if gpu and dt in tri_square and tri_ok[dt] else "torch")

        # The models' weight shapes over M (one point per (N, K, dtype)) and the MAMF search, library path (+ Triton
        # bf16 in full).
        if gpu:
            half = "bfloat16" if torch_ok["bfloat16"] else "float16"  # pre-Ampere: fp16 stands in
            big_dtypes = (half, "float8_e4m3fn") if quick else DTYPES
        else:
            big_dtypes = ("float32",) if quick else CPU_DTYPES
        from bench.validate.plan import sweep_models

        shapes = model_shapes(sweep_models(ctx.options))
        for dt in big_dtypes:
            if not torch_ok[dt]:
                continue
            for (N, K), layers in shapes.items():
                ms = [m for m in llm_ms(t, quick, N, K)
                      if _llm_footprint(m, N, K, dt) <= (t.memory_bytes or 1 << 62) // 2]
                if ms:
                    pts.append({"family": "llm", "dtype": dt, "Ms": ",".join(map(str, ms)), "N": N, "K": K,
                                "layers": "; ".join(layers),
                                "impls": "torch,triton" if gpu and not quick and dt == "bfloat16" else "torch"})
        for dt in DTYPES if gpu else big_dtypes:
            if not torch_ok[dt]:
                continue
            for (M, N, K) in self._mamf_shapes(gpu, quick, dt):
                add("mamf", dt, M, N, K, "torch")

        # Edge shapes for the Triton kernel's masks: every Triton dtype, correctness only (GPU quick: one odd
        # shape for the pointer kernel and the TMA one). fp8 needs K % 16 == 0 (TMA rows of 16 bytes).
        edge = EDGE_SHAPES if (not gpu or not quick) else (EDGE_SHAPES[0], EDGE_SHAPES[-1])
        for dt in DTYPES:
            if not tri_ok[dt]:
                continue
            for (M, N, K) in edge:
                if dt == "float8_e4m3fn" and K % 16:
                    continue
                add("edge", dt, M, N, K, "triton")
        return pts

    @staticmethod
    def _mamf_shapes(gpu: bool, quick: bool, dtype: str) -> list[tuple[int, int, int]]:
        if gpu:
            if quick and dtype not in ("bfloat16", "float8_e4m3fn"):  # their squares give these peaks
                return [MAMF_H100_BEST]
            if quick or dtype == "float32":  # true fp32 is ~15x slower: its grid stays small
                grid = [(m, n, k) for m in (4096, 8192) for n in (8192, 16384) for k in (4096, 8192)]
            else:
                big = (4096, 6144, 8192, 12288, 16384)
                grid = [(m, n, k) for m in big for n in big for k in (2048, 4096, 8192, 16384)]
            return grid + [MAMF_H100_BEST]
        if quick:  # the CPU's quick fp32 peak: the larger of mamf-finder-like shapes that fits its budget
            return [(3072, 3072, 2048)]
        if dtype == "float32":
            return [(m, n, k) for m in (2048, 3072, 4096) for n in (2048, 3072, 4096) for k in (2048, 4096)]
        return [(3072, 3072, 2048), (2048, 2048, 4096)]

    # -- one point ------------------------------------------------------------------------------------
    # Out-of-memory at a shape skips the larger shapes of the same family and dtype (see docs/runner.md).
    @staticmethod
    def series_key(point: dict):
        return point["family"], point["dtype"]

    @staticmethod
    def size_of(point: dict) -> int:
        if point["family"] == "llm":
            return _llm_footprint(max(_point_ms(point)), point["N"], point["K"], point["dtype"])
        return _footprint(point["M"], point["N"], point["K"], point["dtype"])

    def estimate_s(self, ctx: RunContext, point: dict) -> float | None:
        """Budget planning: an llm point times every one of its M (the runner's per-point guess for each)."""
        return len(_point_ms(point)) * (0.1 + 3 * float(ctx.min_time_s)) if point["family"] == "llm" else None

    def run_point(self, ctx: RunContext, point: dict) -> list[Measurement]:
        t = ctx.target
        dt, family = point["dtype"], point["family"]
        ms, N, K = _point_ms(point), int(point["N"]), int(point["K"])
        impls = [i for i in str(point.get("impls", "torch")).split(",") if i]
        out: list[Measurement] = []

        supported = {"torch": torch_support(dt, t), "triton": triton_support(dt, t)}
        for impl in impls:
            ok, why = supported[impl]
            if not ok:
                mode = t.triton_mode if impl == "triton" else t.backend
                out += [not_measured(benchmark=self.name, kernel="matmul", impl=impl, params=_params(point, M),
                                     reason=why, mode=mode, device=t.name,
                                     extra={"library": _library(dt, t.is_cuda) if impl == "torch" else "Triton"})
                        for M in ms]
        runnable = [i for i in impls if supported[i][0]]
        if not runnable:
            return out
        if family == "llm":
            return out + self._run_llm(ctx, point, runnable, ms)
        M = ms[0]
        params = _params(point, M)
        if family == "edge":
            return out + [self._check_triton_only(ctx, point, params)]

        data = self._inputs(ctx, point, M, N, K, dt)
        flops = flop_count(M, N, K)
        nbytes = bytes_moved(M, N, K, data["in_size"], data["out_size"])
        for impl in runnable:
            if impl == "triton" and t.triton_interpreted:
                continue  # never timed in the interpreter: the edge points check it
            out.append(self._check_and_time(ctx, impl, dt, data, params, flops, nbytes))
        return out

    def _inputs(self, ctx: RunContext, point: dict, M: int, N: int, K: int, dt: str) -> dict:
        """Fresh random operands (B as the transpose of a weight), the check of an output against their float64
        reference, the output's shape."""
        from kernels import gemm as kern

        t = ctx.target
        dev = t.torch_device
        gen = checks.generator(dev, ctx.seed_for(point))
        tol = tolerance(dt, K)
        if dt == "float8_e4m3fn":
            a_q, sa = kern.quantize_fp8(checks.random_tensor((M, K), torch.float32, dev, gen))
            w_q, sb = kern.quantize_fp8(checks.random_tensor((N, K), torch.float32, dev, gen))
            b_q = w_q.t()
            ref = torch.matmul(a_q.double() * sa.double(), b_q.double() * sb.double())
            what = "float64 of the dequantised fp8 inputs"
            return {"a": a_q, "b": b_q, "scale_a": sa, "scale_b": sb, "in_size": 1, "out_size": 2,
                    "out_shape": (M, N), "check": lambda c: checks.compare_chunked(c, _chunks(ref), tol, what)}
        tdt = dtypes.torch_dtype(dt)
        scale = K ** -0.25  # C = Σ_K a·b has variance K·scale⁴ = 1: no overflow in fp16 at any K
        a = checks.random_tensor((M, K), tdt, dev, gen, scale=scale)
        w = checks.random_tensor((N, K), tdt, dev, gen, scale=scale)
        ref = kern.reference(a, w.t())
        what = "float64 matmul of the same inputs"
        return {"a": a, "b": w.t(), "in_size": a.element_size(), "out_size": a.element_size(), "out_shape": (M, N),
                "check": lambda c: checks.compare_chunked(c, _chunks(ref), tol, what)}

    def _run_llm(self, ctx: RunContext, point: dict, impls: list[str], ms: list[int]) -> list[Measurement]:
        """An llm point: one weight (N, K) and one A of the largest M, every M timed on the first M rows of A. The
        check compares CHECK_COLUMNS random output columns with float64 (every output must be written and
        finite): a full float64 reference of an LM head at M = 256 would cost more than the sweep."""
        from kernels import gemm as kern

        t = ctx.target
        dt, N, K = point["dtype"], int(point["N"]), int(point["K"])
        dev = t.torch_device
        gen = checks.generator(dev, ctx.seed_for(point))
        cols = torch.randperm(N, generator=checks.generator("cpu", ctx.seed_for(point)))[:CHECK_COLUMNS].to(dev)
        tol = tolerance(dt, K)
        extra: dict[str, Any] = {}
        if dt == "float8_e4m3fn":
            a_all, sa = kern.quantize_fp8(_random_operand((max(ms), K), torch.float32, dev, gen, 1.0))
            w, sb = kern.quantize_fp8(_random_operand((N, K), torch.float32, dev, gen, 1.0))
            w_ref, a_scale = w[cols].double() * sb.double(), sa.double()
            sizes, what = (1, 2), "float64 of the dequantised fp8 inputs"
            extra = {"scale_a": sa, "scale_b": sb}
        else:
            tdt = dtypes.torch_dtype(dt)
            a_all = _random_operand((max(ms), K), tdt, dev, gen, K ** -0.25)
            w = _random_operand((N, K), tdt, dev, gen, K ** -0.25)
            w_ref, a_scale = w[cols].double(), torch.ones((), dtype=torch.float64, device=dev)
            sizes, what = (w.element_size(), w.element_size()), "float64 matmul of the same inputs"
        what += f" ({len(cols)} of {N} output columns)"
        out: list[Measurement] = []
        for M in ms:
            a = a_all[:M]
            ref = (a.double() * a_scale) @ w_ref.t()
            data = {"a": a, "b": w.t(), "in_size": sizes[0], "out_size": sizes[1], "out_shape": (M, N), **extra,
                    "check": lambda c, ref=ref: _sampled_check(c, cols, ref, tol, what), "cpu_reps": CPU_LLM_REPS}
            for impl in impls:
                if impl == "triton" and t.triton_interpreted:
                    continue  # never timed in the interpreter: the edge points check it
                out.append(self._check_and_time(ctx, impl, dt, data, _params(point, M), flop_count(M, N, K),
                                                bytes_moved(M, N, K, *sizes)))
        return out

    def _check_and_time(self, ctx: RunContext, impl: str, dt: str, data: dict, params: dict, flops: int,
                        nbytes: int) -> Measurement:
        from kernels import gemm as kern

        t = ctx.target
        extra: dict[str, Any] = {}  # the Triton config the autotuner chose
        mode = t.backend if impl == "torch" else t.triton_mode

        if dt == "float8_e4m3fn":  # cuBLASLt through torch._scaled_mm, or the Triton TMA kernel (sm_90+)
            a, b, sa, sb = data["a"], data["b"], data["scale_a"], data["scale_b"]
            box: dict = {}
            run: Callable[[], object]
            if impl == "torch":
                run = lambda: box.__setitem__("c", kern.scaled_mm_fp8(a, b, sa, sb))  # noqa: E731
                library = _library(dt, t.is_cuda)
            else:
                box["c"] = checks.poison(torch.empty(data["out_shape"], dtype=torch.bfloat16, device=t.torch_device))
                run = lambda: kern.triton_matmul_fp8(a, b, sa, sb, box["c"])  # noqa: E731
                library = "Triton (TMA + fp8 wgmma, autotuned, per-tensor scales, bf16 out)"
            run()
            chk = data["check"](box["c"])
            timing, cache = None, None
            if chk.passed:
                if impl == "triton":
                    extra["config"] = kern.triton_best_config(a.dtype)
                flusher = L2Flusher(t)
                cache = _flush_note(t)
                timing = ctx.time(run, before_each=flusher, prime=True)
            return measured(benchmark=self.name, kernel="matmul", impl=impl, params=params, mode=mode,
                            device=t.name, timing=timing, flop_count=flops, bytes=nbytes, check=chk, cache=cache,
                            library=library, **extra)

        tf32 = dt == "tf32"
        c0 = checks.poison(torch.empty(data["out_shape"], dtype=data["a"].dtype, device=t.torch_device))
        if impl == "torch":
            call = lambda a, b, c: kern.torch_matmul(a, b, c)  # noqa: E731
            library = _library(dt, t.is_cuda)
        else:
            call = lambda a, b, c: kern.triton_matmul(a, b, c, tf32=tf32)  # noqa: E731
            tma = kern.variant(data["a"], data["b"], tf32) == "tma"
            library = "Triton (TMA + wgmma, autotuned)" if tma else "Triton (tiled, autotuned)"
        # TF32 on only for the "tf32" dtype, off for true fp32; restored after our calls
        with kern.cuda_tf32(tf32):
            call(data["a"], data["b"], c0)
            chk = data["check"](c0)
            timing, cache = None, None
            if chk.passed:
                if impl == "triton":
                    extra["config"] = kern.triton_best_config(data["a"].dtype, tf32, tma=tma)
                sets, cache = rotation_sets(t, data["a"], data["b"], c0)
                if t.is_cuda:
                    flusher = L2Flusher(t)
                    timing = ctx.time(lambda: call(*sets[0]), before_each=flusher, prime=True)
                elif len(sets) == 1:
                    timing = ctx.time(lambda: call(*sets[0]), **data.get("cpu_reps", {}))
                else:
                    state = {"i": 0}

                    def advance() -> None:
                        state["i"] = (state["i"] + 1) % len(sets)

                    timing = ctx.time(lambda: call(*sets[state["i"]]), before_each=advance, **data.get("cpu_reps", {}))
                del sets
        return measured(benchmark=self.name, kernel="matmul", impl=impl, params=params, mode=mode,
                        device=t.name, timing=timing, flop_count=flops, bytes=nbytes, check=chk, cache=cache,
                        library=library, **extra)

    def _check_triton_only(self, ctx: RunContext, point: dict, params: dict) -> Measurement:
        """Correctness of the Triton kernel at a (small, odd) shape: the interpreter on CPU, a fixed config
        on GPU. Never timed."""
        from kernels import gemm as kern

        t = ctx.target
        dt = params["dtype"]
        M, N, K = params["M"], params["N"], params["K"]
        gen = checks.generator(t.torch_device, ctx.seed_for(point))
        if dt == "float8_e4m3fn":
            a, sa = kern.quantize_fp8(checks.random_tensor((M, K), torch.float32, t.torch_device, gen))
            w, sb = kern.quantize_fp8(checks.random_tensor((N, K), torch.float32, t.torch_device, gen))
            ref = torch.matmul(a.double() * sa.double(), w.t().double() * sb.double())
            c = checks.poison(torch.empty((M, N), dtype=torch.bfloat16, device=t.torch_device))
            cfg = EDGE_CONFIG_FP8 if t.is_cuda else kern.INTERP_CONFIG
            kern.triton_matmul_fp8(a, w.t(), sa, sb, c, config=cfg if t.is_cuda else None)
            chk = checks.compare(c, ref, tolerance(dt, K), "float64 of the dequantised fp8 inputs")
            kernel = "TMA"
        else:
            tdt = dtypes.torch_dtype(dt)
            a = checks.random_tensor((M, K), tdt, t.torch_device, gen, scale=K ** -0.25)
            w = checks.random_tensor((N, K), tdt, t.torch_device, gen, scale=K ** -0.25)
            ref = kern.reference(a, w.t())
            c = checks.poison(torch.empty((M, N), dtype=tdt, device=t.torch_device))
            kern.triton_matmul(a, w.t(), c, tf32=dt == "tf32", config=EDGE_CONFIG if t.is_cuda else None)
            chk = checks.compare(c, ref, tolerance(dt, K), "float64 matmul of the same inputs")
            cfg = kern.INTERP_CONFIG if t.triton_interpreted else EDGE_CONFIG
            kernel = "TMA" if kern.variant(a, w.t(), dt == "tf32") == "tma" else "pointer loads"
        return measured(benchmark=self.name, kernel="matmul", impl="triton", params=params, mode=t.triton_mode,
                        device=t.name, timing=None, check=chk, flop_count=flop_count(M, N, K),
                        library=f"Triton (tiled, {kernel})", config=" ".join(f"{k}={v}" for k, v in cfg.items()))

    # -- profile contribution ----------------------------------------------------------------------------
    def summarize(self, measurements: list[Measurement], device: dict) -> dict:
        timed: list[tuple[Measurement, TimingRecord, float]] = [
            (m, timing, m.flops) for m, timing in timed_records(measurements) if m.flops]
        best: dict[str, tuple[Measurement, float]] = {}  # dtype -> (record, its FLOP/s)
        for m, _, flops in timed:
            dt = str(m.params["dtype"])
            if dt not in best or flops > best[dt][1]:
                best[dt] = (m, flops)
        curve = []
        for m, timing, flops in timed:
            dt = str(m.params["dtype"])
            curve.append({
                "family": m.params["family"], "shape": _shape_name(m.params), "M": m.int_param("M"),
                "N": m.int_param("N"), "K": m.int_param("K"), "dtype": dt, "impl": m.impl,
                "library": str(m.extra.get("library", m.impl)),
                "flops": flops, "median_s": timing.median_s, "p10_s": timing.p10_s,
                "p90_s": timing.p90_s, "bytes": m.bytes or 0,
                "efficiency": flops / best[dt][1],
            })
        curve.sort(key=lambda r: (r["dtype"], r["family"], r["impl"], r["M"], r["N"], r["K"]))
        peaks = {"matmul_flops": {dt: flops for dt, (_, flops) in best.items()},
                 "matmul_source": {dt: _label(m) for dt, (m, _) in best.items()}}
        shapes: dict[tuple[int, int], list[str]] = {}  # the model weight shapes the llm family measured
        for m, _, _ in timed:
            if m.params["family"] == "llm":
                names = shapes.setdefault((m.int_param("N"), m.int_param("K")), [])
                names += [x for x in str(m.params.get("layers") or "").split("; ") if x and x not in names]
        matmul_shapes = [{"N": n, "K": k, "layers": v} for (n, k), v in sorted(shapes.items())]
        return {"peaks": peaks, "curves": {"matmul": curve, "matmul_shapes": matmul_shapes}}


def _params(point: dict, M: int) -> dict:
    """A record's parameters: the point's, at one M (an llm point's records also name the GEMMs of its shape)."""
    p = {"family": point["family"], "dtype": point["dtype"], "M": M, "N": int(point["N"]), "K": int(point["K"])}
    if point.get("layers"):
        p["layers"] = str(point["layers"])
    return p


def _chunks(ref: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
    return lambda lo, hi: ref.reshape(-1)[lo:hi]


def _sampled_check(c: torch.Tensor, cols: torch.Tensor, ref: torch.Tensor, tol: float, what: str) -> Check:
    """Every element of ``c`` written and finite, and the columns ``cols`` within ``tol`` of ``ref``."""
    bad = int((~torch.isfinite(c)).sum().item())
    if bad:
        return Check(passed=False, tol=tol, reference=what,
                     detail=f"{bad} of {c.numel()} elements not finite (unwritten or overflow)")
    return checks.compare(c.index_select(1, cols), ref, tol, what)


def _shape_name(p: dict) -> str:
    if p["family"] == "llm":
        return f"M={p['M']} tokens x " + str(p.get("layers") or f"layer {p['N']}x{p['K']}")
    return str(p["family"])


def _label(m: Measurement) -> str:
    p = m.params
    return (f"{m.impl} ({m.extra.get('library', m.impl)}) at M={p['M']} N={p['N']} K={p['K']} "
            f"[{p['family']}]")


BENCHMARK = GemmBenchmark()
