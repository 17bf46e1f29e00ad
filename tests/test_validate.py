"""`rooflab validate`: the table logic (errors, medians, bounds, layer scaling) with fake timings, the reduced
model's predictions by hand, and the decode step of a tiny transformer checked against float64 on the CPU."""
import dataclasses
import json
import math

import pytest
import torch
from _cli import rooflab

from bench import models as M
from bench import profile as P
from bench import roofline as R
from bench import validate as V
from bench.registry import RunContext
from bench.timing import summarize as timing_of
from bench.validate import check, point, transformer

H100 = P.resolve("spec:h100-sxm")
BW, F = 3.35e12, 989.4e12  # the H100 SXM sheet: HBM3 bandwidth, bf16 dense FLOP/s
BF16 = V.deployment("bfloat16", cuda_graphs=False)

# tiny shapes with the structure of the presets (GQA 2, gated MLP / top-2 of 4 experts), odd vocabulary
TINY_DENSE = M.ModelSpec(name="tiny-dense", family="dense", layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16,
                         ffn_intermediate=96, vocab=101)
TINY_MOE = M.ModelSpec(name="tiny-moe", family="moe", layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16,
                       moe_intermediate=32, routed_experts=4, experts_per_token=2, vocab=101)


def fake_timing(median_s: float):
    return timing_of([median_s * f for f in (0.98, 0.99, 1.0, 1.01, 1.02)], "fake")


def _measured_cpu(overhead_s: float | None = None) -> P.Profile:
    dev = P.DeviceInfo(name="test cpu", backend="cpu", memory_bytes=16 * 10**9, compute_units=2,
                       cache_bytes=32 * 2**20)
    data = {"name": "test cpu", "device": dev,
            "peaks": P.Peaks(memory_bandwidth_Bps=20e9, matmul_flops={"float32": 2e11}),
            "curves": P.Curves(hbm=[P.HBMPoint(op="read", impl="torch", dtype="float32", working_set_bytes=ws,
                                               bandwidth_Bps=bw, median_s=1.0, p10_s=1.0, p90_s=1.0,
                                               beyond_cache=True)
                                    for ws, bw in ((1 << 20, 18e9), (4 << 20, 20e9))])}
    if overhead_s is not None:
        data["overheads"] = P.Overheads(launch_s=overhead_s)
    return P.Profile(**data)


# ------------------------------------------------------------------------------------------ the table logic
def test_rel_error_sign_and_missing_values():
    assert V.rel_error(1.2, 1.0) == pytest.approx(0.2)
    assert V.rel_error(0.5, 1.0) == pytest.approx(-0.5)  # optimistic: the model predicts a faster step
    assert V.rel_error(None, 1.0) is None and V.rel_error(1.0, None) is None and V.rel_error(1.0, 0.0) is None


def test_row_errors_from_fake_timings():
    m = V.reduced_model(M.resolve("llama-3.1-8b"), 2)
    pred = V.predict(R.Hardware(H100), m, BF16, 1, 4096)
    measured = pred.step_time_s * 1.25  # the step took 25% longer than the sheet says
    row = V.make_row(m.name, 2, 1, 4096, measured=fake_timing(measured), pred=pred, spec=pred)
    assert row.measured_s == pytest.approx(measured) and row.reps == 5
    assert row.measured_p10_s < row.measured_s < row.measured_p90_s
    assert row.error == pytest.approx(1 / 1.25 - 1) == row.spec_error
    # a spec sheet has no overheads: the architecture's default launch cost stands in
    assert row.overhead_s == pytest.approx(pred.kernels_per_step * P.default_cost("hopper", "launch_s").value_s)
    assert row.error_no_overhead < row.error < 0
    assert row.bound == row.spec_bound == "memory"
    assert row.weight_bytes == pytest.approx(pred.weight_bytes) and row.kernels_per_step == pred.kernels_per_step
    # a failed or skipped point keeps its predictions, but no time and no error
    bad = V.make_row(m.name, 2, 1, 4096, measured=fake_timing(1.0), pred=pred, status="failed", reason="check")
    assert bad.measured_s is None and bad.error is None and bad.predicted_s == pred.step_time_s
    assert json.loads(json.dumps(row.as_dict()))["error"] == pytest.approx(row.error)


