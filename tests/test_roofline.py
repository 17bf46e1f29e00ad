"""The roofline model against hand-computed cases: floors, KV bytes, the optimal batch, MoE experts, capacity,
communication, and measured curves used in place of peaks."""
import math

import pytest

from bench import models, roofline
from bench import profile as prof

H100 = prof.resolve("spec:h100-sxm")
F, BW, MEM, PRICE = 989.4e12, 3.35e12, 80e9, 2.75  # the H100 SXM sheet: bf16 dense, HBM3, memory, $/GPU-hour
# the sheet has no fixed costs: the Hopper defaults of profiles/defaults.json stand in
LAUNCH = prof.default_cost("hopper", "launch_s").value_s
GRAPH_LAUNCH = prof.default_cost("hopper", "graph_launch_s").value_s
AR_LATENCY = prof.default_cost("hopper", "all_reduce_latency_scale_up_s").value_s


def rl(model: str, gpu=H100, **dep) -> roofline.Roofline:
    return roofline.Roofline(roofline.Hardware(gpu), models.resolve(model), roofline.Deployment(**dep))


def test_dense_batch_1_is_weights_over_bandwidth():
    m = models.resolve("llama-3.1-8b")
    weights = 2 * (m.params - 128256 * 4096)  # bf16, less the input embedding table (a lookup)
    s = rl("llama-3.1-8b").step(1, 0)
    assert s.memory_time_s == pytest.approx(weights / BW, rel=1e-12)
    assert s.compute_time_s == pytest.approx(2 * m.matmul_params_per_token / F, rel=1e-12)
    # a spec sheet prices no launches; the architecture's default does: kernels per step x eager launch cost
    assert s.overhead_time_s == pytest.approx(m.decode_kernels() * LAUNCH) and 0 < s.overhead_time_s < s.memory_time_s
    assert s.step_time_s == pytest.approx(s.memory_time_s + s.overhead_time_s) and s.bound == "memory"
    assert s.comm_time_s == 0 and s.weight_bytes == pytest.approx(weights) and s.kv_bytes == 0
    assert rl("llama-3.1-8b").latency_floor_s() == pytest.approx(weights / BW)  # ≈ 4.5 ms
    assert 4.4e-3 < weights / BW < 4.6e-3
    assert s.tokens_per_s == s.tokens_per_s_per_user == pytest.approx(1 / (weights / BW + s.overhead_time_s))
    assert s.usd_per_mtok == pytest.approx(PRICE / 3600 / s.tokens_per_s * 1e6)
    assert rl("llama-3.1-8b").hbm_read_time_s() == pytest.approx(MEM / BW)  # ≈ 24 ms: read all HBM once


def test_kv_read_for_every_sequence():
    m = models.resolve("llama-3.1-8b")
    s = rl("llama-3.1-8b").step(4, 1000)
    kv = 4 * 1000 * 131072
    assert s.kv_bytes == kv and s.kv_time_s == pytest.approx(kv / BW)
    assert s.memory_time_s == pytest.approx((2 * m.dense_params + kv) / BW)
    assert s.flops == pytest.approx(2 * 4 * m.matmul_params_per_token + 4 * 32 * 4 * 32 * 128 * 1000)


def test_optimal_batch_dense_is_ridge_point():
    r = rl("llama-3.1-8b")
    assert r.optimal_batch() == pytest.approx(F / BW, rel=1e-9)  # ≈ 295 on an H100 SXM
    assert r.step(1024, 0).bound == "compute" and r.step(256, 0).bound == "memory"


def test_optimal_batch_moe_by_hand():
    h200 = prof.resolve("spec:h200")
    f, bw = 989.4e12, 4.8e12
    m = models.resolve("qwen3-30b-a3b")
    b = rl("qwen3-30b-a3b", gpu=h200).optimal_batch()
    # compute = weight fetch: 2·B·active / F = touched(B)·2 / BW
    assert 2 * b * m.matmul_params_per_token / f == pytest.approx(m.weight_bytes_touched(b) / bw, rel=1e-9)
    # every expert is hit by then, so B* = (F/BW)·(weights read / active)
    assert b == pytest.approx(f / bw * (m.params - m.input_embedding_params) / m.matmul_params_per_token, rel=1e-6)
    # the rule of thumb (FLOP/s ÷ B/s) · (total ÷ active)
    assert b == pytest.approx(f / bw * m.total_params / m.active_params, rel=0.10)
    mix = rl("mixtral-8x7b", gpu=h200).optimal_batch()
    assert mix == pytest.approx(f / bw * 46.7 / 12.9, rel=0.02)


