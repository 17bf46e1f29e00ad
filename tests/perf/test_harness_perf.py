"""pytest-benchmark cases of the harness's CPU paths (the nightly compares them with the previous night).

In the normal test run (--benchmark-disable) each runs once as a plain test, so its assertions still hold.
"""
import torch

from bench import measurement
from bench.timing import summarize
from kernels import hbm as kern


def test_perf_torch_copy_16mib(benchmark):
    src = torch.randn(4 << 20)
    dst = torch.empty_like(src)
    benchmark(kern.torch_copy, src, dst)
    assert torch.equal(dst, src)


def test_perf_torch_triad_16mib(benchmark):
    b, c = torch.randn(4 << 20), torch.randn(4 << 20)
    a = torch.empty_like(b)
    benchmark(kern.torch_triad, a, b, c, 0.5)
    assert torch.allclose(a, b + 0.5 * c)


def test_perf_summarize_10k_samples(benchmark):
    xs = [1e-3 * (1 + (i % 97) / 97) for i in range(10_000)]
    t = benchmark(summarize, xs, "perf_counter")
    assert t.n == 10_000 and t.min_s <= t.median_s <= t.max_s


def test_perf_jsonl_roundtrip(benchmark, tmp_path):
    recs = [measurement.Measurement(benchmark="hbm", kernel="copy", impl="torch", mode="cpu", params={"i": i})
            for i in range(200)]
    p = tmp_path / "m.jsonl"

    def roundtrip():
        p.unlink(missing_ok=True)
        measurement.append(p, recs)
        return measurement.read(p)

    got = benchmark(roundtrip)
    assert len(got) == 200