def test_errors_with_and_without_the_overhead_term():
    m = V.reduced_model(TINY_DENSE, 2)
    hw = R.Hardware(_measured_cpu(overhead_s=1e-3))
    pred = V.predict(hw, m, V.deployment("float32", False), 1, 16)
    assert pred.overhead_time_s == pytest.approx(m.decode_kernels() * 1e-3)
    assert pred.bound == "overhead"  # kernels of a tiny model cost more than its bytes
    row = V.make_row(m.name, 2, 1, 16, measured=fake_timing(pred.step_time_s), pred=pred)
    assert row.error == pytest.approx(0.0, abs=1e-12)
    no_ovh = pred.step_time_s - pred.overhead_time_s
    assert row.predicted_no_overhead_s == pytest.approx(no_ovh)
    assert row.error_no_overhead == pytest.approx(no_ovh / pred.step_time_s - 1)
    s = V.summarize([row])
    assert s["median_abs_error_no_overhead"] == pytest.approx(abs(row.error_no_overhead))
    assert s["bounds"] == {"overhead": 1}


def test_the_phased_prediction_is_reported_beside_the_single_roofline():
    m = V.reduced_model(TINY_DENSE, 2)
    hw = R.Hardware(_measured_cpu(overhead_s=1e-6))
    pred = V.predict(hw, m, V.deployment("float32", False), 4, 64)
    phased = pred.phased_roof_s + pred.comm_time_s + pred.overhead_time_s
    assert phased >= pred.step_time_s - 1e-15  # a sum of per-phase maxima is never below the max of the sums
    row = V.make_row(m.name, 2, 4, 64, measured=fake_timing(2 * phased), pred=pred)
    assert row.predicted_phases_s == pytest.approx(phased)
    assert row.error_phases == pytest.approx(-0.5) and row.error == pytest.approx(pred.step_time_s / (2 * phased) - 1)
    assert V.summarize([row])["median_abs_error_phases"] == pytest.approx(0.5)


def test_counted_kernels_replace_the_census():
    m = V.reduced_model(TINY_DENSE, 2)
    hw = R.Hardware(_measured_cpu(overhead_s=1e-6))
    census = V.predict(hw, m, V.deployment("float32", False), 1, 16)
    counted = V.predict(hw, m, V.deployment("float32", False, kernels=100), 1, 16)
    assert census.kernels_per_step == m.decode_kernels() == 2 * 10 + 6 and counted.kernels_per_step == 100
    assert counted.overhead_time_s == pytest.approx(100e-6)
    assert counted.step_time_s - census.step_time_s == pytest.approx((100 - 26) * 1e-6)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(R.RooflineError, match="kernels_per_step"):
            V.predict(hw, m, V.deployment("float32", False, kernels=bad), 1, 16)


def test_kernel_count_needs_a_gpu(cpu_target):
    assert V.count_kernels(cpu_target, lambda: torch.ones(3) + 1) is None  # no CUDA activity on a CPU


def test_summary_medians_counts_and_models():
    def row(model, err, spec_err=None, status="ok", drift=None):
        r = V.Row(model=model, layers=1, batch=1, context=1, status=status)
        if status == "ok":
            r.measured_s, r.error, r.spec_error, r.bound, r.drift = 1.0, err, spec_err, "memory", drift
        return r

    rows = [row("a", 0.1, 0.5), row("a", -0.3, -0.6), row("a", 0.2, 0.55), row("b", -0.05),
            row("b", None, status="failed"), row("b", None, status="skipped")]
    s = V.summarize(rows)
    assert s["points"] == 6 and s["measured"] == 4 and s["failed"] == 1 and s["skipped"] == 1
    assert s["median_abs_error"] == pytest.approx(0.15)  # |0.1|, |-0.3|, |0.2|, |-0.05| → (0.1 + 0.2) / 2
    assert s["max_abs_error"] == pytest.approx(0.3) and s["optimistic"] == 2
    assert s["median_abs_spec_error"] == pytest.approx(0.55)  # only the points with a spec prediction
    assert s["median_abs_error_no_overhead"] is None  # no overhead term in any row
    assert s["by_model"]["a"]["median_abs_error"] == pytest.approx(0.2)
    assert s["by_model"]["b"]["median_abs_spec_error"] is None and s["by_model"]["b"]["failed"] == 1
    assert "unsteady" not in s
    cpu = [row("c", 0.1, drift=0.0), row("c", 0.9, drift=-0.5), row("c", 0.3, drift=0.1), row("c", 0.5)]
    for r, rates in zip(cpu, (0.0, -0.3, 0.05, 0.0)):
        r.rates_drift = rates  # the rates the prediction reads moved by 30% across the second point
    cpu[0].drift = 0.45  # the probe moved, the rates did not: reported, not counted
    cpu[3].measured_p10_s, cpu[3].measured_p90_s = 1.0, 1.3  # the step itself spread beyond NOISY_SPREAD
    s = V.summarize(cpu)
    assert s["unsteady"] == 2 and s["median_abs_error_steady"] == pytest.approx(0.2)
    assert [V.unsteady(r) for r in cpu] == [False, True, False, True]
    assert V.summarize([])["median_abs_error"] is None