def test_moe_weights_follow_expected_experts():
    m = models.resolve("mixtral-8x7b")
    r = rl("mixtral-8x7b", gpu=prof.resolve("spec:h200"))
    e = 3 * 4096 * 14336
    for b, hit in ((1, 2.0), (2, 3.5), (3, 8 * (1 - 0.75 ** 3))):
        s = r.step(b, 0)
        assert s.experts_touched == pytest.approx(hit)
        assert s.weight_bytes == pytest.approx(2 * (m.dense_params + 32 * hit * e))


def test_max_batch_and_capacity_limits():
    m = models.resolve("llama-3.1-8b")
    free = MEM * 0.9 - 2 * m.params
    mb = rl("llama-3.1-8b").max_batch(8192)
    assert mb == math.floor(free / (8192 * 131072)) == 52
    r = rl("llama-3.1-8b")
    assert r.step(mb, 8192).fits and not r.step(mb + 1, 8192).fits
    big = rl("llama-3.1-405b")  # 812 GB of bf16 weights on one 80 GB card
    assert big.max_batch(1024) == 0 and big.step(1, 1024).fits is False
    fp8 = rl("llama-3.1-405b", tp=8, weight_dtype="fp8")
    m4 = models.resolve("llama-3.1-405b")
    free = MEM * 0.9 - m4.params / 8
    per_seq = 4096 * 2 * 126 * 8 * 128 * 2 / 8  # KV heads split 8 ways
    assert fp8.max_batch(4096) == math.floor(free / per_seq)
    half = rl("llama-3.1-8b", memory_utilization=0.5)
    assert half.max_batch(8192) == math.floor((MEM * 0.5 - 2 * m.params) / (8192 * 131072))


def test_tensor_parallel_all_reduce_by_hand():
    r = rl("llama-3.1-70b", tp=4)
    s = r.step(16, 0)
    msg = 16 * 8192 * 2  # tokens x hidden x bf16
    # 2 all-reduces a layer, each the default small-message latency + the ring's bytes over NVLink
    assert s.tp_comm_time_s == pytest.approx(80 * 2 * (AR_LATENCY + (2 * 3 / 4) * msg / 450e9))
    assert s.comm_time_s == s.tp_comm_time_s and s.ep_comm_time_s == 0
    m = models.resolve("llama-3.1-70b")
    assert s.weight_bytes == pytest.approx(2 * m.dense_params)  # 4 GPUs x a quarter each
    assert s.memory_time_s == pytest.approx(2 * m.dense_params / 4 / BW)
    assert s.step_time_s == pytest.approx(max(s.compute_time_s, s.memory_time_s) + s.comm_time_s + s.overhead_time_s)


def test_expert_parallel_all_to_all_by_hand():
    s = rl("mixtral-8x7b", ep=2).step(8, 0)
    per_rank = 8 / 2 * 2 * 4096 * 2  # tokens per GPU x top-k x hidden x bf16
    assert s.ep_comm_time_s == pytest.approx(32 * 2 * per_rank * (1 / 2) / 450e9)
    assert s.tp_comm_time_s == 0 and s.gpus == 2


def test_links_by_group_size():
    hw = roofline.Hardware(H100)
    assert hw.link(8) == (450e9, "scale-up")
    assert hw.link(16)[0] == 50e9  # beyond the NVLink domain: one 400 Gb/s NIC per GPU
    bw, name = roofline.Hardware(prof.resolve("spec:l40s")).link(4)
    assert bw == pytest.approx(16e9 * 128 / 130 / 8 * 16, rel=1e-4) and "PCIe" in name
    with pytest.raises(roofline.RooflineError, match="no link bandwidth for 16 GPUs"):
        roofline.Hardware(prof.resolve("spec:l4")).link(16)


