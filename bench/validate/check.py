"""The float64 re-computation of a decode step and the check of the step against it (docs/validate.md, "The
check")."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import checks
from ..measurement import Check
from .transformer import RMS_EPS, DecodeState, GatedMLP, Transformer

# Allowed ‖out − ref‖ / ‖ref‖ of each checked output of a step (see check_step) against float64. Every GEMM output,
# norm and residual add is rounded to the step's dtype (bf16: 2^-9 relative per rounding), a few dozen roundings
# per layer in a chain of layers: measured on random weights (CPU, 2 layers) the worst bf16 output is 0.3-0.9% off,
# fp32 ~5e-7. The limits keep ≥ 3× margin over that, while a wrong kernel (a missed expert, a wrong cache slot, a
# bad rotary) moves its output by far more (a wrong cache slot: O(1) in the new K/V, ~5% in the attention).
TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 1e-2}
# MoE routing: the step's chosen experts must each have a float64 router logit within this margin (× the
# logits' standard deviation) of the float64 k-th largest: rounding can swap near-tied experts, an indexing bug
# picks experts far from the top.
ROUTE_MARGIN = {"float32": 1e-3, "bfloat16": 5e-2, "float16": 2e-2}
REFERENCE_VOCAB_ROWS = 4096  # logits checked per point (random rows of the LM head); the hidden state in full
REFERENCE_SCRATCH_BYTES = {"cuda": 6 << 30, "cpu": 2 << 30}  # float64 copies of one weight / one cache chunk


def rms64(x: torch.Tensor) -> torch.Tensor:
    """RMSNorm without weights, in the input's precision (float64 here)."""
    return x / (x.pow(2).mean(dim=-1, keepdim=True) + RMS_EPS).sqrt()


def lin64(x64: torch.Tensor, w: torch.Tensor, chunk_rows: int = 1 << 14) -> torch.Tensor:
    """x64 @ wᵀ in float64, converting ``w`` [out, in] in row chunks (a float64 copy of a whole LM head is GBs)."""
    outs = [x64 @ w[lo:lo + chunk_rows].double().t() for lo in range(0, w.shape[0], chunk_rows)]
    return torch.cat(outs, dim=-1)


def mlp64(xn: torch.Tensor, mlp: GatedMLP) -> torch.Tensor:
    gu = lin64(xn, mlp.gate_up)
    f = gu.shape[-1] // 2
    return lin64(F.silu(gu[:, :f]) * gu[:, f:], mlp.down)


@dataclass
class Reference:
    hidden: torch.Tensor  # float64 [B, hidden]: the residual stream after the last layer
    parts: dict[str, torch.Tensor]  # float64 per-layer outputs, keyed as the step's StepOutput.parts
    vocab_rows: torch.Tensor  # int64 [S]: the vocabulary rows whose logits are checked
    logits: torch.Tensor  # float64 [B, S]
    problem: str = ""  # why the step's MoE routing is not a float64 top-k ("" when it is)


