import math

import pytest

from bench.timing import L2Flusher, percentile, reps_for, summarize, time_fn


class FakeClock:
    """A clock that the timed function advances by a scripted amount per call."""

    def __init__(self, durations_ns):
        self.now = 0
        self.durations = list(durations_ns)
        self.calls = 0

    def __call__(self):
        return self.now

    def work(self):
        self.now += self.durations[min(self.calls, len(self.durations) - 1)]
        self.calls += 1


def test_summarize_statistics():
    t = summarize([5.0, 1.0, 3.0, 2.0, 4.0], "perf_counter")
    assert t.median_s == 3.0 and t.min_s == 1.0 and t.max_s == 5.0 and t.n == 5
    assert t.mean_s == 3.0 and t.total_s == 15.0
    assert t.p10_s == pytest.approx(1.4) and t.p90_s == pytest.approx(4.6)
    assert t.spread == pytest.approx(4.6 / 1.4)
    assert t.noisy


def test_percentile_matches_linear_interpolation():
    xs = sorted([0.1 * i for i in range(11)])
    assert percentile(xs, 50) == pytest.approx(0.5)
    assert percentile(xs, 0) == 0.0 and percentile(xs, 100) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_summarize_rejects_bad_samples():
    with pytest.raises(ValueError):
        summarize([], "x")
    with pytest.raises(ValueError):
        summarize([1.0, math.nan], "x")
    with pytest.raises(ValueError):
        summarize([-1.0], "x")


def test_reps_for_bounds():
    assert reps_for(0.01, 0.1, 5, 100) == 10
    assert reps_for(1.0, 0.1, 5, 100) == 5  # at least min_reps
    assert reps_for(1e-9, 0.1, 5, 100) == 100  # at most max_reps
    assert reps_for(0.0, 0.1, 5, 100) == 100


def test_time_fn_on_fake_clock(cpu_target):
    # warm-up call takes 10 ms, then steady 1 ms calls with one 3 ms outlier
    clk = FakeClock([10_000_000] + [1_000_000] * 7 + [3_000_000] + [1_000_000] * 100)
    t = time_fn(clk.work, cpu_target, min_time_s=0.0, min_reps=10, max_reps=10, warmup=1, clock_ns=clk)
    assert t.n == 10
    assert t.median_s == pytest.approx(1e-3)
    assert t.max_s == pytest.approx(3e-3)
    assert t.min_s == pytest.approx(1e-3)
    assert t.clock == "perf_counter"
    assert clk.calls == 11  # warm-up excluded from the samples


def test_time_fn_reps_reach_min_time(cpu_target):
    clk = FakeClock([2_000_000] * 1000)  # 2 ms per call
    t = time_fn(clk.work, cpu_target, min_time_s=0.1, min_reps=3, max_reps=1000, warmup=1, clock_ns=clk)
    assert t.n == 50 and t.total_s == pytest.approx(0.1)


def test_time_fn_inner_divides(cpu_target):
    clk = FakeClock([1_000_000] * 1000)
    t = time_fn(clk.work, cpu_target, min_time_s=0, min_reps=4, max_reps=4, inner=5, clock_ns=clk)
    assert t.median_s == pytest.approx(1e-3) and t.n == 4


def test_before_each_runs_outside_timing(cpu_target):
    clk = FakeClock([1_000_000] * 100)
    flushes = []

    def flush():
        clk.now += 50_000_000  # expensive, but must not be counted
        flushes.append(1)

    t = time_fn(clk.work, cpu_target, min_time_s=0, min_reps=5, max_reps=5, warmup=1, before_each=flush,
                clock_ns=clk)
    assert t.median_s == pytest.approx(1e-3)
    assert len(flushes) == 6  # warm-up + 5 samples


def test_time_fn_real_clock(cpu_target):
    t = time_fn(lambda: sum(range(1000)), cpu_target, min_time_s=0.01, min_reps=5)
    assert t.n >= 5 and 0 < t.min_s <= t.median_s <= t.max_s


def test_time_fn_argument_checks(cpu_target):
    with pytest.raises(ValueError):
        time_fn(lambda: None, cpu_target, inner=0)
    with pytest.raises(ValueError):
        time_fn(lambda: None, cpu_target, min_reps=10, max_reps=5)


def test_l2_flusher_is_noop_on_cpu(cpu_target):
    f = L2Flusher(cpu_target)
    assert f.buf is None
    f()


def test_prime_rule_and_spin_length():
    from bench.timing import PRIME_LEAD, PRIME_MARGIN_S, needs_prime, prime_lead_s, spin_cycles

    # a 2 µs kernel behind a 20 µs launch is host-bound: prime; a 5 ms GEMM is not
    assert needs_prime(2e-6, 20e-6) and not needs_prime(5e-3, 20e-6)
    lead = prime_lead_s(20e-6)
    assert lead == pytest.approx(PRIME_LEAD * 20e-6 + PRIME_MARGIN_S) and lead > 20e-6
    assert spin_cycles(lead, 1.98e9) == math.ceil(lead * 1.98e9)
    assert spin_cycles(0.0, 1.98e9) == 0


def test_prime_is_ignored_on_cpu(cpu_target):
    clk = FakeClock([1_000_000] * 100)
    t = time_fn(clk.work, cpu_target, min_time_s=0, min_reps=5, max_reps=5, warmup=1, clock_ns=clk, prime=True)
    assert t.median_s == pytest.approx(1e-3) and t.clock == "perf_counter"


# -- on a GPU (ROOFLAB_TEST_DEVICE=cuda) ---------------------------------------------------------------------

@pytest.mark.gpu
def test_priming_times_the_device_not_the_launch(gpu_target):
    """A ~1 µs kernel launched through Python: unprimed, the events see the host's launch rate; primed, the
    device time. The primed median must be the smaller and stay near what a CUDA graph of the same calls
    gives per call."""
    import torch

    from bench.timing import per_call

    x = torch.ones(1024, device=gpu_target.torch_device)

    def tiny():  # a few small launches: host cost well above device cost
        for _ in range(8):
            x.add_(1.0)

    plain = time_fn(tiny, gpu_target, min_time_s=0.02)
    primed = time_fn(tiny, gpu_target, min_time_s=0.02, prime=True)
    assert primed.clock == "cuda_events (primed)" and plain.clock == "cuda_events"
    assert primed.median_s < plain.median_s
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        tiny()
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        for _ in range(10):
            tiny()
    graph = per_call(time_fn(g.replay, gpu_target, min_time_s=0.02), 10)
    assert primed.median_s < 3 * graph.median_s + 5e-6


@pytest.mark.gpu
def test_l2_flusher_reads_and_keeps_its_buffer(gpu_target):
    import torch

    f = L2Flusher(gpu_target)
    assert f.buf.numel() * 4 >= 2 * gpu_target.cache_bytes
    before = f.buf[:1024].clone()
    f()
    torch.cuda.synchronize()
    assert torch.equal(f.buf[:1024], before)  # a read-flush: the buffer is never rewritten
    assert time_fn(f, gpu_target, min_time_s=0.01).median_s > 0
