import pytest
import torch

from bench import checks
from bench.benchmarks import hbm
from bench.registry import RunContext
from kernels import hbm as kern

SIZES = [1, 255, 257, 1000, 10_007]
DTYPES = [torch.float32, torch.bfloat16]


def _rand(n, dt, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g) * 0.5 + 1).to(dt)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dt", DTYPES)
def test_triton_copy(n, dt):
    src = _rand(n, dt)
    dst = checks.poison(torch.empty_like(src))
    kern.triton_copy(src, dst)
    assert torch.equal(dst, src)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dt", DTYPES)
def test_triton_write(n, dt):
    dst = checks.poison(torch.empty(n, dtype=dt))
    kern.triton_write(dst, 1.375)
    assert torch.all(dst == 1.375)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dt", DTYPES)
def test_triton_triad(n, dt):
    b, c = _rand(n, dt, 1), _rand(n, dt, 2)
    a = checks.poison(torch.empty_like(b))
    kern.triton_triad(a, b, c, 0.7)
    chk = checks.compare(a, kern.reference("triad", b, c, 0.7), checks.tolerance(dt), "f64")
    assert chk.passed, chk.detail


@pytest.mark.parametrize("n", SIZES + [70_001])
@pytest.mark.parametrize("dt", DTYPES)
def test_triton_read(n, dt):
    src = _rand(n, dt, 3)
    got = kern.triton_read(src).item()
    ref = kern.reference("read", src).item()
    assert abs(got - ref) <= 1e-5 * src.double().abs().sum().item()


def test_kernels_refuse_mismatched_arrays():
    with pytest.raises(ValueError):
        kern.triton_copy(torch.zeros(4), torch.zeros(5))
    with pytest.raises(ValueError):
        kern.triton_copy(torch.zeros(4), torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError):
        kern.triton_read(torch.zeros(4, 4).t())


def test_bytes_accounting():
    n, e = 1000, 4
    assert hbm.bytes_moved("copy", n, e) == 2 * n * e
    assert hbm.bytes_moved("read", n, e) == n * e
    assert hbm.bytes_moved("write", n, e) == n * e
    assert hbm.bytes_moved("triad", n, e) == 3 * n * e


def test_sweep_reaches_eight_times_cache(cpu_target):
    for cache, cuda in ((1 << 20, False), (50 * 2**20, True), (272629760, False)):
        for quick in (True, False):
            sizes = hbm._ws_sizes(cache, cuda, quick)
            assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
            assert sizes[-1] >= 8 * cache
            assert sizes[0] < cache  # starts inside the cache: the curve shows the cliff
            if cuda:
                assert sizes[-1] >= 2**31