def reference(net: Transformer, st: DecodeState, routes: Sequence[torch.Tensor | None], vocab_rows: torch.Tensor,
              scratch_bytes: int = 1 << 30) -> Reference:
    """The same decode step in float64 from the same weights, cache (positions < context − 1) and input: its own
    K/V for the new token and its own rotary. MoE: the step's expert ids ``routes`` are accepted only if each
    chosen expert's float64 router logit is within ROUTE_MARGIN of the float64 k-th largest (near-ties may swap);
    the gates are recomputed in float64. The LM head is recomputed for ``vocab_rows`` only (the whole head in
    float64 costs seconds on a CPU; every logit is still checked to be written and finite)."""
    B, pos = st.batch, st.pos
    Hq, Hkv, D = net.Hq, net.Hkv, net.D
    G = Hq // Hkv
    margin = ROUTE_MARGIN[net.dtype_name]
    x = st.x.double()
    problem = ""
    parts: dict[str, torch.Tensor] = {}
    for i, layer in enumerate(net.layers):
        qkv = lin64(rms64(x), layer.wqkv)
        qk = torch.view_as_complex(qkv[:, : (Hq + Hkv) * D].reshape(B, Hq + Hkv, D // 2, 2).contiguous())
        qk = torch.view_as_real(qk * st.rope64).reshape(B, Hq + Hkv, D)
        q, k_new = qk[:, :Hq], qk[:, Hq:]
        v_new = qkv[:, (Hq + Hkv) * D:].reshape(B, Hkv, D)
        attn = torch.empty(B, Hq, D, dtype=torch.float64, device=x.device)
        per_seq = max(1, scratch_bytes // max(1, (pos + 1) * Hkv * D * 8 * 4))
        for b0 in range(0, B, per_seq):
            b1 = min(B, b0 + per_seq)
            kk = torch.cat([st.k_cache[i][b0:b1, :pos].double(), k_new[b0:b1, None]], dim=1)  # [b, L, Hkv, D]
            vv = torch.cat([st.v_cache[i][b0:b1, :pos].double(), v_new[b0:b1, None]], dim=1)
            qq = q[b0:b1].reshape(b1 - b0, Hkv, G, D)
            sc = torch.einsum("bhgd,blhd->bhgl", qq, kk) / math.sqrt(D)
            p = torch.softmax(sc, dim=-1)
            attn[b0:b1] = torch.einsum("bhgl,blhd->bhgd", p, vv).reshape(b1 - b0, Hq, D)
            del kk, vv, sc, p
        parts[f"layer {i} attention"] = attn.reshape(B, Hq * D)
        parts[f"layer {i} new K in the cache"], parts[f"layer {i} new V in the cache"] = k_new, v_new
        x = x + lin64(attn.reshape(B, Hq * D), layer.wo)
        xn = rms64(x)
        ex = layer.experts
        if ex is not None:
            route = routes[i]
            if route is None:
                raise ValueError(f"layer {i}: no expert choice of the step to check (run the step first)")
            k = ex.top_k
            logits = lin64(xn, ex.router)
            ids = route.long()
            kth = torch.topk(logits, k, dim=-1).values[:, -1:]
            chosen = logits.gather(1, ids)
            tol = margin * float(logits.std())
            distinct = bool((torch.sort(ids, dim=-1).values.diff(dim=-1) > 0).all()) if k > 1 else True
            if not distinct or bool((chosen < kth - tol).any()):
                problem = problem or (f"layer {i}: the step's experts are not a top-{k} of the float64 router "
                                      "logits")
            gates = torch.softmax(chosen, dim=-1)
            out = torch.zeros_like(x)
            for e in torch.unique(ids).tolist():
                tok, slot = (ids == e).nonzero(as_tuple=True)
                h = xn[tok] @ ex.w13[e].double()
                inter = h.shape[-1] // 2
                y = (F.silu(h[:, :inter]) * h[:, inter:]) @ ex.w2[e].double()
                out.index_add_(0, tok, gates[tok, slot].unsqueeze(-1) * y)
            parts[f"layer {i} experts"] = out
            x = x + out
        if layer.mlp is not None:  # a dense layer, or a MoE layer's shared experts
            x = x + mlp64(xn, layer.mlp)
    logits = rms64(x) @ net.lm_head[vocab_rows].double().t()
    return Reference(hidden=x, parts=parts, vocab_rows=vocab_rows, logits=logits, problem=problem)


def check_step(st: DecodeState, ref: Reference, tol: float, what: str = "") -> Check:
    """One Check of a step against float64: every layer's attention output (and MoE expert output), the final
    hidden state and the sampled logits, each by ‖out − ref‖ / ‖ref‖ ≤ ``tol``, every logit written and finite.
    Layer by layer, because at long contexts attention over random keys adds little to the residual stream: a
    bug in it (a wrong cache slot) would hide in the final state but not in the attention output."""
    out = st.out
    if out is None:
        raise ValueError("check_step: the step has not run")
    logits = out.logits
    ref_name = "float64 re-computation of the step" + (f" ({what})" if what else "")
    bad = int((~torch.isfinite(logits)).sum())
    if bad:
        return Check(passed=False, tol=tol, reference=ref_name,
                     detail=f"{bad} of {logits.numel()} logits not finite (unwritten or overflow)")
    pairs = [(name, out.parts.get(name), r) for name, r in ref.parts.items()]
    pairs += [("hidden state", out.hidden, ref.hidden),
              ("logits", logits.index_select(1, ref.vocab_rows), ref.logits)]
    worst, failed = 0.0, []
    for name, got, r in pairs:
        if got is None:
            failed.append(f"{name}: missing from the step")
            continue
        c = checks.compare(got, r, tol, ref_name)
        worst = max(worst, c.rel_err if c.rel_err is not None else math.inf)
        if not c.passed:
            failed.append(f"{name}: {c.detail}")
    return Check(passed=not failed, rel_err=worst, tol=tol, reference=ref_name + " (per layer, hidden, logits)",
                 detail="; ".join(failed[:3]))