def test_mla_latent_is_not_split_by_tp():
    h200 = prof.resolve("spec:h200")
    ds = rl("deepseek-v3", gpu=h200, tp=8).step(8, 4096)
    assert ds.kv_bytes == pytest.approx(8 * 8 * 4096 * 61 * 576 * 2)  # every GPU holds every sequence's latent
    ll = rl("llama-3.1-70b", gpu=h200, tp=8).step(8, 4096)
    assert ll.kv_bytes == pytest.approx(8 * 4096 * 327680)  # GQA: the 8 KV heads split over 8 GPUs


def test_compute_dtype_follows_weights_and_card():
    hopper = rl("deepseek-v3", gpu=prof.resolve("spec:h200"), ep=8)
    assert hopper.dense_dtype == "float8_e4m3fn"
    ampere = rl("deepseek-v3", gpu=prof.resolve("spec:a100-80gb-sxm"), ep=16)  # no fp8 tensor cores: bf16 matmuls
    assert ampere.dense_dtype == "bfloat16" and any("compute as bfloat16" in n for n in ampere.hw.notes)
    blackwell = rl("gpt-oss-120b", gpu=prof.resolve("spec:b200"))
    assert (blackwell.dense_dtype, blackwell.expert_dtype) == ("bfloat16", "float4_e2m1fn")


def test_bad_deployments():
    for kw, msg in [(dict(ep=2), "dense"), (dict(tp=0), "tp must"), (dict(tp=2, gpus=3), "multiple"),
                    (dict(kv_dtype="fp7"), "unknown dtype"), (dict(memory_utilization=1.5), "memory_utilization")]:
        with pytest.raises(roofline.RooflineError, match=msg):
            rl("llama-3.1-8b", **kw)
    with pytest.raises(roofline.RooflineError, match="more than"):
        rl("mixtral-8x7b", ep=16)


def test_prefill_by_hand():
    m = models.resolve("llama-3.1-8b")
    pf = rl("llama-3.1-8b").prefill(4096)
    flops = 2 * 4096 * m.matmul_params_per_token + 4096 * m.attention_flops_per_token(2048)
    assert pf["compute_time_s"] == pytest.approx(flops / F)
    assert pf["bound"] == "compute" and pf["time_s"] == pytest.approx(flops / F)


# ------------------------------------------------------------------------------------------ measured curves
def _measured(curves: bool = True) -> prof.Profile:
    dev = prof.DeviceInfo(name="NVIDIA H100 80GB HBM3", backend="cuda", memory_bytes=85_000_000_000, compute_units=132,
                          cache_bytes=50 * 2**20)
    run = prof.RunInfo(mode="cuda", mode_reason="test", benchmarks=["hbm", "gemm", "decode"])
    data = {"name": "my h100", "device": dev, "run": run,
            "peaks": prof.Peaks(memory_bandwidth_Bps=3.1e12, copy_bandwidth_Bps=2.9e12,
                                matmul_flops={"bfloat16": 7.9e14})}
    if curves:
        hbm = [prof.HBMPoint(op=op, impl="torch", dtype="float32", working_set_bytes=ws, bandwidth_Bps=bw, median_s=1.0,
                             p10_s=1.0, p90_s=1.0, beyond_cache=True)
               for op, ws, bw in [("read", 10**9, 2.5e12), ("read", 10**10, 3.0e12), ("copy", 10**10, 2.9e12),
                                  ("copy", 10**9, 2.99e12)]]
        mm = []
        for m_, fl in [(1, 1.0e12), (1024, 7.0e14), (4096, 7.9e14)]:
            nbytes = (m_ * 4096 + 4096 * 14336 + m_ * 14336) * 2
            mm.append(prof.MatmulPoint(family="llm", M=m_, N=14336, K=4096, dtype="bfloat16", impl="torch",
                                       library="cuBLAS", flops=fl, median_s=1.0, p10_s=1.0, p90_s=1.0, bytes=nbytes,
                                       efficiency=fl / 7.9e14))
        dec = [prof.DecodePoint(model="llama-3.1-8b", impl="triton", layout="contiguous", dtype="bfloat16", batch=b,
                                context=c, q_heads=32, kv_heads=8, head_dim=128, bytes=1, bandwidth_Bps=bw, flops=1e9,
                                median_s=1.0, p10_s=1.0, p90_s=1.0, time_per_token_s=1.0)
               for b, c, bw in [(1, 1024, 1.0e12), (16, 1024, 2.0e12), (1, 8192, 2.0e12), (16, 8192, 2.6e12)]]
        data["curves"] = prof.Curves(hbm=hbm, matmul=mm, decode=dec)
    return prof.Profile(**data)


