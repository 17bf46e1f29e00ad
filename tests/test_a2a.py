"""The MoE all-to-all benchmark: accounting, gloo ranks on loopback (2 and 4), checks that catch wrong data,
a dead rank, the profile sections and the CLI."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import collectives, distributed
from bench import profile as prof
from bench.benchmarks import a2a
from bench.measurement import measured
from bench.profile import build as profile_build
from bench.registry import RunContext
from bench.timing import summarize

ROOT = Path(__file__).resolve().parents[1]
SMALL_MOE = [("mixtral-8x7b", 6, "skewed"), ("deepseek-v3", 3, "uniform")]


def _ctx(target, ranks=2, **opts):
    return RunContext(target=target, quick=True, min_time_s=0.002, options={"ranks": ranks, **opts})


# -- accounting ---------------------------------------------------------------------------------------------

def test_uneven_traffic_counts_the_busiest_rank():
    # rank 1 receives 30 rows though everybody sends 10: it is the bottleneck, 3x the mean
    nbytes, imb = a2a.moe_traffic_bytes([10, 10, 10], [5, 30, 0], hidden=4, esize=2)
    assert nbytes == 30 * 4 * 2 and imb == pytest.approx(3.0)
    nbytes, imb = a2a.moe_traffic_bytes([8, 8], [8, 8], hidden=1, esize=4)
    assert nbytes == 32 and imb == pytest.approx(1.0)


def test_local_accounting():
    T, k, H, es = 10, 8, 7168, 2
    assert a2a.local_bytes("permute", T, k, H, es) == (T + T * k) * H * es + T * k * 8
    assert a2a.local_bytes("unpermute", T, k, H, es) == (T * k + T) * H * es + T * k * 12
    assert a2a.local_bytes("grouped_mlp", T, k, H, es, intermediate=2048, active_experts=5) == \
        (2 * T * k * H + 5 * 3 * H * 2048) * es
    assert a2a.local_flops("grouped_mlp", 80, H, 2048) == 6 * 80 * H * 2048
    assert a2a.local_flops("permute", 80, H, 2048) is None


def test_message_sizes_and_expert_owners():
    g = a2a.message_sizes(True, True)
    assert g[0] == 1024 and g[-1] == 2**30 and g == sorted(set(g))
    c = a2a.message_sizes(False, True)
    assert c[0] == 1024 and c[-1] <= 4 * 2**20 and len(c) <= 8
    assert a2a.message_sizes(False, False)[-1] == 64 * 2**20
    for E, n in ((8, 3), (256, 8), (8, 16), (5, 2)):
        owners = [a2a.expert_owner(e, E, n) for e in range(E)]
        assert owners == sorted(owners) and set(owners) <= set(range(n))  # contiguous blocks
        sizes = [owners.count(r) for r in set(owners)]
        assert max(sizes) - min(sizes) <= 1  # balanced


def test_sweep_has_local_points_then_one_collective_per_world_size(cpu_target):
    pts = a2a.BENCHMARK.sweep(RunContext(target=cpu_target, quick=True))
    assert pts[-1] == {"part": "collective", "world_size": 2}  # CPU default: 2 gloo ranks
    assert {p["op"] for p in pts if p["part"] == "local"} == set(a2a.LOCAL_OPS)
    assert a2a.BENCHMARK.sweep(_ctx(cpu_target, ranks=4))[-1]["world_size"] == 4


# -- local part ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", a2a.LOCAL_OPS)
def test_local_point_checks_triton_in_interpreter_and_times_torch(cpu_target, op):
    model = "cpu-small" if op == "grouped_mlp" else "mixtral-8x7b"
    recs = a2a.BENCHMARK.run_point(_ctx(cpu_target), {"part": "local", "op": op, "model": model, "tokens": 16})
    by = {m.impl: m for m in recs}
    assert set(by) == {"triton", "torch"}
    assert by["triton"].mode == "interpreter" and by["triton"].timing is None and by["triton"].check.passed
    t = by["torch"]
    assert t.status == "ok" and t.mode == "cpu" and t.check.passed and t.timing.median_s > 0
    shape = a2a.MODELS[model]
    if op == "grouped_mlp":
        assert t.flop_count == 6 * 16 * shape.top_k * shape.hidden * shape.intermediate and t.flops > 0
    else:
        assert t.bytes == a2a.local_bytes(op, 16, shape.top_k, shape.hidden, 4) and t.flops is None


def test_a_wrong_local_kernel_yields_a_failure_not_a_number(cpu_target, monkeypatch):
    from kernels import moe as kern

    monkeypatch.setattr(kern, "torch_permute", lambda x, src, out=None: out.copy_(x[src.flip(0)]))
    recs = a2a.BENCHMARK.run_point(_ctx(cpu_target), {"part": "local", "op": "permute", "model": "mixtral-8x7b",
                                                      "tokens": 16})
    bad = next(m for m in recs if m.impl == "torch")
    assert bad.status == "failed" and bad.timing is None and bad.bandwidth_Bps is None


# -- collective part: gloo ranks on loopback ----------------------------------------------------------------

def test_two_gloo_ranks_check_then_time_equal_and_moe_traffic(cpu_target):
    ctx = _ctx(cpu_target, a2a_sizes=[1024, 40_000], a2a_moe=SMALL_MOE)
    recs = a2a.BENCHMARK.run_point(ctx, {"part": "collective", "world_size": 2})
    assert [(m.kernel, m.params["traffic"]) for m in recs] == [
        ("all_to_all", "equal"), ("all_to_all", "equal"), ("dispatch", "moe-skewed"), ("combine", "moe-skewed"),
        ("dispatch", "moe-uniform"), ("combine", "moe-uniform")]
    for m in recs:
        assert m.status == "ok" and m.check.passed and m.mode == "cpu" and m.impl == "gloo", m.reason
        assert "slowest rank" in m.timing.clock and m.timing.n >= a2a.MIN_REPS
        assert m.extra["algbw_Bps"] == pytest.approx(m.bytes / m.timing.median_s)
        assert m.extra["busbw_Bps"] == pytest.approx(m.extra["algbw_Bps"] / 2)  # (n-1)/n with n = 2
    eq = [m for m in recs if m.kernel == "all_to_all"]
    assert [m.params["message_bytes"] for m in eq] == [1024, 40_000]  # whole int32 elements per peer
    moe = [m for m in recs if m.kernel != "all_to_all"]
    assert all(m.extra["imbalance"] >= 1 and m.check.rel_err < 1e-5 for m in moe)
    mix = moe[0]
    assert mix.bytes >= 6 * 2 * 4096 * 4  # the busiest rank moves at least the mean: tokens * top_k * hidden * 4 B


def test_four_gloo_ranks_verify_equal_and_uneven_exchanges_and_the_round_trip(cpu_target):
    ctx = _ctx(cpu_target, ranks=4, a2a_sizes=[4096 + 48], a2a_moe=[("mixtral-8x7b", 5, "skewed"),
                                                                    ("deepseek-v3", 3, "uniform")])
    plan = a2a.BENCHMARK.collective_plan(ctx, 4)
    dumps = distributed.launch(a2a.collective_rank, 4, target=cpu_target, args=(plan,), timeout_s=180)
    recs = [a2a.Measurement.model_validate(d) for d in dumps]
    assert len(recs) == 5
    for m in recs:
        assert m.status == "ok" and m.check.passed and m.params["world_size"] == 4, m.reason
        assert m.extra["busbw_Bps"] == pytest.approx(m.extra["algbw_Bps"] * 3 / 4)
    # 4 ranks x 8 experts: 2 experts each; a skewed router makes the splits uneven
    assert recs[1].extra["experts"] == 8 and recs[1].extra["imbalance"] > 1


def corrupting_rank(info, plan):
    """Rank 1's all-to-all results get one element changed: every check must notice, on every rank."""
    import torch.distributed as dist

    real = dist.all_to_all_single

    def wrong(out, inp, *a, **kw):
        r = real(out, inp, *a, **kw)
        if info.rank == 1 and out.numel() > 8:
            out.view(-1)[7] += 1
        return r

    dist.all_to_all_single = wrong
    return a2a.collective_rank(info, plan)


