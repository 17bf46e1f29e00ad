"""Decode attention: the split-KV Triton kernel (in the interpreter), its reference, accounting, benchmark."""
import dataclasses

import pytest
import torch

from bench import checks
from bench.benchmarks import decode
from bench.profile import Curves, DecodePoint
from bench.registry import RunContext
from kernels import decode_attention as kern

TOL = 1e-2  # fp16 and bf16 outputs within 1% of the float64 reference (relative Frobenius error)
LENS = [37, 70, 32, 5]  # odd lengths; 70 ends inside its 5th 16-token page, 32 exactly on a page boundary


def _case(group, kv_heads=2, d=64, lens=LENS, dtype=torch.float16, kv_dtype=None, page=None, seed=0):
    """Random q and cache (contiguous, or a shuffled page pool with spare pages) for a ragged batch."""
    g = torch.Generator().manual_seed(seed)
    kv_dtype = kv_dtype or dtype
    b, cap = len(lens), max(lens) + 3
    q = torch.randn(b, group * kv_heads, d, generator=g).to(dtype)
    if page:
        per_seq = -(-cap // page)
        pool = b * per_seq + 3
        shape = (pool, page, kv_heads, d)
        bt = torch.randperm(pool, generator=g)[: b * per_seq].view(b, per_seq).int()
    else:
        shape, bt = (b, cap, kv_heads, d), None
    kc = torch.randn(shape, generator=g).to(kv_dtype)
    vc = torch.randn(shape, generator=g).to(kv_dtype)
    return q, kc, vc, torch.tensor(lens, dtype=torch.int32), bt


def _run_and_check(q, kc, vc, sl, bt, tol=TOL, **kw):
    out = checks.poison(torch.empty_like(q))
    got = kern.decode_attention(q, kc, vc, sl, bt, out=out, **kw)
    assert got is out
    scales = {k: kw[k] for k in ("k_scale", "v_scale", "scale") if k in kw}
    ref = kern.reference(q, kc, vc, sl, bt, **scales)
    chk = checks.compare(out, ref, tol, "f64")
    assert chk.passed, chk.detail
    return chk.rel_err


# ---- the kernel against the float64 reference ---------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("group", [1, 4, 8])
@pytest.mark.parametrize("page", [None, 16], ids=["contiguous", "paged16"])
def test_kernel_matches_reference(page, group, dtype):
    # split_tokens 23: several splits per sequence, split edges inside tiles and pages (stage 2 merges them)
    err = _run_and_check(*_case(group, dtype=dtype, page=page, seed=group), split_tokens=23)
    assert err > 0  # a real comparison, not two copies of one computation


@pytest.mark.parametrize("page", [None, 16])
def test_head_dim_128_single_split(page):
    # the default CPU plan puts each sequence in one split: stage 1 writes the output directly
    q, kc, vc, sl, bt = _case(4, d=128, page=page, dtype=torch.bfloat16)
    assert kern.plan_splits(len(LENS), 2, kern.capacity(kc, bt), 1, on_gpu=False).num_splits == 1
    _run_and_check(q, kc, vc, sl, bt)


@pytest.mark.parametrize("page,lens", [(5, [5, 10, 11, 4]), (64, [64, 1, 65, 127]), (16, [16, 48, 17, 15])])
def test_page_boundaries(page, lens):
    # lengths exactly on, one past and one short of page boundaries; an odd page size; a 64-token page
    _run_and_check(*_case(4, lens=lens, page=page, seed=page), split_tokens=7)


def test_empty_and_one_token_sequences():
    q, kc, vc, sl, bt = _case(4, lens=[0, 1, 19], page=16)
    out = kern.decode_attention(q, kc, vc, sl, bt, split_tokens=8)
    assert torch.count_nonzero(out[0]) == 0  # nothing to attend to: zeros, never NaN
    # one token: softmax weight 1, so the output is that token's V row
    exp = vc[bt[1, 0].long(), 0].repeat_interleave(4, dim=0)
    assert torch.allclose(out[1].float(), exp.float(), rtol=1e-3, atol=1e-3)
    _run_and_check(q, kc, vc, sl, bt, split_tokens=8)


@pytest.mark.parametrize("kv_dtype", kern.FP8_DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("q_dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_fp8_kv_with_scales(kv_dtype, q_dtype):
    q, kc, vc, sl, bt = _case(4, dtype=q_dtype, kv_dtype=kv_dtype, page=16)
    _run_and_check(q, kc, vc, sl, bt, split_tokens=23, k_scale=0.75, v_scale=1.5)


def test_custom_scale_and_preallocated_workspace_reused():
    q, kc, vc, sl, bt = _case(8, page=16)
    ws = kern.DecodeWorkspace.allocate(len(LENS), q.shape[1], q.shape[2], 8, "cpu")
    out = torch.empty_like(q)
    ref = kern.reference(q, kc, vc, sl, bt, scale=0.3)
    for _ in range(2):  # a second call must not see the first one's partials
        checks.poison(out)
        checks.poison(ws.partial_out)
        kern.decode_attention(q, kc, vc, sl, bt, 0.3, out=out, workspace=ws, num_splits=4, max_seq_len=max(LENS))
        assert checks.compare(out, ref, TOL, "f64").passed
    with pytest.raises(ValueError, match="workspace too small"):
        kern.decode_attention(q, kc, vc, sl, bt, workspace=ws, num_splits=16, max_seq_len=max(LENS))


@pytest.mark.parametrize("bad,match", [
    (lambda q, k, v, s, t: (q[0], k, v, s, t), "q must be"),
    (lambda q, k, v, s, t: (q[:, :3], k, v, s, t), "multiple of kv_heads"),
    (lambda q, k, v, s, t: (q.float(), k, v, s, t), "float16 or bfloat16"),
    (lambda q, k, v, s, t: (q, k.bfloat16(), v.bfloat16(), s, t), "KV cache must be"),
    (lambda q, k, v, s, t: (q, k, v, s[:2], t), "seq_lens"),
    (lambda q, k, v, s, t: (q, k, v, s, t.long()), "block_table"),
    (lambda q, k, v, s, t: (q, k[..., :32], v[..., :32], s, t), "head_dim"),
])
def test_bad_inputs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        kern.decode_attention(*bad(*_case(4, page=16)))


def test_max_seq_len_beyond_capacity_is_refused():
    q, kc, vc, sl, bt = _case(4)
    with pytest.raises(ValueError, match="capacity"):
        kern.decode_attention(q, kc, vc, sl, bt, max_seq_len=kc.shape[1] + 1)


# ---- the reference and the SDPA baseline ----------------------------------------------------------------

def test_reference_agrees_with_torch_math_attention():
    # an independent float64 computation: SDPA on K/V expanded to the q heads (uniform lengths)
    q, kc, vc, _, _ = _case(4, d=32, lens=[21, 21, 21])
    sl = torch.full((3,), kc.shape[1], dtype=torch.int32)
    ref = kern.reference(q, kc, vc, sl)
    k = kc.double().transpose(1, 2).repeat_interleave(4, dim=1)
    v = vc.double().transpose(1, 2).repeat_interleave(4, dim=1)
    exp = torch.nn.functional.scaled_dot_product_attention(q.double().unsqueeze(2), k, v).squeeze(2)
    assert torch.allclose(ref, exp, rtol=1e-10, atol=1e-12)


def test_reference_chunks_heads_without_changing_result(monkeypatch):
    q, kc, vc, sl, bt = _case(2, kv_heads=4, page=16)
    whole = kern.reference(q, kc, vc, sl, bt)
    monkeypatch.setattr(kern, "REFERENCE_CHUNK_ELEMENTS", 1)  # one kv head per chunk
    assert torch.equal(kern.reference(q, kc, vc, sl, bt), whole)


@pytest.mark.parametrize("allow_gqa", [True, False])
def test_sdpa_baseline(allow_gqa):
    q, kc, vc, _, _ = _case(4, lens=[40, 40], dtype=torch.bfloat16)
    k, v, gqa = kern.sdpa_inputs(kc, vc, q.shape[1], allow_gqa=allow_gqa)
    assert gqa == (allow_gqa and kern.SDPA_HAS_GQA)
    assert k.shape[1] == (2 if gqa else 8)  # expanded to the q heads only without enable_gqa
    out = kern.sdpa_decode(q, k, v, enable_gqa=gqa)
    ref = kern.reference(q, kc, vc, torch.full((2,), kc.shape[1], dtype=torch.int32))
    assert checks.compare(out, ref, TOL, "f64").passed


# ---- planning and accounting ----------------------------------------------------------------------------

@pytest.mark.parametrize("batch,kv_heads,ctx", [(1, 8, 4096), (64, 8, 4096), (256, 8, 32768), (1, 1, 131072),
                                                (8, 64, 512), (3, 2, 100)])
def test_plan_splits_fills_the_gpu_within_bounds(batch, kv_heads, ctx):
    sms = 132
    p = kern.plan_splits(batch, kv_heads, ctx, sms, on_gpu=True)
    assert p.split_tokens % kern.SPLIT_GRANULE == 0
    assert p.num_splits * p.split_tokens >= ctx > (p.num_splits - 1) * p.split_tokens  # covers, none empty
    assert 1 <= p.num_splits <= kern.MAX_SPLITS
    if p.num_splits > 1:
        assert p.split_tokens >= kern.MIN_SPLIT_TOKENS
        # never more splits than it takes to reach the target program count
        assert batch * kv_heads * (p.num_splits - 1) < kern.PROGRAMS_PER_SM * sms
    elif ctx >= 2 * kern.MIN_SPLIT_TOKENS:
        assert batch * kv_heads >= kern.PROGRAMS_PER_SM * sms // 2  # one split only when the batch fills the GPU


def test_tuning_is_keyed_by_size_class():
    tiny = kern._tune_bucket(23, 4 * 2 * 4)
    big = kern._tune_bucket(1408, 3 * 8 * 64)
    assert tiny != big
    assert kern._tune_bucket(1400, 1536) == big  # the same size class shares the tuned config


def test_plan_splits_explicit_choices():
    assert kern.plan_splits(2, 2, 70, 1, on_gpu=False, split_tokens=23) == kern.DecodePlan(4, 23)
    assert kern.plan_splits(2, 2, 70, 1, on_gpu=False, num_splits=3) == kern.DecodePlan(3, 24)
    assert kern.plan_splits(2, 2, 1000, 1, on_gpu=True, num_splits=3) == kern.DecodePlan(3, 384)


def test_bytes_and_flops_accounting():
    # Llama-3.1-8B at batch 64 x 4096 tokens, bf16: K and V are 2 * 64*4096 tokens * 8 heads * 128 * 2 B
    lens = [4096] * 64
    kv = 2 * (64 * 4096) * 8 * 128 * 2
    qo = 2 * 64 * 32 * 128 * 2
    assert kv == 1 << 30  # 1 GiB (1.07 GB): the least one decode step of this shape must read
    assert decode.bytes_moved(lens, 32, 8, 128, 2, 2) == kv + qo
    assert decode.bytes_moved(lens, 32, 8, 128, 2, 2, page_size=16) == kv + qo + 4 * 64 * (4096 // 16)
    assert decode.flop_count(lens, 32, 128) == 4 * 64 * 32 * 4096 * 128
    # ragged, paged with partial pages: ceil(37/16) + ceil(5/16) = 4 table entries; fp8 KV is 1 byte
    assert decode.bytes_moved([37, 5], 8, 2, 64, 1, 2, page_size=16) == 2 * 42 * 2 * 64 + 2 * 2 * 8 * 64 * 2 + 4 * 4
    assert decode.flop_count([37, 5], 8, 64) == 4 * 42 * 8 * 64


# ---- the benchmark --------------------------------------------------------------------------------------

TINY = {"model": "tiny", "q_heads": 8, "kv_heads": 2, "head_dim": 16, "dtype": "float16", "batch": 2,
        "context": 48}


def test_cpu_sweep_covers_every_head_config(cpu_target):
    ctx = RunContext(target=cpu_target, quick=True)
    pts = decode.BENCHMARK.sweep(ctx)
    assert {p["model"] for p in pts} == set(decode.HEAD_CONFIGS) | {"qwen3-30b-a3b"}
    assert {p["q_heads"] // p["kv_heads"] for p in pts} >= {1, 4, 8}
    assert all(p["context"] % decode.PAGE_SIZE == 0 for p in pts)
    full = decode.BENCHMARK.sweep(RunContext(target=cpu_target, quick=False))
    assert len(full) > len(pts)


def _validated(pts):
    return {(p["q_heads"], p["kv_heads"], p["head_dim"], p["batch"], p["context"], p["dtype"]) for p in pts}


def test_the_sweep_holds_every_point_validate_predicts(cpu_target):
    """The head configurations of the run's models (default: validate's) at validate's grid, in the dtype the step
    runs, timing only the kernel the step runs; on a GPU the quick grid's own llama points are not repeated."""
    from bench.validate import ATTENTION_IMPL, DEFAULT_BATCHES, DEFAULT_CONTEXTS

    want = {(hq, hkv, d, b, c) for hq, hkv, d in ((32, 8, 128), (32, 4, 128))
            for b in DEFAULT_BATCHES["cpu"] for c in DEFAULT_CONTEXTS["cpu"]}
    pts = decode.BENCHMARK.sweep(RunContext(target=cpu_target, quick=True))
    mine = [p for p in pts if p.get("kernels")]
    assert _validated(mine) == {(*k, "float32") for k in want}
    assert {p["kernels"] for p in mine} == {ATTENTION_IMPL["cpu"]}
    h100 = dataclasses.replace(cpu_target, backend="cuda", memory_bytes=80 * 10**9, cache_bytes=50 * 2**20,
                               compute_units=132, capability=(9, 0))
    gpu = decode.BENCHMARK.sweep(RunContext(target=h100, quick=True))
    want = {(hq, hkv, d, b, c, "bfloat16") for hq, hkv, d in ((32, 8, 128), (32, 4, 128))
            for b in DEFAULT_BATCHES["cuda"] for c in DEFAULT_CONTEXTS["cuda"]}
    assert want <= _validated(gpu) and len(_validated(gpu)) == len(gpu)  # no point twice
    assert {p["kernels"] for p in gpu if p.get("kernels")} == {ATTENTION_IMPL["cuda"]}
    assert all(p["model"] == "qwen3-30b-a3b" for p in gpu if p.get("kernels"))


def test_a_point_that_names_its_kernel_times_only_that_one(cpu_target):
    ctx = RunContext(target=cpu_target, quick=True, min_time_s=0.001)
    (m,) = decode.BENCHMARK.run_point(ctx, {**TINY, "dtype": "float32", "kernels": "torch_sdpa/contiguous"})
    assert m.impl == "torch_sdpa" and m.status == "ok" and m.timing is not None and m.check.passed


def test_gpu_sweep_has_the_target_point_and_skips_what_does_not_fit(cpu_target):
    h100 = dataclasses.replace(cpu_target, backend="cuda", memory_bytes=80 * 10**9, cache_bytes=50 * 2**20,
                               compute_units=132, capability=(9, 0))
    for quick in (True, False):
        pts = decode.BENCHMARK.sweep(RunContext(target=h100, quick=quick))
        assert decode._point(decode.MAIN, 64, 4096) in pts
        assert any(p["dtype"] == decode.FP8_KV for p in pts)
    full = decode.BENCHMARK.sweep(RunContext(target=h100, quick=False))
    assert {p["batch"] for p in full} == set(decode.BATCHES) and {p["context"] for p in full} == set(decode.CONTEXTS)
    fits = [decode.BENCHMARK._memory_needed(kern, p, h100) <= decode.MEMORY_FRACTION * h100.memory_bytes for p in full]
    assert any(fits) and not all(fits)  # e.g. 256 x 128k would need 275 GB of KV cache
    big = decode._point(decode.MAIN, 256, 131072)
    assert decode.BENCHMARK._memory_needed(kern, big, h100) > 2 * 256 * 131072 * 8 * 128 * 2


def test_run_point_cpu_checks_then_times(cpu_target):
    ctx = RunContext(target=cpu_target, quick=True, min_time_s=0.001)
    ms = decode.BENCHMARK.run_point(ctx, TINY)
    assert [(m.impl, m.params["layout"]) for m in ms] == [("triton", "contiguous"), ("triton", "paged"),
                                                          ("torch_sdpa", "contiguous")]
    for m in ms:
        assert m.status == "ok", m.reason
        assert m.check.passed and m.check.rel_err > 0
    tri = [m for m in ms if m.impl == "triton"]
    assert all(m.mode == "interpreter" and m.timing is None and m.bandwidth_Bps is None for m in tri)
    assert tri[1].params["page_size"] == decode.PAGE_SIZE
    sdpa = ms[2]
    assert sdpa.mode == "cpu" and sdpa.timing.n >= 1
    assert sdpa.bytes == decode.bytes_moved([48, 48], 8, 2, 16, 2, 2)
    assert sdpa.flop_count == 4 * 2 * 8 * 48 * 16
    assert sdpa.bandwidth_Bps == pytest.approx(sdpa.bytes / sdpa.timing.median_s)


def test_run_point_skips_what_does_not_fit(cpu_target):
    small = dataclasses.replace(cpu_target, memory_bytes=10**6)
    ms = decode.BENCHMARK.run_point(RunContext(target=small, quick=True), {**TINY, "context": 4096, "batch": 8})
    assert len(ms) == 1 and ms[0].status == "skipped" and "70%" in ms[0].reason


def test_broken_kernel_yields_failure_not_number(cpu_target, monkeypatch):
    real = kern.decode_attention

    def off_by_a_bit(*a, **kw):
        o = real(*a, **kw)
        return o.mul_(1.05)

    monkeypatch.setattr(kern, "decode_attention", off_by_a_bit)
    monkeypatch.setattr(kern, "sdpa_decode", lambda q, k, v, **kw: torch.zeros_like(q))
    ms = decode.BENCHMARK.run_point(RunContext(target=cpu_target, quick=True, min_time_s=0.001), TINY)
    assert [m.status for m in ms] == ["failed"] * 3
    assert all(m.timing is None and m.bandwidth_Bps is None for m in ms)


def test_gpu_code_path_runs_end_to_end_in_the_interpreter(cpu_target):
    """The GPU branch of run_point (plan, workspace, timed triton records), on CPU tensors: the kernel runs
    in the interpreter, so the numbers mean nothing; this checks the plumbing a GPU will run."""
    from bench.target import Target

    class NotInterpreted(Target):
        @property
        def triton_interpreted(self) -> bool:
            return False

    fake = NotInterpreted(**{f.name: getattr(cpu_target, f.name) for f in dataclasses.fields(cpu_target)})
    ctx = RunContext(target=fake, quick=True, min_time_s=0.0)
    ms = decode.BENCHMARK.run_point(ctx, {**TINY, "context": 32, "batch": 1})
    tri = [m for m in ms if m.impl == "triton"]
    assert len(tri) == 2 and all(m.status == "ok" and m.timing is not None for m in tri), [m.reason for m in tri]
    assert all(m.extra["num_splits"] >= 1 and m.bytes > 0 for m in tri)


def test_summarize_builds_the_typed_decode_table():
    from bench.measurement import measured
    from bench.timing import summarize

    def rec(impl, layout, median, mode="cuda"):
        params = {**TINY, "layout": layout} | ({"page_size": 16} if layout == "paged" else {})
        return measured(benchmark="decode", kernel="decode", impl=impl, params=params, mode=mode, device="x",
                        timing=None if mode == "interpreter" else summarize([median] * 3, "cuda_events"),
                        bytes=3_000_000, flop_count=6_000_000, num_splits=2)

    ms = [rec("triton", "contiguous", 1e-6), rec("triton", "paged", 2e-6), rec("torch_sdpa", "contiguous", 4e-6),
          rec("triton", "paged", 0, mode="interpreter")]
    ms[0].extra.update(graph_median_s=0.5e-6, graph_bandwidth_Bps=6e12)
    s = decode.BENCHMARK.summarize(ms, {"peaks": {"copy_bandwidth_Bps": 3e12, "memory_bandwidth_Bps": 3.3e12}})
    rows = Curves(decode=s["curves"]["decode"]).decode
    assert len(rows) == 3 and all(isinstance(r, DecodePoint) for r in rows)
    by = {(r.impl, r.layout): r for r in rows}
    c = by[("triton", "contiguous")]
    assert c.bandwidth_Bps == pytest.approx(3e12)
    assert c.fraction_of_measured_hbm == pytest.approx(1.0)
    assert c.fraction_of_memory_bandwidth == pytest.approx(3 / 3.3)
    assert c.time_per_token_s == pytest.approx(1e-6 / TINY["batch"])
    assert c.graph_median_s == 0.5e-6 and c.graph_bandwidth_Bps == 6e12
    assert by[("triton", "paged")].graph_median_s is None
    assert by[("torch_sdpa", "contiguous")].fraction_of_measured_hbm == pytest.approx(0.25)
    assert by[("triton", "paged")].page_size == 16
    # no hbm peaks in the profile (decode run alone): no fractions, still a valid table
    alone = decode.BENCHMARK.summarize(ms, {})["curves"]["decode"]
    assert all(r["fraction_of_measured_hbm"] is None for r in alone)
    Curves(decode=alone)


def test_cpu_rotation_rule():
    """CPU: a cache smaller than 2x the LLC is timed over enough copies to reach it (bounded)."""
    llc = 260 * 2**20
    assert decode.rotation_copies(3 * llc, llc) == 1  # already past the cache
    assert decode.rotation_copies(2 * llc, llc) == 1
    assert decode.rotation_copies(268 * 10**6, llc) == 3  # the 8 x 8192 point that read at 128% of copy bandwidth
    n = decode.rotation_copies(2 * 2**20, llc)
    assert n * 2 * 2**20 >= 2 * llc and (n - 1) * 2 * 2**20 < 2 * llc
    assert decode.rotation_copies(1, llc) == decode.MAX_ROTATION_COPIES


def test_cpu_sdpa_timing_rotates_through_copies(small_cpu_target, monkeypatch):
    seen = []
    real = kern.sdpa_decode

    def spy(q, k, v, **kw):
        seen.append(k.data_ptr())
        return real(q, k, v, **kw)

    monkeypatch.setattr(kern, "sdpa_decode", spy)
    ctx = RunContext(target=small_cpu_target, quick=True, min_time_s=0.001)
    point = {**TINY, "batch": 2, "context": 256}  # K+V 64 KB against a 1 MiB LLC: 32 copies
    ms = decode.BENCHMARK.run_point(ctx, point)
    sdpa = next(m for m in ms if m.impl == "torch_sdpa")
    assert sdpa.status == "ok" and sdpa.check.passed
    n = decode.rotation_copies(2 * 2 * 256 * 2 * 16 * 2, small_cpu_target.cache_bytes)
    assert n == 32 and f"rotated over {n} copies" in sdpa.cache
    timed = seen[1:]  # the check ran on the point's own cache; every timed call then takes the next copy
    assert seen[0] not in timed and len(timed) >= 5
    assert len(set(timed)) == min(n, len(timed))


def test_sdpa_that_raises_is_a_failed_record(cpu_target, monkeypatch):
    def boom(*a, **kw):
        raise RuntimeError("No available kernel. Aborting execution.")

    monkeypatch.setattr(kern, "sdpa_decode", boom)
    ms = decode.BENCHMARK.run_point(RunContext(target=cpu_target, quick=True, min_time_s=0.001), TINY)
    sdpa = ms[-1]
    assert sdpa.impl == "torch_sdpa" and sdpa.status == "failed" and "No available kernel" in sdpa.reason
    assert [m.status for m in ms[:2]] == ["ok", "ok"]  # the Triton records are kept


def test_sdpa_backend_exclusion_runs():
    q, kc, vc, _sl, _ = _case(4, lens=[40, 40], dtype=torch.float32)
    k, v, gqa = kern.sdpa_inputs(kc, vc, q.shape[1], context=40)
    a = kern.sdpa_decode(q, k, v, enable_gqa=gqa)
    b = kern.sdpa_decode(q, k, v, enable_gqa=gqa, exclude=("CUDNN_ATTENTION", "FLASH_ATTENTION"))
    assert torch.allclose(a, b, atol=1e-6)


def test_fixed_config_and_runtime_values_share_one_kernel():
    """group and the single-split flag are runtime values; a fixed config is accepted (CPU: the interpreter's
    tile is used regardless)."""
    assert all({"BLOCK_N", "num_warps", "num_stages"} == set(c) for c in kern.CONFIGS)
    for group in (1, 4):
        for kw in ({"split_tokens": 23}, {"num_splits": 1}):
            _run_and_check(*_case(group, page=16, seed=group), config=kern.CONFIGS[-1], **kw)


# -- on a GPU (ROOFLAB_TEST_DEVICE=cuda, fixture gpu_target): every compiled variant, small real sizes --------

GPU_LENS = [1000, 4097, 33, 2048]  # odd, one past a power of two, shorter than a tile, a clean multiple


def _gpu_case(gpu_target, group, d, dtype, kv_dtype=None, page=None, lens=GPU_LENS, kv_heads=2):
    return tuple(t.to(gpu_target.torch_device) if t is not None else None
                 for t in _case(group, kv_heads=kv_heads, d=d, lens=lens, dtype=dtype, kv_dtype=kv_dtype,
                                page=page))


@pytest.mark.gpu
@pytest.mark.parametrize("kv", ["bf16", "fp16", "fp8"])
@pytest.mark.parametrize("page", [None, 16], ids=["contiguous", "paged16"])
@pytest.mark.parametrize("d", [128, 64])
def test_every_config_on_gpu(gpu_target, kv, page, d):
    """Every autotune config as a fixed launch, multi-split (odd split length) and single-split, for each KV
    dtype and layout the sweep runs; then the autotuned default plan."""
    if kv == "fp8" and not gpu_target.supports_fp8()[0]:
        pytest.skip(gpu_target.supports_fp8()[1])
    dtype = torch.float16 if kv == "fp16" else torch.bfloat16
    kv_dtype = torch.float8_e4m3fn if kv == "fp8" else None
    scales = {"k_scale": 0.75, "v_scale": 1.5} if kv == "fp8" else {}
    q, kc, vc, sl, bt = _gpu_case(gpu_target, 4, d, dtype, kv_dtype, page)
    for cfg in kern.CONFIGS:
        for kw in ({"split_tokens": 300}, {"num_splits": 1}):
            _run_and_check(q, kc, vc, sl, bt, config=cfg, **kw, **scales)
    _run_and_check(q, kc, vc, sl, bt, **scales)  # autotuned, the GPU's own split plan


@pytest.mark.gpu
@pytest.mark.parametrize("group,kv_heads", [(1, 4), (8, 1), (8, 2)])
def test_head_configs_on_gpu(gpu_target, group, kv_heads):
    """The GQA ratios of the sweep (MHA, 8q/1kv, 8 per kv head), autotuned, paged and contiguous."""
    for page in (None, 16, 64):
        _run_and_check(*_gpu_case(gpu_target, group, 128, torch.bfloat16, page=page, kv_heads=kv_heads))


@pytest.mark.gpu
def test_run_point_on_gpu(gpu_target):
    """The benchmark's GPU branch at a small real point: both layouts and SDPA checked, timed, graph-timed."""
    ctx = RunContext(target=gpu_target, quick=True, min_time_s=0.01)
    ms = decode.BENCHMARK.run_point(ctx, decode._point(decode.MAIN, 4, 1024))
    assert [(m.impl, m.params["layout"]) for m in ms] == [("triton", "contiguous"), ("triton", "paged"),
                                                          ("torch_sdpa", "contiguous")]
    for m in ms:
        assert m.status == "ok", (m.impl, m.reason)
        assert m.mode == "cuda" and m.bandwidth_Bps > 0 and "graph_error" not in m.extra, m.extra