def test_bound_labels_follow_the_model():
    m = V.reduced_model(M.resolve("llama-3.1-8b"), 4)
    hw = R.Hardware(H100)
    small, big = V.predict(hw, m, BF16, 1, 512), V.predict(hw, m, BF16, 4096, 512)
    assert small.bound == "memory" and big.bound == "compute"
    rows = [V.make_row(m.name, 4, p.batch, 512, measured=fake_timing(p.step_time_s), pred=p) for p in (small, big)]
    assert V.summarize(rows)["bounds"] == {"compute": 1, "memory": 1}


# ------------------------------------------------------------------------------------------- layer scaling
def test_reduced_model_keeps_shapes_and_scales_with_layers():
    full = M.resolve("llama-3.1-8b")
    two, four = V.reduced_model(full, 2), V.reduced_model(full, 4)
    assert (two.layers, two.hidden, two.heads, two.kv_heads, two.vocab) == (2, 4096, 32, 8, 128256)
    assert two.name == "llama-3.1-8b (2 of 32 layers)" and two.total_params is None
    per_layer = full.attention_params_per_layer + 3 * 4096 * 14336
    assert four.dense_params - two.dense_params == 2 * per_layer  # the LM head is in both
    assert two.dense_params == 2 * per_layer + 128256 * 4096
    assert two.kv_bytes(1000) * 16 == full.kv_bytes(1000)
    assert two.decode_kernels() == 2 * (2 + 5 + 3) + 6
    hw = R.Hardware(H100)
    s2, s4 = V.predict(hw, two, BF16, 1, 2048), V.predict(hw, four, BF16, 1, 2048)
    kv_layer = 2048 * 2 * 8 * 128 * 2
    assert s4.memory_time_s - s2.memory_time_s == pytest.approx(2 * (per_layer * 2 + kv_layer) / BW)
    assert s2.kv_bytes == 2 * kv_layer  # batch 1 × 2048 tokens (the new one included) × 2 layers
    assert s2.flops == pytest.approx(2 * two.matmul_params_per_token + two.attention_flops_per_token(2048))


def test_reduced_moe_keeps_a_moe_layer_and_refuses_bad_layer_counts():
    ds = M.resolve("deepseek-v3")
    r = V.reduced_model(ds, 2)
    assert r.dense_layers_first == 1 and r.moe_layers == 1 and r.routed_experts == 256
    q = V.reduced_model(M.resolve("qwen3-30b-a3b"), 1)
    assert q.moe_layers == 1 and q.experts_touched(1) == pytest.approx(8)
    for bad in (0, 49, True):
        with pytest.raises(V.ValidateError):
            V.reduced_model(M.resolve("qwen3-30b-a3b"), bad)


def test_unsupported_architectures_are_refused_in_one_line():
    assert V.supported(M.resolve("llama-3.1-8b")) is None and V.supported(M.resolve("mixtral-8x7b")) is None
    assert "MLA" in V.supported(M.resolve("deepseek-v3"))
    assert "sliding-window" in V.supported(M.resolve("gpt-oss-120b"))
    with pytest.raises(V.ValidateError, match="MLA"):
        V.parse_models("llama-3.1-8b,kimi-k2")
    with pytest.raises(V.ValidateError, match="unknown model"):
        V.parse_models("no-such-model")
    assert [m.name for m in V.parse_models(None)] == list(V.DEFAULT_MODELS)


def test_spec_profile_choice(cpu_target):
    spec, note = V.spec_profile_for(cpu_target, None)
    assert spec is None and "no spec sheet exists for a CPU" in note
    spec, note = V.spec_profile_for(cpu_target, "h200")
    assert spec.card == "h200" and "--spec" in note
    with pytest.raises(V.ValidateError):
        V.spec_profile_for(cpu_target, "no-such-card")


