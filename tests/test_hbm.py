import pytest
import torch

from bench import checks
from bench.benchmarks import hbm as B
from bench.registry import RunContext
from kernels import hbm as K

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
    K.triton_copy(src, dst)
    assert torch.equal(dst, src)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dt", DTYPES)
def test_triton_write(n, dt):
    dst = checks.poison(torch.empty(n, dtype=dt))
    K.triton_write(dst, 1.375)
    assert torch.all(dst == 1.375)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dt", DTYPES)
def test_triton_triad(n, dt):
    b, c = _rand(n, dt, 1), _rand(n, dt, 2)
    a = checks.poison(torch.empty_like(b))
    K.triton_triad(a, b, c, 0.7)
    chk = checks.compare(a, K.reference("triad", b, c, 0.7), checks.tolerance(dt), "f64")
    assert chk.passed, chk.detail


@pytest.mark.parametrize("n", SIZES + [70_001])
@pytest.mark.parametrize("dt", DTYPES)
def test_triton_read(n, dt):
    src = _rand(n, dt, 3)
    got = K.triton_read(src).item()
    ref = K.reference("read", src).item()
    assert abs(got - ref) <= 1e-5 * src.double().abs().sum().item()


def test_kernels_refuse_mismatched_arrays():
    with pytest.raises(ValueError):
        K.triton_copy(torch.zeros(4), torch.zeros(5))
    with pytest.raises(ValueError):
        K.triton_copy(torch.zeros(4), torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError):
        K.triton_read(torch.zeros(4, 4).t())


def test_bytes_accounting():
    n, e = 1000, 4
    assert K.bytes_moved("copy", n, e) == 2 * n * e
    assert K.bytes_moved("read", n, e) == n * e
    assert K.bytes_moved("write", n, e) == n * e
    assert K.bytes_moved("triad", n, e) == 3 * n * e


def test_sweep_reaches_eight_times_cache(cpu_target):
    for cache, cuda in ((1 << 20, False), (50 * 2**20, True), (272629760, False)):
        for quick in (True, False):
            sizes = B._ws_sizes(cache, cuda, quick)
            assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
            assert sizes[-1] >= 8 * cache
            assert sizes[0] < cache  # starts inside the cache: the curve shows the cliff
            if cuda:
                assert sizes[-1] >= 2**31


def test_run_point_checks_then_times(small_cpu_target):
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    pts = B.BENCHMARK.sweep(ctx)
    assert pts and all(p["dtype"] == "float32" for p in pts)
    ms = B.BENCHMARK.run_point(ctx, pts[-1])
    assert {(m.kernel, m.impl) for m in ms} == {(op, i) for op in K.OPS for i in ("triton", "torch")}
    for m in ms:
        assert m.status == "ok", m.reason
        assert m.check is not None and m.check.passed
        if m.impl == "triton":
            assert m.mode == "interpreter" and m.timing is None and m.bandwidth_Bps is None
        else:
            assert m.mode == "cpu" and m.bandwidth_Bps > 0
            assert m.bytes == K.bytes_moved(m.kernel, m.params["array_bytes"] // 4, 4)


def test_broken_kernel_yields_failure_not_number(small_cpu_target, monkeypatch):
    monkeypatch.setattr(K, "torch_copy", lambda src, dst: dst.copy_(src * 1.001))
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    ms = B.BENCHMARK.run_point(ctx, {"dtype": "float32", "working_set_bytes": 1 << 20})
    bad = [m for m in ms if m.kernel == "copy" and m.impl == "torch"][0]
    assert bad.status == "failed" and bad.bandwidth_Bps is None and bad.timing is None


def test_unwritten_output_is_caught(small_cpu_target, monkeypatch):
    monkeypatch.setattr(K, "torch_write", lambda dst, v: dst[: dst.numel() - 1].fill_(v))
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    ms = B.BENCHMARK.run_point(ctx, {"dtype": "float32", "working_set_bytes": 1 << 20})
    bad = [m for m in ms if m.kernel == "write" and m.impl == "torch"][0]
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
    s = B.BENCHMARK.summarize(ms, {"cache_bytes": cache})
    assert s["peaks"]["memory_bandwidth_Bps"] == pytest.approx(3e12, rel=1e-6)
    assert s["peaks"]["copy_bandwidth_Bps"] == pytest.approx(2.9e12, rel=1e-6)
    assert "read" in s["peaks"]["memory_bandwidth_source"]
    assert len(s["curves"]["hbm"]) == 4
