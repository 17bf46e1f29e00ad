"""KV-cache decode attention: how close one decode step's attention gets to the memory roof.

One point = (head config of a real model, KV dtype, batch, context): every sequence attends with one new
query token to ``context`` cached tokens. Kernels: the split-KV Triton kernel of kernels/decode_attention.py
on a contiguous and on a paged cache (the same storage cut into shuffled pages), and PyTorch SDPA; each is
checked against a float64 reference (and the Triton kernel on a small ragged batch) before it is timed,
eagerly and replayed from a CUDA graph. Accounting: :func:`bytes_moved` and :func:`flop_count`. L2 is
flushed before every GPU call; on CPU a small cache is rotated over copies. Points that would not fit in
MEMORY_FRACTION of the device memory are recorded as skipped.

How and why: docs/method.md ("decode").
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch

from bench import checks, dtypes
from bench.measurement import Check, Measurement, measured, not_measured, timed_records
from bench.registry import Benchmark, RunContext

# (q_heads, kv_heads, head_dim) of real models, from their Hugging Face config.json (num_attention_heads,
# num_key_value_heads, head_dim)
HEAD_CONFIGS: dict[str, tuple[int, int, int]] = {
    "llama-3.1-8b": (32, 8, 128),  # GQA 4
    "llama-3.1-70b": (64, 8, 128),  # GQA 8
    "llama-3.1-70b-tp8": (8, 1, 128),  # one GPU's share at tensor parallel 8: MQA-like, GQA 8
    "mha-64x128": (64, 64, 128),  # multi-head attention (GQA 1), 64 heads as in kimi-k2
    "gpt-oss-120b": (64, 8, 64),  # head_dim 64
}
MAIN = "llama-3.1-8b"
BATCHES = (1, 8, 32, 64, 128, 256)
CONTEXTS = (512, 2048, 4096, 8192, 32768, 131072)
PAGE_SIZE = 16  # vLLM's default block size
MEMORY_FRACTION = 0.70
FP8_KV = "float8_e4m3fn"
FP8_SCALES = (0.75, 1.5)  # k_scale, v_scale of the fp8 points: arbitrary, not 1, so the scales are checked

# the small ragged check: odd lengths, 70 spans a partial 5th page, 32 ends exactly on a page boundary
RAGGED_LENS = (37, 70, 32, 5)
RAGGED_SPLIT_TOKENS = 23  # odd split: split boundaries fall inside tiles and pages
RAGGED_MAX_KV_HEADS = 2

LAYOUTS = ("contiguous", "paged")
CPU_ROTATE_MULTIPLE = 2  # CPU: rotated copies of K + V together reach 2x the LLC (like gemm's inputs)
MAX_ROTATION_COPIES = 4096


def _point(model: str, batch: int, context: int, dtype: str = "bfloat16") -> dict:
    hq, hkv, d = HEAD_CONFIGS[model]
    return {"model": model, "q_heads": hq, "kv_heads": hkv, "head_dim": d, "dtype": dtype,
            "batch": batch, "context": context}


def _dtypes(dtype: str) -> tuple[torch.dtype, torch.dtype]:
    """(kv dtype, q dtype): an fp8 cache is read with bf16 queries."""
    if dtype == FP8_KV:
        return getattr(torch, FP8_KV), torch.bfloat16
    dt = dtypes.torch_dtype(dtype)
    return dt, dt


def _fill_random(t: torch.Tensor, gen: torch.Generator, scale: float = 1.0, chunk: int = 1 << 26) -> torch.Tensor:
    """Random normal values drawn in fp32 chunk by chunk: no fp32 copy of a many-GB cache at once."""
    flat = t.view(-1)
    for lo in range(0, flat.numel(), chunk):
        hi = min(flat.numel(), lo + chunk)
        flat[lo:hi] = checks.random_tensor(hi - lo, torch.float32, str(t.device), gen, scale=scale)
    return t


def rotation_copies(kv_bytes: int, cache_bytes: int) -> int:
    """CPU: copies of a K + V of ``kv_bytes`` that together reach CPU_ROTATE_MULTIPLE × the LLC (1 when one
    copy already does), at most MAX_ROTATION_COPIES."""
    need = CPU_ROTATE_MULTIPLE * cache_bytes
    if kv_bytes <= 0 or kv_bytes >= need:
        return 1
    return int(min(MAX_ROTATION_COPIES, math.ceil(need / kv_bytes)))


def _esize(dt: torch.dtype) -> int:
    return torch.empty((), dtype=dt).element_size()


def bytes_moved(seq_lens: list[int], q_heads: int, kv_heads: int, head_dim: int, kv_bytes: int,
                q_bytes: int, page_size: int | None = None) -> int:
    """The fewest bytes a decode step must move: K and V read once (2 · Σ L · kv_heads · head_dim ·
    kv_bytes), q read and out written once (2 · batch · q_heads · head_dim · q_bytes) and, for a paged cache,
    the int32 block-table entries the sequences use (4 · Σ ⌈L / page_size⌉). The split-KV partials are the
    kernel's own overhead and are not counted."""
    kv = 2 * sum(seq_lens) * kv_heads * head_dim * kv_bytes
    qo = 2 * len(seq_lens) * q_heads * head_dim * q_bytes
    bt = 4 * sum(-(-L // page_size) for L in seq_lens) if page_size else 0
    return kv + qo + bt


def flop_count(seq_lens: list[int], q_heads: int, head_dim: int) -> int:
    """QKᵀ and PV, each one multiply-add (2 FLOPs) per (token, q head, dim): 4 · Σ L · q_heads · head_dim
    (4 · batch · q_heads · context · head_dim for equal lengths)."""
    return 4 * sum(seq_lens) * q_heads * head_dim


def _skipped(name: str, point: dict, target, reason: str, impl: str = "*", **params) -> Measurement:
    return not_measured(benchmark=name, kernel="decode", impl=impl, params={**point, **params}, reason=reason,
                        mode=target.backend, device=target.name)


class DecodeBenchmark(Benchmark):
    name = "decode"
    title = "KV-cache decode attention (split-KV Triton, contiguous and paged, vs SDPA)"

    # -- the sweep ---------------------------------------------------------------------------------------
    def sweep(self, ctx: RunContext) -> list[dict]:
        t = ctx.target
        pts: list[dict] = []
        if not t.is_cuda:
            # CPU: SDPA timed at small sizes; every head config once so its GQA ratio / head_dim is checked
            # in the interpreter
            main = ([(1, 512), (8, 2048)] if ctx.quick else
                    [(b, c) for b in (1, 8, 32) for c in (512, 2048)] + [(1, 8192), (8, 8192)])
            pts += [_point(MAIN, b, c) for b, c in main]
            others = [(1, 512)] if ctx.quick else [(1, 512), (8, 2048)]
            pts += [_point(m, b, c) for m in HEAD_CONFIGS if m != MAIN for b, c in others]
            return pts + self._validation_points(ctx, pts)
        if ctx.quick:
            pts += [_point(MAIN, b, c) for b in (1, 8, 64, 256) for c in (512, 4096, 32768)]
            pts += [_point(m, 64, 4096) for m in HEAD_CONFIGS if m != MAIN]
        else:
            pts += [_point(m, b, c) for m in HEAD_CONFIGS for b in BATCHES for c in CONTEXTS]
        if t.supports_fp8()[0]:
            fp8 = [(64, 4096)] if ctx.quick else [(b, c) for b in (8, 64) for c in (4096, 32768)]
            pts += [_point(MAIN, b, c, FP8_KV) for b, c in fp8]
        return pts + self._validation_points(ctx, pts)

    @staticmethod
    def _validation_points(ctx: RunContext, have: list[dict]) -> list[dict]:
        """The points ``rooflab validate`` predicts, so its attention term reads measured points: the head configs
        of the run's models (bench.validate.plan.sweep_models; GQA ones the step can build) at validate's grid for
        this device, in the dtype its step runs, timing only the kernel its step runs (``kernels``); a point the
        sweep has already is not repeated."""
        from bench.validate.plan import DEFAULT_BATCHES, DEFAULT_CONTEXTS, sweep_models
        from bench.validate.prediction import ATTENTION_IMPL
        from bench.validate.transformer import step_dtype, supported

        t = ctx.target
        dt = step_dtype(t)
        seen = {(p["q_heads"], p["kv_heads"], p["head_dim"], p["dtype"], p["batch"], p["context"]) for p in have}
        labels = {cfg: name for name, cfg in HEAD_CONFIGS.items()}
        out: list[dict] = []
        for m in sweep_models(ctx.options):
            if supported(m):
                continue
            cfg = (m.heads, m.kv_heads, m.head_dim)
            for b in DEFAULT_BATCHES[t.backend]:
                for c in DEFAULT_CONTEXTS[t.backend]:
                    if (*cfg, dt, b, c) in seen:
                        continue
                    seen.add((*cfg, dt, b, c))
                    out.append({"model": labels.get(cfg, m.name), "q_heads": cfg[0], "kv_heads": cfg[1],
                                "head_dim": cfg[2], "dtype": dt, "batch": b, "context": c,
                                "kernels": ATTENTION_IMPL[t.backend]})
        return out

    # -- one point ---------------------------------------------------------------------------------------
    # Out-of-memory at a point skips the larger caches of the same head config and dtype (see docs/runner.md).
    @staticmethod
    def series_key(point: dict):
        return point["model"], point["dtype"]

    @staticmethod
    def size_of(point: dict) -> int:
        return int(point["batch"]) * int(point["context"])

    def run_point(self, ctx: RunContext, point: dict) -> list[Measurement]:
        from kernels import decode_attention as kern

        t = ctx.target
        if _dtypes(point["dtype"])[0] in kern.FP8_DTYPES and not t.supports_fp8()[0]:
            return [_skipped(self.name, point, t, t.supports_fp8()[1])]
        need = self._memory_needed(kern, point, t)
        budget = MEMORY_FRACTION * t.memory_bytes if t.memory_bytes else math.inf
        if need > budget:
            return [_skipped(self.name, point, t, f"needs ~{need / 1e9:.1f} GB, over {MEMORY_FRACTION:.0%} of "
                                                  f"the device's {t.memory_bytes / 1e9:.1f} GB")]
        try:
            return self._measure(ctx, point, kern)
        except torch.cuda.OutOfMemoryError as e:  # the estimate fitted, the allocator did not (fragmentation)
            torch.cuda.empty_cache()
            return [_skipped(self.name, point, t, f"out of device memory: {str(e).splitlines()[0][:160]}")]

    def _measure(self, ctx: RunContext, point: dict, kern) -> list[Measurement]:
        t = ctx.target
        hq, hkv, d = int(point["q_heads"]), int(point["kv_heads"]), int(point["head_dim"])
        B, L = int(point["batch"]), int(point["context"])
        kv_dt, q_dt = _dtypes(point["dtype"])
        fp8 = kv_dt in kern.FP8_DTYPES
        dev = t.torch_device
        gen = checks.generator(dev, ctx.seed_for(point))
        k_scale, v_scale = FP8_SCALES if fp8 else (1.0, 1.0)
        tol = checks.tolerance(q_dt)
        q = checks.random_tensor((B, hq, d), q_dt, dev, gen)
        k_cache = _fill_random(torch.empty(B, L, hkv, d, dtype=kv_dt, device=dev), gen)
        v_cache = _fill_random(torch.empty(B, L, hkv, d, dtype=kv_dt, device=dev), gen)
        seq_lens = torch.full((B,), L, dtype=torch.int32, device=dev)
        lens = [L] * B
        flops = flop_count(lens, hq, d)
        kv_bytes = 2 * B * L * hkv * d * _esize(kv_dt)
        copies = 1 if t.is_cuda else rotation_copies(kv_bytes, t.cache_bytes)
        cache = (f"L2 flushed before each call (read {2 * t.cache_bytes / 2**20:.0f} MiB)" if t.is_cuda else
                 f"CPU: K+V {kv_bytes / t.cache_bytes:.2f}x LLC" + (
                     f", rotated over {copies} copies ({copies * kv_bytes / t.cache_bytes:.1f}x LLC)"
                     if copies > 1 else ", not cached between calls"))
        flush = None
        if t.is_cuda:
            from bench.timing import L2Flusher

            flush = L2Flusher(t)
        out: list[Measurement] = []

        # Triton: contiguous and paged (the paged pool is the contiguous storage cut into shuffled pages)
        n_pages = B * L // PAGE_SIZE
        block_table = torch.randperm(n_pages, generator=gen, device=dev).view(B, L // PAGE_SIZE).int()
        caches = {"contiguous": (k_cache, v_cache, None),
                  "paged": (k_cache.view(n_pages, PAGE_SIZE, hkv, d), v_cache.view(n_pages, PAGE_SIZE, hkv, d),
                            block_table)}
        only = point.get("kernels")  # the one impl/layout to time, when the point names one
        for layout in LAYOUTS:
            if only and only != f"triton/{layout}":
                continue
            kc, vc, bt = caches[layout]
            page = PAGE_SIZE if layout == "paged" else None
            params = {**point, "layout": layout} | ({"page_size": page} if page else {})
            nbytes = bytes_moved(lens, hq, hkv, d, _esize(kv_dt), _esize(q_dt), page)
            ragged = self._ragged_check(kern, layout, hq // hkv, hkv, d, kv_dt, q_dt, dev, gen, t.is_cuda,
                                        k_scale, v_scale)
            if t.triton_interpreted:  # correctness only, on the small ragged batch
                out.append(measured(benchmark=self.name, kernel="decode", impl="triton", params=params,
                                    mode="interpreter", device=t.name, timing=None, check=ragged, cache=None,
                                    checked_on=f"ragged batch, lengths {list(RAGGED_LENS)}, "
                                               f"{min(hkv, RAGGED_MAX_KV_HEADS)} kv heads"))
                continue
            plan = kern.plan_splits(B, hkv, L, t.compute_units, on_gpu=True)
            ws = kern.DecodeWorkspace.allocate(B, hq, d, plan.num_splits, dev) if plan.num_splits > 1 else None
            o = torch.empty_like(q)

            def run(kc=kc, vc=vc, bt=bt, o=o, ws=ws, plan=plan):
                kern.decode_attention(q, kc, vc, seq_lens, bt, out=o, workspace=ws, max_seq_len=L,
                                      num_splits=plan.num_splits, k_scale=k_scale, v_scale=v_scale)

            checks.poison(o)
            run()
            ref = kern.reference(q, kc, vc, seq_lens, bt, k_scale=k_scale, v_scale=v_scale)
            chk = _both(checks.compare(o, ref, tol, "float64 explicit-softmax attention"), ragged)
            timing = ctx.time(run, before_each=flush) if chk.passed else None
            graph = _graph_timing(ctx, run, flush, lambda o=o: checks.poison(o), ref, tol, nbytes) \
                if chk.passed else {}
            del ref
            out.append(measured(benchmark=self.name, kernel="decode", impl="triton", params=params, mode="cuda",
                                device=t.name, timing=timing, bytes=nbytes, flop_count=flops, check=chk,
                                cache=cache, num_splits=plan.num_splits, split_tokens=plan.split_tokens, **graph))
        del caches, block_table

        # the library baseline: torch SDPA on the contiguous cache
        if only and only != "torch_sdpa/contiguous":
            return out
        params = {**point, "layout": "contiguous"}
        if fp8:
            out.append(_skipped(self.name, point, t, "torch SDPA has no fp8 KV-cache path", impl="torch_sdpa",
                                layout="contiguous"))
            return out
        k, v, gqa = kern.sdpa_inputs(k_cache, v_cache, hq)  # a repeat_interleave copy, if any, happens here
        sdpa_heads = k.shape[1]
        nbytes = bytes_moved(lens, hq, sdpa_heads, d, _esize(kv_dt), _esize(q_dt))
        box: dict = {}
        backends: dict[str, tuple[str, ...]] = {"exclude": ()}
        sdpa_ref = kern.reference(q, k_cache, v_cache, seq_lens)

        def sdpa():
            box["o"] = kern.sdpa_decode(q, k, v, enable_gqa=gqa, exclude=backends["exclude"])

        def check_sdpa() -> Check:
            sdpa()
            return checks.compare(box["o"], sdpa_ref, tol, "float64 explicit-softmax attention")

        fallback = None
        try:
            chk = check_sdpa()
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError as e:  # the backend torch chose refused (seen with cuDNN on some builds): retry
            first = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            chk = Check(passed=False, reference="float64 explicit-softmax attention", detail=f"SDPA raised {first}")
            if t.is_cuda:
                backends["exclude"] = ("CUDNN_ATTENTION",)
                fallback = f"default SDPA backend raised {first[:160]}; timed without cuDNN"
                try:
                    chk = check_sdpa()
                except RuntimeError as e2:
                    chk = Check(passed=False, reference="float64 explicit-softmax attention",
                                detail=f"SDPA raised {first}; without cuDNN: {type(e2).__name__}: "
                                       f"{str(e2).splitlines()[0] if str(e2) else ''}")
        timed = sdpa
        if chk.passed and copies > 1:  # CPU: rotate over copies of the cache (docs/method.md, "decode")
            timed = self.rotated_sdpa(kern, q, k_cache, v_cache, L, hq, copies, gqa, box)
        timing = ctx.time(timed, before_each=flush) if chk.passed else None
        graph = {}
        if chk.passed and t.is_cuda:
            # the graph's output is the tensor SDPA allocated during capture: box["o"] after capture
            graph = _graph_timing(ctx, sdpa, flush, lambda: checks.poison(box["o"]), sdpa_ref, tol, nbytes)
        how = "mha" if hq == hkv else ("enable_gqa" if gqa else "repeat_interleave (expanded bytes counted)")
        extra: dict[str, Any] = {"sdpa_fallback": fallback} if fallback else {}
        out.append(measured(benchmark=self.name, kernel="decode", impl="torch_sdpa", params=params,
                            mode=ctx.torch_mode, device=t.name, timing=timing, bytes=nbytes, flop_count=flops,
                            check=chk, cache=cache, sdpa_heads=how, **graph, **extra))
        return out

    @staticmethod
    def rotated_sdpa(kern, q, k_cache, v_cache, L, hq, copies, gqa, box):
        """SDPA over ``copies`` distinct copies of the cache in turn (one pool, views per copy)."""
        pool_k = k_cache.unsqueeze(0).expand(copies, *k_cache.shape).clone()
        pool_v = v_cache.unsqueeze(0).expand(copies, *v_cache.shape).clone()
        views = []
        for i in range(copies):
            kk, vv, _ = kern.sdpa_inputs(pool_k[i], pool_v[i], hq, allow_gqa=gqa)
            views.append((kk, vv))
        state = {"i": 0}

        def run():
            kk, vv = views[state["i"]]
            state["i"] = (state["i"] + 1) % copies
            box["o"] = kern.sdpa_decode(q, kk, vv, enable_gqa=gqa)

        return run

    def summarize(self, measurements: list[Measurement], device: dict) -> dict:
        return decode_curve(measurements, device)

    @staticmethod
    def _memory_needed(kern, point: dict, t) -> int:
        """Device bytes a point allocates at once: the cache, the SDPA expansion if torch lacks enable_gqa,
        q/out/workspace, the L2 flush buffer, and the float64 reference's per-sequence temporaries."""
        hq, hkv, d = point["q_heads"], point["kv_heads"], point["head_dim"]
        B, L = point["batch"], point["context"]
        kv_dt, _ = _dtypes(point["dtype"])
        kv = 2 * B * L * hkv * d * _esize(kv_dt)
        if hq != hkv and not kern.SDPA_HAS_GQA:
            kv += 2 * B * L * hq * d * _esize(kv_dt)
        small = B * hq * d * 4 * (kern.MAX_SPLITS + 8)
        ref = 4 * min(L * hkv * d, kern.REFERENCE_CHUNK_ELEMENTS + L * d) * 8 + 3 * hq * L * 8
        return kv + small + 2 * t.cache_bytes + ref

    @staticmethod
    def _ragged_check(kern, layout, group, kv_heads, d, kv_dt, q_dt, dev, gen, on_gpu, k_scale, v_scale) -> Check:
        """The kernel on a small ragged batch (odd lengths, page boundaries, odd split length)."""
        hkv = min(kv_heads, RAGGED_MAX_KV_HEADS)
        hq = group * hkv
        B, cap = len(RAGGED_LENS), max(RAGGED_LENS) + 3
        q = checks.random_tensor((B, hq, d), q_dt, dev, gen)
        seq_lens = torch.tensor(RAGGED_LENS, dtype=torch.int32, device=dev)
        if layout == "paged":
            per_seq = -(-cap // PAGE_SIZE)
            pool = B * per_seq + 3  # spare pages: the table does not cover the whole pool
            shape = (pool, PAGE_SIZE, hkv, d)
            bt = torch.randperm(pool, generator=gen, device=dev)[: B * per_seq].view(B, per_seq).int()
        else:
            shape, bt = (B, cap, hkv, d), None
        kc = checks.random_tensor(shape, torch.float32, dev, gen).to(kv_dt)
        vc = checks.random_tensor(shape, torch.float32, dev, gen).to(kv_dt)
        ref = kern.reference(q, kc, vc, seq_lens, bt, k_scale=k_scale, v_scale=v_scale)
        tol = checks.tolerance(q_dt)
        # the interpreter runs the multi-split path only (slow); a GPU runs it with every autotune config (fixed
        # launches, no tuning: each compiled variant checked on odd lengths) and its own split plan once
        plans = [dict(split_tokens=RAGGED_SPLIT_TOKENS)]
        if on_gpu:
            plans = [dict(split_tokens=RAGGED_SPLIT_TOKENS, config=c) for c in kern.CONFIGS]
            plans.append(dict(config=kern.CONFIGS[0]))
        results = []
        for kw in plans:
            o = checks.poison(torch.empty_like(q))
            kern.decode_attention(q, kc, vc, seq_lens, bt, out=o, k_scale=k_scale, v_scale=v_scale, **kw)
            results.append(checks.compare(o, ref, tol, "float64 explicit-softmax attention (ragged batch)"))
        return functools.reduce(_both, results)


def _graph_timing(ctx: RunContext, fn, flush, poison_out, ref, tol: float, nbytes: int) -> dict:
    """GPU only: one call of ``fn`` captured in a CUDA graph and timed by replay, L2 flushed before each (for
    microsecond points the graph number is the kernels, the eager number what an eager program sees, launch
    overhead included: docs/method.md). The replay is checked against the reference first. Returns the
    Measurement extras: graph_median_s, graph_p10_s, graph_p90_s, graph_bandwidth_Bps; or graph_error."""
    if not ctx.target.is_cuda:
        return {}
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up outside the capture (lazy init, JIT, autotune)
            fn()
            fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        o = poison_out()
        graph.replay()
        chk = checks.compare(o, ref, tol, "float64 explicit-softmax attention (graph replay)")
        if not chk.passed:
            return {"graph_error": f"graph replay failed its check: {chk.detail}"}
        tm = ctx.time(graph.replay, before_each=flush)
    except Exception as e:  # a capture problem must not lose the eager number
        return {"graph_error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    return {"graph_median_s": tm.median_s, "graph_p10_s": tm.p10_s, "graph_p90_s": tm.p90_s,
            "graph_bandwidth_Bps": nbytes / tm.median_s}


def _both(a: Check, b: Check) -> Check:
    """One Check that passes only if both do (the worse error is kept)."""
    errs = [e for e in (a.rel_err, b.rel_err) if e is not None]
    detail = "; ".join(x for x in (a.detail, b.detail) if x)
    return Check(passed=a.passed and b.passed, rel_err=max(errs) if errs else None, tol=a.tol,
                 reference=a.reference + (" + " + b.reference if b.reference != a.reference else ""),
                 detail=detail)


# -- profile contribution ----------------------------------------------------------------------------------

def decode_curve(measurements: list[Measurement], device: dict) -> dict:
    """The decode efficiency table: achieved bandwidth by head config × batch × context, per impl/layout."""
    peaks = device.get("peaks") or {}
    copy_bw, mem_bw = peaks.get("copy_bandwidth_Bps"), peaks.get("memory_bandwidth_Bps")
    curve = []
    for m, timing in timed_records(measurements):
        bw = m.bandwidth_Bps
        if not bw:
            continue
        p = m.params
        curve.append({
            "model": p["model"], "impl": m.impl, "layout": p["layout"], "page_size": p.get("page_size"),
            "dtype": p["dtype"], "batch": p["batch"], "context": p["context"], "q_heads": p["q_heads"],
            "kv_heads": p["kv_heads"], "head_dim": p["head_dim"], "num_splits": m.extra.get("num_splits"),
            "bytes": m.bytes, "bandwidth_Bps": bw, "flops": m.flops or 0.0,
            "median_s": timing.median_s, "p10_s": timing.p10_s, "p90_s": timing.p90_s,
            "time_per_token_s": timing.median_s / m.int_param("batch"),
            "fraction_of_measured_hbm": bw / copy_bw if copy_bw else None,
            "fraction_of_memory_bandwidth": bw / mem_bw if mem_bw else None,
            "graph_median_s": m.extra.get("graph_median_s"),
            "graph_bandwidth_Bps": m.extra.get("graph_bandwidth_Bps"),
        })
    curve.sort(key=lambda r: (r["model"], r["dtype"], r["impl"], r["layout"], r["batch"], r["context"]))
    return {"curves": {"decode": curve}}


BENCHMARK = DecodeBenchmark()