# ------------------------------------------------------------------------------------ the step (CPU, tiny)
@pytest.mark.parametrize("spec", [TINY_DENSE, TINY_MOE], ids=["dense", "moe"])
@pytest.mark.parametrize("grouped", [True, False], ids=["grouped_mm", "loop"])
def test_tiny_step_matches_float64(spec, grouped):
    if grouped and not V.grouped_mm_available():
        pytest.skip("torch has no _grouped_mm")
    g = torch.Generator().manual_seed(3)
    net = V.Transformer(spec, "float32", "cpu", g, use_grouped_mm=grouped)
    st = net.new_state(3, 37, g)  # 3 sequences, 36 cached tokens + the new one
    net.step(st, on_gpu=False)
    rows = torch.randperm(spec.vocab, generator=g)[:50]
    ref = V.reference(net, st, list(net.routes), rows)
    chk = V.check_step(st, ref, V.TOLERANCE["float32"])
    assert ref.problem == "" and chk.passed, chk.detail
    assert len(ref.parts) == spec.layers * (3 + spec.is_moe)  # attention, new K, new V (+ experts) per layer
    assert st.out.tokens.shape == (3,) and torch.equal(st.out.tokens, st.out.logits.argmax(-1))


def test_a_wrong_step_fails_its_check():
    g = torch.Generator().manual_seed(4)
    net = V.Transformer(TINY_MOE, "float32", "cpu", g)
    st = net.new_state(2, 20, g)
    net.step(st, on_gpu=False)
    rows = torch.arange(TINY_MOE.vocab)
    ref = V.reference(net, st, list(net.routes), rows)
    st.k_cache[1][:, st.pos].add_(1.0)  # the new K written wrong in layer 1
    chk = V.check_step(st, ref, V.TOLERANCE["float32"])
    assert not chk.passed and "layer 1 new K" in chk.detail
    # experts chosen far from the router's top-k: a routing bug, not a near-tie
    xn0 = check.rms64(st.x.double() + ref.parts["layer 0 attention"] @ net.layers[0].wo.double().t())
    worst = torch.topk(-(xn0 @ net.layers[0].experts.router.double().t()), 2).indices  # the two lowest logits
    assert "layer 0" in V.reference(net, st, [worst, net.routes[1]], rows).problem
    st.out.logits[0, 5] = float("nan")
    assert "not finite" in V.check_step(st, ref, 1.0).detail


def test_measure_point_checks_then_times(cpu_target):
    ctx = RunContext(target=cpu_target, quick=True, min_time_s=0.001)
    net = V.Transformer(TINY_MOE, "float32", "cpu", torch.Generator().manual_seed(5))
    pr = V.measure_point(ctx, net, 2, 33, seed=7)
    assert pr.status == "ok" and pr.timing is not None and pr.timing.n >= 5 and not pr.graphs
    assert pr.check_rel_err < pr.check_tol == V.TOLERANCE["float32"]


def test_validate_end_to_end_on_the_cpu(cpu_target, monkeypatch):
    seen = []
    res = V.validate(cpu_target, [TINY_DENSE, TINY_MOE], measured=_measured_cpu(overhead_s=2e-6),
                     profile_label="fake", layers=1, batches=[1, 3], contexts=[17], min_time_s=0.001,
                     on_point=seen.append)
    assert len(res.rows) == len(seen) == 4 and all(r.status == "ok" for r in res.rows)
    assert {r.model for r in res.rows} == {"tiny-dense (1 of 2 layers)", "tiny-moe (1 of 2 layers)"}
    for r in res.rows:
        assert r.measured_s > 0 and r.predicted_s > 0 and r.error == pytest.approx(r.predicted_s / r.measured_s - 1)
        assert r.spec_predicted_s is None and r.drift is not None and r.layers == 1
    assert res.spec is None and any("no spec sheet exists for a CPU" in n for n in res.notes)
    assert res.summary["measured"] == 4 and res.summary["median_abs_error"] is not None
    assert res.summary["median_abs_error_no_overhead"] is not None
    assert [r.moe_path for r in res.rows] == [None, None] + ["grouped_mm" if V.grouped_mm_available()
                                                             else "per-expert loop"] * 2
    doc = json.loads(json.dumps(res.as_dict(), allow_nan=False))
    assert doc["mode"] == "cpu" and doc["dtype"] == "float32" and len(doc["rows"]) == 4


def test_points_that_do_not_fit_are_skipped_with_their_prediction(cpu_target, monkeypatch):
    small = dataclasses.replace(cpu_target, memory_bytes=3 * 2**30)  # 2.1 GB for weights, cache and checks
    res = V.validate(small, [TINY_DENSE], measured=_measured_cpu(), profile_label="fake", batches=[1, 10**6],
                     contexts=[17], min_time_s=0.001)
    assert [r.status for r in res.rows] == ["ok", "skipped"]
    assert "beside the weights" in res.rows[1].reason and res.rows[1].predicted_s > 0