def test_wrong_data_yields_failures_not_numbers(cpu_target):
    plan = a2a.BENCHMARK.collective_plan(_ctx(cpu_target, a2a_sizes=[4096], a2a_moe=SMALL_MOE[:1]), 2)
    recs = [a2a.Measurement.model_validate(d) for d in distributed.launch(corrupting_rank, 2, target=cpu_target,
                                                                          args=(plan,), timeout_s=120)]
    assert [m.kernel for m in recs] == ["all_to_all", "dispatch", "combine"]
    for m in recs:
        assert m.status == "failed" and m.timing is None and m.bandwidth_Bps is None
        assert "ranks [1]" in m.check.detail and m.extra.get("busbw_Bps") is None


def test_a_dead_rank_fails_the_point_in_bounded_time(cpu_target):
    ctx = _ctx(cpu_target, a2a_fail_rank=1, a2a_timeout_s=60)
    t0 = time.monotonic()
    (m,) = a2a.BENCHMARK.run_point(ctx, {"part": "collective", "world_size": 2})
    assert time.monotonic() - t0 < 30
    assert m.status == "failed" and "gloo all-to-all with 2 ranks" in m.reason and "rank 1 of 2" in m.reason


def test_world_size_one_runs_no_collective_and_says_so(cpu_target):
    ctx = _ctx(cpu_target, ranks=1)
    assert a2a.BENCHMARK.sweep(ctx)[-1] == {"part": "collective", "world_size": 1}
    recs = a2a.BENCHMARK.run_point(ctx, {"part": "collective", "world_size": 1})
    assert {m.kernel for m in recs} == {"all_to_all", "dispatch", "combine"}
    assert all(m.status == "skipped" and m.reason == a2a.WORLD_SIZE_1 for m in recs)
    s = a2a.BENCHMARK.summarize(recs, {})
    assert s["interconnect"]["notes"] == [a2a.WORLD_SIZE_1] and "curves" not in s