def test_measured_profile_uses_its_curves():
    m = models.resolve("llama-3.1-8b")
    est = roofline.estimate(_measured(), m, batches=[16, 1024], context=8192)
    s16, s1024 = est.rows
    w = 2 * m.dense_params  # ≈ 15 GB
    # weights stream at the bandwidth the matmul curve reaches at M = 16 (A + B + C bytes × FLOP/s ÷ 2MNK
    # of the measured (14336, 4096) family, interpolated in log M between M = 1 and M = 1024), not the read curve's
    gemm_bw = lambda M_, fl: (M_ * 4096 + 4096 * 14336 + M_ * 14336) * 2 * fl / (2 * M_ * 14336 * 4096)  # noqa: E731
    frac = math.log(16) / math.log(1024)
    assert s16.weight_time_s == pytest.approx(w / (gemm_bw(1, 1e12) + frac * (gemm_bw(1024, 7e14) - gemm_bw(1, 1e12))))
    assert est.rows[0].weight_time_s > w / 3.0e12  # slower than the 10 GB read point: a small-M GEMM, not a stream
    assert s16.kv_time_s == pytest.approx(16 * 8192 * 131072 / 2.6e12)  # the decode curve at (16, 8192)
    # matmul at M = 1024 on the measured family (N, K) = (14336, 4096): 7.0e14 of a 7.9e14 peak, compute bound
    attn = 1024 * m.attention_flops_per_token(8192) / 7.9e14
    assert s1024.compute_time_s == pytest.approx(2 * 1024 * m.matmul_params_per_token / 7.0e14 + attn)
    assert est.gpu_kind == "measured" and est.gpu == "h100-sxm"
    assert any("measured HBM curve" in n for n in est.notes) and any("decode-attention" in n for n in est.notes)
    # the spec sheet's estimate beside it, from peaks
    assert est.spec is not None and est.spec.gpu_kind == "spec"
    spec16 = est.spec.rows[0]
    assert spec16.weight_time_s == pytest.approx(w / BW) and spec16.kv_time_s == pytest.approx(16 * 8192 * 131072 / BW)
    assert est.price_usd_per_hour == PRICE  # unmeasured: from the spec
    assert est.max_batch == math.floor((85e9 * 0.9 - 2 * m.params) / (8192 * 131072))  # measured memory size


def test_interpolation_between_points():
    hw = roofline.Hardware(_measured())
    assert hw.memory_rate(10**9.5) == pytest.approx(2.75e12)  # halfway in log size between the read points
    assert hw.memory_rate(10**8) == 2.5e12 and hw.memory_rate(10**12) == 3.0e12  # clamped at the ends
    assert hw.kv_rate(4, 1024, models.resolve("llama-3.1-8b"), "bf16", 1.0) == pytest.approx(1.5e12)


def test_empty_curves_fall_back_to_peaks():
    m = models.resolve("llama-3.1-8b")
    est = roofline.estimate(_measured(curves=False), m, batches=[16], context=8192)
    s = est.rows[0]
    assert s.weight_time_s == pytest.approx(2 * m.dense_params / 3.1e12)  # the measured peak
    assert s.kv_time_s == pytest.approx(16 * 8192 * 131072 / 3.1e12)
    assert any("no HBM curve" in n for n in est.notes)
    ds = roofline.estimate(_measured(curves=False), models.resolve("deepseek-v3"), roofline.Deployment(ep=16),
                           batches=[1], context=64)
    # fp8 not measured: the published number of the card (the next most real), said so
    assert any("float8_e4m3fn peak (published" in n for n in ds.notes)