# -------------------------------------------------------------------- interleaving and conditions (CPU)
def _with_curves(prof: P.Profile, model: M.ModelSpec, grid, ms=(1, 2, 4), read_bytes: int | None = None) -> P.Profile:
    """``prof`` with fp32 matmul points for every weight GEMM of ``model`` at ``ms``, SDPA decode points of its
    head configuration at ``grid`` and (``read_bytes``) a torch read point of that working set."""
    mm = [P.MatmulPoint(family="llm", M=m_, N=g.n, K=g.k, dtype="float32", impl="torch", library="CPU BLAS",
                        flops=1e9, median_s=2.0 * m_ * g.n * g.k / 1e9, p10_s=1.0, p90_s=1.0,
                        bytes=(m_ * g.k + g.k * g.n + m_ * g.n) * 4, efficiency=0.1)
          for g in model.matmuls() for m_ in ms]
    dec = [P.DecodePoint(model=model.name, impl="torch_sdpa", layout="contiguous", dtype="float32", batch=b,
                         context=c, q_heads=model.heads, kv_heads=model.kv_heads, head_dim=model.head_dim,
                         bytes=2 * b * c * model.kv_heads * model.head_dim * 4, bandwidth_Bps=1e9, flops=1e9,
                         median_s=1.0, p10_s=1.0, p90_s=1.0, time_per_token_s=1.0) for b, c in grid]
    hbm = list(prof.curves.hbm)
    if read_bytes:
        hbm.append(P.HBMPoint(op="read", impl="torch", dtype="float32", working_set_bytes=read_bytes,
                              bandwidth_Bps=20e9, median_s=read_bytes / 20e9, p10_s=1.0, p90_s=1.0, beyond_cache=True))
    return prof.model_copy(update={"curves": prof.curves.model_copy(update={"matmul": mm, "decode": dec, "hbm": hbm})})


def test_refreshed_profile_replaces_only_the_points_given():
    prof = _with_curves(_measured_cpu(), TINY_DENSE, [(2, 9)])
    a, b = prof.curves.matmul[0], prof.curves.decode[0]
    times = {("matmul", a.dtype, a.impl, a.M, a.N, a.K): 0.5,
             ("decode", b.impl, b.layout, b.dtype, b.batch, b.context, b.q_heads, b.kv_heads, b.head_dim): 0.25}
    read = V.read_point(prof)
    new = V.refreshed(prof, times, 10e9, read)
    assert new.curves.matmul[0].flops == pytest.approx(2 * a.M * a.N * a.K / 0.5)
    assert new.curves.matmul[1:] == prof.curves.matmul[1:]
    assert new.curves.decode[0].bandwidth_Bps == pytest.approx(b.bytes / 0.25)
    assert [c.bandwidth_Bps for c in new.curves.hbm] == [18e9, 10e9]  # the probe's point: the largest read
    assert read.working_set_bytes == 4 << 20


def test_each_point_is_predicted_from_its_rates_remeasured_beside_it(cpu_target):
    """A/B/A: the curve points the prediction reads (every GEMM shape at the step's M, the SDPA point) are timed
    again before and after the step, and the prediction is made from them; the profile's own prediction stays
    beside it, and the conditions say what the sweep covered."""
    grid = [(2, 9)]
    prof = _with_curves(_measured_cpu(), TINY_DENSE, grid)
    res = V.validate(cpu_target, [TINY_DENSE], measured=prof, profile_label="fake", layers=1, batches=[2],
                     contexts=[9], min_time_s=0.001)
    (r,) = res.rows
    assert r.status == "ok" and r.profile_predicted_s is not None and r.predicted_s != r.profile_predicted_s
    assert r.rates_remeasured == 6 and r.rates_kept == 0  # 5 GEMMs at M = 2, and the SDPA point
    assert r.drift is not None and r.rates_drift is not None and r.probe_Bps > 0
    assert r.profile_error == pytest.approx(r.profile_predicted_s / r.measured_s - 1)
    assert res.summary["median_abs_profile_error"] == pytest.approx(abs(r.profile_error))
    c = res.conditions
    assert c["sweep"]["matmul_shapes"] == 5 and not c["sweep"]["matmul_missing"] and c["sweep"]["matmul_M"] == [1, 4]
    assert c["sweep"]["decode_points"] == 1 and not c["sweep"]["decode_missing"]
    assert c["measured"] == 1 and c["probe_bytes"] == 4 << 20 and c["probe_min_Bps"] <= c["probe_max_Bps"]
    assert len(c["load_average_start"]) == 3 and c["cpus"] >= 1 and 0 <= c["others_cpu_share"] <= 1
    assert not any("not measured" in n for n in res.prediction_notes)