@pytest.mark.gpu
def test_one_nccl_rank_runs_the_whole_collective_code_on_a_gpu(gpu_target):
    """As far as one GPU allows: NCCL init, device pinning, CUDA-event timing, bf16 MoE checks, with n = 1."""
    plan = a2a.BENCHMARK.collective_plan(_ctx(gpu_target, ranks=1, a2a_sizes=[1 << 20],
                                              a2a_moe=[("deepseek-v3", 128, "skewed")]), 1)
    assert plan["dtype"] == "bfloat16"
    recs = [a2a.Measurement.model_validate(d) for d in distributed.launch(a2a.collective_rank, 1, target=gpu_target,
                                                                          args=(plan,), timeout_s=240)]
    assert [m.kernel for m in recs] == ["all_to_all", "dispatch", "combine"]
    for m in recs:
        assert m.status == "ok" and m.mode == "cuda" and m.impl == "nccl" and m.check.passed, m.reason
        assert m.timing.clock.startswith("cuda_events") and m.extra["busbw_Bps"] == 0.0  # (n-1)/n = 0


@pytest.mark.gpu
def test_one_gpu_measures_the_local_part_and_skips_the_collective(gpu_target):
    """`rooflab run` on one GPU: the sweep's collective point is world size 1 (skipped, no ranks started), and a
    local point checks and times both implementations on the GPU (Triton compiled and autotuned, not
    interpreted)."""
    import torch

    ctx = RunContext(target=gpu_target, quick=True, min_time_s=0.01)
    pts = a2a.BENCHMARK.sweep(ctx)
    if torch.cuda.device_count() == 1:
        assert pts[-1] == {"part": "collective", "world_size": 1}
        recs = a2a.BENCHMARK.run_point(ctx, pts[-1])
        assert all(m.status == "skipped" and m.reason == a2a.WORLD_SIZE_1 for m in recs)
    for op in a2a.LOCAL_OPS:
        model = "cpu-small" if op == "grouped_mlp" else "mixtral-8x7b"
        recs = a2a.BENCHMARK.run_point(ctx, {"part": "local", "op": op, "model": model, "tokens": 96})
        assert [m.impl for m in recs] == ["triton", "torch"]
        for m in recs:
            assert m.status == "ok" and m.mode == "cuda" and m.check.passed, (op, m.impl, m.reason)
            assert m.timing.clock.startswith("cuda_events") and m.bandwidth_Bps > 0 and m.cache.startswith("flush L2")


# -- profile ------------------------------------------------------------------------------------------------

