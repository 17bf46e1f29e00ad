import pytest
import torch

from bench import checks, timing
from bench import profile as prof
from bench.benchmarks import overhead
from bench.measurement import measured
from bench.profile import build as profile_build
from bench.registry import RunContext
from kernels import noop as kern


def _ctx(target):
    return RunContext(target=target, quick=True, min_time_s=0.002)


def test_triton_noop_writes_its_marker_in_the_interpreter():
    marker = checks.poison(torch.empty(3, dtype=torch.int32))
    kern.triton_noop(marker, 123_457)
    assert marker[0].item() == 123_457
    assert marker[1].item() == marker[2].item() == -0x5A5A  # one store, nothing else touched
    with pytest.raises(ValueError):
        kern.triton_noop(torch.empty(1, dtype=torch.float32), 3)


def test_torch_tiny_op_matches_reference():
    x = checks.random_tensor(kern.TINY_ELEMENTS, torch.float32, "cpu", checks.generator("cpu", 3))
    out = checks.poison(torch.empty_like(x))
    kern.torch_tiny(x, out)
    assert checks.compare(out, kern.torch_tiny_reference(x), checks.tolerance("float32"), "f64").passed


def test_cpu_run_times_dispatch_and_skips_gpu_only_costs(cpu_target):
    ctx = _ctx(cpu_target)
    pts = overhead.BENCHMARK.sweep(ctx)
    assert {(p["op"], p["impl"]) for p in pts} == {("launch", "torch"), ("launch", "triton"), ("sync", "torch")}
    recs = {(m.kernel, m.impl): m for p in pts for m in overhead.BENCHMARK.run_point(ctx, p)}
    tor = recs[("launch", "torch")]
    assert tor.status == "ok" and tor.mode == "cpu" and tor.check.passed
    # a CPU op dispatch costs between 100 ns and 1 ms on anything that runs these tests
    assert 1e-7 < tor.timing.median_s < 1e-3 and tor.timing.p10_s <= tor.timing.median_s <= tor.timing.p90_s
    tri = recs[("launch", "triton")]
    assert tri.mode == "interpreter" and tri.check.passed and tri.timing is None
    for key in (("graph_launch", "torch"), ("graph_launch", "triton")):
        assert recs[key].status == "skipped" and recs[key].reason == overhead.GRAPH_GPU_ONLY
    assert recs[("sync", "torch")].status == "skipped" and "GPU-only" in recs[("sync", "torch")].reason


def test_broken_kernels_yield_failures_not_numbers(cpu_target, monkeypatch):
    ctx = _ctx(cpu_target)
    monkeypatch.setattr(kern, "torch_tiny", lambda x, out: out)  # never writes: the poison stays
    monkeypatch.setattr(kern, "triton_noop", lambda marker, value: marker)
    for p in overhead.BENCHMARK.sweep(ctx)[:2]:
        launch = next(m for m in overhead.BENCHMARK.run_point(ctx, p) if m.kernel == "launch")
        assert launch.status == "failed" and launch.timing is None and not launch.timed


def _rec(kernel, impl, median_s, mode="cuda"):
    t = timing.summarize([median_s * 0.9, median_s, median_s * 1.2], "cuda_events")
    return measured(benchmark="overhead", kernel=kernel, impl=impl, params={"launches": 256}, mode=mode,
                    device="gpu", timing=t, how=overhead.HOW[kernel])


def test_summary_names_each_cost_and_keeps_the_spread():
    recs = [_rec("launch", "torch", 4.1e-6), _rec("host_launch", "torch", 3.2e-6),
            _rec("graph_launch", "torch", 1.3e-6), _rec("launch", "triton", 9.5e-6), _rec("sync", "torch", 1.8e-5)]
    s = overhead.BENCHMARK.summarize(recs, {})["overheads"]
    assert s["launch_s"] == 4.1e-6 and s["graph_launch_s"] == 1.3e-6 and s["sync_s"] == 1.8e-5
    assert s["host_launch_s"] == 3.2e-6 and s["triton_launch_s"] == 9.5e-6
    launch = next(c for c in s["costs"] if c["name"] == "launch" and c["impl"] == "torch")
    assert launch["p10_s"] < launch["median_s"] < launch["p90_s"]
    o = prof.Overheads.model_validate(s)
    assert o.launch_s == 4.1e-6 and len(o.costs) == 5


def test_summary_is_empty_without_records():
    assert overhead.BENCHMARK.summarize([], {}) == {}