def test_sweep_coverage_names_what_the_profile_lacks():
    llama = M.resolve("llama-3.1-8b")
    prof = _with_curves(_measured_cpu(), llama, [(1, 512)])
    cov = V.sweep_coverage(prof, [llama, TINY_DENSE], "float32", [(1, 512), (4, 512)], on_gpu=False)
    assert cov["matmul_shapes"] == 10 and len(cov["matmul_missing"]) == 5
    assert all(m.startswith("tiny-dense ") for m in cov["matmul_missing"])
    assert cov["decode_points"] == 4 and cov["decode_missing"] == [
        "llama-3.1-8b batch 4 context 512", "tiny-dense batch 1 context 512", "tiny-dense batch 4 context 512"]
    assert V.sweep_coverage(prof, [llama], "bfloat16", [], on_gpu=True)["matmul_missing"]  # another dtype


STREAMER = """
import sys, torch
torch.set_num_threads(2)
a = torch.ones(1 << 26); b = torch.empty_like(a)
b.copy_(a); print("ready", flush=True)
while True:
    b.copy_(a); a.copy_(b)
"""


def test_a_memory_streaming_process_beside_a_point_flags_it(cpu_target, monkeypatch):
    """Two processes streaming memory on every core start after the first pass over the rates and run through
    the rest of the point: the later passes come out slower, and the point must be flagged unsteady. (A mechanism
    test: the load it adds halves this process's share of the cores and the memory bus, far past DRIFT_LIMIT.)"""
    import subprocess
    import sys

    procs: list = []
    passes: list = []
    real_sample = V.PointRates.sample

    def sample(self, st):
        real_sample(self, st)
        passes.append(len(self.passes))
        if len(self.passes) == 1:
            for _ in range(2):
                p = subprocess.Popen([sys.executable, "-c", STREAMER], stdout=subprocess.PIPE, text=True)
                procs.append(p)
                assert p.stdout.readline().strip() == "ready"

    monkeypatch.setattr(V.PointRates, "sample", sample)
    prof = _with_curves(_measured_cpu(), TINY_DENSE, [(2, 9)], read_bytes=8 * cpu_target.cache_bytes)
    try:
        res = V.validate(cpu_target, [TINY_DENSE], measured=prof, profile_label="fake", layers=1, batches=[2],
                         contexts=[9], min_time_s=0.05)
    finally:
        for p in procs:
            p.kill()
    (r,) = res.rows
    assert passes == [1, 2, 3, 4]  # before the warm-up, between the repetitions, after them
    assert r.status == "ok" and V.unsteady(r) and r.rates_drift > V.DRIFT_LIMIT, (r.drift, r.rates_drift)
    assert r.drift < 0  # the probe saw the bus taken as well
    assert res.summary["unsteady"] == 1 and res.conditions["unsteady"] == 1
    assert any("the machine moved while some points ran" in n for n in res.notes)


# ------------------------------------------------------------------------------ order, budget, interruption
def test_point_order_is_coarse_to_fine():
    grid = V.point_order([256, 1, 8, 64], [32768, 512, 4096])
    assert sorted(grid) == [(b, c) for b in (1, 8, 64, 256) for c in (512, 4096, 32768)]
    assert grid[0] == (256, 32768)  # the largest first: where memory runs out
    assert set(grid[:4]) == {(256, 32768), (1, 32768), (256, 512), (1, 512)}  # the corners before the middle
    assert V.point_order([3], [7]) == [(3, 7)]


