import dataclasses

import numpy as np
import pytest
import torch

from bench import checks, models, profile
from bench.benchmarks import gemm
from bench.measurement import measured
from bench.profile import build as profile_build
from bench.registry import RunContext
from bench.timing import summarize
from kernels import gemm as kern

TRITON_TORCH_DTYPES = {"float32": torch.float32, "tf32": torch.float32, "bfloat16": torch.bfloat16,
                       "float16": torch.float16}


def _operands(M, N, K, dt, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = (torch.randn(M, K, generator=g) * K ** -0.25).to(dt)
    w = (torch.randn(N, K, generator=g) * K ** -0.25).to(dt)
    return a, w


def _gpu(cpu, cap):
    return dataclasses.replace(cpu, backend="cuda", torch_device="cuda:0", capability=cap,
                               memory_bytes=80 * 10**9, cache_bytes=50 * 2**20)


# -- accounting and tolerances -----------------------------------------------------------------------------

def test_flop_and_byte_accounting():
    assert gemm.flop_count(3, 5, 7) == 2 * 3 * 5 * 7
    assert gemm.flop_count(1, 4096, 14336) == 117_440_512
    # bf16 8192^3: A, B read once and C written once, 2 bytes each
    assert gemm.bytes_moved(8192, 8192, 8192, 2, 2) == 3 * 8192 * 8192 * 2
    # fp8 in, bf16 out
    assert gemm.bytes_moved(2, 3, 5, 1, 2) == (2 * 5 + 5 * 3) * 1 + 2 * 3 * 2


def test_tolerance_per_dtype_at_short_k():
    assert gemm.tolerance("float32", 64) == pytest.approx(1e-6)
    assert gemm.tolerance("tf32", 64) == pytest.approx(2e-3)
    assert gemm.tolerance("bfloat16", 64) == pytest.approx(1.6e-2)
    assert gemm.tolerance("float16", 64) == pytest.approx(1e-2)
    assert gemm.tolerance("float8_e4m3fn", 64) > gemm.tolerance("bfloat16", 64)  # fp8 is the loosest
    with pytest.raises(KeyError):
        gemm.tolerance("int4", 64)


def test_fp32_tolerance_admits_a_long_sequential_sum_but_not_an_indexing_error():
    """A plain sequential fp32 accumulation at K = 16384 errs beyond 1e-6 yet within the widened bound."""
    K = 16384
    rng = np.random.default_rng(1)
    a = rng.standard_normal((64, K)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    seq = np.cumsum(a * b, axis=1, dtype=np.float32)[:, -1]  # cumsum in fp32 is strictly sequential
    exact = (a.astype(np.float64) * b.astype(np.float64)).sum(1)
    err = np.linalg.norm(seq - exact) / np.linalg.norm(exact)
    assert 1e-6 < err <= gemm.tolerance("float32", K)
    swapped = exact.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # one wrong index: an O(1) error
    assert np.linalg.norm(swapped - exact) / np.linalg.norm(exact) > 100 * gemm.tolerance("float32", K)


# -- skip logic --------------------------------------------------------------------------------------------

def test_support_on_cpu(cpu_target):
    for dt in ("float32", "bfloat16", "float16"):
        assert gemm.torch_support(dt, cpu_target) == (True, "")
    ok, why = gemm.torch_support("float8_e4m3fn", cpu_target)
    assert not ok and "CUDA" in why
    ok, why = gemm.torch_support("tf32", cpu_target)
    assert not ok and "tf32" in why
    assert not gemm.triton_support("float8_e4m3fn", cpu_target)[0]


@pytest.mark.parametrize("cap,fp8,bf16", [((7, 5), False, False), ((8, 0), False, True), ((8, 9), True, True),
                                          ((9, 0), True, True)])
def test_support_by_compute_capability(cpu_target, cap, fp8, bf16):
    gpu = _gpu(cpu_target, cap)
    ok, why = gemm.torch_support("float8_e4m3fn", gpu)
    assert ok == fp8
    if not fp8:
        assert "8.9" in why
    ok, why = gemm.torch_support("bfloat16", gpu)
    assert ok == bf16 and gemm.torch_support("tf32", gpu)[0] == bf16
    if not bf16:
        assert "8.0" in why
    assert gemm.torch_support("float16", gpu) == (True, "")


def test_unsupported_dtypes_are_recorded_once_as_skipped(small_cpu_target):
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    pts = gemm.BENCHMARK.sweep(ctx)
    for dt in ("tf32", "float8_e4m3fn"):
        mine = [p for p in pts if p["dtype"] == dt and p["family"] != "edge"]
        assert len(mine) == 1
        ms = gemm.BENCHMARK.run_point(ctx, mine[0])
        # one record per implementation the dtype has (fp8: cuBLASLt and the Triton TMA kernel), each skipped
        assert [m.impl for m in ms] == (["torch", "triton"] if dt == "float8_e4m3fn" else ["torch"])
        assert all(m.status == "skipped" and m.reason and m.flops is None and m.timing is None for m in ms)


def _llm(pts, dtype=None):
    """{(N, K): [M, ...]} of the sweep's llm points (of one dtype)."""
    return {(p["N"], p["K"]): [int(m) for m in p["Ms"].split(",")] for p in pts
            if p["family"] == "llm" and (dtype is None or p["dtype"] == dtype)}


def _validated_shapes():
    return {(mm.n, mm.k) for name in ("llama-3.1-8b", "qwen3-30b-a3b") for mm in models.resolve(name).matmuls()}


def test_cpu_quick_sweep_is_small_and_reaches_2048(cpu_target):
    pts = gemm.BENCHMARK.sweep(RunContext(target=cpu_target, quick=True))
    fams = {p["family"] for p in pts}
    assert fams == {"square", "llm", "mamf", "edge"}
    assert {"family": "square", "dtype": "float32", "M": 2048, "N": 2048, "K": 2048, "impls": "torch"} in pts
    # Triton is never timed on the CPU: only the edge points carry it (and fp8's one point, recorded as skipped)
    assert all(p["family"] == "edge" or p["dtype"] == "float8_e4m3fn" for p in pts if "triton" in p["impls"])
    assert {(p["M"], p["N"], p["K"]) for p in pts if p["family"] == "edge"} == set(gemm.EDGE_SHAPES)
    assert len([p for p in pts if p["family"] != "llm"]) <= 25


def test_cpu_quick_sweep_measures_every_gemm_validate_reads(cpu_target):
    """Every weight GEMM (N, K) of the validated models, fp32 (the CPU step's dtype), one point per shape over the
    powers of two of M up to the CPU's per-call FLOP cap, which still reaches M = 16 (validate's batch 16) at the
    largest LM head."""
    llm = _llm(gemm.BENCHMARK.sweep(RunContext(target=cpu_target, quick=True)), "float32")
    assert set(llm) == _validated_shapes() and len(llm) == 11
    for (n, k), ms in llm.items():
        assert ms == [m for m in gemm.LLM_M[True] if gemm.flop_count(m, n, k) <= gemm.CPU_MAX_CALL_FLOP[True]]
        assert ms[:5] == [1, 2, 4, 8, 16]  # every batch (and rows per expert) a CPU validation reads
    assert llm[(128256, 4096)] == [1, 2, 4, 8, 16] and llm[(6144, 4096)] == list(gemm.LLM_M[True])
    # the budget: each call within the cap, and the whole family at most 12 caps (the quick CPU run within 90 s)
    total = sum(gemm.flop_count(m, n, k) for (n, k), ms in llm.items() for m in ms)
    assert total <= 12 * gemm.CPU_MAX_CALL_FLOP[True]


def test_the_models_option_chooses_the_shapes(cpu_target):
    tiny = models.ModelSpec(name="tiny", family="dense", layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16,
                       ffn_intermediate=96, vocab=101)
    ctx = RunContext(target=cpu_target, quick=True, options={"models": [tiny.model_dump(mode="json")]})
    pts = [p for p in gemm.BENCHMARK.sweep(ctx) if p["family"] == "llm"]
    assert {(p["N"], p["K"]): p["layers"] for p in pts} == {
        (128, 64): "tiny qkv", (64, 64): "tiny o", (192, 64): "tiny gate_up", (64, 96): "tiny down",
        (101, 64): "tiny lm_head"}
    assert gemm.model_shapes([tiny, tiny]) == gemm.model_shapes([tiny])  # deduplicated


def test_gpu_sweep_plan(cpu_target):
    h100 = _gpu(cpu_target, (9, 0))
    quick = gemm.BENCHMARK.sweep(RunContext(target=h100, quick=True))
    for dt in ("bfloat16", "float8_e4m3fn"):  # the model shapes at M = 1 … 256, bf16 and fp8
        assert _llm(quick, dt) == {nk: list(gemm.LLM_M[True]) for nk in _validated_shapes()}
    for dt in gemm.DTYPES:  # every dtype gets a MAMF search including the best known H100 shape
        assert gemm.MAMF_H100_BEST in {(p["M"], p["N"], p["K"]) for p in quick
                                       if p["family"] == "mamf" and p["dtype"] == dt}
    full = gemm.BENCHMARK.sweep(RunContext(target=h100, quick=False))
    assert _llm(full, "bfloat16") == {nk: list(gemm.LLM_M[False]) for nk in _validated_shapes()}
    assert max(gemm.LLM_M[False]) == 8192
    assert all(p["impls"] == "torch,triton" for p in full if p["family"] == "llm" and p["dtype"] == "bfloat16")
    assert len(full) > len(quick)
    assert {p["dtype"] for p in full if "triton" in p["impls"] and p["family"] == "square"} == set(gemm.DTYPES)
    # a small card leaves out what does not fit beside its float64 reference
    small = dataclasses.replace(h100, memory_bytes=4 * 10**9)
    assert all(gemm.BENCHMARK.size_of(p) <= 2 * 10**9 for p in gemm.BENCHMARK.sweep(RunContext(target=small,
                                                                                              quick=False)))
    # budget planning counts every M of an llm point
    p = next(p for p in quick if p["family"] == "llm")
    assert gemm.BENCHMARK.estimate_s(RunContext(target=h100, quick=True), p) > 5 * 3 * 0.05


def test_pre_ampere_gpu_plans_skips_not_crashes(cpu_target):
    t4 = _gpu(cpu_target, (7, 5))
    pts = gemm.BENCHMARK.sweep(RunContext(target=t4, quick=True))
    skipped = [p for p in pts if p["dtype"] in ("bfloat16", "tf32", "float8_e4m3fn") and p["family"] != "edge"]
    assert len(skipped) == 3
    assert {p["dtype"] for p in pts if p["family"] == "llm"} == {"float16"}  # fp16 stands in for bf16


# -- the Triton kernel under the interpreter -----------------------------------------------------------------

@pytest.mark.parametrize("shape", gemm.EDGE_SHAPES)
@pytest.mark.parametrize("dtype", list(TRITON_TORCH_DTYPES))
def test_triton_matmul_edge_shapes(shape, dtype):
    M, N, K = shape
    a, w = _operands(M, N, K, TRITON_TORCH_DTYPES[dtype])
    out = checks.poison(torch.empty(M, N, dtype=a.dtype))
    kern.triton_matmul(a, w.t(), out, tf32=dtype == "tf32")
    chk = checks.compare(out, kern.reference(a, w.t()), gemm.tolerance(dtype, K), "f64")
    assert chk.passed, chk.detail


def test_triton_matmul_other_layouts_and_allocation():
    a, w = _operands(37, 50, 70, torch.float32, seed=3)
    for b in (w.t(), w.t().contiguous()):  # column-major (nn.Linear weight) and row-major B
        got = kern.triton_matmul(a.t().contiguous().t(), b)  # A column-major too
        assert got.shape == (37, 50) and got.dtype == torch.float32
        assert checks.compare(got, kern.reference(a, b), 1e-6, "f64").passed


def test_triton_matmul_refuses_bad_operands():
    with pytest.raises(ValueError, match="inner"):
        kern.triton_matmul(torch.ones(4, 5), torch.ones(6, 3))
    with pytest.raises(ValueError, match="dtype"):
        kern.triton_matmul(torch.ones(4, 5), torch.ones(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="output"):
        kern.triton_matmul(torch.ones(4, 5), torch.ones(5, 3), torch.empty(3, 4))
    assert kern.triton_matmul(torch.ones(4, 0), torch.ones(0, 3)).eq(0).all()


# -- fp8 and TF32 helpers ------------------------------------------------------------------------------------

def test_quantize_fp8_uses_the_full_range():
    x = torch.randn(64, 96, generator=torch.Generator().manual_seed(5)) * 3
    q, s = kern.quantize_fp8(x)
    assert q.dtype == torch.float8_e4m3fn and s.dim() == 0
    assert q.float().abs().max().item() == kern.FP8_MAX
    assert checks.rel_err(q.float() * s, x) < 0.05  # e4m3 keeps 3 mantissa bits


@pytest.mark.parametrize("returns_tuple", [False, True])
def test_scaled_mm_handles_both_return_conventions(monkeypatch, returns_tuple):
    c = torch.randn(2, 3)
    fake = (lambda *a, **k: (c, torch.tensor(1.0))) if returns_tuple else (lambda *a, **k: c)
    monkeypatch.setattr(torch, "_scaled_mm", fake)
    assert kern.scaled_mm_fp8(None, None, None, None) is c


def test_cuda_tf32_toggles_and_restores():
    m = torch.backends.cuda.matmul
    before = m.allow_tf32
    with kern.cuda_tf32(not before):
        assert m.allow_tf32 == (not before)
    assert m.allow_tf32 == before
    with pytest.raises(RuntimeError):
        with kern.cuda_tf32(True):
            raise RuntimeError("boom")
    assert m.allow_tf32 == before


# -- run_point: check, then time ----------------------------------------------------------------------------

def test_run_point_checks_then_times_on_cpu(small_cpu_target):
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    point = {"family": "square", "dtype": "float32", "M": 96, "N": 80, "K": 112, "impls": "torch"}
    (m,) = gemm.BENCHMARK.run_point(ctx, point)
    assert m.status == "ok" and m.mode == "cpu" and m.check.passed
    assert m.flop_count == gemm.flop_count(96, 80, 112)
    assert m.flops == pytest.approx(m.flop_count / m.timing.median_s)
    assert m.bytes == gemm.bytes_moved(96, 80, 112, 4, 4)
    assert m.extra["library"].startswith("CPU BLAS")
    assert m.cache.startswith("rotate")  # 100 KB of inputs against a 1 MiB cache: rotated
    assert m.params == {"family": "square", "dtype": "float32", "M": 96, "N": 80, "K": 112}


def test_llm_point_times_every_m_on_one_weight(small_cpu_target):
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    point = {"family": "llm", "dtype": "float32", "Ms": "1,2,4", "N": 300, "K": 64, "layers": "x qkv; y o",
             "impls": "torch"}
    ms = gemm.BENCHMARK.run_point(ctx, point)
    assert [m.params["M"] for m in ms] == [1, 2, 4] and all(m.status == "ok" and m.check.passed for m in ms)
    assert all(m.params == {"family": "llm", "dtype": "float32", "M": m.params["M"], "N": 300, "K": 64,
                            "layers": "x qkv; y o"} for m in ms)
    assert all("256 of 300 output columns" in m.check.reference for m in ms)
    assert [m.flop_count for m in ms] == [gemm.flop_count(M_, 300, 64) for M_ in (1, 2, 4)]
    assert all(m.cache.startswith("rotate") for m in ms)  # 77 KB per set against a 1 MiB cache
    s = gemm.BENCHMARK.summarize(ms, {})
    assert s["curves"]["matmul_shapes"] == [{"N": 300, "K": 64, "layers": ["x qkv", "y o"]}]
    assert s["curves"]["matmul"][0]["shape"] == "M=1 tokens x x qkv; y o"
    assert profile.Curves(**s["curves"]).matmul_shapes[0].layers == ["x qkv", "y o"]
    assert gemm.BENCHMARK.size_of(point) == gemm._llm_footprint(4, 300, 64, "float32")


def test_llm_point_check_catches_a_wrong_kernel(small_cpu_target, monkeypatch):
    monkeypatch.setattr(kern, "torch_matmul", lambda a, b, out=None: torch.matmul(a.flip(0), b, out=out))
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    ms = gemm.BENCHMARK.run_point(ctx, {"family": "llm", "dtype": "float32", "Ms": "1,4", "N": 80, "K": 32,
                                        "impls": "torch"})
    assert [m.status for m in ms] == ["ok", "failed"]  # one row flipped onto itself is still right; four are not
    assert ms[1].flops is None and "relative error" in ms[1].reason

    def partial(a, b, out=None):
        out[:, :-1] = torch.matmul(a, b[:, :-1])
        return out

    monkeypatch.setattr(kern, "torch_matmul", partial)
    (m,) = gemm.BENCHMARK.run_point(ctx, {"family": "llm", "dtype": "float32", "Ms": "2", "N": 80, "K": 32,
                                          "impls": "torch"})
    assert m.status == "failed" and "not finite" in m.reason  # an unwritten column outside the sample is caught


def test_edge_point_runs_the_interpreter_untimed(small_cpu_target):
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    (m,) = gemm.BENCHMARK.run_point(ctx, {"family": "edge", "dtype": "bfloat16", "M": 67, "N": 45, "K": 93,
                                          "impls": "triton"})
    assert m.status == "ok" and m.mode == "interpreter" and m.impl == "triton"
    assert m.timing is None and m.flops is None and m.check.rel_err < m.check.tol


def test_fp8_path_checks_dequantised_reference(small_cpu_target, monkeypatch):
    """The fp8 code path (quantise, _scaled_mm, float64 reference of the dequantised inputs) on the CPU,
    where torch 2.13 also implements _scaled_mm; the device gate is lifted for the test only."""
    real = gemm.torch_support
    monkeypatch.setattr(gemm, "torch_support", lambda dt, t: (True, "") if dt == "float8_e4m3fn" else real(dt, t))
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    (m,) = gemm.BENCHMARK.run_point(ctx, {"family": "square", "dtype": "float8_e4m3fn", "M": 48, "N": 32,
                                          "K": 64, "impls": "torch"})
    assert m.status == "ok", m.reason
    assert m.check.rel_err < 1e-2 and m.bytes == gemm.bytes_moved(48, 32, 64, 1, 2)


def test_wrong_kernel_yields_failure_not_number(small_cpu_target, monkeypatch):
    monkeypatch.setattr(kern, "torch_matmul", lambda a, b, out=None: torch.matmul(a.flip(0), b, out=out))
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    (m,) = gemm.BENCHMARK.run_point(ctx, {"family": "square", "dtype": "float32", "M": 64, "N": 64, "K": 64,
                                          "impls": "torch"})
    assert m.status == "failed" and m.flops is None and m.timing is None and "relative error" in m.reason


def test_unwritten_output_is_caught(small_cpu_target, monkeypatch):
    def partial(a, b, out=None, **kw):
        out[:-1] = torch.matmul(a[:-1], b)
        return out

    monkeypatch.setattr(kern, "triton_matmul", partial)
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    (m,) = gemm.BENCHMARK.run_point(ctx, {"family": "edge", "dtype": "float32", "M": 67, "N": 45, "K": 93,
                                          "impls": "triton"})
    assert m.status == "failed" and "not finite" in m.reason


# -- profile contribution -----------------------------------------------------------------------------------

def _rec(dtype, M, N, K, median_s, impl="torch", mode="cuda", family="square", status_ok=True, layers=None):
    from bench.measurement import Check

    chk = Check(passed=status_ok, rel_err=0.0 if status_ok else 1.0, tol=1e-3)
    return measured(benchmark="gemm", kernel="matmul", impl=impl, mode=mode, device="x",
                    params={"family": family, "dtype": dtype, "M": M, "N": N, "K": K}
                    | ({"layers": layers} if layers else {}),
                    timing=None if mode == "interpreter" else summarize([median_s] * 3, "cuda_events"),
                    flop_count=gemm.flop_count(M, N, K), bytes=gemm.bytes_moved(M, N, K, 2, 2), check=chk,
                    library="cuBLAS (torch.matmul)" if impl == "torch" else "Triton")


def test_summarize_peak_per_dtype_with_source_and_efficiency():
    ms = [_rec("bfloat16", 8192, 8192, 8192, 1.5e-3),
          _rec("bfloat16", 6144, 17920, 2816, 0.8e-3, family="mamf"),
          _rec("bfloat16", 8192, 8192, 8192, 1.6e-3, impl="triton"),
          _rec("bfloat16", 1, 4096, 4096, 2e-5, family="llm", layers="llama-3.1-8b o"),
          _rec("bfloat16", 9999, 9999, 9999, 1e-9, status_ok=False),  # failed: never a number
          _rec("float16", 67, 45, 93, 0, impl="triton", mode="interpreter", family="edge"),
          _rec("float8_e4m3fn", 8192, 8192, 8192, 0.8e-3)]
    s = gemm.BENCHMARK.summarize(ms, {})
    best = 2 * 6144 * 17920 * 2816 / 0.8e-3
    assert s["peaks"]["matmul_flops"]["bfloat16"] == pytest.approx(best)
    assert "M=6144 N=17920 K=2816" in s["peaks"]["matmul_source"]["bfloat16"]
    assert "mamf" in s["peaks"]["matmul_source"]["bfloat16"]
    assert set(s["peaks"]["matmul_flops"]) == {"bfloat16", "float8_e4m3fn"}
    curve = s["curves"]["matmul"]
    assert len(curve) == 5
    by = {(c["family"], c["impl"], c["M"]): c for c in curve}
    assert by[("square", "triton", 8192)]["efficiency"] == pytest.approx(2 * 8192**3 / 1.6e-3 / best)
    assert by[("llm", "torch", 1)]["shape"] == "M=1 tokens x llama-3.1-8b o"
    assert s["curves"]["matmul_shapes"] == [{"N": 4096, "K": 4096, "layers": ["llama-3.1-8b o"]}]
    assert max(c["efficiency"] for c in curve if c["dtype"] == "bfloat16") == pytest.approx(1.0)
    # the profile schema accepts it as typed points
    peaks = profile.Peaks(**s["peaks"])
    curves = profile.Curves(matmul=curve)
    assert curves.matmul[0].library and peaks.matmul_source["float8_e4m3fn"]


def test_profile_built_from_a_cpu_run(small_cpu_target, tmp_path):
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    recs = []
    for pt in ({"family": "square", "dtype": "float32", "M": 64, "N": 48, "K": 80, "impls": "torch"},
               {"family": "square", "dtype": "float16", "M": 64, "N": 48, "K": 80, "impls": "torch"},
               {"family": "square", "dtype": "tf32", "M": 64, "N": 48, "K": 80, "impls": "torch"}):
        recs += gemm.BENCHMARK.run_point(ctx, pt)
    run = profile.RunInfo(mode="cpu", mode_reason="test", benchmarks=["gemm"])
    prof = profile_build.from_measurements(recs, profile_build.device_info(small_cpu_target), run)
    assert set(prof.peaks.matmul_flops) == {"float32", "float16"}
    assert all(0 < p.efficiency <= 1 for p in prof.curves.matmul)
    assert prof.run.points_skipped == 1
    profile.save(prof, tmp_path / "p.json")
    assert profile.load(tmp_path / "p.json") == prof


# -- the TMA variant and the fp8 kernel under the interpreter (triton >= 3.7: 3.6's interpreter mis-binds the
#    arguments that follow a tensor descriptor; the GPU image compiles them instead, see the gpu tests) -------

import triton  # noqa: E402

_INTERP_TMA = tuple(int(x) for x in triton.__version__.split(".")[:2]) >= (3, 7)
needs_interp_tma = pytest.mark.skipif(not _INTERP_TMA, reason="triton < 3.7 interpreter cannot run descriptors")


@needs_interp_tma
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "tf32"])
def test_tma_kernel_in_the_interpreter(dtype):
    M, N, K = gemm.EDGE_SHAPES[-1]  # odd M and N: tiles past the edges are zero-filled, the store masked
    a, w = _operands(M, N, K, TRITON_TORCH_DTYPES[dtype], seed=7)
    out = checks.poison(torch.empty(M, N, dtype=a.dtype))
    kern.triton_matmul(a, w.t(), out, tf32=dtype == "tf32", kernel="tma")
    chk = checks.compare(out, kern.reference(a, w.t()), gemm.tolerance(dtype, K), "f64")
    assert chk.passed and chk.rel_err > 0, chk.detail


@needs_interp_tma
def test_triton_fp8_kernel_in_the_interpreter():
    M, N, K = gemm.EDGE_SHAPES[-1]
    g = torch.Generator().manual_seed(11)
    (xq, sx) = kern.quantize_fp8(torch.randn(M, K, generator=g))
    (wq, sw) = kern.quantize_fp8(torch.randn(N, K, generator=g))
    out = checks.poison(torch.empty(M, N, dtype=torch.bfloat16))
    kern.triton_matmul_fp8(xq, wq.t(), sx, sw, out)
    ref = (xq.double() * sx.double()) @ (wq.double() * sw.double()).t()
    chk = checks.compare(out, ref, gemm.tolerance("float8_e4m3fn", K), "f64")
    assert chk.passed and chk.rel_err > 0, chk.detail


def test_kernel_variant_choice_and_refusals():
    a, w = _operands(64, 48, 96, torch.bfloat16)
    assert kern.variant(a, w.t()) == "pointer"  # CPU tensors: never TMA unless forced
    assert kern.tma_eligible(a, w.t()) and not kern.tma_eligible(a, w.t().contiguous())  # B must be column-major
    odd_a, odd_w = _operands(8, 8, 93, torch.bfloat16)
    assert not kern.tma_eligible(odd_a, odd_w.t())  # 93 x 2 B rows are not 16-byte multiples
    with pytest.raises(ValueError, match="TMA"):
        kern.triton_matmul(odd_a, odd_w.t(), kernel="tma")
    with pytest.raises(ValueError, match="kernel"):
        kern.triton_matmul(a, w.t(), kernel="fast")
    q, s = kern.quantize_fp8(torch.randn(8, 32))
    with pytest.raises(ValueError, match="float8"):
        kern.triton_matmul_fp8(a, w.t(), s, s)
    with pytest.raises(ValueError, match="scales"):
        kern.triton_matmul_fp8(q, q.t(), s.double(), s)


def test_triton_fp8_support_needs_hopper(cpu_target):
    assert not gemm.triton_support("float8_e4m3fn", _gpu(cpu_target, (8, 9)))[0]
    assert gemm.triton_support("float8_e4m3fn", _gpu(cpu_target, (9, 0))) == (True, "")
    h100 = _gpu(cpu_target, (9, 0))
    quick = gemm.BENCHMARK.sweep(RunContext(target=h100, quick=True))
    fp8_tri = [p for p in quick if p["dtype"] == "float8_e4m3fn" and "triton" in p["impls"]]
    assert {p["family"] for p in fp8_tri} == {"square", "edge"}
    assert all(p["K"] % 16 == 0 for p in fp8_tri)  # TMA rows of 16 bytes
    # the default sweep searches bf16 and fp8 for their peak; the other dtypes get mamf-finder's best shape
    for dt in gemm.DTYPES:
        mamf = [p for p in quick if p["family"] == "mamf" and p["dtype"] == dt]
        assert len(mamf) == (9 if dt in ("bfloat16", "float8_e4m3fn") else 1)


# -- on a GPU (ROOFLAB_TEST_DEVICE=cuda, fixture gpu_target): every compiled kernel variant, small real sizes -

def _gpu_check(out, ref, dtype, K, what):
    chk = checks.compare(out, ref, gemm.tolerance(dtype, K), "f64")
    assert chk.passed, (what, chk.detail)


def _cfg(c):
    return {**c.kwargs, "num_warps": c.num_warps, "num_stages": c.num_stages}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "tf32"])