def test_run_point_checks_then_times(small_cpu_target):
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    pts = hbm.BENCHMARK.sweep(ctx)
    assert pts and all(p["dtype"] == "float32" for p in pts)
    ms = hbm.BENCHMARK.run_point(ctx, pts[-1])
    assert {(m.kernel, m.impl) for m in ms} == {(op, i) for op in hbm.OPS for i in ("triton", "torch")}
    for m in ms:
        assert m.status == "ok", m.reason
        assert m.check is not None and m.check.passed
        if m.impl == "triton":
            assert m.mode == "interpreter" and m.timing is None and m.bandwidth_Bps is None
        else:
            assert m.mode == "cpu" and m.bandwidth_Bps > 0
            assert m.bytes == hbm.bytes_moved(m.kernel, m.params["array_bytes"] // 4, 4)


def test_broken_kernel_yields_failure_not_number(small_cpu_target, monkeypatch):
    monkeypatch.setattr(kern, "torch_copy", lambda src, dst: dst.copy_(src * 1.001))
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    ms = hbm.BENCHMARK.run_point(ctx, {"dtype": "float32", "working_set_bytes": 1 << 20})
    bad = next(m for m in ms if m.kernel == "copy" and m.impl == "torch")
    assert bad.status == "failed" and bad.bandwidth_Bps is None and bad.timing is None


def test_unwritten_output_is_caught(small_cpu_target, monkeypatch):
    monkeypatch.setattr(kern, "torch_write", lambda dst, v: dst[: dst.numel() - 1].fill_(v))
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    ms = hbm.BENCHMARK.run_point(ctx, {"dtype": "float32", "working_set_bytes": 1 << 20})
    bad = next(m for m in ms if m.kernel == "write" and m.impl == "torch")
    assert bad.status == "failed" and "not finite" in bad.reason


def _rec(kernel, impl, ws, bw, mode="cpu"):
    from bench.measurement import measured
    from bench.timing import summarize

    nbytes = int(bw * 0.01)
    return measured(benchmark="hbm", kernel=kernel, impl=impl, mode=mode, device="x",
                    params={"op": kernel, "dtype": "float32", "working_set_bytes": ws},
                    timing=None if mode == "interpreter" else summarize([0.01] * 3, "perf_counter"), bytes=nbytes)


def test_summarize_peak_only_beyond_cache():
    cache = 1000
    ms = [_rec("read", "torch", 100, 9e12),  # in cache: fast but must not count
          _rec("read", "torch", 8000, 3e12), _rec("copy", "triton", 8000, 2.9e12, mode="cuda"),
          _rec("copy", "torch", 8000, 2.8e12), _rec("copy", "triton", 8000, 0, mode="interpreter")]
    s = hbm.BENCHMARK.summarize(ms, {"cache_bytes": cache})
    assert s["peaks"]["memory_bandwidth_Bps"] == pytest.approx(3e12, rel=1e-6)
    assert s["peaks"]["copy_bandwidth_Bps"] == pytest.approx(2.9e12, rel=1e-6)
    assert "read" in s["peaks"]["memory_bandwidth_source"]
    assert len(s["curves"]["hbm"]) == 4


def test_timing_is_primed_for_every_kernel(small_cpu_target, monkeypatch):
    """hbm asks bench.timing to prime every repetition (on GPU the small in-cache points are shorter than a
    launch); on the CPU the flag is accepted and changes nothing."""
    from bench import registry

    seen = []
    real = registry.time_fn

    def spy(fn, target, **kw):
        seen.append(kw.get("prime"))
        return real(fn, target, **kw)

    monkeypatch.setattr(registry, "time_fn", spy)
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    ms = hbm.BENCHMARK.run_point(ctx, {"dtype": "float32", "working_set_bytes": 1 << 20})
    assert len(seen) == len(hbm.OPS) and all(seen)  # the torch kernels (Triton is interpreted here, untimed)
    assert all(m.timing.clock == "perf_counter" for m in ms if m.timing is not None)


# -- on a GPU (ROOFLAB_TEST_DEVICE=cuda): every compiled variant, small but real sizes -------------------------

GPU_N = 3 * (1 << 20) + 7  # 12 MB of fp32: several blocks of every config, and a ragged tail for the masks


@pytest.mark.gpu
@pytest.mark.parametrize("dt", DTYPES)
def test_every_config_on_gpu(gpu_target, dt):
    import triton

    dev = gpu_target.torch_device
    src, c = _rand(GPU_N, dt, 4).to(dev), _rand(GPU_N, dt, 5).to(dev)
    ref_triad = kern.reference("triad", src, c, 0.7)
    for cfg in kern._CONFIGS:
        meta = dict(BLOCK=cfg.kwargs["BLOCK"], num_warps=cfg.num_warps)
        grid = (triton.cdiv(GPU_N, meta["BLOCK"]),)
        dst = checks.poison(torch.empty_like(src))
        kern._copy_kernel[grid](src, dst, GPU_N, **meta)
        assert torch.equal(dst, src), cfg
        checks.poison(dst)
        kern._fill_kernel[grid](dst, 1.375, GPU_N, **meta)
        assert bool((dst == 1.375).all()), cfg
        checks.poison(dst)
        kern._triad_kernel[grid](dst, src, c, 0.7, GPU_N, **meta)
        chk = checks.compare(dst, ref_triad, checks.tolerance(dt), "f64")
        assert chk.passed, (cfg, chk.detail)


@pytest.mark.gpu
@pytest.mark.parametrize("dt", DTYPES)
def test_launchers_on_gpu(gpu_target, dt):
    """The autotuned launchers and the persistent reduction, as the benchmark calls them."""
    dev = gpu_target.torch_device
    src, c = _rand(GPU_N, dt, 6).to(dev), _rand(GPU_N, dt, 7).to(dev)
    dst = checks.poison(torch.empty_like(src))
    assert torch.equal(kern.triton_copy(src, dst), src)
    assert bool((kern.triton_write(checks.poison(dst), -2.5) == -2.5).all())
    chk = checks.compare(kern.triton_triad(checks.poison(dst), src, c, 0.3), kern.reference("triad", src, c, 0.3),
                         checks.tolerance(dt), "f64")
    assert chk.passed, chk.detail
    progs, _ = kern.read_programs(GPU_N, True)
    partial = torch.empty(progs, dtype=torch.float32, device=dev)
    got = kern.triton_read(src, partial).item()
    ref = src.double().sum().item()
    assert abs(got - ref) <= hbm.READ_TOL * src.double().abs().sum().item()


@pytest.mark.gpu
def test_run_point_on_gpu(gpu_target):
    """One real point through the benchmark: both impls of every op checked, then timed (primed)."""
    ctx = RunContext(target=gpu_target, quick=True, min_time_s=0.01)
    ms = hbm.BENCHMARK.run_point(ctx, {"dtype": "bfloat16", "working_set_bytes": 8 << 20})
    assert len(ms) == 2 * len(hbm.OPS)
    for m in ms:
        assert m.status == "ok", (m.kernel, m.impl, m.reason)
        assert m.mode == "cuda" and m.bandwidth_Bps > 0