def test_as_dict_has_the_documented_keys():
    d = roofline.estimate(H100, models.resolve("llama-3.1-8b"), batches=[1, 8], context=512).as_dict()
    assert {"gpu", "model", "optimal_batch", "latency_floor_s", "max_batch", "rows"} <= set(d)
    keys = {"batch", "context", "step_time_s", "compute_time_s", "memory_time_s", "comm_time_s", "bound",
            "tokens_per_s", "tokens_per_s_per_user", "usd_per_mtok", "weight_bytes", "kv_bytes", "flops"}
    assert all(keys <= set(r) for r in d["rows"]) and [r["batch"] for r in d["rows"]] == [1, 8]


def test_compare_meets_the_per_user_target():
    rows = roofline.compare([("h100-sxm", H100), ("h200", prof.resolve("spec:h200"))], models.resolve("llama-3.1-8b"),
                            context=4096, target_tokens_per_user=50)
    h100, h200 = rows
    assert h100.meets_target and h200.meets_target
    assert h100.tokens_per_s_per_user >= 50 and h200.tokens_per_s_per_user >= 50
    assert h200.tokens_per_s_per_gpu > h100.tokens_per_s_per_gpu  # more bandwidth and room for KV
    assert h100.usd_per_mtok == pytest.approx(PRICE * h100.gpus / 3600 / (h100.tokens_per_s_per_gpu * h100.gpus) * 1e6)
    slow = roofline.compare([("h100-sxm", H100)], models.resolve("llama-3.1-8b"), target_tokens_per_user=1e6)[0]
    assert not slow.meets_target and slow.batch == 1 and "below the target" in slow.note
    nofit = roofline.compare([("l4", prof.resolve("spec:l4"))], models.resolve("llama-3.1-405b"))[0]
    assert nofit.batch is None and nofit.note


def test_interp_log():
    pts = [(1, 10.0), (100, 30.0)]
    assert roofline.interp_log(pts, 10) == pytest.approx(20.0)
    assert roofline.interp_log(pts, 0.5) == 10.0 and roofline.interp_log(pts, 1e6) == 30.0
    assert roofline.interp_log([], 3) is None


# ------------------------------------------------------------------------------------ phases, GEMMs, attention
def test_gemm_and_attention_phases_add_up():
    m = models.resolve("llama-3.1-8b")
    s = rl("llama-3.1-8b", phase_split=True).step(512, 256)  # GEMMs compute bound (512 > F/BW ≈ 295), attention
    # bound by its KV read
    assert s.matmul_compute_time_s == pytest.approx(2 * 512 * m.matmul_params_per_token / F)
    assert s.matmul_compute_time_s > s.weight_time_s and s.kv_time_s > s.attention_compute_time_s
    assert s.step_time_s == pytest.approx(s.matmul_compute_time_s + s.kv_time_s + s.overhead_time_s)
    # one roofline for the step hid the KV read
    assert s.step_time_s - s.overhead_time_s > max(s.compute_time_s, s.memory_time_s) * 1.3
    assert s.bound == "compute"  # the compute-bound GEMMs take longer than the attention's read
    # the default is the design's single roofline, max(compute, weights + KV); the phased time is still reported
    d = rl("llama-3.1-8b").step(512, 256)
    assert d.step_time_s == pytest.approx(max(d.compute_time_s, d.memory_time_s) + d.comm_time_s + d.overhead_time_s)
    assert d.phased_roof_s == pytest.approx(s.step_time_s - s.comm_time_s - s.overhead_time_s)
    long = rl("llama-3.1-8b", phase_split=True).step(512, 8192)
    assert long.bound == "memory"
    assert long.step_time_s == pytest.approx(long.matmul_compute_time_s + long.kv_time_s + long.overhead_time_s)
    # both phases bound by memory: the sum of phases is the single roofline's max(compute, memory)
    small = rl("llama-3.1-8b", phase_split=True).step(8, 4096)
    assert small.step_time_s == pytest.approx(max(small.compute_time_s, small.memory_time_s) + small.overhead_time_s)
    assert small.step_time_s == pytest.approx(rl("llama-3.1-8b").step(8, 4096).step_time_s)