def test_every_triton_config_on_gpu(gpu_target, dtype):
    """Each autotune config of both variants (pointer loads; TMA on sm_90+) as a fixed launch, then the
    autotuned launcher, on shapes that span several tiles with ragged edges."""
    dev = gpu_target.torch_device
    dt = TRITON_TORCH_DTYPES[dtype]
    tf32 = dtype == "tf32"
    fam = kern._family(dt, tf32)
    M, N, K = 300, 520, 1040  # K % 16 == 0 (TMA-eligible), M and N ragged against every tile
    a, w = (x.to(dev) for x in _operands(M, N, K, dt, seed=1))
    ref = kern.reference(a, w.t())
    variants = [("pointer", kern._TUNED[fam].configs)]
    if fam in kern._TUNED_TMA and kern.tma_capable(a.device):
        variants.append(("tma", kern._TUNED_TMA[fam].configs))
    for kernel, cfgs in variants:
        for c in cfgs:
            out = checks.poison(torch.empty(M, N, dtype=dt, device=dev))
            kern.triton_matmul(a, w.t(), out, tf32=tf32, config=_cfg(c), kernel=kernel)
            _gpu_check(out, ref, dtype, K, (kernel, _cfg(c)))
    for (m, n, k) in ((1, 4096, 4096), (67, 45, 93), (512, 1024, 768)):  # autotuned, both variants as chosen
        a, w = (x.to(dev) for x in _operands(m, n, k, dt, seed=2))
        out = checks.poison(torch.empty(m, n, dtype=dt, device=dev))
        kern.triton_matmul(a, w.t(), out, tf32=tf32)
        _gpu_check(out, kern.reference(a, w.t()), dtype, k, (m, n, k, kern.variant(a, w.t(), tf32)))