def _rec(kernel, params, nbytes, median_s, **extra):
    n = params.get("world_size", 1)
    alg = nbytes / median_s
    if params["part"] == "collective":
        extra.update(algbw_Bps=alg, busbw_Bps=collectives.busbw_Bps("all_to_all", alg, n), launcher="spawn", nodes=1)
    return measured(benchmark="a2a", kernel=kernel, impl="gloo" if params["part"] == "collective" else "torch",
                    params=params, mode="cpu", device="x", timing=summarize([median_s] * 5, "perf_counter"),
                    bytes=nbytes, **extra)


def test_summary_builds_typed_interconnect_and_local_sections():
    eq = {"part": "collective", "traffic": "equal", "world_size": 4}
    recs = [_rec("all_to_all", {**eq, "message_bytes": s}, s, t) for s, t in ((1024, 1e-4), (1 << 20, 1e-3))]
    moe = {"part": "collective", "traffic": "moe-skewed", "model": "deepseek-v3", "tokens": 8, "world_size": 4}
    shape = dict(hidden=7168, top_k=8, experts=256, dtype="float32", imbalance=1.7)
    recs += [_rec(ph, moe, 2_000_000, 2e-3, **shape) for ph in ("dispatch", "combine")]
    loc = {"part": "local", "op": "permute", "model": "mixtral-8x7b", "tokens": 64, "dtype": "float32",
           "hidden": 4096, "top_k": 2, "experts": 8, "intermediate": None, "rows": 128}
    recs.append(_rec("permute", loc, 3_000_000, 1e-3))
    dev = prof.DeviceInfo(name="x", backend="cpu")
    run = prof.RunInfo(mode="cpu", mode_reason="test", benchmarks=["a2a"])
    p = profile_build.from_measurements(recs, dev, run)
    assert [c.message_bytes for c in p.curves.all_to_all] == [1024, 1 << 20]
    top = p.curves.all_to_all[1]
    assert top.busbw_Bps == pytest.approx((1 << 20) / 1e-3 * 3 / 4)
    ic = p.interconnect
    assert ic.world_sizes == [4] and ic.backend == "gloo" and ic.launcher == "spawn"
    assert ic.peak_busbw[0].message_bytes == 1 << 20
    assert [(m.phase, m.traffic) for m in ic.moe] == [("combine", "skewed"), ("dispatch", "skewed")]
    assert p.local.permute_bandwidth_Bps == pytest.approx(3e9) and p.local.points[0].rows == 128
    again = prof.validate(json.loads(p.model_dump_json(exclude_none=True)))  # round-trips through JSON
    assert again.interconnect.moe[0].imbalance == pytest.approx(1.7)


def test_spec_profile_carries_link_rates():
    p = prof.load(ROOT / "profiles" / "specs" / "h100-sxm.json")
    ic = p.interconnect
    assert p.kind == "spec" and ic.scale_up_Bps == pytest.approx(450e9) and ic.scale_up_domain == 8
    assert ic.scale_out_Bps < ic.scale_up_Bps and ic.scale_up_source and ic.scale_out_source
    assert not ic.moe and not ic.peak_busbw  # measured parts stay empty in a spec
    with pytest.raises(ValueError):
        prof.Interconnect(scale_up_Bps=-1)


# -- the command line ---------------------------------------------------------------------------------------

def _cli(*args, env=None, timeout=300):
    e = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=ROOT,
                          env=e, timeout=timeout)


@pytest.mark.parametrize("args,env,msg", [
    (["--ranks", "0"], None, "--ranks must be in [1, "),
    (["--ranks", "3"], {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "disagrees with torchrun"),
])
def test_cli_rejects_bad_ranks_in_one_line(tmp_path, args, env, msg):
    r = _cli("run", "--device", "cpu", "--only", "a2a", "--out", str(tmp_path / "o"), *args, env=env, timeout=60)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_quick_cpu_run_writes_the_interconnect_section(tmp_path):
    out = tmp_path / "run"
    r = _cli("run", "--device", "cpu", "--only", "a2a", "--quick", "--ranks", "2", "--min-time", "0.01",
             "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    p = prof.load(out / "profile.json")
    assert p.interconnect is not None and p.interconnect.world_sizes == [2] and p.interconnect.backend == "gloo"
    assert len(p.curves.all_to_all) == len(a2a.message_sizes(False, True))
    assert {m.traffic for m in p.interconnect.moe} == {"uniform", "skewed"}
    assert p.local is not None and p.local.permute_bandwidth_Bps and p.local.grouped_mlp_flops
    assert p.run.points_failed == 0