def _two_families() -> prof.Profile:
    """A measured H100 whose small GEMMs (4096 x 4096) stream at 1.5 TB/s and big ones (14336 x 4096) at 3 TB/s at
    M = 1; decode points of two head configurations and two kernels."""
    measured = _measured()
    mm = []
    for (n, k), bw in (((4096, 4096), 1.5e12), ((14336, 4096), 3.0e12)):
        for m_ in (1, 4096):
            nbytes = (m_ * k + k * n + m_ * n) * 2
            fl = bw * 2 * m_ * n * k / nbytes if m_ == 1 else 7.0e14
            mm.append(prof.MatmulPoint(family="llm", M=m_, N=n, K=k, dtype="bfloat16", impl="torch", library="cuBLAS",
                                       flops=fl, median_s=1.0, p10_s=1.0, p90_s=1.0, bytes=nbytes, efficiency=1.0))

    def dec(model, hq, hkv, impl, b, c, bw):
        return prof.DecodePoint(model=model, impl=impl, layout="contiguous", dtype="bfloat16", batch=b, context=c,
                                q_heads=hq, kv_heads=hkv, head_dim=128, bytes=1, bandwidth_Bps=bw, flops=1e9,
                                median_s=1.0, p10_s=1.0, p90_s=1.0, time_per_token_s=1.0)

    decode = [dec("llama-3.1-8b", 32, 8, "triton", b, c, bw)
              for b, c, bw in [(1, 512, 0.4e12), (8, 512, 1.2e12), (1, 4096, 1.6e12), (8, 4096, 2.4e12)]]
    decode += [dec("llama-3.1-70b", 64, 8, "triton", 8, 4096, 2.0e12),  # GQA 8 at the streams of llama's batch 8
               dec("llama-3.1-8b", 32, 8, "torch_sdpa", 8, 4096, 2.9e12)]
    return measured.model_copy(update={"curves": measured.curves.model_copy(update={"matmul": mm, "decode": decode})})


def test_each_gemm_streams_at_its_own_shapes_rate():
    m = models.resolve("llama-3.1-8b")
    s = roofline.Roofline(roofline.Hardware(_two_families()), m).step(1, 0)
    # nearest measured (N, K) in log distance: QKV (6144, 4096), O and down (4096, 14336) read like the 4096 x 4096
    # family; gate+up (28672, 4096) and the LM head (128256, 4096) like 14336 x 4096
    slow = 32 * (6144 * 4096 + 4096 * 4096 + 4096 * 14336) * 2
    fast = (32 * 28672 * 4096 + 128256 * 4096) * 2
    assert slow + fast == pytest.approx(2 * m.dense_params)
    assert s.weight_time_s == pytest.approx(slow / 1.5e12 + fast / 3.0e12)


def test_kv_rate_by_streams_group_and_kernel():
    hw = roofline.Hardware(_two_families())
    llama, qwen = models.resolve("llama-3.1-8b"), models.resolve("qwen3-30b-a3b")  # 8 and 4 KV heads of 128, GQA 4, 8
    # no impl asked: the best kernel at each point (SDPA at (8, 4096))
    assert hw.kv_rate(8, 4096, llama, "bf16", 1.0) == pytest.approx(2.9e12)
    assert hw.kv_rate(8, 4096, llama, "bf16", 1.0, impl="triton/contiguous") == pytest.approx(2.4e12)
    assert hw.kv_rate(8, 4096, llama, "bf16", 1.0, impl="triton") == pytest.approx(2.4e12)
    # qwen at batch 16 reads 64 KV streams, as llama's batch 8: its own group (GQA 8, the 70b point) wins there
    assert hw.kv_rate(16, 4096, qwen, "bf16", 1.0, impl="triton/contiguous") == pytest.approx(2.0e12)
    # batch 2 of qwen = 8 streams = llama's batch 1; at 512 tokens only llama's grid was measured
    assert hw.kv_rate(2, 512, qwen, "bf16", 1.0, impl="triton/contiguous") == pytest.approx(0.4e12)
    assert hw.kv_rate(1, 512, qwen, "bf16", 1.0, impl="triton/contiguous") == pytest.approx(0.4e12)  # clamped
    # an impl the curve lacks: the best kernel's, said so
    assert hw.kv_rate(8, 4096, llama, "bf16", 1.0, impl="flashinfer") == pytest.approx(2.9e12)
    assert any("no flashinfer points" in n for n in hw.notes)
    with pytest.raises(roofline.RooflineError, match="attention_impl"):
        roofline.Roofline(hw, llama, roofline.Deployment(attention_impl="/"))