@pytest.mark.gpu
def test_fp8_paths_on_gpu(gpu_target):
    """torch._scaled_mm and, on sm_90+, every config of the Triton fp8 kernel plus its autotuned launch."""
    if not gpu_target.supports_fp8()[0]:
        pytest.skip(gpu_target.supports_fp8()[1])
    dev = gpu_target.torch_device
    g = torch.Generator(device=dev).manual_seed(3)
    M, N, K = 300, 520, 1040
    (xq, sx), (wq, sw) = (kern.quantize_fp8(torch.randn(r, K, device=dev, generator=g)) for r in (M, N))
    ref = (xq.double() * sx.double()) @ (wq.double() * sw.double()).t()
    c = kern.scaled_mm_fp8(xq, wq.t(), sx, sw)
    assert c.dtype == torch.bfloat16
    _gpu_check(c, ref, "float8_e4m3fn", K, "torch._scaled_mm")
    if not kern.tma_capable(xq.device):
        return
    for cfg in kern._TUNED_TMA["fp8"].configs:
        out = checks.poison(torch.empty(M, N, dtype=torch.bfloat16, device=dev))
        kern.triton_matmul_fp8(xq, wq.t(), sx, sw, out, config=_cfg(cfg))
        _gpu_check(out, ref, "float8_e4m3fn", K, _cfg(cfg))
    out = checks.poison(torch.empty(M, N, dtype=torch.bfloat16, device=dev))
    kern.triton_matmul_fp8(xq, wq.t(), sx, sw, out)
    _gpu_check(out, ref, "float8_e4m3fn", K, "autotuned")