def test_profile_from_cpu_run_carries_overheads(cpu_target):
    ctx = _ctx(cpu_target)
    recs = [m for p in overhead.BENCHMARK.sweep(ctx) for m in overhead.BENCHMARK.run_point(ctx, p)]
    run = prof.RunInfo(mode="cpu", mode_reason="test", benchmarks=["overhead"])
    p = profile_build.from_measurements(recs, profile_build.device_info(cpu_target), run)
    assert p.overheads is not None and p.overheads.launch_s > 0
    assert p.overheads.graph_launch_s is None and p.overheads.sync_s is None
    assert overhead.GRAPH_GPU_ONLY in p.overheads.notes
    again = prof.validate(p.model_dump(mode="json", exclude_none=True))
    assert again.overheads == p.overheads


class _Clock:
    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now


def test_time_host_divides_by_inner_and_counts_inner_calls_in_the_budget(cpu_target):
    clk = _Clock()

    def launch():
        clk.now += 3_000  # 3 µs per launch

    t = timing.time_host(launch, cpu_target, inner=100, min_time_s=0.003, min_reps=2, clock_ns=clk)
    assert t.median_s == pytest.approx(3e-6) and t.clock.startswith("perf_counter (host")
    assert t.n in (10, 11)  # ceil(0.003 s / (100 × 3 µs)), not 0.003 s / 3 µs = 1000 samples


def test_per_call_scales_every_time():
    t = timing.summarize([2e-3, 4e-3, 6e-3], "cuda_events")
    p = timing.per_call(t, 1000)
    assert p.median_s == pytest.approx(4e-6) and p.p10_s == pytest.approx(t.p10_s / 1000)
    assert p.n == t.n and p.spread == pytest.approx(t.spread)
    with pytest.raises(ValueError):
        timing.per_call(t, 0)


@pytest.mark.gpu
def test_gpu_graph_replay_is_cheaper_than_eager_launch(gpu_target):
    ctx = RunContext(target=gpu_target, quick=True, min_time_s=0.02)
    recs = {m.kernel: m for m in overhead.BENCHMARK.run_point(ctx, {"op": "launch", "impl": "torch", "launches": 256})}
    assert set(recs) == {"launch", "host_launch", "graph_launch"}
    assert all(m.status == "ok" and m.mode == "cuda" for m in recs.values()), [m.reason for m in recs.values()]
    assert recs["graph_launch"].check.reference.endswith("(graph replay)")
    assert recs["graph_launch"].timing.median_s < recs["launch"].timing.median_s
    assert 1e-7 < recs["launch"].timing.median_s < 1e-4  # microseconds per eager launch, not ms (or ns)


@pytest.mark.gpu
def test_gpu_triton_noop_in_a_graph_and_the_sync_round_trip(gpu_target):
    ctx = RunContext(target=gpu_target, quick=True, min_time_s=0.02)
    recs = {m.kernel: m for m in overhead.BENCHMARK.run_point(ctx, {"op": "launch", "impl": "triton", "launches": 64})}
    assert all(m.status == "ok" and m.mode == "cuda" for m in recs.values()), [m.reason for m in recs.values()]
    assert recs["graph_launch"].check.reference == "marker value written"  # the replayed graph wrote it
    (sync,) = overhead.BENCHMARK.run_point(ctx, {"op": "sync", "impl": "torch"})
    assert sync.status == "ok" and sync.timing.clock.startswith("perf_counter (host, synchronised")
    assert 1e-7 < sync.timing.median_s < 1e-3


# ---- the model's overhead term (bench/models.py decode_kernels, bench/roofline.py) ------------------------

def test_kernel_count_of_a_dense_preset():
    from bench import models

    m = models.resolve("llama-3.1-8b")  # 32 GQA layers, dense MLP
    k = models.DECODE_KERNELS
    per_layer = k["layer_norms"] + k["attention_gqa"] + k["dense_mlp"]
    assert per_layer == 10
    assert m.decode_kernels() == 32 * 10 + k["per_step"] == 326
    # tensor parallel adds two all-reduces per layer and the logits gather
    assert m.decode_kernels(tp=8) == 326 + 32 * 2 + 1


def test_kernel_count_of_moe_presets():
    from bench import models

    k = models.DECODE_KERNELS
    mix = models.resolve("mixtral-8x7b")  # 32 layers, all MoE, GQA, no shared expert
    assert mix.decode_kernels() == 32 * (2 + 5 + 8) + 6 == 486
    assert mix.decode_kernels(ep=8) == 486 + 32 * k["ep_all_to_all"]
    ds = models.resolve("deepseek-v3")  # 61 MLA layers: 3 dense, 58 MoE with one shared expert
    assert ds.decode_kernels() == 61 * (2 + 9) + 3 * 3 + 58 * (8 + 3) + 6 == 1324