class _FakeClock:
    """A clock that moves only when a (fake) point is measured: budget decisions become exact."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _fake_points(monkeypatch, clock=None, step_s: float = 1.0, interrupt_at: int | None = None):
    calls = []

    def fake(ctx, net, batch, context, seed, sample=None):
        calls.append((net.spec.name, batch, context))
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt("interrupted (SIGTERM)")
        if clock is not None:
            clock.t += step_s
        return V.PointResult("ok", timing=fake_timing(1e-3), check_rel_err=0.0, check_tol=1e-4)

    monkeypatch.setattr(point, "measure_point", fake)
    return calls


def test_a_budget_skips_what_would_not_fit_and_shares_it_between_models(cpu_target, monkeypatch):
    clock = _FakeClock()
    calls = _fake_points(monkeypatch, clock)
    seen = []
    # 2.5 s for points (the reserve is kept for writing): each model gets half of what is left when it starts;
    # a point takes 1 s of the fake clock
    res = V.validate(cpu_target, [TINY_DENSE, TINY_MOE], measured=_measured_cpu(), profile_label="fake", layers=1,
                     batches=[1, 2], contexts=[9, 17], budget_s=V.BUDGET_RESERVE_S + 2.5, clock=clock,
                     checkpoint=seen.append)
    assert len(calls) == 2 and {c[0] for c in calls} == {r.model for r in res.rows}  # one point of each model
    assert len(res.rows) == 8 and [r.status for r in res.rows].count("ok") == 2
    skipped = [r for r in res.rows if r.status == "skipped"]
    assert len(skipped) == 6 and all(r.reason.startswith("budget") and r.predicted_s > 0 for r in skipped)
    assert [(r.batch, r.context) for r in res.rows[:4]] == [(1, 9), (1, 17), (2, 9), (2, 17)]  # grid order
    assert res.complete and res.stopped is None and res.summary["skipped"] == 6
    assert len(seen) == 8 and not any(p.complete for p in seen)  # a checkpoint after every row
    assert [len(p.rows) for p in seen] == list(range(1, 9))
    assert all(r.wall_s == 1.0 for r in res.rows if r.status == "ok")


def test_an_interrupt_keeps_what_was_measured(cpu_target, monkeypatch):
    calls = _fake_points(monkeypatch, interrupt_at=3)
    res = V.validate(cpu_target, [TINY_DENSE, TINY_MOE], measured=_measured_cpu(), profile_label="fake", layers=1,
                     batches=[1, 2], contexts=[9])
    assert len(calls) == 3 and res.stopped == "interrupted (SIGTERM)" and not res.complete
    assert [r.status for r in res.rows] == ["ok", "ok", "skipped", "skipped"]
    assert all("interrupted (SIGTERM): not measured" in r.reason for r in res.rows[2:])


def test_weights_that_do_not_fit_are_never_allocated(cpu_target, monkeypatch):

    def no_build(*a, **k):
        raise AssertionError("the model must not be built")

    monkeypatch.setattr(transformer, "Transformer", no_build)
    small = dataclasses.replace(cpu_target, memory_bytes=2 * 2**30)  # 70%: less than the reference scratch alone
    res = V.validate(small, [TINY_DENSE], measured=_measured_cpu(), profile_label="fake", batches=[1, 2],
                     contexts=[9], min_time_s=0.001)
    assert [r.status for r in res.rows] == ["skipped", "skipped"]
    assert all("weights do not fit" in r.reason and r.predicted_s > 0 for r in res.rows)


def test_predictions_read_the_attention_kernel_the_step_runs():
    prof = _measured_cpu()

    def dec(impl, bw):
        return P.DecodePoint(model="tiny", impl=impl, layout="contiguous", dtype="float32", batch=2, context=64,
                             q_heads=4, kv_heads=2, head_dim=16, bytes=1, bandwidth_Bps=bw, flops=1e9, median_s=1.0,
                             p10_s=1.0, p90_s=1.0, time_per_token_s=1.0)

    prof = prof.model_copy(update={"curves": prof.curves.model_copy(
        update={"decode": [dec("torch_sdpa", 5e9), dec("triton", 50e9)]})})
    hw = R.Hardware(prof)
    m = V.reduced_model(TINY_DENSE, 1)
    cpu, _ = V.Predictor(hw, None, "float32", on_gpu=False).point(m, 2, 64, graphs=False)
    assert cpu.kv_time_s == pytest.approx(cpu.kv_bytes / 5e9)  # the CPU step runs SDPA, not the faster point


# ------------------------------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("args,needle", [
    (["--model", "deepseek-v3"], "MLA"),
    (["--model", "nope"], "unknown model"),
    (["--batch", "0"], "--batch"),
    (["--context", "x"], "--context"),
    (["--layers", "40", "--model", "llama-3.1-8b"], "--layers"),
    (["--profile", "h100-sxm", "--device", "cpu"], "spec sheet"),
    (["--spec", "nothing-like-it", "--device", "cpu"], "unknown profile"),
])
def test_bad_usage_is_one_line_exit_2(capsys, tmp_path, args, needle):
    code, _, err = rooflab(capsys, "validate", "--out", str(tmp_path / "v"), *args)
    assert code == 2, err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def _cli_files(tmp_path):
    """A measured CPU profile, the tiny model as a JSON file, and an output directory."""
    prof, model = tmp_path / "profile.json", tmp_path / "tiny.json"
    P.save(_measured_cpu(), prof)
    model.write_text(TINY_DENSE.model_dump_json())
    return prof, model, tmp_path / "v"


def test_cli_json_with_a_given_profile(capsys, tmp_path, monkeypatch):
    prof, model, out = _cli_files(tmp_path)
    code, stdout, err = rooflab(capsys, "validate", "--device", "cpu", "--model", str(model), "--profile", str(prof),
                                "--batch", "2", "--context", "9", "--min-time", "0.001", "--out", str(out), "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert len(doc["rows"]) == 1 and doc["rows"][0]["status"] == "ok" and doc["profile"] == str(prof)
    assert json.loads((out / "validation.json").read_text())["rows"][0]["batch"] == 2
    assert math.isfinite(doc["summary"]["median_abs_error"])
    code, _, err = rooflab(capsys, "validate", "--device", "cpu", "--model", str(model), "--profile", str(prof),
                           "--out", str(out))
    assert code == 2 and "--force" in err  # an earlier validation.json is not overwritten silently


def test_cli_prints_the_errors_and_the_conditions_a_claim_needs(capsys, tmp_path):
    prof, model, out = _cli_files(tmp_path)
    P.save(_with_curves(_measured_cpu(), TINY_DENSE, [(2, 9)]), prof)
    code, stdout, err = rooflab(capsys, "validate", "--device", "cpu", "--model", str(model), "--profile", str(prof),
                                "--batch", "2,3", "--context", "9", "--min-time", "0.001", "--out", str(out))
    assert code == 0, err
    text = " ".join(stdout.split())  # rich wraps long lines
    assert "median |error| over 2 points: measured profile (rates re-measured beside each step)" in text
    assert "the profile as measured before the run" in text and "points unsteady" in text
    assert "conditions: other processes used" in text and "of the CPUs during the points; load average" in text
    assert "memory-read probe (4 MiB)" in text
    assert "sweep: the profile measured 5 of the 5 weight GEMM shapes of these models (float32 at M 1–4) and 1 of " \
           "the 2 decode points of this grid; not measured: tiny-dense batch 3 context 9" in text


def test_cli_sigterm_writes_the_points_measured(capsys, tmp_path, monkeypatch):
    _fake_points(monkeypatch, interrupt_at=2)
    prof, model, out = _cli_files(tmp_path)
    code, stdout, err = rooflab(capsys, "validate", "--device", "cpu", "--model", str(model), "--profile", str(prof),
                                "--batch", "1,2,3", "--context", "9", "--out", str(out), "--json", "--budget", "600")
    assert code == 143 and "interrupted (SIGTERM)" in err and "Traceback" not in err
    doc = json.loads(stdout)
    assert doc["stopped"] == "interrupted (SIGTERM)" and doc["complete"] is False
    assert [r["status"] for r in doc["rows"]].count("ok") == 1 and len(doc["rows"]) == 3
    assert json.loads((out / "validation.json").read_text())["stopped"] == "interrupted (SIGTERM)"


# ------------------------------------------------------------------------------------------------- the GPU
@pytest.mark.gpu
def test_tiny_step_on_the_gpu_with_graphs(gpu_target):
    ctx = RunContext(target=gpu_target, quick=True, min_time_s=0.01)
    for spec in (TINY_DENSE, TINY_MOE):
        gen = torch.Generator(device=gpu_target.torch_device).manual_seed(1)
        net = V.Transformer(spec, V.step_dtype(gpu_target), gpu_target.torch_device, gen)
        pr = V.measure_point(ctx, net, 3, 300, seed=2)
        assert pr.status == "ok", pr.reason
        assert pr.graphs, pr.notes  # the whole step (Triton attention, grouped MoE GEMMs) replays from a graph
        assert pr.kernels is None or pr.kernels >= spec.layers * 5  # counted by the profiler
        if pr.kernel_times is not None:
            assert pr.kernel_times["attention"] > 0 and pr.kernel_times["kernels"] >= pr.kernel_times["matmul"]


@pytest.mark.gpu
def test_validate_on_the_gpu_with_a_synthetic_profile(gpu_target):
    res = V.validate(gpu_target, [TINY_DENSE, TINY_MOE], measured=_measured_cpu(overhead_s=2e-6),
                     profile_label="fake", layers=2, batches=[1, 4], contexts=[300], min_time_s=0.01)
    assert [r.status for r in res.rows] == ["ok"] * 4, [r.reason for r in res.rows]
    assert all(r.graphs and r.wall_s > 0 for r in res.rows) and res.complete