@pytest.mark.gpu
def test_benchmark_points_on_gpu(gpu_target):
    """The benchmark's GPU branches: a Triton bf16 and fp8 square (checked, timed, primed, L2 flushed) and the
    edge checks with their fixed configs."""
    ctx = RunContext(target=gpu_target, quick=True, min_time_s=0.01)
    for dt in ("bfloat16", "float8_e4m3fn"):
        ms = gemm.BENCHMARK.run_point(ctx, {"family": "square", "dtype": dt, "M": 1024, "N": 1024, "K": 1024,
                                            "impls": "torch,triton"})
        for m in ms:
            assert m.status in ("ok", "skipped"), (dt, m.impl, m.reason)
            if m.status == "ok":
                assert m.flops > 0 and "flushed" in m.cache
    for dt in ("bfloat16", "float8_e4m3fn"):  # an llm point: one weight, every M, the sampled check
        ms = gemm.BENCHMARK.run_point(ctx, {"family": "llm", "dtype": dt, "Ms": "1,16,256", "N": 6144, "K": 4096,
                                            "layers": "llama-3.1-8b qkv", "impls": "torch"})
        assert [m.params["M"] for m in ms] == [1, 16, 256] or all(m.status == "skipped" for m in ms)
        assert all(m.status in ("ok", "skipped") for m in ms), [(m.params, m.reason) for m in ms]
    for dt in gemm.DTYPES:
        for (M, N, K) in gemm.EDGE_SHAPES:
            if dt == "float8_e4m3fn" and K % 16:
                continue
            ms = gemm.BENCHMARK.run_point(ctx, {"family": "edge", "dtype": dt, "M": M, "N": N, "K": K,
                                                "impls": "triton"})
            assert all(m.status in ("ok", "skipped") for m in ms), [(m.params, m.reason) for m in ms]