# ---------------------------------------------------------------------------- measured shapes, exactly
def _streaming(points) -> prof.Profile:
    """A measured H100 whose matmul curve holds ``points``: (N, K, M, stream bandwidth) each, bf16."""
    mm = []
    for n, k, m_, bw in points:
        nbytes = (m_ * k + k * n + m_ * n) * 2
        mm.append(prof.MatmulPoint(family="llm", M=m_, N=n, K=k, dtype="bfloat16", impl="torch", library="cuBLAS",
                                   flops=bw * 2 * m_ * n * k / nbytes, median_s=1.0, p10_s=1.0, p90_s=1.0,
                                   bytes=nbytes, efficiency=1.0))
    base = _measured()
    return base.model_copy(update={"curves": base.curves.model_copy(update={"matmul": mm})})


def test_a_measured_shape_is_read_at_its_own_measured_m():
    """The exact (N, K) wins over a nearer-in-M family, M is interpolated only between the measured M around it
    (a GEMV -> GEMM cliff between M = 1 and 2 and a non-monotone stretch after it stay as measured), and the points
    read are traced."""
    gate_up = [(28672, 4096, 1, 2.0e12), (28672, 4096, 2, 0.9e12), (28672, 4096, 4, 0.5e12),
               (28672, 4096, 8, 0.6e12), (28672, 4096, 16, 0.5e12)]
    hw = roofline.Hardware(_streaming(gate_up + [(4096, 4096, m_, 1.0e12) for m_ in (1, 2, 4, 8, 16)]))
    hw.trace = {}
    assert hw.weight_stream_rate("bfloat16", 4, 28672, 4096, 1.0) == pytest.approx(0.5e12)
    assert {k[3] for k in hw.trace} == {4} and {(k[4], k[5]) for k in hw.trace} == {(28672, 4096)}
    hw.trace = {}
    frac = math.log(3 / 2) / math.log(2)
    assert hw.weight_stream_rate("bfloat16", 3, 28672, 4096, 1.0) == pytest.approx(0.9e12 + frac * (0.5e12 - 0.9e12))
    assert {k[3] for k in hw.trace} == {2, 4}
    assert hw.weight_stream_rate("bfloat16", 8, 28672, 4096, 1.0) == pytest.approx(0.6e12)  # not smoothed over
    assert not any("not measured" in n or "measured at M" in n for n in hw.notes)
    # a shape the sweep did not measure: the nearest stands in, said so; an M past the measured ones likewise
    assert hw.weight_stream_rate("bfloat16", 1, 6144, 4096, 1.0) == pytest.approx(1.0e12)
    assert any("N=6144 K=4096 not measured" in n and "(N=4096, K=4096)" in n for n in hw.notes)
    assert hw.weight_stream_rate("bfloat16", 64, 28672, 4096, 1.0) == pytest.approx(0.5e12)
    assert any("N=28672 K=4096 measured at M 1-16" in n for n in hw.notes)


