"""pytest-benchmark cases of the gemm benchmark's CPU paths (the nightly compares them with the previous night).

In the normal test run (--benchmark-disable) each runs once as a plain test, so its assertions still hold.
"""
import torch

from bench.benchmarks import gemm
from bench.measurement import measured
from bench.timing import summarize
from kernels import gemm as kern


def test_perf_torch_matmul_fp32_512_one_thread(benchmark):
    # one thread: on a shared 2-core runner a two-thread BLAS call waits on a descheduled peer (ms-long
    # stalls), which would make a night-to-night comparison noise
    g = torch.Generator().manual_seed(0)
    a, w = torch.randn(512, 512, generator=g), torch.randn(512, 512, generator=g)
    out = torch.empty(512, 512)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        benchmark(kern.torch_matmul, a, w.t(), out)
    finally:
        torch.set_num_threads(threads)
    assert torch.allclose(out.double(), a.double() @ w.double().t(), rtol=1e-4, atol=1e-4)


def test_perf_gemm_summarize_600_points(benchmark):
    t = summarize([1e-3, 1.1e-3, 1.2e-3], "cuda_events")
    recs = [measured(benchmark="gemm", kernel="matmul", impl="torch", mode="cuda", device="x", timing=t,
                     params={"family": "mamf", "dtype": dt, "M": 1024 + i, "N": 2048, "K": 4096},
                     flop_count=gemm.flop_count(1024 + i, 2048, 4096))
            for dt in ("bfloat16", "float16", "float8_e4m3fn") for i in range(200)]
    s = benchmark(gemm.BENCHMARK.summarize, recs, {})
    assert len(s["curves"]["matmul"]) == 600
    assert s["peaks"]["matmul_flops"]["bfloat16"] == gemm.flop_count(1223, 2048, 4096) / t.median_s