def _h100(**update):
    return prof.resolve("spec:h100-sxm").model_copy(update=update)


def test_overhead_term_uses_the_profile_else_the_architecture_default():
    from bench import models, roofline

    m = models.resolve("llama-3.1-8b")
    # no architecture and no overheads: nothing to price the launches with
    unknown = _h100(device=_h100().device.model_copy(update={"architecture": None}))
    bare = roofline.Roofline(roofline.Hardware(unknown), m).step(1, 1024)
    assert bare.overhead_time_s == 0.0 and bare.kernels_per_step == 326
    assert bare.step_time_s == pytest.approx(max(bare.compute_time_s, bare.memory_time_s) + bare.comm_time_s)
    # the sheet alone: the Hopper default (profiles/defaults.json)
    sheet = roofline.Roofline(roofline.Hardware(_h100()), m).step(1, 1024)
    assert sheet.overhead_time_s == pytest.approx(326 * prof.default_cost("hopper", "launch_s").value_s)
    hw = roofline.Hardware(_h100(overheads=prof.Overheads(launch_s=4e-6, graph_launch_s=1.5e-6)))
    eager = roofline.Roofline(hw, m).step(1, 1024)
    assert eager.overhead_time_s == pytest.approx(326 * 4e-6)
    assert eager.step_time_s == pytest.approx(bare.step_time_s + 326 * 4e-6)
    graphs = roofline.Roofline(hw, m, roofline.Deployment(cuda_graphs=True)).step(1, 1024)
    assert graphs.overhead_time_s == pytest.approx(326 * 1.5e-6)
    row = eager.as_dict()
    assert row["overhead_time_s"] == eager.overhead_time_s and "load_time_s" in row
    # a launch-bound step says so
    slow = roofline.Roofline(roofline.Hardware(_h100(overheads=prof.Overheads(launch_s=1e-3))), m).step(1, 1024)
    assert slow.bound == "overhead"


def test_tp_all_reduce_uses_the_measured_alpha_beta_fit():
    from bench import models, roofline

    m = models.resolve("llama-3.1-70b")
    fit = prof.AllReduceFit(world_size=8, backend="nccl", alpha_s=20e-6, beta_Bps=150e9, n_points=9, min_bytes=8,
                            max_bytes=1 << 28, median_rel_err=0.03, max_rel_err=0.08)
    card = _h100(interconnect=prof.Interconnect(all_reduce=prof.AllReduce(fits=[fit])))
    s = roofline.Roofline(roofline.Hardware(card, use_curves=True), m, roofline.Deployment(tp=8)).step(4, 1024)
    msg = 4 * m.hidden * 2  # batch × hidden × bf16 bytes
    assert s.tp_comm_time_s == pytest.approx(m.layers * 2 * (20e-6 + msg / 150e9))
    # another world size has no fit: the link formula, with the architecture's default small-message latency over
    # that link (this profile's interconnect has no NVLink rate, so 4 GPUs talk over PCIe)
    hw = roofline.Hardware(card, use_curves=True)
    s4 = roofline.Roofline(hw, m, roofline.Deployment(tp=4)).step(4, 1024)
    bw, link = hw.link(4)
    latency = prof.default_cost("hopper", "all_reduce_latency_pcie_s").value_s
    assert "PCIe" in link and s4.tp_comm_time_s == pytest.approx(m.layers * 2 * (latency + 2 * 3 / 4 * msg / bw))


def test_load_time_over_the_host_link():
    from bench import models, roofline

    m = models.resolve("llama-3.1-8b")
    spec = roofline.Roofline(roofline.Hardware(_h100()), m)
    link = _h100().host_link
    assert spec.step(1, 1).load_time_s == pytest.approx(spec.resident_bytes_per_gpu() / link.theoretical_Bps)
    fit = prof.HostLinkFit(direction="h2d", memory="pinned", alpha_s=1e-5, beta_Bps=52e9, n_points=10, min_bytes=4096,
                           max_bytes=1 << 30, median_rel_err=0.01, max_rel_err=0.04)
    measured = roofline.Roofline(roofline.Hardware(_h100(host_link=link.model_copy(update={"fits": [fit]}))), m)
    assert measured.step(1, 1).load_time_s == pytest.approx(1e-5 + measured.resident_bytes_per_gpu() / 52e9)
    assert roofline.Roofline(roofline.Hardware(_h100(host_link=None)), m).step(1, 1).load_time_s is None