def test_expert_rows_follow_the_binomial_of_the_router():
    r = roofline.Roofline(roofline.Hardware(H100), models.resolve("qwen3-30b-a3b"))  # top-8 of 128 experts
    m = r.model
    for tokens in (1, 4, 16, 256):
        rows = r.expert_rows(tokens)
        assert sum(w for _, w in rows) == pytest.approx(m.experts_touched(tokens), rel=1e-9)
        assert sum(j * w for j, w in rows) == pytest.approx(tokens * 8, rel=1e-9)
    assert r.expert_rows(1) == [(1.0, pytest.approx(8.0))]
    sixteen = dict(r.expert_rows(16))
    assert sixteen[2.0] / sum(sixteen.values()) > 0.25  # a quarter of the hit experts multiply 2 rows, not 1.5
    (big,) = r.expert_rows(4096)  # spread over many row counts: the mean stands for them
    assert big == (pytest.approx(4096 * 8 / m.experts_touched(4096)), pytest.approx(m.experts_touched(4096)))
    assert r.expert_rows(0) == []


def test_expert_gemms_are_timed_at_each_row_count():
    """Against a GEMV -> GEMM cliff (an expert with one row streams its weight 4x faster than one with two), the
    expert GEMMs' time is the sum over row counts, not the time at the mean rows per expert."""
    qwen = models.resolve("qwen3-30b-a3b")
    shapes = {(mm.n, mm.k) for mm in qwen.matmuls()}
    experts = {(mm.n, mm.k) for mm in qwen.matmuls() if mm.part == "expert"}
    pts = [(n, k, m_, (2.0e12 if m_ == 1 else 0.5e12) if (n, k) in experts else 1.0e12)
           for n, k in shapes for m_ in (1, 2, 4, 8, 16, 32)]
    r = roofline.Roofline(roofline.Hardware(_streaming(pts)), qwen)
    rows = r.expert_rows(16)
    dense = sum(mm.n * mm.k * mm.count * 2 for mm in qwen.matmuls() if mm.part == "dense")
    per_row = sum(mm.n * mm.k * mm.count * 2 for mm in qwen.matmuls() if mm.part == "expert")  # one expert, bf16

    def bw(j):  # the stream rate interpolated in log M between the measured points
        return 2.0e12 if j == 1 else 0.5e12

    want = dense / 1.0e12 + sum(w * per_row / bw(j) for j, w in rows)
    assert r.weight_time_s(16, 16) == pytest.approx(want, rel=1e-9)
    mean = 16 * 8 / qwen.experts_touched(16)  # ≈ 1.55 rows: what a mean-rows model would read
    at_mean = 2.0e12 + math.log(mean) / math.log(2) * (0.5e12 - 2.0e12)
    mean_model = dense / 1.0e12 + qwen.experts_touched(16) * per_row / at_mean
    assert r.weight_time_s(16, 16) > 1.1 * mean_model


def test_kv_reads_are_traced_and_off_curve_reads_noted():
    hw = roofline.Hardware(_two_families())
    llama = models.resolve("llama-3.1-8b")
    hw.trace = {}
    hw.kv_rate(8, 4096, llama, "bf16", 1.0, impl="triton/contiguous")  # 64 streams at 4096: a measured point
    assert [(k[4], k[5]) for k in hw.trace] == [(8, 4096)]
    assert not any("interpolated between measured decode points" in n for n in hw.notes)
    hw.trace = {}
    hw.kv_rate(4, 2048, llama, "bf16", 1.0, impl="triton/contiguous")  # between all four llama points
    assert {(k[4], k[5]) for k in hw.trace} == {(1, 512), (8, 512), (1, 4096), (8, 4096)}
    assert any("interpolated between measured decode points" in n for n in hw.notes)


def test_a_lone_large_m_point_of_the_same_shape_does_not_stand_for_small_m():
    """A peak-search point that happens to have a step GEMM's (N, K) at M = 2048 says nothing about M = 1: the
    family measured down to M = 1 is read instead."""
    hw = roofline.Hardware(_streaming([(2048, 4096, 2048, 3.0e12), (4096, 4096, 1, 1.0e12), (4096, 4096, 8, 0.8e12)]))
    assert hw.weight_stream_rate("bfloat16", 1, 2048, 4096, 1.0) == pytest.approx(1.0e12)
    assert hw.weight_stream_rate("bfloat16", 4096, 2048, 4096, 1.0) == pytest.approx(3.0e12)
